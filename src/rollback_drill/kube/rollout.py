"""`kubectl rollout status deployment/NAME`, ported: the same rules, driven by a watch.

kubectl's DeploymentStatusViewer decides "done" from observedGeneration,
updatedReplicas, replicas and availableReplicas, and fails on the
ProgressDeadlineExceeded condition. This module applies those rules to each
version of the object a watch delivers, so no polling interval hides a state.

Like kubectl, a wait rides out an API server that restarts under it: a refused or
dropped connection, or an answer that says the server cannot serve yet, is tried
again until the same deadline. What is verified does not change.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from http import HTTPStatus
from typing import NoReturn, TypeVar

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError, MaxRetryError

from rollback_drill.errors import ApiServerUnreachable, VerificationFailed
from rollback_drill.timing.clock import Clock
from rollback_drill.timing.wait import Deadline, NotYet, wait_until

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Answers of an API server that is starting, overloaded or briefly without etcd: worth asking again."""
WATCH_MAX_S = 30
"""Longest single watch of a rollout; then the Deployment is listed afresh (as kubectl's own watch is renewed)."""
REFUSALS = frozenset({401, 403})
"""Refusals. An API server that has just started refuses everything until its authenticators and
authorizer have synced; only then (``/readyz`` ok) is a refusal a real one, reported at once."""


def _reason(exc: BaseException) -> str:
    """One line on why a call did not reach the API server: ``connection refused``, ``connection reset``, ..."""
    cause: BaseException = exc
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        cause = exc.reason
    for error in (cause, cause.__cause__, cause.__context__):
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(error, ConnectionResetError):
            return "connection reset"
        if isinstance(error, ssl.SSLError):
            return f"TLS error: {error.reason or error}"
    text = " ".join(str(cause).split())
    return f"{type(cause).__name__}: {text[:160]}" if text else type(cause).__name__


def api_error_line(exc: ApiException) -> str:
    """An ApiException in one line: status, reason and the API server's own message."""
    message = ""
    with suppress(ValueError, TypeError, AttributeError):
        message = str(json.loads(exc.body or "{}").get("message") or "")
    text = " ".join(f"{exc.status} {exc.reason or ''} {message}".split())
    return f"the API server answered {text}"


def _tls_failure(exc: ApiException) -> bool:
    """The client reports a TLS failure (a connection cut during the handshake) as status 0."""
    return exc.status == 0 and str(exc.reason or "").startswith("SSLError")


class ApiOutage:
    """Idempotent calls to one API server, with outages turned into ``ApiServerUnreachable`` (a ``RetryableError``).

    An outage is a refused or dropped connection, an answer that says the server cannot
    serve yet (``TRANSIENT_STATUSES``), or a refusal while ``/readyz`` is not ok (a server
    that is still starting). It keeps how long the server has been unreachable, so that a
    step that rode out a restart can say so in its evidence, and one that did not can say
    for how long the server was gone.
    """

    def __init__(self, api: client.ApiClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self.server = str(api.configuration.host)
        self._clock = clock
        self._since: float | None = None
        self.unreachable_s = 0.0
        """Seconds of outages that have ended."""
        self.last_reason: str | None = None

    @property
    def down_for_s(self) -> float | None:
        """How long the current outage has lasted, or None when the last call got through."""
        return None if self._since is None else self._clock() - self._since

    def call(self, fn: Callable[[], T]) -> T:
        try:
            result = fn()
        except ApiException as exc:
            if exc.status in REFUSALS and self._serving():
                result = fn()  # ready now: a second refusal is a real one and propagates
            elif exc.status in REFUSALS:
                self._down(f"it answered {exc.status} {exc.reason} while starting: /readyz is not ok", exc)
            elif exc.status in TRANSIENT_STATUSES or _tls_failure(exc):
                self._down(f"it answered {exc.status} {' '.join(str(exc.reason).split())[:120]}", exc)
            else:
                raise
        except (HTTPError, OSError) as exc:
            self._down(_reason(exc), exc)
        if self._since is not None:
            self.unreachable_s += self._clock() - self._since
            self._since = None
        return result

    def _serving(self) -> bool:
        """``/readyz`` asked with the caller's own credentials (every identity may read it)."""
        try:
            method, url, headers, _, _ = self._api.param_serialize("GET", "/readyz", auth_settings=["BearerToken"])
            response = self._api.call_api(method, url, header_params=headers, _request_timeout=5)
        except (ApiException, HTTPError, OSError):
            return False
        return bool(response.status == 200)

    def _down(self, reason: str, exc: BaseException) -> NoReturn:
        if self._since is None:
            self._since = self._clock()
        self.last_reason = reason
        raise ApiServerUnreachable(f"the Kubernetes API server at {self.server} is unreachable ({reason})") from exc


@dataclass(frozen=True)
class RolloutState:
    done: bool
    message: str
    failed: bool = False


def settled(deployment: client.V1Deployment) -> bool:
    """The controllers are done with the Deployment's spec: its status counts every replica of it.

    Weaker than a finished rollout (the pods need not be Ready), and all a cluster without nodes can reach.
    """
    meta = deployment.metadata or client.V1ObjectMeta()
    status = deployment.status
    return bool(
        status
        and deployment.spec
        and status.observed_generation == meta.generation
        and status.replicas == deployment.spec.replicas
    )


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


def wait_for_rollout(
    api: client.ApiClient, namespace: str, name: str, *, timeout_s: float, clock: Clock | None = None
) -> RolloutState:
    """Block until the rollout is done (returned), has failed (VerificationFailed), or the timeout passes (WaitTimeout).

    kubectl's list-then-watch: each check lists the Deployment and, if it is not done,
    watches it until it is or the watch ends (at most 30 s, never past the deadline); a
    410 Gone or an ended watch lists again. An API server that answers a transient
    status or cannot be reached (a restart) is asked again every 0.5 s until the deadline.
    """
    apps = client.AppsV1Api(api)
    window = Deadline(timeout_s, clock)

    def done_state() -> RolloutState | NotYet:
        try:
            return _list_then_watch(apps, namespace, name, window)
        except ApiException as exc:
            if exc.status in TRANSIENT_STATUSES:
                return NotYet(f"API server answered {exc.status} {exc.reason}")
            if exc.status == HTTPStatus.GONE:  # the watch fell behind; list again and resume
                return NotYet("the watch fell behind (410 Gone); listing again")
            raise
        except (HTTPError, OSError) as exc:
            # The API server may be restarting; try again until the deadline.
            return NotYet(f"API server not reachable: {exc}")

    return wait_until(
        done_state,
        timeout_s=timeout_s,
        describe=f"the rollout of deployment/{name} in {namespace} to complete",
        interval_s=0.5,
        clock=window.clock,
        hint=f"check `kubectl -n {namespace} get pods` and the events",
    )


def _list_then_watch(apps: client.AppsV1Api, namespace: str, name: str, window: Deadline) -> RolloutState | NotYet:
    """One round of kubectl's rollout status: the state once done, NotYet with the last state when the watch ends."""
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
        timeout_seconds=max(1, int(min(window.remaining_s(), WATCH_MAX_S))),
    ):
        if event["type"] == "DELETED":
            raise VerificationFailed(f"deployment/{name} in {namespace} was deleted during its rollout")
        last = rollout_state(event["object"])
        if last.failed:
            stream.stop()
            raise VerificationFailed(f"rollout of deployment/{name} in {namespace} failed: {last.message}")
        if last.done:
            stream.stop()
            return last
    return NotYet(last.message)
