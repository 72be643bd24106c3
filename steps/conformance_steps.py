"""Steps for features/conformance.feature: the runbook's own commands, run as written, and the drifts found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pytest_bdd import given, parsers, then, when

from rollback_drill.conformance.bundle import CONFORMANCE_NAME, write_bundle
from rollback_drill.conformance.report import STATUSES
from rollback_drill.conformance.run import run_conformance
from rollback_drill.conformance.runbook import default_runbook_path, parse_runbook
from rollback_drill.conformance.selection import results_in_section
from rollback_drill.conformance.unknown_cluster import refusal_on
from rollback_drill.errors import UnsafeTarget
from rollback_drill.targets.cluster import api_client


@dataclass(frozen=True)
class RunbookCopy:
    path: Path
    line: int
    """The line that was changed."""


# --- running it -----------------------------------------------------------------------------------


@when(
    parsers.parse("the conformance run executes the runbook's commands on a freshly seeded Phase {phase:d} world"),
    target_fixture="conformance",
)
def _run_seed_runbook(drill_env, drill_config, tmp_path, phase):
    return run_conformance(
        default_runbook_path(), drill_env, config=drill_config, phase=phase, work_dir=tmp_path / "work"
    )


@given(
    parsers.parse('a copy of the runbook whose Step 1 jsonpath asks for "{broken}" instead of "{original}"'),
    target_fixture="runbook_copy",
)
def _broken_copy(tmp_path, broken, original):
    source = default_runbook_path()
    command = next(
        c for c in parse_runbook(source).in_section("Step 1") if "jsonpath" in c.text and f'"{original}"' in c.text
    )
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[command.line - 1] = lines[command.line - 1].replace(f'"{original}"', f'"{broken}"')
    copy = tmp_path / source.name
    copy.write_text("".join(lines), encoding="utf-8")
    return RunbookCopy(copy, command.line)


@when(
    parsers.parse("the conformance run executes that copy on a freshly seeded Phase {phase:d} world"),
    target_fixture="conformance",
)
def _run_copy(runbook_copy, drill_env, drill_config, tmp_path, phase):
    return run_conformance(runbook_copy.path, drill_env, config=drill_config, phase=phase, work_dir=tmp_path / "work")


@when("the conformance run is aimed at it", target_fixture="refusal")
def _run_outside(outside_cluster, drill_env, tmp_path):
    return refusal_on(outside_cluster, drill_env.taskdb, default_runbook_path(), tmp_path)


@when("the conformance report is written into an evidence bundle", target_fixture="conformance_files")
def _write_bundle(conformance, drill_config, tmp_path):
    return write_bundle(conformance, tmp_path / "evidence", config=drill_config)


# --- what came back -------------------------------------------------------------------------------


@then("every command of the runbook is reported as ok, drifted, not-runnable or manual, with a reason")
def _all_classified(conformance):
    assert [r.command for r in conformance.results] == list(conformance.runbook.commands)
    unexplained = [r.line for r in conformance.results if r.status not in STATUSES or not r.why.strip()]
    assert not unexplained, f"commands at lines {unexplained} have no status or no reason"


@then("the counts add up to the number of commands in the document")
def _counts_add_up(conformance):
    counts = conformance.counts
    in_document = len(parse_runbook(conformance.runbook.path).commands)
    assert sum(counts[status] for status in STATUSES) == counts["total"] == in_document, (counts, in_document)


@then(
    "every kubectl command on deployment/flowengine, configmap/repo-config or a PrometheusRule really ran "
    "against the drill cluster"
)
def _tracked_ran(conformance):
    tracked = [r for r in conformance.results if r.tracked]
    assert tracked, "no command of the runbook names the flowengine Deployment, repo-config or a PrometheusRule"
    assert not conformance.tracked_not_run(), [(r.line, r.why) for r in conformance.tracked_not_run()]
    for result in tracked:
        assert result.status in {"ok", "drifted"}, (result.line, result.status, result.why)


@then(parsers.parse('Step 1\'s jsonpath check of REPO_ALLOWLIST printed "{value}", as the runbook expects'))
def _step_1_holds(conformance, value):
    found = results_in_section(conformance.results, "Step 1", "jsonpath", "REPO_ALLOW")
    assert len(found) == 1, [r.command.text for r in found]
    (result,) = found
    assert result.status == "ok", result.why
    assert result.stdout.strip() == value
    assert [e.holds for e in result.expectations] == [True]


@then("Step 4's PrometheusRule patch is reported drifted, with a proposed fix that backs up and deletes each rule")
def _step_4_drifted(conformance, drill_config):
    patch = next(r for r in conformance.results if "kubectl patch prometheusrule" in r.command.text)
    assert patch.command.section.startswith("Step 4"), patch.command.section
    assert patch.status == "drifted", patch.why
    assert "enabled" in patch.why
    assert len([k for k in patch.kubectl if k.args[:1] == ("patch",)]) == len(drill_config.expanded_for(6))
    assert "-o yaml >" in patch.proposed_fix
    assert "kubectl delete prometheusrule" in patch.proposed_fix
    rules = len(drill_config.expanded_for(6))
    assert f"accepted for {rules} of {rules} rule(s)" in patch.fix_check, patch.fix_check


@then(
    parsers.parse(
        'the command at the broken line is reported drifted: "{expected}" was expected and the output was empty'
    )
)
def _broken_line_drifted(conformance, runbook_copy, expected):
    result = conformance.result_at_line(runbook_copy.line)
    assert result.line == runbook_copy.line
    assert result.status == "drifted", result.why
    assert f"expected {expected!r}" in result.why, result.why
    assert "the output is empty" in result.why, result.why


@then(parsers.parse('the proposed fix is a jsonpath that prints "{value}"'))
def _jsonpath_fix(conformance, runbook_copy, value):
    result = conformance.result_at_line(runbook_copy.line)
    assert result.proposed_fix is not None, result.why
    assert "REPO_ALLOWLIST" in result.proposed_fix
    assert f"it prints {value!r}, as the runbook expects" in (result.fix_check or ""), result.fix_check


@then("the bundle holds conformance.json, and its report.html shows one conformance row per command")
def _bundle(conformance_files, conformance):
    assert conformance_files.conformance_json.name == CONFORMANCE_NAME
    assert conformance_files.conformance_json.is_file()
    page = conformance_files.report_html.read_text(encoding="utf-8")
    assert "<h2>Conformance</h2>" in page
    table = page.split('<table class="conformance">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") - 1 == len(conformance.results)
    assert table.count('<tr class="drift">') == len(conformance.drifted())


@then("it is refused as an unsafe target, naming the cluster's fingerprint")
def _refused(refusal, outside_cluster):
    assert isinstance(refusal, UnsafeTarget), f"expected the conformance run to be refused, got {refusal!r}"
    assert outside_cluster.fingerprint in str(refusal)


@then("no flowengine Deployment was seeded on it")
def _not_seeded(outside_cluster, drill_config):
    api = api_client(outside_cluster.kubeconfig)
    try:
        with pytest.raises(ApiException) as missing:
            client.AppsV1Api(api).read_namespaced_deployment(
                drill_config.kubernetes.deployment, drill_config.kubernetes.namespace
            )
    finally:
        api.close()
    assert missing.value.status == 404
