"""A TaskDB the drill did not create: named by its identity, written to only when allowlisted, never seeded or corrupted.

The database here is a real PostgreSQL started by the test (the ``local`` provider),
reached the way a staging user reaches theirs: by DSN (``providers.from_dsn``). A
table of somebody's rows is planted in it, and every destructive path the drill has
is aimed at it: each is refused, and the rows are still there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from rollback_drill.config import load_config
from rollback_drill.errors import ConfigError, InputError, UnsafeTarget
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.runbook.failure_paths import break_halfway
from rollback_drill.targets.cluster import Cluster, read_allowlist
from rollback_drill.taskdb import identity, providers, schema
from rollback_drill.taskdb.backup import table_fingerprints
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.world import incidents
from rollback_drill.world.seed import reset_taskdb, seed_world

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = re.compile(r"pg:127\.0\.0\.1:[0-9]+/flowengine_db#[0-9]+")


@pytest.fixture(scope="module")
def drill_made() -> Iterator[TaskDB]:
    # Outside pytest's /tmp/pytest-of-<user>: every new pytest session as that user (a parallel one, or the
    # ones these tests start) makes it private again, and pg_control_system() reads the control file by its
    # absolute path, which the server (running as `postgres`) could then no longer reach.
    directory = tempfile.TemporaryDirectory(prefix="rollback-drill-taskdb-")
    db = providers.start_local(Path(directory.name))
    try:
        with db.connect() as conn:
            conn.execute("CREATE TABLE customer_orders (id int PRIMARY KEY, amount numeric NOT NULL)")
            conn.execute("INSERT INTO customer_orders SELECT g, g * 10 FROM generate_series(1, 50) g")
            # The schema db-corruption aims at, so that a refusal is not just a missing table.
            conn.execute("CREATE TABLE repo_quotas (repo text PRIMARY KEY, daily_budget_usd numeric)")
            conn.execute(
                "ALTER TABLE repo_quotas ADD CONSTRAINT repo_quotas_budget_valid CHECK (daily_budget_usd >= 0)"
            )
            conn.execute("INSERT INTO repo_quotas VALUES ('compliance-service', 20)")
        yield db
    finally:
        providers.stop(db)
        directory.cleanup()


@pytest.fixture
def somebodys(drill_made: TaskDB) -> TaskDB:
    """The same server, reached by DSN as staging's would be: the drill did not create it."""
    return providers.from_dsn(drill_made.dsn)


def _rows(db: TaskDB) -> dict[str, Any]:
    return {name: (t.rows, t.md5) for name, t in table_fingerprints(db.dsn).items()}


def _constraints(db: TaskDB) -> list[str]:
    with db.connect() as conn:
        rows = conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'repo_quotas'::regclass").fetchall()
    return sorted(str(row[0]) for row in rows)


# --- the handle says who made it -----------------------------------------------------------------


def test_only_the_drills_own_providers_make_a_drill_made_handle(drill_made, somebodys):
    assert drill_made.created_by_drill
    assert not somebodys.created_by_drill
    assert somebodys.provider == "dsn"


def test_the_flag_survives_the_state_file_and_old_state_files_read_as_before(drill_made, somebodys):
    assert TaskDB.from_state(drill_made.to_state()) == drill_made
    assert TaskDB.from_state(somebodys.to_state()) == somebodys
    old = {k: v for k, v in drill_made.to_state().items() if k != "created_by_drill"}
    assert TaskDB.from_state(old).created_by_drill
    old_dsn = {k: v for k, v in somebodys.to_state().items() if k != "created_by_drill"}
    assert not TaskDB.from_state(old_dsn).created_by_drill


# --- identity ------------------------------------------------------------------------------------


def test_the_identity_is_host_port_database_and_the_servers_system_identifier(somebodys):
    found = identity.identify(somebodys)
    assert IDENTITY.fullmatch(found), found
    assert found.startswith(f"pg:127.0.0.1:{somebodys.port}/flowengine_db#")
    assert found == identity.identify(somebodys), "the identity is stable"


def test_an_ipv6_host_is_bracketed_as_in_a_url():
    assert identity.format_identity("::1", 5432, "db", 42) == "pg:[::1]:5432/db#42"
    assert identity.format_identity("db.staging.internal", 5432, "db", 42) == "pg:db.staging.internal:5432/db#42"


def test_the_allowlist_takes_taskdb_identities_beside_cluster_fingerprints(tmp_path: Path, somebodys):
    found = identity.identify(somebodys)
    allowlist = tmp_path / "allowlist"
    allowlist.write_text(
        "# staging\n"
        "https://10.0.0.1:6443#0f0e0d0c-0b0a-0908-0706-050403020100  # the cluster\n"
        f"{found}   # its TaskDB\n"
        "pg:[::1]:5432/flowengine_db#7716276935061324011\n"
    )
    assert read_allowlist(allowlist) == {
        "https://10.0.0.1:6443#0f0e0d0c-0b0a-0908-0706-050403020100",
        found,
        "pg:[::1]:5432/flowengine_db#7716276935061324011",
    }


@pytest.mark.parametrize(
    "line",
    [
        "pg:db.staging.internal:5432/flowengine_db",  # no system identifier: a hostname alone is never trusted
        "pg:db.staging.internal/flowengine_db#77",  # no port
        "pg:db.staging.internal:5432/flowengine_db#not-a-number",
        "pg::5432/flowengine_db#77",
    ],
)
def test_a_malformed_taskdb_identity_is_refused_naming_the_line(tmp_path: Path, line: str):
    allowlist = tmp_path / "allowlist"
    allowlist.write_text(f"# staging\n{line}\n")
    with pytest.raises(ConfigError, match=rf"allowlist:2: {re.escape(repr(line))} is not a TaskDB identity"):
        read_allowlist(allowlist)


# --- writes: allowlisted, or refused naming the line to add --------------------------------------


def test_somebodys_taskdb_is_refused_naming_the_identity_to_allowlist(somebodys):
    found = identity.identify(somebodys)
    with pytest.raises(UnsafeTarget, match=f"add the line '{re.escape(found)}' to the --cluster-allowlist file"):
        identity.guard_writes(somebodys, frozenset())


def test_an_allowlisted_taskdb_may_be_written_to_and_the_drills_own_always(somebodys, drill_made):
    found = identity.identify(somebodys)
    assert identity.guard_writes(somebodys, frozenset({found})) == found
    assert identity.guard_writes(drill_made, frozenset()) == found


def test_the_run_guard_reads_the_dsn_from_the_environment(somebodys, monkeypatch):
    monkeypatch.setenv(providers.DSN_ENV, somebodys.dsn)
    found = identity.identify(somebodys)
    with pytest.raises(UnsafeTarget, match="refusing to run the drill against TaskDB"):
        identity.guard_dsn_taskdb(frozenset())
    assert identity.guard_dsn_taskdb(frozenset({found})) == found


# --- seeding, resets and corruption never touch it, allowlisted or not ---------------------------


def test_reset_is_refused_and_the_planted_rows_stay(somebodys):
    before = _rows(somebodys)
    with pytest.raises(UnsafeTarget, match=r"refusing to reset .*DROP SCHEMA.* the drill did not create it"):
        reset_taskdb(somebodys, load_config(), 6)
    assert _rows(somebodys) == before
    assert before["customer_orders"][0] == 50


def test_seeding_the_schema_is_refused(somebodys):
    before = _rows(somebodys)
    with pytest.raises(UnsafeTarget, match="refusing to seed the schema"):
        schema.seed_schema(somebodys, load_config(), 6)
    assert _rows(somebodys) == before


def test_seeding_a_world_is_refused_before_the_cluster_or_the_database_is_touched(somebodys):
    before = _rows(somebodys)
    drill_made_cluster = Cluster(
        "local", "/nowhere", None, "https://127.0.0.1:1", "https://127.0.0.1:1#x", "v", created_by_drill=True
    )
    # The API client is never used: the refusal comes before anything is created.
    with pytest.raises(UnsafeTarget, match="refusing to seed the drill world on TaskDB"):
        seed_world(cast("Any", None), drill_made_cluster, load_config(), 6, somebodys)
    assert _rows(somebodys) == before


def test_a_half_broken_step_3_script_is_never_planted_in_somebodys_taskdb(somebodys):
    before = _rows(somebodys)
    with pytest.raises(UnsafeTarget, match="did not create it"):
        break_halfway(somebodys)
    assert _rows(somebodys) == before


def test_db_corruption_is_refused_and_the_constraint_stays(somebodys):
    before = (_rows(somebodys), _constraints(somebodys))
    # Nothing listens there: the refusal comes before FlowEngine is asked anything.
    flowengine = FlowEngineClient("http://127.0.0.1:9")
    with pytest.raises(UnsafeTarget, match=r"refusing to inject db-corruption \(ALTER TABLE"):
        incidents.inject("db-corruption", flowengine, None, load_config(), taskdb=somebodys)
    assert (_rows(somebodys), _constraints(somebodys)) == before
    assert "repo_quotas_budget_valid" in before[1]


def test_an_allowlist_entry_does_not_make_it_the_drills_to_wipe(somebodys):
    """Allowlisting lets the runbook's steps write; it never lets the drill seed, reset or corrupt."""
    identity.guard_writes(somebodys, frozenset({identity.identify(somebodys)}))
    with pytest.raises(UnsafeTarget):
        reset_taskdb(somebodys, load_config(), 6)
    with pytest.raises(UnsafeTarget):
        incidents.check_injectable("db-corruption", somebodys)


def test_the_drills_own_taskdb_may_be_injected_into(drill_made):
    incidents.check_injectable("db-corruption", drill_made)
    incidents.check_injectable("cost-runaway", None)


def test_plain_pytest_refuses_an_unallowlisted_dsn_before_collecting_anything(somebodys, tmp_path: Path):
    """`pytest features/ --target kubeconfig --taskdb dsn` is checked at session start, as `rollback-drill run` is."""
    before = _rows(somebodys)
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "features/test_drill.py", "--target", "kubeconfig",
            "--kubeconfig", str(tmp_path / "staging.kubeconfig"), "--taskdb", "dsn",
            "-p", "no:cacheprovider", "--collect-only", "-q",
            # A temporary directory of its own: a new pytest session makes /tmp/pytest-of-<user> private again,
            # which would lock this module's PostgreSQL (running as `postgres`) out of its data directory.
            "--basetemp", str(tmp_path / "inner"),
        ],
        env=dict(os.environ, **{providers.DSN_ENV: somebodys.dsn}),
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result
    assert f"refusing to run the drill against TaskDB {identity.identify(somebodys)}" in result.stderr
    assert "collected" not in result.stdout
    assert somebodys.password not in result.stdout + result.stderr
    assert _rows(somebodys) == before


def test_a_role_that_may_not_read_the_system_identifier_is_told_what_to_grant(drill_made):
    with drill_made.connect() as conn:
        conn.execute("CREATE ROLE drill_reader LOGIN PASSWORD 'reader-Passw0rd'")
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")
    reader = replace(drill_made, user="drill_reader", password="reader-Passw0rd", created_by_drill=False)  # noqa: S106
    with pytest.raises(InputError, match=r"GRANT EXECUTE ON FUNCTION pg_control_system\(\) TO drill_reader"):
        identity.identify(reader)
