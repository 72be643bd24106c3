"""Telling people: the runbook's messages, and the senders that deliver them.

The local sinks live in ``rollback_drill.notify.sinks`` and are not imported here: they
pull in aiosmtpd, and ``python -m rollback_drill.notify.sinks`` runs that module as a script.
"""

from rollback_drill.notify.messages import (
    Message,
    completion_messages,
    incident_alert_messages,
    page_resolution,
    status_page_update,
)
from rollback_drill.notify.notifier import CapturingNotifier, Delivery, Notifier
from rollback_drill.notify.senders import (
    RoutingNotifier,
    SendFailed,
    SendRejected,
    TransientSendFailure,
    notifier_from_config,
    pagerduty_dedup_key,
)

__all__ = [
    "CapturingNotifier",
    "Delivery",
    "Message",
    "Notifier",
    "RoutingNotifier",
    "SendFailed",
    "SendRejected",
    "TransientSendFailure",
    "completion_messages",
    "incident_alert_messages",
    "notifier_from_config",
    "page_resolution",
    "pagerduty_dedup_key",
    "status_page_update",
]
