# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""report.html in a real browser: Debian's headless chromium renders it (screenshot kept
in the bundle as report.png, which is then sealed with it) and dumps the DOM it built."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollback_drill.evidence import Recorder, Redactor
from rollback_drill.evidence.bundle import MANIFEST_NAME, seal
from rollback_drill.evidence.finalize import finalize_bundle
from rollback_drill.evidence.verify import verify
from rollback_drill.timing.clock import FakeClock

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (Debian: apt-get install -y chromium); the report is not rendered",
    ),
    pytest.mark.slow,
]

START = datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)
STEPS = (
    ("pre-1", "Incident Confirmation", 300, 30),
    ("pre-2", "Stakeholder Notification", 300, 15),
    ("pre-3", "Backup Current State", 300, 40),
    ("step-1", "Disable Orchestrator for Expanded Repos", 120, 50),
    ("step-2", "Scale Down FlowEngine", 180, 210),
    ("step-3", "Revert Database Schema", 300, 70),
    ("step-4", "Disable Expanded Repo Alerts", 120, 20),
    ("step-5", "Verify Pilot Repo Functionality", 180, 95),
    ("step-6", "Verify System Health", 300, 35),
    ("step-7", "Stakeholder Communication", 300, 12),
    ("step-8", "Update Status Page", 120, 6),
)
WINDOW = (1280, 2000)
CHROMIUM_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture
def bundle(tmp_path) -> Path:
    clock = FakeClock(START)
    rec = Recorder.create(tmp_path / "reports", incident="mass-failure", clock=clock, redactor=Redactor())
    rec.set("target", {"kind": "local", "server_version": "v1.31.0", "fingerprint": "https://127.0.0.1:6443#uid-1"})
    rec.set("participants", {"Incident Commander": "Dana <on call>", "SRE Lead": "Sam", "Engineering TL": "Kim"})
    rec.set("phase", 7)
    clock.advance(4)
    rec.event("incident_injected", incident="mass-failure")
    clock.advance(6)
    rec.event("decision_made")
    rec.set(
        "decision",
        {
            "priority": "P1",
            "criteria_met": ["Mass Concurrent Failures: >10 repos failing simultaneously"],
            "action": "roll back",
            "reasons": ["14 of 50 repos failing, > 5 failures/h each"],
            "triage_s": 0,
        },
    )
    for step_id, title, budget_s, took_s in STEPS:
        rec.begin_step(step_id, title, budget_s)
        clock.advance(took_s)
        rec.end_step(step_id)
        clock.advance(2)
    rec.warn(
        "runbook-drift", "PrometheusRule has no /spec/groups/0/rules/0/enabled; removed the rule instead", "step-4"
    )
    rec.set_targets(
        [
            {"name": "detect", "limit": None, "measured": 6.0, "unit": "s", "met": None},
            {"name": "rollback_execution", "limit": 600, "measured": 356.0, "unit": "s", "met": True},
            {"name": "expanded_downtime", "limit": 300, "measured": 41.2, "unit": "s", "met": True},
            {"name": "pilot_impact", "limit": 0, "measured": 0, "unit": "requests", "met": True},
            {"name": "total_resolution", "limit": 1800, "measured": 640.0, "unit": "s", "met": True},
        ]
    )
    rec.finish("pass")
    finalize_bundle(rec.bundle_dir, redactor=Redactor())
    return rec.bundle_dir


def chromium(tmp_path: Path, profile: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / profile}",
        *args,
    ]
    # A throwaway HOME, so the browser leaves nothing (NSS databases, caches) in the real one.
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    return subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, env=env, check=False)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_chromium_renders_the_report_with_its_chart_and_tables(bundle, tmp_path):
    page = bundle / "report.html"
    url = page.resolve().as_uri()
    screenshot = bundle / "report.png"

    shot = chromium(
        tmp_path, "profile-shot", f"--screenshot={screenshot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", url
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert png_size(screenshot) == WINDOW
    # A blank page compresses to a few kB; the chart, the tables and the text make it far larger.
    assert screenshot.stat().st_size > 50_000

    dump = chromium(tmp_path, "profile-dom", "--dump-dom", url)
    assert dump.returncode == 0, dump.stderr[-2000:]
    dom = dump.stdout
    assert '<div class="word">PASS</div>' in dom
    svg = dom[dom.index("<svg") : dom.index("</svg>")]
    bars = re.findall(r'<rect class="bar ([a-z-]+)" data-step="([a-z0-9-]+)"', svg)
    assert [step for _, step in bars] == [s[0] for s in STEPS]
    assert ("over-budget", "step-2") in bars
    assert len(re.findall(r'<rect class="budget"', svg)) == len(STEPS)
    for table in ("facts", "moments", "steps", "targets", "decision", "participants", "warnings", "artifacts"):
        assert f'<table class="{table}">' in dom, table
    assert "expanded_downtime" in dom
    assert "Dana &lt;on call&gt;" in dom
    assert "SRE Lead: ________________ (Date: ______)" in dom

    # The screenshot stays in the bundle: sealing again takes it in, and the bundle verifies.
    assert {p.path for p in verify(bundle, allowed_signers=None).problems} == {"report.png"}
    seal(bundle)
    assert verify(bundle, allowed_signers=None).ok
    assert "report.png" in (bundle / MANIFEST_NAME).read_text(encoding="utf-8")
