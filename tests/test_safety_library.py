"""The pieces of the safety feature that need no cluster: renewals counted, calls outside the Role named,
a settled Deployment recognised, and every destructive action refused by the guard before it calls anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client

from rollback_drill.config import KubernetesNames, load_config
from rollback_drill.errors import InputError, UnsafeTarget, VerificationFailed, WaitTimeout
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.kube.lock import LeaseRecord, wait_renewed
from rollback_drill.kube.rbac import calls_outside_the_role, refusal_outside_the_role
from rollback_drill.kube.rollout import settled
from rollback_drill.runbook.actions import Runbook
from rollback_drill.runbook.destructive import destructive_calls, try_destructive_actions
from rollback_drill.targets.cluster import Cluster
from rollback_drill.taskdb.backup import BackupResult
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.timing.clock import FakeClock
from rollback_drill.world.manifests import FAULT_ANNOTATION, fault_patch

START = datetime(2025, 11, 17, 9, 0, tzinfo=UTC)
NOWHERE = "http://127.0.0.1:9"
"""Nothing listens on the discard port: a call that got past the guard would fail, not be refused."""


class ScriptedLease:
    """A held lock whose Lease reads as the script says, one read at a time (the last read repeats)."""

    def __init__(self, renewed_at: list[datetime | None]) -> None:
        self._script = renewed_at
        self.reads = 0
        self.renewals = 0
        self.last_renew_error: str | None = None

    def read(self) -> LeaseRecord | None:
        at = self._script[min(self.reads, len(self._script) - 1)]
        self.reads += 1
        return None if at is None else LeaseRecord("alice", START, at, 3)


def test_two_renewals_are_two_new_renew_times():
    second = timedelta(seconds=1)
    lock = ScriptedLease([START, START, START + second, START + second, START + 2 * second])
    wait_renewed(lock, 2, timeout_s=5, clock=FakeClock(START))
    assert lock.reads == 5


def test_a_renew_time_that_stands_still_times_out_with_the_holders_account():
    lock = ScriptedLease([START, START + timedelta(seconds=1)])
    lock.renewals, lock.last_renew_error = 1, "409 Conflict"
    with pytest.raises(WaitTimeout, match="renewals counted: 1, last error: 409 Conflict"):
        wait_renewed(lock, 2, timeout_s=5, clock=FakeClock(START))


def test_a_lease_that_disappears_is_not_a_renewal():
    with pytest.raises(VerificationFailed, match="Lease is gone"):
        wait_renewed(ScriptedLease([START, None]), 2, timeout_s=5, clock=FakeClock(START))


def test_the_calls_outside_the_role_are_named_for_what_they_would_do():
    api = client.ApiClient(client.Configuration(host=NOWHERE))
    calls = calls_outside_the_role(api, KubernetesNames(), pod_patch=fault_patch("crash-loop"))
    assert sorted(calls) == sorted(
        [
            "delete deployment/flowengine in production",
            "read the secrets in production",
            "patch a flowengine pod in production",
            "create a deployment in production",
            "delete namespace production",
            "scale deployment/flowengine in staging",
            "delete another service's Lease in production",
        ]
    )
    with pytest.raises(InputError, match="no call outside the drill's Role is named 'drop the database'; known: "):
        refusal_outside_the_role(api, KubernetesNames(), "drop the database", pod_patch={})


def test_a_fault_is_staged_by_its_annotation():
    assert fault_patch("crash-loop") == {"metadata": {"annotations": {FAULT_ANNOTATION: "crash-loop"}}}


def deployment(*, generation: int = 2, observed: int | None = 2, replicas: int = 4, counted: int | None = 4):
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name="flowengine", generation=generation),
        spec=client.V1DeploymentSpec(
            replicas=replicas, selector=client.V1LabelSelector(), template=client.V1PodTemplateSpec()
        ),
        status=client.V1DeploymentStatus(observed_generation=observed, replicas=counted),
    )


def test_a_deployment_is_settled_once_its_spec_is_observed_and_every_replica_counted():
    assert settled(deployment())
    assert not settled(deployment(observed=1))
    assert not settled(deployment(counted=3))
    assert not settled(deployment(counted=None))
    fresh = deployment()
    fresh.status = None
    assert not settled(fresh)


@pytest.fixture
def foreign_runbook():
    cluster = Cluster(
        "kubeconfig", "/nowhere/kubeconfig", None, NOWHERE, f"{NOWHERE}#0000", "v1.34.4", created_by_drill=False
    )
    return Runbook(
        api=client.ApiClient(client.Configuration(host=NOWHERE)),
        cluster=cluster,
        config=load_config(),
        taskdb=TaskDB("local", "127.0.0.1", 9, "taskdb", "drill", "secret"),
        flowengine=FlowEngineClient(NOWHERE),
    )


def test_every_destructive_action_has_a_call(foreign_runbook, tmp_path):
    backup = BackupResult(tmp_path / "taskdb.sql.gz", 0, "", "host 15")
    calls = destructive_calls(foreign_runbook, backup=backup, rule_backups=(), alerts_dir=tmp_path)
    assert list(calls) == [
        "restrict_allowlist",
        "scale_down",
        "restart_with_pilot_config",
        "revert_schema",
        "disable_expanded_alerts",
        "restore_alert_rules",
    ]


def test_the_guard_refuses_before_any_call_and_each_outcome_is_kept(foreign_runbook, tmp_path):
    backup = BackupResult(tmp_path / "taskdb.sql.gz", 0, "", "host 15")
    names = ["restrict_allowlist", "restart_with_pilot_config", "disable_expanded_alerts", "restore_alert_rules"]
    outcomes = try_destructive_actions(
        foreign_runbook, names, backup=backup, rule_backups=(tmp_path / "rule.yaml",), alerts_dir=tmp_path / "alerts"
    )
    assert list(outcomes) == names
    for outcome in outcomes.values():
        assert isinstance(outcome, UnsafeTarget), repr(outcome)
        assert f"{NOWHERE}#0000" in str(outcome)
        assert "--cluster-allowlist" in str(outcome)
    assert not (tmp_path / "alerts").exists()


def test_an_unknown_action_is_refused_before_any_is_tried(foreign_runbook, tmp_path):
    backup = BackupResult(tmp_path / "taskdb.sql.gz", 0, "", "host 15")
    with pytest.raises(InputError, match="no destructive runbook action is named 'drop_tables'"):
        try_destructive_actions(
            foreign_runbook,
            ["restore_alert_rules", "drop_tables"],
            backup=backup,
            rule_backups=(),
            alerts_dir=tmp_path / "alerts",
        )
