"""The CI skip policy (tools/skip_policy.py), run as pytest runs it: in a child pytest on a tiny suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SUITE = """
import pytest

def test_runs():
    assert True

@pytest.mark.skip(reason="needs a package that is not installed")
def test_skips():
    pass
"""


def _pytest(tmp_path: Path, suite: str, allowed: str, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_suite.py").write_text(suite, encoding="utf-8")
    (tmp_path / "allowed.txt").write_text(allowed, encoding="utf-8")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tools.skip_policy",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            "/dev/null",
            str(tmp_path / "test_suite.py"),
            "--allowed-skips",
            str(tmp_path / "allowed.txt"),
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_an_unlisted_skip_fails_the_session_naming_the_test(tmp_path):
    result = _pytest(tmp_path, SUITE, "# nothing may skip\n")
    assert result.returncode == 1, result.stdout
    assert "test_suite.py::test_skips skipped" in result.stdout
    assert "not in --allowed-skips" in result.stdout


def test_a_listed_skip_passes(tmp_path):
    result = _pytest(tmp_path, SUITE, "*::test_skips  # it needs hardware CI does not have\n")
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 skipped" in result.stdout


def test_a_session_in_which_nothing_passed_fails(tmp_path):
    only_skips = 'import pytest\n\n@pytest.mark.skip(reason="x")\ndef test_skips():\n    pass\n'
    result = _pytest(tmp_path, only_skips, "*::test_skips  # listed, but a run of skips alone is not a pass\n")
    assert result.returncode == 1, result.stdout
    assert "no test passed" in result.stdout


def test_a_session_in_which_everything_was_deselected_fails(tmp_path):
    result = _pytest(tmp_path, SUITE, "# nothing may skip\n", "-k", "no_such_test")
    assert result.returncode == 1, result.stdout
    assert "no test passed" in result.stdout


def test_an_entry_without_a_reason_is_refused(tmp_path):
    result = _pytest(tmp_path, SUITE, "*::test_skips\n")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "has no '# reason'" in result.stderr


def test_a_failing_session_keeps_its_own_exit_code(tmp_path):
    failing = "def test_fails():\n    assert False\n"
    result = _pytest(tmp_path, failing, "# nothing may skip\n")
    assert result.returncode == 1, result.stdout
    assert "skip policy" not in result.stdout
