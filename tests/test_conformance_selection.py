"""Finding a command's result in a conformance report, and the state that claims a cluster the drill did not make."""

from __future__ import annotations

from dataclasses import dataclass

from rollback_drill.conformance.selection import results_in_section
from rollback_drill.conformance.unknown_cluster import CLAIMED_NAME, claimed_environment
from rollback_drill.targets.cluster import Cluster


@dataclass(frozen=True)
class Command:
    section: str
    text: str


@dataclass(frozen=True)
class Result:
    command: Command


JSONPATH = "kubectl get deployment flowengine -o jsonpath='{...REPO_ALLOWLIST...}'"
RESULTS = [
    Result(Command("Step 1: Disable orchestrator for expanded repos", "kubectl set env deployment/flowengine ...")),
    Result(Command("Step 1: Disable orchestrator for expanded repos", JSONPATH)),
    Result(Command("Step 10: Something later", JSONPATH)),
    Result(Command("Step 2: Scale down FlowEngine", JSONPATH)),
]


def test_a_result_matches_by_the_start_of_its_section_and_every_fragment_of_its_text():
    assert results_in_section(RESULTS, "Step 1:", "jsonpath", "REPO_ALLOW") == [RESULTS[1]]
    assert results_in_section(RESULTS, "Step 1", "jsonpath", "REPO_ALLOW") == [RESULTS[1], RESULTS[2]]
    assert results_in_section(RESULTS, "Step 2") == [RESULTS[3]]
    assert results_in_section(RESULTS, "Step 3", "jsonpath") == []


def test_the_claimed_environment_names_the_cluster_as_if_the_drill_had_made_it(tmp_path):
    cluster = Cluster(
        "kubeconfig", "/k/config", None, "https://127.0.0.1:6443", "https://127.0.0.1:6443#u", "v1.34.4",
        created_by_drill=False,
    )  # fmt: skip
    state = claimed_environment(cluster, {"provider": "local"}, tmp_path)
    assert (state.name, state.target, state.directory) == (CLAIMED_NAME, "local", str(tmp_path))
    assert (state.kubeconfig, state.fingerprint, state.server_version) == (
        "/k/config",
        "https://127.0.0.1:6443#u",
        "v1.34.4",
    )
    assert state.taskdb == {"provider": "local"}
