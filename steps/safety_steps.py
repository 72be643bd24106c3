"""Steps for features/safety.feature: the drill lock, the drill's own RBAC identity, and the identity guard.

The lock and RBAC scenarios run on the session's drill cluster and leave it as they
found it (no Lease, the world reseeded by the next scenario that needs it). The
guard scenario runs on a control plane started by hand, where the world is made with
plain creates, as a team makes its own: somebody else's cluster, as far as the drill knows.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from pytest_bdd import given, parsers, then, when

from rollback_drill import environment
from rollback_drill.config import DrillConfig, KubernetesNames
from rollback_drill.errors import LockHeld, UnsafeTarget
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.kube.lock import (
    LEASE_NAME,
    LEASE_NAMESPACE,
    DrillLock,
    LeaseRecord,
    break_lock,
    lease_body,
    try_to_take,
    wait_renewed,
)
from rollback_drill.kube.rbac import (
    drill_api_client,
    drill_identity_manifests,
    ensure_drill_identity,
    refusal_outside_the_role,
)
from rollback_drill.kube.rules import PrometheusRules
from rollback_drill.runbook import actions
from rollback_drill.runbook.actions import Runbook
from rollback_drill.runbook.destructive import try_destructive_actions
from rollback_drill.targets.cluster import Cluster
from rollback_drill.taskdb import providers, schema
from rollback_drill.taskdb.backup import BackupResult, TableFingerprint, dump, table_fingerprints
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.timing.wait import wait_until
from rollback_drill.world import manifests
from rollback_drill.world.seed import make_world_by_hand, read_world, reset_taskdb, resource_versions

# --- the drill lock ----------------------------------------------------------------------------


@pytest.fixture
def clean_drill_lock(k8s_api):
    """No drill Lease before the scenario, and none after it, whatever the scenario did."""
    break_lock(k8s_api)
    yield
    break_lock(k8s_api)


@given(parsers.parse('drill "{holder}" holds the drill lock'), target_fixture="held_lock")
def _holds_lock(k8s_api, clean_drill_lock, holder):
    lock = DrillLock(k8s_api, holder)
    lock.acquire()
    yield lock
    lock.release()


@given(
    parsers.parse('drill "{holder}" holds the drill lock with a {lease_s:d}-second lease renewed every second'),
    target_fixture="held_lock",
)
def _holds_short_lock(k8s_api, clean_drill_lock, holder, lease_s):
    lock = DrillLock(k8s_api, holder, lease_s=lease_s, renew_every_s=1)
    lock.acquire()
    yield lock
    lock.release()


@when(parsers.parse('drill "{holder}" tries to take the drill lock'), target_fixture="lock_refusal")
def _tries_lock(k8s_api, holder):
    return try_to_take(k8s_api, holder)


@when(
    parsers.parse('drill "{holder}" tries to take the drill lock in namespace "{namespace}"'),
    target_fixture="lock_refusal",
)
def _tries_lock_in(k8s_api, holder, namespace):
    return try_to_take(k8s_api, holder, namespace=namespace)


@then(parsers.parse('it is refused as bad input (exit 2), naming "{holder}", since when, and how to break the lock'))
def _refused_naming(lock_refusal, held_lock, holder):
    assert isinstance(lock_refusal, LockHeld), f"expected the drill lock to be refused, got {lock_refusal!r}"
    message = str(lock_refusal)
    assert holder in message, message
    since = held_lock.read().acquired_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"since {since}" in message, message
    assert f"kubectl -n {LEASE_NAMESPACE} delete lease {LEASE_NAME}" in message, message
    assert "\n" not in message


@then(parsers.parse('it is refused as bad input (exit 2), saying namespace "{namespace}" does not exist'))
def _refused_namespace(lock_refusal, namespace):
    assert lock_refusal is not None, "the drill lock was taken, which should have been refused"
    assert not isinstance(lock_refusal, LockHeld), repr(lock_refusal)
    assert f"namespace {namespace!r} does not exist" in str(lock_refusal), str(lock_refusal)


@then(parsers.parse('the drill lock still names "{holder}"'))
def _still_names(held_lock, holder):
    record = held_lock.read()
    assert record is not None
    assert record.holder == holder, record


@dataclass(frozen=True)
class LockRelease:
    asked_by: str
    """The drill the step text names."""
    holder: str
    """The drill that held the lock."""
    lease_deleted: bool


@when(parsers.parse('drill "{holder}" releases the drill lock'), target_fixture="lock_release")
def _releases(held_lock, holder):
    return LockRelease(asked_by=holder, holder=held_lock.holder, lease_deleted=held_lock.release())


@then("no drill lock is left on the cluster")
def _no_lock_left(held_lock, lock_release):
    assert lock_release.holder == lock_release.asked_by, lock_release
    assert lock_release.lease_deleted, "the Lease was not deleted on release"
    assert held_lock.read() is None


@then(parsers.parse('drill "{holder}" can take the drill lock'))
def _can_take(k8s_api, holder):
    with DrillLock(k8s_api, holder) as lock:
        record = lock.read()
        assert record is not None
        assert record.holder == holder
    assert lock.read() is None


@given(
    parsers.parse('a drill lock held by "{holder}", last renewed {minutes:d} minutes ago for {seconds:d} seconds'),
    target_fixture="stale_lease",
)
def _stale_lease(k8s_api, clean_drill_lock, holder, minutes, seconds):
    renewed = datetime.now(UTC) - timedelta(minutes=minutes)
    body = lease_body(LEASE_NAME, holder, renewed, seconds, acquired_at=renewed - timedelta(minutes=30), transitions=2)
    created = client.CoordinationV1Api(k8s_api).create_namespaced_lease(LEASE_NAMESPACE, body)
    return LeaseRecord.from_lease(created)


@when(parsers.parse('drill "{holder}" takes the drill lock'), target_fixture="held_lock")
def _takes_lock(k8s_api, clean_drill_lock, holder):
    lock = DrillLock(k8s_api, holder)
    lock.acquire()
    yield lock
    lock.release()


@then(parsers.parse('the drill lock names "{holder}", acquired and renewed just now'))
def _names_new_holder(held_lock, stale_lease, holder):
    record = held_lock.read()
    now = datetime.now(UTC)
    assert record.holder == holder, record
    assert record.acquired_at > stale_lease.renewed_at, (record, stale_lease)
    assert abs((now - record.renewed_at).total_seconds()) < 30, record
    assert abs((now - record.acquired_at).total_seconds()) < 30, record


@then("the drill lock records one more holder transition than before")
def _one_more_transition(held_lock, stale_lease):
    assert held_lock.read().transitions == stale_lease.transitions + 1


@then(parsers.parse("its renewTime moves forward twice within {seconds:d} seconds"))
def _renewed(held_lock, seconds):
    wait_renewed(held_lock, 2, timeout_s=seconds)
    assert held_lock.lost is None


@then(parsers.parse('after its first {lease_s:d}-second lease has passed, drill "{holder}" is still refused'))
def _still_refused_later(k8s_api, held_lock, lease_s, holder):
    first_expiry = held_lock.read().acquired_at + timedelta(seconds=lease_s)
    wait_until(
        lambda: datetime.now(UTC) > first_expiry,
        timeout_s=lease_s + 2,
        describe=f"the first {lease_s}-second lease period to pass",
    )
    refused = try_to_take(k8s_api, holder)
    assert isinstance(refused, LockHeld), f"expected the drill lock to be refused, got {refused!r}"
    assert held_lock.holder in str(refused)


# --- the drill's own identity (RBAC) ------------------------------------------------------------


@then("the YAML in docs/rbac.md is the drill's identity, object for object")
def _rbac_doc(pytestconfig):
    text = (Path(pytestconfig.rootpath) / "docs" / "rbac.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    documented = [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]
    assert documented == drill_identity_manifests(KubernetesNames())


@given("the drill's own identity on the drill cluster", target_fixture="identity_api")
def _drill_identity(k8s_api, cluster, drill_config):
    identity = ensure_drill_identity(k8s_api, drill_config.kubernetes, cluster=cluster)
    api = drill_api_client(k8s_api, identity)
    yield api
    api.close()


@when(parsers.parse("acting as it, the drill tries to {action}"), target_fixture="refusal_status")
def _outside_role(identity_api, drill_config, action):
    crash_loop = manifests.fault_patch("crash-loop")
    return refusal_outside_the_role(identity_api, drill_config.kubernetes, action, pod_patch=crash_loop)


def _as_identity(runbook: Runbook, identity_api: client.ApiClient) -> Runbook:
    return dataclasses.replace(runbook, api=identity_api)


@when(
    "acting as it, the SRE performs Step 1: the allowlist is restricted to the pilot and rolled out",
    target_fixture="identity_allowlist_change",
)
def _identity_step_1(runbook, identity_api):
    return actions.restrict_allowlist(_as_identity(runbook, identity_api))


@then("REPO_ALLOWLIST of deployment/flowengine reads only the pilot, as the drill's identity sees it")
def _identity_allowlist(identity_api, identity_allowlist_change, drill_config):
    assert identity_allowlist_change.after == (drill_config.pilot_repo,), identity_allowlist_change
    assert not identity_allowlist_change.blocked_by_crash_loop, identity_allowlist_change
    world = read_world(identity_api, drill_config, None, 6)
    assert world.allowlist == (drill_config.pilot_repo,), world.allowlist


@when(
    "acting as it, the SRE performs Step 2: FlowEngine is scaled down to the pilot's replicas",
    target_fixture="identity_scale_result",
)
def _identity_step_2(runbook, identity_api):
    return actions.scale_down(_as_identity(runbook, identity_api))


@then(
    parsers.parse(
        "deployment/flowengine runs {replicas:d} replicas, all Running and Ready, as the drill's identity sees them"
    )
)
def _identity_scaled(runbook, identity_api, identity_scale_result, replicas):
    assert identity_scale_result.scaled, identity_scale_result
    assert (identity_scale_result.after, identity_scale_result.ready_pods) == (replicas, replicas)
    assert actions.ready_running_pods(_as_identity(runbook, identity_api)) == replicas


@when(
    "acting as it, the SRE performs Step 4: the expanded repos' alert rules are backed up and deleted",
    target_fixture="identity_alerts_result",
)
def _identity_step_4(runbook, identity_api, tmp_path):
    return actions.disable_expanded_alerts(_as_identity(runbook, identity_api), tmp_path / "alerts")


@then("no alert rule of an expanded repo is left, and the runbook's own patch was refused for its schema, not for RBAC")
def _identity_rules_gone(identity_api, identity_alerts_result, drill_config):
    left = PrometheusRules(identity_api, drill_config.kubernetes.monitoring_namespace).names()
    expanded = {f"{repo}-alerts" for repo in drill_config.expanded_for(6)}
    assert not left & expanded, sorted(left)
    assert set(identity_alerts_result.disabled) == expanded
    drift = identity_alerts_result.drift
    assert drift is not None
    assert "(403" not in drift, drift


@when("acting as it, the alert rules are restored from those backups", target_fixture="identity_restored")
def _identity_restore(runbook, identity_api, identity_alerts_result):
    return actions.restore_alert_rules(_as_identity(runbook, identity_api), identity_alerts_result.backups)


@then("acting as it, the drill takes and releases its lock")
def _identity_lock(identity_api, clean_drill_lock):
    holder = "system:serviceaccount:production:rollback-drill/safety-feature"
    with DrillLock(identity_api, holder) as lock:
        assert lock.read().holder == holder
    assert lock.read() is None


# --- the identity guard, on somebody else's cluster ---------------------------------------------


@dataclass(frozen=True)
class ForeignWorld:
    """A FlowEngine world on a cluster the drill did not create, and what it looked like before the drill came."""

    cluster: Cluster
    api: client.ApiClient
    versions: dict[str, str]
    rule_backup: Path


@given("somebody else's cluster, where a FlowEngine world was made by hand", target_fixture="foreign_world")
def _foreign_world(outside_control_plane, drill_config: DrillConfig, tmp_path):
    api = outside_control_plane.api_client()
    make_world_by_hand(api, drill_config, 6)
    rules = PrometheusRules(api, drill_config.kubernetes.monitoring_namespace)
    rule_backup = rules.back_up(f"{drill_config.expanded_for(6)[0]}-alerts", tmp_path)
    yield ForeignWorld(outside_control_plane, api, resource_versions(api, drill_config.kubernetes), rule_backup)
    api.close()


@dataclass(frozen=True)
class ForeignTaskDB:
    db: TaskDB
    backup: BackupResult
    version: str | None
    tables: dict[str, TableFingerprint]


@given("a TaskDB at the Phase 6 schema with a pre-rollback backup", target_fixture="foreign_taskdb")
def _foreign_taskdb(drill_config, tmp_path):
    db = providers.start_local(tmp_path / "taskdb")
    try:
        reset_taskdb(db, drill_config, 6)
        backup = dump(db, tmp_path / "taskdb_pre_rollback.sql.gz")
        yield ForeignTaskDB(db, backup, schema.current_version(db), table_fingerprints(db.dsn))
    finally:
        providers.stop(db)


@given(
    "the runbook aimed at them, with the cluster neither drill-made nor allowlisted", target_fixture="foreign_runbook"
)
def _foreign_runbook(foreign_world, foreign_taskdb, drill_config):
    return Runbook(
        api=foreign_world.api,
        cluster=foreign_world.cluster,
        config=drill_config,
        taskdb=foreign_taskdb.db,
        # Never reached: every action is refused before it would ask FlowEngine anything.
        flowengine=FlowEngineClient("http://127.0.0.1:9"),
        cluster_allowlist=frozenset(),
        known_drill_clusters=environment.known_drill_fingerprints(),
    )


@then("the drill neither created nor recorded that cluster, and the TaskDB's schema is later than the pilot's")
def _foreign_premise(foreign_world, foreign_runbook, foreign_taskdb, drill_config):
    assert not foreign_world.cluster.created_by_drill
    assert foreign_world.cluster.fingerprint not in foreign_runbook.known_drill_clusters
    assert foreign_taskdb.version is not None
    assert foreign_taskdb.version > drill_config.schema.pilot_version, foreign_taskdb.version


@when("each destructive runbook action is tried:", target_fixture="guard_outcomes")
def _try_each(foreign_runbook, foreign_world, foreign_taskdb, datatable, tmp_path):
    return try_destructive_actions(
        foreign_runbook,
        [name for (name,) in datatable[1:]],
        backup=foreign_taskdb.backup,
        rule_backups=(foreign_world.rule_backup,),
        alerts_dir=tmp_path / "alerts",
    )


@then("every one was refused as an unsafe target, naming the cluster's fingerprint and --cluster-allowlist")
def _all_refused(guard_outcomes, foreign_world):
    fingerprint = foreign_world.cluster.fingerprint
    wrong = {
        name: repr(outcome)
        for name, outcome in guard_outcomes.items()
        if not isinstance(outcome, UnsafeTarget)
        or fingerprint not in str(outcome)
        or "--cluster-allowlist" not in str(outcome)
    }
    assert not wrong, wrong
    assert len(guard_outcomes) == 6


@then("deployment/flowengine, configmap/repo-config and every alert rule keep their resourceVersions")
def _unchanged(foreign_world, drill_config):
    after = resource_versions(foreign_world.api, drill_config.kubernetes)
    assert after == foreign_world.versions


@then("the TaskDB schema version and every table's rows are unchanged")
def _taskdb_unchanged(foreign_taskdb):
    assert schema.current_version(foreign_taskdb.db) == foreign_taskdb.version
    assert table_fingerprints(foreign_taskdb.db.dsn) == foreign_taskdb.tables
