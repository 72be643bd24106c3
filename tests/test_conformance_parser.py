"""Reading runbooks (rollback_drill.conformance.runbook) and reading their expectations (.expect): no cluster needed."""

from __future__ import annotations

from collections import Counter
from textwrap import dedent

import pytest

from rollback_drill.conformance.expect import check_item, compare_value
from rollback_drill.conformance.kubectl import read_kubectl
from rollback_drill.conformance.lexer import completeness, join_continuations, unquote
from rollback_drill.conformance.proposals import find_jsonpath
from rollback_drill.conformance.runbook import Expectation, RunbookParseError, default_runbook_path, parse_runbook
from rollback_drill.conformance.shell import analyse
from rollback_drill.conformance.standins import parse_duration_s
from rollback_drill.evidence.bundle import load_evidence
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.evidence.report import render_report


@pytest.fixture(scope="module")
def seed():
    return parse_runbook(default_runbook_path())


def runbook(body: str, heading: str = "## Section\n\n### Step 1: Do it (2 minutes)\n\n") -> str:
    return "# Runbook: Test\n\n**Runbook ID:** RB-TEST-001\n\n" + heading + dedent(body)


def commands_of(body: str, **kwargs):
    return parse_runbook("test.md", runbook(body, **kwargs)).commands


# --- the seed runbook -------------------------------------------------------------------------------


def test_the_seed_runbook_has_42_commands_in_17_bash_blocks(seed):
    assert seed.runbook_id == "RB-LAUNCH-002"
    assert seed.bash_blocks == 17
    assert len(seed.commands) == 42
    assert [c.index for c in seed.commands] == list(range(1, 43))
    assert seed.warnings == ()


def test_every_seed_command_is_classified_with_a_reason(seed):
    kinds = Counter(c.kind for c in seed.commands)
    assert kinds == {
        "kubectl": 17,
        "kubectl-exec-db": 4,
        "kubectl-exec-http": 2,
        "blocks": 7,
        "notify": 6,
        "shell": 4,
        "manual": 2,
    }
    assert all(c.classification.reason for c in seed.commands)
    not_runnable = [c.line for c in seed.commands if not c.classification.runnable and c.kind != "manual"]
    assert not_runnable == [421]


@pytest.mark.parametrize(
    ("line", "kind", "section"),
    [
        (64, "kubectl", "Pre-Rollback Verification > 1. Incident Confirmation"),
        (67, "manual", "Pre-Rollback Verification > 1. Incident Confirmation"),
        (70, "blocks", "Pre-Rollback Verification > 1. Incident Confirmation"),
        (85, "notify", "Pre-Rollback Verification > 2. Stakeholder Notification"),
        (92, "notify", "Pre-Rollback Verification > 2. Stakeholder Notification"),
        (95, "notify", "Pre-Rollback Verification > 2. Stakeholder Notification"),
        (106, "kubectl", "Pre-Rollback Verification > 3. Backup Current State"),
        (112, "kubectl-exec-db", "Pre-Rollback Verification > 3. Backup Current State"),
        (116, "shell", "Pre-Rollback Verification > 3. Backup Current State"),
        (134, "kubectl", "Step 1: Disable Orchestrator for Expanded Repos"),
        (150, "blocks", "Step 1: Disable Orchestrator for Expanded Repos"),
        (169, "kubectl", "Step 2: Scale Down FlowEngine (If Needed)"),
        (206, "kubectl-exec-db", "Step 3: Revert Database Schema (If Applicable)"),
        (229, "shell", "Step 4: Disable Expanded Repo Alerts"),
        (232, "shell", "Step 4: Disable Expanded Repo Alerts"),
        (239, "kubectl", "Step 4: Disable Expanded Repo Alerts"),
        (250, "blocks", "Step 5: Verify Pilot Repo Functionality"),
        (292, "kubectl-exec-http", "Step 6: Verify System Health"),
        (297, "kubectl-exec-http", "Step 6: Verify System Health"),
        (304, "manual", "Step 6: Verify System Health"),
        (357, "notify", "Step 8: Update Status Page"),
        (424, "blocks", "2. Fix Verification (Staging Environment)"),
        (449, "shell", "Phased Re-Enablement Plan > Phase 1: Single Repo Re-Enablement (Day 1)"),
        (542, "blocks", "Testing & Validation"),
    ],
)
def test_seed_commands_have_their_kind_and_section(seed, line, kind, section):
    command = seed.at_line(line)
    assert command.line == line
    assert command.kind == kind
    assert section in command.section


def test_sections_drop_time_budgets_and_start_at_a_step_heading(seed):
    sections = {c.section for c in seed.commands}
    assert "Pre-Rollback Verification > 3. Backup Current State" in sections
    assert "Step 1: Disable Orchestrator for Expanded Repos" in sections
    assert not any("minutes)" in s for s in sections)


def test_seed_step_ids_follow_the_conventions(seed):
    ids = {c.step_id for c in seed.commands}
    assert ids == {"pre-1", "pre-2", "pre-3", *(f"step-{n}" for n in range(1, 9)), "soak", "phase-1", "phase-2", None}
    assert seed.at_line(542).step_id is None


def test_continuations_are_joined_and_source_lines_kept(seed):
    step_1 = seed.at_line(134)
    assert (step_1.line, step_1.end_line) == (134, 135)
    assert step_1.text == "kubectl set env deployment/flowengine -n production REPO_ALLOWLIST=compliance-service"
    assert "\\\n" in step_1.source


def test_a_multi_line_message_and_a_pipe_continuation_stay_one_command(seed):
    mail = seed.at_line(95)
    assert (mail.line, mail.end_line) == (95, 99)
    assert mail.text.startswith('echo "Initiating emergency rollback')
    assert '| mail -s "🚨 Orchestrator Rollback in Progress" product@company.com' in mail.text
    # "Expected downtime:" inside the quoted message is text, not an expectation.
    assert mail.expectations == ()


def test_a_background_pipeline_is_one_command(seed):
    backup = seed.at_line(112)
    assert backup.analysis.background
    assert set(backup.classification.programs) == {"kubectl", "pg_dump", "gzip"}


def test_for_loops_are_one_command_and_their_kubectl_is_found(seed):
    loop = seed.at_line(232)
    assert (loop.line, loop.end_line) == (232, 236)
    assert loop.analysis.loops[0].variable == "repo"
    assert loop.analysis.loops[0].words == ("$EXPANDED_REPOS",)
    assert loop.classification.targets == ("prometheusrule/${repo}-alerts",)
    assert "$EXPANDED_REPOS" not in loop.analysis.assigns
    assert seed.at_line(229).analysis.assigns == ("EXPANDED_REPOS",)


def test_expectations_are_attached_to_the_command_before_them(seed):
    assert seed.at_line(138).expectations == (Expectation(140, "Expected", ("compliance-service",)),)
    assert seed.at_line(154).expectations[0].items == ('enabled: false, reason: "Restricted to pilot scope"',)
    assert seed.at_line(175).expectations[0].items == ("3/3 Running",)
    assert seed.at_line(288).expectations[0].items == ("3/3 Running, 0 restarts (recent)",)


def test_qualified_expectations_keep_their_qualifier(seed):
    check = seed.at_line(199).expectations[0]
    assert (check.label, check.qualifier, check.items) == (
        "Expected for pilot",
        "pilot",
        ("version = 20251104_001 (G5 schema)",),
    )
    assert seed.at_line(199).notes == ("If version > 20251104_001, rollback required",)
    assert seed.at_line(70).expectations[0].qualifier == "rollback"


def test_expected_blocks_collect_one_item_per_line_or_bullet(seed):
    assert seed.at_line(250).expectations[0].items == (
        "✅ Flow completed successfully",
        "Duration: <120s",
        "Cost: <$2.00",
        "Quality Gates: 5/5 passed",
    )
    assert seed.at_line(424).expectations[0].items == (
        "Success rate: ≥99%",
        "P95 latency: <120s",
        "Zero recurrence of incident symptoms",
    )


def test_comments_right_above_a_command_are_its_purpose(seed):
    assert seed.at_line(265).purpose == "Verify quality gates"
    assert seed.at_line(169).purpose == "If replicas > 3 (Phase 6/7 scaling), scale down to pilot baseline"
    assert seed.at_line(452).notes[:2] == ("Monitor for 4 hours", "Success criteria:")


def test_placeholders_stop_a_command_only_outside_quotes(seed):
    apply = seed.at_line(421)
    assert not apply.classification.runnable
    assert "<fix-manifest>" in apply.classification.reason
    slack = seed.at_line(85)
    assert slack.classification.runnable
    assert slack.classification.placeholders == ("<brief description>", "<list>", "<your-name>")


def test_a_missing_namespace_and_an_unquoted_url_are_linted(seed):
    assert any("names no namespace" in lint for lint in seed.at_line(64).classification.lint)
    assert any("unquoted &" in lint for lint in seed.at_line(304).classification.lint)


def test_kubectl_commands_name_their_targets(seed):
    targets = {c.line: c.classification.targets for c in seed.commands if c.kind in {"kubectl", "shell"}}
    assert targets[106] == ("deployment/flowengine",)
    assert targets[109] == ("configmap/repo-config",)
    assert targets[175] == ("pods(app=flowengine)",)
    assert targets[239] == ("prometheusrule",)


# --- synthetic snippets -----------------------------------------------------------------------------


def test_a_heredoc_is_one_command():
    commands = commands_of(
        """\
        ```bash
        kubectl apply -n production -f - <<EOF
        apiVersion: v1
        kind: ConfigMap
        # not a comment of the runbook
        EOF
        kubectl get cm -n production
        ```
        """
    )
    assert [c.text.splitlines()[0] for c in commands] == [
        "kubectl apply -n production -f - <<EOF",
        "kubectl get cm -n production",
    ]
    assert commands[0].end_line - commands[0].line == 4


def test_a_trailing_pipe_or_and_keeps_the_command_open():
    commands = commands_of(
        """\
        ```sh
        kubectl get pods -n production |
          grep Running &&
          echo done
        ```
        """
    )
    assert len(commands) == 1
    assert commands[0].classification.programs == ("kubectl", "grep", "echo")


def test_while_and_if_compounds_are_one_command():
    commands = commands_of(
        """\
        ```bash
        if kubectl get deploy/x -n a; then
          echo yes
        fi
        while true; do
          kubectl get pods -n a
        done
        ```
        """
    )
    assert len(commands) == 2


def test_expectations_blocks_and_orphans():
    parsed = parse_runbook(
        "t.md",
        runbook(
            """\
            ```bash
            # Expected: nothing to attach to
            blocks config show --repo a
            # Expected:
            # - enabled: true
            # - reason: none
            # Other note
            ```
            """
        ),
    )
    (command,) = parsed.commands
    assert command.expectations[0].items == ("enabled: true", "reason: none")
    assert command.notes == ("Other note",)
    assert len(parsed.warnings) == 1
    assert "t.md:" in parsed.warnings[0]
    assert "nothing to attach to" in parsed.warnings[0]


def test_non_shell_blocks_are_text():
    commands = commands_of(
        """\
        ```markdown
        kubectl delete ns production
        ```

        ```yaml
        kind: ConfigMap
        ```
        """
    )
    assert commands == ()


@pytest.mark.parametrize(
    ("text", "kind", "runnable"),
    [
        ("kubectl get deployment/flowengine -n production", "kubectl", True),
        ("kubectl --context prod get pods -n x", "kubectl", False),
        ("X=$(kubectl get cm a -n b -o name)", "shell", True),
        ("kubectl exec -n p deployment/postgres -- psql -c 'select 1'", "kubectl-exec-db", True),
        ("kubectl exec -n p deployment/flowengine -- curl -s http://localhost:8080/health", "kubectl-exec-http", True),
        ("kubectl exec -n p deployment/flowengine -- rm -rf /", "other", False),
        ("blocks generate --repo a", "blocks", True),
        ("blocks frobnicate", "blocks", False),
        ("slack-cli post --channel x --message y", "notify", True),
        ("curl -X POST https://status.example.com/api/incidents -d '{}'", "notify", True),
        ("curl https://api.example.com/x", "other", False),
        ("open https://grafana.example.com/d/x", "manual", False),
        ("aws s3 cp a b", "shell", False),
        ("rm -rf /tmp/x", "shell", False),
        ('eval "$CMD"', "shell", False),
        ("kubectl get pods -n a > /etc/passwd", "kubectl", False),
        ("CANARY=inventory-mgmt", "shell", True),
    ],
)
def test_classification_of_snippets(text, kind, runnable):
    (command,) = commands_of(f"```bash\n{text}\n```\n")
    assert (command.kind, command.classification.runnable) == (kind, runnable), command.classification.reason
    assert command.classification.reason


def test_a_command_that_never_ends_is_a_parse_error_with_its_line():
    with pytest.raises(RunbookParseError) as error:
        parse_runbook("broken.md", runbook('```bash\necho "open quote\n```\n'))
    assert "broken.md:" in str(error.value)
    assert 'open " quote' in str(error.value)


def test_an_unclosed_fence_is_a_parse_error():
    with pytest.raises(RunbookParseError, match="never closed"):
        parse_runbook("broken.md", runbook("```bash\nkubectl get pods\n"))


# --- the shell reader ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("kubectl get pods \\", "\\"),
        ('echo "a', "quote"),
        ("x=$(kubectl get", "$("),
        ("kubectl get pods |", "|"),
        ("for a in b; do", "done"),
        ("cat <<EOF\nbody", "heredoc"),
    ],
)
def test_completeness_says_what_keeps_a_command_open(text, reason):
    found = completeness(text)
    assert found is not None
    assert reason in found


@pytest.mark.parametrize(
    "text",
    ["kubectl get pods", "echo 'a\\'", 'echo "a\\"b"', "for a in b; do echo $a; done", "cmd &", "cat <<EOF\nx\nEOF"],
)
def test_complete_commands(text):
    assert completeness(text) is None


def test_join_continuations_keeps_single_quoted_backslashes():
    assert join_continuations("kubectl get \\\n    pods") == "kubectl get pods"
    assert join_continuations("echo 'a\\\nb'") == "echo 'a\\\nb'"


def test_unquote():
    assert unquote("'{.spec}'") == "{.spec}"
    assert unquote('"a \\"b\\" $X"') == 'a "b" $X'
    assert unquote("--type='json'") == "--type=json"


def test_read_kubectl():
    call = read_kubectl(("get", "configmap", "repo-config", "-n", "production", "-o", "jsonpath={.data}"))
    assert (call.verb, call.targets, call.namespace) == ("get", ("configmap/repo-config",), "production")
    call = read_kubectl(("rollout", "status", "deploy/flowengine", "--namespace=staging"))
    assert (call.verb, call.targets, call.namespace) == ("rollout status", ("deployment/flowengine",), "staging")
    call = read_kubectl(("exec", "-n", "production", "deployment/postgres", "--", "psql", "-U", "u"))
    assert (call.exec_target, call.exec_command) == ("deployment/postgres", ("psql", "-U", "u"))
    assert read_kubectl(("get", "pods", "-l", "app=flowengine")).targets == ("pods(app=flowengine)",)
    assert read_kubectl(("--kubeconfig", "/x", "get", "pods")).cluster_flags == ("--kubeconfig",)


def test_analysis_sees_inside_substitutions_and_finds_a_cut_url():
    analysis = analyse("REPOS=$(kubectl get cm a -n b -o name)")
    assert analysis.assigns == ("REPOS",)
    assert [c.program for c in analysis.commands] == [None, "kubectl"]
    assert analysis.commands[1].in_substitution
    cut = analyse("open https://x.example/d?from=a&to=b")
    assert cut.unquoted_ampersand_in_url == ("https://x.example/d?from=a",)
    assert analyse("open 'https://x.example/d?from=a&to=b'").unquoted_ampersand_in_url == ()


# --- expectations ---------------------------------------------------------------------------------------

PODS = """\
NAME                          READY   STATUS    RESTARTS     AGE
flowengine-5bb8c5db85-24mjr   1/1     Running   0            4s
flowengine-5bb8c5db85-987xl   1/1     Running   2 (5s ago)   4s
flowengine-5bb8c5db85-ffhwb   1/1     Running   0            4s
"""
PSQL = "   version    \n--------------\n 20251117_001\n(1 row)\n"


@pytest.mark.parametrize(
    ("item", "output", "holds", "how"),
    [
        ("compliance-service", "compliance-service\n", True, "text"),
        ("compliance-service", "", False, "text"),
        ('"healthy"', '"healthy"\n', True, "text"),
        ("3/3 Running", PODS, True, "pods"),
        ("4/4 Running", PODS, False, "pods"),
        ("3/3 Running, 0 restarts (recent)", PODS, False, "pods"),
        ("3/3 Running", PODS + "flowengine-5bb8c5db85-zzzzz   1/1     Terminating   0   9s\n", True, "pods"),
        ("3/3 Running", PODS + "flowengine-5bb8c5db85-zzzzz   0/1     Pending       0   1s\n", False, "pods"),
        ('All 3 providers return "healthy"', '"healthy"\n"healthy"\n"healthy"\n', True, "all lines"),
        ('All 3 providers return "healthy"', '"healthy"\n"rate-limited"\n"healthy"\n', False, "all lines"),
        ("≥3 repos with failures", "# x\na\t8\nb\t2\nc\t1\nd\t0\n", True, "count"),
        ("≥3 repos with failures", "a\t8\nb\t0\n", False, "count"),
        (
            'enabled: false, reason: "Restricted to pilot scope"',
            'enabled: false\nreason: "Restricted to pilot scope"',
            True,
            "key: value",
        ),
        ("enabled: true", "enabled: false", False, "key: value"),
        ("version = 20251104_001 (G5 schema)", PSQL, False, "key: value"),
        ("version = 20251117_001", PSQL, True, "key: value"),
        ("Duration: <120s", "Duration: 70.8s", True, "key: value"),
        ("Cost: <$2.00", "Cost: $2.50", False, "key: value"),
        ("Quality Gates: 5/5 passed", "Quality Gates: 5/5 passed", True, "key: value"),
        ("Success rate: ≥99%", "Success rate: 98.9%", False, "key: value"),
        ("✅ Flow completed successfully", "✅ Flow completed successfully\nDuration: 1s", True, "text"),
    ],
)
def test_expectation_items(item, output, holds, how):
    check = check_item(item, output)
    assert (check.holds, check.how) == (holds, how), check.detail


def test_compare_value():
    assert compare_value("≥99%", "100.0%")[0]
    assert not compare_value("<120s", "120s")[0]
    assert compare_value("1 (compliance-service)", "1")[0]
    assert compare_value('"Restricted to pilot scope"', "restricted to pilot scope")[0]


def test_find_jsonpath_filters_named_lists():
    deployment = {
        "metadata": {"annotations": {"x": "compliance-service"}},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "flowengine",
                            "env": [
                                {"name": "REPO_ALLOWLIST", "value": "compliance-service"},
                                {"name": "FLOWENGINE_PHASE", "value": "6"},
                            ],
                        }
                    ]
                }
            }
        },
    }
    assert (
        find_jsonpath(deployment, "compliance-service")
        == '{.spec.template.spec.containers[0].env[?(@.name=="REPO_ALLOWLIST")].value}'
    )
    assert find_jsonpath(deployment, "nowhere") is None


@pytest.mark.parametrize(("text", "seconds"), [("2h", 7200), ("30m", 1800), ("1h30m", 5400), ("45s", 45), ("90", 90)])
def test_parse_duration(text, seconds):
    assert parse_duration_s(text) == seconds


# --- the report's conformance table ------------------------------------------------------------------


def test_report_html_shows_one_row_per_command_and_the_drifts_first(tmp_path):
    rows = [
        {"line": 64, "section": "Pre <1>", "kind": "kubectl", "status": "drifted", "command": "kubectl logs x",
         "expected": None, "actual": "", "why": "NotFound <b>", "proposed_fix": "kubectl logs x -n production\n# two",
         "fix_check": "ran it"},
        {"line": 67, "section": "Pre", "kind": "manual", "status": "manual", "command": "open https://x",
         "expected": None, "actual": None, "why": "a person reads it", "proposed_fix": None, "fix_check": None},
    ]  # fmt: skip
    with Recorder.create(tmp_path, incident="conformance") as recorder:
        recorder.set(
            "conformance",
            {
                "runbook": {"id": "RB-X", "sha256": "0" * 64},
                "counts": {"ok": 0, "drifted": 1, "not-runnable": 0, "manual": 1, "total": 2},
                "commands_in_document": 2,
                "drifted": [{"line": 64, "section": "Pre <1>", "why": "NotFound <b>"}],
                "commands": rows,
            },
        )
        recorder.finish("fail")
    assert load_evidence(recorder.bundle_dir)["conformance"]["counts"]["total"] == 2
    page = render_report(recorder.bundle_dir).read_text(encoding="utf-8")
    table = page.split('<table class="conformance">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == 3
    assert table.count('<tr class="drift">') == 1
    assert "line 64 (Pre &lt;1&gt;): NotFound &lt;b&gt;" in page
    assert "kubectl logs x -n production<br># two" in page
    assert "<b>" not in page
