"""``rollback-drill conformance [RUNBOOK.md] [--env NAME] [--json] [--evidence-dir DIR]``.

Runs the runbook's own commands on a freshly seeded drill world (a throwaway environment,
brought up and removed again, unless ``--env`` names one) and reports, command by command,
where the document has drifted. Exit codes (CONVENTIONS): 0 everything runnable is ok,
1 something drifted, 2 bad input or refused (the main command turns ``InputError`` into
one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from rollback_drill import environment
from rollback_drill.config import load_config
from rollback_drill.conformance.bundle import ConformanceFiles, write_bundle
from rollback_drill.conformance.report import STATUSES, CommandResult, ConformanceReport
from rollback_drill.conformance.run import DEFAULT_INCIDENT, run_conformance
from rollback_drill.conformance.runbook import default_runbook_path, parse_runbook
from rollback_drill.errors import InputError
from rollback_drill.evidence.redact import redact, redact_text

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]  # noqa: SLF001 - argparse's own type for add_subparsers()

EXIT_OK: Final = 0
EXIT_DRIFTED: Final = 1
_MARKS: Final = {"ok": "ok", "drifted": "DRIFT", "not-runnable": "n/a", "manual": "person"}


def add_commands(subparsers: SubParsers) -> None:
    """Add ``conformance`` to the ``rollback-drill`` command."""
    parser = subparsers.add_parser(
        "conformance",
        help="run the runbook's own commands on a fresh drill world and report where the document has drifted",
        description=(
            "Run the runbook's own commands, in order, on a freshly seeded drill world (a throwaway environment, "
            "brought up and removed again, unless --env names one), and report command by command where the "
            "document has drifted. Exit 0: everything runnable is ok; 1: something drifted; 2: bad input or refused."
        ),
    )
    parser.add_argument(
        "runbook", nargs="?", metavar="RUNBOOK.md", help="a runbook in RB-LAUNCH-002's style (default: RB-LAUNCH-002)"
    )
    parser.add_argument(
        "--env",
        metavar="NAME",
        help="an environment from `rollback-drill env up` (default: a throwaway one, removed afterwards)",
    )
    parser.add_argument("--json", action="store_true", help="print conformance.json on stdout")
    parser.add_argument(
        "--evidence-dir", metavar="DIR", default="reports", help="where the bundle goes (default: %(default)s)"
    )
    parser.add_argument("--phase", type=int, choices=(6, 7), default=6, help="the world's phase (default: 6)")
    parser.add_argument("--config", metavar="PATH", help="drill configuration (default: the packaged drill.yaml)")
    parser.set_defaults(func=_cmd_conformance)


def _progress(message: str) -> None:
    print(f"[conformance] {redact_text(message)}", file=sys.stderr, flush=True)


def _command_progress(result: CommandResult) -> None:
    _progress(
        f"{result.command.index:>2} line {result.line:<4} {_MARKS[result.status]:<6} {result.kind:<17} "
        f"{_one_line(result.command.text, 70)}"
    )


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _cmd_conformance(args: argparse.Namespace) -> int:
    runbook = Path(args.runbook) if args.runbook else default_runbook_path()
    if not runbook.is_file():
        raise InputError(f"runbook {runbook} is not a file; pass the path of a Markdown runbook")
    parsed = parse_runbook(runbook)  # bad input fails here, before any environment comes up
    if not parsed.commands:
        raise InputError(f"runbook {runbook} has no ```bash block with a command; nothing to check")
    config = load_config(Path(args.config) if args.config else None)
    if args.env:
        state = environment.EnvironmentState.load(args.env)
        report = run_conformance(
            runbook, state, config=config, phase=args.phase, incident=DEFAULT_INCIDENT, progress=_command_progress
        )
    else:
        name = environment.new_env_name()
        _progress(f"bringing up throwaway environment {name}")
        state = environment.bring_up(name, progress=_progress)
        try:
            report = run_conformance(
                runbook, state, config=config, phase=args.phase, incident=DEFAULT_INCIDENT, progress=_command_progress
            )
        finally:
            _progress(f"removing environment {name}")
            environment.tear_down(state)
    files = write_bundle(report, Path(args.evidence_dir), config=config)
    if args.json:
        print(json.dumps(redact(report.to_json()), indent=2, ensure_ascii=False))
    else:
        _print_report(report, files)
    return EXIT_OK if report.ok else EXIT_DRIFTED


def _print_report(report: ConformanceReport, files: ConformanceFiles) -> None:
    counts = report.counts
    runbook = report.runbook
    print(redact_text(f"{runbook.runbook_id or runbook.path}: {counts['total']} commands in the document"))
    print("  " + ", ".join(f"{counts[s]} {s}" for s in STATUSES))
    for result in report.results:
        if result.status in {"drifted", "not-runnable"}:
            print(redact_text(f"\n  line {result.line} [{result.command.section}] {result.status.upper()}"))
            print(redact_text(f"    $ {_one_line(result.command.text, 150)}"))
            print(redact_text(f"    why: {result.why}"))
            if result.proposed_fix:
                fix = "\n".join(f"      {line}" for line in result.proposed_fix.splitlines())
                print(redact_text(f"    proposed:\n{fix}"))
            if result.fix_check:
                print(redact_text(f"    checked: {result.fix_check}"))
    print(redact_text(f"\nconformance.json: {files.conformance_json}"))
    print(redact_text(f"evidence bundle:  {files.bundle_dir}  (open {files.report_html})"))
