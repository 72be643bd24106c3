"""A drill environment: a cluster plus a TaskDB, created, recorded in a state file, and removed.

``rollback-drill env up --name NAME`` and the pytest fixtures both go through
``bring_up``; ``tear_down`` removes everything the state records. The state file
(``$XDG_STATE_HOME/rollback-drill/envs/NAME.json``, mode 0600) is written before
anything is started and updated after each part, so a crash at any point still
leaves a record that ``env down`` can clean up from.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollback_drill.config import DrillConfig, load_config
from rollback_drill.errors import ConfigError, InputError, ToolchainError, UnsafeTarget
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.kube.conflict import suppress_conflict
from rollback_drill.paths import state_home
from rollback_drill.targets import kind, local
from rollback_drill.targets.cluster import Cluster, TargetKind, api_client, identify
from rollback_drill.taskdb import providers
from rollback_drill.taskdb.providers import ProviderName, TaskDB
from rollback_drill.timing.wait import wait_until
from rollback_drill.toolchain import flowengine_image
from rollback_drill.toolchain.build import ensure_binaries
from rollback_drill.toolchain.images import ensure_postgres_image
from rollback_drill.world.manifests import CRASH_LOOP_STAGE, PodRuntime
from rollback_drill.world.seed import seed_world

DRILL_NAMESPACES = ("production", "staging", "monitoring")
KIND_FLOWENGINE_NODE_PORT = 30080
"""The flowengine Service's NodePort on kind, published on 127.0.0.1 for the drill's client."""
KIND_WORLD_ROLLOUT_TIMEOUT_S = 300.0
"""On kind the flowengine pods really start (a Python process each, on a machine of a few cores)."""


def envs_dir() -> Path:
    return state_home() / "envs"


def state_path(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"environment name {name!r} is not valid; use letters, digits and dashes")
    return envs_dir() / f"{name}.json"


def write_private(path: Path, text: str) -> None:
    """Write ``path`` (through a temporary file and a rename) readable by its owner only, from its first byte.

    The state holds the TaskDB password: the file is created 0600 and its directory 0700, rather
    than written and then narrowed, which would leave a moment in which others can read it.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a crash may have other modes; O_EXCL below takes only a fresh file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)


@dataclass
class EnvironmentState:
    """What an environment is made of; written to the state file as it comes up."""

    name: str
    target: TargetKind
    directory: str
    created_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    kubeconfig: str | None = None
    context: str | None = None
    fingerprint: str | None = None
    server_version: str | None = None
    control_plane: dict[str, Any] | None = None
    taskdb: dict[str, Any] | None = None
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Processes started beside the cluster (FlowEngine simulator, notification sinks): name -> {pid, port, url}.

    On kind, ``flowengine`` has a ``url`` and no ``pid``: FlowEngine runs as pods behind its Service."""
    timings_s: dict[str, float] = field(default_factory=dict)
    kind_cluster: dict[str, Any] | None = None
    """The kind cluster (``targets.kind.KindCluster.to_state``), when the target is kind."""
    pod_runtime: dict[str, Any] | None = None
    """How FlowEngine pods run on kind: ``{"image", "node_port", "taskdb_host", "taskdb_port"}``."""
    audit_log: str | None = None
    """The API server's audit log of the drill namespaces (local target), which a drill slices into its bundle."""

    def save(self) -> None:
        path = state_path(self.name)
        write_private(path, json.dumps(self.__dict__, indent=2, sort_keys=True))

    @classmethod
    def load(cls, name: str) -> EnvironmentState:
        path = state_path(name)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            known = ", ".join(sorted(p.stem for p in envs_dir().glob("*.json"))) or "none"
            raise InputError(
                f"no drill environment named {name!r} (known: {known}); create it with `rollback-drill env up --name {name}`"
            ) from exc
        except json.JSONDecodeError as exc:
            raise InputError(
                f"state file {path} is not valid JSON ({exc}); remove it after checking nothing is running"
            ) from exc
        return cls(**data)

    def taskdb_handle(self) -> TaskDB | None:
        return TaskDB.from_state(self.taskdb) if self.taskdb else None

    def cluster(self) -> Cluster:
        if not (self.kubeconfig and self.fingerprint and self.server_version):
            raise InputError(
                f"environment {self.name!r} has no cluster yet (its start-up did not finish); run `rollback-drill env down --name {self.name}`"
            )
        return Cluster(
            kind=self.target,
            kubeconfig=self.kubeconfig,
            context=self.context,
            server=self.fingerprint.split("#", 1)[0],
            fingerprint=self.fingerprint,
            server_version=self.server_version,
            created_by_drill=True,
        )

    def world_kwargs(self) -> dict[str, Any]:
        """What ``seed_world`` needs besides the configuration for this environment's pods (nothing on local)."""
        db = self.taskdb_handle()
        if not self.pod_runtime or db is None:
            return {}
        runtime = PodRuntime(image=str(self.pod_runtime["image"]), node_port=int(self.pod_runtime["node_port"]))
        pod_dsn = replace(db, host=str(self.pod_runtime["taskdb_host"]), port=int(self.pod_runtime["taskdb_port"])).dsn
        return {"runtime": runtime, "pod_taskdb_dsn": pod_dsn, "rollout_timeout_s": KIND_WORLD_ROLLOUT_TIMEOUT_S}

    def flowengine_client(self) -> FlowEngineClient:
        """FlowEngine of this environment: the simulator, or on kind the pods' Service and their monitoring."""
        service = self.services.get("flowengine")
        if not service:
            raise InputError(
                f"environment {self.name!r} has no FlowEngine (made with --bare?); "
                f"recreate it with `rollback-drill env up --name {self.name}`"
            )
        monitoring = service.get("monitoring_url")
        return FlowEngineClient(str(service["url"]), monitoring_url=str(monitoring) if monitoring else None)

    def public(self) -> dict[str, Any]:
        """For `env status --json` and `env up --json`: never the password."""
        db = self.taskdb_handle()
        return {
            "name": self.name,
            "target": self.target,
            "kubeconfig": self.kubeconfig,
            "server_version": self.server_version,
            "fingerprint": self.fingerprint,
            "taskdb": db.public() if db else None,
            "services": {k: {key: v for key, v in s.items() if key != "token"} for k, s in self.services.items()},
            "created_at": self.created_at,
            "timings_s": self.timings_s,
        }


def known_drill_fingerprints() -> frozenset[str]:
    """Every cluster listed in a state file counts as created by the drill."""
    found = set()
    for path in envs_dir().glob("*.json"):
        with suppress(OSError, json.JSONDecodeError):
            fingerprint = json.loads(path.read_text()).get("fingerprint")
            if fingerprint:
                found.add(str(fingerprint))
    return frozenset(found)


def new_env_name() -> str:
    return f"drill-{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"


def _timed(state: EnvironmentState, part: str, progress: Callable[[str], None], fn: Callable[[], Any]) -> Any:
    started = time.monotonic()
    progress(f"{part} ...")
    result = fn()
    state.timings_s[part] = round(time.monotonic() - started, 2)
    progress(f"{part}: {state.timings_s[part]:.1f}s")
    return result


def _add_fake_nodes(core: client.CoreV1Api) -> None:
    for index in range(local.NODE_COUNT):
        with suppress(ApiException):
            core.create_node(local.fake_node_manifest(f"kwok-node-{index}"))  # type: ignore[arg-type] # a manifest dict is accepted

    def nodes_ready() -> bool:
        nodes = core.list_node().items
        ready = [
            n
            for n in nodes
            if n.status and any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        ]
        return len(ready) >= local.NODE_COUNT

    wait_until(
        nodes_ready,
        timeout_s=60,
        describe=f"{local.NODE_COUNT} kwok nodes Ready",
        hint="see kwok.log in the environment directory",
    )


def _prepare_cluster(kubeconfig: str, *, fake_nodes: bool = True) -> None:
    """Fake nodes for kwok (not on kind, which has real ones), the drill namespaces, and a wait for what a
    fresh cluster creates lazily."""
    api = api_client(kubeconfig)
    try:
        core = client.CoreV1Api(api)
        if fake_nodes:
            _add_fake_nodes(core)
        for name in DRILL_NAMESPACES:
            with suppress_conflict():
                core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

        def default_service_accounts() -> bool:
            for namespace in ("default", *DRILL_NAMESPACES):
                try:
                    core.read_namespaced_service_account("default", namespace)
                except ApiException as exc:
                    if exc.status == 404:
                        return False
                    raise
            return True

        wait_until(
            default_service_accounts,
            timeout_s=60,
            describe="the default ServiceAccount in every drill namespace",
            hint="the controller manager creates them; see kube-controller-manager.log",
        )
    finally:
        api.close()


def bring_up(
    name: str,
    *,
    target: TargetKind = "local",
    taskdb: ProviderName = "container",
    binaries_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
    with_world: bool = False,
    phase: int = 6,
    config: DrillConfig | None = None,
) -> EnvironmentState:
    """Create a cluster and a TaskDB; with ``with_world``, also the seeded world, the simulator and the sinks.

    On failure, whatever was started is removed again.
    """
    if target == "kind":
        check_kind_target(taskdb)
    if target == "kubeconfig":
        raise ConfigError(
            "`env up` creates environments; a --target kubeconfig cluster already exists and is used with `rollback-drill run --target kubeconfig`"
        )
    path = state_path(name)
    if path.exists():
        raise InputError(
            f"a drill environment named {name!r} already exists ({path}); use it with --env {name} or remove it with `rollback-drill env down --name {name}`"
        )
    # An existing database is checked before anything is started: a missing or wrong DSN is refused at once.
    existing_db = providers.from_dsn() if taskdb == "dsn" else None
    if existing_db is not None and with_world:
        raise UnsafeTarget(
            f"refusing to seed a drill world into TaskDB {existing_db.redacted_dsn}: the drill did not create it; "
            "leave --taskdb out for a TaskDB of the environment's own, or pass --bare for a cluster beside it"
        )
    directory = state_home() / "envs" / name
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    state = EnvironmentState(name=name, target=target, directory=str(directory))
    state.save()
    try:
        if target == "kind":
            _bring_up_kind(state, directory, progress, with_world=with_world, phase=phase, config=config)
            return state
        binaries = _timed(state, "binaries", progress, lambda: ensure_binaries(binaries_dir))
        plane = _timed(
            state,
            "control plane",
            progress,
            lambda: local.start(
                directory / "cluster",
                binaries,
                extra_stages=CRASH_LOOP_STAGE + flowengine_logs(directory),
                audit_namespaces=DRILL_NAMESPACES,
            ),
        )
        state.control_plane = plane.to_state()
        state.audit_log = plane.audit_log
        state.kubeconfig = plane.kubeconfig
        state.save()
        _timed(state, "nodes and namespaces", progress, lambda: _prepare_cluster(plane.kubeconfig))
        cluster = identify(target, plane.kubeconfig, created_by_drill=True)
        state.fingerprint = cluster.fingerprint
        state.server_version = cluster.server_version
        state.save()
        db = existing_db or _timed(state, "taskdb", progress, lambda: _start_taskdb(taskdb, directory, name))
        state.taskdb = db.to_state()
        state.save()
        if with_world:
            world_config = config or load_config()
            _timed(state, "world", progress, lambda: _seed(cluster, db, world_config, phase))
            state.services["flowengine"] = _timed(
                state,
                "flowengine simulator",
                progress,
                lambda: start_simulator(directory, plane.kubeconfig, db, world_config),
            )
            state.save()
            state.services["sinks"] = _timed(state, "notification sinks", progress, lambda: start_sinks(directory))
            state.save()
            _timed(state, "monitoring chain", progress, lambda: bring_up_monitoring(state, directory, plane.kubeconfig))
    except BaseException:
        tear_down(state)
        raise
    return state


def check_kind_target(taskdb: ProviderName) -> None:
    """Refuse --target kind at once, naming what is missing here (Docker, the kind binary, the node image)."""
    if taskdb != "container":
        raise ConfigError(
            f"--target kind needs --taskdb container (the FlowEngine pods reach TaskDB on kind's Docker network), "
            f"not --taskdb {taskdb}"
        )
    problems = kind.missing()
    if problems:
        raise ConfigError("--target kind cannot run here: " + "; ".join(problems))


def kind_cluster_name(env_name: str) -> str:
    """A kind cluster name (at most 42 characters) that says which environment it belongs to."""
    short = "".join(c if c.isalnum() else "-" for c in env_name.lower()).strip("-")[:30].strip("-")
    return f"rbd-{short or 'env'}-{secrets.token_hex(2)}"


def _bring_up_kind(
    state: EnvironmentState,
    directory: Path,
    progress: Callable[[str], None],
    *,
    with_world: bool,
    phase: int,
    config: DrillConfig | None,
) -> None:
    """A kind cluster, TaskDB on kind's network, and (with the world) FlowEngine as real pods of the simulator image."""
    cluster_dir = directory / "cluster"
    made = _timed(
        state,
        "kind cluster",
        progress,
        lambda: kind.create(kind_cluster_name(state.name), cluster_dir, publish=(KIND_FLOWENGINE_NODE_PORT,)),
    )
    state.kind_cluster = made.to_state()
    state.kubeconfig = made.kubeconfig
    state.save()
    _timed(state, "namespaces", progress, lambda: _prepare_cluster(made.kubeconfig, fake_nodes=False))
    cluster = identify("kind", made.kubeconfig, created_by_drill=True)
    state.fingerprint = cluster.fingerprint
    state.server_version = cluster.server_version
    state.save()
    db = _timed(
        state,
        "taskdb",
        progress,
        lambda: providers.start_container(ensure_postgres_image(), label=state.name, network=kind.KIND_NETWORK),
    )
    state.taskdb = db.to_state()
    state.save()
    if not with_world:
        return
    world_config = config or load_config()
    image = _timed(state, "flowengine image", progress, flowengine_image.ensure_image)
    _timed(state, "flowengine image into the nodes", progress, lambda: kind.load_image(made, image))
    state.pod_runtime = {
        "image": image,
        "node_port": KIND_FLOWENGINE_NODE_PORT,
        "taskdb_host": kind.network_address(str(db.container_id)),
        "taskdb_port": 5432,
    }
    state.save()

    def seed() -> None:
        api = cluster.api_client()
        try:
            seed_world(api, cluster, world_config, phase, db, **state.world_kwargs())
        finally:
            api.close()

    _timed(state, "world (flowengine pods)", progress, seed)
    state.services["flowengine-monitor"] = _timed(
        state,
        "flowengine monitoring",
        progress,
        lambda: start_simulator(directory, made.kubeconfig, db, world_config, monitor=True),
    )
    state.services["flowengine"] = {
        "url": made.url(KIND_FLOWENGINE_NODE_PORT),
        "monitoring_url": state.services["flowengine-monitor"]["url"],
        "image": image,
        "pods": True,
    }
    state.save()
    state.services["sinks"] = _timed(state, "notification sinks", progress, lambda: start_sinks(directory))
    state.save()


def flowengine_logs(directory: Path) -> str:
    """kwok serves `kubectl logs deployment/flowengine` from the simulator's own log, as the runbook reads it."""
    return f"""
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: flowengine-logs
spec:
  selector:
    matchNamespaces:
    - production
    - staging
  logs:
  - containers:
    - flowengine
    logsFile: {directory / "logs" / "flowengine.cri.log"}
    follow: true
"""


def _seed(cluster: Cluster, db: TaskDB, config: DrillConfig, phase: int) -> None:
    api = cluster.api_client()
    try:
        seed_world(api, cluster, config, phase, db, time_scale=config.time_scale)
    finally:
        api.close()


def _start_service(
    name: str, argv: list[str], directory: Path, env: dict[str, str], timeout_s: float = 30
) -> dict[str, Any]:
    """Start a helper process of the environment in its own session; wait for its one-line JSON 'ready' report."""
    log = directory / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as err:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    assert proc.stdout is not None
    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(proc.stdout.readline().decode()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout_s)
    if not ready or not ready[0].strip():
        local.stop_processes((local.LocalProcess(name, proc.pid, str(log)),))
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise ToolchainError(f"{name} did not report ready within {timeout_s:.0f}s; see {log}:\n{tail}")
    info: dict[str, Any] = json.loads(ready[0])
    info["pid"] = proc.pid
    identity = local.process_identity(proc.pid, argv[0])
    info["identity"] = identity.to_state() if identity else None
    info["log"] = str(log)
    return info


def start_simulator(
    directory: Path, kubeconfig: str, db: TaskDB, config: DrillConfig, *, monitor: bool = False
) -> dict[str, Any]:
    """The simulator beside the cluster, following the flowengine pods through a watch.

    On ``local`` it is FlowEngine (kwok's pods run nothing). On kind (``monitor``) it is the monitoring
    side of the real pods: it shares their injections in TaskDB and answers signals, metrics and logs
    even while every pod crash-loops.
    """
    names = config.kubernetes
    env = dict(os.environ, ROLLBACK_DRILL_TASKDB_DSN=db.dsn)
    argv = [
        sys.executable, "-m", "rollback_drill.flowengine", "--port", "0", "--dsn-env", "ROLLBACK_DRILL_TASKDB_DSN",
        "--pilot-repo", config.pilot_repo,
        "--allowlist-source", "rollback_drill.world.pod_view:cluster_view",
        "--allowlist-arg", f"kubeconfig={kubeconfig}", "--allowlist-arg", f"namespace={names.namespace}",
        "--allowlist-arg", f"selector=app={names.deployment}", "--allowlist-arg", f"container={names.container}",
    ]  # fmt: skip
    if monitor:
        argv += ["--shared-injections"]
        return _start_service("flowengine-monitor", argv, directory, env)
    argv += [
        "--state-file", str(directory / "flowengine-injections.json"),
        "--cri-log", str(directory / "logs" / "flowengine.cri.log"),
    ]  # fmt: skip
    return _start_service("flowengine", argv, directory, env)


def start_sinks(directory: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "rollback_drill.notify.sinks", "--dir", str(directory / "sinks")]
    return _start_service("sinks", argv, directory, dict(os.environ))


# --- the monitoring chain beside the world ---------------------------------------------------------------
# Alertmanager, Prometheus and kube-state-metrics run under one process (rollback_drill.world.monitoring_chain),
# which stops them on SIGTERM; their own pids are recorded too, so `env down` stops them even if it died.


def bring_up_monitoring(state: EnvironmentState, directory: Path, kubeconfig: str) -> None:
    """Start the chain beside the simulator and the sinks; record it and each of its servers in the state."""
    sinks = state.services["sinks"]
    argv = [
        sys.executable, "-m", "rollback_drill.world.monitoring_chain", "--dir", str(directory / "monitoring"),
        "--kubeconfig", kubeconfig, "--flowengine-url", str(state.services["flowengine"]["url"]),
        "--sinks-ready-line", json.dumps(sinks),
    ]  # fmt: skip
    info = _start_service("monitoring", argv, directory, dict(os.environ), timeout_s=MONITORING_READY_TIMEOUT_S)
    servers = info.pop("servers", {})
    state.services["monitoring"] = info
    state.services.update(servers)
    state.save()


MONITORING_READY_TIMEOUT_S = 90.0
"""Three servers one after another, each ready in about a second; the rest is a busy machine."""


def monitoring_urls(state: EnvironmentState) -> dict[str, str]:
    """Prometheus's and Alertmanager's URLs, for `env up` and `env status` (empty without the chain)."""
    chain = state.services.get("monitoring") or {}
    return {k: str(chain[f"{k}_url"]) for k in ("prometheus", "alertmanager") if chain.get(f"{k}_url")}


# --- end of the monitoring chain -------------------------------------------------------------------------


def _start_taskdb(provider: ProviderName, directory: Path, name: str) -> TaskDB:
    if provider == "container":
        return providers.start_container(ensure_postgres_image(), label=name)
    if provider == "local":
        return providers.start_local(directory / "taskdb")
    if provider == "dsn":
        return providers.from_dsn()
    raise ConfigError(f"--taskdb {provider!r} is not one of {', '.join(providers.PROVIDERS)}")


def tear_down(state: EnvironmentState) -> list[str]:
    """Remove everything the state records; return what needed force. Safe to call twice."""
    forced: list[str] = []
    for service_name, service in state.services.items():
        pid = int(service.get("pid", 0))
        if pid:
            identity = local.ProcessIdentity.from_state(service.get("identity"))
            process = local.LocalProcess(service_name, pid, "", identity=identity)
            forced += [f"{service_name}:{n}" for n in local.stop_processes((process,))]
    db = state.taskdb_handle()
    if db is not None:
        providers.stop(db)
    if state.kind_cluster:
        try:
            kind.delete(kind.KindCluster.from_state(state.kind_cluster), missing_ok=True)
        except ToolchainError as exc:
            forced.append(f"kind cluster: {exc}")
    if state.control_plane:
        forced += local.stop(local.LocalControlPlane.from_state(state.control_plane))
    shutil.rmtree(state.directory, ignore_errors=True)
    with suppress(FileNotFoundError):
        state_path(state.name).unlink()
    return forced


def iter_states() -> Iterator[EnvironmentState]:
    for path in sorted(envs_dir().glob("*.json")):
        with suppress(InputError, TypeError):
            yield EnvironmentState.load(path.stem)


def ensure_toolchain(binaries_dir: Path | None = None) -> dict[str, Path]:
    """Build (or find) the binaries and the TaskDB image ahead of time: `make test` calls this first."""
    binaries = ensure_binaries(binaries_dir)
    ensure_postgres_image()
    return binaries
