"""The conformance bundle as the command writes it: with the default, relative ``--evidence-dir``
from any working directory, the bundle holds its report and manifest and verifies."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from rollback_drill import cli, environment
from rollback_drill.conformance import cli as conformance_cli
from rollback_drill.conformance.bundle import CONFORMANCE_NAME
from rollback_drill.conformance.report import CommandResult, ConformanceReport
from rollback_drill.conformance.runbook import parse_runbook

RUNBOOK = dedent(
    """\
    # Runbook: Test

    ## Rollback Procedure

    ### Step 1: Look (2 minutes)

    ```bash
    kubectl get pods -n production
    ```
    """
)


@pytest.fixture
def recorded_run(tmp_path, monkeypatch):
    """`rollback-drill conformance --env drill` with the run itself recorded: the bundle is what is tested."""
    runbook = tmp_path / "runbook.md"
    runbook.write_text(RUNBOOK, encoding="utf-8")
    parsed = parse_runbook(runbook)
    results = tuple(CommandResult(c, "ok", "ran as written", exit_code=0, stdout="pod/a\n") for c in parsed.commands)
    target = {"kind": "local", "server_version": "v1.34.0", "fingerprint": "https://127.0.0.1:6443#uid"}
    report = ConformanceReport(parsed, results, "drill", target, 6, "mass-failure", "t0", "t1", 1.0, "/w")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(environment.EnvironmentState, "load", classmethod(lambda _cls, name: name))
    monkeypatch.setattr(conformance_cli, "run_conformance", lambda *_args, **_kwargs: report)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return runbook


@pytest.mark.parametrize("evidence_dir", ["reports", "./nested/../reports"])
def test_a_relative_evidence_dir_gives_a_sealed_bundle_that_verifies(recorded_run, evidence_dir, capsys):
    assert cli.main(["conformance", str(recorded_run), "--env", "drill", "--evidence-dir", evidence_dir]) == 0
    bundles = list((Path.cwd() / "reports").iterdir())
    assert len(bundles) == 1
    bundle = bundles[0]
    for name in (CONFORMANCE_NAME, "evidence.json", "report.html", "MANIFEST.sha256"):
        assert (bundle / name).is_file(), name
    capsys.readouterr()
    relative = Path(evidence_dir) / bundle.name
    assert cli.main(["evidence", "verify", str(relative)]) == 0, capsys.readouterr()


def test_an_absolute_evidence_dir_from_another_cwd_verifies_too(recorded_run, tmp_path, capsys):
    evidence = tmp_path / "evidence"
    assert cli.main(["conformance", str(recorded_run), "--env", "drill", "--evidence-dir", str(evidence)]) == 0
    (bundle,) = evidence.iterdir()
    assert (bundle / CONFORMANCE_NAME).is_file()
    capsys.readouterr()
    assert cli.main(["evidence", "verify", str(bundle)]) == 0, capsys.readouterr()
