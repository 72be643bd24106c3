"""The active injections of one simulator, and the pure part of their effects.

``InjectionState`` holds them (thread-safe), keeps them in the state file and, for the pods
of one Deployment, in a shared ``InjectionStore``; it answers, without I/O, what they do to
one flow or one signal right now.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from rollback_drill.errors import InputError
from rollback_drill.flowengine.incidents import (
    BASE_SPEND_USD_PER_HOUR,
    BASELINE_KILL_RATE,
    CAUSES,
    DEFAULT_FLAKY_RATE,
    DEGRADED_KILL_RATE,
    INTERMITTENT_RATIO,
    MODEL_PROVIDERS,
    NORMAL_COST_USD,
    NORMAL_DURATION_S,
    RUNAWAY_COST_USD,
    RUNAWAY_SPEND_USD_PER_HOUR,
    SLOW_DURATION_S,
    USER_ERROR_TEMPLATE,
    IncidentError,
)
from rollback_drill.flowengine.injection import Injection

if TYPE_CHECKING:
    from pathlib import Path


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
