# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""controls.json and the report's "Controls" and "Gaps and follow-ups": each control mapped to
the evidence that answers it, and each gap with an owner from the runbook and a due date."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from rollback_drill.config import Drills
from rollback_drill.evidence import Recorder, Redactor
from rollback_drill.evidence.bundle import MANIFEST_NAME, load_evidence, load_timeline, parse_manifest
from rollback_drill.evidence.controls import (
    CONTROLS_NAME,
    CONTROLS_SCHEMA,
    contact_list,
    controls_document,
    next_drill_due,
    next_quarterly_due,
)
from rollback_drill.evidence.finalize import finalize_bundle
from rollback_drill.timing.clock import FakeClock

START = datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)
DRILLS = Drills(date(2025, 11, 17), date(2025, 12, 8), 90)
CONTROL_IDS = [
    "SOC 2 A1.3",
    "ISO/IEC 27001:2022 A.5.30",
    "ISO/IEC 27001:2022 A.8.13",
    "DORA Art. 11(6)",
    "DORA Art. 12",
]


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch) -> Path:
    """Keys and history go to a temporary XDG_STATE_HOME, never the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def drill(evidence_dir: Path, *, missed: bool = False, incident: str = "mass-failure", warnings=()) -> Recorder:
    clock = FakeClock(START)
    rec = Recorder.create(evidence_dir, incident=incident, clock=clock, redactor=Redactor())
    rec.set("runbook", {"id": "RB-LAUNCH-002", "sha256": "a" * 64})
    rec.set("config_sha256", "b" * 64)
    rec.set("participants", {"Incident Commander": "Dana", "SRE Lead": "Sam"})
    rec.begin_step("pre-3", "Backup current state", 300)
    clock.advance(20)
    rec.end_step("pre-3")
    rec.event("backup_verified", tables={"flows": 12, "tasks": 40, "model_routes": 3})
    backup = rec.bundle_dir / "backups" / "taskdb.sql"
    backup.parent.mkdir()
    backup.write_text("-- dump\n", encoding="utf-8")
    rec.add_artifact(backup)
    rec.begin_step("step-1", "Restrict the allowlist", 120)
    clock.advance(45)
    rec.end_step("step-1")
    for code, message, step in warnings:
        rec.warn(code, message, step)
    rec.set_targets(
        [
            {
                "name": "rollback_execution",
                "limit": 600,
                "measured": 700.0 if missed else 45.0,
                "unit": "s",
                "met": not missed,
            },
            {"name": "pilot_impact", "limit": 0, "measured": 0, "unit": "requests", "met": True},
        ]
    )
    rec.finish("fail" if missed else "pass")
    return rec


def document(rec: Recorder) -> dict:
    return controls_document(load_evidence(rec.bundle_dir), load_timeline(rec.bundle_dir), drills=DRILLS)


def control(doc: dict, control_id: str) -> dict:
    return next(c for c in doc["controls"] if c["id"] == control_id)


def row(entry: dict, field: str) -> dict:
    return next(r for r in entry["evidence"] if r["field"] == field)


def test_the_contact_list_is_the_runbooks():
    owners = contact_list()
    assert str(owners["Incident Commander"]) == "Incident Commander (SRE Lead; backup Engineering TL)"
    assert (owners["Engineering"].primary, owners["Security"].primary, owners["Database"].primary) == (
        "Engineering TL",
        "InfoSec Lead",
        "DBA",
    )
    assert contact_list("no such section\n") == {}


def test_the_next_drill_is_the_quarterly_date_or_an_earlier_pre_phase_date():
    assert next_quarterly_due(date(2026, 1, 1), 90) == date(2026, 4, 1)
    assert next_drill_due(date(2026, 1, 1), passed=True, drills=DRILLS) == date(2026, 4, 1)
    assert next_drill_due(date(2025, 11, 1), passed=True, drills=DRILLS) == date(2025, 11, 17)
    assert next_drill_due(date(2026, 1, 1), passed=False, drills=DRILLS) == date(2026, 1, 1)


def test_each_control_names_the_evidence_that_answers_it(tmp_path):
    doc = document(drill(tmp_path))
    assert doc["schema"] == CONTROLS_SCHEMA
    assert [c["id"] for c in doc["controls"]] == CONTROL_IDS
    assert all(c["asks"] and c["evidence"] for c in doc["controls"])
    soc2 = control(doc, "SOC 2 A1.3")
    assert row(soc2, "targets[rollback_execution].measured") == {
        "field": "targets[rollback_execution].measured",
        "measured": "45 s",
        "objective": "< 600 s",
        "met": True,
    }
    assert soc2["status"] == "evidenced"
    backup = row(control(doc, "ISO/IEC 27001:2022 A.8.13"), "timeline: backup_verified")
    assert backup["met"] is True
    assert "3 tables" in backup["measured"]
    assert row(control(doc, "ISO/IEC 27001:2022 A.8.13"), "artifacts[backups/*]")["met"] is True
    dora = control(doc, "DORA Art. 11(6)")
    assert row(dora, "participants")["measured"] == "Incident Commander: Dana, SRE Lead: Sam"
    assert row(dora, "approvals/")["met"] is None
    assert row(dora, "next drill (drill.yaml schedule)")["measured"] == "2026-05-31"
    assert doc["next_drill_due"] == "2026-05-31"
    assert row(control(doc, "DORA Art. 12"), "targets[pilot_impact].measured")["objective"] == "<= 0 failed requests"
    assert doc["gaps"] == []


def test_a_backup_taken_but_not_verified_is_not_met(tmp_path):
    rec = drill(tmp_path)
    evidence = load_evidence(rec.bundle_dir)
    timeline = [e for e in load_timeline(rec.bundle_dir) if e["kind"] != "backup_verified"]
    doc = controls_document(evidence, timeline, drills=DRILLS)
    assert control(doc, "ISO/IEC 27001:2022 A.8.13")["status"] == "not met"


def test_gaps_have_an_owner_from_the_runbook_and_a_due_date(tmp_path):
    rec = drill(
        tmp_path,
        missed=True,
        incident="security-breach",
        warnings=[
            ("runbook-drift", "PrometheusRule has no /spec/groups/0/rules/0/enabled", "step-4"),
            ("put-back-failed", "the cluster was not put back as it was", None),
        ],
    )
    doc = document(rec)
    assert control(doc, "SOC 2 A1.3")["status"] == "not met"
    gaps = {(g["kind"], g["item"]): g for g in doc["gaps"]}
    assert set(gaps) == {
        ("missed-target", "rollback_execution"),
        ("runbook-drift", "step-4"),
        ("put-back", "put-back-failed"),
        ("manual-step", "credential rotation"),
    }
    missed = gaps[("missed-target", "rollback_execution")]
    assert missed["owner"] == "Incident Commander (SRE Lead; backup Engineering TL)"
    assert missed["due"] == "2026-03-03T14:06:14.000Z"  # 24 hours after the drill finished
    assert gaps[("put-back", "put-back-failed")]["due"] == missed["due"]
    drift = gaps[("runbook-drift", "step-4")]
    assert drift["owner"] == "Engineering (Engineering TL; backup Senior Eng)"
    assert drift["due"] == "2026-03-02"  # a failed drill: the next one is due at once
    assert gaps[("manual-step", "credential rotation")]["owner"].startswith("Security (InfoSec Lead")


def test_manual_runbook_commands_are_follow_ups():
    evidence = {
        "drill_id": "x",
        "verdict": "pass",
        "finished_at": "2026-03-02T14:00:00.000Z",
        "conformance": {"commands": [{"line": 210, "status": "manual", "why": "opens a dashboard"}]},
    }
    (gap,) = controls_document(evidence, [], drills=DRILLS)["gaps"]
    assert (gap["kind"], gap["item"], gap["due"]) == ("manual-step", "runbook line 210", "2026-05-31")


def test_finalize_seals_controls_json_and_the_report_shows_both_sections(tmp_path):
    rec = drill(tmp_path, warnings=[("runbook-drift", "PrometheusRule has no enabled field", "step-4")])
    finalize_bundle(rec.bundle_dir, redactor=Redactor())
    written = json.loads((rec.bundle_dir / CONTROLS_NAME).read_text(encoding="utf-8"))
    assert [c["id"] for c in written["controls"]] == CONTROL_IDS
    entries, _ = parse_manifest((rec.bundle_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert CONTROLS_NAME in entries
    page = (rec.bundle_dir / "report.html").read_text(encoding="utf-8")
    assert "<h2>Controls</h2>" in page
    assert "<h2>Gaps and follow-ups</h2>" in page
    assert "SOC 2 A1.3" in page
    assert "DORA Art. 11(6)" in page
    assert "Engineering (Engineering TL; backup Senior Eng)" in page
