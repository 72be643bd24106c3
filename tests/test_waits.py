"""The drill's waits on processes and services, each through timing.wait and driven here by a FakeClock.

The processes, the HTTP server and the closed port are real; only time is fake, so a
10-second grace period or a 60-second start-up timeout passes at once.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollback_drill.errors import ToolchainError, WaitTimeout
from rollback_drill.targets import local
from rollback_drill.targets.local import LocalControlPlane, LocalProcess
from rollback_drill.taskdb import providers
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.timing.clock import FakeClock
from rollback_drill.timing.wait import wait_until

IGNORES_SIGTERM = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stubborn(tmp_path: Path) -> Iterator[LocalProcess]:
    """A process group that ignores SIGTERM, as a hung control-plane component does."""
    proc = subprocess.Popen(
        [sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"  # the SIGTERM handler is in place
    yield LocalProcess("kube-apiserver", proc.pid, str(tmp_path / "apiserver.log"))
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _gone(process: LocalProcess) -> None:
    wait_until(lambda: not local.is_running(process), timeout_s=10, describe=f"{process.name} to be gone")


# --- stopping processes --------------------------------------------------------------------------


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period_on_the_clock(stubborn, clock):
    start = clock.monotonic()
    assert local._terminate(stubborn, grace_s=10.0, clock=clock) is True
    assert clock.monotonic() - start >= 10.0, "SIGKILL came before the grace period had passed"
    _gone(stubborn)


def test_a_process_that_obeys_sigterm_needs_no_sigkill(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    process = LocalProcess("etcd", proc.pid, str(tmp_path / "etcd.log"))
    try:
        assert local._terminate(process, grace_s=10.0) is False
    finally:
        proc.wait(timeout=10)


def test_kill_says_which_process_outlived_which_signal(stubborn, clock, tmp_path):
    plane = LocalControlPlane(str(tmp_path), "", "", {}, (stubborn,))
    with pytest.raises(WaitTimeout) as info:
        local.kill(plane, "kube-apiserver", signal.SIGTERM, timeout_s=10.0, clock=clock)
    message = str(info.value)
    assert f"kube-apiserver (pid {stubborn.pid}) to exit after signal SIGTERM" in message
    assert "10.0 s elapsed" in message
    assert "hint: the process may ignore SIGTERM" in message
    local.kill(plane, "kube-apiserver")  # SIGKILL, on the real clock
    assert not local.is_running(stubborn)


# --- waiting for a component's health endpoint ---------------------------------------------------


class _Answers(http.server.BaseHTTPRequestHandler):
    status = 503

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def health_url() -> Iterator[tuple[str, type[_Answers]]]:
    handler = type("Handler", (_Answers,), {"status": 503})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health", handler
    server.shutdown()
    server.server_close()


def test_a_component_that_answers_503_times_out_naming_the_answer_and_its_log(health_url, clock, tmp_path):
    url, _ = health_url
    log = tmp_path / "etcd.log"
    log.write_text("waiting for the cluster\n")
    this_process = LocalProcess("etcd", os.getpid(), str(log))
    with pytest.raises(WaitTimeout) as info:
        local._wait_http(url, this_process, 30.0, clock=clock)
    message = str(info.value)
    assert f"etcd to be ready at {url}" in message
    assert "30.0 s elapsed" in message
    assert "last seen: value HTTP 503" in message
    assert str(log) in message
    assert "waiting for the cluster" in message


def test_a_component_that_answers_200_is_ready(health_url, clock, tmp_path):
    url, handler = health_url
    handler.status = 200
    local._wait_http(url, LocalProcess("etcd", os.getpid(), str(tmp_path / "etcd.log")), 30.0, clock=clock)


def test_a_component_that_exits_during_start_up_fails_at_once_with_its_log(health_url, clock, tmp_path):
    url, _ = health_url
    log = tmp_path / "kube-apiserver.log"
    log.write_text("flag provided but not defined: -bogus\n")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    with pytest.raises(ToolchainError, match="exited during start-up") as info:
        local._wait_http(url, LocalProcess("kube-apiserver", proc.pid, str(log)), 30.0, clock=clock)
    assert "flag provided but not defined" in str(info.value)
    assert clock.monotonic() == FakeClock().monotonic(), "a dead process was waited for"


# --- waiting for TaskDB --------------------------------------------------------------------------


def test_a_taskdb_that_never_answers_times_out_with_the_last_error_and_no_password(clock):
    port = providers.free_port()  # nothing listens there
    db = TaskDB("local", "127.0.0.1", port, "flowengine_db", "flowengine_user", "s3cret-Passw0rd")
    with pytest.raises(WaitTimeout) as info:
        providers.wait_ready(db, timeout_s=1.5, clock=clock)
    message = str(info.value)
    assert f"TaskDB at postgresql://flowengine_user:***@127.0.0.1:{port}/flowengine_db to accept connections" in message
    assert "1.5 s elapsed" in message
    assert "last seen: value error" in message
    assert "s3cret-Passw0rd" not in message
