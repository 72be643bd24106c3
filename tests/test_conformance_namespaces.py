"""The conformance sandbox with bubblewrap: hostile runbook lines change nothing outside the sandbox,
read no host secret and leave no process behind."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from rollback_drill.conformance.sandbox import (
    TIMED_OUT_EXIT_CODE,
    Sandbox,
    SandboxTools,
    namespace_sandbox,
    prepare_sandbox,
    run_in_sandbox,
)

pytestmark = pytest.mark.skipif(
    namespace_sandbox() is None, reason="bubblewrap cannot start a namespace here (scripts/ensure-bubblewrap.sh)"
)

FAKE_KUBECTL = """#!/bin/sh
echo "kubectl saw: $*"
exit 0
"""
HOST_ONLY_VARIABLE = "RB_CONF_HOST_ONLY_VALUE"


@pytest.fixture
def tools(tmp_path: Path) -> SandboxTools:
    kubectl = tmp_path / "closed" / "real-kubectl"
    kubectl.parent.mkdir()
    kubectl.parent.chmod(0o700)  # as ~/.cache is: the sandbox reaches the binary only through its bind
    kubectl.write_text(FAKE_KUBECTL, encoding="utf-8")
    kubectl.chmod(0o755)
    ca, cert, key = (kubectl.parent / name for name in ("ca.crt", "admin.crt", "admin.key"))
    for path in (ca, cert, key):
        path.write_text(f"pem of {path.name}\n", encoding="utf-8")
        path.chmod(0o600)
    kubeconfig = kubectl.parent / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: d, cluster: {{server: 'https://127.0.0.1:1', certificate-authority: {ca}}}}}]\n"
        f"users: [{{name: a, user: {{client-certificate: {cert}, client-key: {key}}}}}]\n",
        encoding="utf-8",
    )
    return SandboxTools(
        kubectl=kubectl,
        kubeconfig=str(kubeconfig),
        standins=("blocks",),
        host_programs=frozenset({"cat", "awk", "tee", "touch", "sleep", "ls", "tr", "head", "id"}),
    )


@pytest.fixture
def sandbox(tmp_path: Path, tools: SandboxTools) -> Sandbox:
    box = prepare_sandbox(tmp_path / "run", tools)
    assert box.bwrap is not None
    return box


def run(sandbox: Sandbox, script: str, *, env: dict[str, str] | None = None, timeout_s: float = 30.0):
    return run_in_sandbox(script, sandbox, env or {}, timeout_s, journal=f"j{secrets.token_hex(3)}")


def _processes_in(directory: Path) -> list[int]:
    """Host processes whose working directory is inside ``directory``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cwd = str((proc / "cwd").readlink())
            except OSError:
                continue
            if cwd.startswith(str(directory)):
                found.append(int(proc.name))
    return found


def test_commands_run_as_nobody_with_the_sandboxes_environment_only(sandbox, monkeypatch):
    monkeypatch.setenv(HOST_ONLY_VARIABLE, "host-only-value")
    result = run(
        sandbox, 'id -u; echo "$HOME|$TMPDIR|$GIVEN|$PWD|${RB_CONF_HOST_ONLY_VALUE-unset}"', env={"GIVEN": "g v"}
    )
    assert result.exit_code == 0, result.stderr
    uid, line = result.stdout.split()[0], result.stdout.split("\n")[1]
    assert uid == "65534"
    assert line == f"{sandbox.home}|{sandbox.tmp}|g v|{sandbox.home}|unset"


def test_kubectl_reaches_its_binary_and_a_kubeconfig_of_its_own(sandbox, tools):
    result = run(sandbox, "kubectl get pods -n a")
    assert result.exit_code == 0, result.stderr
    assert f"--kubeconfig={sandbox.root / 'kubeconfig'} get pods -n a" in result.stdout
    assert [call.args for call in result.kubectl] == [("get", "pods", "-n", "a")]
    own = (sandbox.root / "kubeconfig").read_text(encoding="utf-8")
    assert "client-key-data" in own
    assert str(tools.kubectl.parent) not in own
    assert (sandbox.root / "kubeconfig").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "line",
    [
        "awk 'BEGIN{system(\"touch /etc/rb-conf-x\")}'",
        "echo evil | tee /etc/cron.d/rb-conf-x",
        "echo evil > ../../../../etc/rb-conf-x",
        "echo evil > ../../rb-conf-outside",
        "touch /tmp/rb-conf-x /root/rb-conf-x",
    ],
)
def test_a_hostile_line_writes_nothing_outside_the_sandbox(sandbox, tmp_path, line):
    result = run(sandbox, line)
    assert result.exit_code != 0 or "system" in line
    for path in ("/etc/rb-conf-x", "/etc/cron.d/rb-conf-x", "/tmp/rb-conf-x", "/root/rb-conf-x"):
        assert not Path(path).exists(), path
    assert not (tmp_path / "rb-conf-outside").exists()
    assert _processes_in(sandbox.root) == []


def test_host_secrets_are_out_of_reach(sandbox, tools, monkeypatch):
    monkeypatch.setenv(HOST_ONLY_VARIABLE, "host-only-value-" + secrets.token_hex(4))
    result = run(
        sandbox,
        f"cat /root/.ssh/id_ed25519; cat {tools.kubectl.parent / 'admin.key'}; cat /etc/shadow; "
        "cat /proc/$PPID/environ; cat /proc/1/environ; tr '\\0' '\\n' < /proc/1/cmdline; ls /root /home",
    )
    output = result.stdout + result.stderr
    assert os.environ[HOST_ONLY_VARIABLE] not in output
    assert "pem of admin.key" not in output
    assert "/etc/shadow: Permission denied" in result.stderr
    assert "PRIVATE KEY" not in output


def test_a_command_past_its_time_limit_leaves_no_process(sandbox):
    result = run(sandbox, "sleep 30 &\nsleep 31 &\nwait", timeout_s=0.5)
    assert result.timed_out
    assert result.exit_code == TIMED_OUT_EXIT_CODE
    assert _processes_in(sandbox.root) == []


def test_a_finished_command_leaves_no_background_process(sandbox):
    result = run(sandbox, "sleep 30 &\necho started")
    assert result.stdout.strip() == "started"
    assert _processes_in(sandbox.root) == []
    assert not list(sandbox.journal.rglob(".environment"))  # the variables file goes with the run


def test_the_standins_python_is_reachable(sandbox):
    # The interpreter may live under /root (pyenv) or /home: it is bound in, read-only.
    result = run(sandbox, "blocks --help")
    assert result.exit_code not in {126, 127}, result.stderr
    assert "not found" not in result.stderr
    assert "the conformance run did not set up this stand-in" in result.stderr  # its own Python answered


def test_only_the_commands_own_directories_are_writable(sandbox):
    result = run(
        sandbox, "echo x > ../bin/kubectl; echo x > ../beside; echo x > $TMPDIR/ok; echo x > $RB_CONF_STATE/ok"
    )
    assert "kubectl saw" in (sandbox.bin / "kubectl").read_text(encoding="utf-8") or "--kubeconfig" in (
        sandbox.bin / "kubectl"
    ).read_text(encoding="utf-8")
    assert not (sandbox.root / "beside").exists()
    assert (sandbox.tmp / "ok").is_file()
    assert (sandbox.state / "ok").is_file()
    assert result.stderr.count("Permission denied") == 2


def test_a_work_dir_nobody_cannot_reach_falls_back_to_the_allowlist(tmp_path, tools, monkeypatch):
    from rollback_drill.conformance import sandbox as sandbox_module  # noqa: PLC0415 - only this test patches it

    closed = tmp_path / "closed-env"
    closed.mkdir()
    closed.chmod(0o700)
    monkeypatch.setattr(sandbox_module, "_HIDDEN", ("/nowhere",))  # as if the run lived outside /tmp
    assert prepare_sandbox(closed / "run", tools).bwrap is None
    closed.chmod(0o755)
    if all(p.stat().st_mode & 0o001 for p in closed.parents):
        assert prepare_sandbox(closed / "run2", tools).bwrap is not None
