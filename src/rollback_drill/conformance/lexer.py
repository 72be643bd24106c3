"""Bash's words, for the subset of bash that runbooks use: tokens, quoting, substitutions, redirections,
heredocs, and whether a text is one complete command yet.

Bash reads a command over several lines when a ``\\`` continuation, an open quote, an open
``$(``, a pipe or ``&&`` at the end of a line, a heredoc, or an open ``for``/``while``/``if``/
``case`` keeps it going; ``completeness`` says which of these keeps a text open. Nothing here
evaluates anything, and nothing here knows about kubectl or Markdown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

ASSIGNMENT: Final = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=")
"""A ``NAME=value`` word."""

_KEYWORDS_OPENING: Final = {
    "for": "done",
    "while": "done",
    "until": "done",
    "select": "done",
    "if": "fi",
    "case": "esac",
}
_KEYWORDS_CLOSING: Final = frozenset({"done", "fi", "esac"})
_KEYWORDS_KEEP_POSITION: Final = frozenset({"do", "then", "else", "elif", "!", "time", "{"})
_CONTINUING_OPS: Final = frozenset({"|", "||", "&&", "|&"})


@dataclass(frozen=True)
class Token:
    """A word, an operator (``|``, ``&&``, ``;``, ``&``, newline, parentheses) or a redirection."""

    kind: Literal["word", "op", "redirect"]
    text: str
    start: int
    substitutions: tuple[str, ...] = ()
    """Bodies of the ``$(...)`` and backquote substitutions inside a word."""
    glued_to_previous: bool = False
    """No white space between this token and the previous one (``...now-10m&to=now``)."""


class Incomplete(Exception):
    # A signal between the lexer and the line joiner, not a failure.
    """The text ends inside a construct; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _skip_quoted(text: str, i: int, quote: str) -> int:
    """Index just past the quote that closes the one at ``text[i]``."""
    j = i + 1
    while j < len(text):
        char = text[j]
        if quote == "'" and char == "'":
            return j + 1
        if quote == '"':
            if char == "\\":
                j += 2
                continue
            if char == '"':
                return j + 1
            if text.startswith("$(", j):
                j = _skip_substitution(text, j + 1)
                continue
            if char == "`":
                j = _skip_backquote(text, j)
                continue
        j += 1
    raise Incomplete(f"an open {quote} quote")


def _skip_backquote(text: str, i: int) -> int:
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == "`":
            return j + 1
        j += 1
    raise Incomplete("an open ` substitution")


def _skip_substitution(text: str, i: int) -> int:
    """``text[i]`` is the ``(`` of ``$(``; return the index just past its ``)``."""
    depth = 0
    j = i
    while j < len(text):
        char = text[j]
        if char in {"'", '"'}:
            j = _skip_quoted(text, j, char)
            continue
        if char == "\\":
            j += 2
            continue
        if char == "`":
            j = _skip_backquote(text, j)
            continue
        if char == "#" and (j == 0 or text[j - 1] in " \t\n;(|&"):
            end = text.find("\n", j)
            j = len(text) if end < 0 else end
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise Incomplete("an open $( substitution")


def _skip_braced(text: str, i: int) -> int:
    end = text.find("}", i)
    if end < 0:
        raise Incomplete("an open ${ expansion")
    return end + 1


_OPERATORS: Final = ("&&", "||", ";;", "|&", "|", "&", ";", "(", ")")
_REDIRECTS: Final = ("<<<", "<<-", "<<", ">>", "&>", ">&", "<&", ">|", "<>", ">", "<")


class _Lexer:
    """Tokens of a (possibly multi-line) command; raises ``Incomplete`` when bash would read on."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[Token] = []
        self._heredocs: list[tuple[str, bool]] = []

    def run(self) -> list[Token]:
        text = self.text
        i = 0
        glued = False
        while i < len(text):
            char = text[i]
            if char in " \t":
                i += 1
                glued = False
                continue
            if char == "\\" and text.startswith("\\\n", i):
                i += 2
                glued = False
                continue
            if char == "\n":
                self.tokens.append(Token("op", "\n", i))
                i = self._heredoc_bodies(i + 1)
                glued = False
                continue
            if char == "#" and not glued:
                end = text.find("\n", i)
                i = len(text) if end < 0 else end
                continue
            redirect = self._redirect_at(i)
            if redirect:
                self.tokens.append(Token("redirect", redirect, i, glued_to_previous=glued))
                i += len(redirect)
                if redirect in {"<<", "<<-"}:
                    i = self._heredoc_word(i, strip_tabs=redirect == "<<-")
                glued = True
                continue
            operator = next((op for op in _OPERATORS if text.startswith(op, i)), None)
            if operator:
                self.tokens.append(Token("op", operator, i, glued_to_previous=glued))
                i += len(operator)
                glued = True
                continue
            i = self._word(i, glued)
            glued = True
        if self._heredocs:
            raise Incomplete(f"a heredoc without its {self._heredocs[0][0]} line")
        return self.tokens

    def _redirect_at(self, i: int) -> str | None:
        text = self.text
        j = i
        while j < len(text) and text[j].isdigit():
            j += 1
        for redirect in _REDIRECTS:
            if text.startswith(redirect, j) and (j == i or redirect[0] in "<>"):
                return text[i : j + len(redirect)]
        return None

    def _word(self, i: int, glued: bool) -> int:
        text = self.text
        start = i
        substitutions: list[str] = []
        while i < len(text):
            char = text[i]
            if char in " \t\n" or any(text.startswith(op, i) for op in ("|", "&", ";", "(", ")", "<", ">")):
                if char == "(" and i > start and text[i - 1] == "=":
                    # NAME=( ... ) array assignment: keep it in the word.
                    i = _skip_substitution(text, i)
                    continue
                break
            if char in {"'", '"'}:
                j = _skip_quoted(text, i, char)
                substitutions += _substitutions_in(text[i:j]) if char == '"' else []
                i = j
            elif char == "\\":
                if i + 1 >= len(text):
                    raise Incomplete("a \\ at the end")
                i += 2
            elif text.startswith("$(", i):
                j = _skip_substitution(text, i + 1)
                substitutions.append(text[i + 2 : j - 1])
                i = j
            elif text.startswith("${", i):
                i = _skip_braced(text, i)
            elif char == "`":
                j = _skip_backquote(text, i)
                substitutions.append(text[i + 1 : j - 1])
                i = j
            else:
                i += 1
        self.tokens.append(Token("word", text[start:i], start, tuple(substitutions), glued_to_previous=glued))
        return i

    def _heredoc_word(self, i: int, *, strip_tabs: bool) -> int:
        text = self.text
        while i < len(text) and text[i] in " \t":
            i += 1
        start = i
        i = self._word(i, glued=True)
        raw = text[start:i]
        delimiter = raw.replace("'", "").replace('"', "").replace("\\", "")
        if not delimiter:
            raise Incomplete("a heredoc without its delimiter")
        self._heredocs.append((delimiter, strip_tabs))
        return i

    def _heredoc_bodies(self, i: int) -> int:
        text = self.text
        while self._heredocs:
            delimiter, strip_tabs = self._heredocs[0]
            end = text.find("\n", i)
            if end < 0 and i >= len(text):
                raise Incomplete(f"a heredoc without its {delimiter} line")
            line = text[i:] if end < 0 else text[i:end]
            i = len(text) if end < 0 else end + 1
            if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                self._heredocs.pop(0)
        return i


def _substitutions_in(quoted: str) -> list[str]:
    found = []
    i = 0
    while i < len(quoted):
        if quoted.startswith("$(", i):
            j = _skip_substitution(quoted, i + 1)
            found.append(quoted[i + 2 : j - 1])
            i = j
        elif quoted[i] == "\\":
            i += 2
        else:
            i += 1
    return found


def tokenize(text: str) -> list[Token]:
    """Tokens of ``text``; ``Incomplete`` when bash would read another line."""
    return _Lexer(text).run()


def completeness(text: str) -> str | None:
    """None when ``text`` is one complete command (or several); otherwise what keeps it open."""
    try:
        tokens = tokenize(text)
    except Incomplete as exc:
        return exc.reason
    if text.rstrip(" \t").endswith("\\") and not text.endswith("\\\\"):
        return "a \\ continuation"
    significant = [t for t in tokens if not (t.kind == "op" and t.text == "\n")]
    if significant and significant[-1].kind == "op" and significant[-1].text in _CONTINUING_OPS:
        return f"a {significant[-1].text} at the end of the line"
    depth = _compound_depth(tokens)
    if depth:
        return f"an open {depth[-1][0]} (waiting for {depth[-1][1]})"
    return None


def _compound_depth(tokens: list[Token]) -> list[tuple[str, str]]:  # noqa: C901 - one branch per shell keyword
    stack: list[tuple[str, str]] = []
    command_position = True
    for token in tokens:
        if token.kind == "op":
            if token.text == "(":
                stack.append(("(", ")"))
            elif token.text == ")" and stack and stack[-1][1] == ")":
                stack.pop()
            command_position = True
            continue
        if token.kind == "redirect":
            continue
        word = token.text
        if command_position and word in _KEYWORDS_OPENING:
            stack.append((word, _KEYWORDS_OPENING[word]))
            command_position = False
        elif command_position and word in _KEYWORDS_CLOSING and stack and stack[-1][1] == word:
            stack.pop()
            command_position = False
        elif command_position and word == "{":
            stack.append(("{", "}"))
        elif command_position and word == "}" and stack and stack[-1][1] == "}":
            stack.pop()
        elif command_position and (word in _KEYWORDS_KEEP_POSITION or ASSIGNMENT.match(word)):
            command_position = True
        else:
            command_position = False
    return stack


def join_continuations(text: str) -> str:
    """``\\`` + newline (and the next line's indentation) become one space, except inside single quotes."""
    out: list[str] = []
    i = 0
    quote: str | None = None
    while i < len(text):
        char = text[i]
        if quote == "'":
            out.append(char)
            if char == "'":
                quote = None
            i += 1
            continue
        if char == "\\" and text.startswith("\\\n", i):
            i += 2
            while i < len(text) and text[i] in " \t":
                i += 1
            if out and out[-1] not in " \t":
                out.append(" ")
            continue
        if char == "\\" and i + 1 < len(text):
            out.append(text[i : i + 2])
            i += 2
            continue
        if char == '"':
            quote = None if quote == '"' else ('"' if quote is None else quote)
        elif char == "'" and quote is None:
            quote = "'"
        out.append(char)
        i += 1
    return "".join(out).strip()


def unquote(word: str) -> str:
    """A word as the program sees it, quotes and backslashes removed; expansions are left as written."""
    out: list[str] = []
    i = 0
    while i < len(word):
        char = word[i]
        if char == "'":
            end = word.find("'", i + 1)
            end = len(word) if end < 0 else end
            out.append(word[i + 1 : end])
            i = end + 1
        elif char == '"':
            j = i + 1
            while j < len(word) and word[j] != '"':
                if word[j] == "\\" and j + 1 < len(word) and word[j + 1] in '"\\$`':
                    out.append(word[j + 1])
                    j += 2
                    continue
                out.append(word[j])
                j += 1
            i = j + 1
        elif char == "\\" and i + 1 < len(word):
            out.append(word[i + 1])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)
