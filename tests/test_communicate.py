"""The communication steps: pre-rollback check 2, Step 7 and Step 8, sent through a capturing notifier.

The notifier is the drill's own ``CapturingNotifier`` on a fake clock, so each delivery's
``after_s`` in the evidence is exact.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rollback_drill.config import load_config
from rollback_drill.evidence import Recorder, Redactor
from rollback_drill.notify import CapturingNotifier
from rollback_drill.runbook import communicate
from rollback_drill.runbook.decision import Decision
from rollback_drill.timing.clock import FakeClock
from rollback_drill.timing.windows import DECISION_MADE, Marks, step_end

AFFECTED = ("financial-reporting", "customer-analytics", "inventory-mgmt")
DECISION = Decision(
    "P1",
    "roll back",
    ("p1-mass-concurrent-failures",),
    ("5 repos failing at once", "failure ratio 40%"),
    0.0,
)


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 12, 6, 9, 0, tzinfo=UTC))


@pytest.fixture
def recorder(tmp_path, clock):
    rec = Recorder.create(tmp_path, incident="mass-failure", clock=clock, redactor=Redactor())
    yield rec
    rec.abort("test teardown")


@pytest.fixture
def marks(clock) -> Marks:
    return Marks(clock)


@pytest.fixture
def notifier(clock) -> CapturingNotifier:
    return CapturingNotifier(clock)


def test_the_incident_alert_goes_to_slack_pagerduty_and_email_timed_from_the_decision(
    notifier, recorder, marks, clock, config
):
    marks.mark(DECISION_MADE)
    clock.advance(42)

    sent = communicate.alert_stakeholders(
        notifier, recorder, marks, config, decision=DECISION, affected_repos=AFFECTED, incident_commander="sre-lead"
    )

    assert [d.message.channel for d in sent] == ["slack", "pagerduty", "email"]
    assert not sent.undelivered()
    slack = sent.on("slack")[0].message
    assert "5 repos failing at once; failure ratio 40%" in slack.body
    assert all(repo in slack.body for repo in AFFECTED)
    assert "@sre-lead" in slack.body
    assert sent.on("pagerduty")[0].message.payload["custom_details"]["priority"] == "P1"
    assert sent.on("email")[0].message.to == config.notifications.email_recipients
    recorded = recorder.evidence["notifications"]
    assert [(n["channel"], n["kind"], n["after_s"]) for n in recorded] == [
        ("slack", "incident-alert", 42.0),
        ("pagerduty", "incident-alert", 42.0),
        ("email", "incident-alert", 42.0),
    ]
    assert notifier.deliveries() == list(sent.deliveries)


def test_without_a_decision_mark_the_alert_is_sent_and_recorded_untimed(notifier, recorder, marks, config):
    communicate.alert_stakeholders(
        notifier, recorder, marks, config, decision=DECISION, affected_repos=AFFECTED, incident_commander="sre-lead"
    )
    assert all("after_s" not in n for n in recorder.evidence["notifications"])


def test_step_7_sends_the_completion_notice_and_resolves_the_page_timed_from_step_5s_end(
    notifier, recorder, marks, clock, config
):
    marks.mark(step_end("step-5"))
    clock.advance(7.5)

    sent = communicate.announce_completion(
        notifier, recorder, marks, config, affected_repos=AFFECTED, incident_commander="sre-lead"
    )

    assert [(d.message.kind, d.message.channel) for d in sent] == [
        ("completion-notice", "slack"),
        ("completion-notice", "email"),
        ("completion-notice", "pagerduty"),
    ]
    assert sent.on("pagerduty")[0].message.payload["event_action"] == "resolve"
    assert communicate.REENABLE_ETA in sent.on("slack")[0].message.body
    assert len(sent.of_kind("completion-notice")) == 3
    assert {n["after_s"] for n in recorder.evidence["notifications"]} == {7.5}


def test_step_8_updates_the_status_page_to_resolved(notifier, recorder, marks, clock, config):
    marks.mark(step_end("step-5"))
    clock.advance(3)

    delivery = communicate.update_status_page(notifier, recorder, marks, config)

    assert delivery.delivered
    assert delivery.message.payload["status"] == "resolved"
    assert "rolled back to pilot scope" in delivery.message.payload["message"]
    (recorded,) = recorder.evidence["notifications"]
    assert (recorded["channel"], recorded["after_s"]) == ("status-page", 3.0)


def test_sent_tells_each_channels_outcome(notifier, recorder, config):
    sent = communicate.send_all(notifier, [], recorder, None)
    assert (sent.deliveries, sent.channels(), sent.undelivered()) == ((), {}, ())
