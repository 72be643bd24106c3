"""The simulator's HTTP: the server, the two route tables, request parsing and JSON answers.

Two route tables, so that what a real FlowEngine serves is never confused with what only the
simulator serves:

``CONTRACT_ROUTES``, FlowEngine's contract, which the runbook itself uses and the drill may call
on somebody's staging:

- ``GET /health``, ``GET /health/db``, ``GET /health/models/<provider>`` (the runbook's ``curl``);
- ``GET /metrics`` (Prometheus scrapes it);
- ``GET /api/v1/repos/<repo>/config`` (``blocks config show --repo``);
- ``POST /api/v1/flows`` (``blocks generate``, the pilot flow).

``PRIVATE_ROUTES``, the simulator's own, never called on a FlowEngine the drill did not build:

- ``POST /api/v1/flows/<id>/verify`` (plays ``blocks verify``, which checks the output locally);
- ``GET /api/v1/stats``, ``GET /api/v1/signals`` (what Prometheus' queries and the soak read);
- ``GET /logs`` (plays ``kubectl logs``);
- ``GET|POST|DELETE /admin/incidents``, ``DELETE /admin/incidents/<name>`` (incident injection).

``routes(contract_only=...)`` gives the table a server routes by; with ``contract_only`` a private
path is simply unknown: a JSON 404, like any other path no route matches.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from rollback_drill.errors import InputError
from rollback_drill.flowengine.api import FlowEngineAPI, Reply
from rollback_drill.flowengine.domain import SIGNAL_WINDOW_S
from rollback_drill.flowengine.incidents import INCIDENT_NAMES
from rollback_drill.flowengine.log import LOG_LINES_KEPT, first_line
from rollback_drill.flowengine.metrics import CONTENT_TYPE
from rollback_drill.flowengine.store import TaskDBUnavailable

MAX_BODY_BYTES: Final = 1 << 20
LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})


class BadRequest(Exception):
    """Becomes a 400 with the message."""


def query_number(query: Mapping[str, list[str]], key: str, default: float, *, low: float, high: float) -> float:
    """The last value of query parameter ``key`` as a number in [low, high], or ``default`` when it is absent."""
    values = query.get(key)
    if not values:
        return default
    try:
        value = float(values[-1])
    except ValueError as exc:
        raise BadRequest(f"query parameter {key} must be a number, got {values[-1]!r}") from exc
    if not low <= value <= high:
        raise BadRequest(f"query parameter {key} must be between {low:g} and {high:g}, got {value:g}")
    return value


def query_time(query: Mapping[str, list[str]], key: str) -> datetime | None:
    """The last value of query parameter ``key`` as an aware RFC 3339 instant, or None when it is absent."""
    values = query.get(key)
    if not values:
        return None
    try:
        value = datetime.fromisoformat(values[-1])
    except ValueError as exc:
        raise BadRequest(f"query parameter {key} must be an RFC 3339 time, got {values[-1]!r}") from exc
    if value.tzinfo is None:
        raise BadRequest(f"query parameter {key} must name its time zone (e.g. 2026-12-06T19:30:00+00:00)")
    return value


def query_flag(query: Mapping[str, list[str]], key: str) -> bool:
    """A boolean query parameter: 1, true or yes (any case) is true; absent is false."""
    return (query.get(key) or ["false"])[-1].lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class Call:
    """One routed request: the endpoints, the path's named groups, the query string, and the body on demand."""

    api: FlowEngineAPI
    args: Mapping[str, str]
    query: Mapping[str, list[str]]
    body: Callable[[], dict[str, object]]


Route = tuple[str, re.Pattern[str], Callable[[Call], Reply]]
"""Method, path, endpoint."""


def _inject(call: Call) -> Reply:
    body = call.body()
    name = body.get("name")
    params = body.get("params") or {}
    if not isinstance(name, str) or not isinstance(params, dict):
        raise BadRequest(f'inject with {{"name": NAME, "params": {{...}}}}; valid names: {", ".join(INCIDENT_NAMES)}')
    return call.api.inject(name, params)


CONTRACT_ROUTES: Final[tuple[Route, ...]] = (
    ("GET", re.compile(r"/health"), lambda c: c.api.health()),
    ("GET", re.compile(r"/health/db"), lambda c: c.api.health_db()),
    ("GET", re.compile(r"/health/models/(?P<provider>[^/]+)"), lambda c: c.api.health_model(c.args["provider"])),
    ("GET", re.compile(r"/api/v1/repos/(?P<repo>[^/]+)/config"), lambda c: c.api.repo_config(c.args["repo"])),
    ("POST", re.compile(r"/api/v1/flows"), lambda c: c.api.run_flow(c.body())),
    ("GET", re.compile(r"/metrics"), lambda c: Reply(HTTPStatus.OK, c.api.metrics_text(), CONTENT_TYPE)),
)
"""What a real FlowEngine serves and the runbook uses."""

PRIVATE_ROUTES: Final[tuple[Route, ...]] = (
    (
        "POST",
        re.compile(r"/api/v1/flows/(?P<flow_id>\d+)/verify"),
        lambda c: c.api.verify(int(c.args["flow_id"]), strict=query_flag(c.query, "strict")),
    ),
    (
        "GET",
        re.compile(r"/api/v1/stats"),
        lambda c: c.api.stats(
            query_number(c.query, "window_s", SIGNAL_WINDOW_S, low=1, high=30 * 86400),
            since=query_time(c.query, "since"),
        ),
    ),
    ("GET", re.compile(r"/api/v1/signals"), lambda c: Reply(HTTPStatus.OK, c.api.signals())),
    (
        "GET",
        re.compile(r"/logs"),
        lambda c: Reply(
            HTTPStatus.OK,
            c.api.logs(int(query_number(c.query, "tail", 100, low=0, high=LOG_LINES_KEPT))),
            "text/plain; charset=utf-8",
        ),
    ),
    ("GET", re.compile(r"/admin/incidents"), lambda c: c.api.incidents()),
    ("POST", re.compile(r"/admin/incidents"), _inject),
    ("DELETE", re.compile(r"/admin/incidents"), lambda c: c.api.clear_incidents()),
    ("DELETE", re.compile(r"/admin/incidents/(?P<name>[^/]+)"), lambda c: c.api.clear_incidents(c.args["name"])),
)
"""What only the simulator serves: verification, stats and signals, its log, incident injection."""


def routes(*, contract_only: bool = False) -> tuple[Route, ...]:
    """The table a server routes by: anything else is a JSON 404 (or 405 for a known path and another method)."""
    return CONTRACT_ROUTES if contract_only else CONTRACT_ROUTES + PRIVATE_ROUTES


def route(table: tuple[Route, ...], method: str, path: str, make_call: Callable[[Mapping[str, str]], Call]) -> Reply:
    """Answer ``method path`` by the first route of ``table`` that matches both."""
    allowed: list[str] = []
    for route_method, pattern, endpoint in table:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        if route_method != method:
            allowed.append(route_method)
            continue
        return endpoint(make_call({key: unquote(value) for key, value in match.groupdict().items()}))
    if allowed:
        return Reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{method} {path}: allowed {', '.join(sorted(allowed))}"})
    return Reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {method} {path}"})


def listen_host(host: str, *, in_pod: bool) -> str:
    """Where to bind: loopback only, except inside a pod's own network namespace."""
    if in_pod:
        return "0.0.0.0"  # noqa: S104 - the pod's own network namespace, reached only through its Service
    if host not in LOOPBACK:
        raise InputError(f"the simulator listens on loopback only (127.0.0.1), not {host!r}")
    return host


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    api: FlowEngineAPI
    table: tuple[Route, ...]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "flowengine-simulator/1"
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        """Access logs are not FlowEngine's log; ``/logs`` carries what the runbook greps."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body(self) -> dict[str, object]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise BadRequest(f"request body of {length} bytes is over the {MAX_BODY_BYTES} byte limit")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise BadRequest(f"request body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object")
        return data

    def _dispatch(self, method: str) -> None:
        api = self.server.api
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query)
        try:
            reply = route(self.server.table, method, path, lambda args: Call(api, args, query, self._body))
        except BadRequest as exc:
            reply = Reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except TaskDBUnavailable as exc:
            reply = Reply(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable", "reason": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a bug in one request must not take the simulator down
            api.log.write("ERROR", f"{method} {path} failed: {type(exc).__name__}: {first_line(exc)}")
            reply = Reply(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"status": "error", "error": f"{type(exc).__name__}: {first_line(exc)}"},
            )
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        if isinstance(reply.body, bytes):
            payload = reply.body
        elif isinstance(reply.body, str):
            payload = reply.body.encode()
        else:
            payload = json.dumps(reply.body, default=str).encode()
        try:
            self.send_response(int(reply.status))
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a probe with a short timeout); nothing to tell it


class HTTPService:
    """``api`` served over HTTP on a background thread."""

    def __init__(self, api: FlowEngineAPI, host: str, port: int, *, contract_only: bool = False) -> None:
        """Bind now (so the port is known); serve from ``start()``."""
        server = _Server((host, port), _Handler)
        server.api = api
        server.table = routes(contract_only=contract_only)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="flowengine-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close the socket, and wait for the serving thread (requests in flight are daemons)."""
        started = self._thread.ident is not None
        if started:
            self._server.shutdown()  # waits for serve_forever to return: only once it has run
        self._server.server_close()
        if started:
            self._thread.join(timeout=5)
