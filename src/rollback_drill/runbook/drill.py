"""The drill around the runbook: probes, the triage hold, incident confirmation, and the measured targets."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rollback_drill.config import DrillConfig
from rollback_drill.evidence.measured import record_drill_target, record_targets
from rollback_drill.evidence.recorder import Recorder, tool_version
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.flowengine.incidents import CATALOGUE
from rollback_drill.runbook.actions import IncidentConfirmation
from rollback_drill.runbook.decision import Decision
from rollback_drill.runbook.probes import (
    EXPANDED_PROBE_HZ,
    PILOT_PROBE_HZ,
    PILOT_PROBE_MAX_IN_FLIGHT,
    expanded_config_call,
    pilot_flow_call,
)
from rollback_drill.targets.cluster import Cluster
from rollback_drill.timing import wait
from rollback_drill.timing.clock import Clock
from rollback_drill.timing.probe import Probe, ProbeSample, samples_between
from rollback_drill.timing.windows import (
    DEFAULT_LIMITS,
    DRILL,
    Marks,
    TargetResult,
    step_end,
    step_start,
)

FAILURE_CRITERIA = frozenset({"p1-mass-concurrent-failures", "p2-cascading-failures"})
"""Criteria the runbook confirms by failures grouped by repo ("Expected for rollback: >=3 repos with failures")."""
MIN_FAILING_REPOS = 3
RUNBOOK_FILE = "RB-LAUNCH-002-rollback-to-pilot.md"
"""The runbook this drill rehearses, as shipped with the tool; its sha256 goes into every bundle."""


@dataclass
class DrillProbes:
    """The pilot probe (flows) and the expanded-repo probe (config), from before Step 1 to after Step 8."""

    pilot: Probe
    expanded: Probe

    @classmethod
    def start(cls, flowengine: FlowEngineClient, pilot_repo: str, expanded_repo: str, clock: Clock) -> DrillProbes:
        # Overlapping calls: a slow answer during a rollout must not lower the rate at which the pilot is asked.
        pilot = Probe(
            "pilot",
            pilot_flow_call(flowengine, pilot_repo),
            rate_hz=PILOT_PROBE_HZ,
            clock=clock,
            max_in_flight=PILOT_PROBE_MAX_IN_FLIGHT,
        ).start()
        expanded = Probe(
            f"expanded:{expanded_repo}",
            expanded_config_call(flowengine, expanded_repo),
            rate_hz=EXPANDED_PROBE_HZ,
            clock=clock,
        ).start()
        return cls(pilot, expanded)

    def stop(self) -> None:
        self.pilot.stop()
        self.expanded.stop()


def triage_hold_s(decision: Decision, time_scale: float) -> float:
    """The runbook's P2 triage (30 minutes), scaled like every waiting window; 0 for P1."""
    return decision.triage_s * time_scale


def hold(seconds: float, *, describe: str = "a waiting window of the runbook", clock: Clock | None = None) -> float:
    """Let a waiting window of the runbook pass (the triage, a monitoring window); it is the procedure, not a settle.

    On the drill's clock, so a ``FakeClock`` drives it in tests; Ctrl-C ends it in a real run.
    Returns the seconds held.
    """
    return wait.hold(seconds, describe=describe, clock=clock)


def confirmation_problems(confirmation: IncidentConfirmation, decision: Decision) -> list[str]:
    """What pre-rollback check 1 did not confirm for this decision's criteria."""
    problems = []
    if not confirmation.error_lines:
        problems.append("no ERROR or CRITICAL line in the last 100 lines of the FlowEngine log")
    if FAILURE_CRITERIA & set(decision.criteria_met) and len(confirmation.failing_repos) < MIN_FAILING_REPOS:
        problems.append(
            f"only {len(confirmation.failing_repos)} repo(s) with flow failures; the runbook expects >= {MIN_FAILING_REPOS} for a mass failure"
        )
    return problems


def pilot_window(samples: list[ProbeSample], marks: Marks) -> list[ProbeSample]:
    """Pilot probe samples from Step 1's start to Step 8's end (CONVENTIONS: pilot_impact)."""
    return samples_between(samples, marks.get(step_start("step-1")), marks.get(step_end("step-8")))


def record_measured_targets(
    recorder: Recorder, marks: Marks, probes: DrillProbes, incident: str, limits: Mapping[str, float] | None = None
) -> list[TargetResult]:
    """Measure the drill targets and record them with the samples they were measured from, so that
    ``evidence verify --recompute`` can measure them again from the timeline."""
    return record_targets(
        recorder,
        marks,
        pilot_samples=probes.pilot.samples(),
        expanded_samples=probes.expanded.samples(),
        pilot_hit=_pilot_hit(incident),
        limits=limits,
    )


def _pilot_hit(incident: str) -> bool:
    spec = CATALOGUE.get(incident)
    return bool(spec and spec.pilot_hit)


def drill_metadata(config: DrillConfig, cluster: Cluster) -> dict[str, object]:
    """What identifies a drill for an auditor: the runbook text, the tool, the configuration, the cluster."""
    runbook = resources.files("rollback_drill.data").joinpath(f"runbooks/{RUNBOOK_FILE}").read_bytes()
    return {
        "runbook": {"id": config.runbook_id, "sha256": hashlib.sha256(runbook).hexdigest()},
        "tool": {"version": tool_version(), "git_sha": _git_sha()},
        "config_sha256": config.sha256,
        "target": cluster.evidence(),
    }


def _git_sha() -> str | None:
    """The commit of the checkout the drill runs from, when it is one."""
    root = Path(str(resources.files("rollback_drill"))).parents[1]
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = proc.stdout.strip()
    return sha if proc.returncode == 0 and len(sha) == 40 else None


def close_drill_target(recorder: Recorder, marks: Marks, config: DrillConfig | None = None) -> bool:
    """Measure the ``drill`` target (drill start → now, just before the bundle is sealed); return whether it is met.

    The limit is the runbook's 20 minutes, or drill.yaml's (checked, only ever tighter) override of it.
    """
    limit_s = DEFAULT_LIMITS[DRILL] if config is None else config.budget_s(DRILL, DEFAULT_LIMITS[DRILL])
    return record_drill_target(recorder, marks, limit_s=limit_s)
