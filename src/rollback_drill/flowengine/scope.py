"""What FlowEngine serves: the repos of the available pods' ``REPO_ALLOWLIST``, and since when.

The scope follows the pods, not the Deployment: the allowlist source reports the pods that are
available right now and the union of their ``REPO_ALLOWLIST``; with no pod available nothing is
served. ``ServiceHistory`` remembers what the answers need from earlier observations: when each
repo came (back) into scope, since when no pod is available, since when P95 is above 150 s.
No I/O here; the simulator feeds it observations and the clock's readings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

RESTRICTED_REASON: Final = "Restricted to pilot scope"
"""What a refused expanded repo is told (the runbook's Step 1 verification)."""
NOT_ALLOWLISTED_REASON: Final = "Not in REPO_ALLOWLIST"
"""What the pilot is told when even it is missing from the allowlist (never by the simulator's own choice)."""
P95_THRESHOLD_S: Final = 150.0
"""The runbook's SLO: P95 flow latency above this for more than 2 hours is a P2."""


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
class Scope:
    """One observation: the view (None when the source failed), the repos served, and why it could not tell."""

    view: ServedScope | None
    served: frozenset[str]
    error: str | None = None

    @property
    def available(self) -> bool:
        return self.view is not None and self.view.available_pods > 0

    @property
    def listed(self) -> frozenset[str]:
        """The allowlist of the pods, served or not (an injection aims at the expanded repos listed)."""
        return self.view.repos if self.view is not None else frozenset()


def scope_of(view: ServedScope) -> Scope:
    """The repos served: the pods' allowlist while at least one pod is available, else none."""
    return Scope(view, view.repos if view.available_pods > 0 else frozenset())


def unavailable_reason(scope: Scope) -> str:
    """Why every flow, config and health request answers 503."""
    return scope.error or "no flowengine pod is available (0 Ready)"


def refusal_reason(repo: str, *, pilot: str) -> str:
    """What a repo outside the served scope is told."""
    return NOT_ALLOWLISTED_REASON if repo == pilot else RESTRICTED_REASON


class ServiceHistory:
    """What earlier observations tell the signals, thread-safe.

    - A repo's signal hour starts when it is served again, so re-enablement measures recurrence,
      not the incident that caused the rollback. Repos served at the first observation have no start.
    - The Deployment is unavailable since the first observation with no available pod.
    - P95 is above the threshold since the first signal that saw it there.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._served: frozenset[str] = frozenset()
        self._served_since: dict[str, datetime | None] = {}
        self._observed_once = False
        self._down_since_mono: float | None = None
        self._p95_above_since_mono: float | None = None

    def observe(self, scope: Scope, *, now_mono: float, now_wall: datetime) -> None:
        """Take one observation of what the pods serve."""
        if scope.view is None:
            return  # the source could not tell: nothing is known to have changed
        with self._lock:
            for repo in scope.served - self._served:
                self._served_since[repo] = now_wall if self._observed_once else None
            self._served = scope.served
            self._observed_once = True
            if scope.view.available_pods <= 0:
                if self._down_since_mono is None:
                    self._down_since_mono = now_mono
            else:
                self._down_since_mono = None

    def signal_windows(self, repos: Sequence[str], *, hour_ago: datetime) -> list[datetime]:
        """Where each repo's signal window starts: an hour ago, or when it was served again if that is later."""
        with self._lock:
            return [max(hour_ago, self._served_since.get(repo) or hour_ago) for repo in repos]

    def count_from_before(self, repos: set[str]) -> None:
        """These repos' hour counts from before now (an injection backdated their recent history)."""
        with self._lock:
            for repo in repos:
                self._served_since[repo] = None

    def unavailable_for_s(self, now_mono: float) -> float:
        """Seconds since no pod is available; 0 while one is."""
        with self._lock:
            return now_mono - self._down_since_mono if self._down_since_mono is not None else 0.0

    def p95_above_for_s(self, p95_s: float, now_mono: float) -> float:
        """Seconds P95 has been above the threshold, given the P95 seen now; 0 (and forgotten) when it is not."""
        with self._lock:
            if p95_s > P95_THRESHOLD_S:
                if self._p95_above_since_mono is None:
                    self._p95_above_since_mono = now_mono
                return now_mono - self._p95_above_since_mono
            self._p95_above_since_mono = None
            return 0.0

    def p95_above_since(self, since_mono: float) -> None:
        """P95 is above the threshold since ``since_mono`` (an injection backdates it)."""
        with self._lock:
            self._p95_above_since_mono = since_mono
