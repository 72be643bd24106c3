"""`rollback-drill run`: the drill's features under pytest, with the same options.

The drill is pytest-bdd underneath so that `pytest features/drill.feature --incident X`
and `rollback-drill run --incident X` are one and the same run. This module only
translates the parsed options back into pytest arguments and maps pytest's exit
code onto the command's (CONVENTIONS).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from xml.etree import ElementTree as ET

from rollback_drill import environment
from rollback_drill.environment import EnvironmentState, known_drill_fingerprints
from rollback_drill.errors import InputError
from rollback_drill.evidence.finalize import reseal_with_added_files
from rollback_drill.flowengine.incidents import CATALOGUE
from rollback_drill.kube.lock import DrillLock, default_holder
from rollback_drill.notify import notifier_from_config
from rollback_drill.options import OPTIONS, resolve_settings
from rollback_drill.runbook.plan import plan_rollback
from rollback_drill.settings import Settings
from rollback_drill.targets.cluster import api_client, guard_destructive, identify, read_allowlist
from rollback_drill.taskdb import providers
from rollback_drill.taskdb.identity import guard_dsn_taskdb
from rollback_drill.world.incidents import check_incident_name

_PYTEST_TO_CLI = {0: 0, 1: 1, 2: 130, 3: 1, 4: 2, 5: 2}
"""pytest: 0 ok, 1 tests failed, 2 interrupted, 3 internal error, 4 usage error, 5 nothing collected."""
_PYTEST_OK, _PYTEST_INTERRUPTED, _PYTEST_NO_TESTS = 0, 2, 5


EXIT_PASSED, EXIT_FAILED, EXIT_NOTHING_RAN, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class JUnitCounts:
    """What pytest's JUnit XML says ran: scenarios collected, skipped, and the first skip's reason."""

    tests: int
    skipped: int
    skip_message: str = ""

    @property
    def executed(self) -> int:
        return self.tests - self.skipped


@dataclass(frozen=True)
class RunOutcome:
    code: int
    reason: str = ""
    """One line saying why, when the code is not pytest's own verdict (nothing ran, the bundle failed)."""


def read_junit(path: Path) -> JUnitCounts | None:
    """The counts in pytest's ``--junitxml`` file; None when there is none (pytest stopped before writing it)."""
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - pytest's own file, written a moment ago by this run
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(suite.get("tests", "0")) for suite in suites)
    skipped = sum(int(suite.get("skipped", "0")) for suite in suites)
    first_skip = next(root.iter("skipped"), None)
    message = (first_skip.get("message") or first_skip.text or "").strip() if first_skip is not None else ""
    return JUnitCounts(tests, skipped, message.splitlines()[0] if message else "")


def read_verdict(evidence: Path) -> str:
    """The sealed bundle's verdict; a bundle whose evidence cannot be read counts as ``aborted``."""
    try:
        verdict = json.loads(evidence.read_text()).get("verdict")
    except (OSError, ValueError, AttributeError):
        return "aborted"
    return str(verdict) if verdict in {"pass", "fail", "aborted"} else "aborted"


def drill_exit_code(pytest_code: int, verdicts: list[str], junit: JUnitCounts | None) -> RunOutcome:
    """The command's exit code from pytest's, the bundles' verdicts and what actually ran (CONVENTIONS).

    Green means it ran: no scenario executed, or every one skipped, is exit 2 naming why. The exit
    code follows the verdict: pytest may pass a scenario whose bundle says ``fail`` (a drill target
    such as the 20-minute ``drill`` one missed when the bundle was sealed), and that is exit 1, as is
    an ``aborted`` bundle.
    """
    if pytest_code < 0 or pytest_code == _PYTEST_INTERRUPTED:
        return RunOutcome(EXIT_INTERRUPTED)
    if pytest_code in (_PYTEST_OK, _PYTEST_NO_TESTS):
        if junit is None or junit.tests == 0:
            return RunOutcome(
                EXIT_NOTHING_RAN,
                "no scenario ran: nothing matched this incident and target; check --incident and the pytest arguments",
            )
        if junit.executed == 0:
            why = f" ({junit.skip_message})" if junit.skip_message else ""
            return RunOutcome(
                EXIT_NOTHING_RAN, f"no scenario ran: all {junit.skipped} skipped{why}; a skipped drill is not a pass"
            )
    if pytest_code == _PYTEST_OK:
        if "fail" in verdicts:
            return RunOutcome(EXIT_FAILED, "the drill's verdict is fail (see the bundle's targets and steps)")
        if "aborted" in verdicts:
            return RunOutcome(EXIT_FAILED, "the drill's verdict is aborted (see the bundle's timeline)")
    return RunOutcome(_PYTEST_TO_CLI.get(pytest_code, EXIT_FAILED))


def project_root() -> Path:
    """Where features/ lives: the working directory if it has them, else the source checkout."""
    for candidate in (Path.cwd(), Path(str(resources.files("rollback_drill"))).parents[1]):
        if (candidate / "features" / "test_drill.py").is_file() and (candidate / "conftest.py").is_file():
            return candidate
    raise InputError("cannot find features/drill.feature; run `rollback-drill run` from the rollback-drill checkout")


def pytest_argv(args: argparse.Namespace) -> list[str]:
    argv: list[str] = []
    for option in OPTIONS:
        value = getattr(args, option.dest, None)
        if option.is_flag:
            if value:
                argv.append(option.flag)
        elif value is not None and value != option.default:
            argv += [option.flag, str(value)]
    return argv


def guard_before_run(settings: Settings) -> str | None:
    """A kubeconfig target must be drill-made or allowlisted before pytest even starts (exit 2 otherwise), and
    so must its TaskDB (``--taskdb dsn``) by its identity; return that identity, or None for the drill's own."""
    if settings.target != "kubeconfig" or settings.dry_run:
        return None
    if settings.kubeconfig is None:
        raise InputError("--target kubeconfig needs --kubeconfig PATH (and usually --context NAME)")
    allowlist = read_allowlist(settings.cluster_allowlist)
    cluster = identify("kubeconfig", str(settings.kubeconfig), settings.context)
    guard_destructive(cluster, allowlist, known_drill_fingerprints(), "run the drill")
    return guard_dsn_taskdb(allowlist) if settings.taskdb == "dsn" else None


def check_options(args: argparse.Namespace) -> Settings:
    """Resolve the options against drill.yaml, and check every one that needs no drill, before pytest starts.

    Bad input found here is one line and exit 2; found by the fixtures, it would be
    a pytest usage error inside pytest's own output (or, for --target kind, a skip).
    """
    settings = resolve_settings(lambda dest: getattr(args, dest, None))
    if settings.target == "kind" and settings.env is None:
        environment.check_kind_target(settings.taskdb)
    if settings.env is not None:
        EnvironmentState.load(settings.env)
    read_allowlist(settings.cluster_allowlist)
    if settings.target == "kubeconfig" and settings.kubeconfig is not None:
        # Read without contacting the cluster: a kubeconfig that cannot work is named before the DSN is tried.
        api_client(settings.kubeconfig, settings.context).close()
    if settings.taskdb == "dsn":
        providers.from_dsn()  # connects and reads the version only: a missing or wrong DSN is refused now
    if settings.notify == "live":
        # Refused now, naming each missing variable, rather than at pre-rollback check 2.
        notifier_from_config(settings.config, os.environ, mode="live")
    return settings


def add_test_reports(bundle: Path, scratch: Path) -> None:
    """The Allure results and the JUnit XML of the run belong to the record: move them in and seal again
    (with a new attestation and history line, which name the manifest)."""
    if (scratch / "allure-results").is_dir():
        shutil.copytree(scratch / "allure-results", bundle / "allure-results", dirs_exist_ok=True)
    if (scratch / "junit.xml").is_file():
        shutil.copy2(scratch / "junit.xml", bundle / "junit.xml")
    reseal_with_added_files(bundle)


def chosen_scenario_marker(settings: Settings) -> str:
    """Which of drill.feature's @chosen scenarios rehearses this incident: the rollback, or the NO-GO one."""
    check_incident_name(settings.incident)
    spec = CATALOGUE[settings.incident]
    expected = spec.expected_decision(len(settings.config.expanded_for(settings.phase)))
    if expected is None:
        raise InputError(
            f"{settings.incident!r} is a helper injection, not an incident of the decision framework; pick one of the runbook's"
        )
    return "chosen and no_go" if expected.startswith("NO-GO") else "chosen and rolls_back"


def _run_forwarding_signals(argv: list[str], cwd: Path) -> int:
    """Run pytest and wait for it, whatever signal arrives.

    Ctrl-C reaches pytest too (same process group) and pytest then tears the
    drill down: the evidence is finished as ``aborted`` and sealed, the cluster,
    TaskDB and simulator are removed. So this process must not kill pytest on
    SIGINT the way ``subprocess.call`` does; it waits for the cleanup instead, and
    passes SIGTERM on (pytest turns it into the same interrupt).
    """
    with subprocess.Popen(argv, cwd=cwd, env=dict(os.environ)) as child:
        previous_int = signal.signal(signal.SIGINT, lambda *_: None)
        previous_term = signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
        try:
            return child.wait()
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)


@contextlib.contextmanager
def _drill_lock(settings: Settings) -> Iterator[None]:
    """Hold the cluster's drill Lease while a drill runs on a cluster others can reach (--env, kubeconfig).

    A throwaway cluster made for this run alone needs no lock. A second drill on a
    shared cluster is refused (LockHeld, exit 2) naming the holder.
    """
    if settings.env:
        cluster = EnvironmentState.load(settings.env).cluster()
    elif settings.target == "kubeconfig" and settings.kubeconfig is not None:
        cluster = identify("kubeconfig", str(settings.kubeconfig), settings.context)
    else:
        yield
        return
    api = cluster.api_client()
    lock = DrillLock(api, default_holder(f"run-{os.getpid()}"))
    try:
        lock.acquire()
        try:
            yield
        finally:
            lock.release()
    finally:
        api.close()


def dry_run(settings: Settings) -> int:
    """Print what each runbook step would change on the chosen cluster; change nothing."""
    if settings.env:
        state = EnvironmentState.load(settings.env)
        cluster, taskdb = state.cluster(), state.taskdb_handle()
    elif settings.target == "kubeconfig":
        cluster = identify("kubeconfig", str(settings.kubeconfig), settings.context)
        taskdb = providers.from_dsn() if settings.taskdb == "dsn" else None
    else:
        raise InputError(
            "--dry-run reads an existing cluster: pass --env NAME (from `rollback-drill env up`) "
            "or --target kubeconfig --kubeconfig FILE"
        )
    api = cluster.api_client()
    try:
        plan = plan_rollback(api, settings.config, taskdb)
    finally:
        api.close()
    print(f"dry run on {cluster.fingerprint} ({cluster.server_version}); nothing will be changed")
    for change in plan:
        print(f"  {change.step:<7} {change.title}: {change.change}")
    return 0


def run_drill(args: argparse.Namespace) -> int:
    settings = check_options(args)
    if settings.dry_run:
        return dry_run(settings)
    marker = chosen_scenario_marker(settings)
    guard_before_run(settings)
    root = project_root()
    evidence_dir = settings.evidence_dir
    evidence_dir = evidence_dir if evidence_dir.is_absolute() else Path.cwd() / evidence_dir
    before = set(evidence_dir.glob("*/evidence.json")) if evidence_dir.is_dir() else set()
    scratch = Path(tempfile.mkdtemp(prefix="rollback-drill-run-"))
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(root / "features" / "test_drill.py"),
        "-m",
        marker,
        "-p",
        "no:cacheprovider",
        *[arg for arg in pytest_argv(args) if arg not in {"--evidence-dir", args.drill_evidence_dir}],
        "--evidence-dir",
        str(evidence_dir),
        "--alluredir",
        str(scratch / "allure-results"),
        "--junitxml",
        str(scratch / "junit.xml"),
        # pytest keeps its last temporary directories; a drill's belong to the drill and go with its scratch.
        "--basetemp",
        str(scratch / "tmp"),
        *args.pytest_args,
    ]
    with _drill_lock(settings):
        code = _run_forwarding_signals(argv, root)
    verdicts: list[str] = []
    for evidence in sorted(set(evidence_dir.glob("*/evidence.json")) - before):
        add_test_reports(evidence.parent, scratch)
        verdicts.append(read_verdict(evidence))
        print(f"evidence bundle: {evidence.parent}  (open {evidence.parent / 'report.html'})")
    junit = read_junit(scratch / "junit.xml")
    shutil.rmtree(scratch, ignore_errors=True)
    outcome = drill_exit_code(code, verdicts, junit)
    if outcome.code == EXIT_NOTHING_RAN and outcome.reason:
        raise InputError(outcome.reason)
    if outcome.reason:
        print(f"rollback-drill: {outcome.reason}", file=sys.stderr)
    return outcome.code
