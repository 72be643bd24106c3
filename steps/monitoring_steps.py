"""Steps for the monitoring chain: Alertmanager's page for the incident, and Step 4 as Prometheus sees it."""

from __future__ import annotations

from pytest_bdd import then, when

from rollback_drill.world.detection import detect_incident
from rollback_drill.world.monitoring_chain import loaded_once_settled


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
