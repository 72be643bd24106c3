# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""A write made by hand during a real drill: the API server records it, the bundle holds it, and the
evidence lists it as unexplained. The drill runs as `rollback-drill run` on a local environment of its
own, in a temporary state home; the write comes from this test, as somebody else (impersonation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kubernetes import client

from rollback_drill.evidence.audit import AUDIT_NAME
from rollback_drill.evidence.verify import verify
from rollback_drill.targets.cluster import api_client
from rollback_drill.timing.wait import NotYet, wait_until

SOMEONE = "someone-at-a-terminal"
HAND_MADE = "made-by-hand-during-the-drill"


def _drill_started(evidence_dir: Path, state_home: Path) -> str | NotYet:
    """The environment's kubeconfig, once the drill's evidence exists (the drill's time has begun)."""
    if not list(evidence_dir.glob("*/evidence.json")):
        return NotYet("no evidence.json yet")
    for state_file in (state_home / "rollback-drill" / "envs").glob("*.json"):
        kubeconfig = json.loads(state_file.read_text()).get("kubeconfig")
        if kubeconfig:
            return str(kubeconfig)
    return NotYet("no environment with a kubeconfig yet")


def _write_as_somebody_else(kubeconfig: str) -> None:
    """What a person at a terminal might do with the environment's kubeconfig and `--as`."""
    api = api_client(kubeconfig)
    api.set_default_header("Impersonate-User", SOMEONE)
    api.set_default_header("Impersonate-Group", "system:masters")
    try:
        client.CoreV1Api(api).create_namespaced_config_map(
            "production", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=HAND_MADE))
        )
    finally:
        api.close()


def _tear_down_environments(state_home: Path, env: dict[str, str]) -> None:
    for state_file in (state_home / "rollback-drill" / "envs").glob("*.json"):
        subprocess.run(
            [sys.executable, "-m", "rollback_drill.cli", "env", "down", "--name", state_file.stem],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )


def test_a_write_made_by_hand_during_a_drill_is_in_the_bundle_and_unexplained(tmp_path: Path) -> None:
    state_home, evidence_dir = tmp_path / "state", tmp_path / "evidence"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"XDG_STATE_HOME": str(state_home)}
    argv = ["run", "--phase", "7", "--incident", "mass-failure", "--evidence-dir", str(evidence_dir), "--keep", "never"]
    drill = subprocess.Popen(
        [sys.executable, "-m", "rollback_drill.cli", *argv],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        kubeconfig = wait_until(
            lambda: _drill_started(evidence_dir, state_home),
            timeout_s=180,
            describe="the drill to start on its environment",
            interval_s=0.05,
        )
        _write_as_somebody_else(kubeconfig)
        output, _ = drill.communicate(timeout=600)
    finally:
        if drill.poll() is None:
            drill.kill()
            drill.wait()
        _tear_down_environments(state_home, env)
    assert drill.returncode == 0, output
    (bundle,) = [path.parent for path in evidence_dir.glob("*/evidence.json")]
    events = [json.loads(line) for line in (bundle / AUDIT_NAME).read_text().splitlines()]
    hand_made = [e for e in events if (e.get("objectRef") or {}).get("name") == HAND_MADE]
    assert [(e["verb"], e["impersonatedUser"]["username"]) for e in hand_made] == [("create", SOMEONE)]
    doc = json.loads((bundle / "evidence.json").read_text())
    unexplained = doc["audit"]["unexplained"]
    assert [(w["impersonated_user"], w["verb"], w["name"]) for w in unexplained] == [(SOMEONE, "create", HAND_MADE)]
    assert [w for w in doc["warnings"] if w["code"] == "unexplained-write" and HAND_MADE in w["message"]]
    # Everything else the drill wrote is attributed to a step or a phase.
    assert doc["audit"]["writes"] == sum(doc["audit"]["by_step"].values()) + sum(doc["audit"]["by_phase"].values()) + 1
    assert not verify(bundle, allowed_signers=None).problems
