"""`rollback-drill env up` brings the monitoring chain up beside the world, prints its URLs, and `env down`
leaves no Prometheus, Alertmanager or kube-state-metrics behind (a real control plane, a local TaskDB)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rollback_drill.monitoring import alertmanager, prometheus
from rollback_drill.monitoring.promql import PrometheusClient

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(prometheus.PROMETHEUS_BINARY).exists() and Path(alertmanager.ALERTMANAGER_BINARY).exists()),
        reason="Prometheus and Alertmanager are not installed: run `make monitoring`",
    ),
]

ENV_TIMEOUT_S = 300


def _cli(state_home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"XDG_STATE_HOME": str(state_home)}
    return subprocess.run(
        [sys.executable, "-m", "rollback_drill.cli", *args],
        capture_output=True,
        text=True,
        timeout=ENV_TIMEOUT_S,
        check=False,
        env=env,
    )


def _ours(directory: Path) -> list[str]:
    pgrep = shutil.which("pgrep")
    assert pgrep is not None
    found = subprocess.run([pgrep, "-a", "-f", str(directory)], capture_output=True, text=True, check=False)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def test_env_up_prints_prometheus_and_alertmanager_and_env_down_leaves_no_monitoring_process(tmp_path):
    up = _cli(tmp_path, "env", "up", "--name", "chain")
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        urls = dict(
            line.strip().split(":", 1)
            for line in up.stdout.splitlines()
            if line.strip().startswith(("prometheus:", "alertmanager:"))
        )
        assert set(urls) == {"prometheus", "alertmanager"}, up.stdout
        groups = {g.name for g in PrometheusClient(urls["prometheus"].strip()).rules()}
        assert {"compliance-service.flowengine", "kubernetes-apps"} <= groups
        running = "\n".join(_ours(tmp_path))
        for server in ("prometheus", "alertmanager", "kube-state-metrics"):
            assert server in running, running
    finally:
        down = _cli(tmp_path, "env", "down", "--name", "chain")  # the TaskDB container goes too
    assert down.returncode == 0, down.stderr[-2000:]
    assert _ours(tmp_path) == []
