"""kube-state-metrics on a real (local) control plane, read by Prometheus: a crash loop kwok acts out fires KubePodCrashLooping.

The whole chain with real processes: kube-apiserver (kwok plays the node and the crash loop), kube-state-metrics
built from the Go module proxy, Prometheus evaluating ``crash_loop_alert_rule``, Alertmanager posting the
warning to the Slack sink.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
from kubernetes import client

from rollback_drill.monitoring import alertmanager, kube_state_metrics, prometheus, rules
from rollback_drill.notify.sinks import Sinks
from rollback_drill.targets import local
from rollback_drill.targets.cluster import api_client
from rollback_drill.timing.wait import wait_until
from rollback_drill.toolchain.build import ensure_binaries, ensure_kube_state_metrics
from rollback_drill.world.manifests import (
    CRASH_LOOP_STAGE,
    FAULT_ANNOTATION,
    KUBE_STATE_METRICS_JOB,
    crash_loop_alert_rule,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(prometheus.PROMETHEUS_BINARY).exists() and Path(alertmanager.ALERTMANAGER_BINARY).exists()),
        reason="Prometheus and Alertmanager are not installed: run `make monitoring`",
    ),
]

FIRE_DEADLINE_S = 90.0
"""kwok's stage waits 2 s, scrapes and evaluations run every second, the rule's for: is 1 s; the rest is a busy machine."""


def _default_service_account(core: client.CoreV1Api) -> bool:
    return any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account("default").items)


def _crash_looping_pod(core: client.CoreV1Api) -> None:
    # The controller manager creates the namespace's default ServiceAccount a moment after the API is ready.
    wait_until(lambda: _default_service_account(core), timeout_s=60, describe="the default ServiceAccount")
    core.create_node(local.fake_node_manifest("kwok-node-0"))  # type: ignore[arg-type]
    core.create_namespaced_pod(
        "default",
        {  # type: ignore[arg-type]
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "flowengine-crashing", "annotations": {FAULT_ANNOTATION: "crash-loop"}},
            "spec": {
                "nodeName": "kwok-node-0",
                "containers": [{"name": "flowengine", "image": "registry.invalid/flowengine:phase-6"}],
            },
        },
    )


def test_a_crash_loop_in_the_cluster_fires_kube_pod_crash_looping_and_reaches_slack(tmp_path):
    with ExitStack() as stack:
        plane = local.start(tmp_path / "cluster", ensure_binaries(), extra_stages=CRASH_LOOP_STAGE)
        stack.callback(local.stop, plane)
        api = api_client(plane.kubeconfig)
        stack.callback(api.close)
        _crash_looping_pod(client.CoreV1Api(api))

        ksm = kube_state_metrics.start(Path(plane.kubeconfig), tmp_path / "ksm", binary=ensure_kube_state_metrics())
        stack.callback(kube_state_metrics.stop, ksm)
        assert ksm.url.startswith("http://127.0.0.1:")

        sinks = stack.enter_context(Sinks())
        endpoints = sinks.start()
        receivers = alertmanager.Receivers(
            pagerduty_url=endpoints.http_url + "/v2/enqueue",
            pagerduty_routing_key="k" * 32,
            slack_webhook_url=endpoints.http_url + alertmanager.SLACK_WEBHOOK_PATH,
            smtp_smarthost=f"127.0.0.1:{endpoints.smtp_port}",
        )
        am = alertmanager.start(alertmanager.AlertmanagerSettings(receivers), tmp_path / "am")
        stack.callback(alertmanager.stop, am)
        settings = prometheus.PrometheusSettings({KUBE_STATE_METRICS_JOB: (ksm.target,)}, am.address)
        prom = prometheus.start(settings, tmp_path / "prom")
        stack.callback(prometheus.stop, prom)
        rules.sync(prom.rules_dir, [crash_loop_alert_rule("monitoring", crash_loop_for="1s")])
        prometheus.reload(prom)

        [alert] = wait_until(
            lambda: prom.client().firing(alertname="KubePodCrashLooping"),
            timeout_s=FIRE_DEADLINE_S,
            describe="KubePodCrashLooping to fire on kube-state-metrics' view of the crashing pod",
        )
        assert alert.labels["pod"] == "flowengine-crashing"
        assert alert.labels["severity"] == "warning"
        wait_until(
            lambda: [e for e in sinks.received() if e["service"] == "slack" and e["status"] == 200],
            timeout_s=FIRE_DEADLINE_S,
            describe="Alertmanager to post the crash loop warning to the Slack sink",
        )
        assert not [e for e in sinks.received() if e["service"] == "pagerduty"]  # a warning does not page
