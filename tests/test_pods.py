"""Reading pods as kubectl shows them, on pod objects as the API returns them. No cluster needed."""

from __future__ import annotations

from datetime import UTC, datetime

from kubernetes import client

from rollback_drill.kube.pods import (
    all_running_ready,
    not_terminating,
    pod_name,
    pod_state,
    restart_count,
    states_by_component,
)


def pod(
    name: str,
    *,
    phase: str = "Running",
    ready: tuple[bool, ...] = (True,),
    restarts: tuple[int, ...] = (0,),
    deleting: bool = False,
) -> client.V1Pod:
    statuses = [
        client.V1ContainerStatus(name=f"c{i}", image="img", image_id="", ready=is_ready, restart_count=count)
        for i, (is_ready, count) in enumerate(zip(ready, restarts, strict=True))
    ]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, deletion_timestamp=datetime.now(UTC) if deleting else None),
        status=client.V1PodStatus(phase=phase, container_statuses=statuses or None),
    )


def test_restarts_are_summed_over_every_container_of_every_pod():
    pods = [pod("a", ready=(True, True), restarts=(2, 3)), pod("b", restarts=(0,)), client.V1Pod()]
    assert restart_count(pods) == 5
    assert restart_count([]) == 0


def test_pods_on_their_way_out_are_left_out():
    pods = [pod("old", deleting=True), pod("new")]
    assert [pod_name(p) for p in not_terminating(pods)] == ["new"]


def test_a_pod_is_ready_only_when_every_container_is_and_it_has_one():
    assert pod_state(pod("a")) == "a:Running:ready"
    assert pod_state(pod("b", ready=(True, False), restarts=(0, 0))) == "b:Running:not-ready"
    assert pod_state(pod("c", phase="Pending", ready=(), restarts=())) == "c:Pending:not-ready"
    assert pod_name(client.V1Pod()) == "?"


def test_pods_belong_to_the_component_their_name_starts_with():
    pods = [pod("etcd-node"), pod("coredns-abc-1"), pod("coredns-abc-2", ready=(False,)), pod("kube-proxy-x")]
    states = states_by_component(pods, ["etcd", "coredns", "kube-scheduler"])
    assert states == {
        "etcd": ["etcd-node:Running:ready"],
        "coredns": ["coredns-abc-1:Running:ready", "coredns-abc-2:Running:not-ready"],
        "kube-scheduler": [],
    }


def test_every_component_needs_a_pod_and_all_its_pods_running_and_ready():
    assert all_running_ready({"etcd": ["etcd-node:Running:ready"]})
    assert not all_running_ready({"etcd": ["etcd-node:Running:ready"], "kube-scheduler": []})
    assert not all_running_ready({"coredns": ["coredns-1:Running:ready", "coredns-2:Running:not-ready"]})
    assert not all_running_ready({"etcd": ["etcd-node:Pending:not-ready"]})
