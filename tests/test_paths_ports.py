"""The floor-1 modules every other package may use: where state lives, and free loopback ports."""

from __future__ import annotations

import socket
from pathlib import Path

from rollback_drill.paths import state_home
from rollback_drill.ports import LOOPBACK, free_port


def test_state_home_follows_xdg_state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_home() == tmp_path / "rollback-drill"


def test_state_home_falls_back_to_the_home_directory_when_xdg_state_home_is_unset_or_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert state_home() == Path(tmp_path) / ".local" / "state" / "rollback-drill"
    monkeypatch.setenv("XDG_STATE_HOME", "")
    assert state_home() == Path(tmp_path) / ".local" / "state" / "rollback-drill"


def test_free_port_is_a_loopback_port_that_can_be_bound_at_once():
    port = free_port()
    assert 0 < port < 65536
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, port))
        sock.listen()
        assert sock.getsockname() == (LOOPBACK, port)
