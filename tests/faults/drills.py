"""What the fault tests read from a running drill's evidence, and how they interrupt it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from rollback_drill.timing.wait import wait_until


def timeline(evidence_dir: Path) -> list[dict]:
    """Every event of every bundle under ``evidence_dir``, as written so far."""
    events = []
    for path in evidence_dir.glob("*/timeline.jsonl"):
        events += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return events


def step_started(evidence_dir: Path, step: str) -> bool:
    return any(e.get("kind") == "step_started" and e.get("step") == step for e in timeline(evidence_dir))


def interrupt_when_started(
    proc: subprocess.Popen[bytes], evidence_dir: Path, step: str, signum: int = signal.SIGINT
) -> int:
    """Once the evidence shows ``step`` started, interrupt the drill and return its exit code.

    SIGINT goes to the drill's whole process group, as Ctrl-C in a terminal does; any other
    signal to the command alone, as a supervisor sends it. A drill still running when this
    returns or fails is killed.
    """
    try:
        wait_until(
            lambda: step_started(evidence_dir, step), timeout_s=240, interval_s=0.02, describe=f"{step} to start"
        )
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        return proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
