"""The budget judgement: a runbook step over its budget raises BudgetExceeded, and the evidence says over-budget.

The Gherkin steps run on a fake clock through the same ``StepGrouper`` the test hooks feed,
so nothing here waits: a step "takes" exactly what the clock is advanced by.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from rollback_drill.config import load_config
from rollback_drill.errors import BudgetExceeded, VerificationFailed
from rollback_drill.evidence import Recorder, Redactor, StepGrouper
from rollback_drill.evidence.recorder import EVIDENCE_NAME
from rollback_drill.runbook.budget import StepTiming, check_budgets, judge_step_budgets
from rollback_drill.timing.clock import FakeClock

STEP_1 = 'the SRE performs Step 1 "Disable orchestrator for expanded repos" within 2 minutes'
STEP_2 = 'the SRE performs Step 2 "Scale down FlowEngine" within 3 minutes'
CHECK = "REPO_ALLOWLIST of deployment/flowengine reads only the pilot"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 12, 6, 9, 0, tzinfo=UTC))


@pytest.fixture
def recorder(tmp_path, clock):
    rec = Recorder.create(tmp_path, incident="mass-failure", clock=clock, redactor=Redactor())
    yield rec
    rec.abort("test teardown")


def run(grouper: StepGrouper, clock: FakeClock, text: str, seconds: float) -> None:
    grouper.gherkin_step_started(text)
    clock.advance(seconds)
    grouper.gherkin_step_passed()


def recorded_steps(recorder: Recorder) -> dict[str, dict]:
    steps = json.loads((recorder.bundle_dir / EVIDENCE_NAME).read_text())["steps"]
    return {step["id"]: step for step in steps}


def test_a_step_over_its_budget_raises_budget_exceeded_and_is_recorded_over_budget(recorder, clock):
    grouper = StepGrouper(recorder)
    run(grouper, clock, STEP_1, 150)  # Step 1's budget is 2 minutes
    run(grouper, clock, CHECK, 0)

    with pytest.raises(BudgetExceeded) as overrun:
        judge_step_budgets(grouper, recorder)

    message = str(overrun.value)
    assert (
        'step-1 took 150.000 s of its 120 s budget, 30.000 s over: "Disable orchestrator for expanded repos"' in message
    )
    step = recorded_steps(recorder)["step-1"]
    assert (step["status"], step["elapsed_s"], step["budget_s"]) == ("over-budget", 150, 120)


def test_steps_within_their_budgets_pass_and_are_recorded_pass(recorder, clock):
    grouper = StepGrouper(recorder)
    run(grouper, clock, STEP_1, 119)
    run(grouper, clock, CHECK, 1)  # the check belongs to Step 1: 120 s in all, exactly its budget
    run(grouper, clock, STEP_2, 30)

    judged = judge_step_budgets(grouper, recorder)

    assert [(s.id, s.status, s.elapsed_s) for s in judged] == [("step-1", "pass", 120), ("step-2", "pass", 30)]
    assert {s["status"] for s in recorded_steps(recorder).values()} == {"pass"}


def test_the_step_still_open_is_closed_and_judged(recorder, clock):
    grouper = StepGrouper(recorder)
    run(grouper, clock, STEP_1, 10)
    run(grouper, clock, STEP_2, 181)  # still open when the judgement comes

    with pytest.raises(
        BudgetExceeded, match=r'step-2 took 181\.000 s of its 180 s budget, 1\.000 s over: "Scale down FlowEngine"'
    ):
        judge_step_budgets(grouper, recorder)
    assert recorded_steps(recorder)["step-2"]["status"] == "over-budget"
    assert grouper.current_step is None


def test_a_budget_drill_yaml_tightens_is_the_one_measured_and_recorded(recorder, clock):
    config = dataclasses.replace(load_config(), budget_overrides_s={"step-1": 60.0})
    grouper = StepGrouper(recorder, budget_for=config.budget_s)
    run(grouper, clock, STEP_1, 90)  # within the runbook's 2 minutes, over drill.yaml's 60 s

    with pytest.raises(BudgetExceeded, match=r"took 90\.000 s of its 60 s budget, 30\.000 s over"):
        judge_step_budgets(grouper, recorder)
    step = recorded_steps(recorder)["step-1"]
    assert (step["status"], step["budget_s"]) == ("over-budget", 60)


def test_a_failed_step_did_not_finish_within_its_budget(recorder, clock):
    grouper = StepGrouper(recorder)
    grouper.gherkin_step_started(STEP_1)
    clock.advance(5)
    grouper.gherkin_step_failed("VerificationFailed: rollout stuck")

    with pytest.raises(VerificationFailed, match=r"step-1 .* failed: VerificationFailed: rollout stuck") as failure:
        judge_step_budgets(grouper, recorder)
    assert not isinstance(failure.value, BudgetExceeded)


def test_a_skipped_step_was_not_timed(recorder):
    recorder.skip_step("step-7", "Stakeholder communication", 300, "nobody to tell")
    with pytest.raises(VerificationFailed, match=r"step-7 .* was not timed \(skipped: nobody to tell\)"):
        judge_step_budgets(StepGrouper(recorder), recorder)


def test_an_overrun_and_a_failure_are_both_named_and_the_overrun_decides_the_exception():
    steps = [
        StepTiming("step-1", "Disable orchestrator for expanded repos", 120, 121.5, "over-budget"),
        StepTiming("step-2", "Scale down FlowEngine", 180, 3, "fail", "rollout stuck"),
    ]
    with pytest.raises(BudgetExceeded) as overrun:
        check_budgets(steps)
    assert "step-1" in str(overrun.value)
    assert "1.500 s over" in str(overrun.value)
    assert 'step-2 "Scale down FlowEngine" failed: rollout stuck' in str(overrun.value)


def test_a_step_measured_over_its_budget_is_over_it_whatever_its_recorded_status():
    with pytest.raises(BudgetExceeded):
        check_budgets([StepTiming("step-8", "Update status page", 120, 120.001, "pass")])


def test_no_steps_is_nothing_over_budget():
    assert check_budgets([]) == ()
