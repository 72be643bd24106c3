"""Decision signals as the decision framework's scenarios describe them in words.

features/decision_framework.feature states each case as the runbook does ("11 repos failing
with cause model-timeout", "a failure ratio of 4 percent"). Each function here builds the
``Signals`` snapshot that sentence describes, with healthy repos around the one condition,
so the decision is taken on exactly that condition and nothing else.
"""

from __future__ import annotations

from typing import Final

from rollback_drill.runbook.decision import RepoSignal, Signals

HEALTHY_FLOWS: Final = 50
"""Flows an hour of a healthy repo."""
HEALTHY_KILL_RATE: Final = 0.85
"""A healthy repo's mutation kill-rate, well above the runbook's 60 %."""
BACKGROUND_REPOS: Final = 3
"""Healthy repos around a condition that is not about repos."""
FAILING_REPO_FAILURES: Final = 6
"""Failures an hour of a failing repo: more than the runbook's 5."""
FAILING_REPO_FLOWS: Final = 20
HEALTHY_AROUND_FAILURES: Final = 40
"""Healthy repos around failing ones, enough that the failing ones stay under the 5 % failure ratio."""
RATIO_REPOS: Final = 20
"""Repos over which a failure ratio is spread (20 x 50 flows), so that no single repo fails more than 5 an hour."""
CONFIG_VALIDATION_ERROR: Final = "customer-analytics: unknown block_type 'attestaton' in test-basel-i.json"


def healthy_repos(count: int, start: int = 0) -> tuple[RepoSignal, ...]:
    """``count`` healthy repos, ``healthy-<start>`` on."""
    return tuple(
        RepoSignal(f"healthy-{i}", flows_last_hour=HEALTHY_FLOWS, kill_rate=HEALTHY_KILL_RATE)
        for i in range(start, start + count)
    )


def crash_loop(seconds: float) -> Signals:
    """ "crash loop unavailable for N seconds"."""
    return Signals(repos=healthy_repos(BACKGROUND_REPOS), crash_loop_unavailable_s=seconds)


def db_integrity_failing() -> Signals:
    """ "TaskDB integrity failing"."""
    return Signals(repos=healthy_repos(BACKGROUND_REPOS), db_integrity_ok=False)


def credentials_leaked() -> Signals:
    """ "credentials leaked"."""
    return Signals(repos=healthy_repos(BACKGROUND_REPOS), credentials_leaked=True)


def daily_spend(dollars: float) -> Signals:
    """ "daily spend of N dollars"."""
    return Signals(repos=healthy_repos(BACKGROUND_REPOS), daily_spend_usd=dollars)


def repos_failing(count: int, cause: str) -> Signals:
    """ "N repos failing with cause C", among enough healthy repos that the overall failure ratio stays low."""
    failing = tuple(
        RepoSignal(
            f"failing-{i}", failures_last_hour=FAILING_REPO_FAILURES, flows_last_hour=FAILING_REPO_FLOWS, cause=cause
        )
        for i in range(count)
    )
    return Signals(repos=failing + healthy_repos(HEALTHY_AROUND_FAILURES))


def kill_rate(rate: float, low: int, total: int) -> Signals:
    """ "kill-rate R on L of T repos"."""
    degraded = tuple(RepoSignal(f"degraded-{i}", flows_last_hour=HEALTHY_FLOWS, kill_rate=rate) for i in range(low))
    return Signals(repos=degraded + healthy_repos(total - low))


def p95_held(p95_s: float, held_s: float) -> Signals:
    """ "P95 of N seconds for M seconds": held only counts above the runbook's 150 s."""
    return Signals(
        repos=healthy_repos(BACKGROUND_REPOS), p95_latency_s=p95_s, p95_above_150s_for_s=held_s if p95_s > 150 else 0.0
    )


def providers_rate_limited(count: int) -> Signals:
    """ "N model providers rate-limited"."""
    return Signals(repos=healthy_repos(BACKGROUND_REPOS), providers_rate_limited=count)


def failure_ratio(percent: float) -> Signals:
    """ "a failure ratio of P percent", spread over 20 repos of 50 flows so that no single repo passes 5 an hour."""
    total_failures = round(percent * RATIO_REPOS * HEALTHY_FLOWS / 100)
    repos = tuple(
        RepoSignal(
            f"repo-{i}",
            flows_last_hour=HEALTHY_FLOWS,
            failures_last_hour=total_failures // RATIO_REPOS + (1 if i < total_failures % RATIO_REPOS else 0),
        )
        for i in range(RATIO_REPOS)
    )
    return Signals(repos=repos)


def config_validation_error() -> Signals:
    """ "a config validation error": a user's mistake, not the orchestrator's."""
    return Signals(repos=healthy_repos(BACKGROUND_REPOS), config_validation_errors=(CONFIG_VALIDATION_ERROR,))
