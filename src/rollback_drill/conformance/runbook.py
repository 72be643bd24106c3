"""Reading a Markdown runbook in the style of RB-LAUNCH-002: its sections, its fenced ```bash blocks, the
commands in them, each with its section, its step id, its purpose, its documented expectations and its kind.

Inside a block:

- a command is one or more lines that bash would read as one complete command (see
  ``lexer.completeness``). ``&`` at the end keeps the command whole (it is the command, run in the
  background);
- a ``# ...`` comment right above a command is its purpose;
- ``# Expected: ...`` (also ``# Expected for pilot: ...`` and a bare ``# Expected:`` followed
  by one item per comment line, bullets or not) after a command documents what it should
  print; other comments after a command are kept as its notes.

What each command is comes from ``classify``; how it is read as bash from ``shell``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Final

from rollback_drill.conformance.classify import Classification, CommandKind, classify
from rollback_drill.conformance.lexer import Incomplete, completeness, join_continuations
from rollback_drill.conformance.shell import ShellAnalysis, analyse
from rollback_drill.errors import InputError
from rollback_drill.runbook.drill import RUNBOOK_FILE

SHELL_LANGUAGES: Final = frozenset({"bash", "sh", "shell", "zsh"})
"""Fenced blocks of these languages hold commands; every other block (markdown, yaml, ...) is text."""

_BUDGET_SUFFIX: Final = re.compile(
    r"\s*\((?:\d+(?:\s*[-\u2013]\s*\d+)?\s*(?:minutes?|mins?|min|seconds?|secs?|hours?|h|m|s))\)\s*$", re.IGNORECASE
)
_FENCE: Final = re.compile(r"^(?P<indent>\s{0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_HEADING: Final = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.+?)\s*#*\s*$")
_EXPECTED: Final = re.compile(
    r"^Expected(?:\s+for\s+(?P<qualifier>[^:]+?)|\s+(?P<subject>[^:]+?))?\s*:\s*(?P<rest>.*)$", re.IGNORECASE
)
_RUNBOOK_ID: Final = re.compile(r"\*\*Runbook ID:\*\*\s*(?P<id>[A-Z][A-Z0-9-]+)")
_STEP_HEADING: Final = re.compile(r"^Step\s+(?P<n>\d+)\b", re.IGNORECASE)
_NUMBERED_HEADING: Final = re.compile(r"^(?P<n>\d+)\.\s")
_PHASE_HEADING: Final = re.compile(r"^Phase\s+(?P<n>\d+)\b", re.IGNORECASE)


class RunbookParseError(InputError):
    """The runbook cannot be read as a runbook: the message names the file, the line and what to fix."""

    def __init__(self, message: str, *, path: str, line: int | None = None, text: str | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        shown = f": {text.strip()[:120]!r}" if text else ""
        super().__init__(f"{where}: {message}{shown}")
        self.path = path
        self.line = line
        self.text = text


@dataclass(frozen=True)
class Expectation:
    """What the runbook says a command should print."""

    line: int
    """Line of the ``# Expected...`` comment."""
    label: str
    """As written before the colon: ``Expected``, ``Expected for pilot``, ``Expected metrics (pilot repo only)``."""
    items: tuple[str, ...]
    """One per expectation line or bullet, as written (without ``#`` and ``- ``)."""
    qualifier: str | None = None
    """``pilot`` in ``Expected for pilot``: the state the expectation describes."""

    @property
    def text(self) -> str:
        return "; ".join(self.items)


@dataclass(frozen=True)
class RunbookCommand:
    index: int
    """1-based position in the document."""
    line: int
    """Line of the command's first line in the runbook."""
    end_line: int
    section: str
    """Heading path, time budgets removed: ``Pre-Rollback Verification > 3. Backup Current State``; a
    ``Step N: ...`` heading starts the path."""
    section_path: tuple[str, ...]
    step_id: str | None
    """The drill's id for the runbook step (``pre-3``, ``step-4``, ``soak``, ``phase-1``), when known."""
    source: str
    """The lines as written."""
    text: str
    """The command with ``\\`` continuations joined."""
    purpose: str | None
    expectations: tuple[Expectation, ...]
    notes: tuple[str, ...]
    analysis: ShellAnalysis = field(repr=False)
    classification: Classification

    @property
    def kind(self) -> CommandKind:
        return self.classification.kind


@dataclass(frozen=True)
class ParsedRunbook:
    path: str
    runbook_id: str | None
    title: str | None
    sha256: str
    commands: tuple[RunbookCommand, ...]
    bash_blocks: int
    warnings: tuple[str, ...] = ()

    def at_line(self, line: int) -> RunbookCommand:
        for command in self.commands:
            if command.line <= line <= command.end_line:
                return command
        raise InputError(f"{self.path}: no command at line {line}")

    def in_section(self, fragment: str) -> tuple[RunbookCommand, ...]:
        return tuple(c for c in self.commands if fragment in c.section)


def _heading_text(text: str) -> str:
    return _BUDGET_SUFFIX.sub("", text.replace("**", "").strip()).strip()


def section_of(headings: list[tuple[int, str]]) -> tuple[str, ...]:
    """The heading path a block belongs to: from the first level-2 heading down; a ``Step N`` heading starts it afresh."""
    texts = [_heading_text(text) for level, text in headings if level >= 2] or [_heading_text(t) for _, t in headings]
    for index in range(len(texts) - 1, -1, -1):
        if _STEP_HEADING.match(texts[index]):
            return tuple(texts[index:])
    return tuple(texts)


def step_id_of(path: tuple[str, ...]) -> str | None:
    for text in reversed(path):
        match = _STEP_HEADING.match(text)
        if match:
            return f"step-{match.group('n')}"
    joined = " > ".join(path).lower()
    if path and "pre-rollback" in path[0].lower():
        numbered = next((m for m in (_NUMBERED_HEADING.match(t) for t in path[1:]) if m), None)
        if numbered and 1 <= int(numbered.group("n")) <= 3:
            return f"pre-{numbered.group('n')}"
    phase = next((m for m in (_PHASE_HEADING.match(t) for t in reversed(path)) if m), None)
    if phase and "re-enablement" in joined and 1 <= int(phase.group("n")) <= 3:
        return f"phase-{phase.group('n')}"
    if "fix verification" in joined or "soak" in joined:
        return "soak"
    return None


def _comment_text(line: str) -> str:
    return line.strip().lstrip("#").strip()


def _read_comments(
    group: list[tuple[int, str]], *, followed_by_command: bool
) -> tuple[list[Expectation], list[str], list[str]]:
    """A run of comment lines: (expectations and notes for the command before it, purpose lines for the one after)."""
    expectations: list[Expectation] = []
    notes: list[str] = []
    purpose: list[str] = []
    i = 0
    while i < len(group):
        number, raw = group[i]
        text = _comment_text(raw)
        match = _EXPECTED.match(text)
        if match:
            rest = match.group("rest").strip()
            items = [rest] if rest else []
            bulleted = False
            j = i + 1
            while j < len(group):
                follow = _comment_text(group[j][1])
                bullet = follow.startswith(("- ", "* "))
                bulleted = bulleted or bullet
                if (
                    not follow
                    or _EXPECTED.match(follow)
                    or (not bullet and (rest or bulleted or follow.startswith("If ")))
                ):
                    break
                if not bullet and follow.endswith(":"):
                    break
                items.append(follow[2:].strip() if bullet else follow)
                j += 1
            label = text.split(":", 1)[0].strip()
            qualifier = match.group("qualifier")
            expectations.append(Expectation(number, label, tuple(items), qualifier.strip() if qualifier else None))
            i = j
            continue
        if followed_by_command:
            # Right above the next command (after any expectations of the one before): its purpose.
            purpose.append(text)
        else:
            notes.append(text)
        i += 1
    return expectations, notes, purpose


_BlockCommand = tuple[int, int, str, str | None, list[Expectation], list[str]]


def _commands_of_block(  # noqa: C901 - one pass over the block's lines
    lines: list[tuple[int, str]], path: str
) -> tuple[list[_BlockCommand], list[str]]:
    """(first line, last line, source, purpose, expectations, notes) of each command of one bash block, and
    warnings about comments that belong to no command."""
    found: list[_BlockCommand] = []
    orphans: list[str] = []
    group: list[tuple[int, str]] = []
    pending_purpose: list[str] = []

    def close_group(*, followed_by_command: bool) -> list[str]:
        expectations, notes, purpose = _read_comments(group, followed_by_command=followed_by_command)
        if found:
            first, last, source, purpose_before, expected, noted = found[-1]
            found[-1] = (first, last, source, purpose_before, expected + expectations, noted + notes)
        elif expectations or notes:
            what = "; ".join([f"{e.label}: {e.text}" for e in expectations] + notes)
            orphans.append(
                f"{path}:{group[0][0]}: a comment before the first command of its block belongs to none: {what}"
            )
        group.clear()
        return purpose

    i = 0
    while i < len(lines):
        number, line = lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            if stripped:
                group.append((number, line))
            elif group:
                close_group(followed_by_command=False)
            if not stripped:
                pending_purpose = []
            i += 1
            continue
        if group:
            pending_purpose = close_group(followed_by_command=True)
        source_lines = [line]
        j = i + 1
        while (reason := completeness("\n".join(source_lines))) is not None:
            if j >= len(lines):
                raise RunbookParseError(
                    f"the command never ends ({reason}) before its block closes", path=path, line=number, text=line
                )
            source_lines.append(lines[j][1])
            j += 1
        found.append((number, lines[j - 1][0], "\n".join(source_lines), " ".join(pending_purpose) or None, [], []))
        pending_purpose = []
        i = j
    if group:
        close_group(followed_by_command=False)
    return found, orphans


def parse_runbook(path: Path | str, text: str | None = None) -> ParsedRunbook:  # noqa: C901 - one pass over the Markdown
    """Every command of every ```bash block, in document order, with its section, expectations and kind."""
    shown = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"runbook {shown} cannot be read ({exc}); pass a Markdown runbook") from exc
    lines = text.splitlines()
    headings: list[tuple[int, str]] = []
    title: str | None = None
    commands: list[RunbookCommand] = []
    warnings: list[str] = []
    blocks = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            marker = fence.group("fence")
            language = (fence.group("info").split() or [""])[0].lower()
            body: list[tuple[int, str]] = []
            j = i + 1
            while j < len(lines) and not re.match(rf"^\s{{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$", lines[j]):
                body.append((j + 1, lines[j]))
                j += 1
            if j >= len(lines):
                raise RunbookParseError("a fenced block is never closed", path=shown, line=i + 1, text=line)
            if language in SHELL_LANGUAGES:
                blocks += 1
                section_path = section_of(headings)
                block_commands, orphans = _commands_of_block(body, shown)
                warnings.extend(orphans)
                for first, last, source, purpose, expectations, notes in block_commands:
                    try:
                        analysis = analyse(source)
                    except Incomplete as exc:  # completeness() said it was complete; be safe all the same
                        raise RunbookParseError(
                            f"cannot read the command ({exc.reason})", path=shown, line=first
                        ) from exc
                    joined = join_continuations(source)
                    classification = classify(joined, analysis, purpose=purpose)
                    commands.append(
                        RunbookCommand(
                            index=len(commands) + 1,
                            line=first,
                            end_line=last,
                            section=" > ".join(section_path),
                            section_path=section_path,
                            step_id=step_id_of(section_path),
                            source=source,
                            text=joined,
                            purpose=purpose,
                            expectations=tuple(expectations),
                            notes=tuple(notes),
                            analysis=analysis,
                            classification=classification,
                        )
                    )
            i = j + 1
            continue
        heading = _HEADING.match(line)
        if heading:
            level = len(heading.group("hashes"))
            headings = [(lvl, txt) for lvl, txt in headings if lvl < level] + [(level, heading.group("text"))]
            if level == 1 and title is None:
                title = _heading_text(heading.group("text"))
        i += 1
    runbook_id = _RUNBOOK_ID.search(text)
    return ParsedRunbook(
        path=shown,
        runbook_id=runbook_id.group("id") if runbook_id else None,
        title=title,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        commands=tuple(commands),
        bash_blocks=blocks,
        warnings=tuple(warnings),
    )


def default_runbook_path() -> Path:
    """The runbook the drill ships (RB-LAUNCH-002)."""
    return Path(str(resources.files("rollback_drill.data").joinpath(f"runbooks/{RUNBOOK_FILE}")))
