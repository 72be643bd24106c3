"""Steps for features/decision_framework.feature: signal values in, the runbook's decision out."""

from __future__ import annotations

from pytest_bdd import given, parsers, then, when

from rollback_drill.runbook.decision import RepoSignal, Signals, decide

HEALTHY_FLOWS = 50


def _healthy(count: int, start: int = 0) -> tuple[RepoSignal, ...]:
    return tuple(
        RepoSignal(f"healthy-{i}", flows_last_hour=HEALTHY_FLOWS, kill_rate=0.85) for i in range(start, start + count)
    )


@given(parsers.parse("the signals crash loop unavailable for {seconds:g} seconds"), target_fixture="signals")
def _crash_loop(seconds):
    return Signals(repos=_healthy(3), crash_loop_unavailable_s=seconds)


@given("the signals TaskDB integrity failing", target_fixture="signals")
def _db_integrity():
    return Signals(repos=_healthy(3), db_integrity_ok=False)


@given("the signals credentials leaked", target_fixture="signals")
def _leak():
    return Signals(repos=_healthy(3), credentials_leaked=True)


@given(parsers.parse("the signals daily spend of {dollars:g} dollars"), target_fixture="signals")
def _spend(dollars):
    return Signals(repos=_healthy(3), daily_spend_usd=dollars)


@given(parsers.parse('the signals {count:d} repos failing with cause "{cause}"'), target_fixture="signals")
def _failing(count, cause):
    failing = tuple(
        RepoSignal(f"failing-{i}", failures_last_hour=6, flows_last_hour=20, cause=cause) for i in range(count)
    )
    return Signals(repos=failing + _healthy(40))


@given(parsers.parse("the signals kill-rate {rate:g} on {low:d} of {total:d} repos"), target_fixture="signals")
def _kill_rate(rate, low, total):
    degraded = tuple(RepoSignal(f"degraded-{i}", flows_last_hour=HEALTHY_FLOWS, kill_rate=rate) for i in range(low))
    return Signals(repos=degraded + _healthy(total - low))


@given(parsers.parse("the signals P95 of {p95:g} seconds for {held:g} seconds"), target_fixture="signals")
def _slo(p95, held):
    return Signals(repos=_healthy(3), p95_latency_s=p95, p95_above_150s_for_s=held if p95 > 150 else 0.0)


@given(parsers.parse("the signals {count:d} model providers rate-limited"), target_fixture="signals")
def _providers(count):
    return Signals(repos=_healthy(3), providers_rate_limited=count)


@given(parsers.parse("the signals a failure ratio of {percent:g} percent"), target_fixture="signals")
def _ratio(percent):
    # 20 repos x 50 flows; the failures spread so that no single repo passes 5 an hour.
    total_failures = round(percent * 10)
    repos = tuple(
        RepoSignal(
            f"repo-{i}",
            flows_last_hour=HEALTHY_FLOWS,
            failures_last_hour=total_failures // 20 + (1 if i < total_failures % 20 else 0),
        )
        for i in range(20)
    )
    return Signals(repos=repos)


@given("the signals a config validation error", target_fixture="signals")
def _user_error():
    return Signals(
        repos=_healthy(3),
        config_validation_errors=("customer-analytics: unknown block_type 'attestaton' in test-basel-i.json",),
    )


@when("the Incident Commander applies the decision framework", target_fixture="decision")
def _apply(signals):
    return decide(signals)


@then(parsers.parse('the decision is "{priority}" with action "{action}"'))
def _decision_is(decision, priority, action):
    assert (decision.priority, decision.action) == (priority, action), decision


@then(parsers.parse('the decision is not "{priority}"'))
def _decision_is_not(decision, priority):
    assert decision.priority != priority, decision


@then(parsers.parse('the criteria met include "{criterion}"'))
def _criteria_include(decision, criterion):
    assert criterion in decision.criteria_met, decision


@then(parsers.parse('the criteria met do not include "{criterion}"'))
def _criteria_exclude(decision, criterion):
    assert criterion not in decision.criteria_met, decision


@then("no triage wait applies")
def _no_triage(decision):
    assert decision.triage_s == 0, decision


@then(parsers.parse("the triage wait is {minutes:d} minutes"))
def _triage(decision, minutes):
    assert decision.triage_s == minutes * 60, decision
