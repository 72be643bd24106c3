"""Exceptions, grouped by what the caller should do next.

The CLI maps them onto exit codes (CONVENTIONS): ``InputError`` and ``UnsafeTarget``
are the caller's to fix (exit 2); ``VerificationFailed`` and ``BudgetExceeded`` mean
the drill ran and the system did not behave (exit 1); ``RetryableError`` is worth
another attempt within the step's budget.
"""

from __future__ import annotations


class DrillError(Exception):
    """Base of everything the library raises on purpose."""


class InputError(DrillError):
    """Bad input or a refusal: the message names the problem and the fix (exit 2)."""


class ConfigError(InputError):
    """The drill configuration or an option is wrong."""


class UnsafeTarget(InputError):
    """A destructive action was aimed at a cluster that is neither drill-made nor allowlisted."""


class LockHeld(InputError):
    """Another drill holds the cluster's lock."""


class ToolchainError(DrillError):
    """A prerequisite (binary, image, engine) could not be obtained."""


class RetryableError(DrillError):
    """A transient failure; the same call may succeed within the step's budget."""


class ApiServerUnreachable(RetryableError):
    """The Kubernetes API server did not answer (refused or dropped connection) or answered that it cannot serve yet."""


class VerificationFailed(DrillError):
    """The system did not reach the state the runbook expects."""


class BudgetExceeded(VerificationFailed):
    """A runbook step or drill target took longer than allowed."""


class WaitTimeout(VerificationFailed):
    """A deadline-based wait ran out; the message says what was awaited and what was last seen."""
