"""What `rollback-drill doctor` checks for the monitoring chain, each with its fix."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from rollback_drill.monitoring.alertmanager import ALERTMANAGER_BINARY
from rollback_drill.monitoring.prometheus import PROMETHEUS_BINARY
from rollback_drill.toolchain.build import MONITORING_COMPONENTS, cached_status

INSTALL_FIX = (
    "run `make monitoring` (Debian: apt-get install --no-install-recommends prometheus prometheus-alertmanager)"
)


@dataclass(frozen=True)
class Check:
    label: str
    ok: bool
    detail: str
    fix: str


def _version(binary: Path) -> str | None:
    """The first line of ``binary --version``, or None when it is missing or does not run."""
    if not binary.exists():
        return None
    try:
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if proc.returncode == 0 and lines else None


def checks(cache: Path | None = None) -> list[Check]:
    found = []
    for label, binary in (("Prometheus", PROMETHEUS_BINARY), ("Alertmanager", ALERTMANAGER_BINARY)):
        version = _version(binary)
        found.append(Check(label, version is not None, version or f"{binary} not found", INSTALL_FIX))
    status = cached_status(cache, MONITORING_COMPONENTS)
    found.append(
        Check(
            "kube-state-metrics",
            all(status.values()),
            ", ".join(f"{k} {'cached' if v else 'missing'}" for k, v in status.items()),
            "run `rollback-drill toolchain` (builds it from the Go module proxy; a few minutes the first time)",
        )
    )
    return found
