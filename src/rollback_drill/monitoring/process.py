"""Start a monitoring server as its own process group on 127.0.0.1, wait for it to serve, stop it for sure."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.error
import urllib.request
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from rollback_drill.monitoring.errors import MonitoringProcessFailed
from rollback_drill.timing.wait import wait_until

LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 30.0
"""Prometheus replays its (empty) WAL and Alertmanager loads its config in about a second; 30 s is a busy machine."""
STOP_GRACE_S = 10.0
"""How long SIGTERM gets before SIGKILL; both servers flush and exit in well under a second."""
LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class ServerProcess:
    """A server we started: its process (own group), its log, and the URL it serves on."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None


def log_tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback server
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(
    name: str,
    argv: list[str],
    *,
    url: str,
    ready_url: str,
    log: Path,
    cwd: Path,
    install_fix: str = "run `make monitoring` (or see `rollback-drill doctor`)",
) -> ServerProcess:
    """Start ``argv`` in a new session (its own process group) and wait until ``ready_url`` answers 200.

    The process is stopped again when it exits or does not become ready, and the error quotes its log.
    """
    if not Path(argv[0]).exists():
        raise MonitoringProcessFailed(f"{name}: {argv[0]} is not installed; {install_fix}")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd
        )
    server = ServerProcess(name, process, url, log)

    def ready() -> bool:
        if not server.running():
            raise MonitoringProcessFailed(
                f"{name} exited with code {process.returncode} instead of serving on {url}; its log ({log}):\n{log_tail(log)}"
            )
        return _answers(ready_url)

    try:
        wait_until(
            ready,
            timeout_s=READY_TIMEOUT_S,
            describe=f"{name} to answer {ready_url}",
            interval_s=0.1,
            hint=f"see {log}",
        )
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: ServerProcess, grace_s: float = STOP_GRACE_S) -> bool:
    """SIGTERM the process group, SIGKILL it after ``grace_s``; return True if SIGKILL was needed."""
    if server.process.poll() is not None:
        return False
    with suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.process.wait(timeout=grace_s)
        return True
    return False
