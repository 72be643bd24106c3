"""Bad input, typed as a user types it: exit 2, one line on stderr that names the problem and the fix.

Every case runs ``python -m rollback_drill.cli ...`` in a subprocess with a state
directory of its own (``XDG_STATE_HOME``) and no ``KUBECONFIG`` or DSN from the
caller. Besides the line itself, every case checks that no drill environment was
recorded, and that no secret it was given reaches the output. Where the input is
checked against a running cluster or database (a control plane started by hand, a
local PostgreSQL), the case also shows that nothing there changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from rollback_drill.config import default_config_path, load_config
from rollback_drill.targets import local
from rollback_drill.targets.cluster import Cluster, identify
from rollback_drill.taskdb import providers
from rollback_drill.taskdb.backup import table_fingerprints
from rollback_drill.taskdb.providers import DSN_ENV, TaskDB
from rollback_drill.toolchain.build import ensure_binaries
from rollback_drill.world.seed import reset_taskdb

SLACK_SECRET = "https://hooks.slack.com/services/T0DRILL/B0DRILL/xoxbSECRETvalue123"  # noqa: S105 - planted, to prove it never reaches the output
KUBE_TOKEN = "kube-token-that-must-not-leak-42"  # noqa: S105 - planted, as above
WRONG_PASSWORD = "Wr0ng-Passw0rd-for-the-drill"  # noqa: S105 - planted, as above


# --- files the cases read ----------------------------------------------------------------------


def _drill_yaml(mutate: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """A drill.yaml that is the packaged one with one thing changed."""

    def write(tmp: Path) -> None:
        data = yaml.safe_load(default_config_path().read_text())
        mutate(data)
        (tmp / "drill.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    return write


def _text(name: str, content: str) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        (tmp / name).write_text(content)

    return write


def _kubeconfig(server: str = "https://127.0.0.1:1") -> Callable[[Path], None]:
    """A well-formed kubeconfig for a server that is not there (port 1 on loopback refuses at once)."""
    return _text(
        "unreachable.kubeconfig",
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": KUBE_TOKEN}}],
                "contexts": [{"name": "staging", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "staging",
            }
        ),
    )


def _both(*writers: Callable[[Path], None]) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        for writer in writers:
            writer(tmp)

    return write


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return mutate


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


def _two_problems(data: dict[str, Any]) -> None:
    data["replicas"]["pilot"] = 0
    data["time_scale"] = 5


# --- the cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    names: tuple[str, ...]
    """What the one line must contain: the problem, and where it helps, the fix."""
    setup: Callable[[Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    needs: str | None = None
    """``cluster``, ``taskdb`` or ``both``: checked against running ones, which must be unchanged afterwards."""
    files: dict[str, str] = field(default_factory=dict)
    """Files written before the run, their text formatted with the case's values (``{fingerprint}``, ``{port}``)."""
    secrets: tuple[str, ...] = ()
    """Strings given in the input that must appear in neither stdout nor stderr."""


CASES = (
    Case(
        "unknown-incident",
        ("run", "--incident", "meteor-strike"),
        ("unknown incident 'meteor-strike'", "valid incidents: crash-loop"),
    ),
    Case(
        "helper-injection-as-incident",
        ("run", "--incident", "flaky-flows"),
        ("helper injection", "pick one of the runbook's"),
    ),
    Case(
        "unknown-target",
        ("run", "--target", "staging"),
        ("--target", "invalid choice: 'staging'", "rollback-drill run --help"),
    ),
    Case(
        "kind-target-with-local-taskdb",
        ("run", "--target", "kind", "--taskdb", "local"),
        ("--target kind needs --taskdb container", "kind's Docker network"),
    ),
    Case(
        "kind-target-for-env-up-with-local-taskdb",
        ("env", "up", "--name", "k", "--target", "kind", "--taskdb", "local"),
        ("--target kind needs --taskdb container",),
    ),
    Case(
        "kubeconfig-target-without-file",
        ("run", "--target", "kubeconfig"),
        ("--target kubeconfig needs --kubeconfig PATH",),
    ),
    Case(
        "kubeconfig-does-not-exist",
        ("run", "--target", "kubeconfig", "--kubeconfig", "{tmp}/absent.kubeconfig", "--taskdb", "dsn"),
        ("absent.kubeconfig does not exist", "--kubeconfig PATH"),
    ),
    Case(
        "kubeconfig-is-a-directory", ("check-target", "--kubeconfig", "{tmp}"), ("is not a file", "--kubeconfig PATH")
    ),
    Case(
        "kubeconfig-garbage-yaml",
        ("run", "--target", "kubeconfig", "--kubeconfig", "{tmp}/garbage.kubeconfig", "--taskdb", "dsn"),
        ("garbage.kubeconfig is not valid YAML at line 3", "kubectl config view"),
        setup=_text("garbage.kubeconfig", "apiVersion: v1\nclusters: [\n  - {{{garbage\n"),
    ),
    Case(
        "kubeconfig-not-a-mapping",
        ("check-target", "--kubeconfig", "{tmp}/scalar.kubeconfig"),
        ("scalar.kubeconfig is malformed", "check the file"),
        setup=_text("scalar.kubeconfig", "just a sentence, not a kubeconfig\n"),
    ),
    Case(
        "kubeconfig-unknown-context",
        (
            "run",
            "--target",
            "kubeconfig",
            "--kubeconfig",
            "{tmp}/unreachable.kubeconfig",
            "--context",
            "prod",
            "--taskdb",
            "dsn",
        ),
        ("Expected object with name prod", "--context"),
        setup=_kubeconfig(),
        secrets=(KUBE_TOKEN,),
    ),
    Case(
        "kubeconfig-server-unreachable",
        ("check-target", "--kubeconfig", "{tmp}/unreachable.kubeconfig"),
        ("https://127.0.0.1:1 is not reachable", "check that the cluster is running"),
        setup=_kubeconfig(),
        secrets=(KUBE_TOKEN,),
    ),
    Case("context-without-kubeconfig", ("run", "--context", "prod"), ("--context only applies with --kubeconfig",)),
    Case(
        "drill-yaml-syntax-error",
        ("run", "--config", "{tmp}/drill.yaml"),
        ("drill.yaml is not valid YAML at line 3", "expected ','"),
        setup=_text("drill.yaml", "pilot_repo: compliance-service\nexpanded_repos: [a, b\n"),
    ),
    Case(
        "drill-yaml-absent",
        ("run", "--config", "{tmp}/absent.yaml"),
        ("absent.yaml cannot be read", "pass an existing drill.yaml"),
    ),
    Case(
        "drill-yaml-not-a-mapping",
        ("run", "--config", "{tmp}/drill.yaml"),
        ("must be a YAML mapping",),
        setup=_text("drill.yaml", "- pilot_repo\n- expanded_repos\n"),
    ),
    Case(
        "drill-yaml-without-pilot-repo",
        ("run", "--config", "{tmp}/drill.yaml"),
        ("is invalid (1 problem(s))", "pilot_repo: missing"),
        setup=_drill_yaml(_delete("pilot_repo")),
    ),
    Case(
        "pilot-among-expanded-repos",
        ("run", "--config", "{tmp}/drill.yaml"),
        ("expanded_repos.phase_6: must not list the pilot repo 'compliance-service'",),
        setup=_drill_yaml(
            _set(
                "expanded_repos.phase_6",
                ["compliance-service", "financial-reporting", "customer-analytics", "inventory-mgmt", "risk-engine"],
            )
        ),
    ),
    Case(
        "budget-override-negative",
        ("run", "--config", "{tmp}/drill.yaml"),
        ("budget_overrides_s.step-1: must be a positive number of seconds, got -30",),
        setup=_drill_yaml(_set("budget_overrides_s", {"step-1": -30})),
    ),
    Case(
        "budget-override-looser-than-runbook",
        ("run", "--config", "{tmp}/drill.yaml"),
        ("budget_overrides_s.step-1: 600s is looser than the runbook's 120s", "overrides may only tighten"),
        setup=_drill_yaml(_set("budget_overrides_s", {"step-1": 600})),
    ),
    Case(
        "budget-override-unknown-name",
        ("run", "--config", "{tmp}/drill.yaml"),
        ("budget_overrides_s.step-9: unknown budget", "known: pre-1"),
        setup=_drill_yaml(_set("budget_overrides_s", {"step-9": 60})),
    ),
    Case(
        "secret-where-env-var-name-belongs",
        ("run", "--config", "{tmp}/drill.yaml"),
        (
            "notifications.slack.webhook_url_env: must be the NAME of an environment variable",
            "ROLLBACK_DRILL_SLACK_WEBHOOK_URL",
        ),
        setup=_drill_yaml(_set("notifications.slack.webhook_url_env", SLACK_SECRET)),
        secrets=(SLACK_SECRET, "xoxbSECRETvalue123"),
    ),
    Case(
        "notification-section-not-a-mapping",
        ("run", "--config", "{tmp}/drill.yaml"),
        ("notifications.email: must be a mapping",),
        setup=_drill_yaml(_set("notifications.email", "sre-oncall@company.com")),
    ),
    Case(
        "every-problem-in-one-line",
        ("run", "--config", "{tmp}/drill.yaml"),
        ("is invalid (2 problem(s))", "replicas.pilot: must be a positive integer", "time_scale: must be at most 1"),
        setup=_drill_yaml(_two_problems),
    ),
    Case("time-scale-zero", ("run", "--time-scale", "0"), ("--time-scale must be greater than 0",)),
    Case(
        "time-scale-above-1",
        ("run", "--time-scale", "3"),
        ("--time-scale must be at most 1 (waiting windows are only ever shortened)", "--time-scale 0.01"),
    ),
    Case(
        "notify-live-unconfigured",
        ("run", "--notify", "live"),
        ("live notifications need", "ROLLBACK_DRILL_SLACK_WEBHOOK_URL", "STATUS_PAGE_API_KEY"),
    ),
    Case(
        "time-scale-not-a-number",
        ("run", "--time-scale", "abc"),
        ("--time-scale 'abc' is not a number", "--time-scale 0.01"),
    ),
    Case(
        "participants-malformed",
        ("run", "--participants", "SRE On-Call"),
        ("--participants entry 'SRE On-Call' is not Role=Name", "'SRE On-Call=Ana,Engineering TL=Bo'"),
    ),
    Case("phase-8", ("run", "--phase", "8"), ("--phase: invalid choice: '8'", "rollback-drill run --help")),
    Case("unknown-command", ("deploy",), ("invalid choice: 'deploy'", "rollback-drill --help")),
    Case(
        "env-down-unknown",
        ("env", "down", "--name", "ghost"),
        ("no drill environment named 'ghost'", "env up --name ghost"),
    ),
    Case("env-down-without-name", ("env", "down"), ("env down needs --name NAME", "env status")),
    Case("env-status-unknown", ("env", "status", "--name", "ghost"), ("no drill environment named 'ghost'",)),
    Case("env-name-with-a-slash", ("env", "up", "--name", "../escape"), ("environment name '../escape' is not valid",)),
    Case("run-with-unknown-env", ("run", "--env", "ghost"), ("no drill environment named 'ghost'",)),
    Case(
        "evidence-verify-not-a-bundle",
        ("evidence", "verify", "{tmp}"),
        ("is not an evidence bundle", "reports/<drill_id>/"),
    ),
    Case(
        "evidence-verify-nonexistent",
        ("evidence", "verify", "{tmp}/no-such-bundle"),
        ("no-such-bundle is not a directory", "reports/<drill_id>/"),
    ),
    Case(
        "env-up-dsn-without-dsn",
        ("env", "up", "--name", "stg", "--taskdb", "dsn"),
        ("--taskdb dsn needs the DSN in the environment", f"export {DSN_ENV}="),
    ),
    Case(
        "run-dsn-without-dsn",
        ("run", "--target", "kubeconfig", "--kubeconfig", "{tmp}/unreachable.kubeconfig", "--taskdb", "dsn"),
        ("--taskdb dsn needs the DSN in the environment",),
        setup=_kubeconfig(),
    ),
    Case(
        "kubeconfig-target-without-dsn",
        ("run", "--target", "kubeconfig", "--kubeconfig", "{tmp}/unreachable.kubeconfig"),
        ("--target kubeconfig reaches staging's TaskDB: pass --taskdb dsn with ROLLBACK_DRILL_TASKDB_DSN set",),
        setup=_kubeconfig(),
        secrets=(KUBE_TOKEN,),
    ),
    Case(
        "kubeconfig-target-with-a-container-taskdb",
        ("run", "--target", "kubeconfig", "--kubeconfig", "{tmp}/unreachable.kubeconfig", "--taskdb", "container"),
        ("--target kubeconfig reaches staging's TaskDB", "--taskdb dsn"),
        setup=_kubeconfig(),
    ),
    Case(
        "local-target-with-a-dsn",
        ("run", "--taskdb", "dsn"),
        ("--taskdb dsn names a database the drill did not create", "--target local", "--target kubeconfig"),
        env={DSN_ENV: "postgresql://flowengine_user:staging-db-secret@db.staging.internal:5432/flowengine_db"},
        secrets=("staging-db-secret",),
    ),
    Case(
        "kind-target-with-a-dsn",
        ("run", "--target", "kind", "--taskdb", "dsn"),
        ("--taskdb dsn names a database the drill did not create", "--target kind"),
    ),
    Case(
        "allowlist-taskdb-identity-malformed",
        ("check-target", "--kubeconfig", "{tmp}/unreachable.kubeconfig", "--cluster-allowlist", "{tmp}/allowlist"),
        (
            "allowlist:2: 'pg:db.staging.internal/flowengine_db' is not a TaskDB identity",
            "pg:<host>:<port>/<database>#",
        ),
        setup=_both(_kubeconfig(), _text("allowlist", "# staging\npg:db.staging.internal/flowengine_db\n")),
    ),
    Case(
        "dsn-not-a-url",
        ("env", "up", "--name", "stg", "--taskdb", "dsn"),
        (f"{DSN_ENV} is not a postgresql://",),
        env={DSN_ENV: "host=db.internal user=flowengine_user password=hunter2-drill"},
        secrets=("hunter2-drill",),
    ),
    Case(
        "dsn-nothing-listening",
        ("env", "up", "--name", "stg", "--taskdb", "dsn"),
        ("TaskDB at postgresql://flowengine_user:***@127.0.0.1:1/flowengine_db is not reachable",),
        env={DSN_ENV: "postgresql://flowengine_user:closed-port-secret@127.0.0.1:1/flowengine_db"},
        secrets=("closed-port-secret",),
    ),
    Case(
        "allowlist-line-not-a-fingerprint",
        ("check-target", "--kubeconfig", "{tmp}/unreachable.kubeconfig", "--cluster-allowlist", "{tmp}/allowlist"),
        ("allowlist:2: 'staging-cluster' is not a fingerprint", "<api-server-url>#<kube-system uid>"),
        setup=_both(_kubeconfig(), _text("allowlist", "# clusters the drill may change\nstaging-cluster\n")),
    ),
    Case(
        "allowlist-absent",
        (
            "run",
            "--target",
            "kubeconfig",
            "--kubeconfig",
            "{tmp}/unreachable.kubeconfig",
            "--cluster-allowlist",
            "{tmp}/absent",
            "--taskdb",
            "dsn",
        ),
        ("--cluster-allowlist", "absent cannot be read"),
        setup=_kubeconfig(),
    ),
    # Checked against a running cluster: refused, and the cluster is unchanged.
    Case(
        "allowlist-bad-line-with-a-real-cluster",
        (
            "run",
            "--target",
            "kubeconfig",
            "--kubeconfig",
            "{kubeconfig}",
            "--cluster-allowlist",
            "{tmp}/allowlist",
            "--taskdb",
            "dsn",
        ),
        ("allowlist:1: 'https://staging.example:6443' is not a fingerprint",),
        setup=_text("allowlist", "https://staging.example:6443   # the URL alone is not enough\n"),
        needs="cluster",
    ),
    Case(
        "real-cluster-not-allowlisted",
        ("run", "--target", "kubeconfig", "--kubeconfig", "{kubeconfig}", "--taskdb", "dsn"),
        ("refusing to run the drill on cluster {fingerprint}", "--cluster-allowlist FILE"),
        env={DSN_ENV: "postgresql://flowengine_user:{password}@127.0.0.1:{port}/flowengine_db"},
        needs="both",
        secrets=("{password}",),
    ),
    # Checked against a running cluster and database: the cluster is allowlisted, the TaskDB is not.
    Case(
        "real-taskdb-not-allowlisted",
        (
            "run",
            "--target",
            "kubeconfig",
            "--kubeconfig",
            "{kubeconfig}",
            "--taskdb",
            "dsn",
            "--cluster-allowlist",
            "{tmp}/allowlist",
        ),
        (
            "refusing to run the drill against TaskDB pg:127.0.0.1:{port}/flowengine_db#",
            "add the line 'pg:127.0.0.1:{port}/flowengine_db#",
            "--cluster-allowlist",
        ),
        env={DSN_ENV: "postgresql://flowengine_user:{password}@127.0.0.1:{port}/flowengine_db"},
        files={"allowlist": "{fingerprint}  # staging\n"},
        needs="both",
        secrets=("{password}",),
    ),
    Case(
        "real-taskdb-check-target-not-allowlisted",
        (
            "check-target",
            "--kubeconfig",
            "{kubeconfig}",
            "--taskdb",
            "dsn",
            "--cluster-allowlist",
            "{tmp}/allowlist",
        ),
        ("refusing to let the runbook write to TaskDB pg:127.0.0.1:{port}/flowengine_db#",),
        env={DSN_ENV: "postgresql://flowengine_user:{password}@127.0.0.1:{port}/flowengine_db"},
        files={"allowlist": "{fingerprint}\n"},
        needs="both",
        secrets=("{password}",),
    ),
    Case(
        "real-cluster-check-target-not-allowlisted",
        ("check-target", "--kubeconfig", "{kubeconfig}", "--cluster-allowlist", "{tmp}/allowlist"),
        ("refusing to run destructive drill steps on cluster {fingerprint}",),
        setup=_text("allowlist", "https://127.0.0.1:6443#00000000-0000-0000-0000-000000000000\n"),
        needs="cluster",
    ),
    # Checked against a running database: refused, naming the host and not the password, and no row changed.
    Case(
        "dsn-wrong-password-env-up",
        ("env", "up", "--name", "stg", "--taskdb", "dsn"),
        ("TaskDB at postgresql://flowengine_user:***@127.0.0.1:{port}/flowengine_db", "password authentication failed"),
        env={DSN_ENV: "postgresql://flowengine_user:" + WRONG_PASSWORD + "@127.0.0.1:{port}/flowengine_db"},
        needs="taskdb",
        secrets=(WRONG_PASSWORD,),
    ),
    Case(
        "dsn-wrong-password-run",
        ("run", "--target", "kubeconfig", "--kubeconfig", "{tmp}/unreachable.kubeconfig", "--taskdb", "dsn"),
        ("127.0.0.1:{port}", "password authentication failed", "credentials"),
        setup=_kubeconfig(),
        env={DSN_ENV: "postgresql://flowengine_user:" + WRONG_PASSWORD + "@127.0.0.1:{port}/flowengine_db"},
        needs="taskdb",
        secrets=(WRONG_PASSWORD,),
    ),
    Case(
        "env-up-seeds-no-world-into-a-dsn",
        ("env", "up", "--name", "stg", "--taskdb", "dsn"),
        ("refusing to seed a drill world into TaskDB postgresql://flowengine_user:***@127.0.0.1:{port}/", "--bare"),
        env={DSN_ENV: "postgresql://flowengine_user:{password}@127.0.0.1:{port}/flowengine_db"},
        needs="taskdb",
        secrets=("{password}",),
    ),
    Case(
        "dsn-unknown-database",
        ("env", "up", "--name", "stg", "--taskdb", "dsn"),
        ('database "no_such_db" does not exist',),
        env={DSN_ENV: "postgresql://flowengine_user:{password}@127.0.0.1:{port}/no_such_db"},
        needs="taskdb",
        secrets=("{password}",),
    ),
)


# --- what the cluster and database cases run against --------------------------------------------


@pytest.fixture(scope="module")
def foreign_cluster(tmp_path_factory) -> Iterator[Cluster]:
    """A control plane started by hand: no state file lists it, no allowlist names it."""
    plane = local.start(tmp_path_factory.mktemp("foreign-cluster"), ensure_binaries())
    try:
        yield identify("kubeconfig", plane.kubeconfig)
    finally:
        local.stop(plane)


@pytest.fixture(scope="module")
def local_taskdb() -> Iterator[TaskDB]:
    """A real PostgreSQL on 127.0.0.1 with the Phase 6 schema and its rows.

    Its directory is outside /tmp/pytest-of-<user>, which every new pytest session as that user makes
    private again: the cases read its system identifier, which the server reads from its control file by
    absolute path, as the `postgres` user.
    """
    directory = tempfile.TemporaryDirectory(prefix="rollback-drill-taskdb-")
    db = providers.start_local(Path(directory.name))
    try:
        reset_taskdb(db, load_config(), 6)
        yield db
    finally:
        providers.stop(db)
        directory.cleanup()


def _cluster_state(cluster: Cluster) -> dict[str, str]:
    api = cluster.api_client()
    try:
        core = client.CoreV1Api(api)
        apps = client.AppsV1Api(api)
        state = {f"namespace/{n.metadata.name}": n.metadata.resource_version for n in core.list_namespace().items}
        for d in apps.list_deployment_for_all_namespaces().items:
            state[f"deployment/{d.metadata.namespace}/{d.metadata.name}"] = d.metadata.resource_version
        return state
    finally:
        api.close()


def _taskdb_state(db: TaskDB) -> dict[str, Any]:
    return {name: (t.rows, t.md5) for name, t in table_fingerprints(db.dsn).items()}


# --- the test ----------------------------------------------------------------------------------


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollback_drill.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=90,  # every case is refused before anything starts; a drill that did start would take minutes
        check=False,
    )


def _caller_env(state_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"KUBECONFIG", DSN_ENV}}
    return env | {"XDG_STATE_HOME": str(state_home)}


@dataclass(frozen=True)
class Outcome:
    result: subprocess.CompletedProcess[str]
    values: dict[str, str]
    state_home: Path


def _execute(case: Case, directory: Path, values: dict[str, str]) -> Outcome:
    values = {"tmp": str(directory), **values}
    if case.setup is not None:
        case.setup(directory)
    for name, text in case.files.items():
        (directory / name).write_text(text.format(**values))
    state_home = directory / "state"
    env = _caller_env(state_home) | {k: v.format(**values) for k, v in case.env.items()}
    return Outcome(_run([arg.format(**values) for arg in case.argv], env, directory), values, state_home)


def _check(case: Case, outcome: Outcome) -> None:
    result, values = outcome.result, outcome.values
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, lines
    assert lines[0].startswith("rollback-drill: "), lines[0]
    for expected in case.names:
        assert expected.format(**values) in lines[0], f"{expected.format(**values)!r} not in {lines[0]!r}"
    for secret in case.secrets:
        secret_value = secret.format(**values)
        assert secret_value not in result.stderr, "a secret reached stderr"
        assert secret_value not in result.stdout, "a secret reached stdout"
    envs = outcome.state_home / "rollback-drill" / "envs"
    assert not list(envs.glob("*.json")), "a bad input left an environment"


@pytest.fixture(scope="module")
def plain_outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """The selected cases that need no cluster or database, run side by side (each its own process and directory).

    Each run pays for the command's imports (a second or two); one after another, they
    would make this file the slowest in tests/.
    """
    selected = {
        item.callspec.params["case"].id
        for item in request.session.items
        if getattr(item, "callspec", None) is not None and "case" in item.callspec.params
    }
    plain = [case for case in CASES if case.needs is None and case.id in selected]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {case.id: pool.submit(_execute, case, tmp_path_factory.mktemp(case.id), {}) for case in plain}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_exits_2_with_one_line(case: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if case.needs is None:
        _check(case, request.getfixturevalue("plain_outcomes")[case.id])
        return
    values: dict[str, str] = {}
    states: list[Callable[[], dict[str, Any]]] = []
    if case.needs in {"cluster", "both"}:
        cluster: Cluster = request.getfixturevalue("foreign_cluster")
        values |= {"kubeconfig": cluster.kubeconfig, "fingerprint": cluster.fingerprint}
        states.append(lambda: _cluster_state(cluster))
    if case.needs in {"taskdb", "both"}:
        db: TaskDB = request.getfixturevalue("local_taskdb")
        values |= {"port": str(db.port), "password": db.password}
        states.append(lambda: _taskdb_state(db))

    def snapshot() -> list[dict[str, Any]]:
        return [state() for state in states]

    before = snapshot()
    _check(case, _execute(case, tmp_path, values))
    assert snapshot() == before, "the bad input changed the cluster or the database it was checked against"


def test_the_table_covers_what_the_issue_lists():
    """At least 20 inputs, among them the ones checked against a real cluster and a real database."""
    assert len(CASES) >= 20
    assert len({case.id for case in CASES}) == len(CASES)
    assert {"cluster", "taskdb", "both"} <= {case.needs for case in CASES}


def test_a_dsn_refusal_comes_before_anything_starts(tmp_path: Path) -> None:
    """`env up --taskdb dsn` with no DSN refuses at once: no control plane, no state, no directory."""
    result = _run(["env", "up", "--name", "stg", "--taskdb", "dsn"], _caller_env(tmp_path / "state"), tmp_path)
    assert result.returncode == 2, result
    assert not (tmp_path / "state" / "rollback-drill" / "envs" / "stg").exists()
    assert "[env]" not in result.stderr, "something was started before the DSN was checked"
