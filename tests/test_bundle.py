# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""The evidence bundle: sealing, verifying (every missing, extra and changed file named),
finalizing complete and aborted drills, and the planted-secret scan of whole bundles."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from rollback_drill.errors import InputError
from rollback_drill.evidence import EVIDENCE_NAME, TIMELINE_NAME, Recorder, Redactor, validate_evidence
from rollback_drill.evidence.bundle import ATTESTATION_NAME, MANIFEST_NAME, check_files, scan_for_secrets, seal
from rollback_drill.evidence.finalize import finalize_bundle
from rollback_drill.evidence.verify import verify
from rollback_drill.timing.clock import FakeClock

START = datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)
ARTIFACT = "backups/repo_config_pre_rollback.yaml"
SEALED_FILES = (EVIDENCE_NAME, TIMELINE_NAME, "report.html", "rca.md", "controls.json", ARTIFACT)
MANIFEST_LINE = re.compile(r"^[0-9a-f]{64}  \S.*$")


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    """History goes to a temporary XDG_STATE_HOME, never the user's."""
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


def record_drill(evidence_dir: Path, redactor: Redactor, *, finish: bool = True) -> Recorder:
    """A short, complete drill through the real recorder, on a fake clock."""
    clock = FakeClock(START)
    rec = Recorder.create(evidence_dir, incident="mass-failure", clock=clock, redactor=redactor)
    rec.set("target", {"kind": "local", "server_version": "v1.31.0", "fingerprint": "https://127.0.0.1:6443#uid-1"})
    rec.set("participants", {"Incident Commander": "Dana", "SRE Lead": "Sam"})
    clock.advance(2)
    rec.event("incident_injected", incident="mass-failure", repos=["risk-engine", "financial-reporting"])
    clock.advance(3)
    rec.event("decision_made", priority="P1")
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
    for step_id, budget_s, took_s in (("pre-3", 300, 20), ("step-1", 120, 40), ("step-4", 120, 15)):
        rec.begin_step(step_id, f"runbook {step_id}", budget_s)
        clock.advance(took_s)
        rec.end_step(step_id)
    backup = rec.bundle_dir / ARTIFACT
    backup.parent.mkdir()
    backup.write_text("apiVersion: v1\nkind: ConfigMap\ndata:\n  expanded_repos: risk-engine\n", encoding="utf-8")
    rec.add_artifact(backup)
    rec.warn("runbook-drift", "PrometheusRule has no /spec/groups/0/rules/0/enabled", step="step-4")
    rec.set_targets([{"name": "rollback_execution", "limit": 600, "measured": 55.0, "unit": "s", "met": True}])
    if finish:
        rec.finish("pass")
    return rec


@pytest.fixture
def bundle(tmp_path) -> Path:
    rec = record_drill(tmp_path / "reports", Redactor())
    finalize_bundle(rec.bundle_dir, redactor=Redactor())
    return rec.bundle_dir


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def named(report, kind: str) -> set[str]:
    return {p.path for p in report.problems if p.kind == kind}


# -- seal and verify ---------------------------------------------------------------------


def test_a_finalized_bundle_verifies(bundle):
    report = verify(bundle, allowed_signers=None)
    assert report.ok, report.problems
    assert report.files_checked == len(SEALED_FILES)
    assert report.drill_id == bundle.name
    assert report.verdict == "pass"


def test_checking_the_files_finds_what_verify_finds_but_reads_no_approval(bundle):
    (bundle / "approvals").mkdir()
    (bundle / "approvals" / "sre-lead-nobody.json").write_text("{}", encoding="utf-8")
    flip_one_byte(bundle / "rca.md")
    files = check_files(bundle)
    report = verify(bundle, allowed_signers=None)
    assert files.problems == tuple(p for p in report.problems if p.kind != "approval")
    assert named(files, "changed") == {"rca.md"}
    assert named(report, "approval") == {"approvals/sre-lead-nobody.json"}
    assert (files.drill_id, files.verdict, files.files_checked) == (bundle.name, "pass", len(SEALED_FILES))
    assert files.manifest_bytes == (bundle / MANIFEST_NAME).read_bytes()


def test_the_manifest_is_sorted_sha256sum_lines_over_every_file_but_itself_and_approvals(bundle):
    lines = (bundle / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    assert all(MANIFEST_LINE.fullmatch(line) for line in lines)
    paths = [line.split("  ", 1)[1] for line in lines]
    assert paths == sorted(SEALED_FILES)
    assert MANIFEST_NAME not in paths


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="coreutils sha256sum is not installed")
def test_the_manifest_checks_with_plain_sha256sum(bundle):
    result = subprocess.run(["sha256sum", "-c", MANIFEST_NAME], cwd=bundle, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_evidence_artifacts_list_every_sealed_file_but_evidence_json(bundle):
    doc = json.loads((bundle / EVIDENCE_NAME).read_text(encoding="utf-8"))
    assert validate_evidence(doc) == []
    manifest = dict(
        reversed(line.split("  ", 1)) for line in (bundle / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    )
    assert {a["path"]: a["sha256"] for a in doc["artifacts"]} == {
        path: sha for path, sha in manifest.items() if path != EVIDENCE_NAME
    }
    assert all(a["bytes"] == (bundle / a["path"]).stat().st_size for a in doc["artifacts"])


def test_sealing_twice_changes_nothing(bundle):
    before = {p: (bundle / p).read_bytes() for p in (*SEALED_FILES, MANIFEST_NAME)}
    seal(bundle)
    assert {p: (bundle / p).read_bytes() for p in (*SEALED_FILES, MANIFEST_NAME)} == before


def test_sealing_again_takes_in_a_file_added_later(bundle):
    (bundle / "report.png").write_bytes(b"\x89PNG not really")
    assert named(verify(bundle, allowed_signers=None), "extra") == {"report.png"}
    seal(bundle)
    assert verify(bundle, allowed_signers=None).ok


# -- what verify names --------------------------------------------------------------------


@pytest.mark.parametrize("name", SEALED_FILES)
def test_one_changed_byte_in_any_file_fails_naming_that_file(bundle, name):
    flip_one_byte(bundle / name)
    report = verify(bundle, allowed_signers=None)
    assert not report.ok
    assert named(report, "changed") == {name}


def test_the_parametrized_files_are_every_file_of_the_bundle(bundle):
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert on_disk == {*SEALED_FILES, MANIFEST_NAME, ATTESTATION_NAME}


def test_a_changed_hash_in_the_manifest_names_the_file_it_lists(bundle):
    manifest = bundle / MANIFEST_NAME
    lines = manifest.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.endswith(TIMELINE_NAME))
    digit = "0" if lines[index][0] != "0" else "1"
    lines[index] = digit + lines[index][1:]
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert named(verify(bundle, allowed_signers=None), "changed") == {TIMELINE_NAME}


def test_a_garbled_manifest_line_is_named(bundle):
    with (bundle / MANIFEST_NAME).open("a", encoding="utf-8") as stream:
        stream.write("not a manifest line\n")
    report = verify(bundle, allowed_signers=None)
    assert not report.ok
    assert named(report, "manifest") == {MANIFEST_NAME}


@pytest.mark.parametrize("added", ["notes.txt", "backups/extra.sql", ".hidden"])
def test_an_added_file_is_named(bundle, added):
    (bundle / added).write_text("added after sealing\n", encoding="utf-8")
    report = verify(bundle, allowed_signers=None)
    assert not report.ok
    assert named(report, "extra") == {added}


@pytest.mark.parametrize("removed", SEALED_FILES)
def test_a_removed_file_is_named(bundle, removed):
    (bundle / removed).unlink()
    if removed == EVIDENCE_NAME:
        with pytest.raises(InputError, match=r"no evidence\.json"):
            verify(bundle, allowed_signers=None)
        return
    report = verify(bundle, allowed_signers=None)
    assert not report.ok
    assert removed in named(report, "missing")


def test_a_symlink_in_the_bundle_is_named_and_refused_by_seal(bundle, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("x", encoding="utf-8")
    (bundle / "link.txt").symlink_to(outside)
    assert "link.txt" in named(verify(bundle, allowed_signers=None), "extra")
    with pytest.raises(InputError, match=r"link\.txt"):
        seal(bundle)


def test_artifacts_that_disagree_with_the_manifest_are_named(bundle):
    doc = json.loads((bundle / EVIDENCE_NAME).read_text(encoding="utf-8"))
    doc["artifacts"] = [a for a in doc["artifacts"] if a["path"] != ARTIFACT]
    doc["artifacts"].append({"path": "ghost.log", "sha256": "0" * 64, "bytes": 1})
    rewrite_evidence_and_manifest(bundle, doc)
    report = verify(bundle, allowed_signers=None)
    assert named(report, "artifacts") == {ARTIFACT, "ghost.log"}
    assert not named(report, "changed")


def test_evidence_that_breaks_the_schema_is_reported(bundle):
    doc = json.loads((bundle / EVIDENCE_NAME).read_text(encoding="utf-8"))
    doc["verdict"] = "mostly fine"
    rewrite_evidence_and_manifest(bundle, doc)
    report = verify(bundle, allowed_signers=None)
    assert named(report, "schema") == {EVIDENCE_NAME}


def rewrite_evidence_and_manifest(bundle: Path, doc: dict) -> None:
    """Change evidence.json and fix its line in the manifest, as a careful forger would."""
    import hashlib  # noqa: PLC0415 - only this helper needs it

    data = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
    (bundle / EVIDENCE_NAME).write_bytes(data)
    manifest = bundle / MANIFEST_NAME
    lines = [
        f"{hashlib.sha256(data).hexdigest()}  {EVIDENCE_NAME}" if line.endswith(f"  {EVIDENCE_NAME}") else line
        for line in manifest.read_text(encoding="utf-8").splitlines()
    ]
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- not a bundle ------------------------------------------------------------------------


def test_a_directory_without_evidence_is_not_a_bundle(tmp_path):
    with pytest.raises(InputError, match="not an evidence bundle"):
        verify(tmp_path, allowed_signers=None)


def test_a_missing_directory_is_not_a_bundle(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        verify(tmp_path / "nope", allowed_signers=None)


def test_an_unsealed_bundle_cannot_be_verified(tmp_path):
    rec = record_drill(tmp_path, Redactor())
    with pytest.raises(InputError, match=r"no MANIFEST\.sha256"):
        verify(rec.bundle_dir, allowed_signers=None)


def test_a_missing_allowed_signers_file_is_bad_input(bundle, tmp_path):
    with pytest.raises(InputError, match="allowed-signers"):
        verify(bundle, allowed_signers=tmp_path / "missing")


# -- aborted drills ----------------------------------------------------------------------


def test_a_drill_killed_mid_step_still_finalizes_into_a_bundle_that_verifies(tmp_path):
    rec = record_drill(tmp_path, Redactor(), finish=False)
    rec.begin_step("step-5", "Verify Pilot Repo Functionality", 180)
    # As a kill leaves it: no finish(), a step still open, a torn last timeline line.
    with (rec.bundle_dir / TIMELINE_NAME).open("a", encoding="utf-8") as stream:
        stream.write('{"seq": 99, "kind": "gherkin_st')
    doc = json.loads((rec.bundle_dir / EVIDENCE_NAME).read_text(encoding="utf-8"))
    assert doc["verdict"] == "aborted"
    assert doc["finished_at"] is None

    finalize_bundle(rec.bundle_dir, redactor=Redactor())

    report = verify(rec.bundle_dir, allowed_signers=None)
    assert report.ok, report.problems
    assert report.verdict == "aborted"
    assert "ABORTED" in (rec.bundle_dir / "report.html").read_text(encoding="utf-8")
    assert "Run the drill again" in (rec.bundle_dir / "rca.md").read_text(encoding="utf-8")


def test_an_aborted_drill_with_a_reason_finalizes(tmp_path):
    rec = record_drill(tmp_path, Redactor(), finish=False)
    rec.abort("KeyboardInterrupt: the operator pressed Ctrl-C")
    finalize_bundle(rec.bundle_dir, redactor=Redactor())
    assert verify(rec.bundle_dir, allowed_signers=None).ok
    assert "the operator pressed Ctrl-C" in (rec.bundle_dir / "report.html").read_text(encoding="utf-8")


def test_finalize_appends_the_drill_to_the_history(bundle, state_home):
    lines = (state_home / "rollback-drill" / "history.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["drill_id"] for line in lines] == [bundle.name]


# -- the planted-secret scan ---------------------------------------------------------------

# Fake secrets, planted on purpose: the scan proves none of them reaches any file.
DSN_PASSWORD = "Pl4nted-dsn-pw-7Qx"  # noqa: S105
BEARER_TOKEN = "planted-bearer-tok-3c9f1e"  # noqa: S105
API_KEY = "planted-status-api-key-55aa"
SLACK_TOKEN = "planted-slack-token-xoxb-0042"  # noqa: S105
PLANTED = (DSN_PASSWORD, BEARER_TOKEN, API_KEY, SLACK_TOKEN)


def test_no_planted_secret_appears_in_any_file_of_a_finalized_bundle(tmp_path, state_home):
    redactor = Redactor()
    redactor.register_environment(
        {
            "ROLLBACK_DRILL_TASKDB_DSN": f"postgresql://flowengine_user:{DSN_PASSWORD}@127.0.0.1:5432/flowengine_db",
            "STATUS_PAGE_API_KEY": API_KEY,
            "SLACK_BOT_TOKEN": SLACK_TOKEN,
        }
    )
    redactor.add_secret(BEARER_TOKEN)
    rec = record_drill(tmp_path / "reports", redactor, finish=False)
    dsn = f"postgresql://flowengine_user:{DSN_PASSWORD}@127.0.0.1:5432/flowengine_db"
    rec.event("taskdb_connected", dsn=dsn, note=f"connected with {DSN_PASSWORD}")
    rec.event("status_page", request=f"curl -H 'Authorization: Bearer {BEARER_TOKEN}' -d STATUS_PAGE_API_KEY={API_KEY}")
    rec.warn("notifier", f"slack post failed with token {SLACK_TOKEN}", step="step-4")
    rec.set(
        "decision",
        {
            "priority": "P1",
            "criteria_met": ["Security Breach: Credentials leaked, unauthorized access detected"],
            "action": "roll back",
            "reasons": [f"leaked: {API_KEY} and {quote(DSN_PASSWORD, safe='')}"],
            "triage_s": 0,
        },
    )
    rec.set("notifications", [{"channel": "slack", "text": f"token={SLACK_TOKEN}"}])
    # A writer that forgot the redactor: a raw log copied into the bundle.
    raw_log = rec.bundle_dir / "logs" / "kubectl.log"
    raw_log.parent.mkdir()
    raw_log.write_text(f"using {SLACK_TOKEN} and Bearer {BEARER_TOKEN}\n", encoding="utf-8")
    rec.finish("pass")

    finalize_bundle(rec.bundle_dir, redactor=redactor)

    files = sorted(p for p in rec.bundle_dir.rglob("*") if p.is_file())
    names = {p.relative_to(rec.bundle_dir).as_posix() for p in files}
    assert {"report.html", "rca.md", MANIFEST_NAME, EVIDENCE_NAME, TIMELINE_NAME, "logs/kubectl.log"} <= names
    for path in files:
        data = path.read_bytes()
        for secret in PLANTED:
            for form in {secret, quote(secret, safe="")}:
                assert form.encode() not in data, f"{form} leaked into {path.name}"
    assert scan_for_secrets(rec.bundle_dir, redactor=redactor) == []
    history = (state_home / "rollback-drill" / "history.jsonl").read_bytes()
    assert not any(secret.encode() in history for secret in PLANTED)
    doc = json.loads((rec.bundle_dir / EVIDENCE_NAME).read_text(encoding="utf-8"))
    assert any(
        w["code"] == "secret-masked-at-finalize" and "logs/kubectl.log" in w["message"] for w in doc["warnings"]
    ), doc["warnings"]
    assert verify(rec.bundle_dir, allowed_signers=None).ok
