"""kind, offline: the ``kind`` binary and a kind node image built without any registry.

``kindest/node`` cannot be pulled on the machines this drill runs on. Everything a
node needs is built here instead:

* ``kind`` itself, from ``sigs.k8s.io/kind`` on the Go module proxy (cached by version);
* kubelet, kubeadm and kube-proxy from ``k8s.io/kubernetes`` with the same wrapper-module
  recipe as the control plane (``toolchain.build``), cached by version;
* the node root filesystem: Debian bookworm (debootstrap) with systemd, containerd, runc,
  iptables and Debian's CNI plugins, plus kind's own base-image files taken from the
  ``sigs.k8s.io/kind`` module (``images/base/files``);
* the control-plane images kubeadm expects (kube-apiserver, kube-controller-manager,
  kube-scheduler, kube-proxy, etcd, coredns, pause): tiny ``docker import``-ed roots that
  hold the locally built binaries, preloaded into the node's containerd at build time.

The node image's tag carries a hash of all its inputs, so a changed recipe or version
builds a new image and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rollback_drill.errors import ToolchainError
from rollback_drill.toolchain import build

KIND_VERSION = "v0.30.0"
"""The newest kind whose defaults target Kubernetes 1.34 (its default node is v1.34.0)."""
COREDNS_VERSION = "v1.12.1"
"""What kubeadm 1.34 expects (``kubeadm config images list``); built from the Go module proxy."""
PAUSE_VERSION = "3.10.1"
KIND_NODE_REPOSITORY = "rollback-drill/kind-node"
NODE_BINARIES = ("kubelet", "kubeadm", "kube-proxy")

_KIND_MAIN = """package main

import "sigs.k8s.io/kind/cmd/kind/app"

func main() {
\tapp.Main()
}
"""

_COREDNS_MAIN = """package main

import (
\t_ "github.com/coredns/coredns/core/plugin"

\t"github.com/coredns/coredns/coremain"
)

func main() {
\tcoremain.Run()
}
"""


def _log(message: str) -> None:
    print(f"[kind-image] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _Built:
    """A cached set of binaries built from one wrapper module."""

    name: str
    version: str
    binaries: tuple[str, ...]

    def directory(self, cache: Path | None = None) -> Path:
        return (cache or build.cache_dir()) / "bin" / f"{self.name}-{self.version}"

    def complete(self, cache: Path | None = None) -> bool:
        target = self.directory(cache)
        return (target / ".complete").exists() and all((target / b).is_file() for b in self.binaries)


KIND = _Built("kind", KIND_VERSION, ("kind",))
KUBERNETES_NODE = _Built("kubernetes-node", build.KUBERNETES_VERSION, NODE_BINARIES)
COREDNS = _Built("coredns", COREDNS_VERSION, ("coredns",))


def _ensure_built(item: _Built, cache: Path | None, builder: str) -> Path:
    """Build ``item`` into a staging directory and move it into place, unless it is cached."""
    target = item.directory(cache)
    if item.complete(cache):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{item.name}-", dir=target.parent))
    workdir = (cache or build.cache_dir()) / "build" / f"{item.name}-{item.version}"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if builder == "kind":
            _build_kind(item, workdir, staging)
        elif builder == "coredns":
            _build_coredns(item, workdir, staging)
        elif builder == "pause":
            _build_pause(workdir, staging)
        else:
            component = build.Component("kubernetes", item.version, item.binaries)
            build.build_kubernetes(component, workdir, staging, item.binaries)
        (staging / ".complete").write_text(item.version + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _build_kind(item: _Built, workdir: Path, out: Path) -> None:
    build.build_wrapper_main("sigs.k8s.io/kind", item.version, _KIND_MAIN, binary="kind", workdir=workdir, out=out)


def _build_coredns(item: _Built, workdir: Path, out: Path) -> None:
    build.build_wrapper_main(
        "github.com/coredns/coredns", item.version, _COREDNS_MAIN, binary="coredns", workdir=workdir, out=out
    )


def _build_pause(workdir: Path, out: Path) -> None:
    for name in ("main.go", "go.mod"):
        (workdir / name).write_bytes((_recipe_dir() / "pause" / name).read_bytes())
    build.run_go(
        ["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "pause"), "."],
        workdir,
        "building pause",
    )


def _recipe_dir() -> Path:
    return Path(str(resources.files("rollback_drill.data").joinpath("images/kind-node")))


def _pause_item() -> _Built:
    digest = hashlib.sha256((_recipe_dir() / "pause" / "main.go").read_bytes()).hexdigest()[:12]
    return _Built("kind-pause", digest, ("pause",))


def ensure_kind(cache: Path | None = None) -> Path:
    """Path of the ``kind`` binary, built from the Go module proxy on a cache miss."""
    return _ensure_built(KIND, cache, "kind") / "kind"


def ensure_node_binaries(cache: Path | None = None) -> dict[str, Path]:
    """kubelet, kubeadm, kube-proxy (node side) and coredns, built on a cache miss."""
    node = _ensure_built(KUBERNETES_NODE, cache, "kubernetes")
    dns = _ensure_built(COREDNS, cache, "coredns")
    paths = {name: node / name for name in NODE_BINARIES}
    paths["coredns"] = dns / "coredns"
    return paths


def find_kind(cache: Path | None = None) -> Path | None:
    """The cached ``kind``, or one on PATH; None when neither exists (nothing is built)."""
    if KIND.complete(cache):
        return KIND.directory(cache) / "kind"
    found = shutil.which("kind")
    return Path(found) if found else None


def kind_module_dir(version: str = KIND_VERSION) -> Path:
    """The ``sigs.k8s.io/kind`` module's source, fetched through the Go module proxy."""
    proc = subprocess.run(
        [build.go_binary(), "mod", "download", "-json", f"sigs.k8s.io/kind@{version}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    if proc.returncode != 0:
        raise ToolchainError(f"cannot download sigs.k8s.io/kind@{version} from the Go module proxy: {proc.stderr}")
    directory = Path(json.loads(proc.stdout)["Dir"])
    if not (directory / "images" / "base" / "files" / "usr" / "local" / "bin" / "entrypoint").is_file():
        raise ToolchainError(f"sigs.k8s.io/kind@{version} has no images/base/files; this recipe does not fit it")
    return directory


_RECIPE_FILES = (
    "build.sh",
    "default-cni.yaml",
    "default-storage.yaml",
    "rbdnet.sh",
    "restrict-oom-score-adj.sh",
    "pause/main.go",
)


def node_image_tag(base_files: Path | None = None) -> str:
    """The node image's tag: the Kubernetes version and a hash of every input of the build."""
    digest = hashlib.sha256()
    for value in (KIND_VERSION, build.KUBERNETES_VERSION, build.ETCD_VERSION, COREDNS_VERSION):
        digest.update(value.encode() + b"\\0")
    for name in _RECIPE_FILES:
        digest.update(name.encode() + b"\\0" + (_recipe_dir() / name).read_bytes())
    files = base_files or kind_module_dir() / "images" / "base" / "files"
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(files)).encode() + b"\\0" + path.read_bytes())
    return f"{KIND_NODE_REPOSITORY}:{build.KUBERNETES_VERSION}-{digest.hexdigest()[:12]}"


def _docker_image_present(tag: str) -> bool:
    try:
        proc = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False, timeout=30)
    except FileNotFoundError:
        return False
    return proc.returncode == 0


def find_node_image() -> str | None:
    """The node image's tag if Docker holds it (nothing is built); None otherwise.

    Where the recipe's hash cannot be computed (no Go to fetch the kind module), the newest
    ``rollback-drill/kind-node:<kubernetes version>-*`` image Docker holds is taken instead.
    """
    try:
        tag = node_image_tag()
    except (ToolchainError, OSError):
        return _newest_node_image()
    return tag if _docker_image_present(tag) else None


def _newest_node_image() -> str | None:
    try:
        proc = subprocess.run(
            ["docker", "images", KIND_NODE_REPOSITORY, "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    prefix = f"{KIND_NODE_REPOSITORY}:{build.KUBERNETES_VERSION}-"
    tags = [line for line in proc.stdout.splitlines() if line.startswith(prefix)]
    return tags[0] if tags else None  # docker lists the newest first


def _collect_binaries(cache: Path | None, into: Path) -> None:
    """Every binary the node and its images hold, from the cache (built on a miss), in one directory."""
    wanted: dict[str, Path] = {}
    for component in build.COMPONENTS:
        if component.name in ("kubernetes", "etcd"):
            directory = build.ensure_component(component, cache)
            wanted.update({b: directory / b for b in component.binaries})
    wanted.update(ensure_node_binaries(cache))
    wanted["pause"] = _ensure_built(_pause_item(), cache, "pause") / "pause"
    for name, path in wanted.items():
        if path.stat().st_dev == into.stat().st_dev:
            os.link(path, into / name)
        else:
            shutil.copy2(path, into / name)


def build_node_image(cache: Path | None = None, *, mirror: str | None = None) -> str:
    """Build the kind node image offline (a few minutes warm; the Go builds on a cold cache), return its tag."""
    files = kind_module_dir() / "images" / "base" / "files"
    tag = node_image_tag(files)
    if shutil.which("debootstrap") is None:
        raise ToolchainError("building the kind node image needs debootstrap: apt-get install debootstrap")
    with tempfile.TemporaryDirectory(prefix="rbd-kind-bins-", dir=(cache or build.cache_dir())) as bins:
        _collect_binaries(cache, Path(bins))
        started = time.monotonic()
        _log(f"building {tag} (debootstrap, images, containerd preload; several minutes) ...")
        args = ["bash", str(_recipe_dir() / "build.sh"), tag, str(files), bins, build.KUBERNETES_VERSION]
        if mirror:
            args.append(mirror)
        rootfs_cache = (cache or build.cache_dir()) / "build" / "kind-node"
        env = dict(os.environ, ROOTFS_CACHE_DIR=str(rootfs_cache))
        proc = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            raise ToolchainError(f"building the kind node image {tag} failed:\\n{proc.stderr.strip()[-3000:]}")
        _log(f"built {tag} in {time.monotonic() - started:.0f}s")
    return tag


def ensure_node_image(cache: Path | None = None) -> str:
    """The node image's tag, building it when Docker does not hold it yet."""
    found = find_node_image()
    return found if found is not None else build_node_image(cache)


def build_busybox_image(tag: str, node_image: str | None = None) -> str:
    """A tiny application image: Debian's static busybox (taken from the node image) in an empty root.

    ``docker import`` of that root, entrypoint ``/bin/busybox``; the image carries the label
    ``rollback-drill-kind=app`` so it can be found and removed. Use a unique tag with kind.
    """
    source = node_image or ensure_node_image()
    with tempfile.TemporaryDirectory(prefix="rbd-busybox-") as work:
        root = Path(work) / "root"
        (root / "bin").mkdir(parents=True)
        (root / "tmp").mkdir(mode=0o1777)
        (root / "etc").mkdir()
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
        (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
        created = subprocess.run(
            ["docker", "create", "--label", "rollback-drill-kind=extract", source, "/bin/true"],
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0:
            raise ToolchainError(f"cannot read busybox from {source}: {created.stderr.strip()}")
        container = created.stdout.strip()
        try:
            copied = subprocess.run(
                ["docker", "cp", "-L", f"{container}:/bin/busybox", str(root / "bin" / "busybox")],
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
        if copied.returncode != 0:
            raise ToolchainError(f"{source} has no /bin/busybox (Debian's busybox-static): {copied.stderr.strip()}")
        for applet in ("sh", "httpd", "sleep", "wget"):
            (root / "bin" / applet).symlink_to("busybox")
        tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True).stdout
        imported = subprocess.run(
            [
                "docker",
                "import",
                "--change",
                "LABEL rollback-drill-kind=app",
                "--change",
                "ENV PATH=/bin",
                "--change",
                'ENTRYPOINT ["/bin/busybox"]',
                "-",
                tag,
            ],
            input=tar,
            capture_output=True,
            check=False,
        )
        if imported.returncode != 0:
            raise ToolchainError(f"docker import of {tag} failed: {imported.stderr.decode(errors='replace').strip()}")
    return tag
