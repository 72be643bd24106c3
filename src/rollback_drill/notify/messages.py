"""The runbook's messages, in the runbook's words, filled from the run.

Pre-rollback check 2 sends the incident alert (Slack #incidents, a PagerDuty page,
an e-mail to product, engineering and business); Step 7 the completion notice
(Slack and e-mail); Step 8 the status-page update. The runbook never closes the page
it opened: ``page_resolution`` is the drill's addition, a PagerDuty ``resolve`` for the
same dedup key, to send with Step 7.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rollback_drill.config import DrillConfig

Channel = Literal["slack", "pagerduty", "email", "status-page"]
Kind = Literal["incident-alert", "completion-notice", "status-page-update"]


@dataclass(frozen=True)
class Message:
    kind: Kind
    channel: Channel
    to: tuple[str, ...]
    subject: str
    body: str
    payload: dict[str, Any] = field(default_factory=dict)

    def evidence(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "channel": self.channel,
            "to": list(self.to),
            "subject": self.subject,
            "body": self.body,
        }


def incident_alert_messages(
    config: DrillConfig, *, reason: str, affected_repos: tuple[str, ...], incident_commander: str, priority: str
) -> list[Message]:
    notifications = config.notifications
    repos = ", ".join(affected_repos) or "none"
    slack = (
        f"🚨 {priority} INCIDENT: Initiating rollback to pilot scope.\n"
        f"Reason: {reason}\n"
        "ETA: 10 minutes\n"
        f"Affected repos: {repos}\n"
        f"Incident Commander: @{incident_commander}"
    )
    email = (
        f"Initiating emergency rollback to pilot scope. Details: {reason}.\n"
        "Expected downtime: <10 min for affected repos.\n"
        f"Pilot repo ({config.pilot_repo}) unaffected."
    )
    return [
        Message("incident-alert", "slack", (f"#{notifications.slack_channel}",), "", slack),
        Message(
            "incident-alert",
            "pagerduty",
            ("incident-commander",),
            "Multi-LLM Orchestrator Rollback",
            f"Reason: {reason}",
            {
                "severity": notifications.pagerduty_severity,
                "event_action": "trigger",
                "custom_details": {
                    "reason": reason,
                    "priority": priority,
                    "affected_repos": list(affected_repos),
                    "incident_commander": incident_commander,
                    "pilot_repo": config.pilot_repo,
                    "runbook": config.runbook_id,
                },
            },
        ),
        Message(
            "incident-alert", "email", notifications.email_recipients, "🚨 Orchestrator Rollback in Progress", email
        ),
    ]


def completion_messages(
    config: DrillConfig,
    *,
    affected_repos: tuple[str, ...],
    incident_commander: str,
    downtime_s: float | None,
    reenable_eta: str,
) -> list[Message]:
    notifications = config.notifications
    repos = ", ".join(affected_repos) or "none"
    downtime = "<5 minutes" if downtime_s is None else f"{downtime_s:.0f} seconds"
    slack = (
        "✅ Rollback to pilot scope COMPLETE.\n"
        f"Status: Pilot repo ({config.pilot_repo}) operational.\n"
        f"Affected repos: {repos} (temporarily disabled).\n"
        f"Next steps: Root cause analysis, expected ETA for re-enablement: {reenable_eta}.\n"
        f"Incident Commander: @{incident_commander}"
    )
    email = (
        "Rollback to pilot scope completed successfully.\n\n"
        "**Status:**\n"
        f"- Pilot repo ({config.pilot_repo}): ✅ Operational\n"
        "- Expanded repos: 🚫 Temporarily disabled\n"
        f"- Downtime: {downtime} (expanded repos only)\n\n"
        "**Next Steps:**\n"
        f"1. Root cause analysis (ETA: {reenable_eta})\n"
        "2. Fix verification (staging environment)\n"
        "3. Phased re-enablement (1 repo at a time)\n\n"
        "**Contact:**\n"
        f"- Incident Commander: {incident_commander}\n"
        f"- SRE On-Call: {config.notifications.email_sender}\n\n"
        "Best,\nSRE Team"
    )
    return [
        Message("completion-notice", "slack", (f"#{notifications.slack_channel}",), "", slack),
        Message(
            "completion-notice", "email", notifications.email_recipients, "✅ Orchestrator Rollback Complete", email
        ),
    ]


def page_resolution(config: DrillConfig, *, incident_commander: str) -> Message:
    """Resolve the incident alert's page once the rollback is complete (the dedup key is the sender's)."""
    return Message(
        "completion-notice",
        "pagerduty",
        ("incident-commander",),
        "Multi-LLM Orchestrator Rollback",
        f"Rollback to pilot scope COMPLETE. Pilot repo ({config.pilot_repo}) operational.",
        {
            "event_action": "resolve",
            "custom_details": {"incident_commander": incident_commander, "runbook": config.runbook_id},
        },
    )


def status_page_update(config: DrillConfig) -> Message:
    payload = {
        "status": "resolved",
        "title": "Multi-LLM Orchestrator Rollback",
        "message": (
            "Orchestrator rolled back to pilot scope. Pilot repo operational. "
            "Expanded repos temporarily disabled pending investigation."
        ),
        "severity": "major",
        "affected_services": ["multi-llm-orchestrator"],
    }
    del config  # the status page's URL and token come from the environment when sending live
    return Message(
        "status-page-update", "status-page", ("status-page",), str(payload["title"]), str(payload["message"]), payload
    )
