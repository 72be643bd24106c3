"""Small Kubernetes objects the drill creates for itself."""

from __future__ import annotations

from typing import Any

from kubernetes import client


def simple_deployment(name: str, replicas: int, *, labels: dict[str, str] | None = None) -> client.V1Deployment:
    """A Deployment whose pods kwok (or a kubelet) can run: one container, no volumes."""
    selector = {"app": name, **(labels or {})}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=selector),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=selector),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=selector),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name=name, image="registry.invalid/drill/probe:1")]
                ),
            ),
        ),
    )


def as_dict(obj: object) -> dict[str, Any]:
    """The custom-objects API returns untyped JSON; this is where the drill says what it expects."""
    if not isinstance(obj, dict):
        raise TypeError(f"expected a JSON object from the API server, got {type(obj).__name__}")
    return obj
