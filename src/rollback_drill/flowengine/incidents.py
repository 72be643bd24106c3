"""The incident catalogue: what each incident of CONVENTIONS' table stands for, and the numbers it uses.

The catalogue is data: for each incident, the runbook criterion it stands for, the decision
the drill expects, whether it takes the pilot down, and what clears it. What one injection
writes into TaskDB's past is ``injection``; what the active injections do to a flow or a
signal right now is ``injection_state``; the simulator adds TaskDB and HTTP.

Injection backdates its signal (CONVENTIONS: "Injection backdates the signal"), so that a
criterion with a duration ("crash loop > 15 minutes", "P95 > 150 s for > 2 hours") holds
the moment the incident is injected.

"Failing now" depends on scope: an incident makes the flows of its repos fail only while
those repos are served. Once a repo is refused it runs no flows, so it cannot fail; the
simulator's signals list served repos only (the decision framework's "active repos").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from rollback_drill.errors import InputError

ExpectedDecision = Literal["P1", "P2", "NO-GO"]

GATES: Final = ("schema", "lint", "unit-tests", "mutation", "attestation")
"""The five quality gates of a flow; ``blocks verify --strict`` needs all of them."""

MODEL_PROVIDERS: Final = ("anthropic", "openai", "google")
"""FlowEngine's model providers: ``/health/models/PROVIDER`` answers for each (Step 6 checks them all), the
decision framework's P2 "all 3 providers rate-limiting" counts them, and ``model-outage`` rate-limits them."""

# --- the numbers incidents use --------------------------------------------------------------------

BACKDATED_FAILURES_PER_REPO: Final = 8
"""Failed flows written into the last hour per affected repo: more than the runbook's 5 failures/hour."""
BACKDATE_SPREAD_S: Final = 1200.0
"""Backdated flows are spread over the 20 minutes before injection, so they stay inside the
one-hour window for 40 minutes (a drill's total resolution target is 30) and stay out of any
window that starts after the injection (Step 6 looks at the time after the rollback)."""
CRASH_LOOP_BACKDATE_S: Final = 960.0
"""A crash loop is injected as already 16 minutes old: over the runbook's 15."""
DAILY_SPEND_BACKDATE_USD: Final = 250.0
"""Daily spend at injection of ``cost-runaway``: over the runbook's $200 (4x the $50 budget)."""
BASE_SPEND_USD_PER_HOUR: Final = 1.5
"""What a served repo normally costs per hour."""
RUNAWAY_SPEND_USD_PER_HOUR: Final = 40.0
"""What a repo hit by ``cost-runaway`` costs per hour while it is served."""
BASELINE_KILL_RATE: Final = 0.85
"""Mutation kill-rate of a healthy repo (and of the pilot under ``quality-degradation``)."""
DEGRADED_KILL_RATE: Final = 0.55
"""Kill-rate of the repos hit by ``quality-degradation``: under the runbook's 60 %."""
MUTATION_GATE_MIN_KILL_RATE: Final = 0.60
"""The mutation gate fails below this kill-rate."""
NORMAL_DURATION_S: Final = (40.0, 90.0)
"""Simulated duration of a healthy flow (the runbook expects < 120 s)."""
SLOW_DURATION_S: Final = (180.0, 200.0)
"""Simulated duration of a flow of a repo hit by ``slo-violation`` (P95 about 190 s)."""
SLO_ABOVE_BACKDATE_S: Final = 7800.0
"""P95 injected as above 150 s for 2 h 10 min already: over the runbook's 2 hours."""
SLOW_FLOWS_PER_REPO: Final = 6
"""Completed slow flows backdated per repo hit by ``slo-violation`` (about $9 each repo, far from a cost runaway)."""
NORMAL_COST_USD: Final = (0.80, 1.60)
"""Simulated cost of a healthy flow (the runbook expects < $2.00)."""
RUNAWAY_COST_USD: Final = (6.0, 9.0)
INTERMITTENT_FLOWS: Final = 100
"""Backdated flows under ``intermittent-errors``, spread over the expanded repos, of which ``failure_ratio`` fail.
Few enough that their cost (about $120) stays under the $200 of a cost runaway."""
INTERMITTENT_RATIO: Final = 0.03
DEFAULT_FLAKY_RATE: Final = 0.02
USER_ERROR_TEMPLATE: Final = "{repo}: unknown block_type 'attestaton' in test-basel-i.json"

CAUSES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "mass-failure": "model-timeout",
        "cascading-failure": "shared-cache-poisoned",
        "single-repo-failure": "repo-build-broken",
        "intermittent-errors": "transient-network",
        "model-outage": "model-rate-limited",
        "flaky-flows": "flaky-flow",
    }
)
"""The failure cause each failing incident writes into ``flows.cause`` and ``flow_failures_total``."""

TASKDB_INTEGRITY_CAUSE: Final = "taskdb-integrity"
"""The cause of every flow while ``repo_quotas`` holds invalid rows (checked in TaskDB, not remembered)."""


# --- the catalogue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentSpec:
    """One incident: the runbook's criterion, what the drill expects, and what the simulator does."""

    name: str
    criterion: str
    """The runbook's words for the criterion this incident meets."""
    decision: ExpectedDecision | None
    """The decision the drill expects; ``None`` for helpers that are not runbook incidents."""
    pilot_hit: bool
    """Whether the incident takes the pilot down itself (then ``pilot_restored_by_step_5`` replaces ``pilot_impact``)."""
    signal: str
    """Where the drill reads the incident."""
    cleared_by: str
    effect: str
    """What the simulator does when it is injected."""
    params: frozenset[str] = frozenset({"repos"})
    """The parameters ``POST /admin/incidents`` accepts for it."""
    decision_up_to_10_repos: ExpectedDecision | None = None
    """The decision when at most 10 repos are expanded, where that differs (mass failure at Phase 6 is P2)."""

    def expected_decision(self, expanded_repos: int) -> ExpectedDecision | None:
        """The decision the drill expects with this many expanded repos."""
        if self.decision_up_to_10_repos is not None and expanded_repos <= 10:
            return self.decision_up_to_10_repos
        return self.decision

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "criterion": self.criterion,
            "decision": self.decision,
            "decision_up_to_10_repos": self.decision_up_to_10_repos,
            "pilot_hit": self.pilot_hit,
            "signal": self.signal,
            "cleared_by": self.cleared_by,
            "effect": self.effect,
            "params": sorted(self.params),
        }


_FAILING = frozenset({"repos", "failures_per_repo"})

CATALOGUE: Final[Mapping[str, IncidentSpec]] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            IncidentSpec(
                "crash-loop",
                "FlowEngine Crash Loop: Deployment unavailable >15 minutes",
                "P1",
                pilot_hit=True,
                signal="crash_loop_unavailable_s (pods CrashLoopBackOff, unavailable since)",
                cleared_by="Step 2 restart with pilot config (available pods return)",
                effect="unavailable time backdated to 16 min and growing until available pods return; "
                "503 to everyone while no pod is available",
                params=frozenset({"unavailable_s"}),
            ),
            IncidentSpec(
                "db-corruption",
                "Database Corruption: TaskDB integrity compromised",
                "P1",
                pilot_hit=True,
                signal="db_integrity_ok (integrity check query), /health/db",
                cleared_by="Step 3 (revert to the pilot schema, or restore the backup)",
                effect="drops repo_quotas_budget_valid and sets daily_budget_usd = -1 in TaskDB; every flow fails "
                "while the table holds invalid rows",
            ),
            IncidentSpec(
                "security-breach",
                "Security Breach: Credentials leaked, unauthorized access detected",
                "P1",
                pilot_hit=False,
                signal="credentials_leaked, a CRITICAL log line",
                cleared_by="rollback, plus a manual rotation follow-up recorded in the RCA (the signal stays)",
                effect="credentials_leaked=true and 'credential leak detected' logged CRITICAL",
                params=frozenset({"credential"}),
            ),
            IncidentSpec(
                "cost-runaway",
                "Cost Runaway: Daily spend >$200 (4× budget)",  # noqa: RUF001 the runbook's own wording
                "P1",
                pilot_hit=False,
                signal="/metrics flowengine_daily_spend_usd, flowengine_spend_rate_usd_per_hour",
                cleared_by="scope restricted: the spend rate falls",
                effect="daily spend backdated to $250; the affected repos cost $40/h each while served",
                params=frozenset({"repos", "daily_spend_usd"}),
            ),
            IncidentSpec(
                "mass-failure",
                "Mass Concurrent Failures: >10 repos failing simultaneously",
                "P1",
                decision_up_to_10_repos="P2",
                pilot_hit=False,
                signal="flow_failures_total by repo",
                cleared_by="scope restricted",
                effect="every expanded repo fails with cause model-timeout; 8 failures per repo backdated into "
                "the last hour",
                params=_FAILING,
            ),
            IncidentSpec(
                "quality-degradation",
                "Persistent Quality Degradation: <60% mutation kill-rate across ≥50% of repos",
                "P2",
                pilot_hit=False,
                signal="flow_mutation_kill_rate per repo",
                cleared_by="scope restricted",
                effect="kill-rate 0.55 on every expanded repo (their mutation gate fails), pilot 0.85",
                params=frozenset({"repos", "kill_rate"}),
            ),
            IncidentSpec(
                "slo-violation",
                "Sustained SLO Violations: P95 latency >150s for >2 hours",
                "P2",
                pilot_hit=False,
                signal="flow_duration_seconds, flowengine_p95_latency_seconds, flowengine_p95_above_threshold_seconds",
                cleared_by="load falls with scope (P95 over served repos only)",
                effect="expanded repos' flows take about 190 s; P95 above 150 s backdated to 2 h 10 min",
                params=frozenset({"repos", "above_s"}),
            ),
            IncidentSpec(
                "model-outage",
                "Model API Quota Exhaustion: All 3 providers rate-limiting",
                "P2",
                pilot_hit=False,
                signal="/health/models/{anthropic,openai,google}",
                cleared_by="quota recovers when load falls (only the pilot served)",
                effect="all 3 providers rate-limited, and expanded repos' flows fail, while more than the pilot "
                "is served",
                params=frozenset(),
            ),
            IncidentSpec(
                "cascading-failure",
                "Cascading Failures: ≥3 repos failing due to same root cause",
                "P2",
                pilot_hit=False,
                signal="flow_failures_total by repo with cause",
                cleared_by="scope restricted",
                effect="3 expanded repos fail with cause shared-cache-poisoned",
                params=_FAILING,
            ),
            IncidentSpec(
                "single-repo-failure",
                "Single repo failure (isolate repo instead, see RB-CORE-001)",
                "NO-GO",
                pilot_hit=False,
                signal="failures in one repo",
                cleared_by="isolating the repo (RB-CORE-001); not a rollback",
                effect="one expanded repo fails with cause repo-build-broken",
                params=_FAILING,
            ),
            IncidentSpec(
                "intermittent-errors",
                "Intermittent errors (<5% failure rate)",
                "NO-GO",
                pilot_hit=False,
                signal="failure ratio",
                cleared_by="not a rollback",
                effect="3 % of the expanded repos' flows fail (3 of 100 backdated flows, then at random)",
                params=frozenset({"repos", "failure_ratio"}),
            ),
            IncidentSpec(
                "user-error",
                "User error (incorrect config, training issue)",
                "NO-GO",
                pilot_hit=False,
                signal="config_validation_errors",
                cleared_by="fixing the config; not a rollback",
                effect="one config validation error: unknown block_type 'attestaton' in test-basel-i.json",
                params=frozenset({"repos"}),
            ),
            IncidentSpec(
                "flaky-flows",
                "(not a runbook incident) a fraction of all flows fail, for soak tests",
                None,
                pilot_hit=False,
                signal="soak success rate",
                cleared_by="DELETE /admin/incidents",
                effect="fails `failure_rate` (default 0.02) of all flows at random",
                params=frozenset({"repos", "failure_rate"}),
            ),
        )
    }
)
"""Incident name -> spec. The first twelve are CONVENTIONS' table; ``flaky-flows`` serves soak tests."""

INCIDENT_NAMES: Final = tuple(CATALOGUE)


class IncidentError(InputError):
    """An injection request the simulator cannot honour; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
