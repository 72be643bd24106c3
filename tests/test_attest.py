# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""The bundle's in-toto attestation: DSSE envelopes signed with the machine's ed25519 key, whose
subjects are the sealed files; ``evidence verify`` names any file or statement that changed."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rollback_drill.cli import main
from rollback_drill.errors import InputError
from rollback_drill.evidence import EVIDENCE_NAME, TIMELINE_NAME, Recorder, Redactor
from rollback_drill.evidence.attest import (
    DRILL_PREDICATE,
    PAYLOAD_TYPE,
    STATEMENT_TYPE,
    TEST_RESULT_PREDICATE,
    attest,
    check_attestation,
    drill_result,
    key_id,
    keys_dir,
    load_public_key,
    machine_key,
    machine_key_path,
    machine_public_key,
    pae,
    public_key_pem,
    statements,
)
from rollback_drill.evidence.bundle import ATTESTATION_NAME, MANIFEST_NAME, parse_manifest, seal
from rollback_drill.evidence.finalize import finalize_bundle
from rollback_drill.evidence.verify import verify
from rollback_drill.timing.clock import FakeClock

START = datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)
ARTIFACT = "backups/repo_config_pre_rollback.yaml"
SEALED = (EVIDENCE_NAME, TIMELINE_NAME, "report.html", "rca.md", "controls.json", ARTIFACT)


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch) -> Path:
    """Keys and history go to a temporary XDG_STATE_HOME, never the user's."""
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


def drill(evidence_dir: Path, *, verdict: str = "pass", over_budget: bool = False) -> Path:
    clock = FakeClock(START)
    rec = Recorder.create(evidence_dir, incident="mass-failure", clock=clock, redactor=Redactor())
    rec.set("runbook", {"id": "RB-LAUNCH-002", "sha256": "a" * 64})
    rec.set("config_sha256", "b" * 64)
    rec.set("participants", {"Incident Commander": "Dana", "SRE Lead": "Sam"})
    rec.set(
        "decision",
        {
            "priority": "P1",
            "criteria_met": ["Mass Concurrent Failures: >10 repos failing simultaneously"],
            "action": "roll back",
            "reasons": ["12 repos failing at Phase 7"],
            "triage_s": 0,
        },
    )
    rec.begin_step("step-1", "Restrict the allowlist", 120)
    clock.advance(200 if over_budget else 40)
    rec.end_step("step-1")
    backup = rec.bundle_dir / ARTIFACT
    backup.parent.mkdir()
    backup.write_text("kind: ConfigMap\n", encoding="utf-8")
    rec.add_artifact(backup)
    rec.set_targets(
        [
            {"name": "rollback_execution", "limit": 600, "measured": 45.0, "unit": "s", "met": True},
            {"name": "pilot_impact", "limit": 0, "measured": 0, "unit": "requests", "met": True},
        ]
    )
    rec.finish(verdict)
    finalize_bundle(rec.bundle_dir, redactor=Redactor())
    return rec.bundle_dir


@pytest.fixture
def bundle(tmp_path) -> Path:
    return drill(tmp_path / "reports")


def envelopes(bundle: Path) -> list[dict]:
    return [json.loads(line) for line in (bundle / ATTESTATION_NAME).read_text(encoding="utf-8").splitlines()]


def payload(envelope: dict) -> dict:
    return json.loads(base64.b64decode(envelope["payload"]))


def attestation_problems(report) -> set[str]:
    return {p.path for p in report.problems if p.kind == "attestation"}


def reseal_by_hand(bundle: Path) -> None:
    """Write the manifest over the files as they are now, keeping the attestation: a forger's seal."""
    entries, _ = parse_manifest((bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    for path in entries:
        entries[path] = hashlib.sha256((bundle / path).read_bytes()).hexdigest()
    (bundle / MANIFEST_NAME).write_text("".join(f"{entries[p]}  {p}\n" for p in sorted(entries)), encoding="utf-8")


# -- the key ---------------------------------------------------------------------------------------


def test_the_machine_key_is_made_once_and_kept_private(state_home):
    assert machine_public_key() is None
    first = machine_key()
    assert machine_key_path().parent == keys_dir() == state_home / "rollback-drill" / "keys"
    assert stat.S_IMODE(keys_dir().stat().st_mode) == 0o700
    assert stat.S_IMODE(machine_key_path().stat().st_mode) == 0o600
    assert key_id(machine_key().public_key()) == key_id(first.public_key())
    assert key_id(machine_public_key()) == key_id(first.public_key())


def test_evidence_key_prints_the_public_key(tmp_path, capsys):
    assert main(["evidence", "key"]) == 0
    out = capsys.readouterr().out
    assert key_id(machine_key().public_key()) in out
    pem = out[out.index("-----BEGIN PUBLIC KEY-----") :]
    (tmp_path / "drill.pub").write_text(pem, encoding="utf-8")
    assert key_id(load_public_key(tmp_path / "drill.pub")) == key_id(machine_key().public_key())
    assert "PRIVATE" not in out


def test_a_key_file_that_is_not_a_public_key_is_refused(tmp_path):
    (tmp_path / "bad.pem").write_text("not a key\n", encoding="utf-8")
    with pytest.raises(InputError, match="--attestation-key"):
        load_public_key(tmp_path / "bad.pem")


def test_pae_is_dsses_encoding():
    assert pae("application/vnd.in-toto+json", b"{}") == b"DSSEv1 28 application/vnd.in-toto+json 2 {}"


# -- the statements --------------------------------------------------------------------------------


def test_every_bundle_has_two_signed_statements_naming_every_sealed_file(bundle):
    found = envelopes(bundle)
    assert [e["payloadType"] for e in found] == [PAYLOAD_TYPE, PAYLOAD_TYPE]
    key = machine_key().public_key()
    for envelope in found:
        (signature,) = envelope["signatures"]
        assert signature["keyid"] == key_id(key)
        key.verify(base64.b64decode(signature["sig"]), pae(PAYLOAD_TYPE, base64.b64decode(envelope["payload"])))
    result, drill_record = (payload(e) for e in found)
    entries, _ = parse_manifest((bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    expected = {
        **entries,
        MANIFEST_NAME: hashlib.sha256((bundle / MANIFEST_NAME).read_bytes()).hexdigest(),
    }
    for statement in (result, drill_record):
        assert statement["_type"] == STATEMENT_TYPE
        assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == expected
    assert set(expected) == {*SEALED, MANIFEST_NAME}
    assert result["predicateType"] == TEST_RESULT_PREDICATE
    predicate = result["predicate"]
    assert predicate["result"] == "PASSED"
    assert predicate["configuration"] == [
        {"name": "runbook RB-LAUNCH-002", "digest": {"sha256": "a" * 64}},
        {"name": "drill.yaml", "digest": {"sha256": "b" * 64}},
    ]
    assert predicate["passedTests"] == [
        "step step-1: Restrict the allowlist (pass)",
        "target rollback_execution",
        "target pilot_impact",
    ]
    assert (predicate["warnedTests"], predicate["failedTests"]) == ([], [])
    assert drill_record["predicateType"] == DRILL_PREDICATE
    ours = drill_record["predicate"]
    assert ours["steps"] == [
        {"id": "step-1", "title": "Restrict the allowlist", "status": "pass", "elapsed_s": 40.0, "budget_s": 120.0}
    ]
    assert ours["pilotImpact"]["measured"] == 0
    assert ours["participants"] == {"Incident Commander": "Dana", "SRE Lead": "Sam"}
    assert ours["decision"]["priority"] == "P1"


def test_the_result_is_warned_for_an_over_budget_step_and_failed_for_a_failed_drill(tmp_path):
    warned = drill(tmp_path / "a", over_budget=True)
    assert payload(envelopes(warned)[0])["predicate"]["result"] == "WARNED"
    assert payload(envelopes(warned)[0])["predicate"]["warnedTests"] == [
        "step step-1: Restrict the allowlist (over-budget)"
    ]
    failed = drill(tmp_path / "b", verdict="fail")
    assert payload(envelopes(failed)[0])["predicate"]["result"] == "FAILED"
    assert drill_result({"verdict": "pass", "warnings": [{"code": "runbook-drift"}]}) == "WARNED"
    assert drill_result({"verdict": "pass", "targets": [{"name": "drill", "met": False}]}) == "FAILED"


def test_statements_need_a_sealed_bundle(tmp_path):
    rec = Recorder.create(tmp_path, incident="mass-failure", clock=FakeClock(START), redactor=Redactor())
    rec.finish("pass")
    with pytest.raises(InputError, match="not a sealed"):
        statements(rec.bundle_dir)


# -- verifying -------------------------------------------------------------------------------------


def test_an_unchanged_bundle_verifies_with_the_machine_key_or_a_given_one(bundle, tmp_path):
    report = verify(bundle, allowed_signers=None)
    assert report.ok, report.problems
    assert report.attestation.signature_checked
    assert report.attestation.result == "PASSED"
    pem = tmp_path / "drill.pub"
    pem.write_text(public_key_pem(machine_key().public_key()), encoding="utf-8")
    assert verify(bundle, allowed_signers=None, attestation_key=pem).ok


@pytest.mark.parametrize("name", SEALED)
def test_a_changed_file_is_named_even_when_the_manifest_is_rewritten(bundle, name):
    with (bundle / name).open("ab") as stream:
        stream.write(b"\n")
    reseal_by_hand(bundle)
    report = verify(bundle, allowed_signers=None)
    assert not [p for p in report.problems if p.kind == "changed"], "the forger's manifest matches the files"
    assert attestation_problems(report) == {name, MANIFEST_NAME}


def test_a_changed_statement_fails_its_signature(bundle):
    found = envelopes(bundle)
    statement = payload(found[0])
    statement["predicate"]["result"] = "PASSED"
    statement["predicate"]["failedTests"] = []
    statement["predicate"]["passedTests"].append("target drill")
    found[0]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (bundle / ATTESTATION_NAME).write_text("".join(json.dumps(e) + "\n" for e in found), encoding="utf-8")
    report = verify(bundle, allowed_signers=None)
    assert not report.ok
    assert attestation_problems(report) == {ATTESTATION_NAME}
    assert "envelope 1: no signature verifies" in report.problems[0].detail


def test_a_statement_signed_by_another_key_fails_against_the_drills_key(bundle, tmp_path):
    pem = tmp_path / "drill.pub"
    pem.write_text(public_key_pem(machine_key().public_key()), encoding="utf-8")
    other = Ed25519PrivateKey.generate()
    attest(bundle, key=other)
    report = verify(bundle, allowed_signers=None, attestation_key=pem)
    assert attestation_problems(report) == {ATTESTATION_NAME}
    # Without a key given, a bundle signed elsewhere is checked for integrity and says whose key to ask for.
    elsewhere = verify(bundle, allowed_signers=None)
    assert elsewhere.ok
    assert not elsewhere.attestation.signature_checked
    assert elsewhere.attestation.signed_by == (key_id(other.public_key()),)


def test_a_dropped_statement_is_named(bundle):
    first = (bundle / ATTESTATION_NAME).read_text(encoding="utf-8").splitlines()[0]
    (bundle / ATTESTATION_NAME).write_text(first + "\n", encoding="utf-8")
    check = check_attestation(bundle, public_key=machine_public_key())
    assert [p.detail for p in check.problems] == [f"has no statement with predicateType {DRILL_PREDICATE}"]


def test_sealing_again_removes_the_attestation_and_a_required_one_is_then_missing(bundle, tmp_path):
    (bundle / "notes.txt").write_text("added\n", encoding="utf-8")
    seal(bundle)
    assert not (bundle / ATTESTATION_NAME).exists()
    assert verify(bundle, allowed_signers=None).ok
    pem = tmp_path / "drill.pub"
    pem.write_text(public_key_pem(machine_key().public_key()), encoding="utf-8")
    report = verify(bundle, allowed_signers=None, attestation_key=pem)
    assert attestation_problems(report) == {ATTESTATION_NAME}
    attest(bundle)
    assert verify(bundle, allowed_signers=None, attestation_key=pem).ok


def test_without_a_key_the_subjects_are_still_compared(bundle, state_home):
    machine_key_path().unlink()
    report = verify(bundle, allowed_signers=None)
    assert report.ok
    assert not report.attestation.signature_checked
    (bundle / "rca.md").write_text("rewritten\n", encoding="utf-8")
    reseal_by_hand(bundle)
    assert "rca.md" in attestation_problems(verify(bundle, allowed_signers=None))


def test_the_verify_command_names_the_file(bundle, capsys):
    assert main(["evidence", "verify", str(bundle)]) == 0
    assert "result PASSED, signature verified with key" in capsys.readouterr().out
    (bundle / "rca.md").write_text("rewritten\n", encoding="utf-8")
    reseal_by_hand(bundle)
    assert main(["evidence", "verify", str(bundle)]) == 1
    out = capsys.readouterr().out
    assert f"{ATTESTATION_NAME}: DOES NOT MATCH" in out
    assert "attestation: rca.md: sha256" in out
