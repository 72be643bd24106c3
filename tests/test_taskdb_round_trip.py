"""A pg_dump of a real TaskDB (initdb/pg_ctl) restores into a scratch database with the same rows."""

from __future__ import annotations

import pytest

from rollback_drill.taskdb import providers
from rollback_drill.taskdb.backup import PROBE_TABLE, probe_round_trip


@pytest.fixture(scope="module")
def taskdb(tmp_path_factory):
    db = providers.start_local(tmp_path_factory.mktemp("taskdb"))
    yield db
    providers.stop_local(db)


def test_the_probe_rows_survive_the_round_trip_and_the_table_is_dropped(taskdb, tmp_path):
    check = probe_round_trip(taskdb, tmp_path, rows=25)
    assert check.matches, check.mismatches
    assert check.tables[PROBE_TABLE].rows == 25
    with taskdb.connect() as conn:
        assert conn.execute("SELECT to_regclass(%s)", (PROBE_TABLE,)).fetchone() == (None,)
    with taskdb.connect() as conn:
        databases = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert check.scratch_database not in databases
