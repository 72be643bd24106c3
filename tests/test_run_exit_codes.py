"""`rollback-drill run`'s exit code: green means a scenario ran, and the code follows the bundle's verdict.

The mapping is a function of three things: pytest's exit code, the verdicts of the
bundles the run sealed, and what pytest's JUnit XML says ran. One drill is also run
end to end with the ``drill`` target tightened (drill.yaml may only tighten it) below
what any drill can meet: pytest passes its scenario, the bundle says ``fail``, and so
does the command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rollback_drill.config import default_config_path
from rollback_drill.run import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOTHING_RAN,
    EXIT_PASSED,
    JUnitCounts,
    drill_exit_code,
    read_junit,
    read_verdict,
)

ROOT = Path(__file__).resolve().parents[1]
RAN_ONE = JUnitCounts(tests=1, skipped=0)
SKIPPED_ALL = JUnitCounts(tests=1, skipped=1, skip_message="--target kubeconfig: the environment fixtures ...")


@pytest.mark.parametrize(
    ("pytest_code", "verdicts", "junit", "expected"),
    [
        # It ran and passed, and the bundle agrees.
        (0, ["pass"], RAN_ONE, EXIT_PASSED),
        # pytest passed, the bundle did not (a drill target missed as it was sealed): the verdict wins.
        (0, ["fail"], RAN_ONE, EXIT_FAILED),
        (0, ["aborted"], RAN_ONE, EXIT_FAILED),
        (0, ["pass", "fail"], RAN_ONE, EXIT_FAILED),
        # A failed scenario is a failed drill, whatever the bundle managed to say.
        (1, ["pass"], RAN_ONE, EXIT_FAILED),
        (1, ["fail"], RAN_ONE, EXIT_FAILED),
        (1, [], RAN_ONE, EXIT_FAILED),
        # Nothing ran: all skipped, nothing collected, nothing selected, or no JUnit report at all.
        (0, [], SKIPPED_ALL, EXIT_NOTHING_RAN),
        (0, [], JUnitCounts(tests=3, skipped=3), EXIT_NOTHING_RAN),
        (0, [], JUnitCounts(tests=0, skipped=0), EXIT_NOTHING_RAN),
        (5, [], JUnitCounts(tests=0, skipped=0), EXIT_NOTHING_RAN),
        (5, [], None, EXIT_NOTHING_RAN),
        (0, [], None, EXIT_NOTHING_RAN),
        # Some ran, some skipped: it ran.
        (0, ["pass"], JUnitCounts(tests=2, skipped=1), EXIT_PASSED),
        # Interrupted (pytest's 2, or killed by a signal), and pytest's own usage errors.
        (2, ["aborted"], RAN_ONE, EXIT_INTERRUPTED),
        (-15, [], None, EXIT_INTERRUPTED),
        (4, [], None, EXIT_NOTHING_RAN),
        (3, [], None, EXIT_FAILED),
    ],
)
def test_the_exit_code_follows_what_ran_and_the_verdict(pytest_code, verdicts, junit, expected):
    assert drill_exit_code(pytest_code, verdicts, junit).code == expected


def test_a_run_that_skipped_everything_says_why_in_one_line():
    outcome = drill_exit_code(0, [], SKIPPED_ALL)
    assert outcome.reason.startswith("no scenario ran: all 1 skipped (--target kubeconfig: the environment fixtures")
    assert "\n" not in outcome.reason


def test_a_failed_verdict_says_so():
    assert "verdict is fail" in drill_exit_code(0, ["fail"], RAN_ONE).reason
    assert drill_exit_code(0, ["pass"], RAN_ONE).reason == ""


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="0" skipped="2" tests="2" time="0.1">
<testcase classname="features.test_drill" name="test_a" time="0.0"><skipped type="pytest.skip"
 message="--target kubeconfig: the environment fixtures create local and kind targets only">skip</skipped></testcase>
<testcase classname="features.test_drill" name="test_b" time="0.0"><skipped type="pytest.skip" message="other"/></testcase>
</testsuite></testsuites>
"""


def test_the_junit_counts_and_the_first_skip_reason_are_read(tmp_path: Path):
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    counts = read_junit(path)
    assert counts == JUnitCounts(
        2, 2, "--target kubeconfig: the environment fixtures create local and kind targets only"
    )
    assert counts.executed == 0


def test_a_missing_or_broken_junit_file_reads_as_none(tmp_path: Path):
    assert read_junit(tmp_path / "absent.xml") is None
    (tmp_path / "broken.xml").write_text("<testsuites")
    assert read_junit(tmp_path / "broken.xml") is None


def test_a_bundle_whose_verdict_cannot_be_read_counts_as_aborted(tmp_path: Path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"verdict": "fail"}))
    assert read_verdict(good) == "fail"
    (tmp_path / "odd.json").write_text(json.dumps({"verdict": "maybe"}))
    assert read_verdict(tmp_path / "odd.json") == "aborted"
    (tmp_path / "torn.json").write_text("{")
    assert read_verdict(tmp_path / "torn.json") == "aborted"
    assert read_verdict(tmp_path / "absent.json") == "aborted"


@pytest.mark.slow
def test_a_drill_that_misses_its_drill_target_exits_1_with_a_failed_bundle(tmp_path: Path):
    """drill.yaml tightens the 20-minute ``drill`` target to 1 second, which no drill meets: every step passes,
    the bundle is sealed ``fail`` with the target missed, and the command exits 1."""
    config = yaml.safe_load(default_config_path().read_text())
    config["budget_overrides_s"] = {"drill": 1}
    (tmp_path / "drill.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    evidence_dir = tmp_path / "evidence"
    result = subprocess.run(
        [
            sys.executable, "-m", "rollback_drill.cli", "run", "--config", str(tmp_path / "drill.yaml"),
            "--incident", "cost-runaway", "--evidence-dir", str(evidence_dir),
        ],
        env=dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state")),
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == EXIT_FAILED, result.stdout[-3000:] + result.stderr[-2000:]
    assert "verdict is fail" in result.stderr
    evidence = json.loads(next(evidence_dir.glob("*/evidence.json")).read_text())
    assert evidence["verdict"] == "fail"
    drill = next(t for t in evidence["targets"] if t["name"] == "drill")
    assert (drill["limit"], drill["met"]) == (1, False)
    assert drill["measured"] > 1


def test_a_run_in_which_no_scenario_ran_exits_2_naming_why(tmp_path: Path):
    """Extra pytest arguments that deselect every scenario: pytest has nothing to run, and that is not a pass."""
    result = subprocess.run(
        [
            sys.executable, "-m", "rollback_drill.cli", "run", "--incident", "cost-runaway",
            "--evidence-dir", str(tmp_path / "evidence"), "--", "-k", "no_scenario_is_called_this",
        ],
        env=dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state")),
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == EXIT_NOTHING_RAN, result.stdout[-3000:] + result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("rollback-drill: no scenario ran")
    assert not list((tmp_path / "evidence").glob("*/evidence.json"))
