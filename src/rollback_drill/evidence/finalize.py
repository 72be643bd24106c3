# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""The end of a drill: mask what slipped past the redactor, render the report and the RCA, seal, attest,
and append the drill to the history.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from rollback_drill.errors import DrillError, InputError
from rollback_drill.evidence.attest import attest
from rollback_drill.evidence.audit import record_audit
from rollback_drill.evidence.bundle import (
    MANIFEST_NAME,
    add_warnings,
    has_approvals,
    mask_secrets_in_place,
    require_bundle,
    scan_for_secrets,
    seal,
)
from rollback_drill.evidence.controls import write_controls
from rollback_drill.evidence.history import append_history
from rollback_drill.evidence.rca import render_rca
from rollback_drill.evidence.redact import REDACTOR, Redactor
from rollback_drill.evidence.report import render_report


def finalize_bundle(
    bundle_dir: Path,
    *,
    redactor: Redactor | None = None,
    history_file: Path | None = None,
    audit_log: Path | None = None,
    drill_users: Collection[str] = (),
) -> Path:
    """What a drill calls once, after ``Recorder.finish`` or ``Recorder.abort``: copy the API server's
    audit events of the drill into ``audit.jsonl`` with each write attributed (``audit_log``, by
    ``drill_users`` and the timeline's step windows; evidence.audit), mask any secret left in the bundle, write ``controls.json``, render ``report.html`` and ``rca.md``, seal the manifest,
    sign the attestation of the sealed files with the machine's key, and append the drill to
    the history. Returns the manifest's path.

    Works on an aborted bundle too (a drill killed mid-way, evidence.json with verdict
    ``aborted``): the result still verifies. ``history_file`` defaults to
    ``$XDG_STATE_HOME/rollback-drill/history.jsonl``.
    """
    bundle_dir = require_bundle(bundle_dir)
    redactor = redactor if redactor is not None else REDACTOR
    if has_approvals(bundle_dir):
        raise InputError(
            f"bundle {bundle_dir} is already signed; finalizing it again would void the signatures. "
            "Use `rollback-drill evidence verify` to check it"
        )
    if audit_log is not None:
        record_audit(bundle_dir, audit_log, drill_users=drill_users, redactor=redactor)
    warnings, binary = mask_secrets_in_place(bundle_dir, redactor)
    add_warnings(bundle_dir, warnings, redactor)
    write_controls(bundle_dir, redactor=redactor)
    render_report(bundle_dir, redactor=redactor)
    render_rca(bundle_dir, redactor=redactor)
    manifest = seal(bundle_dir, redactor=redactor)
    leaks = [relative for relative in scan_for_secrets(bundle_dir, redactor=redactor) if relative not in binary]
    if leaks:
        # Cannot happen unless a renderer bypassed the redactor; never hand such a bundle on silently.
        raise DrillError(
            f"bundle {bundle_dir} still holds a secret in {', '.join(leaks)} after sealing; do not share it"
        )
    attest(bundle_dir)
    append_history(bundle_dir, redactor=redactor, history_file=history_file)
    return manifest


def reseal_with_added_files(
    bundle_dir: Path, *, redactor: Redactor | None = None, history_file: Path | None = None
) -> Path:
    """Seal a finalized bundle again after files were added to it (the test runner's reports), and
    bring what names its manifest up to date: a new attestation, and a history line for the drill
    with the new manifest (the history keeps a drill's last line). Returns the manifest's path.

    A bundle that was never finalized (the drill's process died first) is only sealed: it has no
    attestation or history line to bring up to date. Refused (InputError, by ``seal``) once the
    bundle is signed and the files changed.
    """
    bundle_dir = require_bundle(bundle_dir)
    redactor = redactor if redactor is not None else REDACTOR
    finalized = (bundle_dir / MANIFEST_NAME).is_file()
    manifest = seal(bundle_dir, redactor=redactor)
    if finalized:
        attest(bundle_dir)
        append_history(bundle_dir, redactor=redactor, history_file=history_file)
    return manifest
