"""Reading a runbook: its ```bash blocks, split into commands, each with its section, its documented
expectations and its kind.

A runbook "in the style of RB-LAUNCH-002" is Markdown with ATX headings and fenced ```bash
blocks. Inside a block:

- a command is one or more lines that bash would read as one complete command: a ``\\``
  continuation, an open quote, an open ``$(``, a pipe or ``&&`` at the end of a line, a
  heredoc, or an open ``for``/``while``/``if``/``case`` keep the command going. ``&`` at the
  end keeps the command whole (it is the command, run in the background);
- a ``# ...`` comment right above a command is its purpose;
- ``# Expected: ...`` (also ``# Expected for pilot: ...`` and a bare ``# Expected:`` followed
  by one item per comment line, bullets or not) after a command documents what it should
  print; other comments after a command are kept as its notes.

Classification says what the conformance run can do with a command (``kubectl`` runs
against the drill cluster; the ``kubectl-exec-*``, ``blocks`` and ``notify`` kinds are mapped
onto the TaskDB, FlowEngine and the notification sinks; ``shell`` runs the kubectl inside;
``manual`` is for a person), with the reason, and whether it can run at all.

The shell reading is a small lexer for the subset of bash runbooks use. It never
evaluates anything.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from rollback_drill.errors import InputError

CommandKind = Literal["kubectl", "kubectl-exec-db", "kubectl-exec-http", "blocks", "notify", "shell", "manual", "other"]
KINDS: Final[tuple[CommandKind, ...]] = (
    "kubectl",
    "kubectl-exec-db",
    "kubectl-exec-http",
    "blocks",
    "notify",
    "shell",
    "manual",
    "other",
)

SHELL_LANGUAGES: Final = frozenset({"bash", "sh", "shell", "zsh"})
"""Fenced blocks of these languages hold commands; every other block (markdown, yaml, ...) is text."""

BROWSER_PROGRAMS: Final = frozenset({"open", "xdg-open", "sensible-browser", "firefox", "google-chrome", "chromium"})
NOTIFY_PROGRAMS: Final = frozenset({"slack-cli", "pagerduty", "mail", "mailx"})
DB_TOOLS: Final = frozenset({"psql", "pg_dump", "pg_restore", "pg_dumpall"})
HTTP_TOOLS: Final = frozenset({"curl", "wget"})
BLOCKS_SUBCOMMANDS: Final = frozenset(
    {("config", "show"), ("generate",), ("verify",), ("metrics", "query"), ("test", "soak"), ("test", "rollback")}
)
"""What the ``blocks`` stand-in maps onto the FlowEngine client."""

TEXT_TOOLS: Final = frozenset(
    {
        "echo", "printf", "grep", "egrep", "fgrep", "jq", "gzip", "gunzip", "zcat", "date", "head", "tail",
        "sort", "uniq", "wc", "cut", "tr", "cat", "tee", "sleep", "true", "false", "test", "[", "base64",
        "awk", "sed", "mkdir",
    }
)  # fmt: skip
"""Programs a runbook command may pipe through. Anything else (and any absolute path) is not run."""

FORBIDDEN_BUILTINS: Final = frozenset({"eval", "source", ".", "exec", "trap", "alias", "builtin", "command", "enable"})
CLUSTER_FLAGS: Final = frozenset(
    {"--kubeconfig", "--context", "--cluster", "--server", "-s", "--token", "--user", "--as", "--as-group"}
)
"""kubectl flags that would aim a command at another cluster or identity than the drill's."""

_KUBECTL_VALUE_FLAGS: Final = frozenset(
    {
        "-n", "--namespace", "-l", "--selector", "-o", "--output", "-c", "--container", "-f", "--filename",
        "--type", "-p", "--patch", "--timeout", "--tail", "--replicas", "--since", "--field-selector", "-L",
        "--label-columns", "--template", "--sort-by", "-k", "--kustomize", "--request-timeout", "--image",
        *CLUSTER_FLAGS,
    }
)  # fmt: skip
_KUBECTL_TWO_WORD_VERBS: Final = frozenset({"rollout", "set", "config", "auth", "top", "certificate", "create"})
_RESOURCE_ALIASES: Final = {
    "deployment": "deployment", "deployments": "deployment", "deploy": "deployment", "deployment.apps": "deployment",
    "configmap": "configmap", "configmaps": "configmap", "cm": "configmap",
    "prometheusrule": "prometheusrule", "prometheusrules": "prometheusrule", "promrule": "prometheusrule",
    "prometheusrules.monitoring.coreos.com": "prometheusrule",
    "pod": "pods", "pods": "pods", "po": "pods",
    "statefulset": "statefulset", "statefulsets": "statefulset", "sts": "statefulset",
    "service": "service", "services": "service", "svc": "service",
    "lease": "lease", "leases": "lease", "namespace": "namespace", "namespaces": "namespace", "ns": "namespace",
    "secret": "secret", "secrets": "secret", "replicaset": "replicaset", "replicasets": "replicaset", "rs": "replicaset",
}  # fmt: skip
_BUDGET_SUFFIX: Final = re.compile(
    r"\s*\((?:\d+(?:\s*[-\u2013]\s*\d+)?\s*(?:minutes?|mins?|min|seconds?|secs?|hours?|h|m|s))\)\s*$", re.IGNORECASE
)
_FENCE: Final = re.compile(r"^(?P<indent>\s{0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_HEADING: Final = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.+?)\s*#*\s*$")
_EXPECTED: Final = re.compile(
    r"^Expected(?:\s+for\s+(?P<qualifier>[^:]+?)|\s+(?P<subject>[^:]+?))?\s*:\s*(?P<rest>.*)$", re.IGNORECASE
)
_ASSIGNMENT: Final = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=")
_PLACEHOLDER: Final = re.compile(r"<[A-Za-z][A-Za-z0-9_.-]*(?: [A-Za-z0-9_.-]+)*>")
_VARIABLE: Final = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)[^}]*\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_URL: Final = re.compile(r"https?://[^\s'\"|;&)]+")
_LOOPBACK_URL: Final = re.compile(r"^https?://(?:localhost|127\.0\.0\.1|\[::1\])(?::\d+)?(?:/|$)")
_RUNBOOK_ID: Final = re.compile(r"\*\*Runbook ID:\*\*\s*(?P<id>[A-Z][A-Z0-9-]+)")
_STEP_HEADING: Final = re.compile(r"^Step\s+(?P<n>\d+)\b", re.IGNORECASE)
_NUMBERED_HEADING: Final = re.compile(r"^(?P<n>\d+)\.\s")
_PHASE_HEADING: Final = re.compile(r"^Phase\s+(?P<n>\d+)\b", re.IGNORECASE)

_CLUSTER_VERBS: Final = frozenset({"config view", "version", "api-resources", "cluster-info", "get nodes"})
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
_SEPARATORS: Final = frozenset({";", "&", "|", "||", "&&", "|&", "\n", "(", ")", ";;"})


class RunbookParseError(InputError):
    """The runbook cannot be read as a runbook: the message names the file, the line and what to fix."""

    def __init__(self, message: str, *, path: str, line: int | None = None, text: str | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        shown = f": {text.strip()[:120]!r}" if text else ""
        super().__init__(f"{where}: {message}{shown}")
        self.path = path
        self.line = line
        self.text = text


# --- the shell subset ----------------------------------------------------------------------------


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
        elif command_position and (word in _KEYWORDS_KEEP_POSITION or _ASSIGNMENT.match(word)):
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
        and _URL.search(tokens[index - 1].text)
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
        if at_start and _ASSIGNMENT.match(word):
            current["assign"].append(word)
        else:
            current["words"].append(word)
            current["raw"].append(word)
        i += 1
    flush()
    return commands + nested, loops, assigns


# --- kubectl --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubectlCall:
    """A kubectl command line, read: verb, the objects it names, namespace, and the flags that matter here."""

    verb: str
    targets: tuple[str, ...]
    """``deployment/flowengine``, ``configmap/repo-config``, ``prometheusrule/${repo}-alerts``, ``prometheusrule``
    (a listing), ``pods(app=flowengine)``."""
    namespace: str | None
    cluster_flags: tuple[str, ...]
    exec_target: str | None = None
    exec_command: tuple[str, ...] = ()
    selector: str | None = None


def _resource(kind: str) -> str:
    return _RESOURCE_ALIASES.get(kind.lower(), kind.lower())


def read_kubectl(args: tuple[str, ...]) -> KubectlCall:  # noqa: C901, PLR0912 - kubectl's grammar, flag by flag
    positional: list[str] = []
    namespace: str | None = None
    selector: str | None = None
    cluster_flags: list[str] = []
    after_dashes: tuple[str, ...] = ()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            after_dashes = args[i + 1 :]
            break
        if arg.startswith("-") and len(arg) > 1:
            name, has_value, value = arg.partition("=")
            if not has_value and name.startswith("-n") and not name.startswith("--") and len(name) > 2:
                name, value, has_value = "-n", name[2:], "="
            if name in CLUSTER_FLAGS:
                cluster_flags.append(name)
            if not has_value and name in _KUBECTL_VALUE_FLAGS:
                value = args[i + 1] if i + 1 < len(args) else ""
                i += 1
            if name in {"-n", "--namespace"}:
                namespace = value
            elif name in {"-l", "--selector"}:
                selector = value
            i += 1
            continue
        positional.append(arg)
        i += 1
    if not positional:
        return KubectlCall("", (), namespace, tuple(cluster_flags))
    verb = positional[0]
    rest = positional[1:]
    if verb in _KUBECTL_TWO_WORD_VERBS and rest:
        verb = f"{verb} {rest[0]}"
        rest = rest[1:]
    targets: list[str] = []
    exec_target = None
    if verb == "exec":
        exec_target = rest[0] if rest else None
        targets = [_normalise_ref(exec_target)] if exec_target else []
    elif rest and "/" in rest[0]:
        targets = [_normalise_ref(r) for r in rest if "/" in r and "=" not in r]
    elif rest:
        kind = _resource(rest[0].split(",")[0])
        names = [r for r in rest[1:] if "=" not in r]
        if verb in {"logs", "port-forward", "attach"}:
            targets = [f"pods/{rest[0]}"]
        elif names:
            targets = [f"{kind}/{name}" for name in names]
        else:
            targets = [f"{kind}({selector})" if selector else kind]
    return KubectlCall(verb, tuple(targets), namespace, tuple(cluster_flags), exec_target, after_dashes, selector)


def _normalise_ref(ref: str) -> str:
    kind, _, name = ref.partition("/")
    return f"{_resource(kind)}/{name}" if name else _resource(kind)


# --- the document ---------------------------------------------------------------------------------


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
class Classification:
    kind: CommandKind
    reason: str
    runnable: bool
    targets: tuple[str, ...] = ()
    """kubectl objects it names (see ``KubectlCall.targets``)."""
    namespaces: tuple[str | None, ...] = ()
    programs: tuple[str, ...] = ()
    placeholders: tuple[str, ...] = ()
    """Template placeholders left to fill (``<fix-manifest>``, ``<your-name>``)."""
    lint: tuple[str, ...] = ()
    """Problems of the command as written that do not stop it from running."""


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


# --- classification -------------------------------------------------------------------------------


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


def _exec_kind(call: KubectlCall) -> tuple[CommandKind, str, bool]:
    target = call.exec_target or "?"
    inner = call.exec_command[0] if call.exec_command else ""
    where = f"{target} in {call.namespace or 'the default namespace'}"
    if inner in DB_TOOLS and "postgres" in target.lower():
        return (
            "kubectl-exec-db",
            (
                f"{inner} through `kubectl exec {where}`: runs against the drill's TaskDB "
                "(the PostgreSQL the drill plays deployment/postgres with)"
            ),
            True,
        )
    if inner in HTTP_TOOLS and "flowengine" in target.lower():
        return (
            "kubectl-exec-http",
            f"{inner} inside {where}: sent to the drill's FlowEngine URL instead of localhost in the pod",
            True,
        )
    return ("other", f"`kubectl exec {where} -- {inner}`: the drill has no stand-in for this", False)


def classify(  # noqa: C901, PLR0912, PLR0915 - one rule per kind, in order of precedence
    text: str, analysis: ShellAnalysis, *, purpose: str | None = None
) -> Classification:
    """What the conformance run can do with this command, and why."""
    del purpose
    commands = analysis.commands
    kubectl_calls = [(c, read_kubectl(c.args)) for c in commands if c.program == "kubectl"]
    exec_programs = [call.exec_command[0] for _, call in kubectl_calls if call.verb == "exec" and call.exec_command]
    programs = tuple(dict.fromkeys([*(c.program for c in commands if c.program), *exec_programs]))
    unquoted_placeholders, quoted_placeholders = placeholders_in(text)
    placeholders = unquoted_placeholders + quoted_placeholders
    lint: list[str] = [
        (
            f"an unquoted & cuts the URL {url!r} short: the shell runs the command in the background and "
            "treats the rest as a new command; quote the URL"
        )
        for url in analysis.unquoted_ampersand_in_url
    ]
    targets = tuple(dict.fromkeys(t for _, call in kubectl_calls for t in call.targets))
    namespaces = tuple(call.namespace for _, call in kubectl_calls)

    def result(kind: CommandKind, reason: str, *, runnable: bool) -> Classification:
        return Classification(kind, reason, runnable, targets, namespaces, programs, placeholders, tuple(lint))

    browser = next((c for c in commands if c.program in BROWSER_PROGRAMS), None)
    if browser is not None:
        url = next((a for a in browser.args if _URL.match(a)), " ".join(browser.args))
        return result("manual", f"opens {url} in a browser: a person reads it", runnable=False)
    if not programs and not analysis.assigns:
        return result("other", "no program to run", runnable=False)
    kind: CommandKind | None = None
    reason = ""
    runnable = True
    execs = [call for _, call in kubectl_calls if call.verb == "exec"]
    if execs:
        kind, reason, runnable = _exec_kind(execs[0])
        if any(_exec_kind(call)[0] != kind for call in execs[1:]):
            kind, reason, runnable = "other", "kubectl exec into more than one kind of target", False
    elif "blocks" in programs:
        call = next(c for c in commands if c.program == "blocks")
        words = tuple(a for a in call.args if not a.startswith("-"))
        sub = next((s for s in BLOCKS_SUBCOMMANDS if words[: len(s)] == s), None)
        if sub is None:
            kind, reason, runnable = "blocks", f"`blocks {' '.join(words[:2])}` has no mapping onto FlowEngine", False
        else:
            kind, reason = "blocks", f"`blocks {' '.join(sub)}`: mapped onto the FlowEngine client"
    elif set(programs) & NOTIFY_PROGRAMS:
        tool = next(p for p in programs if p in NOTIFY_PROGRAMS)
        kind, reason = "notify", f"{tool}: delivered to the drill's local notification sinks"
    elif "curl" in programs or "wget" in programs:
        urls = [u for c in commands if c.program in HTTP_TOOLS for u in (_URL.findall(" ".join(c.args)))]
        external = [u for u in urls if not _LOOPBACK_URL.match(u)]
        status_page = [u for u in external if re.match(r"https?://status\.", u)]
        if status_page:
            kind, reason = "notify", f"status page API ({status_page[0]}): sent to the drill's status-page sink"
        elif external:
            kind, reason, runnable = "other", f"talks to {external[0]}, which the drill has no stand-in for", False
        else:
            kind, reason, runnable = "other", "an HTTP call to localhost outside any pod", False
    elif kubectl_calls:
        wrapped = analysis.assigns or analysis.loops or any(c.in_substitution for c, _ in kubectl_calls)
        verbs = ", ".join(dict.fromkeys(f"kubectl {call.verb}" for _, call in kubectl_calls))
        if wrapped:
            shape = []
            if analysis.assigns:
                shape.append(f"sets {', '.join(analysis.assigns)}")
            if analysis.loops:
                shape.append("loops over " + ", ".join(f"${loop.variable}" for loop in analysis.loops))
            kind, reason = "shell", f"{' and '.join(shape) or 'wraps kubectl'}: runs the {verbs} inside"
        else:
            kind, reason = "kubectl", f"{verbs}: runs against the drill cluster with its kubeconfig"
    else:
        kind = "shell"
        if analysis.assigns and not programs:
            reason = f"sets {', '.join(analysis.assigns)} for the commands after it"
        else:
            reason = f"{', '.join(programs)}: plain shell, run as written"
    # Reasons not to run it at all, whatever its kind.
    if runnable:
        refusal = _refusal(commands, kubectl_calls, unquoted_placeholders, kind)
        if refusal:
            runnable = False
            reason = f"{reason}; not run: {refusal}"
    unscoped = next(
        (call for _, call in kubectl_calls if call.verb and call.namespace is None and call.verb not in _CLUSTER_VERBS),
        None,
    )
    if unscoped is not None:
        lint.append(
            f"`kubectl {unscoped.verb}` names no namespace: it acts in the namespace of the kubeconfig's context "
            "(usually default), not where the runbook's objects are"
        )
    return result(kind, reason, runnable=runnable)


def _refusal(  # noqa: C901, PLR0911, PLR0912 - one reason not to run per rule, in order
    commands: tuple[SimpleCommand, ...],
    kubectl_calls: list[tuple[SimpleCommand, KubectlCall]],
    placeholders: tuple[str, ...],
    kind: CommandKind,
) -> str | None:
    if placeholders:
        return f"it holds the template placeholder {', '.join(placeholders)}, to be filled in for a real incident"
    for _, call in kubectl_calls:
        if call.cluster_flags:
            return f"it names its own cluster or identity ({', '.join(call.cluster_flags)})"
    allowed = TEXT_TOOLS | {"kubectl"}
    if kind == "kubectl-exec-db":
        allowed |= DB_TOOLS
    if kind in {"kubectl-exec-http", "notify"}:
        allowed |= HTTP_TOOLS
    if kind == "blocks":
        allowed |= {"blocks"}
    if kind == "notify":
        allowed |= NOTIFY_PROGRAMS
    for command in commands:
        program = command.program
        if program is None:
            continue
        if program in FORBIDDEN_BUILTINS:
            return f"it uses `{program}`, which the conformance run never executes"
        if "/" in program or program.startswith("$"):
            return f"it runs {program!r} by path or through a variable, which the conformance run never executes"
        if program not in allowed:
            return f"it runs `{program}`, which the conformance run has no stand-in for"
        for _, target in command.redirects:
            if target.startswith("/") and not target.startswith(("/tmp/", "/dev/null")):  # noqa: S108 - the runbook's own paths, rewritten before running
                return f"it writes to {target}, outside /tmp"
    return None
