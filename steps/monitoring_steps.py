"""Steps for the monitoring chain: Alertmanager's page for the incident, and Step 4 as Prometheus sees it."""

from __future__ import annotations

from pytest_bdd import then, when

from rollback_drill.world.detection import detect_incident
from rollback_drill.world.monitoring_chain import loaded_once_settled
from rollback_drill.world.silences import await_suppressed, expire_silences, silence_expanded_repos


@when("Alertmanager's page for the incident is awaited", target_fixture="detection")
def _await_page(
    monitoring_chain, monitoring_evidence, notification_sinks, injection, marks, recorder, settings, drill_clock
):
    return detect_incident(
        injection.name, notification_sinks.received, marks=marks, recorder=recorder, time_scale=settings.time_scale,
        clock=drill_clock, repos=injection.repos, monitoring=monitoring_chain is not None,
    )  # fmt: skip


@then("the on-call was paged by Alertmanager after the injection")
def _paged(detection):
    assert detection.page is not None, detection.not_applicable
    assert detection.detect_s is not None, detection
    assert detection.detect_s > 0, detection


@then("Prometheus has loaded no rule group of an expanded repo and holds no alert for one")
def _step_4_in_prometheus(monitoring_chain, runbook):
    loaded = loaded_once_settled(monitoring_chain.prometheus_url, runbook.expanded_repos())
    assert loaded.groups_of(runbook.expanded_repos()) == [], loaded
    assert loaded.alerts_of(runbook.expanded_repos()) == [], loaded


@then("Prometheus still has the pilot's rule group loaded")
def _pilot_group_loaded(monitoring_chain, drill_config):
    loaded = loaded_once_settled(monitoring_chain.prometheus_url, ())
    assert loaded.groups_of([drill_config.pilot_repo]) == [f"{drill_config.pilot_repo}.flowengine"], loaded


@when("the SRE silences every expanded repo's alerts in Alertmanager for Step 4", target_fixture="step4_silences")
def _silence_step_4(monitoring_chain, runbook, recorder, drill_clock):
    silenced = silence_expanded_repos(monitoring_chain.alertmanager_url, runbook.expanded_repos(), recorder=recorder)
    return silenced, drill_clock.wall()


@then("Alertmanager suppresses the alert of every expanded repo and pages nobody for one")
def _suppressed(monitoring_chain, step4_silences, notification_sinks):
    silences, since = step4_silences
    view = await_suppressed(monitoring_chain.alertmanager_url, silences, notification_sinks.received, since=since)
    assert set(view.states.values()) == {"suppressed"}, view.states
    assert view.pages_since == (), view.pages_since


@then("Prometheus still has every expanded repo's rule group loaded")
def _rules_still_loaded(monitoring_chain, runbook):
    loaded = loaded_once_settled(monitoring_chain.prometheus_url, ())
    assert len(loaded.groups_of(runbook.expanded_repos())) == len(runbook.expanded_repos()), loaded


@when("the drill expires its Step 4 silences at put-back", target_fixture="silences_left")
def _expire(monitoring_chain, step4_silences, recorder):
    return expire_silences(monitoring_chain.alertmanager_url, step4_silences[0], recorder=recorder)


@then("no silence of the drill is active in Alertmanager")
def _none_left(silences_left):
    assert silences_left == []
