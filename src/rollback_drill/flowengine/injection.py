"""One injection: its parameters, the repos it affects, and the past it writes into TaskDB.

``Injection`` is the record of one active incident (mutable only under the lock of the
``InjectionState`` that holds it); ``plan_backdated_flows`` is the history it backdates so that
``/stats`` and the signals agree with ``/metrics`` the moment it is injected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from rollback_drill.errors import InputError
from rollback_drill.flowengine.incidents import (
    BACKDATE_SPREAD_S,
    BACKDATED_FAILURES_PER_REPO,
    CATALOGUE,
    CAUSES,
    GATES,
    INCIDENT_NAMES,
    INTERMITTENT_FLOWS,
    INTERMITTENT_RATIO,
    NORMAL_COST_USD,
    NORMAL_DURATION_S,
    SLOW_FLOWS_PER_REPO,
    IncidentError,
    IncidentSpec,
)

if TYPE_CHECKING:
    import random


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
