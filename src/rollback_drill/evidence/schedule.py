# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""The runbook's "Rollback Drill Schedule", checked against the drill history.

- **Pre-Phase 6** and **Pre-Phase 7** (dates in ``drill.yaml``): met by a drill that
  passed on or before the date, at that phase when the history knows the phase, and
  whose bundle still verifies and carries approvals from all four roles of the
  runbook's sign-off (SRE Lead, Engineering TL, Product Lead, Incident Commander).
- **Quarterly** (every ``quarterly_days``): overdue when the last passed drill is more
  than that many days old, or there is none.

Only drills the history vouches for count: the command passes the drills of the history's
chain up to its first break (``history.check_history``), and a drill whose bundle is still at
its recorded path counts only when the bundle's files verify and its manifest is the one the
history recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final

from rollback_drill.config import DrillConfig
from rollback_drill.errors import InputError
from rollback_drill.evidence.controls import next_quarterly_due
from rollback_drill.evidence.history import HistoryCheck, HistoryEntry
from rollback_drill.evidence.sign import ROLES
from rollback_drill.evidence.verify import VerifyReport, verify

PRE_PHASE_DRILLS: Final = ((6, "pre_phase_6"), (7, "pre_phase_7"))


@dataclass(frozen=True)
class PrePhaseDrill:
    """One mandatory pre-phase drill and whether the history meets it."""

    phase: int
    due: date
    satisfied: bool
    overdue: bool
    """The date has passed and no drill meets it."""
    drill_id: str | None
    """The drill that meets it, or the closest candidate when none does."""
    signed_roles: tuple[str, ...]
    missing_roles: tuple[str, ...]
    detail: str

    @property
    def name(self) -> str:
        return f"Pre-Phase {self.phase}"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "due": self.due.isoformat(),
            "satisfied": self.satisfied,
            "overdue": self.overdue,
            "drill_id": self.drill_id,
            "signed_roles": list(self.signed_roles),
            "missing_roles": list(self.missing_roles),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ScheduleStatus:
    today: date
    last_drill: HistoryEntry | None
    last_passed: HistoryEntry | None
    quarterly_days: int
    next_quarterly_due: date | None
    """None when no drill has passed yet (the quarterly drill is then overdue)."""
    quarterly_overdue: bool
    days_overdue: int
    pre_phase: tuple[PrePhaseDrill, ...]
    uncounted: tuple[tuple[str, str], ...] = ()
    """(drill id, why) of each drill the history lists that does not count."""
    history: HistoryCheck | None = None
    """The history's chain, when the drills came from it."""

    @property
    def attention_needed(self) -> bool:
        return self.quarterly_overdue or any(p.overdue for p in self.pre_phase)

    def as_json(self) -> dict[str, Any]:
        def brief(entry: HistoryEntry | None) -> dict[str, Any] | None:
            if entry is None:
                return None
            return {"drill_id": entry.drill_id, "finished_at": entry.finished_at, "verdict": entry.verdict}

        return {
            "today": self.today.isoformat(),
            "last_drill": brief(self.last_drill),
            "last_passed": brief(self.last_passed),
            "quarterly_days": self.quarterly_days,
            "next_quarterly_due": self.next_quarterly_due.isoformat() if self.next_quarterly_due else None,
            "quarterly_overdue": self.quarterly_overdue,
            "days_overdue": self.days_overdue,
            "pre_phase": [p.as_json() for p in self.pre_phase],
            "attention_needed": self.attention_needed,
            "uncounted": [{"drill_id": drill_id, "why": why} for drill_id, why in self.uncounted],
            "history": None if self.history is None else self.history.as_json(),
        }


def _signature_state(
    entry: HistoryEntry, allowed_signers: Path | None, cache: dict[str, VerifyReport | str]
) -> VerifyReport | str:
    """The bundle's verify report, or why it could not be verified."""
    if entry.bundle is None:
        return "the history does not say where its bundle is"
    if entry.bundle not in cache:
        try:
            cache[entry.bundle] = verify(Path(entry.bundle), allowed_signers=allowed_signers)
        except InputError as exc:
            cache[entry.bundle] = str(exc)
    state = cache[entry.bundle]
    if isinstance(state, VerifyReport) and entry.manifest_sha256 not in {None, state.manifest_sha256}:
        return (
            f"its manifest (sha256 {state.manifest_sha256}) is not the one the history recorded "
            f"({entry.manifest_sha256}): the bundle changed after the drill"
        )
    return state


def _uncounted_because(
    entry: HistoryEntry, allowed_signers: Path | None, cache: dict[str, VerifyReport | str]
) -> str | None:
    """Why a drill whose bundle is at its recorded path does not count, or None when it counts.

    Only the bundle's files matter here: a missing approval is the pre-phase drills' concern.
    """
    if entry.bundle is None or not Path(entry.bundle).exists():
        return None
    state = _signature_state(entry, allowed_signers, cache)
    if isinstance(state, str):
        return state
    problems = [p for p in state.problems if p.kind != "approval"]
    return f"its bundle does not verify: {problems[0]}" if problems else None


def _pre_phase(
    phase: int,
    due: date,
    *,
    today: date,
    history: Sequence[HistoryEntry],
    allowed_signers: Path | None,
    cache: dict[str, VerifyReport | str],
) -> PrePhaseDrill:
    candidates = [
        e
        for e in history
        if e.verdict == "pass" and e.day is not None and e.day <= due and (e.phase is None or e.phase == phase)
    ]
    candidates.sort(key=lambda e: (e.day or date.min, e.finished_at or ""), reverse=True)
    best: tuple[int, HistoryEntry, tuple[str, ...], str] | None = None
    for entry in candidates:
        state = _signature_state(entry, allowed_signers, cache)
        if isinstance(state, str):
            signed: tuple[str, ...] = ()
            why = f"drill {entry.drill_id} passed on {entry.day}, but its bundle cannot be checked: {state}"
        elif not state.ok:
            signed = ()
            why = f"drill {entry.drill_id} passed on {entry.day}, but its bundle does not verify: {state.problems[0]}"
        else:
            signed = state.approved_roles
            if not state.missing_roles:
                return PrePhaseDrill(
                    phase=phase,
                    due=due,
                    satisfied=True,
                    overdue=False,
                    drill_id=entry.drill_id,
                    signed_roles=signed,
                    missing_roles=(),
                    detail=f"drill {entry.drill_id} passed on {entry.day} and is signed by every role",
                )
            why = f"drill {entry.drill_id} passed on {entry.day}, but is not signed by {', '.join(state.missing_roles)}"
        if best is None or len(signed) > best[0]:
            best = (len(signed), entry, signed, why)
    overdue = today > due
    if best is None:
        detail = f"no Phase {phase} drill passed on or before {due.isoformat()}"
        return PrePhaseDrill(
            phase=phase,
            due=due,
            satisfied=False,
            overdue=overdue,
            drill_id=None,
            signed_roles=(),
            missing_roles=ROLES,
            detail=detail,
        )
    _, entry, signed, why = best
    missing = tuple(role for role in ROLES if role not in signed)
    return PrePhaseDrill(
        phase=phase,
        due=due,
        satisfied=False,
        overdue=overdue,
        drill_id=entry.drill_id,
        signed_roles=signed,
        missing_roles=missing,
        detail=why,
    )


def schedule_status(
    config: DrillConfig,
    history: Sequence[HistoryEntry],
    today: date,
    *,
    allowed_signers: Path | None = None,
    history_check: HistoryCheck | None = None,
) -> ScheduleStatus:
    """Where the drill schedule stands on ``today``. ``allowed_signers`` makes "signed"
    mean "verified as a known signer"; without it, signatures are checked for integrity only.

    A drill whose bundle is at its recorded path and does not verify is left out (``uncounted``);
    ``history_check`` is the chain ``history`` was taken from, reported alongside."""
    drills = config.drills
    cache: dict[str, VerifyReport | str] = {}
    uncounted: list[tuple[str, str]] = []
    counted: list[HistoryEntry] = []
    for entry in history:
        why = _uncounted_because(entry, allowed_signers, cache)
        if why is None:
            counted.append(entry)
        else:
            uncounted.append((entry.drill_id, why))
    if history_check is not None:
        uncounted += [
            (f"line {number}", "written before the history was chained") for number in history_check.unchained
        ]
        if history_check.first_break is not None:
            uncounted.append(("the rest of the history", f"the chain breaks at {history_check.first_break}"))
    # The pre-phase drills read every drill of the chain: they check the bundles themselves and say why one fails.
    dated = [e for e in counted if e.day is not None]
    dated.sort(key=lambda e: (e.day or date.min, e.finished_at or e.started_at or ""))
    last_drill = dated[-1] if dated else None
    passed = [e for e in dated if e.verdict == "pass"]
    last_passed = passed[-1] if passed else None
    next_due: date | None = None
    overdue, days_overdue = True, 0
    if last_passed is not None and last_passed.day is not None:
        next_due = next_quarterly_due(last_passed.day, drills.quarterly_days)
        overdue = today > next_due
        days_overdue = (today - next_due).days if overdue else 0
    pre_phase = tuple(
        _pre_phase(
            phase, getattr(drills, key), today=today, history=history, allowed_signers=allowed_signers, cache=cache
        )
        for phase, key in PRE_PHASE_DRILLS
    )
    return ScheduleStatus(
        today=today,
        last_drill=last_drill,
        last_passed=last_passed,
        quarterly_days=drills.quarterly_days,
        next_quarterly_due=next_due,
        quarterly_overdue=overdue,
        days_overdue=days_overdue,
        pre_phase=pre_phase,
        uncounted=tuple(uncounted),
        history=history_check,
    )
