"""Step budgets: read from the feature text, compared with what was measured.

Budgets are words in the step text ("within 2 minutes"); ``parse_duration`` turns them
into seconds. Overrides from ``drill.yaml`` may only tighten a budget, never loosen it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from rollback_drill.errors import ConfigError

BudgetStatus = Literal["pass", "over-budget"]

_UNIT_SECONDS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
}
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[a-z]+)", re.IGNORECASE | re.ASCII)


def parse_duration(text: str) -> float:
    """Seconds in ``"2 minutes"``, ``"1.5 minutes"``, ``"90 seconds"``, ``"10 min"``, ``"30 s"``, ``"2h"``, ``"3 days"``."""
    match = _DURATION.fullmatch(text.strip())
    unit = match["unit"].lower() if match else ""
    if match is None or unit not in _UNIT_SECONDS:
        raise ConfigError(
            f"cannot read a duration from {text!r}: write a number and a unit in seconds, minutes, hours or days, "
            "e.g. '2 minutes', '90 seconds', '1.5 hours', '10 min', '30 s', '2h'"
        )
    return float(match["number"]) * _UNIT_SECONDS[unit]


@dataclass(frozen=True)
class Budget:
    """How long a runbook step or drill window may take."""

    limit_s: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.limit_s) or self.limit_s <= 0:
            raise ConfigError(f"a budget must be a positive number of seconds, got {self.limit_s!r}")

    @classmethod
    def from_text(cls, text: str) -> Budget:
        return cls(parse_duration(text))

    def status(self, elapsed_s: float) -> BudgetStatus:
        """``pass`` up to and including the limit; ``over-budget`` strictly above it."""
        return "pass" if elapsed_s <= self.limit_s else "over-budget"


def check_override(name: str, override_s: float, runbook_s: float) -> float:
    """Return ``override_s`` if it is positive and no larger than the runbook's value."""
    if not 0 < override_s <= runbook_s:  # also refuses NaN
        raise ConfigError(
            f"budget override {name!r} is {override_s:g} s, but the runbook allows {runbook_s:g} s: an override "
            f"must be > 0 and <= {runbook_s:g} s (it may tighten a budget, never loosen it); fix it in drill.yaml"
        )
    return override_s
