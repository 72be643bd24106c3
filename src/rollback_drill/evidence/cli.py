# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""The evidence commands of ``rollback-drill``: ``evidence verify|key|sign|report``, ``history [verify]``,
``schedule``.

``add_commands`` adds them to the main parser's subcommands. Each handler returns the
exit code (CONVENTIONS): 0 done, 1 a bundle does not verify (or the history's chain is broken,
or, with ``schedule --check``, the schedule needs attention); bad input raises InputError, which the main
command turns into exit 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback_drill.config import load_config
from rollback_drill.errors import InputError
from rollback_drill.evidence.attest import attest, key_id, machine_key, machine_key_path, public_key_pem
from rollback_drill.evidence.bundle import ATTESTATION_NAME, MANIFEST_NAME, has_approvals, require_bundle, seal
from rollback_drill.evidence.history import (
    DEFAULT_SLOWER_THAN_MEDIAN_PCT,
    PILOT_BASELINE_S,
    HistoryCheck,
    check_history,
    compare,
    history_path,
    load_history,
)
from rollback_drill.evidence.rca import format_duration, render_rca
from rollback_drill.evidence.redact import redact_text
from rollback_drill.evidence.report import render_report
from rollback_drill.evidence.schedule import ScheduleStatus, schedule_status
from rollback_drill.evidence.sign import ROLES, sign
from rollback_drill.evidence.verify import VerifyReport, verify

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]  # noqa: SLF001 - argparse's own type for add_subparsers()

EXIT_OK = 0
EXIT_FAILED = 1


def add_commands(subparsers: SubParsers) -> None:
    """Add ``evidence``, ``history`` and ``schedule`` to the ``rollback-drill`` command."""
    evidence = subparsers.add_parser("evidence", help="verify, sign and re-render evidence bundles")
    actions = evidence.add_subparsers(dest="evidence_command", required=True, metavar="ACTION")

    check = actions.add_parser(
        "verify", help="check a bundle against its manifest, its schema and its approvals (exit 1 on any mismatch)"
    )
    check.add_argument("dir", metavar="DIR", help="the bundle, reports/<drill_id>/")
    check.add_argument(
        "--allowed-signers",
        metavar="FILE",
        help="OpenSSH allowed-signers file: verify who signed (without it, only that the signatures match)",
    )
    check.add_argument(
        "--attestation-key",
        metavar="PEM",
        help="the drill machine's public key (`rollback-drill evidence key`); default: this machine's own",
    )
    check.add_argument(
        "--recompute",
        action="store_true",
        help="measure every step time and drill target again from timeline.jsonl and fail on any difference",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=_cmd_verify)

    show_key = actions.add_parser(
        "key", help="print this machine's attestation public key (created on first use), for auditors"
    )
    show_key.set_defaults(func=_cmd_key)

    approve = actions.add_parser("sign", help="approve a sealed bundle with an OpenSSH key")
    approve.add_argument("dir", metavar="DIR", help="the bundle, reports/<drill_id>/")
    approve.add_argument("--role", required=True, help=f"one of: {', '.join(ROLES)}")
    approve.add_argument("--name", required=True, help="the person approving")
    approve.add_argument("--key", required=True, metavar="KEY", help="OpenSSH private key (or its .pub with ssh-agent)")
    approve.set_defaults(func=_cmd_sign)

    report = actions.add_parser("report", help="render report.html and rca.md again")
    report.add_argument("dir", metavar="DIR", help="the bundle, reports/<drill_id>/")
    report.add_argument(
        "--output",
        metavar="OUT",
        help="write them into OUT instead (needed for a signed bundle, whose files must not change)",
    )
    report.set_defaults(func=_cmd_report)

    history = subparsers.add_parser("history", help="past drills, steps slower than usual, and the pilot baseline")
    history.add_argument("--json", action="store_true", help="print one JSON object")
    history.add_argument(
        "--threshold-pct",
        type=float,
        default=DEFAULT_SLOWER_THAN_MEDIAN_PCT,
        metavar="P",
        help="flag a step slower than the median of earlier drills by more than P %% (default %(default)s)",
    )
    history.set_defaults(func=_cmd_history)
    history_actions = history.add_subparsers(dest="history_command", required=False, metavar="ACTION")
    chain = history_actions.add_parser(
        "verify", help="walk the history's chain; exit 1 naming the first removed, edited or reordered line"
    )
    chain.add_argument("--json", action="store_true", help="print one JSON object")
    chain.set_defaults(func=_cmd_history_verify)

    schedule = subparsers.add_parser("schedule", help="the runbook's drill schedule: pre-phase and quarterly drills")
    schedule.add_argument("--json", action="store_true", help="print one JSON object")
    schedule.add_argument("--config", metavar="PATH", help="drill configuration (default: the packaged drill.yaml)")
    schedule.add_argument("--today", metavar="YYYY-MM-DD", help="check as of this date (default: today, UTC)")
    schedule.add_argument(
        "--allowed-signers", metavar="FILE", help="count only approvals that verify against this allowed-signers file"
    )
    schedule.add_argument("--check", action="store_true", help="exit 1 when a drill is overdue")
    schedule.set_defaults(func=_cmd_schedule)


def _print_json(payload: Any) -> None:
    print(redact_text(json.dumps(payload, indent=2, ensure_ascii=False)))


def _out(text: str) -> None:
    print(redact_text(text))


# -- evidence -------------------------------------------------------------------------


def _cmd_verify(args: argparse.Namespace) -> int:
    signers = Path(args.allowed_signers) if args.allowed_signers else None
    report = verify(
        Path(args.dir),
        allowed_signers=signers,
        recompute_from_timeline=args.recompute,
        attestation_key=Path(args.attestation_key) if args.attestation_key else None,
    )
    if args.json:
        _print_json(report.as_json())
    else:
        _print_verify(report, signers)
    if not report.ok:
        first = report.problems[0]
        more = f" (+{len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        print(
            redact_text(f"rollback-drill: bundle {report.bundle_dir} does not verify: {first.kind} {first.path}{more}"),
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _print_verify(report: VerifyReport, signers: Path | None) -> None:
    _out(f"bundle {report.bundle_dir}: drill {report.drill_id}, verdict {report.verdict}")
    _out(f"  {MANIFEST_NAME}: sha256 {report.manifest_sha256}, {report.files_checked} files")
    file_problems = [p for p in report.problems if p.kind not in {"approval", "recompute", "attestation"}]
    if file_problems:
        _out("  FILES DO NOT MATCH:")
        for problem in file_problems:
            _out(f"    {problem}")
    else:
        _out("  every file matches the manifest; evidence.json follows the schema and lists every artifact")
    checked = f"identity checked against {signers}" if signers else "identity NOT checked: pass --allowed-signers FILE"
    if report.approvals:
        _out(f"  approvals ({checked}):")
    else:
        _out("  approvals: none yet")
    for approval in report.approvals:
        state = "ok" if approval.ok else "FAILED"
        _out(
            f"    [{state}] {approval.role or '?'}: {approval.name or '?'}, signed {approval.signed_at or '?'}, "
            f"key {approval.key_fingerprint or '?'} ({approval.file}): {approval.detail}"
        )
    if file_problems and report.approvals:
        _out(
            f"  the approvals sign {MANIFEST_NAME}, which the files above no longer match: the bundle changed after signing"
        )
    if report.missing_roles:
        _out(f"  not approved yet by: {', '.join(report.missing_roles)}")
    _print_attestation(report)
    recomputation = report.recomputation
    if recomputation is not None:
        checked = f"{recomputation.steps_checked} step(s) and {recomputation.targets_checked} target(s)"
        if recomputation.ok:
            _out(f"  recomputed from the timeline: {checked}, all as evidence.json states")
        else:
            _out(f"  recomputed from the timeline: {checked}; evidence.json DIFFERS:")
            for difference in recomputation.differences:
                _out(f"    {difference}")
    _out("verified" if report.ok else "NOT VERIFIED")


def _print_attestation(report: VerifyReport) -> None:
    check = report.attestation
    if check is None or not check.present:
        _out(f"  {ATTESTATION_NAME}: none")
        return
    signed = (
        f"signature verified with key {check.key_id}"
        if check.signature_checked
        else ("signature NOT checked: no key on this machine; pass --attestation-key PEM")
    )
    problems = [p for p in report.problems if p.kind == "attestation"]
    if problems:
        _out(f"  {ATTESTATION_NAME}: DOES NOT MATCH")
        for problem in problems:
            _out(f"    {problem}")
    else:
        _out(f"  {ATTESTATION_NAME}: result {check.result}, {signed}, subjects match the manifest")


def _cmd_key(_args: argparse.Namespace) -> int:
    key = machine_key().public_key()
    _out(f"# rollback-drill attestation key {key_id(key)} ({machine_key_path()})")
    print(public_key_pem(key), end="")
    return EXIT_OK


def _cmd_sign(args: argparse.Namespace) -> int:
    path = sign(Path(args.dir), role=args.role, name=args.name, key=Path(args.key))
    doc = json.loads(path.read_text(encoding="utf-8"))
    _out(
        f"{path}: {doc['role']} {doc['name']} approved manifest sha256 {doc['manifest_sha256']} "
        f"at {doc['signed_at']} with key {doc.get('key_fingerprint')}"
    )
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    bundle = require_bundle(Path(args.dir))
    if args.output:
        output = Path(args.output)
        if output.resolve() == bundle.resolve():
            raise InputError("--output must be a directory other than the bundle; omit it to re-render in place")
        written = [render_report(bundle, output_dir=output), render_rca(bundle, output_dir=output)]
    else:
        if has_approvals(bundle):
            raise InputError(
                f"bundle {bundle} is signed; re-rendering its report in place would void the signatures. "
                "Pass --output DIR to write the re-rendered report (with the approvals filled in) elsewhere"
            )
        written = [render_report(bundle), render_rca(bundle)]
        if (bundle / MANIFEST_NAME).is_file():
            written += [seal(bundle), attest(bundle)]
    for path in written:
        _out(f"wrote {path}")
    return EXIT_OK


# -- history ---------------------------------------------------------------------------


def _cmd_history(args: argparse.Namespace) -> int:
    entries = load_history()
    comparisons = compare(entries, slower_than_median_pct=args.threshold_pct)
    if args.json:
        _print_json(
            {
                "history": str(history_path()),
                "threshold_pct": args.threshold_pct,
                "pilot_baseline_s": PILOT_BASELINE_S,
                "drills": [e.as_json() for e in entries],
                "comparison": [c.as_json() for c in comparisons],
            }
        )
        return EXIT_OK
    if not entries:
        _out(f"no drills in {history_path()} yet; a drill adds itself when it ends")
        return EXIT_OK
    _out(f"{len(entries)} drill(s) in {history_path()}")
    for entry, comparison in zip(entries, comparisons, strict=True):
        phase = f"phase {entry.phase}" if entry.phase is not None else "phase ?"
        _out(
            f"{entry.drill_id}  {entry.finished_at or 'not finished'}  {entry.verdict:<7}  {entry.incident}  "
            f"{phase}  target {entry.target_kind or '?'}"
        )
        for slow in comparison.slow_steps:
            _out(
                f"    slower: {slow.step} took {format_duration(slow.elapsed_s)}, {slow.slower_pct:g}% over the median "
                f"{format_duration(slow.median_s)} of {slow.samples} earlier drill(s)"
            )
        if comparison.baseline:
            rows = ", ".join(
                f"{b.target} {format_duration(b.measured_s)} (pilot {format_duration(b.baseline_s)})"
                for b in comparison.baseline
            )
            _out(f"    vs pilot simulation: {rows}")
    return EXIT_OK


def _cmd_history_verify(args: argparse.Namespace) -> int:
    check = check_history()
    if args.json:
        _print_json(check.as_json())
    else:
        _print_history_check(check)
    return EXIT_OK if check.ok else EXIT_FAILED


def _print_history_check(check: HistoryCheck) -> None:
    _out(f"history {check.path}: {check.lines} line(s)")
    if check.unchained:
        _out(
            f"  unchained (written before lines were chained; not counted): line(s) "
            f"{', '.join(str(n) for n in check.unchained)}"
        )
    _out(f"  chained: {check.chained} line(s), head sha256 {check.head_sha256 or '-'}")
    if check.first_break is None:
        _out("chain verified")
    else:
        _out(f"  CHAIN BROKEN at {check.first_break}")
        _out("  drills from there on are not counted by `rollback-drill schedule`")
        _out("NOT VERIFIED")


# -- schedule --------------------------------------------------------------------------


def _parse_day(text: str | None) -> date:
    if not text:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"--today {text!r} is not a date; write YYYY-MM-DD") from None


def _cmd_schedule(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config) if args.config else None)
    signers = Path(args.allowed_signers) if args.allowed_signers else None
    if signers is not None and not signers.is_file():
        raise InputError(f"--allowed-signers {signers} is not a readable file")
    chain = check_history()
    status = schedule_status(
        config, chain.counted, _parse_day(args.today), allowed_signers=signers, history_check=chain
    )
    if args.json:
        _print_json(status.as_json())
    else:
        _print_schedule(status)
    return EXIT_FAILED if args.check and status.attention_needed else EXIT_OK


def _print_schedule(status: ScheduleStatus) -> None:
    _out(f"drill schedule as of {status.today.isoformat()}")
    for drill_id, why in status.uncounted:
        _out(f"  not counted: {drill_id}: {why}")
    last = status.last_drill
    _out(f"  last drill: {f'{last.drill_id} ({last.verdict}, {last.day})' if last else 'none'}")
    if status.next_quarterly_due is None:
        _out(f"  quarterly (every {status.quarterly_days} days): OVERDUE, no drill has passed yet")
    elif status.quarterly_overdue:
        _out(
            f"  quarterly (every {status.quarterly_days} days): OVERDUE by {status.days_overdue} day(s), "
            f"was due {status.next_quarterly_due.isoformat()}"
        )
    else:
        _out(f"  quarterly (every {status.quarterly_days} days): next due {status.next_quarterly_due.isoformat()}")
    for drill in status.pre_phase:
        if drill.satisfied:
            state = "met"
        elif drill.overdue:
            state = "MISSED"
        else:
            state = "not yet met"
        _out(f"  {drill.name} (due {drill.due.isoformat()}): {state}: {drill.detail}")
