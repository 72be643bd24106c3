# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""Runbook steps out of Gherkin steps.

CONVENTIONS: a runbook step begins with a Gherkin step that names it and its budget,
e.g. ``When the SRE performs Step 1 "Disable orchestrator for expanded repos" within
2 minutes``; every following Gherkin step, up to the next such step, belongs to it.
``StepGrouper`` applies that rule to the Gherkin steps the test hooks report, and
times each group with the recorder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from rollback_drill.timing.budget import parse_duration
from rollback_drill.timing.windows import step_end, step_start

if TYPE_CHECKING:
    from rollback_drill.evidence.recorder import Recorder
    from rollback_drill.timing.windows import Marks

RUNBOOK_STEP_RE: Final = re.compile(
    r"the SRE performs "
    r"(?:Step (?P<n>[1-8])|pre-rollback check (?P<pre>[1-3])|(?P<soak>the soak)|Phase (?P<phase>[1-3])) "
    r'"(?P<title>[^"]+)" within (?P<budget>.+)'
)
"""A Gherkin step (its text without the keyword) that begins a runbook step. Use
``fullmatch``: the pattern describes the whole text."""

# pytest-bdd reports a step's text without its keyword; a caller that passes the line
# as written ("When the SRE performs ...") is served too.
_GHERKIN_KEYWORD_RE: Final = re.compile(r"^(?:Given|When|Then|And|But|\*)\s+")


@dataclass(frozen=True)
class RunbookStepRef:
    """A runbook step as a naming Gherkin step states it."""

    id: str
    """``pre-N``, ``step-N``, ``soak`` or ``phase-N``."""
    title: str
    budget_s: float


def parse_runbook_step(text: str) -> RunbookStepRef | None:
    """The runbook step that ``text`` begins, or None when it names none.

    Raises ``ConfigError`` when it names one with a budget that is not a duration.
    """
    match = RUNBOOK_STEP_RE.fullmatch(_GHERKIN_KEYWORD_RE.sub("", text.strip(), count=1))
    if match is None:
        return None
    if match["n"]:
        step_id = f"step-{match['n']}"
    elif match["pre"]:
        step_id = f"pre-{match['pre']}"
    elif match["phase"]:
        step_id = f"phase-{match['phase']}"
    else:
        step_id = "soak"
    return RunbookStepRef(id=step_id, title=match["title"], budget_s=parse_duration(match["budget"]))


@dataclass
class _Running:
    text: str
    started_mono: float


class StepGrouper:
    """Turns the Gherkin steps of one scenario into timed runbook steps.

    The test hooks call ``gherkin_step_started`` before each step function runs,
    ``gherkin_step_passed`` or ``gherkin_step_failed`` after it, and
    ``scenario_finished`` at the end. A runbook step opens on its naming Gherkin step
    and closes when the next naming step starts or the scenario ends (``pass`` or
    ``over-budget`` by its budget), or as soon as one of its Gherkin steps fails
    (``fail``, with the error). Each Gherkin step is also a ``gherkin_step`` event.

    ``budget_for(step_id, budget_s)`` gives the budget a step is measured against, from the
    one its text states: drill.yaml may tighten it (``DrillConfig.budget_s``). The recorder
    then records that budget and marks the step ``over-budget`` when it took longer.
    """

    def __init__(
        self,
        recorder: Recorder,
        marks: Marks | None = None,
        budget_for: Callable[[str, float], float] | None = None,
    ) -> None:
        self._recorder = recorder
        self._marks = marks
        self._budget_for = budget_for
        self._current: RunbookStepRef | None = None
        self._running: _Running | None = None

    @property
    def current_step(self) -> RunbookStepRef | None:
        """The runbook step now open, if any."""
        return self._current

    def gherkin_step_started(self, text: str) -> None:
        ref = parse_runbook_step(text)  # parse first: a bad budget leaves the open step alone
        self._settle_unfinished_gherkin_step()
        if ref is not None:
            self._close_current()
            budget_s = ref.budget_s if self._budget_for is None else self._budget_for(ref.id, ref.budget_s)
            self._recorder.begin_step(ref.id, ref.title, budget_s)
            if self._marks is not None:
                self._marks.mark(step_start(ref.id), overwrite=True)
            self._current = ref
        self._running = _Running(text=text, started_mono=self._recorder.clock.monotonic())

    def gherkin_step_passed(self) -> None:
        self._gherkin_step_ended("pass", None)

    def gherkin_step_failed(self, error: str) -> None:
        self._gherkin_step_ended("fail", error)
        if self._current is not None:
            self._end(self._current.id, "fail", error)
            self._current = None

    def scenario_finished(self) -> None:
        unfinished = self._settle_unfinished_gherkin_step()
        if unfinished is not None and self._current is not None:
            self._end(self._current.id, "fail", f"Gherkin step did not finish: {unfinished}")
            self._current = None
        self._close_current()

    def close_current(self) -> None:
        """Close the open runbook step now (a check that needs every step closed, e.g. the budget check)."""
        self._close_current()

    def _close_current(self) -> None:
        if self._current is not None:
            self._end(self._current.id, None, None)
            self._current = None

    def _end(self, step_id: str, status: str | None, error: str | None) -> None:
        self._recorder.end_step(step_id, status, error)
        if self._marks is not None:
            self._marks.mark(step_end(step_id), overwrite=True)

    def _gherkin_step_ended(self, status: str, error: str | None) -> None:
        running = self._running
        if running is None:
            # A hook without its start (e.g. a step the runner never called); still worth a line.
            self._recorder.event(
                "gherkin_step", text=None, status=status, elapsed_s=None, step=self._step_id(), error=error
            )
            return
        self._running = None
        elapsed = round(max(0.0, self._recorder.clock.monotonic() - running.started_mono), 6)
        self._recorder.event(
            "gherkin_step", text=running.text, status=status, elapsed_s=elapsed, step=self._step_id(), error=error
        )

    def _settle_unfinished_gherkin_step(self) -> str | None:
        """Record a Gherkin step that started but never reported an end; return its text."""
        running = self._running
        if running is None:
            return None
        self._running = None
        elapsed = round(max(0.0, self._recorder.clock.monotonic() - running.started_mono), 6)
        self._recorder.event(
            "gherkin_step", text=running.text, status="unfinished", elapsed_s=elapsed, step=self._step_id(), error=None
        )
        return running.text

    def _step_id(self) -> str | None:
        return self._current.id if self._current is not None else None
