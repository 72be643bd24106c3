"""Registering the runc wrapper in daemon.json and taking it out again (the scripts' JSON editing),
against temporary files: dockerd is never touched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rollback_drill.toolchain import daemon_json
from rollback_drill.toolchain.daemon_json import absent_marker, backup_path, register, registered, restore, restored

RUNTIME = "rollback-drill-runc"
WRAPPER = "/usr/local/libexec/rollback-drill/runc-wrapper"
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def test_registering_adds_the_runtime_as_the_default():
    assert registered({"log-level": "warn"}, RUNTIME, WRAPPER) == {
        "log-level": "warn",
        "runtimes": {RUNTIME: {"path": WRAPPER}},
        "default-runtime": RUNTIME,
    }


@pytest.mark.parametrize(
    "original",
    [
        {},
        {"log-level": "warn"},
        {"default-runtime": "crun", "runtimes": {"crun": {"path": "/usr/bin/crun"}}},
        {"runtimes": {}, "ip": "127.0.0.1"},
    ],
)
def test_restoring_gives_back_the_original(original):
    assert restored(registered(original, RUNTIME, WRAPPER), original, RUNTIME) == original


def test_restoring_keeps_what_was_changed_since():
    current = registered({"ip": "127.0.0.1"}, RUNTIME, WRAPPER) | {"log-level": "debug"}
    assert restored(current, {"ip": "127.0.0.1"}, RUNTIME) == {"ip": "127.0.0.1", "log-level": "debug"}


def test_a_default_runtime_chosen_since_is_left_alone():
    current = registered({}, RUNTIME, WRAPPER) | {"default-runtime": "crun"}
    assert restored(current, {}, RUNTIME) == {"default-runtime": "crun"}


def test_register_then_restore_round_trips_an_existing_file(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text('{"ip": "127.0.0.1", "default-runtime": "crun"}\n')
    path.chmod(0o640)
    register(path, RUNTIME, WRAPPER)
    register(path, RUNTIME, WRAPPER)  # twice: the first backup is the one kept
    assert json.loads(path.read_text())["default-runtime"] == RUNTIME
    assert json.loads(backup_path(path).read_text()) == {"ip": "127.0.0.1", "default-runtime": "crun"}
    assert "default runtime crun" in restore(path, RUNTIME)
    assert json.loads(path.read_text()) == {"ip": "127.0.0.1", "default-runtime": "crun"}
    assert path.stat().st_mode & 0o777 == 0o640
    assert not backup_path(path).exists()
    assert "left as it is" in restore(path, RUNTIME)  # a second run changes nothing


def test_a_daemon_json_that_did_not_exist_is_removed_again(tmp_path):
    path = tmp_path / "docker" / "daemon.json"
    register(path, RUNTIME, WRAPPER)
    assert absent_marker(path).exists()
    assert "did not exist before" in restore(path, RUNTIME)
    assert not path.exists()
    assert not absent_marker(path).exists()


def test_dry_run_changes_nothing(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text("{}")
    register(path, RUNTIME, WRAPPER)
    before = path.read_text()
    assert "write" in restore(path, RUNTIME, dry_run=True)
    assert path.read_text() == before
    assert backup_path(path).exists()


def test_main_refuses_unknown_arguments(capsys):
    assert daemon_json.main(["restore"]) == 2
    assert "usage:" in capsys.readouterr().err


def test_the_install_script_and_the_uninstall_script_round_trip_a_config_file(tmp_path):
    path = tmp_path / "daemon.json"
    original = {"ip": "127.0.0.1", "log-driver": "json-file"}
    path.write_text(json.dumps(original))
    editor = SCRIPTS.parent / "src" / "rollback_drill" / "toolchain" / "daemon_json.py"
    # the installer's own call, as it makes it (by path, with no package on sys.path)
    subprocess.run(["python3", str(editor), "register", str(path), RUNTIME, WRAPPER], check=True, cwd=tmp_path)
    dry = subprocess.run(
        [str(SCRIPTS / "uninstall-runc-wrapper.sh"), "--dry-run", "--config", str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert "default runtime runc" in dry.stdout
    assert json.loads(path.read_text())["default-runtime"] == RUNTIME
    subprocess.run([str(SCRIPTS / "uninstall-runc-wrapper.sh"), "--config", str(path)], check=True, capture_output=True)
    assert json.loads(path.read_text()) == original
    assert not backup_path(path).exists()


def test_the_installer_keeps_its_backup_through_the_shared_editor():
    text = (SCRIPTS / "install-runc-wrapper.sh").read_text()
    assert 'toolchain/daemon_json.py" register' in text
    assert "clean-host:" in (SCRIPTS.parent / "Makefile").read_text()
