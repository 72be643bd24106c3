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

``Simulator`` composes the rooms, one concern each, and owns their lifecycle:

- ``scope``: what the available pods serve, and since when (pure);
- ``domain``: FlowEngine's rules for flows, verification, health, stats and signals (pure);
- ``store``: every statement on FlowEngine's tables in TaskDB, over ``connections``;
  ``shared_injections``: the pods' shared injections;
- ``faults``: what an injected incident does; ``incidents``/``injection``/``injection_state``: the catalogue and state;
- ``metrics``: the Prometheus exposition; ``log``: the log ``/logs`` serves;
- ``api``: each endpoint's answer; ``server``: HTTP, with FlowEngine's contract and the simulator's
  private endpoints in two route tables.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Self

from rollback_drill.errors import InputError
from rollback_drill.evidence.redact import add_secret, dsn_password
from rollback_drill.flowengine.api import FlowEngineAPI
from rollback_drill.flowengine.connections import ConnectionPool
from rollback_drill.flowengine.domain import SharedRandom
from rollback_drill.flowengine.injection_state import InjectionState
from rollback_drill.flowengine.log import LogLevel, ServiceLog
from rollback_drill.flowengine.metrics import FlowMetrics
from rollback_drill.flowengine.scope import (
    NOT_ALLOWLISTED_REASON,
    RESTRICTED_REASON,
    AllowlistSource,
    AllowlistView,
    ServedScope,
)
from rollback_drill.flowengine.server import HTTPService, listen_host
from rollback_drill.flowengine.shared_injections import TaskDBInjectionStore, clear_shared_injections
from rollback_drill.flowengine.store import FlowStore
from rollback_drill.timing.clock import Clock, SystemClock

if TYPE_CHECKING:
    import random
    from collections.abc import Callable
    from pathlib import Path

    from prometheus_client import CollectorRegistry

__all__ = [
    "NOT_ALLOWLISTED_REASON",
    "RESTRICTED_REASON",
    "AllowlistSource",
    "AllowlistView",
    "ServedScope",
    "Simulator",
    "clear_shared_injections",
]


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
        host = listen_host(host, in_pod=in_pod)
        if flow_latency_s < 0:
            raise InputError(f"flow_latency_s must be >= 0, got {flow_latency_s!r}")
        password = dsn_password(taskdb_dsn)
        if password:
            add_secret(password)
        self.pilot_repo = pilot_repo
        self.flow_latency_s = flow_latency_s
        self.accept_injection = accept_injection
        self.in_pod = in_pod
        self._host = "127.0.0.1" if host == "localhost" else host
        self._port = port
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._pool = ConnectionPool(taskdb_dsn)
        self._observe_interval_s = observe_interval_s
        self._log = ServiceLog(self._clock, log_sink)
        self._metrics = FlowMetrics()
        self.injections = InjectionState(
            pilot_repo, state_file, TaskDBInjectionStore(self._pool) if shared_injections else None
        )
        self._api = FlowEngineAPI(
            pilot=pilot_repo,
            allowlist_source=allowlist_source,
            store=FlowStore(self._pool),
            injections=self.injections,
            metrics=self._metrics,
            log=self._log,
            clock=self._clock,
            rng=SharedRandom(rng),
            flow_latency_s=flow_latency_s,
            accept_injection=accept_injection,
        )
        self._http: HTTPService | None = None
        self._observer: threading.Thread | None = None

    @property
    def registry(self) -> CollectorRegistry:
        """The Prometheus registry ``/metrics`` exposes."""
        return self._metrics.registry

    @property
    def port(self) -> int:
        if self._http is None:
            raise InputError("the simulator is not started; call start() first")
        return self._http.port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.in_pod else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> str:
        """Load the state file, bind, serve on a background thread, and return the base URL."""
        if self._http is not None:
            raise InputError("the simulator is already started")
        loaded = self.injections.load(now_mono=self._clock.monotonic(), now_wall=self._clock.wall())
        self._api.faults.refresh()  # a pod that starts late serves what the others already serve
        self._http = HTTPService(self._api, self._host, self._port)
        self._api.observe()
        self._http.start()
        if self._observe_interval_s:
            self._observer = threading.Thread(target=self._observe_loop, name="flowengine-observer", daemon=True)
            self._observer.start()
        self.log("INFO", f"flowengine simulator listening on {self.url} (pilot repo {self.pilot_repo})")
        if loaded:
            self.log(
                "INFO",
                f"restored {loaded} active injection(s) from the state file: {', '.join(self.injections.names())}",
            )
        return self.url

    def stop(self) -> None:
        """Stop serving: in-flight flows end early, threads are joined, connections closed."""
        self._api.stopping.set()
        if self._http is not None:
            self._http.stop()
        if self._observer is not None:
            self._observer.join(timeout=5)
            self._observer = None
        self._pool.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _observe_loop(self) -> None:
        interval = self._observe_interval_s or 0.5
        while not self._api.stopping.wait(interval):
            self._api.faults.refresh()
            self._api.observe()

    def log(self, level: LogLevel, message: str) -> None:
        """Append ``<RFC3339> <LEVEL> <message>`` (redacted) to the log that ``/logs`` serves."""
        self._log.write(level, message)

    def logs(self, tail: int = 100) -> list[str]:
        return self._log.tail(tail)
