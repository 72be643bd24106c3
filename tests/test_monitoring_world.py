"""The chain beside a real (local) control plane: the rule syncer follows the cluster's PrometheusRules.

A PrometheusRule created in the cluster becomes a rule group Prometheus has loaded; deleting it
unloads the group; stopping the chain leaves no Prometheus, Alertmanager or kube-state-metrics.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from kubernetes import client

from rollback_drill.kube.rules import PrometheusRules
from rollback_drill.monitoring import alertmanager, prometheus
from rollback_drill.notify.sinks import Sinks
from rollback_drill.targets import local
from rollback_drill.targets.cluster import api_client
from rollback_drill.toolchain.build import ensure_binaries
from rollback_drill.world.manifests import alert_rule, pilot_alert_rule
from rollback_drill.world.monitoring_chain import (
    loaded_alerts,
    loaded_once_settled,
    start_chain,
    stop_chain,
    wait_rules_loaded,
)
from rollback_drill.world.seed import ensure_crd

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(prometheus.PROMETHEUS_BINARY).exists() and Path(alertmanager.ALERTMANAGER_BINARY).exists()),
        reason="Prometheus and Alertmanager are not installed: run `make monitoring`",
    ),
]


START_WITHOUT_CRD_S = 20.0
"""Three servers start in a few seconds; the syncer must not wait for a CRD that comes with the world."""


def _ours(directory: Path) -> list[str]:
    pgrep = shutil.which("pgrep")
    assert pgrep is not None
    found = subprocess.run([pgrep, "-a", "-f", str(directory)], capture_output=True, text=True, check=False)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def test_the_syncer_loads_and_unloads_the_clusters_prometheus_rules_and_stopping_leaves_no_process(tmp_path):
    with ExitStack() as stack:
        plane = local.start(tmp_path / "cluster", ensure_binaries())
        stack.callback(local.stop, plane)
        api = api_client(plane.kubeconfig)
        stack.callback(api.close)
        sinks = stack.enter_context(Sinks())
        endpoints = sinks.start(tmp_path / "sinks")
        started = time.monotonic()
        # Before the world is seeded the cluster has no PrometheusRule CRD: the chain starts without rules.
        chain = start_chain(tmp_path / "monitoring", plane.kubeconfig, "127.0.0.1:9", endpoints)
        try:
            assert time.monotonic() - started < START_WITHOUT_CRD_S
            assert loaded_alerts(chain.prometheus.url).groups == ()
            ensure_crd(api)
            client.CoreV1Api(api).create_namespace({"metadata": {"name": "monitoring"}})
            rules = PrometheusRules(api, "monitoring")
            rules.create(pilot_alert_rule("compliance-service", "monitoring", failures_for="600ms"))
            assert set(chain.services()) == {"alertmanager", "prometheus", "kube-state-metrics"}
            wait_rules_loaded(chain.prometheus.url, ["compliance-service"])

            rules.create(alert_rule("risk-engine", "monitoring", failures_for="600ms"))
            loaded = wait_rules_loaded(chain.prometheus.url, ["compliance-service", "risk-engine"])
            assert loaded.groups_of(["risk-engine"]) == ["risk-engine.flowengine"]

            rules.delete("risk-engine-alerts")
            settled = loaded_once_settled(chain.prometheus.url, ["risk-engine"])
            assert settled.groups_of(["risk-engine"]) == []
            assert settled.groups_of(["compliance-service"]) == ["compliance-service.flowengine"]
            assert loaded_alerts(chain.prometheus.url).alerts_of(["risk-engine"]) == []
            assert chain.syncer.reloads >= 3
        finally:
            assert stop_chain(chain) == []  # SIGTERM was enough for every server
        assert _ours(tmp_path / "monitoring") == []
