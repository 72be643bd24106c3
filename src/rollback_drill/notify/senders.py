"""Senders that speak the real protocols, and the notifier that routes the runbook's messages to them.

- Slack: an incoming webhook, ``POST {"channel", "text"}``; Slack answers ``200 ok``.
- PagerDuty: Events API v2, ``POST <base>/v2/enqueue``; one dedup key per drill
  (``rollback-drill/<drill_id>``), so the completion's ``resolve`` closes the alert's page.
- E-mail: SMTP, one message from the configured sender to the configured recipients.
- Status page: ``POST <url>/api/incidents`` with ``Authorization: Bearer <token>``.

A sender raises ``TransientSendFailure`` when another attempt may succeed (the sink is
down, timed out, answered HTTP 5xx or 429, or an SMTP 4xx) and ``SendRejected`` when the
same request would be refused again (HTTP 4xx, SMTP 5xx, an answer that is not the
service's). ``RoutingNotifier`` retries the first with a bounded backoff and records the
second at once; either way ``send`` returns a ``Delivery`` and never raises, so one broken
sink never costs the other messages.

Every webhook URL, routing key, token and SMTP password is registered with the redactor
(``rollback_drill.evidence.redact``) when a sender is built, and no error text carries a
URL path, a header or a request body.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import math
import secrets
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol
from urllib.parse import unquote, urlsplit

from rollback_drill.config import DrillConfig
from rollback_drill.errors import ConfigError, DrillError, RetryableError
from rollback_drill.evidence.redact import add_secret, redact_text
from rollback_drill.notify.messages import Channel, Message
from rollback_drill.notify.notifier import Delivery
from rollback_drill.timing.clock import Clock, Sleeper, SystemClock

if TYPE_CHECKING:
    from rollback_drill.notify.sinks import SinkEndpoints

SLACK_WEBHOOK: Final = "slack-webhook"
PAGERDUTY_EVENTS_V2: Final = "pagerduty-events-v2"
SMTP: Final = "smtp"
STATUS_PAGE_API: Final = "status-page-api"

PAGERDUTY_EVENTS_URL: Final = "https://events.pagerduty.com"
"""PagerDuty's Events API v2 host; live mode sends to ``<this>/v2/enqueue``."""

PAGERDUTY_SEVERITIES: Final = frozenset({"critical", "error", "warning", "info"})
PAGERDUTY_ACTIONS: Final = frozenset({"trigger", "acknowledge", "resolve"})
PAGERDUTY_SUMMARY_MAX: Final = 1024
"""PagerDuty truncates ``payload.summary`` at 1024 characters; we cut it ourselves so the cut is visible."""

EVENT_SOURCE: Final = "rollback-drill"
"""``payload.source`` of every PagerDuty event, and the dedup key's prefix."""

DEFAULT_TIMEOUT_S: Final = 10.0
"""Per request (connect plus answer). A sink slower than this is as good as down for a
step whose budget is minutes; the retries give it three more chances."""

DEFAULT_RETRIES: Final = 3
DEFAULT_BACKOFF_S: Final = (0.2, 0.5, 1.0)
"""Waits before retries 1, 2, 3 (the last repeats if there are more retries): 1.7 s in all,
small against pre-2's five-minute budget, long enough for a restarting sink."""

MAX_RETRIES: Final = 10
MAX_BACKOFF_S: Final = 30.0
"""Bounds on what a caller may ask for, so a typo cannot stall a timed runbook step."""

MAX_ANSWER_BYTES: Final = 64 * 1024
"""How much of an answer is read; the services' answers are a few hundred bytes."""

ANSWER_SNIPPET_CHARS: Final = 200
"""How much of an unexpected answer is quoted in an error."""

USER_AGENT: Final = "rollback-drill (RB-LAUNCH-002)"


# --- errors -----------------------------------------------------------------------------------------


class SendFailed(DrillError):
    """A message was not delivered. ``status`` is the answer's code, or None when nothing answered."""

    def __init__(self, message: str, *, transport: str, status: int | None = None) -> None:
        super().__init__(message)
        self.transport = transport
        self.status = status


class TransientSendFailure(SendFailed, RetryableError):
    """Down, timed out, HTTP 5xx or 429, SMTP 4xx: the same message may go through on another attempt."""


class SendRejected(SendFailed):
    """HTTP 4xx, SMTP 5xx, or an answer that is not the service's: sending it again would not help."""


# --- the sender interface ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """What a sink answered to a delivered message."""

    status: int | None
    reference: str | None = None


class Sender(Protocol):
    @property
    def transport(self) -> str:
        """The protocol's name, as ``Delivery.transport`` records it."""
        ...

    def deliver(self, message: Message) -> Sent:
        """Deliver once; raise ``TransientSendFailure`` or ``SendRejected`` when it did not go through."""
        ...


# --- HTTP -------------------------------------------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirected POST would silently become a GET, or go to a host nobody configured: refuse it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ARG002 - the base class's signature
        return None


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_http_url(url: str, what: str) -> None:
    """Raise ``ValueError`` unless ``url`` is an absolute http(s) URL; the message never quotes the URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(f"{what} is not a valid URL") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{what} must be an http:// or https:// URL with a host")


def _endpoint(url: str, *, keep_path: bool) -> str:
    """``scheme://host[:port][/path]`` for error messages: never credentials or a query, and the path only
    where it is not a secret (a Slack webhook's path is its credential)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}{parts.path if keep_path else ''}"


def _snippet(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip().replace("\n", " ")
    return text if len(text) <= ANSWER_SNIPPET_CHARS else text[: ANSWER_SNIPPET_CHARS - 3] + "..."


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _HttpPoster:
    """POSTs JSON with urllib: no redirects, and no proxy for loopback sinks (a corporate proxy
    would otherwise swallow 127.0.0.1)."""

    def __init__(self, url: str, *, transport: str, describe: str, timeout_s: float) -> None:
        self.url = url
        self.transport = transport
        self.describe = describe
        self.timeout_s = timeout_s
        handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
        if _is_loopback(urlsplit(url).hostname):
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def post(self, document: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> _Answer:
        request = urllib.request.Request(  # noqa: S310 - the scheme was checked to be http(s) when the sender was built
            self.url,
            data=json.dumps(document, ensure_ascii=False).encode(),
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT, **(headers or {})},
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return _Answer(int(response.status), response.read(MAX_ANSWER_BYTES))
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read(MAX_ANSWER_BYTES)
            except OSError:
                body = b""
            finally:
                exc.close()
            text = f"{self.describe} answered HTTP {exc.code}: {_snippet(body) or exc.reason}"
            if exc.code >= 500 or exc.code == 429:
                raise TransientSendFailure(text, transport=self.transport, status=exc.code) from None
            raise SendRejected(text, transport=self.transport, status=exc.code) from None
        except urllib.error.URLError as exc:
            raise TransientSendFailure(
                f"{self.describe} is unreachable: {exc.reason}", transport=self.transport
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise TransientSendFailure(
                f"{self.describe} failed mid-request: {type(exc).__name__}: {exc}", transport=self.transport
            ) from None


# --- Slack ------------------------------------------------------------------------------------------


class SlackWebhookSender:
    """A Slack incoming webhook. The URL is the credential: it is registered as a secret and
    only its host ever appears in a message."""

    transport = SLACK_WEBHOOK

    def __init__(self, webhook_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        add_secret(webhook_url)
        add_secret(urlsplit(webhook_url).path)
        _check_http_url(webhook_url, "the Slack webhook URL")
        self._poster = _HttpPoster(
            webhook_url,
            transport=self.transport,
            describe=f"Slack webhook at {_endpoint(webhook_url, keep_path=False)}",
            timeout_s=timeout_s,
        )

    @property
    def webhook_url(self) -> str:
        return self._poster.url

    def deliver(self, message: Message) -> Sent:
        document: dict[str, Any] = {"text": message.body}
        if message.to:
            document = {"channel": message.to[0], **document}
        answer = self._poster.post(document)
        if answer.status != 200 or answer.body.strip() != b"ok":
            raise SendRejected(
                f"{self._poster.describe} answered HTTP {answer.status} {_snippet(answer.body)!r}, not Slack's 200 'ok'",
                transport=self.transport,
                status=answer.status,
            )
        return Sent(answer.status)


# --- PagerDuty --------------------------------------------------------------------------------------


def pagerduty_dedup_key(drill_id: str) -> str:
    """One dedup key per drill: the alert triggers it and the completion resolves it."""
    return f"{EVENT_SOURCE}/{drill_id}"


class PagerDutyEventsSender:
    """PagerDuty Events API v2. ``message.payload`` may carry ``event_action``, ``severity``,
    ``custom_details`` and ``dedup_key``; the drill's dedup key is used otherwise."""

    transport = PAGERDUTY_EVENTS_V2

    def __init__(
        self,
        events_url: str,
        routing_key: str,
        *,
        dedup_key: str,
        severity: str = "critical",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        add_secret(routing_key)
        _check_http_url(events_url, "the PagerDuty Events API URL")
        if not routing_key:
            raise ValueError("the PagerDuty routing key is empty")
        if severity not in PAGERDUTY_SEVERITIES:
            raise ValueError(f"PagerDuty severity {severity!r} is not one of {', '.join(sorted(PAGERDUTY_SEVERITIES))}")
        url = events_url.rstrip("/") + "/v2/enqueue"
        self._poster = _HttpPoster(
            url,
            transport=self.transport,
            describe=f"PagerDuty Events API at {_endpoint(url, keep_path=True)}",
            timeout_s=timeout_s,
        )
        self._routing_key = routing_key
        self.dedup_key = dedup_key
        self.severity = severity

    def event(self, message: Message) -> dict[str, Any]:
        """The Events API v2 document for ``message`` (it holds the routing key: never log it unredacted)."""
        action = str(message.payload.get("event_action", "trigger"))
        if action not in PAGERDUTY_ACTIONS:
            raise SendRejected(
                f"PagerDuty event_action {action!r} is not one of {', '.join(sorted(PAGERDUTY_ACTIONS))}",
                transport=self.transport,
            )
        document: dict[str, Any] = {
            "routing_key": self._routing_key,
            "event_action": action,
            "dedup_key": str(message.payload.get("dedup_key", self.dedup_key)),
        }
        if action == "trigger":
            severity = str(message.payload.get("severity", self.severity))
            if severity not in PAGERDUTY_SEVERITIES:
                raise SendRejected(f"PagerDuty severity {severity!r} is not valid", transport=self.transport)
            summary = message.subject or next(iter(message.body.splitlines()), "") or "rollback drill notification"
            details = message.payload.get("custom_details")
            document["payload"] = {
                "summary": summary[:PAGERDUTY_SUMMARY_MAX],
                "source": EVENT_SOURCE,
                "severity": severity,
                "custom_details": {"details": message.body, **(details if isinstance(details, Mapping) else {})},
            }
            document["client"] = USER_AGENT
        return document

    def deliver(self, message: Message) -> Sent:
        answer = self._poster.post(self.event(message))
        reply = answer.json()
        if answer.status != 202 or not isinstance(reply, dict) or reply.get("status") != "success":
            raise SendRejected(
                f"{self._poster.describe} answered HTTP {answer.status} {_snippet(answer.body)!r}, "
                'not 202 {"status": "success"}',
                transport=self.transport,
                status=answer.status,
            )
        return Sent(answer.status, str(reply.get("dedup_key") or self.dedup_key))


# --- SMTP -------------------------------------------------------------------------------------------

SmtpSecurity = Literal["none", "opportunistic", "starttls", "tls"]
"""``none``: plain (the local sink); ``opportunistic``: STARTTLS when offered; ``starttls``:
STARTTLS or refuse; ``tls``: implicit TLS (smtps, port 465)."""


@dataclass(frozen=True)
class SmtpEndpoint:
    host: str
    port: int
    security: SmtpSecurity
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> SmtpEndpoint:
        """``smtp://[user:password@]host[:port]`` (STARTTLS when offered, and required before a password
        goes to a host that is not loopback) or ``smtps://...`` (implicit TLS). Messages never quote the URL."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError("the SMTP URL is not a valid URL") from None
        if parts.password:
            add_secret(parts.password)
            add_secret(unquote(parts.password))
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError("the SMTP URL must be smtp://[user:password@]host[:port] or smtps://...")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if parts.scheme == "smtps":
            return cls(parts.hostname, port or 465, "tls", username, password)
        security: SmtpSecurity = "starttls" if username and not _is_loopback(parts.hostname) else "opportunistic"
        return cls(parts.hostname, port or 25, security, username, password)


def _smtp_failure(exc: smtplib.SMTPResponseException, describe: str) -> SendFailed:
    detail = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    text = f"{describe} answered {exc.smtp_code} {detail}"
    if 400 <= exc.smtp_code < 500:
        return TransientSendFailure(text, transport=SMTP, status=exc.smtp_code)
    return SendRejected(text, transport=SMTP, status=exc.smtp_code)


class SmtpSender:
    """One e-mail per message: From the configured sender, To every address in ``message.to``."""

    transport = SMTP

    def __init__(
        self,
        endpoint: SmtpEndpoint,
        *,
        sender: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        local_hostname: str = "rollback-drill.invalid",
    ) -> None:
        if endpoint.password:
            add_secret(endpoint.password)
        self.endpoint = endpoint
        self.sender = sender
        self.timeout_s = timeout_s
        # An explicit EHLO name: smtplib's default asks DNS for our FQDN, which can take seconds.
        self.local_hostname = local_hostname
        self.describe = f"SMTP server {endpoint.host}:{endpoint.port}"

    def email(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = ", ".join(message.to)
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        mail["X-Rollback-Drill"] = f"{message.kind}; runbook RB-LAUNCH-002"
        mail.set_content(message.body)
        return mail

    def _connect(self) -> smtplib.SMTP:
        endpoint = self.endpoint
        if endpoint.security == "tls":
            return smtplib.SMTP_SSL(
                endpoint.host,
                endpoint.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout_s,
                context=ssl.create_default_context(),
            )
        return smtplib.SMTP(endpoint.host, endpoint.port, local_hostname=self.local_hostname, timeout=self.timeout_s)

    def _secure(self, smtp: smtplib.SMTP) -> None:
        security = self.endpoint.security
        if security not in {"opportunistic", "starttls"}:
            return
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        elif security == "starttls":
            raise SendRejected(
                f"{self.describe} does not offer STARTTLS, and the password is not sent in clear text",
                transport=SMTP,
            )

    def deliver(self, message: Message) -> Sent:
        mail = self.email(message)
        try:
            with self._connect() as smtp:
                self._secure(smtp)
                if self.endpoint.username:
                    smtp.login(self.endpoint.username, self.endpoint.password or "")
                refused = smtp.send_message(mail, from_addr=self.sender, to_addrs=list(message.to))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {code for code, _ in exc.recipients.values()}
            listing = ", ".join(f"{rcpt} ({code})" for rcpt, (code, _) in sorted(exc.recipients.items()))
            text = f"{self.describe} refused every recipient: {listing}"
            if all(400 <= code < 500 for code in codes):
                raise TransientSendFailure(text, transport=SMTP, status=min(codes)) from None
            raise SendRejected(text, transport=SMTP, status=max(codes)) from None
        except smtplib.SMTPResponseException as exc:
            raise _smtp_failure(exc, self.describe) from None
        except (smtplib.SMTPNotSupportedError, ssl.SSLCertVerificationError) as exc:
            raise SendRejected(f"{self.describe}: {type(exc).__name__}: {exc}", transport=SMTP) from None
        except (smtplib.SMTPException, OSError) as exc:
            # Refused, reset, timed out, disconnected: the server may be back on the next attempt.
            raise TransientSendFailure(
                f"{self.describe} is unreachable: {type(exc).__name__}: {exc}", transport=SMTP
            ) from None
        if refused:
            # Some recipients have it already; sending again would duplicate it for them.
            listing = ", ".join(f"{rcpt} ({code})" for rcpt, (code, _) in sorted(refused.items()))
            raise SendRejected(f"{self.describe} refused some recipients: {listing}", transport=SMTP)
        return Sent(250, str(mail["Message-ID"]))


# --- status page ------------------------------------------------------------------------------------


class StatusPageSender:
    """``POST <url>/api/incidents`` with the runbook's JSON and ``Authorization: Bearer <token>``."""

    transport = STATUS_PAGE_API

    def __init__(self, base_url: str, token: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        add_secret(token)
        _check_http_url(base_url, "the status page URL")
        if not token:
            raise ValueError("the status page token is empty")
        url = base_url.rstrip("/") + "/api/incidents"
        self._poster = _HttpPoster(
            url,
            transport=self.transport,
            describe=f"status page at {_endpoint(url, keep_path=True)}",
            timeout_s=timeout_s,
        )
        self._token = token

    def deliver(self, message: Message) -> Sent:
        document = dict(message.payload) or {"title": message.subject, "message": message.body}
        answer = self._poster.post(document, {"Authorization": f"Bearer {self._token}"})
        reply = answer.json()
        if answer.status not in {200, 201} or not isinstance(reply, dict):
            raise SendRejected(
                f"{self._poster.describe} answered HTTP {answer.status} {_snippet(answer.body)!r}, not 201 with JSON",
                transport=self.transport,
                status=answer.status,
            )
        incident = reply.get("id")
        return Sent(answer.status, None if incident is None else str(incident))


# --- routing ----------------------------------------------------------------------------------------


def _check_backoff(retries: int, backoff_s: Sequence[float]) -> tuple[float, ...]:
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise ValueError(f"retries must be an integer from 0 to {MAX_RETRIES}, got {retries!r}")
    waits = tuple(float(s) for s in backoff_s)
    if retries and not waits:
        raise ValueError("backoff_s must name at least one wait when retries > 0")
    for wait in waits:
        if not math.isfinite(wait) or not 0 <= wait <= MAX_BACKOFF_S:
            raise ValueError(f"every backoff must be from 0 to {MAX_BACKOFF_S:g} s, got {wait!r}")
    return waits


class RoutingNotifier:
    """Routes each message to the sender of its channel, retrying what may succeed on another attempt.

    A message is tried at most ``1 + retries`` times; before retry *n* it waits
    ``backoff_s[n-1]`` (the last entry repeats). ``sleep`` defaults to the clock's own
    ``sleep`` (a ``FakeClock`` then advances instead of waiting), else ``time.sleep``.
    """

    def __init__(
        self,
        senders_by_channel: Mapping[Channel, Sender],
        *,
        clock: Clock,
        retries: int = DEFAULT_RETRIES,
        backoff_s: Sequence[float] = DEFAULT_BACKOFF_S,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._backoff_s = _check_backoff(retries, backoff_s)
        self._retries = retries
        self._senders = dict(senders_by_channel)
        self._clock = clock
        if sleep is None:
            sleep = clock.sleep if isinstance(clock, Sleeper) else time.sleep
        self._sleep = sleep
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []

    @property
    def senders(self) -> Mapping[Channel, Sender]:
        return dict(self._senders)

    def _wait_before_retry(self, retry: int) -> float:
        return self._backoff_s[min(retry, len(self._backoff_s)) - 1]

    def _attempt(self, sender: Sender, message: Message) -> tuple[Sent | None, BaseException | None, int]:
        # Bounded by attempts, not by a deadline: each pause is the backoff, slept on the injected clock.
        last_transient: TransientSendFailure | None = None
        for attempt in range(1, self._retries + 2):
            if attempt > 1:
                self._sleep(self._wait_before_retry(attempt - 1))
            try:
                return sender.deliver(message), None, attempt
            except TransientSendFailure as exc:
                last_transient = exc
            except SendFailed as exc:
                return None, exc, attempt
            except Exception as exc:  # noqa: BLE001 - a broken sender must not cost the other messages
                return None, exc, attempt
        return None, last_transient, self._retries + 1

    def send(self, message: Message) -> Delivery:
        sender = self._senders.get(message.channel)
        if sender is None:
            configured = ", ".join(sorted(self._senders)) or "none"
            return self._record(
                message,
                delivered=False,
                attempts=0,
                transport="none",
                error=f"no sender for channel {message.channel!r} (configured: {configured})",
            )
        sent, error, attempts = self._attempt(sender, message)
        if sent is not None:
            return self._record(
                message,
                delivered=True,
                attempts=attempts,
                transport=sender.transport,
                status=sent.status,
                reference=sent.reference,
            )
        text = str(error) if isinstance(error, SendFailed) else f"{type(error).__name__}: {error}"
        if isinstance(error, TransientSendFailure):
            text += f" (gave up after {attempts} attempts)"
        return self._record(
            message,
            delivered=False,
            attempts=attempts,
            transport=sender.transport,
            status=error.status if isinstance(error, SendFailed) else None,
            error=text,
        )

    def send_all(self, messages: Iterable[Message]) -> list[Delivery]:
        """Send each message in turn; a failed one does not stop the rest."""
        return [self.send(message) for message in messages]

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def _record(
        self,
        message: Message,
        *,
        delivered: bool,
        attempts: int,
        transport: str,
        status: int | None = None,
        reference: str | None = None,
        error: str | None = None,
    ) -> Delivery:
        delivery = Delivery(
            message,
            delivered=delivered,
            attempts=attempts,
            at=self._clock.wall(),
            t_mono=self._clock.monotonic(),
            error=None if error is None else redact_text(error),
            transport=transport,
            status=status,
            reference=reference,
        )
        with self._lock:
            self._deliveries.append(delivery)
        return delivery


# --- from the configuration -------------------------------------------------------------------------

NotifyMode = Literal["sinks", "live"]


def _live_settings(config: DrillConfig, environ: Mapping[str, str]) -> dict[str, str]:
    notifications = config.notifications
    wanted = {
        "slack_webhook_url": notifications.slack_webhook_url_env,
        "pagerduty_routing_key": notifications.pagerduty_routing_key_env,
        "smtp_url": notifications.smtp_url_env,
        "status_page_url": notifications.status_page_url_env,
        "status_page_token": notifications.status_page_token_env,
    }
    values: dict[str, str] = {}
    missing: list[str] = []
    for key, name in wanted.items():
        value = environ.get(name, "").strip()
        if value:
            # Register first: whatever goes wrong next, these values are masked.
            add_secret(value)
            values[key] = value
        else:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"live notifications need {len(missing)} more environment variable(s): {', '.join(missing)} "
            f"(named in {config.source} under notifications); export them, or send to the local sinks "
            "(mode 'sinks')"
        )
    return values


def _drill_local_secret(prefix: str) -> str:
    secret = f"{prefix}{secrets.token_urlsafe(18)}"
    add_secret(secret)
    return secret


def notifier_from_config(
    config: DrillConfig,
    environ: Mapping[str, str],
    *,
    mode: NotifyMode,
    sinks: SinkEndpoints | None = None,
    clock: Clock | None = None,
    drill_id: str | None = None,
    pagerduty_events_url: str = PAGERDUTY_EVENTS_URL,
    retries: int = DEFAULT_RETRIES,
    backoff_s: Sequence[float] = DEFAULT_BACKOFF_S,
    sleep: Callable[[float], None] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> RoutingNotifier:
    """A ``RoutingNotifier`` for all four channels.

    ``sinks``: every sender points at the local sinks, with drill-local placeholder secrets
    (registered for redaction all the same). ``live``: endpoints and secrets come from the
    environment variables the configuration names; a missing or malformed one is a
    ``ConfigError`` that names every such variable (and never a value). ``drill_id`` makes
    the PagerDuty dedup key ``rollback-drill/<drill_id>``; pass the recorder's.
    """
    notifications = config.notifications
    if drill_id is None:
        drill_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    dedup_key = pagerduty_dedup_key(drill_id)
    if mode == "sinks":
        if sinks is None:
            raise ConfigError(
                "notifications to the local sinks need the sinks' endpoints: start them with "
                "Sinks().start(DIR) or `python -m rollback_drill.notify.sinks --dir DIR`"
            )
        webhook_url = f"{sinks.http_url}/services/TDRILL/BDRILL/{_drill_local_secret('')}"
        routing_key = secrets.token_hex(16)
        add_secret(routing_key)
        token = sinks.status_page_token or _drill_local_secret("drill-")
        add_secret(token)
        smtp = SmtpEndpoint(sinks.smtp_host, sinks.smtp_port, "none")
        events_url = status_url = sinks.http_url
    elif mode == "live":
        values = _live_settings(config, environ)
        webhook_url, routing_key, token = (
            values["slack_webhook_url"],
            values["pagerduty_routing_key"],
            values["status_page_token"],
        )
        status_url, events_url = values["status_page_url"], pagerduty_events_url
        problems = []
        for value, name in (
            (webhook_url, notifications.slack_webhook_url_env),
            (status_url, notifications.status_page_url_env),
        ):
            try:
                _check_http_url(value, name)
            except ValueError as exc:
                problems.append(str(exc))
        try:
            smtp = SmtpEndpoint.from_url(values["smtp_url"])
        except ValueError as exc:
            problems.append(f"{notifications.smtp_url_env}: {exc}")
        if problems:
            raise ConfigError(f"live notifications are misconfigured: {'; '.join(problems)}")
    else:
        raise ConfigError(f"notification mode {mode!r} is not 'sinks' or 'live'")
    try:
        senders: dict[Channel, Sender] = {
            "slack": SlackWebhookSender(webhook_url, timeout_s=timeout_s),
            "pagerduty": PagerDutyEventsSender(
                events_url,
                routing_key,
                dedup_key=dedup_key,
                severity=notifications.pagerduty_severity,
                timeout_s=timeout_s,
            ),
            "email": SmtpSender(smtp, sender=notifications.email_sender, timeout_s=timeout_s),
            "status-page": StatusPageSender(status_url, token, timeout_s=timeout_s),
        }
    except ValueError as exc:
        raise ConfigError(f"notifications ({mode}): {redact_text(str(exc))}") from None
    return RoutingNotifier(senders, clock=clock or SystemClock(), retries=retries, backoff_s=backoff_s, sleep=sleep)


__all__ = [
    "DEFAULT_BACKOFF_S",
    "PAGERDUTY_EVENTS_URL",
    "NotifyMode",
    "PagerDutyEventsSender",
    "RoutingNotifier",
    "SendFailed",
    "SendRejected",
    "Sender",
    "Sent",
    "SlackWebhookSender",
    "SmtpEndpoint",
    "SmtpSender",
    "StatusPageSender",
    "TransientSendFailure",
    "notifier_from_config",
    "pagerduty_dedup_key",
]
