"""FlowEngine as pods (the kind target): its manifests, and the simulator's pod mode on a real TaskDB.

The pods themselves run in `make test-kind`; here, two simulators on one real PostgreSQL play
two replicas behind a Service, and the pod-mode entry point is run as a process.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime
from importlib import resources

import psycopg
import pytest

from rollback_drill.config import load_config
from rollback_drill.errors import InputError
from rollback_drill.flowengine import AllowlistView, FlowEngineClient, FlowEngineUnavailable, Simulator
from rollback_drill.flowengine.allowlist_sources import allowlist_source
from rollback_drill.flowengine.injection import Injection
from rollback_drill.flowengine.injection_state import InjectionState
from rollback_drill.taskdb import providers
from rollback_drill.timing.wait import wait_until
from rollback_drill.world import manifests

PILOT = "compliance-service"
EXPANDED = ("financial-reporting", "customer-analytics", "inventory-mgmt")
MIGRATIONS = resources.files("rollback_drill") / "data" / "migrations"
FORWARD = ("20251104_001_pilot.sql", "20251117_001_phase6_repo_quotas.sql")


# --- manifests -------------------------------------------------------------------------------------


def _container(deployment):
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_without_a_runtime_the_pods_are_kwoks_and_never_pulled():
    config = load_config(None)
    container = _container(manifests.flowengine_deployment(config, 6, "production"))
    assert container["image"].startswith("registry.invalid/")
    assert "command" not in container
    assert [e["name"] for e in container["env"]] == ["REPO_ALLOWLIST", "FLOWENGINE_PHASE"]


def test_with_a_runtime_the_pods_run_the_simulator_image_with_taskdb_and_the_staged_fault():
    config = load_config(None)
    runtime = manifests.PodRuntime(image="rollback-drill/flowengine:abc-def")
    deployment = manifests.flowengine_deployment(config, 6, "production", runtime)
    container = _container(deployment)
    assert container["image"] == "rollback-drill/flowengine:abc-def"
    assert container["imagePullPolicy"] == "Never"
    command = container["command"]
    assert command[:3] == ["python3", "-m", "rollback_drill.flowengine"]
    assert {"--in-pod", "--shared-injections"} <= set(command)
    assert command[command.index("--allowlist-source") + 1] == "env:REPO_ALLOWLIST"
    env = {e["name"]: e for e in container["env"]}
    # The runbook's Step 1 patches this very variable; the pods read nothing else to decide their scope.
    assert env["REPO_ALLOWLIST"]["value"] == ",".join(config.allowlist_for(6))
    assert env[manifests.TASKDB_DSN_ENV]["valueFrom"] == {"secretKeyRef": {"name": runtime.dsn_secret, "key": "dsn"}}
    assert env["FLOWENGINE_FAULT"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        f"metadata.annotations['{manifests.FAULT_ANNOTATION}']"
    )
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": manifests.HTTP_PORT}
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_service_selects_the_flowengine_pods_on_its_node_port():
    config = load_config(None)
    runtime = manifests.PodRuntime(image="i:t", node_port=30123)
    service = manifests.flowengine_service(config, "production", runtime)
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["selector"] == {"app": config.kubernetes.deployment}
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30123}]


# --- shared injections, pure ------------------------------------------------------------------------


class DictStore:
    """An InjectionStore in memory: what TaskDB does for the pods, for the pure logic."""

    def __init__(self):
        self.version = 0
        self.payload: dict[str, object] = {}

    def write(self, payload):
        self.version += 1
        self.payload = payload
        return self.version

    def read(self):
        return self.version, self.payload


def test_a_second_state_sees_what_the_first_added_and_removed():
    store = DictStore()
    first, second = InjectionState(PILOT, store=store), InjectionState(PILOT, store=store)
    now = datetime.now(UTC)
    first.add(Injection("mass-failure", {}, EXPANDED, now, 100.0), now_mono=100.0)
    new = second.refresh(now_mono=5000.0, now_wall=now)
    assert [i.name for i in new] == ["mass-failure"]
    assert second.get("mass-failure").repos == EXPANDED
    assert second.refresh(now_mono=5001.0, now_wall=now) == ()  # nothing changed since
    assert first.refresh(now_mono=101.0, now_wall=now) == ()  # its own write is not news to it
    second.clear(now_mono=5002.0)
    assert first.refresh(now_mono=102.0, now_wall=now) == ()
    assert first.names() == ()


# --- shared injections on a real TaskDB -------------------------------------------------------------


@pytest.fixture(scope="module")
def taskdb(tmp_path_factory):
    db = providers.start_local(tmp_path_factory.mktemp("taskdb"))
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for name in FORWARD:
            conn.execute((MIGRATIONS / name).read_text())
    yield db
    providers.stop_local(db)


def _replica(db, repos):
    view = AllowlistView(1, frozenset({PILOT, *repos}))
    seeded = random.Random(7)  # noqa: S311 - simulated durations
    return Simulator(
        PILOT, db.dsn, lambda: view, rng=seeded, flow_latency_s=0.002, observe_interval_s=0.1, shared_injections=True
    )


def test_an_incident_injected_through_one_replica_reaches_the_other_and_clearing_it_too(taskdb):
    a, b = _replica(taskdb, EXPANDED), _replica(taskdb, EXPANDED)
    a.start()
    b.start()
    try:
        via_a, via_b = FlowEngineClient(a.url, timeout_s=10), FlowEngineClient(b.url, timeout_s=10)
        via_a.clear_incidents()
        assert via_b.generate(EXPANDED[0]).status == "completed"
        record = via_a.inject("mass-failure")
        assert EXPANDED[0] in record.repos

        def failing_on_b():
            flow = via_b.generate(EXPANDED[0])
            return flow if flow.status == "failed" else None

        flow = wait_until(failing_on_b, timeout_s=5, interval_s=0.1, describe="replica b failing mass-failure flows")
        assert flow.cause
        assert [i.name for i in via_b.incidents()] == ["mass-failure"]
        assert any("incident injected: mass-failure" in line for line in b.logs(200))
        # The failures a's injection backdated are in b's counters too: a scrape of either pod shows the incident.
        failing_on_b = {s.label("repo") for s in via_b.metric_samples("flow_failures_total") if s.value > 0}
        assert set(record.repos) <= failing_on_b
        assert via_b.generate(PILOT).status == "completed"  # the pilot is not hit
        assert via_b.clear_incidents() == ("mass-failure",)
        wait_until(
            lambda: via_a.generate(EXPANDED[0]).status == "completed",
            timeout_s=5,
            interval_s=0.1,
            describe="replica a serving again once b cleared the incident",
        )
        assert via_a.incidents() == ()
    finally:
        a.stop()
        b.stop()


# --- the pod-mode entry point ------------------------------------------------------------------------


def _entry(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "rollback_drill.flowengine", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def test_in_pod_is_refused_outside_a_pod():
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env["ROLLBACK_DRILL_TASKDB_DSN"] = "postgresql://u:p@127.0.0.1:1/db"
    proc = _entry("--in-pod", env=env)
    assert proc.returncode == 2
    assert "--in-pod is for a container of a Kubernetes pod" in proc.stderr


def test_a_pod_with_the_crash_loop_fault_exits_1_at_start_with_a_critical_line():
    env = dict(os.environ, ROLLBACK_DRILL_TASKDB_DSN="postgresql://u:p@127.0.0.1:1/db", FLOWENGINE_FAULT="crash-loop")
    proc = _entry("--port", "0", env=env)
    assert proc.returncode == 1
    assert "CRITICAL flowengine cannot start: staged fault 'crash-loop'" in proc.stderr


def test_the_env_source_serves_the_pilot_and_the_pods_own_allowlist(monkeypatch):
    monkeypatch.setenv("REPO_ALLOWLIST", f"{PILOT},{EXPANDED[0]}")
    view = allowlist_source("env:REPO_ALLOWLIST", pilot=PILOT, repos="", available_pods=3, args=())()
    assert view == AllowlistView(1, frozenset({PILOT, EXPANDED[0]}))
    monkeypatch.delenv("REPO_ALLOWLIST")
    with pytest.raises(InputError, match="REPO_ALLOWLIST is not set"):
        allowlist_source("env:REPO_ALLOWLIST", pilot=PILOT, repos="", available_pods=3, args=())


def test_with_a_monitoring_url_signals_metrics_logs_and_incidents_come_from_there(taskdb):
    monitor = _replica(taskdb, EXPANDED)
    monitor.start()
    try:
        # The service itself is down (every pod crash-looping): nothing listens on its port.
        client = FlowEngineClient("http://127.0.0.1:9", timeout_s=2, monitoring_url=monitor.url)
        assert "available_pods" in client.signals()
        assert client.metric_samples("flowengine_available_pods")
        assert client.logs(10).lines
        assert client.incidents() == ()
        with pytest.raises(FlowEngineUnavailable, match=r"127\.0\.0\.1:9"):
            client.generate(PILOT)
    finally:
        monitor.stop()
