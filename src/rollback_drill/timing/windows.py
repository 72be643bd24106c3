"""The measured windows of CONVENTIONS ("Measured windows"): the drill targets.

``Marks`` records named instants on the monotonic clock while the drill runs;
``compute_targets`` turns them, with the probes' counts, into ``TargetResult`` rows for
the evidence. A window whose marks are missing is reported with ``measured`` and
``met`` set to ``None``: an unmeasured target is never silently met.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from rollback_drill.errors import ConfigError
from rollback_drill.timing.clock import Clock, SystemClock
from rollback_drill.timing.probe import downtime_s, failed_requests, first_ok_after, samples_between

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from rollback_drill.timing.probe import ProbeSample

STEP_IDS = (
    "pre-1",
    "pre-2",
    "pre-3",
    "step-1",
    "step-2",
    "step-3",
    "step-4",
    "step-5",
    "step-6",
    "step-7",
    "step-8",
    "soak",
    "phase-1",
    "phase-2",
    "phase-3",
)
"""Runbook step ids (CONVENTIONS, "Runbook steps in Gherkin, and their ids")."""

DRILL_START = "drill_start"
INCIDENT_INJECTED = "incident_injected"
DECISION_MADE = "decision_made"
PAGE_DELIVERED = "page_delivered"
"""Alertmanager's first page for the incident reached the PagerDuty sink (or, for a warning, Slack)."""
BUNDLE_SEALED = "bundle_sealed"
INSTANT_NAMES = (DRILL_START, INCIDENT_INJECTED, PAGE_DELIVERED, DECISION_MADE, BUNDLE_SEALED)

DETECT = "detect"
INITIATE = "initiate"
ROLLBACK_EXECUTION = "rollback_execution"
EXPANDED_DOWNTIME = "expanded_downtime"
PILOT_IMPACT = "pilot_impact"
PILOT_RESTORED_BY_STEP_5 = "pilot_restored_by_step_5"
VERIFY_PILOT = "verify_pilot"
TOTAL_RESOLUTION = "total_resolution"
DRILL = "drill"
TARGET_NAMES = (
    DETECT,
    INITIATE,
    ROLLBACK_EXECUTION,
    EXPANDED_DOWNTIME,
    PILOT_IMPACT,
    PILOT_RESTORED_BY_STEP_5,
    VERIFY_PILOT,
    TOTAL_RESOLUTION,
    DRILL,
)

DEFAULT_LIMITS: Mapping[str, float] = MappingProxyType(
    {
        ROLLBACK_EXECUTION: 600.0,  # "Rollback execution: <10 minutes"
        EXPANDED_DOWNTIME: 300.0,  # "Downtime: <5 minutes (expanded repos only)"
        PILOT_IMPACT: 0.0,  # "Pilot repo: Zero impact", in failed requests
        TOTAL_RESOLUTION: 1800.0,  # "Total resolution: <30 minutes"
        DRILL: 1200.0,  # "Target: Complete drill in <20 minutes"
    }
)
"""The runbook's limits; the targets not listed here are reported without a limit."""


def _check_step_id(step_id: str) -> str:
    if step_id not in STEP_IDS:
        raise ValueError(f"unknown runbook step id {step_id!r}; known ids: {', '.join(STEP_IDS)}")
    return step_id


def step_start(step_id: str) -> str:
    """The mark name for the start of a runbook step, e.g. ``step_start:step-1``."""
    return f"step_start:{_check_step_id(step_id)}"


def step_end(step_id: str) -> str:
    """The mark name for the end of a runbook step, e.g. ``step_end:step-4``."""
    return f"step_end:{_check_step_id(step_id)}"


def _check_mark_name(name: str) -> None:
    kind, sep, step_id = name.partition(":")
    if name in INSTANT_NAMES or (sep and kind in {"step_start", "step_end"} and step_id in STEP_IDS):
        return
    raise ValueError(
        f"unknown mark {name!r}: use one of {', '.join(INSTANT_NAMES)}, or step_start:<id> / step_end:<id> "
        f"with <id> one of {', '.join(STEP_IDS)}"
    )


class Marks:
    """Named instants of one drill, in the clock's monotonic seconds. Thread-safe."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._marks: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, name: str, t: float | None = None, *, overwrite: bool = False) -> float:
        """Record ``name`` at ``t`` (default: now) and return the instant.

        Marking the same name twice is refused unless ``overwrite``: a second
        ``step_start:step-1`` is almost always a recorder bug that would skew a window.
        """
        _check_mark_name(name)
        instant = self._clock.monotonic() if t is None else t
        with self._lock:
            if name in self._marks and not overwrite:
                raise ValueError(f"mark {name!r} was already recorded at {self._marks[name]:.3f}")
            self._marks[name] = instant
        return instant

    def get(self, name: str) -> float | None:
        with self._lock:
            return self._marks.get(name)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._marks

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return dict(self._marks)

    def between(self, start: str, end: str) -> float | None:
        """Seconds from mark ``start`` to mark ``end``, or ``None`` if either is missing."""
        with self._lock:
            t0, t1 = self._marks.get(start), self._marks.get(end)
        return None if t0 is None or t1 is None else t1 - t0


@dataclass(frozen=True)
class TargetResult:
    """One drill target: its limit, what was measured, and whether it was met (``None``: unknown)."""

    name: str
    limit: float | None
    measured: float | None
    unit: str
    met: bool | None

    def as_evidence(self) -> dict[str, object]:
        return {"name": self.name, "limit": self.limit, "measured": self.measured, "unit": self.unit, "met": self.met}


def _below(name: str, measured: float | None, limit: float | None, unit: str = "s") -> TargetResult:
    """A target met when ``measured`` is strictly below ``limit``; reported only when there is no limit."""
    met = None if measured is None or limit is None else measured < limit
    return TargetResult(name, limit, measured, unit, met)


def compute_targets(
    marks: Marks,
    *,
    pilot_failed_requests: int | None,
    expanded_downtime_s: float | None,
    pilot_restored_s: float | None = None,
    pilot_hit: bool = False,
    limits: Mapping[str, float] | None = None,
) -> list[TargetResult]:
    """The drill targets, in CONVENTIONS' order.

    ``pilot_failed_requests`` counts failed pilot probe requests from Step 1 to Step 8;
    ``expanded_downtime_s`` is the expanded-repo probe's unclean seconds.

    For incidents that take the pilot down themselves, pass ``pilot_restored_s``
    (seconds from ``incident_injected`` until the pilot answered again): the row
    ``pilot_restored_by_step_5`` replaces ``pilot_impact`` and is met when that happened
    strictly before Step 5 ended. ``pilot_hit=True`` with ``pilot_restored_s=None`` means
    the pilot never answered again: that row is then not met.

    ``limits`` replaces default limits by target name (checked overrides from the
    configuration); it may also give a limit to a target that is otherwise only reported.
    """
    overrides = dict(limits or {})
    unknown = sorted(set(overrides) - set(TARGET_NAMES))
    if unknown:
        raise ConfigError(f"unknown drill target(s) {', '.join(unknown)}; known targets: {', '.join(TARGET_NAMES)}")

    def limit(name: str) -> float | None:
        return overrides.get(name, DEFAULT_LIMITS.get(name))

    results = [
        # Incident -> the page; a drill without the monitoring chain (or whose incident pages nobody)
        # measures to the decision, as before the chain existed.
        _below(
            DETECT,
            marks.between(INCIDENT_INJECTED, PAGE_DELIVERED if PAGE_DELIVERED in marks else DECISION_MADE),
            limit(DETECT),
        ),
        _below(INITIATE, marks.between(DECISION_MADE, step_start("step-1")), limit(INITIATE)),
        _below(
            ROLLBACK_EXECUTION,
            marks.between(step_start("step-1"), step_end("step-4")),
            limit(ROLLBACK_EXECUTION),
        ),
        _below(EXPANDED_DOWNTIME, expanded_downtime_s, limit(EXPANDED_DOWNTIME)),
    ]
    if pilot_hit or pilot_restored_s is not None:
        results.append(_pilot_restored(marks, pilot_restored_s, overrides.get(PILOT_RESTORED_BY_STEP_5)))
    else:
        results.append(_pilot_impact(pilot_failed_requests, limit(PILOT_IMPACT)))
    results += [
        _below(VERIFY_PILOT, marks.between(step_start("step-5"), step_end("step-5")), limit(VERIFY_PILOT)),
        _below(TOTAL_RESOLUTION, marks.between(INCIDENT_INJECTED, step_end("step-8")), limit(TOTAL_RESOLUTION)),
        _below(DRILL, marks.between(DRILL_START, BUNDLE_SEALED), limit(DRILL)),
    ]
    return results


def _pilot_impact(failed_requests: int | None, limit: float | None) -> TargetResult:
    # "Zero impact" is an at-most limit, unlike the time windows: 0 failed requests meets a limit of 0.
    met = None if failed_requests is None or limit is None else failed_requests <= limit
    return TargetResult(PILOT_IMPACT, limit, failed_requests, "requests", met)


def _pilot_restored(marks: Marks, restored_s: float | None, override: float | None) -> TargetResult:
    # The limit is where Step 5 ended, counted from the injection, so it is measured, not configured.
    limit = override if override is not None else marks.between(INCIDENT_INJECTED, step_end("step-5"))
    if limit is None:
        met = None
    elif restored_s is None:
        met = False
    else:
        met = restored_s < limit
    return TargetResult(PILOT_RESTORED_BY_STEP_5, limit, restored_s, "s", met)


def measure_targets_from_samples(
    marks: Marks,
    pilot_samples: Iterable[ProbeSample],
    expanded_samples: Iterable[ProbeSample],
    *,
    pilot_hit: bool,
    limits: Mapping[str, float] | None = None,
) -> list[TargetResult]:
    """The drill targets from the marks and the two probes' samples.

    The one definition of how the probes' answers become ``pilot_impact``,
    ``expanded_downtime`` and ``pilot_restored_by_step_5``: the drill measures with it, and
    ``evidence verify --recompute`` measures again with it from the samples in the timeline.
    Both probes count from Step 1's start to Step 8's end (CONVENTIONS, "Measured windows").
    """
    step_1, step_8 = marks.get(step_start("step-1")), marks.get(step_end("step-8"))
    window = samples_between(pilot_samples, step_1, step_8)
    expanded = samples_between(expanded_samples, step_1, step_8)
    restored_s = None
    injected = marks.get(INCIDENT_INJECTED)
    if pilot_hit and injected is not None:
        first_ok = first_ok_after(window, step_1 or injected)
        restored_s = None if first_ok is None else first_ok - injected
    return compute_targets(
        marks,
        pilot_failed_requests=failed_requests(window) if window else None,
        expanded_downtime_s=downtime_s(expanded) if expanded else None,
        pilot_restored_s=restored_s,
        pilot_hit=pilot_hit,
        limits=limits,
    )


def drill_target(marks: Marks, *, limit_s: float | None = None) -> TargetResult | None:
    """The ``drill`` target (drill start → bundle sealed), or ``None`` when the drill's start was not marked.

    Measured when the bundle is about to be sealed, against the runbook's own limit ("Complete
    drill in <20 minutes"), or ``limit_s`` where drill.yaml tightens it; reported to the millisecond,
    judged on the unrounded time.
    """
    elapsed = marks.between(DRILL_START, BUNDLE_SEALED)
    if elapsed is None:
        return None
    limit = DEFAULT_LIMITS[DRILL] if limit_s is None else limit_s
    return TargetResult(DRILL, limit, round(elapsed, 3), "s", elapsed < limit)
