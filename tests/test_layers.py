"""The import contracts hold the layers of docs/architecture.md: a planted upward import breaks them.

Each test copies the library (with steps/, fixtures/, tools/ and pyproject.toml, so the
contracts are the project's own) to a temporary directory, plants one import, and runs
``lint-imports`` against the copy alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("src/rollback_drill", "steps", "fixtures", "tools", "pyproject.toml")
FLOORS = "The library's floors: imports go downward only"
EVIDENCE_FILES = "Evidence's files: the bundle below the renderers and approvals, verify and finalize above them"
TIMING = "Timing imports no target, no TaskDB, nothing above its floor"
EVIDENCE = "Evidence records the drill and knows nothing of the runbook, the world, the targets or FlowEngine"
FLOWENGINE = "FlowEngine's client and simulator know nothing of the runbook"
TARGETS = "Targets import no TaskDB"


def lint_imports() -> str:
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.is_file() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is not installed; `make venv` installs import-linter with the dev extras")
    return found


@dataclass(frozen=True)
class Outcome:
    returncode: int
    output: str

    def broken(self) -> set[str]:
        """The contracts lint-imports reported BROKEN (it wraps long names over lines, so unwrap first)."""
        text = " ".join(self.output.split())
        every = (FLOORS, EVIDENCE_FILES, TIMING, EVIDENCE, FLOWENGINE, TARGETS)
        return {name for name in every if f"{name} BROKEN" in text}


def copy_project(tmp_path: Path) -> Path:
    for relative in COPIED:
        source, target = ROOT / relative, tmp_path / relative
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return tmp_path


def run_contracts(project: Path) -> Outcome:
    # Only the copy is on the path: PYTHONPATH comes before the installed (editable) library.
    env = {**os.environ, "PYTHONPATH": f"{project / 'src'}{os.pathsep}{project}"}
    proc = subprocess.run(
        [lint_imports(), str(project / "pyproject.toml"), "--no-cache"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Outcome(proc.returncode, proc.stdout + proc.stderr)


def plant(project: Path, module: str, line: str, *, in_function: bool = False) -> None:
    path = project / "src" / "rollback_drill" / module
    text = path.read_text(encoding="utf-8") if path.exists() else '"""Planted by the test."""\n'
    addition = f"\n\ndef _planted() -> None:\n    {line}  # noqa: PLC0415\n" if in_function else f"\n{line}\n"
    path.write_text(text + addition, encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path)


def test_the_library_as_it_is_keeps_every_contract(project):
    outcome = run_contracts(project)
    assert outcome.returncode == 0, outcome.output
    assert "BROKEN" not in outcome.output
    assert "0 broken" in outcome.output


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        pytest.param("timing/clock.py", "from rollback_drill import runbook", {FLOORS, TIMING}, id="timing-up"),
        pytest.param(
            "timing/wait.py", "from rollback_drill.targets import cluster", {FLOORS, TIMING}, id="timing-targets"
        ),
        pytest.param("evidence/history.py", "from rollback_drill import world", {FLOORS, EVIDENCE}, id="evidence-up"),
        pytest.param(
            "flowengine/client.py", "from rollback_drill.runbook import decision", {FLOORS, FLOWENGINE}, id="fe-runbook"
        ),
        pytest.param(
            "targets/local.py", "from rollback_drill.taskdb import providers", {FLOORS, TARGETS}, id="targets-taskdb"
        ),
        pytest.param("kube/rules.py", "from rollback_drill.taskdb import schema", {FLOORS}, id="siblings"),
        pytest.param("world/seed.py", "from rollback_drill import options", {FLOORS}, id="options-in-library"),
        pytest.param(
            "evidence/bundle.py", "from rollback_drill.evidence import report", {EVIDENCE_FILES}, id="evidence-circle"
        ),
        pytest.param("paths.py", "from rollback_drill import environment", {FLOORS}, id="floor-1-up"),
        pytest.param("stray.py", "from rollback_drill import errors", {FLOORS}, id="module-on-no-floor"),
    ],
)
def test_a_planted_import_breaks_the_contract_that_forbids_it(project, module, line, expected):
    plant(project, module, line)
    outcome = run_contracts(project)
    assert outcome.returncode != 0, outcome.output
    # A planted import low down also breaks, through it, the contracts of whatever imports that module.
    assert expected <= outcome.broken(), outcome.output


def test_an_upward_import_hidden_in_a_function_still_breaks_the_floors(project):
    plant(project, "timing/clock.py", "from rollback_drill import runbook", in_function=True)
    outcome = run_contracts(project)
    assert outcome.returncode != 0, outcome.output
    assert {FLOORS, TIMING} <= outcome.broken(), outcome.output
