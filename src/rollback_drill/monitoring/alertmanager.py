"""The embedded Alertmanager: routing by severity to the drill's sinks, start and stop, and silences (API v2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from rollback_drill.monitoring import process
from rollback_drill.monitoring._http import request_json
from rollback_drill.monitoring.errors import NotAMonitoringApi
from rollback_drill.ports import free_port

ALERTMANAGER_BINARY = Path("/usr/bin/prometheus-alertmanager")
FIX = "point --alertmanager-url at the Alertmanager's base URL (the one serving /api/v2/silences), e.g. http://127.0.0.1:9093"
DEFAULT_EMAIL_FROM = "alertmanager@rollback-drill.invalid"
"""The sender of Alertmanager's mail, so a mail sink can tell it from the drill's own."""
SLACK_WEBHOOK_PATH = "/services/T00000000/B00000000/rollbackdrill"
"""The sink takes any ``/services/...`` path as a webhook; a real one's path is its credential."""


@dataclass(frozen=True)
class Receivers:
    """Where Alertmanager sends: the drill's sinks (or a team's own services)."""

    pagerduty_url: str
    """The Events API v2 endpoint, e.g. ``<sink>/v2/enqueue``."""
    pagerduty_routing_key: str = field(repr=False)
    """The integration key; a secret for a real PagerDuty, so never in a repr."""
    slack_webhook_url: str = field(repr=False)
    """A webhook URL's path is its credential."""
    smtp_smarthost: str
    """``host:port`` of the mail relay (the SMTP sink)."""
    email_to: str = "oncall@example.invalid"
    email_from: str = DEFAULT_EMAIL_FROM
    slack_channel: str = "#flowengine-alerts"


@dataclass(frozen=True)
class AlertmanagerSettings:
    receivers: Receivers
    group_wait_s: float = 1.0
    """A drill measures detection to the page, so the first notification of a group leaves almost at once."""
    group_interval_s: float = 2.0
    """How soon a group's new alerts are sent after the first notification."""
    repeat_interval_s: float = 3600.0
    """A page already sent is not repeated during a drill."""


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def config(settings: AlertmanagerSettings) -> dict[str, Any]:
    """``alertmanager.yml``: ``severity=critical`` pages (PagerDuty) and posts to Slack, ``warning`` posts to Slack; all mail."""
    r = settings.receivers
    slack = {
        "api_url": r.slack_webhook_url,
        "channel": r.slack_channel,
        "send_resolved": False,
        "title": "{{ .CommonLabels.alertname }} {{ .CommonLabels.repo }}",
        "text": "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ end }}",
    }
    email = {
        "to": r.email_to,
        "from": r.email_from,
        "smarthost": r.smtp_smarthost,
        "require_tls": False,
        "send_resolved": False,
        "text": "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ end }}",
    }
    pagerduty = {
        "routing_key": r.pagerduty_routing_key,
        "url": r.pagerduty_url,
        "severity": "critical",
        "send_resolved": False,
        "description": "{{ .CommonLabels.alertname }} {{ .CommonLabels.repo }}: {{ .CommonAnnotations.summary }}",
    }
    return {
        "route": {
            "receiver": "email",
            "group_by": ["alertname", "repo"],
            "group_wait": _duration(settings.group_wait_s),
            "group_interval": _duration(settings.group_interval_s),
            "repeat_interval": _duration(settings.repeat_interval_s),
            "routes": [
                {"matchers": ['severity="critical"'], "receiver": "page", "continue": True},
                {"matchers": ['severity="warning"'], "receiver": "slack", "continue": True},
                {"receiver": "email"},
            ],
        },
        "receivers": [
            {"name": "page", "pagerduty_configs": [pagerduty], "slack_configs": [slack]},
            {"name": "slack", "slack_configs": [slack]},
            {"name": "email", "email_configs": [email]},
        ],
    }


@dataclass(frozen=True)
class Alertmanager:
    server: process.ServerProcess
    directory: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def address(self) -> str:
        """``host:port``, as Prometheus's alerting configuration names it."""
        return self.url.removeprefix("http://")


def start(settings: AlertmanagerSettings, directory: Path, *, port: int | None = None) -> Alertmanager:
    """Write the configuration under ``directory`` and start Alertmanager on 127.0.0.1 without clustering."""
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config(settings), sort_keys=False))
    config_file.chmod(0o600)  # the routing key and the webhook URL are credentials
    listen = f"{process.LOOPBACK}:{port or free_port()}"
    argv = [
        str(ALERTMANAGER_BINARY),
        f"--config.file={config_file}",
        f"--web.listen-address={listen}",
        # Empty: no gossip listener at all (its default is 0.0.0.0:9094).
        "--cluster.listen-address=",
        # Links in alerts and pages (generatorURL, client_url) name the loopback address, not the host name.
        f"--web.external-url=http://{listen}",
        f"--storage.path={directory / 'data'}",
    ]
    server = process.start(
        "alertmanager",
        argv,
        url=f"http://{listen}",
        ready_url=f"http://{listen}/-/ready",
        log=directory / "alertmanager.log",
        cwd=directory,
    )
    return Alertmanager(server, directory)


def stop(alertmanager: Alertmanager) -> bool:
    return process.stop(alertmanager.server)


# --- silences (API v2), against the embedded Alertmanager or a team's own ---------------------------------


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: dict[str, str]
    """Label name -> exact value (the only kind the drill creates)."""
    created_by: str
    comment: str
    starts_at: str
    ends_at: str
    state: str
    """``active``, ``pending`` or ``expired``."""


def _isoformat(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_silence(
    url: str,
    *,
    matchers: dict[str, str],
    created_by: str,
    comment: str,
    duration_s: float,
    starts_at: datetime | None = None,
) -> str:
    """Silence the alerts whose labels equal ``matchers`` (e.g. ``{"repo": "risk-engine"}``); return its id."""
    start_at = starts_at or datetime.now(UTC)
    body = {
        "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in sorted(matchers.items())],
        "startsAt": _isoformat(start_at),
        "endsAt": _isoformat(start_at + timedelta(seconds=duration_s)),
        "createdBy": created_by,
        "comment": comment,
    }
    answer = request_json("POST", url.rstrip("/") + "/api/v2/silences", what="Alertmanager", fix=FIX, body=body)
    if not isinstance(answer, dict) or not answer.get("silenceID"):
        raise NotAMonitoringApi(f"Alertmanager at {url} answered a new silence without a silenceID ({answer!r}): {FIX}")
    return str(answer["silenceID"])


def silences(url: str) -> list[Silence]:
    answer = request_json("GET", url.rstrip("/") + "/api/v2/silences", what="Alertmanager", fix=FIX)
    if not isinstance(answer, list):
        raise NotAMonitoringApi(f"Alertmanager at {url} did not answer /api/v2/silences with a list: {FIX}")
    return [
        Silence(
            id=str(item["id"]),
            matchers={m["name"]: m["value"] for m in item.get("matchers", [])},
            created_by=str(item.get("createdBy", "")),
            comment=str(item.get("comment", "")),
            starts_at=str(item.get("startsAt", "")),
            ends_at=str(item.get("endsAt", "")),
            state=str((item.get("status") or {}).get("state", "")),
        )
        for item in answer
    ]


def expire_silence(url: str, silence_id: str) -> None:
    request_json("DELETE", url.rstrip("/") + f"/api/v2/silence/{silence_id}", what="Alertmanager", fix=FIX)


@dataclass(frozen=True)
class ReceivedAlert:
    """An alert as Alertmanager holds it: ``active``, or ``suppressed`` by a silence or an inhibition."""

    labels: dict[str, str]
    state: str
    silenced_by: tuple[str, ...]


def received_alerts(url: str) -> list[ReceivedAlert]:
    answer = request_json("GET", url.rstrip("/") + "/api/v2/alerts", what="Alertmanager", fix=FIX)
    if not isinstance(answer, list):
        raise NotAMonitoringApi(f"Alertmanager at {url} did not answer /api/v2/alerts with a list: {FIX}")
    return [
        ReceivedAlert(
            labels=dict(item.get("labels") or {}),
            state=str((item.get("status") or {}).get("state", "")),
            silenced_by=tuple((item.get("status") or {}).get("silencedBy") or ()),
        )
        for item in answer
    ]
