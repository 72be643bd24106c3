# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""The bundle's in-toto attestation: what the drill found, signed by the machine that ran it.

``attestation.intoto.jsonl`` holds two DSSE envelopes (one per line, the in-toto bundle
format), each signed with the machine's ed25519 key:

1. an in-toto Statement v1 with the test-result predicate
   (``https://in-toto.io/attestation/test-result/v0.1``): PASSED, WARNED or FAILED, the runbook
   and drill.yaml digests as its configuration, and the runbook steps and drill targets as its
   passed, warned and failed tests;
2. a Statement with our own predicate (``https://rollback-drill.dev/drill/v1``): step times,
   drill targets, pilot impact, decision and participants.

Both statements' subjects are every file of the manifest and ``MANIFEST.sha256`` itself. The
attestation is written after sealing and lies outside the manifest, like ``approvals/``: it
names the sealed files, so it cannot be one of them (docs/evidence.md).

The key is created once per machine under ``$XDG_STATE_HOME/rollback-drill/keys/`` (directory
0700, key 0600); ``rollback-drill evidence key`` prints its public half for auditors.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rollback_drill.errors import InputError
from rollback_drill.evidence.bundle import (
    ATTESTATION_NAME,
    MANIFEST_NAME,
    Problem,
    load_evidence,
    parse_manifest,
    require_bundle,
    sha256_bytes,
    write_atomic,
)
from rollback_drill.evidence.recorder import to_jsonable
from rollback_drill.paths import state_home

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
TEST_RESULT_PREDICATE: Final = "https://in-toto.io/attestation/test-result/v0.1"
DRILL_PREDICATE: Final = "https://rollback-drill.dev/drill/v1"
PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
KEY_NAME: Final = "attestation-ed25519.pem"


def keys_dir() -> Path:
    return state_home() / "keys"


def machine_key_path() -> Path:
    return keys_dir() / KEY_NAME


def machine_key() -> Ed25519PrivateKey:
    """This machine's attestation key, created on first use (directory 0700, key file 0600)."""
    directory = keys_dir()
    path = machine_key_path()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)
        if not path.is_file():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            # O_EXCL: two drills finishing together must not each write a key and sign with different ones.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as stream:
                    stream.write(pem)
                    stream.flush()
                    os.fsync(stream.fileno())
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise InputError(
            f"cannot create or read the attestation key {path} ({exc.strerror}); "
            "set XDG_STATE_HOME to a writable directory"
        ) from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise InputError(f"{path} is not an ed25519 key; move it away and a new one is made on the next drill")
    return loaded


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(key: Ed25519PublicKey) -> str:
    """The sha256 of the public key's DER (SubjectPublicKeyInfo), hex: the envelopes' ``keyid``."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An ed25519 public key from a PEM file (as ``evidence key`` prints it); InputError otherwise."""
    try:
        loaded = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(
            f"--attestation-key {path} is not a readable PEM public key ({exc}); "
            "use what `rollback-drill evidence key` prints on the machine that ran the drill"
        ) from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise InputError(f"--attestation-key {path} is not an ed25519 public key")
    return loaded


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is signed, so a payload cannot pass as another type."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


# -- the statements ------------------------------------------------------------------------------


def _subjects(bundle_dir: Path) -> list[dict[str, Any]]:
    manifest = (bundle_dir / MANIFEST_NAME).read_bytes()
    entries, _ = parse_manifest(manifest.decode("utf-8", errors="replace"))
    subjects = [{"name": path, "digest": {"sha256": digest}} for path, digest in sorted(entries.items())]
    subjects.append({"name": MANIFEST_NAME, "digest": {"sha256": sha256_bytes(manifest)}})
    return subjects


def _configuration(doc: dict[str, Any]) -> list[dict[str, Any]]:
    runbook = doc.get("runbook") if isinstance(doc.get("runbook"), dict) else {}
    descriptors = []
    if runbook and runbook.get("sha256"):
        descriptors.append({"name": f"runbook {runbook.get('id')}", "digest": {"sha256": runbook["sha256"]}})
    if doc.get("config_sha256"):
        descriptors.append({"name": "drill.yaml", "digest": {"sha256": doc["config_sha256"]}})
    return descriptors


def _tests(doc: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """The runbook steps and drill targets as (passed, warned, failed) test names."""
    passed: list[str] = []
    warned: list[str] = []
    failed: list[str] = []
    for step in doc.get("steps") or []:
        name = f"step {step.get('id')}: {step.get('title')}"
        status = step.get("status")
        {"pass": passed, "fail": failed}.get(str(status), warned).append(f"{name} ({status})")
    for target in doc.get("targets") or []:
        name = f"target {target.get('name')}"
        met = target.get("met")
        (passed if met is True else failed if met is False else warned).append(name)
    return passed, warned, failed


def drill_result(doc: dict[str, Any]) -> str:
    """PASSED (the drill passed, nothing to note), WARNED (it passed with warnings, over-budget,
    skipped or unmeasured items) or FAILED (it failed or was aborted)."""
    _, warned, failed = _tests(doc)
    if doc.get("verdict") != "pass" or failed:
        return "FAILED"
    return "WARNED" if warned or doc.get("warnings") else "PASSED"


def statements(bundle_dir: Path) -> list[dict[str, Any]]:
    """The two in-toto statements of a sealed bundle: the test result, and the drill's own record."""
    bundle_dir = require_bundle(bundle_dir, sealed=True)
    doc = load_evidence(bundle_dir)
    subjects = _subjects(bundle_dir)
    passed, warned, failed = _tests(doc)
    targets = [t for t in doc.get("targets") or [] if isinstance(t, dict)]
    pilot = [t for t in targets if t.get("name") in {"pilot_impact", "pilot_restored_by_step_5"}]
    result = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": TEST_RESULT_PREDICATE,
        "predicate": {
            "result": drill_result(doc),
            "configuration": _configuration(doc),
            "passedTests": passed,
            "warnedTests": warned,
            "failedTests": failed,
        },
    }
    drill = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": DRILL_PREDICATE,
        "predicate": {
            "drillId": doc.get("drill_id"),
            "runbook": doc.get("runbook"),
            "tool": doc.get("tool"),
            "incident": doc.get("incident"),
            "verdict": doc.get("verdict"),
            "startedAt": doc.get("started_at"),
            "finishedAt": doc.get("finished_at"),
            "steps": [
                {k: s.get(k) for k in ("id", "title", "status", "elapsed_s", "budget_s")}
                for s in doc.get("steps") or []
                if isinstance(s, dict)
            ],
            "targets": targets,
            "pilotImpact": pilot[0] if pilot else None,
            "decision": doc.get("decision"),
            "participants": doc.get("participants"),
        },
    }
    result_json: dict[str, Any] = to_jsonable(result)
    drill_json: dict[str, Any] = to_jsonable(drill)
    return [result_json, drill_json]


def envelope(statement: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A DSSE envelope of ``statement`` signed with ``key`` over DSSE's PAE."""
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    signature = key.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(key.public_key()), "sig": base64.b64encode(signature).decode()}],
    }


def attest(bundle_dir: Path, *, key: Ed25519PrivateKey | None = None) -> Path:
    """Write ``attestation.intoto.jsonl`` for a sealed bundle, signed with ``key`` (default: the
    machine's). Returns its path."""
    bundle_dir = require_bundle(bundle_dir, sealed=True)
    key = key if key is not None else machine_key()
    lines = [json.dumps(envelope(statement, key), sort_keys=True) for statement in statements(bundle_dir)]
    path = bundle_dir / ATTESTATION_NAME
    write_atomic(path, "".join(line + "\n" for line in lines).encode())
    return path


# -- checking ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttestationCheck:
    """What checking a bundle's attestation found."""

    present: bool
    signature_checked: bool
    """False when there was no key to check against: none given, and none on this machine or
    the envelopes name another key than this machine's."""
    key_id: str | None
    result: str | None
    """The test-result predicate's result."""
    problems: tuple[Problem, ...]
    signed_by: tuple[str, ...] = ()
    """The key ids the envelopes name."""

    @property
    def ok(self) -> bool:
        return not self.problems


def _problem(detail: str, path: str = ATTESTATION_NAME) -> Problem:
    return Problem("attestation", path, detail)


def _open_envelope(
    line: str, number: int, key: Ed25519PublicKey | None
) -> tuple[dict[str, Any] | None, list[Problem], set[str]]:
    """The statement of one envelope line, what is wrong with it, and the key ids it claims."""
    try:
        env = json.loads(line)
        payload = base64.b64decode(env["payload"], validate=True)
        payload_type = env["payloadType"]
        signatures = env["signatures"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None, [_problem(f"envelope {number} is not a DSSE envelope")], set()
    claimed = (
        {str(s.get("keyid")) for s in signatures if isinstance(s, dict)} if isinstance(signatures, list) else set()
    )
    problems = []
    if payload_type != PAYLOAD_TYPE:
        problems.append(_problem(f"envelope {number} has payloadType {payload_type!r}, not {PAYLOAD_TYPE}"))
    if key is not None:
        valid = False
        for signature in signatures if isinstance(signatures, list) else []:
            try:
                key.verify(base64.b64decode(signature["sig"]), pae(str(payload_type), payload))
            except (InvalidSignature, KeyError, TypeError, ValueError):
                continue
            valid = True
        if not valid:
            problems.append(
                _problem(
                    f"envelope {number}: no signature verifies with key {key_id(key)}: the statement changed "
                    "or another key signed it"
                )
            )
    try:
        statement = json.loads(payload)
    except json.JSONDecodeError:
        return None, [*problems, _problem(f"envelope {number}'s payload is not JSON")], claimed
    return statement if isinstance(statement, dict) else None, problems, claimed


def _subject_problems(statement: dict[str, Any], expected: dict[str, str], number: int) -> list[Problem]:
    problems = []
    if statement.get("_type") != STATEMENT_TYPE:
        problems.append(_problem(f"envelope {number}'s payload is not an in-toto Statement v1"))
    named: dict[str, str] = {}
    for subject in statement.get("subject") or []:
        if isinstance(subject, dict) and isinstance(subject.get("digest"), dict):
            named[str(subject.get("name"))] = str(subject["digest"].get("sha256"))
    for path in sorted(expected.keys() | named.keys()):
        if path not in named:
            problems.append(_problem(f"is in the manifest but not a subject of envelope {number}", path))
        elif path not in expected:
            problems.append(_problem(f"is a subject of envelope {number} but not in the manifest", path))
        elif named[path] != expected[path]:
            problems.append(
                _problem(
                    f"sha256 {expected[path]} in the manifest, {named[path]} in the attestation (envelope {number})",
                    path,
                )
            )
    return problems


def check_attestation(
    bundle_dir: Path, *, public_key: Ed25519PublicKey | None, key_required: bool = True
) -> AttestationCheck:
    """Check the envelopes' signatures against ``public_key`` and their subjects against the manifest.

    Each file whose digest differs between the manifest and a statement is named. Without a key
    the subjects are still compared, but ``signature_checked`` is False. With ``key_required``
    False (this machine's key, not one the auditor gave), envelopes that name another key are
    not checked against it either: a bundle from another machine is then checked for integrity,
    not for who signed it, and ``signed_by`` says which key to ask for.
    """
    path = Path(bundle_dir) / ATTESTATION_NAME
    if not path.is_file():
        return AttestationCheck(present=False, signature_checked=False, key_id=None, result=None, problems=())
    manifest = (Path(bundle_dir) / MANIFEST_NAME).read_bytes()
    entries, _ = parse_manifest(manifest.decode("utf-8", errors="replace"))
    expected = {**entries, MANIFEST_NAME: sha256_bytes(manifest)}
    problems: list[Problem] = []
    result = None
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    if not lines:
        problems.append(_problem("holds no envelope"))
    kinds = set()
    signed_by: set[str] = set()
    checked = public_key is not None
    for number, line in enumerate(lines, start=1):
        claimed = _open_envelope(line, number, None)[2]
        signed_by |= claimed
        key = public_key
        if key is not None and not key_required and key_id(key) not in claimed:
            key, checked = None, False
        statement, found, _ = _open_envelope(line, number, key)
        problems += found
        if statement is None:
            continue
        problems += _subject_problems(statement, expected, number)
        kinds.add(statement.get("predicateType"))
        if statement.get("predicateType") == TEST_RESULT_PREDICATE and isinstance(statement.get("predicate"), dict):
            result = statement["predicate"].get("result")
    missing = {TEST_RESULT_PREDICATE, DRILL_PREDICATE} - kinds
    problems += [_problem(f"has no statement with predicateType {kind}") for kind in sorted(missing)]
    return AttestationCheck(
        present=True,
        signature_checked=checked and bool(lines),
        key_id=key_id(public_key) if public_key is not None else None,
        result=result,
        problems=tuple(problems),
        signed_by=tuple(sorted(signed_by)),
    )


def machine_public_key() -> Ed25519PublicKey | None:
    """This machine's attestation public key, or None when it has none yet (nothing is created)."""
    path = machine_key_path()
    if not path.is_file():
        return None
    return machine_key().public_key()
