"""Steps for the runbook's own phases: the decision, pre-rollback checks 1-3, Steps 1-8, and the drill's targets.

Each "the SRE performs ..." step does what the runbook step does (one library call)
and hands its result to the following checks; the hooks in conftest.py time it.
"""

from __future__ import annotations

import pytest
from pytest_bdd import given, parsers, then, when

from rollback_drill.errors import VerificationFailed
from rollback_drill.kube.rules import PrometheusRules
from rollback_drill.runbook import actions, communicate, failure_paths, perform
from rollback_drill.runbook.budget import judge_step_budgets
from rollback_drill.runbook.decision import decide_live
from rollback_drill.runbook.drill import DrillProbes, confirmation_problems
from rollback_drill.runbook.targets import record_targets
from rollback_drill.taskdb import schema
from rollback_drill.taskdb.backup import table_fingerprints
from rollback_drill.timing.probe import failed_requests
from rollback_drill.timing.windows import DECISION_MADE, step_end, step_start
from rollback_drill.world.detection import sent_by_alertmanager
from rollback_drill.world.seed import read_world

# --- the world and the incident ------------------------------------------------------------------


@given("the drill world at the phase chosen on the command line", target_fixture="world")
def _world_chosen_phase(world_seeder, settings):
    return world_seeder(settings.phase)


@when("the incident chosen on the command line is injected", target_fixture="injection")
def _inject_chosen(incident_stage, marks, settings, recorder, world):
    return perform.inject_incident(settings.incident, incident_stage, marks=marks, recorder=recorder, phase=world.phase)


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
def _triage(decision, waiting_time_scale, recorder, drill_clock):
    perform.hold_triage(decision, waiting_time_scale, recorder, clock=drill_clock)


# --- pre-rollback --------------------------------------------------------------------------------


@when(parsers.parse('the SRE performs pre-rollback check 1 "{title}" within {budget}'), target_fixture="confirmation")
def _pre_1(runbook, recorder, title, budget):
    return perform.confirm_incident(runbook, recorder)


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
    return communicate.alert_stakeholders(
        notifier,
        recorder,
        marks,
        drill_config,
        decision=decision,
        affected_repos=injection.repos,
        incident_commander=drill_participants.incident_commander,
    )


@then("the incident alert went to Slack #incidents, PagerDuty and every e-mail recipient")
def _alert_delivered(alert, drill_config, notification_sinks):
    assert not alert.undelivered(), [d.error for d in alert.undelivered()]
    received = notification_sinks.received()
    channels = {r.get("service") for r in received}
    assert {"slack", "pagerduty"} <= channels, channels
    mails = [r for r in received if r.get("service") == "email" and not sent_by_alertmanager(r)]
    assert mails, "no e-mail reached the SMTP sink"
    assert set(drill_config.notifications.email_recipients) <= set(mails[-1].get("to", [])), mails[-1]


@then("the alert names the reason, the affected repos and the Incident Commander")
def _alert_content(alert, decision, injection, drill_participants):
    slack = alert.on("slack")[0].message
    assert decision.reasons[0] in slack.body
    assert all(repo in slack.body for repo in injection.repos)
    assert f"@{drill_participants.incident_commander}" in slack.body


@when(parsers.parse('the SRE performs pre-rollback check 3 "{title}" within {budget}'), target_fixture="backups")
def _pre_3(runbook, recorder, settings, title, budget):
    # A staging cluster outlives the drill: once the scenario is over it is put back from these backups.
    with perform.backed_up(runbook, recorder, keep=settings.keep) as backups:
        yield backups


@then("the flowengine Deployment and the repo-config ConfigMap are saved as YAML")
def _yaml_saved(backups):
    for path in (backups.deployment_yaml, backups.configmap_yaml):
        assert path.stat().st_size > 0, path
    assert backups.deployment["metadata"]["name"] == "flowengine"
    assert "expanded_repos" in backups.configmap["data"]


@then("the TaskDB backup restores into a scratch database with the same rows and checksums")
def _backup_restores(runbook, backups, recorder):
    check = perform.verify_backup(runbook, backups, recorder)
    assert check.matches, check.mismatches


@then("the pilot probe and the expanded-repo probe are running", target_fixture="probes")
def _probes(flowengine, drill_config, drill_clock, world):
    expanded = drill_config.expanded_for(world.phase)[0]
    probes = DrillProbes.start(flowengine, drill_config.pilot_repo, expanded, drill_clock)
    yield probes
    probes.stop()


# --- Steps 1-5 -----------------------------------------------------------------------------------


@when(parsers.parse('the SRE performs Step 1 "{title}" within {budget}'), target_fixture="allowlist_change")
def _step_1(runbook, recorder, title, budget):
    return perform.restrict_allowlist(runbook, recorder)


@then("REPO_ALLOWLIST of deployment/flowengine reads only the pilot")
def _allowlist_pilot(runbook, drill_config):
    world = read_world(runbook.api, drill_config, None, 0)
    assert world.allowlist == (drill_config.pilot_repo,), world.allowlist


@when(parsers.parse('the SRE performs Step 2 "{title}" within {budget}'), target_fixture="scale_result")
def _step_2(runbook, recorder, title, budget):
    return perform.scale_down(runbook, recorder)


@then(parsers.parse("deployment/flowengine runs {replicas:d} replicas, all Running and Ready"))
def _scaled(scale_result, replicas):
    assert (scale_result.after, scale_result.ready_pods) == (replicas, replicas), scale_result


@when(parsers.parse('the SRE performs Step 3 "{title}" within {budget}'), target_fixture="schema_revert")
def _step_3(runbook, backups, recorder, title, budget):
    return perform.revert_schema(runbook, backups, recorder)


@then(parsers.parse('the TaskDB schema version is "{version}"'))
def _schema_version(taskdb, version):
    assert schema.current_version(taskdb) == version


@when(parsers.parse('the SRE performs Step 4 "{title}" within {budget}'), target_fixture="alerts_result")
def _step_4(runbook, recorder, title, budget):
    return perform.disable_expanded_alerts(runbook, recorder)


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
    return perform.verify_pilot(runbook, recorder)


@then("the pilot flow completed in under 120 seconds, cost under $2.00 and passed 5 of 5 quality gates")
def _pilot_flow(pilot_verification):
    problems = [p for p in pilot_verification.problems() if "strict verify" not in p]
    assert not problems, problems


@then("strict verification of the pilot flow passed")
def _strict(pilot_verification):
    assert pilot_verification.verification.passed, pilot_verification.verification


@when("the SRE performs Steps 1 to 5", target_fixture="pilot_verification")
def _steps_1_to_5(runbook, backups, recorder):
    return perform.steps_1_to_5(runbook, backups, recorder)


@then("the pilot repo passed Step 5's verification")
def _pilot_verified(pilot_verification):
    assert not pilot_verification.problems(), pilot_verification.problems()


# --- Steps 6-8 -----------------------------------------------------------------------------------


@when(parsers.parse('the SRE performs Step 6 "{title}" within {budget}'), target_fixture="health")
def _step_6(runbook, marks, drill_clock, recorder, title, budget):
    return perform.verify_system_health(runbook, marks, drill_clock, recorder)


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
    return communicate.announce_completion(
        notifier,
        recorder,
        marks,
        drill_config,
        affected_repos=injection.repos,
        incident_commander=drill_participants.incident_commander,
    )


@then("the completion notice went to Slack #incidents and every e-mail recipient")
def _completion(completion, drill_config):
    notices = [d for d in completion.of_kind("completion-notice") if d.message.channel != "pagerduty"]
    assert {d.message.channel for d in notices} == {"slack", "email"}
    assert all(d.delivered for d in notices), [d.error for d in notices]
    email = next(d.message for d in notices if d.message.channel == "email")
    assert set(email.to) == set(drill_config.notifications.email_recipients)


@then("the PagerDuty incident is resolved")
def _resolved(completion):
    resolutions = completion.on("pagerduty")
    assert resolutions, "no PagerDuty resolve was sent"
    assert resolutions[0].message.payload.get("event_action") == "resolve"
    assert resolutions[0].delivered, resolutions[0].error


@when(parsers.parse('the SRE performs Step 8 "{title}" within {budget}'), target_fixture="status_update")
def _step_8(notifier, drill_config, recorder, marks, title, budget):
    return communicate.update_status_page(notifier, recorder, marks, drill_config)


@then(parsers.parse('the status page shows the orchestrator rolled back, with status "{status}"'))
def _status_page(status_update, notification_sinks, status):
    assert status_update.delivered, status_update.error
    posted = [r for r in notification_sinks.received() if r.get("service") == "status-page"]
    assert posted, "nothing reached the status page"
    assert posted[-1]["body"]["status"] == status
    assert "rolled back to pilot scope" in posted[-1]["body"]["message"]


# --- budgets and targets ---------------------------------------------------------------------------


@then("every runbook step finished within its budget")
def _within_budget(step_grouper, recorder):
    # A step over its budget (BudgetExceeded), or one that failed, fails this check rather than breaking it.
    try:
        judge_step_budgets(step_grouper, recorder)
    except VerificationFailed as late:
        pytest.fail(str(late), pytrace=False)


@then("the drill targets are met")
def _targets_met(marks, probes, recorder, drill_config, injection):
    missed = record_targets(marks, probes, recorder, drill_config, injection.name).missed()
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
    return perform.steps_1_to_4(runbook, backups, recorder, run="first")


@when("the SRE performs Steps 1 to 4 again", target_fixture="second_run")
def _second_run(runbook, backups, recorder):
    return perform.steps_1_to_4(runbook, backups, recorder, run="second")


@then("the second run reports every step as already done")
def _already_done(second_run):
    assert second_run.allowlist.already_done
    assert not second_run.scale.scaled
    assert not second_run.scale.restarted
    assert not second_run.schema.reverted
    assert second_run.alerts.disabled == ()
    assert second_run.alerts.already_disabled


@then("the allowlist, replicas, alert rules and schema version are the same after both runs")
def _same_state(first_run, second_run):
    first, second = first_run.world, second_run.world
    assert (first.allowlist, first.replicas, first.alert_rules, first.schema_version, first.generation) == (
        second.allowlist,
        second.replicas,
        second.alert_rules,
        second.schema_version,
        second.generation,
    )


@when("the SRE performs Step 3 with a rollback script that breaks halfway", target_fixture="step_3_error")
def _broken_step_3(runbook, backups):
    return failure_paths.revert_schema_breaking_halfway(runbook, backups)


@then("Step 3 fails, naming the restore from the pre-rollback backup")
def _step_3_failed(step_3_error, backups):
    message = step_3_error.error
    assert message is not None, "Step 3 did not fail"
    assert "restored from" in message
    assert backups.taskdb.wait(0).path.name in message


@then("the TaskDB schema version is the one from before the rollback")
def _schema_restored(step_3_error, taskdb):
    assert schema.current_version(taskdb) == step_3_error.version_before


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
def _wrong_step_1(runbook, marks, world, probes, recorder, injection, drill_clock):
    return failure_paths.restrict_allowlist_omitting_pilot(
        runbook,
        world.expanded_repos,
        probes,
        marks=marks,
        clock=drill_clock,
        recorder=recorder,
        incident=injection.name,
    )


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
    delivered = alert.channels()
    assert delivered["slack"], alert
    assert delivered["pagerduty"], alert
