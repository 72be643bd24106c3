"""Local notification sinks: real servers on 127.0.0.1 that answer like the real services.

- ``HttpSink`` (stdlib ``ThreadingHTTPServer``) plays three services:
  Slack incoming webhooks (``POST /services/...``, ``200 ok``), PagerDuty Events API v2
  (``POST /v2/enqueue``, ``202 {"status": "success", "dedup_key": ...}``) and the status page
  (``POST /api/incidents`` with a Bearer token, ``201 {"id": ...}``). It validates requests
  the way the services do (400 for an invalid event, 401 without a token, 404 elsewhere)
  and can be told to fail (``fail_next``).
- ``SmtpSink`` (``aiosmtpd``) accepts mail and decodes it.

Every request and mail is recorded, redacted, in memory and, when a directory is given,
in ``notifications-received.jsonl`` (one JSON object per line, fsynced per line): a Slack
webhook's path is its credential and is recorded as ``/services/***``; the
``Authorization`` header and the PagerDuty ``routing_key`` are masked.

Run both in their own process (the drill environment starts it in the background):

    python -m rollback_drill.notify.sinks --dir DIR [--http-port 0] [--smtp-port 0]
        [--status-page-token-env VAR]

When both listen, one JSON line ``{"http_url", "smtp_host", "smtp_port", "pid", "received"}``
goes to stdout; SIGTERM (or SIGINT) stops them cleanly, exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import itertools
import json
import os
import signal
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import urlsplit

from aiosmtpd.controller import Controller

from rollback_drill.evidence.redact import MASK, add_secret, redact

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

    from aiosmtpd.smtp import SMTP as SmtpServer  # noqa: N811 - aiosmtpd's name, renamed against smtplib's
    from aiosmtpd.smtp import Envelope, Session

LOOPBACK: Final = "127.0.0.1"
RECEIVED_FILE_NAME: Final = "notifications-received.jsonl"
MAX_REQUEST_BYTES: Final = 1024 * 1024
"""A request body over this is refused (413); the runbook's messages are a few hundred bytes."""

SERVE_POLL_S: Final = 0.05
"""How often the HTTP server checks for shutdown: ``stop`` returns within this."""

SMTP_READY_TIMEOUT_S: Final = 5.0
"""How long aiosmtpd may take to bind and answer its own probe connection."""

SLACK_PREFIX: Final = "/services/"
PAGERDUTY_PATH: Final = "/v2/enqueue"
STATUS_PAGE_PATH: Final = "/api/incidents"
PAGERDUTY_SEVERITIES: Final = frozenset({"critical", "error", "warning", "info"})
PAGERDUTY_ACTIONS: Final = frozenset({"trigger", "acknowledge", "resolve"})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class SinkEndpoints:
    """Where the sinks listen. ``status_page_token`` is set when the sinks check the status page's
    Bearer token against a known one (the senders then use it)."""

    http_url: str
    smtp_host: str
    smtp_port: int
    status_page_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_ready_line(cls, line: str) -> SinkEndpoints:
        """The endpoints the ``python -m rollback_drill.notify.sinks`` process printed."""
        try:
            data = json.loads(line)
            return cls(str(data["http_url"]), str(data.get("smtp_host", LOOPBACK)), int(data["smtp_port"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a sinks ready line ({exc}): {line[:200]!r}") from None


class _Journal:
    """The sinks' record: redacted entries in memory and, optionally, appended to a JSONL file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        self._fd: int | None = None
        if path is not None:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def record(self, entry: dict[str, Any]) -> None:
        written: dict[str, Any] = redact(entry)
        line = (json.dumps(written, ensure_ascii=False, sort_keys=True) + "\n").encode()
        with self._lock:
            self._entries.append(written)
            if self._fd is not None:
                os.write(self._fd, line)
                os.fsync(self._fd)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._entries)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class _Failures:
    """Answers the sinks were told to give instead of the real ones, first come first served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[tuple[str | None, int]] = []

    def add(self, count: int, code: int, service: str | None) -> None:
        if count < 0:
            raise ValueError(f"fail_next needs a count >= 0, got {count}")
        with self._lock:
            self._queue.extend([(service, code)] * count)

    def take(self, service: str) -> int | None:
        with self._lock:
            for index, (wanted, code) in enumerate(self._queue):
                if wanted is None or wanted == service:
                    del self._queue[index]
                    return code
            return None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()


# --- HTTP -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    sink: HttpSink


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "rollback-drill-sink/1"
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        """The journal is the log; stderr access lines would carry the webhook path."""

    def do_POST(self) -> None:
        self.server.sink.handle(self, "POST")

    def do_GET(self) -> None:
        self.server.sink.handle(self, "GET")

    def do_PUT(self) -> None:
        self.server.sink.handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.sink.handle(self, "DELETE")


def _service(path: str) -> str:
    if path.startswith(SLACK_PREFIX):
        return "slack"
    if path == PAGERDUTY_PATH:
        return "pagerduty"
    if path == STATUS_PAGE_PATH:
        return "status-page"
    return "unknown"


def _slack(body: Any) -> _Reply:
    if not isinstance(body, dict):
        return _Reply(HTTPStatus.BAD_REQUEST, "invalid_payload", "text/html")
    has_text = isinstance(body.get("text"), str) and bool(body["text"].strip())
    # Slack also takes a message made only of attachments or blocks, which is what Alertmanager posts.
    has_parts = any(isinstance(body.get(key), list) and body[key] for key in ("attachments", "blocks"))
    if not has_text and not has_parts:
        return _Reply(HTTPStatus.BAD_REQUEST, "no_text", "text/html")
    return _Reply(HTTPStatus.OK, "ok", "text/html")


def _trigger_errors(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing."]
    errors = [
        f"'payload.{key}' is missing or blank."
        for key in ("summary", "source")
        if not isinstance(payload.get(key), str) or not payload[key].strip()
    ]
    if payload.get("severity") not in PAGERDUTY_SEVERITIES:
        errors.append("'payload.severity' must be one of critical, error, warning, info.")
    return errors


def _pagerduty(body: Any) -> _Reply:
    errors: list[str] = []
    if not isinstance(body, dict):
        body = {}
        errors.append("Event object is not a JSON object.")
    if not isinstance(body.get("routing_key"), str) or not body["routing_key"].strip():
        errors.append("'routing_key' is missing or blank.")
    action = body.get("event_action")
    if action not in PAGERDUTY_ACTIONS:
        errors.append("'event_action' must be one of trigger, acknowledge, resolve.")
    dedup_key = body.get("dedup_key")
    if action in {"acknowledge", "resolve"} and (not isinstance(dedup_key, str) or not dedup_key):
        errors.append("'dedup_key' is required to acknowledge or resolve.")
    if action == "trigger":
        errors.extend(_trigger_errors(body.get("payload")))
    if errors:
        return _Reply(
            HTTPStatus.BAD_REQUEST, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        )
    key = dedup_key if isinstance(dedup_key, str) and dedup_key else uuid.uuid4().hex
    return _Reply(HTTPStatus.ACCEPTED, {"status": "success", "message": "Event processed", "dedup_key": key})


class HttpSink:
    """Slack, PagerDuty and the status page, on one port of 127.0.0.1."""

    def __init__(
        self, journal: _Journal, *, port: int = 0, status_page_token: str | None = None, failures: _Failures
    ) -> None:
        self._journal = journal
        self._port = port
        self._token = status_page_token
        if status_page_token:
            add_secret(status_page_token)
        self._failures = failures
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._incident_ids = itertools.count(1)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the HTTP sink is not started")
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def start(self) -> str:
        if self._server is not None:
            raise RuntimeError("the HTTP sink is already started")
        server = _HttpServer((LOOPBACK, self._port), _Handler)
        server.sink = self
        self._server = server
        self._port = int(server.server_address[1])  # a restart comes back on the same port
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": SERVE_POLL_S}, name="notify-http-sink", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def _status_page(self, body: Any, authorization: str | None) -> tuple[_Reply, bool]:
        scheme, _, credential = (authorization or "").partition(" ")
        authorized = scheme.lower() == "bearer" and bool(credential.strip())
        if authorized and self._token is not None:
            authorized = credential.strip() == self._token
        if not authorized:
            return _Reply(HTTPStatus.UNAUTHORIZED, {"error": "unauthorized"}), False
        if not isinstance(body, dict) or not body.get("title") or not body.get("status"):
            return _Reply(HTTPStatus.BAD_REQUEST, {"error": "an incident needs 'title' and 'status'"}), True
        incident = f"inc-{next(self._incident_ids)}"
        reply = _Reply(
            HTTPStatus.CREATED,
            {"id": incident, "status": body["status"], "title": body["title"]},
            headers=(("Location", f"{STATUS_PAGE_PATH}/{incident}"),),
        )
        return reply, True

    def _answer(self, service: str, method: str, body: Any, authorization: str | None) -> tuple[_Reply, bool | None]:
        if service == "unknown":
            return _Reply(HTTPStatus.NOT_FOUND, {"error": "no such endpoint"}), None
        if method != "POST":
            return _Reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "only POST"}, headers=(("Allow", "POST"),)), None
        if service == "slack":
            return _slack(body), None
        if service == "pagerduty":
            return _pagerduty(body), None
        return self._status_page(body, authorization)

    def handle(self, handler: _Handler, method: str) -> None:
        parts = urlsplit(handler.path)
        service = _service(parts.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body: Any = None
        forced: int | None = None
        if length > MAX_REQUEST_BYTES:
            reply, authorized = _Reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "request too large"}), None
        else:
            raw = handler.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            forced = self._failures.take(service)
            if forced is not None:
                reply, authorized = _Reply(forced, {"error": f"the sink was told to fail with {forced}"}), None
            else:
                reply, authorized = self._answer(service, method, body, handler.headers.get("Authorization"))
        authorization = handler.headers.get("Authorization")
        entry: dict[str, Any] = {
            "sink": "http",
            "service": service,
            "method": method,
            # A Slack webhook's path is its credential.
            "path": SLACK_PREFIX + MASK if service == "slack" else parts.path,
            "headers": dict(handler.headers.items()),
            "auth_scheme": authorization.partition(" ")[0] if authorization else None,
            "body": body,
            "status": int(reply.status),
            "forced_failure": forced is not None,
            "at": _now(),
        }
        if parts.query:
            entry["query"] = parts.query
        if authorized is not None:
            entry["authorized"] = authorized
        # Recorded before the answer goes out: whoever got the answer finds the record.
        self._journal.record(entry)
        self._send(handler, reply)

    @staticmethod
    def _send(handler: _Handler, reply: _Reply) -> None:
        payload = (reply.body if isinstance(reply.body, str) else json.dumps(reply.body)).encode()
        try:
            handler.send_response(int(reply.status))
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers:
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up (its timeout); the journal has the request


# --- SMTP -------------------------------------------------------------------------------------------


class _LoopbackController(Controller):
    """aiosmtpd's controller probes its own port after binding; with port 0 it would probe port 0."""

    def _trigger_server(self) -> None:
        server = self.server
        if self.port == 0 and isinstance(server, asyncio.Server) and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])
        super()._trigger_server()  # type: ignore[no-untyped-call] # aiosmtpd leaves it unannotated


class _MailHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SmtpServer, session: Session, envelope: Envelope) -> str:  # noqa: N802, ARG002 - aiosmtpd's hook
        return self._sink.received_mail(envelope)


class SmtpSink:
    """An SMTP server (aiosmtpd) on 127.0.0.1 that accepts every mail and records it decoded."""

    def __init__(self, journal: _Journal, *, port: int = 0) -> None:
        self._journal = journal
        self._port = port
        self._controller: _LoopbackController | None = None
        self._failures = _Failures()

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> int:
        if self._controller is not None:
            raise RuntimeError("the SMTP sink is already started")
        controller = _LoopbackController(
            _MailHandler(self),
            hostname=LOOPBACK,
            port=self._port,
            ready_timeout=SMTP_READY_TIMEOUT_S,
            # An explicit name: aiosmtpd's default asks DNS for our FQDN, which can take seconds.
            server_hostname="rollback-drill-sink",
        )
        controller.start()
        self._controller = controller
        self._port = int(controller.port)  # a restart comes back on the same port
        return self._port

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def fail_next(self, count: int, code: int = 451) -> None:
        """Answer the next ``count`` mails' DATA with ``code`` (4xx: try again later; 5xx: refused)."""
        self._failures.add(count, code, None)

    def received_mail(self, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content.encode() if isinstance(content, str) else bytes(content)
        mail = BytesParser(policy=policy.default).parsebytes(raw)
        part = mail.get_body(preferencelist=("plain",))
        body = part.get_content() if part is not None else ""
        forced = self._failures.take("email")
        status = forced if forced is not None else 250
        self._journal.record(
            {
                "sink": "smtp",
                "service": "email",
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "from": str(mail.get("From", "")),
                "to": [address for _, address in getaddresses([str(mail.get("To", ""))])],
                "subject": str(mail.get("Subject", "")),
                "message_id": str(mail.get("Message-ID", "")),
                "body": body,
                "status": status,
                "forced_failure": forced is not None,
                "at": _now(),
            }
        )
        if forced is not None:
            return f"{forced} {'4.3.0' if forced < 500 else '5.3.0'} the sink was told to fail"
        return "250 2.0.0 OK: queued"


# --- both -------------------------------------------------------------------------------------------


class Sinks:
    """The HTTP sink and the SMTP sink together, sharing one journal."""

    def __init__(self, *, http_port: int = 0, smtp_port: int = 0, status_page_token: str | None = None) -> None:
        self._http_port = http_port
        self._smtp_port = smtp_port
        self._token = status_page_token
        self._failures = _Failures()
        self._journal: _Journal | None = None
        self._http: HttpSink | None = None
        self._smtp: SmtpSink | None = None
        self._endpoints: SinkEndpoints | None = None

    def start(self, directory: Path | str | None = None) -> SinkEndpoints:
        """Start both sinks; with ``directory``, also append every record to ``directory/notifications-received.jsonl``."""
        if self._journal is not None:
            raise RuntimeError("the sinks are already started")
        path = None
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            path = Path(directory) / RECEIVED_FILE_NAME
        journal = _Journal(path)
        http_sink = HttpSink(journal, port=self._http_port, status_page_token=self._token, failures=self._failures)
        smtp_sink = SmtpSink(journal, port=self._smtp_port)
        try:
            http_url = http_sink.start()
            smtp_port = smtp_sink.start()
        except BaseException:
            http_sink.stop()
            journal.close()
            raise
        self._journal, self._http, self._smtp = journal, http_sink, smtp_sink
        self._endpoints = SinkEndpoints(http_url, smtp_sink.host, smtp_port, self._token)
        return self._endpoints

    def stop(self) -> None:
        """Stop both sinks and close the journal; ``received()`` keeps answering."""
        if self._smtp is not None:
            self._smtp.stop()
        if self._http is not None:
            self._http.stop()
        if self._journal is not None:
            self._journal.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoints(self) -> SinkEndpoints:
        if self._endpoints is None:
            raise RuntimeError("the sinks are not started")
        return self._endpoints

    @property
    def http(self) -> HttpSink:
        if self._http is None:
            raise RuntimeError("the sinks are not started")
        return self._http

    @property
    def smtp(self) -> SmtpSink:
        if self._smtp is None:
            raise RuntimeError("the sinks are not started")
        return self._smtp

    @property
    def received_path(self) -> Path | None:
        return self._journal.path if self._journal is not None else None

    def received(self) -> list[dict[str, Any]]:
        """Every request and mail so far, in arrival order, as recorded (redacted)."""
        return self._journal.entries() if self._journal is not None else []

    def fail_next(self, count: int, status: int = 503, *, service: str | None = None) -> None:
        """Answer the next ``count`` HTTP requests (of ``service`` — "slack", "pagerduty",
        "status-page" — or of any) with ``status`` instead of the real answer."""
        self._failures.add(count, status, service)


# --- the process ------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rollback_drill.notify.sinks",
        description="Local Slack/PagerDuty/status-page (HTTP) and SMTP sinks on 127.0.0.1 for RB-LAUNCH-002 drills.",
    )
    parser.add_argument("--dir", type=Path, required=True, help=f"where {RECEIVED_FILE_NAME} is appended")
    parser.add_argument("--http-port", type=int, default=0, help="port of the HTTP sink (0: any free port)")
    parser.add_argument("--smtp-port", type=int, default=0, help="port of the SMTP sink (0: any free port)")
    parser.add_argument(
        "--status-page-token-env",
        metavar="VAR",
        help="environment variable holding the status page token to require (default: any Bearer token)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    token = None
    if args.status_page_token_env:
        token = os.environ.get(args.status_page_token_env)
        if not token:
            print(f"notification sinks: {args.status_page_token_env} is not set", file=sys.stderr)
            return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - the signal API's signature
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sinks = Sinks(http_port=args.http_port, smtp_port=args.smtp_port, status_page_token=token)
    try:
        endpoints = sinks.start(args.dir)
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"notification sinks: cannot start ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    ready = {
        "http_url": endpoints.http_url,
        "smtp_host": endpoints.smtp_host,
        "smtp_port": endpoints.smtp_port,
        "pid": os.getpid(),
        "received": str(sinks.received_path),
    }
    print(json.dumps(ready), flush=True)
    try:
        stop.wait()  # a signal handler sets it; the wait is interruptible on POSIX
    finally:
        sinks.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
