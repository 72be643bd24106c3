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

This module composes the rooms that do the work: ``sandbox`` (where and how a command runs),
``session`` (what carries over between commands), ``mapping`` (onto the stand-ins), ``judge``
(the verdicts), ``proposals`` (corrections of known drifts) and ``report`` (the results).
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from kubernetes import client

from rollback_drill.config import DrillConfig, load_config
from rollback_drill.conformance.classify import HTTP_TOOLS, TEXT_TOOLS
from rollback_drill.conformance.judge import (
    JudgingContext,
    first_error,
    judge,
    verdict_without_running,
)
from rollback_drill.conformance.kubectl import PROMETHEUS_RULES, KubectlInvocation, read_kubectl
from rollback_drill.conformance.mapping import StandinEndpoints, map_onto_standins
from rollback_drill.conformance.proposals import ProposalContext, propose
from rollback_drill.conformance.report import CommandResult, ConformanceReport, delivery_summary
from rollback_drill.conformance.runbook import ParsedRunbook, RunbookCommand, parse_runbook
from rollback_drill.conformance.sandbox import (
    Sandbox,
    SandboxResult,
    SandboxTools,
    prepare_sandbox,
    rewrite_paths,
    run_in_sandbox,
)
from rollback_drill.conformance.session import Terminal
from rollback_drill.conformance.standins import TOOLS, StandinEnvironment
from rollback_drill.environment import EnvironmentState, known_drill_fingerprints
from rollback_drill.errors import InputError, ToolchainError, UnsafeTarget
from rollback_drill.evidence.redact import add_secret, redact_text
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.flowengine.simulator import Simulator
from rollback_drill.notify.senders import pagerduty_dedup_key
from rollback_drill.notify.sinks import Sinks
from rollback_drill.targets.cluster import Cluster, identify
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.toolchain.build import ensure_binaries
from rollback_drill.world import incidents
from rollback_drill.world.pod_view import PodWatcher
from rollback_drill.world.seed import WorldState, seed_world

DEFAULT_INCIDENT: Final = "mass-failure"
"""The runbook's own drill incident (``blocks test rollback --simulate-incident mass-failure``): its
checks ("Expected for rollback: ≥3 repos with failures") describe a world in a rollback."""
DEFAULT_COMMAND_TIMEOUT_S: Final = 300.0
"""Per command. The runbook's slowest is ``kubectl rollout status --timeout=180s``."""


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


@dataclass
class _Services:
    """What a run starts beside the cluster, and stops at the end."""

    production: FlowEngineClient
    staging: FlowEngineClient
    sinks: Sinks
    standins: StandinEnvironment
    status_page_token: str


class _Runner:
    """One run: its sandbox and terminal, and each command mapped, run, judged and, when it drifted, corrected."""

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
        self.config = config
        self.services = services
        self.timeout_s = timeout_s
        self.sandbox: Sandbox = prepare_sandbox(
            work_dir,
            SandboxTools(
                kubectl=kubectl,
                kubeconfig=kubeconfig,
                standins=TOOLS,
                host_programs=TEXT_TOOLS | HTTP_TOOLS,
                taskdb_server_major=taskdb.server_major,
                taskdb_container_id=taskdb.container_id,
            ),
        )
        self.terminal = Terminal(self.sandbox.state)
        self.endpoints = StandinEndpoints(
            taskdb_host=taskdb.host,
            taskdb_port=taskdb.port,
            taskdb_password=taskdb.password,
            taskdb_provider=taskdb.provider,
            flowengine_url=services.production.base_url,
            sinks_url=services.sinks.endpoints.http_url,
            status_page_token_env=config.notifications.status_page_token_env,
            status_page_token=services.status_page_token,
        )
        self.judging = JudgingContext(applicable_qualifiers, phase, timeout_s)
        self.proposing = ProposalContext(
            runbook=parsed,
            names=config.kubernetes,
            run=self.shell,
            rewrite_paths=lambda text: rewrite_paths(text, self.sandbox)[0],
            flowengine=services.production,
        )

    def shell(self, text: str, journal: str, extra_env: dict[str, str] | None = None) -> SandboxResult:
        """Run ``text`` in the sandbox as a runbook command runs, in the terminal's environment."""
        env = {**self.services.standins.variables(), **self.terminal.variables, **(extra_env or {})}
        return run_in_sandbox(text, self.sandbox, env, self.timeout_s, journal=journal)

    def execute(self, command: RunbookCommand) -> CommandResult:
        tracked = self._tracked(command)
        settled = verdict_without_running(command, tracked=tracked)
        if settled is not None:
            return settled
        text, sandboxed = rewrite_paths(command.text, self.sandbox)
        text, substituted = self.terminal.substitute_background_pid(text)
        mapped = map_onto_standins(text, command, self.endpoints)
        preflight: list[str] = []
        preflight_calls: tuple[KubectlInvocation, ...] = ()
        if command.kind == "kubectl-exec-http":
            preflight, preflight_calls = self._exec_targets(command)
        script = self.terminal.script_for(mapped.text, command.analysis)
        sinks_before = len(self.services.sinks.received())
        proc = self.shell(script, f"{command.index:03d}", dict(mapped.env))
        self.terminal.carry_over(command.analysis)
        deliveries = tuple(self.services.sinks.received()[sinks_before:])
        result = CommandResult(
            command,
            "ok",
            "",
            ran=redact_text(mapped.text),
            mappings=sandboxed + substituted + mapped.mappings,
            exit_code=proc.exit_code,
            stdout=proc.stdout,
            stderr=proc.stderr,
            elapsed_s=proc.elapsed_s,
            kubectl=preflight_calls + proc.kubectl,
            tracked=tracked,
            deliveries=tuple(delivery_summary(d) for d in deliveries),
        )
        judged = judge(result, self.judging, timed_out=proc.timed_out, preflight=preflight)
        if judged.status == "drifted":
            fix, check = propose(judged, self.proposing)
            return replace(judged, proposed_fix=fix, fix_check=check)
        return judged

    def _tracked(self, command: RunbookCommand) -> bool:
        if command.kind not in {"kubectl", "shell"}:
            return False
        names = self.config.kubernetes
        tracked = {f"deployment/{names.deployment}", f"configmap/{names.configmap}", f"pods(app={names.deployment})"}
        return any(t in tracked or t.startswith(PROMETHEUS_RULES) for t in command.classification.targets)

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
            proc = self.shell(shlex.join(["kubectl", *args]), f"{command.index:03d}-exec-target")
            calls += proc.kubectl
            if proc.exit_code != 0:
                problems.append(f"the exec target {call.exec_target} is not there: {first_error(proc.stderr)}")
        return problems, calls


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
