"""Checks that a kind cluster is the real thing: pods on its nodes, in its pod network, reachable through a Service.

A tiny web server (Debian's static busybox, built on this machine and loaded with
``kind load``) is rolled out behind a Service, and a pod of the cluster fetches its
page through CoreDNS and kube-proxy, as any workload of the cluster would.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kubernetes import client

from rollback_drill.timing.wait import wait_until

POD_SUBNET = ipaddress.ip_network("10.244.0.0/16")
"""kind's default pod subnet."""
HTTP_PORT = 8080
"""Where the web server listens in its pod; its Service maps port 80 to it."""
FETCH_POD = "fetch"
FETCH_DEADLINE_S = 110
"""The fetching pod's activeDeadlineSeconds: what bounds a hung connection (busybox's wget -T crashes here)."""


def hello_deployment(name: str, image: str, replicas: int) -> client.V1Deployment:
    """Pods that serve ``hello from <pod name>`` on ``HTTP_PORT``, Ready once they answer."""
    labels = {"app": name}
    script = (
        'mkdir -p /tmp/www && echo "hello from $(hostname)" > /tmp/www/index.html '
        f"&& exec busybox httpd -f -p {HTTP_PORT} -h /tmp/www"
    )
    container = client.V1Container(
        name=name,
        image=image,
        image_pull_policy="Never",
        command=["/bin/busybox", "sh", "-c", script],
        ports=[client.V1ContainerPort(container_port=HTTP_PORT)],
        readiness_probe=client.V1Probe(http_get=client.V1HTTPGetAction(path="/", port=HTTP_PORT), period_seconds=2),
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=client.V1PodSpec(containers=[container])
            ),
        ),
    )


def hello_service(name: str) -> client.V1Service:
    """Port 80 of the Service ``name`` goes to ``HTTP_PORT`` of the Deployment's pods."""
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(selector={"app": name}, ports=[client.V1ServicePort(port=80, target_port=HTTP_PORT)]),
    )


def create_hello_app(api: client.ApiClient, namespace: str, name: str, image: str, replicas: int) -> str:
    """Create the web server's Deployment and its Service in ``namespace``; return the name of both."""
    client.AppsV1Api(api).create_namespaced_deployment(namespace, hello_deployment(name, image, replicas))
    client.CoreV1Api(api).create_namespaced_service(namespace, hello_service(name))
    return name


def fetch_script(host: str) -> str:
    """Shell for busybox: resolve ``host`` through CoreDNS, then fetch ``http://<ip>:80/``; up to 30 tries.

    Debian's static (glibc) busybox crashes in wget on a host name and with -T, so the name goes
    through busybox's own nslookup (CoreDNS, via the kube-dns Service) and wget gets IP and port;
    the pod's activeDeadlineSeconds bounds a hung connection instead of -T.
    """
    return (
        "for i in $(busybox seq 1 30); do "
        f"ip=$(busybox nslookup {host} | busybox sed -n 's/^Address: *\\([0-9.]*\\)$/\\1/p' | busybox tail -n 1); "
        '[ -n "$ip" ] && busybox wget -q -O - "http://$ip:80/" && exit 0; busybox sleep 2; done; exit 1'
    )


def fetch_pod(image: str, host: str) -> client.V1Pod:
    """A pod that fetches the page of ``host`` once and ends (Succeeded or Failed)."""
    container = client.V1Container(
        name=FETCH_POD, image=image, image_pull_policy="Never", command=["/bin/busybox", "sh", "-c", fetch_script(host)]
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=FETCH_POD),
        spec=client.V1PodSpec(restart_policy="Never", active_deadline_seconds=FETCH_DEADLINE_S, containers=[container]),
    )


@dataclass(frozen=True)
class ServiceFetch:
    """How a pod's fetch of a Service's page ended."""

    url: str
    phase: str
    """``Succeeded`` or ``Failed``."""
    log: str
    """What the fetching pod printed: the page, when it succeeded."""


def fetch_through_service(
    api: client.ApiClient, namespace: str, service: str, image: str, *, timeout_s: float = 120
) -> ServiceFetch:
    """Run a pod of the cluster that fetches ``http://<service>.<namespace>.svc.cluster.local/``; wait until it ends."""
    core = client.CoreV1Api(api)
    host = f"{service}.{namespace}.svc.cluster.local"
    url = f"http://{host}/"
    core.create_namespaced_pod(namespace, fetch_pod(image, host))

    def finished() -> str | None:
        pod = core.read_namespaced_pod(FETCH_POD, namespace)
        phase = pod.status.phase if pod.status else None
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_until(finished, timeout_s=timeout_s, interval_s=2, describe=f"pod {FETCH_POD} getting {url}")
    return ServiceFetch(url, phase, str(core.read_namespaced_pod_log(FETCH_POD, namespace)))


def pod_problems(
    pod: client.V1Pod, kind_nodes: set[str], *, container: str | None = None, image: str | None = None
) -> list[str]:
    """Why ``pod`` is not Running on a kind node, with an IP of the pod network and ready containerd containers.

    With ``container``, only that container's status counts (and it must be there exactly once); with
    ``image``, it must run that image, whatever registry the node reports it under. Empty: nothing wrong.
    """
    meta = pod.metadata or client.V1ObjectMeta()
    spec = pod.spec or client.V1PodSpec(containers=[])
    status = pod.status or client.V1PodStatus()
    name = meta.name
    problems = []
    if status.phase != "Running":
        problems.append(f"{name}: {status.phase}")
    if spec.node_name not in kind_nodes:
        problems.append(f"{name} on {spec.node_name}, kind nodes {sorted(kind_nodes)}")
    if not status.pod_ip or ipaddress.ip_address(status.pod_ip) not in POD_SUBNET:
        problems.append(f"{name}: pod IP {status.pod_ip} not in {POD_SUBNET}")
    statuses = [s for s in status.container_statuses or [] if container is None or s.name == container]
    if not statuses or (container is not None and len(statuses) != 1):
        return [*problems, f"{name}: {len(statuses)} container status(es) for {container or 'any container'}"]
    for item in statuses:
        if not item.ready:
            problems.append(f"{name}: container {item.name} not ready ({item.state})")
        if not str(item.container_id or "").startswith("containerd://"):
            problems.append(f"{name}: container {item.name} is {item.container_id}, not a containerd container")
        if image is not None and not str(item.image).endswith(image.split("/", 1)[-1]):
            problems.append(f"{name} runs {item.image}, not {image}")
    return problems
