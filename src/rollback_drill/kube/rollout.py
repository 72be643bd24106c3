"""`kubectl rollout status deployment/NAME`, ported: the same rules, driven by a watch.

kubectl's DeploymentStatusViewer decides "done" from observedGeneration,
updatedReplicas, replicas and availableReplicas, and fails on the
ProgressDeadlineExceeded condition. This module applies those rules to each
version of the object a watch delivers, so no polling interval hides a state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from rollback_drill.errors import VerificationFailed, WaitTimeout


@dataclass(frozen=True)
class RolloutState:
    done: bool
    message: str
    failed: bool = False


def rollout_state(deployment: client.V1Deployment) -> RolloutState:
    """kubectl's rules, in kubectl's words."""
    meta = deployment.metadata or client.V1ObjectMeta()
    name = meta.name
    spec = deployment.spec
    spec_replicas = spec.replicas if spec is not None and spec.replicas is not None else 1
    status = deployment.status or client.V1DeploymentStatus()
    if (meta.generation or 0) > (status.observed_generation or 0):
        return RolloutState(done=False, message="Waiting for deployment spec update to be observed...")
    for condition in status.conditions or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            return RolloutState(done=False, message=f'deployment "{name}" exceeded its progress deadline', failed=True)
    updated = status.updated_replicas or 0
    replicas = status.replicas or 0
    available = status.available_replicas or 0
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if updated < spec_replicas:
        return RolloutState(
            done=False, message=f"{waiting}{updated} out of {spec_replicas} new replicas have been updated..."
        )
    if replicas > updated:
        return RolloutState(
            done=False, message=f"{waiting}{replicas - updated} old replicas are pending termination..."
        )
    if available < updated:
        return RolloutState(done=False, message=f"{waiting}{available} of {updated} updated replicas are available...")
    return RolloutState(done=True, message=f'deployment "{name}" successfully rolled out')


def wait_for_rollout(  # noqa: C901 - kubectl's list-then-watch loop, with its three ways out, reads best in one piece
    api: client.ApiClient, namespace: str, name: str, *, timeout_s: float
) -> RolloutState:
    """Block until the rollout is done (returned), has failed (VerificationFailed), or the timeout passes (WaitTimeout)."""
    apps = client.AppsV1Api(api)
    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    last = RolloutState(done=False, message="no state seen yet")
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(
                f"rollout of deployment/{name} in {namespace} did not complete within {timeout_s:.0f}s "
                f"(after {time.monotonic() - started:.1f}s, last: {last.message}); "
                f"check `kubectl -n {namespace} get pods` and the events"
            )
        try:
            listing = apps.list_namespaced_deployment(namespace, field_selector=f"metadata.name={name}")
            if not listing.items:
                raise VerificationFailed(f"deployment/{name} does not exist in namespace {namespace}")
            last = rollout_state(listing.items[0])
            if last.failed:
                raise VerificationFailed(f"rollout of deployment/{name} in {namespace} failed: {last.message}")
            if last.done:
                return last
            stream = watch.Watch()
            for event in stream.stream(
                apps.list_namespaced_deployment,
                namespace,
                field_selector=f"metadata.name={name}",
                resource_version=listing.metadata.resource_version if listing.metadata else None,
                timeout_seconds=max(1, int(min(remaining, 30))),
            ):
                obj = event["object"]
                if event["type"] == "DELETED":
                    raise VerificationFailed(f"deployment/{name} in {namespace} was deleted during its rollout")
                last = rollout_state(obj)
                if last.failed:
                    stream.stop()
                    raise VerificationFailed(f"rollout of deployment/{name} in {namespace} failed: {last.message}")
                if last.done:
                    stream.stop()
                    return last
        except ApiException as exc:
            if exc.status != 410:  # 410 Gone: the watch fell behind; list again and resume
                raise
        except (HTTPError, OSError) as exc:
            # The API server may be restarting; try again until the deadline.
            last = RolloutState(done=False, message=f"API server not reachable: {exc}")
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
