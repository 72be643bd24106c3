"""What FlowEngine's pods actually serve: the REPO_ALLOWLIST of the pods that are available now.

A Service sends traffic only to Ready pods, and a pod serves the allowlist it was
started with. So a change to the Deployment's spec takes effect as the rollout
replaces pods, not when the spec is patched. This view follows the pods with a
watch (re-listing after a 410 Gone or a dropped connection) and answers with the
union of the allowlists of the Ready ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from rollback_drill.targets.cluster import api_client
from rollback_drill.world.manifests import parse_allowlist


@dataclass(frozen=True)
class PodServing:
    name: str
    ready: bool
    allowlist: tuple[str, ...]
    restarts: int
    waiting_reason: str | None


@dataclass(frozen=True)
class ServingView:
    available_pods: int
    repos: frozenset[str]
    pods: tuple[PodServing, ...] = ()


def _pod_serving(pod: client.V1Pod, container: str) -> PodServing:
    ready = False
    restarts = 0
    waiting = None
    status = pod.status
    if status is not None:
        ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])
        for cs in status.container_statuses or []:
            restarts += int(cs.restart_count or 0)
            if cs.state is not None and cs.state.waiting is not None:
                waiting = cs.state.waiting.reason
    if pod.metadata is not None and pod.metadata.deletion_timestamp is not None:
        ready = False  # a terminating pod is taken out of the Service's endpoints
    allowlist: tuple[str, ...] = ()
    for item in pod.spec.containers if pod.spec else []:
        if item.name == container:
            for env in item.env or []:
                if env.name == "REPO_ALLOWLIST":
                    allowlist = parse_allowlist(env.value)
    name = pod.metadata.name if pod.metadata and pod.metadata.name else "?"
    return PodServing(name, ready, allowlist, restarts, waiting)


class PodWatcher:
    """A background watch of one Deployment's pods; ``view()`` is cheap and thread-safe."""

    def __init__(
        self,
        api_factory: Callable[[], client.ApiClient],
        namespace: str,
        selector: str,
        container: str,
        *,
        on_error: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self._api_factory = api_factory
        self._namespace = namespace
        self._selector = selector
        self._container = container
        self._on_error = on_error
        self._pods: dict[str, PodServing] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pod-watch-{namespace}", daemon=True)
        self._watch: Any = None

    def start(self, timeout_s: float = 30) -> PodWatcher:
        self._thread.start()
        if not self._synced.wait(timeout_s):
            self._on_error(f"pod watch in {self._namespace} had no first listing after {timeout_s:.0f}s")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(timeout=5)

    def view(self) -> ServingView:
        with self._lock:
            pods = tuple(self._pods.values())
        ready = [p for p in pods if p.ready]
        repos = frozenset(repo for p in ready for repo in p.allowlist)
        return ServingView(available_pods=len(ready), repos=repos, pods=pods)

    def _run(self) -> None:
        api = self._api_factory()
        core = client.CoreV1Api(api)
        try:
            while not self._stop.is_set():
                try:
                    listing = core.list_namespaced_pod(self._namespace, label_selector=self._selector)
                    with self._lock:
                        self._pods = {p.name: p for p in (_pod_serving(pod, self._container) for pod in listing.items)}
                    self._synced.set()
                    self._watch = watch.Watch()
                    version = listing.metadata.resource_version if listing.metadata else None
                    for event in self._watch.stream(
                        core.list_namespaced_pod,
                        self._namespace,
                        label_selector=self._selector,
                        resource_version=version,
                        timeout_seconds=60,
                    ):
                        serving = _pod_serving(event["object"], self._container)
                        with self._lock:
                            if event["type"] == "DELETED":
                                self._pods.pop(serving.name, None)
                            else:
                                self._pods[serving.name] = serving
                        if self._stop.is_set():
                            break
                except ApiException as exc:
                    if exc.status != 410:
                        self._on_error(f"pod watch in {self._namespace}: {exc.status} {exc.reason}")
                        self._stop.wait(0.5)
                except (HTTPError, OSError) as exc:
                    # The API server may be restarting: keep the last known view and try again.
                    self._on_error(f"pod watch in {self._namespace}: {exc}")
                    self._stop.wait(0.5)
        finally:
            api.close()


def cluster_view(
    kubeconfig: str, namespace: str = "production", selector: str = "app=flowengine", container: str = "flowengine"
) -> Callable[[], ServingView]:
    """The simulator's allowlist source when it runs as its own process (``--allowlist-source`` MODULE:FACTORY)."""
    watcher = PodWatcher(lambda: api_client(kubeconfig), namespace, selector, container).start()
    return watcher.view
