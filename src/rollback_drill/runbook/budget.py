"""The budget judgement: did every runbook step finish within its budget?

The recorder times each runbook step against the budget its naming Gherkin step states
("within 2 minutes"), tightened by a drill.yaml override where there is one, and marks a
step that took longer ``over-budget`` as the step closes (``StepGrouper``). This module reads
that record and judges it: a step over its budget raises ``BudgetExceeded`` naming the step,
its title, its budget, what it took and by how much it overran; a step that failed or was
never timed did not finish within its budget either, and raises ``VerificationFailed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rollback_drill.errors import BudgetExceeded, VerificationFailed
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.evidence.steps import StepGrouper


@dataclass(frozen=True)
class StepTiming:
    """One runbook step as the evidence records it: its budget, what it took, and its status."""

    id: str
    title: str
    budget_s: float
    elapsed_s: float | None
    """None for a step that was skipped, or never closed."""
    status: str
    """``pass``, ``fail``, ``over-budget`` or ``skipped`` (schemas/evidence-v1.json)."""
    error: str | None = None

    @classmethod
    def from_evidence(cls, entry: Mapping[str, Any]) -> StepTiming:
        elapsed = entry.get("elapsed_s")
        return cls(
            id=str(entry["id"]),
            title=str(entry.get("title", "")),
            budget_s=float(entry["budget_s"]),
            elapsed_s=None if elapsed is None else float(elapsed),
            status=str(entry["status"]),
            error=entry.get("error"),
        )

    @property
    def over_budget(self) -> bool:
        """Recorded ``over-budget``, or measured above its budget (also when the record says otherwise)."""
        return self.status == "over-budget" or (self.elapsed_s is not None and self.elapsed_s > self.budget_s)

    def overrun(self) -> str:
        """What a step over its budget says: its id, title, budget, what it took and by how much."""
        took = "an unknown time" if self.elapsed_s is None else f"{self.elapsed_s:.3f} s"
        by = "" if self.elapsed_s is None else f", {self.elapsed_s - self.budget_s:.3f} s over"
        return f'{self.id} took {took} of its {self.budget_s:g} s budget{by}: "{self.title}"'

    def unfinished(self) -> str | None:
        """Why a step did not finish within its budget without overrunning it (failed, skipped), or None."""
        if self.status == "fail":
            return f'{self.id} "{self.title}" failed: {self.error}'
        if self.elapsed_s is None:
            return f'{self.id} "{self.title}" was not timed ({self.status}: {self.error})'
        return None


def check_budgets(steps: Iterable[StepTiming]) -> tuple[StepTiming, ...]:
    """Return ``steps`` when each finished within its budget.

    Raises ``BudgetExceeded`` when any step overran its budget (its message names every
    problem, overruns first), and ``VerificationFailed`` when none overran but a step failed
    or was never timed.
    """
    judged = tuple(steps)
    unfinished = [problem for step in judged if (problem := step.unfinished()) is not None]
    overruns = [step.overrun() for step in judged if step.unfinished() is None and step.over_budget]
    if overruns:
        raise BudgetExceeded("runbook steps over their budget: " + "; ".join(overruns + unfinished))
    if unfinished:
        raise VerificationFailed("runbook steps that did not finish within their budget: " + "; ".join(unfinished))
    return judged


def judge_step_budgets(grouper: StepGrouper, recorder: Recorder) -> tuple[StepTiming, ...]:
    """Close the runbook step still open, then judge every recorded step by ``check_budgets``.

    The step still open is closed first so it is judged too: the recorder marks it
    ``over-budget`` if it took longer than its budget, and so does the evidence.
    """
    grouper.close_current()
    return check_budgets(StepTiming.from_evidence(entry) for entry in recorder.evidence["steps"])
