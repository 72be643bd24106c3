"""Telling people: the runbook's messages, and the senders that deliver them."""

from rollback_drill.notify.messages import (
    Message,
    completion_messages,
    incident_alert_messages,
    status_page_update,
)
from rollback_drill.notify.notifier import CapturingNotifier, Delivery, Notifier

__all__ = [
    "CapturingNotifier",
    "Delivery",
    "Message",
    "Notifier",
    "completion_messages",
    "incident_alert_messages",
    "status_page_update",
]
