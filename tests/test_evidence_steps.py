# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""Grouping Gherkin steps into timed runbook steps."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from rollback_drill.errors import ConfigError
from rollback_drill.evidence import Recorder, Redactor, RunbookStepRef, StepGrouper, parse_runbook_step
from rollback_drill.evidence.recorder import EVIDENCE_NAME, TIMELINE_NAME
from rollback_drill.timing.clock import FakeClock

STEP_1 = 'the SRE performs Step 1 "Disable orchestrator for expanded repos" within 2 minutes'
STEP_2 = 'the SRE performs Step 2 "Scale down FlowEngine" within 3 minutes'


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))


@pytest.fixture
def recorder(tmp_path, clock):
    rec = Recorder.create(tmp_path, incident="mass-failure", clock=clock, redactor=Redactor())
    yield rec
    rec.abort("test teardown")


@pytest.fixture
def grouper(recorder) -> StepGrouper:
    return StepGrouper(recorder)


def steps_of(rec: Recorder) -> list[dict]:
    return json.loads((rec.bundle_dir / EVIDENCE_NAME).read_text())["steps"]


def gherkin_events(rec: Recorder) -> list[dict]:
    lines = (rec.bundle_dir / TIMELINE_NAME).read_text().splitlines()
    return [event for event in map(json.loads, lines) if event["kind"] == "gherkin_step"]


def run(grouper: StepGrouper, clock: FakeClock, text: str, seconds: float, error: str | None = None) -> None:
    grouper.gherkin_step_started(text)
    clock.advance(seconds)
    if error is None:
        grouper.gherkin_step_passed()
    else:
        grouper.gherkin_step_failed(error)


# -- naming steps ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (STEP_1, RunbookStepRef("step-1", "Disable orchestrator for expanded repos", 120.0)),
        (
            'the SRE performs Step 8 "Post-incident review" within 90 seconds',
            RunbookStepRef("step-8", "Post-incident review", 90.0),
        ),
        (
            'the SRE performs pre-rollback check 1 "Confirm incident" within 5 minutes',
            RunbookStepRef("pre-1", "Confirm incident", 300.0),
        ),
        (
            'the SRE performs pre-rollback check 3 "Backup TaskDB" within 10 min',
            RunbookStepRef("pre-3", "Backup TaskDB", 600.0),
        ),
        (
            'the SRE performs the soak "Soak in staging" within 2 hours',
            RunbookStepRef("soak", "Soak in staging", 7200.0),
        ),
        (
            'the SRE performs Phase 2 "Re-enable critical repos" within 1.5 hours',
            RunbookStepRef("phase-2", "Re-enable critical repos", 5400.0),
        ),
    ],
)
def test_parse_runbook_step(text, expected):
    assert parse_runbook_step(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "the drill world at Phase 6 with 10 expanded repos",
        'the SRE performs Step 9 "No such step" within 2 minutes',
        'the SRE performs Step 0 "No such step" within 2 minutes',
        'the SRE performs pre-rollback check 4 "No such check" within 2 minutes',
        'the SRE performs Phase 4 "No such phase" within 2 minutes',
        "the SRE performs Steps 1 to 5",
        'the SRE performs Step 1 "Disable orchestrator" quickly',
        'before the SRE performs Step 1 "Disable orchestrator" within 2 minutes',
    ],
)
def test_other_texts_name_no_runbook_step(text):
    assert parse_runbook_step(text) is None


def test_the_gherkin_keyword_may_lead_the_text():
    assert parse_runbook_step(f"When {STEP_1}") == parse_runbook_step(STEP_1)


def test_a_naming_step_with_an_unreadable_budget_is_a_config_error():
    with pytest.raises(ConfigError):
        parse_runbook_step('the SRE performs Step 1 "Disable orchestrator" within a little while')


# -- grouping ----------------------------------------------------------------------


def test_gherkin_steps_before_the_first_naming_step_are_only_events(grouper, recorder, clock):
    run(grouper, clock, "the drill world at Phase 6 with 10 expanded repos", 4)
    run(grouper, clock, 'the incident "mass-failure" was injected', 1)
    grouper.scenario_finished()
    assert steps_of(recorder) == []
    events = gherkin_events(recorder)
    assert [(e["text"], e["status"], e["elapsed_s"], e["step"]) for e in events] == [
        ("the drill world at Phase 6 with 10 expanded repos", "pass", 4, None),
        ('the incident "mass-failure" was injected', "pass", 1, None),
    ]


def test_following_gherkin_steps_belong_to_the_runbook_step(grouper, recorder, clock):
    run(grouper, clock, "the pilot probe is running", 1)
    run(grouper, clock, STEP_1, 20)
    run(grouper, clock, 'REPO_ALLOWLIST of deployment/flowengine reads "compliance-service"', 5)
    run(grouper, clock, "the rollout of deployment/flowengine completes", 30)
    assert grouper.current_step is not None
    assert grouper.current_step.id == "step-1"
    (step,) = steps_of(recorder)
    assert step["error"] == "not finished"  # still running
    grouper.scenario_finished()  # the scenario end closes the last group
    (step,) = steps_of(recorder)
    assert (step["id"], step["status"], step["elapsed_s"], step["error"]) == ("step-1", "pass", 55, None)
    assert step["title"] == "Disable orchestrator for expanded repos"
    assert [e["step"] for e in gherkin_events(recorder)] == [None, "step-1", "step-1", "step-1"]
    assert grouper.current_step is None


def test_the_next_naming_step_closes_the_previous_group(grouper, recorder, clock):
    run(grouper, clock, STEP_1, 10)
    run(grouper, clock, "the rollout of deployment/flowengine completes", 20)
    run(grouper, clock, STEP_2, 7)
    first, second = steps_of(recorder)
    assert (first["id"], first["status"], first["elapsed_s"]) == ("step-1", "pass", 30)
    assert (second["id"], second["error"]) == ("step-2", "not finished")
    grouper.scenario_finished()
    first, second = steps_of(recorder)
    assert (second["status"], second["elapsed_s"]) == ("pass", 7)


def test_a_group_over_its_budget_is_over_budget(grouper, recorder, clock):
    run(grouper, clock, STEP_1, 60)
    run(grouper, clock, "the rollout of deployment/flowengine completes", 61)
    grouper.scenario_finished()
    (step,) = steps_of(recorder)
    assert (step["status"], step["elapsed_s"]) == ("over-budget", 121)


def test_a_failing_gherkin_step_closes_its_group_as_failed(grouper, recorder, clock):
    run(grouper, clock, STEP_1, 10)
    run(grouper, clock, "the rollout of deployment/flowengine completes", 5, error="rollout stalled at 2/3 available")
    (step,) = steps_of(recorder)
    assert (step["status"], step["error"], step["elapsed_s"]) == ("fail", "rollout stalled at 2/3 available", 15)
    assert grouper.current_step is None
    grouper.scenario_finished()  # nothing left to close
    assert len(steps_of(recorder)) == 1
    last = gherkin_events(recorder)[-1]
    assert (last["status"], last["error"], last["step"]) == ("fail", "rollout stalled at 2/3 available", "step-1")


def test_a_failing_naming_step_fails_its_own_group(grouper, recorder, clock):
    run(grouper, clock, STEP_2, 3, error="AssertionError: replicas 10 != 3")
    (step,) = steps_of(recorder)
    assert (step["id"], step["status"]) == ("step-2", "fail")


def test_a_failure_outside_any_group_is_only_an_event(grouper, recorder, clock):
    run(grouper, clock, "the pilot probe is running", 1, error="probe could not start")
    grouper.scenario_finished()
    assert steps_of(recorder) == []
    assert gherkin_events(recorder)[-1]["status"] == "fail"


def test_a_gherkin_step_that_never_ended_fails_its_group_at_scenario_end(grouper, recorder, clock):
    run(grouper, clock, STEP_1, 10)
    grouper.gherkin_step_started("the rollout of deployment/flowengine completes")
    clock.advance(3)
    grouper.scenario_finished()
    (step,) = steps_of(recorder)
    assert step["status"] == "fail"
    assert "the rollout of deployment/flowengine completes" in step["error"]
    assert gherkin_events(recorder)[-1]["status"] == "unfinished"


def test_a_bad_budget_in_a_naming_step_leaves_the_open_group_alone(grouper, recorder, clock):
    run(grouper, clock, STEP_1, 10)
    with pytest.raises(ConfigError):
        grouper.gherkin_step_started('the SRE performs Step 2 "Scale down" within soon')
    assert grouper.current_step is not None
    assert grouper.current_step.id == "step-1"
