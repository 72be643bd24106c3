"""Running a runbook's own commands against a freshly seeded drill world, and saying where the document drifted.

``run_conformance(runbook, env)`` seeds the world of a cluster the drill created (and
refuses any other with ``UnsafeTarget``), injects the runbook's drill incident, and runs
every command of the document in order, each in its own ``bash`` with:

- ``kubectl`` on the PATH being the Go-built kubectl with ``--kubeconfig`` of the drill
  environment: namespaces and names are the runbook's own. Every call is journaled, so the
  report shows which kubectl commands really ran and how each one ended;
- ``kubectl exec ... deployment/postgres -- psql|pg_dump`` rewritten to the same tool
  against the TaskDB (``PGHOST``/``PGPORT``; ``/migrations/`` is the packaged migrations);
- ``kubectl exec ... deployment/flowengine -- curl http://localhost:8080/...`` rewritten to
  ``curl`` on the drill's FlowEngine URL, after a real ``kubectl get`` of the exec target;
- ``blocks``, ``slack-cli``, ``pagerduty`` and ``mail`` on the PATH being the stand-ins of
  ``rollback_drill.conformance.standins``; the status page's URL is the local sink's;
- ``/tmp/`` a directory of the run, and variables a command sets (``EXPANDED_REPOS=...``)
  kept for the commands after it, as in the terminal an SRE would use.

Pipes, redirections, loops and quoting are bash's own (with ``set -o pipefail``, so a
failing kubectl before a ``| grep`` is not hidden). Only programs the runbook style uses
are on the PATH; a command that needs anything else is reported ``not-runnable``.

Each command ends ``ok``, ``drifted`` (with what came back, why, and for known drifts a
proposed correction, checked where that is safe), ``not-runnable`` (why) or ``manual``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

from kubernetes import client

from rollback_drill.config import DrillConfig, load_config
from rollback_drill.conformance.expect import Check, check_expectation
from rollback_drill.conformance.parser import (
    TEXT_TOOLS,
    CommandKind,
    Expectation,
    ParsedRunbook,
    RunbookCommand,
    parse_runbook,
    read_kubectl,
)
from rollback_drill.conformance.standins import TOOLS, StandinEnvironment
from rollback_drill.environment import EnvironmentState, known_drill_fingerprints
from rollback_drill.errors import InputError, ToolchainError, UnsafeTarget
from rollback_drill.evidence.redact import add_secret, redact_text
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.flowengine.simulator import Simulator
from rollback_drill.notify.senders import pagerduty_dedup_key
from rollback_drill.notify.sinks import Sinks
from rollback_drill.runbook.drill import RUNBOOK_FILE
from rollback_drill.targets.cluster import Cluster, identify
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.toolchain.build import ensure_binaries
from rollback_drill.world import incidents
from rollback_drill.world.pod_view import PodWatcher
from rollback_drill.world.seed import WorldState, seed_world

Status = Literal["ok", "drifted", "not-runnable", "manual"]
STATUSES: Final[tuple[Status, ...]] = ("ok", "drifted", "not-runnable", "manual")

DEFAULT_INCIDENT: Final = "mass-failure"
"""The runbook's own drill incident (``blocks test rollback --simulate-incident mass-failure``): its
checks ("Expected for rollback: ≥3 repos with failures") describe a world in a rollback."""
DEFAULT_COMMAND_TIMEOUT_S: Final = 300.0
"""Per command. The runbook's slowest is ``kubectl rollout status --timeout=180s``."""
OUTPUT_LIMIT: Final = 20_000
"""Characters of a command's stdout and stderr kept in the report."""
READ_ONLY_VERBS: Final = frozenset({"get", "logs", "describe", "rollout status", "top", "explain"})
"""Verbs whose proposed corrections are run to check them; anything that changes the world only with a server dry run."""
_TRACKED_RULES: Final = "prometheusrule"
_KUBECTL_ERROR: Final = re.compile(r"^(?:error: .*|Error from server.*|.*\(NotFound\).*)$", re.MULTILINE)
_UNKNOWN_FIELD: Final = re.compile(r'Warning: unknown field "(?P<field>[^"]+)"')
_NOT_FOUND_IN: Final = re.compile(r'not found in namespace "(?P<namespace>[^"]+)"')
_EXEC_PREFIX: Final = re.compile(r"kubectl\s+exec\s+.*?\s--\s+")
_LOCAL_URL: Final = re.compile(r"https?://(?:localhost|127\.0\.0\.1)(?::\d+)?")
_STATUS_PAGE_URL: Final = re.compile(r"https?://status\.[A-Za-z0-9.-]+")
_TMP: Final = re.compile(r"(?<![\w./-])/tmp/")
_MIGRATIONS: Final = re.compile(r"(?<![\w./-])/migrations/")
_JSONPATH: Final = re.compile(r"-o\s*=?\s*jsonpath=(?P<quote>['\"]?)(?P<path>\{.*?\})(?P=quote)")
_PG_MAJOR: Final = re.compile(r"(\d+)\.\d+")


# --- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubectlInvocation:
    """One kubectl call a command really made (from the kubectl wrapper's journal)."""

    args: tuple[str, ...]
    exit_code: int

    @property
    def command(self) -> str:
        return "kubectl " + shlex.join(self.args)


@dataclass(frozen=True)
class ExpectationResult:
    expectation: Expectation
    checks: tuple[Check, ...]
    judged: bool
    """False when the expectation is stated for another state of the world (``Expected for pilot``) or the
    command is for a person: shown, not held against the runbook."""
    note: str | None = None

    @property
    def holds(self) -> bool:
        return all(check.holds for check in self.checks)

    def evidence(self) -> dict[str, Any]:
        return {
            "line": self.expectation.line,
            "label": self.expectation.label,
            "expected": list(self.expectation.items),
            "holds": self.holds if self.checks else None,
            "judged": self.judged,
            "checks": [{"item": c.item, "holds": c.holds, "how": c.how, "seen": c.detail} for c in self.checks],
            "note": self.note,
        }


@dataclass(frozen=True)
class CommandResult:
    command: RunbookCommand
    status: Status
    why: str
    ran: str | None = None
    """What bash ran, after the mappings (redacted)."""
    mappings: tuple[str, ...] = ()
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    elapsed_s: float = 0.0
    kubectl: tuple[KubectlInvocation, ...] = ()
    expectations: tuple[ExpectationResult, ...] = ()
    proposed_fix: str | None = None
    fix_check: str | None = None
    notes: tuple[str, ...] = ()
    tracked: bool = False
    """A kubectl command naming the flowengine Deployment (or its pods), repo-config or a PrometheusRule."""
    deliveries: tuple[dict[str, Any], ...] = ()
    """What reached the notification sinks (notify commands)."""

    @property
    def line(self) -> int:
        return self.command.line

    @property
    def kind(self) -> CommandKind:
        return self.command.kind

    def summary(self) -> dict[str, Any]:
        """The evidence's (and report.html's) row for this command."""
        command = self.command
        return {
            "index": command.index,
            "line": command.line,
            "section": command.section,
            "step": command.step_id,
            "kind": command.kind,
            "status": self.status,
            "command": _shorten(command.text, 400),
            "why": self.why,
            "expected": "; ".join(e.text for e in command.expectations) or None,
            "actual": _shorten(self.stdout.strip(), 600) if self.status in {"ok", "drifted"} else None,
            "exit_code": self.exit_code,
            "kubectl_calls": len(self.kubectl),
            "proposed_fix": self.proposed_fix,
            "fix_check": self.fix_check,
            "notes": list(self.notes),
        }

    def to_json(self) -> dict[str, Any]:
        command = self.command
        return {
            **self.summary(),
            "end_line": command.end_line,
            "source": command.source,
            "purpose": command.purpose,
            "classification": {
                "kind": command.kind,
                "reason": command.classification.reason,
                "runnable": command.classification.runnable,
                "targets": list(command.classification.targets),
                "placeholders": list(command.classification.placeholders),
                "lint": list(command.classification.lint),
            },
            "ran": self.ran,
            "mappings": list(self.mappings),
            "stdout": self.stdout,
            "stderr": self.stderr,
            "elapsed_s": round(self.elapsed_s, 3),
            "kubectl": [{"command": k.command, "exit_code": k.exit_code} for k in self.kubectl],
            "expectations": [e.evidence() for e in self.expectations],
            "documented_notes": list(command.notes),
            "tracked": self.tracked,
            "deliveries": list(self.deliveries),
        }


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class ConformanceReport:
    """Every command of the runbook, in order, with what happened to it."""

    runbook: ParsedRunbook
    results: tuple[CommandResult, ...]
    environment: str
    target: dict[str, Any]
    phase: int
    incident: str | None
    started_at: str
    finished_at: str
    elapsed_s: float
    work_dir: str
    world: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        tally = Counter(result.status for result in self.results)
        counts: dict[str, int] = {status: tally.get(status, 0) for status in STATUSES}
        counts["total"] = len(self.results)
        return counts

    @property
    def ok(self) -> bool:
        """Nothing runnable drifted (exit code 0 of `rollback-drill conformance`)."""
        return not self.drifted()

    def drifted(self) -> tuple[CommandResult, ...]:
        return tuple(r for r in self.results if r.status == "drifted")

    def result_at_line(self, line: int) -> CommandResult:
        for result in self.results:
            if result.command.line <= line <= result.command.end_line:
                return result
        raise InputError(f"no command of {self.runbook.path} is at line {line}")

    def tracked_not_run(self) -> tuple[CommandResult, ...]:
        """kubectl commands on the flowengine Deployment, repo-config or PrometheusRules that made no kubectl call."""
        return tuple(r for r in self.results if r.tracked and not r.kubectl)

    def evidence(self) -> dict[str, Any]:
        """The evidence's ``conformance`` field: counts, drifts, and one row per command."""
        return {
            "runbook": {"path": self.runbook.path, "id": self.runbook.runbook_id, "sha256": self.runbook.sha256},
            "environment": self.environment,
            "target": self.target,
            "phase": self.phase,
            "incident": self.incident,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "elapsed_s": round(self.elapsed_s, 1),
            "commands_in_document": len(self.runbook.commands),
            "counts": self.counts,
            "drifted": [
                {"line": r.line, "section": r.command.section, "why": r.why, "proposed_fix": r.proposed_fix}
                for r in self.drifted()
            ],
            "commands": [r.summary() for r in self.results],
        }

    def to_json(self) -> dict[str, Any]:
        """``conformance.json``: the evidence plus every command's full record (output, kubectl calls, checks)."""
        doc = self.evidence()
        doc["commands"] = [r.to_json() for r in self.results]
        doc["parse_warnings"] = list(self.runbook.warnings)
        doc["world"] = self.world
        doc["work_dir"] = self.work_dir
        return doc


def default_runbook_path() -> Path:
    """The runbook the drill ships (RB-LAUNCH-002)."""
    return Path(str(resources.files("rollback_drill.data").joinpath(f"runbooks/{RUNBOOK_FILE}")))


def migrations_dir() -> Path:
    return Path(str(resources.files("rollback_drill.data").joinpath("migrations")))


# --- the guard --------------------------------------------------------------------------------------


def drill_made_cluster(env: EnvironmentState) -> Cluster:
    """The environment's cluster, if the drill created it and its kubeconfig still reaches that very cluster."""
    if env.target == "kubeconfig":
        raise UnsafeTarget(
            f"refusing to run the runbook's commands on environment {env.name!r}: it is a kubeconfig target, "
            "whose world is the real one; conformance runs only on clusters the drill created (`rollback-drill env up`)"
        )
    recorded = env.cluster()
    current = identify(env.target, recorded.kubeconfig, recorded.context, created_by_drill=True)
    if current.fingerprint != recorded.fingerprint:
        raise UnsafeTarget(
            f"refusing to run the runbook's commands: the kubeconfig of environment {env.name!r} now reaches "
            f"{current.fingerprint}, not the cluster the drill created ({recorded.fingerprint}); "
            f"remove it with `rollback-drill env down --name {env.name}` and bring up a new one"
        )
    if current.fingerprint not in known_drill_fingerprints():
        raise UnsafeTarget(
            f"refusing to run the runbook's commands on {current.fingerprint}: no drill state file lists it, so it "
            "does not count as created by the drill; use an environment from `rollback-drill env up`"
        )
    return current


# --- the run ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Proc:
    exit_code: int
    stdout: str
    stderr: str
    elapsed_s: float
    timed_out: bool


@dataclass
class _Services:
    """What a run starts beside the cluster, and stops at the end."""

    production: FlowEngineClient
    staging: FlowEngineClient
    sinks: Sinks
    standins: StandinEnvironment
    status_page_token: str


class _Runner:
    """One run: its shell, its mappings, its judgement and its proposals."""

    def __init__(
        self,
        *,
        parsed: ParsedRunbook,
        config: DrillConfig,
        kubectl: Path,
        kubeconfig: str,
        taskdb: TaskDB,
        services: _Services,
        work_dir: Path,
        applicable_qualifiers: frozenset[str],
        phase: int,
        timeout_s: float,
    ) -> None:
        self.parsed = parsed
        self.config = config
        self.kubectl = kubectl
        self.kubeconfig = kubeconfig
        self.taskdb = taskdb
        self.services = services
        self.work = work_dir
        self.applicable = applicable_qualifiers
        self.phase = phase
        self.timeout_s = timeout_s
        self.variables: dict[str, str] = {}
        self.background_pid: str | None = None
        self.bin = work_dir / "bin"
        self.tools = work_dir / "tools"
        self.tmp = work_dir / "tmp"
        self.home = work_dir / "home"
        self.state = work_dir / "state"
        self.journal = work_dir / "kubectl-journal"
        for directory in (self.bin, self.tools, self.tmp, self.home, self.state, self.journal):
            directory.mkdir(parents=True, exist_ok=True)
        self.bash = shutil.which("bash") or "/bin/bash"
        self._write_tools()

    # -- the shell's world ---------------------------------------------------------------------------

    def _write_tools(self) -> None:
        """kubectl aimed at the drill cluster (journaled), the stand-ins, psql/pg_dump on the TaskDB, and text tools."""
        real, kubeconfig = shlex.quote(str(self.kubectl)), shlex.quote(self.kubeconfig)
        self._script(
            "kubectl",
            "#!/bin/bash\n# rollback-drill conformance: the runbook's kubectl, aimed at the drill cluster only.\n"
            f'{real} --kubeconfig={kubeconfig} "$@"\n__rc=$?\n'
            'if [ -n "$RB_CONF_KUBECTL_JOURNAL" ]; then\n'
            '  printf \'%s\\0\' "$__rc" "$@" > "$RB_CONF_KUBECTL_JOURNAL/${EPOCHREALTIME/./}.$$.$RANDOM"\nfi\n'
            'exit "$__rc"\n',
        )
        python = shlex.quote(sys.executable)
        for tool in TOOLS:
            self._script(tool, f'#!/bin/sh\nexec {python} -m rollback_drill.conformance.standins {tool} "$@"\n')
        for tool in ("psql", "pg_dump"):
            self._script(tool, self._pg_tool(tool))
        for name in sorted((TEXT_TOOLS | {"curl", "wget"}) - {"[", "test", "true", "false", "echo", "printf"}):
            found = shutil.which(name)
            if found and not (self.tools / name).exists():
                (self.tools / name).symlink_to(found)

    def _script(self, name: str, text: str) -> None:
        path = self.bin / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)

    def _pg_tool(self, tool: str) -> str:
        host = shutil.which(tool)
        server = self.taskdb.server_major
        if host and (tool == "psql" or server is None or _tool_major(host) == server):
            return f'#!/bin/sh\nexec {shlex.quote(host)} "$@"\n'
        docker = shutil.which("docker")
        if self.taskdb.container_id and docker:
            container = shlex.quote(self.taskdb.container_id)
            return (
                f"#!/bin/sh\nexec {shlex.quote(docker)} exec -i -e PGPASSWORD {container} "
                f'{tool} -h 127.0.0.1 -p 5432 "$@"\n'
            )
        return f"#!/bin/sh\necho '{tool}: no {tool} matching the TaskDB (PostgreSQL {server}) here' >&2\nexit 127\n"

    def _environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        source_root = Path(str(resources.files("rollback_drill"))).parent
        env = {
            "PATH": f"{self.bin}:{self.tools}",
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TERM": "dumb",
            "PYTHONPATH": str(source_root),
            "RB_CONF_STATE": str(self.state),
            **self.services.standins.variables(),
            **self.variables,
        }
        env.update(extra or {})
        return env

    def _run_bash(self, script: str, env: dict[str, str]) -> _Proc:
        started = time.monotonic()
        with subprocess.Popen(
            [self.bash, "--noprofile", "--norc", "-c", script],
            cwd=self.home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        ) as proc:
            timed_out = False
            try:
                out, err = proc.communicate(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
        return _Proc(
            proc.returncode if not timed_out else 124,
            redact_text(out.decode("utf-8", "replace"))[:OUTPUT_LIMIT],
            redact_text(err.decode("utf-8", "replace"))[:OUTPUT_LIMIT],
            time.monotonic() - started,
            timed_out,
        )

    def _journal_dir(self, name: str) -> Path:
        path = self.journal / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    def _read_journal(directory: Path) -> tuple[KubectlInvocation, ...]:
        calls = []
        for entry in sorted(directory.iterdir(), key=lambda p: (int(p.name.split(".")[0]), p.name)):
            fields = entry.read_bytes().decode("utf-8", "replace").split("\0")[:-1]
            if fields:
                calls.append(KubectlInvocation(tuple(redact_text(f) for f in fields[1:]), int(fields[0])))
        return tuple(calls)

    def shell(
        self, text: str, journal: str, extra_env: dict[str, str] | None = None
    ) -> tuple[_Proc, tuple[KubectlInvocation, ...]]:
        """Run ``text`` in bash as a runbook command runs; return what it did and the kubectl calls it made."""
        directory = self._journal_dir(journal)
        env = self._environment({"RB_CONF_KUBECTL_JOURNAL": str(directory), **(extra_env or {})})
        return self._run_bash(f"set -o pipefail\n{text}", env), self._read_journal(directory)

    def kubectl_call(self, args: list[str], journal: str) -> tuple[_Proc, tuple[KubectlInvocation, ...]]:
        return self.shell(shlex.join(["kubectl", *args]), journal)

    # -- one command -----------------------------------------------------------------------------------

    def execute(self, command: RunbookCommand) -> CommandResult:
        classification = command.classification
        tracked = self._tracked(command)
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
        text, mappings, extra_env = self._map(command)
        preflight: list[str] = []
        preflight_calls: tuple[KubectlInvocation, ...] = ()
        if command.kind == "kubectl-exec-http":
            preflight, preflight_calls = self._exec_targets(command)
        script = self._script_for(command, text)
        sinks_before = len(self.services.sinks.received())
        proc, calls = self.shell(script, f"{command.index:03d}", extra_env)
        self._keep_state(command)
        deliveries = tuple(self.services.sinks.received()[sinks_before:])
        result = CommandResult(
            command,
            "ok",
            "",
            ran=redact_text(text),
            mappings=tuple(mappings),
            exit_code=proc.exit_code,
            stdout=proc.stdout,
            stderr=proc.stderr,
            elapsed_s=proc.elapsed_s,
            kubectl=preflight_calls + calls,
            tracked=tracked,
            deliveries=tuple(_delivery_summary(d) for d in deliveries),
        )
        return self._judge(result, proc, preflight)

    def _tracked(self, command: RunbookCommand) -> bool:
        if command.kind not in {"kubectl", "shell"}:
            return False
        names = self.config.kubernetes
        tracked = {f"deployment/{names.deployment}", f"configmap/{names.configmap}", f"pods(app={names.deployment})"}
        return any(t in tracked or t.startswith(_TRACKED_RULES) for t in command.classification.targets)

    def _map(self, command: RunbookCommand) -> tuple[str, list[str], dict[str, str]]:
        text = command.text
        mappings: list[str] = []
        extra: dict[str, str] = {}
        if _TMP.search(text):
            text = _TMP.sub(f"{self.tmp}/", text)
            mappings.append(f"/tmp/ is {self.tmp}/")  # noqa: S108 - names the runbook's path, does not use it
        if "$!" in text and self.background_pid:
            text = text.replace("$!", self.background_pid)
            mappings.append(f"$! is {self.background_pid}, the PID of the background command before it")
        if command.kind == "kubectl-exec-db":
            text = _EXEC_PREFIX.sub("", text)
            db = self.taskdb
            extra.update(PGHOST=db.host, PGPORT=str(db.port), PGPASSWORD=db.password, PGCONNECT_TIMEOUT="5")
            mappings.append(
                f"kubectl exec ... deployment/postgres -- is the TaskDB at {db.host}:{db.port} ({db.provider})"
            )
            if _MIGRATIONS.search(text):
                text = _MIGRATIONS.sub(f"{migrations_dir()}/", text)
                mappings.append(f"/migrations/ is the packaged {migrations_dir()}/")
        elif command.kind == "kubectl-exec-http":
            text = _EXEC_PREFIX.sub("", text)
            url = self.services.production.base_url
            text = _LOCAL_URL.sub(url, text)
            mappings.append(f"kubectl exec ... deployment/flowengine -- curl http://localhost:8080 is curl {url}")
        elif command.kind == "notify" and _STATUS_PAGE_URL.search(text):
            url = self.services.sinks.endpoints.http_url
            text = _STATUS_PAGE_URL.sub(url, text)
            extra[self.config.notifications.status_page_token_env] = self.services.status_page_token
            mappings.append(
                f"the status page is the local sink at {url}; ${self.config.notifications.status_page_token_env} its token"
            )
        elif command.kind in {"blocks", "notify"}:
            tools = ", ".join(p for p in command.classification.programs if p in TOOLS)
            mappings.append(f"{tools}: the drill's stand-in (rollback_drill.conformance.standins)")
        return text, mappings, extra

    def _script_for(self, command: RunbookCommand, text: str) -> str:
        lines = [text]
        if command.analysis.background:
            lines.append('__bg=$!; wait "$__bg"; __rc=$?; printf %s "$__bg" > "$RB_CONF_STATE/bgpid"')
        else:
            lines.append("__rc=$?")
        lines += [f'printf %s "${{{name}-}}" > "$RB_CONF_STATE/var.{name}"' for name in command.analysis.assigns]
        lines.append('exit "$__rc"')
        return "\n".join(lines)

    def _keep_state(self, command: RunbookCommand) -> None:
        for name in command.analysis.assigns:
            path = self.state / f"var.{name}"
            if path.is_file():
                self.variables[name] = path.read_text(encoding="utf-8")
                path.unlink()
        pid = self.state / "bgpid"
        if command.analysis.background and pid.is_file():
            self.background_pid = pid.read_text(encoding="utf-8").strip() or None
            pid.unlink()

    def _exec_targets(self, command: RunbookCommand) -> tuple[list[str], tuple[KubectlInvocation, ...]]:
        """``kubectl get`` each exec target as written: the pod the runbook execs into must be there."""
        problems: list[str] = []
        calls: tuple[KubectlInvocation, ...] = ()
        seen: set[tuple[str, str | None]] = set()
        for simple in command.analysis.commands:
            if simple.program != "kubectl":
                continue
            call = read_kubectl(simple.args)
            if call.verb != "exec" or not call.exec_target or (call.exec_target, call.namespace) in seen:
                continue
            seen.add((call.exec_target, call.namespace))
            args = ["get", call.exec_target, "-o", "name"] + (["-n", call.namespace] if call.namespace else [])
            proc, made = self.kubectl_call(args, f"{command.index:03d}-exec-target")
            calls += made
            if proc.exit_code != 0:
                problems.append(f"the exec target {call.exec_target} is not there: {_first_error(proc.stderr)}")
        return problems, calls

    # -- judgement -------------------------------------------------------------------------------------

    def _expectations(self, command: RunbookCommand, output: str) -> tuple[ExpectationResult, ...]:
        results = []
        for expectation in command.expectations:
            checks = check_expectation(expectation, output)
            qualifier = (expectation.qualifier or "").strip().lower()
            if not qualifier or qualifier in self.applicable:
                results.append(ExpectationResult(expectation, checks, judged=True))
                continue
            note = (
                f"stated for {expectation.qualifier}; this world is at Phase {self.phase} until the runbook brings it "
                "back, so the expectation is shown, not judged"
            )
            results.append(ExpectationResult(expectation, checks, judged=False, note=note))
        return tuple(results)

    def _judge(self, result: CommandResult, proc: _Proc, preflight: list[str]) -> CommandResult:  # noqa: C901, PLR0912 - the rules, in order
        command = result.command
        expectations = self._expectations(command, proc.stdout)
        notes: list[str] = list(command.classification.lint)
        problems: list[str] = list(preflight)
        failed_calls = [call for call in result.kubectl if call.exit_code != 0]
        if proc.timed_out:
            problems.append(f"it did not finish within {self.timeout_s:.0f}s")
        problems.extend(
            f"`{_shorten(call.command, 160)}` failed (exit {call.exit_code}): {_first_error(proc.stderr)}"
            for call in failed_calls
        )
        dropped = sorted(set(_UNKNOWN_FIELD.findall(proc.stderr)))
        if dropped:
            unchanged = "(no change)" in proc.stdout
            problems.append(
                f"the API server does not know {', '.join(dropped)} and dropped it"
                + (": kubectl exited 0 and printed `(no change)`, so nothing was changed" if unchanged else "")
            )
        if proc.exit_code != 0 and not failed_calls and not proc.timed_out:
            last = command.analysis.last_program
            if last in {"grep", "egrep", "fgrep"} and proc.exit_code == 1:
                pattern = _grep_pattern(command)
                verifying = bool(command.purpose and command.purpose.lower().startswith("verify")) or bool(
                    command.expectations
                )
                if verifying:
                    problems.append(f"grep found no line matching {pattern}: the check it is meant to be cannot pass")
                else:
                    notes.append(f"grep found no line matching {pattern}")
            else:
                problems.append(f"it exited {proc.exit_code}: {_first_error(proc.stderr) or 'no message'}")
        for checked in expectations:
            if checked.judged and not checked.holds:
                failing = [c for c in checked.checks if not c.holds]
                problems += [f"expected {c.item!r} (line {checked.expectation.line}), saw {c.detail}" for c in failing]
        if command.kind == "notify":
            problems += self._delivery_problems(result, notes)
        if command.kind == "kubectl-exec-db" and re.search(r"^(?:psql|pg_dump):.*ERROR", proc.stderr, re.MULTILINE):
            problems.append(f"the database reported an error: {_first_error(proc.stderr)}")
        psql_file = "psql" in command.classification.programs and " -f " in command.text
        if command.kind == "kubectl-exec-db" and psql_file and "ON_ERROR_STOP" not in command.text:
            notes.append("psql -f without -v ON_ERROR_STOP=1 exits 0 even when a statement of the file fails")
        if command.classification.placeholders:
            notes.append(f"text left to fill in: {', '.join(command.classification.placeholders)}")
        status: Status = "drifted" if problems else "ok"
        why = "; ".join(problems) if problems else _ok_reason(result, expectations)
        judged = dataclasses.replace(result, status=status, why=why, expectations=expectations, notes=tuple(notes))
        if status == "drifted":
            fix, check = self.propose(judged)
            return dataclasses.replace(judged, proposed_fix=fix, fix_check=check)
        return judged

    def _delivery_problems(self, result: CommandResult, notes: list[str]) -> list[str]:
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

    # -- known drifts ----------------------------------------------------------------------------------

    def propose(self, result: CommandResult) -> tuple[str | None, str | None]:
        for proposer in (self._fix_namespace, self._fix_alert_patch, self._fix_alert_check, self._fix_jsonpath):
            proposal = proposer(result)
            if proposal is not None:
                return proposal
        return None, None

    def _fix_namespace(self, result: CommandResult) -> tuple[str, str | None] | None:
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
        namespace = self._namespace_of(target, f"{result.command.index:03d}-fix")
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
        proc, _ = self.shell(_TMP.sub(f"{self.tmp}/", fix), f"{result.command.index:03d}-fix-check")
        if _NOT_FOUND_IN.search(proc.stderr):
            return fix, f"{why}. Ran it: still not found ({_first_error(proc.stderr)})"
        check = f"{why}. Ran it: kubectl finds {target} in {namespace} (exit {proc.exit_code}"
        check += f": {_first_error(proc.stderr)})" if proc.exit_code else ")"
        if call.verb == "logs" and self.config.kubernetes.deployment in target:
            tail = self.services.production.logs(tail=100)
            check += (
                f"; the drill's kwok pods keep no container logs, so FlowEngine's own log tail (GET /logs) stands in: "
                f"{len(tail.lines)} lines, {len(tail.errors())} of them ERROR or CRITICAL"
            )
        return fix, check

    def _namespace_of(self, target: str, journal: str) -> str | None:
        used = Counter(
            namespace
            for command in self.parsed.commands
            for simple in command.analysis.commands
            if simple.program == "kubectl"
            for call in [read_kubectl(simple.args)]
            if target in call.targets and call.namespace
            for namespace in [call.namespace]
        )
        names = self.config.kubernetes
        candidates = [ns for ns, _ in used.most_common()] + [
            names.namespace,
            names.staging_namespace,
            names.monitoring_namespace,
        ]
        for namespace in dict.fromkeys(candidates):
            proc, _ = self.kubectl_call(["get", target, "-n", namespace, "-o", "name"], journal)
            if proc.exit_code == 0 and proc.stdout.strip():
                return namespace
        return None

    def _rule_calls(self, result: CommandResult, verb: str) -> list[tuple[str, str | None]]:
        found = []
        for invocation in result.kubectl:
            call = read_kubectl(invocation.args)
            if call.verb == verb:
                found += [
                    (t.split("/", 1)[1], call.namespace) for t in call.targets if t.startswith(f"{_TRACKED_RULES}/")
                ]
        return found

    def _fix_alert_patch(self, result: CommandResult) -> tuple[str, str | None] | None:
        rules = self._rule_calls(result, "patch")
        if not rules:
            return None
        command = result.command
        namespace = rules[0][1] or self.config.kubernetes.monitoring_namespace
        target = next((t for t in command.classification.targets if t.startswith(f"{_TRACKED_RULES}/")), None)
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
            proc, _ = self.kubectl_call(args, f"{command.index:03d}-fix-check")
            if proc.exit_code == 0:
                accepted += 1
            else:
                problems.append(f"{rule}: {_first_error(proc.stderr)}")
        check = f"server dry run of the deletion: accepted for {accepted} of {len(rules)} rule(s)"
        if problems:
            check += f"; refused: {'; '.join(problems)}"
        return fix, check

    def _fix_alert_check(self, result: CommandResult) -> tuple[str, str | None] | None:
        command = result.command
        if command.classification.targets != (_TRACKED_RULES,) or "enabled" not in command.text:
            return None
        namespace = next(
            (ns for ns in command.classification.namespaces if ns), self.config.kubernetes.monitoring_namespace
        )
        loop_command = next(
            (
                c
                for c in self.parsed.commands
                if c.section == command.section
                and c.analysis.loops
                and any(t.startswith(f"{_TRACKED_RULES}/") for t in c.classification.targets)
            ),
            None,
        )
        if loop_command is None:
            fix = f"kubectl get prometheusrule -n {namespace} -o name\n# Expected: no <repo>-alerts of an expanded repo"
            return fix, None
        loop = loop_command.analysis.loops[0]
        target = next(t for t in loop_command.classification.targets if t.startswith(f"{_TRACKED_RULES}/"))
        name = target.split("/", 1)[1]
        fix = (
            f"for {loop.variable} in {' '.join(loop.words)}; do kubectl get prometheusrule {name} -n {namespace} "
            "-o name --ignore-not-found; done\n# Expected: no output (no <repo>-alerts rule of an expanded repo is left)"
        )
        proc, _ = self.shell(fix.split("\n", 1)[0], f"{command.index:03d}-fix-check")
        left = [line for line in proc.stdout.splitlines() if line.strip()]
        check = (
            f"ran it now: {len(left)} rule(s) still present, because the runbook's patch disabled none of them "
            "(after the proposed Step 4 there would be none)"
            if left
            else f"ran it now: no rule left (exit {proc.exit_code})"
        )
        return fix, check

    def _fix_jsonpath(self, result: CommandResult) -> tuple[str, str | None] | None:
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
        proc, _ = self.kubectl_call(args, f"{command.index:03d}-fix")
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
        check_proc, _ = self.shell(_TMP.sub(f"{self.tmp}/", fix), f"{command.index:03d}-fix-check")
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


def _first_error(stderr: str) -> str:
    errors = _KUBECTL_ERROR.findall(stderr)
    lines = [line.strip() for line in (errors or stderr.splitlines()) if line.strip()]
    return _shorten(lines[0], 300) if lines else ""


def _grep_pattern(command: RunbookCommand) -> str:
    grep = next((c for c in reversed(command.analysis.commands) if c.program in {"grep", "egrep", "fgrep"}), None)
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


def _delivery_summary(entry: dict[str, Any]) -> dict[str, Any]:
    headers = entry.get("headers") if isinstance(entry.get("headers"), dict) else {}
    content_type = next((v for k, v in (headers or {}).items() if str(k).lower() == "content-type"), None)
    return {
        "service": entry.get("service"),
        "status": entry.get("status"),
        "path": entry.get("path"),
        "to": entry.get("to") or entry.get("rcpt_tos"),
        "subject": entry.get("subject"),
        "content_type": content_type,
    }


def _tool_major(path: str) -> int | None:
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, check=False, timeout=10)
    match = _PG_MAJOR.search(proc.stdout)
    return int(match.group(1)) if match else None


# --- the entry point --------------------------------------------------------------------------------


@contextlib.contextmanager
def _services(cluster: Cluster, config: DrillConfig, taskdb: TaskDB, work_dir: Path) -> Iterator[_Services]:
    """FlowEngine for production and for staging (each following its own pods) and the notification sinks."""
    names = config.kubernetes
    with contextlib.ExitStack() as stack:
        simulators = {}
        for namespace in (names.namespace, names.staging_namespace):
            watcher = PodWatcher(cluster.api_client, namespace, f"app={names.deployment}", names.container).start()
            stack.callback(watcher.stop)
            simulator = Simulator(config.pilot_repo, taskdb.dsn, watcher.view)
            simulator.start()
            stack.callback(simulator.stop)
            simulators[namespace] = simulator
        token = f"drill-{secrets.token_urlsafe(18)}"
        add_secret(token)
        sinks = Sinks(status_page_token=token)
        endpoints = sinks.start(work_dir / "sinks")
        stack.callback(sinks.stop)
        webhook = f"{endpoints.http_url}/services/TDRILL/BDRILL/{secrets.token_urlsafe(18)}"
        routing_key = secrets.token_hex(16)
        for secret in (webhook, routing_key):
            add_secret(secret)
        production = FlowEngineClient(simulators[names.namespace].url)
        staging = FlowEngineClient(simulators[names.staging_namespace].url)
        standins = StandinEnvironment(
            flowengine_urls={"production": production.base_url, "staging": staging.base_url},
            time_scale=config.time_scale,
            slack_webhook_url=webhook,
            pagerduty_url=endpoints.http_url,
            pagerduty_routing_key=routing_key,
            pagerduty_dedup_key=pagerduty_dedup_key(f"conformance-{secrets.token_hex(3)}"),
            smtp_host=endpoints.smtp_host,
            smtp_port=endpoints.smtp_port,
            mail_from=config.notifications.email_sender,
        )
        yield _Services(production, staging, sinks, standins, token)


def run_conformance(
    runbook_path: Path | str,
    env: EnvironmentState,
    *,
    config: DrillConfig | None = None,
    phase: int = 6,
    incident: str | None = DEFAULT_INCIDENT,
    work_dir: Path | None = None,
    command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
    binaries_dir: Path | None = None,
    progress: Callable[[CommandResult], None] = lambda _result: None,
) -> ConformanceReport:
    """Run every command of ``runbook_path``, in order, on a freshly seeded world of ``env``'s cluster.

    Refuses (``UnsafeTarget``) unless the drill created that cluster. Seeds the world at
    ``phase`` (the runbook's commands then change it, as they would in production), injects
    ``incident`` (None: none) and returns one result per command of the document.
    """
    parsed = parse_runbook(runbook_path)
    config = config or load_config()
    cluster = drill_made_cluster(env)
    taskdb = env.taskdb_handle()
    if taskdb is None:
        raise InputError(f"environment {env.name!r} has no TaskDB; bring it up again with `rollback-drill env up`")
    add_secret(taskdb.password)
    kubectl = ensure_binaries(binaries_dir).get("kubectl")
    if kubectl is None or not Path(kubectl).is_file():
        raise ToolchainError("the Go-built kubectl is missing; run `rollback-drill toolchain`")
    if work_dir is None:
        work_dir = Path(env.directory) / f"conformance-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    work_dir.mkdir(parents=True, exist_ok=True)
    started_wall = datetime.now(UTC)
    started = time.monotonic()
    api: client.ApiClient = cluster.api_client()
    try:
        world: WorldState = seed_world(api, cluster, config, phase, taskdb)
        with _services(cluster, config, taskdb, work_dir) as services:
            if incident:
                incidents.inject(incident, services.production, api, config)
            runner = _Runner(
                parsed=parsed,
                config=config,
                kubectl=Path(kubectl),
                kubeconfig=cluster.kubeconfig,
                taskdb=taskdb,
                services=services,
                work_dir=work_dir,
                applicable_qualifiers=frozenset({"rollback"} if incident else ()),
                phase=phase,
                timeout_s=command_timeout_s,
            )
            results = []
            for command in parsed.commands:
                result = runner.execute(command)
                results.append(result)
                progress(result)
    finally:
        api.close()
    return ConformanceReport(
        runbook=parsed,
        results=tuple(results),
        environment=env.name,
        target=cluster.evidence(),
        phase=phase,
        incident=incident,
        started_at=started_wall.isoformat(timespec="seconds").replace("+00:00", "Z"),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        elapsed_s=time.monotonic() - started,
        work_dir=str(work_dir),
        world=world.evidence(),
    )
