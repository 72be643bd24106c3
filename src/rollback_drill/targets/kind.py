"""The `kind` target: a real Kubernetes cluster of Docker containers, created and deleted by the drill.

``kind create cluster --name N --config F --kubeconfig P --image I --wait 120s``; then the
drill also waits for the API server's ``/readyz``, every node Ready and the ``default``
ServiceAccount, since ``--wait`` covers only the control-plane node. Images built on the
host reach the nodes with ``kind load docker-image`` under a unique tag (a ``:latest`` tag
would make the kubelet try to pull). ``kind delete cluster`` gets the same ``--kubeconfig``.

Where Docker, the ``kind`` binary or the node image is missing, :func:`require` refuses
with a ``ToolchainError`` that names what is missing and how to get it; nothing here
downloads or builds anything (``toolchain.kind_image`` does that).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from rollback_drill.errors import InputError, RetryableError, ToolchainError
from rollback_drill.ports import free_port
from rollback_drill.targets.cluster import api_client
from rollback_drill.timing.wait import wait_until
from rollback_drill.toolchain import kind_image
from rollback_drill.toolchain.build import KUBERNETES_VERSION
from rollback_drill.toolchain.images import docker_reachable

CREATE_WAIT_S = 120
"""``kind create cluster --wait``: how long kind waits for the control-plane node."""
READY_TIMEOUT_S = 120.0
"""After kind returns: how long to wait for /readyz, Ready nodes and the default ServiceAccount."""
KIND_NETWORK = "kind"
"""The Docker network kind puts its nodes on."""
CLUSTER_LABEL = "io.x-k8s.kind.cluster"
"""The label kind puts on its node containers (value: the cluster name)."""
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,40}[a-z0-9])?$")
_CAPS_HINT = (
    "privileged containers fail on this host (its capability bounding set lacks a capability Docker asks for); "
    "run scripts/install-runc-wrapper.sh as root, then retry"
)


@dataclass(frozen=True)
class KindToolchain:
    """What creating a kind cluster needs: the ``kind`` binary and a node image Docker holds."""

    kind: Path
    image: str


@dataclass(frozen=True)
class KindCluster:
    """A kind cluster the drill created: enough to use it and to delete it from another process."""

    name: str
    kubeconfig: str
    config: str
    image: str
    kind: str
    workers: int = 0
    published: Mapping[int, int] = field(default_factory=dict)
    """NodePort -> port on 127.0.0.1 of this machine (kind's ``extraPortMappings``)."""

    def to_state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kubeconfig": self.kubeconfig,
            "config": self.config,
            "image": self.image,
            "kind": self.kind,
            "workers": self.workers,
            "published": {str(k): v for k, v in self.published.items()},
        }

    def url(self, node_port: int) -> str:
        """``http://127.0.0.1:<port>``: where a published NodePort answers on this machine."""
        if node_port not in self.published:
            raise InputError(
                f"NodePort {node_port} of kind cluster {self.name} is not published on 127.0.0.1 "
                f"(published: {sorted(self.published) or 'none'}); create the cluster with publish=[{node_port}]"
            )
        return f"http://127.0.0.1:{self.published[node_port]}"

    @classmethod
    def from_state(cls, data: Mapping[str, object]) -> KindCluster:
        return cls(
            name=str(data["name"]),
            kubeconfig=str(data["kubeconfig"]),
            config=str(data["config"]),
            image=str(data["image"]),
            kind=str(data["kind"]),
            workers=int(str(data.get("workers", 0))),
            published={int(k): int(v) for k, v in dict(data.get("published") or {}).items()},  # type: ignore[call-overload]
        )


def missing(*, kind_binary: Path | None = None, image: str | None = None) -> list[str]:
    """What the kind target lacks here, each with its fix; empty when it can run."""
    problems: list[str] = []
    ok, detail = docker_reachable()
    if not ok:
        problems.append(
            f"no Docker engine is reachable ({detail}): run `make docker` (Debian's docker.io, dockerd --ip 127.0.0.1)"
        )
    binary = kind_binary or kind_image.find_kind()
    if binary is None or not binary.is_file():
        problems.append(
            f"the kind binary is missing: `scripts/build-kind-node.sh` builds kind {kind_image.KIND_VERSION} "
            "from the Go module proxy into the cache (or put kind on PATH)"
        )
    if ok:
        if image is not None:
            if not _image_present(image):
                problems.append(f"the kind node image {image} is not in Docker; build it or pass another --image")
        elif kind_image.find_node_image() is None:
            problems.append(
                "the kind node image is missing (kindest/node cannot be pulled here): "
                "`scripts/build-kind-node.sh` builds it offline (Debian packages + Go-built Kubernetes "
                f"{KUBERNETES_VERSION})"
            )
    return problems


def require(*, kind_binary: Path | None = None, image: str | None = None) -> KindToolchain:
    """The kind binary and node image, or a ``ToolchainError`` naming everything missing."""
    problems = missing(kind_binary=kind_binary, image=image)
    if problems:
        raise ToolchainError("the kind target cannot run: " + "; ".join(problems))
    binary = kind_binary or kind_image.find_kind()
    node_image = image or kind_image.find_node_image()
    if binary is None or node_image is None:  # pragma: no cover - missing() said both exist
        raise ToolchainError("the kind target cannot run: the kind binary or node image vanished")
    return KindToolchain(kind=binary, image=node_image)


def _image_present(tag: str) -> bool:
    proc = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    return proc.returncode == 0


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InputError(
            f"kind cluster name {name!r} is not valid: use lower-case letters, digits, '.' and '-' "
            "(at most 42 characters, starting and ending with a letter or digit)"
        )
    return name


def cluster_config(workers: int = 0, published: Mapping[int, int] | None = None) -> dict[str, object]:
    """The kind ``Cluster`` config: API server on 127.0.0.1, one control plane, ``workers`` workers.

    ``published``: NodePort -> host port; the control-plane node publishes each on 127.0.0.1 only.
    """
    if workers < 0:
        raise InputError(f"a kind cluster cannot have {workers} workers; use 0 or more")
    control_plane: dict[str, object] = {"role": "control-plane"}
    if published:
        control_plane["extraPortMappings"] = [
            {"containerPort": node_port, "hostPort": host_port, "listenAddress": "127.0.0.1", "protocol": "TCP"}
            for node_port, host_port in sorted(published.items())
        ]
    nodes: list[dict[str, object]] = [control_plane] + [{"role": "worker"} for _ in range(workers)]
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "networking": {"apiServerAddress": "127.0.0.1"},
        "nodes": nodes,
    }


def _run(argv: list[str], what: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"{what} did not finish within {timeout_s:.0f}s: {' '.join(argv)}") from exc


def clusters(kind: Path) -> list[str]:
    proc = _run([str(kind), "get", "clusters"], "kind get clusters", 60)
    if proc.returncode != 0:
        raise ToolchainError(f"kind get clusters failed: {proc.stderr.strip()[-500:]}")
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def create(
    name: str,
    directory: Path,
    *,
    toolchain: KindToolchain | None = None,
    workers: int = 0,
    ready_timeout_s: float = READY_TIMEOUT_S,
    publish: tuple[int, ...] = (),
) -> KindCluster:
    """Create the cluster and return once /readyz, every node and the default ServiceAccount are ready.

    ``publish``: NodePorts to reach from this machine, each on a free port of 127.0.0.1 (``KindCluster.url``).
    On any failure after ``kind create`` started, the cluster is deleted before the error propagates.
    """
    check_name(name)
    tools = toolchain or require()
    if name in clusters(tools.kind):
        raise InputError(
            f"a kind cluster named {name!r} already exists; pick another name or delete it "
            f"(`kind delete cluster --name {name}`)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "kind-config.yaml"
    published = {node_port: free_port() for node_port in publish}
    config_path.write_text(yaml.safe_dump(cluster_config(workers, published), sort_keys=False))
    kubeconfig = directory / "kubeconfig"
    cluster = KindCluster(
        name=name,
        kubeconfig=str(kubeconfig),
        config=str(config_path),
        image=tools.image,
        kind=str(tools.kind),
        workers=workers,
        published=published,
    )
    argv = [
        str(tools.kind),
        "create",
        "cluster",
        "--name",
        name,
        "--config",
        str(config_path),
        "--kubeconfig",
        str(kubeconfig),
        "--image",
        tools.image,
        "--wait",
        f"{CREATE_WAIT_S}s",
    ]
    proc = _run(argv, "kind create cluster", CREATE_WAIT_S + 600)
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()
        delete(cluster, missing_ok=True)
        hint = f"; {_CAPS_HINT}" if "unable to apply caps" in output else ""
        raise ToolchainError(
            f"kind create cluster --name {name} failed (exit {proc.returncode}){hint}:\n{output[-3000:]}"
        )
    try:
        wait_ready(cluster, timeout_s=ready_timeout_s)
    except BaseException:
        delete(cluster, missing_ok=True)
        raise
    return cluster


def network_address(container: str, network: str = KIND_NETWORK) -> str:
    """A container's address on kind's Docker network, where pods reach it through their node (which
    masquerades pod traffic leaving the pod network).

    The container must have been started on that network: joining it later makes Docker re-publish the
    container's ports on new host ports.
    """
    proc = _run(
        ["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", container], "docker inspect", 60
    )
    if proc.returncode != 0:
        raise ToolchainError(f"docker inspect {container} failed: {proc.stderr.strip()[-500:]}")
    address = str((json.loads(proc.stdout or "{}").get(network) or {}).get("IPAddress") or "")
    if not address:
        raise ToolchainError(
            f"container {container} has no address on the {network} network; start it there (docker run --network {network})"
        )
    return address


def _readyz(api: client.ApiClient) -> bool:
    try:
        response = api.call_api("GET", f"{api.configuration.host}/readyz", _request_timeout=5)
    except ApiException as exc:
        raise RetryableError(f"/readyz answered {exc.status}") from exc
    except (HTTPError, OSError) as exc:
        raise RetryableError(f"/readyz unreachable: {exc}") from exc
    return bool(response.status == 200)


def _not_ready_nodes(core: client.CoreV1Api, expected: int) -> list[str]:
    nodes = core.list_node().items
    problems = [f"{expected - len(nodes)} node(s) not registered"] if len(nodes) < expected else []
    for node in nodes:
        conditions = (node.status.conditions if node.status else None) or []
        ready = next((c for c in conditions if c.type == "Ready"), None)
        if ready is None or ready.status != "True":
            name = node.metadata.name if node.metadata else "?"
            problems.append(f"{name}: {ready.reason if ready else 'no Ready condition'}")
    return problems


def wait_ready(cluster: KindCluster, *, timeout_s: float = READY_TIMEOUT_S) -> None:
    """/readyz, every node Ready, and the ``default`` ServiceAccount (what ``--wait`` does not cover)."""
    api = api_client(cluster.kubeconfig)
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout_s

    def remaining() -> float:
        return max(0.0, deadline - time.monotonic())

    def nodes_ready() -> bool:
        try:
            problems = _not_ready_nodes(core, 1 + cluster.workers)
        except (ApiException, HTTPError, OSError) as exc:
            raise RetryableError(f"listing nodes failed: {exc}") from exc
        if problems:
            raise RetryableError("; ".join(problems))
        return True

    def default_sa() -> bool:
        try:
            core.read_namespaced_service_account("default", "default")
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise RetryableError(f"reading ServiceAccount default/default: {exc.status}") from exc
        except (HTTPError, OSError) as exc:
            raise RetryableError(f"reading ServiceAccount default/default: {exc}") from exc
        return True

    try:
        wait_until(
            lambda: _readyz(api),
            timeout_s=remaining(),
            interval_s=1,
            describe=f"kind cluster {cluster.name}: the API server's /readyz",
        )
        wait_until(
            nodes_ready,
            timeout_s=remaining(),
            interval_s=2,
            describe=f"kind cluster {cluster.name}: {1 + cluster.workers} node(s) Ready",
            hint=f"docker exec {cluster.name}-control-plane journalctl -u kubelet",
        )
        wait_until(
            default_sa,
            timeout_s=remaining(),
            interval_s=1,
            describe=f"kind cluster {cluster.name}: ServiceAccount default/default",
        )
    finally:
        api.close()


def unique_tag(repository: str) -> str:
    """A tag nobody used before: ``kind load`` with ``:latest`` would make the kubelet pull."""
    return f"{repository}:{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"


def load_image(cluster: KindCluster, image: str) -> None:
    """``kind load docker-image``: make a host image available to every node of the cluster."""
    tag = image.rsplit("/", 1)[-1]
    if ":" not in tag or tag.endswith(":latest"):
        raise InputError(
            f"image {image!r} has no tag or :latest, which makes the kubelet pull it; use a unique tag (unique_tag())"
        )
    if not _image_present(image):
        raise InputError(f"image {image!r} is not in the local Docker engine; build or tag it first")
    proc = _run([cluster.kind, "load", "docker-image", image, "--name", cluster.name], "kind load docker-image", 600)
    if proc.returncode != 0:
        raise ToolchainError(f"kind load docker-image {image} --name {cluster.name} failed:\n{proc.stderr[-2000:]}")


def delete(cluster: KindCluster, *, missing_ok: bool = False) -> None:
    """``kind delete cluster --name N --kubeconfig P``; also removes the config kind was given."""
    kind = cluster.kind if Path(cluster.kind).is_file() else shutil.which("kind")
    if kind is None:
        raise ToolchainError(f"cannot delete kind cluster {cluster.name}: the kind binary {cluster.kind} is gone")
    proc = _run(
        [kind, "delete", "cluster", "--name", cluster.name, "--kubeconfig", cluster.kubeconfig], "kind delete", 300
    )
    if proc.returncode != 0 and not missing_ok:
        raise ToolchainError(f"kind delete cluster --name {cluster.name} failed:\n{proc.stderr.strip()[-1000:]}")
    Path(cluster.config).unlink(missing_ok=True)


def node_containers(name: str) -> list[str]:
    """The Docker containers of cluster ``name`` (kind's own label), for checks and clean-up."""
    proc = _run(
        ["docker", "ps", "-a", "--filter", f"label={CLUSTER_LABEL}={name}", "--format", "{{.Names}}"],
        "docker ps",
        60,
    )
    return sorted(line for line in proc.stdout.splitlines() if line)
