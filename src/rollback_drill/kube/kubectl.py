"""Running kubectl itself, where the runbook's own command is what is being checked (``kubectl exec``)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rollback_drill.errors import VerificationFailed

EXEC_TIMEOUT_S = 60.0
"""A ``printenv`` in a running pod answers in about a second; a minute means the kubelet or the API server hangs."""


@dataclass(frozen=True)
class KubectlResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def exec_argv(
    kubectl: str | Path, kubeconfig: str, pod: str, command: Sequence[str], *, namespace: str, container: str
) -> tuple[str, ...]:
    """``kubectl --kubeconfig K exec -n NS POD -c CONTAINER -- COMMAND...``"""
    return (
        str(kubectl), "--kubeconfig", kubeconfig, "exec", "-n", namespace, pod, "-c", container, "--", *command,
    )  # fmt: skip


def kubectl_exec(
    kubectl: str | Path,
    kubeconfig: str,
    pod: str,
    command: Sequence[str],
    *,
    namespace: str,
    container: str,
    timeout_s: float = EXEC_TIMEOUT_S,
) -> KubectlResult:
    """Run ``command`` in a container of ``pod`` through kubectl; a non-zero exit is returned, not raised."""
    argv = exec_argv(kubectl, kubeconfig, pod, command, namespace=namespace, container=container)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise VerificationFailed(
            f"kubectl exec in pod {namespace}/{pod} did not finish within {timeout_s:.0f}s; "
            "check the pod's node (kubectl describe pod) and the API server"
        ) from exc
    return KubectlResult(argv, proc.returncode, proc.stdout, proc.stderr)
