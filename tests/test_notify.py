"""Notifications over the real protocols, against real local sinks on 127.0.0.1.

Every test starts its own HTTP sink (Slack, PagerDuty, status page) and SMTP sink
(aiosmtpd) on free ports, sends the runbook's messages through ``RoutingNotifier`` and
reads back what the sinks received. Nothing is mocked: the sockets, HTTP and SMTP are real.
Backoff waits are recorded by an injected ``sleep`` instead of being slept.
"""

from __future__ import annotations

import json
import secrets
import select
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from rollback_drill.config import load_config
from rollback_drill.errors import ConfigError
from rollback_drill.evidence.redact import add_secret
from rollback_drill.notify import (
    CapturingNotifier,
    Message,
    RoutingNotifier,
    TransientSendFailure,
    completion_messages,
    incident_alert_messages,
    notifier_from_config,
    page_resolution,
    status_page_update,
)
from rollback_drill.notify.senders import Sent
from rollback_drill.notify.sinks import RECEIVED_FILE_NAME, SinkEndpoints, Sinks
from rollback_drill.timing.clock import FakeClock, SystemClock
from rollback_drill.timing.wait import wait_until

DRILL_ID = "20251117T090000Z-mass-failure-a1b2c3"
REASON = "Mass failure: 12 repos failing (>5 failures/hour each)"
AFFECTED = ("financial-reporting", "customer-analytics", "inventory-mgmt")
COMMANDER = "sre-lead"
RECIPIENTS = ["product@company.com", "engineering-tl@company.com", "business@company.com"]
STATUS_PAGE_TOKEN = f"sp-drill-{secrets.token_hex(12)}"
RUNBOOK_STATUS_PAYLOAD = {
    "status": "resolved",
    "title": "Multi-LLM Orchestrator Rollback",
    "message": (
        "Orchestrator rolled back to pilot scope. Pilot repo operational. "
        "Expanded repos temporarily disabled pending investigation."
    ),
    "severity": "major",
    "affected_services": ["multi-llm-orchestrator"],
}
LIVE_ENV_NAMES = (
    "ROLLBACK_DRILL_SLACK_WEBHOOK_URL",
    "ROLLBACK_DRILL_PAGERDUTY_ROUTING_KEY",
    "ROLLBACK_DRILL_SMTP_URL",
    "ROLLBACK_DRILL_STATUS_PAGE_URL",
    "STATUS_PAGE_API_KEY",
)


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture
def sinks(tmp_path):
    sinks = Sinks(status_page_token=STATUS_PAGE_TOKEN)
    sinks.start(tmp_path / "sinks")
    yield sinks
    sinks.stop()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def notifier(config, sinks, sleeps) -> RoutingNotifier:
    return notifier_from_config(
        config, {}, mode="sinks", sinks=sinks.endpoints, clock=SystemClock(), drill_id=DRILL_ID, sleep=sleeps.append
    )


def _alerts(config) -> list[Message]:
    return incident_alert_messages(
        config, reason=REASON, affected_repos=AFFECTED, incident_commander=COMMANDER, priority="P1"
    )


def _completion(config) -> list[Message]:
    return completion_messages(
        config, affected_repos=AFFECTED, incident_commander=COMMANDER, downtime_s=42.0, reenable_eta="4 hours"
    )


def _by_channel(messages: list[Message], channel: str) -> Message:
    return next(m for m in messages if m.channel == channel)


def _received(sinks: Sinks, service: str) -> list[dict]:
    return [r for r in sinks.received() if r["service"] == service]


# --- each sender, end to end --------------------------------------------------------------------------


def test_slack_alert_reaches_the_incidents_channel_in_the_runbooks_words(config, sinks, notifier):
    delivery = notifier.send(_by_channel(_alerts(config), "slack"))

    assert delivery.delivered, delivery.error
    assert (delivery.transport, delivery.status, delivery.attempts) == ("slack-webhook", 200, 1)
    [request] = _received(sinks, "slack")
    assert request["method"] == "POST"
    assert request["path"] == "/services/***"
    assert request["body"]["channel"] == "#incidents"
    text = request["body"]["text"]
    assert text.startswith("🚨 P1 INCIDENT: Initiating rollback to pilot scope.")
    assert f"Reason: {REASON}" in text
    assert f"Affected repos: {', '.join(AFFECTED)}" in text
    assert f"Incident Commander: @{COMMANDER}" in text


def test_pagerduty_alert_triggers_and_the_completion_resolves_the_same_dedup_key(config, sinks, notifier):
    trigger = notifier.send(_by_channel(_alerts(config), "pagerduty"))
    resolve = notifier.send(page_resolution(config, incident_commander=COMMANDER))

    assert trigger.delivered, trigger.error
    assert resolve.delivered, resolve.error
    assert (trigger.transport, trigger.status) == ("pagerduty-events-v2", 202)
    assert trigger.reference == resolve.reference == f"rollback-drill/{DRILL_ID}"
    first, second = _received(sinks, "pagerduty")
    assert first["path"] == second["path"] == "/v2/enqueue"
    assert (first["body"]["event_action"], second["body"]["event_action"]) == ("trigger", "resolve")
    assert first["body"]["dedup_key"] == second["body"]["dedup_key"] == f"rollback-drill/{DRILL_ID}"
    assert first["body"]["routing_key"] == "***"
    payload = first["body"]["payload"]
    assert payload["summary"] == "Multi-LLM Orchestrator Rollback"
    assert (payload["source"], payload["severity"]) == ("rollback-drill", "critical")
    details = payload["custom_details"]
    assert details["details"] == f"Reason: {REASON}"
    assert details["reason"] == REASON
    assert details["affected_repos"] == list(AFFECTED)
    assert details["incident_commander"] == COMMANDER


def test_email_goes_once_to_the_three_stakeholders_from_the_configured_sender(config, sinks, notifier):
    alert = notifier.send(_by_channel(_alerts(config), "email"))
    done = notifier.send(_by_channel(_completion(config), "email"))

    assert alert.delivered, alert.error
    assert done.delivered, done.error
    assert (alert.transport, alert.status) == ("smtp", 250)
    first, second = _received(sinks, "email")
    for mail in (first, second):
        assert mail["mail_from"] == mail["from"] == "sre-oncall@company.com"
        assert mail["rcpt_tos"] == mail["to"] == RECIPIENTS
    assert first["subject"] == "🚨 Orchestrator Rollback in Progress"
    assert first["message_id"] == alert.reference
    assert f"Details: {REASON}." in first["body"]
    assert "Pilot repo (compliance-service) unaffected." in first["body"]
    assert second["subject"] == "✅ Orchestrator Rollback Complete"
    assert "- Pilot repo (compliance-service): ✅ Operational" in second["body"]
    assert f"- Incident Commander: {COMMANDER}" in second["body"]


def test_status_page_update_posts_the_runbooks_payload_with_a_bearer_token(config, sinks, notifier):
    delivery = notifier.send(status_page_update(config))

    assert delivery.delivered, delivery.error
    assert (delivery.transport, delivery.status, delivery.reference) == ("status-page-api", 201, "inc-1")
    [request] = _received(sinks, "status-page")
    assert request["path"] == "/api/incidents"
    assert request["body"] == RUNBOOK_STATUS_PAYLOAD
    assert request["auth_scheme"] == "Bearer"
    assert request["headers"]["Authorization"] == "***"
    assert request["authorized"] is True


def test_every_record_is_also_a_fsynced_jsonl_line(config, sinks, notifier):
    notifier.send_all([*_alerts(config), status_page_update(config)])

    lines = (sinks.received_path).read_text().splitlines()
    assert sinks.received_path.name == RECEIVED_FILE_NAME
    assert [json.loads(line) for line in lines] == sinks.received()
    assert [r["service"] for r in sinks.received()] == ["slack", "pagerduty", "email", "status-page"]


# --- retries and failures -----------------------------------------------------------------------------


def test_a_sink_answering_503_twice_is_retried_with_backoff_then_delivered(config, sinks, notifier, sleeps):
    sinks.fail_next(2, service="slack")

    delivery = notifier.send(_by_channel(_alerts(config), "slack"))

    assert delivery.delivered, delivery.error
    assert (delivery.attempts, delivery.status, delivery.error) == (3, 200, None)
    assert sleeps == [0.2, 0.5]
    assert [r["status"] for r in _received(sinks, "slack")] == [503, 503, 200]


def test_a_sink_that_keeps_failing_is_given_up_after_the_retries(config, sinks, notifier, sleeps):
    sinks.fail_next(10, status=502, service="pagerduty")

    delivery = notifier.send(_by_channel(_alerts(config), "pagerduty"))

    assert not delivery.delivered
    assert (delivery.attempts, delivery.status) == (4, 502)
    assert "HTTP 502" in delivery.error
    assert "gave up after 4 attempts" in delivery.error
    assert sleeps == [0.2, 0.5, 1.0]
    assert delivery.evidence()["error"] == delivery.error


def test_a_4xx_answer_is_recorded_with_its_status_and_not_retried(config, sinks, notifier, sleeps):
    sinks.fail_next(1, status=400, service="status-page")

    delivery = notifier.send(status_page_update(config))

    assert not delivery.delivered
    assert (delivery.attempts, delivery.status) == (1, 400)
    assert sleeps == []


def test_smtp_sink_down_fails_the_email_after_retries_and_the_other_channels_still_deliver(config, sinks, notifier):
    sinks.smtp.stop()

    deliveries = notifier.send_all([*_alerts(config), status_page_update(config)])

    by_channel = {d.message.channel: d for d in deliveries}
    email = by_channel.pop("email")
    assert not email.delivered
    assert (email.attempts, email.transport, email.status) == (4, "smtp", None)
    assert "unreachable" in email.error
    assert all(d.delivered for d in by_channel.values()), [d.error for d in by_channel.values()]
    assert [r["service"] for r in sinks.received()] == ["slack", "pagerduty", "status-page"]
    assert len(notifier.deliveries()) == 4

    sinks.smtp.start()  # back on the same port: the same notifier reaches it again
    assert notifier.send(email.message).delivered


@pytest.mark.parametrize(("code", "expected"), [(451, (True, 2)), (550, (False, 1))])
def test_smtp_4xx_is_retried_and_5xx_is_not(config, sinks, notifier, code, expected):
    sinks.smtp.fail_next(1, code)

    delivery = notifier.send(_by_channel(_alerts(config), "email"))

    attempts = expected[1]
    assert (delivery.delivered, delivery.attempts) == expected
    assert [r["status"] for r in _received(sinks, "email")] == [code, 250][:attempts]


class _Broken:
    transport = "broken"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def deliver(self, message: Message) -> Sent:  # noqa: ARG002 - fails whatever it is given
        self.calls += 1
        raise self.error


def test_routing_never_raises_and_never_loses_the_other_messages(config):
    secret = f"leaked-{secrets.token_hex(8)}"
    add_secret(secret)
    broken = _Broken(RuntimeError(f"bug while holding {secret}"))
    capture = CapturingNotifier()

    class _Capture:
        transport = "capture"

        def deliver(self, message: Message) -> Sent:
            capture.send(message)
            return Sent(None)

    notifier = RoutingNotifier({"slack": broken, "email": _Capture()}, clock=FakeClock())
    deliveries = notifier.send_all([*_alerts(config), status_page_update(config)])

    slack, pagerduty, email, status = deliveries
    assert (slack.delivered, slack.attempts, broken.calls) == (False, 1, 1)
    assert secret not in slack.error
    assert "RuntimeError" in slack.error
    assert (pagerduty.delivered, pagerduty.attempts, pagerduty.transport) == (False, 0, "none")
    assert "no sender for channel 'pagerduty'" in pagerduty.error
    assert email.delivered
    assert not status.delivered
    assert [d.message.channel for d in capture.deliveries()] == ["email"]


def test_backoff_defaults_to_the_clocks_sleep_and_is_bounded(config):
    clock = FakeClock()
    flaky = _Broken(TransientSendFailure("down", transport="broken"))
    notifier = RoutingNotifier({"slack": flaky}, clock=clock)
    start = clock.monotonic()

    delivery = notifier.send(_by_channel(_alerts(config), "slack"))

    assert (delivery.attempts, flaky.calls) == (4, 4)
    assert clock.monotonic() - start == pytest.approx(1.7)
    for bad in ({"retries": 11}, {"retries": -1}, {"backoff_s": (float("inf"),)}, {"backoff_s": (-1.0,)}):
        with pytest.raises(ValueError):
            RoutingNotifier({}, clock=clock, **bad)


def test_capturing_notifier_evidence_is_unchanged(config):
    capture = CapturingNotifier(FakeClock())
    delivery = capture.send(status_page_update(config))

    assert set(delivery.evidence(since_mono=999.0)) == {
        "kind", "channel", "to", "subject", "body", "delivered", "attempts", "at", "transport", "error", "after_s",
    }  # fmt: skip
    assert delivery.evidence(since_mono=999.0)["after_s"] == 1.0


# --- the sinks answer like the services ---------------------------------------------------------------


def _post(url: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - a loopback sink
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_http_sink_validates_like_the_real_services(sinks):
    url = sinks.endpoints.http_url

    assert _post(f"{url}/services/T/B/x", {"channel": "#incidents"}) == (400, "no_text")
    status, body = _post(f"{url}/v2/enqueue", {"routing_key": "k" * 32, "event_action": "resolve"})
    assert status == 400
    assert json.loads(body)["errors"] == ["'dedup_key' is required to acknowledge or resolve."]
    assert _post(f"{url}/api/incidents", RUNBOOK_STATUS_PAYLOAD)[0] == 401
    assert _post(f"{url}/api/incidents", RUNBOOK_STATUS_PAYLOAD, {"Authorization": "Bearer wrong-token"})[0] == 401
    assert _post(f"{url}/nowhere", {})[0] == 404
    assert [r.get("authorized") for r in sinks.received()] == [None, None, False, False, None]
    assert "wrong-token" not in json.dumps(sinks.received())


# --- secrets --------------------------------------------------------------------------------------------


def test_tokens_webhook_url_and_routing_key_appear_in_no_record_evidence_or_error(config, sinks, sleeps):
    endpoints = sinks.endpoints
    webhook_secret = f"whk{secrets.token_hex(12)}"
    webhook_url = f"{endpoints.http_url}/services/T0LIVE/B0LIVE/{webhook_secret}"
    routing_key = secrets.token_hex(16)
    environ = dict(
        zip(
            LIVE_ENV_NAMES,
            (
                webhook_url,
                routing_key,
                f"smtp://{endpoints.smtp_host}:{endpoints.smtp_port}",
                endpoints.http_url,
                STATUS_PAGE_TOKEN,
            ),
            strict=True,
        )
    )
    # Live mode, pointed at the local sinks: the secrets are ones this test knows.
    notifier = notifier_from_config(
        config,
        environ,
        mode="live",
        clock=SystemClock(),
        drill_id=DRILL_ID,
        pagerduty_events_url=endpoints.http_url,
        sleep=sleeps.append,
    )
    messages = [*_alerts(config), status_page_update(config)]
    ok = notifier.send_all(messages)
    sinks.fail_next(10, status=500, service="status-page")
    failed_answer = notifier.send(status_page_update(config))
    sinks.http.stop()
    unreachable = notifier.send_all(messages)

    assert all(d.delivered for d in ok), [d.error for d in ok]
    assert _received(sinks, "status-page")[0]["authorized"] is True
    assert not failed_answer.delivered
    assert not any(d.delivered for d in unreachable if d.message.channel != "email")
    errors = [d.error for d in [failed_answer, *unreachable] if d.error]
    assert len(errors) == 4
    places = {
        "JSONL": sinks.received_path.read_text(),
        "received()": json.dumps(sinks.received()),
        "evidence": json.dumps([d.evidence(0.0) for d in notifier.deliveries()], ensure_ascii=False),
        "errors": "\n".join(errors),
        "senders": repr(notifier.senders),
    }
    for secret in (STATUS_PAGE_TOKEN, webhook_url, webhook_secret, routing_key):
        for where, text in places.items():
            assert secret not in text, f"a secret leaked into {where}"


def test_live_mode_refuses_naming_every_missing_variable(config):
    with pytest.raises(ConfigError) as refused:
        notifier_from_config(config, {}, mode="live")
    for name in LIVE_ENV_NAMES:
        assert name in str(refused.value)

    partial = {"ROLLBACK_DRILL_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/abcdef123456"}
    with pytest.raises(ConfigError) as refused:
        notifier_from_config(config, partial, mode="live")
    assert "4 more environment variable(s)" in str(refused.value)
    assert "ROLLBACK_DRILL_SLACK_WEBHOOK_URL" not in str(refused.value)
    assert "abcdef123456" not in str(refused.value)


def test_live_mode_refuses_malformed_values_without_quoting_them(config):
    secret = secrets.token_hex(10)
    environ = dict(
        zip(
            LIVE_ENV_NAMES,
            (f"ftp://hooks.example/{secret}", "rk", f"http://user:{secret}@mail", "https://status.example", "tok-1"),
            strict=True,
        )
    )
    with pytest.raises(ConfigError) as refused:
        notifier_from_config(config, environ, mode="live")

    message = str(refused.value)
    assert "ROLLBACK_DRILL_SLACK_WEBHOOK_URL must be an http:// or https:// URL" in message
    assert "ROLLBACK_DRILL_SMTP_URL" in message
    assert secret not in message


def test_sinks_mode_needs_the_sinks_endpoints(config):
    with pytest.raises(ConfigError, match="sinks' endpoints"):
        notifier_from_config(config, {}, mode="sinks", sinks=None)


# --- the sinks as their own process -------------------------------------------------------------------


def _ready_line(proc: subprocess.Popen[str]) -> str | None:
    if proc.poll() is not None:
        raise AssertionError(f"the sinks exited with {proc.returncode}: {proc.stderr.read()}")
    readable, _, _ = select.select([proc.stdout], [], [], 0)
    return proc.stdout.readline() if readable else None


def test_the_sinks_entry_point_prints_its_endpoints_receives_and_stops_on_sigterm(config, tmp_path, sleeps):
    argv = [sys.executable, "-m", "rollback_drill.notify.sinks", "--dir", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = wait_until(lambda: _ready_line(proc), timeout_s=15, describe="the sinks' JSON ready line")
        ready = json.loads(line)
        assert ready["pid"] == proc.pid
        assert ready["http_url"].startswith("http://127.0.0.1:")
        assert isinstance(ready["smtp_port"], int)
        notifier = notifier_from_config(
            config,
            {},
            mode="sinks",
            sinks=SinkEndpoints.from_ready_line(line),
            clock=SystemClock(),
            drill_id=DRILL_ID,
            sleep=sleeps.append,
        )
        deliveries = notifier.send_all([*_alerts(config), status_page_update(config)])
        assert all(d.delivered for d in deliveries), [d.error for d in deliveries]
        records = [json.loads(x) for x in (tmp_path / RECEIVED_FILE_NAME).read_text().splitlines()]
        assert [r["service"] for r in records] == ["slack", "pagerduty", "email", "status-page"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
