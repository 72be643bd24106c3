# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""Step times and drill targets measured again from the timeline (``evidence verify --recompute``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollback_drill.cli import main
from rollback_drill.evidence import EVIDENCE_NAME, TIMELINE_NAME, Recorder, Redactor
from rollback_drill.evidence.bundle import load_evidence, load_timeline, seal
from rollback_drill.evidence.finalize import finalize_bundle
from rollback_drill.evidence.measured import (
    DRILL_MEASURED,
    TARGETS_MEASURED,
    recompute,
    recomputed_targets,
    record_drill_target,
    record_targets,
)
from rollback_drill.evidence.verify import verify
from rollback_drill.timing.clock import FakeClock
from rollback_drill.timing.probe import ProbeOutcome, ProbeSample
from rollback_drill.timing.windows import (
    BUNDLE_SEALED,
    DECISION_MADE,
    DRILL_START,
    INCIDENT_INJECTED,
    Marks,
    drill_target,
    measure_targets_from_samples,
    step_end,
    step_start,
)

START = datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    """History goes to a temporary XDG_STATE_HOME, never the user's."""
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


def sample(t: float, *, ok: bool = True) -> ProbeSample:
    return ProbeSample(t, START, ProbeOutcome(ok=ok, kind="served" if ok else "error"), 0.01)


def measured_drill(evidence_dir: Path) -> Path:
    """A drill through the real recorder on a fake clock, its targets measured as the drill measures them."""
    clock = FakeClock(START)
    marks = Marks(clock)
    marks.mark(DRILL_START)
    rec = Recorder.create(evidence_dir, incident="mass-failure", clock=clock, redactor=Redactor())
    clock.advance(2)
    marks.mark(INCIDENT_INJECTED)
    rec.event("incident_injected", incident="mass-failure")
    clock.advance(3)
    marks.mark(DECISION_MADE)
    rec.event("decision_made", priority="P1")
    pilot, expanded = [], []
    for step_id, took_s in (("step-1", 40), ("step-2", 10), ("step-3", 12), ("step-4", 15), ("step-5", 30)):
        rec.begin_step(step_id, f"runbook {step_id}", 120)
        marks.mark(step_start(step_id))
        for tick in range(took_s):
            now = clock.monotonic() + tick
            pilot.append(sample(now))
            expanded.append(sample(now, ok=step_id != "step-1" or tick > 20))
        clock.advance(took_s)
        rec.end_step(step_id)
        marks.mark(step_end(step_id))
    rec.skip_step("step-6", "runbook step-6", 60, "not part of this drill")
    marks.mark(step_end("step-8"), clock.monotonic())
    record_targets(rec, marks, pilot_samples=pilot, expanded_samples=expanded, pilot_hit=False, limits={})
    clock.advance(4)
    record_drill_target(rec, marks)
    rec.finish("pass")
    finalize_bundle(rec.bundle_dir, redactor=Redactor())
    return rec.bundle_dir


@pytest.fixture
def bundle(tmp_path) -> Path:
    return measured_drill(tmp_path / "reports")


def edit_evidence(bundle: Path, change) -> None:
    """Change evidence.json as a forger would, and seal the manifest again so the files still verify."""
    doc = json.loads((bundle / EVIDENCE_NAME).read_text(encoding="utf-8"))
    change(doc)
    (bundle / EVIDENCE_NAME).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    seal(bundle, redactor=Redactor())


def target(doc, name):
    return next(t for t in doc["targets"] if t["name"] == name)


# -- the pure measurement --------------------------------------------------------------------------


def test_targets_from_samples_count_only_step_1_to_step_8():
    marks = Marks(FakeClock(START))
    marks.mark(step_start("step-1"), 10.0)
    marks.mark(step_end("step-4"), 55.0)
    marks.mark(step_end("step-8"), 100.0)
    pilot = [sample(5.0, ok=False), sample(20.0, ok=False), sample(30.0), sample(120.0, ok=False)]
    expanded = [sample(11.0, ok=False), sample(14.0), sample(200.0, ok=False)]
    rows = {t.name: t for t in measure_targets_from_samples(marks, pilot, expanded, pilot_hit=False)}
    assert rows["pilot_impact"].measured == 1
    assert rows["pilot_impact"].met is False
    assert rows["expanded_downtime"].measured == pytest.approx(3.0)
    assert rows["rollback_execution"].measured == pytest.approx(45.0)


def test_targets_from_samples_time_a_pilot_hit_from_the_injection():
    marks = Marks(FakeClock(START))
    marks.mark(INCIDENT_INJECTED, 0.0)
    marks.mark(step_start("step-1"), 10.0)
    marks.mark(step_end("step-5"), 60.0)
    marks.mark(step_end("step-8"), 100.0)
    pilot = [sample(12.0, ok=False), sample(25.0)]
    rows = {t.name: t for t in measure_targets_from_samples(marks, pilot, [], pilot_hit=True)}
    assert "pilot_impact" not in rows
    assert rows["pilot_restored_by_step_5"].measured == pytest.approx(25.0)
    assert rows["pilot_restored_by_step_5"].met is True


def test_drill_target_needs_both_marks_and_rounds_to_the_millisecond():
    marks = Marks(FakeClock(START))
    assert drill_target(marks) is None
    marks.mark(DRILL_START, 1.0)
    marks.mark(BUNDLE_SEALED, 61.23456)
    row = drill_target(marks)
    assert row is not None
    assert row.measured == 60.235
    assert row.met is True
    assert row.limit == 1200.0


# -- recording the inputs ------------------------------------------------------------------------------


def test_the_timeline_holds_what_the_targets_were_measured_from(bundle):
    events = load_timeline(bundle)
    measured = [e for e in events if e["kind"] == TARGETS_MEASURED]
    assert len(measured) == 1
    marks = measured[0]["marks"]
    assert marks[step_start("step-1")] - marks[DRILL_START] == pytest.approx(5.0)
    assert len(measured[0]["pilot_samples"]) == 107
    assert [e["kind"] for e in events].count(DRILL_MEASURED) == 1
    recorded = {t["name"]: t for t in load_evidence(bundle)["targets"]}
    assert {t.name: t.as_evidence() for t in recomputed_targets(events)} == recorded
    assert recorded["expanded_downtime"]["measured"] == pytest.approx(21.0)
    assert recorded["drill"]["measured"] == pytest.approx(116.0)


def test_record_drill_target_without_a_drill_start_leaves_the_targets_alone(tmp_path):
    rec = Recorder.create(tmp_path, incident="mass-failure", clock=FakeClock(START), redactor=Redactor())
    assert record_drill_target(rec, Marks(rec.clock)) is True
    assert rec.evidence["targets"] == []
    rec.finish("pass")


# -- recomputing ------------------------------------------------------------------------------------


def test_an_unedited_bundle_recomputes(bundle):
    report = verify(bundle, allowed_signers=None, recompute_from_timeline=True)
    assert report.ok, report.problems
    assert report.recomputation is not None
    assert report.recomputation.steps_checked == 6
    assert report.recomputation.targets_checked == 8


@pytest.mark.parametrize("name", ["rollback_execution", "expanded_downtime", "pilot_impact", "drill"])
def test_an_edited_target_fails_naming_it_and_both_values(bundle, name):
    before = target(load_evidence(bundle), name)["measured"]
    edit_evidence(bundle, lambda doc: target(doc, name).update(measured=before + 1))
    assert verify(bundle, allowed_signers=None).ok, "the manifest was sealed again: the files alone verify"
    report = verify(bundle, allowed_signers=None, recompute_from_timeline=True)
    assert not report.ok
    assert report.recomputation is not None
    (difference,) = report.recomputation.differences
    assert (difference.kind, difference.name, difference.field) == ("target", name, "measured")
    assert difference.recorded == before + 1
    assert difference.recomputed == pytest.approx(before)
    assert name in str(report.problems[0])


def test_an_edited_verdict_of_a_target_fails(bundle):
    edit_evidence(bundle, lambda doc: target(doc, "pilot_impact").update(met=False))
    report = verify(bundle, allowed_signers=None, recompute_from_timeline=True)
    assert [(d.name, d.field) for d in report.recomputation.differences] == [("pilot_impact", "met")]


def test_a_target_the_timeline_cannot_measure_fails(bundle):
    edit_evidence(
        bundle,
        lambda doc: doc["targets"].append({"name": "detect", "limit": None, "measured": 1.0, "unit": "s", "met": None}),
    )
    result = recompute(load_evidence(bundle), load_timeline(bundle))
    assert [(d.name, d.recomputed) for d in result.differences] == [("detect", 3.0)]


def test_an_edited_step_time_fails_naming_the_step(bundle):
    def slower_step_3(doc):
        next(s for s in doc["steps"] if s["id"] == "step-3")["elapsed_s"] = 2.5

    edit_evidence(bundle, slower_step_3)
    report = verify(bundle, allowed_signers=None, recompute_from_timeline=True)
    (difference,) = report.recomputation.differences
    assert (difference.kind, difference.name, difference.recorded, difference.recomputed) == (
        "step",
        "step-3",
        2.5,
        12.0,
    )


def test_a_step_whose_events_disagree_with_their_instants_fails(bundle):
    """Editing the step_finished event's stated time as well is caught by the events' own instants."""
    events = load_timeline(bundle)
    for event in events:
        if event["kind"] == "step_finished" and event["step"] == "step-2":
            event["elapsed_s"] = 99.0
    (bundle / TIMELINE_NAME).write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    edit_evidence(bundle, lambda doc: next(s for s in doc["steps"] if s["id"] == "step-2").update(elapsed_s=99.0))
    result = recompute(load_evidence(bundle), load_timeline(bundle))
    (difference,) = result.differences
    assert (difference.name, difference.recorded, difference.recomputed) == ("step-2", 99.0, 10.0)


def test_a_bundle_without_measurements_in_its_timeline_fails_for_each_target(tmp_path):
    rec = Recorder.create(tmp_path, incident="mass-failure", clock=FakeClock(START), redactor=Redactor())
    rec.set_targets([{"name": "rollback_execution", "limit": 600, "measured": 55.0, "unit": "s", "met": True}])
    rec.finish("pass")
    result = recompute(load_evidence(rec.bundle_dir), load_timeline(rec.bundle_dir))
    assert [(d.name, d.recomputed) for d in result.differences] == [("rollback_execution", None)]


def test_the_command_exits_1_naming_the_target(bundle, capsys):
    assert main(["evidence", "verify", "--recompute", str(bundle)]) == 0
    assert "recomputed from the timeline: 6 step(s) and 8 target(s)" in capsys.readouterr().out
    edit_evidence(bundle, lambda doc: target(doc, "rollback_execution").update(measured=45.0))
    assert main(["evidence", "verify", "--recompute", str(bundle)]) == 1
    out = capsys.readouterr().out
    assert "target rollback_execution: measured is 45.0 in evidence.json, 77.0 recomputed from the timeline" in out
    assert main(["evidence", "verify", "--recompute", "--json", str(bundle)]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["recomputed"]["differences"][0]["name"] == "rollback_execution"
