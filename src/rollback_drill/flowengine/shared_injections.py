"""Injections shared by the pods of one Deployment, through TaskDB.

With ``--shared-injections`` every simulator pod keeps its ``InjectionState`` in one row of
``flowengine_sim.injections``, a schema of the simulator's own beside FlowEngine's tables: an
incident injected through one pod of the Service reaches every pod, as it would reach every
replica of the real FlowEngine.
"""

from __future__ import annotations

import json
from typing import Final

import psycopg

from rollback_drill.flowengine.connections import Conn, ConnectionPool

INJECTIONS_SCHEMA: Final = "flowengine_sim"
"""Where the pods of a Deployment share their injections: a schema of its own, apart from FlowEngine's tables."""


class TaskDBInjectionStore:
    """The injections of every simulator pod, in one row of ``flowengine_sim.injections`` in TaskDB."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._ready = False

    def _ensure(self, conn: Conn) -> None:
        if self._ready:
            return
        with conn.transaction():
            # The pods start together: one of them creates the table, the others wait for it.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('flowengine_sim.injections'))")
            conn.execute("CREATE SCHEMA IF NOT EXISTS flowengine_sim")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS flowengine_sim.injections ("
                "id smallint PRIMARY KEY CHECK (id = 1), version bigint NOT NULL, payload jsonb NOT NULL)"
            )
            conn.execute("INSERT INTO flowengine_sim.injections VALUES (1, 0, '{}') ON CONFLICT (id) DO NOTHING")
        self._ready = True

    def write(self, payload: dict[str, object]) -> int:
        with self._pool.connection() as conn:
            self._ensure(conn)
            row = conn.execute(
                "UPDATE flowengine_sim.injections SET version = version + 1, payload = %s "
                "WHERE id = 1 RETURNING version",
                (json.dumps(payload),),
            ).fetchone()
        return int(row[0]) if row else 0

    def read(self) -> tuple[int, dict[str, object]]:
        try:
            with self._pool.connection() as conn:
                self._ensure(conn)
                row = conn.execute("SELECT version, payload FROM flowengine_sim.injections WHERE id = 1").fetchone()
        except psycopg.errors.UndefinedTable:
            # A restore from a dump taken before the first injection: nothing is injected.
            self._ready = False
            return 0, {}
        if row is None:
            return 0, {}
        payload = row[1] if isinstance(row[1], dict) else {}
        return int(row[0]), payload


def clear_shared_injections(conn: Conn) -> bool:
    """Forget every injection the pods share (a fresh world), even while no pod answers; True if there were any.

    The pods drop them on their next refresh (twice a second). Nothing else is touched: the flows they
    backdated go with the world's TaskDB reset.
    """
    if conn.execute("SELECT to_regclass('flowengine_sim.injections')").fetchone() in (None, (None,)):
        return False
    row = conn.execute(
        "UPDATE flowengine_sim.injections SET version = version + 1, payload = '{}' "
        "WHERE id = 1 RETURNING (SELECT payload FROM flowengine_sim.injections WHERE id = 1)"
    ).fetchone()
    before = row[0] if row else None
    return bool(isinstance(before, dict) and before.get("injections"))
