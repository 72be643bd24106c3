"""What the conformance run can do with each runbook command, and why.

``kubectl`` runs against the drill cluster; the ``kubectl-exec-*``, ``blocks`` and ``notify``
kinds are mapped onto the TaskDB, FlowEngine and the notification sinks; ``shell`` runs the
kubectl inside; ``manual`` is for a person; ``other`` has no stand-in. A command is runnable
unless something in it stops it: a template placeholder, its own cluster flags, a program
outside the allowlist, a write outside /tmp. Problems that do not stop a command are its lint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from rollback_drill.conformance.kubectl import KubectlCall, read_kubectl
from rollback_drill.conformance.shell import URL, ShellAnalysis, SimpleCommand, placeholders_in

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
"""Shell builtins that would run text the classification never read."""
_LOOPBACK_URL: Final = re.compile(r"^https?://(?:localhost|127\.0\.0\.1|\[::1\])(?::\d+)?(?:/|$)")
_CLUSTER_VERBS: Final = frozenset({"config view", "version", "api-resources", "cluster-info", "get nodes"})


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
        url = next((a for a in browser.args if URL.match(a)), " ".join(browser.args))
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
        urls = [u for c in commands if c.program in HTTP_TOOLS for u in (URL.findall(" ".join(c.args)))]
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
