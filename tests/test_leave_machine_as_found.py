"""Leaving the machine as it was found: a recorded PID is signalled only while it is still the process
the environment started, and the state files (which hold the TaskDB password) are private from birth."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import replace

import pytest

from rollback_drill import environment
from rollback_drill.targets import local
from rollback_drill.targets.local import LocalControlPlane, LocalProcess, ProcessIdentity


@pytest.fixture
def child():
    """A real process in its own session, as the environment starts its services."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, 9)
    proc.wait()


def test_process_identity_reads_the_start_time_and_program_of_a_pid(child):
    identity = local.process_identity(child.pid)
    assert identity is not None
    assert identity.program == sys.executable
    assert identity.start_ticks > 0
    assert local.process_identity(child.pid) == identity  # the same process reads the same
    assert local.process_identity(2**22 + 12345) is None


def test_a_pid_whose_start_time_differs_is_not_signalled(child, capsys):
    identity = local.process_identity(child.pid)
    assert identity is not None
    stranger = LocalProcess(
        "flowengine", child.pid, "", identity=replace(identity, start_ticks=identity.start_ticks - 1)
    )
    assert local.stop_processes((stranger,), grace_s=1.0) == []
    assert child.poll() is None  # still running: not ours, not touched
    assert f"pid {child.pid} is no longer the process the environment started" in capsys.readouterr().err


def test_a_pid_running_another_program_is_not_signalled(child):
    identity = local.process_identity(child.pid)
    assert identity is not None
    stranger = LocalProcess("etcd", child.pid, "", identity=replace(identity, program="/usr/bin/etcd"))
    local.stop_processes((stranger,), grace_s=1.0)
    assert child.poll() is None


def test_the_process_that_was_started_is_stopped(child):
    ours = LocalProcess("flowengine", child.pid, "", identity=local.process_identity(child.pid))
    assert local.stop_processes((ours,), grace_s=5.0) == []
    assert child.wait(timeout=5) is not None


def test_env_down_leaves_a_service_whose_pid_is_somebody_elses(child, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    identity = local.process_identity(child.pid)
    assert identity is not None
    recorded = replace(identity, start_ticks=identity.start_ticks + 100).to_state()
    state = environment.EnvironmentState(
        name="after-reboot", target="local", directory=str(tmp_path / "env"),
        services={"sinks": {"pid": child.pid, "identity": recorded}},
    )  # fmt: skip
    state.save()
    environment.tear_down(state)
    assert child.poll() is None
    assert not environment.state_path("after-reboot").exists()


def test_identities_survive_the_state_file_and_old_records_are_trusted():
    identity = ProcessIdentity(start_ticks=123, program="/bin/etcd")
    plane = LocalControlPlane(
        "/d", "/k", "https://127.0.0.1:1", {"etcd": 1}, (LocalProcess("etcd", 7, "l", (), identity),)
    )
    assert LocalControlPlane.from_state(plane.to_state()).processes[0].identity == identity
    old = plane.to_state()
    for process in old["processes"]:  # type: ignore[attr-defined]
        del process["identity"]
    assert LocalControlPlane.from_state(old).processes[0].identity is None
    assert local.still_ours(LocalProcess("etcd", 2**22 + 1, "")) is True


def test_state_files_are_created_0600_in_a_0700_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    created_modes: list[int] = []
    real_open = os.open

    def watching_open(path, flags, mode=0o777, *args, **kwargs):
        if str(path).endswith(".json.tmp"):
            created_modes.append(mode)
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", watching_open)
    old_umask = os.umask(0o002)  # a permissive umask must not widen the file
    try:
        environment.EnvironmentState(name="private", target="local", directory=str(tmp_path / "env")).save()
    finally:
        os.umask(old_umask)
    path = environment.state_path("private")
    assert created_modes == [0o600]  # private from its first byte, not narrowed afterwards
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert environment.EnvironmentState.load("private").name == "private"


def test_an_existing_state_directory_is_narrowed_to_0700(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    environment.envs_dir().mkdir(parents=True, mode=0o755)
    environment.envs_dir().chmod(0o755)
    environment.write_private(environment.envs_dir() / "x.json", "{}")
    assert stat.S_IMODE(environment.envs_dir().stat().st_mode) == 0o700
    assert stat.S_IMODE((environment.envs_dir() / "x.json").stat().st_mode) == 0o600


def test_identity_given_the_program_at_start_does_not_race_the_exec(child):
    identity = local.process_identity(child.pid, sys.executable)
    assert identity == local.process_identity(child.pid)
    assert local.still_ours(LocalProcess("x", child.pid, "", identity=identity))


def test_a_script_started_by_its_path_is_still_recognised(tmp_path):
    script = tmp_path / "service.sh"
    script.write_text("#!/bin/sh\nsleep 60\n")
    script.chmod(0o755)
    started = local._spawn("service", [str(script)], tmp_path)
    try:
        assert started.identity is not None
        assert started.identity.program == str(script)
        assert local.still_ours(started)
    finally:
        assert local.stop_processes((started,), grace_s=5.0) == []
    assert local.process_identity(started.pid) is None or not local._alive(started.pid)
