# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""Drill history: one summary line per drill, outside ``reports/``, and how drills compare.

``$XDG_STATE_HOME/rollback-drill/history.jsonl`` gets one line per finalized drill. It
outlives the bundles' directory, so trends (a step getting slower drill after drill)
and the drill schedule can be read from it.

Each line carries ``seq`` (its place in the file), ``prev_sha256`` (the sha256 of the line
before it) and ``manifest_sha256`` (its bundle's MANIFEST.sha256), so that removing, editing
or reordering a line breaks the chain: ``check_history`` walks it and names the first line
that does not fit (docs/evidence.md, "A history that cannot be rewritten").

``compare`` flags, per drill, the steps slower than the rolling median of the earlier
drills on the same kind of target by more than a percentage, and sets the drill's
measured windows beside the runbook's pilot simulation ("Rollback Metrics (From Pilot)").
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

from rollback_drill.errors import InputError
from rollback_drill.evidence.bundle import MANIFEST_NAME, load_evidence, require_bundle, sha256_bytes
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
    manifest_sha256: str | None = None
    """The sha256 of the bundle's MANIFEST.sha256 when the drill finished (None on lines from before the chain)."""

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
            "manifest_sha256": self.manifest_sha256,
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
            manifest_sha256=data.get("manifest_sha256"),
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
    manifest = bundle_dir / MANIFEST_NAME
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
        manifest_sha256=sha256_bytes(manifest.read_bytes()) if manifest.is_file() else None,
    )


def line_sha256(line: str) -> str:
    """The sha256 of one history line as written, without its newline: what the next line's ``prev_sha256`` holds."""
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


CHAIN_START: Final = "0" * 64
"""The ``prev_sha256`` of the first line of a history."""


def append_history(
    bundle_dir: Path, *, redactor: Redactor | None = None, history_file: Path | None = None
) -> HistoryEntry:
    """Append the bundle's summary line to the history (flushed and fsync'ed) and return it.

    The line links to the one before it (``seq``, ``prev_sha256``) and names the bundle's
    manifest (``manifest_sha256``). The file is locked while the last line is read and the new
    one written, so two drills finishing together still make one chain.
    Appending the same drill again is harmless: ``load_history`` keeps its last line.
    """
    entry = summarize(bundle_dir)
    redactor = redactor if redactor is not None else REDACTOR
    path = Path(history_file) if history_file is not None else history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+", encoding="utf-8") as stream:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
            stream.seek(0)
            text = stream.read()
            earlier = [line for line in text.split("\n") if line.strip()]
            chained = {
                **redactor.redact(entry.as_json()),
                "seq": len(earlier) + 1,
                "prev_sha256": line_sha256(earlier[-1]) if earlier else CHAIN_START,
            }
            line = json.dumps(chained, ensure_ascii=False, allow_nan=False)
            # A torn last line (a crash while appending) stays a line of its own.
            stream.write(("\n" if text and not text.endswith("\n") else "") + line + "\n")
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as exc:
        raise InputError(
            f"cannot append to the drill history {path} ({exc.strerror}); set XDG_STATE_HOME to a writable directory"
        ) from exc
    return entry


@dataclass(frozen=True)
class ChainBreak:
    """The first line of the history that does not fit the chain."""

    line: int
    """Its line number in the file (1-based)."""
    kind: str
    """``removed`` (a line before it is gone), ``edited``, ``reordered`` or ``unchained`` (a line
    without the chain's fields after the chain began)."""
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class HistoryCheck:
    """What walking the history's chain found."""

    path: Path
    lines: int
    """Lines that are not blank."""
    unchained: tuple[int, ...]
    """Line numbers from before the chain began (written before lines carried it): not counted."""
    chained: int
    """Lines of the chain up to (not including) the first break."""
    first_break: ChainBreak | None
    head_sha256: str | None
    """The sha256 of the last line of the unbroken chain: write it down to notice a truncated history."""
    counted: tuple[HistoryEntry, ...]
    """The drills of the chain before the first break, oldest first, each drill once (its last line)."""

    @property
    def ok(self) -> bool:
        return self.first_break is None

    def as_json(self) -> dict[str, Any]:
        return {
            "history": str(self.path),
            "ok": self.ok,
            "lines": self.lines,
            "unchained_lines": list(self.unchained),
            "chained": self.chained,
            "first_break": None
            if self.first_break is None
            else {"line": self.first_break.line, "kind": self.first_break.kind, "detail": self.first_break.detail},
            "head_sha256": self.head_sha256,
            "counted": [e.drill_id for e in self.counted],
        }


def _parsed(line: str) -> dict[str, Any] | None:
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _chain_fields(line: str) -> dict[str, Any] | None:
    data = _parsed(line)
    return data if data is not None and "prev_sha256" in data else None


def _break_at(numbered: list[tuple[int, str]], index: int, first_chained: int) -> ChainBreak | None:  # noqa: PLR0911 - one return per way a line can fail to fit
    """Why line ``index`` (into ``numbered``) does not fit the chain, or None when it does."""
    number, line = numbered[index]
    data = _chain_fields(line)
    if _parsed(line) is None:
        return ChainBreak(number, "edited", "it is not a JSON object any more")
    if data is None:
        return ChainBreak(number, "unchained", "it has no chain fields (seq, prev_sha256) although earlier lines do")
    expected_seq = index + 1
    seq = data.get("seq")
    if seq != expected_seq:
        later = {(_chain_fields(text) or {}).get("seq") for _, text in numbered[index + 1 :]}
        if isinstance(seq, int) and seq > expected_seq and expected_seq not in later:
            return ChainBreak(number, "removed", f"it is entry {seq} but follows entry {expected_seq - 1}")
        return ChainBreak(number, "reordered", f"it is entry {seq!r} but stands in place {expected_seq}")
    previous = line_sha256(numbered[index - 1][1]) if index > 0 else CHAIN_START
    if data.get("prev_sha256") != previous:
        if index == 0 or index - 1 < first_chained:
            return ChainBreak(number, "edited", "the line before it is not the one it was appended after")
        return ChainBreak(
            numbered[index - 1][0],
            "edited",
            f"it no longer matches the sha256 that line {number} recorded for it",
        )
    return None


def check_history(history_file: Path | None = None) -> HistoryCheck:
    """Walk the history's chain and name the first line removed, edited or reordered.

    Lines from before the chain began (no ``prev_sha256``) are ``unchained``: they cannot be
    checked, so they are listed and not counted. The chain starts at the first chained line;
    from there every line must link to the one before it. A removed last line cannot be seen
    from the file alone; ``head_sha256`` is what to write down to notice that.
    """
    path = Path(history_file) if history_file is not None else history_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise InputError(f"cannot read the drill history {path} ({exc.strerror})") from exc
    numbered = [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if numbered and not text.endswith("\n") and _chain_fields(numbered[-1][1]) is None:
        numbered.pop()  # a torn last line: an append that did not finish, as load_history reads it
    first_chained = next((i for i, (_, line) in enumerate(numbered) if _chain_fields(line) is not None), len(numbered))
    unchained = tuple(number for number, _ in numbered[:first_chained])
    first_break: ChainBreak | None = None
    end = first_chained
    for index in range(first_chained, len(numbered)):
        first_break = _break_at(numbered, index, first_chained)
        if first_break is not None:
            # An edited line is the one before the line that noticed it: it is not counted either.
            end = index - 1 if first_break.line < numbered[index][0] else index
            break
        end = index + 1
    counted: dict[str, HistoryEntry] = {}
    for _, line in numbered[first_chained:end]:
        try:
            entry = HistoryEntry.from_json(json.loads(line))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # chained, but not a drill: load_history names such a line
        counted.pop(entry.drill_id, None)
        counted[entry.drill_id] = entry
    return HistoryCheck(
        path=path,
        lines=len(numbered),
        unchained=unchained,
        chained=max(0, end - first_chained),
        first_break=first_break,
        head_sha256=line_sha256(numbered[end - 1][1]) if end > first_chained else None,
        counted=tuple(sorted(counted.values(), key=lambda e: (e.started_at or "", e.drill_id))),
    )


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
