"""The one wait primitive: poll a check until it holds or a deadline passes.

Nothing in the drill sleeps to "let things settle"; it waits for a named condition,
with a deadline, and a timeout says what was awaited, for how long, what was last
seen and what to try next.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Literal, TypeVar, cast, overload

from rollback_drill.errors import RetryableError, WaitTimeout
from rollback_drill.timing.clock import Clock, Sleeper, SystemClock

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

REPR_LIMIT = 300
"""Characters of the last value or error quoted in a timeout message."""


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 3] + "..."


@overload
def wait_until(
    check: Callable[[], bool],
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
    check: Callable[[], T | None],
    *,
    timeout_s: float,
    describe: str,
    interval_s: float = ...,
    clock: Clock | None = ...,
    sleep: Callable[[float], None] | None = ...,
    hint: str = ...,
) -> T: ...


def wait_until(
    check: Callable[[], T | bool | None],
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
    if not math.isfinite(timeout_s) or timeout_s < 0:
        raise ValueError(f"wait_until({describe!r}): timeout_s must be a finite number >= 0, got {timeout_s!r}")
    if not math.isfinite(interval_s) or interval_s <= 0:
        raise ValueError(f"wait_until({describe!r}): interval_s must be a finite number > 0, got {interval_s!r}")
    the_clock: Clock = clock if clock is not None else SystemClock()
    if sleep is None:
        sleep = the_clock.sleep if isinstance(the_clock, Sleeper) else time.sleep

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
                return cast("T", value)
            last_error = None
            last_seen = f"value {_short_repr(value)}"
        now = the_clock.monotonic()
        remaining = deadline - now
        if remaining <= 0:
            message = (
                f"timed out waiting for {describe}: {now - start:.1f} s elapsed (timeout {timeout_s:g} s, "
                f"{checks} checks); last seen: {last_seen}"
            )
            if hint:
                message += f"; hint: {hint}"
            raise WaitTimeout(message) from last_error
        sleep(min(interval_s, remaining))
