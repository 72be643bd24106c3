"""The runbook's communication steps: pre-rollback check 2, Step 7 and Step 8.

Each composes the runbook's own messages (``rollback_drill.notify.messages``), sends every
one through the drill's notifier, and records every delivery in the evidence's
``notifications``, with how long after a reference instant it went out: the decision for
the incident alert, the end of Step 5 (the rollback verified) for the completion notice and
the status page. A message that cannot be delivered is recorded as such and does not stop
the others: the people who can be told are told.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from rollback_drill.config import DrillConfig
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.notify import (
    Delivery,
    Message,
    Notifier,
    completion_messages,
    incident_alert_messages,
    page_resolution,
    status_page_update,
)
from rollback_drill.runbook.decision import Decision
from rollback_drill.timing.windows import DECISION_MADE, Marks, step_end

REENABLE_ETA: Final = "after the RCA and a passed soak test"
"""What Step 7's notice gives as the re-enablement ETA: the runbook's order, not a time."""
VERIFIED_STEP: Final = "step-5"
"""Step 7 and Step 8 are timed from the end of this step, when the rollback was verified."""


@dataclass(frozen=True)
class Sent:
    """What one communication step sent: every delivery, in the order the messages went out."""

    deliveries: tuple[Delivery, ...]

    def __iter__(self) -> Iterator[Delivery]:
        return iter(self.deliveries)

    def on(self, channel: str) -> tuple[Delivery, ...]:
        """The deliveries on one channel: ``slack``, ``pagerduty``, ``email`` or ``status-page``."""
        return tuple(d for d in self.deliveries if d.message.channel == channel)

    def of_kind(self, kind: str) -> tuple[Delivery, ...]:
        """The deliveries of one kind of message: ``incident-alert``, ``completion-notice``, ..."""
        return tuple(d for d in self.deliveries if d.message.kind == kind)

    def undelivered(self) -> tuple[Delivery, ...]:
        return tuple(d for d in self.deliveries if not d.delivered)

    def channels(self) -> dict[str, bool]:
        """Whether each channel's last message was delivered."""
        return {d.message.channel: d.delivered for d in self.deliveries}


def send_all(notifier: Notifier, messages: Iterable[Message], recorder: Recorder, since_mono: float | None) -> Sent:
    """Send each message, record each delivery (``after_s`` counted from ``since_mono``), and return them."""
    deliveries = tuple(notifier.send(message) for message in messages)
    for delivery in deliveries:
        recorder.append("notifications", delivery.evidence(since_mono))
    return Sent(deliveries)


def alert_stakeholders(
    notifier: Notifier,
    recorder: Recorder,
    marks: Marks,
    config: DrillConfig,
    *,
    decision: Decision,
    affected_repos: tuple[str, ...],
    incident_commander: str,
) -> Sent:
    """Pre-rollback check 2: the incident alert to Slack #incidents, a PagerDuty page and every e-mail recipient.

    The alert gives the decision's reasons, its priority, the affected repos and the
    Incident Commander, and is timed from the decision.
    """
    messages = incident_alert_messages(
        config,
        reason="; ".join(decision.reasons),
        affected_repos=affected_repos,
        incident_commander=incident_commander,
        priority=decision.priority,
    )
    return send_all(notifier, messages, recorder, marks.get(DECISION_MADE))


def announce_completion(
    notifier: Notifier,
    recorder: Recorder,
    marks: Marks,
    config: DrillConfig,
    *,
    affected_repos: tuple[str, ...],
    incident_commander: str,
) -> Sent:
    """Step 7: the completion notice to Slack #incidents and every e-mail recipient, and the page resolved.

    The runbook never closes the page its pre-rollback check 2 opened; the drill resolves it
    here, with the notice (``page_resolution``).
    """
    messages = [
        *completion_messages(
            config,
            affected_repos=affected_repos,
            incident_commander=incident_commander,
            downtime_s=None,
            reenable_eta=REENABLE_ETA,
        ),
        page_resolution(config, incident_commander=incident_commander),
    ]
    return send_all(notifier, messages, recorder, marks.get(step_end(VERIFIED_STEP)))


def update_status_page(notifier: Notifier, recorder: Recorder, marks: Marks, config: DrillConfig) -> Delivery:
    """Step 8: the status page says the orchestrator was rolled back to pilot scope, status ``resolved``."""
    (delivery,) = send_all(notifier, [status_page_update(config)], recorder, marks.get(step_end(VERIFIED_STEP)))
    return delivery
