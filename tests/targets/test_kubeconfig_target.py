"""A drill against a kubeconfig (staging-like) target: the world is checked, not seeded, and put back afterwards.

The "staging" cluster here is one `rollback-drill env up` made, reached through its
kubeconfig with --target kubeconfig, its TaskDB through ROLLBACK_DRILL_TASKDB_DSN and
its FlowEngine through --flowengine-url, exactly as a CI job against staging would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rollback_drill import environment
from rollback_drill.config import load_config
from rollback_drill.kube.lock import DrillLock
from rollback_drill.world.seed import read_world

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def staging():
    state = environment.bring_up(environment.new_env_name(), with_world=True)
    yield state
    environment.tear_down(state)


def _world(state):
    api = state.cluster().api_client()
    try:
        world = read_world(api, load_config(), state.taskdb_handle(), 0)
    finally:
        api.close()
    return world.allowlist, world.replicas, world.alert_rules, world.schema_version


def _allowlist_lines(staging, db, allowlist) -> list[str]:
    """What a staging user does first: `check-target --taskdb dsn` names the cluster and the TaskDB to allowlist."""
    result = subprocess.run(
        [
            sys.executable, "-m", "rollback_drill.cli", "check-target", "--kubeconfig", staging.kubeconfig,
            "--taskdb", "dsn", "--cluster-allowlist", str(allowlist),
        ],
        env=dict(os.environ, ROLLBACK_DRILL_TASKDB_DSN=db.dsn),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result  # the TaskDB is not allowlisted yet
    assert "refusing to let the runbook write to TaskDB pg:" in result.stderr
    return [line.split()[1] for line in result.stdout.splitlines() if line.startswith(("cluster ", "taskdb "))]


def test_a_staging_drill_leaves_the_cluster_as_it_found_it(staging, tmp_path):
    before = _world(staging)
    db = staging.taskdb_handle()
    allowlist = tmp_path / "allowlist"
    allowlist.write_text("# staging, as `rollback-drill check-target --taskdb dsn` names it\n")
    cluster_line, taskdb_line = _allowlist_lines(staging, db, allowlist)
    assert cluster_line == staging.fingerprint
    assert taskdb_line.startswith(f"pg:{db.host}:{db.port}/{db.database}#"), taskdb_line
    allowlist.write_text(f"{cluster_line}\n{taskdb_line}\n")
    evidence_dir = tmp_path / "evidence"
    result = subprocess.run(
        [
            sys.executable, "-m", "rollback_drill.cli", "run", "--target", "kubeconfig",
            "--kubeconfig", staging.kubeconfig, "--taskdb", "dsn", "--cluster-allowlist", str(allowlist),
            "--flowengine-url", staging.services["flowengine"]["url"],
            "--incident", "cost-runaway", "--time-scale", "0.001", "--evidence-dir", str(evidence_dir),
        ],
        env=dict(os.environ, ROLLBACK_DRILL_TASKDB_DSN=db.dsn),
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert _world(staging) == before

    bundle = next(evidence_dir.glob("*/evidence.json")).parent
    evidence = json.loads((bundle / "evidence.json").read_text())
    assert evidence["verdict"] == "pass"
    assert evidence["target"]["kind"] == "kubeconfig"
    assert evidence["target"]["taskdb"] == taskdb_line

    events = [json.loads(line) for line in (bundle / "timeline.jsonl").read_text().splitlines()]
    put_back = [e for e in events if e["kind"] == "put_back"]
    assert put_back, "the drill did not record putting the cluster back"
    assert tuple(put_back[0]["allowlist"]) == before[0]
    assert db.password not in (bundle / "evidence.json").read_text() + (bundle / "timeline.jsonl").read_text()


def test_a_staging_drill_whose_taskdb_is_not_allowlisted_is_refused_before_it_starts(staging, tmp_path):
    db = staging.taskdb_handle()
    before = _world(staging)
    result = subprocess.run(
        [
            sys.executable, "-m", "rollback_drill.cli", "run", "--target", "kubeconfig",
            "--kubeconfig", staging.kubeconfig, "--taskdb", "dsn",
            "--flowengine-url", staging.services["flowengine"]["url"],
            "--incident", "cost-runaway", "--evidence-dir", str(tmp_path),
        ],
        env=dict(os.environ, ROLLBACK_DRILL_TASKDB_DSN=db.dsn),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"refusing to run the drill against TaskDB pg:{db.host}:{db.port}/{db.database}#" in lines[0]
    assert not list(tmp_path.glob("*/evidence.json")), "a refused drill must not start"
    assert _world(staging) == before


def test_a_second_drill_on_a_shared_cluster_is_refused_naming_the_holder(staging, tmp_path):
    api = staging.cluster().api_client()
    lock = DrillLock(api, "ana@laptop/20261127T000000Z-mass-failure-abcdef")
    lock.acquire()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "rollback_drill.cli", "run", "--env", staging.name, "--evidence-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        lock.release()
        api.close()
    assert result.returncode == 2, result.stderr
    assert "ana@laptop/20261127T000000Z-mass-failure-abcdef" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*/evidence.json")), "a refused drill must not start"


def test_a_dry_run_says_what_each_step_would_change_and_changes_nothing(staging):
    before = _world(staging)
    result = subprocess.run(
        [sys.executable, "-m", "rollback_drill.cli", "run", "--env", staging.name, "--dry-run"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    step_1 = next(line for line in lines if line.strip().startswith("step-1"))
    assert "'compliance-service'" in step_1
    assert "→" in step_1
    assert any(line.strip().startswith("step-4") and "delete 10 PrometheusRules" in line for line in lines), lines
    assert any(line.strip().startswith("step-3") and "20251104_001" in line for line in lines), lines
    assert _world(staging) == before
