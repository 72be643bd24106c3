"""The objects behind the kind checks, and what counts as a pod really running on kind. No cluster needed."""

from __future__ import annotations

from kubernetes import client

from rollback_drill.targets.kind_checks import (
    FETCH_DEADLINE_S,
    HTTP_PORT,
    fetch_pod,
    fetch_script,
    hello_deployment,
    hello_service,
    pod_problems,
)

NODES = {"drill-control-plane", "drill-worker"}


def container_status(
    name: str = "flowengine", *, ready: bool = True, runtime: str = "containerd://abc", image: str = "img:1"
) -> client.V1ContainerStatus:
    return client.V1ContainerStatus(
        name=name, image=image, image_id="", ready=ready, restart_count=0, container_id=runtime
    )


def pod(
    *statuses: client.V1ContainerStatus,
    phase: str = "Running",
    node: str = "drill-worker",
    ip: str | None = "10.244.1.7",
) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name="p-1"),
        spec=client.V1PodSpec(containers=[], node_name=node),
        status=client.V1PodStatus(phase=phase, pod_ip=ip, container_statuses=list(statuses) or None),
    )


def test_the_hello_deployment_serves_on_its_port_from_a_local_image_and_is_ready_when_it_answers():
    deployment = hello_deployment("hello", "rollback-drill.local/kind-hello:1", 2)
    (container,) = deployment.spec.template.spec.containers
    assert deployment.spec.replicas == 2
    assert deployment.spec.selector.match_labels == {"app": "hello"} == deployment.spec.template.metadata.labels
    assert container.image_pull_policy == "Never"
    assert f"busybox httpd -f -p {HTTP_PORT}" in container.command[-1]
    assert container.readiness_probe.http_get.port == HTTP_PORT


def test_the_service_maps_port_80_to_the_pods_port():
    service = hello_service("hello")
    (port,) = service.spec.ports
    assert (service.metadata.name, service.spec.selector, port.port, port.target_port) == (
        "hello",
        {"app": "hello"},
        80,
        HTTP_PORT,
    )


def test_the_fetching_pod_runs_once_within_its_deadline_and_resolves_the_name_itself():
    fetching = fetch_pod("img:1", "hello.ns.svc.cluster.local")
    assert fetching.spec.restart_policy == "Never"
    assert fetching.spec.active_deadline_seconds == FETCH_DEADLINE_S
    script = fetch_script("hello.ns.svc.cluster.local")
    assert fetching.spec.containers[0].command == ["/bin/busybox", "sh", "-c", script]
    assert "busybox nslookup hello.ns.svc.cluster.local" in script
    assert 'wget -q -O - "http://$ip:80/"' in script
    assert " -T" not in script


def test_a_ready_containerd_pod_on_a_kind_node_in_the_pod_network_has_no_problem():
    assert pod_problems(pod(container_status()), NODES) == []
    assert pod_problems(pod(container_status(), container_status("sidecar")), NODES, container="flowengine") == []


def test_each_way_of_not_really_running_on_kind_is_named():
    problems = pod_problems(
        pod(container_status(ready=False, runtime="docker://x"), phase="Pending", node="laptop", ip="192.168.1.9"),
        NODES,
    )
    assert problems == [
        "p-1: Pending",
        "p-1 on laptop, kind nodes ['drill-control-plane', 'drill-worker']",
        "p-1: pod IP 192.168.1.9 not in 10.244.0.0/16",
        "p-1: container flowengine not ready (None)",
        "p-1: container flowengine is docker://x, not a containerd container",
    ]


def test_a_pod_without_ip_or_container_status_is_a_problem():
    assert pod_problems(pod(ip=None), NODES) == [
        "p-1: pod IP None not in 10.244.0.0/16",
        "p-1: 0 container status(es) for any container",
    ]
    assert pod_problems(pod(container_status("sidecar")), NODES, container="flowengine") == [
        "p-1: 0 container status(es) for flowengine"
    ]


def test_the_image_is_compared_without_its_registry():
    running = pod(container_status(image="docker.io/rollback-drill.local/flowengine:20251117-abc"))
    assert (
        pod_problems(running, NODES, container="flowengine", image="rollback-drill.local/flowengine:20251117-abc") == []
    )
    assert pod_problems(running, NODES, container="flowengine", image="rollback-drill.local/flowengine:other") == [
        "p-1 runs docker.io/rollback-drill.local/flowengine:20251117-abc, not rollback-drill.local/flowengine:other"
    ]
