"""A stopwatch on an injectable clock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from rollback_drill.timing.clock import Clock, SystemClock

if TYPE_CHECKING:
    from datetime import datetime
    from types import TracebackType


class Stopwatch:
    """Times one interval: ``start()`` ... ``stop()``, or ``with Stopwatch(clock) as sw: ...``."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._started: float | None = None
        self._stopped: float | None = None
        self.started_at: datetime | None = None
        """Wall time of ``start()``, for records people read."""

    @property
    def running(self) -> bool:
        return self._started is not None and self._stopped is None

    def start(self) -> Self:
        if self._started is not None:
            raise RuntimeError("this Stopwatch was already started; use a new one for each interval")
        self.started_at = self._clock.wall()
        self._started = self._clock.monotonic()
        return self

    def stop(self) -> float:
        if self._started is None:
            raise RuntimeError("Stopwatch.stop() before start()")
        if self._stopped is not None:
            raise RuntimeError("Stopwatch.stop() called twice")
        self._stopped = self._clock.monotonic()
        return self._stopped - self._started

    @property
    def elapsed_s(self) -> float:
        """Seconds so far while running, the final interval once stopped, 0 before the start."""
        if self._started is None:
            return 0.0
        end = self._stopped if self._stopped is not None else self._clock.monotonic()
        return end - self._started

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
