"""A conformance run aimed at a cluster the drill did not create is refused before anything runs on it.

What is tried is the worst case: an environment state that names the cluster (a state file
copied, or written by hand), so only the cluster's own identity can tell it is not the drill's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollback_drill.conformance.run import run_conformance
from rollback_drill.environment import EnvironmentState
from rollback_drill.errors import DrillError
from rollback_drill.targets.cluster import Cluster

CLAIMED_NAME = "not-made-by-the-drill"


def claimed_environment(cluster: Cluster, taskdb: dict[str, Any] | None, directory: Path) -> EnvironmentState:
    """An environment state that claims ``cluster`` as a local drill environment, without the drill having made it."""
    return EnvironmentState(
        name=CLAIMED_NAME,
        target="local",
        directory=str(directory),
        kubeconfig=cluster.kubeconfig,
        fingerprint=cluster.fingerprint,
        server_version=cluster.server_version,
        taskdb=taskdb,
    )


def refusal_on(cluster: Cluster, taskdb: dict[str, Any] | None, runbook: Path, directory: Path) -> DrillError | None:
    """Run ``runbook``'s conformance on ``cluster`` through ``claimed_environment``: why it was refused, or None if it ran."""
    try:
        run_conformance(runbook, claimed_environment(cluster, taskdb, directory), work_dir=directory / "work")
    except DrillError as exc:
        return exc
    return None
