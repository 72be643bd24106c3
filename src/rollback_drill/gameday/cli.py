"""`rollback-drill gameday`: wired into the main command with ``add_commands(subparsers)``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rollback_drill import environment
from rollback_drill.errors import InputError
from rollback_drill.settings import parse_participants

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _progress(message: str) -> None:
    print(f"[env] {message}", file=sys.stderr, flush=True)


def _cmd_gameday(args: argparse.Namespace) -> int:
    from rollback_drill.gameday.session import run_gameday  # noqa: PLC0415 - the cluster client only when running

    if args.step_timeout <= 0:
        raise InputError(f"--step-timeout must be a positive number of seconds, got {args.step_timeout}")
    participants = parse_participants(args.participants) if args.participants else None
    created = None
    if args.env:
        state = environment.EnvironmentState.load(args.env)
    else:
        states = list(environment.iter_states())
        if len(states) == 1:
            state = states[0]
        elif states:
            raise InputError(
                f"name the environment with --env NAME (environments: {', '.join(s.name for s in states)})"
            )
        else:
            created = environment.new_env_name()
            print(f"no drill environment: bringing up {created} (removed again at the end)", flush=True)
            state = environment.bring_up(created, progress=_progress, with_world=True, phase=int(args.phase))
    try:
        result = run_gameday(
            state,
            incident=args.incident,
            participants=participants,
            evidence_dir=Path(args.evidence_dir),
            step_timeout_s=args.step_timeout,
            poll_s=args.poll,
            phase=int(args.phase),
            facilitator=args.facilitator,
        )
    finally:
        if created is not None:
            environment.tear_down(state)
    if result.verdict == "aborted":
        return EXIT_INTERRUPTED
    return EXIT_OK if result.verdict == "pass" else EXIT_FAILED


def add_commands(subparsers: Any) -> None:
    """Add ``gameday`` to the ``rollback-drill`` sub-commands."""
    gameday = subparsers.add_parser(
        "gameday",
        help="people run the runbook; the drill injects the incident, announces each step, verifies and times it",
    )
    gameday.add_argument("--env", help="environment from `rollback-drill env up` (default: the only one, or a new one)")
    gameday.add_argument("--incident", default="mass-failure", help="incident to inject (default: mass-failure)")
    gameday.add_argument("--participants", metavar="LIST", help="'Role=Name,...' (default: drill.yaml's)")
    gameday.add_argument("--facilitator", action="store_true", help="also print what the drill observes for each step")
    gameday.add_argument("--evidence-dir", default="reports", help="where the bundle goes (default: reports/)")
    gameday.add_argument(
        "--step-timeout",
        type=float,
        default=900.0,
        metavar="S",
        help="announce the next step after S seconds (default: 900)",
    )
    gameday.add_argument(
        "--poll", type=float, default=1.0, metavar="S", help="seconds between observations (default: 1)"
    )
    gameday.add_argument(
        "--phase", choices=("6", "7"), default="6", help="expanded scope to reset the world to if needed"
    )
    gameday.set_defaults(func=_cmd_gameday)
