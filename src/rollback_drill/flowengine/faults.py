"""How an injected incident changes FlowEngine: the past it backdates, TaskDB it corrupts, the lines it logs.

``Faults`` injects and clears incidents for one simulator. An injection is checked against the
catalogue, aimed at the expanded repos the pods list, applied (``db-corruption`` corrupts TaskDB
for real; failing incidents backdate their flows into the last hour; ``crash-loop`` and
``slo-violation`` backdate how long they have lasted), then added to the ``InjectionState`` whose
pure answers the other rooms read. With shared injections, ``refresh`` takes what another pod
injected and counts and logs it here too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

import psycopg

from rollback_drill.flowengine.domain import SPEND_WINDOW_S, SharedRandom
from rollback_drill.flowengine.incidents import (
    CATALOGUE,
    CAUSES,
    CRASH_LOOP_BACKDATE_S,
    DAILY_SPEND_BACKDATE_USD,
    MODEL_PROVIDERS,
    SLO_ABOVE_BACKDATE_S,
    IncidentError,
)
from rollback_drill.flowengine.injection import Injection, affected_repos, plan_backdated_flows, validate_params
from rollback_drill.flowengine.log import Log, LogLevel, first_line
from rollback_drill.flowengine.store import FlowStore, NoQuotaTable, TaskDBUnavailable

if TYPE_CHECKING:
    from rollback_drill.flowengine.injection_state import InjectionState
    from rollback_drill.flowengine.metrics import FlowMetrics
    from rollback_drill.flowengine.scope import Scope, ServiceHistory
    from rollback_drill.timing.clock import Clock

_INJECTION_LOG: Final[Mapping[str, tuple[tuple[LogLevel, str], ...]]] = {
    "crash-loop": (
        ("CRITICAL", "flowengine pods in CrashLoopBackOff: Deployment unavailable for more than 15 minutes"),
    ),
    "db-corruption": (("CRITICAL", "TaskDB integrity check failed: repo_quotas has rows with daily_budget_usd < 0"),),
    "model-outage": tuple(
        ("ERROR", f"model provider {provider} rate-limiting (HTTP 429): quota exhausted")
        for provider in MODEL_PROVIDERS
    ),
    "quality-degradation": (("ERROR", "mutation kill-rate below 60 % on {count} repo(s): {repos}"),),
    "slo-violation": (("ERROR", "P95 flow latency above 150 s for more than 2 hours"),),
}
"""The ERROR/CRITICAL lines an injection writes (the runbook greps them); templates take {repos} and {count}."""


def injection_log_lines(injection: Injection, config_errors: tuple[str, ...]) -> list[tuple[LogLevel, str]]:
    """What FlowEngine logs when ``injection`` happens: the WARNING that names it, then the lines the runbook greps."""
    name = injection.name
    repos = ", ".join(injection.repos) or "-"
    lines: list[tuple[LogLevel, str]] = [
        ("WARNING", f"incident injected: {name} ({CATALOGUE[name].criterion}); repos: {repos}")
    ]
    lines.extend(
        (level, template.format(repos=repos, count=len(injection.repos)))
        for level, template in _INJECTION_LOG.get(name, ())
    )
    if name == "security-breach":
        what = str(injection.params.get("credential", "model provider API key"))
        lines.append(("CRITICAL", f"credential leak detected: {what} exposed in flow output; rotate it"))
    elif name == "cost-runaway":
        lines.append(("ERROR", f"daily spend above $200 (4x budget): ${injection.spend_offset_usd:.2f} backdated"))
    elif name == "user-error":
        lines.extend(("ERROR", f"config validation failed: {message}") for message in config_errors)
    elif injection.backdated_flow_ids and name in CAUSES:
        lines.extend(
            ("ERROR", f"flows failing: repo={repo} incident={name} cause={CAUSES[name]}") for repo in injection.repos
        )
    return lines


class NotInjected(LookupError):
    """``DELETE /admin/incidents/NAME`` for an incident that is not active."""


class Faults:
    """Injecting and clearing incidents on one simulator; ``observe`` reads the scope the injection aims at."""

    def __init__(
        self,
        *,
        pilot: str,
        injections: InjectionState,
        store: FlowStore,
        metrics: FlowMetrics,
        history: ServiceHistory,
        observe: Callable[[], Scope],
        log: Log,
        clock: Clock,
        rng: SharedRandom,
        accept_injection: bool,
    ) -> None:
        self._pilot = pilot
        self._injections = injections
        self._store = store
        self._metrics = metrics
        self._history = history
        self._observe = observe
        self._log = log
        self._clock = clock
        self._rng = rng
        self._accept_injection = accept_injection
        self._lock = threading.Lock()
        """One injection or clearing at a time, so two requests cannot inject the same incident."""

    def refresh(self) -> None:
        """Take the injections another pod wrote to TaskDB, and log the new ones as that pod did."""
        if self._injections.store is None:
            return
        try:
            with self._lock:
                new = self._injections.refresh(now_mono=self._clock.monotonic(), now_wall=self._clock.wall())
        except (psycopg.Error, ValueError) as exc:
            self._log("WARNING", f"cannot read the shared injections from TaskDB: {first_line(exc)}")
            return
        for injection in new:
            self._count_backdated(injection)
            self._log_injection(injection)

    def _count_backdated(self, injection: Injection) -> None:
        """Another pod's injection backdated flows in TaskDB: they are this FlowEngine's recent history too, so this
        pod's ``flows``/``flow_failures`` counters include them, as a scrape of any one pod is read as the service's."""
        ids = list(injection.backdated_flow_ids)
        if not ids:
            return
        try:
            rows = self._store.flow_results(ids)
        except TaskDBUnavailable as exc:
            self._log("WARNING", f"cannot count the flows {injection.name} backdated: {exc}")
            return
        for repo, status, cause in rows:
            self._metrics.flow(repo, status, cause)

    def _log_injection(self, injection: Injection) -> None:
        for level, message in injection_log_lines(injection, self._injections.config_validation_errors()):
            self._log(level, message)

    def inject(self, name: str, params: Mapping[str, object]) -> Injection:
        """Inject an incident: record it, backdate its signal, and (db-corruption) corrupt TaskDB for real.

        Raises ``IncidentError`` (its ``status`` says why) or ``TaskDBUnavailable``."""
        if not self._accept_injection:
            raise IncidentError(
                "this FlowEngine does not accept incident injection (started with accept_injection=False)",
                status=HTTPStatus.FORBIDDEN,
            )
        params = validate_params(name, params)
        self.refresh()
        with self._lock:
            if self._injections.get(name) is not None:
                raise IncidentError(
                    f"incident {name!r} is already injected; DELETE /admin/incidents first", status=HTTPStatus.CONFLICT
                )
            scope = self._observe()
            expanded = sorted(scope.listed - {self._pilot})
            repos = affected_repos(name, params, pilot=self._pilot, expanded=expanded)
            injection = Injection(name, params, repos, self._clock.wall(), self._clock.monotonic())
            self._apply(injection, scope)
            self._injections.add(injection, self._clock.monotonic())
            self._observe()
        self._log_injection(injection)
        return injection

    def _apply(self, injection: Injection, scope: Scope) -> None:
        name = injection.name
        now_mono = injection.injected_mono
        if name == "crash-loop":
            injection.unavailable_since_mono = now_mono - injection.number("unavailable_s", CRASH_LOOP_BACKDATE_S)
            injection.pods_seen_down = scope.view is not None and scope.view.available_pods == 0
        elif name == "db-corruption":
            targets = list(injection.repos) if "repos" in injection.params else [self._pilot, *injection.repos]
            injection.repos = tuple(dict.fromkeys(targets))
            self._corrupt_quotas(list(injection.repos))
        elif name == "cost-runaway":
            target = injection.number("daily_spend_usd", DAILY_SPEND_BACKDATE_USD)
            since = injection.injected_at - timedelta(seconds=SPEND_WINDOW_S)
            injection.spend_offset_usd = max(0.0, target - self._store.spend_since(since))
        with self._rng.held() as rng:
            planned = plan_backdated_flows(injection, pilot=self._pilot, rng=rng)
        if planned:
            injection.backdated_flow_ids = self._store.insert_backdated(planned)
            # The backdated flows are these repos' recent history: their hour counts from before the injection,
            # even for a repo that came back into scope a moment ago (a freshly reset drill world).
            self._history.count_from_before({flow.repo for flow in planned})
            for flow in planned:
                self._metrics.flow(flow.repo, flow.status, flow.cause, flow.duration_s)
        if name == "slo-violation":
            self._history.p95_above_since(now_mono - injection.number("above_s", SLO_ABOVE_BACKDATE_S))

    def _corrupt_quotas(self, repos: list[str]) -> None:
        try:
            self._store.corrupt_quotas(repos)
        except NoQuotaTable as exc:
            raise IncidentError(
                "db-corruption needs the Phase 6 schema: TaskDB has no repo_quotas table (it is at the pilot's "
                "20251104_001); apply 20251117_001_phase6_repo_quotas.sql first",
                status=HTTPStatus.CONFLICT,
            ) from exc

    def clear(self, name: str | None = None) -> list[str]:
        """Remove injections (all, or one) and the flows they backdated; return the names removed.

        TaskDB corruption stays: Step 3 fixes it. Raises ``NotInjected`` for one incident that is not active."""
        self.refresh()
        with self._lock:
            now = self._clock.monotonic()
            if name is None:
                removed = self._injections.clear(now)
            else:
                one = self._injections.remove(name, now)
                if one is None:
                    raise NotInjected(name)
                removed = (one,)
            ids = [flow_id for injection in removed for flow_id in injection.backdated_flow_ids]
            if ids:
                try:
                    self._store.delete_flows(ids)
                except TaskDBUnavailable as exc:
                    self._log("ERROR", f"could not remove {len(ids)} backdated flow(s): {exc}")
        names = [i.name for i in removed]
        self._log("INFO", f"incidents cleared: {', '.join(names) or 'none were active'}")
        return names
