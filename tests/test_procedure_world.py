"""The runbook's procedure performed against a real drill world: the steps, what each records, the failure paths.

One environment for the module (`rollback-drill env up` with its world: a local control
plane, a TaskDB, the simulator following the pods); each test seeds the Phase 6 world
afresh, so the tests do not depend on their order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from rollback_drill import environment
from rollback_drill.config import load_config
from rollback_drill.evidence import Recorder
from rollback_drill.runbook import failure_paths, perform
from rollback_drill.runbook.actions import Runbook
from rollback_drill.runbook.drill import DrillProbes
from rollback_drill.taskdb import schema
from rollback_drill.timing.clock import SystemClock
from rollback_drill.timing.windows import INCIDENT_INJECTED, PILOT_IMPACT, Marks, step_end
from rollback_drill.world.seed import seed_world

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def drill_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[environment.EnvironmentState]:
    home = tmp_path_factory.mktemp("procedure-state")
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(home)
    state = environment.bring_up(f"procedure-{os.getpid()}", with_world=True)
    try:
        yield state
    finally:
        environment.tear_down(state)
        if old is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = old


@pytest.fixture
def runbook(drill_env) -> Iterator[Runbook]:
    """A Phase 6 world, seeded afresh, and the runbook's handle on it."""
    cluster = drill_env.cluster()
    taskdb = drill_env.taskdb_handle()
    assert taskdb is not None
    config = load_config()
    flowengine = drill_env.flowengine_client()
    api = cluster.api_client()
    flowengine.clear_incidents()
    seed_world(api, cluster, config, 6, taskdb)
    yield Runbook(api, cluster, config, taskdb, flowengine)
    api.close()


@pytest.fixture
def clock() -> SystemClock:
    return SystemClock()


@pytest.fixture
def recorder(tmp_path, clock) -> Iterator[Recorder]:
    rec = Recorder.create(tmp_path, incident="mass-failure", clock=clock)
    yield rec
    rec.abort("test teardown")


def events(recorder: Recorder, kind: str) -> list[dict]:
    return [e for e in map(json.loads, recorder.timeline_path.read_text().splitlines()) if e["kind"] == kind]


def test_steps_1_to_6_each_act_and_record_their_result(runbook, recorder, clock):
    marks = Marks(clock)
    with perform.backed_up(runbook, recorder, keep="never") as backups:
        confirmation = perform.confirm_incident(runbook, recorder)
        check = perform.verify_backup(runbook, backups, recorder)
        change = perform.restrict_allowlist(runbook, recorder)
        scaled = perform.scale_down(runbook, recorder)
        reverted = perform.revert_schema(runbook, backups, recorder)
        alerts = perform.disable_expanded_alerts(runbook, recorder)
        marks.mark(step_end("step-4"))  # as the drill's step grouper does: Step 6 judges the flows since
        verification = perform.verify_pilot(runbook, recorder)
        health = perform.verify_system_health(runbook, marks, clock, recorder)

    assert events(recorder, "incident_confirmation")[0]["error_lines"] == len(confirmation.error_lines)
    assert check.matches, check.mismatches
    assert change.after == (runbook.config.pilot_repo,)
    assert (scaled.after, scaled.ready_pods) == (3, 3)
    assert reverted.after == runbook.config.schema.pilot_version
    assert {p.stem for p in alerts.backups} == {f"{repo}-alerts" for repo in runbook.config.expanded_for(6)}
    assert not verification.problems(), verification.problems()
    assert not health.problems(runbook.config.pilot_repo), health
    assert [e["step"] for e in events(recorder, "step_result")] == [f"step-{n}" for n in range(1, 7)]
    assert events(recorder, "backup_verified")
    assert any(w["code"] == "runbook-drift" and w["step"] == "step-4" for w in recorder.evidence["warnings"])
    artifacts = {Path(a["path"]).name for a in recorder.evidence["artifacts"]}
    assert {backups.deployment_yaml.name, backups.configmap_yaml.name, backups.taskdb.wait(0).path.name} <= artifacts
    assert {p.name for p in alerts.backups} <= artifacts
    assert not events(recorder, "put_back"), "a drill-made cluster is not put back"


def test_steps_1_to_4_a_second_time_find_their_work_done_and_change_nothing(runbook, recorder):
    with perform.backed_up(runbook, recorder, keep="never") as backups:
        first = perform.steps_1_to_4(runbook, backups, recorder, run="first")
        second = perform.steps_1_to_4(runbook, backups, recorder, run="second")
        verification = perform.steps_1_to_5(runbook, backups, recorder)

    assert not any(first.already_done().values()), first
    assert all(second.already_done().values()), second
    # What the steps write must be the same; available_replicas is the controllers' status, which may
    # still be counting the pods Step 2 scaled away when the snapshot is read.
    assert replace(first.world, available_replicas=0) == replace(second.world, available_replicas=0)
    assert not verification.problems(), verification.problems()


def test_a_schema_revert_that_breaks_halfway_fails_step_3_and_restores_the_backup(runbook, recorder):
    before = schema.current_version(runbook.taskdb)
    with perform.backed_up(runbook, recorder, keep="never") as backups:
        failed = failure_paths.revert_schema_breaking_halfway(runbook, backups)

    assert failed.version_before == before
    assert failed.error is not None, "Step 3 did not fail"
    assert "restored from" in failed.error
    assert backups.taskdb.wait(0).path.name in failed.error
    assert schema.current_version(runbook.taskdb) == before


def test_an_injected_incident_is_marked_and_recorded(runbook, recorder, clock):
    marks = Marks(clock)
    stage = perform.IncidentStage(runbook.flowengine, runbook.api, runbook.cluster, runbook.config, runbook.taskdb)
    record = perform.inject_incident("mass-failure", stage, marks=marks, recorder=recorder, phase=6)
    assert marks.get(INCIDENT_INJECTED) is not None
    assert record.repos
    (injected,) = events(recorder, "incident_injected")
    assert injected["repos"] == list(record.repos)
    assert recorder.evidence["affected_repos"] == list(record.repos)


def test_a_step_1_that_omits_the_pilot_is_caught_as_pilot_impact(runbook, recorder, clock):
    config = runbook.config
    marks = Marks(clock)
    probes = DrillProbes.start(runbook.flowengine, config.pilot_repo, config.expanded_for(6)[0], clock)
    try:
        targets = failure_paths.restrict_allowlist_omitting_pilot(
            runbook,
            config.expanded_for(6),
            probes,
            marks=marks,
            clock=clock,
            recorder=recorder,
            incident="mass-failure",
        )
    finally:
        probes.stop()
    assert targets[PILOT_IMPACT].met is False, targets[PILOT_IMPACT]
    assert any(w["code"] == "wrong-step-1" for w in recorder.evidence["warnings"])
    assert recorder.evidence["targets"]
