"""A small read-only client of a Prometheus HTTP API: the embedded Prometheus or a team's own.

Only reads (``/api/v1/query``, ``query_range``, ``rules``, ``alerts``): on a team's monitoring the
drill looks and never changes anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rollback_drill.monitoring._http import request_json
from rollback_drill.monitoring.errors import NotAMonitoringApi, QueryRejected

FIX = "point --prometheus-url at the Prometheus server's base URL (the one serving /api/v1/query), e.g. http://127.0.0.1:9090"


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector: its labels and its value now."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and (unix time s, value) points."""

    labels: dict[str, str]
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class LoadedRule:
    """A rule Prometheus has loaded: an alert's or a recording rule's name, its state and its query."""

    name: str
    kind: str
    """``alerting`` or ``recording``."""
    query: str
    state: str
    """``inactive``, ``pending`` or ``firing`` for an alerting rule; empty for a recording rule."""
    labels: dict[str, str]


@dataclass(frozen=True)
class RuleGroup:
    name: str
    file: str
    rules: tuple[LoadedRule, ...]


@dataclass(frozen=True)
class ActiveAlert:
    """An alert Prometheus holds as ``pending`` or ``firing``."""

    name: str
    state: str
    labels: dict[str, str]
    annotations: dict[str, str]
    active_at: str
    value: float


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class PrometheusClient:
    """Reads ``base_url``'s ``/api/v1``; every error names the URL and the fix."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        body = request_json(
            "GET", self.base_url + path, what="Prometheus", fix=FIX, params=params, timeout_s=self.timeout_s
        )
        if not isinstance(body, dict) or "status" not in body:
            raise NotAMonitoringApi(f"Prometheus at {self.base_url}{path} did not answer with an API envelope: {FIX}")
        if body["status"] != "success":
            raise QueryRejected(
                f"Prometheus at {self.base_url} refused {path} {params or ''}: {body.get('errorType')}: {body.get('error')}"
            )
        return body.get("data")

    def query(self, promql: str) -> list[Sample]:
        """An instant query; a scalar answer becomes one sample without labels."""
        data = self._get("/api/v1/query", {"query": promql})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "vector":
            return [Sample(dict(item.get("metric", {})), _float(item["value"][1])) for item in result]
        if kind == "scalar":
            return [Sample({}, _float(result[1]))]
        raise QueryRejected(
            f"{promql!r} on {self.base_url} gives a {kind}, not an instant vector; wrap it in an aggregation"
        )

    def query_range(self, promql: str, *, start_s: float, end_s: float, step_s: float) -> list[Series]:
        data = self._get(
            "/api/v1/query_range",
            {"query": promql, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": f"{step_s:g}"},
        )
        return [
            Series(dict(item.get("metric", {})), tuple((float(t), _float(v)) for t, v in item.get("values", [])))
            for item in data.get("result", [])
        ]

    def rules(self) -> list[RuleGroup]:
        data = self._get("/api/v1/rules")
        return [
            RuleGroup(
                name=str(group.get("name")),
                file=str(group.get("file")),
                rules=tuple(
                    LoadedRule(
                        name=str(rule.get("name")),
                        kind=str(rule.get("type")),
                        query=str(rule.get("query")),
                        state=str(rule.get("state", "")),
                        labels=dict(rule.get("labels") or {}),
                    )
                    for rule in group.get("rules", [])
                ),
            )
            for group in data.get("groups", [])
        ]

    def alerts(self) -> list[ActiveAlert]:
        data = self._get("/api/v1/alerts")
        return [
            ActiveAlert(
                name=str(alert.get("labels", {}).get("alertname", "")),
                state=str(alert.get("state")),
                labels=dict(alert.get("labels") or {}),
                annotations=dict(alert.get("annotations") or {}),
                active_at=str(alert.get("activeAt", "")),
                value=_float(alert.get("value")),
            )
            for alert in data.get("alerts", [])
        ]

    def firing(self, **labels: str) -> list[ActiveAlert]:
        """The firing alerts whose labels include ``labels``."""
        return [
            alert
            for alert in self.alerts()
            if alert.state == "firing" and all(alert.labels.get(k) == v for k, v in labels.items())
        ]
