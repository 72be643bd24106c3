"""Steps for what comes after the rollback: fix verification on staging (the soak) and phased re-enablement.

Each "the SRE performs ..." step makes one library call (rollback_drill.runbook.phased, which
also puts the results in the evidence: the soak to ``soak``, every phase, each batch of Phase 3
on its own, to ``phases``) and hands on the re-enablement's progress, a frozen value, as the
fixture ``reenablement``; the hooks in conftest.py time it. A stopped phase and a refusal come
back as values (``PhaseStopped``, ``Refusal``) for the checks that follow.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml
from pytest_bdd import given, parsers, then, when

from rollback_drill.kube.rules import PrometheusRules
from rollback_drill.runbook import perform, phased
from rollback_drill.runbook.phased import Reenabler
from rollback_drill.runbook.reenable import Progress, ReenablementPlan, plan_reenablement
from rollback_drill.timing.budget import parse_duration
from rollback_drill.world.seed import read_world

# --- what the steps share ----------------------------------------------------------------------------


@pytest.fixture
def soak_duration_s() -> float | None:
    """The soak's length: drill.yaml's (the runbook's 2 hours), unless a scenario asks for a longer one."""
    return None


@pytest.fixture
def reenablement_plan(runbook, drill_config) -> ReenablementPlan:
    """The phases for the repos the rollback disabled (the ConfigMap's expanded_repos)."""
    return plan_reenablement(drill_config, runbook.expanded_repos())


@pytest.fixture
def reenablement() -> Progress:
    """Nothing re-enabled yet, and no soak run: where every re-enablement starts."""
    return Progress()


@pytest.fixture
def alert_backup_dir(recorder) -> Path:
    """Where the rollback's Step 4 left its ``<repo>-alerts.yaml`` backups."""
    return perform.alert_backups_dir(recorder)


@pytest.fixture
def reenabler(runbook, reenablement_plan, alert_backup_dir, waiting_time_scale, injection, recorder) -> Reenabler:
    """What each phase acts with; asked for by the phase steps, after any Given has scaled the waiting windows."""
    return Reenabler(runbook, reenablement_plan, alert_backup_dir, waiting_time_scale, injection.name, recorder)


# --- the fix and the soak ----------------------------------------------------------------------------


@given(parsers.parse("waiting windows are scaled by {scale:g} in this rehearsal"), target_fixture="waiting_time_scale")
def _scaled(settings, scale):
    return settings.rehearsal_time_scale(scale)


@given(parsers.parse("the soak runs for {duration}, the longest the runbook names"), target_fixture="soak_duration_s")
def _soak_duration(duration):
    return parse_duration(duration)


@when("the fix is deployed", target_fixture="fix")
def _fix_deployed(runbook, staging_flowengine, recorder):
    return phased.deploy_fix(runbook, staging_flowengine, recorder)


@when(parsers.parse("the staging FlowEngine fails {percent:g} % of flows"))
def _flaky_staging(staging_flowengine, percent):
    staging_flowengine.inject("flaky-flows", {"failure_rate": percent / 100})
    yield
    staging_flowengine.clear_incidents()


@when(parsers.parse('the SRE performs the soak "{title}" within {budget}'), target_fixture="reenablement")
def _soak(
    staging_flowengine,
    drill_config,
    waiting_time_scale,
    soak_duration_s,
    injection,
    reenablement,
    recorder,
    title,
    budget,
):
    return phased.soak(
        staging_flowengine,
        drill_config,
        reenablement,
        recorder,
        time_scale=waiting_time_scale,
        incident=injection.name,
        runbook_duration_s=soak_duration_s,
    )


@then("the soak passed: success rate at least 99 %, P95 under 120 seconds, no recurrence of the incident")
def _soak_passed(reenablement):
    soak = reenablement.soak
    assert soak is not None, "no soak ran"
    assert soak.passed, soak.problems()
    assert soak.measurement.success_rate >= 0.99, soak.measurement
    assert soak.measurement.p95_s < 120, soak.measurement
    assert soak.measurement.recurrences == 0, soak.measurement


@then("the soak failed its gate on the success rate, below 99 %")
def _soak_failed(reenablement):
    soak = reenablement.soak
    assert soak is not None, "no soak ran"
    assert not soak.passed
    assert soak.measurement.success_rate < 0.99, soak.measurement
    assert any(problem.startswith("success rate") for problem in soak.problems()), soak.problems()


@then("the soak's numbers come from real requests to the staging FlowEngine, each one a flow in staging's TaskDB")
def _soak_real(reenablement, staging_flowengine):
    soak = reenablement.soak
    assert soak is not None, "no soak ran"
    assert soak.flowengine_url == staging_flowengine.base_url
    assert soak.measurement.requests > 0, soak.measurement
    assert soak.measurement.requests <= soak.plan.max_requests
    assert soak.server.flows == soak.measurement.requests, (soak.server, soak.measurement)
    assert soak.server.failed == soak.measurement.failed, (soak.server, soak.measurement)


# --- the phases ------------------------------------------------------------------------------------


@when(parsers.parse('the SRE performs Phase {phase:d} "{title}" within {budget}'), target_fixture="reenablement")
def _phase(reenabler, reenablement, phase, title, budget):
    return reenabler.perform_phase(reenablement, phase)


@when(parsers.parse('the fix does not hold for repo "{repo}"'))
def _fix_does_not_hold(flowengine, injection, repo):
    # The incident comes back for this repo: its flows fail with the incident's cause as soon as it is served again.
    flowengine.inject(injection.name, {"repos": [repo]})


@when(parsers.parse('the SRE attempts Phase {phase:d} "{title}"'), target_fixture="phase_failure")
def _phase_attempt(reenabler, reenablement, phase, title):
    return reenabler.attempt_phase(reenablement, phase)


@then(parsers.parse('Phase {phase:d} is stopped by a recurrence of the incident in "{repo}"'))
def _stopped_by_recurrence(phase_failure, phase, repo):
    result = phase_failure.result
    assert result is not None, f"Phase {phase_failure.phase} was not stopped"
    assert result.step.phase == phase, result.step
    assert result.recurrences > 0, result.evidence()
    assert result.stopped_early is not None, result.evidence()
    assert result.stopped_early.startswith(f"{repo}:"), result.stopped_early
    assert any("recurrence" in problem for problem in result.problems()), result.problems()


@then(parsers.parse("the stopped phase is in the evidence, with what it measured"))
def _stopped_in_evidence(recorder, phase_failure):
    assert phase_failure.result is not None, f"Phase {phase_failure.phase} was not stopped"
    entries = [p for p in recorder.evidence["phases"] if p["id"] == phase_failure.result.step.id]
    assert entries, recorder.evidence.get("phases")
    last = entries[-1]
    assert last["passed"] is False
    assert last["recurrences"] > 0
    assert last["synthetic"]["requests"] > 0
    assert any(w["code"] == "phase-stopped" for w in recorder.evidence["warnings"])


@then(
    parsers.re(r'REPO_ALLOWLIST of deployment/flowengine reads the pilot followed by (?P<repos>"[^"]+"(?:, "[^"]+")*)')
)
def _allowlist_reads(runbook, drill_config, repos):
    expected = (drill_config.pilot_repo, *(name.strip().strip('"') for name in repos.split(",")))
    assert read_world(runbook.api, drill_config, None, 0).allowlist == expected


@then("REPO_ALLOWLIST of deployment/flowengine reads the pilot followed by every expanded repo")
def _allowlist_all(runbook, drill_config, reenablement_plan):
    allowlist = read_world(runbook.api, drill_config, None, 0).allowlist
    assert allowlist[0] == drill_config.pilot_repo, allowlist
    assert sorted(allowlist[1:]) == sorted(reenablement_plan.expanded), allowlist


@then("the alert rules are back for exactly the re-enabled repos, as Step 4 backed them up")
def _alerts_back(runbook, reenablement, reenablement_plan, alert_backup_dir):
    rules = PrometheusRules(runbook.api, runbook.config.kubernetes.monitoring_namespace)
    expanded_rules = {f"{repo}-alerts" for repo in reenablement_plan.expanded}
    back = {f"{repo}-alerts" for repo in reenablement.reenabled()}
    assert rules.names() & expanded_rules == back, sorted(rules.names() & expanded_rules)
    for name in sorted(back):
        backed_up = yaml.safe_load((alert_backup_dir / f"{name}.yaml").read_text())
        assert rules.get(name)["spec"] == backed_up["spec"], name


@then(parsers.parse("Phase {phase:d} met its criteria, with its success rate and P95 in the evidence"))
def _phase_met(recorder, phase):
    entries = [p for p in recorder.evidence.get("phases", []) if p["id"] == f"phase-{phase}"]
    assert entries, f"no phase-{phase} in the evidence"
    for entry in entries:
        assert entry["passed"] is True, entry["problems"]
        assert entry["flows"] > 0, entry
        assert entry["success_rate"] >= 0.99, entry
        assert entry["p95_s"] is not None, entry
        assert entry["p95_s"] < 120, entry
        assert entry["recurrences"] == 0, entry


@then(
    parsers.parse(
        "Phase 3 brought the remaining repos back in batches of at most {size:d}, each with its own rollout and monitoring window"
    )
)
def _phase_3_batches(recorder, reenablement_plan, size):
    entries = [p for p in recorder.evidence.get("phases", []) if p["id"] == "phase-3"]
    planned = reenablement_plan.phase(3)
    assert len(entries) == len(planned), entries
    assert all(1 <= len(entry["repos"]) <= size for entry in entries), [entry["repos"] for entry in entries]
    assert [repo for entry in entries for repo in entry["repos"]] == [repo for step in planned for repo in step.repos]
    assert all(entry["rollout"] and entry["monitored_s"] > 0 for entry in entries), entries
    for earlier, later in itertools.pairwise(entries):
        assert later["allowlist_before"] == earlier["allowlist"], (earlier, later)


# --- refusals ------------------------------------------------------------------------------------


@when("the SRE re-enables every expanded repo in one step", target_fixture="refusal")
def _all_at_once(reenabler, reenablement):
    return reenabler.refusal_of_all_at_once(reenablement)


@when(parsers.parse("the SRE starts Phase {phase:d} before Phase {earlier:d} has passed"), target_fixture="refusal")
@when(parsers.parse("the SRE starts Phase {phase:d} after the failed soak"), target_fixture="refusal")
def _premature_phase(reenabler, reenablement, phase):
    return reenabler.refusal_of_phase(reenablement, phase)


@then(parsers.parse('it is refused with "{message}"'))
def _refused(refusal, message):
    assert refusal.message is not None, "it was not refused"
    assert message in refusal.message, refusal.message
