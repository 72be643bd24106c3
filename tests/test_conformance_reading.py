"""The rooms under the runbook reader, each through its own public functions: the lexer, a command's shape,
kubectl's grammar, classification, and a runbook's sections and step ids. No cluster needed."""

from __future__ import annotations

import pytest

from rollback_drill.conformance.classify import classify
from rollback_drill.conformance.kubectl import KubectlInvocation, read_kubectl
from rollback_drill.conformance.lexer import Incomplete, tokenize
from rollback_drill.conformance.runbook import section_of, step_id_of
from rollback_drill.conformance.shell import analyse, neutralise_placeholders, placeholders_in

# --- lexer ----------------------------------------------------------------------------------------------


def test_tokenize_tells_words_operators_and_redirections_apart():
    tokens = tokenize("kubectl get pods -n a 2>/dev/null | grep x && echo ok")
    assert [(t.kind, t.text) for t in tokens] == [
        ("word", "kubectl"),
        ("word", "get"),
        ("word", "pods"),
        ("word", "-n"),
        ("word", "a"),
        ("redirect", "2>"),
        ("word", "/dev/null"),
        ("op", "|"),
        ("word", "grep"),
        ("word", "x"),
        ("op", "&&"),
        ("word", "echo"),
        ("word", "ok"),
    ]


def test_tokenize_keeps_quotes_and_substitutions_in_one_word():
    (word,) = tokenize('"$(kubectl get cm a -o name) and"`date`')
    assert word.kind == "word"
    assert word.substitutions == ("kubectl get cm a -o name", "date")
    (assignment,) = tokenize("X=$(echo 'a b')")
    assert assignment.substitutions == ("echo 'a b'",)


def test_tokenize_marks_tokens_glued_to_the_one_before():
    tokens = tokenize("open https://x/d?a=1&b=2")
    ampersand = next(t for t in tokens if t.text == "&")
    after = tokens[tokens.index(ampersand) + 1]
    assert ampersand.glued_to_previous
    assert after.glued_to_previous
    assert not tokens[1].glued_to_previous


def test_tokenize_skips_comments_and_reads_heredoc_bodies_as_no_tokens():
    tokens = tokenize("cat <<EOF # a comment\nline one | not a pipe\nEOF\n")
    assert [t.text for t in tokens] == ["cat", "<<", "EOF", "\n"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("echo 'open", "an open ' quote"),
        ("echo $(date", "an open $( substitution"),
        ("echo ${X", "an open ${ expansion"),
        ("cat <<EOF\nbody\n", "a heredoc without its EOF line"),
    ],
)
def test_tokenize_raises_incomplete_with_what_keeps_the_text_open(text, reason):
    with pytest.raises(Incomplete) as raised:
        tokenize(text)
    assert raised.value.reason == reason


# --- shell ----------------------------------------------------------------------------------------------


def test_analyse_reads_loops_assignments_background_and_the_last_program():
    analysis = analyse('for repo in a b; do kubectl get cm "$repo" -n x; done | sort &')
    assert analysis.loops[0].variable == "repo"
    assert analysis.loops[0].words == ("a", "b")
    kubectl = next(c for c in analysis.commands if c.program == "kubectl")
    assert kubectl.in_loop
    assert kubectl.args == ("get", "cm", "$repo", "-n", "x")
    assert kubectl.raw_args[2] == '"$repo"'
    assert analysis.background
    assert analysis.last_program == "sort"
    assert analysis.uses == ("repo",)
    assert analysis.assigns == ()


def test_analyse_keeps_redirections_and_only_top_level_assignments():
    analysis = analyse("A=1\nB=2 kubectl get pods -n x > /tmp/out.txt")
    assert analysis.assigns == ("A",)
    command = analysis.commands[1]
    assert command.assignments == ("B=2",)
    assert command.redirects == ((">", "/tmp/out.txt"),)
    assert not analysis.background


def test_placeholders_outside_quotes_stop_inside_quotes_are_text():
    unquoted, quoted = placeholders_in("kubectl apply -f <fix-manifest> --note '<your name>' \"<why>\"")
    assert unquoted == ("<fix-manifest>",)
    assert quoted == ("<your name>", "<why>")


def test_neutralised_placeholders_read_as_words_not_redirections():
    assert neutralise_placeholders("kubectl apply -f <fix manifest>") == "kubectl apply -f __fix_manifest__"
    assert neutralise_placeholders("echo '<kept>'") == "echo '<kept>'"
    assert analyse("kubectl apply -f <fix-manifest>").commands[0].redirects == ()


# --- kubectl --------------------------------------------------------------------------------------------


def test_read_kubectl_two_word_verbs_aliases_and_glued_namespace():
    call = read_kubectl(("rollout", "status", "deploy/flowengine", "-nproduction", "--timeout=180s"))
    assert call.verb == "rollout status"
    assert call.targets == ("deployment/flowengine",)
    assert call.namespace == "production"


def test_read_kubectl_names_objects_by_kind_and_name_and_reads_logs_as_pods():
    assert read_kubectl(("get", "cm", "repo-config", "-n", "p")).targets == ("configmap/repo-config",)
    assert read_kubectl(("get", "prometheusrules", "-n", "m")).targets == ("prometheusrule",)
    assert read_kubectl(("logs", "deployment/flowengine", "-n", "p")).targets == ("deployment/flowengine",)
    assert read_kubectl(("logs", "flowengine-abc", "-n", "p")).targets == ("pods/flowengine-abc",)
    assert read_kubectl(("--namespace=p",)).verb == ""


def test_a_kubectl_invocation_prints_as_a_command_line():
    invocation = KubectlInvocation(("get", "cm", "-o", "jsonpath={.data.a b}"), 0)
    assert invocation.command == "kubectl get cm -o 'jsonpath={.data.a b}'"


# --- classify -------------------------------------------------------------------------------------------


def test_classify_hands_a_browser_to_a_person_and_lints_a_url_cut_short():
    text = "open https://g.example/d?from=a&to=b"
    classification = classify(text, analyse(text))
    assert (classification.kind, classification.runnable) == ("manual", False)
    assert classification.reason == "opens https://g.example/d?from=a in a browser: a person reads it"
    assert any("cuts the URL 'https://g.example/d?from=a' short" in lint for lint in classification.lint)


def test_classify_lints_a_kubectl_command_that_names_no_namespace():
    text = "kubectl get pods | grep flowengine"
    classification = classify(text, analyse(text))
    assert (classification.kind, classification.runnable) == ("kubectl", True)
    assert any("`kubectl get` names no namespace" in lint for lint in classification.lint)
    assert classification.targets == ("pods",)
    assert classification.namespaces == (None,)
    assert classification.programs == ("kubectl", "grep")


def test_classify_wraps_kubectl_in_a_loop_as_shell_with_its_verbs():
    text = "for r in a b; do kubectl patch prometheusrule ${r}-alerts -n m --type merge -p '{}'; done"
    classification = classify(text, analyse(text))
    assert classification.kind == "shell"
    assert classification.runnable
    assert classification.reason == "loops over $r: runs the kubectl patch inside"
    assert classification.targets == ("prometheusrule/${r}-alerts",)
    assert classification.namespaces == ("m",)


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("kubectl apply -f <fix-manifest> -n p", "template placeholder <fix-manifest>"),
        ("kubectl --context prod get pods -n p", "names its own cluster or identity (--context)"),
        ("/usr/bin/kubectl get pods -n p", "by path or through a variable"),
        ("kubectl get pods -n p | python3 -c 1", "runs `python3`"),
        ("kubectl get pods -n p > /var/x", "writes to /var/x, outside /tmp"),
    ],
)
def test_classify_says_why_a_command_is_not_run(text, refusal):
    classification = classify(text, analyse(text))
    assert not classification.runnable
    assert refusal in classification.reason


# --- runbook sections and step ids ----------------------------------------------------------------------


def test_section_of_drops_budgets_and_starts_at_a_step_heading():
    headings = [(1, "Runbook"), (2, "Rollback Procedure"), (3, "**Step 4: Disable alerts** (5 minutes)"), (4, "Check")]
    assert section_of(headings) == ("Step 4: Disable alerts", "Check")
    assert section_of([(1, "Only a title (2 min)")]) == ("Only a title",)


@pytest.mark.parametrize(
    ("path", "step"),
    [
        (("Step 3: Revert schema",), "step-3"),
        (("Pre-Rollback Verification", "2. Notify Stakeholders"), "pre-2"),
        (("Pre-Rollback Verification", "4. Something else"), None),
        (("Gradual Re-enablement", "Phase 2: Core repos"), "phase-2"),
        (("Post-Rollback", "Fix Verification"), "soak"),
        (("Appendix",), None),
    ],
)
def test_step_id_of_follows_the_conventions(path, step):
    assert step_id_of(path) == step
