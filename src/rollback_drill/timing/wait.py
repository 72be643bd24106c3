"""The one wait primitive: poll a check until it holds or a deadline passes.

Nothing in the drill sleeps to "let things settle"; it waits for a named condition,
with a deadline, and a timeout says what was awaited, for how long, what was last
seen and what to try next. Its few variants live here too, all on an injectable
clock: ``poll_until`` (the deadline is an answer, not an error), ``hold`` (a window
of the runbook that must pass) and ``Deadline`` (work repeated until an instant).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeVar, cast, overload

from rollback_drill.errors import RetryableError, WaitTimeout
from rollback_drill.timing.clock import Clock, Sleeper, SystemClock

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

REPR_LIMIT = 300
"""Characters of the last value or error quoted in a timeout message."""

HOLD_INTERVAL_S = 1.0
"""Longest single sleep while a window is held: the deadline is read from the clock at least this often."""


@dataclass(frozen=True)
class NotYet:
    """A check's "not yet", with what it saw: falsy, so waits go on, and quoted as the last value on a timeout.

    For checks whose "not yet" has a reason worth reporting (``HTTP 503``, a rollout's
    ``2 of 3 updated replicas are available``) where ``None`` would say nothing.
    """

    seen: str

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return self.seen


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 3] + "..."


@overload
def wait_until(
    check: Callable[[], bool | NotYet],
    *,
    timeout_s: float,
    describe: str,
    interval_s: float = ...,
    clock: Clock | None = ...,
    sleep: Callable[[float], None] | None = ...,
    hint: str = ...,
) -> Literal[True]: ...


@overload
def wait_until(
    check: Callable[[], T | NotYet | None],
    *,
    timeout_s: float,
    describe: str,
    interval_s: float = ...,
    clock: Clock | None = ...,
    sleep: Callable[[float], None] | None = ...,
    hint: str = ...,
) -> T: ...


def wait_until(
    check: Callable[[], T | bool | NotYet | None],
    *,
    timeout_s: float,
    describe: str,
    interval_s: float = 0.2,
    clock: Clock | None = None,
    sleep: Callable[[float], None] | None = None,
    hint: str = "",
) -> T:
    """Call ``check`` until it returns something truthy, and return that.

    ``check`` runs at least once, and once more at the deadline. ``None``, ``False`` and
    other falsy values mean "not yet", as does a ``RetryableError`` (the last one is kept
    for the timeout message and chained as its cause); any other exception propagates at
    once. The sleep between checks never reaches past the deadline.

    ``sleep`` defaults to the clock's own ``sleep`` when it has one (``FakeClock`` then
    advances instead of waiting), else ``time.sleep``. A custom fake clock without
    ``sleep`` needs a ``sleep`` that advances it, or the wait never ends.

    Raises ``WaitTimeout`` when the deadline passes.
    """
    outcome = _poll(check, timeout_s=timeout_s, describe=describe, interval_s=interval_s, clock=clock, sleep=sleep)
    if outcome.value is not None:
        return outcome.value
    message = (
        f"timed out waiting for {describe}: {outcome.elapsed_s:.1f} s elapsed (timeout {timeout_s:g} s, "
        f"{outcome.checks} checks); last seen: {outcome.last_seen}"
    )
    if hint:
        message += f"; hint: {hint}"
    raise WaitTimeout(message) from outcome.last_error


@overload
def poll_until(
    check: Callable[[], bool | NotYet],
    *,
    timeout_s: float,
    describe: str,
    interval_s: float = ...,
    clock: Clock | None = ...,
    sleep: Callable[[float], None] | None = ...,
) -> Literal[True] | None: ...


@overload
def poll_until(
    check: Callable[[], T | NotYet | None],
    *,
    timeout_s: float,
    describe: str,
    interval_s: float = ...,
    clock: Clock | None = ...,
    sleep: Callable[[float], None] | None = ...,
) -> T | None: ...


def poll_until(
    check: Callable[[], T | bool | NotYet | None],
    *,
    timeout_s: float,
    describe: str,
    interval_s: float = 0.2,
    clock: Clock | None = None,
    sleep: Callable[[float], None] | None = None,
) -> T | None:
    """``wait_until`` for a deadline that is an answer, not a failure: the truthy value, or None once it passes.

    For a grace period ("SIGTERM, wait up to 10 s, then SIGKILL"), where running out of
    time decides what to do next rather than failing the drill.
    """
    return _poll(check, timeout_s=timeout_s, describe=describe, interval_s=interval_s, clock=clock, sleep=sleep).value


def hold(
    seconds: float,
    *,
    describe: str,
    clock: Clock | None = None,
    sleep: Callable[[float], None] | None = None,
    interval_s: float = HOLD_INTERVAL_S,
) -> float:
    """Let a waiting window of ``seconds`` pass on ``clock`` (a triage, a monitoring window); return the time held.

    It is the procedure, not a settle: nothing is checked, the time itself is the point.
    The window is slept in pieces of at most ``interval_s`` against the clock's deadline,
    so a ``FakeClock`` drives it at once in tests, and in a real run Ctrl-C (SIGINT,
    whose handler raises ``KeyboardInterrupt`` in the main thread) ends it at once.
    A negative ``seconds`` holds nothing.
    """
    if not math.isfinite(seconds):
        raise ValueError(f"hold({describe!r}): seconds must be a finite number, got {seconds!r}")
    if not math.isfinite(interval_s) or interval_s <= 0:
        raise ValueError(f"hold({describe!r}): interval_s must be a finite number > 0, got {interval_s!r}")
    the_clock, the_sleep = _clock_and_sleep(clock, sleep)
    start = the_clock.monotonic()
    end = start + max(0.0, seconds)
    while (remaining := end - the_clock.monotonic()) > 0:
        the_sleep(min(interval_s, remaining))
    return the_clock.monotonic() - start


class Deadline:
    """A window that closes at a fixed instant on a clock: for work that repeats until then (a load, a soak).

    A wait for a condition is ``wait_until``; this is for loops whose work is the point
    and whose end is only a time, so they read the same injectable clock.
    """

    def __init__(self, seconds: float, clock: Clock | None = None) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a deadline needs a finite number of seconds >= 0, got {seconds!r}")
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.start = self.clock.monotonic()
        self.end = self.start + seconds

    def remaining_s(self) -> float:
        return max(0.0, self.end - self.clock.monotonic())

    def passed(self) -> bool:
        return self.clock.monotonic() >= self.end

    def elapsed_s(self) -> float:
        return self.clock.monotonic() - self.start


@dataclass(frozen=True)
class _Outcome(Generic[T]):
    value: T | None
    elapsed_s: float
    checks: int
    last_seen: str
    last_error: RetryableError | None


def _clock_and_sleep(
    clock: Clock | None, sleep: Callable[[float], None] | None
) -> tuple[Clock, Callable[[float], None]]:
    the_clock: Clock = clock if clock is not None else SystemClock()
    if sleep is None:
        sleep = the_clock.sleep if isinstance(the_clock, Sleeper) else time.sleep
    return the_clock, sleep


def _poll(
    check: Callable[[], T | bool | NotYet | None],
    *,
    timeout_s: float,
    describe: str,
    interval_s: float,
    clock: Clock | None,
    sleep: Callable[[float], None] | None,
) -> _Outcome[T]:
    if not math.isfinite(timeout_s) or timeout_s < 0:
        raise ValueError(f"wait_until({describe!r}): timeout_s must be a finite number >= 0, got {timeout_s!r}")
    if not math.isfinite(interval_s) or interval_s <= 0:
        raise ValueError(f"wait_until({describe!r}): interval_s must be a finite number > 0, got {interval_s!r}")
    the_clock, the_sleep = _clock_and_sleep(clock, sleep)

    start = the_clock.monotonic()
    deadline = start + timeout_s
    checks = 0
    last_seen = "nothing (check never returned)"
    last_error: RetryableError | None = None
    while True:
        checks += 1
        try:
            value = check()
        except RetryableError as exc:
            last_error = exc
            last_seen = f"error {_short_repr(exc)}"
        else:
            if value:
                # Truthy rules out None; a bool can only be True here, which is T when check returns bool.
                return _Outcome(cast("T", value), the_clock.monotonic() - start, checks, last_seen, None)
            last_error = None
            last_seen = f"value {_short_repr(value)}"
        now = the_clock.monotonic()
        remaining = deadline - now
        if remaining <= 0:
            return _Outcome(None, now - start, checks, last_seen, last_error)
        the_sleep(min(interval_s, remaining))
