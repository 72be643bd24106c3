"""Ctrl-C in the middle of a rollback: exit 130, an `aborted` record that still verifies, nothing left running.

Runs `rollback-drill run` as a user would, in its own process group, and interrupts
it once the evidence shows Step 1 has started.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rollback_drill.environment import state_path
from rollback_drill.evidence.verify import verify

from .drills import interrupt_when_started, timeline

pytestmark = pytest.mark.slow


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in argv:
            found.append(argv[:120])
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_mid_rollback(tmp_path, signum):
    evidence_dir = tmp_path / "reports"
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rollback_drill.cli",
                "run",
                "--incident",
                "mass-failure",
                "--evidence-dir",
                str(evidence_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    code = interrupt_when_started(proc, evidence_dir, "step-1", signum)
    output = log.read_text()
    assert code == 130, output[-3000:]

    bundles = [p.parent for p in evidence_dir.glob("*/evidence.json")]
    assert len(bundles) == 1, bundles
    evidence = json.loads((bundles[0] / "evidence.json").read_text())
    assert evidence["verdict"] == "aborted"
    step_ids = [s["id"] for s in evidence["steps"]]
    assert "step-1" in step_ids
    assert "step-8" not in step_ids or evidence["steps"][-1]["status"] != "pass"

    events = timeline(evidence_dir)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert any(e["kind"] == "step_started" for e in events)
    report = verify(bundles[0], allowed_signers=None)
    assert report.ok, report.problems

    names = re.findall(r"\[env\] environment (drill-[0-9a-f-]+)", output)
    assert names, output[-2000:]
    assert not state_path(names[0]).exists()
    assert not _processes_mentioning(f"envs/{names[0]}/")
    docker = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=rollback-drill={names[0]}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert docker.stdout.strip() == ""
