"""Steps for features/decision_framework.feature: signal values in, the runbook's decision out."""

from __future__ import annotations

from pytest_bdd import given, parsers, then, when

from rollback_drill.runbook import described_signals
from rollback_drill.runbook.decision import decide


@given(parsers.parse("the signals crash loop unavailable for {seconds:g} seconds"), target_fixture="signals")
def _crash_loop(seconds):
    return described_signals.crash_loop(seconds)


@given("the signals TaskDB integrity failing", target_fixture="signals")
def _db_integrity():
    return described_signals.db_integrity_failing()


@given("the signals credentials leaked", target_fixture="signals")
def _leak():
    return described_signals.credentials_leaked()


@given(parsers.parse("the signals daily spend of {dollars:g} dollars"), target_fixture="signals")
def _spend(dollars):
    return described_signals.daily_spend(dollars)


@given(parsers.parse('the signals {count:d} repos failing with cause "{cause}"'), target_fixture="signals")
def _failing(count, cause):
    return described_signals.repos_failing(count, cause)


@given(parsers.parse("the signals kill-rate {rate:g} on {low:d} of {total:d} repos"), target_fixture="signals")
def _kill_rate(rate, low, total):
    return described_signals.kill_rate(rate, low, total)


@given(parsers.parse("the signals P95 of {p95:g} seconds for {held:g} seconds"), target_fixture="signals")
def _slo(p95, held):
    return described_signals.p95_held(p95, held)


@given(parsers.parse("the signals {count:d} model providers rate-limited"), target_fixture="signals")
def _providers(count):
    return described_signals.providers_rate_limited(count)


@given(parsers.parse("the signals a failure ratio of {percent:g} percent"), target_fixture="signals")
def _ratio(percent):
    return described_signals.failure_ratio(percent)


@given("the signals a config validation error", target_fixture="signals")
def _user_error():
    return described_signals.config_validation_error()


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
