"""The `rollback-drill` command.

Exit codes (CONVENTIONS): 0 done, 1 the drill ran and failed, 2 bad input or
refused (one line on stderr naming the problem and the fix), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rollback_drill import environment, paths
from rollback_drill.config import load_config
from rollback_drill.conformance.cli import add_commands as add_conformance_commands
from rollback_drill.errors import DrillError, InputError, ToolchainError
from rollback_drill.evidence.cli import add_commands as add_evidence_commands
from rollback_drill.gameday.cli import add_commands as add_gameday_commands
from rollback_drill.options import register
from rollback_drill.targets.cluster import TARGETS
from rollback_drill.taskdb.providers import PROVIDERS

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130


def _progress(message: str) -> None:
    print(f"[env] {message}", file=sys.stderr, flush=True)


def _cmd_env_up(args: argparse.Namespace) -> int:
    name = args.name or environment.new_env_name()
    started = time.monotonic()
    state = environment.bring_up(
        name,
        target=args.target,
        taskdb=args.taskdb,
        binaries_dir=Path(args.binaries_dir) if args.binaries_dir else None,
        progress=_progress,
        with_world=not args.bare,
        phase=int(args.phase),
        config=load_config(Path(args.config)) if args.config else None,
    )
    if args.json:
        print(json.dumps(state.public(), indent=2))
        return EXIT_OK
    db = state.taskdb_handle()
    print(f"environment {name} is up in {time.monotonic() - started:.1f}s")
    print(f"  kubeconfig:  {state.kubeconfig}")
    print(f"  server:      {state.server_version}  fingerprint {state.fingerprint}")
    if db is not None:
        print(f"  taskdb:      {db.redacted_dsn} ({db.provider})")
    for what, url in environment.monitoring_urls(state).items():
        print(f"  {what + ':':<12} {url}")
    for part, seconds in state.timings_s.items():
        print(f"  {part + ':':<22} {seconds:.1f}s")
    print(f"use it:  export KUBECONFIG={state.kubeconfig}   |   remove it:  rollback-drill env down --name {name}")
    return EXIT_OK


def _cmd_env_status(args: argparse.Namespace) -> int:
    states = [environment.EnvironmentState.load(args.name)] if args.name else list(environment.iter_states())
    if args.json:
        payload = [s.public() for s in states]
        print(json.dumps(payload[0] if args.name else payload, indent=2))
        return EXIT_OK
    if not states:
        print("no drill environments (create one with `rollback-drill env up --name NAME`)")
    for state in states:
        db = state.taskdb_handle()
        print(f"{state.name}: target {state.target}, {state.server_version or 'not up'}, created {state.created_at}")
        print(f"  kubeconfig  {state.kubeconfig}")
        print(f"  fingerprint {state.fingerprint}")
        if db is not None:
            print(f"  taskdb      {db.redacted_dsn} ({db.provider})")
        for service, info in state.services.items():
            print(f"  {service:<11} {info.get('url') or info.get('http_url', '')} pid {info.get('pid')}")
        _print_world(state)
    return EXIT_OK


def _print_world(state: environment.EnvironmentState) -> None:
    """What the runbook's checks would read right now: allowlist, replicas, schema, alerts, injections."""
    from rollback_drill.world.seed import read_world  # noqa: PLC0415

    if not state.kubeconfig or "flowengine" not in state.services:
        return
    config = load_config()
    api = state.cluster().api_client()
    try:
        world = read_world(api, config, state.taskdb_handle(), 0)
    except Exception as exc:  # noqa: BLE001 - status reports what it can
        print(f"  world       not readable: {str(exc).splitlines()[0]}")
        return
    finally:
        api.close()
    injections = [i.name for i in state.flowengine_client().incidents()]
    print(f"  allowlist   {','.join(world.allowlist)}")
    print(f"  replicas    {world.available_replicas}/{world.replicas} available")
    print(f"  schema      {world.schema_version}")
    print(f"  alerts      {len(world.alert_rules)} PrometheusRules in {config.kubernetes.monitoring_namespace}")
    print(f"  injections  {', '.join(injections) or 'none'}")


def _cmd_inject(args: argparse.Namespace) -> int:
    from rollback_drill.flowengine.incidents import INCIDENT_NAMES  # noqa: PLC0415
    from rollback_drill.world import incidents  # noqa: PLC0415

    if not args.clear and not args.incident:
        raise InputError("inject needs an incident NAME or --clear; valid incidents: " + ", ".join(INCIDENT_NAMES))
    if args.incident:
        incidents.check_incident_name(args.incident)
    state = environment.EnvironmentState.load(args.env) if args.env else _only_environment()
    if "flowengine" not in state.services:
        raise InputError(
            f"environment {state.name!r} has no FlowEngine simulator (made with --bare); recreate it without --bare"
        )
    flowengine = state.flowengine_client()
    if args.clear:
        cleared = flowengine.clear_incidents()
        print(f"cleared: {', '.join(cleared) or 'nothing was injected'}")
        return EXIT_OK
    api = state.cluster().api_client()
    try:
        record = incidents.inject(args.incident, flowengine, api, load_config(), taskdb=state.taskdb_handle())
    finally:
        api.close()
    print(f"injected {record.name} into {state.name}; affected repos: {', '.join(record.repos) or 'none'}")
    return EXIT_OK


def _only_environment() -> environment.EnvironmentState:
    states = list(environment.iter_states())
    if len(states) != 1:
        names = ", ".join(s.name for s in states) or "none"
        raise InputError(f"name the environment with --env NAME (environments: {names})")
    return states[0]


def _cmd_env_down(args: argparse.Namespace) -> int:
    names = [s.name for s in environment.iter_states()] if args.all else [args.name]
    if not names or names == [None]:
        raise InputError("env down needs --name NAME (or --all); `rollback-drill env status` lists them")
    for name in names:
        state = environment.EnvironmentState.load(name)
        forced = environment.tear_down(state)
        suffix = f" (had to kill {', '.join(forced)})" if forced else ""
        print(f"environment {name} removed{suffix}")
    return EXIT_OK


def _cmd_toolchain(args: argparse.Namespace) -> int:
    from rollback_drill.toolchain.build import (  # noqa: PLC0415 - keeps `--help` fast
        MONITORING_COMPONENTS,
        cached_status,
        ensure_kube_state_metrics,
    )

    if args.check:
        status = {**cached_status(), **cached_status(components=MONITORING_COMPONENTS)}
        for component, ready in status.items():
            print(f"{component}: {'cached' if ready else 'missing'}")
        return EXIT_OK if all(status.values()) else EXIT_FAILED
    started = time.monotonic()
    binaries = environment.ensure_toolchain(Path(args.binaries_dir) if args.binaries_dir else None)
    binaries["kube-state-metrics"] = ensure_kube_state_metrics()  # the monitoring chain's, beside the control plane
    print(f"toolchain ready in {time.monotonic() - started:.1f}s: {', '.join(sorted(binaries))}")
    return EXIT_OK


def _check(label: str, ok: bool, detail: str, fix: str) -> bool:
    mark = "ok  " if ok else "MISS"
    print(f"[{mark}] {label}: {detail}" + ("" if ok else f"\n       fix: {fix}"))
    return ok


def _cmd_doctor(_args: argparse.Namespace) -> int:
    from rollback_drill.toolchain.build import cache_dir, cached_status  # noqa: PLC0415
    from rollback_drill.toolchain.images import docker_reachable, image_present, offline_postgres_tag  # noqa: PLC0415

    results = []
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    results.append(
        _check("Go", go is not None, go or "not found", "install Go >= 1.24 (needed once, to build the control plane)")
    )
    status = cached_status()
    results.append(
        _check(
            "control-plane binaries",
            all(status.values()),
            ", ".join(f"{k} {'cached' if v else 'missing'}" for k, v in status.items()),
            "run `rollback-drill toolchain` (builds from the Go module proxy; tens of minutes the first time)",
        )
    )
    cache = cache_dir()
    writable = os.access(cache if cache.exists() else cache.parent if cache.parent.exists() else Path.home(), os.W_OK)
    results.append(_check("cache directory", writable, str(cache), "set ROLLBACK_DRILL_CACHE to a writable directory"))
    docker_ok, docker_detail = docker_reachable()
    results.append(
        _check(
            "Docker engine",
            docker_ok,
            docker_detail,
            "run `make docker` (Debian: installs docker.io, starts dockerd --ip 127.0.0.1), or use --taskdb local",
        )
    )
    if docker_ok:
        image = "postgres:15" if image_present("postgres:15") else offline_postgres_tag()
        results.append(
            _check(
                "TaskDB image",
                image_present(image),
                image,
                "run `rollback-drill toolchain` (builds it offline from Debian's postgresql-15)",
            )
        )
    for tool in ("pg_dump", "psql"):
        found = shutil.which(tool)
        results.append(_check(tool, found is not None, found or "not found", "apt-get install postgresql-client-15"))
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", 0))
            free = True
        except OSError:
            free = False
    results.append(
        _check(
            "loopback ports",
            free,
            "127.0.0.1 accepts listeners" if free else "cannot bind",
            "check the loopback interface",
        )
    )
    state = paths.state_home()
    results.append(
        _check(
            "state directory",
            os.access(state if state.exists() else state.parent if state.parent.exists() else Path.home(), os.W_OK),
            str(state),
            "set XDG_STATE_HOME to a writable directory",
        )
    )
    from rollback_drill.monitoring.doctor import checks as monitoring_checks  # noqa: PLC0415

    results += [_check(c.label, c.ok, c.detail, c.fix) for c in monitoring_checks()]
    return EXIT_OK if all(results) else EXIT_FAILED


def _cmd_check_target(args: argparse.Namespace) -> int:
    """Identify a cluster and say whether destructive drill actions may touch it (exit 0) or not (exit 2)."""
    from rollback_drill.targets.cluster import guard_destructive, identify, read_allowlist  # noqa: PLC0415

    if not args.kubeconfig:
        raise InputError("check-target needs --kubeconfig PATH (and optionally --context NAME)")
    allowlist = read_allowlist(args.cluster_allowlist)  # a malformed file is refused before the cluster is contacted
    cluster = identify("kubeconfig", args.kubeconfig, args.context)
    print(f"cluster {cluster.fingerprint} ({cluster.server_version})")
    db = None
    if args.taskdb == "dsn":
        from rollback_drill.taskdb import identity, providers  # noqa: PLC0415

        db = providers.from_dsn()
        # Printed before either guard answers: both lines are what an allowlist file for this staging holds.
        print(f"taskdb {identity.identify(db)} ({db.redacted_dsn})")
    guard_destructive(
        cluster,
        allowlist,
        environment.known_drill_fingerprints(),
        "run destructive drill steps",
    )
    print("destructive drill actions are allowed on this cluster")
    if db is not None:
        identity.guard_writes(db, allowlist, "let the runbook write to")
        print("the runbook's steps may write to this TaskDB")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollback-drill", description="Rehearse runbook RB-LAUNCH-002 (rollback to pilot scope) for real."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_evidence_commands(sub)
    add_conformance_commands(sub)
    add_gameday_commands(sub)

    env = sub.add_parser("env", help="create, inspect and remove drill environments")
    env_sub = env.add_subparsers(dest="env_command", required=True, metavar="ACTION")
    up = env_sub.add_parser("up", help="bring up a cluster and a TaskDB")
    up.add_argument("--name", help="environment name (default: a new drill-<timestamp> name)")
    up.add_argument("--target", choices=TARGETS, default="local")
    up.add_argument("--taskdb", choices=PROVIDERS, default="container")
    up.add_argument("--binaries-dir", help="directory with prebuilt control-plane binaries")
    up.add_argument("--json", action="store_true", help="print one JSON object")
    up.add_argument("--phase", choices=("6", "7"), default="6", help="expanded scope the world is seeded at")
    up.add_argument("--config", help="drill configuration (default: the packaged drill.yaml)")
    up.add_argument("--bare", action="store_true", help="cluster and TaskDB only: no world, simulator or sinks")
    up.set_defaults(func=_cmd_env_up)
    status = env_sub.add_parser("status", help="show environments")
    status.add_argument("--name")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_env_status)
    down = env_sub.add_parser("down", help="remove an environment and everything it started")
    down.add_argument("--name")
    down.add_argument("--all", action="store_true")
    down.set_defaults(func=_cmd_env_down)

    toolchain = sub.add_parser("toolchain", help="build (or find cached) control-plane binaries and the TaskDB image")
    toolchain.add_argument("--binaries-dir")
    toolchain.add_argument("--check", action="store_true", help="only report what is cached")
    toolchain.set_defaults(func=_cmd_toolchain)

    doctor = sub.add_parser("doctor", help="check every prerequisite and print the fix for each missing one")
    doctor.set_defaults(func=_cmd_doctor)

    inject = sub.add_parser("inject", help="inject an incident into an environment's world, or --clear them")
    inject.add_argument("incident", nargs="?", help="incident name (see the decision framework)")
    inject.add_argument("--env", help="environment name (default: the only one)")
    inject.add_argument("--clear", action="store_true", help="remove every injection")
    inject.set_defaults(func=_cmd_inject)

    check = sub.add_parser("check-target", help="print a cluster's fingerprint and whether the drill may change it")
    check.add_argument("--kubeconfig", required=False)
    check.add_argument("--context")
    check.add_argument("--cluster-allowlist")
    check.add_argument(
        "--taskdb",
        choices=("dsn",),
        help="also identify the TaskDB that ROLLBACK_DRILL_TASKDB_DSN names, and whether the runbook may write to it",
    )
    check.set_defaults(func=_cmd_check_target)

    run = sub.add_parser("run", help="run the drill (pytest-bdd underneath)")
    register(run.add_argument)
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    run.set_defaults(func=_cmd_run)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from rollback_drill.run import run_drill  # noqa: PLC0415 - imports the runner only when running

    return run_drill(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # argparse prints its usage and then the error; CONVENTIONS wants one line, so only the error is kept.
    usage = io.StringIO()
    try:
        with contextlib.redirect_stderr(usage):
            args = parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code in (0, None):
            raise
        last = (usage.getvalue().strip().splitlines() or ["invalid arguments"])[-1]
        prog, sep, problem = last.partition(": error: ")
        if not sep:
            prog, problem = parser.prog, last
        print(f"rollback-drill: {problem}; see `{prog} --help`", file=sys.stderr)
        return EXIT_INPUT
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("rollback-drill: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except InputError as exc:
        print(f"rollback-drill: {_one_line(exc)}", file=sys.stderr)
        return EXIT_INPUT
    except ToolchainError as exc:
        # A missing prerequisite: the first line says what and how to fix it; a build log may follow.
        from rollback_drill.evidence.redact import redact_text  # noqa: PLC0415

        print(f"rollback-drill: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_INPUT
    except DrillError as exc:  # VerificationFailed and the rest: the drill ran and something did not hold
        print(f"rollback-drill: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


def _one_line(exc: BaseException) -> str:
    from rollback_drill.evidence.redact import redact_text  # noqa: PLC0415

    lines = str(exc).strip().splitlines()
    head = lines[0] if lines else type(exc).__name__
    return redact_text(head + (f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else ""))


if __name__ == "__main__":
    sys.exit(main())
