"""Timing: clocks, budgets, the wait primitive, measured windows and probes, on a fake clock.

Only the last section (one real-thread probe) lets real time pass.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from rollback_drill.errors import ConfigError, InputError, RetryableError, VerificationFailed, WaitTimeout
from rollback_drill.timing import (
    DEFAULT_LIMITS,
    STEP_IDS,
    TARGET_NAMES,
    Budget,
    Deadline,
    FakeClock,
    Marks,
    Probe,
    ProbeOutcome,
    ProbeSample,
    Stopwatch,
    SystemClock,
    TargetResult,
    achieved_rate_hz,
    check_override,
    compute_targets,
    downtime_s,
    failed_requests,
    first_ok_after,
    hold,
    parse_duration,
    poll_until,
    samples_between,
    step_end,
    step_start,
    wait_until,
)
from rollback_drill.timing.wait import NotYet

START = datetime(2025, 12, 8, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return FakeClock(START)


# --- clocks --------------------------------------------------------------------------------------


def test_fake_clock_moves_only_when_advanced(clock):
    t0 = clock.monotonic()
    assert clock.monotonic() == t0
    assert clock.wall() == START
    clock.advance(90.5)
    assert clock.monotonic() - t0 == 90.5
    assert clock.wall() == START + timedelta(seconds=90.5)
    clock.sleep(9.5)
    assert clock.monotonic() - t0 == 100.0


def test_fake_clock_wall_is_utc_aware_even_from_another_zone():
    clock = FakeClock(datetime(2025, 12, 8, 11, 0, tzinfo=timezone(timedelta(hours=1))))
    assert clock.wall() == START
    assert clock.wall().tzinfo == UTC


def test_fake_clock_refuses_a_naive_start_and_going_backwards(clock):
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2025, 12, 8, 10, 0))  # noqa: DTZ001 the naive datetime is the point of the test
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)


def test_system_clock_is_monotonic_and_utc_aware():
    clock = SystemClock()
    assert clock.monotonic() <= clock.monotonic()
    assert clock.wall().tzinfo is UTC


# --- parse_duration and budgets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2 minutes", 120.0),
        ("1 minute", 60.0),
        ("90 seconds", 90.0),
        ("4 hours", 14400.0),
        ("1.5 minutes", 90.0),
        ("10 min", 600.0),
        ("30 s", 30.0),
        ("2h", 7200.0),
        ("1 hour", 3600.0),
        ("5 mins", 300.0),
        ("45 sec", 45.0),
        ("2m", 120.0),
        ("  3 Minutes ", 180.0),
        ("0.5 hours", 1800.0),
        ("0 seconds", 0.0),
        ("3 days", 259200.0),
        ("1 day", 86400.0),
    ],
)
def test_parse_duration_reads_the_budgets_of_the_features(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2",
        "minutes",
        "two minutes",
        "-2 minutes",
        "2 fortnights",
        "1,5 minutes",
        ".5 minutes",
        "2 minutes later",
        "1 minute 30 seconds",
        "1e3 s",
        "inf s",
        "nan minutes",
        "2 ms",
        "٢ minutes",
    ],
)
def test_parse_duration_refuses_anything_else_and_names_the_text(text):
    with pytest.raises(ConfigError, match="cannot read a duration") as info:
        parse_duration(text)
    assert repr(text) in str(info.value)
    assert isinstance(info.value, InputError)  # the caller's to fix: exit 2


@pytest.mark.parametrize(
    ("elapsed_s", "status"),
    [(0.0, "pass"), (119.9, "pass"), (120.0, "pass"), (120.001, "over-budget"), (500.0, "over-budget")],
)
def test_budget_status_edges(elapsed_s, status):
    assert Budget(120.0).status(elapsed_s) == status


def test_budget_from_text():
    assert Budget.from_text("3 minutes") == Budget(180.0)


@pytest.mark.parametrize("limit_s", [0.0, -1.0, float("nan"), float("inf")])
def test_budget_must_be_positive_and_finite(limit_s):
    with pytest.raises(ConfigError, match="positive"):
        Budget(limit_s)


@pytest.mark.parametrize(("override_s", "runbook_s"), [(60.0, 120.0), (120.0, 120.0), (0.001, 120.0)])
def test_an_override_may_tighten_a_budget(override_s, runbook_s):
    assert check_override("step-1", override_s, runbook_s) == override_s


@pytest.mark.parametrize("override_s", [0.0, -5.0, 120.5, 600.0, float("nan")])
def test_an_override_may_not_loosen_a_budget_or_be_non_positive(override_s):
    with pytest.raises(ConfigError) as info:
        check_override("rollback_execution", override_s, 120.0)
    message = str(info.value)
    assert "'rollback_execution'" in message
    assert f"{override_s:g} s" in message
    assert "120 s" in message


# --- stopwatch -----------------------------------------------------------------------------------


def test_stopwatch_measures_on_the_injected_clock(clock):
    watch = Stopwatch(clock)
    assert watch.elapsed_s == 0.0
    assert not watch.running
    watch.start()
    assert watch.started_at == START
    clock.advance(30)
    assert watch.running
    assert watch.elapsed_s == 30.0
    clock.advance(15)
    assert watch.stop() == 45.0
    clock.advance(100)
    assert watch.elapsed_s == 45.0
    assert not watch.running


def test_stopwatch_as_context_manager(clock):
    with Stopwatch(clock) as watch:
        clock.advance(12.5)
    assert watch.elapsed_s == 12.5


def test_stopwatch_refuses_misuse(clock):
    watch = Stopwatch(clock)
    with pytest.raises(RuntimeError, match="before start"):
        watch.stop()
    watch.start()
    with pytest.raises(RuntimeError, match="already started"):
        watch.start()
    watch.stop()
    with pytest.raises(RuntimeError, match="twice"):
        watch.stop()


# --- wait_until ----------------------------------------------------------------------------------


class Sleeps:
    """A sleep that advances the fake clock and remembers every pause."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)


def sequence(values):
    """A check that returns (or raises) the given values in turn, then keeps returning the last."""
    items = list(values)

    def check():
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, BaseException):
            raise item
        return item

    return check


def test_wait_until_returns_at_once_without_sleeping(clock):
    sleeps = Sleeps(clock)
    assert wait_until(lambda: "ready", timeout_s=10, describe="x", clock=clock, sleep=sleeps) == "ready"
    assert sleeps.calls == []


def test_wait_until_returns_the_first_truthy_value(clock):
    sleeps = Sleeps(clock)
    check = sequence([None, False, 0, [], {"replicas": 3}])
    result = wait_until(check, timeout_s=10, describe="x", interval_s=0.5, clock=clock, sleep=sleeps)
    assert result == {"replicas": 3}
    assert sleeps.calls == [0.5, 0.5, 0.5, 0.5]


def test_wait_until_returns_true_for_a_boolean_check(clock):
    assert wait_until(sequence([False, True]), timeout_s=1, describe="x", clock=clock, sleep=Sleeps(clock)) is True


def test_wait_until_timeout_says_what_how_long_what_was_seen_and_the_hint(clock):
    with pytest.raises(WaitTimeout) as info:
        wait_until(
            lambda: _Falsy({"ready": 1, "wanted": 3}),
            timeout_s=120,
            describe="deployment/flowengine to have 3 ready replicas",
            interval_s=5,
            clock=clock,
            sleep=Sleeps(clock),
            hint="check `kubectl get pods -n production -l app=flowengine`",
        )
    message = str(info.value)
    assert "deployment/flowengine to have 3 ready replicas" in message
    assert "120.0 s elapsed" in message
    assert "last seen: value _Falsy({'ready': 1, 'wanted': 3})" in message
    assert "hint: check `kubectl get pods -n production -l app=flowengine`" in message
    assert isinstance(info.value, VerificationFailed)


def test_wait_until_timeout_without_a_hint_has_no_empty_hint(clock):
    with pytest.raises(WaitTimeout) as info:
        wait_until(lambda: None, timeout_s=1, describe="x", clock=clock, sleep=Sleeps(clock))
    assert "hint" not in str(info.value)
    assert "last seen: value None" in str(info.value)


def test_wait_until_truncates_the_last_value_to_300_characters(clock):
    long_value = ["pod-" + "a" * 50] * 40
    with pytest.raises(WaitTimeout) as info:
        wait_until(lambda: _Falsy(long_value), timeout_s=1, describe="x", clock=clock, sleep=Sleeps(clock))
    quoted = str(info.value).split("last seen: value ", 1)[1]
    assert len(quoted) == 300
    assert quoted.startswith("_Falsy([")
    assert quoted.endswith("...")


class _Falsy:
    """A falsy value with a long repr, like an empty-but-described result."""

    def __init__(self, payload: object) -> None:
        self.payload = payload

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"_Falsy({self.payload!r})"


def test_wait_until_treats_retryable_errors_as_not_yet(clock):
    check = sequence([RetryableError("connection refused"), RetryableError("503"), "up"])
    assert wait_until(check, timeout_s=10, describe="x", clock=clock, sleep=Sleeps(clock)) == "up"


def test_wait_until_reports_and_chains_the_last_retryable_error(clock):
    last = RetryableError("503 Service Unavailable from /health/db")
    check = sequence([RetryableError("connection refused"), None, last])
    with pytest.raises(WaitTimeout) as info:
        wait_until(check, timeout_s=3, describe="TaskDB health", interval_s=1, clock=clock, sleep=Sleeps(clock))
    assert "last seen: error RetryableError('503 Service Unavailable from /health/db')" in str(info.value)
    assert info.value.__cause__ is last


def test_wait_until_does_not_chain_an_error_older_than_the_last_value(clock):
    check = sequence([RetryableError("early"), ""])
    with pytest.raises(WaitTimeout) as info:
        wait_until(check, timeout_s=3, describe="x", interval_s=1, clock=clock, sleep=Sleeps(clock))
    assert info.value.__cause__ is None
    assert "last seen: value ''" in str(info.value)


def test_wait_until_lets_other_errors_through_at_once(clock):
    sleeps = Sleeps(clock)
    check = sequence([None, KeyError("replicas")])
    with pytest.raises(KeyError, match="replicas"):
        wait_until(check, timeout_s=60, describe="x", clock=clock, sleep=sleeps)
    assert len(sleeps.calls) == 1


def test_wait_until_never_sleeps_past_the_deadline(clock):
    sleeps = Sleeps(clock)
    checked_at: list[float] = []
    start = clock.monotonic()

    def check():
        checked_at.append(clock.monotonic() - start)

    with pytest.raises(WaitTimeout):
        wait_until(check, timeout_s=1.0, describe="x", interval_s=0.3, clock=clock, sleep=sleeps)
    assert sleeps.calls == pytest.approx([0.3, 0.3, 0.3, 0.1])
    assert all(pause <= 0.3 for pause in sleeps.calls)
    assert sum(sleeps.calls) == pytest.approx(1.0)
    assert checked_at[-1] == pytest.approx(1.0)  # one last look at the deadline


def test_wait_until_counts_the_time_a_slow_check_takes(clock):
    sleeps = Sleeps(clock)

    def slow_check():
        clock.advance(0.7)

    with pytest.raises(WaitTimeout) as info:
        wait_until(slow_check, timeout_s=2.5, describe="x", interval_s=1.0, clock=clock, sleep=sleeps)
    # Checks end at 0.7 and 2.4 s; the pause after the second is cut to the 0.1 s left; the last check ends at 3.2 s.
    assert sleeps.calls == pytest.approx([1.0, 0.1])
    assert "3.2 s elapsed" in str(info.value)
    assert "3 checks" in str(info.value)


def test_wait_until_with_zero_timeout_checks_once(clock):
    sleeps = Sleeps(clock)
    calls = []
    with pytest.raises(WaitTimeout, match="1 checks"):
        wait_until(lambda: calls.append(1), timeout_s=0, describe="x", clock=clock, sleep=sleeps)
    assert calls == [1]
    assert sleeps.calls == []


def test_wait_until_sleeps_on_a_fake_clock_by_default(clock):
    start = clock.monotonic()
    with pytest.raises(WaitTimeout):
        wait_until(lambda: None, timeout_s=5, describe="x", clock=clock)
    assert clock.monotonic() - start == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("timeout_s", "interval_s"), [(-1, 0.2), (float("nan"), 0.2), (float("inf"), 0.2), (1, 0), (1, -0.1)]
)
def test_wait_until_refuses_nonsense_timing(clock, timeout_s, interval_s):
    with pytest.raises(ValueError, match="wait_until"):
        wait_until(lambda: True, timeout_s=timeout_s, describe="x", interval_s=interval_s, clock=clock)


# --- the wait primitive's variants: NotYet, poll_until, hold, Deadline ---------------------------


def test_a_not_yet_is_falsy_and_is_what_a_timeout_quotes(clock):
    sleeps = Sleeps(clock)
    assert not NotYet("HTTP 503")
    with pytest.raises(WaitTimeout) as info:
        wait_until(lambda: NotYet("HTTP 503"), timeout_s=1, describe="etcd", clock=clock, sleep=sleeps, hint="see log")
    assert "last seen: value HTTP 503" in str(info.value)
    assert "1.0 s elapsed" in str(info.value)
    assert "hint: see log" in str(info.value)


def test_a_not_yet_then_a_value_returns_the_value(clock):
    check = sequence([NotYet("rolling"), NotYet("rolling"), "done"])
    assert wait_until(check, timeout_s=5, describe="x", interval_s=0.5, clock=clock) == "done"
    assert clock.monotonic() - 1000.0 == pytest.approx(1.0)


def test_poll_until_returns_the_value_or_none_at_the_deadline(clock):
    sleeps = Sleeps(clock)
    assert poll_until(sequence([None, 7]), timeout_s=1, describe="x", interval_s=0.1, clock=clock, sleep=sleeps) == 7
    assert sleeps.calls == pytest.approx([0.1])
    start = clock.monotonic()
    assert poll_until(lambda: NotYet("alive"), timeout_s=2, describe="x", interval_s=0.5, clock=clock) is None
    assert clock.monotonic() - start == pytest.approx(2.0)


def test_poll_until_lets_errors_through_like_wait_until(clock):
    with pytest.raises(VerificationFailed):
        poll_until(sequence([VerificationFailed("gone")]), timeout_s=1, describe="x", clock=clock)
    assert poll_until(sequence([RetryableError("not yet"), True]), timeout_s=1, describe="x", clock=clock) is True


def test_poll_until_refuses_nonsense_timing(clock):
    with pytest.raises(ValueError, match="timeout_s"):
        poll_until(lambda: True, timeout_s=-1, describe="x", clock=clock)


def test_hold_lets_the_window_pass_on_the_fake_clock_in_pieces(clock):
    sleeps = Sleeps(clock)
    assert hold(2.5, describe="the triage", clock=clock, sleep=sleeps) == pytest.approx(2.5)
    assert sleeps.calls == pytest.approx([1.0, 1.0, 0.5])


def test_hold_of_nothing_or_less_returns_at_once(clock):
    sleeps = Sleeps(clock)
    assert hold(0, describe="x", clock=clock, sleep=sleeps) == 0
    assert hold(-3, describe="x", clock=clock, sleep=sleeps) == 0
    assert sleeps.calls == []


def test_hold_on_a_fake_clock_sleeps_by_advancing_it(clock):
    start = clock.monotonic()
    hold(1800 * 0.001, describe="the P2 triage", clock=clock)
    assert clock.monotonic() - start == pytest.approx(1.8)


def test_hold_counts_a_sleep_that_overshoots(clock):
    def overshoot(seconds):
        clock.advance(seconds + 0.4)

    assert hold(1.0, describe="x", clock=clock, sleep=overshoot) == pytest.approx(1.4)


def test_hold_is_ended_by_ctrl_c(clock):
    def interrupted(_seconds):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hold(60, describe="the triage", clock=clock, sleep=interrupted)


@pytest.mark.parametrize(("seconds", "interval_s"), [(float("nan"), 1.0), (float("inf"), 1.0), (1, 0), (1, -1)])
def test_hold_refuses_nonsense_timing(clock, seconds, interval_s):
    with pytest.raises(ValueError, match="hold"):
        hold(seconds, describe="x", clock=clock, interval_s=interval_s)


def test_a_deadline_closes_at_its_instant_on_the_clock(clock):
    window = Deadline(3.0, clock)
    assert not window.passed()
    assert window.remaining_s() == 3.0
    clock.advance(2.0)
    assert (window.remaining_s(), window.elapsed_s()) == (pytest.approx(1.0), pytest.approx(2.0))
    clock.advance(1.0)
    assert window.passed()
    clock.advance(5.0)
    assert window.remaining_s() == 0.0


def test_work_repeated_until_a_deadline_runs_on_the_fake_clock(clock):
    window = Deadline(1.0, clock)
    rounds = 0
    while not window.passed():
        rounds += 1
        clock.advance(0.25)
    assert rounds == 4


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf")])
def test_a_deadline_refuses_nonsense(clock, seconds):
    with pytest.raises(ValueError, match="deadline"):
        Deadline(seconds, clock)


# --- marks and measured windows ------------------------------------------------------------------


def full_drill(clock: FakeClock, **seconds: float) -> Marks:
    """A drill on the fake clock; ``seconds`` overrides the length of each phase."""
    plan = {
        "detect": 45.0,
        "initiate": 30.0,
        "steps_1_to_4": 300.0,
        "step_5": 120.0,
        "steps_6_to_8": 240.0,
        "seal": 15.0,
    } | seconds
    marks = Marks(clock)
    marks.mark("drill_start")
    clock.advance(60)
    marks.mark("incident_injected")
    clock.advance(plan["detect"])
    marks.mark("decision_made")
    clock.advance(plan["initiate"])
    marks.mark(step_start("step-1"))
    clock.advance(plan["steps_1_to_4"])
    marks.mark(step_end("step-4"))
    marks.mark(step_start("step-5"))
    clock.advance(plan["step_5"])
    marks.mark(step_end("step-5"))
    clock.advance(plan["steps_6_to_8"])
    marks.mark(step_end("step-8"))
    clock.advance(plan["seal"])
    marks.mark("bundle_sealed")
    return marks


def by_name(results: list[TargetResult]) -> dict[str, TargetResult]:
    return {r.name: r for r in results}


def test_marks_record_instants_on_the_clock(clock):
    marks = Marks(clock)
    t = marks.mark("drill_start")
    assert t == clock.monotonic()
    clock.advance(5)
    marks.mark("incident_injected")
    assert marks.get("incident_injected") == t + 5
    assert marks.between("drill_start", "incident_injected") == 5
    assert marks.between("drill_start", "decision_made") is None
    assert "drill_start" in marks
    assert "decision_made" not in marks
    assert marks.mark("decision_made", t=t + 2.5) == t + 2.5
    assert marks.as_dict() == {"drill_start": t, "incident_injected": t + 5, "decision_made": t + 2.5}


@pytest.mark.parametrize("name", ["drill-start", "step_start:step-9", "step_end:step4", "step_start", "begin:step-1"])
def test_marks_refuse_unknown_names(clock, name):
    with pytest.raises(ValueError, match="unknown mark"):
        Marks(clock).mark(name)


@pytest.mark.parametrize("step_id", STEP_IDS)
def test_every_step_id_can_be_marked(clock, step_id):
    marks = Marks(clock)
    marks.mark(step_start(step_id))
    marks.mark(step_end(step_id))
    assert marks.between(step_start(step_id), step_end(step_id)) == 0


def test_step_mark_names_check_the_id():
    assert step_start("pre-1") == "step_start:pre-1"
    assert step_end("phase-3") == "step_end:phase-3"
    with pytest.raises(ValueError, match="unknown runbook step id"):
        step_start("step-0")


def test_marks_refuse_a_second_mark_unless_overwriting(clock):
    marks = Marks(clock)
    marks.mark("drill_start")
    with pytest.raises(ValueError, match="already recorded"):
        marks.mark("drill_start")
    clock.advance(1)
    assert marks.mark("drill_start", overwrite=True) == clock.monotonic()


def test_compute_targets_on_a_clean_drill(clock):
    results = compute_targets(full_drill(clock), pilot_failed_requests=0, expanded_downtime_s=12.0)
    assert [r.name for r in results] == [
        "detect",
        "initiate",
        "rollback_execution",
        "expanded_downtime",
        "pilot_impact",
        "verify_pilot",
        "total_resolution",
        "drill",
    ]
    assert [r.as_evidence() for r in results] == [
        {"name": "detect", "limit": None, "measured": 45.0, "unit": "s", "met": None},
        {"name": "initiate", "limit": None, "measured": 30.0, "unit": "s", "met": None},
        {"name": "rollback_execution", "limit": 600.0, "measured": 300.0, "unit": "s", "met": True},
        {"name": "expanded_downtime", "limit": 300.0, "measured": 12.0, "unit": "s", "met": True},
        {"name": "pilot_impact", "limit": 0.0, "measured": 0, "unit": "requests", "met": True},
        {"name": "verify_pilot", "limit": None, "measured": 120.0, "unit": "s", "met": None},
        {"name": "total_resolution", "limit": 1800.0, "measured": 735.0, "unit": "s", "met": True},
        {"name": "drill", "limit": 1200.0, "measured": 810.0, "unit": "s", "met": True},
    ]
    json.dumps([r.as_evidence() for r in results])


@pytest.mark.parametrize(("execution_s", "met"), [(599.9, True), (600.0, False), (600.1, False), (45.0, True)])
def test_rollback_execution_must_be_strictly_under_10_minutes(clock, execution_s, met):
    results = by_name(
        compute_targets(full_drill(clock, steps_1_to_4=execution_s), pilot_failed_requests=0, expanded_downtime_s=0)
    )
    assert results["rollback_execution"].measured == pytest.approx(execution_s)
    assert results["rollback_execution"].met is met


@pytest.mark.parametrize(("downtime", "met"), [(0.0, True), (299.9, True), (300.0, False), (301.0, False)])
def test_expanded_downtime_must_be_strictly_under_5_minutes(clock, downtime, met):
    results = by_name(compute_targets(full_drill(clock), pilot_failed_requests=0, expanded_downtime_s=downtime))
    assert results["expanded_downtime"].met is met


@pytest.mark.parametrize(("failed", "met"), [(0, True), (1, False), (17, False)])
def test_pilot_impact_must_be_zero_failed_requests(clock, failed, met):
    results = by_name(compute_targets(full_drill(clock), pilot_failed_requests=failed, expanded_downtime_s=0))
    assert results["pilot_impact"].measured == failed
    assert results["pilot_impact"].unit == "requests"
    assert results["pilot_impact"].met is met


@pytest.mark.parametrize(("after_step_8_s", "met"), [(1799.9, True), (1800.0, False)])
def test_total_resolution_must_be_strictly_under_30_minutes(clock, after_step_8_s, met):
    # incident -> step-8 end is 45 + 30 + 300 + 120 + steps 6-8.
    marks = full_drill(clock, steps_6_to_8=after_step_8_s - 495.0)
    results = by_name(compute_targets(marks, pilot_failed_requests=0, expanded_downtime_s=0))
    assert results["total_resolution"].measured == pytest.approx(after_step_8_s)
    assert results["total_resolution"].met is met


@pytest.mark.parametrize(("drill_s", "met"), [(1199.9, True), (1200.0, False)])
def test_whole_drill_must_be_strictly_under_20_minutes(clock, drill_s, met):
    # drill start -> sealed is 60 + 45 + 30 + 300 + 120 + 240 + seal.
    marks = full_drill(clock, seal=drill_s - 795.0)
    results = by_name(compute_targets(marks, pilot_failed_requests=0, expanded_downtime_s=0))
    assert results["drill"].measured == pytest.approx(drill_s)
    assert results["drill"].met is met


def test_missing_marks_and_counts_are_unknown_not_met(clock):
    marks = Marks(clock)
    marks.mark("drill_start")
    marks.mark("incident_injected")
    clock.advance(20)
    marks.mark("decision_made")
    marks.mark(step_start("step-1"))  # the drill died in Step 1
    results = compute_targets(marks, pilot_failed_requests=None, expanded_downtime_s=None)
    met = {r.name: (r.measured, r.met) for r in results}
    assert met == {
        "detect": (20.0, None),
        "initiate": (0.0, None),
        "rollback_execution": (None, None),
        "expanded_downtime": (None, None),
        "pilot_impact": (None, None),
        "verify_pilot": (None, None),
        "total_resolution": (None, None),
        "drill": (None, None),
    }
    assert by_name(results)["rollback_execution"].limit == 600.0


def test_limits_override_the_defaults_by_name(clock):
    results = by_name(
        compute_targets(
            full_drill(clock),
            pilot_failed_requests=0,
            expanded_downtime_s=0,
            limits={"rollback_execution": 240.0, "detect": 60.0},
        )
    )
    assert (results["rollback_execution"].limit, results["rollback_execution"].met) == (240.0, False)
    assert (results["detect"].limit, results["detect"].met) == (60.0, True)
    assert results["drill"].limit == DEFAULT_LIMITS["drill"]


def test_unknown_limit_names_are_refused(clock):
    with pytest.raises(ConfigError, match="rollback_exec"):
        compute_targets(Marks(clock), pilot_failed_requests=0, expanded_downtime_s=0, limits={"rollback_exec": 1.0})


@pytest.mark.parametrize(("restored_s", "met"), [(100.0, True), (614.9, True), (615.0, False), (700.0, False)])
def test_pilot_hit_incidents_need_the_pilot_back_before_step_5_ends(clock, restored_s, met):
    marks = full_drill(clock, steps_1_to_4=420.0)  # Step 5 ends 45 + 30 + 420 + 120 = 615 s after the injection
    results = compute_targets(marks, pilot_failed_requests=3, expanded_downtime_s=0, pilot_restored_s=restored_s)
    names = [r.name for r in results]
    assert "pilot_impact" not in names
    assert names[4] == "pilot_restored_by_step_5"
    restored = by_name(results)["pilot_restored_by_step_5"]
    assert (restored.limit, restored.measured, restored.unit, restored.met) == (615.0, restored_s, "s", met)


def test_a_pilot_that_never_came_back_is_not_met(clock):
    results = by_name(
        compute_targets(full_drill(clock), pilot_failed_requests=40, expanded_downtime_s=0, pilot_hit=True)
    )
    restored = results["pilot_restored_by_step_5"]
    assert (restored.measured, restored.met) == (None, False)


def test_pilot_restoration_without_a_step_5_end_is_unknown(clock):
    marks = Marks(clock)
    marks.mark("incident_injected")
    results = by_name(compute_targets(marks, pilot_failed_requests=None, expanded_downtime_s=None, pilot_hit=True))
    assert results["pilot_restored_by_step_5"].met is None


def test_target_names_are_the_conventions_table():
    assert TARGET_NAMES == (
        "detect",
        "initiate",
        "rollback_execution",
        "expanded_downtime",
        "pilot_impact",
        "pilot_restored_by_step_5",
        "verify_pilot",
        "total_resolution",
        "drill",
    )


# --- probe accounting on synthetic samples ---------------------------------------------------------

SERVED = ProbeOutcome(ok=True, kind="served")
REFUSED = ProbeOutcome(ok=True, kind="refused", detail="Restricted to pilot scope")
ERROR = ProbeOutcome(ok=False, kind="error", detail="ConnectionResetError: reset by peer")
UNAVAILABLE = ProbeOutcome(ok=False, kind="unavailable", detail="503")


def samples_at(*points: tuple[float, ProbeOutcome]) -> list[ProbeSample]:
    return [ProbeSample(t, START + timedelta(seconds=t), outcome, 0.01) for t, outcome in points]


def test_failed_requests_counts_what_was_not_ok():
    samples = samples_at((0, SERVED), (1, ERROR), (2, UNAVAILABLE), (3, REFUSED), (4, SERVED))
    assert failed_requests(samples) == 2
    assert failed_requests([]) == 0


def test_downtime_counts_the_gaps_after_unclean_answers():
    samples = samples_at((0.0, SERVED), (0.5, UNAVAILABLE), (1.0, ERROR), (1.25, REFUSED), (2.0, REFUSED))
    assert downtime_s(samples) == pytest.approx(0.75)


def test_downtime_counts_nothing_after_the_last_sample():
    assert downtime_s(samples_at((0.0, SERVED), (1.0, ERROR))) == 0.0
    assert downtime_s(samples_at((0.0, ERROR))) == 0.0
    assert downtime_s([]) == 0.0


def test_downtime_is_all_of_it_when_every_answer_is_unclean():
    samples = samples_at(*((t / 10, ERROR) for t in range(11)))
    assert downtime_s(samples) == pytest.approx(1.0)


def test_downtime_sorts_samples_first():
    samples = samples_at((1.0, SERVED), (0.0, ERROR), (0.5, ERROR))
    assert downtime_s(samples) == pytest.approx(1.0)


def test_achieved_rate():
    assert achieved_rate_hz(samples_at(*((t / 20, SERVED) for t in range(21)))) == pytest.approx(20.0)
    assert achieved_rate_hz(samples_at((0, SERVED))) == 0.0
    assert achieved_rate_hz(samples_at((1, SERVED), (1, SERVED))) == 0.0
    assert achieved_rate_hz([]) == 0.0


def test_first_ok_after():
    samples = samples_at((0, SERVED), (1, ERROR), (2, UNAVAILABLE), (3, SERVED), (4, SERVED))
    assert first_ok_after(samples, 0.5) == 3
    assert first_ok_after(samples, 3) == 3
    assert first_ok_after(samples, 4.5) is None
    assert first_ok_after(samples_at((0, ERROR)), 0) is None


def test_samples_between_is_inclusive_and_open_ended():
    samples = samples_at((0, SERVED), (1, ERROR), (2, SERVED), (3, ERROR))
    assert [s.t_monotonic for s in samples_between(samples, 1, 2)] == [1, 2]
    assert [s.t_monotonic for s in samples_between(samples, None, 1)] == [0, 1]
    assert [s.t_monotonic for s in samples_between(samples, 2, None)] == [2, 3]
    assert failed_requests(samples_between(samples, 1.5, None)) == 1


def test_probe_once_records_outcomes_latency_and_errors_on_the_clock(clock):
    answers = [SERVED, ValueError("boom " + "x" * 500), "not an outcome"]

    def call():
        clock.advance(0.25)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    probe = Probe("pilot", call, rate_hz=10, clock=clock)
    for _ in range(3):
        probe._probe_once()
    served, error, wrong = probe.samples()
    assert served.outcome == SERVED
    assert served.wall == START
    assert served.latency_s == pytest.approx(0.25)
    assert error.t_monotonic == pytest.approx(served.t_monotonic + 0.25)
    assert (error.outcome.ok, error.outcome.kind) == (False, "error")
    assert error.outcome.detail.startswith("ValueError: boom xxx")
    assert len(error.outcome.detail) == 300
    assert (wrong.outcome.ok, wrong.outcome.kind) == (False, "error")
    assert "'not an outcome'" in wrong.outcome.detail


def test_probe_samples_are_a_copy(clock):
    probe = Probe("pilot", lambda: SERVED, rate_hz=10, clock=clock)
    probe._probe_once()
    copy = probe.samples()
    copy.clear()
    assert len(probe.samples()) == 1


@pytest.mark.parametrize("rate_hz", [0, -1, float("nan"), float("inf")])
def test_probe_refuses_a_nonsense_rate(rate_hz):
    with pytest.raises(ValueError, match="rate_hz"):
        Probe("p", lambda: SERVED, rate_hz=rate_hz)


def test_probe_stop_before_start_is_harmless_and_start_is_once(clock):
    probe = Probe("p", lambda: SERVED, rate_hz=10, clock=clock)
    probe.stop()
    probe = Probe("p", lambda: SERVED, rate_hz=10)
    with probe, pytest.raises(RuntimeError, match="already started"):
        probe.start()
    assert not probe.running


# --- one real thread (the only test where real time passes) ----------------------------------------


def test_a_real_probe_paces_itself_and_records_exceptions_as_errors():
    calls = 0
    lock = threading.Lock()

    def flaky():
        nonlocal calls
        with lock:
            calls += 1
            n = calls
        if n % 3 == 0:
            raise ConnectionError(f"call {n} refused")
        return SERVED

    with Probe("pilot", flaky, rate_hz=50) as probe:
        wait_until(lambda: len(probe.samples()) >= 15, timeout_s=10, describe="15 probe samples", interval_s=0.02)
        assert probe.running
    assert not probe.running
    samples = probe.samples()
    assert len(samples) >= 15
    errors = [s for s in samples if s.outcome.kind == "error"]
    assert errors
    assert all(not s.outcome.ok for s in errors)
    assert errors[0].outcome.detail == "ConnectionError: call 3 refused"
    assert failed_requests(samples) == len(errors) == len(samples) // 3
    # Deadline pacing never bursts above the rate (with slack for timer jitter); the lower bound is loose.
    assert 5.0 < achieved_rate_hz(samples) < 50 * 1.5
    assert all(s.wall.tzinfo is UTC for s in samples)
    # Stopped means stopped: no sample arrives afterwards.
    assert len(probe.samples()) == len(samples)


def test_an_overlapping_probe_keeps_its_rate_when_answers_are_slow():
    """With max_in_flight > 1 a slow answer does not hold up the next slot (the pilot probe during a rollout)."""
    release = threading.Event()

    def slow() -> ProbeOutcome:
        release.wait(0.3)
        return ProbeOutcome(ok=True, kind="served")

    serial = Probe("serial", slow, rate_hz=20.0)
    overlapping = Probe("overlapping", slow, rate_hz=20.0, max_in_flight=8)
    with serial, overlapping:
        wait_until(lambda: len(overlapping.samples()) >= 8, timeout_s=10, describe="8 overlapping answers")
    release.set()
    assert len(overlapping.samples()) > 2 * max(1, len(serial.samples()))


def test_max_in_flight_must_be_positive():
    with pytest.raises(ValueError, match="max_in_flight"):
        Probe("p", lambda: ProbeOutcome(ok=True, kind="served"), rate_hz=1.0, max_in_flight=0)
