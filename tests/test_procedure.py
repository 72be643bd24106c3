"""The runbook's procedure in the library, the parts that need no cluster: Step 6's window, the triage,
what each step records, when a cluster is put back, the drill targets, and the re-enablement refusals.

Steps 1 to 6 performed against a real drill world are in tests/test_procedure_world.py.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from rollback_drill.config import HEALTH_WINDOW_S, default_config_path, load_config
from rollback_drill.errors import ConfigError, UnsafeTarget
from rollback_drill.evidence import Recorder, Redactor
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.runbook import perform, putback
from rollback_drill.runbook.actions import AlertsResult, AllowlistChange, Backups, Runbook, ScaleResult, SchemaRevert
from rollback_drill.runbook.decision import Decision
from rollback_drill.runbook.drill import DrillProbes
from rollback_drill.runbook.phased import Reenabler, Refusal
from rollback_drill.runbook.reenable import ALL_AT_ONCE_REFUSAL, Progress, plan_reenablement
from rollback_drill.runbook.targets import DrillTargets, record_targets
from rollback_drill.targets.cluster import Cluster
from rollback_drill.taskdb.backup import AsyncBackup
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.timing.clock import FakeClock
from rollback_drill.timing.probe import Probe
from rollback_drill.timing.windows import PILOT_IMPACT, ROLLBACK_EXECUTION, Marks, TargetResult, step_end, step_start
from rollback_drill.world.seed import WorldState

STAGING = Cluster("kubeconfig", "/nonexistent/kubeconfig", None, "https://staging:6443", "https://staging:6443#uid-1", "v1.34.4", created_by_drill=False)  # fmt: skip
DRILL_MADE = dataclasses.replace(STAGING, kind="local", created_by_drill=True)


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


def events(recorder: Recorder, kind: str) -> list[dict]:
    lines = recorder.timeline_path.read_text().splitlines()
    return [e for e in map(yaml.safe_load, lines) if e["kind"] == kind]


# --- Step 6's window ---------------------------------------------------------------------------------


def test_step_6_judges_the_flows_since_step_4_ended(clock, config):
    marks = Marks(clock)
    marks.mark(step_end("step-4"))
    clock.advance(37.5)
    marks.mark(step_start("step-6"))
    clock.advance(2)
    assert perform.health_window_s(marks, clock, config) == 39.5


def test_without_step_4_timed_step_6_judges_the_flows_since_it_began_at_least_a_second(clock, config):
    marks = Marks(clock)
    marks.mark(step_start("step-6"))
    assert perform.health_window_s(marks, clock, config) == perform.MIN_HEALTH_WINDOW_S
    clock.advance(4)
    assert perform.health_window_s(marks, clock, config) == 4


def test_with_neither_step_6_judges_drill_yamls_window_the_runbooks_last_10_minutes(clock, config):
    assert config.health_window_s == HEALTH_WINDOW_S == 600
    assert perform.health_window_s(Marks(clock), clock, config) == 600
    shorter = dataclasses.replace(config, health_window_s=120.0)
    assert perform.health_window_s(Marks(clock), clock, shorter) == 120


def _drill_yaml(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(default_config_path().read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "drill.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_health_window_s_is_read_from_drill_yaml_and_defaults_to_the_runbooks(tmp_path):
    assert load_config(_drill_yaml(tmp_path, health_window_s=300)).health_window_s == 300
    assert load_config(_drill_yaml(tmp_path, health_window_s=None)).health_window_s == HEALTH_WINDOW_S


@pytest.mark.parametrize("value", [0, -5, "ten minutes", True])
def test_a_health_window_that_is_not_a_positive_number_is_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="health_window_s: must be a positive number"):
        load_config(_drill_yaml(tmp_path, health_window_s=value))


# --- around the runbook ----------------------------------------------------------------------------


def test_p1_holds_no_triage_and_says_so(recorder):
    decision = Decision("P1", "roll back", ("p1-crash-loop",), ("crash loop for 600 s",), 0.0)
    assert perform.hold_triage(decision, 0.001, recorder) == 0
    (triage,) = events(recorder, "triage")
    assert (triage["runbook_s"], triage["held_s"]) == (0, 0)


def test_p2_holds_its_30_minutes_scaled(recorder):
    decision = Decision("P2", "roll back after triage", ("p2-slo-violation",), ("P95 180 s for 20 min",), 1800.0)
    assert perform.hold_triage(decision, 0.000001, recorder) == pytest.approx(0.0018)
    (triage,) = events(recorder, "triage")
    assert triage["runbook_s"] == 1800


def test_the_backups_live_in_the_bundle(recorder):
    assert perform.backups_dir(recorder) == recorder.bundle_dir / "backups"
    assert perform.alert_backups_dir(recorder) == recorder.bundle_dir / "backups" / "alerts"


def test_a_steps_result_is_a_step_result_event_of_that_step(recorder):
    change = AllowlistChange(
        ("compliance-service", "risk-engine"), ("compliance-service",), already_done=False, rollout="rolled out"
    )
    perform.record_step_result(recorder, "step-1", change)
    (event,) = events(recorder, "step_result")
    assert (event["step"], event["after"], event["already_done"]) == ("step-1", ["compliance-service"], False)


def _world(generation: int = 3) -> WorldState:
    return WorldState(6, ("compliance-service",), 3, 3, (), (), "20251104_001", generation)


def test_a_rollback_run_tells_for_each_step_whether_it_found_its_work_done():
    second = perform.RollbackRun(
        AllowlistChange(
            ("compliance-service",), ("compliance-service",), already_done=True, rollout="already rolled out"
        ),
        ScaleResult(3, 3, scaled=False, restarted=False, ready_pods=3, rollout="already 3"),
        SchemaRevert("20251104_001", "20251104_001", reverted=False),
        AlertsResult((), ("risk-engine-alerts",), (), None),
        _world(),
    )
    assert second.already_done() == {"step-1": True, "step-2": True, "step-3": True, "step-4": True}
    first = dataclasses.replace(
        second, scale=ScaleResult(6, 3, scaled=True, restarted=True, ready_pods=3, rollout="rolled out")
    )
    assert first.already_done()["step-2"] is False


# --- putting a cluster back ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cluster", "keep", "needed"),
    [
        (STAGING, "never", True),
        (STAGING, "on-failure", True),
        (STAGING, "always", False),
        (DRILL_MADE, "never", False),
        (DRILL_MADE, "always", False),
    ],
)
def test_only_a_cluster_the_drill_did_not_create_is_put_back_unless_kept(cluster, keep, needed):
    assert putback.put_back_needed(cluster, keep) is needed


def _runbook(cluster: Cluster, config) -> Runbook:
    # Nothing here reaches the API, TaskDB or FlowEngine: the identity guard refuses first, or nothing is put back.
    db = TaskDB("dsn", "127.0.0.1", 1, "taskdb", "postgres", "unused")
    return Runbook(None, cluster, config, db, FlowEngineClient("http://127.0.0.1:1"))  # type: ignore[arg-type]


def _backups(tmp_path: Path, db: TaskDB) -> Backups:
    deployment = {
        "spec": {
            "replicas": 6,
            "template": {
                "spec": {"containers": [{"name": "flowengine", "env": [{"name": "REPO_ALLOWLIST", "value": "a,b"}]}]}
            },
        }
    }
    return Backups(tmp_path / "d.yaml", tmp_path / "c.yaml", AsyncBackup(db, tmp_path / "dump.sql.gz"), deployment)


def test_a_drill_made_cluster_is_left_as_it_is(tmp_path, recorder, config):
    runbook = _runbook(DRILL_MADE, config)
    result = putback.put_back_after_drill(runbook, _backups(tmp_path, runbook.taskdb), tmp_path, recorder, keep="never")
    assert result is None
    assert not events(recorder, "put_back")
    assert recorder.evidence["warnings"] == []


def test_a_put_back_that_is_refused_fails_the_drill_with_a_warning(tmp_path, recorder, config):
    runbook = _runbook(STAGING, config)
    with pytest.raises(UnsafeTarget, match="put the allowlist back"):
        putback.put_back_after_drill(runbook, _backups(tmp_path, runbook.taskdb), tmp_path, recorder, keep="never")
    (warning,) = recorder.evidence["warnings"]
    assert warning["code"] == putback.PUT_BACK_FAILED
    assert "the cluster was not put back as it was" in warning["message"]
    assert not events(recorder, "put_back")


# --- the drill targets ---------------------------------------------------------------------------


def _idle_probes(clock) -> DrillProbes:
    def never_called():
        raise AssertionError("an idle probe is never started")

    return DrillProbes(
        Probe("pilot", never_called, rate_hz=1, clock=clock), Probe("expanded", never_called, rate_hz=1, clock=clock)
    )


def test_unmeasured_targets_with_a_limit_are_missed_and_recorded(recorder, clock, config):
    targets = record_targets(Marks(clock), _idle_probes(clock), recorder, config, "mass-failure")
    missed = {t.name for t in targets.missed()}
    assert {ROLLBACK_EXECUTION, PILOT_IMPACT} <= missed
    assert "drill" not in missed  # measured as the bundle is sealed
    assert [t["name"] for t in recorder.evidence["targets"]] == [t.name for t in targets.results]


def test_a_measured_target_is_met_and_a_missing_one_is_named():
    targets = DrillTargets((TargetResult(ROLLBACK_EXECUTION, 600.0, 31.0, "s", met=True),))
    assert targets[ROLLBACK_EXECUTION].met is True
    assert targets.missed() == ()
    with pytest.raises(KeyError, match="no drill target 'detect'"):
        targets["detect"]


def test_drill_yaml_tightens_a_targets_limit(recorder, clock, config):
    tight = dataclasses.replace(config, budget_overrides_s={"rollback_execution": 300.0, "step-1": 60.0})
    marks = Marks(clock)
    marks.mark(step_start("step-1"))
    clock.advance(301)
    marks.mark(step_end("step-4"))
    targets = record_targets(marks, _idle_probes(clock), recorder, tight, "mass-failure")
    assert (targets[ROLLBACK_EXECUTION].limit, targets[ROLLBACK_EXECUTION].met) == (300.0, False)


# --- re-enablement refusals --------------------------------------------------------------------


@pytest.fixture
def reenabler(config, recorder, tmp_path) -> Reenabler:
    # The refusals come before anything is touched: the runbook is never used.
    plan = plan_reenablement(config, config.expanded_for(6))
    return Reenabler(None, plan, tmp_path, 0.001, "mass-failure", recorder)  # type: ignore[arg-type]


def test_every_repo_at_once_is_refused_in_the_runbooks_words(reenabler):
    refusal = reenabler.refusal_of_all_at_once(Progress())
    assert refusal.message is not None
    assert ALL_AT_ONCE_REFUSAL in refusal.message


def test_a_phase_before_the_soak_passed_is_refused(reenabler):
    refusal = reenabler.refusal_of_phase(Progress(), 1)
    assert refusal.message is not None
    assert "no repo may be re-enabled before the fix passes its soak on staging" in refusal.message


def test_a_request_that_goes_through_is_no_refusal():
    assert Refusal(None).message is None
