"""kube-state-metrics against a kubeconfig, serving the cluster's object states on 127.0.0.1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rollback_drill.monitoring import process
from rollback_drill.ports import free_port
from rollback_drill.toolchain.build import ensure_kube_state_metrics

RESOURCES = "pods,deployments,replicasets,namespaces"
"""What the drill's alerts read (crash loops, rollouts); fewer watches than the default list."""


@dataclass(frozen=True)
class KubeStateMetrics:
    server: process.ServerProcess
    telemetry_port: int

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def target(self) -> str:
        """``host:port`` for a Prometheus scrape job."""
        return self.url.removeprefix("http://")


def start(kubeconfig: Path, directory: Path, *, binary: Path | None = None) -> KubeStateMetrics:
    """Start kube-state-metrics (built and cached on a miss) on two free loopback ports; ready once its ``/readyz`` answers."""
    directory.mkdir(parents=True, exist_ok=True)
    port, telemetry_port = free_port(), free_port()
    argv = [
        str(binary or ensure_kube_state_metrics()),
        f"--kubeconfig={kubeconfig}",
        f"--host={process.LOOPBACK}",
        f"--port={port}",
        f"--telemetry-host={process.LOOPBACK}",
        f"--telemetry-port={telemetry_port}",
        f"--resources={RESOURCES}",
    ]
    server = process.start(
        "kube-state-metrics",
        argv,
        url=f"http://{process.LOOPBACK}:{port}",
        # /readyz is served on the telemetry port.
        ready_url=f"http://{process.LOOPBACK}:{telemetry_port}/readyz",
        log=directory / "kube-state-metrics.log",
        cwd=directory,
        install_fix="run `rollback-drill toolchain` (builds it from the Go module proxy)",
    )
    return KubeStateMetrics(server, telemetry_port)


def stop(ksm: KubeStateMetrics) -> bool:
    return process.stop(ksm.server)
