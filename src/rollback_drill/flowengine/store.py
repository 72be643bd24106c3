"""FlowEngine's tables in TaskDB: every statement the simulator runs on ``flows``, ``tasks``, ``repo_quotas``, ``model_routes``.

The simulator never remembers what TaskDB says: the integrity check and the schema detection
run on every flow, because Step 3 reverts or restores the schema mid-drill. Each method runs on
a pooled autocommit connection and is retried once when the connection went stale (TaskDB
restarted or restored) or Step 3 dropped a table under it; anything else becomes
``TaskDBUnavailable`` with a redacted message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from rollback_drill.flowengine.connections import Conn, ConnectionPool
from rollback_drill.flowengine.domain import FlowOutcome, RepoFailures, WindowSummary, as_float
from rollback_drill.flowengine.log import first_line

if TYPE_CHECKING:
    from datetime import datetime

    from rollback_drill.flowengine.injection import BackdatedFlow

T = TypeVar("T")


class TaskDBUnavailable(Exception):
    """TaskDB could not be reached or answered with an error; the message is already redacted."""


class NoQuotaTable(Exception):
    """TaskDB has no ``repo_quotas``: it is at the pilot's schema, which has nothing to corrupt."""


@dataclass(frozen=True)
class Schema:
    """Which Phase 6/7 objects exist; detected on every flow, because Step 3 removes them mid-drill."""

    repo_quotas: bool
    quota_checked: bool
    model_routes: bool
    provider: bool


def _detect_schema(conn: Conn) -> Schema:
    row = conn.execute(
        """
        SELECT to_regclass('repo_quotas') IS NOT NULL,
               EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_schema = current_schema() AND table_name = 'flows' AND column_name = 'quota_checked'),
               to_regclass('model_routes') IS NOT NULL,
               EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_schema = current_schema() AND table_name = 'flows' AND column_name = 'provider')
        """
    ).fetchone()
    if row is None:  # pragma: no cover - a SELECT without FROM always returns one row
        return Schema(repo_quotas=False, quota_checked=False, model_routes=False, provider=False)
    return Schema(
        repo_quotas=bool(row[0]), quota_checked=bool(row[1]), model_routes=bool(row[2]), provider=bool(row[3])
    )


def _integrity_problem(conn: Conn) -> str | None:
    """The integrity check: ``SELECT 1``, then no quota below zero while ``repo_quotas`` exists."""
    conn.execute("SELECT 1").fetchone()
    exists = conn.execute("SELECT to_regclass('repo_quotas') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    try:
        row = conn.execute("SELECT count(*) FROM repo_quotas WHERE daily_budget_usd < 0").fetchone()
    except psycopg.errors.UndefinedTable:
        return None  # dropped between the two statements: Step 3 just reverted the schema
    invalid = int(row[0]) if row else 0
    if invalid:
        return f"{invalid} repo_quotas row(s) with daily_budget_usd < 0 (constraint repo_quotas_budget_valid violated)"
    return None


def _lock_like_step_3(conn: Conn) -> None:
    """Take model_routes before flows, in the order rollback_to_pilot.sql does, so the two never deadlock."""
    exists = conn.execute("SELECT to_regclass('model_routes') IS NOT NULL").fetchone()
    if exists and exists[0]:
        conn.execute("LOCK TABLE model_routes IN ROW EXCLUSIVE MODE")


def _spend_since(conn: Conn, since: datetime) -> float:
    row = conn.execute("SELECT coalesce(sum(cost_usd), 0) FROM flows WHERE started_at >= %s", (since,)).fetchone()
    return as_float(row[0] if row else 0) or 0.0


@dataclass(frozen=True)
class RecordedFlow:
    """A flow written to TaskDB: its id, its outcome, and whether TaskDB keeps its model provider."""

    flow_id: int
    outcome: FlowOutcome
    provider_kept: bool


@dataclass(frozen=True)
class SignalReadings:
    """What the signals read from TaskDB in one go."""

    integrity_problem: str | None
    repos: list[RepoFailures]
    spend_usd: float


class FlowStore:
    """FlowEngine's flows in TaskDB, and the integrity check it runs."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def _run(self, work: Callable[[Conn], T]) -> T:
        """Run ``work`` on a pooled connection; retry once on a dropped connection or a schema change."""
        last: Exception | None = None
        for _ in range(2):
            try:
                with self._pool.connection() as conn:
                    return work(conn)
            except (psycopg.OperationalError, psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
                # A stale pooled connection (TaskDB restored or restarted) or Step 3 dropping a table mid-flow.
                last = exc
            except psycopg.Error as exc:
                raise TaskDBUnavailable(f"TaskDB error: {first_line(exc)}") from exc
        raise TaskDBUnavailable(f"TaskDB unreachable: {first_line(last) if last else 'unknown error'}") from last

    def integrity_problem(self) -> str | None:
        """What the integrity check found wrong, or None."""
        return self._run(_integrity_problem)

    def record_flow(
        self,
        *,
        repo: str,
        family: str,
        block_type: str,
        provider: str,
        started_at: datetime,
        outcome_of: Callable[[bool], FlowOutcome],
        now: Callable[[], datetime],
    ) -> RecordedFlow:
        """Write one flow and its five tasks; ``outcome_of(integrity_failed)`` decides the flow once TaskDB is read."""
        return self._run(
            lambda conn: _record_flow(
                conn,
                repo=repo,
                family=family,
                block_type=block_type,
                provider=provider,
                started_at=started_at,
                outcome_of=outcome_of,
                now=now,
            )
        )

    def flow_and_tasks(self, flow_id: int) -> tuple[tuple[Any, ...] | None, dict[str, str]]:
        """The flow's (id, repo, status, gates_passed), None if there is no such flow, and its tasks' statuses."""

        def read(conn: Conn) -> tuple[tuple[Any, ...] | None, list[tuple[Any, ...]]]:
            flow = conn.execute("SELECT id, repo, status, gates_passed FROM flows WHERE id = %s", (flow_id,)).fetchone()
            tasks = conn.execute("SELECT name, status FROM tasks WHERE flow_id = %s ORDER BY id", (flow_id,)).fetchall()
            return flow, tasks

        flow, tasks = self._run(read)
        return flow, {str(name): str(status) for name, status in tasks}

    def window(self, since: datetime) -> list[WindowSummary]:
        """Flows started since ``since``, per repo and overall (the overall row has ``repo`` None)."""
        rows = self._run(
            lambda conn: conn.execute(
                """
                SELECT repo, count(*), count(*) FILTER (WHERE status = 'failed'),
                       percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_s) FILTER (WHERE status = 'completed'),
                       percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_s) FILTER (WHERE status = 'completed')
                FROM flows
                WHERE started_at >= %s AND status IN ('completed', 'failed')
                GROUP BY GROUPING SETS ((repo), ())
                """,
                (since,),
            ).fetchall()
        )
        return [
            WindowSummary(str(repo) if repo is not None else None, int(flows), int(failed), p50, p95)
            for repo, flows, failed, p50, p95 in rows
        ]

    def signal_readings(
        self, repos: Sequence[str], windows: Sequence[datetime], *, spend_since: datetime
    ) -> SignalReadings:
        """The integrity check, each repo's flows since its window start, and the spend since ``spend_since``."""

        def query(conn: Conn) -> SignalReadings:
            problem = _integrity_problem(conn)
            rows = conn.execute(
                """
                WITH w AS (SELECT * FROM unnest(%s::text[], %s::timestamptz[]) AS w(repo, since))
                SELECT f.repo, count(*), count(*) FILTER (WHERE f.status = 'failed'),
                       mode() WITHIN GROUP (ORDER BY f.cause) FILTER (WHERE f.status = 'failed'),
                       percentile_disc(0.95) WITHIN GROUP (ORDER BY f.duration_s) FILTER (WHERE f.status = 'completed')
                FROM flows f JOIN w ON f.repo = w.repo AND f.started_at >= w.since
                WHERE f.status IN ('completed', 'failed')
                GROUP BY GROUPING SETS ((f.repo), ())
                """,
                (list(repos), list(windows)),
            ).fetchall()
            failures = [
                RepoFailures(
                    str(repo) if repo is not None else None,
                    int(flows),
                    int(failed),
                    str(cause) if cause is not None else None,
                    p95,
                )
                for repo, flows, failed, cause, p95 in rows
            ]
            return SignalReadings(problem, failures, _spend_since(conn, spend_since))

        return self._run(query)

    def spend_since(self, since: datetime) -> float:
        """What the flows started since ``since`` cost."""
        return self._run(lambda conn: _spend_since(conn, since))

    def flow_results(self, ids: list[int]) -> list[tuple[str, str, str | None]]:
        """(repo, status, cause) of these flows."""
        rows = self._run(
            lambda conn: conn.execute("SELECT repo, status, cause FROM flows WHERE id = ANY(%s)", (ids,)).fetchall()
        )
        return [(str(repo), str(status), str(cause) if cause else None) for repo, status, cause in rows]

    def insert_backdated(self, flows: Sequence[BackdatedFlow]) -> list[int]:
        """Write an injection's past; return the new flows' ids."""
        return self._run(lambda conn: _insert_backdated(conn, flows))

    def delete_flows(self, ids: list[int]) -> None:
        """Remove the flows an injection backdated (their tasks and routes go by cascade)."""

        def delete(conn: Conn) -> None:
            with conn.transaction():
                _lock_like_step_3(conn)
                conn.execute("DELETE FROM flows WHERE id = ANY(%s)", (ids,))

        self._run(delete)

    def corrupt_quotas(self, repos: list[str]) -> int:
        """``db-corruption``: drop the budget constraint and write invalid quotas. Raises ``NoQuotaTable``."""

        def corrupt(conn: Conn) -> int:
            try:
                with conn.transaction():
                    conn.execute("ALTER TABLE repo_quotas DROP CONSTRAINT IF EXISTS repo_quotas_budget_valid")
                    conn.execute(
                        """
                        INSERT INTO repo_quotas (repo, daily_budget_usd) SELECT unnest(%s::text[]), -1
                        ON CONFLICT (repo) DO UPDATE SET daily_budget_usd = -1, updated_at = now()
                        """,
                        (repos,),
                    )
            except psycopg.errors.UndefinedTable as exc:
                raise NoQuotaTable from exc
            return len(repos)

        return self._run(corrupt)


def _record_flow(
    conn: Conn,
    *,
    repo: str,
    family: str,
    block_type: str,
    provider: str,
    started_at: datetime,
    outcome_of: Callable[[bool], FlowOutcome],
    now: Callable[[], datetime],
) -> RecordedFlow:
    # Reads first, each its own autocommit statement: no lock on repo_quotas is held while flows is written,
    # so Step 3's rollback_to_pilot.sql (model_routes, flows, then repo_quotas) cannot deadlock with a flow.
    schema = _detect_schema(conn)
    integrity_failed = _integrity_problem(conn) is not None
    quota_checked = False
    if schema.repo_quotas:
        # FlowEngine reads the repo's quota before every flow while repo_quotas exists.
        with contextlib.suppress(psycopg.errors.UndefinedTable):
            conn.execute("SELECT daily_budget_usd FROM repo_quotas WHERE repo = %s", (repo,)).fetchone()
            quota_checked = True
    outcome = outcome_of(integrity_failed)
    with conn.transaction():
        _lock_like_step_3(conn)
        columns = ["repo", "family", "block_type", "status", "cause", "duration_s", "cost_usd", "gates_passed",
                   "started_at", "finished_at"]  # fmt: skip
        values: list[object] = [repo, family, block_type, outcome.status, outcome.cause, outcome.duration_s,
                                outcome.cost_usd, outcome.gates_passed, started_at, now()]  # fmt: skip
        if schema.quota_checked:
            columns.append("quota_checked")
            values.append(quota_checked)
        if schema.provider:
            columns.append("provider")
            values.append(provider)
        placeholders = ", ".join(["%s"] * len(columns))
        row = conn.execute(
            f"INSERT INTO flows ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id",  # noqa: S608 - column names are constants above
            values,
        ).fetchone()
        flow_id = int(row[0]) if row else 0
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO tasks (flow_id, name, status) VALUES (%s, %s, %s)",
                [(flow_id, gate, status) for gate, status in outcome.task_rows()],
            )
        if schema.model_routes and not outcome.failed:
            conn.execute("INSERT INTO model_routes (flow_id, provider) VALUES (%s, %s)", (flow_id, provider))
    return RecordedFlow(flow_id, outcome, provider_kept=schema.provider or schema.model_routes)


def _insert_backdated(conn: Conn, flows: Sequence[BackdatedFlow]) -> list[int]:
    rows = conn.execute(
        """
        INSERT INTO flows (repo, status, cause, duration_s, cost_usd, gates_passed, started_at, finished_at)
        SELECT r, s, c, d, k, g, t, t + make_interval(secs => d)
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[], %s::numeric[], %s::int[], %s::timestamptz[])
             AS u(r, s, c, d, k, g, t)
        RETURNING id
        """,
        (
            [f.repo for f in flows],
            [f.status for f in flows],
            [f.cause for f in flows],
            [f.duration_s for f in flows],
            [round(f.cost_usd, 4) for f in flows],
            [f.gates_passed for f in flows],
            [f.started_at for f in flows],
        ),
    ).fetchall()
    return [int(row[0]) for row in rows]
