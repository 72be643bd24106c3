"""Comparing what a runbook says a command prints with what it printed.

A runbook's expectations are prose, not a grammar, so each item is read by the first
of a few readers that recognises it, and the check says which one it was:

- ``3/3 Running[, 0 restarts (recent)]``: the rows of a ``kubectl get pods`` table;
- ``All 3 providers return "healthy"``: every output line is that value, and there are that many;
- ``≥3 repos with failures``: output lines (``<name> <number>``) with a number above zero;
- ``key: value`` or ``key = value`` pairs, comma-separated (``enabled: false, reason: "..."``,
  ``version = 20251104_001``, ``Duration: <120s``): the same key in the output, as a
  ``key: value`` line or as a column of a psql table; values compare as numbers when they are
  (``<``, ``≤``, ``>``, ``≥``, units and ``$`` ignored), as ``N/M``, or as text;
- anything else: the output is that text, or has a line that is, or contains it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from rollback_drill.conformance.runbook import Expectation

_PODS: Final = re.compile(
    r"^(?P<running>\d+)\s*/\s*(?P<total>\d+)\s+Running\b(?:\s*,\s*(?P<restarts>\d+)\s+restarts?\b.*)?$", re.IGNORECASE
)
_ALL_RETURN: Final = re.compile(r"^All\s+(?P<count>\d+)\s+[\w-]+\s+returns?\s+(?P<value>.+)$", re.IGNORECASE)
_COUNT_WITH: Final = re.compile(
    r"^(?P<op>≥|>=|>|at least)\s*(?P<count>\d+)\s+(?P<noun>[\w-]+)\s+with\s+(?P<what>[\w -]+)$", re.IGNORECASE
)
_PAIR: Final = re.compile(r"^(?P<key>[A-Za-z][\w .-]*?)\s*(?P<sep>:|=)\s*(?P<value>.+)$")
_PAIR_SPLIT: Final = re.compile(r",\s*(?=[A-Za-z][\w .-]*?\s*(?::|=)\s)")
_NUMBER: Final = re.compile(r"-?\d+(?:\.\d+)?")
_OPERATOR: Final = re.compile(r"^(?P<op><=|>=|≤|≥|<|>|=)?\s*(?P<rest>.*)$")
_TRAILING_NOTE: Final = re.compile(r"\s+\([^()]*\)$")
_FRACTION: Final = re.compile(r"^(?P<a>\d+)\s*/\s*(?P<b>\d+)")
_TABLE_RULE: Final = re.compile(r"^[-+\s]+$")


@dataclass(frozen=True)
class Check:
    """One expectation item against the output."""

    item: str
    holds: bool
    how: str
    """The reader that judged it: ``pods``, ``all lines``, ``count``, ``key: value``, ``text``."""
    detail: str
    """What was seen, in words."""


def _lines(output: str) -> list[str]:
    return [line.rstrip() for line in output.splitlines() if line.strip()]


def _strip_quotes(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _pods(item: str, output: str) -> Check | None:
    match = _PODS.match(item.strip())
    if match is None:
        return None
    lines = _lines(output)
    header = next((i for i, line in enumerate(lines) if line.split()[:1] == ["NAME"] and "STATUS" in line), None)
    if header is None:
        return Check(item, holds=False, how="pods", detail="no `kubectl get pods` table in the output")
    columns = lines[header]
    starts = {name: columns.index(name) for name in ("NAME", "READY", "STATUS", "RESTARTS", "AGE") if name in columns}
    rows = lines[header + 1 :]

    def column(row: str, name: str) -> str:
        """The cell under ``name``'s header: from its start to the next gap of two spaces (cells may hold one)."""
        start = starts.get(name)
        return re.split(r"\s{2,}", row[start:].strip(), maxsplit=1)[0] if start is not None else ""

    # A pod on its way out (Terminating) is not one of the Deployment's replicas any more.
    leaving = sum(1 for row in rows if column(row, "STATUS") == "Terminating")
    rows = [row for row in rows if column(row, "STATUS") != "Terminating"]
    statuses = [column(row, "STATUS") for row in rows]
    restarts = [int(m.group(0)) if (m := _NUMBER.match(column(row, "RESTARTS"))) else 0 for row in rows]
    ready = sum(1 for row in rows if (f := _FRACTION.match(column(row, "READY"))) and f.group("a") == f.group("b"))
    running = statuses.count("Running")
    want_running, want_total = int(match.group("running")), int(match.group("total"))
    holds = running == want_running and len(rows) == want_total
    detail = f"{len(rows)} pod(s), {running} Running, {ready} Ready"
    others = sorted({s for s in statuses if s != "Running"})
    if others:
        detail += f" (also: {', '.join(others)})"
    if leaving:
        detail += f"; {leaving} more Terminating, not counted"
    if match.group("restarts") is not None:
        want_restarts = int(match.group("restarts"))
        holds = holds and all(r == want_restarts for r in restarts)
        detail += f", restarts {', '.join(map(str, restarts)) or 'none'}"
    return Check(item, holds, "pods", detail)


def _all_return(item: str, output: str) -> Check | None:
    match = _ALL_RETURN.match(item.strip())
    if match is None:
        return None
    want = _strip_quotes(match.group("value"))
    lines = [_strip_quotes(line.strip()) for line in _lines(output)]
    count = int(match.group("count"))
    matching = sum(1 for line in lines if line == want)
    holds = len(lines) == count and matching == count
    return Check(item, holds, "all lines", f"{len(lines)} line(s), {matching} of them {want!r}: {lines}")


def _count_with(item: str, output: str) -> Check | None:
    match = _COUNT_WITH.match(item.strip())
    if match is None:
        return None
    positive = []
    for line in _lines(output):
        if line.lstrip().startswith("#"):
            continue
        numbers = _NUMBER.findall(line)
        if numbers and float(numbers[-1]) > 0:
            positive.append(line.split()[0])
    count = int(match.group("count"))
    holds = len(positive) > count if match.group("op") == ">" else len(positive) >= count
    noun = match.group("noun")
    return Check(
        item, holds, "count", f"{len(positive)} {noun} with a count above zero: {', '.join(positive) or 'none'}"
    )


def _table_value(key: str, lines: list[str]) -> str | None:
    """The value under column ``key`` of a psql-style table (header, rule line, first row)."""
    for index, line in enumerate(lines[:-2]):
        cells = [c.strip() for c in (line.split("|") if "|" in line else line.split())]
        lowered = [c.lower() for c in cells]
        if key.lower() in lowered and _TABLE_RULE.match(lines[index + 1]):
            row = lines[index + 2]
            values = [c.strip() for c in (row.split("|") if "|" in line else row.split())]
            position = lowered.index(key.lower())
            if position < len(values):
                return values[position]
    return None


def _output_value(key: str, output: str) -> str | None:
    lines = _lines(output)
    for line in lines:
        match = _PAIR.match(line.strip().lstrip("-* ").strip())
        if match and match.group("key").strip().lower() == key.lower():
            return match.group("value").strip()
    return _table_value(key, lines)


def compare_value(expected: str, actual: str) -> tuple[bool, str]:
    """Compare one expected value (``<120s``, ``≥99%``, ``5/5 passed``, ``"healthy"``, ``true``) with an actual one."""
    expected = _TRAILING_NOTE.sub("", expected.strip())
    parsed = _OPERATOR.match(expected)
    op = parsed.group("op") if parsed else None
    rest = parsed.group("rest") if parsed else expected
    want_fraction, got_fraction = _FRACTION.match(rest), _FRACTION.match(actual.strip())
    if want_fraction and got_fraction and op in {None, "="}:
        same = want_fraction.group("a", "b") == got_fraction.group("a", "b")
        return same, "same fraction" if same else "another fraction"
    want_number = _NUMBER.search(rest.replace(",", ""))
    got_number = _NUMBER.search(actual.replace(",", ""))
    numeric = op in {"<", ">", "<=", ">=", "≤", "≥"} or (
        want_number is not None and want_number.group(0) == re.sub(r"[$%smh\s]", "", rest)
    )
    if numeric and want_number is not None and got_number is not None:
        want, got = float(want_number.group(0)), float(got_number.group(0))
        outcome = {
            "<": got < want,
            ">": got > want,
            "<=": got <= want,
            "≤": got <= want,
            ">=": got >= want,
            "≥": got >= want,
        }.get(op or "=", got == want)
        return outcome, f"{got:g} {'meets' if outcome else 'misses'} {op or '='}{want:g}"
    same = _strip_quotes(rest).lower() == _strip_quotes(actual).lower()
    return same, "same text" if same else "other text"


def _pairs(item: str, output: str) -> Check | None:
    parts = _PAIR_SPLIT.split(item.strip())
    matches = [_PAIR.match(part.strip()) for part in parts]
    if not matches or any(m is None for m in matches):
        return None
    seen: list[str] = []
    holds = True
    for match in matches:
        assert match is not None  # checked above; for the type checker
        key, value = match.group("key").strip(), match.group("value").strip()
        actual = _output_value(key, output)
        if actual is None:
            holds = False
            seen.append(f"no {key!r} in the output")
            continue
        same, how = compare_value(value, actual)
        holds = holds and same
        separator = ":" if match.group("sep") == ":" else " ="
        seen.append(f"{key}{separator} {actual} ({how})")
    return Check(item, holds, "key: value", "; ".join(seen))


def _text(item: str, output: str) -> Check:
    want = item.strip()
    stripped = output.strip()
    if not stripped:
        return Check(item, holds=False, how="text", detail="the output is empty")
    if stripped == want:
        return Check(item, holds=True, how="text", detail="the output is exactly that")
    lines = [line.strip() for line in _lines(output)]
    if want in lines:
        return Check(item, holds=True, how="text", detail="a line of the output reads so")
    if want.lower() in stripped.lower():
        return Check(item, holds=True, how="text", detail="the output contains it")
    shown = stripped if len(stripped) <= 200 else stripped[:197] + "..."
    return Check(item, holds=False, how="text", detail=f"the output is {shown!r}")


_READERS: Final[tuple[Callable[[str, str], Check | None], ...]] = (_pods, _all_return, _count_with, _pairs)


def check_item(item: str, output: str) -> Check:
    for reader in _READERS:
        found = reader(item, output)
        if found is not None:
            return found
    return _text(item, output)


def check_expectation(expectation: Expectation, output: str) -> tuple[Check, ...]:
    return tuple(check_item(item, output) for item in expectation.items)
