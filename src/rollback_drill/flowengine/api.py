"""FlowEngine's answers: each endpoint's status code and JSON document, from the scope, TaskDB and the injections.

``FlowEngineAPI`` is what ``server`` routes to. Every answer observes the scope first (the
available pods' allowlist): with no pod available, flow, config and health requests answer 503.
The rules themselves are ``domain``'s; TaskDB is ``store``'s; incidents are ``faults``'.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING

from rollback_drill.flowengine import domain
from rollback_drill.flowengine.domain import SIGNAL_WINDOW_S, SPEND_WINDOW_S, SharedRandom
from rollback_drill.flowengine.faults import Faults, NotInjected
from rollback_drill.flowengine.incidents import INCIDENT_NAMES, MODEL_PROVIDERS, TASKDB_INTEGRITY_CAUSE, IncidentError
from rollback_drill.flowengine.log import LogLevel, ServiceLog, first_line, rfc3339
from rollback_drill.flowengine.scope import (
    AllowlistSource,
    Scope,
    ServiceHistory,
    refusal_reason,
    scope_of,
    unavailable_reason,
)
from rollback_drill.flowengine.store import TaskDBUnavailable

if TYPE_CHECKING:
    from rollback_drill.flowengine.injection_state import InjectionState
    from rollback_drill.flowengine.metrics import FlowMetrics
    from rollback_drill.flowengine.store import FlowStore
    from rollback_drill.timing.clock import Clock


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: a JSON document, or text."""

    status: int
    body: Mapping[str, object] | str | bytes
    content_type: str = "application/json"


def _taskdb_unavailable(exc: TaskDBUnavailable) -> Reply:
    return Reply(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable", "reason": str(exc)})


class FlowEngineAPI:
    """The endpoints of one simulator, as methods that return ``Reply``."""

    def __init__(
        self,
        *,
        pilot: str,
        allowlist_source: AllowlistSource,
        store: FlowStore,
        injections: InjectionState,
        metrics: FlowMetrics,
        log: ServiceLog,
        clock: Clock,
        rng: SharedRandom,
        flow_latency_s: float,
        accept_injection: bool,
    ) -> None:
        self.pilot = pilot
        self.flow_latency_s = flow_latency_s
        self.stopping = threading.Event()
        """Set when the simulator stops: a flow in progress ends its simulated work early."""
        self.log = log
        self.metrics = metrics
        self._allowlist_source = allowlist_source
        self._store = store
        self._injections = injections
        self._clock = clock
        self._rng = rng
        self._history = ServiceHistory()
        self.faults = Faults(
            pilot=pilot,
            injections=injections,
            store=store,
            metrics=metrics,
            history=self._history,
            observe=self.observe,
            log=log.write,
            clock=clock,
            rng=rng,
            accept_injection=accept_injection,
        )

    # -- scope -----------------------------------------------------------------------------------

    def observe(self) -> Scope:
        """Ask the allowlist source what is served now, and feed the observation to the history and the injections."""
        try:
            view = self._allowlist_source()
        except Exception as exc:  # noqa: BLE001 - any failure of the source means "cannot tell", answered as 503
            return Scope(None, frozenset(), f"allowlist source failed: {first_line(exc)}")
        scope = scope_of(view)
        now_mono = self._clock.monotonic()
        self._history.observe(scope, now_mono=now_mono, now_wall=self._clock.wall())
        self._injections.observe(available_pods=view.available_pods, served=scope.served, now_mono=now_mono)
        return scope

    def _unavailable(self, scope: Scope) -> Reply:
        return Reply(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable", "reason": unavailable_reason(scope)})

    def _refusal(self, repo: str) -> Reply:
        reason = refusal_reason(repo, pilot=self.pilot)
        return Reply(HTTPStatus.FORBIDDEN, {"repo": repo, "enabled": False, "reason": reason})

    # -- health ----------------------------------------------------------------------------------

    def health(self) -> Reply:
        scope = self.observe()
        if not scope.available:
            return self._unavailable(scope)
        crash = self._injections.crash_loop_unavailable_s(self._clock.monotonic())
        try:
            problem = self._store.integrity_problem()
        except TaskDBUnavailable as exc:
            problem = str(exc)
        reasons = domain.health_reasons(
            crash_loop_s=crash,
            taskdb_problem=problem,
            credentials_leaked=self._injections.credentials_leaked(),
            rate_limited=self._injections.providers_rate_limited(scope.served),
        )
        if reasons:
            return Reply(HTTPStatus.OK, {"status": "degraded", "reasons": reasons})
        return Reply(HTTPStatus.OK, {"status": "healthy"})

    def health_db(self) -> Reply:
        scope = self.observe()
        if not scope.available:
            return self._unavailable(scope)
        try:
            problem = self._store.integrity_problem()
        except TaskDBUnavailable as exc:
            return Reply(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unhealthy", "reason": str(exc)})
        if problem:
            return Reply(
                HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unhealthy", "reason": f"integrity check failed: {problem}"}
            )
        return Reply(HTTPStatus.OK, {"status": "healthy"})

    def health_model(self, provider: str) -> Reply:
        if provider not in MODEL_PROVIDERS:
            return Reply(
                HTTPStatus.NOT_FOUND,
                {"error": f"unknown model provider {provider!r}; known: {', '.join(MODEL_PROVIDERS)}"},
            )
        scope = self.observe()
        if not scope.available:
            return self._unavailable(scope)
        if provider in self._injections.providers_rate_limited(scope.served):
            return Reply(HTTPStatus.OK, {"provider": provider, "status": "rate-limited"})
        return Reply(HTTPStatus.OK, {"provider": provider, "status": "healthy"})

    # -- repos and flows -------------------------------------------------------------------------

    def repo_config(self, repo: str) -> Reply:
        scope = self.observe()
        if not scope.available:
            return self._unavailable(scope)
        if repo not in scope.served:
            return self._refusal(repo)
        return Reply(HTTPStatus.OK, {"repo": repo, "enabled": True, "pilot": repo == self.pilot})

    def run_flow(self, body: Mapping[str, object]) -> Reply:
        """``blocks generate``: run one flow of an allowed repo and record it in TaskDB."""
        scope = self.observe()
        if not scope.available:
            return self._unavailable(scope)
        missing = domain.missing_flow_fields(body)
        if missing:
            return Reply(
                HTTPStatus.BAD_REQUEST,
                {
                    "error": f"a flow needs string fields repo, family and block_type; missing or empty: {', '.join(missing)}"
                },
            )
        repo, family, block_type = str(body["repo"]), str(body["family"]), str(body["block_type"])
        if repo not in scope.served:
            return self._refusal(repo)
        started_at = self._clock.wall()
        if self.flow_latency_s:
            self.stopping.wait(self.flow_latency_s)  # the flow's own (small, real) work, not a wait for anything
        effect = self._injections.flow_effect(repo, served=scope.served, draw=self._rng.random)
        provider = domain.pick_provider(self._rng.random())
        try:
            recorded = self._store.record_flow(
                repo=repo,
                family=family,
                block_type=block_type,
                provider=provider,
                started_at=started_at,
                outcome_of=lambda integrity_failed: domain.flow_outcome(
                    effect, integrity_failed=integrity_failed, draw=self._rng.uniform
                ),
                now=self._clock.wall,
            )
        except TaskDBUnavailable as exc:
            cause = "taskdb-unreachable"
            self.metrics.flow(repo, "failed", cause)
            self.log.write("ERROR", f"flow failed: repo={repo} cause={cause} ({exc})")
            return Reply(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"status": "failed", "cause": cause, "flow_id": None, "repo": repo, "reason": str(exc)},
            )
        outcome = recorded.outcome
        answer = domain.flow_answer(
            outcome, flow_id=recorded.flow_id, repo=repo, provider=provider if recorded.provider_kept else None
        )
        self.metrics.flow(repo, outcome.status, outcome.cause, outcome.duration_s)
        if outcome.failed:
            level: LogLevel = "CRITICAL" if outcome.cause == TASKDB_INTEGRITY_CAUSE else "ERROR"
            self.log.write(level, f"flow {recorded.flow_id} failed: repo={repo} cause={outcome.cause}")
            return Reply(HTTPStatus.INTERNAL_SERVER_ERROR, answer)
        self.log.write(
            "INFO",
            f"flow {recorded.flow_id} completed: repo={repo} duration_s={outcome.duration_s} "
            f"gates={outcome.gates_passed}/{len(outcome.gates)}",
        )
        return Reply(HTTPStatus.OK, answer)

    def verify(self, flow_id: int, *, strict: bool) -> Reply:
        """``blocks verify``: read the flow's gates back from TaskDB. Strict needs 5/5; lenient tolerates one failed gate."""
        scope = self.observe()
        if not scope.available:
            return self._unavailable(scope)
        try:
            flow, task_status = self._store.flow_and_tasks(flow_id)
        except TaskDBUnavailable as exc:
            return _taskdb_unavailable(exc)
        if flow is None:
            return Reply(HTTPStatus.NOT_FOUND, {"error": f"flow {flow_id} is not in TaskDB"})
        return Reply(
            HTTPStatus.OK,
            domain.verification(flow_id, repo=flow[1], status=flow[2], task_status=task_status, strict=strict),
        )

    # -- stats and signals -----------------------------------------------------------------------

    def stats(self, window_s: float, *, since: datetime | None = None) -> Reply:
        """Flows of the last ``window_s`` seconds, or, given ``since``, of every flow started since that instant.

        An absolute ``since`` counts exactly the flows a client started after it; a window is measured
        from this server's later "now", so the request's own latency would cut its oldest flows off.
        """
        now = self._clock.wall()
        if since is None:
            since = now - timedelta(seconds=window_s)
        else:
            window_s = max(0.0, (now - since).total_seconds())
        try:
            rows = self._store.window(since)
        except TaskDBUnavailable as exc:
            return _taskdb_unavailable(exc)
        return Reply(HTTPStatus.OK, domain.stats_document(rows, window_s=window_s, since=rfc3339(since)))

    def signals(self) -> dict[str, object]:
        """Everything the decision framework reads, as one JSON-ready document. Raises ``TaskDBUnavailable``."""
        scope = self.observe()
        now_wall = self._clock.wall()
        now_mono = self._clock.monotonic()
        served = sorted(scope.served)
        windows = self._history.signal_windows(served, hour_ago=now_wall - timedelta(seconds=SIGNAL_WINDOW_S))
        readings = self._store.signal_readings(
            served, windows, spend_since=now_wall - timedelta(seconds=SPEND_WINDOW_S)
        )
        repos, p95 = domain.repo_signals(served, readings.repos, self._injections.kill_rate)
        p95_above = self._history.p95_above_for_s(p95, now_mono)
        down = self._history.unavailable_for_s(now_mono)
        injected_crash = self._injections.crash_loop_unavailable_s(now_mono)
        limited = self._injections.providers_rate_limited(scope.served)
        return {
            "observed_at": rfc3339(now_wall),
            "pilot_repo": self.pilot,
            "available_pods": scope.view.available_pods if scope.view is not None else None,
            "allowlist_error": scope.error,
            "served_repos": served,
            "repos": repos,
            "crash_loop_unavailable_s": round(max(down, injected_crash or 0.0), 3),
            "db_integrity_ok": readings.integrity_problem is None,
            "db_integrity_problem": readings.integrity_problem,
            "credentials_leaked": self._injections.credentials_leaked(),
            "daily_spend_usd": round(readings.spend_usd + self._injections.extra_spend_usd(), 4),
            "spend_rate_usd_per_hour": self._injections.spend_rate_usd_per_hour(scope.served),
            "p95_latency_s": p95,
            "p95_above_150s_for_s": round(p95_above, 3),
            "providers_rate_limited": len(limited),
            "rate_limited_providers": list(limited),
            "config_validation_errors": list(self._injections.config_validation_errors()),
            "active_incidents": list(self._injections.names()),
        }

    def metrics_text(self) -> bytes:
        """Prometheus text: counters as they are, gauges refreshed from the signals at scrape time."""
        try:
            signals = self.signals()
        except TaskDBUnavailable as exc:
            self.log.write("ERROR", f"metrics scrape without TaskDB gauges: {exc}")
        else:
            self.metrics.set_from_signals(signals, self._injections.kill_rate)
        return self.metrics.exposition()

    def logs(self, tail: int) -> str:
        return "".join(line + "\n" for line in self.log.tail(tail))

    # -- incidents -------------------------------------------------------------------------------

    def incidents(self) -> Reply:
        self.faults.refresh()
        return Reply(
            HTTPStatus.OK,
            {"active": [i.record() for i in self._injections.active()], "names": list(INCIDENT_NAMES)},
        )

    def inject(self, name: str, params: Mapping[str, object]) -> Reply:
        """Inject an incident: record it, backdate its signal, and (db-corruption) corrupt TaskDB for real."""
        try:
            injection = self.faults.inject(name, params)
        except IncidentError as exc:
            return Reply(exc.status, {"error": str(exc), "valid": list(INCIDENT_NAMES)})
        except TaskDBUnavailable as exc:
            return Reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"cannot inject {name}: {exc}"})
        return Reply(HTTPStatus.CREATED, injection.record())

    def clear_incidents(self, name: str | None = None) -> Reply:
        """Remove injections (all, or one) and the flows they backdated. TaskDB corruption stays: Step 3 fixes it."""
        try:
            names = self.faults.clear(name)
        except NotInjected:
            return Reply(HTTPStatus.NOT_FOUND, {"error": f"incident {name!r} is not injected"})
        body: dict[str, object] = {"cleared": names}
        if "db-corruption" in names:
            body["note"] = "TaskDB stays corrupted until Step 3 reverts the schema or restores the backup"
        return Reply(HTTPStatus.OK, body)
