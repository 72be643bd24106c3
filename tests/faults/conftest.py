"""Drills run as a user runs them (`rollback-drill run` in a subprocess), and what they leave on this machine.

Each runner gives its drills a state directory (``XDG_STATE_HOME``) and a temporary
directory (``TMPDIR``) of their own, and a marker in their environment that every
process a drill starts inherits. What is left afterwards is then found without
guessing: processes whose environment carries the marker or whose command line names
the state directory; containers labelled ``rollback-drill=<environment>``; state files;
anything in the temporary directory; and TCP listening sockets that were not there before.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MARKER = "ROLLBACK_DRILL_FAULT_TEST"
ENV_NAME = re.compile(r"\[env\] environment (drill-[0-9a-f-]+)")
LISTEN = "0A"
"""The TCP state LISTEN in /proc/net/tcp and tcp6."""


def listening_sockets() -> dict[str, str]:
    """inode -> "address:port" of every TCP socket in LISTEN, IPv4 and IPv6 (from /proc/net)."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == LISTEN:
                    address, port = fields[1].split(":")
                    found[fields[9]] = f"{address}:{int(port, 16)}"
    return found


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def socket_owners() -> dict[str, int]:
    """inode -> pid, for the sockets of every process this user may look into."""
    owners = {}
    for pid in _pids():
        with suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with suppress(OSError):
                    target = str(fd.readlink())
                    if target.startswith("socket:["):
                        owners[target[8:-1]] = pid
    return owners


@dataclass(frozen=True)
class Leftovers:
    processes: tuple[str, ...]
    containers: tuple[str, ...]
    state: tuple[str, ...]
    temporary: tuple[str, ...]
    listening: tuple[str, ...]

    def describe(self) -> str:
        return "; ".join(f"{name}: {list(value)}" for name, value in self.__dict__.items() if value) or "nothing"

    def __bool__(self) -> bool:
        return any(self.__dict__.values())


@dataclass
class DrillRunner:
    """Runs `rollback-drill` commands with their own state and temporary directories, and finds what they leave."""

    root: Path
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    names: list[str] = field(default_factory=list)
    listening_before: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for directory in (self.state_home, self.tmpdir, self.evidence_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.listening_before = listening_sockets()

    @property
    def state_home(self) -> Path:
        return self.root / "state"

    @property
    def tmpdir(self) -> Path:
        return self.root / "tmp"

    @property
    def evidence_dir(self) -> Path:
        return self.root / "reports"

    @property
    def envs_dir(self) -> Path:
        return self.state_home / "rollback-drill" / "envs"

    def env(self) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
            "XDG_STATE_HOME": str(self.state_home),
            "TMPDIR": str(self.tmpdir),
            "TESTCONTAINERS_RYUK_DISABLED": "true",
            "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",
            MARKER: self.token,
        }

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "rollback_drill.cli", *args]

    def run(self, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=self.env(), timeout=timeout_s, check=False
        )
        self.names += ENV_NAME.findall(result.stderr)
        return result

    def drill(self, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        return self.run("run", "--evidence-dir", str(self.evidence_dir), *args, timeout_s=timeout_s)

    def popen_drill(self, log: Path, *args: str) -> subprocess.Popen[bytes]:
        """A drill in its own process group, as in a terminal (Ctrl-C reaches the whole group)."""
        with log.open("w") as out:
            return subprocess.Popen(
                self.argv("run", "--evidence-dir", str(self.evidence_dir), *args),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
            )

    def note_names(self, output: str) -> list[str]:
        names = ENV_NAME.findall(output)
        self.names += names
        return names

    def marked_processes(self) -> dict[int, str]:
        """pid -> command line of every process a drill of this runner started (and that still runs)."""
        marker = f"{MARKER}={self.token}".encode()
        state = str(self.state_home).encode()
        found = {}
        for pid in _pids():
            if pid == os.getpid():
                continue
            cmdline = _read(f"/proc/{pid}/cmdline")
            if marker in _read(f"/proc/{pid}/environ").split(b"\0") or state in cmdline:
                stat = _read(f"/proc/{pid}/stat").decode(errors="replace")
                if stat and stat.rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # exited; its parent has not collected it yet
                found[pid] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:160]
        return found

    def containers(self) -> list[str]:
        found = []
        for name in sorted(set(self.names)):
            result = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label=rollback-drill={name}"],
                capture_output=True,
                text=True,
                check=True,
            )
            found += [f"{name}:{cid}" for cid in result.stdout.split()]
        return found

    def new_listening(self) -> list[str]:
        """Listening sockets that were not there before, except those of processes that are not this runner's drills.

        A socket whose owner cannot be read (a root process such as docker-proxy) counts: a published
        container port would show up that way.
        """
        marked = self.marked_processes()
        new = {inode: address for inode, address in listening_sockets().items() if inode not in self.listening_before}
        if not new:
            return []
        owners = socket_owners()
        left = []
        for inode, address in sorted(new.items()):
            owner = owners.get(inode)
            if owner is None or owner in marked:
                left.append(f"{address} (pid {owner})")
        return left

    def leftovers(self) -> Leftovers:
        return Leftovers(
            processes=tuple(f"{pid}: {cmd}" for pid, cmd in sorted(self.marked_processes().items())),
            containers=tuple(self.containers()),
            state=tuple(sorted(str(p.relative_to(self.envs_dir)) for p in self.envs_dir.glob("*")))
            if self.envs_dir.exists()
            else (),
            temporary=tuple(sorted(p.name for p in self.tmpdir.iterdir())),
            listening=tuple(self.new_listening()),
        )

    def clean_up(self) -> None:
        """After a failed test: remove what its drills left, so that the next test starts clean."""
        for state_file in self.envs_dir.glob("*.json") if self.envs_dir.exists() else []:
            self.run("env", "down", "--name", state_file.stem, timeout_s=120)
        for pid in self.marked_processes():
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for entry in self.containers():
            subprocess.run(["docker", "rm", "-f", "-v", entry.split(":", 1)[1]], capture_output=True, check=False)


@pytest.fixture
def drill_runner(tmp_path) -> Iterator[DrillRunner]:
    runner = DrillRunner(tmp_path)
    yield runner
    runner.clean_up()
