"""The FlowEngine simulator as a container image, for real pods on the ``kind`` target.

Two layers, both built on this machine with nothing pulled:

* the base, ``rollback-drill/flowengine-base:bookworm-<recipe hash>``: Debian bookworm with
  python3 (debootstrap, ``data/images/flowengine/build-base.sh``), built once;
* the image, ``rollback-drill/flowengine:<content hash>``: the base plus exactly the Python
  modules ``python -m rollback_drill.flowengine`` imports, copied from this environment
  (``rollback_drill`` and the third-party packages it pulls in, psycopg's binary wheel
  included) into ``/usr/local/lib/python3.11/dist-packages``. A changed simulator gets a new
  tag; an unchanged one is reused.

The image's interpreter is Debian's Python 3.11, so the environment that builds it must be a
3.11 too (compiled wheels are copied as they are); anything else is refused with that reason.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from importlib import resources
from pathlib import Path

from rollback_drill.errors import ToolchainError
from rollback_drill.toolchain.images import image_present, require_docker

IMAGE_REPOSITORY = "rollback-drill/flowengine"
BASE_REPOSITORY = "rollback-drill/flowengine-base"
PYTHON = (3, 11)
"""Debian bookworm's python3."""
SITE_DIR = "/usr/local/lib/python3.11/dist-packages"
ENTRY_MODULE = "rollback_drill.flowengine.__main__"
_SKIP = {"__pycache__"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


def _recipe() -> Path:
    return Path(str(resources.files("rollback_drill.data").joinpath("images/flowengine/build-base.sh")))


def base_tag() -> str:
    digest = hashlib.sha256(_recipe().read_bytes()).hexdigest()[:12]
    return f"{BASE_REPOSITORY}:bookworm-{digest}"


def ensure_base() -> str:
    """The base image: present, or built now with debootstrap (a few minutes, once)."""
    require_docker()
    tag = base_tag()
    if image_present(tag):
        return tag
    started = time.monotonic()
    print(f"[images] building {tag}: Debian bookworm + python3 (debootstrap, a few minutes, once) ...",
          file=sys.stderr, flush=True)  # fmt: skip
    proc = subprocess.run(["sh", str(_recipe()), tag], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ToolchainError(f"building the FlowEngine base image {tag} failed:\n{proc.stderr.strip()[-2000:]}")
    print(f"[images] built {tag} in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return tag


def _imported_files() -> dict[str, str]:
    """Every module the simulator's entry point imports, in a fresh interpreter: name -> file."""
    code = (
        "import importlib, json, sys; importlib.import_module(sys.argv[1]); "
        "print(json.dumps({n: getattr(m, '__file__', None) for n, m in list(sys.modules.items())}))"
    )
    proc = subprocess.run([sys.executable, "-c", code, ENTRY_MODULE], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ToolchainError(f"cannot import {ENTRY_MODULE} to find what the image needs:\n{proc.stderr[-1500:]}")
    return {name: file for name, file in json.loads(proc.stdout).items() if file}


def _site_dirs() -> list[Path]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return [Path(p).resolve() for p in paths]


def site_entries() -> list[Path]:
    """The top-level packages/modules (and their ``.libs`` folders) to copy, plus ``rollback_drill`` itself."""
    import rollback_drill  # noqa: PLC0415 - where this very package lives (an editable install or not)

    own = Path(rollback_drill.__file__).resolve().parent
    sites = _site_dirs()
    entries: set[Path] = {own}
    for file in _imported_files().values():
        path = Path(file).resolve()
        for site in sites:
            if site in path.parents:
                top = site / path.relative_to(site).parts[0]
                if top.name.startswith("_distutils"):
                    continue  # setuptools' import hook, loaded by a .pth file, not by the simulator
                entries.add(top)
                libs = site / f"{top.name}.libs"
                if libs.is_dir():
                    entries.add(libs)
    return sorted(entries)


def _copy(entry: Path, dest: Path) -> None:
    if entry.is_dir():
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "images")
        shutil.copytree(entry, dest / entry.name, ignore=ignore, symlinks=False)
    else:
        shutil.copy2(entry, dest / entry.name)


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def ensure_image() -> str:
    """The simulator image for the current code: reused when unchanged, else built on the base (seconds)."""
    if sys.version_info[:2] != PYTHON:
        raise ToolchainError(
            f"the FlowEngine image runs Debian bookworm's Python {PYTHON[0]}.{PYTHON[1]}, and its compiled packages "
            f"are copied from this environment, which is Python {sys.version_info[0]}.{sys.version_info[1]}; "
            "run the drill from a Python 3.11 virtualenv (make venv)"
        )
    base = ensure_base()
    with tempfile.TemporaryDirectory(prefix="rbd-flowengine-image-") as work:
        site = Path(work) / "site"
        site.mkdir()
        for entry in site_entries():
            _copy(entry, site)
        tag = f"{IMAGE_REPOSITORY}:{_tree_digest(site)}-{base.rsplit('-', 1)[-1]}"
        if image_present(tag):
            return tag
        _commit(base, site, tag)
    return tag


def _docker(*argv: str, what: str) -> str:
    proc = subprocess.run(["docker", *argv], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ToolchainError(f"{what} failed: {proc.stderr.strip()[-1500:]}")
    return proc.stdout.strip()


def _commit(base: str, site: Path, tag: str) -> None:
    """``docker create`` the base, copy the packages in, ``docker commit`` with the simulator as entry point."""
    container = _docker("create", "--label", "rollback-drill-image=build", base, "/bin/true", what="docker create")
    try:
        _docker("cp", f"{site}/.", f"{container}:{SITE_DIR}", what="docker cp of the simulator's packages")
        _docker(
            "commit",
            "--change", "USER 65534:65534",
            "--change", "ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
            "--change", 'ENTRYPOINT ["python3", "-m", "rollback_drill.flowengine"]',
            "--change", "LABEL rollback-drill-image=flowengine",
            container, tag,
            what=f"docker commit {tag}",
        )  # fmt: skip
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
