# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""The history's chain: each line links to the one before it and to its bundle's manifest;
``history verify`` names the first removed, edited or reordered line, and the schedule stops
counting there."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from rollback_drill.cli import main
from rollback_drill.config import Drills, load_config
from rollback_drill.evidence import Recorder, Redactor
from rollback_drill.evidence.bundle import MANIFEST_NAME, sha256_bytes
from rollback_drill.evidence.finalize import finalize_bundle, reseal_with_added_files
from rollback_drill.evidence.history import CHAIN_START, check_history, history_path, line_sha256
from rollback_drill.evidence.schedule import schedule_status
from rollback_drill.evidence.verify import verify
from rollback_drill.timing.clock import FakeClock


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch) -> Path:
    """The history goes to a temporary XDG_STATE_HOME, never the user's."""
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


@pytest.fixture
def config():
    loaded = load_config()
    return dataclasses.replace(loaded, drills=Drills(date(2025, 11, 17), date(2025, 12, 8), 90))


def drill(evidence_dir: Path, day: int) -> Path:
    """A passed drill finalized on 2026-01-<day>, which appends it to the history."""
    clock = FakeClock(datetime(2026, 1, day, 9, 0, tzinfo=UTC))
    rec = Recorder.create(evidence_dir, incident="mass-failure", clock=clock, redactor=Redactor())
    rec.set("phase", 7)
    rec.begin_step("step-1", "Runbook step-1", 120)
    clock.advance(30)
    rec.end_step("step-1")
    rec.finish("pass")
    finalize_bundle(rec.bundle_dir, redactor=Redactor())
    return rec.bundle_dir


@pytest.fixture
def four_drills(tmp_path) -> list[Path]:
    return [drill(tmp_path / "reports", day) for day in (1, 2, 3, 4)]


def lines() -> list[str]:
    return history_path().read_text(encoding="utf-8").splitlines()


def rewrite(new_lines: list[str]) -> None:
    history_path().write_text("".join(line + "\n" for line in new_lines), encoding="utf-8")


def quarterly_due(config) -> date | None:
    chain = check_history()
    return schedule_status(config, chain.counted, date(2026, 1, 10), history_check=chain).next_quarterly_due


def test_each_line_links_to_the_one_before_and_to_its_manifest(four_drills):
    written = [json.loads(line) for line in lines()]
    assert [w["seq"] for w in written] == [1, 2, 3, 4]
    assert written[0]["prev_sha256"] == CHAIN_START
    assert [w["prev_sha256"] for w in written[1:]] == [line_sha256(line) for line in lines()[:-1]]
    for bundle, line in zip(four_drills, written, strict=True):
        assert line["manifest_sha256"] == sha256_bytes((bundle / MANIFEST_NAME).read_bytes())
    check = check_history()
    assert check.ok
    assert (check.chained, check.unchained, check.head_sha256) == (4, (), line_sha256(lines()[-1]))
    assert [e.drill_id for e in check.counted] == [b.name for b in four_drills]


def test_a_removed_line_is_named_and_the_schedule_stops_before_it(four_drills, config):
    assert quarterly_due(config) == date(2026, 4, 4)
    kept = lines()
    del kept[1]
    rewrite(kept)
    check = check_history()
    assert (check.first_break.line, check.first_break.kind) == (2, "removed")
    assert [e.drill_id for e in check.counted] == [four_drills[0].name]
    assert quarterly_due(config) == date(2026, 4, 1)


def test_an_edited_line_is_named_and_neither_it_nor_later_lines_count(four_drills, config):
    edited = lines()
    data = json.loads(edited[1])
    data["verdict"] = "fail"
    edited[1] = json.dumps(data)
    rewrite(edited)
    check = check_history()
    assert (check.first_break.line, check.first_break.kind) == (2, "edited")
    assert [e.drill_id for e in check.counted] == [four_drills[0].name]
    assert quarterly_due(config) == date(2026, 4, 1)


def test_a_line_made_unreadable_is_an_edit(four_drills):
    edited = lines()
    edited[2] = edited[2][:-5]
    rewrite(edited)
    assert (check_history().first_break.line, check_history().first_break.kind) == (3, "edited")


def test_swapped_lines_are_named_and_the_schedule_stops_before_them(four_drills, config):
    swapped = lines()
    swapped[1], swapped[2] = swapped[2], swapped[1]
    rewrite(swapped)
    check = check_history()
    assert (check.first_break.line, check.first_break.kind) == (2, "reordered")
    assert [e.drill_id for e in check.counted] == [four_drills[0].name]
    assert quarterly_due(config) == date(2026, 4, 1)


def test_lines_from_before_the_chain_are_reported_unchained_and_not_counted(tmp_path, config):
    old = {"drill_id": "20251201T090000Z-mass-failure-abcdef", "verdict": "pass", "finished_at": "2026-01-05T09:00:00Z"}
    history_path().parent.mkdir(parents=True)
    rewrite([json.dumps(old)])
    bundle = drill(tmp_path / "reports", 1)
    check = check_history()
    assert check.ok
    assert check.unchained == (1,)
    assert json.loads(lines()[1])["prev_sha256"] == line_sha256(lines()[0])
    assert [e.drill_id for e in check.counted] == [bundle.name]
    status = schedule_status(config, check.counted, date(2026, 1, 10), history_check=check)
    assert status.last_passed.drill_id == bundle.name
    assert ("line 1", "written before the history was chained") in status.uncounted


def test_a_bundle_changed_after_the_drill_does_not_count(four_drills, config):
    (four_drills[3] / "rca.md").write_text("rewritten\n", encoding="utf-8")
    chain = check_history()
    status = schedule_status(config, chain.counted, date(2026, 1, 10), history_check=chain)
    assert status.last_passed.drill_id == four_drills[2].name
    assert [drill_id for drill_id, _ in status.uncounted] == [four_drills[3].name]
    assert "does not verify" in status.uncounted[0][1]


def test_a_bundle_sealed_again_is_not_the_one_the_history_recorded(four_drills, config):
    chain = check_history()
    entry = dataclasses.replace(chain.counted[-1], manifest_sha256="0" * 64)
    status = schedule_status(config, [*chain.counted[:-1], entry], date(2026, 1, 10))
    assert "not the one the history recorded" in dict(status.uncounted)[entry.drill_id]


def test_a_moved_bundle_still_counts(four_drills, config, tmp_path):
    four_drills[3].rename(tmp_path / "elsewhere")
    assert quarterly_due(config) == date(2026, 4, 4)


def test_history_verify_command(four_drills, capsys):
    assert main(["history", "verify"]) == 0
    assert "chain verified" in capsys.readouterr().out
    kept = lines()
    del kept[2]
    rewrite(kept)
    assert main(["history", "verify"]) == 1
    assert "CHAIN BROKEN at line 3: removed" in capsys.readouterr().out
    assert main(["history", "verify", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["first_break"]["line"] == 3
    assert main(["schedule", "--today", "2026-01-10"]) == 0
    assert "not counted: the rest of the history: the chain breaks at line 3" in capsys.readouterr().out


def test_files_added_after_finalizing_are_sealed_attested_and_recorded_again(four_drills, config):
    bundle = four_drills[-1]
    (bundle / "junit.xml").write_text("<testsuites/>\n", encoding="utf-8")
    reseal_with_added_files(bundle)
    report = verify(bundle, allowed_signers=None)
    assert report.ok, report.problems
    assert report.attestation.present
    assert report.attestation.signature_checked
    check = check_history()
    assert check.ok
    assert check.chained == 5
    assert check.counted[-1].manifest_sha256 == report.manifest_sha256
    assert quarterly_due(config) == date(2026, 4, 4)


def test_a_bundle_never_finalized_is_only_sealed_when_files_are_added(tmp_path):
    rec = Recorder.create(
        tmp_path / "reports", incident="mass-failure", clock=FakeClock(datetime(2026, 1, 5, tzinfo=UTC))
    )
    rec.abort("the drill's process died")
    (rec.bundle_dir / "junit.xml").write_text("<testsuites/>\n", encoding="utf-8")
    reseal_with_added_files(rec.bundle_dir, redactor=Redactor())
    assert verify(rec.bundle_dir, allowed_signers=None).ok
    assert not history_path().exists()
