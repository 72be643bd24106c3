"""Judging what a runbook command did: ``ok`` (as documented), ``drifted`` (why), or, without running it,
``manual`` (for a person) and ``not-runnable`` (why not).

A command drifted when it timed out, a kubectl call of it failed, the API server dropped a field
it sent, it printed nothing (or the wrong kind of value) where the runbook reads a value from its
output (a jsonpath field, a ``LIMIT 1`` row, a count), it exited non-zero (a ``grep`` that finds nothing only in a command meant as a check),
a documented expectation does not hold, a notification reached no sink, or the database
reported an error. Expectations stated for another state of the world (``Expected for pilot``)
are shown, not judged.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Final

from rollback_drill.conformance.expect import check_expectation, check_read, value_read_by
from rollback_drill.conformance.report import CommandResult, ExpectationResult, Status, shorten
from rollback_drill.conformance.runbook import RunbookCommand

_KUBECTL_ERROR: Final = re.compile(r"^(?:error: .*|Error from server.*|.*\(NotFound\).*)$", re.MULTILINE)
_UNKNOWN_FIELD: Final = re.compile(r'Warning: unknown field "(?P<field>[^"]+)"')
_GREPS: Final = frozenset({"grep", "egrep", "fgrep"})


@dataclasses.dataclass(frozen=True)
class JudgingContext:
    """What the expectations of a command are judged against."""

    applicable_qualifiers: frozenset[str]
    """``rollback`` when the world is in a rollback: an ``Expected for rollback`` is judged, others only shown."""
    phase: int
    timeout_s: float
    """The time limit of one command."""


def first_error(stderr: str) -> str:
    """The first error line kubectl (or another tool) wrote, else its first line; at most 300 characters."""
    errors = _KUBECTL_ERROR.findall(stderr)
    lines = [line.strip() for line in (errors or stderr.splitlines()) if line.strip()]
    return shorten(lines[0], 300) if lines else ""


def verdict_without_running(command: RunbookCommand, *, tracked: bool) -> CommandResult | None:
    """``manual`` or ``not-runnable`` for a command that is not to be run; None for one that is."""
    classification = command.classification
    if classification.kind == "manual":
        expectations = tuple(
            ExpectationResult(e, (), judged=False, note="for a person to check: the command is manual")
            for e in command.expectations
        )
        return CommandResult(
            command, "manual", classification.reason, expectations=expectations, notes=classification.lint
        )
    if not classification.runnable:
        return CommandResult(command, "not-runnable", classification.reason, tracked=tracked)
    return None


def check_expectations(command: RunbookCommand, output: str, context: JudgingContext) -> tuple[ExpectationResult, ...]:
    """Each documented expectation of ``command`` checked against ``output``; judged when it applies to the world of ``context``."""
    results = []
    for expectation in command.expectations:
        checks = check_expectation(expectation, output)
        qualifier = (expectation.qualifier or "").strip().lower()
        if not qualifier or qualifier in context.applicable_qualifiers:
            results.append(ExpectationResult(expectation, checks, judged=True))
            continue
        note = (
            f"stated for {expectation.qualifier}; this world is at Phase {context.phase} until the runbook brings it "
            "back, so the expectation is shown, not judged"
        )
        results.append(ExpectationResult(expectation, checks, judged=False, note=note))
    return tuple(results)


def judge(  # noqa: C901, PLR0912 - the rules, in order
    result: CommandResult, context: JudgingContext, *, timed_out: bool, preflight: Sequence[str] = ()
) -> CommandResult:
    """``result`` (what ran and came back) with its status, why, checked expectations and notes.

    ``preflight`` holds problems found before the command ran (an exec target that is not there).
    """
    command = result.command
    stdout, stderr, exit_code = result.stdout, result.stderr, result.exit_code
    expectations = check_expectations(command, stdout, context)
    notes: list[str] = list(command.classification.lint)
    problems: list[str] = list(preflight)
    failed_calls = [call for call in result.kubectl if call.exit_code != 0]
    if timed_out:
        problems.append(f"it did not finish within {context.timeout_s:.0f}s")
    problems.extend(
        f"`{shorten(call.command, 160)}` failed (exit {call.exit_code}): {first_error(stderr)}" for call in failed_calls
    )
    dropped = sorted(set(_UNKNOWN_FIELD.findall(stderr)))
    if dropped:
        unchanged = "(no change)" in stdout
        problems.append(
            f"the API server does not know {', '.join(dropped)} and dropped it"
            + (": kubectl exited 0 and printed `(no change)`, so nothing was changed" if unchanged else "")
        )
    if exit_code != 0 and not failed_calls and not timed_out:
        last = command.analysis.last_program
        if last in _GREPS and exit_code == 1:
            pattern = _grep_pattern(command)
            verifying = bool(command.purpose and command.purpose.lower().startswith("verify")) or bool(
                command.expectations
            )
            if verifying:
                problems.append(f"grep found no line matching {pattern}: the check it is meant to be cannot pass")
            else:
                notes.append(f"grep found no line matching {pattern}")
        else:
            problems.append(f"it exited {exit_code}: {first_error(stderr) or 'no message'}")
    read = value_read_by(command)
    if read is not None and exit_code == 0 and not timed_out and not failed_calls:
        wrong = check_read(read, stdout)
        if wrong is not None:
            problems.append(wrong)
    for checked in expectations:
        if checked.judged and not checked.holds:
            failing = [c for c in checked.checks if not c.holds]
            problems += [f"expected {c.item!r} (line {checked.expectation.line}), saw {c.detail}" for c in failing]
    if command.kind == "notify":
        problems += _delivery_problems(result, notes)
    if command.kind == "kubectl-exec-db" and re.search(r"^(?:psql|pg_dump):.*ERROR", stderr, re.MULTILINE):
        problems.append(f"the database reported an error: {first_error(stderr)}")
    psql_file = "psql" in command.classification.programs and " -f " in command.text
    if command.kind == "kubectl-exec-db" and psql_file and "ON_ERROR_STOP" not in command.text:
        notes.append("psql -f without -v ON_ERROR_STOP=1 exits 0 even when a statement of the file fails")
    if command.classification.placeholders:
        notes.append(f"text left to fill in: {', '.join(command.classification.placeholders)}")
    status: Status = "drifted" if problems else "ok"
    why = "; ".join(problems) if problems else _ok_reason(result, expectations)
    return dataclasses.replace(result, status=status, why=why, expectations=expectations, notes=tuple(notes))


def _delivery_problems(result: CommandResult, notes: list[str]) -> list[str]:
    if not result.deliveries:
        return ["nothing reached the notification sinks"]
    problems = [
        f"the {d.get('service')} sink answered {d.get('status')}"
        for d in result.deliveries
        if not 200 <= int(d.get("status") or 0) < 300
    ]
    for delivery in result.deliveries:
        content_type = str(delivery.get("content_type") or "")
        if delivery.get("service") == "status-page" and "json" not in content_type:
            notes.append(
                f"curl -d sent Content-Type {content_type or 'none'}: the sink read the JSON anyway, a strict "
                "status-page API may not; add -H 'Content-Type: application/json'"
            )
    return problems


def _grep_pattern(command: RunbookCommand) -> str:
    grep = next((c for c in reversed(command.analysis.commands) if c.program in _GREPS), None)
    pattern = next((a for a in grep.args if not a.startswith("-")), "") if grep else ""
    return repr(pattern)


def _ok_reason(result: CommandResult, expectations: tuple[ExpectationResult, ...]) -> str:
    judged = [e for e in expectations if e.judged]
    parts = []
    if judged:
        parts.append("as documented: " + "; ".join(f"{c.item} ({c.detail})" for e in judged for c in e.checks))
    shown = [e for e in expectations if not e.judged]
    if shown:
        parts.append("; ".join(f"{e.expectation.label}: {e.expectation.text} — {e.note}" for e in shown))
    if result.deliveries:
        parts.append("delivered: " + ", ".join(f"{d.get('service')} ({d.get('status')})" for d in result.deliveries))
    if not parts:
        calls = f", {len(result.kubectl)} kubectl call(s)" if result.kubectl else ""
        parts.append(f"exit {result.exit_code}{calls}; nothing documented to compare")
    return "; ".join(parts)
