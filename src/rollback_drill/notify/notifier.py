"""The notifier interface. `CapturingNotifier` records what would have gone out, for drills that must not
page anybody; `rollback_drill.notify.senders.RoutingNotifier` delivers over the real protocols."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from rollback_drill.notify.messages import Message
from rollback_drill.timing.clock import Clock, SystemClock


@dataclass(frozen=True)
class Delivery:
    message: Message
    delivered: bool
    attempts: int
    at: datetime
    t_mono: float
    error: str | None = None
    """Why the message was not delivered (already redacted), or None."""
    transport: str = "capture"
    """The protocol that carried it: "capture", "slack-webhook", "pagerduty-events-v2", "smtp", "status-page-api"."""
    status: int | None = None
    """The last answer's status code (HTTP, or the SMTP reply code), or None when nothing answered."""
    reference: str | None = None
    """What the receiving side calls it: the PagerDuty dedup key, the e-mail's Message-ID, the status-page incident id."""

    def evidence(self, since_mono: float | None = None) -> dict[str, Any]:
        entry = {
            **self.message.evidence(),
            "delivered": self.delivered,
            "attempts": self.attempts,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "transport": self.transport,
            "error": self.error,
        }
        if self.status is not None:
            entry["status"] = self.status
        if self.reference is not None:
            entry["reference"] = self.reference
        if since_mono is not None:
            entry["after_s"] = round(self.t_mono - since_mono, 3)
        return entry


class Notifier(Protocol):
    def send(self, message: Message) -> Delivery: ...

    def deliveries(self) -> list[Delivery]: ...


class CapturingNotifier:
    """Delivers nothing, records everything: the drill asserts on what was "sent"."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []

    def send(self, message: Message) -> Delivery:
        delivery = Delivery(message, delivered=True, attempts=1, at=self._clock.wall(), t_mono=self._clock.monotonic())
        with self._lock:
            self._deliveries.append(delivery)
        return delivery

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)
