"""The conformance sandbox and the terminal state carried between commands, with a stand-in kubectl script:
real bash, real processes, no cluster."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

import pytest

from rollback_drill.conformance import sandbox as sandbox_module
from rollback_drill.conformance.sandbox import (
    OUTPUT_LIMIT,
    TIMED_OUT_EXIT_CODE,
    Sandbox,
    SandboxTools,
    prepare_sandbox,
    rewrite_paths,
    run_in_sandbox,
)
from rollback_drill.conformance.session import Terminal
from rollback_drill.conformance.shell import analyse
from rollback_drill.evidence.redact import add_secret

FAKE_KUBECTL = """#!/bin/sh
echo "kubectl saw: $*"
[ "$2" = fail ] && { echo "error: it failed" >&2; exit 3; }
exit 0
"""


@pytest.fixture
def tools(tmp_path: Path) -> SandboxTools:
    kubectl = tmp_path / "real-kubectl"
    kubectl.write_text(FAKE_KUBECTL, encoding="utf-8")
    kubectl.chmod(0o755)
    return SandboxTools(
        kubectl=kubectl,
        kubeconfig=str(tmp_path / "kubeconfig with space"),
        standins=("blocks",),
        host_programs=frozenset({"cat", "head", "tr", "sleep", "echo", "no-such-program-here"}),
    )


@pytest.fixture
def sandbox(tmp_path: Path, tools: SandboxTools) -> Sandbox:
    """The PATH allowlist alone, as where bubblewrap is missing (tests/test_conformance_namespaces.py: with it)."""
    return prepare_sandbox(tmp_path / "run", tools, isolate=False)


def run(sandbox: Sandbox, script: str, *, env: dict[str, str] | None = None, timeout_s: float = 30.0):
    return run_in_sandbox(script, sandbox, env or {}, timeout_s, journal="test")


def test_prepare_sandbox_writes_kubectl_the_standins_and_links_only_allowlisted_host_programs(sandbox):
    for directory in (sandbox.bin, sandbox.tools, sandbox.tmp, sandbox.home, sandbox.state, sandbox.journal):
        assert directory.is_dir()
    assert "--kubeconfig=" in (sandbox.bin / "kubectl").read_text(encoding="utf-8")
    assert "-m rollback_drill.conformance.standins blocks" in (sandbox.bin / "blocks").read_text(encoding="utf-8")
    assert {p.name for p in sandbox.tools.iterdir()} == {"cat", "head", "tr", "sleep"}
    assert (sandbox.bin / "psql").is_file()
    assert (sandbox.bin / "pg_dump").is_file()


def test_kubectl_is_aimed_at_the_drill_kubeconfig_and_every_call_is_journaled(sandbox, tools):
    result = run(sandbox, "kubectl get pods -n a\nkubectl fail 'x y' | cat")
    assert result.exit_code == 3, "pipefail: a failing kubectl before a pipe is not hidden"
    assert f"kubectl saw: --kubeconfig={tools.kubeconfig} get pods -n a" in result.stdout
    assert [(call.args, call.exit_code) for call in result.kubectl] == [
        (("get", "pods", "-n", "a"), 0),
        (("fail", "x y"), 3),
    ]
    assert result.stderr.strip() == "error: it failed"
    assert not result.timed_out


def test_only_the_sandbox_path_can_be_run_by_name(sandbox):
    result = run(sandbox, "python3 -c 'print(1)'")
    assert result.exit_code == 127
    assert "command not found" in result.stderr


def test_the_environment_is_the_sandbox_plus_what_the_caller_gives(sandbox):
    result = run(sandbox, 'echo "$HOME|$TMPDIR|$RB_CONF_STATE|$GIVEN|$PWD"', env={"GIVEN": "given value"})
    assert result.stdout.strip() == f"{sandbox.home}|{sandbox.tmp}|{sandbox.state}|given value|{sandbox.home}"


def test_a_command_past_its_time_limit_is_killed_with_its_children(sandbox):
    result = run(sandbox, "sleep 30 &\necho $!\nwait", timeout_s=0.5)
    assert result.timed_out
    assert result.exit_code == TIMED_OUT_EXIT_CODE
    assert result.elapsed_s < 10
    child = Path(f"/proc/{result.stdout.strip()}/stat")
    # The output pipe closes only when every process holding it has ended, the background sleep too.
    assert not child.exists() or child.read_text(encoding="utf-8").split()[2] == "Z"


def test_output_is_redacted_and_cut_to_the_limit(sandbox):
    secret = f"sandbox-secret-{secrets.token_hex(8)}"
    add_secret(secret)
    assert secret not in run(sandbox, f"echo {secret}").stdout
    long = run(sandbox, f"head -c {OUTPUT_LIMIT + 500} /dev/zero | tr '\\0' a")
    assert long.stdout == "a" * OUTPUT_LIMIT


def test_rewrite_paths_makes_the_runbooks_tmp_the_sandboxes(sandbox):
    text, mappings = rewrite_paths("kubectl get cm -o yaml > /tmp/backup/a.yaml; ls x/tmp/y", sandbox)
    assert text == f"kubectl get cm -o yaml > {sandbox.tmp}/backup/a.yaml; ls x/tmp/y"
    assert mappings == (f"/tmp/ is {sandbox.tmp}/",)
    assert rewrite_paths("echo no temporary files", sandbox) == ("echo no temporary files", ())


def test_taskdb_tools_without_a_matching_client_say_so(tmp_path, tools, monkeypatch):
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: "/bin/bash" if name == "bash" else None)
    sandbox = prepare_sandbox(tmp_path / "no-client", replace(tools, taskdb_server_major=15), isolate=False)
    result = run(sandbox, "pg_dump -d x")
    assert result.exit_code == 127
    assert "pg_dump: no pg_dump matching the TaskDB (PostgreSQL 15) here" in result.stderr


def test_taskdb_tools_fall_back_to_the_containers_own(tmp_path, tools, monkeypatch):
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: f"/usr/bin/{name}" if name == "docker" else None)
    with_container = replace(tools, taskdb_server_major=15, taskdb_container_id="abc")
    sandbox = prepare_sandbox(tmp_path / "container", with_container, isolate=False)
    script = (sandbox.bin / "pg_dump").read_text(encoding="utf-8")
    assert 'exec /usr/bin/docker exec -i -e PGPASSWORD abc pg_dump -h 127.0.0.1 -p 5432 "$@"' in script


# --- the terminal ---------------------------------------------------------------------------------------


def test_variables_a_command_sets_reach_the_commands_after_it(sandbox):
    terminal = Terminal(sandbox.state)
    setting = analyse("REPOS='a b c'")
    result = run(sandbox, terminal.script_for("REPOS='a b c'", setting))
    assert result.exit_code == 0
    terminal.carry_over(setting)
    assert terminal.variables == {"REPOS": "a b c"}
    assert not list(sandbox.state.iterdir())
    using = run(sandbox, terminal.script_for('echo "$REPOS"; exit 4', analyse("echo")), env=terminal.variables)
    assert (using.stdout.strip(), using.exit_code) == ("a b c", 4)


def test_the_pid_of_a_background_command_stands_in_for_a_later_dollar_bang(sandbox):
    terminal = Terminal(sandbox.state)
    assert terminal.substitute_background_pid("kill $!") == ("kill $!", ())
    background = analyse("sleep 0 &")
    run(sandbox, terminal.script_for("sleep 0 &", background))
    terminal.carry_over(background)
    assert terminal.background_pid is not None
    assert terminal.background_pid.isdigit()
    text, mappings = terminal.substitute_background_pid("kill $! || true")
    assert text == f"kill {terminal.background_pid} || true"
    assert mappings == (f"$! is {terminal.background_pid}, the PID of the background command before it",)
