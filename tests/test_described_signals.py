"""Signals as the decision framework's scenarios describe them: each sentence, and nothing else, in the snapshot."""

from __future__ import annotations

import pytest

from rollback_drill.runbook import described_signals
from rollback_drill.runbook.decision import Signals, decide


def test_healthy_repos_are_named_in_order_and_well_above_every_threshold():
    repos = described_signals.healthy_repos(3, start=2)
    assert [r.repo for r in repos] == ["healthy-2", "healthy-3", "healthy-4"]
    assert all(r.failures_last_hour == 0 and r.kill_rate == 0.85 and r.flows_last_hour == 50 for r in repos)
    assert not decide(Signals(repos=repos)).rolls_back


@pytest.mark.parametrize("percent", [0, 4, 4.95, 5.05, 12.5])
def test_a_failure_ratio_is_spread_so_that_no_single_repo_fails_more_than_5_an_hour(percent):
    signals = described_signals.failure_ratio(percent)
    assert len(signals.repos) == 20
    assert sum(r.failures_last_hour for r in signals.repos) == round(percent * 10)
    assert sum(r.flows_last_hour for r in signals.repos) == 1000
    assert max(r.failures_last_hour for r in signals.repos) <= 5 or percent > 10


def test_failing_repos_carry_their_cause_among_40_healthy_ones():
    signals = described_signals.repos_failing(3, "shared-cache")
    failing = [r for r in signals.repos if r.failures_last_hour]
    assert [(r.repo, r.cause, r.failures_last_hour) for r in failing] == [
        ("failing-0", "shared-cache", 6),
        ("failing-1", "shared-cache", 6),
        ("failing-2", "shared-cache", 6),
    ]
    assert len(signals.repos) == 43


def test_kill_rate_degrades_exactly_the_repos_named():
    signals = described_signals.kill_rate(0.59, 5, 10)
    assert sorted(r.kill_rate for r in signals.repos) == [0.59] * 5 + [0.85] * 5


def test_a_p95_at_or_under_150_seconds_has_not_been_above_it_for_any_time():
    assert described_signals.p95_held(150, 9000).p95_above_150s_for_s == 0
    assert described_signals.p95_held(151, 7201).p95_above_150s_for_s == 7201


@pytest.mark.parametrize(
    ("signals", "field", "value"),
    [
        (described_signals.crash_loop(901), "crash_loop_unavailable_s", 901),
        (described_signals.db_integrity_failing(), "db_integrity_ok", False),
        (described_signals.credentials_leaked(), "credentials_leaked", True),
        (described_signals.daily_spend(200.01), "daily_spend_usd", 200.01),
        (described_signals.providers_rate_limited(3), "providers_rate_limited", 3),
        (
            described_signals.config_validation_error(),
            "config_validation_errors",
            (described_signals.CONFIG_VALIDATION_ERROR,),
        ),
    ],
)
def test_each_condition_is_the_only_one_among_three_healthy_repos(signals, field, value):
    assert getattr(signals, field) == value
    assert signals.repos == described_signals.healthy_repos(3)
