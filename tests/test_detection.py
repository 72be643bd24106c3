"""Detection from the sinks' journal, the scaled alert windows, and the chain's small parts (no processes)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from rollback_drill import environment
from rollback_drill.environment import EnvironmentState
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.evidence.redact import Redactor
from rollback_drill.flowengine.injection import BACKDATED_FAILURES_PER_REPO
from rollback_drill.monitoring import alertmanager
from rollback_drill.timing.clock import FakeClock
from rollback_drill.timing.windows import INCIDENT_INJECTED, PAGE_DELIVERED, Marks, compute_targets
from rollback_drill.world import detection
from rollback_drill.world.manifests import (
    FAILURES_PER_HOUR_LIMIT,
    alert_rule,
    crash_loop_alert_rule,
    pilot_alert_rule,
    prometheus_duration,
    prometheus_rule_crd,
    scaled_windows,
)
from rollback_drill.world.monitoring_chain import LoadedAlerts, host_port

START = datetime(2026, 12, 6, 19, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _page(at: datetime, alert: str = "FlowFailureRateHigh", repo: str = "risk-engine") -> dict:
    return {
        "service": "pagerduty",
        "headers": {"User-Agent": "Alertmanager/0.25.0"},
        "body": {"client": "Alertmanager", "payload": {"summary": f"{alert} {repo}: {repo}: more than 5 failures"}},
        "status": 202,
        "at": _iso(at),
    }


def _slack(at: datetime, alert: str, repo: str = "") -> dict:
    return {
        "service": "slack",
        "headers": {"User-Agent": "Alertmanager/0.25.0"},
        "body": {"attachments": [{"title": f"{alert} {repo}".strip()}]},
        "status": 200,
        "at": _iso(at),
    }


# --- the scaled windows -------------------------------------------------------------------------------------


def test_windows_scale_with_the_drill_and_the_hour_keeps_a_few_scrapes():
    assert scaled_windows(1.0) == {
        "failures_for": "600000ms",
        "latency_for": "1800000ms",
        "failures_window": "3600000ms",
        "crash_loop_for": "900000ms",
    }
    assert scaled_windows(0.001) == {
        "failures_for": "600ms",
        "latency_for": "1800ms",
        "failures_window": "5000ms",
        "crash_loop_for": "900ms",
    }
    assert prometheus_duration(0.0004) == "0ms"


def test_a_scaled_failure_rule_counts_its_scaled_hour_and_a_series_that_appears_already_failing():
    windows = {k: v for k, v in scaled_windows(0.001).items() if k != "crash_loop_for"}
    failures = alert_rule("risk-engine", "monitoring", **windows)["spec"]["groups"][0]["rules"][0]
    assert failures["for"] == "600ms"
    assert failures["expr"] == (
        'sum(increase(flow_failures_total{repo="risk-engine"}[5000ms])) > 5 '
        'or sum(flow_failures_total{repo="risk-engine"} unless flow_failures_total{repo="risk-engine"} offset 5000ms) > 5'
    )
    # The runbook's own rule is unchanged when nothing is scaled.
    assert alert_rule("risk-engine", "monitoring")["spec"]["groups"][0]["rules"][0]["expr"] == (
        'sum(rate(flow_failures_total{repo="risk-engine"}[1h])) * 3600 > 5'
    )
    pilot = pilot_alert_rule("compliance-service", "monitoring", **windows)
    assert pilot["spec"]["groups"][0]["name"] == "compliance-service.flowengine"
    assert (
        crash_loop_alert_rule("monitoring", crash_loop_for="900ms")["spec"]["groups"][0]["rules"][0]["for"] == "900ms"
    )


# --- Alertmanager's notifications in the journal -------------------------------------------------------------


def test_only_alertmanagers_pagerduty_and_slack_notifications_are_read_oldest_first():
    mail = {"service": "email", "headers": {}, "body": "x", "status": 250, "at": _iso(START)}
    drill_page = {**_page(START), "headers": {"User-Agent": "rollback-drill"}}  # the drill's own pre-2 page
    found = detection.alertmanager_notifications(
        [
            _page(START + timedelta(seconds=2)),
            mail,
            drill_page,
            _slack(START + timedelta(seconds=1), "KubePodCrashLooping"),
        ]
    )
    assert [(n.service, n.alertname, n.repo) for n in found] == [
        ("slack", "KubePodCrashLooping", None),
        ("pagerduty", "FlowFailureRateHigh", "risk-engine"),
    ]
    assert found[1].as_evidence()["at"] == "2026-12-06T19:00:02.000Z"


def test_alertmanagers_mail_and_posts_are_told_from_the_drills_own():
    assert detection.sent_by_alertmanager(_page(START))
    assert detection.sent_by_alertmanager({"service": "email", "mail_from": alertmanager.DEFAULT_EMAIL_FROM})
    assert not detection.sent_by_alertmanager({"service": "email", "mail_from": "incident-bot@company.com"})
    assert not detection.sent_by_alertmanager({"service": "slack", "headers": {"User-Agent": "Python-urllib/3.11"}})


def _drill(tmp_path, clock: FakeClock) -> tuple[Marks, Recorder]:
    marks = Marks(clock)
    marks.mark(INCIDENT_INJECTED)
    return marks, Recorder.create(tmp_path, incident="mass-failure", clock=clock, redactor=Redactor())


def test_detect_runs_from_the_injection_to_the_first_page_for_an_affected_repo(tmp_path):
    clock = FakeClock(START)
    marks, recorder = _drill(tmp_path, clock)
    injected = clock.wall()
    journal = [
        _page(injected - timedelta(seconds=30)),  # an earlier incident's page
        _page(injected + timedelta(seconds=1), repo="somebody-else"),
    ]

    def read() -> list[dict]:
        if clock.wall() >= injected + timedelta(seconds=3):
            return [*journal, _page(injected + timedelta(seconds=2.5))]
        return journal

    found = detection.detect_incident(
        "mass-failure", read, marks=marks, recorder=recorder, time_scale=0.001, clock=clock, repos=["risk-engine"]
    )
    assert found.detect_s == pytest.approx(2.5)
    assert found.page is not None
    assert found.page.repo == "risk-engine"
    assert marks.between(INCIDENT_INJECTED, PAGE_DELIVERED) == pytest.approx(2.5)
    evidence = json.loads((recorder.bundle_dir / "evidence.json").read_text())["detection"]
    assert evidence["alert"] == "FlowFailureRateHigh"
    assert evidence["receiver"] == "pagerduty"
    assert evidence["windows"] == {"runbook_s": {"failures_for": 600.0}, "used": {"failures_for": "600ms"}}
    targets = {t.name: t.measured for t in compute_targets(marks, pilot_failed_requests=0, expanded_downtime_s=0)}
    assert targets["detect"] == pytest.approx(2.5)


def test_a_crash_loop_is_detected_by_alertmanagers_slack_post_of_kube_pod_crash_looping(tmp_path):
    clock = FakeClock(START)
    marks, recorder = _drill(tmp_path, clock)
    post = _slack(clock.wall() + timedelta(seconds=4), "KubePodCrashLooping")
    found = detection.detect_incident(
        "crash-loop", lambda: [post], marks=marks, recorder=recorder, time_scale=0.001, clock=clock
    )
    assert (found.alert, found.receiver, found.detect_s) == ("KubePodCrashLooping", "slack", pytest.approx(4.0))


def test_an_incident_no_alert_watches_or_a_page_that_never_comes_leaves_detect_not_applicable(tmp_path):
    clock = FakeClock(START)
    marks, recorder = _drill(tmp_path, clock)
    unwatched = detection.detect_incident(
        "cost-runaway", list, marks=marks, recorder=recorder, time_scale=0.001, clock=clock
    )
    assert unwatched.detect_s is None
    assert "no seeded alert watches cost-runaway" in str(unwatched.not_applicable)
    assert clock.wall() == START  # nothing to wait for

    silent = detection.detect_incident(
        "mass-failure", list, marks=marks, recorder=recorder, time_scale=0.001, clock=clock
    )
    assert silent.page is None
    assert "no page within" in str(silent.not_applicable)
    assert clock.wall() - START >= timedelta(seconds=detection.page_deadline_s(0.6))
    assert PAGE_DELIVERED not in marks
    assert [w["code"] for w in recorder.evidence["warnings"]] == ["no-page"]

    elsewhere = detection.detect_incident(
        "mass-failure", list, marks=marks, recorder=recorder, time_scale=0.001, clock=clock, monitoring=False
    )
    assert "no monitoring chain" in str(elsewhere.not_applicable)


def test_every_failure_incident_that_backdates_failures_above_the_rule_is_watched_by_flow_failure_rate_high():
    assert {name for name, (alert, _) in detection.INCIDENT_ALERTS.items() if alert == "FlowFailureRateHigh"} == {
        "mass-failure",
        "cascading-failure",
        "single-repo-failure",
    }
    assert BACKDATED_FAILURES_PER_REPO > FAILURES_PER_HOUR_LIMIT


def test_detection_needs_the_injection_marked_first(tmp_path):
    clock = FakeClock(START)
    recorder = Recorder.create(tmp_path, incident="mass-failure", clock=clock, redactor=Redactor())
    with pytest.raises(ValueError, match="incident_injected"):
        detection.detect_incident(
            "mass-failure", list, marks=Marks(clock), recorder=recorder, time_scale=1.0, clock=clock
        )


def test_without_a_page_detect_still_runs_to_the_decision():
    clock = FakeClock(START)
    marks = Marks(clock)
    marks.mark(INCIDENT_INJECTED)
    clock.advance(7)
    marks.mark("decision_made")
    targets = {t.name: t.measured for t in compute_targets(marks, pilot_failed_requests=0, expanded_downtime_s=0)}
    assert targets["detect"] == 7.0


# --- the chain's small parts ----------------------------------------------------------------------------------


def test_loaded_alerts_name_the_groups_and_alerts_of_given_repos():
    loaded = LoadedAlerts(
        ("compliance-service.flowengine", "kubernetes-apps", "risk-engine.flowengine"),
        (("FlowFailureRateHigh", "risk-engine", "firing"), ("KubePodCrashLooping", "", "pending")),
    )
    assert loaded.groups_of(["risk-engine", "inventory-mgmt"]) == ["risk-engine.flowengine"]
    assert loaded.alerts_of(["risk-engine"]) == [("FlowFailureRateHigh", "risk-engine", "firing")]
    assert loaded.alerts_of(["inventory-mgmt"]) == []


def test_a_scrape_target_is_the_urls_host_and_port():
    assert host_port("http://127.0.0.1:8080/") == "127.0.0.1:8080"
    assert host_port("http://127.0.0.1:8080") == "127.0.0.1:8080"


def test_env_up_shows_the_chains_urls_and_nothing_without_it(tmp_path):
    state = EnvironmentState(name="x", target="local", directory=str(tmp_path))
    assert environment.monitoring_urls(state) == {}
    state.services["monitoring"] = {
        "pid": 1,
        "prometheus_url": "http://127.0.0.1:1",
        "alertmanager_url": "http://127.0.0.1:2",
    }
    assert environment.monitoring_urls(state) == {
        "prometheus": "http://127.0.0.1:1",
        "alertmanager": "http://127.0.0.1:2",
    }


def test_every_scaled_window_matches_the_prometheus_rule_crds_duration_pattern():
    crd = prometheus_rule_crd()
    rule_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["groups"][
        "items"
    ]["properties"]["rules"]["items"]["properties"]
    pattern = re.compile(rule_schema["for"]["pattern"])
    for scale in (1.0, 0.001, 0.0001):
        for window in scaled_windows(scale).values():
            assert pattern.fullmatch(window), window
