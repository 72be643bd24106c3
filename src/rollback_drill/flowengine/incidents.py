"""The incident catalogue, and the state of what is injected into the FlowEngine simulator.

The catalogue is data: for each incident of CONVENTIONS' table, the runbook criterion it
stands for, the decision the drill expects, whether it takes the pilot down, and what
clears it. ``InjectionState`` holds the active injections and answers, without I/O, what
they do to one flow or one signal right now; the simulator adds TaskDB and HTTP.

Injection backdates its signal (CONVENTIONS: "Injection backdates the signal"), so that a
criterion with a duration ("crash loop > 15 minutes", "P95 > 150 s for > 2 hours") holds
the moment the incident is injected.

"Failing now" depends on scope: an incident makes the flows of its repos fail only while
those repos are served. Once a repo is refused it runs no flows, so it cannot fail; the
simulator's signals list served repos only (the decision framework's "active repos").
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, Protocol

from rollback_drill.errors import InputError

if TYPE_CHECKING:
    import random

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


# --- one injection ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackdatedFlow:
    """A flow row that an injection writes into TaskDB's past."""

    repo: str
    status: Literal["completed", "failed"]
    cause: str | None
    duration_s: float
    cost_usd: float
    gates_passed: int
    started_at: datetime


@dataclass
class Injection:
    """One active injection. Mutable parts are changed only under the owning state's lock."""

    name: str
    params: dict[str, object]
    repos: tuple[str, ...]
    """The repos it affects (for scope-cleared incidents: the expanded repos at injection time)."""
    injected_at: datetime
    injected_mono: float
    backdated_flow_ids: list[int] = field(default_factory=list)
    # crash-loop
    unavailable_since_mono: float | None = None
    pods_seen_down: bool = False
    recovered_mono: float | None = None
    # cost-runaway
    spend_offset_usd: float = 0.0
    accrued_usd: float = 0.0
    extra_rate_usd_per_hour: float = 0.0
    last_tick_mono: float | None = None

    @property
    def spec(self) -> IncidentSpec:
        return CATALOGUE[self.name]

    def number(self, key: str, default: float) -> float:
        value = self.params.get(key, default)
        return float(value) if isinstance(value, int | float) else default

    def record(self) -> dict[str, object]:
        """What ``POST``/``GET /admin/incidents`` answer."""
        spec = self.spec
        return {
            "name": self.name,
            "params": dict(self.params),
            "repos": list(self.repos),
            "injected_at": self.injected_at.isoformat().replace("+00:00", "Z"),
            "criterion": spec.criterion,
            "expected_decision": spec.expected_decision(len(self.repos)) if self.repos else spec.decision,
            "pilot_hit": spec.pilot_hit,
            "cleared_by": spec.cleared_by,
            "backdated_flows": len(self.backdated_flow_ids),
        }

    def to_state(self, now_mono: float) -> dict[str, object]:
        """For the state file: monotonic instants become ages, which survive a restart."""

        def age(mono: float | None) -> float | None:
            return None if mono is None else now_mono - mono

        return {
            "name": self.name,
            "params": self.params,
            "repos": list(self.repos),
            "injected_at": self.injected_at.isoformat(),
            "backdated_flow_ids": self.backdated_flow_ids,
            "unavailable_since_age_s": age(self.unavailable_since_mono),
            "pods_seen_down": self.pods_seen_down,
            "recovered_age_s": age(self.recovered_mono),
            "spend_offset_usd": self.spend_offset_usd,
            "accrued_usd": self.accrued_usd,
        }

    @classmethod
    def from_state(cls, data: Mapping[str, object], *, now_mono: float, now_wall: datetime) -> Injection:
        def mono(age: object) -> float | None:
            return now_mono - float(age) if isinstance(age, int | float) else None

        name = str(data["name"])
        if name not in CATALOGUE:
            raise InputError(f"state file names unknown incident {name!r}; valid: {', '.join(INCIDENT_NAMES)}")
        injected_at = datetime.fromisoformat(str(data["injected_at"]))
        params = data.get("params")
        repos = data.get("repos")
        ids = data.get("backdated_flow_ids")
        offset = data.get("spend_offset_usd")
        accrued = data.get("accrued_usd")
        return cls(
            name=name,
            params=dict(params) if isinstance(params, dict) else {},
            repos=tuple(str(r) for r in repos) if isinstance(repos, list) else (),
            injected_at=injected_at,
            injected_mono=now_mono - (now_wall - injected_at).total_seconds(),
            backdated_flow_ids=[int(i) for i in ids] if isinstance(ids, list) else [],
            unavailable_since_mono=mono(data.get("unavailable_since_age_s")),
            pods_seen_down=bool(data.get("pods_seen_down")),
            recovered_mono=mono(data.get("recovered_age_s")),
            spend_offset_usd=float(offset) if isinstance(offset, int | float) else 0.0,
            accrued_usd=float(accrued) if isinstance(accrued, int | float) else 0.0,
        )


def _repos_param(params: Mapping[str, object]) -> tuple[str, ...] | None:
    value = params.get("repos")
    if value is None:
        return None
    if isinstance(value, str):
        value = [part for part in value.replace(",", " ").split() if part]
    if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
        raise IncidentError("param 'repos' must be a list of repo names (or one comma-separated string)")
    return tuple(dict.fromkeys(value))


def _number_param(params: Mapping[str, object], key: str, *, low: float, high: float) -> None:
    if key not in params:
        return
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise IncidentError(f"param {key!r} must be a number, got {value!r}")
    if not low <= value <= high:
        raise IncidentError(f"param {key!r} must be between {low:g} and {high:g}, got {value!r}")


def validate_params(name: str, params: Mapping[str, object]) -> dict[str, object]:
    """Check ``params`` against the incident's accepted names and ranges; return a plain copy."""
    if name not in CATALOGUE:
        raise IncidentError(f"unknown incident {name!r}; valid names: {', '.join(INCIDENT_NAMES)}")
    spec = CATALOGUE[name]
    unknown = sorted(set(params) - spec.params)
    if unknown:
        accepted = ", ".join(sorted(spec.params)) or "none"
        raise IncidentError(f"incident {name!r} does not take {', '.join(unknown)}; it accepts: {accepted}")
    _repos_param(params)
    _number_param(params, "failures_per_repo", low=1, high=1000)
    _number_param(params, "unavailable_s", low=0, high=7 * 86400)
    _number_param(params, "daily_spend_usd", low=0, high=1e6)
    _number_param(params, "kill_rate", low=0, high=1)
    _number_param(params, "above_s", low=0, high=7 * 86400)
    _number_param(params, "failure_ratio", low=0, high=1)
    _number_param(params, "failure_rate", low=0, high=1)
    if "credential" in params and not isinstance(params["credential"], str):
        raise IncidentError("param 'credential' must be a string naming what leaked")
    return dict(params)


def affected_repos(name: str, params: Mapping[str, object], *, pilot: str, expanded: Iterable[str]) -> tuple[str, ...]:
    """The repos an injection affects: ``params['repos']`` or the expanded repos at injection time."""
    chosen = _repos_param(params)
    if "repos" not in CATALOGUE[name].params:
        return ()  # crash-loop, security-breach, model-outage: not aimed at particular repos
    if name == "flaky-flows":
        return chosen or ()  # no repos: every flow, the pilot's too
    repos = chosen if chosen is not None else tuple(r for r in expanded if r != pilot)
    if name == "cascading-failure":
        if len(repos) < 3:
            raise IncidentError(
                f"cascading-failure needs 3 repos to fail with one cause; only {len(repos)} expanded repo(s) "
                "are served (widen REPO_ALLOWLIST or pass params.repos)",
                status=409,
            )
        return repos if chosen is not None else repos[:3]
    if name in {"single-repo-failure", "user-error"}:
        if not repos:
            if name == "user-error":
                return (pilot,)
            raise IncidentError("single-repo-failure needs an expanded repo to fail; none is served", status=409)
        return repos[:1]
    if (
        name in {"mass-failure", "quality-degradation", "slo-violation", "intermittent-errors", "cost-runaway"}
        and not repos
    ):
        raise IncidentError(
            f"{name} acts on the expanded repos and none is served (REPO_ALLOWLIST holds only the pilot); "
            "inject it before the rollback, or pass params.repos",
            status=409,
        )
    return repos


def plan_backdated_flows(injection: Injection, *, pilot: str, rng: random.Random) -> list[BackdatedFlow]:
    """The past an injection writes into TaskDB, so that /stats and the signals agree with /metrics."""
    name = injection.name
    start = injection.injected_at - timedelta(seconds=BACKDATE_SPREAD_S)

    def at(index: int, count: int) -> datetime:
        # Evenly over the spread, the newest a little before the injection.
        return start + timedelta(seconds=BACKDATE_SPREAD_S * (index + 0.5) / max(count, 1))

    flows: list[BackdatedFlow] = []
    if name in {"mass-failure", "cascading-failure", "single-repo-failure"}:
        count = int(injection.number("failures_per_repo", BACKDATED_FAILURES_PER_REPO))
        cause = CAUSES[name]
        for repo in injection.repos:
            flows.extend(
                BackdatedFlow(repo, "failed", cause, rng.uniform(5.0, 30.0), 0.0, 0, at(i, count)) for i in range(count)
            )
    elif name == "intermittent-errors":
        # INTERMITTENT_FLOWS flows in all, round-robin over the repos, ``failure_ratio`` of them failed: the ratio
        # holds over the whole, and no repo reaches the > 5 failures/hour of a failing repo.
        ratio = injection.number("failure_ratio", INTERMITTENT_RATIO)
        failed = round(ratio * INTERMITTENT_FLOWS)
        failed_at = {k * INTERMITTENT_FLOWS // failed for k in range(failed)} if failed else set()
        repos = [r for r in injection.repos if r != pilot]
        for i in range(INTERMITTENT_FLOWS if repos else 0):
            is_failed = i in failed_at
            flows.append(
                BackdatedFlow(
                    repos[i % len(repos)],
                    "failed" if is_failed else "completed",
                    CAUSES[name] if is_failed else None,
                    rng.uniform(*NORMAL_DURATION_S),
                    0.0 if is_failed else rng.uniform(*NORMAL_COST_USD),
                    0 if is_failed else len(GATES),
                    at(i, INTERMITTENT_FLOWS),
                )
            )
    elif name == "slo-violation":
        for repo in injection.repos:
            flows.extend(
                BackdatedFlow(
                    repo,
                    "completed",
                    None,
                    rng.uniform(185.0, 195.0),
                    rng.uniform(*NORMAL_COST_USD),
                    len(GATES),
                    at(i, SLOW_FLOWS_PER_REPO),
                )
                for i in range(SLOW_FLOWS_PER_REPO)
            )
    return flows


# --- all active injections -------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowEffect:
    """What the active injections do to one flow of one repo."""

    cause: str | None
    """Why the flow fails, or None when it is served normally."""
    duration_range_s: tuple[float, float]
    cost_range_usd: tuple[float, float]
    kill_rate: float


class InjectionStore(Protocol):
    """Where several simulator processes (the pods of one Deployment) share their injections."""

    def write(self, payload: dict[str, object]) -> int:
        """Replace the shared payload; return its new version."""
        ...

    def read(self) -> tuple[int, dict[str, object]]:
        """The current version and payload (version 0 and an empty payload before the first write)."""
        ...


class InjectionState:
    """The active injections, thread-safe, with the pure part of their effects.

    Every method that depends on scope takes ``served``: the repos that available
    flowengine pods serve right now (empty while no pod is available).

    With a ``store``, every change is written there and :meth:`refresh` picks up the
    changes other processes wrote: an incident injected through one pod of the Service
    reaches every pod, as it would reach every replica of the real FlowEngine.
    """

    def __init__(self, pilot: str, state_file: Path | None = None, store: InjectionStore | None = None) -> None:
        self.pilot = pilot
        self.state_file = state_file
        self.store = store
        self._store_version = 0
        self._lock = threading.RLock()
        self._active: dict[str, Injection] = {}

    # -- the set of injections -------------------------------------------------------------------

    def active(self) -> tuple[Injection, ...]:
        with self._lock:
            return tuple(self._active.values())

    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._active)

    def get(self, name: str) -> Injection | None:
        with self._lock:
            return self._active.get(name)

    def add(self, injection: Injection, now_mono: float) -> None:
        with self._lock:
            if injection.name in self._active:
                raise IncidentError(
                    f"incident {injection.name!r} is already injected; DELETE /admin/incidents first", status=409
                )
            self._active[injection.name] = injection
            self._save(now_mono)

    def remove(self, name: str, now_mono: float) -> Injection | None:
        with self._lock:
            removed = self._active.pop(name, None)
            self._save(now_mono)
            return removed

    def clear(self, now_mono: float) -> tuple[Injection, ...]:
        with self._lock:
            removed = tuple(self._active.values())
            self._active.clear()
            self._save(now_mono)
            return removed

    def _save(self, now_mono: float) -> None:
        payload = {"pilot": self.pilot, "injections": [i.to_state(now_mono) for i in self._active.values()]}
        if self.store is not None:
            self._store_version = self.store.write({**payload, "saved_at": datetime.now(UTC).isoformat()})
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        tmp.chmod(0o600)
        tmp.replace(self.state_file)

    def load(self, *, now_mono: float, now_wall: datetime) -> int:
        """Reload the injections a previous run left in the state file; return how many."""
        if self.state_file is None or not self.state_file.exists():
            return 0
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(
                f"simulator state file {self.state_file} is not readable JSON ({exc}); remove it to start clean"
            ) from exc
        items = data.get("injections", []) if isinstance(data, dict) else []
        with self._lock:
            for item in items:
                if isinstance(item, dict):
                    injection = Injection.from_state(item, now_mono=now_mono, now_wall=now_wall)
                    self._active[injection.name] = injection
            return len(self._active)

    def refresh(self, *, now_mono: float, now_wall: datetime) -> tuple[Injection, ...]:
        """Take the store's injections if another process changed them; return the ones new to this process."""
        if self.store is None:
            return ()
        version, payload = self.store.read()
        with self._lock:
            if version == self._store_version:
                return ()
            saved_raw = payload.get("saved_at")
            saved_at = datetime.fromisoformat(saved_raw) if isinstance(saved_raw, str) else now_wall
            # Ages in the payload are as of saved_at: seen from here they are that much older.
            then_mono = now_mono - max(0.0, (now_wall - saved_at).total_seconds())
            items = payload.get("injections", [])
            loaded = {}
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    injection = Injection.from_state(item, now_mono=then_mono, now_wall=saved_at)
                    loaded[injection.name] = injection
            new = tuple(i for name, i in loaded.items() if name not in self._active)
            self._active = loaded
            self._store_version = version
            return new

    # -- observation -----------------------------------------------------------------------------

    def observe(self, *, available_pods: int, served: frozenset[str], now_mono: float) -> None:
        """Feed one observation of the cluster: crash-loop recovery and spend accrual depend on it."""
        with self._lock:
            crash = self._active.get("crash-loop")
            if crash is not None:
                if available_pods == 0:
                    if crash.recovered_mono is not None:
                        # Down again after a recovery: a new outage, measured from now, not backdated.
                        crash.recovered_mono = None
                        crash.unavailable_since_mono = now_mono
                    crash.pods_seen_down = True
                elif crash.pods_seen_down and crash.recovered_mono is None:
                    crash.recovered_mono = now_mono
            cost = self._active.get("cost-runaway")
            if cost is not None:
                if cost.last_tick_mono is not None:
                    cost.accrued_usd += cost.extra_rate_usd_per_hour * max(0.0, now_mono - cost.last_tick_mono) / 3600
                cost.last_tick_mono = now_mono
                hot = sum(1 for r in cost.repos if r in served)
                cost.extra_rate_usd_per_hour = hot * (RUNAWAY_SPEND_USD_PER_HOUR - BASE_SPEND_USD_PER_HOUR)

    def crash_loop_unavailable_s(self, now_mono: float) -> float | None:
        """Seconds of the injected crash loop, or None when no crash loop is injected (0 once recovered)."""
        with self._lock:
            crash = self._active.get("crash-loop")
            if crash is None:
                return None
            if crash.recovered_mono is not None or crash.unavailable_since_mono is None:
                return 0.0
            return max(0.0, now_mono - crash.unavailable_since_mono)

    # -- effects on flows ------------------------------------------------------------------------

    def flow_effect(self, repo: str, *, served: frozenset[str], draw: Callable[[], float]) -> FlowEffect:
        """What the injections do to one flow of ``repo`` (which is served, or it would be refused)."""
        with self._lock:
            cause: str | None = None
            duration = NORMAL_DURATION_S
            cost = NORMAL_COST_USD
            kill_rate = BASELINE_KILL_RATE
            for injection in self._active.values():
                name = injection.name
                hit = repo in injection.repos
                if (name in {"mass-failure", "cascading-failure", "single-repo-failure"} and hit) or (
                    name == "model-outage" and repo != self.pilot and served - {self.pilot}
                ):
                    cause = cause or CAUSES[name]
                elif name == "intermittent-errors" and hit and repo != self.pilot:
                    if draw() < injection.number("failure_ratio", INTERMITTENT_RATIO):
                        cause = cause or CAUSES[name]
                elif name == "flaky-flows" and (hit or not injection.repos):
                    if draw() < injection.number("failure_rate", DEFAULT_FLAKY_RATE):
                        cause = cause or CAUSES[name]
                elif name == "slo-violation" and hit:
                    duration = SLOW_DURATION_S
                elif name == "cost-runaway" and hit:
                    cost = RUNAWAY_COST_USD
                elif name == "quality-degradation" and hit:
                    kill_rate = injection.number("kill_rate", DEGRADED_KILL_RATE)
            return FlowEffect(cause, duration, cost, kill_rate)

    # -- signals ---------------------------------------------------------------------------------

    def kill_rate(self, repo: str) -> float:
        with self._lock:
            quality = self._active.get("quality-degradation")
            if quality is not None and repo in quality.repos:
                return quality.number("kill_rate", DEGRADED_KILL_RATE)
            return BASELINE_KILL_RATE

    def providers_rate_limited(self, served: frozenset[str]) -> tuple[str, ...]:
        """All providers while ``model-outage`` is active and more than the pilot is served."""
        with self._lock:
            if "model-outage" in self._active and served - {self.pilot}:
                return MODEL_PROVIDERS
            return ()

    def credentials_leaked(self) -> bool:
        with self._lock:
            return "security-breach" in self._active

    def config_validation_errors(self) -> tuple[str, ...]:
        with self._lock:
            user = self._active.get("user-error")
            if user is None:
                return ()
            return tuple(USER_ERROR_TEMPLATE.format(repo=repo) for repo in user.repos)

    def spend_rate_usd_per_hour(self, served: frozenset[str]) -> float:
        with self._lock:
            cost = self._active.get("cost-runaway")
            hot = set(cost.repos) & served if cost is not None else set()
            return len(served - hot) * BASE_SPEND_USD_PER_HOUR + len(hot) * RUNAWAY_SPEND_USD_PER_HOUR

    def extra_spend_usd(self) -> float:
        """Spend the injections add to what TaskDB's flows cost: the backdated offset and the accrued runaway."""
        with self._lock:
            cost = self._active.get("cost-runaway")
            return 0.0 if cost is None else cost.spend_offset_usd + cost.accrued_usd
