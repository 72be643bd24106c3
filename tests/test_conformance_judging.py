"""Running a runbook command's results through the rooms after the sandbox: the stand-in mappings, the
verdicts, the proposed corrections and the report. Outputs are written here; nothing runs."""

from __future__ import annotations

import json
from dataclasses import replace
from textwrap import dedent

import pytest

from rollback_drill.config import KubernetesNames
from rollback_drill.conformance.judge import (
    JudgingContext,
    check_expectations,
    first_error,
    judge,
    verdict_without_running,
)
from rollback_drill.conformance.kubectl import KubectlInvocation
from rollback_drill.conformance.mapping import StandinEndpoints, map_onto_standins, migrations_dir
from rollback_drill.conformance.proposals import ProposalContext, propose
from rollback_drill.conformance.report import (
    STATUSES,
    CommandResult,
    ConformanceReport,
    delivery_summary,
    shorten,
)
from rollback_drill.conformance.runbook import ParsedRunbook, RunbookCommand, default_runbook_path, parse_runbook
from rollback_drill.conformance.sandbox import SandboxResult
from rollback_drill.errors import InputError
from rollback_drill.flowengine.client import FlowEngineClient

CONTEXT = JudgingContext(applicable_qualifiers=frozenset({"rollback"}), phase=6, timeout_s=300.0)


def parsed(block: str) -> ParsedRunbook:
    text = "# Runbook: Test\n\n## Rollback Procedure\n\n### Step 1: Do it (2 minutes)\n\n```bash\n"
    return parse_runbook("test.md", text + dedent(block).strip() + "\n```\n")


def command_of(block: str) -> RunbookCommand:
    return parsed(block).commands[0]


def ran(command: RunbookCommand, stdout: str = "", stderr: str = "", exit_code: int = 0, **fields) -> CommandResult:
    return CommandResult(command, "ok", "", stdout=stdout, stderr=stderr, exit_code=exit_code, **fields)


# --- judge ------------------------------------------------------------------------------------------------


def test_first_error_prefers_kubectls_error_line_and_is_short():
    assert first_error("Warning: x\nError from server (NotFound): gone\n") == "Error from server (NotFound): gone"
    assert first_error("\n  something odd\nmore\n") == "something odd"
    assert first_error("") == ""
    assert len(first_error("error: " + "x" * 500)) == 300


def test_manual_and_not_runnable_commands_are_settled_without_running():
    manual = command_of("open https://grafana.example.com/d/x\n# Expected: green")
    settled = verdict_without_running(manual, tracked=False)
    assert settled is not None
    assert settled.status == "manual"
    assert [(e.judged, e.note) for e in settled.expectations] == [
        (False, "for a person to check: the command is manual")
    ]
    refused = verdict_without_running(command_of("aws s3 ls"), tracked=True)
    assert refused is not None
    assert (refused.status, refused.tracked) == ("not-runnable", True)
    assert verdict_without_running(command_of("kubectl get pods -n p"), tracked=False) is None


def test_expectations_for_another_state_of_the_world_are_shown_not_judged():
    command = command_of(
        """
        blocks metrics query --repo a
        # Expected for rollback: 7
        # Expected for pilot: 1
        """
    )
    rollback, pilot = check_expectations(command, "7\n", CONTEXT)
    assert (rollback.judged, rollback.holds) == (True, True)
    assert not pilot.judged
    assert pilot.note is not None
    assert "this world is at Phase 6" in pilot.note


def test_a_command_that_does_what_the_runbook_says_is_ok_and_says_so():
    command = command_of("kubectl get cm repo-config -n production -o name\n# Expected: configmap/repo-config")
    result = judge(ran(command, stdout="configmap/repo-config\n"), CONTEXT, timed_out=False)
    assert result.status == "ok"
    assert result.why.startswith("as documented: configmap/repo-config")
    quiet = judge(ran(command_of("echo done")), CONTEXT, timed_out=False)
    assert quiet.why == "exit 0; nothing documented to compare"


def test_a_failed_kubectl_call_a_timeout_and_a_preflight_problem_are_drift():
    command = command_of("kubectl get deployment flowengine")
    failed = ran(
        command,
        stderr='Error from server (NotFound): deployments.apps "flowengine" not found in namespace "default"',
        exit_code=1,
        kubectl=(KubectlInvocation(("get", "deployment", "flowengine"), 1),),
    )
    result = judge(failed, CONTEXT, timed_out=True, preflight=("the exec target is not there",))
    assert result.status == "drifted"
    assert result.why.split("; ") == [
        "the exec target is not there",
        "it did not finish within 300s",
        (
            "`kubectl get deployment flowengine` failed (exit 1): Error from server (NotFound): "
            'deployments.apps "flowengine" not found in namespace "default"'
        ),
    ]
    assert any("names no namespace" in note for note in result.notes)


def test_a_dropped_field_is_drift_even_when_kubectl_exits_0():
    command = command_of('kubectl patch prometheusrule a-alerts -n m --type merge -p \'{"spec":{"enabled":false}}\'')
    output = ran(
        command, stdout="prometheusrule/a-alerts patched (no change)", stderr='Warning: unknown field "spec.enabled"'
    )
    result = judge(output, CONTEXT, timed_out=False)
    assert result.status == "drifted"
    assert result.why == (
        "the API server does not know spec.enabled and dropped it: kubectl exited 0 and printed `(no change)`, "
        "so nothing was changed"
    )


def test_a_grep_that_finds_nothing_is_drift_only_in_a_check():
    looking = judge(ran(command_of("kubectl get pods -n p | grep Error"), exit_code=1), CONTEXT, timed_out=False)
    assert (looking.status, looking.notes[-1]) == ("ok", "grep found no line matching 'Error'")
    checking = command_of("# Verify the pilot is there\nkubectl get cm -n p -o yaml | grep -q compliance")
    verdict = judge(ran(checking, exit_code=1), CONTEXT, timed_out=False)
    assert verdict.status == "drifted"
    assert "grep found no line matching 'compliance'" in verdict.why
    other = judge(ran(command_of("kubectl get pods -n p"), exit_code=2, stderr="error: bad"), CONTEXT, timed_out=False)
    assert other.why == "it exited 2: error: bad"


def test_notifications_must_reach_a_sink_and_the_status_page_wants_json():
    command = command_of('curl -X POST https://status.example.com/api/v1/incidents -d \'{"name": "x"}\'')
    assert judge(ran(command), CONTEXT, timed_out=False).why == "nothing reached the notification sinks"
    delivered = ran(command, deliveries=({"service": "status-page", "status": 201, "content_type": None},))
    result = judge(delivered, CONTEXT, timed_out=False)
    assert (result.status, result.why) == ("ok", "delivered: status-page (201)")
    assert "add -H 'Content-Type: application/json'" in result.notes[-1]
    refused = ran(command, deliveries=({"service": "status-page", "status": 500, "content_type": "application/json"},))
    assert judge(refused, CONTEXT, timed_out=False).why == "the status-page sink answered 500"


def test_database_errors_are_drift_and_psql_files_want_on_error_stop():
    command = command_of("kubectl exec -n p deployment/postgres -- psql -U u -d d -f /migrations/x.sql")
    result = judge(ran(command, stderr="psql:/m/x.sql:3: ERROR:  relation missing"), CONTEXT, timed_out=False)
    assert result.why == "the database reported an error: psql:/m/x.sql:3: ERROR:  relation missing"
    assert "psql -f without -v ON_ERROR_STOP=1" in result.notes[-1]


# --- mapping ----------------------------------------------------------------------------------------------

ENDPOINTS = StandinEndpoints(
    taskdb_host="127.0.0.1",
    taskdb_port=55432,
    taskdb_password="pw",  # noqa: S106 - made up: these stand-ins do not exist
    taskdb_provider="container",
    flowengine_url="http://127.0.0.1:41000",
    sinks_url="http://127.0.0.1:42000",
    status_page_token_env="STATUSPAGE_TOKEN",  # noqa: S106 - a variable name, not a secret
    status_page_token="token-value",  # noqa: S106 - made up, as above
)


def test_kubectl_exec_into_postgres_is_the_tool_against_the_taskdb():
    command = command_of("kubectl exec -n production deployment/postgres -- psql -U u -f /migrations/rollback.sql")
    mapped = map_onto_standins(command.text, command, ENDPOINTS)
    assert mapped.text == f"psql -U u -f {migrations_dir()}/rollback.sql"
    assert dict(mapped.env) == {"PGHOST": "127.0.0.1", "PGPORT": "55432", "PGPASSWORD": "pw", "PGCONNECT_TIMEOUT": "5"}
    assert mapped.mappings == (
        "kubectl exec ... deployment/postgres -- is the TaskDB at 127.0.0.1:55432 (container)",
        f"/migrations/ is the packaged {migrations_dir()}/",
    )
    assert migrations_dir().is_dir()


def test_kubectl_exec_curl_into_flowengine_is_curl_on_its_url():
    command = command_of("kubectl exec -n production deployment/flowengine -- curl -s http://localhost:8080/health")
    mapped = map_onto_standins(command.text, command, ENDPOINTS)
    assert mapped.text == "curl -s http://127.0.0.1:41000/health"
    assert dict(mapped.env) == {}


def test_the_status_page_is_the_sink_with_its_token_and_standins_are_named():
    command = command_of('curl -X POST https://status.example.com/api -H "Authorization: $STATUSPAGE_TOKEN"')
    mapped = map_onto_standins(command.text, command, ENDPOINTS)
    assert mapped.text == 'curl -X POST http://127.0.0.1:42000/api -H "Authorization: $STATUSPAGE_TOKEN"'
    assert dict(mapped.env) == {"STATUSPAGE_TOKEN": "token-value"}
    blocks = command_of("blocks generate --repo a")
    assert map_onto_standins(blocks.text, blocks, ENDPOINTS).mappings == (
        "blocks: the drill's stand-in (rollback_drill.conformance.standins)",
    )
    plain = command_of("kubectl get pods -n p")
    assert map_onto_standins(plain.text, plain, ENDPOINTS).mappings == ()


# --- proposals --------------------------------------------------------------------------------------------


class FakeShell:
    """Answers each command line with the first canned result whose key it contains; records every line."""

    def __init__(self, answers: dict[str, SandboxResult]) -> None:
        self.answers = answers
        self.lines: list[str] = []

    def __call__(self, line: str, journal: str) -> SandboxResult:
        del journal
        self.lines.append(line)
        return next(
            (a for key, a in self.answers.items() if key in line),
            SandboxResult(1, "", "error: no", 0.1, timed_out=False),
        )


def answer(stdout: str = "", exit_code: int = 0) -> SandboxResult:
    return SandboxResult(exit_code, stdout, "", 0.1, timed_out=False)


def context_for(runbook: ParsedRunbook, shell: FakeShell) -> ProposalContext:
    return ProposalContext(
        runbook=runbook,
        names=KubernetesNames(),
        run=shell,
        rewrite_paths=lambda text: text.replace("/tmp/", "/sandbox/tmp/"),
        flowengine=FlowEngineClient("http://127.0.0.1:9"),
    )


def test_a_missing_namespace_is_proposed_and_a_read_only_fix_is_run():
    runbook = parsed("kubectl get deployment flowengine -o yaml > /tmp/flowengine.yaml")
    shell = FakeShell(
        {"-n production -o name": answer("deployment.apps/flowengine"), "-n production -o yaml": answer()}
    )
    drifted = ran(
        runbook.commands[0],
        stderr='Error from server (NotFound): deployments.apps "flowengine" not found in namespace "default"',
        exit_code=1,
    )
    fix, check = propose(drifted, context_for(runbook, shell))
    assert fix == "kubectl get deployment flowengine -n production -o yaml > /tmp/flowengine.yaml"
    assert check is not None
    assert check.endswith("Ran it: kubectl finds deployment/flowengine in production (exit 0)")
    assert shell.lines[-1] == "kubectl get deployment flowengine -n production -o yaml > /sandbox/tmp/flowengine.yaml"


def test_a_patch_of_a_field_prometheusrules_lack_is_proposed_as_backup_and_delete():
    runbook = parsed(
        'kubectl patch prometheusrule a-alerts -n monitoring --type merge -p \'{"spec":{"enabled":false}}\''
    )
    calls = (KubectlInvocation(("patch", "prometheusrule", "a-alerts", "-n", "monitoring"), 0),)
    shell = FakeShell({"--dry-run=server": answer("deleted (server dry run)")})
    fix, check = propose(ran(runbook.commands[0], kubectl=calls), context_for(runbook, shell))
    assert fix is not None
    assert "kubectl delete prometheusrule a-alerts -n monitoring" in fix
    assert check == "server dry run of the deletion: accepted for 1 of 1 rule(s)"
    assert shell.lines == ["kubectl delete prometheusrule a-alerts -n monitoring --dry-run=server"]


def test_a_jsonpath_that_prints_nothing_is_proposed_with_the_path_that_holds_the_value():
    runbook = parsed(
        """
        kubectl get deployment/flowengine -n production -o jsonpath='{.spec.allowlist}'
        # Expected: compliance-service
        """
    )
    document = {
        "spec": {"env": [{"name": "OTHER", "value": "x"}, {"name": "REPO_ALLOWLIST", "value": "compliance-service"}]}
    }
    shell = FakeShell({"jsonpath=": answer("compliance-service"), "-o json": answer(json.dumps(document))})
    drifted = judge(ran(runbook.commands[0]), CONTEXT, timed_out=False)
    assert drifted.status == "drifted"
    fix, check = propose(drifted, context_for(runbook, shell))
    assert fix == (
        "kubectl get deployment/flowengine -n production -o jsonpath='{.spec.env[?(@.name==\"REPO_ALLOWLIST\")].value}'"
    )
    assert check == "ran it now: it prints 'compliance-service', as the runbook expects"


def test_a_drift_with_no_known_correction_proposes_nothing():
    runbook = parsed("kubectl get pods -n p")
    assert propose(ran(runbook.commands[0], exit_code=1), context_for(runbook, FakeShell({}))) == (None, None)


# --- report -----------------------------------------------------------------------------------------------


def test_shorten_and_delivery_summary():
    assert shorten("abc", 3) == "abc"
    assert shorten("abcd", 3) == "ab…"
    entry = {"service": "slack", "status": 200, "path": "/x", "headers": {"Content-Type": "application/json"}}
    assert delivery_summary(entry) == {
        "service": "slack",
        "status": 200,
        "path": "/x",
        "to": None,
        "subject": None,
        "content_type": "application/json",
    }


@pytest.fixture
def report() -> ConformanceReport:
    runbook = parsed(
        """
        kubectl get deployment flowengine -n production
        kubectl get cm repo-config -n production
        # Expected: configmap/repo-config
        open https://grafana.example.com
        """
    )
    first, second, third = runbook.commands
    results = (
        replace(ran(first, stdout="x" * 700), tracked=True),
        judge(ran(second, stdout="nothing"), CONTEXT, timed_out=False),
        CommandResult(third, "manual", "a person reads it"),
    )
    return ConformanceReport(runbook, results, "env", {}, 6, "mass-failure", "t0", "t1", 1.26, "/work")


def test_the_report_counts_statuses_and_lists_drifts(report):
    assert report.counts == {"ok": 1, "drifted": 1, "not-runnable": 0, "manual": 1, "total": 3}
    assert set(STATUSES) <= set(report.counts)
    assert not report.ok
    assert [r.line for r in report.drifted()] == [report.results[1].line]
    assert report.result_at_line(report.results[1].line) is report.results[1]
    with pytest.raises(InputError, match=r"no command of test\.md is at line 1"):
        report.result_at_line(1)
    assert report.tracked_not_run() == (report.results[0],)


def test_the_evidence_row_and_the_full_record_of_a_command(report):
    evidence = report.evidence()
    assert evidence["elapsed_s"] == 1.3
    assert evidence["commands_in_document"] == 3
    assert evidence["drifted"][0]["why"] == report.results[1].why
    row = evidence["commands"][0]
    assert row["status"] == "ok"
    assert row["actual"] == "x" * 599 + "…"
    assert row["expected"] is None
    full = report.to_json()
    record = full["commands"][1]
    assert record["expectations"][0]["holds"] is False
    assert record["classification"]["kind"] == "kubectl"
    assert full["work_dir"] == "/work"
    assert full["parse_warnings"] == []
    assert evidence["commands"][2]["actual"] is None


# --- values the runbook reads from a command's output ----------------------------------------------------

PSQL_ONE_ROW = "   version    \n--------------\n 20251104_001\n(1 row)\n\n"
PSQL_NO_ROW = " version \n---------\n(0 rows)\n\n"


def test_a_jsonpath_on_a_field_that_does_not_exist_is_drift_at_its_line():
    runbook = parse_runbook(default_runbook_path())
    read = next(c for c in runbook.commands if "jsonpath='{.spec.replicas}'" in c.text)
    broken_text = default_runbook_path().read_text(encoding="utf-8").replace("{.spec.replicas}", "{.spec.replicaz}")
    broken = next(c for c in parse_runbook("broken.md", broken_text).commands if c.line == read.line)
    # kubectl's jsonpath prints an empty line, exit 0, for a field the object does not have.
    judged = judge(
        ran(broken, stdout="\n", kubectl=(KubectlInvocation(("get", "deployment/flowengine"), 0),)),
        CONTEXT,
        timed_out=False,
    )
    assert (judged.status, judged.line) == ("drifted", read.line)
    assert "the field {.spec.replicaz}" in judged.why
    assert "printed an empty line (exit 0)" in judged.why
    fine = judge(
        ran(read, stdout="5", kubectl=(KubectlInvocation(("get", "deployment/flowengine"), 0),)),
        CONTEXT,
        timed_out=False,
    )
    assert fine.status == "ok"


@pytest.mark.parametrize(
    ("block", "stdout", "drift"),
    [
        ("kubectl get deploy/x -n p -o jsonpath='{.spec.replicas}'", "", "printed nothing"),
        ("kubectl get deploy/x -n p -o jsonpath='{.spec.replicas}'", "<no value>", "printed an empty line"),
        ("kubectl get deploy/x -n p -o jsonpath='{.spec.replicas}'", "three", "an integer, and the output is 'three'"),
        ("kubectl get deploy/x -n p -o jsonpath='{.spec.replicas}'", "3\n", None),
        ("kubectl get deploy/x -n p --output=jsonpath={.metadata.name}", "x", None),
        ("kubectl get deploy/x -n p -ojsonpath='{.metadata.labels.app}'", "\n", "printed an empty line"),
        ("kubectl get cm x -n p -o go-template='{{.data.k}}'", "<no value>", "printed an empty line"),
        ("kubectl get pods -n p -o custom-columns=NAME:.metadata.name", "", "printed nothing"),
        ("kubectl get pods -n p", "", None),  # a listing, not a value read
        ("kubectl get deploy/x -o jsonpath='{.spec.replicas}' > /tmp/r", "", None),  # written to a file
        ("kubectl get cm x -o jsonpath='{.data}' | grep y", "", None),  # grep's output, judged as grep's
        ('kubectl exec -n p deploy/pg -- psql -U u -d db -c "SELECT v FROM m ORDER BY v DESC LIMIT 1;"',
         PSQL_ONE_ROW, None),
        ('kubectl exec -n p deploy/pg -- psql -U u -d db -c "SELECT v FROM m ORDER BY v DESC LIMIT 1;"',
         PSQL_NO_ROW, "the query returned no row"),
        ('kubectl exec -n p deploy/pg -- psql -U u -d db -c "SELECT v FROM m LIMIT 1;"', "", "returned no row"),
        ('kubectl exec -n p deploy/pg -- psql -U u -d db -c "SELECT v FROM m LIMIT 1;"',
         " v \n---\n \n(1 row)\n", "its value is empty"),
        ('kubectl exec -n p deploy/pg -- psql -U u -d db -c "SELECT v FROM m LIMIT 1;"', "oops", "no psql result"),
        ('psql -U u -d db -tAc "SELECT count(*) FROM flows"', "42\n", None),
        ('psql -U u -d db -tAc "SELECT count(*) FROM flows"', "\n", "returned no row"),
        ('psql -U u -d db -t -c "SELECT count(*) FROM flows"', " many\n", "an integer, and the output has 'many'"),
        ('psql -U u -d db -c "SELECT count(*) FROM flows"', " count \n-------\n     7\n(1 row)\n", None),
        ('psql -U u -d db -c "SELECT name FROM flows"', " name \n------\n(0 rows)\n", None),  # rows, not a value
        ("kubectl get pods -n p -o name | wc -l", "   3\n", None),
        ("kubectl get pods -n p -o name | wc -l", "", "printed nothing"),
    ],
)  # fmt: skip
def test_a_value_read_that_comes_back_empty_or_of_the_wrong_kind_is_drift(block, stdout, drift):
    judged = judge(ran(command_of(block), stdout=stdout), CONTEXT, timed_out=False)
    if drift is None:
        assert judged.status == "ok", judged.why
    else:
        assert judged.status == "drifted"
        assert drift in judged.why


def test_a_read_that_already_failed_is_not_judged_twice():
    command = command_of("kubectl get deploy/x -n p -o jsonpath='{.spec.replicas}'")
    failed = judge(
        ran(command, stderr="Error from server (NotFound): gone", exit_code=1,
            kubectl=(KubectlInvocation(("get", "deploy/x"), 1),)),
        CONTEXT,
        timed_out=False,
    )  # fmt: skip
    assert failed.status == "drifted"
    assert "the runbook reads" not in failed.why
