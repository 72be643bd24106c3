"""Clocks: the system's, and a fake one that tests advance by hand.

Durations are always taken from ``monotonic()``; ``wall()`` only stamps records for
people (evidence, timelines). ``FakeClock`` is a public testing helper, in the spirit of
``structlog.testing``: timing code takes a ``Clock`` so budget logic is tested without
waiting.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

DEFAULT_FAKE_START = datetime(2025, 11, 17, 9, 0, tzinfo=UTC)
"""The pre-Phase 6 drill date of the runbook; any aware instant would do."""


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences mean anything."""
        ...

    def wall(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


@runtime_checkable
class Sleeper(Protocol):
    """A clock that can also wait; ``wait_until`` uses it when no ``sleep`` is given."""

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class FakeClock:
    """A clock that moves only when told to; ``sleep`` advances it instead of waiting.

    Thread-safe, so a test can advance it while a probe thread reads it.
    """

    def __init__(self, start_wall: datetime = DEFAULT_FAKE_START, start_monotonic: float = 1000.0) -> None:
        if start_wall.tzinfo is None or start_wall.utcoffset() is None:
            raise ValueError(f"FakeClock needs a timezone-aware start_wall, got naive {start_wall.isoformat()}")
        self._start_wall = start_wall.astimezone(UTC)
        self._start_monotonic = start_monotonic
        self._elapsed = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._start_monotonic + self._elapsed

    def wall(self) -> datetime:
        with self._lock:
            return self._start_wall + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a monotonic clock only moves forward by a finite amount; got advance({seconds!r})")
        with self._lock:
            self._elapsed += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)
