"""Connections to TaskDB for the simulator: autocommit, a statement timeout, a few kept for reuse."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Final

import psycopg

Conn = psycopg.Connection[tuple[Any, ...]]

STATEMENT_TIMEOUT_MS: Final = 10_000
"""A TaskDB statement that waits longer (behind Step 3's schema lock, say) fails the request instead of hanging it."""


class ConnectionPool:
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
