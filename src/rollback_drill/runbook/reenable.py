"""Phased re-enablement after the rollback (RB-LAUNCH-002, "Phased Re-Enablement Plan").

"DO NOT re-enable all repos at once. Use phased approach":

- Phase 1 (Day 1): the pilot and the canary (``reenablement.canary``), monitored for 4 hours;
- Phase 2 (Day 2): and three more (``reenablement.phase_2``), monitored for 24 hours;
- Phase 3 (Day 3+): the remaining expanded repos, "1-2 repos/day": batches of at most
  ``phase_3_batch_max``, each its own allowlist change, rollout and monitoring window.

Every step patches ``REPO_ALLOWLIST`` to the pilot plus everything re-enabled so far
(``actions.set_allowlist``), waits for the rollout, restores the alert rules of exactly the
repos it brings back from the rollback's Step 4 backups, and monitors for its window
(``reenablement.monitoring_s.phase_N`` x time_scale): real flows for its repos at a modest
rate, then FlowEngine's stats over the window, judged by the runbook's criteria (zero
recurrence, success rate >= 99 %, P95 < 120 s). A phase may start only when the one before
it met them, and Phase 1 only after the fix passed its soak on staging.

A step that misses its criteria stops the sequence: the allowlist goes back to the last
good step, the alert rules it restored are removed again, and ``PhaseFailed`` reports what
happened. A recurrence of the incident ends the monitoring window at once.

The planning and the refusal rules are pure (``plan_reenablement``, ``check_phase_may_start``,
``check_request``); only ``perform_phase`` and ``reenable_repos`` touch the world.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from rollback_drill.config import DrillConfig, check_time_scale
from rollback_drill.errors import DrillError, InputError, UnsafeTarget, VerificationFailed
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.kube.rules import PrometheusRules
from rollback_drill.runbook import actions
from rollback_drill.runbook.actions import Runbook
from rollback_drill.runbook.soak import (
    Criteria,
    FlowMeasurement,
    FlowSample,
    ServerNumbers,
    SoakResult,
    is_recurrence,
    read_server_numbers,
    run_flows,
    symptom_causes,
    wait_served,
)
from rollback_drill.timing.clock import Clock, SystemClock
from rollback_drill.timing.wait import wait_until
from rollback_drill.world.manifests import allowlist_value
from rollback_drill.world.seed import allowlist_of

ALL_AT_ONCE_REFUSAL: Final = "DO NOT re-enable all repos at once. Use phased approach"
"""The runbook's own words, and the message of the refusal."""
PHASES: Final = (1, 2, 3)
MONITOR_RATE_HZ: Final = 10.0
"""A modest rate of synthetic flows (over the phase's repos together) during a monitoring window."""
MIN_FLOWS_PER_REPO: Final = 20
"""At least this many synthetic flows per repo in each window, however short the scaled window is,
so that a P95 and a success rate are measured, not guessed (the rate rises for short windows)."""
MONITOR_CONCURRENCY: Final = 4
"""Enough workers that the rate holds with flows that take a few tens of milliseconds to answer."""
ROLLOUT_TIMEOUT_S: Final = 120.0
"""``kubectl rollout status --timeout=120s``, as in Step 1."""


# --- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseStep:
    """One allowlist change of the plan: a phase, or one batch of Phase 3."""

    phase: int
    batch: int
    batches: int
    repos: tuple[str, ...]
    """The repos this step brings back."""
    allowlist: tuple[str, ...]
    """REPO_ALLOWLIST after it: the pilot, the earlier steps' repos, then these."""
    runbook_window_s: float
    """Its monitoring window in the runbook (unscaled)."""

    @property
    def id(self) -> str:
        return f"phase-{self.phase}"

    @property
    def label(self) -> str:
        return (
            f"Phase {self.phase}" if self.batches == 1 else f"Phase {self.phase}, batch {self.batch} of {self.batches}"
        )

    def alert_rule_names(self) -> tuple[str, ...]:
        return tuple(f"{repo}-alerts" for repo in self.repos)

    def evidence(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "phase": self.phase,
            "batch": self.batch,
            "batches": self.batches,
            "repos": list(self.repos),
            "allowlist": list(self.allowlist),
            "runbook_window_s": self.runbook_window_s,
        }


@dataclass(frozen=True)
class ReenablementPlan:
    pilot: str
    expanded: tuple[str, ...]
    steps: tuple[PhaseStep, ...]
    criteria: Criteria

    def phase(self, number: int) -> tuple[PhaseStep, ...]:
        if number not in PHASES:
            raise InputError(f"there is no Phase {number}; the runbook's phases are 1, 2 and 3")
        return tuple(step for step in self.steps if step.phase == number)

    def evidence(self) -> list[dict[str, Any]]:
        return [step.evidence() for step in self.steps]


def _batches(repos: tuple[str, ...], size: int) -> list[tuple[str, ...]]:
    return [repos[i : i + size] for i in range(0, len(repos), size)]


def plan_reenablement(config: DrillConfig, expanded: Iterable[str]) -> ReenablementPlan:
    """The runbook's phases for the repos the rollback disabled (``expanded``, in the ConfigMap's order)."""
    repos = tuple(dict.fromkeys(expanded))
    settings = config.reenablement
    named = (settings.canary, *settings.phase_2)
    missing = [repo for repo in named if repo not in repos]
    if missing:
        raise InputError(
            f"reenablement names {', '.join(missing)}, which the rollback did not disable (expanded repos: "
            f"{', '.join(repos) or 'none'}); fix reenablement.canary / reenablement.phase_2 in drill.yaml"
        )
    if settings.canary in settings.phase_2:
        raise InputError(f"reenablement.phase_2 lists the canary {settings.canary!r}; it comes back in Phase 1 alone")
    if settings.phase_3_batch_max < 1:
        raise InputError(f"reenablement.phase_3_batch_max must be >= 1, got {settings.phase_3_batch_max}")
    rest = tuple(repo for repo in repos if repo not in named)
    windows = settings.monitoring_s
    groups: list[tuple[int, tuple[str, ...]]] = [(1, (settings.canary,)), (2, settings.phase_2)]
    groups += [(3, batch) for batch in _batches(rest, settings.phase_3_batch_max)]
    steps: list[PhaseStep] = []
    allowlist: tuple[str, ...] = (config.pilot_repo,)
    for phase, batch_repos in groups:
        allowlist = (*allowlist, *batch_repos)
        in_phase = [group for group in groups if group[0] == phase]
        batch = sum(1 for step in steps if step.phase == phase) + 1
        steps.append(PhaseStep(phase, batch, len(in_phase), batch_repos, allowlist, windows[f"phase_{phase}"]))
    return ReenablementPlan(
        pilot=config.pilot_repo,
        expanded=repos,
        steps=tuple(steps),
        criteria=Criteria(settings.success_rate_min, settings.p95_max_s),
    )


# --- results and progress --------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseResult:
    """One step's monitoring window and what it measured."""

    step: PhaseStep
    started_at: datetime
    allowlist_before: tuple[str, ...]
    rollout: str
    alerts_restored: tuple[str, ...]
    window_s: float
    """The scaled monitoring window (``runbook_window_s`` x time_scale)."""
    monitored_s: float
    """How long it was monitored: the window, or less when a recurrence ended it."""
    server: ServerNumbers
    """FlowEngine's stats of the step's repos over the window: the numbers the criteria judge."""
    synthetic: FlowMeasurement
    """The flows run during the window, by their own answers."""
    recurrence_signals: tuple[str, ...]
    """Repos whose failures since they were served again have the incident's cause (FlowEngine's signals)."""
    criteria: Criteria
    stopped_early: str | None = None

    @property
    def recurrences(self) -> int:
        return self.synthetic.recurrences + len(self.recurrence_signals)

    def problems(self) -> list[str]:
        found = self.criteria.problems(
            flows=self.server.flows,
            success_rate=self.server.success_rate,
            p95_s=self.server.p95_s,
            recurrences=self.recurrences,
        )
        found += [f"FlowEngine signals the incident's cause again: {signal}" for signal in self.recurrence_signals]
        return found

    @property
    def passed(self) -> bool:
        return not self.problems()

    def evidence(self) -> dict[str, Any]:
        return {
            **self.step.evidence(),
            "label": self.step.label,
            "started_at": self.started_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "allowlist_before": list(self.allowlist_before),
            "rollout": self.rollout,
            "alerts_restored": list(self.alerts_restored),
            "window_s": round(self.window_s, 6),
            "monitored_s": round(self.monitored_s, 3),
            "flows": self.server.flows,
            "failed": self.server.failed,
            "success_rate": None if self.server.success_rate is None else round(self.server.success_rate, 6),
            "p95_s": self.server.p95_s,
            "synthetic": self.synthetic.evidence(),
            "recurrences": self.recurrences,
            "stopped_early": self.stopped_early,
            "passed": self.passed,
            "problems": self.problems(),
        }


@dataclass(frozen=True)
class Progress:
    """How far the re-enablement got: the soak, then the steps that met their criteria, in order."""

    soak: SoakResult | None = None
    passed: tuple[PhaseResult, ...] = ()
    failed: tuple[PhaseResult, ...] = ()
    """Steps that missed their criteria and were put back (the latest last)."""

    @property
    def soak_passed(self) -> bool:
        return self.soak is not None and self.soak.passed

    def with_soak(self, soak: SoakResult) -> Progress:
        return Progress(soak, self.passed, self.failed)

    def step_passed(self, step: PhaseStep) -> bool:
        return any(r.step == step for r in self.passed)

    def phase_passed(self, plan: ReenablementPlan, phase: int) -> bool:
        return all(self.step_passed(step) for step in plan.phase(phase))

    def allowlist(self, plan: ReenablementPlan) -> tuple[str, ...]:
        """The last good allowlist: the pilot and every repo of the steps that passed."""
        return (plan.pilot, *(repo for r in self.passed for repo in r.step.repos))

    def reenabled(self) -> tuple[str, ...]:
        return tuple(repo for r in self.passed for repo in r.step.repos)


@dataclass(frozen=True)
class PhaseRun:
    """What ``perform_phase`` did: each step's result, and the progress after them."""

    phase: int
    results: tuple[PhaseResult, ...]
    progress: Progress


class PhaseFailed(VerificationFailed):
    """A re-enablement step missed its criteria; the allowlist is back at the last good step."""

    def __init__(
        self,
        message: str,
        *,
        result: PhaseResult,
        results: tuple[PhaseResult, ...],
        reverted_to: tuple[str, ...],
        progress: Progress,
    ) -> None:
        super().__init__(message)
        self.result = result
        """The step that failed."""
        self.results = results
        """Every step of this attempt, the failed one last."""
        self.reverted_to = reverted_to
        self.progress = progress
        """The progress to go on from: the steps that passed, and this failure recorded."""


# --- the refusal rules ------------------------------------------------------------------------------


def check_phase_may_start(plan: ReenablementPlan, progress: Progress, phase: int) -> tuple[PhaseStep, ...]:
    """The steps of ``phase`` still to do; raises ``InputError`` when the phase may not start now."""
    steps = plan.phase(phase)
    if not steps:
        raise InputError(
            f"Phase {phase} has no repos to re-enable: every disabled repo came back in the phases before it"
        )
    earlier = phase - 1
    if earlier >= 1 and not progress.phase_passed(plan, earlier):
        raise InputError(
            f"Phase {phase} may start only after Phase {earlier} met its criteria (zero recurrence, success rate "
            f">= {plan.criteria.success_rate_min:.0%}, P95 < {plan.criteria.p95_max_s:g}s); perform Phase {earlier} first"
        )
    if phase == 1 and not progress.soak_passed:
        reason = "no soak has run" if progress.soak is None else "; ".join(progress.soak.problems())
        raise InputError(
            f"no repo may be re-enabled before the fix passes its soak on staging ({reason}); "
            "continue the fix iteration and run the soak again"
        )
    remaining = tuple(step for step in steps if not progress.step_passed(step))
    if not remaining:
        raise InputError(f"Phase {phase} has already passed; {_next_hint(plan, progress)}")
    return remaining


def _next_hint(plan: ReenablementPlan, progress: Progress) -> str:
    upcoming = next((step for step in plan.steps if not progress.step_passed(step)), None)
    if upcoming is None:
        return "every repo is re-enabled"
    return f"next is {upcoming.label}: {', '.join(upcoming.repos)}"


def check_request(plan: ReenablementPlan, progress: Progress, repos: Iterable[str]) -> PhaseStep:
    """The plan's next step, if ``repos`` (the repos to bring back now) is exactly it; else ``InputError``.

    Asking for every repo still disabled at once, when the plan has more than one step to
    go, is refused with the runbook's own words.
    """
    wanted = frozenset(repos) - {plan.pilot}
    remaining = [step for step in plan.steps if not progress.step_passed(step)]
    if not remaining:
        raise InputError("every repo is re-enabled already; there is nothing left to re-enable")
    still_disabled = frozenset(repo for step in remaining for repo in step.repos)
    unknown = sorted(wanted - frozenset(plan.expanded))
    if unknown:
        raise InputError(f"{', '.join(unknown)} are not repos the rollback disabled; nothing to re-enable there")
    if len(remaining) > 1 and wanted >= still_disabled:
        raise InputError(f"{ALL_AT_ONCE_REFUSAL}: {_next_hint(plan, progress)}")
    upcoming = remaining[0]
    if wanted != frozenset(upcoming.repos):
        raise InputError(
            f"re-enabling {', '.join(sorted(wanted)) or 'nothing'} does not follow the phased plan; "
            f"{_next_hint(plan, progress)}"
        )
    check_phase_may_start(plan, progress, upcoming.phase)
    return upcoming


# --- doing it --------------------------------------------------------------------------------------


def alert_backups(backup_dir: Path, repos: Iterable[str]) -> tuple[Path, ...]:
    """Step 4's backups of ``<repo>-alerts`` for exactly ``repos``; ``InputError`` names any that is missing."""
    paths = tuple(backup_dir / f"{repo}-alerts.yaml" for repo in repos)
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise InputError(
            f"Step 4's backups {', '.join(missing)} are not in {backup_dir}; the alert rules cannot come back with "
            "their repos. Restore them from the rollback's evidence bundle before re-enabling"
        )
    return paths


def monitoring_rate_hz(repos: int, window_s: float) -> float:
    """Flows per second over a window: ``MONITOR_RATE_HZ``, or more when the window is too short for the minimum."""
    if window_s <= 0:
        raise InputError(f"a monitoring window must be longer than 0 s, got {window_s}")
    return max(MONITOR_RATE_HZ, MIN_FLOWS_PER_REPO * max(1, repos) / window_s)


def recurrence_signals(flowengine: FlowEngineClient, repos: Iterable[str], symptoms: frozenset[str]) -> tuple[str, ...]:
    """Repos whose failures since they were served again are mostly of the incident's cause."""
    if not symptoms:
        return ()
    wanted = set(repos)
    found = []
    for item in flowengine.signals().get("repos") or ():
        if not isinstance(item, dict) or item.get("repo") not in wanted:
            continue
        failures = int(item.get("failures_last_hour") or 0)
        if failures and item.get("cause") in symptoms:
            found.append(f"{item['repo']}: {failures} failure(s) with cause {item['cause']}")
    return tuple(found)


def _apply_allowlist(runbook: Runbook, allowlist: tuple[str, ...], action: str) -> tuple[tuple[str, ...], str]:
    before, _ = actions.set_allowlist(runbook, allowlist, action=action)
    after = allowlist_of(runbook.deployment(), runbook.config.kubernetes.container)
    if after != allowlist:
        raise VerificationFailed(
            f"REPO_ALLOWLIST reads {allowlist_value(after)!r} after the patch, expected {allowlist_value(allowlist)!r}"
        )
    message, blocked = actions.wait_rollout_unless_crash_loop(runbook, ROLLOUT_TIMEOUT_S)
    if blocked:
        raise VerificationFailed(f"the rollout of REPO_ALLOWLIST={allowlist_value(allowlist)} is blocked: {message}")
    return before, message


def _wait_refused(flowengine: FlowEngineClient, repos: tuple[str, ...]) -> None:
    wait_until(
        lambda: not any(flowengine.repo_config(repo).enabled for repo in repos),
        timeout_s=60,
        interval_s=0.1,
        describe=f"FlowEngine refusing {', '.join(repos)} again",
    )


def _run_step(
    runbook: Runbook,
    plan: ReenablementPlan,
    step: PhaseStep,
    *,
    backups: tuple[Path, ...],
    time_scale: float,
    symptoms: frozenset[str],
    clock: Clock,
) -> PhaseResult:
    started_at = clock.wall()
    before, rollout = _apply_allowlist(runbook, step.allowlist, f"re-enable {step.label}")
    wait_served(runbook.flowengine, step.repos)
    restored = actions.restore_alert_rules(runbook, backups)
    present = PrometheusRules(runbook.api, runbook.config.kubernetes.monitoring_namespace).names()
    absent = sorted(set(step.alert_rule_names()) - present)
    if absent:
        raise VerificationFailed(
            f"alert rules not back after restoring them from Step 4's backups: {', '.join(absent)}"
        )
    window_s = step.runbook_window_s * time_scale

    def recurred(sample: FlowSample) -> str | None:
        if is_recurrence(sample, symptoms):
            return f"{sample.repo}: flow {sample.flow_id} failed with the incident's cause {sample.cause}"
        return None

    load = run_flows(
        runbook.flowengine.generate,
        step.repos,
        concurrency=MONITOR_CONCURRENCY,
        duration_s=window_s,
        max_requests=math.ceil(monitoring_rate_hz(len(step.repos), window_s) * window_s) + len(step.repos),
        rate_hz=monitoring_rate_hz(len(step.repos), window_s),
        stop_on=recurred,
        request_timeout_s=runbook.flowengine.timeout_s,
        clock=clock,
    )
    return PhaseResult(
        step=step,
        started_at=started_at,
        allowlist_before=before,
        rollout=rollout,
        alerts_restored=restored,
        window_s=window_s,
        monitored_s=load.elapsed_s,
        server=read_server_numbers(runbook.flowengine, step.repos, load.started_at, clock),
        synthetic=FlowMeasurement.of(load.samples, symptoms),
        recurrence_signals=recurrence_signals(runbook.flowengine, step.repos, symptoms),
        criteria=plan.criteria,
        stopped_early=load.stopped_early,
    )


def _put_back(runbook: Runbook, plan: ReenablementPlan, progress: Progress, step: PhaseStep) -> tuple[str, ...]:
    """The allowlist back to the last good step; the failed step's alert rules removed again."""
    good = progress.allowlist(plan)
    _apply_allowlist(runbook, good, f"put the allowlist back after {step.label} failed")
    _wait_refused(runbook.flowengine, step.repos)
    rules = PrometheusRules(runbook.api, runbook.config.kubernetes.monitoring_namespace)
    for name in step.alert_rule_names():
        rules.delete(name)
    return good


def _perform_steps(
    runbook: Runbook,
    plan: ReenablementPlan,
    progress: Progress,
    steps: tuple[PhaseStep, ...],
    *,
    alert_backup_dir: Path,
    time_scale: float,
    incident: str | None,
    clock: Clock | None,
) -> PhaseRun:
    check_time_scale(time_scale)
    the_clock: Clock = clock if clock is not None else SystemClock()
    symptoms = symptom_causes(incident)
    # Every backup is found before anything changes: a missing one refuses the phase, it does not half-do it.
    backups = {step: alert_backups(alert_backup_dir, step.repos) for step in steps}
    results: list[PhaseResult] = []
    for step in steps:
        try:
            result = _run_step(
                runbook, plan, step, backups=backups[step], time_scale=time_scale, symptoms=symptoms, clock=the_clock
            )
        except UnsafeTarget:
            raise  # refused before anything changed
        except DrillError as exc:
            reverted = _put_back(runbook, plan, progress, step)
            raise VerificationFailed(
                f"{step.label} ({', '.join(step.repos)}) could not be completed: {exc}. REPO_ALLOWLIST is back at "
                f"{allowlist_value(reverted)} and their alert rules are removed again"
            ) from exc
        results.append(result)
        if not result.passed:
            reverted = _put_back(runbook, plan, progress, step)
            failed = Progress(progress.soak, progress.passed, (*progress.failed, result))
            raise PhaseFailed(
                f"{step.label} ({', '.join(step.repos)}) missed its criteria: {'; '.join(result.problems())}. "
                f"REPO_ALLOWLIST is back at {allowlist_value(reverted)} and their alert rules are removed again; "
                "find the cause, verify the fix on staging again, then retry this phase",
                result=result,
                results=tuple(results),
                reverted_to=reverted,
                progress=failed,
            )
        progress = Progress(progress.soak, (*progress.passed, result), progress.failed)
    return PhaseRun(steps[0].phase, tuple(results), progress)


def perform_phase(
    runbook: Runbook,
    plan: ReenablementPlan,
    progress: Progress,
    phase: int,
    *,
    alert_backup_dir: Path,
    time_scale: float,
    incident: str | None,
    clock: Clock | None = None,
) -> PhaseRun:
    """Perform Phase ``phase`` (every batch still to do, one after another) once the rules allow it."""
    steps = check_phase_may_start(plan, progress, phase)
    return _perform_steps(
        runbook,
        plan,
        progress,
        steps,
        alert_backup_dir=alert_backup_dir,
        time_scale=time_scale,
        incident=incident,
        clock=clock,
    )


def reenable_repos(
    runbook: Runbook,
    plan: ReenablementPlan,
    progress: Progress,
    repos: Iterable[str],
    *,
    alert_backup_dir: Path,
    time_scale: float,
    incident: str | None,
    clock: Clock | None = None,
) -> PhaseRun:
    """Bring back ``repos`` now: allowed only when they are exactly the plan's next step (never all at once)."""
    step = check_request(plan, progress, repos)
    return _perform_steps(
        runbook,
        plan,
        progress,
        (step,),
        alert_backup_dir=alert_backup_dir,
        time_scale=time_scale,
        incident=incident,
        clock=clock,
    )
