"""Running kubectl exec as the runbook does: the command line, the exit code and output returned, a hang bounded.

A stand-in ``kubectl`` (a shell script) plays the binary, so no cluster is needed.
"""

from __future__ import annotations

import stat

import pytest

from rollback_drill.errors import VerificationFailed
from rollback_drill.kube.kubectl import exec_argv, kubectl_exec


def script(tmp_path, body: str):
    path = tmp_path / "kubectl"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_command_line_is_kubectls_own():
    argv = exec_argv("kubectl", "/k/config", "flowengine-1", ["printenv", "X"], namespace="production", container="fe")
    assert argv == (
        "kubectl", "--kubeconfig", "/k/config", "exec", "-n", "production", "flowengine-1", "-c", "fe",
        "--", "printenv", "X",
    )  # fmt: skip


def test_the_output_and_exit_code_come_back(tmp_path):
    kubectl = script(tmp_path, 'echo "$@"; echo oops >&2; exit 3')
    result = kubectl_exec(kubectl, "/k/config", "pod-1", ["printenv", "X"], namespace="ns", container="c")
    assert result.returncode == 3
    assert result.stdout.strip() == "--kubeconfig /k/config exec -n ns pod-1 -c c -- printenv X"
    assert result.stderr.strip() == "oops"
    assert result.argv[0] == str(kubectl)


def test_a_hung_exec_is_stopped_and_named(tmp_path):
    kubectl = script(tmp_path, "exec sleep 30")
    with pytest.raises(VerificationFailed, match="kubectl exec in pod ns/pod-1 did not finish within 0s"):
        kubectl_exec(kubectl, "/k/config", "pod-1", ["true"], namespace="ns", container="c", timeout_s=0.2)
