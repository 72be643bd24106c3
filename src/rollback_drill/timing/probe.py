"""Background probes, and the accounting the drill targets need from their samples.

A ``Probe`` calls one function at a fixed rate on a daemon thread and keeps every
answer. The caller decides what "ok" means: for the pilot probe, the flow was served;
for the expanded-repo probe, served before the rollout, or the clean refusal
"Restricted to pilot scope" after it. An exception from the call is recorded as an
``error`` sample, never swallowed, and never ends the thread.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from rollback_drill.errors import WaitTimeout
from rollback_drill.timing.clock import Clock, SystemClock

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from datetime import datetime
    from types import TracebackType

DETAIL_LIMIT = 300
"""Characters of an exception's text kept in an ``error`` outcome."""


@dataclass(frozen=True)
class ProbeOutcome:
    """One answer: whether it counts as clean, and what kind of answer it was."""

    ok: bool
    kind: str
    """``served``, ``refused``, ``error``, ``unavailable``, ..."""
    detail: str = ""


@dataclass(frozen=True)
class ProbeSample:
    t_monotonic: float
    """When the call started, on the probe's clock."""
    wall: datetime
    outcome: ProbeOutcome
    latency_s: float


def _error_outcome(exc: BaseException) -> ProbeOutcome:
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > DETAIL_LIMIT:
        text = text[: DETAIL_LIMIT - 3] + "..."
    return ProbeOutcome(ok=False, kind="error", detail=text)


class Probe:
    """Calls ``call`` ``rate_hz`` times a second on a daemon thread, from ``start()`` to ``stop()``.

    Pacing follows fixed deadlines on the real monotonic clock (a slow answer does not
    shift the schedule; missed slots are skipped, not burst). ``clock`` only stamps the
    samples. The pause between calls is an ``Event.wait``, so ``stop()`` is immediate.
    """

    def __init__(
        self,
        name: str,
        call: Callable[[], ProbeOutcome],
        *,
        rate_hz: float,
        clock: Clock | None = None,
        max_in_flight: int = 1,
    ) -> None:
        if not math.isfinite(rate_hz) or rate_hz <= 0:
            raise ValueError(f"probe {name!r}: rate_hz must be a finite number > 0, got {rate_hz!r}")
        if max_in_flight < 1:
            raise ValueError(f"probe {name!r}: max_in_flight must be at least 1, got {max_in_flight!r}")
        self.name = name
        self.rate_hz = rate_hz
        self.max_in_flight = max_in_flight
        """With more than 1, a slot's call starts on time even while earlier ones are still waiting for an
        answer, so a slow answer does not lower the rate; a slot is skipped only when all are busy."""
        self.skipped = 0
        self._call = call
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._samples: list[ProbeSample] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"probe {self.name!r} was already started; a probe runs once")
        self._thread = threading.Thread(target=self._run, name=f"probe-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop and join the thread; the call in flight, if any, is allowed to finish."""
        self._stopping.set()
        if self._thread is None:
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise WaitTimeout(
                f"probe {self.name!r} did not stop within {timeout_s:g} s: its call is still running; "
                "give the probed call its own timeout, shorter than the probe period"
            )

    def samples(self) -> list[ProbeSample]:
        with self._lock:
            return list(self._samples)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _probe_once(self) -> None:
        wall = self._clock.wall()
        t0 = self._clock.monotonic()
        try:
            outcome = self._call()
        except Exception as exc:  # noqa: BLE001 any failure of the probed call is a failed request, recorded below
            outcome = _error_outcome(exc)
        if not isinstance(outcome, ProbeOutcome):
            detail = f"probe call returned {outcome!r}, not a ProbeOutcome"
            outcome = ProbeOutcome(ok=False, kind="error", detail=detail)
        sample = ProbeSample(t0, wall, outcome, self._clock.monotonic() - t0)
        with self._lock:
            self._samples.append(sample)

    def _run(self) -> None:
        if self.max_in_flight > 1:
            self._run_overlapping()
            return
        period = 1.0 / self.rate_hz
        next_due = time.monotonic()
        while not self._stopping.is_set():
            self._probe_once()
            next_due += period
            now = time.monotonic()
            if next_due < now:  # fell behind: skip the missed slots instead of firing them back to back
                next_due += math.ceil((now - next_due) / period) * period
            self._stopping.wait(next_due - now)

    def _run_overlapping(self) -> None:
        period = 1.0 / self.rate_hz
        free = threading.BoundedSemaphore(self.max_in_flight)

        def one() -> None:
            try:
                self._probe_once()
            finally:
                free.release()

        next_due = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix=f"probe-{self.name}") as pool:
            while not self._stopping.is_set():
                if free.acquire(blocking=False):
                    pool.submit(one)
                else:
                    self.skipped += 1
                next_due += period
                now = time.monotonic()
                if next_due < now:
                    next_due += math.ceil((now - next_due) / period) * period
                self._stopping.wait(next_due - now)


def _ordered(samples: Iterable[ProbeSample]) -> list[ProbeSample]:
    return sorted(samples, key=lambda s: s.t_monotonic)


def samples_between(samples: Iterable[ProbeSample], start: float | None, end: float | None) -> list[ProbeSample]:
    """The samples taken in ``[start, end]`` (monotonic seconds); ``None`` leaves that side open."""
    return [
        s
        for s in _ordered(samples)
        if (start is None or s.t_monotonic >= start) and (end is None or s.t_monotonic <= end)
    ]


def failed_requests(samples: Iterable[ProbeSample]) -> int:
    """How many answers were not ok."""
    return sum(1 for s in samples if not s.outcome.ok)


def downtime_s(samples: Iterable[ProbeSample]) -> float:
    """Seconds of unclean answers.

    Each gap between consecutive samples counts when the earlier sample was not ok;
    nothing is counted after the last sample, since nothing was observed there.
    """
    pairs = itertools.pairwise(_ordered(samples))
    return sum((later.t_monotonic - earlier.t_monotonic for earlier, later in pairs if not earlier.outcome.ok), 0.0)


def achieved_rate_hz(samples: Sequence[ProbeSample]) -> float:
    """Samples per second between the first and the last sample; 0 with fewer than two."""
    ordered = _ordered(samples)
    if len(ordered) < 2:
        return 0.0
    span = ordered[-1].t_monotonic - ordered[0].t_monotonic
    return (len(ordered) - 1) / span if span > 0 else 0.0


def first_ok_after(samples: Iterable[ProbeSample], t: float) -> float | None:
    """The instant (monotonic seconds) of the first ok sample at or after ``t``, or ``None``."""
    return next((s.t_monotonic for s in _ordered(samples) if s.t_monotonic >= t and s.outcome.ok), None)


@dataclass(frozen=True)
class Switchover:
    """A probe's answers from one instant on, split at the first refusal: a repo leaving the allowlist."""

    before: tuple[ProbeSample, ...]
    """The answers before the first refusal."""
    after: tuple[ProbeSample, ...]
    """The first refusal and every answer after it; empty when nothing was refused."""

    @property
    def refused_at(self) -> float | None:
        """When (monotonic seconds) the first refusal was asked for, or ``None``."""
        return self.after[0].t_monotonic if self.after else None


def split_at_first_refusal(samples: Iterable[ProbeSample], since: float) -> Switchover:
    """The samples taken at or after ``since``, split where the first ``refused`` answer begins."""
    taken = samples_between(samples, since, None)
    first = next((i for i, s in enumerate(taken) if s.outcome.kind == "refused"), len(taken))
    return Switchover(tuple(taken[:first]), tuple(taken[first:]))
