# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""Drill history: one summary line per drill, outside ``reports/``, and how drills compare.

``$XDG_STATE_HOME/rollback-drill/history.jsonl`` gets one line per finalized drill. It
outlives the bundles' directory, so trends (a step getting slower drill after drill)
and the drill schedule can be read from it.

``compare`` flags, per drill, the steps slower than the rolling median of the earlier
drills on the same kind of target by more than a percentage, and sets the drill's
measured windows beside the runbook's pilot simulation ("Rollback Metrics (From Pilot)").
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

from rollback_drill.errors import InputError
from rollback_drill.evidence.bundle import load_evidence, require_bundle
from rollback_drill.evidence.rca import parse_time
from rollback_drill.evidence.redact import REDACTOR, Redactor
from rollback_drill.paths import state_home

HISTORY_NAME: Final = "history.jsonl"
HISTORY_FORMAT: Final = "rollback-drill/history-v1"

PILOT_BASELINE_S: Final = {
    "rollback_execution": 45.0,  # "Rollback execution time: 45 seconds (excluding verification)"
    "expanded_downtime": 0.0,  # "Downtime (affected repos): 0 seconds (graceful shutdown)"
    "verify_pilot": 120.0,  # "Recovery verification: 2 minutes (test flow + quality gates)"
    "total_resolution": 738.0,  # "Total incident resolution: 12.3 minutes (including triage)"
}
"""The runbook's Nov 9, 2025 pilot rollback simulation, in seconds, by drill target."""

DEFAULT_SLOWER_THAN_MEDIAN_PCT: Final = 25.0
DEFAULT_WINDOW: Final = 10
"""How many earlier drills the rolling median looks back over."""

_COUNTED: Final = frozenset({"pass", "over-budget"})
"""Step outcomes whose elapsed time is a fair sample: a failed step stopped early or late for its own reasons."""


def history_path() -> Path:
    return state_home() / HISTORY_NAME


@dataclass(frozen=True)
class HistoryEntry:
    """One drill, as the history remembers it."""

    drill_id: str
    started_at: str | None
    finished_at: str | None
    verdict: str
    incident: str
    phase: int | None
    target_kind: str | None
    priority: str | None
    steps: Mapping[str, float | None] = field(default_factory=dict)
    """Step id -> elapsed seconds (None: skipped or never finished)."""
    step_status: Mapping[str, str] = field(default_factory=dict)
    targets: Mapping[str, float | None] = field(default_factory=dict)
    """Drill target -> measured value, in the target's unit."""
    bundle: str | None = None
    """Where the bundle was when the drill finished (absolute path)."""

    @property
    def day(self) -> date | None:
        """The UTC date the drill finished (or started, if it never finished)."""
        moment = parse_time(self.finished_at) or parse_time(self.started_at)
        return moment.date() if moment else None

    def as_json(self) -> dict[str, Any]:
        return {
            "format": HISTORY_FORMAT,
            "drill_id": self.drill_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "verdict": self.verdict,
            "incident": self.incident,
            "phase": self.phase,
            "target_kind": self.target_kind,
            "priority": self.priority,
            "steps": dict(self.steps),
            "step_status": dict(self.step_status),
            "targets": dict(self.targets),
            "bundle": self.bundle,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HistoryEntry:
        """An entry from a history line; KeyError/TypeError/ValueError when it is not one."""

        def numbers(value: Any) -> dict[str, float | None]:
            return {str(k): (None if v is None else float(v)) for k, v in dict(value or {}).items()}

        phase = data.get("phase")
        return cls(
            drill_id=str(data["drill_id"]),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            verdict=str(data["verdict"]),
            incident=str(data.get("incident") or ""),
            phase=int(phase) if phase is not None else None,
            target_kind=data.get("target_kind"),
            priority=data.get("priority"),
            steps=numbers(data.get("steps")),
            step_status={str(k): str(v) for k, v in dict(data.get("step_status") or {}).items()},
            targets=numbers(data.get("targets")),
            bundle=data.get("bundle"),
        )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def summarize(bundle_dir: Path) -> HistoryEntry:
    """A bundle's history entry, read from its evidence.json."""
    bundle_dir = require_bundle(bundle_dir)
    doc = load_evidence(bundle_dir)
    target: dict[str, Any] = doc["target"] if isinstance(doc.get("target"), dict) else {}
    decision: dict[str, Any] = doc["decision"] if isinstance(doc.get("decision"), dict) else {}
    steps: dict[str, float | None] = {}
    status: dict[str, str] = {}
    for step in doc.get("steps") or []:
        if isinstance(step, dict) and isinstance(step.get("id"), str):
            steps[step["id"]] = _number(step.get("elapsed_s"))
            status[step["id"]] = str(step.get("status"))
    targets = {
        str(t["name"]): _number(t.get("measured"))
        for t in doc.get("targets") or []
        if isinstance(t, dict) and isinstance(t.get("name"), str)
    }
    phase = doc.get("phase")
    return HistoryEntry(
        drill_id=str(doc.get("drill_id") or bundle_dir.name),
        started_at=doc.get("started_at"),
        finished_at=doc.get("finished_at"),
        verdict=str(doc.get("verdict") or "aborted"),
        incident=str(doc.get("incident") or ""),
        phase=phase if isinstance(phase, int) and not isinstance(phase, bool) else None,
        target_kind=target.get("kind"),
        priority=decision.get("priority"),
        steps=steps,
        step_status=status,
        targets=targets,
        bundle=str(bundle_dir.resolve()),
    )


def append_history(
    bundle_dir: Path, *, redactor: Redactor | None = None, history_file: Path | None = None
) -> HistoryEntry:
    """Append the bundle's summary line to the history (flushed and fsync'ed) and return it.

    Appending the same drill again is harmless: ``load_history`` keeps its last line.
    """
    entry = summarize(bundle_dir)
    redactor = redactor if redactor is not None else REDACTOR
    path = Path(history_file) if history_file is not None else history_path()
    line = json.dumps(redactor.redact(entry.as_json()), ensure_ascii=False, allow_nan=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as stream:
            stream.write(line)
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as exc:
        raise InputError(
            f"cannot append to the drill history {path} ({exc.strerror}); set XDG_STATE_HOME to a writable directory"
        ) from exc
    return entry


def load_history(history_file: Path | None = None) -> list[HistoryEntry]:
    """Every drill of the history, oldest first; a drill recorded twice counts once (its
    last line). A torn last line (a crash while appending) is skipped; any other bad
    line is an InputError that names it."""
    path = Path(history_file) if history_file is not None else history_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InputError(f"cannot read the drill history {path} ({exc.strerror})") from exc
    lines = text.split("\n")
    entries: dict[str, HistoryEntry] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = HistoryEntry.from_json(json.loads(line))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            if number == len(lines):  # no newline after it: an append that did not finish
                continue
            raise InputError(
                f"drill history {path} line {number} is not a history entry ({exc}); fix or delete that line"
            ) from exc
        entries.pop(entry.drill_id, None)
        entries[entry.drill_id] = entry
    return sorted(entries.values(), key=lambda e: (e.started_at or "", e.drill_id))


# -- comparing -------------------------------------------------------------------------


@dataclass(frozen=True)
class SlowStep:
    step: str
    elapsed_s: float
    median_s: float
    slower_pct: float
    samples: int
    """How many earlier drills the median is taken over."""


@dataclass(frozen=True)
class BaselineRow:
    target: str
    baseline_s: float
    measured_s: float
    delta_s: float
    ratio: float | None
    """measured / baseline; None when the baseline is 0."""


@dataclass(frozen=True)
class DrillComparison:
    drill_id: str
    finished_at: str | None
    verdict: str
    incident: str
    target_kind: str | None
    slow_steps: tuple[SlowStep, ...]
    baseline: tuple[BaselineRow, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "drill_id": self.drill_id,
            "finished_at": self.finished_at,
            "verdict": self.verdict,
            "incident": self.incident,
            "target_kind": self.target_kind,
            "slow_steps": [s.__dict__ for s in self.slow_steps],
            "baseline": [b.__dict__ for b in self.baseline],
        }


def compare(
    history: Sequence[HistoryEntry],
    *,
    slower_than_median_pct: float = DEFAULT_SLOWER_THAN_MEDIAN_PCT,
    window: int = DEFAULT_WINDOW,
) -> list[DrillComparison]:
    """For each drill (in the order given): its steps that took more than
    ``slower_than_median_pct`` % longer than the median of the same step over the last
    ``window`` earlier drills on the same kind of target, and its measured windows
    beside the pilot simulation's."""
    if slower_than_median_pct < 0:
        raise InputError(f"--threshold-pct must be zero or more, got {slower_than_median_pct:g}")
    if window < 1:
        raise InputError(f"the rolling window must hold at least one drill, got {window}")
    factor = 1.0 + slower_than_median_pct / 100.0
    results: list[DrillComparison] = []
    for index, entry in enumerate(history):
        earlier = [e for e in history[:index] if e.target_kind == entry.target_kind]
        slow: list[SlowStep] = []
        for step, elapsed in entry.steps.items():
            if elapsed is None or entry.step_status.get(step, "pass") not in _COUNTED:
                continue
            samples = [
                value
                for e in earlier
                if (value := e.steps.get(step)) is not None and e.step_status.get(step, "pass") in _COUNTED
            ][-window:]
            if not samples:
                continue
            median = statistics.median(samples)
            if median > 0 and elapsed > median * factor:
                slow.append(SlowStep(step, elapsed, median, round((elapsed / median - 1) * 100, 1), len(samples)))
        baseline = tuple(
            BaselineRow(
                target=name,
                baseline_s=reference,
                measured_s=measured,
                delta_s=round(measured - reference, 3),
                ratio=round(measured / reference, 2) if reference else None,
            )
            for name, reference in PILOT_BASELINE_S.items()
            if (measured := entry.targets.get(name)) is not None
        )
        results.append(
            DrillComparison(
                drill_id=entry.drill_id,
                finished_at=entry.finished_at,
                verdict=entry.verdict,
                incident=entry.incident,
                target_kind=entry.target_kind,
                slow_steps=tuple(slow),
                baseline=baseline,
            )
        )
    return results
