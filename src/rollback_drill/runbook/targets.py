"""The drill targets, measured and recorded: rollback execution, downtime, pilot impact, total resolution.

``record_measured_targets`` (``rollback_drill.runbook.drill``) computes them from the clock
marks and the probes and records them with the samples they were measured from (so that
``evidence verify --recompute`` can measure them again); ``record_targets`` applies the limits
drill.yaml tightens and returns them as ``DrillTargets`` for the checks. The ``drill`` target (the
whole drill under 20 minutes) is measured only as the bundle is sealed, so ``missed``
leaves it to that moment.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollback_drill.config import DrillConfig
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.runbook.drill import DrillProbes, record_measured_targets
from rollback_drill.timing.windows import DRILL, TARGET_NAMES, Marks, TargetResult


@dataclass(frozen=True)
class DrillTargets:
    """The drill targets of one drill, in CONVENTIONS' order."""

    results: tuple[TargetResult, ...]

    def __getitem__(self, name: str) -> TargetResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no drill target {name!r}; measured: {', '.join(r.name for r in self.results)}")

    def missed(self) -> tuple[TargetResult, ...]:
        """The targets with a limit that were not met, or not measured; the ``drill`` target is judged at the seal."""
        return tuple(r for r in self.results if r.limit is not None and r.met is not True and r.name != DRILL)


def target_limits(config: DrillConfig) -> dict[str, float]:
    """The limits drill.yaml tightens (``budget_overrides_s``), for the targets among them."""
    return {name: value for name, value in config.budget_overrides_s.items() if name in TARGET_NAMES}


def record_targets(
    marks: Marks, probes: DrillProbes, recorder: Recorder, config: DrillConfig, incident: str
) -> DrillTargets:
    """Measure the drill targets now, put them (and what they were measured from) in the evidence, and return them."""
    return DrillTargets(tuple(record_measured_targets(recorder, marks, probes, incident, target_limits(config))))
