"""Faults the drill must report, not swallow: a backup cut short, a TaskDB gone during the backup,
FlowEngine dying while the pilot probe runs. Real PostgreSQL (initdb/pg_ctl), a real simulator over HTTP."""

from __future__ import annotations

import gzip
import time
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from rollback_drill.config import load_config
from rollback_drill.errors import VerificationFailed
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.flowengine.simulator import AllowlistView, Simulator
from rollback_drill.runbook import actions
from rollback_drill.runbook.probes import pilot_flow_call
from rollback_drill.taskdb import backup, providers, schema
from rollback_drill.timing.probe import Probe, failed_requests
from rollback_drill.timing.wait import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def taskdb(tmp_path):
    db = providers.start_local(tmp_path / "taskdb")
    schema.seed_schema(db, load_config(), 6)
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO flows (repo, status) SELECT 'compliance-service', 'completed' FROM generate_series(1, 500)"
        )
    yield db
    providers.stop_local(db)


def test_a_truncated_dump_is_caught_by_the_restore_check(taskdb, tmp_path):
    result = backup.dump(taskdb, tmp_path / "taskdb.sql.gz")
    data = result.path.read_bytes()
    result.path.write_bytes(data[: len(data) // 2])  # as a disk that filled up mid-write would leave it
    with pytest.raises(VerificationFailed, match=r"not a complete gzip file|restoring"):
        backup.verify_restorable(taskdb, result)


def test_a_dump_cut_inside_the_sql_is_caught_too(taskdb, tmp_path):
    result = backup.dump(taskdb, tmp_path / "taskdb.sql.gz")
    sql = gzip.decompress(result.path.read_bytes())
    result.path.write_bytes(gzip.compress(sql[: len(sql) * 2 // 3]))  # valid gzip, SQL stops mid-statement
    try:
        check = backup.verify_restorable(taskdb, result)
    except VerificationFailed:
        return  # psql stopped at the broken statement: caught
    assert not check.matches, "a dump missing a third of its SQL restored as if it were whole"


def test_taskdb_stopped_during_the_backup_fails_it_and_step_3_refuses_without_a_verified_backup(taskdb, tmp_path):
    running = backup.AsyncBackup(taskdb, tmp_path / "taskdb_pre_rollback.sql.gz").start()
    providers.stop_local(taskdb)
    with pytest.raises(VerificationFailed, match="backup"):
        running.wait(60)
    assert not (tmp_path / "taskdb_pre_rollback.sql.gz").exists(), (
        "a failed dump must leave no file that looks like a backup"
    )
    config = load_config()
    runbook = actions.Runbook(
        api=None,
        cluster=None,
        config=config,
        taskdb=taskdb,
        flowengine=None,  # type: ignore[arg-type]
    )
    # The schema check itself needs the database: bring it back, still without a backup.
    restarted = providers.start_local(tmp_path / "again")
    schema.seed_schema(restarted, config, 6)
    try:
        with pytest.raises(VerificationFailed, match="without a verified pre-rollback backup"):
            actions.revert_schema(replace(runbook, taskdb=restarted), None)
        assert schema.current_version(restarted) == "20251117_001"
    finally:
        providers.stop_local(restarted)


def test_restoring_in_place_while_flowengine_writes_loses_nothing_and_keeps_the_keys(tmp_path):
    # Step 3's fallback runs while FlowEngine still records flows. Loaded statement
    # by statement, a flow got in between the dump's CREATE TABLE and its setval,
    # took id 1 again, and the primary key could not be rebuilt. Phase 7, so that a
    # flow's transaction takes model_routes as well as flows and tasks.
    db = providers.start_local(tmp_path / "taskdb")
    try:
        schema.seed_schema(db, load_config(), 7)
        with db.connect() as conn:
            conn.execute(
                "INSERT INTO flows (repo, status) SELECT 'api-gateway', 'completed' FROM generate_series(1, 20000)"
            )
        dumped = backup.dump(db, tmp_path / "taskdb.sql.gz")
        view = AllowlistView(available_pods=3, repos=frozenset({"compliance-service"}))
        simulator = Simulator("compliance-service", db.dsn, lambda: view, flow_latency_s=0.0)
        flowengine = FlowEngineClient(simulator.start(), timeout_s=10)
        probe = Probe("pilot", pilot_flow_call(flowengine, "compliance-service"), rate_hz=50.0, max_in_flight=4)
        try:
            with probe:
                wait_until(lambda: _served(probe) >= 20, timeout_s=20, describe="FlowEngine recording flows")
                for _ in range(3):
                    backup.restore_in_place(db, dumped.path)
                served = _served(probe)
                wait_until(lambda: _served(probe) >= served + 20, timeout_s=20, describe="flows after the restore")
        finally:
            simulator.stop()
        with db.connect() as conn:
            ids = {int(str(r[0])) for r in conn.execute("SELECT id FROM flows")}
            pkeys = conn.execute("SELECT indexname FROM pg_indexes WHERE indexname = 'flows_pkey'").fetchall()
            routed = conn.execute("SELECT count(*) FROM model_routes WHERE flow_id > 20000").fetchone()
    finally:
        providers.stop_local(db)
    assert dumped.tables["flows"].rows == 20000
    assert len(pkeys) == 1, "the restored flows table has its primary key"
    assert set(range(1, 20001)) <= ids, "a flow from the backup is missing after the restore"
    assert max(ids) > 20000, "flows after the restore get ids after the backup's, not over them"
    assert routed is not None, "the restored model_routes table takes the new flows' routes"
    assert int(str(routed[0])) >= 20


def _served(probe: Probe) -> int:
    return sum(1 for s in probe.samples() if s.outcome.ok)


def test_flowengine_killed_during_the_pilot_probe_counts_as_pilot_impact(taskdb):
    view = AllowlistView(available_pods=3, repos=frozenset({"compliance-service"}))
    simulator = Simulator("compliance-service", taskdb.dsn, lambda: view, flow_latency_s=0.0)
    url = simulator.start()
    probe = Probe("pilot", pilot_flow_call(FlowEngineClient(url, timeout_s=1), "compliance-service"), rate_hz=20.0)
    with probe:
        wait_until(lambda: len(probe.samples()) >= 5, timeout_s=20, describe="5 pilot answers")
        assert failed_requests(probe.samples()) == 0
        simulator.stop()
        stopped_at = time.monotonic()
        wait_until(
            lambda: sum(1 for s in probe.samples() if s.t_monotonic > stopped_at) >= 5,
            timeout_s=20,
            describe="5 requests after the kill",
        )
    after_kill = [s.outcome for s in probe.samples() if s.t_monotonic > stopped_at]
    assert all(not o.ok for o in after_kill), after_kill
    assert {o.kind for o in after_kill} == {"unavailable"}, after_kill
    assert failed_requests(probe.samples()) >= len(after_kill)


def test_the_database_really_refuses_a_wrong_password(taskdb):
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(replace(taskdb, password="not-the-password").dsn, connect_timeout=3)  # noqa: S106 - a wrong one on purpose
    assert Path(taskdb.data_dir).exists()
