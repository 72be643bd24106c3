"""The FlowEngine reference simulator: a real HTTP service on 127.0.0.1 backed by a real TaskDB.

On staging the drill talks to the real FlowEngine; locally this service plays it, through
the same ``FlowEngineClient``. What it serves follows two inputs it does not own:

- ``allowlist_source``: the union of ``REPO_ALLOWLIST`` over the flowengine pods that are
  available right now (a Kubernetes watch in the drill, a plain function in tests). A
  change of scope takes effect when the rollout makes it available, not when the
  Deployment is edited. With no pod available every flow/config/health request gets 503.
- TaskDB: every flow is a row in ``flows`` with five ``tasks`` (one per quality gate);
  ``/stats`` and ``/api/v1/signals`` are queries over it. The simulator never remembers
  what TaskDB says: the integrity check runs against the database on every flow, so
  ``db-corruption`` is cleared by Step 3 (revert or restore), not by clearing the injection.

Signals count failures over the last hour, for the repos that are served now, and a repo's
hour restarts when it is served again (re-enablement then measures recurrence, not the
incident that caused the rollback). A refused repo runs no flows, so it is not "failing
now"; its history stays in TaskDB and in ``flow_failures_total``.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, Self, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rollback_drill.errors import InputError
from rollback_drill.evidence.redact import add_secret, dsn_password, redact_text
from rollback_drill.flowengine.incidents import (
    CATALOGUE,
    CAUSES,
    CRASH_LOOP_BACKDATE_S,
    DAILY_SPEND_BACKDATE_USD,
    GATES,
    INCIDENT_NAMES,
    MODEL_PROVIDERS,
    MUTATION_GATE_MIN_KILL_RATE,
    SLO_ABOVE_BACKDATE_S,
    TASKDB_INTEGRITY_CAUSE,
    BackdatedFlow,
    FlowEffect,
    IncidentError,
    Injection,
    InjectionState,
    affected_repos,
    plan_backdated_flows,
    validate_params,
)
from rollback_drill.timing.clock import Clock, SystemClock

if TYPE_CHECKING:
    from pathlib import Path

T = TypeVar("T")
Conn = psycopg.Connection[tuple[Any, ...]]

RESTRICTED_REASON: Final = "Restricted to pilot scope"
"""What a refused expanded repo is told (the runbook's Step 1 verification)."""
NOT_ALLOWLISTED_REASON: Final = "Not in REPO_ALLOWLIST"
"""What the pilot is told when even it is missing from the allowlist (never by the simulator's own choice)."""
P95_THRESHOLD_S: Final = 150.0
SIGNAL_WINDOW_S: Final = 3600.0
"""Failures, flows and P95 in the signals are over the last hour."""
SPEND_WINDOW_S: Final = 86400.0
"""Daily spend is the cost of the flows of the last 24 hours."""
LOG_LINES_KEPT: Final = 10_000
MAX_BODY_BYTES: Final = 1 << 20
DURATION_BUCKETS_S: Final = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 150.0, 180.0, 240.0, 300.0)
"""``flow_duration_seconds`` buckets, up to 300 s: the runbook's limits (120 s, 150 s) are bucket edges."""
STATEMENT_TIMEOUT_MS: Final = 10_000
"""A TaskDB statement that waits longer (behind Step 3's schema lock, say) fails the request instead of hanging it."""
LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

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


@dataclass(frozen=True)
class AllowlistView:
    """What the available flowengine pods serve right now."""

    available_pods: int
    """Pods that are Ready; 0 during a crash loop."""
    repos: frozenset[str]
    """Union of ``REPO_ALLOWLIST`` over the available pods."""


class ServedScope(Protocol):
    """Anything shaped like ``AllowlistView`` (the cluster-backed watch returns its own frozen dataclass)."""

    @property
    def available_pods(self) -> int: ...

    @property
    def repos(self) -> frozenset[str]: ...


AllowlistSource = Callable[[], ServedScope]
"""Called on every request (and by the observer thread): it must be cheap and thread-safe."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: a JSON document, or text."""

    status: int
    body: Mapping[str, object] | str | bytes
    content_type: str = "application/json"


class TaskDBUnavailable(Exception):
    """TaskDB could not be reached or answered with an error; the message is already redacted."""


def _rfc3339(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact_text(text.splitlines()[0] if text else type(exc).__name__)


def _float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, Decimal | int | float):
        return float(value)
    return None


# --- TaskDB ------------------------------------------------------------------------------------------


class _ConnectionPool:
    """A few autocommit connections kept for reuse; a connection that saw an error is discarded."""

    def __init__(self, dsn: str, *, max_idle: int = 8, connect_timeout_s: float = 5.0) -> None:
        self._dsn = dsn
        self._max_idle = max_idle
        self._connect_timeout_s = connect_timeout_s
        self._idle: list[Conn] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> Conn:
        return psycopg.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=max(1, int(self._connect_timeout_s)),
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            application_name="flowengine-simulator",
        )

    @contextlib.contextmanager
    def connection(self) -> Iterator[Conn]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = self._connect()
        reusable = False
        try:
            yield conn
            reusable = not conn.closed and not conn.broken
        finally:
            with self._lock:
                if reusable and not self._closed and len(self._idle) < self._max_idle:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


INJECTIONS_SCHEMA: Final = "flowengine_sim"
"""Where the pods of a Deployment share their injections: a schema of its own, apart from FlowEngine's tables."""


class TaskDBInjectionStore:
    """The injections of every simulator pod, in one row of ``flowengine_sim.injections`` in TaskDB."""

    def __init__(self, pool: _ConnectionPool) -> None:
        self._pool = pool
        self._ready = False

    def _ensure(self, conn: Conn) -> None:
        if self._ready:
            return
        with conn.transaction():
            # The pods start together: one of them creates the table, the others wait for it.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('flowengine_sim.injections'))")
            conn.execute("CREATE SCHEMA IF NOT EXISTS flowengine_sim")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS flowengine_sim.injections ("
                "id smallint PRIMARY KEY CHECK (id = 1), version bigint NOT NULL, payload jsonb NOT NULL)"
            )
            conn.execute("INSERT INTO flowengine_sim.injections VALUES (1, 0, '{}') ON CONFLICT (id) DO NOTHING")
        self._ready = True

    def write(self, payload: dict[str, object]) -> int:
        with self._pool.connection() as conn:
            self._ensure(conn)
            row = conn.execute(
                "UPDATE flowengine_sim.injections SET version = version + 1, payload = %s "
                "WHERE id = 1 RETURNING version",
                (json.dumps(payload),),
            ).fetchone()
        return int(row[0]) if row else 0

    def read(self) -> tuple[int, dict[str, object]]:
        try:
            with self._pool.connection() as conn:
                self._ensure(conn)
                row = conn.execute("SELECT version, payload FROM flowengine_sim.injections WHERE id = 1").fetchone()
        except psycopg.errors.UndefinedTable:
            # A restore from a dump taken before the first injection: nothing is injected.
            self._ready = False
            return 0, {}
        if row is None:
            return 0, {}
        payload = row[1] if isinstance(row[1], dict) else {}
        return int(row[0]), payload


def clear_shared_injections(conn: Conn) -> bool:
    """Forget every injection the pods share (a fresh world), even while no pod answers; True if there were any.

    The pods drop them on their next refresh (twice a second). Nothing else is touched: the flows they
    backdated go with the world's TaskDB reset.
    """
    if conn.execute("SELECT to_regclass('flowengine_sim.injections')").fetchone() in (None, (None,)):
        return False
    row = conn.execute(
        "UPDATE flowengine_sim.injections SET version = version + 1, payload = '{}' "
        "WHERE id = 1 RETURNING (SELECT payload FROM flowengine_sim.injections WHERE id = 1)"
    ).fetchone()
    before = row[0] if row else None
    return bool(isinstance(before, dict) and before.get("injections"))


@dataclass(frozen=True)
class _Schema:
    """Which Phase 6/7 objects exist; detected on every flow, because Step 3 removes them mid-drill."""

    repo_quotas: bool
    quota_checked: bool
    model_routes: bool
    provider: bool


def _detect_schema(conn: Conn) -> _Schema:
    row = conn.execute(
        """
        SELECT to_regclass('repo_quotas') IS NOT NULL,
               EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_schema = current_schema() AND table_name = 'flows' AND column_name = 'quota_checked'),
               to_regclass('model_routes') IS NOT NULL,
               EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_schema = current_schema() AND table_name = 'flows' AND column_name = 'provider')
        """
    ).fetchone()
    if row is None:  # pragma: no cover - a SELECT without FROM always returns one row
        return _Schema(repo_quotas=False, quota_checked=False, model_routes=False, provider=False)
    return _Schema(
        repo_quotas=bool(row[0]), quota_checked=bool(row[1]), model_routes=bool(row[2]), provider=bool(row[3])
    )


def _integrity_problem(conn: Conn) -> str | None:
    """The integrity check: ``SELECT 1``, then no quota below zero while ``repo_quotas`` exists."""
    conn.execute("SELECT 1").fetchone()
    exists = conn.execute("SELECT to_regclass('repo_quotas') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    try:
        row = conn.execute("SELECT count(*) FROM repo_quotas WHERE daily_budget_usd < 0").fetchone()
    except psycopg.errors.UndefinedTable:
        return None  # dropped between the two statements: Step 3 just reverted the schema
    invalid = int(row[0]) if row else 0
    if invalid:
        return f"{invalid} repo_quotas row(s) with daily_budget_usd < 0 (constraint repo_quotas_budget_valid violated)"
    return None


# --- the simulator -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    view: ServedScope | None
    served: frozenset[str]
    error: str | None = None

    @property
    def available(self) -> bool:
        return self.view is not None and self.view.available_pods > 0


def _listen_host(host: str, *, in_pod: bool) -> str:
    if in_pod:
        return "0.0.0.0"  # noqa: S104 - the pod's own network namespace, reached only through its Service
    if host not in LOOPBACK:
        raise InputError(f"the simulator listens on loopback only (127.0.0.1), not {host!r}")
    return host


class Simulator:
    """The FlowEngine reference simulator. ``start()`` serves it on 127.0.0.1; ``stop()`` ends it."""

    def __init__(
        self,
        pilot_repo: str,
        taskdb_dsn: str,
        allowlist_source: AllowlistSource,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        flow_latency_s: float = 0.05,
        accept_injection: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        state_file: Path | None = None,
        observe_interval_s: float | None = 0.5,
        log_sink: Callable[[str], None] | None = None,
        in_pod: bool = False,
        shared_injections: bool = False,
    ) -> None:
        """``in_pod``: serve on every address of the pod's own network namespace (``0.0.0.0``), which only a
        Kubernetes Service reaches; ``shared_injections``: keep injections in TaskDB, shared by every pod."""
        if not pilot_repo:
            raise InputError("the simulator needs the pilot repo's name (--pilot-repo compliance-service)")
        host = _listen_host(host, in_pod=in_pod)
        if flow_latency_s < 0:
            raise InputError(f"flow_latency_s must be >= 0, got {flow_latency_s!r}")
        password = dsn_password(taskdb_dsn)
        if password:
            add_secret(password)
        self.pilot_repo = pilot_repo
        self.flow_latency_s = flow_latency_s
        self.accept_injection = accept_injection
        self._host = "127.0.0.1" if host == "localhost" else host
        self.in_pod = in_pod
        self._port = port
        self._allowlist_source = allowlist_source
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - simulated durations, not secrets
        self._pool = _ConnectionPool(taskdb_dsn)
        self._observe_interval_s = observe_interval_s
        self._log_sink = log_sink
        self.injections = InjectionState(
            pilot_repo, state_file, TaskDBInjectionStore(self._pool) if shared_injections else None
        )

        self._lock = threading.RLock()
        self._rng_lock = threading.Lock()
        self._inject_lock = threading.Lock()
        self._stopping = threading.Event()
        self._logs: deque[str] = deque(maxlen=LOG_LINES_KEPT)
        self._served: frozenset[str] = frozenset()
        self._served_since: dict[str, datetime | None] = {}
        self._observed_once = False
        self._down_since_mono: float | None = None
        self._p95_above_since_mono: float | None = None
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []

        self.registry = CollectorRegistry(auto_describe=True)
        self._m_failures = Counter(
            "flow_failures", "Flow failures by repo and cause", ["repo", "cause"], registry=self.registry
        )
        self._m_flows = Counter("flows", "Flows run, by repo and status", ["repo", "status"], registry=self.registry)
        self._m_duration = Histogram(
            "flow_duration_seconds",
            "Simulated duration of completed flows",
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self._g_spend = Gauge("flowengine_daily_spend_usd", "Spend of the last 24 hours", registry=self.registry)
        self._g_spend_rate = Gauge(
            "flowengine_spend_rate_usd_per_hour", "Current spend rate of the served repos", registry=self.registry
        )
        self._g_kill_rate = Gauge(
            "flow_mutation_kill_rate", "Mutation kill-rate of each served repo", ["repo"], registry=self.registry
        )
        self._g_active = Gauge("flowengine_active_repos", "Repos served by available pods", registry=self.registry)
        self._g_p95 = Gauge(
            "flowengine_p95_latency_seconds",
            "P95 flow duration over the served repos, last hour",
            registry=self.registry,
        )
        self._g_p95_above = Gauge(
            "flowengine_p95_above_threshold_seconds", "How long P95 has been above 150 s", registry=self.registry
        )
        self._g_pods = Gauge("flowengine_available_pods", "Available (Ready) flowengine pods", registry=self.registry)
        self._g_crash = Gauge(
            "flowengine_crash_loop_unavailable_seconds", "How long the Deployment has been unavailable",
            registry=self.registry,
        )  # fmt: skip
        self._g_integrity = Gauge(
            "flowengine_taskdb_integrity_ok", "1 when the integrity check passes", registry=self.registry
        )
        self._g_leak = Gauge(
            "flowengine_credentials_leaked", "1 when a credential leak was detected", registry=self.registry
        )
        self._g_rate_limited = Gauge(
            "flowengine_model_providers_rate_limited", "Model providers rate-limiting", registry=self.registry
        )

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise InputError("the simulator is not started; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.in_pod else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> str:
        """Load the state file, bind, serve on a background thread, and return the base URL."""
        if self._server is not None:
            raise InputError("the simulator is already started")
        loaded = self.injections.load(now_mono=self._clock.monotonic(), now_wall=self._clock.wall())
        self._refresh_injections()  # a pod that starts late serves what the others already serve
        server = _Server((self._host, self._port), _Handler)
        server.simulator = self
        self._server = server
        self._observe()
        serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="flowengine-http")
        serve.daemon = True
        serve.start()
        self._threads.append(serve)
        if self._observe_interval_s:
            observer = threading.Thread(target=self._observe_loop, name="flowengine-observer", daemon=True)
            observer.start()
            self._threads.append(observer)
        self.log("INFO", f"flowengine simulator listening on {self.url} (pilot repo {self.pilot_repo})")
        if loaded:
            self.log(
                "INFO",
                f"restored {loaded} active injection(s) from the state file: {', '.join(self.injections.names())}",
            )
        return self.url

    def stop(self) -> None:
        """Stop serving: in-flight flows end early, threads are joined, connections closed."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self._pool.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _observe_loop(self) -> None:
        interval = self._observe_interval_s or 0.5
        while not self._stopping.wait(interval):
            self._refresh_injections()
            self._observe()

    def _refresh_injections(self) -> None:
        """Take the injections another pod wrote to TaskDB, and log the new ones as that pod did."""
        if self.injections.store is None:
            return
        try:
            with self._inject_lock:
                new = self.injections.refresh(now_mono=self._clock.monotonic(), now_wall=self._clock.wall())
        except (psycopg.Error, ValueError) as exc:
            self.log("WARNING", f"cannot read the shared injections from TaskDB: {_first_line(exc)}")
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
            rows = self._db(
                lambda conn: conn.execute("SELECT repo, status, cause FROM flows WHERE id = ANY(%s)", (ids,)).fetchall()
            )
        except TaskDBUnavailable as exc:
            self.log("WARNING", f"cannot count the flows {injection.name} backdated: {exc}")
            return
        for repo, status, cause in rows:
            self._m_flows.labels(repo, status).inc()
            if status == "failed" and cause:
                self._m_failures.labels(repo, cause).inc()

    # -- logging ---------------------------------------------------------------------------------

    def log(self, level: LogLevel, message: str) -> None:
        """Append ``<RFC3339> <LEVEL> <message>`` (redacted) to the log that ``/logs`` serves."""
        line = f"{_rfc3339(self._clock.wall())} {level} {redact_text(message)}"
        with self._lock:
            self._logs.append(line)
        if self._log_sink is not None:
            self._log_sink(line)

    def logs(self, tail: int = 100) -> list[str]:
        with self._lock:
            return list(self._logs)[-tail:] if tail > 0 else []

    # -- scope -----------------------------------------------------------------------------------

    def _observe(self) -> _Scope:
        """Ask the allowlist source what is served now, and feed the observation to the injections."""
        try:
            view = self._allowlist_source()
        except Exception as exc:  # noqa: BLE001 - any failure of the source means "cannot tell", answered as 503
            return _Scope(None, frozenset(), f"allowlist source failed: {_first_line(exc)}")
        served = view.repos if view.available_pods > 0 else frozenset()
        now_mono = self._clock.monotonic()
        now_wall = self._clock.wall()
        with self._lock:
            for repo in served - self._served:
                # Repos served when the simulator first looks have no start; a repo served again starts its hour anew.
                self._served_since[repo] = now_wall if self._observed_once else None
            self._served = served
            self._observed_once = True
            if view.available_pods <= 0:
                if self._down_since_mono is None:
                    self._down_since_mono = now_mono
            else:
                self._down_since_mono = None
        self.injections.observe(available_pods=view.available_pods, served=served, now_mono=now_mono)
        return _Scope(view, served)

    def _unavailable(self, scope: _Scope) -> Reply:
        reason = scope.error or "no flowengine pod is available (0 Ready)"
        return Reply(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable", "reason": reason})

    def _refusal(self, repo: str) -> Reply:
        reason = NOT_ALLOWLISTED_REASON if repo == self.pilot_repo else RESTRICTED_REASON
        return Reply(HTTPStatus.FORBIDDEN, {"repo": repo, "enabled": False, "reason": reason})

    # -- TaskDB access ---------------------------------------------------------------------------

    def _db(self, work: Callable[[Conn], T]) -> T:
        """Run ``work`` on a pooled connection; retry once on a dropped connection or a schema change."""
        last: Exception | None = None
        for _ in range(2):
            try:
                with self._pool.connection() as conn:
                    return work(conn)
            except (psycopg.OperationalError, psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
                # A stale pooled connection (TaskDB restored or restarted) or Step 3 dropping a table mid-flow.
                last = exc
            except psycopg.Error as exc:
                raise TaskDBUnavailable(f"TaskDB error: {_first_line(exc)}") from exc
        raise TaskDBUnavailable(f"TaskDB unreachable: {_first_line(last) if last else 'unknown error'}") from last

    def _draw(self, low: float, high: float) -> float:
        with self._rng_lock:
            return self._rng.uniform(low, high)

    def _random(self) -> float:
        with self._rng_lock:
            return self._rng.random()

    # -- health ----------------------------------------------------------------------------------

    def health(self) -> Reply:
        scope = self._observe()
        if not scope.available:
            return self._unavailable(scope)
        reasons: list[str] = []
        crash = self.injections.crash_loop_unavailable_s(self._clock.monotonic())
        if crash:
            reasons.append(f"flowengine crash loop: Deployment unavailable for {crash:.0f} s")
        try:
            problem = self._db(_integrity_problem)
        except TaskDBUnavailable as exc:
            problem = str(exc)
        if problem:
            reasons.append(f"TaskDB: {problem}")
        if self.injections.credentials_leaked():
            reasons.append("credential leak detected")
        limited = self.injections.providers_rate_limited(scope.served)
        if limited:
            reasons.append(f"model providers rate-limiting: {', '.join(limited)}")
        if reasons:
            return Reply(HTTPStatus.OK, {"status": "degraded", "reasons": reasons})
        return Reply(HTTPStatus.OK, {"status": "healthy"})

    def health_db(self) -> Reply:
        scope = self._observe()
        if not scope.available:
            return self._unavailable(scope)
        try:
            problem = self._db(_integrity_problem)
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
        scope = self._observe()
        if not scope.available:
            return self._unavailable(scope)
        if provider in self.injections.providers_rate_limited(scope.served):
            return Reply(HTTPStatus.OK, {"provider": provider, "status": "rate-limited"})
        return Reply(HTTPStatus.OK, {"provider": provider, "status": "healthy"})

    # -- repos and flows -------------------------------------------------------------------------

    def repo_config(self, repo: str) -> Reply:
        scope = self._observe()
        if not scope.available:
            return self._unavailable(scope)
        if repo not in scope.served:
            return self._refusal(repo)
        return Reply(HTTPStatus.OK, {"repo": repo, "enabled": True, "pilot": repo == self.pilot_repo})

    def run_flow(self, body: Mapping[str, object]) -> Reply:
        """``blocks generate``: run one flow of an allowed repo and record it in TaskDB."""
        scope = self._observe()
        if not scope.available:
            return self._unavailable(scope)
        missing = [
            key for key in ("repo", "family", "block_type") if not isinstance(body.get(key), str) or not body[key]
        ]
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
            self._stopping.wait(self.flow_latency_s)  # the flow's own (small, real) work, not a wait for anything
        effect = self.injections.flow_effect(repo, served=scope.served, draw=self._random)
        provider = MODEL_PROVIDERS[int(self._random() * len(MODEL_PROVIDERS)) % len(MODEL_PROVIDERS)]
        try:
            result = self._db(
                lambda conn: self._record_flow(
                    conn,
                    repo=repo,
                    family=family,
                    block_type=block_type,
                    effect=effect,
                    provider=provider,
                    started_at=started_at,
                )
            )
        except TaskDBUnavailable as exc:
            cause = "taskdb-unreachable"
            self._m_failures.labels(repo, cause).inc()
            self._m_flows.labels(repo, "failed").inc()
            self.log("ERROR", f"flow failed: repo={repo} cause={cause} ({exc})")
            return Reply(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"status": "failed", "cause": cause, "flow_id": None, "repo": repo, "reason": str(exc)},
            )
        self._m_flows.labels(repo, str(result["status"])).inc()
        if result["status"] == "failed":
            cause = str(result["cause"])
            self._m_failures.labels(repo, cause).inc()
            level: LogLevel = "CRITICAL" if cause == TASKDB_INTEGRITY_CAUSE else "ERROR"
            self.log(level, f"flow {result['flow_id']} failed: repo={repo} cause={cause}")
            return Reply(HTTPStatus.INTERNAL_SERVER_ERROR, result)
        self._m_duration.observe(float(str(result["duration_s"])))
        self.log(
            "INFO",
            f"flow {result['flow_id']} completed: repo={repo} duration_s={result['duration_s']} "
            f"gates={result['gates_passed']}/{len(GATES)}",
        )
        return Reply(HTTPStatus.OK, result)

    def _record_flow(
        self,
        conn: Conn,
        *,
        repo: str,
        family: str,
        block_type: str,
        effect: FlowEffect,
        provider: str,
        started_at: datetime,
    ) -> dict[str, object]:
        # Reads first, each its own autocommit statement: no lock on repo_quotas is held while flows is written,
        # so Step 3's rollback_to_pilot.sql (model_routes, flows, then repo_quotas) cannot deadlock with a flow.
        schema = _detect_schema(conn)
        cause: str | None = effect.cause
        if _integrity_problem(conn) is not None:
            cause = TASKDB_INTEGRITY_CAUSE
        quota_checked = False
        if schema.repo_quotas:
            # FlowEngine reads the repo's quota before every flow while repo_quotas exists.
            with contextlib.suppress(psycopg.errors.UndefinedTable):
                conn.execute("SELECT daily_budget_usd FROM repo_quotas WHERE repo = %s", (repo,)).fetchone()
                quota_checked = True
        failed = cause is not None
        duration = round(self._draw(5.0, 30.0) if failed else self._draw(*effect.duration_range_s), 1)
        cost = 0.0 if failed else round(self._draw(*effect.cost_range_usd), 4)
        gates = [
            {
                "name": gate,
                "passed": not failed and not (gate == "mutation" and effect.kill_rate < MUTATION_GATE_MIN_KILL_RATE),
            }
            for gate in GATES
        ]
        with conn.transaction():
            _lock_like_step_3(conn)
            gates_passed = sum(1 for gate in gates if gate["passed"])
            columns = ["repo", "family", "block_type", "status", "cause", "duration_s", "cost_usd", "gates_passed",
                       "started_at", "finished_at"]  # fmt: skip
            values: list[object] = [repo, family, block_type, "failed" if failed else "completed", cause, duration, cost,
                                    gates_passed, started_at, self._clock.wall()]  # fmt: skip
            if schema.quota_checked:
                columns.append("quota_checked")
                values.append(quota_checked)
            if schema.provider:
                columns.append("provider")
                values.append(provider)
            placeholders = ", ".join(["%s"] * len(columns))
            row = conn.execute(
                f"INSERT INTO flows ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id",  # noqa: S608 - column names are constants above
                values,
            ).fetchone()
            flow_id = int(row[0]) if row else 0
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO tasks (flow_id, name, status) VALUES (%s, %s, %s)",
                    [
                        (flow_id, g["name"], "skipped" if failed else ("passed" if g["passed"] else "failed"))
                        for g in gates
                    ],
                )
            if schema.model_routes and not failed:
                conn.execute("INSERT INTO model_routes (flow_id, provider) VALUES (%s, %s)", (flow_id, provider))
        if failed:
            return {"status": "failed", "cause": cause, "flow_id": flow_id, "repo": repo, "duration_s": duration}
        return {
            "flow_id": flow_id,
            "repo": repo,
            "status": "completed",
            "duration_s": duration,
            "cost_usd": cost,
            "quality_gates": gates,
            "gates_passed": gates_passed,
            "provider": provider if schema.provider or schema.model_routes else None,
        }

    def verify(self, flow_id: int, *, strict: bool) -> Reply:
        """``blocks verify``: read the flow's gates back from TaskDB. Strict needs 5/5; lenient tolerates one failed gate."""
        scope = self._observe()
        if not scope.available:
            return self._unavailable(scope)

        def read(conn: Conn) -> tuple[tuple[Any, ...] | None, list[tuple[Any, ...]]]:
            flow = conn.execute("SELECT id, repo, status, gates_passed FROM flows WHERE id = %s", (flow_id,)).fetchone()
            tasks = conn.execute("SELECT name, status FROM tasks WHERE flow_id = %s ORDER BY id", (flow_id,)).fetchall()
            return flow, tasks

        try:
            flow, tasks = self._db(read)
        except TaskDBUnavailable as exc:
            return Reply(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable", "reason": str(exc)})
        if flow is None:
            return Reply(HTTPStatus.NOT_FOUND, {"error": f"flow {flow_id} is not in TaskDB"})
        status_by_gate = {str(name): str(status) for name, status in tasks}
        gates = [{"name": gate, "passed": status_by_gate.get(gate) == "passed"} for gate in GATES]
        passed_count = sum(1 for g in gates if g["passed"])
        completed = flow[2] == "completed"
        passed = completed and (passed_count == len(GATES) if strict else passed_count >= len(GATES) - 1)
        return Reply(
            HTTPStatus.OK,
            {
                "flow_id": flow_id,
                "repo": flow[1],
                "status": flow[2],
                "strict": strict,
                "passed": passed,
                "gates": gates,
                "gates_passed": passed_count,
            },
        )

    # -- stats and signals -----------------------------------------------------------------------

    def stats(self, window_s: float) -> Reply:
        since = self._clock.wall() - timedelta(seconds=window_s)

        def query(conn: Conn) -> list[tuple[Any, ...]]:
            return conn.execute(
                """
                SELECT repo, count(*), count(*) FILTER (WHERE status = 'failed'),
                       percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_s) FILTER (WHERE status = 'completed'),
                       percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_s) FILTER (WHERE status = 'completed')
                FROM flows
                WHERE started_at >= %s AND status IN ('completed', 'failed')
                GROUP BY GROUPING SETS ((repo), ())
                """,
                (since,),
            ).fetchall()

        try:
            rows = self._db(query)
        except TaskDBUnavailable as exc:
            return Reply(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable", "reason": str(exc)})

        def summary(flows: int, failed: int, p50: object, p95: object) -> dict[str, object]:
            return {
                "flows": flows,
                "failed": failed,
                "success_rate": (flows - failed) / flows if flows else None,
                "p50_s": _float(p50),
                "p95_s": _float(p95),
            }

        overall = summary(0, 0, None, None)
        per_repo: dict[str, dict[str, object]] = {}
        for repo, flows, failed, p50, p95 in rows:
            if repo is None:
                overall = summary(int(flows), int(failed), p50, p95)
            else:
                per_repo[str(repo)] = summary(int(flows), int(failed), p50, p95)
        return Reply(
            HTTPStatus.OK,
            {
                "window_s": window_s,
                "since": _rfc3339(since),
                **overall,
                "active_repos": sorted(per_repo),
                "repos": per_repo,
            },
        )

    def signals(self) -> dict[str, object]:
        """Everything the decision framework reads, as one JSON-ready document. Raises ``TaskDBUnavailable``."""
        scope = self._observe()
        now_wall = self._clock.wall()
        now_mono = self._clock.monotonic()
        hour_ago = now_wall - timedelta(seconds=SIGNAL_WINDOW_S)
        served = sorted(scope.served)
        with self._lock:
            windows = [max(hour_ago, self._served_since.get(repo) or hour_ago) for repo in served]

        def query(conn: Conn) -> tuple[str | None, list[tuple[Any, ...]], float]:
            problem = _integrity_problem(conn)
            rows = conn.execute(
                """
                WITH w AS (SELECT * FROM unnest(%s::text[], %s::timestamptz[]) AS w(repo, since))
                SELECT f.repo, count(*), count(*) FILTER (WHERE f.status = 'failed'),
                       mode() WITHIN GROUP (ORDER BY f.cause) FILTER (WHERE f.status = 'failed'),
                       percentile_disc(0.95) WITHIN GROUP (ORDER BY f.duration_s) FILTER (WHERE f.status = 'completed')
                FROM flows f JOIN w ON f.repo = w.repo AND f.started_at >= w.since
                WHERE f.status IN ('completed', 'failed')
                GROUP BY GROUPING SETS ((f.repo), ())
                """,
                (served, windows),
            ).fetchall()
            return problem, rows, _spend_since(conn, now_wall - timedelta(seconds=SPEND_WINDOW_S))

        problem, rows, spend_24h = self._db(query)
        by_repo: dict[str, tuple[int, int, str | None]] = {}
        p95 = 0.0
        for repo, flows, failed, cause, repo_p95 in rows:
            if repo is None:
                p95 = _float(repo_p95) or 0.0
            else:
                by_repo[str(repo)] = (int(flows), int(failed), str(cause) if cause is not None else None)
        with self._lock:
            if p95 > P95_THRESHOLD_S:
                if self._p95_above_since_mono is None:
                    self._p95_above_since_mono = now_mono
                p95_above = now_mono - self._p95_above_since_mono
            else:
                self._p95_above_since_mono = None
                p95_above = 0.0
            down = now_mono - self._down_since_mono if self._down_since_mono is not None else 0.0
        injected_crash = self.injections.crash_loop_unavailable_s(now_mono)
        limited = self.injections.providers_rate_limited(scope.served)
        repos = []
        for repo in served:
            flows, failed, cause = by_repo.get(repo, (0, 0, None))
            repos.append(
                {
                    "repo": repo,
                    "failures_last_hour": failed,
                    "flows_last_hour": flows,
                    "cause": cause,
                    "kill_rate": self.injections.kill_rate(repo),
                }
            )
        return {
            "observed_at": _rfc3339(now_wall),
            "pilot_repo": self.pilot_repo,
            "available_pods": scope.view.available_pods if scope.view is not None else None,
            "allowlist_error": scope.error,
            "served_repos": served,
            "repos": repos,
            "crash_loop_unavailable_s": round(max(down, injected_crash or 0.0), 3),
            "db_integrity_ok": problem is None,
            "db_integrity_problem": problem,
            "credentials_leaked": self.injections.credentials_leaked(),
            "daily_spend_usd": round(spend_24h + self.injections.extra_spend_usd(), 4),
            "spend_rate_usd_per_hour": self.injections.spend_rate_usd_per_hour(scope.served),
            "p95_latency_s": p95,
            "p95_above_150s_for_s": round(p95_above, 3),
            "providers_rate_limited": len(limited),
            "rate_limited_providers": list(limited),
            "config_validation_errors": list(self.injections.config_validation_errors()),
            "active_incidents": list(self.injections.names()),
        }

    def metrics_text(self) -> bytes:
        """Prometheus text: counters as they are, gauges refreshed from the signals at scrape time."""
        try:
            signals = self.signals()
        except TaskDBUnavailable as exc:
            self.log("ERROR", f"metrics scrape without TaskDB gauges: {exc}")
        else:
            self._g_spend.set(float(str(signals["daily_spend_usd"])))
            self._g_spend_rate.set(float(str(signals["spend_rate_usd_per_hour"])))
            self._g_p95.set(float(str(signals["p95_latency_s"])))
            self._g_p95_above.set(float(str(signals["p95_above_150s_for_s"])))
            self._g_crash.set(float(str(signals["crash_loop_unavailable_s"])))
            self._g_integrity.set(1 if signals["db_integrity_ok"] else 0)
            self._g_leak.set(1 if signals["credentials_leaked"] else 0)
            self._g_rate_limited.set(float(str(signals["providers_rate_limited"])))
            pods = signals["available_pods"]
            self._g_pods.set(float(pods) if isinstance(pods, int) else 0)
            served = signals["served_repos"]
            self._g_active.set(len(served) if isinstance(served, list) else 0)
            self._g_kill_rate.clear()
            for repo in served if isinstance(served, list) else []:
                self._g_kill_rate.labels(repo).set(self.injections.kill_rate(str(repo)))
        return generate_latest(self.registry)

    # -- incidents -------------------------------------------------------------------------------

    def incidents(self) -> Reply:
        self._refresh_injections()
        return Reply(
            HTTPStatus.OK,
            {"active": [i.record() for i in self.injections.active()], "names": list(INCIDENT_NAMES)},
        )

    def inject(self, name: str, params: Mapping[str, object]) -> Reply:
        """Inject an incident: record it, backdate its signal, and (db-corruption) corrupt TaskDB for real."""
        try:
            injection = self._inject(name, params)
        except IncidentError as exc:
            return Reply(exc.status, {"error": str(exc), "valid": list(INCIDENT_NAMES)})
        except TaskDBUnavailable as exc:
            return Reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"cannot inject {name}: {exc}"})
        self._log_injection(injection)
        return Reply(HTTPStatus.CREATED, injection.record())

    def _inject(self, name: str, params: Mapping[str, object]) -> Injection:
        if not self.accept_injection:
            raise IncidentError(
                "this FlowEngine does not accept incident injection (started with accept_injection=False)",
                status=HTTPStatus.FORBIDDEN,
            )
        params = validate_params(name, params)
        self._refresh_injections()
        with self._inject_lock:
            if self.injections.get(name) is not None:
                raise IncidentError(
                    f"incident {name!r} is already injected; DELETE /admin/incidents first", status=HTTPStatus.CONFLICT
                )
            scope = self._observe()
            listed = scope.view.repos if scope.view is not None else frozenset()
            repos = affected_repos(name, params, pilot=self.pilot_repo, expanded=sorted(listed - {self.pilot_repo}))
            injection = Injection(name, params, repos, self._clock.wall(), self._clock.monotonic())
            self._apply(injection, scope)
            self.injections.add(injection, self._clock.monotonic())
            self._observe()
        return injection

    def _apply(self, injection: Injection, scope: _Scope) -> None:
        name = injection.name
        now_mono = injection.injected_mono
        if name == "crash-loop":
            injection.unavailable_since_mono = now_mono - injection.number("unavailable_s", CRASH_LOOP_BACKDATE_S)
            injection.pods_seen_down = scope.view is not None and scope.view.available_pods == 0
        elif name == "db-corruption":
            targets = list(injection.repos) if "repos" in injection.params else [self.pilot_repo, *injection.repos]
            injection.repos = tuple(dict.fromkeys(targets))
            self._db(lambda conn: _corrupt_quotas(conn, list(injection.repos)))
        elif name == "cost-runaway":
            target = injection.number("daily_spend_usd", DAILY_SPEND_BACKDATE_USD)
            since = injection.injected_at - timedelta(seconds=SPEND_WINDOW_S)
            injection.spend_offset_usd = max(0.0, target - self._db(lambda conn: _spend_since(conn, since)))
        with self._rng_lock:
            planned = plan_backdated_flows(injection, pilot=self.pilot_repo, rng=self._rng)
        if planned:
            injection.backdated_flow_ids = self._db(lambda conn: _insert_backdated(conn, planned))
            with self._lock:
                # The backdated flows are these repos' recent history: their hour counts from before the injection,
                # even for a repo that came back into scope a moment ago (a freshly reset drill world).
                for repo in {flow.repo for flow in planned}:
                    self._served_since[repo] = None
            for flow in planned:
                self._m_flows.labels(flow.repo, flow.status).inc()
                if flow.status == "failed" and flow.cause:
                    self._m_failures.labels(flow.repo, flow.cause).inc()
                else:
                    self._m_duration.observe(flow.duration_s)
        if name == "slo-violation":
            with self._lock:
                self._p95_above_since_mono = now_mono - injection.number("above_s", SLO_ABOVE_BACKDATE_S)

    def _log_injection(self, injection: Injection) -> None:
        name = injection.name
        repos = ", ".join(injection.repos) or "-"
        self.log("WARNING", f"incident injected: {name} ({CATALOGUE[name].criterion}); repos: {repos}")
        lines: list[tuple[LogLevel, str]] = [
            (level, template.format(repos=repos, count=len(injection.repos)))
            for level, template in _INJECTION_LOG.get(name, ())
        ]
        if name == "security-breach":
            what = str(injection.params.get("credential", "model provider API key"))
            lines.append(("CRITICAL", f"credential leak detected: {what} exposed in flow output; rotate it"))
        elif name == "cost-runaway":
            lines.append(("ERROR", f"daily spend above $200 (4x budget): ${injection.spend_offset_usd:.2f} backdated"))
        elif name == "user-error":
            lines.extend(
                ("ERROR", f"config validation failed: {m}") for m in self.injections.config_validation_errors()
            )
        elif injection.backdated_flow_ids and name in CAUSES:
            lines.extend(
                ("ERROR", f"flows failing: repo={repo} incident={name} cause={CAUSES[name]}")
                for repo in injection.repos
            )
        for level, message in lines:
            self.log(level, message)

    def clear_incidents(self, name: str | None = None) -> Reply:
        """Remove injections (all, or one) and the flows they backdated. TaskDB corruption stays: Step 3 fixes it."""
        self._refresh_injections()
        with self._inject_lock:
            now = self._clock.monotonic()
            if name is None:
                removed = self.injections.clear(now)
            else:
                one = self.injections.remove(name, now)
                if one is None:
                    return Reply(HTTPStatus.NOT_FOUND, {"error": f"incident {name!r} is not injected"})
                removed = (one,)
            ids = [flow_id for injection in removed for flow_id in injection.backdated_flow_ids]
            if ids:
                try:
                    self._db(lambda conn: _delete_flows(conn, ids))
                except TaskDBUnavailable as exc:
                    self.log("ERROR", f"could not remove {len(ids)} backdated flow(s): {exc}")
        names = [i.name for i in removed]
        self.log("INFO", f"incidents cleared: {', '.join(names) or 'none were active'}")
        body: dict[str, object] = {"cleared": names}
        if "db-corruption" in names:
            body["note"] = "TaskDB stays corrupted until Step 3 reverts the schema or restores the backup"
        return Reply(HTTPStatus.OK, body)


def _spend_since(conn: Conn, since: datetime) -> float:
    row = conn.execute("SELECT coalesce(sum(cost_usd), 0) FROM flows WHERE started_at >= %s", (since,)).fetchone()
    return _float(row[0] if row else 0) or 0.0


def _lock_like_step_3(conn: Conn) -> None:
    """Take model_routes before flows, in the order rollback_to_pilot.sql does, so the two never deadlock."""
    exists = conn.execute("SELECT to_regclass('model_routes') IS NOT NULL").fetchone()
    if exists and exists[0]:
        conn.execute("LOCK TABLE model_routes IN ROW EXCLUSIVE MODE")


def _delete_flows(conn: Conn, ids: list[int]) -> None:
    with conn.transaction():
        _lock_like_step_3(conn)
        conn.execute("DELETE FROM flows WHERE id = ANY(%s)", (ids,))


def _corrupt_quotas(conn: Conn, repos: list[str]) -> int:
    try:
        with conn.transaction():
            conn.execute("ALTER TABLE repo_quotas DROP CONSTRAINT IF EXISTS repo_quotas_budget_valid")
            conn.execute(
                """
                INSERT INTO repo_quotas (repo, daily_budget_usd) SELECT unnest(%s::text[]), -1
                ON CONFLICT (repo) DO UPDATE SET daily_budget_usd = -1, updated_at = now()
                """,
                (repos,),
            )
    except psycopg.errors.UndefinedTable as exc:
        raise IncidentError(
            "db-corruption needs the Phase 6 schema: TaskDB has no repo_quotas table (it is at the pilot's "
            "20251104_001); apply 20251117_001_phase6_repo_quotas.sql first",
            status=HTTPStatus.CONFLICT,
        ) from exc
    return len(repos)


def _insert_backdated(conn: Conn, flows: list[BackdatedFlow]) -> list[int]:
    rows = conn.execute(
        """
        INSERT INTO flows (repo, status, cause, duration_s, cost_usd, gates_passed, started_at, finished_at)
        SELECT r, s, c, d, k, g, t, t + make_interval(secs => d)
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[], %s::numeric[], %s::int[], %s::timestamptz[])
             AS u(r, s, c, d, k, g, t)
        RETURNING id
        """,
        (
            [f.repo for f in flows],
            [f.status for f in flows],
            [f.cause for f in flows],
            [f.duration_s for f in flows],
            [round(f.cost_usd, 4) for f in flows],
            [f.gates_passed for f in flows],
            [f.started_at for f in flows],
        ),
    ).fetchall()
    return [int(row[0]) for row in rows]


# --- HTTP --------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    simulator: Simulator


class _BadRequest(Exception):
    """Becomes a 400 with the message."""


def _query_number(query: Mapping[str, list[str]], key: str, default: float, *, low: float, high: float) -> float:
    values = query.get(key)
    if not values:
        return default
    try:
        value = float(values[-1])
    except ValueError as exc:
        raise _BadRequest(f"query parameter {key} must be a number, got {values[-1]!r}") from exc
    if not low <= value <= high:
        raise _BadRequest(f"query parameter {key} must be between {low:g} and {high:g}, got {value:g}")
    return value


@dataclass(frozen=True)
class _Call:
    """One routed request: the simulator, the path's named groups, the query string, and the body on demand."""

    sim: Simulator
    args: Mapping[str, str]
    query: Mapping[str, list[str]]
    body: Callable[[], dict[str, object]]


def _verify(call: _Call) -> Reply:
    strict = (call.query.get("strict") or ["false"])[-1].lower() in {"1", "true", "yes"}
    return call.sim.verify(int(call.args["flow_id"]), strict=strict)


def _logs(call: _Call) -> Reply:
    tail = int(_query_number(call.query, "tail", 100, low=0, high=LOG_LINES_KEPT))
    return Reply(HTTPStatus.OK, "".join(line + "\n" for line in call.sim.logs(tail)), "text/plain; charset=utf-8")


def _inject(call: _Call) -> Reply:
    body = call.body()
    name = body.get("name")
    params = body.get("params") or {}
    if not isinstance(name, str) or not isinstance(params, dict):
        raise _BadRequest(f'inject with {{"name": NAME, "params": {{...}}}}; valid names: {", ".join(INCIDENT_NAMES)}')
    return call.sim.inject(name, params)


_ROUTES: Final[tuple[tuple[str, re.Pattern[str], Callable[[_Call], Reply]], ...]] = (
    ("GET", re.compile(r"/health"), lambda c: c.sim.health()),
    ("GET", re.compile(r"/health/db"), lambda c: c.sim.health_db()),
    ("GET", re.compile(r"/health/models/(?P<provider>[^/]+)"), lambda c: c.sim.health_model(c.args["provider"])),
    ("GET", re.compile(r"/api/v1/repos/(?P<repo>[^/]+)/config"), lambda c: c.sim.repo_config(c.args["repo"])),
    ("POST", re.compile(r"/api/v1/flows"), lambda c: c.sim.run_flow(c.body())),
    ("POST", re.compile(r"/api/v1/flows/(?P<flow_id>\d+)/verify"), _verify),
    (
        "GET",
        re.compile(r"/api/v1/stats"),
        lambda c: c.sim.stats(_query_number(c.query, "window_s", SIGNAL_WINDOW_S, low=1, high=30 * 86400)),
    ),
    ("GET", re.compile(r"/api/v1/signals"), lambda c: Reply(HTTPStatus.OK, c.sim.signals())),
    ("GET", re.compile(r"/metrics"), lambda c: Reply(HTTPStatus.OK, c.sim.metrics_text(), CONTENT_TYPE_LATEST)),
    ("GET", re.compile(r"/logs"), _logs),
    ("GET", re.compile(r"/admin/incidents"), lambda c: c.sim.incidents()),
    ("POST", re.compile(r"/admin/incidents"), _inject),
    ("DELETE", re.compile(r"/admin/incidents"), lambda c: c.sim.clear_incidents()),
    ("DELETE", re.compile(r"/admin/incidents/(?P<name>[^/]+)"), lambda c: c.sim.clear_incidents(c.args["name"])),
)
"""Method, path, endpoint. Anything else is a JSON 404 (or 405 for a known path)."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "flowengine-simulator/1"
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        """Access logs are not FlowEngine's log; ``/logs`` carries what the runbook greps."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body(self) -> dict[str, object]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise _BadRequest(f"request body of {length} bytes is over the {MAX_BODY_BYTES} byte limit")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise _BadRequest(f"request body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise _BadRequest("request body must be a JSON object")
        return data

    def _dispatch(self, method: str) -> None:
        sim = self.server.simulator
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query)
        try:
            reply = self._route(sim, method, path, query)
        except _BadRequest as exc:
            reply = Reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except TaskDBUnavailable as exc:
            reply = Reply(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable", "reason": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a bug in one request must not take the simulator down
            sim.log("ERROR", f"{method} {path} failed: {type(exc).__name__}: {_first_line(exc)}")
            reply = Reply(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"status": "error", "error": f"{type(exc).__name__}: {_first_line(exc)}"},
            )
        self._send(reply)

    def _route(self, sim: Simulator, method: str, path: str, query: Mapping[str, list[str]]) -> Reply:
        allowed: list[str] = []
        for route_method, pattern, endpoint in _ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            args = {key: unquote(value) for key, value in match.groupdict().items()}
            return endpoint(_Call(sim, args, query, self._body))
        if allowed:
            return Reply(
                HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{method} {path}: allowed {', '.join(sorted(allowed))}"}
            )
        return Reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {method} {path}"})

    def _send(self, reply: Reply) -> None:
        if isinstance(reply.body, bytes):
            payload = reply.body
        elif isinstance(reply.body, str):
            payload = reply.body.encode()
        else:
            payload = json.dumps(reply.body, default=str).encode()
        try:
            self.send_response(int(reply.status))
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a probe with a short timeout); nothing to tell it
