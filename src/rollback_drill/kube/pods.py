"""Reading pods as ``kubectl get pods`` and ``kubectl logs`` show them: restarts, readiness, what they logged."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from kubernetes import client

from rollback_drill.timing.wait import wait_until


def pod_name(pod: client.V1Pod) -> str:
    return str(pod.metadata.name) if pod.metadata and pod.metadata.name else "?"


def container_statuses(pod: client.V1Pod) -> list[client.V1ContainerStatus]:
    return list(pod.status.container_statuses or []) if pod.status else []


def restart_count(pods: Iterable[client.V1Pod]) -> int:
    """The RESTARTS column of ``kubectl get pods``, summed over every container of every pod."""
    return sum(int(status.restart_count or 0) for pod in pods for status in container_statuses(pod))


def not_terminating(pods: Iterable[client.V1Pod]) -> list[client.V1Pod]:
    """The pods that are not on their way out: a rollout's old pods drain for a while after it completes."""
    return [pod for pod in pods if not (pod.metadata and pod.metadata.deletion_timestamp)]


def pod_state(pod: client.V1Pod) -> str:
    """``<name>:<phase>:ready`` or ``<name>:<phase>:not-ready``; ready means every container (at least one) is."""
    statuses = container_statuses(pod)
    ready = bool(statuses) and all(status.ready for status in statuses)
    phase = pod.status.phase if pod.status else None
    return f"{pod_name(pod)}:{phase}:{'ready' if ready else 'not-ready'}"


def states_by_component(pods: Iterable[client.V1Pod], components: Sequence[str]) -> dict[str, list[str]]:
    """Component → the states of its pods, a pod belonging to ``<component>-…`` (etcd-node, coredns-abc12-x)."""
    seen: dict[str, list[str]] = {name: [] for name in components}
    for pod in pods:
        for name in components:
            if pod_name(pod).startswith(name + "-"):
                seen[name].append(pod_state(pod))
    return seen


def all_running_ready(states: dict[str, list[str]]) -> bool:
    """Every component has a pod, and each of its pods is Running and ready."""
    return all(pods and all(":Running:ready" in state for state in pods) for pods in states.values())


def wait_components_running(
    api: client.ApiClient, namespace: str, components: Sequence[str], *, timeout_s: float
) -> dict[str, list[str]]:
    """Wait until every component's pods in ``namespace`` are Running and ready; return their states."""
    core = client.CoreV1Api(api)

    def running() -> dict[str, list[str]] | None:
        states = states_by_component(core.list_namespaced_pod(namespace).items, components)
        return states if all_running_ready(states) else None

    seen: dict[str, list[str]] = wait_until(
        running,
        timeout_s=timeout_s,
        interval_s=2,
        describe=f"pods {', '.join(components)} Running and ready in {namespace}",
    )
    return seen


def wait_logs_show(
    api: client.ApiClient,
    namespace: str,
    container: str,
    pods: Callable[[], Iterable[client.V1Pod]],
    text: str,
    *,
    timeout_s: float,
    hint: str = "",
) -> None:
    """Wait until the log (``kubectl logs POD -c CONTAINER``) of every pod ``pods()`` returns shows ``text``."""
    core = client.CoreV1Api(api)

    def every_pod_logged() -> bool:
        return all(
            text in core.read_namespaced_pod_log(pod_name(pod), namespace, container=container) for pod in pods()
        )

    wait_until(
        every_pod_logged,
        timeout_s=timeout_s,
        interval_s=1,
        describe=f"the log of every pod (kubectl logs -c {container}) to show {text!r}",
        hint=hint,
    )
