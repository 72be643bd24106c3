"""Container images the drill needs, with an offline fallback built from Debian's packages."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from rollback_drill.errors import ToolchainError

OFFICIAL_POSTGRES = "postgres:15"
_PULL_TIMEOUT_S = 60


def docker_reachable() -> tuple[bool, str]:
    """Whether a Docker engine answers, and what was seen if not."""
    try:
        proc = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except FileNotFoundError:
        return False, "the docker CLI is not installed (apt-get install docker.io)"
    except subprocess.TimeoutExpired:
        return False, "the Docker engine did not answer within 15s"
    if proc.returncode != 0:
        return False, (proc.stderr.strip().splitlines() or ["no Docker engine answered"])[-1]
    return True, proc.stdout.strip()


def require_docker() -> None:
    ok, detail = docker_reachable()
    if not ok:
        raise ToolchainError(
            f"the TaskDB container needs a Docker engine, and none is reachable: {detail}. "
            "Run `make docker` (installs Debian's docker.io and starts dockerd --ip 127.0.0.1), or use --taskdb local"
        )


def image_present(tag: str) -> bool:
    proc = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    return proc.returncode == 0


def _recipe_dir() -> Path:
    return Path(str(resources.files("rollback_drill.data").joinpath("images/postgres")))


def offline_postgres_tag() -> str:
    """The offline image's tag, derived from its recipe so a changed recipe builds a new image."""
    digest = hashlib.sha256()
    for name in ("build.sh", "entrypoint.sh"):
        digest.update((_recipe_dir() / name).read_bytes())
    return f"rollback-drill/postgres:15-bookworm-{digest.hexdigest()[:12]}"


def build_offline_postgres(tag: str) -> None:
    started = time.monotonic()
    print(
        f"[images] building {tag} from Debian's postgresql-15 (debootstrap, about a minute) ...",
        file=sys.stderr,
        flush=True,
    )
    proc = subprocess.run(["sh", str(_recipe_dir() / "build.sh"), tag], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ToolchainError(f"building the offline TaskDB image {tag} failed:\n{proc.stderr.strip()[-2000:]}")
    print(f"[images] built {tag} in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)


def ensure_postgres_image(*, allow_pull: bool = True) -> str:
    """``postgres:15`` if present or pullable, else the image built offline from Debian's packages."""
    require_docker()
    if image_present(OFFICIAL_POSTGRES):
        return OFFICIAL_POSTGRES
    offline = offline_postgres_tag()
    if image_present(offline):
        return offline
    if allow_pull:
        try:
            pulled = subprocess.run(
                ["docker", "pull", OFFICIAL_POSTGRES], capture_output=True, timeout=_PULL_TIMEOUT_S, check=False
            )
            if pulled.returncode == 0:
                return OFFICIAL_POSTGRES
        except subprocess.TimeoutExpired:
            pass
    build_offline_postgres(offline)
    return offline
