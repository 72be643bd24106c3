# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""report.html (verdict, Gantt chart, tables, escaping, self-containment) and rca.md
(the runbook's RCA template filled from the run)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollback_drill.evidence import Recorder, Redactor
from rollback_drill.evidence.rca import incident_id, render_rca
from rollback_drill.evidence.report import render_report
from rollback_drill.timing.clock import FakeClock

START = datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)
EVIL = '<img src=x onerror="alert(1)">&'

# step id, budget (s), time taken (s), status given (None: from the budget)
STEPS = (
    ("pre-1", 300, 40, None),
    ("pre-2", 300, 20, None),
    ("pre-3", 300, 25, None),
    ("step-1", 120, 45, None),
    ("step-2", 180, 200, None),  # over budget
    ("step-3", 300, 60, None),
    ("step-4", 120, 15, None),
    ("step-5", 180, 90, None),
    ("step-6", 300, 30, None),
    ("step-7", 300, 10, None),
    ("step-8", 120, 5, None),
)


def record(
    evidence_dir: Path,
    *,
    incident: str = "mass-failure",
    steps=STEPS,
    verdict: str | None = "pass",
    decision: dict | None = None,
    extra: dict | None = None,
) -> Recorder:
    clock = FakeClock(START)
    rec = Recorder.create(evidence_dir, incident=incident, clock=clock, redactor=Redactor())
    rec.set("target", {"kind": "kubeconfig", "server_version": "v1.31.0", "fingerprint": "https://10.0.0.1:6443#u"})
    rec.set("participants", {"Incident Commander": f"Dana {EVIL}", "SRE Lead": "Sam"})
    rec.set("phase", 7)
    rec.set("affected_repos", ["risk-engine", "financial-reporting"])
    for field, value in (extra or {}).items():
        rec.set(field, value)
    clock.advance(5)
    rec.event("incident_injected", incident=incident)
    clock.advance(7)
    rec.event("decision_made")
    rec.set(
        "decision",
        decision
        or {
            "priority": "P1",
            "criteria_met": ["Mass Concurrent Failures: >10 repos failing simultaneously"],
            "action": "roll back",
            "reasons": [f"12 repos failing {EVIL}"],
            "triage_s": 0,
        },
    )
    for step_id, budget_s, took_s, status in steps:
        if took_s is None:
            rec.skip_step(step_id, f"Runbook {step_id}", budget_s, "no schema change at this phase")
            continue
        rec.begin_step(step_id, f"Runbook {step_id}", budget_s)
        clock.advance(took_s)
        rec.end_step(step_id, status, "pilot probe failed" if status == "fail" else None)
        clock.advance(1)
    rec.warn(
        "runbook-drift", "PrometheusRule has no /spec/groups/0/rules/0/enabled; the rule was removed instead", "step-4"
    )
    rec.set_targets(
        [
            {"name": "detect", "limit": None, "measured": 7.0, "unit": "s", "met": None},
            {"name": "rollback_execution", "limit": 600, "measured": 335.0, "unit": "s", "met": True},
            {"name": "expanded_downtime", "limit": 300, "measured": 412.5, "unit": "s", "met": False},
            {"name": "pilot_impact", "limit": 0, "measured": 0, "unit": "requests", "met": True},
        ]
    )
    if verdict is not None:
        rec.finish(verdict)
    return rec


@pytest.fixture
def rec(tmp_path) -> Recorder:
    return record(tmp_path)


def page_of(rec: Recorder) -> str:
    return render_report(rec.bundle_dir, redactor=Redactor()).read_text(encoding="utf-8")


def rca_of(rec: Recorder) -> str:
    return render_rca(rec.bundle_dir, redactor=Redactor()).read_text(encoding="utf-8")


# -- report.html ---------------------------------------------------------------------------


def test_the_verdict_comes_first_large_and_coloured(rec):
    page = page_of(rec)
    header = re.search(r'<header class="verdict verdict-pass" style="background:(#[0-9a-f]{6})">(.*?)</header>', page)
    assert header is not None
    assert header.group(1) == "#1b5e20"
    assert '<div class="word">PASS</div>' in header.group(2)
    assert page.index("<header") < page.index("<h2>")


@pytest.mark.parametrize(("verdict", "word"), [("fail", "FAIL"), ("aborted", "ABORTED")])
def test_other_verdicts_show_their_word(tmp_path, verdict, word):
    page = page_of(record(tmp_path, verdict=verdict))
    assert f'<header class="verdict verdict-{verdict}"' in page
    assert f'<div class="word">{word}</div>' in page


def test_the_chart_has_one_bar_per_step_in_order(rec):
    page = page_of(rec)
    svg = page[page.index("<svg") : page.index("</svg>")]
    bars = re.findall(r'<rect class="bar ([a-z-]+)" data-step="([a-z0-9-]+)"', svg)
    assert [step for _, step in bars] == [s[0] for s in STEPS]
    budgets = re.findall(r'<rect class="budget" data-step="([a-z0-9-]+)"', svg)
    assert budgets == [s[0] for s in STEPS]


def test_bars_are_placed_by_start_and_sized_by_elapsed_with_the_budget_behind(rec):
    svg = page_of(rec)
    bar = {
        m["step"]: (float(m["x"]), float(m["w"]))
        for m in re.finditer(
            r'class="bar [a-z-]+" data-step="(?P<step>[a-z0-9-]+)" x="(?P<x>[\d.]+)" y="[\d.]+" width="(?P<w>[\d.]+)"',
            svg,
        )
    }
    budget = {
        m["step"]: (float(m["x"]), float(m["w"]))
        for m in re.finditer(
            r'class="budget" data-step="(?P<step>[a-z0-9-]+)" x="(?P<x>[\d.]+)" y="[\d.]+" width="(?P<w>[\d.]+)"', svg
        )
    }
    starts = [bar[s[0]][0] for s in STEPS]
    assert starts == sorted(starts)  # the steps ran one after another
    assert bar["step-1"][0] == budget["step-1"][0]
    # widths are proportional to the seconds: step-5 took 90 s of 180, step-1 45 s of 120
    assert bar["step-5"][1] / bar["step-1"][1] == pytest.approx(2.0, rel=0.01)
    assert budget["step-5"][1] / bar["step-5"][1] == pytest.approx(2.0, rel=0.01)
    assert bar["step-2"][1] > budget["step-2"][1]  # over budget: longer than its budget


def test_over_budget_and_failed_steps_are_red(tmp_path):
    steps = (("step-1", 120, 45, None), ("step-2", 180, 200, None), ("step-5", 180, 30, "fail"))
    page = page_of(record(tmp_path, steps=steps, verdict="fail"))
    fills = dict(re.findall(r'class="bar [a-z-]+" data-step="([a-z0-9-]+)"[^>]*fill="(#[0-9a-f]{6})"', page))
    assert fills["step-1"] == "#2e7d32"
    assert fills["step-2"] == "#d32f2f"
    assert fills["step-5"] == "#b71c1c"
    assert "steps failed or over budget: step-2, step-5" in page


def test_a_skipped_step_still_gets_its_row(tmp_path):
    steps = (("step-1", 120, 45, None), ("step-3", 300, None, None), ("step-4", 120, 15, None))
    page = page_of(record(tmp_path, steps=steps))
    assert re.findall(r'data-step="([a-z0-9-]+)"', page[page.index("<svg") :]).count("step-3") == 1
    assert '<rect class="bar skipped" data-step="step-3"' in page


def test_a_step_left_open_by_a_killed_drill_is_drawn_unfinished(tmp_path):
    rec = record(tmp_path, steps=(("step-1", 120, 45, None),), verdict=None)
    rec.begin_step("step-2", "Scale Down FlowEngine", 180)
    rec.clock.advance(20)
    rec.event("probe", ok=False)
    page = page_of(rec)
    assert '<rect class="bar unfinished" data-step="step-2"' in page
    assert '<div class="word">ABORTED</div>' in page


def test_the_target_table_lists_name_limit_measured_unit_met(rec):
    page = page_of(rec)
    table = page[page.index('<table class="targets">') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    cells = [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", rows[2])]
    assert cells == ["expanded_downtime", "300", "412.5", "s", "MISSED"]
    assert "reported" in rows[0]
    assert ">met<" in rows[1]


def test_decision_participants_warnings_and_artifacts_are_shown(rec):
    page = page_of(rec)
    assert "<strong>P1</strong>" in page
    assert "Mass Concurrent Failures: &gt;10 repos failing simultaneously" in page
    assert "Incident Commander" in page
    assert '<tr class="drift"><td>runbook-drift</td><td>step-4</td>' in page
    assert re.search(r"<td>timeline.jsonl</td><td class=\"num\">\d+</td><td class=\"mono\">[0-9a-f]{64}</td>", page)


def test_notifications_and_conformance_appear_when_present(tmp_path):
    extra = {
        "notifications": [{"channel": "slack", "stage": "pre-2", "delivered": True}],
        "conformance": {"step-4": "drift: enabled field missing", "checked": 8},
    }
    page = page_of(record(tmp_path, extra=extra))
    assert "<h2>Notifications</h2>" in page
    assert "<th>channel</th>" in page
    assert "<h2>Conformance</h2>" in page
    assert "drift: enabled field missing" in page


def test_notifications_and_conformance_are_left_out_when_absent(rec):
    page = page_of(rec)
    assert "<h2>Notifications</h2>" not in page
    assert "<h2>Conformance</h2>" not in page


def test_user_text_is_escaped_everywhere(rec):
    page = page_of(rec)
    assert EVIL not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page
    assert "<img" not in page


def test_the_page_is_self_contained(rec):
    page = page_of(rec)
    lowered = page.lower()
    for needle in ("<script", "<link", "<iframe", "<img", "<object", "<embed", "@import", "url(", "xmlns"):
        assert needle not in lowered, needle
    # User text is escaped, so every "<" opens a tag of ours; none of them loads anything.
    tags = re.findall(r"<[a-z][^>]*>", page)
    assert not [tag for tag in tags if re.search(r"\s(src|href|action|formaction|poster|data)=", tag)]
    assert not [tag for tag in tags if re.search(r"\son[a-z]+=", tag)]
    assert "<style>" in page
    assert page.count("<svg") == 1


def test_the_approval_block_has_blank_lines_until_someone_signs(rec):
    page = page_of(rec)
    for role in ("SRE Lead", "Engineering TL", "Product Lead", "Incident Commander"):
        assert f'<li class="signline" data-role="{role}">{role}: ________________ (Date: ______)</li>' in page


def test_the_approval_block_is_filled_from_approvals(rec):
    approvals = rec.bundle_dir / "approvals"
    approvals.mkdir()
    (approvals / "product-lead-pat.json").write_text(
        json.dumps(
            {
                "role": "Product Lead",
                "name": "Pat <PM>",
                "signed_at": "2026-03-03T10:00:00.000Z",
                "manifest_sha256": "ab" * 32,
                "key_fingerprint": "SHA256:abc",
            }
        ),
        encoding="utf-8",
    )
    page = page_of(rec)
    assert "Product Lead: <strong>Pat &lt;PM&gt;</strong> (Date: 2026-03-03)" in page
    assert "SRE Lead: ________________ (Date: ______)" in page


def test_rendering_is_deterministic(rec):
    assert page_of(rec) == page_of(rec)
    assert rca_of(rec) == rca_of(rec)


# -- rca.md -----------------------------------------------------------------------------------


def test_the_rca_fills_the_runbook_template(rec):
    rca = rca_of(rec)
    assert rca.startswith("# Root Cause Analysis: Mass Concurrent Failures")
    assert re.search(r"^\*\*Incident ID:\*\* INC-20260302-\d{3}$", rca, re.MULTILINE)
    assert "**Date:** 2026-03-02" in rca
    assert "**Severity:** P1" in rca
    assert "**Affected Repos:** risk-engine, financial-reporting" in rca
    for heading in ("## Timeline", "## Root Cause", "## Contributing Factors", "## Resolution", "## Prevention"):
        assert heading in rca
    assert "Rolled back to pilot scope per RB-LAUNCH-002." in rca
    assert "TO BE COMPLETED" in rca


def test_the_rca_timeline_and_duration_have_real_timestamps(rec):
    rca = rca_of(rec)
    # injected at +5 s, decided at +12 s; pre-1..3 take 40+1, 20+1, 25+1 s, so Step 1 starts at +100 s;
    # Steps 1-4 take 45+1, 200+1, 60+1, 15 s, so Step 4 ends at +423 s; Step 5 ends at +1+90 s later.
    assert "- 2026-03-02 14:05:14 UTC: Incident injected (drill)" in rca
    assert "- 2026-03-02 14:05:21 UTC: Incident detected" in rca
    assert "- 2026-03-02 14:06:49 UTC: Rollback initiated" in rca
    assert "- 2026-03-02 14:12:12 UTC: Rollback complete" in rca
    assert "- 2026-03-02 14:13:43 UTC: Pilot repo verified operational" in rca
    assert "**Duration:** 2026-03-02 14:05:14 UTC - 2026-03-02 14:12:12 UTC (6 min 58 s" in rca


def test_the_incident_id_is_stable_per_drill(rec):
    doc = json.loads((rec.bundle_dir / "evidence.json").read_text(encoding="utf-8"))
    assert incident_id(doc) == incident_id(dict(doc))
    assert incident_id(doc) == f"INC-20260302-{int(rec.drill_id[-6:], 16) % 1000:03d}"


def test_the_rca_asks_to_rotate_credentials_after_a_security_breach(tmp_path):
    rca = rca_of(record(tmp_path, incident="security-breach"))
    assert "# Root Cause Analysis: Security Breach" in rca
    assert "- [ ] InfoSec Lead: Rotate leaked credentials" in rca


def test_the_rca_asks_to_restore_schema_changes_in_staging_first_when_step_3_reverted(rec):
    assert "Restore schema changes in staging first" in rca_of(rec)


def test_no_schema_item_when_step_3_was_skipped(tmp_path):
    steps = (("step-1", 120, 45, None), ("step-3", 300, None, None), ("step-4", 120, 15, None))
    assert "staging first" not in rca_of(record(tmp_path, steps=steps))


def test_runbook_drift_becomes_a_runbook_fix_item(rec):
    rca = rca_of(rec)
    assert "- [ ] SRE Lead: Fix runbook RB-LAUNCH-002 (step-4), runbook drift: PrometheusRule has no" in rca


def test_over_budget_steps_and_missed_targets_become_items(rec):
    rca = rca_of(rec)
    assert 'step-2 "Runbook step-2" took 3 min 20 s, over its budget of 3 min' in rca
    assert "Drill target expanded_downtime missed: measured 412.5 s, limit 300" in rca


def test_a_no_go_drill_does_not_claim_a_rollback(tmp_path):
    decision = {
        "priority": "NO-GO",
        "criteria_met": ["Single repo failure (isolate repo instead, see RB-CORE-001)"],
        "action": "isolate repo",
        "reasons": ["only risk-engine fails"],
        "triage_s": 0,
    }
    rca = rca_of(record(tmp_path, incident="single-repo-failure", steps=(), decision=decision))
    assert "Rolled back to pilot scope" not in rca
    assert 'No rollback: the decision framework answered NO-GO, action "isolate repo".' in rca
    assert "**Severity:** NO-GO" in rca
