"""The `local` target: a real control plane from Go-built binaries, with kwok playing the nodes.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as plain
processes, each bound to 127.0.0.1, each in its own session so that the environment
outlives the command that started it (``env up``) and is stopped by PID (``env down``).
RBAC authorization is on; the drill talks to the API server with an admin client
certificate (group system:masters) written into the environment's kubeconfig.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from importlib import resources
from pathlib import Path

import yaml

from rollback_drill.errors import ToolchainError
from rollback_drill.ports import free_port
from rollback_drill.targets.pki import Pki, create_pki
from rollback_drill.timing.clock import Clock
from rollback_drill.timing.wait import NotYet, poll_until, wait_until

FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
NODE_COUNT = 3
"""Three fake nodes: enough for the pilot's 3 replicas to spread as on a real cluster."""
SERVICE_CIDR = "10.96.0.0/12"
"""Only an allocation range inside the API server; nothing routes to it."""
AUDIT_NAMESPACES = ("production", "staging", "monitoring")
"""The namespaces the runbook touches; the API server records what happens in them."""
AUDIT_LOG_MAX_MB = 100
AUDIT_LOG_MAX_BACKUPS = 3
"""At most 400 MB of audit log per environment: the API server rotates, then drops the oldest."""
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
READ_VERBS = ("get", "list", "watch")


@dataclass(frozen=True)
class LocalProcess:
    name: str
    pid: int
    log: str
    argv: tuple[str, ...] = ()
    """How it was started, so that it can be started again the same way (``start_again``)."""
    identity: ProcessIdentity | None = None
    """Who the PID was when it was started: after a reboot the same PID can lead another process group."""


@dataclass(frozen=True)
class ProcessIdentity:
    """A process told apart from a later one with the same PID: its start time and its program."""

    start_ticks: int
    """Field 22 of ``/proc/<pid>/stat``: clock ticks after boot at which the process started."""
    program: str
    """The first word of ``/proc/<pid>/cmdline``."""

    def to_state(self) -> dict[str, object]:
        return {"start_ticks": self.start_ticks, "program": self.program}

    @classmethod
    def from_state(cls, data: object) -> ProcessIdentity | None:
        if not isinstance(data, Mapping):
            return None  # recorded before identities were: trusted as before
        return cls(int(data["start_ticks"]), str(data["program"]))


def process_identity(pid: int, program: str | None = None) -> ProcessIdentity | None:
    """``pid``'s start time and program from /proc, or None when no such process is there.

    Give ``program`` (the argv[0] it was started with) right after starting a process: until the
    kernel has finished loading the new program, /proc/<pid>/cmdline can still read empty, while
    the start time, set when the process was forked, is already final.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if program is None else b""
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ")": fields 3.. follow the last ")".
    fields = stat.rsplit(")", 1)[-1].split()
    if program is None:
        program = cmdline.split(b"\0", 1)[0].decode(errors="replace")
    return ProcessIdentity(start_ticks=int(fields[19]), program=program)


def still_ours(process: LocalProcess) -> bool:
    """Whether ``process.pid`` is still the process that was started (always, when no identity was recorded)."""
    recorded = process.identity
    if recorded is None:
        return True
    current = process_identity(process.pid)
    if current is None or current.start_ticks != recorded.start_ticks:
        return False
    if not recorded.program:
        return True
    # A script started by its path runs as its interpreter: the path is then one of the first words.
    try:
        words = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")[:3]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return recorded.program in {word.decode(errors="replace") for word in words}


@dataclass(frozen=True)
class LocalControlPlane:
    """What was started, enough to reach it and to stop it from another process."""

    directory: str
    kubeconfig: str
    server: str
    ports: Mapping[str, int]
    processes: tuple[LocalProcess, ...] = field(default=())
    audit_log: str | None = None
    """The API server's audit log (JSON lines), or None for a plane started before it kept one."""

    def to_state(self) -> dict[str, object]:
        return {
            "directory": self.directory,
            "kubeconfig": self.kubeconfig,
            "server": self.server,
            "ports": dict(self.ports),
            "processes": [
                {
                    "name": p.name,
                    "pid": p.pid,
                    "log": p.log,
                    "argv": list(p.argv),
                    "identity": p.identity.to_state() if p.identity else None,
                }
                for p in self.processes
            ],
            "audit_log": self.audit_log,
        }

    @classmethod
    def from_state(cls, data: Mapping[str, object]) -> LocalControlPlane:
        processes = tuple(
            LocalProcess(
                str(p["name"]),
                int(p["pid"]),
                str(p["log"]),
                tuple(p.get("argv") or ()),
                ProcessIdentity.from_state(p.get("identity")),
            )
            for p in data["processes"]  # type: ignore[attr-defined]
        )
        return cls(
            directory=str(data["directory"]),
            kubeconfig=str(data["kubeconfig"]),
            server=str(data["server"]),
            ports=dict(data["ports"]),  # type: ignore[call-overload]
            processes=processes,
            audit_log=str(data["audit_log"]) if data.get("audit_log") else None,
        )


def write_kubeconfig(path: Path, server: str, pki: Pki, *, context: str = "rollback-drill") -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [
            {
                "name": "rollback-drill-admin",
                "user": {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": "rollback-drill-admin"}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def audit_policy(namespaces: Sequence[str] = AUDIT_NAMESPACES) -> dict[str, object]:
    """The API server's audit policy: every write in the drill's namespaces with its request and response,
    reads there as metadata, nothing elsewhere. Secrets, ServiceAccount tokens (a TokenRequest's response
    is a bearer token) and Leases only ever as metadata: no credential may reach a file, and the drill's
    Lease renewals would only add noise. The first rule that matches wins, so that rule comes first.
    """
    spaces = list(namespaces)
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        # One event per request, when its response is complete (a watch's start would be a second).
        "omitStages": ["RequestReceived", "ResponseStarted"],
        "rules": [
            {
                "level": "Metadata",
                "namespaces": spaces,
                "resources": [
                    {"group": "", "resources": ["secrets", "serviceaccounts/token"]},
                    {"group": "coordination.k8s.io", "resources": ["leases"]},
                ],
            },
            {"level": "RequestResponse", "namespaces": spaces, "verbs": list(WRITE_VERBS)},
            {"level": "Metadata", "namespaces": spaces, "verbs": list(READ_VERBS)},
            {"level": "None"},
        ],
    }


def write_audit_policy(directory: Path, namespaces: Sequence[str] = AUDIT_NAMESPACES) -> Path:
    path = directory / "audit-policy.yaml"
    path.write_text(yaml.safe_dump(audit_policy(namespaces), sort_keys=False))
    return path


def audit_flags(policy: Path, log: Path) -> list[str]:
    """The API server's flags for a JSON audit log that rotates instead of filling the disk."""
    return [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={log}",
        "--audit-log-format=json",
        f"--audit-log-maxsize={AUDIT_LOG_MAX_MB}",
        f"--audit-log-maxbackup={AUDIT_LOG_MAX_BACKUPS}",
    ]


def kwok_stages_path(directory: Path, extra_stages: str = "") -> Path:
    """kwok's stock node and pod stages, plus the drill's own (a Stage given by --config replaces all defaults)."""
    stages = resources.files("rollback_drill.data").joinpath("kwok/stages-default.yaml").read_text()
    path = directory / "kwok-stages.yaml"
    path.write_text(stages + ("\n---\n" + extra_stages if extra_stages else ""))
    return path


def _spawn(name: str, argv: list[str], directory: Path) -> LocalProcess:
    log = directory / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=directory,
        )
    return LocalProcess(
        name=name, pid=proc.pid, log=str(log), argv=tuple(argv), identity=process_identity(proc.pid, argv[0])
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is dead for our purposes; reap it if it is ours.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _not_zombie(pid)
    return waited == 0


def is_running(process: LocalProcess) -> bool:
    return _alive(process.pid)


def _not_zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def _log_tail(process: LocalProcess, lines: int = 15) -> str:
    try:
        return "\n".join(Path(process.log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_http(
    url: str,
    process: LocalProcess,
    timeout_s: float,
    context: ssl.SSLContext | None = None,
    *,
    clock: Clock | None = None,
) -> None:
    """Wait until ``url`` answers 200; a process that exits meanwhile fails at once, with its log's last lines."""

    def answers() -> bool | NotYet:
        if not _alive(process.pid):
            raise ToolchainError(
                f"{process.name} exited during start-up; last lines of {process.log}:\n{_log_tail(process)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310 - our own loopback URL
                return True if response.status == HTTPStatus.OK else NotYet(f"HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            return NotYet(f"HTTP {exc.code}")
        except (urllib.error.URLError, OSError) as exc:
            return NotYet(str(exc))

    wait_until(
        answers,
        timeout_s=timeout_s,
        describe=f"{process.name} to be ready at {url}",
        interval_s=0.2,
        clock=clock,
        hint=f"see {process.log}:\n{_log_tail(process)}",
    )


def _require_alive(processes: list[LocalProcess]) -> None:
    for process in processes:
        if not _alive(process.pid):
            raise ToolchainError(
                f"{process.name} exited during start-up; last lines of {process.log}:\n{_log_tail(process)}"
            )


def _admin_ssl_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return context


def start(
    directory: Path,
    binaries: Mapping[str, Path],
    *,
    extra_stages: str = "",
    timeout_s: float = 90.0,
    audit_namespaces: Sequence[str] = AUDIT_NAMESPACES,
) -> LocalControlPlane:
    """Start etcd, the API server, the controller manager, the scheduler and kwok; return when /readyz is ok.

    The API server keeps an audit log of ``audit_namespaces`` (``audit_policy``) in ``logs/audit.log``.

    On any failure everything already started is stopped before the error propagates.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = create_pki(directory / "pki")
    ports = {name: free_port() for name in ("etcd", "etcd-peer", "apiserver", "kwok")}
    server = f"https://127.0.0.1:{ports['apiserver']}"
    kubeconfig = directory / "kubeconfig"
    write_kubeconfig(kubeconfig, server, pki)
    audit_log = directory / "logs" / "audit.log"
    audit_log.parent.mkdir(parents=True, exist_ok=True)
    policy = write_audit_policy(directory, audit_namespaces)
    started: list[LocalProcess] = []
    try:
        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
        etcd = _spawn(
            "etcd",
            [
                str(binaries["etcd"]),
                "--name=drill",
                f"--data-dir={directory / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=drill={peer_url}",
                # A throwaway drill cluster: durability across power loss is not worth the fsync latency.
                "--unsafe-no-fsync",
                "--quota-backend-bytes=1073741824",
                "--log-level=warn",
            ],
            directory,
        )
        started.append(etcd)
        _wait_http(f"{etcd_url}/health", etcd, timeout_s)

        apiserver = _spawn(
            "kube-apiserver",
            [
                str(binaries["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                f"--tls-cert-file={pki.server_cert}",
                f"--tls-private-key-file={pki.server_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                f"--kubelet-client-certificate={pki.admin_cert}",
                f"--kubelet-client-key={pki.admin_key}",
                "--allow-privileged=true",
                "--profiling=false",
                "--event-ttl=1h",
                # A drill cluster has no load balancer to drain: stop at once on SIGTERM.
                "--shutdown-delay-duration=0s",
                *audit_flags(policy, audit_log),
                "--v=1",
            ],
            directory,
        )
        started.append(apiserver)
        _wait_http(f"{server}/readyz", apiserver, timeout_s, _admin_ssl_context(pki))

        started.append(
            _spawn(
                "kube-controller-manager",
                [
                    str(binaries["kube-controller-manager"]),
                    f"--kubeconfig={kubeconfig}",
                    "--secure-port=0",
                    "--leader-elect=false",
                    f"--service-account-private-key-file={pki.sa_key}",
                    f"--root-ca-file={pki.ca_cert}",
                    "--use-service-account-credentials=true",
                    # Finished pods and replica sets are garbage-collected quickly so repeated drills stay small.
                    "--terminated-pod-gc-threshold=50",
                    "--v=1",
                ],
                directory,
            )
        )
        started.append(
            _spawn(
                "kube-scheduler",
                [
                    str(binaries["kube-scheduler"]),
                    f"--kubeconfig={kubeconfig}",
                    "--secure-port=0",
                    "--leader-elect=false",
                    "--v=1",
                ],
                directory,
            )
        )
        stages = kwok_stages_path(directory, extra_stages)
        started.append(
            _spawn(
                "kwok",
                [
                    str(binaries["kwok"]),
                    f"--kubeconfig={kubeconfig}",
                    f"--config={stages}",
                    "--manage-all-nodes=false",
                    f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                    "--node-ip=127.0.0.1",
                    f"--node-port={ports['kwok']}",
                    f"--server-address=127.0.0.1:{ports['kwok']}",
                    f"--tls-cert-file={pki.admin_cert}",
                    f"--tls-private-key-file={pki.admin_key}",
                    "--v=INFO",
                ],
                directory,
            )
        )
        plane = LocalControlPlane(
            str(directory), str(kubeconfig), server, ports, tuple(started), audit_log=str(audit_log)
        )
        _require_alive(started)
    except BaseException:
        stop_processes(tuple(started))
        raise
    return plane


def _terminate(process: LocalProcess, grace_s: float, *, clock: Clock | None = None) -> bool:
    """SIGTERM the process group, wait up to ``grace_s``, then SIGKILL; return True if SIGKILL was needed.

    A PID that is no longer the process started (another start time or program) is left alone with
    a warning: its group is somebody else's.
    """
    if not _alive(process.pid):
        return False
    if not still_ours(process):
        print(
            f"rollback-drill: not stopping {process.name}: pid {process.pid} is no longer the process the "
            f"environment started (it started at another time or runs another program); left alone",
            file=sys.stderr,
        )
        return False
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    exited = poll_until(
        lambda: not _alive(process.pid),
        timeout_s=grace_s,
        describe=f"{process.name} (pid {process.pid}) to exit after SIGTERM",
        interval_s=0.05,
        clock=clock,
    )
    if exited:
        return False
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    poll_until(
        lambda: not _alive(process.pid),
        timeout_s=grace_s,
        describe=f"{process.name} (pid {process.pid}) to exit after SIGKILL",
        interval_s=0.05,
        clock=clock,
    )
    return True


def stop_processes(processes: tuple[LocalProcess, ...], grace_s: float = 10.0) -> list[str]:
    """Stop in reverse start order, one at a time (the API server needs etcd to shut down cleanly).

    Returns the names of the processes that ignored SIGTERM and had to be killed.
    """
    return [process.name for process in reversed(processes) if _terminate(process, grace_s)]


def stop(plane: LocalControlPlane) -> list[str]:
    return stop_processes(plane.processes)


def _process(plane: LocalControlPlane, name: str) -> LocalProcess:
    for process in plane.processes:
        if process.name == name:
            return process
    known = ", ".join(p.name for p in plane.processes) or "none"
    raise ToolchainError(f"the control plane in {plane.directory} has no process {name!r} (it has: {known})")


def kill(
    plane: LocalControlPlane,
    name: str,
    sig: signal.Signals = signal.SIGKILL,
    timeout_s: float = 10.0,
    *,
    clock: Clock | None = None,
) -> None:
    """Send ``sig`` to one component (SIGKILL by default: a crash, no clean shutdown) and wait until it is gone."""
    process = _process(plane, name)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    wait_until(
        lambda: not _alive(process.pid),
        timeout_s=timeout_s,
        describe=f"{name} (pid {process.pid}) to exit after signal {sig.name}",
        interval_s=0.02,
        clock=clock,
        hint=f"the process may ignore {sig.name}; SIGKILL cannot be ignored",
    )


def _kubeconfig_ssl_context(kubeconfig: str) -> ssl.SSLContext:
    """The CA and the admin client certificate the environment's kubeconfig names."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    context = ssl.create_default_context(cafile=cluster["certificate-authority"])
    context.load_cert_chain(user["client-certificate"], user["client-key"])
    return context


def start_again(plane: LocalControlPlane, name: str, timeout_s: float = 90.0) -> LocalControlPlane:
    """Start a component that is no longer running, with the arguments it was first started with.

    Returns the control plane with the new PID, which the caller records (the environment's state
    file) so that ``env down`` stops the new process. For the API server this returns once
    ``/readyz`` answers ok, for etcd once ``/health`` does; other components once they are running.
    """
    process = _process(plane, name)
    if _alive(process.pid):
        raise ToolchainError(f"{name} (pid {process.pid}) is still running; stop it before starting it again")
    if not process.argv:
        raise ToolchainError(
            f"the environment does not record how {name} was started; remove it with `rollback-drill env down` and create it again"
        )
    restarted = _spawn(name, list(process.argv), Path(plane.directory))
    try:
        if name == "kube-apiserver":
            _wait_http(f"{plane.server}/readyz", restarted, timeout_s, _kubeconfig_ssl_context(plane.kubeconfig))
        elif name == "etcd":
            _wait_http(f"http://127.0.0.1:{plane.ports['etcd']}/health", restarted, timeout_s)
        else:
            _require_alive([restarted])
    except BaseException:
        stop_processes((restarted,))
        raise
    processes = tuple(restarted if p.name == name else p for p in plane.processes)
    return replace(plane, processes=processes)


def fake_node_manifest(name: str) -> dict[str, object]:
    """A node kwok manages: ready, schedulable, with room for every drill replica."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    }
