"""The runbook's steps as a drill performs them: the action, and what it did in the evidence.

``rollback_drill.runbook.actions`` holds one function per runbook action. Here each is
performed the way the drill performs it: the action, then its result recorded as a
``step_result`` event of its runbook step (with the warnings it calls for: a rollout
blocked by a crash loop, the runbook's drifted alert patch), and the result returned for
the checks that follow. The drill's own moves around the runbook (injecting the incident,
holding the triage) are here too, as are the backups of pre-rollback check 3 with their
put-back at the end of the drill, and Step 6's measuring window.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from kubernetes import client

from rollback_drill.config import DrillConfig
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.flowengine.client import FlowEngineClient, IncidentRecord
from rollback_drill.runbook import actions
from rollback_drill.runbook.actions import (
    AlertsResult,
    AllowlistChange,
    Backups,
    HealthReport,
    IncidentConfirmation,
    PilotVerification,
    Runbook,
    ScaleResult,
    SchemaRevert,
)
from rollback_drill.runbook.decision import Decision
from rollback_drill.runbook.drill import hold, triage_hold_s
from rollback_drill.runbook.putback import put_back_after_drill
from rollback_drill.targets.cluster import Cluster
from rollback_drill.taskdb.backup import RestoreCheck
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.timing.clock import Clock
from rollback_drill.timing.windows import INCIDENT_INJECTED, Marks, step_end, step_start
from rollback_drill.world import incidents
from rollback_drill.world.seed import WorldState, read_world

BACKUP_WAIT_S: Final = 120.0
"""How long Step 3 waits for the pre-rollback TaskDB dump: the schema is never reverted without it."""
HEALTH_SETTLE_TIMEOUT_S: Final = 60.0
"""How long Step 6 waits, within its 5-minute budget, for a clean health report (pods Ready, providers healthy)."""
MIN_HEALTH_WINDOW_S: Final = 1.0
"""The shortest window of flows Step 6 judges: right after the rollback, at least a second of them."""


class _Result(Protocol):
    def evidence(self) -> dict[str, Any]: ...


def backups_dir(recorder: Recorder) -> Path:
    """Where pre-rollback check 3 writes its backups: ``backups/`` in the drill's bundle."""
    return recorder.bundle_dir / "backups"


def alert_backups_dir(recorder: Recorder) -> Path:
    """Where Step 4 backs up each ``<repo>-alerts`` rule before removing it, for re-enablement and put-back."""
    return backups_dir(recorder) / "alerts"


def record_step_result(recorder: Recorder, step_id: str, result: _Result) -> None:
    """What a runbook step did, as a ``step_result`` event of that step."""
    recorder.event("step_result", step=step_id, **result.evidence())


# --- around the runbook ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentStage:
    """What an incident is injected through: FlowEngine, the cluster (as its admin, not as the runbook's
    least-privilege identity: the incident is not the runbook's doing), the configuration and TaskDB."""

    flowengine: FlowEngineClient
    api: client.ApiClient
    cluster: Cluster
    config: DrillConfig
    taskdb: TaskDB | None = None


def inject_incident(name: str, stage: IncidentStage, *, marks: Marks, recorder: Recorder, phase: int) -> IncidentRecord:
    """Inject incident ``name`` (its cluster side only on a cluster the drill made), mark the instant, record it.

    The stage's ``taskdb`` lets the injection refuse to corrupt a database the drill did not create.
    """
    api = stage.api if stage.cluster.created_by_drill else None
    record = incidents.inject(name, stage.flowengine, api, stage.config, taskdb=stage.taskdb)
    marks.mark(INCIDENT_INJECTED, overwrite=True)
    incidents.record_injection(recorder, record, phase)
    return record


def hold_triage(decision: Decision, time_scale: float, recorder: Recorder, *, clock: Clock | None = None) -> float:
    """Hold the triage the decision calls for (P2: 30 minutes, scaled like every waiting window); return the seconds held.

    On the drill's clock, so a ``FakeClock`` drives it in tests.
    """
    seconds = triage_hold_s(decision, time_scale)
    recorder.event("triage", runbook_s=decision.triage_s, held_s=seconds)
    hold(seconds, describe=f"the {decision.priority} triage", clock=clock)
    return seconds


# --- pre-rollback --------------------------------------------------------------------------------


def confirm_incident(runbook: Runbook, recorder: Recorder) -> IncidentConfirmation:
    """Pre-rollback check 1: the FlowEngine log's ERROR/CRITICAL lines and the failures by repo."""
    confirmation = actions.confirm_incident(runbook)
    recorder.event("incident_confirmation", **confirmation.evidence())
    return confirmation


@contextmanager
def backed_up(runbook: Runbook, recorder: Recorder, *, keep: str) -> Iterator[Backups]:
    """Pre-rollback check 3 for the length of the ``with`` block, and the put-back of a kubeconfig target after it.

    The Deployment and ConfigMap YAML go into the bundle's artifacts at once; the TaskDB dump
    runs in the background. When the block ends the dump is waited for and a cluster the drill
    did not create is put back from these backups, unless ``keep`` is ``always``.
    """
    backups = actions.backup_state(runbook, backups_dir(recorder))
    recorder.add_artifacts([backups.deployment_yaml, backups.configmap_yaml])
    try:
        yield backups
    finally:
        put_back_after_drill(runbook, backups, alert_backups_dir(recorder), recorder, keep=keep)


def verify_backup(runbook: Runbook, backups: Backups, recorder: Recorder) -> RestoreCheck:
    """Restore the TaskDB dump into a scratch database and compare; a faithful dump joins the artifacts."""
    check = actions.verify_backup(runbook, backups)
    if check.matches:
        recorder.add_artifact(backups.taskdb.wait(0).path)
        recorder.event("backup_verified", tables={t: f.rows for t, f in check.tables.items()})
    return check


# --- Steps 1-6 -----------------------------------------------------------------------------------


def restrict_allowlist(runbook: Runbook, recorder: Recorder) -> AllowlistChange:
    """Step 1; a rollout a crash loop blocks is a warning, since Step 2's restart gets past it."""
    change = actions.restrict_allowlist(runbook)
    record_step_result(recorder, "step-1", change)
    if change.blocked_by_crash_loop:
        recorder.warn(
            "rollout-blocked", f"Step 1 rollout blocked: {change.rollout}; Step 2 restarts FlowEngine", "step-1"
        )
    return change


def scale_down(runbook: Runbook, recorder: Recorder) -> ScaleResult:
    """Step 2."""
    result = actions.scale_down(runbook)
    record_step_result(recorder, "step-2", result)
    return result


def revert_schema(runbook: Runbook, backups: Backups, recorder: Recorder) -> SchemaRevert:
    """Step 3, once the pre-rollback dump it may have to restore from has finished."""
    result = actions.revert_schema(runbook, backups.taskdb.wait(BACKUP_WAIT_S))
    record_step_result(recorder, "step-3", result)
    return result


def disable_expanded_alerts(runbook: Runbook, recorder: Recorder) -> AlertsResult:
    """Step 4; the runbook's own patch that does not work is recorded as drift, each rule's backup as an artifact."""
    result = actions.disable_expanded_alerts(runbook, alert_backups_dir(recorder))
    record_step_result(recorder, "step-4", result)
    if result.drift:
        recorder.warn("runbook-drift", result.drift, "step-4")
    recorder.add_artifacts(list(result.backups))
    return result


def verify_pilot(runbook: Runbook, recorder: Recorder) -> PilotVerification:
    """Step 5."""
    verification = actions.verify_pilot(runbook)
    record_step_result(recorder, "step-5", verification)
    return verification


def health_window_s(marks: Marks, clock: Clock, config: DrillConfig) -> float:
    """The seconds of flows Step 6 judges: those since the rollback.

    The rollback ends with Step 4 (Step 6's start, when the drill performed Steps 1 to 5
    without timing each), and the window is at least ``MIN_HEALTH_WINDOW_S``; a drill that
    marked neither judges drill.yaml's ``health_window_s``, the runbook's "last 10 min".
    """
    since = marks.get(step_end("step-4"))
    if since is None:
        since = marks.get(step_start("step-6"))
    if since is None:
        return config.health_window_s
    return max(MIN_HEALTH_WINDOW_S, clock.monotonic() - since)


def verify_system_health(runbook: Runbook, marks: Marks, clock: Clock, recorder: Recorder) -> HealthReport:
    """Step 6: pods, TaskDB, the model providers and the flows since the rollback, once they settle."""
    window = health_window_s(marks, clock, runbook.config)
    report = actions.wait_healthy(runbook, window_s=window, timeout_s=HEALTH_SETTLE_TIMEOUT_S)
    record_step_result(recorder, "step-6", report)
    return report


# --- Steps performed together ------------------------------------------------------------------


def steps_1_to_5(runbook: Runbook, backups: Backups, recorder: Recorder) -> PilotVerification:
    """Steps 1 to 5 in one go (a scenario about what comes after them); Step 5's verification is returned."""
    actions.restrict_allowlist(runbook)
    actions.scale_down(runbook)
    actions.revert_schema(runbook, backups.taskdb.wait(BACKUP_WAIT_S))
    actions.disable_expanded_alerts(runbook, alert_backups_dir(recorder))
    return actions.verify_pilot(runbook)


@dataclass(frozen=True)
class RollbackRun:
    """What Steps 1 to 4 reported, and the world they left."""

    allowlist: AllowlistChange
    scale: ScaleResult
    schema: SchemaRevert
    alerts: AlertsResult
    world: WorldState

    def already_done(self) -> dict[str, bool]:
        """For each step, whether it reported that it found its work already done and changed nothing."""
        return {
            "step-1": self.allowlist.already_done,
            "step-2": not self.scale.scaled and not self.scale.restarted,
            "step-3": not self.schema.reverted,
            "step-4": self.alerts.disabled == () and bool(self.alerts.already_disabled),
        }


def steps_1_to_4(runbook: Runbook, backups: Backups, recorder: Recorder, *, run: str) -> RollbackRun:
    """Steps 1 to 4 in one go, the alert backups of this ``run`` kept apart; and the world they leave."""
    allowlist = actions.restrict_allowlist(runbook)
    scale = actions.scale_down(runbook)
    schema_revert = actions.revert_schema(runbook, backups.taskdb.wait(BACKUP_WAIT_S))
    alerts = actions.disable_expanded_alerts(runbook, backups_dir(recorder) / f"alerts-{run}")
    world = read_world(runbook.api, runbook.config, runbook.taskdb, 0)
    return RollbackRun(allowlist, scale, schema_revert, alerts, world)
