# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""The API server's record of the drill: the local target's audit policy and flags, the slice of the
audit log in the bundle, and each write attributed to a runbook step, a drill phase, or nobody."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_drill.evidence import Recorder, Redactor
from rollback_drill.evidence.audit import (
    AUDIT_NAME,
    BETWEEN_STEPS,
    SET_UP,
    WRAP_UP,
    attribute_writes,
    read_audit_events,
    slice_events,
    step_windows,
)
from rollback_drill.evidence.bundle import MANIFEST_NAME, parse_manifest
from rollback_drill.evidence.finalize import finalize_bundle
from rollback_drill.evidence.recorder import format_utc
from rollback_drill.evidence.verify import verify
from rollback_drill.targets.local import (
    AUDIT_LOG_MAX_BACKUPS,
    AUDIT_LOG_MAX_MB,
    LocalControlPlane,
    audit_flags,
    audit_policy,
    write_audit_policy,
)
from rollback_drill.timing.clock import FakeClock

START = datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)
DRILL = "rollback-drill-admin"
RUNBOOK_SA = "system:serviceaccount:production:rollback-drill"
DRILL_USERS = (DRILL, RUNBOOK_SA)


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch) -> Path:
    """Keys and history go to a temporary XDG_STATE_HOME, never the user's."""
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


def at(seconds: float) -> str:
    """The API server's timestamp (microseconds) ``seconds`` after START."""
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_event(
    seconds: float,
    verb: str = "patch",
    *,
    user: str = DRILL,
    code: int = 200,
    resource: str = "configmaps",
    name: str = "repo-config",
    impersonated: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": f"id-{seconds}-{verb}-{user}",
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": user},
        "objectRef": {"resource": resource, "namespace": "production", "name": name},
        "responseStatus": {"code": code},
        "requestReceivedTimestamp": at(seconds),
        **extra,
    }
    if impersonated:
        event["impersonatedUser"] = {"username": impersonated}
    return event


def step(kind: str, step_id: str, seconds: float) -> dict[str, Any]:
    moment = START + timedelta(seconds=seconds)
    return {"kind": kind, "step": step_id, "t_wall": format_utc(moment)}


TIMELINE = [
    {"kind": "drill_started", "t_wall": format_utc(START)},
    step("step_started", "step-1", 10),
    step("step_finished", "step-1", 20),
    step("step_started", "step-2", 30),
    step("step_finished", "step-2", 40),
]


# -- the local target's policy and flags ---------------------------------------------------------


def test_policy_records_writes_in_full_reads_as_metadata_and_nothing_else():
    rules = audit_policy(("production", "staging"))["rules"]
    assert isinstance(rules, list)
    writes = next(r for r in rules if r["level"] == "RequestResponse")
    assert writes["namespaces"] == ["production", "staging"]
    assert sorted(writes["verbs"]) == ["create", "delete", "deletecollection", "patch", "update"]
    reads = next(r for r in rules if r["level"] == "Metadata" and "verbs" in r)
    assert sorted(reads["verbs"]) == ["get", "list", "watch"]
    assert rules[-1] == {"level": "None"}


def test_secrets_tokens_and_leases_are_never_recorded_with_their_bodies():
    """The first rule that matches wins: the metadata-only rule for Secrets and Leases comes first."""
    rules = audit_policy()["rules"]
    assert isinstance(rules, list)
    first = rules[0]
    assert first["level"] == "Metadata"
    assert "verbs" not in first  # every verb, writes included
    assert {"group": "", "resources": ["secrets", "serviceaccounts/token"]} in first["resources"]
    assert {"group": "coordination.k8s.io", "resources": ["leases"]} in first["resources"]
    assert first["namespaces"] == ["production", "staging", "monitoring"]


def test_policy_file_is_written_beside_the_planes_other_files(tmp_path):
    path = write_audit_policy(tmp_path, ("production",))
    assert path.parent == tmp_path
    assert yaml.safe_load(path.read_text()) == audit_policy(("production",))


def test_audit_flags_name_the_policy_a_json_log_and_a_bound_on_its_size(tmp_path):
    flags = audit_flags(tmp_path / "policy.yaml", tmp_path / "audit.log")
    assert f"--audit-policy-file={tmp_path / 'policy.yaml'}" in flags
    assert f"--audit-log-path={tmp_path / 'audit.log'}" in flags
    assert "--audit-log-format=json" in flags
    assert f"--audit-log-maxsize={AUDIT_LOG_MAX_MB}" in flags
    assert f"--audit-log-maxbackup={AUDIT_LOG_MAX_BACKUPS}" in flags


def test_the_audit_log_survives_the_state_file_and_an_older_state_has_none():
    plane = LocalControlPlane("/d", "/d/kubeconfig", "https://127.0.0.1:1", {"apiserver": 1}, audit_log="/d/a.log")
    assert LocalControlPlane.from_state(json.loads(json.dumps(plane.to_state()))) == plane
    older = plane.to_state()
    del older["audit_log"]
    assert LocalControlPlane.from_state(older).audit_log is None


# -- attribution ------------------------------------------------------------------------------------


def test_step_windows_come_from_the_timeline_and_an_unfinished_step_stays_open():
    windows = step_windows([*TIMELINE, step("step_started", "step-3", 50)])
    assert [(w.step, w.finished is None) for w in windows] == [("step-1", False), ("step-2", False), ("step-3", True)]
    assert windows[2].holds(START + timedelta(days=1))


def test_each_write_goes_to_the_step_or_phase_that_holds_it():
    events = [
        audit_event(2, "create", resource="deployments"),  # seeding
        audit_event(3, "update", user=RUNBOOK_SA, resource="leases"),  # the drill's Lease
        audit_event(12, user=RUNBOOK_SA),
        audit_event(15, "patch", user="system:serviceaccount:kube-system:replicaset-controller", resource="pods"),
        audit_event(25, "patch", resource="pods", subresource="status"),  # kwok, between steps
        audit_event(35, "delete", user=RUNBOOK_SA, resource="pods"),
        audit_event(45, "patch"),  # put-back
    ]
    result = attribute_writes(events, TIMELINE, drill_users=DRILL_USERS)
    assert (result.events, result.writes) == (7, 7)
    assert result.by_step == {"step-1": 2, "step-2": 1}
    assert result.by_phase == {SET_UP: 2, BETWEEN_STEPS: 1, WRAP_UP: 1}
    assert result.unexplained == ()


def test_reads_and_refused_writes_are_not_writes():
    events = [audit_event(12, "get"), audit_event(12, "watch"), audit_event(12, "patch", code=409)]
    result = attribute_writes(events, TIMELINE, drill_users=DRILL_USERS)
    assert (result.events, result.writes, result.by_step) == (3, 0, {})


def test_a_write_by_another_user_is_unexplained_even_inside_a_step():
    events = [audit_event(12, user="jane"), audit_event(25, "delete", user="system:serviceaccount:production:tester")]
    result = attribute_writes(events, TIMELINE, drill_users=DRILL_USERS)
    assert result.writes == 2
    assert result.by_step == {}
    assert [(w["user"], w["verb"], w["name"]) for w in result.unexplained] == [
        ("jane", "patch", "repo-config"),
        ("system:serviceaccount:production:tester", "delete", "repo-config"),
    ]
    assert result.to_evidence()["unexplained"][0]["time"] == at(12)


def test_an_impersonated_write_counts_as_the_user_impersonated():
    """``kubectl --as=someone`` with the drill's own kubeconfig is still somebody else's write."""
    result = attribute_writes([audit_event(12, impersonated="someone")], TIMELINE, drill_users=DRILL_USERS)
    assert [w["impersonated_user"] for w in result.unexplained] == ["someone"]


def test_without_any_step_every_drill_write_is_set_up():
    result = attribute_writes([audit_event(1), audit_event(99)], [], drill_users=DRILL_USERS)
    assert result.by_phase == {SET_UP: 2}


# -- the log and its slice --------------------------------------------------------------------------


def test_rotated_logs_are_read_oldest_first_and_a_torn_last_line_is_skipped(tmp_path):
    log = tmp_path / "audit.log"
    (tmp_path / "audit-2026-03-02T14-05-00.000.log").write_text(json.dumps(audit_event(1)) + "\n")
    log.write_text(json.dumps(audit_event(3)) + "\n" + json.dumps(audit_event(2)) + "\n" + '{"kind": "Ev')
    assert [e["requestReceivedTimestamp"] for e in read_audit_events(log)] == [at(1), at(2), at(3)]
    assert read_audit_events(tmp_path / "absent.log") == []


def test_a_rotated_log_last_written_before_the_drill_is_not_read(tmp_path):
    log = tmp_path / "audit.log"
    old = tmp_path / "audit-2026-03-02T14-00-00.000.log"
    old.write_text(json.dumps(audit_event(-100)) + "\n")
    log.write_text(json.dumps(audit_event(3)) + "\n")
    before = (START - timedelta(seconds=50)).timestamp()
    os.utime(old, (before, before))
    assert [e["requestReceivedTimestamp"] for e in read_audit_events(log, since=START)] == [at(3)]
    assert len(read_audit_events(log)) == 2


def test_the_slice_holds_the_requests_received_within_the_drill():
    events = [audit_event(-1), audit_event(0), audit_event(5), audit_event(10), audit_event(11)]
    kept = slice_events(events, START, START + timedelta(seconds=10))
    assert [e["requestReceivedTimestamp"] for e in kept] == [at(0), at(5), at(10)]


def drill_with_audit(tmp_path: Path, events: list[dict[str, Any]]) -> Path:
    clock = FakeClock(START)
    redactor = Redactor()
    redactor.add_secret("hunter2-long")
    rec = Recorder.create(tmp_path / "reports", incident="mass-failure", clock=clock, redactor=redactor)
    clock.advance(10)
    rec.begin_step("step-1", "Restrict the allowlist", 120)
    clock.advance(10)
    rec.end_step("step-1")
    clock.advance(10)
    rec.finish("pass")
    log = tmp_path / "audit.log"
    log.write_text("".join(json.dumps(event) + "\n" for event in events))
    finalize_bundle(rec.bundle_dir, redactor=redactor, audit_log=log, drill_users=DRILL_USERS)
    return rec.bundle_dir


def test_a_drill_bundle_holds_its_audit_slice_sealed_redacted_and_attributed(tmp_path):
    events = [
        audit_event(-5),  # before the drill: not its own
        audit_event(5, "create", requestObject={"data": {"password": "hunter2-long"}}),
        audit_event(15, user=RUNBOOK_SA),
        audit_event(16, "get"),
        audit_event(25),
        audit_event(99),  # after the drill
    ]
    bundle = drill_with_audit(tmp_path, events)
    audit = (bundle / AUDIT_NAME).read_text()
    assert len(audit.splitlines()) == 4
    assert "hunter2-long" not in audit
    assert AUDIT_NAME in parse_manifest((bundle / MANIFEST_NAME).read_text())[0]
    doc = json.loads((bundle / "evidence.json").read_text())
    assert doc["audit"] == {
        "events": 4,
        "writes": 3,
        "by_step": {"step-1": 1},
        "by_phase": {SET_UP: 1, WRAP_UP: 1},
        "unexplained": [],
    }
    assert not [w for w in doc["warnings"] if w["code"] == "unexplained-write"]
    assert not verify(bundle, allowed_signers=None).problems


def test_an_unexplained_write_is_a_warning_in_the_evidence_and_a_line_in_the_report(tmp_path):
    bundle = drill_with_audit(tmp_path, [audit_event(15, user="jane", name="pilot-switch")])
    doc = json.loads((bundle / "evidence.json").read_text())
    assert [w["user"] for w in doc["audit"]["unexplained"]] == ["jane"]
    warnings = [w for w in doc["warnings"] if w["code"] == "unexplained-write"]
    assert len(warnings) == 1
    assert "jane" in warnings[0]["message"]
    assert "pilot-switch" in warnings[0]["message"]
    report = (bundle / "report.html").read_text()
    assert "unexplained-write" in report
    assert "pilot-switch" in report
    assert not verify(bundle, allowed_signers=None).problems
