# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""Approvals: the runbook's sign-off, as OpenSSH signatures over a sealed bundle.

``sign`` writes ``approvals/<role>-<name>.json`` with two signatures made by
``ssh-keygen -Y sign -n rollback-drill-evidence``:

- ``signature``, over ``MANIFEST.sha256`` byte for byte, so an auditor can check it with
  nothing but OpenSSH::

      jq -r .signature approvals/sre-lead-alice.json > /tmp/sig
      ssh-keygen -Y verify -f allowed_signers -I alice@example.com \\
          -n rollback-drill-evidence -s /tmp/sig < MANIFEST.sha256

- ``statement_signature``, over ``statement``: a few lines naming the drill, the role,
  the person, the time and the manifest's sha256. Without it, the role and name in the
  JSON could be edited after signing without anyone noticing.

Verifying with an allowed-signers file (``ssh-keygen -Y verify``) proves who signed; the
key must have been valid at ``signed_at`` (``-O verify-time``), so a key that expired
since still verifies a year later. Without one, ``ssh-keygen -Y check-novalidate``
proves only that the signatures match the manifest and the key they carry.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import unicodedata
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from rollback_drill.errors import InputError, ToolchainError, VerificationFailed
from rollback_drill.evidence.bundle import (
    APPROVALS_DIR,
    MANIFEST_NAME,
    check_files,
    load_evidence,
    require_bundle,
    sha256_bytes,
    write_atomic,
)
from rollback_drill.evidence.recorder import format_utc
from rollback_drill.evidence.redact import REDACTOR, Redactor
from rollback_drill.timing.clock import Clock, SystemClock

NAMESPACE: Final = "rollback-drill-evidence"
"""The ``ssh-keygen -Y`` namespace of every signature this tool makes."""
APPROVAL_FORMAT: Final = "rollback-drill/approval-v1"

ROLES: Final = ("SRE Lead", "Engineering TL", "Product Lead", "Incident Commander")
"""The runbook's "Approval & Sign-Off" roles, in its order."""
ROLE_DUTIES: Final = {
    "SRE Lead": "Rollback procedure reviewed and validated",
    "Engineering TL": "Database rollback scripts tested",
    "Product Lead": "Stakeholder communication templates approved",
    "Incident Commander": "Escalation paths confirmed",
}
"""What each role's tick in the runbook's approval list says."""

SSH_KEYGEN_TIMEOUT_S: Final = 120.0
"""Long enough for a person to type a key's passphrase."""

_KEY_FINGERPRINT_RE: Final = re.compile(r"key (?P<fp>SHA256:[A-Za-z0-9+/=]+)")
_REQUIRED: Final = (
    "format",
    "drill_id",
    "role",
    "name",
    "signed_at",
    "manifest_sha256",
    "signature",
    "statement",
    "statement_signature",
)


def canonical_role(role: str) -> str:
    """The runbook's spelling of ``role`` (matched ignoring case, spaces and dashes)."""
    wanted = slug(role)
    for known in ROLES:
        if slug(known) == wanted:
            return known
    raise InputError(f"role {role!r} is not one of the runbook's approvers; use one of: {', '.join(ROLES)}")


def slug(text: str) -> str:
    """``"Engineering TL"`` -> ``"engineering-tl"``, ``"Zoë"`` -> ``"zoe"``; used in approval file names."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.strip().lower()).strip("-")


def name_slug(name: str) -> str:
    """The file-name part for a person: their slug, or for a name with no Latin letters
    (``"张伟"``) a stable one made from its hash."""
    return slug(name) or f"signer-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:10]}"


def approval_statement(*, drill_id: str, role: str, name: str, signed_at: str, manifest_sha256: str) -> str:
    """The text the second signature covers; verify rebuilds it from the JSON's fields."""
    return (
        "rollback-drill approval v1\n"
        f"runbook: RB-LAUNCH-002\n"
        f"drill_id: {drill_id}\n"
        f"role: {role}\n"
        f"approves: {ROLE_DUTIES.get(role, '')}\n"
        f"name: {name}\n"
        f"signed_at: {signed_at}\n"
        f"manifest: {MANIFEST_NAME}\n"
        f"manifest_sha256: {manifest_sha256}\n"
    )


@dataclass(frozen=True)
class ApprovalCheck:
    """What verifying one file of ``approvals/`` found."""

    file: str
    role: str | None
    name: str | None
    signed_at: str | None
    manifest_sha256: str | None
    key_fingerprint: str | None
    principal: str | None
    """The allowed-signers principal the signature verified as; None when identity was not checked."""
    identity_checked: bool
    ok: bool
    detail: str


@dataclass(frozen=True)
class Approval:
    """An approval file as stored, not verified: what a report may show."""

    file: str
    role: str
    name: str
    signed_at: str
    manifest_sha256: str
    key_fingerprint: str | None


def read_approvals(bundle_dir: Path) -> list[Approval]:
    """The well-formed approval files of a bundle, sorted by file name, without checking
    any signature (``verify`` does that). Malformed files are left out here."""
    directory = Path(bundle_dir) / APPROVALS_DIR
    if not directory.is_dir():
        return []
    found: list[Approval] = []
    for path in sorted(directory.glob("*.json")):
        doc = _read_json(path)
        if doc is None or any(
            not isinstance(doc.get(k), str) for k in ("role", "name", "signed_at", "manifest_sha256")
        ):
            continue
        fingerprint = doc.get("key_fingerprint")
        found.append(
            Approval(
                file=f"{APPROVALS_DIR}/{path.name}",
                role=doc["role"],
                name=doc["name"],
                signed_at=doc["signed_at"],
                manifest_sha256=doc["manifest_sha256"],
                key_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
            )
        )
    return found


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


# -- ssh-keygen --------------------------------------------------------------------


def _ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise ToolchainError("ssh-keygen is not on PATH; install OpenSSH (Debian: apt-get install openssh-client)")
    return found


def _run(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            [_ssh_keygen(), *args], input=data, capture_output=True, timeout=SSH_KEYGEN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise InputError(
            f"ssh-keygen {' '.join(args[:2])} did not finish within {SSH_KEYGEN_TIMEOUT_S:g}s; "
            "if the key has a passphrase, load it into ssh-agent first"
        ) from exc


def _sign_bytes(data: bytes, key: Path, redactor: Redactor) -> str:
    result = _run(["-Y", "sign", "-f", str(key), "-n", NAMESPACE], data)
    signature = result.stdout.decode("ascii", errors="replace")
    if result.returncode != 0 or "BEGIN SSH SIGNATURE" not in signature:
        message = redactor.redact_text(result.stderr.decode("utf-8", errors="replace").strip())
        raise InputError(f"ssh-keygen could not sign with key {key}: {message or 'no signature produced'}")
    return signature


def _verify_time(signed_at: str) -> str | None:
    try:
        moment = datetime.strptime(signed_at[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return moment.strftime("%Y%m%d%H%M%SZ")


@dataclass(frozen=True)
class _SignatureCheck:
    ok: bool
    fingerprint: str | None
    principals: tuple[str, ...]
    detail: str


def _check_signature(
    signature: str, data: bytes, *, allowed_signers: Path | None, signed_at: str, workdir: Path, label: str
) -> _SignatureCheck:
    sig_path = workdir / f"{label}.sig"
    sig_path.write_text(signature, encoding="ascii", errors="replace")
    if allowed_signers is None:
        result = _run(["-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(sig_path)], data)
        text = (result.stdout + result.stderr).decode("utf-8", errors="replace")
        match = _KEY_FINGERPRINT_RE.search(text)
        if result.returncode != 0:
            last = (text.strip().splitlines() or ["ssh-keygen gave no reason"])[-1]
            return _SignatureCheck(
                ok=False, fingerprint=None, principals=(), detail=f"the {label} does not match what was signed ({last})"
            )
        return _SignatureCheck(ok=True, fingerprint=match["fp"] if match else None, principals=(), detail="")
    time_option = _verify_time(signed_at)
    options = [f"-Overify-time={time_option}"] if time_option else []
    found = _run(["-Y", "find-principals", "-s", str(sig_path), "-f", str(allowed_signers), *options], b"")
    principals = tuple(
        line.strip() for line in found.stdout.decode("utf-8", errors="replace").splitlines() if line.strip()
    )
    if found.returncode != 0 or not principals:
        return _SignatureCheck(
            ok=False,
            fingerprint=None,
            principals=(),
            detail=f"the {label}'s key is not in {allowed_signers} (or was not valid at {signed_at})",
        )
    verified: list[str] = []
    fingerprint: str | None = None
    for principal in principals:
        result = _run(
            [
                "-Y",
                "verify",
                "-f",
                str(allowed_signers),
                "-I",
                principal,
                "-n",
                NAMESPACE,
                "-s",
                str(sig_path),
                *options,
            ],
            data,
        )
        if result.returncode == 0:
            verified.append(principal)
            match = _KEY_FINGERPRINT_RE.search(result.stdout.decode("utf-8", errors="replace"))
            fingerprint = match["fp"] if match else fingerprint
    if not verified:
        return _SignatureCheck(
            ok=False,
            fingerprint=None,
            principals=principals,
            detail=f"the {label} does not verify as {', '.join(principals)}: the signed file changed",
        )
    return _SignatureCheck(ok=True, fingerprint=fingerprint, principals=tuple(verified), detail="")


# -- signing ------------------------------------------------------------------------


def sign(
    bundle_dir: Path,
    *,
    role: str,
    name: str,
    key: Path,
    clock: Clock | None = None,
    redactor: Redactor | None = None,
) -> Path:
    """Approve a sealed bundle as ``role``: sign its manifest with the OpenSSH ``key``
    (a private key, or a public key whose private half is in ssh-agent) and write
    ``approvals/<role-slug>-<name-slug>.json``. Returns that file's path.

    Refuses (InputError) a role the runbook does not name, an empty name, a missing key,
    and an approval file that exists already; refuses (VerificationFailed) a bundle
    whose files no longer match its manifest: nobody signs what does not verify.
    """
    bundle_dir = require_bundle(bundle_dir, sealed=True)
    redactor = redactor if redactor is not None else REDACTOR
    role = canonical_role(role)
    name = " ".join(name.split())
    if not name:
        raise InputError("--name must name the person approving, e.g. --name 'Alex Example'")
    if redactor.redact_text(name) != name:
        raise InputError("--name contains something the redactor masks as a secret; give the person's name only")
    key = Path(key)
    if not key.is_file():
        raise InputError(f"--key {key} is not a file; pass an OpenSSH private key (or its .pub with ssh-agent)")

    broken = check_files(bundle_dir).problems
    if broken:
        raise VerificationFailed(
            f"bundle {bundle_dir} does not match its manifest ({'; '.join(map(str, broken[:5]))}); it cannot be signed"
        )
    approvals = bundle_dir / APPROVALS_DIR
    target = approvals / f"{slug(role)}-{name_slug(name)}.json"
    if target.exists():
        raise InputError(
            f"{target} exists: {name} has approved as {role} already; remove that file first to sign again"
        )

    drill_id = str(load_evidence(bundle_dir).get("drill_id") or bundle_dir.name)
    manifest_bytes = (bundle_dir / MANIFEST_NAME).read_bytes()
    manifest_sha = sha256_bytes(manifest_bytes)
    signed_at = format_utc((clock if clock is not None else SystemClock()).wall())
    statement = approval_statement(
        drill_id=drill_id, role=role, name=name, signed_at=signed_at, manifest_sha256=manifest_sha
    )
    signature = _sign_bytes(manifest_bytes, key, redactor)
    statement_signature = _sign_bytes(statement.encode("utf-8"), key, redactor)
    with tempfile.TemporaryDirectory(prefix="rollback-drill-sign-") as work:
        check = _check_signature(
            signature, manifest_bytes, allowed_signers=None, signed_at=signed_at, workdir=Path(work), label="signature"
        )
    if not check.ok:
        raise InputError(f"ssh-keygen made a signature it cannot check ({check.detail}); is {key} an OpenSSH key?")
    doc = {
        "format": APPROVAL_FORMAT,
        "drill_id": drill_id,
        "role": role,
        "approves": ROLE_DUTIES[role],
        "name": name,
        "signed_at": signed_at,
        "manifest": MANIFEST_NAME,
        "manifest_sha256": manifest_sha,
        "namespace": NAMESPACE,
        "key_fingerprint": check.fingerprint,
        "signature": signature,
        "statement": statement,
        "statement_signature": statement_signature,
    }
    if redactor.redact(doc) != doc:
        raise InputError("the approval would contain a value the redactor masks; check --role and --name")
    approvals.mkdir(exist_ok=True)
    write_atomic(target, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return target


# -- checking -------------------------------------------------------------------------


def check_approvals(
    bundle_dir: Path, *, manifest_bytes: bytes, drill_id: str | None, allowed_signers: Path | None
) -> list[ApprovalCheck]:
    """Check every file in ``approvals/`` against the manifest; one result per file."""
    directory = Path(bundle_dir) / APPROVALS_DIR
    if not directory.is_dir():
        return []
    with tempfile.TemporaryDirectory(prefix="rollback-drill-verify-") as work:
        return [
            _check_one(path, manifest_bytes, drill_id, allowed_signers, Path(work))
            for path in sorted(directory.iterdir())
        ]


def _structure_problem(path: Path, doc: dict[str, Any] | None) -> str | None:
    """Why ``path`` is not a well-formed approval file, or None."""
    if path.is_symlink() or not path.is_file() or path.suffix != ".json":
        return f"is not an approval file; {APPROVALS_DIR}/ holds only the <role>-<name>.json that sign writes"
    if doc is None:
        return "is not a JSON object"
    missing = [k for k in _REQUIRED if not isinstance(doc.get(k), str)]
    if missing or doc["format"] != APPROVAL_FORMAT:
        return f"is not a {APPROVAL_FORMAT} approval (missing or wrong: {', '.join(missing) or 'format'})"
    if doc["role"] not in ROLES:
        return f"names role {doc['role']!r}, which the runbook does not have"
    return None


def _content_problem(doc: dict[str, Any], manifest_bytes: bytes, drill_id: str | None) -> str | None:
    """Why a well-formed approval does not belong to this bundle as it is now, or None."""
    current = sha256_bytes(manifest_bytes)
    if doc["manifest_sha256"] != current:
        return (
            f"was signed over manifest sha256 {doc['manifest_sha256']}, but {MANIFEST_NAME} is now {current}: "
            "the bundle changed after it was signed"
        )
    if drill_id is not None and doc["drill_id"] != drill_id:
        return f"approves drill {doc['drill_id']}, not this bundle's {drill_id}"
    if doc["statement"] != _statement_of(doc):
        return "its role, name, time or drill were edited after signing (they differ from its statement)"
    return None


def _statement_of(doc: dict[str, Any]) -> str:
    return approval_statement(
        drill_id=doc["drill_id"],
        role=doc["role"],
        name=doc["name"],
        signed_at=doc["signed_at"],
        manifest_sha256=doc["manifest_sha256"],
    )


def _signatures(
    doc: dict[str, Any], manifest_bytes: bytes, allowed_signers: Path | None, workdir: Path
) -> tuple[_SignatureCheck, tuple[str, ...]]:
    """Both signatures checked; the result of the first that fails (or of the manifest's),
    and the principals both verified as."""
    signed_at: str = doc["signed_at"]
    manifest = _check_signature(
        doc["signature"],
        manifest_bytes,
        allowed_signers=allowed_signers,
        signed_at=signed_at,
        workdir=workdir,
        label="signature",
    )
    if not manifest.ok:
        return manifest, ()
    statement = _check_signature(
        doc["statement_signature"],
        _statement_of(doc).encode("utf-8"),
        allowed_signers=allowed_signers,
        signed_at=signed_at,
        workdir=workdir,
        label="statement signature",
    )
    if not statement.ok:
        return statement, ()
    if manifest.fingerprint != statement.fingerprint:
        return replace(manifest, ok=False, detail="its two signatures were made with different keys"), ()
    stored = _str(doc.get("key_fingerprint"))
    if stored is not None and manifest.fingerprint is not None and stored != manifest.fingerprint:
        return replace(
            manifest, ok=False, detail=f"claims key {stored}, but was signed with {manifest.fingerprint}"
        ), ()
    principals = tuple(sorted(set(manifest.principals) & set(statement.principals)))
    if allowed_signers is not None and not principals:
        return replace(manifest, ok=False, detail="its two signatures verify as different principals"), ()
    return manifest, principals


def _check_one(
    path: Path, manifest_bytes: bytes, drill_id: str | None, allowed_signers: Path | None, workdir: Path
) -> ApprovalCheck:
    doc = _read_json(path) if path.is_file() and not path.is_symlink() else None
    fields = doc or {}
    result = ApprovalCheck(
        file=f"{APPROVALS_DIR}/{path.name}",
        role=_str(fields.get("role")),
        name=_str(fields.get("name")),
        signed_at=_str(fields.get("signed_at")),
        manifest_sha256=_str(fields.get("manifest_sha256")),
        key_fingerprint=_str(fields.get("key_fingerprint")),
        principal=None,
        identity_checked=allowed_signers is not None,
        ok=False,
        detail="",
    )
    problem = _structure_problem(path, doc)
    if problem is None and doc is not None:
        problem = _content_problem(doc, manifest_bytes, drill_id)
    if problem is not None or doc is None:
        return replace(result, detail=problem or "is not an approval")
    check, principals = _signatures(doc, manifest_bytes, allowed_signers, workdir)
    if not check.ok:
        return replace(result, detail=check.detail)
    if allowed_signers is None:
        detail = "signatures match the manifest and the key they carry; identity not checked (pass --allowed-signers)"
    else:
        detail = f"verified as {', '.join(principals)} against {allowed_signers}"
    return replace(
        result,
        key_fingerprint=check.fingerprint,
        principal=", ".join(principals) or None,
        ok=True,
        detail=detail,
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
