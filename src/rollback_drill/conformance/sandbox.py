"""Where and how a runbook command is executed: the one place in the conformance run that starts processes.

A sandbox is a directory of one run:

- ``bin/``: ``kubectl`` aimed at the drill cluster only (and journaling every call it makes), the
  stand-ins (run as ``python -m rollback_drill.conformance.standins NAME``), and ``psql``/``pg_dump``
  matching the TaskDB's server;
- ``tools/``: the host programs a runbook command may pipe through, linked in one by one; with
  ``bin/`` the whole PATH, so nothing else on the host can be run by name;
- ``tmp/`` (what the runbook's ``/tmp/`` is), ``home/`` (the working directory), ``state/`` (what a
  command leaves for the next one) and ``kubectl-journal/``.

``run_in_sandbox(script, sandbox, env, timeout_s, journal=...)`` runs one script in its own
``bash`` (``set -o pipefail``, no profile) in its own process group, kills the group when the time
limit passes, and returns the redacted output and the kubectl calls it made.

Where bubblewrap works (``scripts/ensure-bubblewrap.sh``), the script also runs in namespaces of
its own: the host's root read-only, a private /tmp, /root and /home hidden, its own PID and IPC
namespaces, as ``nobody`` (the real one: root's files stay closed to it), an empty environment
but for the sandbox's own, and only ``tmp/``, ``home/``, ``state/`` and ``kubectl-journal/``
writable (``bin/`` and what else the run keeps beside them stay root's). The network is shared: the drill's API server and TaskDB are on loopback.
kubectl gets a copy of the kubeconfig with its certificates inside, since the originals are
readable by root only. Without bubblewrap the PATH allowlist is the only fence.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from rollback_drill.conformance.kubectl import KubectlInvocation
from rollback_drill.evidence.redact import redact_text

OUTPUT_LIMIT: Final = 20_000
"""Characters of a command's stdout and stderr kept."""
TIMED_OUT_EXIT_CODE: Final = 124
"""What ``timeout(1)`` exits with, for a command the sandbox stopped."""
STATE_VARIABLE: Final = "RB_CONF_STATE"
"""The environment variable naming the directory a command leaves state in for the next one."""
JOURNAL_VARIABLE: Final = "RB_CONF_KUBECTL_JOURNAL"
"""The environment variable naming the directory the kubectl wrapper journals into."""
STANDINS_MODULE: Final = "rollback_drill.conformance.standins"
TASKDB_TOOLS: Final = ("psql", "pg_dump")
_BASH_BUILTINS: Final = frozenset({"[", "test", "true", "false", "echo", "printf"})
"""Host programs not linked in: bash's own builtins answer first."""
NOBODY: Final = 65534
"""The user and group a namespaced command runs as."""
_ENV_FILE: Final = ".environment"
_HIDDEN: Final = ("/tmp", "/root", "/home")  # noqa: S108 - hidden from the command, not used
_TMP: Final = re.compile(r"(?<![\w./-])/tmp/")
_PG_MAJOR: Final = re.compile(r"(\d+)\.\d+")


@dataclass(frozen=True)
class SandboxTools:
    """What a sandbox's PATH holds."""

    kubectl: Path
    """The Go-built kubectl."""
    kubeconfig: str
    """The drill cluster's kubeconfig: every kubectl call of the sandbox uses it, and no other."""
    standins: tuple[str, ...]
    """Programs played by ``rollback_drill.conformance.standins`` (``blocks``, ``slack-cli``, ...)."""
    host_programs: frozenset[str]
    """Host programs a command may run by name (the allowlist); missing ones are left out."""
    taskdb_server_major: int | None = None
    """The TaskDB's PostgreSQL major version: a ``pg_dump`` of another major refuses to dump it."""
    taskdb_container_id: str | None = None
    """The TaskDB's container, whose own ``pg_dump`` serves when the host has none of the server's major."""


@dataclass(frozen=True)
class Sandbox:
    """The directories of one run's sandbox (see the module's docstring)."""

    root: Path
    bash: str
    bwrap: str | None = None
    """bubblewrap, when the command runs in namespaces of its own; None: the PATH allowlist only."""
    readable: tuple[str, ...] = ()
    """Host paths under a hidden directory (/tmp, /root, /home) the command still needs, bound read-only."""

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def tools(self) -> Path:
        return self.root / "tools"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def journal(self) -> Path:
        return self.root / "kubectl-journal"


@dataclass(frozen=True)
class SandboxResult:
    """How one script ended in the sandbox."""

    exit_code: int
    """``TIMED_OUT_EXIT_CODE`` when the sandbox stopped it."""
    stdout: str
    """Redacted, at most ``OUTPUT_LIMIT`` characters."""
    stderr: str
    elapsed_s: float
    timed_out: bool
    kubectl: tuple[KubectlInvocation, ...] = ()
    """The kubectl calls it made, in order (arguments redacted)."""


def prepare_sandbox(work_dir: Path, tools: SandboxTools, *, isolate: bool | None = None) -> Sandbox:
    """The sandbox's directories under ``work_dir``, with its PATH written.

    ``isolate``: run commands in namespaces (bubblewrap); None (the default) when bubblewrap works here.
    """
    work_dir = work_dir.absolute()
    bwrap = namespace_sandbox() if isolate is not False and _reachable_inside(work_dir) else None
    # What the commands run from the host: kubectl, and the stand-ins' Python (the package, the
    # virtualenv and the interpreter it was made from, which may live under /root, e.g. pyenv's).
    python_home = str(Path(sys.executable).resolve().parent.parent)
    source_root = str(Path(str(resources.files("rollback_drill"))).parent)
    readable = tuple(dict.fromkeys((str(tools.kubectl), source_root, sys.prefix, sys.base_prefix, python_home)))
    sandbox = Sandbox(work_dir, shutil.which("bash") or "/bin/bash", bwrap, readable if bwrap else ())
    for directory in (sandbox.bin, sandbox.tools, sandbox.tmp, sandbox.home, sandbox.state, sandbox.journal):
        directory.mkdir(parents=True, exist_ok=True)
    kubeconfig_path = tools.kubeconfig
    if bwrap and Path(tools.kubeconfig).is_file():
        kubeconfig_path = str(work_dir / "kubeconfig")
        _write_self_contained_kubeconfig(Path(tools.kubeconfig), Path(kubeconfig_path))
    real, kubeconfig = shlex.quote(str(tools.kubectl)), shlex.quote(kubeconfig_path)
    _script(
        sandbox,
        "kubectl",
        "#!/bin/bash\n# rollback-drill conformance: the runbook's kubectl, aimed at the drill cluster only.\n"
        f'{real} --kubeconfig={kubeconfig} "$@"\n__rc=$?\n'
        f'if [ -n "${JOURNAL_VARIABLE}" ]; then\n'
        f'  printf \'%s\\0\' "$__rc" "$@" > "${JOURNAL_VARIABLE}/${{EPOCHREALTIME/./}}.$$.$RANDOM"\nfi\n'
        'exit "$__rc"\n',
    )
    python = shlex.quote(sys.executable)
    for tool in tools.standins:
        _script(sandbox, tool, f'#!/bin/sh\nexec {python} -m {STANDINS_MODULE} {tool} "$@"\n')
    for tool in TASKDB_TOOLS:
        _script(sandbox, tool, _taskdb_tool(tool, tools))
    for name in sorted(tools.host_programs - _BASH_BUILTINS):
        found = shutil.which(name)
        if found and not (sandbox.tools / name).exists():
            (sandbox.tools / name).symlink_to(found)
    if bwrap:
        for writable in (sandbox.tmp, sandbox.home, sandbox.state, sandbox.journal):
            _hand_over(writable)
        if Path(kubeconfig_path).is_file() and kubeconfig_path != tools.kubeconfig:
            _hand_over(Path(kubeconfig_path))
    return sandbox


@functools.cache
def namespace_sandbox() -> str | None:
    """bubblewrap's path when it can start a namespaced command here (as ``nobody``); else None."""
    bwrap = shutil.which("bwrap")
    if bwrap is None or (os.geteuid() == 0 and shutil.which("setpriv") is None):
        return None
    probe = _namespaced(bwrap, (), (), None, ["/bin/true"])
    try:
        proc = subprocess.run(probe, capture_output=True, check=False, timeout=30, env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bwrap if proc.returncode == 0 else None


def _namespaced(
    bwrap: str, readable: tuple[str, ...], writable: tuple[str, ...], chdir: Path | None, argv: list[str]
) -> list[str]:
    """``argv`` under bubblewrap: the host read-only, /tmp, /root and /home empty, run as ``nobody``.

    As root, bubblewrap sets up the namespaces itself and the command drops to the real ``nobody``
    (setpriv, no new privileges): under a user namespace of root's, ``nobody`` would own root's files.
    """
    args = ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    for hidden in _HIDDEN:
        args += ["--tmpfs", hidden]
    made: set[Path] = set()
    for path, bind in [*((p, "--ro-bind") for p in readable), *((p, "--bind") for p in writable)]:
        hidden_root = next((h for h in _HIDDEN if path.startswith(h + "/")), None)
        if hidden_root is None:
            if bind == "--bind":
                args += [bind, path, path]  # over the read-only root
            continue
        if not Path(path).exists():
            continue
        # the directories above it, made passable inside the empty /tmp, /root or /home
        for parent in reversed(Path(path).parents):
            if str(parent).startswith(hidden_root + "/") and parent not in made:
                made.add(parent)
                args += ["--perms", "0755", "--dir", str(parent)]
        args += [bind, path, path]
    args += ["--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session", "--clearenv"]
    if chdir is not None:
        args += ["--chdir", str(chdir)]
    if os.geteuid() != 0:
        return [bwrap, *args, "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY), "--", *argv]
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--no-new-privs"]
    return [bwrap, *args, "--", *drop, *argv]


def _reachable_inside(work_dir: Path) -> bool:
    """Whether ``nobody`` can pass through every directory above ``work_dir`` inside the sandbox.

    When it cannot, the commands run with the PATH allowlist alone, as without bubblewrap.

    Under /tmp, /root and /home the sandbox makes those directories itself (0755); elsewhere they
    are the host's, and a 0700 one among them (an environment's own directory) would shut the
    command out of its working directory.
    """
    if os.geteuid() != 0 or any(str(work_dir).startswith(h + "/") for h in _HIDDEN):
        return True
    return all(p.stat().st_mode & 0o001 for p in work_dir.parents if p.exists())


def _hand_over(directory: Path) -> None:
    """``directory`` made ``nobody``'s, so that the namespaced command can write in it (as root only)."""
    if os.geteuid() != 0:
        return
    for path in [directory, *directory.rglob("*")]:
        os.lchown(path, NOBODY, NOBODY)


def _write_self_contained_kubeconfig(source: Path, target: Path) -> None:
    """``source`` with the files it names (CA, client certificate and key) embedded, written 0600."""
    config: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8"))
    base = source.parent
    for section, key in (("clusters", "cluster"), ("users", "user")):
        for entry in config.get(section) or []:
            fields = entry.get(key) or {}
            for name in ("certificate-authority", "client-certificate", "client-key"):
                if name in fields:
                    path = Path(fields.pop(name))
                    data = (path if path.is_absolute() else base / path).read_bytes()
                    fields[f"{name}-data"] = base64.b64encode(data).decode()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump(config, out, sort_keys=False)


def _script(sandbox: Sandbox, name: str, text: str) -> None:
    path = sandbox.bin / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)


def _taskdb_tool(tool: str, tools: SandboxTools) -> str:
    host = shutil.which(tool)
    server = tools.taskdb_server_major
    if host and (tool == "psql" or server is None or _tool_major(host) == server):
        return f'#!/bin/sh\nexec {shlex.quote(host)} "$@"\n'
    docker = shutil.which("docker")
    if tools.taskdb_container_id and docker:
        container = shlex.quote(tools.taskdb_container_id)
        return (
            f"#!/bin/sh\nexec {shlex.quote(docker)} exec -i -e PGPASSWORD {container} "
            f'{tool} -h 127.0.0.1 -p 5432 "$@"\n'
        )
    return f"#!/bin/sh\necho '{tool}: no {tool} matching the TaskDB (PostgreSQL {server}) here' >&2\nexit 127\n"


def _tool_major(path: str) -> int | None:
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, check=False, timeout=10)
    match = _PG_MAJOR.search(proc.stdout)
    return int(match.group(1)) if match else None


def rewrite_paths(text: str, sandbox: Sandbox) -> tuple[str, tuple[str, ...]]:
    """``text`` with the runbook's ``/tmp/`` made the sandbox's, and what was rewritten (for the report)."""
    if not _TMP.search(text):
        return text, ()
    rewritten = _TMP.sub(f"{sandbox.tmp}/", text)
    return rewritten, (f"/tmp/ is {sandbox.tmp}/",)  # noqa: S108 - names the runbook's path, does not use it


def run_in_sandbox(
    script: str, sandbox: Sandbox, env: Mapping[str, str], timeout_s: float, *, journal: str
) -> SandboxResult:
    """Run ``script`` in bash inside ``sandbox``, with ``env`` on top of the sandbox's own environment.

    ``journal`` names the directory (under ``kubectl-journal/``) its kubectl calls are recorded in.
    """
    directory = sandbox.journal / journal
    directory.mkdir(parents=True, exist_ok=True)
    source_root = Path(str(resources.files("rollback_drill"))).parent
    environment = {
        "PATH": f"{sandbox.bin}:{sandbox.tools}",
        "HOME": str(sandbox.home),
        "TMPDIR": str(sandbox.tmp),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "PYTHONPATH": str(source_root),
        STATE_VARIABLE: str(sandbox.state),
        **env,
        JOURNAL_VARIABLE: str(directory),
    }
    argv = [sandbox.bash, "--noprofile", "--norc", "-c", f"set -o pipefail\n{script}"]
    if sandbox.bwrap:
        # The environment goes in a file the script reads first, not on bubblewrap's command line,
        # where every process of the host could read it.
        env_file = directory / _ENV_FILE
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as variables:
            variables.writelines(f"export {name}={shlex.quote(value)}\n" for name, value in environment.items())
        _hand_over(directory)
        isolated = f". {shlex.quote(str(env_file))}\nset -o pipefail\n{script}"
        bash = [sandbox.bash, "--noprofile", "--norc", "-c", isolated]
        argv = _namespaced(sandbox.bwrap, sandbox.readable, (str(sandbox.root),), sandbox.home, bash)
        environment = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    started = time.monotonic()
    with subprocess.Popen(
        argv,
        cwd=sandbox.home,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as proc:
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
    (directory / _ENV_FILE).unlink(missing_ok=True)
    return SandboxResult(
        proc.returncode if not timed_out else TIMED_OUT_EXIT_CODE,
        redact_text(out.decode("utf-8", "replace"))[:OUTPUT_LIMIT],
        redact_text(err.decode("utf-8", "replace"))[:OUTPUT_LIMIT],
        time.monotonic() - started,
        timed_out,
        _read_journal(directory),
    )


def _read_journal(directory: Path) -> tuple[KubectlInvocation, ...]:
    calls = []
    entries = [p for p in directory.iterdir() if p.name != _ENV_FILE]
    for entry in sorted(entries, key=lambda p: (int(p.name.split(".")[0]), p.name)):
        fields = entry.read_bytes().decode("utf-8", "replace").split("\0")[:-1]
        if fields:
            calls.append(KubectlInvocation(tuple(redact_text(f) for f in fields[1:]), int(fields[0])))
    return tuple(calls)
