"""`--keep never|on-failure|always`, honoured on success, on failure and on Ctrl-C.

Each case runs `rollback-drill run` as a user does and then looks at what is left on the
machine: the environment's state file, its processes, its TaskDB container.

A failing drill is made honestly: a drill configuration that tightens Step 1's budget to
a millisecond (an override the configuration accepts: positive, and no looser than the
runbook's 2 minutes). The drill runs as usual, Step 1 takes longer than that, and
"every runbook step finished within its budget" fails, so the verdict is ``fail`` and the
command exits 1.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from rollback_drill.config import default_config_path
from rollback_drill.targets import local

from .drills import interrupt_when_started

pytestmark = pytest.mark.slow


def _unmeetable_budget(directory: Path) -> Path:
    data = yaml.safe_load(default_config_path().read_text())
    data["budget_overrides_s"] = {"step-1": 0.001}
    path = directory / "drill-step-1-in-a-millisecond.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _verdict(runner) -> str:
    (bundle,) = runner.evidence_dir.glob("*/evidence.json")
    return str(json.loads(bundle.read_text())["verdict"])


def _assert_kept(runner, name: str) -> None:
    """The state file, every control-plane process it lists, and the running TaskDB container."""
    state_file = runner.envs_dir / f"{name}.json"
    assert state_file.is_file(), f"no state file for the kept environment {name}"
    state = json.loads(state_file.read_text())
    processes = local.LocalControlPlane.from_state(state["control_plane"]).processes
    assert {p.name for p in processes} >= {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    dead = [p.name for p in processes if not local.is_running(p)]
    assert not dead, f"kept environment {name} has stopped processes: {dead}"
    running = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=rollback-drill={name}", "--filter", "status=running"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert running.stdout.split() == [state["taskdb"]["container_id"][:12]], running.stdout


def _env_down_removes_it(runner, name: str) -> None:
    result = runner.run("env", "down", "--name", name, timeout_s=120)
    assert result.returncode == 0, result.stderr
    left = runner.leftovers()
    assert not left, f"after `env down --name {name}`: {left.describe()}"


@pytest.mark.parametrize(
    ("keep", "fails", "kept"),
    [
        ("on-failure", True, True),
        ("always", False, True),
    ],
    # A passing drill under never and on-failure leaving nothing: test_back_to_back.py, ten times.
    ids=["failure-on-failure", "success-always"],
)
def test_keep_policy(drill_runner, tmp_path, keep, fails, kept):
    args = ["--keep", keep]
    if fails:
        args += ["--config", str(_unmeetable_budget(tmp_path))]
    result = drill_runner.drill(*args)
    assert result.returncode == (1 if fails else 0), result.stderr[-3000:]
    assert _verdict(drill_runner) == ("fail" if fails else "pass")
    (name,) = drill_runner.names
    if fails:
        assert "step-1 took" in result.stdout + result.stderr, "the drill failed for another reason than its budget"
    if not kept:
        left = drill_runner.leftovers()
        assert not left, f"--keep {keep}: {left.describe()}"
        return
    assert f"kept environment {name} (--keep {keep})" in result.stderr
    assert f"rollback-drill env down --name {name}" in result.stderr
    _assert_kept(drill_runner, name)
    _env_down_removes_it(drill_runner, name)


def test_ctrl_c_with_keep_never_leaves_nothing(drill_runner, tmp_path):
    log = tmp_path / "run.log"
    proc = drill_runner.popen_drill(log, "--keep", "never")
    code = interrupt_when_started(proc, drill_runner.evidence_dir, "step-1")
    output = log.read_text()
    assert code == 130, output[-3000:]
    assert drill_runner.note_names(output), output[-2000:]
    assert _verdict(drill_runner) == "aborted"
    left = drill_runner.leftovers()
    assert not left, f"--keep never, interrupted: {left.describe()}"
