"""What one runbook command is made of, read without evaluating anything: its simple commands (program,
arguments, redirections), its loops, the variables it sets and uses, whether it runs in the background, and
the template placeholders (``<fix-manifest>``) left in it.

Built on ``lexer``'s tokens; knows nothing about kubectl or Markdown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from rollback_drill.conformance.lexer import ASSIGNMENT, Incomplete, Token, tokenize, unquote

URL: Final = re.compile(r"https?://[^\s'\"|;&)]+")
"""A URL in a command's text, up to the first character that would end it as a shell word."""
_PLACEHOLDER: Final = re.compile(r"<[A-Za-z][A-Za-z0-9_.-]*(?: [A-Za-z0-9_.-]+)*>")
_VARIABLE: Final = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)[^}]*\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class SimpleCommand:
    """One program call: ``NAME=value`` assignments, the program, its arguments (unquoted) and redirections."""

    program: str | None
    args: tuple[str, ...]
    raw_args: tuple[str, ...]
    assignments: tuple[str, ...] = ()
    redirects: tuple[tuple[str, str], ...] = ()
    in_loop: bool = False
    in_substitution: bool = False


@dataclass(frozen=True)
class Loop:
    variable: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class ShellAnalysis:
    """What a command is made of, read without evaluating anything."""

    commands: tuple[SimpleCommand, ...]
    loops: tuple[Loop, ...]
    assigns: tuple[str, ...]
    """Variables the command sets at its top level (they carry over to the next commands)."""
    uses: tuple[str, ...]
    """Variables it expands."""
    background: bool
    """It ends with ``&``."""
    last_program: str | None
    """The last program of the top-level pipeline (``grep`` in ``kubectl ... | grep x``)."""
    unquoted_ampersand_in_url: tuple[str, ...] = ()
    """URLs that an unquoted ``&`` cuts short (``open https://x?a=1&b=2`` runs ``open https://x?a=1`` in the background)."""


def neutralise_placeholders(text: str) -> str:
    """Unquoted ``<fix-manifest>`` becomes ``__fix-manifest__``, so it reads as the word it stands for, not as redirections."""
    unquoted, _ = placeholders_in(text)
    for placeholder in unquoted:
        text = text.replace(placeholder, f"__{placeholder[1:-1].replace(' ', '_')}__")
    return text


def analyse(text: str) -> ShellAnalysis:
    """The command's programs, loops, variables and shape. Placeholders are read as words (see ``neutralise_placeholders``)."""
    text = neutralise_placeholders(text)
    tokens = tokenize(text)
    commands, loops, assigns = _simple_commands(tokens, in_substitution=False)
    significant = [t for t in tokens if not (t.kind == "op" and t.text == "\n")]
    background = bool(significant) and significant[-1].kind == "op" and significant[-1].text == "&"
    top = [c for c in commands if not c.in_substitution]
    cut_urls = tuple(
        unquote(tokens[index - 1].text)
        for index, token in enumerate(tokens)
        if token.kind == "op"
        and token.text == "&"
        and index > 0
        and tokens[index - 1].kind == "word"
        and URL.search(tokens[index - 1].text)
        and index + 1 < len(tokens)
        and tokens[index + 1].glued_to_previous
    )
    uses = tuple(dict.fromkeys(m.group("braced") or m.group("plain") for m in _VARIABLE.finditer(text)))
    return ShellAnalysis(
        commands=tuple(commands),
        loops=tuple(loops),
        assigns=tuple(dict.fromkeys(assigns)),
        uses=uses,
        background=background,
        last_program=top[-1].program if top else None,
        unquoted_ampersand_in_url=cut_urls,
    )


def _simple_commands(  # noqa: C901, PLR0912, PLR0915 - one pass over the tokens, one branch per shell construct
    tokens: list[Token], *, in_substitution: bool
) -> tuple[list[SimpleCommand], list[Loop], list[str]]:
    commands: list[SimpleCommand] = []
    loops: list[Loop] = []
    assigns: list[str] = []
    loop_depth = 0
    current: dict[str, list[str]] = {"assign": [], "words": [], "raw": [], "redirect": []}
    nested: list[SimpleCommand] = []
    i = 0

    def flush() -> None:
        words = current["words"]
        if words or current["assign"] or current["redirect"]:
            program = unquote(words[0]) if words else None
            commands.append(
                SimpleCommand(
                    program=program,
                    args=tuple(unquote(w) for w in words[1:]),
                    raw_args=tuple(words[1:]),
                    assignments=tuple(current["assign"]),
                    redirects=tuple(zip(current["redirect"][::2], current["redirect"][1::2], strict=False)),
                    in_loop=loop_depth > 0,
                    in_substitution=in_substitution,
                )
            )
            if not words and not in_substitution and loop_depth == 0:
                assigns.extend(a.split("=", 1)[0] for a in current["assign"])
        for key in current:
            current[key] = []

    while i < len(tokens):
        token = tokens[i]
        if token.kind == "op":
            flush()
            i += 1
            continue
        if token.kind == "redirect":
            target = tokens[i + 1].text if i + 1 < len(tokens) and tokens[i + 1].kind == "word" else ""
            current["redirect"] += [token.text, unquote(target)]
            i += 2 if target else 1
            continue
        for body in token.substitutions:
            try:
                inner, inner_loops, _ = _simple_commands(tokenize(body), in_substitution=True)
            except Incomplete:
                continue
            nested.extend(inner)
            loops.extend(inner_loops)
        word = token.text
        at_start = not current["words"]
        if at_start and word == "for" and not current["assign"]:
            variable = tokens[i + 1].text if i + 1 < len(tokens) else ""
            j = i + 2
            items: list[str] = []
            if j < len(tokens) and tokens[j].text == "in":
                j += 1
                while j < len(tokens) and tokens[j].kind == "word":
                    items.append(tokens[j].text)
                    j += 1
            loops.append(Loop(variable, tuple(items)))
            loop_depth += 1
            i = j
            continue
        if at_start and word in {"while", "until"} and not current["assign"]:
            loop_depth += 1
            i += 1
            continue
        if at_start and word == "done" and not current["assign"]:
            loop_depth = max(0, loop_depth - 1)
            i += 1
            continue
        if at_start and word in {"do", "then", "else", "elif", "fi", "if", "{", "}", "!", "esac"}:
            i += 1
            continue
        if at_start and ASSIGNMENT.match(word):
            current["assign"].append(word)
        else:
            current["words"].append(word)
            current["raw"].append(word)
        i += 1
    flush()
    return commands + nested, loops, assigns


def placeholders_in(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(unquoted placeholders, which stop a command; quoted ones, which are text left to fill in)."""
    unquoted: list[str] = []
    quoted: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and quote != "'":
            i += 2
            continue
        if char in {"'", '"'} and (quote is None or quote == char):
            quote = None if quote == char else char
            i += 1
            continue
        if char == "<":
            match = _PLACEHOLDER.match(text, i)
            if match:
                (quoted if quote else unquoted).append(match.group(0))
                i = match.end()
                continue
        i += 1
    return tuple(dict.fromkeys(unquoted)), tuple(dict.fromkeys(quoted))
