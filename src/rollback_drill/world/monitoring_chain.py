"""The monitoring chain beside a drill-made world: Alertmanager, Prometheus, kube-state-metrics and a rule syncer.

Alertmanager pages the drill's notification sinks; Prometheus scrapes FlowEngine's ``/metrics`` and
kube-state-metrics every second and evaluates the PrometheusRule objects of the cluster, which the
``RuleSyncer`` keeps rendered into its rule files (list and watch in every namespace, then a reload),
the way prometheus-operator's config reloader does.

``python -m rollback_drill.world.monitoring_chain`` runs the chain as one process for an environment
made by ``rollback-drill env up``; SIGTERM stops every server it started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from rollback_drill.errors import InputError, RetryableError, WaitTimeout
from rollback_drill.kube.objects import as_dict
from rollback_drill.kube.rules import GROUP, PLURAL, VERSION
from rollback_drill.monitoring import alertmanager, kube_state_metrics, prometheus, rules
from rollback_drill.monitoring.promql import PrometheusClient
from rollback_drill.notify.sinks import SinkEndpoints
from rollback_drill.targets.cluster import api_client
from rollback_drill.timing.wait import wait_until
from rollback_drill.world.manifests import KUBE_STATE_METRICS_JOB

FLOWENGINE_JOB = "flowengine"
SCRAPE_INTERVAL_S = 1.0
"""Scrapes and evaluations every second: a drill's scaled ``for:`` windows are a second or less."""
PAGERDUTY_ROUTING_KEY = "rollbackdrill0000000000000000000"
"""The sink takes any 32-character key; a real one is a secret and never comes from here."""
SYNCER_START_TIMEOUT_S = 30.0
CRD_POLL_S = 0.5
"""How often the syncer looks for the PrometheusRule CRD on a cluster that does not have it yet."""
COALESCE_S = 0.2
"""Changes that arrive within this of each other become one write and one reload."""
WATCH_TIMEOUT_S = 60
CHAIN_SERVICES = ("alertmanager", "prometheus", "kube-state-metrics")
"""The servers a chain starts, as the environment's state file names them."""


class RuleSyncer:
    """Keeps Prometheus's rule files equal to the PrometheusRule objects of every namespace (a background watch)."""

    def __init__(
        self,
        api_factory: Callable[[], client.ApiClient],
        server: prometheus.Prometheus,
        *,
        on_error: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self._api_factory = api_factory
        self._prometheus = server
        self._on_error = on_error
        self._objects: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listed = threading.Event()
        self._dirty = threading.Event()
        self._synced = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prometheus-rule-watch", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="prometheus-rule-sync", daemon=True)
        self._watch: Any = None
        self.reloads = 0
        """How many times the rule files changed and Prometheus was reloaded."""

    def start(self, timeout_s: float = SYNCER_START_TIMEOUT_S) -> RuleSyncer:
        self._thread.start()
        self._writer.start()
        if not self._synced.wait(timeout_s):
            self._on_error(f"the rule syncer had no first listing after {timeout_s:.0f}s")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        self._dirty.set()
        self._thread.join(timeout=5)
        self._writer.join(timeout=5)

    def _write_loop(self) -> None:
        """Write the rule files and reload, once per burst of changes: seeding a world creates dozens of rules."""
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.wait(COALESCE_S):
                return
            self._dirty.clear()
            with self._lock:
                objects = list(self._objects.values())
            try:
                change = rules.sync(self._prometheus.rules_dir, objects)
                if change.changed or not self._synced.is_set():
                    prometheus.reload(self._prometheus)
                    self.reloads += 1
            except (OSError, RetryableError, InputError) as exc:
                # Prometheus may be restarting, or refused a file: try again with the next change.
                self._on_error(f"rule sync: {exc}")
                self._dirty.set()
                self._stop.wait(0.5)
                continue
            self._synced.set()

    def _changed(
        self, objects: dict[str, dict[str, Any]] | None = None, item: tuple[str, str, Any] | None = None
    ) -> None:
        with self._lock:
            if objects is not None:
                self._objects = objects
            if item is not None:
                kind, uid, body = item
                if kind == "DELETED":
                    self._objects.pop(uid, None)
                elif kind in {"ADDED", "MODIFIED"}:
                    self._objects[uid] = body
        self._dirty.set()

    def _run(self) -> None:
        api = self._api_factory()
        custom = client.CustomObjectsApi(api)
        try:
            while not self._stop.is_set():
                try:
                    listing = as_dict(custom.list_cluster_custom_object(GROUP, VERSION, PLURAL))
                    self._changed(objects={str(item["metadata"]["uid"]): item for item in listing.get("items", [])})
                    self._watch = watch.Watch()
                    for event in self._watch.stream(
                        custom.list_cluster_custom_object,
                        GROUP,
                        VERSION,
                        PLURAL,
                        resource_version=(listing.get("metadata") or {}).get("resourceVersion"),
                        timeout_seconds=WATCH_TIMEOUT_S,
                    ):
                        item = as_dict(event["object"])
                        self._changed(item=(str(event["type"]), str((item.get("metadata") or {}).get("uid")), item))
                        if self._stop.is_set():
                            break
                except ApiException as exc:
                    if exc.status == 404:
                        # No PrometheusRule CRD yet (a cluster before its world is seeded): no rules, look again.
                        self._changed(objects={})
                        self._stop.wait(CRD_POLL_S)
                    elif exc.status != 410:
                        self._on_error(f"rule sync: {exc.status} {exc.reason}")
                        self._stop.wait(0.5)
                except (HTTPError, OSError) as exc:
                    # The API server may be restarting: keep the files and try again.
                    self._on_error(f"rule sync: {exc}")
                    self._stop.wait(0.5)
        finally:
            api.close()


@dataclass(frozen=True)
class MonitoringChain:
    alertmanager: alertmanager.Alertmanager
    prometheus: prometheus.Prometheus
    kube_state_metrics: kube_state_metrics.KubeStateMetrics
    syncer: RuleSyncer

    def urls(self) -> ChainUrls:
        return ChainUrls(self.prometheus.url, self.alertmanager.url)

    def services(self) -> dict[str, dict[str, Any]]:
        """Each server's pid, URL and log, as the environment's state file records its processes."""
        servers = (self.alertmanager.server, self.prometheus.server, self.kube_state_metrics.server)
        return {
            name: {"pid": server.pid, "url": server.url, "log": str(server.log)}
            for name, server in zip(CHAIN_SERVICES, servers, strict=True)
        }


def receivers(sinks: SinkEndpoints) -> alertmanager.Receivers:
    """Alertmanager's receivers aimed at the drill's sinks."""
    return alertmanager.Receivers(
        pagerduty_url=sinks.http_url + "/v2/enqueue",
        pagerduty_routing_key=PAGERDUTY_ROUTING_KEY,
        slack_webhook_url=sinks.http_url + alertmanager.SLACK_WEBHOOK_PATH,
        smtp_smarthost=f"{sinks.smtp_host}:{sinks.smtp_port}",
    )


def start_chain(
    directory: Path,
    kubeconfig: str,
    flowengine_target: str,
    sinks: SinkEndpoints,
    *,
    on_error: Callable[[str], None] = lambda _msg: None,
) -> MonitoringChain:
    """Alertmanager (to ``sinks``), kube-state-metrics, Prometheus (scraping ``flowengine_target``, ``host:port``),
    and the rule syncer; whatever started is stopped again if a later part fails."""
    with ExitStack() as undo:
        am = alertmanager.start(alertmanager.AlertmanagerSettings(receivers(sinks)), directory / "alertmanager")
        undo.callback(alertmanager.stop, am)
        ksm = kube_state_metrics.start(Path(kubeconfig), directory / "kube-state-metrics")
        undo.callback(kube_state_metrics.stop, ksm)
        settings = prometheus.PrometheusSettings(
            scrape_targets={FLOWENGINE_JOB: (flowengine_target,), KUBE_STATE_METRICS_JOB: (ksm.target,)},
            alertmanager=am.address,
            scrape_interval_s=SCRAPE_INTERVAL_S,
            evaluation_interval_s=SCRAPE_INTERVAL_S,
            alert_resend_delay_s=SCRAPE_INTERVAL_S,
        )
        prom = prometheus.start(settings, directory / "prometheus")
        undo.callback(prometheus.stop, prom)
        syncer = RuleSyncer(lambda: api_client(kubeconfig), prom, on_error=on_error).start()
        undo.pop_all()
    return MonitoringChain(am, prom, ksm, syncer)


def stop_chain(chain: MonitoringChain) -> list[str]:
    """Stop the syncer and every server; return the servers that needed SIGKILL."""
    chain.syncer.stop()
    forced = []
    if prometheus.stop(chain.prometheus):
        forced.append("prometheus")
    if alertmanager.stop(chain.alertmanager):
        forced.append("alertmanager")
    if kube_state_metrics.stop(chain.kube_state_metrics):
        forced.append("kube-state-metrics")
    return forced


def host_port(url: str) -> str:
    """``http://127.0.0.1:8080/`` -> ``127.0.0.1:8080``: a scrape target."""
    return url.split("://", 1)[-1].split("/", 1)[0]


@dataclass(frozen=True)
class ChainUrls:
    """Where a running chain answers: what the drill's steps read and silence."""

    prometheus_url: str
    alertmanager_url: str


@dataclass(frozen=True)
class LoadedAlerts:
    """What Prometheus has loaded and holds active: rule group names, and (alert, repo, state) of active alerts."""

    groups: tuple[str, ...]
    active: tuple[tuple[str, str, str], ...]

    def groups_of(self, repos: Sequence[str]) -> list[str]:
        return [group for group in self.groups if group in {f"{repo}.flowengine" for repo in repos}]

    def alerts_of(self, repos: Sequence[str]) -> list[tuple[str, str, str]]:
        return [alert for alert in self.active if alert[1] in repos]


RULES_SETTLE_TIMEOUT_S = 30.0
"""The syncer sees a deleted PrometheusRule within a watch event and reloads in about a second."""


def loaded_alerts(prometheus_url: str) -> LoadedAlerts:
    prom = PrometheusClient(prometheus_url)
    return LoadedAlerts(
        tuple(sorted(group.name for group in prom.rules())),
        tuple(sorted((a.name, a.labels.get("repo", ""), a.state) for a in prom.alerts())),
    )


def loaded_once_settled(
    prometheus_url: str, gone: Sequence[str], *, timeout_s: float = RULES_SETTLE_TIMEOUT_S
) -> LoadedAlerts:
    """Prometheus's rules and alerts once no group of the ``gone`` repos is loaded (or, at the deadline, as they are)."""

    def settled() -> LoadedAlerts | None:
        now = loaded_alerts(prometheus_url)
        return None if now.groups_of(gone) else now

    try:
        return wait_until(
            settled,
            timeout_s=timeout_s,
            describe=f"Prometheus at {prometheus_url} to unload the rule groups of {', '.join(gone)}",
        )
    except WaitTimeout:
        return loaded_alerts(prometheus_url)


def wait_rules_loaded(
    prometheus_url: str, repos: Sequence[str], *, timeout_s: float = RULES_SETTLE_TIMEOUT_S
) -> LoadedAlerts:
    """Wait until Prometheus has loaded every repo's rule group (a freshly seeded world's rules)."""

    def loaded() -> LoadedAlerts | None:
        now = loaded_alerts(prometheus_url)
        return now if len(now.groups_of(repos)) == len(set(repos)) else None

    return wait_until(
        loaded,
        timeout_s=timeout_s,
        describe=f"Prometheus at {prometheus_url} to load the rule groups of {', '.join(repos)}",
        hint="the rule syncer renders the cluster's PrometheusRules into its rule files",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rollback_drill.world.monitoring_chain", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="where the servers keep their files and logs")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--flowengine-url", required=True, help="FlowEngine's base URL; /metrics is scraped")
    parser.add_argument("--sinks-ready-line", required=True, help="the sinks' ready line (JSON)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - the signal API's signature
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sinks = SinkEndpoints.from_ready_line(args.sinks_ready_line)

    def report(message: str) -> None:
        print(f"monitoring chain: {message}", file=sys.stderr, flush=True)

    chain = start_chain(args.dir, args.kubeconfig, host_port(args.flowengine_url), sinks, on_error=report)
    services = chain.services()
    ready = {
        "pid": os.getpid(),
        "url": chain.prometheus.url,
        "prometheus_url": chain.prometheus.url,
        "alertmanager_url": chain.alertmanager.url,
        "kube_state_metrics_url": chain.kube_state_metrics.url,
        "servers": services,
    }
    print(json.dumps(ready), flush=True)
    try:
        stop.wait()  # a signal handler sets it; the wait is interruptible on POSIX
    finally:
        stop_chain(chain)
    return 0


if __name__ == "__main__":
    sys.exit(main())
