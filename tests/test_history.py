# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""Drill history (append, load, compare against the rolling median and the pilot
baseline) and the runbook's drill schedule (pre-phase dates, quarterly)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from rollback_drill.config import Drills, load_config
from rollback_drill.errors import InputError
from rollback_drill.evidence import Recorder, Redactor
from rollback_drill.evidence.cli import add_commands
from rollback_drill.evidence.finalize import finalize_bundle
from rollback_drill.evidence.history import (
    PILOT_BASELINE_S,
    HistoryEntry,
    append_history,
    compare,
    history_path,
    load_history,
)
from rollback_drill.evidence.schedule import schedule_status
from rollback_drill.evidence.sign import ROLES, sign
from rollback_drill.timing.clock import FakeClock


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


def record(
    evidence_dir: Path,
    *,
    start: datetime,
    verdict: str = "pass",
    phase: int | None = 7,
    step_1_s: float = 40.0,
    kind: str = "local",
) -> Path:
    clock = FakeClock(start)
    rec = Recorder.create(evidence_dir, incident="mass-failure", clock=clock, redactor=Redactor())
    rec.set("target", {"kind": kind, "server_version": "v1.31.0", "fingerprint": "https://127.0.0.1:6443#u"})
    if phase is not None:
        rec.set("phase", phase)
    for step_id, took_s in (("step-1", step_1_s), ("step-4", 10.0)):
        rec.begin_step(step_id, f"Runbook {step_id}", 120)
        clock.advance(took_s)
        rec.end_step(step_id)
    rec.set_targets(
        [
            {"name": "rollback_execution", "limit": 600, "measured": step_1_s + 10.0, "unit": "s", "met": True},
            {"name": "expanded_downtime", "limit": 300, "measured": 3.5, "unit": "s", "met": True},
            {"name": "pilot_impact", "limit": 0, "measured": 0, "unit": "requests", "met": True},
        ]
    )
    rec.finish(verdict)
    return rec.bundle_dir


def entry(
    drill_id: str, day: int, steps: dict, *, kind: str = "local", status: dict | None = None, **kw
) -> HistoryEntry:
    stamp = f"2026-01-{day:02d}T10:00:00.000Z"
    return HistoryEntry(
        drill_id=drill_id,
        started_at=stamp,
        finished_at=stamp,
        verdict=kw.pop("verdict", "pass"),
        incident="mass-failure",
        phase=kw.pop("phase", 7),
        target_kind=kind,
        priority="P1",
        steps=steps,
        step_status=status or dict.fromkeys(steps, "pass"),
        targets=kw.pop("targets", {}),
        bundle=kw.pop("bundle", None),
    )


# -- append and load ------------------------------------------------------------------------


def test_append_history_writes_one_line_under_xdg_state_home(tmp_path, state_home):
    bundle = record(tmp_path / "reports", start=datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    written = append_history(bundle)
    path = state_home / "rollback-drill" / "history.jsonl"
    assert history_path() == path
    line = json.loads(path.read_text(encoding="utf-8"))
    assert line["drill_id"] == bundle.name == written.drill_id
    assert line["finished_at"] == "2026-03-02T09:00:50.000Z"
    assert line["verdict"] == "pass"
    assert line["incident"] == "mass-failure"
    assert line["phase"] == 7
    assert line["target_kind"] == "local"
    assert line["steps"] == {"step-1": 40.0, "step-4": 10.0}
    assert line["targets"] == {"rollback_execution": 50.0, "expanded_downtime": 3.5, "pilot_impact": 0.0}
    assert line["bundle"] == str(bundle.resolve())


def test_load_history_keeps_the_last_line_of_a_drill_and_sorts_by_start(tmp_path):
    path = tmp_path / "history.jsonl"
    lines = [
        entry("b", 5, {"step-1": 10.0}).as_json(),
        entry("a", 1, {"step-1": 11.0}).as_json(),
        entry("b", 5, {"step-1": 12.0}).as_json(),
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    loaded = load_history(path)
    assert [e.drill_id for e in loaded] == ["a", "b"]
    assert loaded[1].steps == {"step-1": 12.0}


def test_a_torn_last_line_is_skipped_but_a_bad_line_in_the_middle_is_named(tmp_path):
    path = tmp_path / "history.jsonl"
    good = json.dumps(entry("a", 1, {"step-1": 10.0}).as_json())
    path.write_text(good + "\n" + '{"drill_id": "b", "verd', encoding="utf-8")
    assert [e.drill_id for e in load_history(path)] == ["a"]
    path.write_text("not json\n" + good + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 1"):
        load_history(path)


def test_no_history_yet_is_empty(tmp_path):
    assert load_history(tmp_path / "missing.jsonl") == []


# -- compare ----------------------------------------------------------------------------------


def test_a_step_slower_than_the_median_by_more_than_the_threshold_is_flagged():
    history = [
        entry("d1", 1, {"step-1": 40.0, "step-4": 10.0}),
        entry("d2", 2, {"step-1": 44.0, "step-4": 10.0}),
        entry("d3", 3, {"step-1": 42.0, "step-4": 10.0}),
        entry("d4", 4, {"step-1": 60.0, "step-4": 12.0}),  # median 42: +42.9 %; step-4 +20 %
    ]
    result = compare(history)
    assert [c.slow_steps for c in result[:3]] == [(), (), ()]
    (slow,) = result[3].slow_steps
    assert (slow.step, slow.elapsed_s, slow.median_s, slow.samples) == ("step-1", 60.0, 42.0, 3)
    assert slow.slower_pct == pytest.approx(42.9)


def test_the_threshold_decides_what_counts_as_slower():
    history = [entry("d1", 1, {"step-1": 40.0}), entry("d2", 2, {"step-1": 49.0})]  # +22.5 %
    assert compare(history)[1].slow_steps == ()
    assert [s.step for s in compare(history, slower_than_median_pct=20.0)[1].slow_steps] == ["step-1"]


def test_the_median_rolls_over_the_last_drills_only():
    history = [entry(f"d{i}", i, {"step-1": 100.0}) for i in range(1, 4)]
    history += [entry(f"d{i}", i, {"step-1": 20.0}) for i in range(4, 7)]
    history.append(entry("d7", 7, {"step-1": 30.0}))
    assert compare(history, window=3)[-1].slow_steps[0].median_s == 20.0
    assert compare(history, window=10)[-1].slow_steps == ()  # median of all six is 60


def test_drills_on_other_targets_and_failed_steps_are_not_samples():
    history = [
        entry("kube", 1, {"step-1": 10.0}, kind="kubeconfig"),
        entry("failed", 2, {"step-1": 5.0}, status={"step-1": "fail"}),
        entry("local", 3, {"step-1": 40.0}),
        entry("now", 4, {"step-1": 45.0}),
    ]
    assert compare(history)[-1].slow_steps == ()


def test_each_drill_is_set_beside_the_pilot_simulation():
    history = [entry("d1", 1, {}, targets={"rollback_execution": 90.0, "expanded_downtime": 2.0, "verify_pilot": 60.0})]
    rows = {row.target: row for row in compare(history)[0].baseline}
    assert PILOT_BASELINE_S == {
        "rollback_execution": 45.0,
        "expanded_downtime": 0.0,
        "verify_pilot": 120.0,
        "total_resolution": 738.0,
    }
    assert (rows["rollback_execution"].delta_s, rows["rollback_execution"].ratio) == (45.0, 2.0)
    assert rows["expanded_downtime"].ratio is None
    assert rows["verify_pilot"].ratio == 0.5
    assert "total_resolution" not in rows


def test_a_negative_threshold_is_bad_input():
    with pytest.raises(InputError):
        compare([], slower_than_median_pct=-1)


def test_history_command_prints_flags_and_json(tmp_path, capsys):
    for day, seconds in ((1, 40.0), (2, 42.0), (3, 70.0)):
        append_history(record(tmp_path / "reports", start=datetime(2026, 1, day, 9, 0, tzinfo=UTC), step_1_s=seconds))
    assert run(["history"]) == 0
    out = capsys.readouterr().out
    assert "3 drill(s)" in out
    assert "slower: step-1 took 1 min 10 s, 70.7% over the median 41.0 s of 2 earlier drill(s)" in out
    assert "vs pilot simulation: rollback_execution" in out
    assert run(["history", "--json", "--threshold-pct", "80"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [len(c["slow_steps"]) for c in payload["comparison"]] == [0, 0, 0]


# -- schedule ----------------------------------------------------------------------------------


@pytest.fixture
def config():
    loaded = load_config()
    return dataclasses.replace(loaded, drills=Drills(date(2025, 11, 17), date(2025, 12, 8), 90))


def test_with_no_drill_everything_is_due(config):
    status = schedule_status(config, [], date(2025, 11, 1))
    assert status.last_drill is None
    assert status.quarterly_overdue
    assert [(p.phase, p.satisfied, p.overdue) for p in status.pre_phase] == [(6, False, False), (7, False, False)]
    later = schedule_status(config, [], date(2025, 11, 18))
    assert [(p.phase, p.overdue) for p in later.pre_phase] == [(6, True), (7, False)]
    assert later.attention_needed


@pytest.mark.parametrize(
    ("today", "overdue", "days"),
    [
        (date(2026, 1, 31), False, 0),
        (date(2026, 4, 1), False, 0),
        (date(2026, 4, 2), True, 1),
        (date(2026, 5, 1), True, 30),
    ],
)
def test_the_quarterly_drill_is_due_90_days_after_the_last_passed_drill(config, today, overdue, days):
    history = [entry("old", 1, {}), entry("last", 1, {}, verdict="pass"), entry("failed", 20, {}, verdict="fail")]
    status = schedule_status(config, history, today)
    assert status.last_drill.drill_id == "failed"
    assert status.last_passed.drill_id in {"old", "last"}
    assert status.next_quarterly_due == date(2026, 4, 1)
    assert (status.quarterly_overdue, status.days_overdue) == (overdue, days)


def test_a_failed_drill_does_not_reset_the_quarterly_clock(config):
    status = schedule_status(config, [entry("failed", 20, {}, verdict="fail")], date(2026, 1, 21))
    assert status.last_passed is None
    assert status.quarterly_overdue


ssh = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (OpenSSH) is not installed")


@pytest.fixture
def key(tmp_path) -> Path:
    path = tmp_path / "signer"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, capture_output=True)
    return path


def finalized(tmp_path: Path, start: datetime, *, roles=ROLES, key: Path | None = None, **kw) -> Path:
    bundle = record(tmp_path / "reports", start=start, **kw)
    finalize_bundle(bundle, redactor=Redactor())
    for role in roles:
        sign(bundle, role=role, name=f"{role} person", key=key, clock=FakeClock(start))
    return bundle


@ssh
def test_a_pre_phase_drill_needs_a_passed_drill_signed_by_every_role_on_or_before_its_date(config, tmp_path, key):
    finalized(tmp_path, datetime(2025, 11, 17, 9, 0, tzinfo=UTC), key=key, phase=6)
    status = schedule_status(config, load_history(), date(2025, 11, 20))
    pre_6, pre_7 = status.pre_phase
    assert pre_6.satisfied
    assert pre_6.missing_roles == ()
    assert not pre_7.satisfied  # a Phase 6 drill does not count for Phase 7
    assert not pre_7.overdue


@ssh
def test_a_drill_missing_approvals_does_not_meet_the_date_and_says_who_is_missing(config, tmp_path, key):
    finalized(tmp_path, datetime(2025, 12, 1, 9, 0, tzinfo=UTC), key=key, roles=ROLES[:2])
    pre_7 = schedule_status(config, load_history(), date(2025, 12, 9)).pre_phase[1]
    assert not pre_7.satisfied
    assert pre_7.overdue
    assert pre_7.signed_roles == ("SRE Lead", "Engineering TL")
    assert pre_7.missing_roles == ("Product Lead", "Incident Commander")
    assert "not signed by Product Lead, Incident Commander" in pre_7.detail


@ssh
def test_a_drill_after_the_date_or_one_that_failed_does_not_count(config, tmp_path, key):
    finalized(tmp_path, datetime(2025, 12, 9, 9, 0, tzinfo=UTC), key=key)
    finalized(tmp_path, datetime(2025, 12, 1, 9, 0, tzinfo=UTC), key=key, verdict="fail")
    pre_7 = schedule_status(config, load_history(), date(2025, 12, 10)).pre_phase[1]
    assert not pre_7.satisfied
    assert pre_7.drill_id is None


@ssh
def test_a_signed_bundle_changed_later_no_longer_counts(config, tmp_path, key):
    bundle = finalized(tmp_path, datetime(2025, 12, 1, 9, 0, tzinfo=UTC), key=key)
    assert schedule_status(config, load_history(), date(2025, 12, 9)).pre_phase[1].satisfied
    (bundle / "rca.md").write_text("rewritten\n", encoding="utf-8")
    pre_7 = schedule_status(config, load_history(), date(2025, 12, 9)).pre_phase[1]
    assert not pre_7.satisfied
    assert "does not verify" in pre_7.detail


def test_schedule_command(config, capsys):
    assert run(["schedule", "--today", "2025-11-01"]) == 0
    out = capsys.readouterr().out
    assert "quarterly (every 90 days): OVERDUE, no drill has passed yet" in out
    assert "Pre-Phase 6 (due 2025-11-17): not yet met" in out
    assert run(["schedule", "--today", "2025-12-09", "--check", "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert [p["overdue"] for p in payload["pre_phase"]] == [True, True]
    assert run(["schedule", "--today", "yesterday"]) == 2


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rollback-drill")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError:
        return 2
