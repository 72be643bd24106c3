"""The runbook's decision framework ("When to Execute Rollback") as one pure function.

``decide`` reads a snapshot of measured signals and answers what RB-LAUNCH-002 says to
do: P1 (roll back now), P2 (roll back after a 30-minute triage), NO-GO (do not roll
back; isolate a single failing repo per RB-CORE-001), or nothing at all. The edges are
the runbook's own and are strict where the runbook writes ``>`` or ``<``: a crash loop
of exactly 15 minutes, a spend of exactly $200 or exactly 10 failing repos is not P1.

Only the criteria of the winning priority are reported, all of them, each with a
sentence that carries the measured numbers.

``to_decision_signals`` reads FlowEngine's ``/api/v1/signals`` answer into ``Signals``;
``decide_live`` is the one way the drill decides from a running FlowEngine.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from rollback_drill.errors import InputError
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.flowengine.incidents import MODEL_PROVIDERS

Priority = Literal["P1", "P2", "NO-GO", "NONE"]
Action = Literal["roll back", "triage then roll back", "isolate repo", "do not roll back"]

CRASH_LOOP_LIMIT_S = 900.0
"""P1 when the flowengine Deployment has been unavailable in a crash loop for longer (15 minutes)."""
DAILY_SPEND_LIMIT_USD = 200.0
"""P1 when daily spend is above this (4x the $50 budget)."""
FAILING_REPO_FAILURES_PER_HOUR = 5
"""A repo counts as failing with more flow failures than this in the last hour (the runbook's ">5 failures/hour")."""
MASS_FAILURE_REPOS = 10
"""P1 when more repos than this are failing at once."""
KILL_RATE_FLOOR = 0.60
"""P2 when the mutation kill-rate is below this on at least half the repos whose kill-rate is known."""
P95_LATENCY_LIMIT_S = 150.0
"""P2 when P95 latency stays above this ..."""
P95_SUSTAINED_LIMIT_S = 7200.0
"""... for longer than this (2 hours)."""
CASCADE_MIN_REPOS = 3
"""P2 when at least this many repos are failing with the same root cause."""
INTERMITTENT_RATIO = 0.05
"""NO-GO when the overall failure ratio is above zero and below this (5 %)."""
P2_TRIAGE_S = 1800.0
"""The runbook's 30-minute triage before a P2 rollback (scaled by the drill's time_scale elsewhere, never here)."""

CRITERIA: Mapping[str, str] = MappingProxyType(
    {
        "p1-crash-loop": "FlowEngine Crash Loop: Deployment unavailable >15 minutes",
        "p1-db-corruption": "Database Corruption: TaskDB integrity compromised",
        "p1-security-breach": "Security Breach: Credentials leaked, unauthorized access detected",
        "p1-cost-runaway": "Cost Runaway: Daily spend >$200 (4× budget)",  # noqa: RUF001 the runbook's own wording
        "p1-mass-concurrent-failures": "Mass Concurrent Failures: >10 repos failing simultaneously",
        "p2-quality-degradation": "Persistent Quality Degradation: <60% mutation kill-rate across ≥50% of repos",
        "p2-slo-violation": "Sustained SLO Violations: P95 latency >150s for >2 hours",
        "p2-model-quota-exhaustion": "Model API Quota Exhaustion: All 3 providers rate-limiting",
        "p2-cascading-failures": "Cascading Failures: ≥3 repos failing due to same root cause",
        "nogo-single-repo": "Single repo failure (isolate repo instead, see RB-CORE-001)",
        "nogo-intermittent": "Intermittent errors (<5% failure rate)",
        "nogo-user-error": "User error (incorrect config, training issue)",
    }
)
"""Criterion id -> the runbook's wording, for reports."""

_NO_CRITERION_REASON = "no rollback criterion met"
_ROLLING_BACK: frozenset[Action] = frozenset({"roll back", "triage then roll back"})


@dataclass(frozen=True)
class RepoSignal:
    """What the drill measured for one active repo over the last hour."""

    repo: str
    failures_last_hour: int = 0
    """Flow failures in the last hour."""
    flows_last_hour: int = 0
    """Flows attempted in the last hour; the denominator of the failure ratio."""
    cause: str | None = None
    """Dominant failure cause, e.g. ``model-timeout``; ``None`` when unknown or not failing."""
    kill_rate: float | None = None
    """Mutation kill-rate as a fraction 0..1 (not a percentage); ``None`` when unknown."""

    def __post_init__(self) -> None:
        if not self.repo:
            raise ValueError("RepoSignal.repo must name a repo")
        if self.failures_last_hour < 0 or self.flows_last_hour < 0:
            raise ValueError(
                f"repo {self.repo!r}: failure and flow counts must be >= 0, got "
                f"failures_last_hour={self.failures_last_hour}, flows_last_hour={self.flows_last_hour}"
            )
        if self.kill_rate is not None and not 0.0 <= self.kill_rate <= 1.0:
            raise ValueError(
                f"repo {self.repo!r}: kill_rate is a fraction 0..1, got {self.kill_rate!r} (pass 0.59 for 59 %, not 59)"
            )

    @property
    def failing(self) -> bool:
        """More than 5 flow failures in the last hour."""
        return self.failures_last_hour > FAILING_REPO_FAILURES_PER_HOUR


@dataclass(frozen=True)
class Signals:
    """One snapshot of everything the decision framework looks at."""

    repos: tuple[RepoSignal, ...] = ()
    """Every active repo, pilot and expanded."""
    crash_loop_unavailable_s: float = 0.0
    """Seconds the flowengine Deployment has been unavailable in a crash loop (injection backdates it)."""
    db_integrity_ok: bool = True
    credentials_leaked: bool = False
    daily_spend_usd: float = 0.0
    p95_latency_s: float = 0.0
    p95_above_150s_for_s: float = 0.0
    """How long P95 latency has been above 150 s, in seconds."""
    providers_rate_limited: int = 0
    """How many of the 3 model providers (anthropic, openai, google) are rate-limiting."""
    config_validation_errors: tuple[str, ...] = ()
    """User error: one message per invalid repo config."""

    def __post_init__(self) -> None:
        names = [r.repo for r in self.repos]
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            raise ValueError(f"each repo may appear once in Signals.repos; repeated: {', '.join(duplicates)}")
        numbers = {
            "crash_loop_unavailable_s": self.crash_loop_unavailable_s,
            "daily_spend_usd": self.daily_spend_usd,
            "p95_latency_s": self.p95_latency_s,
            "p95_above_150s_for_s": self.p95_above_150s_for_s,
        }
        for field_name, value in numbers.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Signals.{field_name} must be a finite number >= 0, got {value!r}")
        if not 0 <= self.providers_rate_limited <= len(MODEL_PROVIDERS):
            raise ValueError(
                f"Signals.providers_rate_limited counts the {len(MODEL_PROVIDERS)} providers "
                f"{', '.join(MODEL_PROVIDERS)}; got {self.providers_rate_limited}"
            )

    @property
    def failing_repos(self) -> tuple[RepoSignal, ...]:
        return tuple(r for r in self.repos if r.failing)


@dataclass(frozen=True)
class Decision:
    """What the runbook says to do, which criteria made it say so, and why."""

    priority: Priority
    action: Action
    criteria_met: tuple[str, ...]
    """Criterion ids (keys of ``CRITERIA``) of the winning priority, in the runbook's order."""
    reasons: tuple[str, ...]
    """One sentence per criterion met, with the measured numbers."""
    triage_s: float
    """Triage before rolling back: 1800 s for P2, else 0."""

    @property
    def rolls_back(self) -> bool:
        return self.action in _ROLLING_BACK

    def as_evidence(self) -> dict[str, object]:
        return {
            "priority": self.priority,
            "criteria_met": list(self.criteria_met),
            "action": self.action,
            "reasons": list(self.reasons),
            "triage_s": self.triage_s,
        }


def _crash_loop(s: Signals) -> str | None:
    if s.crash_loop_unavailable_s > CRASH_LOOP_LIMIT_S:
        return (
            f"flowengine Deployment unavailable in a crash loop for {s.crash_loop_unavailable_s:g} s "
            f"(> {CRASH_LOOP_LIMIT_S:g} s)"
        )
    return None


def _db_corruption(s: Signals) -> str | None:
    return None if s.db_integrity_ok else "TaskDB integrity check failed (integrity compromised)"


def _security_breach(s: Signals) -> str | None:
    return "credentials leaked" if s.credentials_leaked else None


def _cost_runaway(s: Signals) -> str | None:
    if s.daily_spend_usd > DAILY_SPEND_LIMIT_USD:
        return f"daily spend ${s.daily_spend_usd:.2f} (> ${DAILY_SPEND_LIMIT_USD:.2f})"
    return None


def _mass_concurrent_failures(s: Signals) -> str | None:
    failing = len(s.failing_repos)
    if failing > MASS_FAILURE_REPOS:
        return f"{failing} repos failing simultaneously (> {MASS_FAILURE_REPOS})"
    return None


def _quality_degradation(s: Signals) -> str | None:
    known = [r for r in s.repos if r.kill_rate is not None]
    low = [r for r in known if r.kill_rate is not None and r.kill_rate < KILL_RATE_FLOOR]
    # Integer comparison, so that exactly half counts without float rounding.
    if known and 2 * len(low) >= len(known):
        share = 100 * len(low) / len(known)
        return (
            f"mutation kill-rate below {KILL_RATE_FLOOR:.0%} on {len(low)} of {len(known)} repos "
            f"with a known kill-rate ({share:.0f} % >= 50 %)"
        )
    return None


def _slo_violation(s: Signals) -> str | None:
    if s.p95_latency_s > P95_LATENCY_LIMIT_S and s.p95_above_150s_for_s > P95_SUSTAINED_LIMIT_S:
        return (
            f"P95 latency {s.p95_latency_s:g} s (> {P95_LATENCY_LIMIT_S:g} s) "
            f"for {s.p95_above_150s_for_s:g} s (> {P95_SUSTAINED_LIMIT_S:g} s)"
        )
    return None


def _model_quota_exhaustion(s: Signals) -> str | None:
    if s.providers_rate_limited >= len(MODEL_PROVIDERS):
        return (
            f"all {len(MODEL_PROVIDERS)} model providers rate-limiting "
            f"({s.providers_rate_limited} of {len(MODEL_PROVIDERS)}: {', '.join(MODEL_PROVIDERS)})"
        )
    return None


def _name_repos(repos: list[str], shown: int = 5) -> str:
    if len(repos) <= shown:
        return ", ".join(repos)
    return f"{', '.join(repos[:shown])} and {len(repos) - shown} more"


def _cascading_failures(s: Signals) -> str | None:
    by_cause: dict[str, list[str]] = {}
    for r in s.failing_repos:
        if r.cause is not None:
            by_cause.setdefault(r.cause, []).append(r.repo)
    sentences = [
        f"{len(repos)} repos failing with the same root cause {cause!r} (>= {CASCADE_MIN_REPOS}): {_name_repos(repos)}"
        for cause, repos in sorted(by_cause.items())
        if len(repos) >= CASCADE_MIN_REPOS
    ]
    return "; ".join(sentences) if sentences else None


def _single_repo(s: Signals) -> str | None:
    failing = s.failing_repos
    if len(failing) == 1:
        only = failing[0]
        return (
            f"only repo {only.repo!r} failing ({only.failures_last_hour} failures in the last hour): "
            "isolate it (RB-CORE-001)"
        )
    return None


def _intermittent(s: Signals) -> str | None:
    failures = sum(r.failures_last_hour for r in s.repos)
    flows = sum(r.flows_last_hour for r in s.repos)
    # failures / flows < 5 %, in integers: exactly 5.0 % is not intermittent.
    if flows > 0 and failures > 0 and failures * 20 < flows:
        return f"failure ratio {100 * failures / flows:.2f} % ({failures} of {flows} flows in the last hour) below 5 %"
    return None


def _user_error(s: Signals) -> str | None:
    if s.config_validation_errors:
        return f"config validation errors: {'; '.join(s.config_validation_errors)}"
    return None


_Check = tuple[str, Callable[[Signals], str | None]]

_P1_CHECKS: tuple[_Check, ...] = (
    ("p1-crash-loop", _crash_loop),
    ("p1-db-corruption", _db_corruption),
    ("p1-security-breach", _security_breach),
    ("p1-cost-runaway", _cost_runaway),
    ("p1-mass-concurrent-failures", _mass_concurrent_failures),
)
_P2_CHECKS: tuple[_Check, ...] = (
    ("p2-quality-degradation", _quality_degradation),
    ("p2-slo-violation", _slo_violation),
    ("p2-model-quota-exhaustion", _model_quota_exhaustion),
    ("p2-cascading-failures", _cascading_failures),
)
_NOGO_CHECKS: tuple[_Check, ...] = (
    ("nogo-single-repo", _single_repo),
    ("nogo-intermittent", _intermittent),
    ("nogo-user-error", _user_error),
)


def _met(signals: Signals, checks: tuple[_Check, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    found = [(criterion, reason) for criterion, check in checks if (reason := check(signals)) is not None]
    return tuple(c for c, _ in found), tuple(r for _, r in found)


def decide(signals: Signals) -> Decision:
    """Apply RB-LAUNCH-002's decision framework: P1 wins over P2, P2 over NO-GO."""
    criteria, reasons = _met(signals, _P1_CHECKS)
    if criteria:
        return Decision("P1", "roll back", criteria, reasons, 0.0)
    criteria, reasons = _met(signals, _P2_CHECKS)
    if criteria:
        return Decision("P2", "triage then roll back", criteria, reasons, P2_TRIAGE_S)
    criteria, reasons = _met(signals, _NOGO_CHECKS)
    if criteria:
        action: Action = "isolate repo" if "nogo-single-repo" in criteria else "do not roll back"
        return Decision("NO-GO", action, criteria, reasons, 0.0)
    return Decision("NONE", "do not roll back", (), (_NO_CRITERION_REASON,), 0.0)


def to_decision_signals(payload: Mapping[str, Any]) -> Signals:
    """Turn FlowEngine's ``/api/v1/signals`` answer (``FlowEngineClient.signals()``) into ``Signals``."""
    try:
        repos = tuple(
            RepoSignal(
                repo=str(item["repo"]),
                failures_last_hour=int(item.get("failures_last_hour") or 0),
                flows_last_hour=int(item.get("flows_last_hour") or 0),
                cause=str(item["cause"]) if item.get("cause") is not None else None,
                kill_rate=float(item["kill_rate"]) if item.get("kill_rate") is not None else None,
            )
            for item in payload.get("repos") or ()
        )
        return Signals(
            repos=repos,
            crash_loop_unavailable_s=float(payload.get("crash_loop_unavailable_s") or 0.0),
            db_integrity_ok=bool(payload.get("db_integrity_ok", True)),
            credentials_leaked=bool(payload.get("credentials_leaked", False)),
            daily_spend_usd=float(payload.get("daily_spend_usd") or 0.0),
            p95_latency_s=float(payload.get("p95_latency_s") or 0.0),
            p95_above_150s_for_s=float(payload.get("p95_above_150s_for_s") or 0.0),
            providers_rate_limited=int(payload.get("providers_rate_limited") or 0),
            config_validation_errors=tuple(str(e) for e in payload.get("config_validation_errors") or ()),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"FlowEngine's /api/v1/signals answer does not fit the decision framework ({type(exc).__name__}: {exc}); "
            "point --flowengine-url at a FlowEngine that serves the drill's signals API"
        ) from exc


def decide_live(flowengine: FlowEngineClient) -> Decision:
    """The Incident Commander's decision from FlowEngine's signals as they are now."""
    return decide(to_decision_signals(flowengine.signals()))
