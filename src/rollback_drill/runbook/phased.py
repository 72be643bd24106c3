"""Re-enablement as a drill performs it: the fix on staging, its soak, each phase, and what is refused.

``rollback_drill.runbook.soak`` and ``.reenable`` do the work; here each step is performed
the way the drill performs it, with its result in the evidence: the fix as ``fix_deployed``,
the soak as the ``soak`` runbook step's result and the evidence's ``soak``, every phase
(each batch of Phase 3 on its own) in ``phases``, and a stopped phase as a ``phase-stopped``
warning. What the re-enablement hands from one step to the next is its ``Progress``.

A phase that is stopped, and a request that is refused, are outcomes the drill rehearses:
``attempt_phase`` and the ``refusal_of_*`` functions return them as values for the checks
to judge, rather than raising.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rollback_drill.config import DrillConfig
from rollback_drill.errors import InputError
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.runbook.actions import Runbook
from rollback_drill.runbook.reenable import (
    PhaseFailed,
    PhaseResult,
    PhaseRun,
    Progress,
    ReenablementPlan,
    perform_phase,
    reenable_repos,
)
from rollback_drill.runbook.soak import FixDeployment, SoakPlan, deploy_fix_to_staging, run_soak


def deploy_fix(runbook: Runbook, staging: FlowEngineClient, recorder: Recorder) -> FixDeployment:
    """Roll the fix out to staging (named after the drill), and record it."""
    fix = deploy_fix_to_staging(runbook, staging, fix_id=f"fix-{recorder.drill_id}")
    recorder.event("fix_deployed", **fix.evidence())
    return fix


def soak(
    staging: FlowEngineClient,
    config: DrillConfig,
    progress: Progress,
    recorder: Recorder,
    *,
    time_scale: float,
    incident: str | None,
    runbook_duration_s: float | None,
) -> Progress:
    """Soak the fix on staging as drill.yaml plans it (``runbook_duration_s`` may lengthen it); the progress with it."""
    plan = SoakPlan.from_config(config, time_scale=time_scale, incident=incident, runbook_duration_s=runbook_duration_s)
    result = run_soak(staging, plan)
    recorder.event("step_result", step="soak", **result.evidence())
    recorder.set("soak", result.evidence())
    return progress.with_soak(result)


def record_phases(recorder: Recorder, results: tuple[PhaseResult, ...]) -> None:
    """Each phase step's result (each batch of Phase 3 on its own) in the evidence's ``phases``."""
    for result in results:
        recorder.append("phases", result.evidence())


@dataclass(frozen=True)
class PhaseStopped:
    """An attempted phase: stopped (the failed step's result, and why), or, wrongly, not stopped."""

    phase: int
    result: PhaseResult | None
    """The step that missed its criteria; None when the phase was not stopped."""
    message: str | None


@dataclass(frozen=True)
class Refusal:
    """A re-enablement request and its refusal; ``message`` is None when it was not refused."""

    message: str | None


@dataclass(frozen=True)
class Reenabler:
    """What every re-enablement step acts with: the runbook, the plan, Step 4's alert backups, the scaled windows."""

    runbook: Runbook
    plan: ReenablementPlan
    alert_backup_dir: Path
    time_scale: float
    """The waiting windows' scale (each phase's monitoring window); never the budgets."""
    incident: str | None
    """The incident rehearsed: its symptoms are what a recurrence looks like."""
    recorder: Recorder

    def _phase(self, progress: Progress, phase: int) -> PhaseRun:
        return perform_phase(
            self.runbook,
            self.plan,
            progress,
            phase,
            alert_backup_dir=self.alert_backup_dir,
            time_scale=self.time_scale,
            incident=self.incident,
        )

    def perform_phase(self, progress: Progress, phase: int) -> Progress:
        """Perform Phase ``phase`` and record each step; the progress after it. A phase that fails is recorded, and raises."""
        try:
            run = self._phase(progress, phase)
        except PhaseFailed as failure:
            record_phases(self.recorder, failure.results)
            raise
        record_phases(self.recorder, run.results)
        return run.progress

    def attempt_phase(self, progress: Progress, phase: int) -> PhaseStopped:
        """Phase ``phase`` where it is expected to stop: the stop is recorded (and warned of) and returned."""
        try:
            self._phase(progress, phase)
        except PhaseFailed as failure:
            record_phases(self.recorder, failure.results)
            self.recorder.warn("phase-stopped", str(failure), f"phase-{phase}")
            return PhaseStopped(phase, failure.result, str(failure))
        return PhaseStopped(phase, None, None)

    def refusal_of_all_at_once(self, progress: Progress) -> Refusal:
        """Every expanded repo in one step, which the runbook forbids."""
        return _refusal(
            lambda: reenable_repos(
                self.runbook,
                self.plan,
                progress,
                self.plan.expanded,
                alert_backup_dir=self.alert_backup_dir,
                time_scale=self.time_scale,
                incident=self.incident,
            )
        )

    def refusal_of_phase(self, progress: Progress, phase: int) -> Refusal:
        """Phase ``phase`` before the re-enablement's rules allow it (the phase before not passed, no passed soak)."""
        return _refusal(lambda: self._phase(progress, phase))


def _refusal(request: Callable[[], object]) -> Refusal:
    try:
        request()
    except InputError as refusal:
        return Refusal(str(refusal))
    return Refusal(None)
