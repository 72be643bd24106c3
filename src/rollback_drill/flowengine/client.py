"""``FlowEngineClient``: what the drill's steps call, the same against the simulator and a real FlowEngine.

Every method makes one HTTP request and returns a frozen dataclass. The answers the
runbook expects to see, good or bad, are values: a refused repo is a ``RepoConfig`` with
``enabled=False``, a failed flow is a ``FlowResult`` with ``status="failed"``, an unhealthy
TaskDB is a ``Health`` with ``status="unhealthy"``. Anything else raises:

- ``FlowEngineUnavailable`` (a ``RetryableError``): connection refused, timeout, or a 5xx
  that is not one of those answers. Worth another attempt within the step's budget.
- ``FlowEngineRequestError`` (an ``InputError``): a 4xx the caller caused (unknown
  endpoint, bad body, injection refused). Retrying will not help.

Both carry ``url``, ``status`` (None when there was no HTTP answer) and ``body``.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from prometheus_client.parser import text_string_to_metric_families

from rollback_drill.errors import InputError, RetryableError
from rollback_drill.evidence.redact import redact_text

BODY_QUOTE_LIMIT: Final = 300
"""Characters of an unexpected answer's body quoted in an error message."""
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
ERROR_LINE_RE: Final = re.compile(r"ERROR|CRITICAL")
"""What the runbook greps in ``kubectl logs`` (``grep "ERROR\\|CRITICAL"``)."""


class FlowEngineUnavailable(RetryableError):
    """FlowEngine did not answer, or answered 5xx: retry within the step's budget."""

    def __init__(self, message: str, *, url: str, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.body = body


class FlowEngineRequestError(InputError):
    """FlowEngine refused the request (4xx): the message says what to change."""

    def __init__(self, message: str, *, url: str, status: int, body: object = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.body = body


# --- answers -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    status: str
    """``healthy``, ``degraded``, ``unhealthy``, ``rate-limited`` or ``unavailable``."""
    reasons: tuple[str, ...] = ()
    http_status: int = 200

    @property
    def healthy(self) -> bool:
        return self.status == "healthy"


@dataclass(frozen=True)
class RepoConfig:
    """``blocks config show --repo R``."""

    repo: str
    enabled: bool
    reason: str | None = None


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool


@dataclass(frozen=True)
class FlowResult:
    """``blocks generate``: a completed, failed or refused flow."""

    repo: str
    status: str
    """``completed``, ``failed`` or ``refused``."""
    flow_id: int | None = None
    duration_s: float | None = None
    """FlowEngine's reported duration (simulated by the simulator), not the request's latency."""
    cost_usd: float | None = None
    quality_gates: tuple[GateResult, ...] = ()
    gates_passed: int = 0
    cause: str | None = None
    reason: str | None = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"


@dataclass(frozen=True)
class Verification:
    """``blocks verify [--strict]``."""

    flow_id: int
    passed: bool
    strict: bool
    gates: tuple[GateResult, ...]
    gates_passed: int


@dataclass(frozen=True)
class RepoStats:
    repo: str
    flows: int
    failed: int
    success_rate: float | None
    p50_s: float | None
    p95_s: float | None


@dataclass(frozen=True)
class Stats:
    """Flows started within ``window_s``; ``success_rate`` is None when there were none."""

    window_s: float
    flows: int
    failed: int
    success_rate: float | None
    p50_s: float | None
    p95_s: float | None
    active_repos: tuple[str, ...]
    repos: tuple[RepoStats, ...]

    def repo(self, name: str) -> RepoStats | None:
        return next((r for r in self.repos if r.repo == name), None)


@dataclass(frozen=True)
class MetricSample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


@dataclass(frozen=True)
class LogTail:
    lines: tuple[str, ...]

    def errors(self) -> tuple[str, ...]:
        """The lines the runbook's ``grep "ERROR\\|CRITICAL"`` keeps."""
        return tuple(line for line in self.lines if ERROR_LINE_RE.search(line))


@dataclass(frozen=True)
class IncidentRecord:
    name: str
    repos: tuple[str, ...]
    injected_at: str | None
    expected_decision: str | None
    pilot_hit: bool
    raw: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}), compare=False, repr=False)


# --- parsing helpers ---------------------------------------------------------------------------------


def _opt_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: object, default: int = 0) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _gates(value: object) -> tuple[GateResult, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(
        GateResult(str(g.get("name")), bool(g.get("passed"))) for g in value if isinstance(g, dict) and "name" in g
    )


def _incident(data: Mapping[str, Any]) -> IncidentRecord:
    repos = data.get("repos")
    return IncidentRecord(
        name=str(data.get("name")),
        repos=tuple(str(r) for r in repos) if isinstance(repos, list) else (),
        injected_at=str(data["injected_at"]) if data.get("injected_at") else None,
        expected_decision=str(data["expected_decision"]) if data.get("expected_decision") else None,
        pilot_hit=bool(data.get("pilot_hit")),
        raw=MappingProxyType(dict(data)),
    )


# --- the client --------------------------------------------------------------------------------------


def _check_url(url: str) -> bool:
    """Whether ``url`` is loopback; refuses anything that is not http(s)://HOST[:PORT]."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InputError(f"FlowEngine URL {redact_text(url)!r} is not http(s)://HOST[:PORT]; pass --flowengine-url")
    return parts.hostname in LOOPBACK_HOSTS


class FlowEngineClient:
    """One FlowEngine, by URL: the simulator's, or a real one on staging.

    ``monitoring_url``: where the signals, metrics, logs and the list of incidents are read, when that is
    not the service itself. On kind FlowEngine is its pods, and a crash loop takes them all down; what the
    Incident Commander reads then comes from the monitoring side, which keeps answering.
    """

    def __init__(self, base_url: str, timeout_s: float = 5, *, monitoring_url: str | None = None) -> None:
        loopback = _check_url(base_url)
        if monitoring_url is not None:
            loopback = _check_url(monitoring_url) and loopback
        if timeout_s <= 0:
            raise InputError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.base_url = base_url.rstrip("/")
        self.monitoring_url = monitoring_url.rstrip("/") if monitoring_url else None
        self.timeout_s = timeout_s
        # Loopback traffic never goes through a proxy from the environment (DESIGN: loopback only).
        handlers: list[urllib.request.BaseHandler] = []
        if loopback:
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    @property
    def _monitoring(self) -> str:
        return self.monitoring_url or self.base_url

    def __repr__(self) -> str:
        monitoring = f", monitoring_url={redact_text(self.monitoring_url)!r}" if self.monitoring_url else ""
        return f"FlowEngineClient({redact_text(self.base_url)!r}, timeout_s={self.timeout_s!r}{monitoring})"

    # -- transport -------------------------------------------------------------------------------

    def _raw(self, method: str, path: str, body: object = None, *, base: str | None = None) -> tuple[int, str, bytes]:
        url = (base or self.base_url) + path
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - scheme checked in __init__
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        shown = redact_text(url)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return int(response.status), response.headers.get_content_type(), response.read()
        except urllib.error.HTTPError as exc:
            try:
                payload = exc.read()
            except (OSError, http.client.HTTPException):
                payload = b""
            content_type = exc.headers.get_content_type() if exc.headers else "text/plain"
            return int(exc.code), content_type, payload
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FlowEngineUnavailable(
                f"FlowEngine did not answer {method} {shown}: {redact_text(str(reason))} "
                f"(timeout {self.timeout_s:g} s); check that it is running and the URL is right",
                url=shown,
            ) from exc

    def _json(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        accept: frozenset[int] = frozenset({200}),
        base: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        status, content_type, payload = self._raw(method, path, body, base=base)
        shown = redact_text((base or self.base_url) + path)
        parsed: object = None
        if payload:
            try:
                parsed = json.loads(payload)
            except ValueError:
                parsed = None
        if status in accept and isinstance(parsed, dict):
            return status, parsed
        quoted = redact_text(payload.decode(errors="replace")[:BODY_QUOTE_LIMIT])
        detail = parsed.get("error") or parsed.get("reason") if isinstance(parsed, dict) else None
        if status >= 500 or status in accept:
            # Also a 2xx that is not the JSON object FlowEngine always sends: a proxy's page, say.
            raise FlowEngineUnavailable(
                f"FlowEngine answered {method} {shown} with HTTP {status} ({content_type}): {redact_text(str(detail or quoted))}",
                url=shown,
                status=status,
                body=parsed if parsed is not None else quoted,
            )
        raise FlowEngineRequestError(
            f"FlowEngine refused {method} {shown} with HTTP {status}: {redact_text(str(detail or quoted))}",
            url=shown,
            status=status,
            body=parsed if parsed is not None else quoted,
        )

    def _text(self, path: str, *, base: str | None = None) -> str:
        status, content_type, payload = self._raw("GET", path, base=base)
        shown = redact_text((base or self.base_url) + path)
        if status == 200:
            return payload.decode(errors="replace")
        quoted = redact_text(payload.decode(errors="replace")[:BODY_QUOTE_LIMIT])
        error_type = FlowEngineUnavailable if status >= 500 else FlowEngineRequestError
        raise error_type(
            f"FlowEngine answered GET {shown} with HTTP {status} ({content_type}): {quoted}",
            url=shown,
            status=status,
            body=quoted,
        )

    # -- health ----------------------------------------------------------------------------------

    def _health(self, path: str) -> Health:
        status, data = self._json("GET", path, accept=frozenset({200, 503}))
        reasons = data.get("reasons")
        reason_list = [str(r) for r in reasons] if isinstance(reasons, list) else []
        if data.get("reason"):
            reason_list.append(str(data["reason"]))
        return Health(str(data.get("status")), tuple(reason_list), status)

    def health(self) -> Health:
        return self._health("/health")

    def health_db(self) -> Health:
        """``curl /health/db | jq .status``: ``healthy``, or ``unhealthy`` with the reason."""
        return self._health("/health/db")

    def health_model(self, provider: str) -> Health:
        """``curl /health/models/PROVIDER | jq .status``: ``healthy`` or ``rate-limited``."""
        return self._health(f"/health/models/{quote(provider, safe='')}")

    # -- repos and flows -------------------------------------------------------------------------

    def repo_config(self, repo: str) -> RepoConfig:
        """``blocks config show --repo R``. 503 (no pod available) raises ``FlowEngineUnavailable``."""
        _, data = self._json("GET", f"/api/v1/repos/{quote(repo, safe='')}/config", accept=frozenset({200, 403}))
        reason = data.get("reason")
        return RepoConfig(str(data.get("repo", repo)), bool(data.get("enabled")), str(reason) if reason else None)

    def generate(
        self,
        repo: str,
        *,
        family: str = "compliance",
        block_type: str = "attestation",
        config: object = None,
    ) -> FlowResult:
        """``blocks generate``: a completed, failed (500 with a flow) or refused (403) flow."""
        body = {"repo": repo, "family": family, "block_type": block_type, "config": config}
        status, data = self._json("POST", "/api/v1/flows", body, accept=frozenset({200, 403, 500}))
        if status == 403:
            reason = data.get("reason")
            return FlowResult(repo, "refused", reason=str(reason) if reason else None)
        if status == 500:
            if data.get("status") != "failed" or "cause" not in data:
                raise FlowEngineUnavailable(
                    f"FlowEngine answered POST {redact_text(self.base_url)}/api/v1/flows with HTTP 500 and no flow: "
                    f"{redact_text(json.dumps(data)[:BODY_QUOTE_LIMIT])}",
                    url=redact_text(self.base_url + "/api/v1/flows"),
                    status=500,
                    body=data,
                )
            flow_id = data.get("flow_id")
            return FlowResult(
                repo=str(data.get("repo", repo)),
                status="failed",
                flow_id=_int(flow_id) if flow_id is not None else None,
                duration_s=_opt_float(data.get("duration_s")),
                cause=str(data.get("cause")),
                reason=str(data["reason"]) if data.get("reason") else None,
            )
        return FlowResult(
            repo=str(data.get("repo", repo)),
            status=str(data.get("status", "completed")),
            flow_id=_int(data.get("flow_id")),
            duration_s=_opt_float(data.get("duration_s")),
            cost_usd=_opt_float(data.get("cost_usd")),
            quality_gates=_gates(data.get("quality_gates")),
            gates_passed=_int(data.get("gates_passed")),
        )

    def verify(self, flow_id: int, *, strict: bool = True) -> Verification:
        """``blocks verify --strict``: strict passes only with 5/5 gates."""
        query = urlencode({"strict": "true" if strict else "false"})
        _, data = self._json("POST", f"/api/v1/flows/{int(flow_id)}/verify?{query}")
        return Verification(
            flow_id=_int(data.get("flow_id"), flow_id),
            passed=bool(data.get("passed")),
            strict=bool(data.get("strict", strict)),
            gates=_gates(data.get("gates")),
            gates_passed=_int(data.get("gates_passed")),
        )

    # -- observability ---------------------------------------------------------------------------

    def stats(self, window_s: float = 3600, *, since: datetime | None = None) -> Stats:
        """Flows of the last ``window_s`` seconds; given ``since`` (aware), exactly the flows started since then."""
        query: dict[str, object] = {"window_s": window_s}
        if since is not None:
            query["since"] = since.isoformat()
        _, data = self._json("GET", f"/api/v1/stats?{urlencode(query)}")
        repos_raw = data.get("repos")
        repos = (
            tuple(
                RepoStats(
                    repo=str(name),
                    flows=_int(r.get("flows")),
                    failed=_int(r.get("failed")),
                    success_rate=_opt_float(r.get("success_rate")),
                    p50_s=_opt_float(r.get("p50_s")),
                    p95_s=_opt_float(r.get("p95_s")),
                )
                for name, r in sorted(repos_raw.items())
                if isinstance(r, dict)
            )
            if isinstance(repos_raw, dict)
            else ()
        )
        active = data.get("active_repos")
        return Stats(
            window_s=float(data.get("window_s", window_s)),
            flows=_int(data.get("flows")),
            failed=_int(data.get("failed")),
            success_rate=_opt_float(data.get("success_rate")),
            p50_s=_opt_float(data.get("p50_s")),
            p95_s=_opt_float(data.get("p95_s")),
            active_repos=tuple(str(r) for r in active) if isinstance(active, list) else (),
            repos=repos,
        )

    def signals(self) -> dict[str, Any]:
        """``GET /api/v1/signals``: what the decision framework reads (``runbook.decision.to_decision_signals``)."""
        _, data = self._json("GET", "/api/v1/signals", base=self._monitoring)
        return data

    def metrics_text(self) -> str:
        return self._text("/metrics", base=self._monitoring)

    def metric_samples(self, name: str) -> tuple[MetricSample, ...]:
        """Samples of one metric (``flow_failures_total``, ``flowengine_daily_spend_usd``, ...) from ``/metrics``."""
        samples: list[MetricSample] = []
        for family in text_string_to_metric_families(self.metrics_text()):
            samples.extend(
                MetricSample(sample.name, tuple(sorted(sample.labels.items())), float(sample.value))
                for sample in family.samples
                if sample.name == name
            )
        return tuple(samples)

    def logs(self, tail: int = 100) -> LogTail:
        """``kubectl logs deployment/flowengine --tail=N``; ``.errors()`` is the runbook's grep."""
        text = self._text(f"/logs?{urlencode({'tail': tail})}", base=self._monitoring)
        return LogTail(tuple(line for line in text.splitlines() if line))

    # -- incidents -------------------------------------------------------------------------------

    def inject(self, name: str, params: Mapping[str, object] | None = None) -> IncidentRecord:
        """Inject an incident. A FlowEngine that does not accept injection answers 403 (``FlowEngineRequestError``)."""
        _, data = self._json(
            "POST", "/admin/incidents", {"name": name, "params": dict(params or {})}, accept=frozenset({201})
        )
        return _incident(data)

    def incidents(self) -> tuple[IncidentRecord, ...]:
        _, data = self._json("GET", "/admin/incidents", base=self._monitoring)
        active = data.get("active")
        return tuple(_incident(item) for item in active if isinstance(item, dict)) if isinstance(active, list) else ()

    def clear_incidents(self) -> tuple[str, ...]:
        """Remove every injection; return the names that were active."""
        _, data = self._json("DELETE", "/admin/incidents")
        cleared = data.get("cleared")
        return tuple(str(n) for n in cleared) if isinstance(cleared, list) else ()
