"""Ten drills back to back leave nothing behind.

Each drill is a real `rollback-drill run` on the default local target: it brings up its
own control plane and TaskDB container, seeds the world, injects its incident, decides,
and tears everything down. After each one, and after all ten, nothing is left: no drill
process, no container labelled for it, no state, nothing in its temporary directory, no
new listening TCP socket.

Every drill is a full one: a whole drill costs about as much as the shortest honest one
(the NO-GO drill, which stops at the decision), because bringing the environment up and
down dominates both; on a 2-core machine the ten take about 5½ minutes. The incidents
rotate, so that each path's resources are covered: the probes, backups and notification
sinks of every rollback, the crash-loop stage (pilot hit, Step 2 restart), the schema
restore of db-corruption, and a NO-GO drill that changes nothing. The drills alternate
``--keep never`` and ``--keep on-failure``: after a passing drill both leave nothing.
"""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.slow

INCIDENTS = ("mass-failure", "crash-loop", "db-corruption", "cost-runaway", "user-error") * 2
KEEP = ("never", "on-failure")
"""Alternated: a drill that passes leaves nothing behind under either policy."""


def test_ten_drills_back_to_back_leave_nothing_behind(drill_runner):
    started = time.monotonic()
    timings = []
    for index, incident in enumerate(INCIDENTS):
        began = time.monotonic()
        result = drill_runner.drill("--incident", incident, "--keep", KEEP[index % 2])
        timings.append(round(time.monotonic() - began, 1))
        assert result.returncode == 0, (
            f"drill {index + 1} ({incident}) exited {result.returncode}:\n{result.stderr[-3000:]}"
        )
        assert len(set(drill_runner.names)) == index + 1, (
            f"drill {index + 1} did not bring up an environment of its own"
        )
        left = drill_runner.leftovers()
        assert not left, f"after drill {index + 1} ({incident}): {left.describe()}"
    total = time.monotonic() - started

    bundles = sorted(drill_runner.evidence_dir.glob("*/evidence.json"))
    assert len(bundles) == len(INCIDENTS)
    evidence = [json.loads(path.read_text()) for path in bundles]
    assert [e["verdict"] for e in evidence] == ["pass"] * len(INCIDENTS)
    assert sorted(e["incident"] for e in evidence) == sorted(INCIDENTS)
    fingerprints = {e["target"]["fingerprint"] for e in evidence}
    assert len(fingerprints) == len(INCIDENTS), "two drills ran on the same cluster"
    left = drill_runner.leftovers()
    assert not left, left.describe()
    print(f"{len(INCIDENTS)} drills in {total:.0f}s; each: {timings}")
