"""Corrections to propose for known drifts, each checked where that is safe.

- a kubectl command that names no namespace and finds nothing: the same command with the
  namespace its object is in (read-only verbs are run again to show it now finds it);
- a patch of a PrometheusRule's ``enabled`` field, which the schema does not have: back each
  rule up and delete it (checked with a server dry run of the deletion);
- a check that reads that ``enabled`` field: list the rules that are left instead (run now);
- a jsonpath that prints nothing: the path under which the object holds the expected value
  (run now).

Every command a proposal runs goes through ``ProposalContext.run``, the run's sandbox.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rollback_drill.config import KubernetesNames
from rollback_drill.conformance.judge import first_error
from rollback_drill.conformance.kubectl import PROMETHEUS_RULES, read_kubectl
from rollback_drill.conformance.report import CommandResult
from rollback_drill.conformance.runbook import ParsedRunbook
from rollback_drill.conformance.sandbox import SandboxResult
from rollback_drill.flowengine.client import FlowEngineClient

READ_ONLY_VERBS: Final = frozenset({"get", "logs", "describe", "rollout status", "top", "explain"})
"""Verbs whose proposed corrections are run to check them; anything that changes the world only with a server dry run."""
_NOT_FOUND_IN: Final = re.compile(r'not found in namespace "(?P<namespace>[^"]+)"')
_JSONPATH: Final = re.compile(r"-o\s*=?\s*jsonpath=(?P<quote>['\"]?)(?P<path>\{.*?\})(?P=quote)")


@dataclass(frozen=True)
class ProposalContext:
    """What proposing a correction may read and run."""

    runbook: ParsedRunbook
    names: KubernetesNames
    run: Callable[[str, str], SandboxResult]
    """Runs a command line in the run's sandbox; the second argument names the journal of its kubectl calls."""
    rewrite_paths: Callable[[str], str]
    """A command line as the sandbox runs it (the runbook's ``/tmp/`` made the sandbox's)."""
    flowengine: FlowEngineClient
    """Production's FlowEngine, whose log tail stands in for the drill's kwok pods, which keep no logs."""

    def kubectl(self, args: Sequence[str], journal: str) -> SandboxResult:
        return self.run(shlex.join(["kubectl", *args]), journal)


def propose(result: CommandResult, context: ProposalContext) -> tuple[str | None, str | None]:
    """The correction of the first known drift that matches ``result``, and how it was checked (None: none)."""
    for proposer in (_fix_namespace, _fix_alert_patch, _fix_alert_check, _fix_jsonpath):
        proposal = proposer(result, context)
        if proposal is not None:
            return proposal
    return None, None


def _fix_namespace(result: CommandResult, context: ProposalContext) -> tuple[str, str | None] | None:
    match = _NOT_FOUND_IN.search(result.stderr)
    if match is None:
        return None
    unscoped = [
        call
        for simple in result.command.analysis.commands
        if simple.program == "kubectl"
        for call in [read_kubectl(simple.args)]
        if call.namespace is None and call.targets
    ]
    if not unscoped:
        return None
    call = unscoped[0]
    target = call.targets[0]
    namespace = _namespace_of(target, f"{result.command.index:03d}-fix", context)
    if namespace is None:
        return None
    raw = next((w for w in result.command.text.split() if w.endswith(target.split("/", 1)[-1])), target)
    fix = result.command.text.replace(raw, f"{raw} -n {namespace}", 1)
    why = (
        f"{target} is in namespace {namespace}; the command names none, so kubectl looked in "
        f"{match.group('namespace')!r}, the namespace of the kubeconfig's context"
    )
    if call.verb not in READ_ONLY_VERBS:
        return fix, why
    proc = context.run(context.rewrite_paths(fix), f"{result.command.index:03d}-fix-check")
    if _NOT_FOUND_IN.search(proc.stderr):
        return fix, f"{why}. Ran it: still not found ({first_error(proc.stderr)})"
    check = f"{why}. Ran it: kubectl finds {target} in {namespace} (exit {proc.exit_code}"
    check += f": {first_error(proc.stderr)})" if proc.exit_code else ")"
    if call.verb == "logs" and context.names.deployment in target:
        tail = context.flowengine.logs(tail=100)
        check += (
            f"; the drill's kwok pods keep no container logs, so FlowEngine's own log tail (GET /logs) stands in: "
            f"{len(tail.lines)} lines, {len(tail.errors())} of them ERROR or CRITICAL"
        )
    return fix, check


def _namespace_of(target: str, journal: str, context: ProposalContext) -> str | None:
    used = Counter(
        namespace
        for command in context.runbook.commands
        for simple in command.analysis.commands
        if simple.program == "kubectl"
        for call in [read_kubectl(simple.args)]
        if target in call.targets and call.namespace
        for namespace in [call.namespace]
    )
    names = context.names
    candidates = [ns for ns, _ in used.most_common()] + [
        names.namespace,
        names.staging_namespace,
        names.monitoring_namespace,
    ]
    for namespace in dict.fromkeys(candidates):
        proc = context.kubectl(["get", target, "-n", namespace, "-o", "name"], journal)
        if proc.exit_code == 0 and proc.stdout.strip():
            return namespace
    return None


def _rule_calls(result: CommandResult, verb: str) -> list[tuple[str, str | None]]:
    found = []
    for invocation in result.kubectl:
        call = read_kubectl(invocation.args)
        if call.verb == verb:
            found += [
                (t.split("/", 1)[1], call.namespace) for t in call.targets if t.startswith(f"{PROMETHEUS_RULES}/")
            ]
    return found


def _fix_alert_patch(result: CommandResult, context: ProposalContext) -> tuple[str, str | None] | None:
    rules = _rule_calls(result, "patch")
    if not rules:
        return None
    command = result.command
    namespace = rules[0][1] or context.names.monitoring_namespace
    target = next((t for t in command.classification.targets if t.startswith(f"{PROMETHEUS_RULES}/")), None)
    name = target.split("/", 1)[1] if target else "<repo>-alerts"
    loop = command.analysis.loops[0] if command.analysis.loops else None
    body = (
        f"  kubectl get prometheusrule {name} -n {namespace} -o yaml > /tmp/alerts_pre_rollback/{name}.yaml &&\n"
        f"  kubectl delete prometheusrule {name} -n {namespace}\n"
    )
    header = f"for {loop.variable} in {' '.join(loop.words)}; do\n" if loop else ""
    fix = (
        "# PrometheusRule rules have no `enabled` field (CONVENTIONS, Step 4): back each rule up, then remove it\n"
        "mkdir -p /tmp/alerts_pre_rollback\n"
        f"{header}{body}{'done' if loop else ''}\n"
        "# Re-enablement: kubectl apply -f /tmp/alerts_pre_rollback/\n"
        "# Or keep the rules and silence them: relabel each rule's alert (labels.severity: none) onto a null "
        "receiver in Alertmanager"
    ).replace("\n\n", "\n")
    accepted = 0
    problems = []
    for rule, rule_namespace in rules:
        args = ["delete", "prometheusrule", rule, "-n", rule_namespace or namespace, "--dry-run=server"]
        proc = context.kubectl(args, f"{command.index:03d}-fix-check")
        if proc.exit_code == 0:
            accepted += 1
        else:
            problems.append(f"{rule}: {first_error(proc.stderr)}")
    check = f"server dry run of the deletion: accepted for {accepted} of {len(rules)} rule(s)"
    if problems:
        check += f"; refused: {'; '.join(problems)}"
    return fix, check


def _fix_alert_check(result: CommandResult, context: ProposalContext) -> tuple[str, str | None] | None:
    command = result.command
    if command.classification.targets != (PROMETHEUS_RULES,) or "enabled" not in command.text:
        return None
    namespace = next((ns for ns in command.classification.namespaces if ns), context.names.monitoring_namespace)
    loop_command = next(
        (
            c
            for c in context.runbook.commands
            if c.section == command.section
            and c.analysis.loops
            and any(t.startswith(f"{PROMETHEUS_RULES}/") for t in c.classification.targets)
        ),
        None,
    )
    if loop_command is None:
        fix = f"kubectl get prometheusrule -n {namespace} -o name\n# Expected: no <repo>-alerts of an expanded repo"
        return fix, None
    loop = loop_command.analysis.loops[0]
    target = next(t for t in loop_command.classification.targets if t.startswith(f"{PROMETHEUS_RULES}/"))
    name = target.split("/", 1)[1]
    fix = (
        f"for {loop.variable} in {' '.join(loop.words)}; do kubectl get prometheusrule {name} -n {namespace} "
        "-o name --ignore-not-found; done\n# Expected: no output (no <repo>-alerts rule of an expanded repo is left)"
    )
    proc = context.run(fix.split("\n", 1)[0], f"{command.index:03d}-fix-check")
    left = [line for line in proc.stdout.splitlines() if line.strip()]
    check = (
        f"ran it now: {len(left)} rule(s) still present, because the runbook's patch disabled none of them "
        "(after the proposed Step 4 there would be none)"
        if left
        else f"ran it now: no rule left (exit {proc.exit_code})"
    )
    return fix, check


def _fix_jsonpath(result: CommandResult, context: ProposalContext) -> tuple[str, str | None] | None:
    command = result.command
    failing = [e for e in result.expectations if e.judged and not e.holds and len(e.expectation.items) == 1]
    match = _JSONPATH.search(command.text)
    if not failing or match is None:
        return None
    calls = [read_kubectl(s.args) for s in command.analysis.commands if s.program == "kubectl"]
    call = next((c for c in calls if c.verb == "get" and c.targets and "/" in c.targets[0]), None)
    if call is None:
        return None
    wanted = failing[0].expectation.items[0].strip().strip("\"'")
    args = ["get", call.targets[0], "-o", "json"] + (["-n", call.namespace] if call.namespace else [])
    proc = context.kubectl(args, f"{command.index:03d}-fix")
    try:
        document = json.loads(proc.stdout)
    except ValueError:
        return None
    path = find_jsonpath(document, wanted)
    if path is None:
        return None
    quote = match.group("quote") or "'"
    fix = command.text[: match.start("path")] + path + command.text[match.end("path") :]
    if not match.group("quote"):
        fix = command.text.replace(match.group(0), f"-o jsonpath={quote}{path}{quote}")
    check_proc = context.run(context.rewrite_paths(fix), f"{command.index:03d}-fix-check")
    printed = check_proc.stdout.strip()
    verdict = "as the runbook expects" if printed == wanted else "still not what the runbook expects"
    return fix, f"ran it now: it prints {printed!r}, {verdict}"


def find_jsonpath(document: Any, wanted: str) -> str | None:
    """The shortest kubectl jsonpath under which ``document`` holds the string ``wanted``.

    Lists of named objects are filtered by name (``env[?(@.name=="REPO_ALLOWLIST")]``) when
    they hold more than one; ``managedFields`` and annotations are not searched.
    """
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"managedFields", "annotations"}:
                    continue
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, dict) and "name" in item and len(node) > 1:
                    walk(item, f'{path}[?(@.name=="{item["name"]}")]')
                else:
                    walk(item, f"{path}[{index}]")
        elif isinstance(node, str) and node == wanted:
            found.append(path)

    walk(document, "")
    if not found:
        return None
    return "{" + min(found, key=len) + "}"
