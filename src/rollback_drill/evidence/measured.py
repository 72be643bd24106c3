# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""Drill targets recorded with what they were measured from, and measured again from the timeline.

An auditor should not have to believe the numbers in evidence.json. When the drill measures
its targets, ``record_targets`` writes everything the measurement read into the timeline (the
marks and both probes' samples) in a ``targets_measured`` event, and ``record_drill_target``
writes the drill's start and end in a ``drill_measured`` event. ``recompute`` then reads
``timeline.jsonl`` alone, measures every runbook step and every target again with the code the
drill used (``timing.windows``), and names each value of evidence.json that differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from rollback_drill.evidence.recorder import to_jsonable
from rollback_drill.timing.probe import ProbeOutcome, ProbeSample
from rollback_drill.timing.windows import (
    BUNDLE_SEALED,
    DRILL,
    DRILL_START,
    Marks,
    TargetResult,
    drill_target,
    measure_targets_from_samples,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from rollback_drill.evidence.recorder import Recorder

TARGETS_MEASURED: Final = "targets_measured"
DRILL_MEASURED: Final = "drill_measured"

VALUE_TOLERANCE: Final = 1e-6
"""How far a recomputed value may be from the recorded one: JSON keeps floats exactly, and the
recorder rounds times to the microsecond."""
STEP_TIMELINE_TOLERANCE_S: Final = 0.5
"""How far a step's time may be from its ``step_started`` → ``step_finished`` events. The
recorder reads the clock for a step, rewrites evidence.json (fsync'ed) and only then stamps the
event, so each event lags its instant by one rewrite: milliseconds, never half a second."""

# Samples are written as [t_monotonic, ok, kind, latency_s]: what the measurement reads, and
# what a reader needs to see why an answer counted as failed. The wall time is not kept; no
# measurement reads it.
_UNRECORDED_WALL: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _encode_samples(samples: Iterable[ProbeSample]) -> list[list[Any]]:
    return [[s.t_monotonic, s.outcome.ok, s.outcome.kind, s.latency_s] for s in samples]


def _decode_samples(rows: Any) -> list[ProbeSample]:
    if not isinstance(rows, list):
        return []
    return [
        ProbeSample(
            t_monotonic=float(row[0]),
            wall=_UNRECORDED_WALL,
            outcome=ProbeOutcome(ok=bool(row[1]), kind=str(row[2])),
            latency_s=float(row[3]),
        )
        for row in rows
        if isinstance(row, list) and len(row) >= 4
    ]


def _marks_from(recorded: Any) -> Marks:
    marks = Marks()
    if isinstance(recorded, dict):
        for name, instant in recorded.items():
            if isinstance(instant, int | float):
                try:
                    marks.mark(str(name), float(instant), overwrite=True)
                except ValueError:
                    continue  # not a mark any window reads; an edited timeline still gets its differences named
    return marks


def record_targets(
    recorder: Recorder,
    marks: Marks,
    *,
    pilot_samples: Iterable[ProbeSample],
    expanded_samples: Iterable[ProbeSample],
    pilot_hit: bool,
    limits: Mapping[str, float] | None = None,
) -> list[TargetResult]:
    """Measure the drill targets, write what they were measured from to the timeline, and set them.

    The ``targets_measured`` event is written before the targets, so a timeline that has the
    targets always has their inputs.
    """
    pilot, expanded = list(pilot_samples), list(expanded_samples)
    checked_limits = dict(limits or {})
    targets = measure_targets_from_samples(marks, pilot, expanded, pilot_hit=pilot_hit, limits=checked_limits)
    recorder.event(
        TARGETS_MEASURED,
        marks=marks.as_dict(),
        pilot_hit=pilot_hit,
        limits=checked_limits,
        pilot_samples=_encode_samples(pilot),
        expanded_samples=_encode_samples(expanded),
    )
    recorder.set_targets([t.as_evidence() for t in targets])
    return targets


def record_drill_target(recorder: Recorder, marks: Marks, *, limit_s: float | None = None) -> bool:
    """Mark the bundle as sealed now, measure the ``drill`` target and record it; return whether it is met.

    Without a marked drill start there is nothing to measure, and the drill's other targets stand.
    """
    if marks.get(DRILL_START) is None:
        return True
    marks.mark(BUNDLE_SEALED, recorder.clock.monotonic(), overwrite=True)
    target = drill_target(marks, limit_s=limit_s)
    if target is None:  # pragma: no cover - both marks were just checked
        return True
    recorder.event(
        DRILL_MEASURED,
        marks={DRILL_START: marks.get(DRILL_START), BUNDLE_SEALED: marks.get(BUNDLE_SEALED)},
        limit_s=target.limit,
    )
    targets = [t for t in recorder.evidence.get("targets", []) if t["name"] != DRILL]
    targets.append(target.as_evidence())
    recorder.set_targets(targets)
    return target.met is True


# -- recomputing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One value of evidence.json that the timeline does not bear out."""

    kind: str
    """``step`` or ``target``."""
    name: str
    """The step id or the target name."""
    field: str
    recorded: Any
    """What evidence.json says."""
    recomputed: Any
    """What the timeline gives; ``None`` when the timeline has nothing to measure it from."""
    why: str = ""

    def __str__(self) -> str:
        why = f" ({self.why})" if self.why else ""
        return (
            f"{self.kind} {self.name}: {self.field} is {self.recorded!r} in evidence.json, "
            f"{self.recomputed!r} recomputed from the timeline{why}"
        )


@dataclass(frozen=True)
class Recomputation:
    """What ``recompute`` measured again, and where evidence.json differs from it."""

    steps_checked: int
    targets_checked: int
    differences: tuple[Difference, ...]

    @property
    def ok(self) -> bool:
        return not self.differences


def _close(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=tolerance)
    return bool(a == b)


@dataclass(frozen=True)
class _TimedStep:
    step: str
    from_events: float | None
    """``step_finished``'s instant minus ``step_started``'s: None for a skipped or unfinished step."""
    stated: float | None
    """The elapsed time the ``step_finished`` event states."""


def _timed_steps(events: list[dict[str, Any]]) -> list[_TimedStep]:
    """The runbook steps in the order they began, each timed from its events."""
    timed: list[_TimedStep] = []
    started: dict[str, tuple[int, float]] = {}
    for event in events:
        kind, step = event.get("kind"), event.get("step")
        if not isinstance(step, str):
            continue
        if kind == "step_started":
            started[step] = (len(timed), float(event["t_mono"]))
            timed.append(_TimedStep(step, None, None))
        elif kind == "step_skipped":
            timed.append(_TimedStep(step, None, None))
        elif kind == "step_finished" and step in started:
            index, began = started.pop(step)
            stated = event.get("elapsed_s")
            timed[index] = _TimedStep(
                step,
                round(max(0.0, float(event["t_mono"]) - began), 6),
                float(stated) if isinstance(stated, int | float) else None,
            )
    return timed


def _step_differences(evidence: dict[str, Any], events: list[dict[str, Any]]) -> tuple[int, list[Difference]]:
    recorded_steps = [s for s in evidence.get("steps", []) if isinstance(s, dict)]
    timed = _timed_steps(events)
    differences: list[Difference] = []
    by_id: dict[str, list[_TimedStep]] = {}
    for step in timed:
        by_id.setdefault(step.step, []).append(step)
    for recorded in recorded_steps:
        step_id = str(recorded.get("id"))
        elapsed = recorded.get("elapsed_s")
        candidates = by_id.get(step_id, [])
        if not candidates:
            differences.append(
                Difference("step", step_id, "elapsed_s", elapsed, None, "the timeline has no event for this step")
            )
            continue
        measured = candidates.pop(0)
        if not _close(elapsed, measured.stated, VALUE_TOLERANCE):
            differences.append(
                Difference("step", step_id, "elapsed_s", elapsed, measured.stated, "as its step_finished event states")
            )
        elif not _close(elapsed, measured.from_events, STEP_TIMELINE_TOLERANCE_S):
            differences.append(
                Difference(
                    "step",
                    step_id,
                    "elapsed_s",
                    elapsed,
                    measured.from_events,
                    f"from step_started to step_finished, beyond {STEP_TIMELINE_TOLERANCE_S} s",
                )
            )
    extra = [step.step for steps in by_id.values() for step in steps]
    differences += [
        Difference("step", step_id, "elapsed_s", None, "in the timeline", "missing from evidence.json")
        for step_id in extra
    ]
    return len(recorded_steps), differences


def recomputed_targets(events: list[dict[str, Any]]) -> list[TargetResult]:
    """The drill targets measured again from a timeline's ``targets_measured`` and ``drill_measured`` events.

    The last of each counts: a drill that measures again replaces what it measured before.
    """
    measured = next((e for e in reversed(events) if e.get("kind") == TARGETS_MEASURED), None)
    targets: list[TargetResult] = []
    if measured is not None:
        limits = measured.get("limits") or {}
        targets = measure_targets_from_samples(
            _marks_from(measured.get("marks")),
            _decode_samples(measured.get("pilot_samples")),
            _decode_samples(measured.get("expanded_samples")),
            pilot_hit=bool(measured.get("pilot_hit")),
            limits={str(k): float(v) for k, v in limits.items()} if isinstance(limits, dict) else None,
        )
    closed = next((e for e in reversed(events) if e.get("kind") == DRILL_MEASURED), None)
    if closed is not None:
        limit = closed.get("limit_s")
        drill = drill_target(_marks_from(closed.get("marks")), limit_s=float(limit) if limit is not None else None)
        targets = [t for t in targets if t.name != DRILL]
        if drill is not None:
            targets.append(drill)
    return targets


def _target_differences(evidence: dict[str, Any], events: list[dict[str, Any]]) -> tuple[int, list[Difference]]:
    recorded = {str(t.get("name")): t for t in evidence.get("targets", []) if isinstance(t, dict)}
    recomputed = {t.name: t.as_evidence() for t in recomputed_targets(events)}
    differences: list[Difference] = []
    for name, row in recorded.items():
        again = recomputed.get(name)
        if again is None:
            differences.append(
                Difference(
                    "target", name, "measured", row.get("measured"), None, "the timeline has nothing to measure it from"
                )
            )
            continue
        differences += [
            Difference("target", name, field, row.get(field), again[field])
            for field in ("measured", "limit", "met")
            if not _close(row.get(field), again[field], VALUE_TOLERANCE)
        ]
    differences += [
        Difference("target", name, "measured", None, recomputed[name]["measured"], "missing from evidence.json")
        for name in recomputed
        if name not in recorded
    ]
    return len(recorded), differences


def recompute(evidence: dict[str, Any], events: list[dict[str, Any]]) -> Recomputation:
    """Every runbook step's time and every drill target measured again from the timeline's events,
    and every difference from ``evidence`` (evidence.json) beyond ``VALUE_TOLERANCE``."""
    steps_checked, step_differences = _step_differences(evidence, events)
    targets_checked, target_differences = _target_differences(evidence, events)
    return Recomputation(steps_checked, targets_checked, (*step_differences, *target_differences))


def as_json(recomputation: Recomputation) -> dict[str, Any]:
    """A recomputation as plain JSON data for ``evidence verify --json``."""
    result: dict[str, Any] = to_jsonable(recomputation)
    return result
