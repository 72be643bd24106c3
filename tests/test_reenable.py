"""Phased re-enablement and the soak, without a cluster: the plan, the refusal rules, the gate arithmetic, bounded load."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from rollback_drill.config import DrillConfig, load_config
from rollback_drill.errors import InputError
from rollback_drill.flowengine.client import FlowEngineUnavailable, FlowResult, RepoStats, Stats
from rollback_drill.runbook.reenable import (
    ALL_AT_ONCE_REFUSAL,
    MIN_FLOWS_PER_REPO,
    MONITOR_RATE_HZ,
    PhaseResult,
    PhaseStep,
    Progress,
    ReenablementPlan,
    check_phase_may_start,
    check_request,
    monitoring_rate_hz,
    plan_reenablement,
)
from rollback_drill.runbook.soak import (
    Criteria,
    FlowMeasurement,
    FlowSample,
    ServerNumbers,
    SoakPlan,
    SoakResult,
    percentile,
    run_flows,
    symptom_causes,
)

PILOT = "compliance-service"
RUNBOOK_PHASE_2_ALLOWLIST = "compliance-service,inventory-mgmt,customer-analytics,financial-reporting,risk-engine"
"""Phase 2's command in the runbook: ``kubectl set env ... REPO_ALLOWLIST=<this>``."""


@pytest.fixture(scope="module")
def config() -> DrillConfig:
    return load_config()


@pytest.fixture(scope="module")
def plan(config) -> ReenablementPlan:
    return plan_reenablement(config, config.expanded_for(6))


def _with_reenablement(config: DrillConfig, **changes: object) -> DrillConfig:
    return replace(config, reenablement=replace(config.reenablement, **changes))


# --- gate arithmetic ------------------------------------------------------------------------------


def completed(duration_s: float = 60.0, repo: str = "financial-reporting") -> FlowSample:
    return FlowSample(repo, "completed", duration_s, None)


def failed(cause: str = "flaky-flow", repo: str = "financial-reporting") -> FlowSample:
    return FlowSample(repo, "failed", 12.0, cause)


CRITERIA = Criteria(success_rate_min=0.99, p95_max_s=120.0)
MASS_FAILURE = symptom_causes("mass-failure")


def test_percentile_is_nearest_rank_like_postgres_percentile_disc():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.50) == 50.0
    assert percentile([float(v) for v in range(1, 21)], 0.95) == 19.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.95) is None
    with pytest.raises(ValueError, match="percentile q"):
        percentile(values, 0)


def test_99_of_100_flows_meet_the_99_percent_gate():
    measurement = FlowMeasurement.of([*(completed() for _ in range(99)), failed()], MASS_FAILURE)
    assert measurement.success_rate == 0.99
    assert CRITERIA.measurement_problems(measurement) == []


def test_98_of_100_flows_fail_the_gate_on_the_success_rate():
    measurement = FlowMeasurement.of([*(completed() for _ in range(98)), failed(), failed()], MASS_FAILURE)
    assert CRITERIA.measurement_problems(measurement) == ["success rate 98.00% of 100 flows (must be >= 99%)"]


def test_p95_must_be_strictly_under_120_seconds():
    at_limit = FlowMeasurement.of([completed(120.0) for _ in range(20)])
    under = FlowMeasurement.of([completed(119.9) for _ in range(20)])
    assert CRITERIA.measurement_problems(at_limit) == ["P95 120.0s (must be < 120s)"]
    assert CRITERIA.measurement_problems(under) == []


def test_p95_is_of_completed_flows_only():
    measurement = FlowMeasurement.of([*(completed(float(d)) for d in range(40, 140)), failed()])
    assert measurement.p95_s == percentile([float(d) for d in range(40, 140)], 0.95)
    assert measurement.p50_s == 89.0


def test_one_failure_with_the_incidents_cause_is_a_recurrence_even_within_the_success_rate():
    measurement = FlowMeasurement.of([*(completed() for _ in range(999)), failed("model-timeout")], MASS_FAILURE)
    assert measurement.success_rate == 0.999
    assert measurement.recurrences == 1
    assert CRITERIA.measurement_problems(measurement) == ["1 recurrence(s) of the incident's symptom (must be zero)"]


def test_a_failure_with_another_cause_is_not_a_recurrence():
    assert FlowMeasurement.of([failed("flaky-flow")], MASS_FAILURE).recurrences == 0


def test_refused_and_unanswered_requests_count_against_the_success_rate():
    samples = [
        *(completed() for _ in range(97)),
        FlowSample("financial-reporting", "refused", None, "Restricted to pilot scope"),
        FlowSample("financial-reporting", "unavailable", None, "connection refused"),
        failed(),
    ]
    measurement = FlowMeasurement.of(samples)
    assert (measurement.requests, measurement.refused, measurement.unavailable) == (100, 1, 1)
    assert measurement.success_rate == 0.97
    assert measurement.causes == {"Restricted to pilot scope": 1, "connection refused": 1, "flaky-flow": 1}


def test_no_flows_verify_nothing():
    assert CRITERIA.measurement_problems(FlowMeasurement.of([])) == ["no flow ran, so nothing was verified"]


def test_only_failures_have_no_p95():
    problems = CRITERIA.measurement_problems(FlowMeasurement.of([failed()]))
    assert "no flow completed, so there is no P95" in problems


@pytest.mark.parametrize(
    ("incident", "causes"),
    [
        ("mass-failure", {"model-timeout"}),
        ("cascading-failure", {"shared-cache-poisoned"}),
        ("db-corruption", {"taskdb-integrity"}),
        ("crash-loop", set()),
        (None, set()),
    ],
)
def test_the_symptom_of_an_incident_is_the_cause_its_flows_failed_with(incident, causes):
    assert symptom_causes(incident) == causes


def test_the_soak_plan_scales_the_runbooks_two_hours(config):
    plan = SoakPlan.from_config(config, time_scale=0.001, incident="mass-failure")
    assert plan.runbook_duration_s == 7200
    assert plan.duration_s == pytest.approx(7.2)
    assert (plan.repos, plan.concurrency) == (("financial-reporting", "customer-analytics"), 5)
    assert plan.criteria == CRITERIA
    assert plan.symptoms == {"model-timeout"}


def test_a_soak_may_run_longer_than_configured_up_to_the_runbooks_4_hours(config):
    plan = SoakPlan.from_config(config, time_scale=0.001, incident=None, runbook_duration_s=4 * 3600)
    assert (plan.runbook_duration_s, plan.duration_s) == (14400, pytest.approx(14.4))


def test_a_soak_shorter_than_configured_is_refused(config):
    with pytest.raises(InputError, match="2-4 hours minimum"):
        SoakPlan.from_config(config, time_scale=0.001, incident=None, runbook_duration_s=3600)


@pytest.mark.parametrize("scale", [0, -1, 2, float("nan")])
def test_the_soak_refuses_a_time_scale_that_is_not_a_shortening(config, scale):
    with pytest.raises(InputError, match="time_scale"):
        SoakPlan.from_config(config, time_scale=scale, incident=None)


def _soak(config, samples, server_flows):
    plan = SoakPlan.from_config(config, time_scale=0.001, incident="mass-failure")
    measurement = FlowMeasurement.of(samples, plan.symptoms)
    server = ServerNumbers(server_flows, measurement.failed, measurement.success_rate, measurement.p95_s)
    return SoakResult(plan, "http://127.0.0.1:1", datetime(2025, 11, 17, tzinfo=UTC), 7.2, measurement, server)


def test_a_soak_with_2_percent_failures_fails_and_says_why(config):
    soak = _soak(config, [*(completed() for _ in range(980)), *(failed() for _ in range(20))], 1000)
    assert not soak.passed
    assert soak.problems() == ["success rate 98.00% of 1000 flows (must be >= 99%)"]
    evidence = soak.evidence()
    assert (evidence["requests"], evidence["server_flows"], evidence["passed"]) == (1000, 1000, False)
    assert evidence["env"] == "staging"


def test_a_clean_soak_passes(config):
    soak = _soak(config, [completed(float(d)) for d in range(40, 90)], 50)
    assert soak.passed
    assert soak.evidence()["p95_s"] == 87.0  # the 48th of 50 durations 40..89


def test_server_numbers_bound_the_combined_p95_by_the_worst_repo():
    stats = Stats(
        window_s=10,
        flows=310,
        failed=3,
        success_rate=None,
        p50_s=None,
        p95_s=None,
        active_repos=("a", "b", "pilot"),
        repos=(
            RepoStats("a", 100, 1, 0.99, 60.0, 80.0),
            RepoStats("b", 200, 2, 0.99, 60.0, 95.0),
            RepoStats("pilot", 10, 0, 1.0, 60.0, 130.0),
        ),
    )
    numbers = ServerNumbers.of(stats, ["a", "b", "missing"])
    assert (numbers.flows, numbers.failed, numbers.p95_s) == (300, 3, 95.0)
    assert numbers.success_rate == pytest.approx(0.99)
    assert ServerNumbers.of(stats, ["missing"]) == ServerNumbers(0, 0, None, None)


# --- the plan ---------------------------------------------------------------------------------------


def test_phase_1_is_the_pilot_and_the_canary(plan):
    (step,) = plan.phase(1)
    assert step.repos == ("inventory-mgmt",)
    assert step.allowlist == (PILOT, "inventory-mgmt")
    assert step.runbook_window_s == 4 * 3600
    assert step.id == "phase-1"
    assert step.label == "Phase 1"


def test_phase_2_adds_three_repos_as_the_runbooks_command_does(plan):
    (step,) = plan.phase(2)
    assert step.repos == ("customer-analytics", "financial-reporting", "risk-engine")
    assert ",".join(step.allowlist) == RUNBOOK_PHASE_2_ALLOWLIST
    assert step.runbook_window_s == 24 * 3600


def test_phase_3_brings_the_rest_back_in_batches_of_at_most_2(plan):
    batches = plan.phase(3)
    assert [b.repos for b in batches] == [
        ("payments-gateway", "audit-trail"),
        ("kyc-onboarding", "ledger-sync"),
        ("fraud-signals", "treasury-reports"),
    ]
    assert [b.label for b in batches] == [f"Phase 3, batch {i} of 3" for i in (1, 2, 3)]
    phase_2 = ("inventory-mgmt", "customer-analytics", "financial-reporting", "risk-engine")
    assert batches[-1].allowlist == (PILOT, *phase_2, *(r for b in batches for r in b.repos))
    assert all(b.runbook_window_s == 86400 for b in batches)


def test_each_step_keeps_the_pilot_and_everything_before_it(plan):
    previous: tuple[str, ...] = (PILOT,)
    for step in plan.steps:
        assert step.allowlist == (*previous, *step.repos)
        previous = step.allowlist


def test_at_phase_7_the_46_remaining_repos_come_back_two_at_a_time(config):
    plan = plan_reenablement(config, config.expanded_for(7))
    batches = plan.phase(3)
    assert len(batches) == 23
    assert all(len(b.repos) == 2 for b in batches)
    assert sorted(r for s in plan.steps for r in s.repos) == sorted(config.expanded_for(7))


def test_an_odd_remainder_ends_with_a_smaller_batch(config):
    plan = plan_reenablement(config, config.expanded_for(6)[:7])
    assert [b.repos for b in plan.phase(3)] == [("payments-gateway", "audit-trail"), ("kyc-onboarding",)]


def test_batch_size_comes_from_the_configuration(config):
    plan = plan_reenablement(_with_reenablement(config, phase_3_batch_max=1), config.expanded_for(6))
    assert [len(b.repos) for b in plan.phase(3)] == [1] * 6


def test_nothing_left_for_phase_3_gives_it_no_batches(config):
    named = ("inventory-mgmt", "customer-analytics", "financial-reporting", "risk-engine")
    plan = plan_reenablement(config, named)
    assert plan.phase(3) == ()
    with pytest.raises(InputError, match="Phase 3 has no repos to re-enable"):
        check_phase_may_start(plan, _after(config, *plan.phase(1), *plan.phase(2)), 3)


def test_a_canary_the_rollback_did_not_disable_is_a_configuration_error(config):
    with pytest.raises(InputError, match="reenablement names inventory-mgmt"):
        plan_reenablement(config, ("customer-analytics", "financial-reporting", "risk-engine"))


def test_a_canary_also_listed_in_phase_2_is_refused(config):
    bad = _with_reenablement(config, phase_2=("inventory-mgmt", "risk-engine"))
    with pytest.raises(InputError, match="lists the canary"):
        plan_reenablement(bad, config.expanded_for(6))


# --- the refusal rules --------------------------------------------------------------------------------


def _result(step: PhaseStep, *, recurrences: int = 0, success_rate: float = 1.0) -> PhaseResult:
    flows = 100
    server = ServerNumbers(flows, round(flows * (1 - success_rate)), success_rate, 90.0)
    synthetic = FlowMeasurement.of([completed() for _ in range(20)])
    if recurrences:
        synthetic = replace(synthetic, recurrences=recurrences)
    return PhaseResult(
        step=step,
        started_at=datetime(2025, 11, 18, tzinfo=UTC),
        allowlist_before=(PILOT,),
        rollout="done",
        alerts_restored=step.alert_rule_names(),
        window_s=1.0,
        monitored_s=1.0,
        server=server,
        synthetic=synthetic,
        recurrence_signals=(),
        criteria=CRITERIA,
    )


def _soaked(config, *, passed: bool = True) -> Progress:
    samples = (
        [completed() for _ in range(100)]
        if passed
        else [*(completed() for _ in range(90)), *(failed() for _ in range(10))]
    )
    return Progress().with_soak(_soak(config, samples, len(samples)))


def _after(config, *steps: PhaseStep) -> Progress:
    progress = _soaked(config)
    return Progress(progress.soak, tuple(_result(step) for step in steps))


def test_everything_at_once_is_refused_with_the_runbooks_words(plan):
    with pytest.raises(InputError) as refusal:
        check_request(plan, Progress(), plan.expanded)
    assert str(refusal.value).startswith(ALL_AT_ONCE_REFUSAL)
    assert "next is Phase 1: inventory-mgmt" in str(refusal.value)


def test_everything_at_once_is_refused_even_after_a_good_soak_and_phase_1(plan, config):
    progress = _after(config, *plan.phase(1))
    with pytest.raises(InputError, match=ALL_AT_ONCE_REFUSAL):
        check_request(plan, progress, plan.expanded)


def test_the_last_batch_on_its_own_is_not_all_at_once(plan, config):
    progress = _after(config, *plan.steps[:-1])
    last = plan.steps[-1]
    assert check_request(plan, progress, last.repos) == last


def test_repos_out_of_order_are_refused(plan, config):
    with pytest.raises(InputError, match="does not follow the phased plan; next is Phase 1: inventory-mgmt"):
        check_request(plan, _soaked(config), ("risk-engine",))


def test_repos_the_rollback_did_not_disable_are_refused(plan, config):
    with pytest.raises(InputError, match="not repos the rollback disabled"):
        check_request(plan, _soaked(config), ("no-such-repo",))


def test_the_canary_is_the_next_step_after_a_good_soak(plan, config):
    assert check_request(plan, _soaked(config), ["inventory-mgmt"]) == plan.phase(1)[0]


def test_phase_1_needs_a_soak(plan):
    with pytest.raises(InputError, match="before the fix passes its soak on staging \\(no soak has run\\)"):
        check_phase_may_start(plan, Progress(), 1)


def test_phase_1_after_a_failed_soak_is_refused_with_the_soaks_problems(plan, config):
    with pytest.raises(InputError, match=r"success rate 90\.00% of 100 flows"):
        check_phase_may_start(plan, _soaked(config, passed=False), 1)


def test_phase_2_before_phase_1_passed_is_refused(plan, config):
    with pytest.raises(InputError, match="Phase 2 may start only after Phase 1 met its criteria"):
        check_phase_may_start(plan, _soaked(config), 2)


def test_phase_3_before_phase_2_passed_is_refused(plan, config):
    with pytest.raises(InputError, match="Phase 3 may start only after Phase 2 met its criteria"):
        check_phase_may_start(plan, _after(config, *plan.phase(1)), 3)


def test_a_failed_phase_does_not_count_as_passed(plan, config):
    progress = _after(config, *plan.phase(1))
    failed_2 = Progress(progress.soak, progress.passed, (_result(plan.phase(2)[0], recurrences=1),))
    with pytest.raises(InputError, match="Phase 3 may start only after Phase 2"):
        check_phase_may_start(plan, failed_2, 3)
    assert check_phase_may_start(plan, failed_2, 2) == plan.phase(2)


def test_phase_3_goes_on_from_the_batches_still_to_do(plan, config):
    progress = _after(config, *plan.phase(1), *plan.phase(2), plan.phase(3)[0])
    assert check_phase_may_start(plan, progress, 3) == plan.phase(3)[1:]


def test_a_phase_that_passed_is_not_performed_again(plan, config):
    with pytest.raises(InputError, match="Phase 1 has already passed; next is Phase 2"):
        check_phase_may_start(plan, _after(config, *plan.phase(1)), 1)


def test_there_is_no_phase_4(plan, config):
    with pytest.raises(InputError, match="no Phase 4"):
        check_phase_may_start(plan, _soaked(config), 4)


def test_the_last_good_allowlist_is_the_pilot_and_the_passed_steps(plan, config):
    progress = _after(config, *plan.phase(1), *plan.phase(2))
    assert ",".join(progress.allowlist(plan)) == RUNBOOK_PHASE_2_ALLOWLIST
    assert Progress().allowlist(plan) == (PILOT,)


def test_a_phase_result_judges_the_servers_numbers_and_any_recurrence(plan):
    step = plan.phase(1)[0]
    assert _result(step).passed
    assert _result(step, success_rate=0.98).problems() == ["success rate 98.00% of 100 flows (must be >= 99%)"]
    assert _result(step, recurrences=2).problems() == ["2 recurrence(s) of the incident's symptom (must be zero)"]
    signalled = replace(_result(step), recurrence_signals=("inventory-mgmt: 3 failure(s) with cause model-timeout",))
    assert not signalled.passed
    assert signalled.evidence()["recurrences"] == 1


def test_a_phase_results_evidence_has_its_repos_numbers_and_window(plan):
    evidence = _result(plan.phase(2)[0]).evidence()
    assert evidence["id"] == "phase-2"
    assert evidence["repos"] == ["customer-analytics", "financial-reporting", "risk-engine"]
    assert (evidence["flows"], evidence["success_rate"], evidence["p95_s"]) == (100, 1.0, 90.0)
    assert (evidence["window_s"], evidence["runbook_window_s"], evidence["passed"]) == (1.0, 86400, True)


def test_the_monitoring_rate_is_modest_unless_the_window_is_too_short_for_enough_flows():
    assert monitoring_rate_hz(1, 3600) == MONITOR_RATE_HZ
    assert monitoring_rate_hz(1, 0.72) == pytest.approx(MIN_FLOWS_PER_REPO / 0.72)
    assert monitoring_rate_hz(3, 4.32) == pytest.approx(3 * MIN_FLOWS_PER_REPO / 4.32)
    with pytest.raises(InputError):
        monitoring_rate_hz(1, 0)


# --- bounded load -------------------------------------------------------------------------------------


class FakeFlowEngine:
    """Answers ``generate`` at once, counting calls; ``answer`` decides each one."""

    def __init__(self, answer=None) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._answer = answer or (lambda repo, n: FlowResult(repo, "completed", flow_id=n, duration_s=60.0))

    def generate(self, repo: str) -> FlowResult:
        with self._lock:
            self.calls.append(repo)
            n = len(self.calls)
        return self._answer(repo, n)


def test_a_load_stops_at_its_request_count():
    engine = FakeFlowEngine()
    run = run_flows(engine.generate, ["a", "b"], concurrency=5, duration_s=30, max_requests=40)
    assert len(run.samples) == len(engine.calls) == 40
    assert run.elapsed_s < 5
    assert sorted(engine.calls) == ["a"] * 20 + ["b"] * 20
    assert run.stopped_early is None


def test_a_load_stops_at_its_duration():
    engine = FakeFlowEngine()
    started = time.monotonic()
    run = run_flows(engine.generate, ["a"], concurrency=2, duration_s=0.3, max_requests=10**9, rate_hz=100)
    assert time.monotonic() - started < 2
    assert 10 <= len(run.samples) <= 31


def test_a_paced_load_keeps_its_rate():
    engine = FakeFlowEngine()
    run = run_flows(engine.generate, ["a"], concurrency=3, duration_s=0.5, max_requests=1000, rate_hz=20)
    assert 8 <= len(run.samples) <= 11


def test_stop_on_ends_the_load_at_the_first_reason():
    def answer(repo, n):
        return FlowResult(repo, "failed", flow_id=n, duration_s=9.0, cause="model-timeout" if n == 5 else "other")

    engine = FakeFlowEngine(answer)
    run = run_flows(
        engine.generate,
        ["a"],
        concurrency=1,
        duration_s=30,
        max_requests=100,
        stop_on=lambda s: f"{s.repo}: {s.cause}" if s.cause == "model-timeout" else None,
    )
    assert run.stopped_early == "a: model-timeout"
    assert len(run.samples) == 5


def test_an_unavailable_flowengine_is_a_sample_and_any_other_error_is_raised():
    def unavailable(repo, n):
        raise FlowEngineUnavailable("no pod", url="http://x")

    run = run_flows(FakeFlowEngine(unavailable).generate, ["a"], concurrency=1, duration_s=5, max_requests=3)
    assert [s.status for s in run.samples] == ["unavailable"] * 3

    def broken(repo, n):
        raise InputError("HTTP 400: bad body")

    with pytest.raises(InputError, match="bad body"):
        run_flows(FakeFlowEngine(broken).generate, ["a"], concurrency=3, duration_s=5, max_requests=30)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0, "duration_s": 1, "max_requests": 1},
        {"concurrency": 1, "duration_s": -1, "max_requests": 1},
        {"concurrency": 1, "duration_s": float("inf"), "max_requests": 1},
        {"concurrency": 1, "duration_s": 1, "max_requests": 1, "rate_hz": 0},
    ],
)
def test_a_load_without_bounds_is_refused(kwargs):
    with pytest.raises(InputError):
        run_flows(FakeFlowEngine().generate, ["a"], **kwargs)
