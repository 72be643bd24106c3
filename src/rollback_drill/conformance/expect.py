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

A command can also promise a value without a written expectation: the runbook reads what it
prints. ``value_read_by`` finds those reads (a kubectl ``-o jsonpath=``/``go-template=``/
``custom-columns=`` query, a psql ``SELECT count(...)`` or ``... LIMIT 1``, a ``wc -l``) and
``check_read`` says what is wrong with the output: nothing (kubectl's jsonpath prints an
empty line, exit 0, for a field the object does not have), no row, or not the kind of value
the read is for (a count or a replica number that is no integer).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from rollback_drill.conformance.runbook import Expectation, RunbookCommand

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


# --- values the runbook reads from a command's output ----------------------------------------------------

ReadKind = Literal["text", "integer", "one row"]

_FIELD_QUERY: Final = re.compile(
    r"^(?P<format>jsonpath|jsonpath-as-json|go-template|custom-columns)=(?P<query>.*)$", re.DOTALL
)
_INTEGER_FIELD: Final = re.compile(
    r"(?:replicas|Replicas|[cC]ount|[gG]eneration|[pP]ort|restartCount|revisionHistoryLimit)\}?\s*$"
)
_NO_VALUE: Final = frozenset({"", "<no value>", "<none>", "<nil>", "null"})
_SQL_COUNT: Final = re.compile(r"^\s*SELECT\s+count\s*\(", re.IGNORECASE)
_SQL_ONE_ROW: Final = re.compile(r"^\s*SELECT\b.*\bLIMIT\s+1\b", re.IGNORECASE | re.DOTALL)
_ROWS_FOOTER: Final = re.compile(r"^\((?P<rows>\d+) rows?\)$")
_INTEGER: Final = re.compile(r"^-?\d+$")
_STDOUT_REDIRECTS: Final = frozenset({">", ">>", ">|", "&>", "&>>", "1>", "1>>"})
_PSQL_VALUE_FLAGS: Final = frozenset("dUhpfvPFRoLT")


@dataclass(frozen=True)
class ReadValue:
    """A value the runbook reads from what a command prints, and the kind it must be."""

    what: str
    """In words, for the reason of a drift: ``the field {.spec.replicas}``, ``the query's one row``."""
    kind: ReadKind
    source: Literal["kubectl", "psql", "wc"]
    tuples_only: bool = False
    """psql ``-t``: rows only, no header or ``(N rows)`` footer."""


def value_read_by(command: RunbookCommand) -> ReadValue | None:  # noqa: PLR0911 - one answer per program
    """The value ``command``'s output is read for, when its last program's output is the command's own; else None."""
    analysis = command.analysis
    top = [c for c in analysis.commands if not c.in_substitution and c.program]
    if analysis.background or not top or top[-1].program != analysis.last_program:
        return None
    last = top[-1]
    if any(op in _STDOUT_REDIRECTS for op, _ in last.redirects):
        return None  # written to a file, not read from the output
    if last.program == "wc" and any(a == "-l" for a in last.args):
        return ReadValue("the line count of `wc -l`", "integer", "wc")
    args = list(last.args)
    if last.program == "kubectl" and "--" in args:
        inner = args[args.index("--") + 1 :]
        return _psql_read(inner[1:]) if inner[:1] == ["psql"] else None
    if last.program == "psql":
        return _psql_read(args)
    if last.program == "kubectl":
        return _kubectl_read(args)
    return None


def _kubectl_read(args: list[str]) -> ReadValue | None:
    for index, arg in enumerate(args):
        value: str | None = None
        if arg in {"-o", "--output"} and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--output="):
            value = arg.removeprefix("--output=")
        elif arg.startswith("-o") and arg != "-o":
            value = arg.removeprefix("-o").removeprefix("=")
        match = _FIELD_QUERY.match(value or "")
        if match is None:
            continue
        query = match.group("query").strip("'\"")
        single = match.group("format") in {"jsonpath", "go-template"} and "range" not in query
        kind: ReadKind = "integer" if single and _INTEGER_FIELD.search(query) else "text"
        return ReadValue(f"the field {query}", kind, "kubectl")
    return None


def _psql_read(args: list[str]) -> ReadValue | None:
    sql: str | None = None
    tuples_only = False
    wants_value = False
    for arg in args:
        if wants_value:
            sql, wants_value = arg, False
            continue
        if arg == "--tuples-only":
            tuples_only = True
        elif arg.startswith("--command="):
            sql = arg.removeprefix("--command=")
        elif arg == "--command":
            wants_value = True
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 1 and arg[1] not in _PSQL_VALUE_FLAGS:
            # A group of switches (-t, -tA, -tAc SQL); -U NAME, -dNAME and the like carry a value instead.
            flags = arg[1:]
            tuples_only = tuples_only or "t" in flags
            wants_value = flags.endswith("c")
    if sql is None:
        return None
    if _SQL_COUNT.match(sql):
        return ReadValue("the count of the query", "integer", "psql", tuples_only)
    if _SQL_ONE_ROW.match(sql):
        return ReadValue("the query's one row (LIMIT 1)", "one row", "psql", tuples_only)
    return None


def _psql_rows(output: str, *, tuples_only: bool) -> list[str] | None:
    """The rows psql printed (their text, an empty value kept), or None when the output is not psql's table."""
    if tuples_only:
        return [line.strip() for line in _lines(output)]
    raw = output.splitlines()
    footer = next((i for i, line in enumerate(raw) if _ROWS_FOOTER.match(line.strip())), None)
    if footer is None:
        return None if output.strip() else []
    header = next(i for i, line in enumerate(raw) if line.strip())
    start = header + 2 if header + 1 < footer and _TABLE_RULE.match(raw[header + 1]) else header + 1
    return [line.strip() for line in raw[start:footer]] if start <= footer else []


def _first_cell(row: str) -> str:
    return row.split("|", 1)[0].strip()


def check_read(read: ReadValue, output: str) -> str | None:
    """What is wrong with ``output`` as ``read``'s value (an empty line, no row, not an integer); None when it fits."""
    if read.source == "psql":
        return _check_psql_read(read, output)
    stripped = output.strip()
    if stripped in _NO_VALUE:
        what = "an empty line" if output else "nothing"
        return (
            f"the runbook reads {read.what}, and the command printed {what} (exit 0): "
            "the value is not there (kubectl prints an empty line for a field the object does not have)"
        )
    if read.kind == "integer" and not _INTEGER.match(stripped):
        return f"the runbook reads {read.what}, an integer, and the output is {_shown(stripped)}"
    return None


def _check_psql_read(read: ReadValue, output: str) -> str | None:
    stripped = output.strip()
    rows = _psql_rows(output, tuples_only=read.tuples_only)
    if rows is None:
        return f"the runbook reads {read.what}, and the output is no psql result: {_shown(stripped)}"
    if not rows:
        return f"the runbook reads {read.what}, and the query returned no row ({_shown(stripped)})"
    value = _first_cell(rows[0])
    if value in _NO_VALUE:
        return f"the runbook reads {read.what}, and its value is empty"
    if read.kind == "integer" and not _INTEGER.match(value):
        return f"the runbook reads {read.what}, an integer, and the output has {value!r}"
    return None


def _shown(text: str) -> str:
    if not text:
        return "empty"
    return repr(text if len(text) <= 120 else text[:117] + "...")
