"""Steps for the runbook's own phases: the decision, pre-rollback checks 1-3, Steps 1-8, and the drill's targets.

Each "the SRE performs ..." step does what the runbook step does (one library call)
and hands its result to the following checks; the hooks in conftest.py time it.
"""

from __future__ import annotations

import pytest
from pytest_bdd import given, parsers, then, when

from rollback_drill.errors import VerificationFailed
from rollback_drill.kube.rules import PrometheusRules
from rollback_drill.notify import completion_messages, incident_alert_messages, status_page_update
from rollback_drill.notify.messages import page_resolution
from rollback_drill.runbook import actions
from rollback_drill.runbook.decision import decide_live
from rollback_drill.runbook.drill import (
    DrillProbes,
    confirmation_problems,
    hold,
    measure_targets,
    triage_hold_s,
)
from rollback_drill.runbook.restore import put_back
from rollback_drill.taskdb import schema
from rollback_drill.taskdb.backup import table_fingerprints
from rollback_drill.timing.probe import failed_requests
from rollback_drill.timing.wait import wait_until
from rollback_drill.timing.windows import DECISION_MADE, INCIDENT_INJECTED, TARGET_NAMES, step_end, step_start
from rollback_drill.world import incidents
from rollback_drill.world.detection import sent_by_alertmanager
from rollback_drill.world.manifests import allowlist_value
from rollback_drill.world.seed import read_world

# --- the world and the incident ------------------------------------------------------------------


@given("the drill world at the phase chosen on the command line", target_fixture="world")
def _world_chosen_phase(world_seeder, settings):
    return world_seeder(settings.phase)


@when("the incident chosen on the command line is injected", target_fixture="injection")
def _inject_chosen(flowengine, k8s_api, cluster, drill_config, marks, settings, recorder, world):
    record = incidents.inject(
        settings.incident, flowengine, k8s_api if cluster.created_by_drill else None, drill_config
    )
    marks.mark(INCIDENT_INJECTED, overwrite=True)
    incidents.record_injection(recorder, record, world.phase)
    return record


@given("the state of the world is noted", target_fixture="noted_world")
def _note_world(k8s_api, drill_config, taskdb, world):
    return read_world(k8s_api, drill_config, taskdb, world.phase)


@when("the Incident Commander applies the decision framework to the live signals", target_fixture="decision")
def _decide_live(flowengine, marks, recorder, injection):
    decision = decide_live(flowengine)
    marks.mark(DECISION_MADE, overwrite=True)
    recorder.event("decision_made", priority=decision.priority, action=decision.action)
    recorder.set("decision", decision.as_evidence())
    return decision


@then("the decision is to roll back")
def _rolls_back(decision):
    assert decision.rolls_back, decision


@then("the decision is not to roll back")
def _does_not_roll_back(decision):
    assert not decision.rolls_back, decision


@then("the Deployment generation, the allowlist, the alert rules and the schema version are unchanged")
def _unchanged(k8s_api, drill_config, taskdb, noted_world):
    now = read_world(k8s_api, drill_config, taskdb, noted_world.phase)
    assert (now.generation, now.allowlist, now.alert_rules, now.schema_version) == (
        noted_world.generation,
        noted_world.allowlist,
        noted_world.alert_rules,
        noted_world.schema_version,
    )


@when("the Incident Commander holds the triage the decision calls for")
def _triage(decision, settings, drill_clock, recorder):
    seconds = triage_hold_s(decision, settings.time_scale)
    recorder.event("triage", runbook_s=decision.triage_s, held_s=seconds)
    hold(seconds, describe=f"the {decision.priority} triage", clock=drill_clock)


# --- pre-rollback --------------------------------------------------------------------------------


@when(parsers.parse('the SRE performs pre-rollback check 1 "{title}" within {budget}'), target_fixture="confirmation")
def _pre_1(runbook, recorder, title, budget):
    confirmation = actions.confirm_incident(runbook)
    recorder.event("incident_confirmation", **confirmation.evidence())
    return confirmation


@then("the FlowEngine log shows ERROR or CRITICAL lines")
def _log_errors(confirmation):
    assert confirmation.error_lines, "no ERROR or CRITICAL line in the last 100 log lines"


@then(parsers.parse("at least {count:d} repos show flow failures"))
def _failing_repos(confirmation, count):
    assert len(confirmation.failing_repos) >= count, confirmation.failures_by_repo


@then("the incident is confirmed by the signal its criterion names")
def _confirmed(confirmation, decision):
    problems = confirmation_problems(confirmation, decision)
    assert not problems, problems


@when(parsers.parse('the SRE performs pre-rollback check 2 "{title}" within {budget}'), target_fixture="alert")
def _pre_2(notifier, drill_config, decision, injection, drill_participants, recorder, marks, title, budget):
    messages = incident_alert_messages(
        drill_config,
        reason="; ".join(decision.reasons),
        affected_repos=injection.repos,
        incident_commander=drill_participants.incident_commander,
        priority=decision.priority,
    )
    deliveries = [notifier.send(message) for message in messages]
    decided_at = marks.get(DECISION_MADE)
    for delivery in deliveries:
        recorder.append("notifications", delivery.evidence(decided_at))
    return deliveries


@then("the incident alert went to Slack #incidents, PagerDuty and every e-mail recipient")
def _alert_delivered(alert, drill_config, notification_sinks):
    assert all(d.delivered for d in alert), [d.error for d in alert if not d.delivered]
    received = notification_sinks.received()
    channels = {r.get("service") for r in received}
    assert {"slack", "pagerduty"} <= channels, channels
    mails = [r for r in received if r.get("service") == "email" and not sent_by_alertmanager(r)]
    assert mails, "no e-mail reached the SMTP sink"
    assert set(drill_config.notifications.email_recipients) <= set(mails[-1].get("to", [])), mails[-1]


@then("the alert names the reason, the affected repos and the Incident Commander")
def _alert_content(alert, decision, injection, drill_participants):
    slack = next(d.message for d in alert if d.message.channel == "slack")
    assert decision.reasons[0] in slack.body
    assert all(repo in slack.body for repo in injection.repos)
    assert f"@{drill_participants.incident_commander}" in slack.body


@when(parsers.parse('the SRE performs pre-rollback check 3 "{title}" within {budget}'), target_fixture="backups")
def _pre_3(runbook, recorder, settings, title, budget):
    backups = actions.backup_state(runbook, recorder.bundle_dir / "backups")
    yield backups
    if not backups.taskdb.done:
        backups.taskdb.wait(120)
    if not runbook.cluster.created_by_drill and settings.keep != "always":
        # A staging cluster outlives the drill: put it back from the drill's own backups, and check it.
        alerts = tuple(sorted((recorder.bundle_dir / "backups" / "alerts").glob("*.yaml")))
        try:
            result = put_back(runbook, backups, alerts)
        except Exception as exc:
            recorder.warn("put-back-failed", f"the cluster was not put back as it was: {exc}", None)
            raise
        recorder.event("put_back", **result.evidence())


@then("the flowengine Deployment and the repo-config ConfigMap are saved as YAML")
def _yaml_saved(backups, recorder):
    for path in (backups.deployment_yaml, backups.configmap_yaml):
        assert path.stat().st_size > 0, path
        recorder.add_artifact(path)
    assert backups.deployment["metadata"]["name"] == "flowengine"
    assert "expanded_repos" in backups.configmap["data"]


@then("the TaskDB backup restores into a scratch database with the same rows and checksums")
def _backup_restores(runbook, backups, recorder):
    check = actions.verify_backup(runbook, backups)
    assert check.matches, check.mismatches
    recorder.add_artifact(backups.taskdb.wait(0).path)
    recorder.event("backup_verified", tables={t: f.rows for t, f in check.tables.items()})


@then("the pilot probe and the expanded-repo probe are running", target_fixture="probes")
def _probes(flowengine, drill_config, drill_clock, world):
    expanded = drill_config.expanded_for(world.phase)[0]
    probes = DrillProbes.start(flowengine, drill_config.pilot_repo, expanded, drill_clock)
    yield probes
    probes.stop()


# --- Steps 1-5 -----------------------------------------------------------------------------------


@when(parsers.parse('the SRE performs Step 1 "{title}" within {budget}'), target_fixture="allowlist_change")
def _step_1(runbook, recorder, title, budget):
    change = actions.restrict_allowlist(runbook)
    recorder.event("step_result", step="step-1", **change.evidence())
    if change.blocked_by_crash_loop:
        recorder.warn(
            "rollout-blocked", f"Step 1 rollout blocked: {change.rollout}; Step 2 restarts FlowEngine", "step-1"
        )
    return change


@then("REPO_ALLOWLIST of deployment/flowengine reads only the pilot")
def _allowlist_pilot(runbook, drill_config):
    world = read_world(runbook.api, drill_config, None, 0)
    assert world.allowlist == (drill_config.pilot_repo,), world.allowlist


@when(parsers.parse('the SRE performs Step 2 "{title}" within {budget}'), target_fixture="scale_result")
def _step_2(runbook, recorder, title, budget):
    result = actions.scale_down(runbook)
    recorder.event("step_result", step="step-2", **result.evidence())
    return result


@then(parsers.parse("deployment/flowengine runs {replicas:d} replicas, all Running and Ready"))
def _scaled(scale_result, replicas):
    assert (scale_result.after, scale_result.ready_pods) == (replicas, replicas), scale_result


@when(parsers.parse('the SRE performs Step 3 "{title}" within {budget}'), target_fixture="schema_revert")
def _step_3(runbook, backups, recorder, title, budget):
    result = actions.revert_schema(runbook, backups.taskdb.wait(120))
    recorder.event("step_result", step="step-3", **result.evidence())
    return result


@then(parsers.parse('the TaskDB schema version is "{version}"'))
def _schema_version(taskdb, version):
    assert schema.current_version(taskdb) == version


@when(parsers.parse('the SRE performs Step 4 "{title}" within {budget}'), target_fixture="alerts_result")
def _step_4(runbook, recorder, title, budget):
    result = actions.disable_expanded_alerts(runbook, recorder.bundle_dir / "backups" / "alerts")
    recorder.event("step_result", step="step-4", **result.evidence())
    if result.drift:
        recorder.warn("runbook-drift", result.drift, "step-4")
    recorder.add_artifacts(list(result.backups))
    return result


@then('no "<repo>-alerts" PrometheusRule is left for an expanded repo')
def _no_rules(runbook, world):
    left = PrometheusRules(runbook.api, runbook.config.kubernetes.monitoring_namespace).names()
    assert not left & {f"{repo}-alerts" for repo in world.expanded_repos}, sorted(left)


@then("each removed rule was backed up first")
def _rules_backed_up(alerts_result, world):
    assert {p.stem for p in alerts_result.backups} == {f"{repo}-alerts" for repo in world.expanded_repos}


@then("the runbook's own alert patch is recorded as drift")
def _drift(alerts_result, recorder):
    assert alerts_result.drift is not None
    assert any(w["code"] == "runbook-drift" for w in recorder.evidence["warnings"])


@when(parsers.parse('the SRE performs Step 5 "{title}" within {budget}'), target_fixture="pilot_verification")
def _step_5(runbook, recorder, title, budget):
    verification = actions.verify_pilot(runbook)
    recorder.event("step_result", step="step-5", **verification.evidence())
    return verification


@then("the pilot flow completed in under 120 seconds, cost under $2.00 and passed 5 of 5 quality gates")
def _pilot_flow(pilot_verification):
    problems = [p for p in pilot_verification.problems() if "strict verify" not in p]
    assert not problems, problems


@then("strict verification of the pilot flow passed")
def _strict(pilot_verification):
    assert pilot_verification.verification.passed, pilot_verification.verification


@when("the SRE performs Steps 1 to 5")
def _steps_1_to_5(runbook, backups, recorder):
    actions.restrict_allowlist(runbook)
    actions.scale_down(runbook)
    actions.revert_schema(runbook, backups.taskdb.wait(120))
    actions.disable_expanded_alerts(runbook, recorder.bundle_dir / "backups" / "alerts")
    verification = actions.verify_pilot(runbook)
    assert not verification.problems(), verification.problems()


# --- Steps 6-8 -----------------------------------------------------------------------------------


@when(parsers.parse('the SRE performs Step 6 "{title}" within {budget}'), target_fixture="health")
def _step_6(runbook, marks, drill_clock, recorder, title, budget):
    since = marks.get(step_end("step-4")) or marks.get(step_start("step-6"))
    window = max(1.0, drill_clock.monotonic() - since) if since else 600.0
    report = actions.wait_healthy(runbook, window_s=window, timeout_s=60)
    recorder.event("step_result", step="step-6", **report.evidence())
    return report


@then(parsers.parse("{ready:d} of {expected:d} flowengine pods are Running with no recent restarts"))
def _pods(health, ready, expected):
    assert (health.pods_ready, health.pods_expected, health.recent_restarts) == (ready, expected, 0), health


@then("TaskDB and all 3 model providers report healthy")
def _health_deps(health):
    assert health.db == "healthy", health
    assert set(health.models.values()) == {"healthy"}, health.models


@then("since the rollback, flows succeed 100% of the time with P95 under 120 seconds, for the pilot repo only")
def _flows_since(health, drill_config):
    assert health.success_rate == 1.0, health
    assert health.p95_s is not None, health
    assert health.p95_s < actions.PILOT_FLOW_DURATION_MAX_S, health
    assert health.active_repos == (drill_config.pilot_repo,), health


@when(parsers.parse('the SRE performs Step 7 "{title}" within {budget}'), target_fixture="completion")
def _step_7(notifier, drill_config, injection, drill_participants, recorder, marks, title, budget):
    messages = [
        *completion_messages(
            drill_config,
            affected_repos=injection.repos,
            incident_commander=drill_participants.incident_commander,
            downtime_s=None,
            reenable_eta="after the RCA and a passed soak test",
        ),
        page_resolution(drill_config, incident_commander=drill_participants.incident_commander),
    ]
    deliveries = [notifier.send(m) for m in messages]
    since = marks.get(step_end("step-5"))
    for delivery in deliveries:
        recorder.append("notifications", delivery.evidence(since))
    return deliveries


@then("the completion notice went to Slack #incidents and every e-mail recipient")
def _completion(completion, drill_config):
    notices = [d for d in completion if d.message.kind == "completion-notice" and d.message.channel != "pagerduty"]
    assert {d.message.channel for d in notices} == {"slack", "email"}
    assert all(d.delivered for d in notices), [d.error for d in notices]
    email = next(d.message for d in notices if d.message.channel == "email")
    assert set(email.to) == set(drill_config.notifications.email_recipients)


@then("the PagerDuty incident is resolved")
def _resolved(completion):
    resolutions = [d for d in completion if d.message.channel == "pagerduty"]
    assert resolutions, "no PagerDuty resolve was sent"
    assert resolutions[0].message.payload.get("event_action") == "resolve"
    assert resolutions[0].delivered, resolutions[0].error


@when(parsers.parse('the SRE performs Step 8 "{title}" within {budget}'), target_fixture="status_update")
def _step_8(notifier, drill_config, recorder, marks, title, budget):
    delivery = notifier.send(status_page_update(drill_config))
    recorder.append("notifications", delivery.evidence(marks.get(step_end("step-5"))))
    return delivery


@then(parsers.parse('the status page shows the orchestrator rolled back, with status "{status}"'))
def _status_page(status_update, notification_sinks, status):
    assert status_update.delivered, status_update.error
    posted = [r for r in notification_sinks.received() if r.get("service") == "status-page"]
    assert posted, "nothing reached the status page"
    assert posted[-1]["body"]["status"] == status
    assert "rolled back to pilot scope" in posted[-1]["body"]["message"]


# --- budgets and targets ---------------------------------------------------------------------------


@then("every runbook step finished within its budget")
def _within_budget(step_grouper, recorder, drill_config):
    step_grouper.close_current()
    late = []
    for step in recorder.evidence["steps"]:
        limit = drill_config.budget_s(step["id"], step["budget_s"])
        if step["status"] == "fail":
            late.append(f"{step['id']} failed: {step['error']}")
        elif step["elapsed_s"] is None or step["elapsed_s"] > limit:
            late.append(f"{step['id']} took {step['elapsed_s']}s of {limit}s")
    assert not late, late


def _targets(marks, probes, recorder, drill_config, injection):
    limits = {name: value for name, value in drill_config.budget_overrides_s.items() if name in TARGET_NAMES}
    targets = measure_targets(marks, probes, injection.name, limits)
    recorder.set_targets([t.as_evidence() for t in targets])
    return {t.name: t for t in targets}


@then("the drill targets are met")
def _targets_met(marks, probes, recorder, drill_config, injection):
    targets = _targets(marks, probes, recorder, drill_config, injection)
    missed = [t for t in targets.values() if t.limit is not None and t.met is not True and t.name != "drill"]
    assert not missed, [t.as_evidence() for t in missed]


@then("the rollback execution took less than 10 minutes")
def _rollback_execution(marks):
    elapsed = marks.between(step_start("step-1"), step_end("step-4"))
    assert elapsed is not None
    assert elapsed < 600, elapsed


@then(parsers.parse("the pilot probe saw {count:d} failed requests from Step 1 on"))
def _pilot_probe_failures(probes, count):
    samples = probes.pilot.samples()
    assert samples, "the pilot probe made no requests"
    assert failed_requests(samples) == count, [s.outcome for s in samples if not s.outcome.ok][:5]


# --- idempotence, failure paths ----------------------------------------------------------------


@when("the SRE performs Steps 1 to 4", target_fixture="first_run")
def _first_run(runbook, backups, recorder):
    return _steps_1_to_4(runbook, backups, recorder, "first")


@when("the SRE performs Steps 1 to 4 again", target_fixture="second_run")
def _second_run(runbook, backups, recorder):
    return _steps_1_to_4(runbook, backups, recorder, "second")


def _steps_1_to_4(runbook, backups, recorder, label):
    results = {
        "step-1": actions.restrict_allowlist(runbook),
        "step-2": actions.scale_down(runbook),
        "step-3": actions.revert_schema(runbook, backups.taskdb.wait(120)),
        "step-4": actions.disable_expanded_alerts(runbook, recorder.bundle_dir / "backups" / f"alerts-{label}"),
    }
    state = read_world(runbook.api, runbook.config, runbook.taskdb, 0)
    return results, state


@then("the second run reports every step as already done")
def _already_done(second_run):
    results, _ = second_run
    assert results["step-1"].already_done
    assert not results["step-2"].scaled
    assert not results["step-2"].restarted
    assert not results["step-3"].reverted
    assert results["step-4"].disabled == ()
    assert results["step-4"].already_disabled


@then("the allowlist, replicas, alert rules and schema version are the same after both runs")
def _same_state(first_run, second_run):
    _, first = first_run
    _, second = second_run
    assert (first.allowlist, first.replicas, first.alert_rules, first.schema_version, first.generation) == (
        second.allowlist,
        second.replicas,
        second.alert_rules,
        second.schema_version,
        second.generation,
    )


@when("the SRE performs Step 3 with a rollback script that breaks halfway", target_fixture="step_3_error")
def _broken_step_3(runbook, backups, taskdb):
    before = schema.current_version(taskdb)

    def breaks_halfway(db):
        with db.connect() as conn:
            conn.execute("DROP TABLE IF EXISTS model_routes")
            conn.execute("DROP TABLE repo_quotas")  # committed: autocommit, no transaction around it
            conn.execute("SELECT no_such_function()")

    with pytest.raises(VerificationFailed) as failure:
        actions.revert_schema(runbook, backups.taskdb.wait(120), apply_sql=breaks_halfway)
    return before, str(failure.value)


@then("Step 3 fails, naming the restore from the pre-rollback backup")
def _step_3_failed(step_3_error, backups):
    _, message = step_3_error
    assert "restored from" in message
    assert backups.taskdb.wait(0).path.name in message


@then("the TaskDB schema version is the one from before the rollback")
def _schema_restored(step_3_error, taskdb):
    before, _ = step_3_error
    assert schema.current_version(taskdb) == before


@then("the schema tables match the pre-rollback backup, and no flow recorded before it was lost")
def _tables_restored(taskdb, backups):
    # The pilot probe keeps writing flows after the restore, so flows/tasks may only have grown.
    now = table_fingerprints(taskdb.dsn)
    backed_up = backups.taskdb.wait(0).tables
    for table in ("schema_migrations", "repo_quotas"):
        assert now.get(table) == backed_up.get(table), (table, now.get(table), backed_up.get(table))
    for table in ("flows", "tasks"):
        assert now[table].rows >= backed_up[table].rows, (table, now[table], backed_up[table])


@when("Step 1 is performed wrongly, with an allowlist that omits the pilot", target_fixture="wrong_step_1")
def _wrong_step_1(runbook, marks, world, probes, recorder, drill_config, injection, drill_clock):
    marks.mark(step_start("step-1"), overwrite=True)
    actions.set_allowlist(runbook, world.expanded_repos, action="restrict the allowlist wrongly")
    actions.wait_rollout_unless_crash_loop(runbook, 120)
    rolled_out = drill_clock.monotonic()
    # Let the pilot probe ask a few times after the rollout, as it would until Step 8.
    wait_until(
        lambda: sum(1 for s in probes.pilot.samples() if s.t_monotonic > rolled_out) >= 5,
        timeout_s=10,
        describe="5 pilot probe requests after the wrong rollout",
    )
    for step in ("step-4", "step-5", "step-8"):
        marks.mark(step_end(step), overwrite=True)
    recorder.warn(
        "wrong-step-1", f"REPO_ALLOWLIST set to {allowlist_value(world.expanded_repos)!r}, without the pilot", "step-1"
    )
    return _targets(marks, probes, recorder, drill_config, injection)


@then(parsers.parse('the drill target "{name}" is not met'))
def _target_not_met(wrong_step_1, name):
    assert wrong_step_1[name].met is False, wrong_step_1[name].as_evidence()


@given("the e-mail server is down")
def _smtp_down(notification_sinks):
    if not hasattr(notification_sinks, "smtp"):
        pytest.skip("the sinks of an `env up` environment run in their own process; this needs in-process sinks")
    notification_sinks.smtp.stop()
    yield
    notification_sinks.smtp.start()


@then(parsers.parse("the e-mail is recorded in the evidence as failed after {attempts:d} attempts"))
def _email_failed(recorder, attempts):
    emails = [n for n in recorder.evidence["notifications"] if n["channel"] == "email"]
    assert emails, "no e-mail in the evidence"
    assert (emails[-1]["delivered"], emails[-1]["attempts"]) == (False, attempts), emails[-1]
    assert emails[-1]["error"], emails[-1]


@then("the Slack alert and the PagerDuty page were still delivered")
def _others_delivered(alert):
    delivered = {d.message.channel: d.delivered for d in alert}
    assert delivered["slack"], alert
    assert delivered["pagerduty"], alert
