"""Build the control-plane binaries from the Go module proxy, cached by version.

No package or download site serves kube-apiserver, etcd or kwok to the machines
this drill runs on, but the Go module proxy serves their sources. Each component
is built from a small wrapper module; the result lands in
``<cache>/bin/<component>-<version>/`` and a ``.complete`` marker is written only
after every binary of the component exists, so an interrupted build is redone
instead of half-used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rollback_drill.errors import ConfigError, ToolchainError

KUBERNETES_VERSION = "v1.34.4"
"""1.34: kubelet from 1.35 on refuses cgroup v1 hosts by default (matters for kind)."""
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
KUBE_STATE_METRICS_VERSION = "v2.20.0"
"""Its go.mod has no replace directives, so it builds like kwok: require it and build its main package."""

CONTROL_PLANE_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "kwokctl",
)


@dataclass(frozen=True)
class Component:
    """One thing built from one wrapper module."""

    name: str
    version: str
    binaries: tuple[str, ...]


COMPONENTS = (
    Component(
        "kubernetes", KUBERNETES_VERSION, ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
    ),
    Component("etcd", ETCD_VERSION, ("etcd",)),
    Component("kwok", KWOK_VERSION, ("kwok", "kwokctl")),
)

KUBE_STATE_METRICS = Component("kube-state-metrics", KUBE_STATE_METRICS_VERSION, ("kube-state-metrics",))
"""Not part of the control plane: the monitoring chain reads the cluster's pod states through it."""
MONITORING_COMPONENTS = (KUBE_STATE_METRICS,)

_KUBERNETES_CMDS = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    "kubelet": "k8s.io/kubernetes/cmd/kubelet",
    "kubeadm": "k8s.io/kubernetes/cmd/kubeadm",
    "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
}

_ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
\tetcdmain.Main(os.Args)
}
"""


def cache_dir() -> Path:
    """Where built binaries are kept: ``$ROLLBACK_DRILL_CACHE`` or ``~/.cache/rollback-drill``."""
    explicit = os.environ.get("ROLLBACK_DRILL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rollback-drill"


def component_dir(component: Component, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "bin" / f"{component.name}-{component.version}"


def _is_complete(component: Component, cache: Path | None) -> bool:
    target = component_dir(component, cache)
    return (target / ".complete").exists() and all((target / b).is_file() for b in component.binaries)


def _log(message: str) -> None:
    print(f"[toolchain] {message}", file=sys.stderr, flush=True)


def go_binary() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise ToolchainError(
            "Go is not installed, and the control-plane binaries are built from the Go module proxy. "
            "Install Go >= 1.24 (e.g. `apt-get install golang-1.24`), or pass --binaries-dir with prebuilt binaries."
        )
    return go


def run_go(args: list[str], cwd: Path, what: str) -> None:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false")
    started = time.monotonic()
    _log(f"{what} ...")
    proc = subprocess.run([go_binary(), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise ToolchainError(f"{what} failed (go {' '.join(args[:2])}, exit {proc.returncode}):\n{tail}")
    _log(f"{what} done in {time.monotonic() - started:.0f}s")


def _staging_replaces(version: str, workdir: Path) -> list[str]:
    """The ``k8s.io/*`` staging modules of this Kubernetes version, pinned to their published tags.

    k8s.io/kubernetes replaces them with local paths, which `go install` refuses; the
    published ``v0.<minor>.<patch>`` tags are the same code.
    """
    proc = subprocess.run(
        [go_binary(), "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ToolchainError(
            f"cannot download k8s.io/kubernetes@{version} from the Go module proxy: {proc.stderr.strip()}"
        )
    gomod = Path(json.loads(proc.stdout)["GoMod"]).read_text()
    staging_version = "v0" + version[2:][version[2:].index(".") :]
    names = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", gomod, flags=re.MULTILINE)
    if not names:
        raise ToolchainError(
            f"k8s.io/kubernetes@{version} go.mod has no staging replaces; this build recipe does not fit it"
        )
    return [f"replace {name} => {name} {staging_version}" for name in names]


def _version_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    build_date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": build_date,
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    return " ".join(flags)


def build_kubernetes(component: Component, workdir: Path, out: Path, binaries: tuple[str, ...]) -> None:
    (workdir / "go.mod").write_text(
        "module rollbackdrill.local/kubernetes-build\n\ngo 1.24.0\n\n"
        f"require k8s.io/kubernetes {component.version}\n\n"
        + "\n".join(_staging_replaces(component.version, workdir))
        + "\n"
    )
    ldflags = _version_ldflags(component.version)
    for binary in binaries:
        run_go(
            ["build", "-trimpath", "-ldflags", ldflags, "-o", str(out / binary), _KUBERNETES_CMDS[binary]],
            workdir,
            f"building {binary} {component.version}",
        )


def build_wrapper_main(module: str, version: str, main_source: str, *, binary: str, workdir: Path, out: Path) -> None:
    """Build a program whose ``main`` is a few lines calling into ``module@version``.

    For modules whose own go.mod carries replace directives (etcd) or whose command
    lives in a package `go install` cannot reach: the wrapper requires the module at
    the exact version and lets `-mod=mod` resolve the rest from the proxy.
    """
    (workdir / "go.mod").write_text(
        f"module rollbackdrill.local/{binary}-build\n\ngo 1.24.0\n\nrequire {module} {version}\n"
    )
    (workdir / "main.go").write_text(main_source)
    run_go(
        ["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / binary), "."],
        workdir,
        f"building {binary} {version}",
    )


def _build_etcd(component: Component, workdir: Path, out: Path) -> None:
    build_wrapper_main(
        "go.etcd.io/etcd/server/v3", component.version, _ETCD_MAIN, binary="etcd", workdir=workdir, out=out
    )


def _build_kwok(component: Component, workdir: Path, out: Path) -> None:
    (workdir / "go.mod").write_text(
        f"module rollbackdrill.local/kwok-build\n\ngo 1.24.0\n\nrequire sigs.k8s.io/kwok {component.version}\n"
    )
    ldflags = f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={component.version}"
    for binary in component.binaries:
        run_go(
            ["build", "-trimpath", "-ldflags", ldflags, "-o", str(out / binary), f"sigs.k8s.io/kwok/cmd/{binary}"],
            workdir,
            f"building {binary} {component.version}",
        )


def _build_kube_state_metrics(component: Component, workdir: Path, out: Path) -> None:
    module = "k8s.io/kube-state-metrics/v2"
    (workdir / "go.mod").write_text(
        f"module rollbackdrill.local/kube-state-metrics-build\n\ngo 1.24.0\n\nrequire {module} {component.version}\n"
    )
    # The version its own Makefile stamps, so `kube-state-metrics --version` names the release.
    ldflags = f"-s -w -X github.com/prometheus/common/version.Version={component.version}"
    run_go(
        ["build", "-trimpath", "-ldflags", ldflags, "-o", str(out / "kube-state-metrics"), module],
        workdir,
        f"building kube-state-metrics {component.version}",
    )


def ensure_component(component: Component, cache: Path | None = None) -> Path:
    """Return the directory holding the component's binaries, building them on a cache miss."""
    target = component_dir(component, cache)
    if _is_complete(component, cache):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{component.name}-", dir=target.parent))
    workdir = (cache or cache_dir()) / "build" / f"{component.name}-{component.version}"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if component.name == "kubernetes":
            build_kubernetes(component, workdir, staging, component.binaries)
        elif component.name == "etcd":
            _build_etcd(component, workdir, staging)
        elif component.name == "kwok":
            _build_kwok(component, workdir, staging)
        elif component.name == KUBE_STATE_METRICS.name:
            _build_kube_state_metrics(component, workdir, staging)
        else:  # pragma: no cover - COMPONENTS is closed
            raise ConfigError(f"unknown component {component.name}")
        (staging / ".complete").write_text(component.version + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def ensure_binaries(binaries_dir: Path | None = None, cache: Path | None = None) -> dict[str, Path]:
    """Paths of every control-plane binary: from ``binaries_dir`` if given, else the cache (building on a miss)."""
    if binaries_dir is not None:
        found = {name: binaries_dir / name for name in CONTROL_PLANE_BINARIES}
        missing = [name for name, path in found.items() if not os.access(path, os.X_OK)]
        if missing:
            raise ConfigError(
                f"--binaries-dir {binaries_dir} lacks executable {', '.join(missing)}; "
                "point it at a directory holding all of: " + ", ".join(CONTROL_PLANE_BINARIES)
            )
        return found
    paths: dict[str, Path] = {}
    for component in COMPONENTS:
        directory = ensure_component(component, cache)
        paths.update({binary: directory / binary for binary in component.binaries})
    return paths


def ensure_kube_state_metrics(cache: Path | None = None) -> Path:
    """The kube-state-metrics binary from the cache, built from the Go module proxy on a miss."""
    return ensure_component(KUBE_STATE_METRICS, cache) / "kube-state-metrics"


def cached_status(cache: Path | None = None, components: tuple[Component, ...] = COMPONENTS) -> dict[str, bool]:
    """Which components are already built, without building anything (the control plane unless told)."""
    return {f"{c.name}-{c.version}": _is_complete(c, cache) for c in components}
