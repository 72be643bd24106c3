# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""Approvals: OpenSSH signatures over the manifest, who signed what and when, and
everything that must fail once a signed bundle changes. Uses real ed25519 keys."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollback_drill.errors import InputError, VerificationFailed
from rollback_drill.evidence import Recorder, Redactor
from rollback_drill.evidence.bundle import MANIFEST_NAME, seal
from rollback_drill.evidence.cli import add_commands
from rollback_drill.evidence.finalize import finalize_bundle
from rollback_drill.evidence.sign import NAMESPACE, ROLES, sign
from rollback_drill.evidence.verify import verify
from rollback_drill.timing.clock import FakeClock

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (OpenSSH) is not installed")

START = datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)
SIGNED_AT = datetime(2026, 3, 2, 15, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def new_key(directory: Path, name: str) -> Path:
    """A fresh ed25519 key without a passphrase, as `ssh-keygen -t ed25519 -N ''` makes it."""
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True, capture_output=True
    )
    return key


def allowed_signers(path: Path, entries: dict[str, Path], options: str = "") -> Path:
    """An allowed-signers file: `<principal> [options] <key type> <key>` per line."""
    lines = []
    for principal, key in entries.items():
        key_type, blob = key.with_suffix(".pub").read_text(encoding="utf-8").split()[:2]
        lines.append(" ".join(part for part in (principal, options, key_type, blob) if part))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def keys(tmp_path) -> dict[str, Path]:
    directory = tmp_path / "keys"
    directory.mkdir()
    return {"alice": new_key(directory, "alice"), "bob": new_key(directory, "bob")}


@pytest.fixture
def signers(tmp_path, keys) -> Path:
    return allowed_signers(
        tmp_path / "allowed_signers", {"alice@example.com": keys["alice"], "bob@example.com": keys["bob"]}
    )


@pytest.fixture
def bundle(tmp_path) -> Path:
    clock = FakeClock(START)
    rec = Recorder.create(tmp_path / "reports", incident="crash-loop", clock=clock, redactor=Redactor())
    rec.set("target", {"kind": "local", "server_version": "v1.31.0", "fingerprint": "https://127.0.0.1:6443#uid-1"})
    rec.begin_step("step-1", "Disable Orchestrator for Expanded Repos", 120)
    clock.advance(30)
    rec.end_step("step-1")
    rec.finish("pass")
    finalize_bundle(rec.bundle_dir, redactor=Redactor())
    return rec.bundle_dir


def approve(bundle: Path, key: Path, role: str = "SRE Lead", name: str = "Alice Example") -> Path:
    return sign(bundle, role=role, name=name, key=key, clock=FakeClock(SIGNED_AT))


# -- signing -----------------------------------------------------------------------------


def test_sign_writes_an_approval_over_the_manifest(bundle, keys):
    path = approve(bundle, keys["alice"])
    assert path == bundle / "approvals" / "sre-lead-alice-example.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["role"] == "SRE Lead"
    assert doc["name"] == "Alice Example"
    assert doc["signed_at"] == "2026-03-02T15:00:00.000Z"
    assert doc["manifest_sha256"] == hashlib.sha256((bundle / MANIFEST_NAME).read_bytes()).hexdigest()
    assert doc["signature"].startswith("-----BEGIN SSH SIGNATURE-----")
    assert doc["key_fingerprint"].startswith("SHA256:")


def test_the_manifest_signature_verifies_with_plain_openssh(bundle, keys, signers, tmp_path):
    doc = json.loads(approve(bundle, keys["alice"]).read_text(encoding="utf-8"))
    signature = tmp_path / "manifest.sig"
    signature.write_text(doc["signature"], encoding="utf-8")
    command = ["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", "alice@example.com", "-n", NAMESPACE]
    with (bundle / MANIFEST_NAME).open("rb") as manifest:
        result = subprocess.run(
            [*command, "-s", str(signature)],
            stdin=manifest,
            capture_output=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr


def test_verify_with_allowed_signers_names_who_approved_what_and_when(bundle, keys, signers):
    approve(bundle, keys["alice"])
    approve(bundle, keys["bob"], role="engineering tl", name="Bob Builder")
    report = verify(bundle, allowed_signers=signers)
    assert report.ok, report.problems
    assert report.identity_checked
    by_role = {a.role: a for a in report.approvals}
    assert by_role["SRE Lead"].name == "Alice Example"
    assert by_role["SRE Lead"].principal == "alice@example.com"
    assert by_role["SRE Lead"].signed_at == "2026-03-02T15:00:00.000Z"
    assert by_role["Engineering TL"].principal == "bob@example.com"
    assert report.approved_roles == ("SRE Lead", "Engineering TL")
    assert report.missing_roles == ("Product Lead", "Incident Commander")


def test_verify_without_allowed_signers_checks_integrity_only(bundle, keys):
    approve(bundle, keys["alice"])
    report = verify(bundle, allowed_signers=None)
    assert report.ok
    assert not report.identity_checked
    assert report.approvals[0].principal is None
    assert "identity not checked" in report.approvals[0].detail


def test_all_four_runbook_roles_can_approve(bundle, keys, signers):
    for role in ROLES:
        approve(bundle, keys["alice"], role=role, name=f"Person {role}")
    report = verify(bundle, allowed_signers=signers)
    assert report.ok
    assert report.missing_roles == ()


def test_a_signer_missing_from_allowed_signers_fails(bundle, keys, tmp_path):
    approve(bundle, keys["bob"], name="Bob Builder")
    only_alice = allowed_signers(tmp_path / "only_alice", {"alice@example.com": keys["alice"]})
    report = verify(bundle, allowed_signers=only_alice)
    assert not report.ok
    assert {p.path for p in report.problems} == {"approvals/sre-lead-bob-builder.json"}


def test_a_key_that_expired_after_signing_still_verifies_at_the_signing_time(bundle, keys, tmp_path):
    approve(bundle, keys["alice"])  # signed_at 2026-03-02
    expired = allowed_signers(tmp_path / "expired", {"alice@example.com": keys["alice"]}, 'valid-before="20260401Z"')
    assert verify(bundle, allowed_signers=expired).ok
    not_yet = allowed_signers(tmp_path / "not_yet", {"alice@example.com": keys["alice"]}, 'valid-after="20260401Z"')
    assert not verify(bundle, allowed_signers=not_yet).ok


# -- what must fail after signing ----------------------------------------------------------


def test_altering_a_file_after_signing_fails_naming_the_file(bundle, keys, signers):
    approve(bundle, keys["alice"])
    with (bundle / "rca.md").open("a", encoding="utf-8") as stream:
        stream.write("- [ ] quietly added after sign-off\n")
    report = verify(bundle, allowed_signers=signers)
    assert not report.ok
    assert {(p.kind, p.path) for p in report.problems} == {("changed", "rca.md")}


def test_a_rewritten_manifest_fails_the_approval(bundle, keys, signers):
    approve(bundle, keys["alice"])
    (bundle / "timeline.jsonl").write_text('{"kind": "forged"}\n', encoding="utf-8")
    # The forger recomputes the manifest line, so the files match the manifest again ...
    digest = hashlib.sha256((bundle / "timeline.jsonl").read_bytes()).hexdigest()
    manifest = bundle / MANIFEST_NAME
    manifest.write_text(
        "".join(
            f"{digest}  timeline.jsonl\n" if line.endswith("  timeline.jsonl") else line + "\n"
            for line in manifest.read_text(encoding="utf-8").splitlines()
        ),
        encoding="utf-8",
    )
    report = verify(bundle, allowed_signers=signers)
    # ... and the artifacts list in evidence.json and the approval both give it away.
    assert not report.ok
    approval = next(p for p in report.problems if p.kind == "approval")
    assert approval.path == "approvals/sre-lead-alice-example.json"
    assert "changed after it was signed" in approval.detail


def test_a_forged_manifest_hash_in_the_approval_fails_its_signature(bundle, keys, signers):
    path = approve(bundle, keys["alice"])
    manifest = bundle / MANIFEST_NAME
    lines = manifest.read_text(encoding="utf-8").splitlines()
    lines[0] = ("0" if lines[0][0] != "0" else "1") + lines[0][1:]
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["manifest_sha256"] = hashlib.sha256(manifest.read_bytes()).hexdigest()
    path.write_text(json.dumps(doc), encoding="utf-8")
    report = verify(bundle, allowed_signers=signers)
    assert "approvals/sre-lead-alice-example.json" in {p.path for p in report.problems}


def test_an_edited_role_in_an_approval_fails(bundle, keys, signers):
    path = approve(bundle, keys["alice"], role="Product Lead")
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["role"] = "Incident Commander"
    path.write_text(json.dumps(doc), encoding="utf-8")
    report = verify(bundle, allowed_signers=signers)
    assert not report.ok
    assert "edited after signing" in report.problems[0].detail
    assert report.missing_roles == ROLES


def test_a_stray_file_in_approvals_fails(bundle, keys):
    approve(bundle, keys["alice"])
    (bundle / "approvals" / "notes.txt").write_text("trust me\n", encoding="utf-8")
    report = verify(bundle, allowed_signers=None)
    assert [p.path for p in report.problems] == ["approvals/notes.txt"]


def test_sealing_again_is_refused_once_signed(bundle, keys):
    approve(bundle, keys["alice"])
    (bundle / "extra.txt").write_text("late\n", encoding="utf-8")
    with pytest.raises(InputError, match="void"):
        seal(bundle)


def test_finalizing_a_signed_bundle_is_refused(bundle, keys):
    approve(bundle, keys["alice"])
    with pytest.raises(InputError, match="already signed"):
        finalize_bundle(bundle)


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "file"),
    [
        ("Zoë Ångström", "sre-lead-zoe-angstrom.json"),
        ("张伟", "sre-lead-signer-"),
        ("  Alice   Example ", "sre-lead-alice-example.json"),
    ],
)
def test_any_name_makes_a_file_name(bundle, keys, name, file):
    path = approve(bundle, keys["alice"], name=name)
    assert path.name.startswith(file)
    assert json.loads(path.read_text(encoding="utf-8"))["name"] == " ".join(name.split())
    assert verify(bundle, allowed_signers=None).ok


def test_an_empty_name_is_refused(bundle, keys):
    with pytest.raises(InputError, match="--name"):
        approve(bundle, keys["alice"], name="   ")


def test_an_unknown_role_is_refused(bundle, keys):
    with pytest.raises(InputError, match="SRE Lead, Engineering TL, Product Lead, Incident Commander"):
        approve(bundle, keys["alice"], role="Intern")


def test_the_same_person_and_role_cannot_sign_twice(bundle, keys):
    approve(bundle, keys["alice"])
    with pytest.raises(InputError, match="already"):
        approve(bundle, keys["alice"])


def test_a_bundle_that_no_longer_matches_its_manifest_is_not_signed(bundle, keys):
    (bundle / "report.html").write_text("<p>replaced</p>", encoding="utf-8")
    with pytest.raises(VerificationFailed, match=r"report\.html"):
        approve(bundle, keys["alice"])
    assert not (bundle / "approvals").exists()


def test_a_missing_key_is_bad_input(bundle, tmp_path):
    with pytest.raises(InputError, match="--key"):
        approve(bundle, tmp_path / "no-such-key")


def test_an_unsealed_bundle_cannot_be_signed(tmp_path, keys):
    rec = Recorder.create(tmp_path, incident="crash-loop", clock=FakeClock(START), redactor=Redactor())
    rec.finish("pass")
    with pytest.raises(InputError, match="not a sealed"):
        approve(rec.bundle_dir, keys["alice"])


# -- the commands ----------------------------------------------------------------------------


def run(argv: list[str]) -> int:
    """The commands as `rollback-drill` runs them: InputError is exit 2."""
    parser = argparse.ArgumentParser(prog="rollback-drill")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError:
        return 2


def test_evidence_sign_and_verify_commands(bundle, keys, signers, capsys):
    sign_argv = ["evidence", "sign", str(bundle), "--role", "Incident Commander", "--name", "Dana"]
    assert run([*sign_argv, "--key", str(keys["bob"])]) == 0
    assert run(["evidence", "verify", str(bundle), "--allowed-signers", str(signers)]) == 0
    out = capsys.readouterr().out
    assert "Incident Commander: Dana" in out
    assert "bob@example.com" in out
    assert "not approved yet by: SRE Lead, Engineering TL, Product Lead" in out


def test_evidence_verify_exit_codes(bundle, tmp_path, capsys):
    assert run(["evidence", "verify", str(bundle)]) == 0
    (bundle / "timeline.jsonl").write_text("{}\n", encoding="utf-8")
    assert run(["evidence", "verify", str(bundle)]) == 1
    assert "timeline.jsonl" in capsys.readouterr().err
    assert run(["evidence", "verify", str(tmp_path)]) == 2


def test_evidence_verify_json(bundle, keys, capsys):
    approve(bundle, keys["alice"])
    assert run(["evidence", "verify", str(bundle), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is True
    assert payload["approvals"][0]["name"] == "Alice Example"


def test_evidence_report_in_place_is_refused_on_a_signed_bundle_but_output_works(bundle, keys, tmp_path):
    approve(bundle, keys["alice"])
    assert run(["evidence", "report", str(bundle)]) == 2
    assert verify(bundle, allowed_signers=None).ok
    out = tmp_path / "view"
    assert run(["evidence", "report", str(bundle), "--output", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Alice Example" in page
    assert "over the current manifest" in page
    assert (out / "rca.md").is_file()


def test_evidence_report_re_renders_and_re_seals_an_unsigned_bundle(bundle):
    (bundle / "report.html").write_text("stale", encoding="utf-8")
    assert run(["evidence", "report", str(bundle)]) == 0
    assert "<svg" in (bundle / "report.html").read_text(encoding="utf-8")
    assert verify(bundle, allowed_signers=None).ok
