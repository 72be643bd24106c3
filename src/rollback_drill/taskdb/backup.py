"""TaskDB backups with a real ``pg_dump``, and the proof that a backup restores.

``pg_dump`` must match the server's major version: the host's is used when it
does, otherwise the one inside the TaskDB container. A backup counts only once it
has been restored into a scratch database and its row counts and checksums match
the source ("verified").
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from rollback_drill.errors import ToolchainError, VerificationFailed
from rollback_drill.taskdb.providers import TaskDB


@dataclass(frozen=True)
class TableFingerprint:
    rows: int
    md5: str


@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    sha256: str
    pg_dump: str
    """Which pg_dump made it: "host <version>" or "container <version>"."""
    tables: dict[str, TableFingerprint] = field(default_factory=dict)
    """Rows and checksums of every table in the very snapshot the dump was taken from."""
    schema_version: str | None = None
    """The latest schema_migrations version in that snapshot."""


@dataclass(frozen=True)
class RestoreCheck:
    scratch_database: str
    tables: dict[str, TableFingerprint]
    matches: bool
    mismatches: tuple[str, ...] = field(default=())


def _pg_env(db: TaskDB) -> dict[str, str]:
    # The password travels in the environment, never on a command line that `ps` shows.
    return dict(os.environ, PGPASSWORD=db.password, PGCONNECT_TIMEOUT="5")


def _host_tool_major(tool: str) -> int | None:
    path = shutil.which(tool)
    if not path:
        return None
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"(\d+)\.\d+", proc.stdout)
    return int(match.group(1)) if match else None


def _dump_command(db: TaskDB) -> tuple[list[str], str, dict[str, str]]:
    major = db.server_major
    host_major = _host_tool_major("pg_dump")
    base = ["--username", db.user, "--dbname", db.database, "--no-owner", "--no-privileges"]
    if host_major is not None and (major is None or host_major == major):
        return (["pg_dump", "--host", db.host, "--port", str(db.port), *base], f"host {host_major}", _pg_env(db))
    if db.container_id:
        # Inside the container the server is local; the password goes in through `docker exec -e`.
        cmd = ["docker", "exec", "-e", "PGPASSWORD", db.container_id, "pg_dump", "--host", "127.0.0.1", *base]
        return (cmd, f"container {major}", _pg_env(db))
    raise ToolchainError(
        f"no pg_dump matching the server's PostgreSQL {major} (host has {host_major}); install postgresql-client-{major}"
    )


def dump(db: TaskDB, destination: Path) -> BackupResult:
    """``pg_dump | gzip > destination``, from an exported snapshot whose tables are fingerprinted too.

    The drill keeps writing while the backup runs (the runbook's backup is
    asynchronous), so "the restore matches the source" is only meaningful against
    the snapshot the dump saw: a REPEATABLE READ transaction exports it, the tables
    are fingerprinted inside it, and pg_dump reads it with ``--snapshot``. A failed
    pg_dump leaves no file behind.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    cmd, which, env = _dump_command(db)
    partial = destination.with_name(destination.name + ".partial")
    with psycopg.connect(db.dsn, connect_timeout=5) as snapshot_conn:
        snapshot_conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = snapshot_conn.execute("SELECT pg_export_snapshot()").fetchone()
        snapshot = str(row[0]) if row else ""
        tables = _fingerprints(snapshot_conn)
        version = None
        if "schema_migrations" in tables:
            found = snapshot_conn.execute(
                "SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1"
            ).fetchone()
            version = str(found[0]) if found else None
        with subprocess.Popen(
            [*cmd, f"--snapshot={snapshot}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        ) as proc:
            assert proc.stdout is not None
            with gzip.open(partial, "wb") as out:
                shutil.copyfileobj(proc.stdout, out, 1 << 16)
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            code = proc.wait()
        snapshot_conn.rollback()
    if code != 0:
        partial.unlink(missing_ok=True)
        raise VerificationFailed(f"pg_dump of {db.redacted_dsn} failed (exit {code}): {stderr.strip()[-500:]}")
    partial.replace(destination)
    data = destination.read_bytes()
    return BackupResult(destination, len(data), hashlib.sha256(data).hexdigest(), which, tables, version)


class AsyncBackup:
    """The runbook's ``pg_dump ... | gzip > /tmp/taskdb_pre_rollback_<ts>.sql.gz &``: started, not awaited."""

    def __init__(self, db: TaskDB, destination: Path) -> None:
        self.db = db
        self.destination = destination
        self.result: BackupResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="taskdb-backup", daemon=True)

    def start(self) -> AsyncBackup:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = dump(self.db, self.destination)
        except BaseException as exc:  # noqa: BLE001 - reported to whoever waits, never lost
            self.error = exc

    def wait(self, timeout_s: float) -> BackupResult:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise VerificationFailed(f"the TaskDB backup to {self.destination} had not finished after {timeout_s:.0f}s")
        if self.error is not None:
            raise VerificationFailed(f"the TaskDB backup failed: {self.error}") from self.error
        assert self.result is not None
        return self.result

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()


def _fingerprints(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, TableFingerprint]:
    """Row count and an order-independent md5 of every table in ``public``, as ``conn`` sees them."""
    result: dict[str, TableFingerprint] = {}
    tables = [str(r[0]) for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
    for table in tables:
        query = sql.SQL(
            "SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '') FROM {} t"
        ).format(sql.Identifier(table))
        row = conn.execute(query).fetchone()
        result[table] = TableFingerprint(int(str(row[0])), str(row[1])) if row else TableFingerprint(0, "")
    return result


def table_fingerprints(dsn: str) -> dict[str, TableFingerprint]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        return _fingerprints(conn)


def _psql_command(db: TaskDB, database: str, *extra: str) -> list[str]:
    """psql into ``database``, stopping at the first error: the host's if it is new enough, else the container's."""
    host_major = _host_tool_major("psql")
    args = ["--username", db.user, "--dbname", database, "--set", "ON_ERROR_STOP=1", "--quiet", "--no-psqlrc", *extra]
    if host_major is not None and (db.server_major is None or host_major >= db.server_major):
        return ["psql", "--host", db.host, "--port", str(db.port), *args]
    if db.container_id:
        return ["docker", "exec", "-i", "-e", "PGPASSWORD", db.container_id, "psql", "--host", "127.0.0.1", *args]
    raise ToolchainError(f"no psql for PostgreSQL {db.server_major}; install postgresql-client-{db.server_major}")


def restore(db: TaskDB, backup: Path, database: str) -> None:
    """Load a gzipped plain-SQL dump into ``database`` (created fresh) with psql, stopping at the first error."""
    with db.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        payload = gzip.decompress(backup.read_bytes())
    except (OSError, EOFError) as exc:
        raise VerificationFailed(f"backup {backup} is not a complete gzip file ({exc}); it cannot be restored") from exc
    proc = subprocess.run(_psql_command(db, database), input=payload, capture_output=True, env=_pg_env(db), check=False)
    if proc.returncode != 0:
        raise VerificationFailed(
            f"restoring {backup} into {database} failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace').strip()[-500:]}"
        )


def verify_restorable(db: TaskDB, backup: BackupResult) -> RestoreCheck:
    """Restore into a scratch database and compare every table with the snapshot the dump was taken from."""
    scratch = f"restore_check_{uuid.uuid4().hex[:8]}"
    try:
        restore(db, backup.path, scratch)
        copy = table_fingerprints(db.dsn_for(scratch))
    finally:
        with db.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    source = backup.tables
    mismatches = tuple(
        f"{table}: backed up {source.get(table)} vs restored {copy.get(table)}"
        for table in sorted(set(source) | set(copy))
        if source.get(table) != copy.get(table)
    )
    return RestoreCheck(scratch, copy, not mismatches, mismatches)


PROBE_TABLE = "environment_probe"
"""The table ``probe_round_trip`` writes, so that a dump of an empty database still carries rows."""


def probe_round_trip(db: TaskDB, directory: Path, *, rows: int = 25) -> RestoreCheck:
    """Write ``rows`` rows into ``PROBE_TABLE``, dump, restore into a scratch database, compare; drop the table.

    Whether this server and this machine's pg_dump/psql can take and restore a backup at all,
    before a drill depends on it.
    """
    table = sql.Identifier(PROBE_TABLE)
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id serial PRIMARY KEY, note text)").format(table))
        conn.execute(
            sql.SQL("INSERT INTO {} (note) SELECT 'row ' || g FROM generate_series(1, %s) g").format(table), (rows,)
        )
    try:
        return verify_restorable(db, dump(db, directory / "taskdb.sql.gz"))
    finally:
        with db.connect() as conn:
            conn.execute(sql.SQL("DROP TABLE {}").format(table))


_LOCK_LIKE_FLOWENGINE = b"""DO $$
DECLARE t text;
BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public'
           ORDER BY array_position(ARRAY['model_routes', 'flows', 'tasks'], tablename::text) NULLS LAST, tablename
  LOOP
    EXECUTE format('LOCK TABLE public.%I IN ACCESS EXCLUSIVE MODE', t);
  END LOOP;
END $$;
"""
"""Every table of ``public`` locked in the order FlowEngine's own transactions take them
(model_routes, flows, tasks), before DROP SCHEMA takes them in whatever order its
cascade walks: a flow being written can make the restore wait, never deadlock."""


def restore_in_place(db: TaskDB, backup: Path) -> None:
    """Put TaskDB back from a backup: drop and recreate ``public`` and load the dump, as one transaction (Step 3's fallback).

    FlowEngine keeps writing while this runs. Loaded statement by statement, a
    flow inserted between the dump's CREATE TABLE and its setval takes id 1 again
    and the primary key cannot be built. In one transaction, writers wait on the
    schema's lock and meet only the restored tables, once they are committed.
    """
    try:
        dumped = gzip.decompress(backup.read_bytes())
    except (OSError, EOFError) as exc:
        raise VerificationFailed(f"backup {backup} is not a complete gzip file ({exc}); it cannot be restored") from exc
    payload = _LOCK_LIKE_FLOWENGINE + b"DROP SCHEMA public CASCADE;\nCREATE SCHEMA public;\n" + dumped
    cmd = _psql_command(db, db.database, "--single-transaction")
    proc = subprocess.run(cmd, input=payload, capture_output=True, env=_pg_env(db), check=False)
    if proc.returncode != 0:
        raise VerificationFailed(
            f"restoring TaskDB from {backup} failed: {proc.stderr.decode(errors='replace').strip()[-500:]}"
        )
