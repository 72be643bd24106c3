"""FlowEngine's log as the simulator writes it: ``<RFC 3339> <LEVEL> <message>``, redacted, the last lines kept.

``/logs`` serves it (the simulator's ``kubectl logs``); the runbook greps its ERROR and CRITICAL lines.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal

from rollback_drill.evidence.redact import redact_text

if TYPE_CHECKING:
    from datetime import datetime

    from rollback_drill.timing.clock import Clock

LOG_LINES_KEPT: Final = 10_000

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
Log = Callable[[LogLevel, str], None]
"""Where a room of the simulator writes a log line."""


def rfc3339(dt: datetime) -> str:
    """FlowEngine's timestamps: milliseconds, ``Z`` for UTC."""
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def first_line(exc: BaseException) -> str:
    """The first line of an error, redacted: what a log line or an answer quotes of it."""
    text = str(exc).strip()
    return redact_text(text.splitlines()[0] if text else type(exc).__name__)


class ServiceLog:
    """The last ``LOG_LINES_KEPT`` lines, thread-safe; each line is also handed to ``sink`` (stderr, a CRI file)."""

    def __init__(self, clock: Clock, sink: Callable[[str], None] | None = None) -> None:
        self._clock = clock
        self._sink = sink
        self._lock = threading.Lock()
        self._lines: deque[str] = deque(maxlen=LOG_LINES_KEPT)

    def write(self, level: LogLevel, message: str) -> None:
        """Append ``<RFC3339> <LEVEL> <message>`` (redacted)."""
        line = f"{rfc3339(self._clock.wall())} {level} {redact_text(message)}"
        with self._lock:
            self._lines.append(line)
        if self._sink is not None:
            self._sink(line)

    def tail(self, count: int = 100) -> list[str]:
        """The last ``count`` lines, oldest first."""
        with self._lock:
            return list(self._lines)[-count:] if count > 0 else []
