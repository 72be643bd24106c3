# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""The recorder: bundle layout, timeline, atomic evidence, steps, redaction, schema."""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from rollback_drill.errors import ConfigError, DrillError, InputError
from rollback_drill.evidence import (
    EVIDENCE_NAME,
    SCHEMA_ID,
    TIMELINE_NAME,
    Recorder,
    Redactor,
    load_schema,
    new_drill_id,
    validate_evidence,
)
from rollback_drill.evidence.recorder import format_utc, to_jsonable
from rollback_drill.timing.clock import FakeClock

START = datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)
T_WALL_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def redactor() -> Redactor:
    return Redactor(["planted-secret-42"])


@pytest.fixture
def recorder(tmp_path, clock, redactor):
    rec = Recorder.create(tmp_path / "reports", incident="mass-failure", clock=clock, redactor=redactor)
    yield rec
    rec.abort("test teardown")


def read_evidence(rec: Recorder) -> dict:
    return json.loads((rec.bundle_dir / EVIDENCE_NAME).read_text(encoding="utf-8"))


def read_timeline(rec: Recorder) -> list[dict]:
    lines = (rec.bundle_dir / TIMELINE_NAME).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def complete_decision() -> dict:
    return {
        "priority": "P1",
        "criteria_met": [">10 repos failing at once"],
        "action": "roll back",
        "reasons": ["mass failure at Phase 7"],
        "triage_s": 0,
    }


# -- drill id and layout -----------------------------------------------------------


def test_new_drill_id_format():
    drill_id = new_drill_id("mass-failure", START)
    assert re.fullmatch(r"20260302T140509Z-mass-failure-[0-9a-f]{6}", drill_id)
    assert new_drill_id("mass-failure", START) != drill_id


def test_new_drill_id_slugs_the_incident():
    assert new_drill_id("Crash Loop", START).startswith("20260302T140509Z-crash-loop-")


def test_new_drill_id_refuses_a_naive_datetime():
    with pytest.raises(DrillError):
        new_drill_id("mass-failure", datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test


def test_create_makes_the_bundle_directory_named_by_the_drill_id(recorder, tmp_path):
    assert recorder.bundle_dir == tmp_path / "reports" / recorder.drill_id
    assert recorder.bundle_dir.is_dir()
    assert recorder.drill_id.startswith("20260302T140509Z-mass-failure-")


def test_create_accepts_a_given_drill_id_and_refuses_a_reused_one(tmp_path, clock):
    drill_id = "20260302T140509Z-mass-failure-abc123"
    rec = Recorder.create(tmp_path, incident="mass-failure", clock=clock, drill_id=drill_id, redactor=Redactor())
    assert rec.drill_id == drill_id
    rec.abort("done")
    with pytest.raises(InputError, match="already exists"):
        Recorder.create(tmp_path, incident="mass-failure", clock=clock, drill_id=drill_id, redactor=Redactor())


def test_create_refuses_a_malformed_drill_id(tmp_path, clock):
    with pytest.raises(InputError):
        Recorder.create(tmp_path, incident="mass-failure", clock=clock, drill_id="not-an-id")


# -- initial evidence --------------------------------------------------------------


def test_initial_evidence_exists_at_once_and_is_valid(recorder):
    doc = read_evidence(recorder)
    assert validate_evidence(doc) == []
    assert doc["schema"] == SCHEMA_ID
    assert doc["drill_id"] == recorder.drill_id
    assert doc["verdict"] == "aborted"
    assert doc["finished_at"] is None
    assert doc["started_at"] == "2026-03-02T14:05:09.000Z"
    assert doc["incident"] == "mass-failure"
    assert doc["decision"] is None
    assert doc["steps"] == []
    assert doc["runbook"]["id"] == "RB-LAUNCH-002"


def test_timeline_starts_with_drill_started(recorder):
    (first,) = read_timeline(recorder)
    assert first["kind"] == "drill_started"
    assert first["seq"] == 1
    assert first["drill_id"] == recorder.drill_id


# -- timeline ----------------------------------------------------------------------


def test_events_are_on_disk_before_finish(recorder, clock):
    clock.advance(1.5)
    returned = recorder.event("incident_injected", incident="mass-failure", repos=["a", "b"])
    lines = read_timeline(recorder)  # read back while the recorder is still open
    assert lines[-1] == returned
    assert returned["kind"] == "incident_injected"
    assert returned["repos"] == ["a", "b"]
    assert returned["t_mono"] == 1.5
    assert returned["t_wall"] == "2026-03-02T14:05:10.500Z"
    assert T_WALL_RE.fullmatch(returned["t_wall"])


def test_event_is_fsynced(recorder, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    recorder.event("probe", ok=True)
    assert synced, "event() must fsync the timeline"


def test_event_sequence_numbers_increase(recorder):
    kinds = [recorder.event("tick", n=n)["seq"] for n in range(3)]
    assert kinds == [2, 3, 4]


def test_event_refuses_reserved_field_names(recorder):
    with pytest.raises(DrillError, match="seq"):
        recorder.event("x", seq=5)


def test_events_from_threads_are_whole_lines(recorder):
    def record(worker: int) -> None:
        for n in range(50):
            recorder.event("probe", worker=worker, n=n, payload="x" * 200)

    threads = [threading.Thread(target=record, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = read_timeline(recorder)
    probes = [line for line in lines if line["kind"] == "probe"]
    assert len(probes) == 200
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))


def test_event_converts_paths_datetimes_and_non_finite_floats(recorder):
    written = recorder.event("misc", path=Path("a/b"), at=START, ratio=float("nan"), tags={"b", "a"})
    assert written["path"] == "a/b"
    assert written["at"] == "2026-03-02T14:05:09.000Z"
    assert written["ratio"] is None
    assert written["tags"] == ["a", "b"]


def test_to_jsonable_handles_dataclasses():
    @dataclass(frozen=True)
    class Point:
        x: int
        y: float

    assert to_jsonable({"p": Point(1, 2.5)}) == {"p": {"x": 1, "y": 2.5}}


def test_format_utc_converts_to_utc_with_milliseconds():
    moment = datetime(2026, 3, 2, 16, 5, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert format_utc(moment) == "2026-03-02T14:05:09.123Z"


# -- fields ------------------------------------------------------------------------


def test_set_rewrites_evidence(recorder):
    recorder.set(
        "target", {"kind": "local", "server_version": "v1.34.2", "fingerprint": "https://127.0.0.1:6443#uid-1"}
    )
    recorder.set("decision", complete_decision())
    recorder.set("participants", {"Incident Commander": "Dana"})
    doc = read_evidence(recorder)
    assert doc["target"]["kind"] == "local"
    assert doc["decision"]["priority"] == "P1"
    assert doc["participants"] == {"Incident Commander": "Dana"}
    assert validate_evidence(doc) == []
    assert recorder.evidence == doc


def test_set_refuses_fields_the_recorder_keeps(recorder):
    for field in ("verdict", "steps", "finished_at", "drill_id", "schema"):
        with pytest.raises(DrillError):
            recorder.set(field, "x")


def test_append_creates_and_extends_list_fields(recorder):
    recorder.append("faults", {"kind": "pod-kill"})
    recorder.append("faults", {"kind": "db-down"})
    recorder.append("notifications", {"channel": "slack", "text": "rolling back"})
    doc = read_evidence(recorder)
    assert doc["faults"] == [{"kind": "pod-kill"}, {"kind": "db-down"}]
    assert doc["notifications"] == [{"channel": "slack", "text": "rolling back"}]
    assert validate_evidence(doc) == []


def test_append_refuses_a_non_list_field(recorder):
    with pytest.raises(DrillError, match="not a list"):
        recorder.append("participants", "x")


def test_warn_records_in_evidence_and_timeline(recorder):
    recorder.warn("runbook-drift", "PrometheusRule has no /spec/groups/0/rules/0/enabled", step="step-4")
    doc = read_evidence(recorder)
    assert doc["warnings"] == [
        {"code": "runbook-drift", "message": "PrometheusRule has no /spec/groups/0/rules/0/enabled", "step": "step-4"}
    ]
    assert read_timeline(recorder)[-1]["kind"] == "warning"
    assert validate_evidence(doc) == []


def test_set_targets(recorder):
    targets = [
        {"name": "rollback_execution", "limit": 600, "measured": 45.2, "unit": "s", "met": True},
        {"name": "detect", "limit": None, "measured": 12.0, "unit": "s", "met": None},
    ]
    recorder.set_targets(targets)
    doc = read_evidence(recorder)
    assert doc["targets"] == targets
    assert validate_evidence(doc) == []


def test_add_artifact_records_relative_path_hash_and_size(recorder):
    logs = recorder.bundle_dir / "logs"
    logs.mkdir()
    (logs / "flowengine.log").write_bytes(b"hello\n")
    entry = recorder.add_artifact(logs / "flowengine.log")
    assert entry == {
        "path": "logs/flowengine.log",
        "sha256": "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
        "bytes": 6,
    }
    assert read_evidence(recorder)["artifacts"] == [entry]
    assert recorder.add_artifact(Path("logs/flowengine.log")) == entry  # relative to the bundle


def test_add_artifact_refuses_files_outside_the_bundle(recorder, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    with pytest.raises(DrillError, match="outside the bundle"):
        recorder.add_artifact(outside)


# -- atomic rewrite ----------------------------------------------------------------


def test_evidence_is_replaced_atomically(recorder, monkeypatch):
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    recorder.set("mode", "drill")
    ((src, dst),) = replaced
    assert Path(src).parent == recorder.bundle_dir  # same directory, so the rename is atomic
    assert Path(dst) == recorder.bundle_dir / EVIDENCE_NAME
    assert not Path(src).exists()
    assert read_evidence(recorder)["mode"] == "drill"


def test_failed_rewrite_leaves_the_previous_evidence_and_no_temp_file(recorder, monkeypatch):
    before = (recorder.bundle_dir / EVIDENCE_NAME).read_text()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        recorder.set("mode", "drill")
    monkeypatch.undo()
    assert (recorder.bundle_dir / EVIDENCE_NAME).read_text() == before
    assert sorted(p.name for p in recorder.bundle_dir.iterdir()) == [EVIDENCE_NAME, TIMELINE_NAME]


# -- steps -------------------------------------------------------------------------


def test_step_elapsed_comes_from_the_clock(recorder, clock):
    recorder.begin_step("step-1", "Disable orchestrator for expanded repos", 120)
    clock.advance(45.25)
    entry = recorder.end_step("step-1")
    assert entry["elapsed_s"] == 45.25
    assert entry["status"] == "pass"
    assert entry["started_at"] == "2026-03-02T14:05:09.000Z"
    assert entry["finished_at"] == "2026-03-02T14:05:54.250Z"
    assert entry["error"] is None
    assert read_evidence(recorder)["steps"] == [entry]


def test_step_over_its_budget_is_over_budget(recorder, clock):
    recorder.begin_step("step-2", "Scale down FlowEngine", 180)
    clock.advance(180.5)
    assert recorder.end_step("step-2")["status"] == "over-budget"


def test_step_exactly_at_its_budget_passes(recorder, clock):
    recorder.begin_step("step-2", "Scale down FlowEngine", 180)
    clock.advance(180)
    assert recorder.end_step("step-2")["status"] == "pass"


def test_explicit_status_and_error(recorder, clock):
    recorder.begin_step("pre-3", "Backup", 300)
    clock.advance(1)
    entry = recorder.end_step("pre-3", "fail", "pg_dump exited 1")
    assert (entry["status"], entry["error"]) == ("fail", "pg_dump exited 1")


def test_running_step_is_written_as_not_finished(recorder, clock):
    recorder.begin_step("step-3", "Revert TaskDB schema", 300)
    (step,) = read_evidence(recorder)["steps"]
    assert step["status"] == "fail"
    assert step["error"] == "not finished"
    assert step["elapsed_s"] is None
    assert validate_evidence(read_evidence(recorder)) == []


def test_step_events(recorder, clock):
    recorder.begin_step("step-1", "Disable orchestrator", 120)
    clock.advance(3)
    recorder.end_step("step-1")
    started, finished = read_timeline(recorder)[-2:]
    assert started["kind"] == "step_started"
    assert started["step"] == "step-1"
    assert finished["kind"] == "step_finished"
    assert finished["status"] == "pass"
    assert finished["elapsed_s"] == 3


def test_step_id_budget_and_status_are_checked(recorder):
    with pytest.raises(DrillError):
        recorder.begin_step("step-9", "No such step", 60)
    with pytest.raises(ConfigError):
        recorder.begin_step("step-1", "Zero budget", 0)
    recorder.begin_step("step-1", "Disable orchestrator", 120)
    with pytest.raises(DrillError, match="already running"):
        recorder.begin_step("step-1", "Disable orchestrator", 120)
    with pytest.raises(DrillError):
        recorder.end_step("step-1", "done")
    with pytest.raises(DrillError, match="not running"):
        recorder.end_step("step-2")


def test_skip_step(recorder):
    recorder.skip_step("step-2", "Scale down FlowEngine", 180, "already at pilot replicas")
    (step,) = read_evidence(recorder)["steps"]
    assert step["status"] == "skipped"
    assert step["error"] == "already at pilot replicas"
    assert validate_evidence(read_evidence(recorder)) == []


# -- finish and abort --------------------------------------------------------------


def test_finish_seals_the_bundle(recorder, clock):
    recorder.set("decision", complete_decision())
    clock.advance(600)
    recorder.finish("pass")
    doc = read_evidence(recorder)
    assert doc["verdict"] == "pass"
    assert doc["finished_at"] == "2026-03-02T14:15:09.000Z"
    assert validate_evidence(doc) == []
    assert read_timeline(recorder)[-1]["kind"] == "drill_finished"
    assert recorder.finished


def test_calls_after_finish_raise(recorder):
    recorder.finish("fail")
    with pytest.raises(DrillError, match="sealed"):
        recorder.event("late")
    with pytest.raises(DrillError):
        recorder.set("mode", "x")
    with pytest.raises(DrillError):
        recorder.begin_step("step-1", "x", 1)
    with pytest.raises(DrillError):
        recorder.finish("pass")
    recorder.abort("teardown")  # a no-op, not an error
    assert read_evidence(recorder)["verdict"] == "fail"


def test_finish_refuses_an_unknown_verdict(recorder):
    with pytest.raises(DrillError, match="verdict"):
        recorder.finish("passed")


def test_open_step_at_finish_fails_with_not_finished(recorder, clock):
    recorder.begin_step("step-5", "Verify pilot", 300)
    clock.advance(10)
    recorder.finish("fail")
    (step,) = read_evidence(recorder)["steps"]
    assert (step["status"], step["error"], step["elapsed_s"]) == ("fail", "not finished", 10)


def test_abort_leaves_verdict_aborted_and_valid_json(recorder, clock):
    recorder.begin_step("step-1", "Disable orchestrator", 120)
    clock.advance(2)
    recorder.abort("KeyboardInterrupt")
    doc = read_evidence(recorder)
    assert doc["verdict"] == "aborted"
    assert doc["finished_at"] is not None
    assert doc["abort_reason"] == "KeyboardInterrupt"
    assert validate_evidence(doc) == []
    kinds = [line["kind"] for line in read_timeline(recorder)]
    assert kinds[-3:] == ["drill_aborted", "step_finished", "drill_finished"]


def test_abort_is_idempotent(recorder):
    recorder.abort("first")
    recorder.abort("second")
    assert read_evidence(recorder)["abort_reason"] == "first"
    assert [line["kind"] for line in read_timeline(recorder)].count("drill_aborted") == 1


def test_context_manager_aborts_on_exception(tmp_path, clock):
    with (
        pytest.raises(RuntimeError),
        Recorder.create(tmp_path, incident="crash-loop", clock=clock, redactor=Redactor()) as rec,
    ):
        raise RuntimeError("boom")
    doc = read_evidence(rec)
    assert doc["verdict"] == "aborted"
    assert doc["abort_reason"] == "RuntimeError: boom"


# -- redaction ---------------------------------------------------------------------


def test_secrets_never_reach_the_bundle(recorder, clock):
    dsn = "postgresql://drill:dsn-pw-9931@127.0.0.1:5432/taskdb"
    recorder.event("taskdb_connected", dsn=dsn, note="planted-secret-42 in a message")
    recorder.event("http", headers={"Authorization": "Bearer tok-xyz-123"}, line="Authorization: Bearer tok-abc-777")
    recorder.event("env", line="SLACK_TOKEN=xoxb-1111 PAGERDUTY_API_KEY=pd-2222 password=kw-3333")
    recorder.set("target", {"kind": "kubeconfig", "server_version": "v1.34.2", "fingerprint": "https://h:6443#u"})
    recorder.set("measurements", {"dsn": dsn, "api_token": "raw-token-4444"})
    recorder.begin_step("pre-1", "Confirm incident", 60)
    recorder.end_step("pre-1", "fail", "could not connect to postgresql://drill:dsn-pw-9931@db (planted-secret-42)")
    recorder.warn("leak", "saw planted-secret-42")
    recorder.abort("stopped; password=kw-5555")

    texts = [p.read_text(encoding="utf-8") for p in recorder.bundle_dir.iterdir()]
    everything = "\n".join(texts)
    for secret in (
        "dsn-pw-9931",
        "planted-secret-42",
        "tok-xyz-123",
        "tok-abc-777",
        "xoxb-1111",
        "pd-2222",
        "kw-3333",
        "raw-token-4444",
        "kw-5555",
    ):
        assert secret not in everything, secret
    assert "postgresql://drill:***@127.0.0.1:5432/taskdb" in everything
    assert validate_evidence(read_evidence(recorder)) == []


def test_evidence_property_is_a_redacted_copy(recorder):
    recorder.set("measurements", {"note": "planted-secret-42"})
    copy_ = recorder.evidence
    assert copy_["measurements"] == {"note": "***"}
    copy_["measurements"]["note"] = "changed"
    assert recorder.evidence["measurements"] == {"note": "***"}


# -- schema ------------------------------------------------------------------------


def test_load_schema_is_the_repository_contract():
    repo_schema = Path(__file__).resolve().parent.parent / "schemas" / "evidence-v1.json"
    assert json.loads(repo_schema.read_text(encoding="utf-8")) == load_schema()
    assert load_schema()["properties"]["schema"]["const"] == SCHEMA_ID


def complete_document() -> dict:
    return {
        "schema": "rollback-drill/evidence-v1",
        "drill_id": "20260302T140509Z-mass-failure-0a1b2c",
        "runbook": {"id": "RB-LAUNCH-002", "sha256": "a" * 64},
        "tool": {"version": "0.1.0", "git_sha": "0123456789abcdef0123456789abcdef01234567"},
        "config_sha256": "b" * 64,
        "started_at": "2026-03-02T14:05:09Z",
        "finished_at": "2026-03-02T14:19:41.250Z",
        "verdict": "pass",
        "target": {"kind": "local", "server_version": "v1.34.2", "fingerprint": "https://127.0.0.1:6443#7c1e-uid"},
        "incident": "mass-failure",
        "decision": complete_decision(),
        "participants": {"SRE Lead": "Ana", "Incident Commander": "Ben"},
        "steps": [
            {
                "id": step_id,
                "title": f"Runbook {step_id}",
                "budget_s": 120,
                "elapsed_s": 12.5,
                "status": "pass",
                "started_at": "2026-03-02T14:06:00.000Z",
                "finished_at": "2026-03-02T14:06:12.500Z",
                "error": None,
            }
            for step_id in ("pre-1", "pre-2", "pre-3", *(f"step-{n}" for n in range(1, 9)), "soak", "phase-1")
        ],
        "targets": [
            {"name": "rollback_execution", "limit": 600, "measured": 45.0, "unit": "s", "met": True},
            {"name": "pilot_impact", "limit": 0, "measured": 0, "unit": "requests", "met": True},
            {"name": "detect", "limit": None, "measured": 8.0, "unit": "s", "met": None},
        ],
        "artifacts": [{"path": "logs/flowengine.log", "sha256": "c" * 64, "bytes": 1024}],
        "notifications": [{"channel": "slack", "text": "Rolling back to pilot scope"}],
        "phases": [{"id": "phase-1", "repos": ["inventory-mgmt"]}],
        "conformance": {"findings": []},
        "faults": [],
        "warnings": [{"code": "runbook-drift", "message": "no such field", "step": "step-4"}],
        "measurements": {"expanded_downtime_s": 93.0},
        "mode": "drill",
        "abort_reason": None,
        "a_field_added_later": {"anything": True},
    }


def test_schema_accepts_a_complete_document():
    assert validate_evidence(complete_document()) == []


@pytest.mark.parametrize(
    ("change", "path_fragment"),
    [
        (lambda d: d.update(verdict="passed"), "$.verdict"),
        (lambda d: d.pop("drill_id"), "'drill_id' is a required property"),
        (lambda d: d["steps"][0].update(id="step-9"), "$.steps[0].id"),
        (lambda d: d["steps"][0].update(id="Step 1"), "$.steps[0].id"),
        (lambda d: d["steps"][0].update(status="running"), "$.steps[0].status"),
        (lambda d: d["steps"][0].update(extra=1), "$.steps[0]"),
        (lambda d: d.update(drill_id="2026-03-02-mass-failure"), "$.drill_id"),
        (lambda d: d.update(schema="rollback-drill/evidence-v2"), "$.schema"),
        (lambda d: d.update(started_at="2026-03-02T14:05:09+01:00"), "$.started_at"),
        (lambda d: d["decision"].update(priority="P3"), "$.decision"),
        (lambda d: d["targets"][0].pop("met"), "$.targets[0]"),
        (lambda d: d["artifacts"][0].update(path="../outside"), "$.artifacts[0].path"),
        (lambda d: d["artifacts"][0].update(sha256="xyz"), "$.artifacts[0].sha256"),
        (lambda d: d.update(finished_at=None), "$.verdict"),  # only an aborted drill may be unfinished
        (lambda d: d["participants"].update(SRE=3), "$.participants.SRE"),
    ],
)
def test_schema_rejects(change, path_fragment):
    doc = complete_document()
    change(doc)
    errors = validate_evidence(doc)
    assert errors
    assert any(path_fragment in error for error in errors), errors


def test_add_artifacts_records_a_batch_with_one_entry_and_one_event_per_file(tmp_path):
    recorder = Recorder.create(tmp_path, incident="mass-failure", clock=FakeClock(datetime(2026, 11, 27, tzinfo=UTC)))
    paths = []
    for index in range(3):
        path = recorder.bundle_dir / "backups" / f"rule-{index}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"rule {index}\n")
        paths.append(path)
    entries = recorder.add_artifacts(paths)
    assert [e["path"] for e in entries] == [f"backups/rule-{i}.yaml" for i in range(3)]
    assert recorder.evidence["artifacts"] == entries
    events = [json.loads(line) for line in (recorder.bundle_dir / "timeline.jsonl").read_text().splitlines()]
    assert [e["path"] for e in events if e["kind"] == "artifact_added"] == [e["path"] for e in entries]
