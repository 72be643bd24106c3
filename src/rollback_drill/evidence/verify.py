# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""Verifying a sealed bundle: its files against the manifest, and every approval against the manifest.

``evidence verify``, the drill schedule and the tests read a ``VerifyReport``; signing
itself checks only the files (``bundle.check_files``), since approvals are what it adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback_drill.errors import InputError
from rollback_drill.evidence.attest import (
    AttestationCheck,
    check_attestation,
    load_public_key,
    machine_public_key,
)
from rollback_drill.evidence.bundle import (
    ATTESTATION_NAME,
    Problem,
    check_files,
    load_evidence,
    load_timeline,
    require_bundle,
    sha256_bytes,
)
from rollback_drill.evidence.measured import Recomputation, recompute
from rollback_drill.evidence.recorder import EVIDENCE_NAME
from rollback_drill.evidence.sign import ROLES, ApprovalCheck, check_approvals


@dataclass(frozen=True)
class VerifyReport:
    """The result of ``verify``: every problem found, and every approval checked."""

    bundle_dir: Path
    drill_id: str | None
    verdict: str | None
    manifest_sha256: str
    files_checked: int
    problems: tuple[Problem, ...]
    approvals: tuple[ApprovalCheck, ...] = ()
    identity_checked: bool = False
    """True when approvals were verified against an allowed-signers file."""
    roles: tuple[str, ...] = field(default=())
    """The roles whose approval the runbook asks for."""
    recomputation: Recomputation | None = None
    """The steps and targets measured again from the timeline (``--recompute``), else None."""
    attestation: AttestationCheck | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def approved_roles(self) -> tuple[str, ...]:
        approved = {a.role for a in self.approvals if a.ok and a.role}
        return tuple(role for role in self.roles if role in approved)

    @property
    def missing_roles(self) -> tuple[str, ...]:
        approved = set(self.approved_roles)
        return tuple(role for role in self.roles if role not in approved)

    def as_json(self) -> dict[str, Any]:
        return {
            "bundle": str(self.bundle_dir),
            "drill_id": self.drill_id,
            "verdict": self.verdict,
            "ok": self.ok,
            "manifest_sha256": self.manifest_sha256,
            "files_checked": self.files_checked,
            "problems": [{"kind": p.kind, "path": p.path, "detail": p.detail} for p in self.problems],
            "identity_checked": self.identity_checked,
            "approvals": [
                {
                    "file": a.file,
                    "role": a.role,
                    "name": a.name,
                    "signed_at": a.signed_at,
                    "manifest_sha256": a.manifest_sha256,
                    "key_fingerprint": a.key_fingerprint,
                    "principal": a.principal,
                    "identity_checked": a.identity_checked,
                    "ok": a.ok,
                    "detail": a.detail,
                }
                for a in self.approvals
            ],
            "approved_roles": list(self.approved_roles),
            "missing_roles": list(self.missing_roles),
            "attestation": None
            if self.attestation is None
            else {
                "present": self.attestation.present,
                "signature_checked": self.attestation.signature_checked,
                "key_id": self.attestation.key_id,
                "signed_by": list(self.attestation.signed_by),
                "result": self.attestation.result,
                "ok": self.attestation.ok,
            },
            "recomputed": None
            if self.recomputation is None
            else {
                "steps_checked": self.recomputation.steps_checked,
                "targets_checked": self.recomputation.targets_checked,
                "differences": [
                    {
                        "kind": d.kind,
                        "name": d.name,
                        "field": d.field,
                        "recorded": d.recorded,
                        "recomputed": d.recomputed,
                        "detail": str(d),
                    }
                    for d in self.recomputation.differences
                ],
            },
        }


def verify(
    bundle_dir: Path,
    *,
    allowed_signers: Path | None,
    recompute_from_timeline: bool = False,
    attestation_key: Path | None = None,
) -> VerifyReport:
    """Recompute every hash, validate evidence.json and check the approvals.

    Raises InputError when ``bundle_dir`` is not a sealed bundle (no evidence.json or no
    manifest) or ``allowed_signers`` cannot be read. Everything else is a ``Problem`` in
    the report: each missing, extra or changed file is named.

    With ``allowed_signers`` every approval must verify (``ssh-keygen -Y verify``) as a
    principal of that file; without it, signatures are checked against the key they carry
    (``ssh-keygen -Y check-novalidate``), which proves integrity but not identity.

    The attestation's envelopes must verify with ``attestation_key`` (a PEM public key) or, without
    it, with this machine's key when they name it (a bundle signed elsewhere is then reported as
    not checked for who signed it, not as failing); their subjects must match the manifest, each file
    whose digest differs named. A bundle without an attestation is a problem only when
    ``attestation_key`` is given.

    With ``recompute_from_timeline`` every runbook step's time and every drill target is measured
    again from timeline.jsonl alone; each value of evidence.json it does not bear out is a
    ``recompute`` problem naming the step or target and both values.
    """
    bundle_dir = require_bundle(bundle_dir, sealed=True)
    if allowed_signers is not None and not Path(allowed_signers).is_file():
        raise InputError(
            f"--allowed-signers {allowed_signers} is not a readable file; "
            "write one line per signer: '<principal> <key type> <public key>' (see ssh-keygen(1), ALLOWED SIGNERS)"
        )
    files = check_files(bundle_dir)
    approvals = check_approvals(
        bundle_dir, manifest_bytes=files.manifest_bytes, drill_id=files.drill_id, allowed_signers=allowed_signers
    )
    public_key = load_public_key(attestation_key) if attestation_key is not None else machine_public_key()
    attestation = check_attestation(bundle_dir, public_key=public_key, key_required=attestation_key is not None)
    attestation_problems = list(attestation.problems)
    if attestation_key is not None and not attestation.present:
        attestation_problems.append(
            Problem("attestation", ATTESTATION_NAME, "is missing, so nothing is signed by the drill's key")
        )
    recomputation = None
    # A damaged evidence.json is already a problem of its own; there is nothing to recompute against.
    if recompute_from_timeline and not any(p.kind == "evidence" for p in files.problems):
        recomputation = recompute(load_evidence(bundle_dir), load_timeline(bundle_dir))
    measured = () if recomputation is None else recomputation.differences
    return VerifyReport(
        bundle_dir=bundle_dir,
        drill_id=files.drill_id,
        verdict=files.verdict,
        manifest_sha256=sha256_bytes(files.manifest_bytes),
        files_checked=files.files_checked,
        problems=(
            *files.problems,
            *(Problem("approval", a.file, a.detail) for a in approvals if not a.ok),
            *attestation_problems,
            *(Problem("recompute", EVIDENCE_NAME, str(d)) for d in measured),
        ),
        approvals=tuple(approvals),
        identity_checked=allowed_signers is not None,
        roles=ROLES,
        recomputation=recomputation,
        attestation=attestation,
    )
