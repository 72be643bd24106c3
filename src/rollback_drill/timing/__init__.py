"""Clock, stopwatch, budgets, the wait primitive, measured windows and background probes."""

from rollback_drill.timing.budget import Budget, BudgetStatus, check_override, parse_duration
from rollback_drill.timing.clock import Clock, FakeClock, Sleeper, SystemClock
from rollback_drill.timing.probe import (
    Probe,
    ProbeOutcome,
    ProbeSample,
    achieved_rate_hz,
    downtime_s,
    failed_requests,
    first_ok_after,
    samples_between,
)
from rollback_drill.timing.stopwatch import Stopwatch
from rollback_drill.timing.wait import Deadline, hold, poll_until, wait_until
from rollback_drill.timing.windows import (
    DEFAULT_LIMITS,
    STEP_IDS,
    TARGET_NAMES,
    Marks,
    TargetResult,
    compute_targets,
    drill_target,
    measure_targets_from_samples,
    step_end,
    step_start,
)

__all__ = [
    "DEFAULT_LIMITS",
    "STEP_IDS",
    "TARGET_NAMES",
    "Budget",
    "BudgetStatus",
    "Clock",
    "Deadline",
    "FakeClock",
    "Marks",
    "Probe",
    "ProbeOutcome",
    "ProbeSample",
    "Sleeper",
    "Stopwatch",
    "SystemClock",
    "TargetResult",
    "achieved_rate_hz",
    "check_override",
    "compute_targets",
    "downtime_s",
    "drill_target",
    "failed_requests",
    "first_ok_after",
    "hold",
    "measure_targets_from_samples",
    "parse_duration",
    "poll_until",
    "samples_between",
    "step_end",
    "step_start",
    "wait_until",
]
