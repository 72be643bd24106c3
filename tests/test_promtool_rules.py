"""``promtool test rules`` on the alerts the drill world seeds, rendered from the Python that seeds them.

The test files in ``tests/promtool/`` name the rule files; this renders them from ``world.manifests``
(the same dicts the world applies as PrometheusRules) with ``monitoring.rules``, the way
prometheus-operator would, and runs promtool. promtool 2.42 has no ``--junit``: pytest's own result
(and its JUnit report, where one is asked for) is the record, with promtool's output on failure.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rollback_drill.monitoring import rules
from rollback_drill.world.manifests import alert_rule, crash_loop_alert_rule, pilot_alert_rule

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
TEST_FILES = Path(__file__).parent / "promtool"

pytestmark = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool is not installed: run `make monitoring`")


def _rendered(directory: Path, *objects: dict) -> Path:
    for test_file in TEST_FILES.glob("*.test.yaml"):
        shutil.copy(test_file, directory / test_file.name)
    rules.sync(directory / "rules", list(objects))
    return directory


def _promtool(directory: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, "test", "rules", name], cwd=directory, capture_output=True, text=True, check=False, timeout=60
    )


def _world_rules() -> tuple[dict, ...]:
    return (
        alert_rule("financial-reporting", "monitoring"),
        pilot_alert_rule("compliance-service", "monitoring"),
        crash_loop_alert_rule("monitoring"),
    )


@pytest.mark.parametrize("test_file", sorted(p.name for p in TEST_FILES.glob("*.test.yaml")))
def test_promtool_passes_on_the_seeded_alerts(tmp_path, test_file):
    result = _promtool(_rendered(tmp_path, *_world_rules()), test_file)
    assert result.returncode == 0, f"promtool test rules {test_file}:\n{result.stdout}\n{result.stderr}"
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_fails_when_a_threshold_can_never_be_reached(tmp_path):
    """The tests above would catch a rule that can no longer fire: here the failure threshold is raised out of reach."""
    broken = alert_rule("financial-reporting", "monitoring")
    rule = broken["spec"]["groups"][0]["rules"][0]
    rule["expr"] = rule["expr"].replace("> 5", "> 1e9")
    result = _promtool(
        _rendered(tmp_path, broken, pilot_alert_rule("compliance-service", "monitoring")),
        "expanded-repo-failures.test.yaml",
    )
    assert result.returncode != 0
    assert "FlowFailureRateHigh" in result.stdout + result.stderr
