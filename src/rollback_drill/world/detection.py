"""Detection as the on-call lives it: from the incident to Alertmanager's first notification for it.

The notification sinks journal what Alertmanager sends (PagerDuty events, Slack posts); the page that
detects an incident is the first one, after the injection, for an alert that watches that incident.
``FlowFailureRateHigh`` is ``severity: critical`` and pages PagerDuty; kubernetes-mixin's
``KubePodCrashLooping`` is ``severity: warning`` and reaches the on-call through Slack (Alertmanager's
routing, unchanged), so a crash loop is detected by that post. An incident no seeded alert watches
(cost, model providers, quality, schema) pages nobody: its ``detect`` is not applicable, and says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rollback_drill.errors import WaitTimeout
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.monitoring.alertmanager import DEFAULT_EMAIL_FROM
from rollback_drill.monitoring.promql import PrometheusClient
from rollback_drill.timing.clock import Clock
from rollback_drill.timing.wait import wait_until
from rollback_drill.timing.windows import INCIDENT_INJECTED, PAGE_DELIVERED, Marks
from rollback_drill.world.manifests import RUNBOOK_WINDOWS_S, scaled_windows

INCIDENT_ALERTS: dict[str, tuple[str, str]] = {
    "mass-failure": ("FlowFailureRateHigh", "failures_for"),
    "cascading-failure": ("FlowFailureRateHigh", "failures_for"),
    "single-repo-failure": ("FlowFailureRateHigh", "failures_for"),
    "crash-loop": ("KubePodCrashLooping", "crash_loop_for"),
}
"""Incident -> the seeded alert that detects it and the name of its ``for:`` window.

The three failure incidents backdate 8 failures per affected repo, above the rule's 5 an hour, so each
pages the affected repos' on-call, a NO-GO one (single-repo-failure: isolate the repo) included.
Intermittent errors (3 of 100 flows) stay below it, and the other incidents move no failure counter
at all when injected: nobody is paged, and their ``detect`` is not applicable."""
ALERT_RECEIVER = {"FlowFailureRateHigh": "pagerduty", "KubePodCrashLooping": "slack"}
"""Where Alertmanager's routing sends each alert: critical pages PagerDuty, warning posts to Slack."""
EVALUATIONS_TO_FIRE = 5
"""Scrapes and evaluations (1 s each) between the incident and a firing alert: sample, pending, firing, send."""
GROUP_WAIT_S = 1.0
PAGE_MARGIN_S = 45.0
"""kwok's crash loop takes a few seconds to reach CrashLoopBackOff; the rest is a busy machine."""
PAGE_POLL_S = 0.1
"""The sinks' journal is a local file: reading it every 100 ms keeps the measured window honest."""


@dataclass(frozen=True)
class AlertmanagerNotification:
    """One notification Alertmanager delivered to a sink: which alert, for which repo, when, answered how."""

    service: str
    alertname: str
    repo: str | None
    at: datetime
    status: int

    def as_evidence(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "alertname": self.alertname,
            "repo": self.repo,
            "at": self.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "status": self.status,
        }


def _title(entry: dict[str, Any]) -> str:
    body: dict[str, Any] = entry["body"] if isinstance(entry.get("body"), dict) else {}
    if entry.get("service") == "pagerduty":
        return str((body.get("payload") or {}).get("summary") or "")
    attachments = body.get("attachments") or [{}]
    return str(attachments[0].get("title") or "")


def sent_by_alertmanager(entry: dict[str, Any]) -> bool:
    """Whether a sinks' journal entry came from Alertmanager (its User-Agent, or its mail's sender), not the drill."""
    agent = str((entry.get("headers") or {}).get("User-Agent", ""))
    return agent.startswith("Alertmanager") or entry.get("mail_from") == DEFAULT_EMAIL_FROM


def alertmanager_notifications(entries: Iterable[dict[str, Any]]) -> list[AlertmanagerNotification]:
    """The journal entries Alertmanager sent (its User-Agent), PagerDuty and Slack, oldest first.

    Alertmanager's templates (``monitoring.alertmanager.config``) put ``<alertname> <repo>`` first in the
    PagerDuty summary and the Slack title, so both name the alert the same way.
    """
    found = []
    for entry in entries:
        if entry.get("service") not in {"pagerduty", "slack"} or not sent_by_alertmanager(entry):
            continue
        words = _title(entry).split(":", 1)[0].split()
        if not words:
            continue
        at = datetime.fromisoformat(str(entry["at"]))
        found.append(
            AlertmanagerNotification(
                str(entry["service"]), words[0], words[1] if len(words) > 1 else None, at, int(entry.get("status", 0))
            )
        )
    return sorted(found, key=lambda n: n.at)


@dataclass(frozen=True)
class Detection:
    """How the incident was detected: the page and ``detect_s``, or why ``detect`` does not apply."""

    incident: str
    alert: str | None
    receiver: str | None
    deadline_s: float
    windows_runbook_s: dict[str, float] = field(default_factory=dict)
    windows_used: dict[str, str] = field(default_factory=dict)
    page: AlertmanagerNotification | None = None
    detect_s: float | None = None
    not_applicable: str | None = None

    def as_evidence(self) -> dict[str, Any]:
        return {
            "incident": self.incident,
            "alert": self.alert,
            "receiver": self.receiver,
            "deadline_s": round(self.deadline_s, 3),
            "windows": {"runbook_s": self.windows_runbook_s, "used": self.windows_used},
            "page": self.page.as_evidence() if self.page else None,
            "detect_s": None if self.detect_s is None else round(self.detect_s, 3),
            "not_applicable": self.not_applicable,
        }


def page_deadline_s(for_s: float) -> float:
    """The scaled ``for:`` window, a few evaluation intervals, Alertmanager's group_wait and a margin."""
    return for_s + EVALUATIONS_TO_FIRE * 1.0 + GROUP_WAIT_S + PAGE_MARGIN_S


def _first_page(
    journal: Callable[[], list[dict[str, Any]]], alert: str, receiver: str, since: datetime, repos: frozenset[str]
) -> AlertmanagerNotification | None:
    for notification in alertmanager_notifications(journal()):
        if (
            notification.alertname == alert
            and notification.service == receiver
            and notification.at >= since
            and (not repos or notification.repo is None or notification.repo in repos)
        ):
            return notification
    return None


def detect_incident(
    incident: str,
    journal: Callable[[], list[dict[str, Any]]],
    *,
    marks: Marks,
    recorder: Recorder,
    time_scale: float,
    clock: Clock,
    repos: Iterable[str] = (),
    monitoring: bool = True,
) -> Detection:
    """Wait for Alertmanager's first page for ``incident`` after its injection; mark and record ``detect``.

    ``journal`` reads the sinks' journal; ``repos`` are the incident's affected repos (a page for another
    repo is somebody else's). A page that does not come in time leaves ``detect`` not applicable, with the
    reason and a warning: the decision still follows the live signals.
    """
    injected = marks.get(INCIDENT_INJECTED)
    if injected is None:
        raise ValueError("detection starts at the injection: mark incident_injected first")
    injected_at = clock.wall() - timedelta(seconds=max(0.0, clock.monotonic() - injected))
    used = scaled_windows(time_scale)
    spec = INCIDENT_ALERTS.get(incident)
    if not monitoring:
        detection = Detection(
            incident,
            None,
            None,
            0.0,
            not_applicable="no monitoring chain beside this target: detect runs to the decision",
        )
    elif spec is None:
        detection = Detection(
            incident, None, None, 0.0, not_applicable=f"no seeded alert watches {incident}: nobody is paged for it"
        )
    else:
        alert, window = spec
        receiver = ALERT_RECEIVER[alert]
        for_s = RUNBOOK_WINDOWS_S[window] * time_scale
        deadline = page_deadline_s(for_s)
        base = Detection(
            incident, alert, receiver, deadline, {window: RUNBOOK_WINDOWS_S[window]}, {window: used[window]}
        )
        try:
            page = wait_until(
                lambda: _first_page(journal, alert, receiver, injected_at, frozenset(repos)),
                timeout_s=deadline,
                clock=clock,
                describe=f"Alertmanager's {receiver} notification of {alert} for {incident}",
                interval_s=PAGE_POLL_S,
            )
        except WaitTimeout as exc:
            detection = Detection(**{**base.__dict__, "not_applicable": f"no page within {deadline:.0f} s: {exc}"})
            recorder.warn("no-page", f"{incident}: {detection.not_applicable}")
        else:
            detect_s = max(0.0, (page.at - injected_at).total_seconds())
            marks.mark(PAGE_DELIVERED, injected + detect_s, overwrite=True)
            detection = Detection(**{**base.__dict__, "page": page, "detect_s": detect_s})
            recorder.event("page_delivered", alert=alert, receiver=receiver, detect_s=round(detect_s, 3))
    recorder.set("detection", detection.as_evidence())
    return detection


def fired_alerts(prometheus_url: str, *, start_s: float, end_s: float) -> list[dict[str, Any]]:
    """Every alert that fired between ``start_s`` and ``end_s`` (unix s), from Prometheus's ``ALERTS`` series.

    Each: its name, labels, and the first and last second it was seen firing (1 s resolution).
    """
    series = PrometheusClient(prometheus_url).query_range(
        'ALERTS{alertstate="firing"}', start_s=start_s, end_s=end_s, step_s=1
    )
    fired = []
    for item in series:
        if not item.points:
            continue
        labels = {k: v for k, v in item.labels.items() if k not in {"__name__", "alertstate"}}
        fired.append(
            {
                "alertname": labels.pop("alertname", ""),
                "labels": labels,
                "firing_from": _iso(item.points[0][0]),
                "firing_until": _iso(item.points[-1][0]),
            }
        )
    return sorted(fired, key=lambda a: (a["firing_from"], a["alertname"]))


def _iso(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def record_monitoring(
    recorder: Recorder,
    journal: Callable[[], list[dict[str, Any]]],
    prometheus_url: str | None,
    *,
    since: datetime,
    until: datetime,
) -> None:
    """Put the alerts that fired and each notification Alertmanager sent between ``since`` and ``until`` into the evidence."""
    sent = [n.as_evidence() for n in alertmanager_notifications(journal()) if since <= n.at <= until]
    recorder.set("alertmanager_notifications", sent)
    if prometheus_url:
        recorder.set("alerts_fired", fired_alerts(prometheus_url, start_s=since.timestamp(), end_s=until.timestamp()))
