"""FlowEngine's Prometheus exposition: counters as flows happen, gauges set from the signals at scrape time.

The metric names are the contract Prometheus' rules and the decision's PromQL read
(``flow_failures_total`` by repo and cause, ``flow_duration_seconds``, ``flowengine_daily_spend_usd``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE: Final[str] = CONTENT_TYPE_LATEST
DURATION_BUCKETS_S: Final = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 150.0, 180.0, 240.0, 300.0)
"""``flow_duration_seconds`` buckets, up to 300 s: the runbook's limits (120 s, 150 s) are bucket edges."""


def _number(value: object) -> float:
    return float(str(value))


class FlowMetrics:
    """One simulator's registry: what ``/metrics`` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._failures = Counter(
            "flow_failures", "Flow failures by repo and cause", ["repo", "cause"], registry=registry
        )
        self._flows = Counter("flows", "Flows run, by repo and status", ["repo", "status"], registry=registry)
        self._duration = Histogram(
            "flow_duration_seconds", "Simulated duration of completed flows", buckets=DURATION_BUCKETS_S,
            registry=registry,
        )  # fmt: skip
        self._spend = Gauge("flowengine_daily_spend_usd", "Spend of the last 24 hours", registry=registry)
        self._spend_rate = Gauge(
            "flowengine_spend_rate_usd_per_hour", "Current spend rate of the served repos", registry=registry
        )
        self._kill_rate = Gauge(
            "flow_mutation_kill_rate", "Mutation kill-rate of each served repo", ["repo"], registry=registry
        )
        self._active = Gauge("flowengine_active_repos", "Repos served by available pods", registry=registry)
        self._p95 = Gauge(
            "flowengine_p95_latency_seconds", "P95 flow duration over the served repos, last hour", registry=registry
        )
        self._p95_above = Gauge(
            "flowengine_p95_above_threshold_seconds", "How long P95 has been above 150 s", registry=registry
        )
        self._pods = Gauge("flowengine_available_pods", "Available (Ready) flowengine pods", registry=registry)
        self._crash = Gauge(
            "flowengine_crash_loop_unavailable_seconds", "How long the Deployment has been unavailable",
            registry=registry,
        )  # fmt: skip
        self._integrity = Gauge(
            "flowengine_taskdb_integrity_ok", "1 when the integrity check passes", registry=registry
        )
        self._leak = Gauge("flowengine_credentials_leaked", "1 when a credential leak was detected", registry=registry)
        self._rate_limited = Gauge(
            "flowengine_model_providers_rate_limited", "Model providers rate-limiting", registry=registry
        )

    def flow(self, repo: str, status: str, cause: str | None = None, duration_s: float | None = None) -> None:
        """Count one flow: a failure by its cause, a completed flow's duration when it has one to observe."""
        self._flows.labels(repo, status).inc()
        if status == "failed" and cause:
            self._failures.labels(repo, cause).inc()
        elif duration_s is not None:
            self._duration.observe(duration_s)

    def set_from_signals(self, signals: Mapping[str, object], kill_rate: Callable[[str], float]) -> None:
        """Refresh every gauge from one signals document."""
        self._spend.set(_number(signals["daily_spend_usd"]))
        self._spend_rate.set(_number(signals["spend_rate_usd_per_hour"]))
        self._p95.set(_number(signals["p95_latency_s"]))
        self._p95_above.set(_number(signals["p95_above_150s_for_s"]))
        self._crash.set(_number(signals["crash_loop_unavailable_s"]))
        self._integrity.set(1 if signals["db_integrity_ok"] else 0)
        self._leak.set(1 if signals["credentials_leaked"] else 0)
        self._rate_limited.set(_number(signals["providers_rate_limited"]))
        pods = signals["available_pods"]
        self._pods.set(float(pods) if isinstance(pods, int) else 0)
        served = signals["served_repos"]
        self._active.set(len(served) if isinstance(served, list) else 0)
        self._kill_rate.clear()
        for repo in served if isinstance(served, list) else []:
            self._kill_rate.labels(repo).set(kill_rate(str(repo)))

    def exposition(self) -> bytes:
        """The Prometheus text format of the whole registry."""
        return generate_latest(self.registry)
