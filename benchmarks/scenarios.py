"""What is measured, on a drill environment that is brought up once and reused.

Everything here goes through the library's public functions (the same ones the
steps call) or through the runbook's literal shell commands run with our
Go-built kubectl. Nothing here changes what the drill verifies: after each timed
action the end state is checked, and the comparisons check that both ways of
doing a step leave the same state.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from proposals import BatchingRecorder, bring_up_parallel, disable_alerts_from_listing
from results import Results, log

from rollback_drill import environment
from rollback_drill.config import DrillConfig, default_config_path, load_config
from rollback_drill.environment import EnvironmentState
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.kube.rollout import rollout_state, wait_for_rollout
from rollback_drill.kube.rules import PrometheusRules
from rollback_drill.runbook import actions
from rollback_drill.runbook.probes import (
    EXPANDED_PROBE_HZ,
    PILOT_PROBE_HZ,
    PILOT_PROBE_MAX_IN_FLIGHT,
    expanded_config_call,
    pilot_flow_call,
)
from rollback_drill.taskdb import schema
from rollback_drill.timing.probe import Probe, ProbeOutcome, achieved_rate_hz, failed_requests, samples_between
from rollback_drill.timing.wait import wait_until
from rollback_drill.world import manifests
from rollback_drill.world.seed import allowlist_of, seed_world

PHASE = 6
INCIDENT = "mass-failure"
RESTORE_CONCURRENCY = 8


# --- configurations --------------------------------------------------------------------------------


def write_config(repos: int, directory: Path) -> tuple[Path, DrillConfig]:
    """The packaged drill.yaml with ``repos`` expanded repos at Phase 6 (as ``steps/world_steps.py::_custom_config``)."""
    data = yaml.safe_load(default_config_path().read_text())
    names = [f"service-{i:03d}" for i in range(repos)]
    data["expanded_repos"] = {"phase_6": names, "phase_7": names}
    data["soak"]["repos"] = names[:2]
    data["reenablement"]["canary"] = names[0]
    data["reenablement"]["phase_2"] = names[1:4]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"drill-{repos}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, load_config(path)


# --- environment up and down -----------------------------------------------------------------------


def progress(message: str) -> None:
    log(f"  [env] {message}")


def _slug(part: str) -> str:
    return part.replace(" ", "_")


def env_cycle(results: Results, name: str, *, variant: bool = False) -> None:
    """One ``bring_up`` (cluster, TaskDB, world, simulator, sinks) to ready, then ``tear_down``.

    ``variant``: the proposed ``bring_up_parallel`` instead of the library's ``bring_up``.
    """
    prefix, what = ("env_parallel", "proposed parallel env up") if variant else ("env", "env up")
    started = time.monotonic()
    if variant:
        state = bring_up_parallel(name, progress=progress, phase=PHASE)
    else:
        state = environment.bring_up(name, with_world=True, phase=PHASE, progress=progress)
    up = time.monotonic() - started
    group = "environment, proposed" if variant else "environment"
    try:
        results.add(f"{prefix}.up", up, label=f"{what} to ready (total)", unit="s", group=group)
        for part, seconds in state.timings_s.items():
            results.add(f"{prefix}.part.{_slug(part)}", seconds, label=f"{what}: {part}", unit="s", group=group)
    finally:
        started = time.monotonic()
        forced = environment.tear_down(state)
        results.add(f"{prefix}.down", time.monotonic() - started, label="env down (tear_down)", unit="s", group=group)
        if forced:
            results.checks.append(f"{name}: tear_down needed force for {', '.join(forced)}")


def drill_overhead(results: Results, root: Path) -> None:
    """What every `rollback-drill run` pays before its scenario starts: the CLI's imports, pytest's start and collection."""
    group = "whole drill"
    for fid, label, argv in (
        (
            "drill.overhead.cli_import",
            "fixed cost: importing rollback_drill.cli",
            [sys.executable, "-c", "import rollback_drill.cli"],
        ),
        (
            "drill.overhead.pytest_collect",
            "fixed cost: pytest start + collecting features/test_drill.py",
            [
                sys.executable,
                "-m",
                "pytest",
                "features/test_drill.py",
                "--collect-only",
                "-q",
                "-p",
                "no:cacheprovider",
            ],
        ),
    ):
        started = time.monotonic()
        subprocess.run(argv, cwd=root, capture_output=True, check=True, timeout=300)
        results.add(fid, time.monotonic() - started, label=label, unit="s", group=group)


# --- the reused environment ------------------------------------------------------------------------


@dataclass
class Bench:
    """The one environment all in-world measurements run on."""

    state: EnvironmentState
    kubectl: Path
    workdir: Path
    cluster: Any = field(init=False)
    api: client.ApiClient = field(init=False)
    flowengine: FlowEngineClient = field(init=False)

    def __post_init__(self) -> None:
        self.cluster = self.state.cluster()
        self.api = self.cluster.api_client()
        self.taskdb = self.state.taskdb_handle()
        self.flowengine = FlowEngineClient(str(self.state.services["flowengine"]["url"]))
        self.known = environment.known_drill_fingerprints()
        self.kube_cache = self.workdir / "kube-cache"

    def close(self) -> None:
        self.api.close()

    def runbook(self, config: DrillConfig) -> actions.Runbook:
        return actions.Runbook(
            api=self.api,
            cluster=self.cluster,
            config=config,
            taskdb=self.taskdb,  # type: ignore[arg-type]
            flowengine=self.flowengine,
            known_drill_clusters=self.known,
        )

    def reseed(self, config: DrillConfig) -> float:
        """A fresh world at Phase 6 with this configuration's repos, as the drill's world_seeder does; seconds taken."""
        started = time.monotonic()
        self.flowengine.clear_incidents()
        seed_world(self.api, self.cluster, config, PHASE, self.taskdb)
        return time.monotonic() - started

    def shell(self, script: str, log_path: Path, timeout_s: float = 600) -> None:
        """Run the runbook's commands as a shell would, with our kubectl first on PATH and the environment's kubeconfig."""
        env = dict(
            os.environ,
            KUBECONFIG=str(self.state.kubeconfig),
            KUBECACHEDIR=str(self.kube_cache),
            PATH=f"{self.kubectl.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        with log_path.open("ab") as out:
            proc = subprocess.run(
                ["bash", "-c", "set -euo pipefail\n" + script],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
        if proc.returncode != 0:
            tail = log_path.read_text(errors="replace")[-800:]
            raise RuntimeError(f"shell script exited {proc.returncode}; see {log_path}:\n{tail}")

    def simulator_pid(self) -> int:
        return int(self.state.services["flowengine"]["pid"])


def process_cpu_s(pid: int) -> float:
    """utime + stime of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- probes ----------------------------------------------------------------------------------------


class ThreadCpu:
    """Wraps a probe call and notes, after each call, the probe thread's own CPU time (``time.thread_time``)."""

    def __init__(self, call: Callable[[], ProbeOutcome]) -> None:
        self._call = call
        self.marks: list[tuple[float, float]] = []

    def __call__(self) -> ProbeOutcome:
        try:
            return self._call()
        finally:
            self.marks.append((time.monotonic(), time.thread_time()))

    def between(self, start: float, end: float) -> tuple[float, float, int]:
        """(CPU seconds, wall seconds, calls) between the first and the last call that ended in [start, end]."""
        inside = [m for m in self.marks if start <= m[0] <= end]
        if len(inside) < 2:
            return 0.0, 0.0, 0
        return inside[-1][1] - inside[0][1], inside[-1][0] - inside[0][0], len(inside) - 1


def pilot_probe(name: str, call: Callable[[], ProbeOutcome], *, serial: bool) -> Probe:
    """The pilot probe as ``DrillProbes.start`` makes it, or the serial one (``max_in_flight=1``) it replaced."""
    return Probe(name, call, rate_hz=PILOT_PROBE_HZ, max_in_flight=1 if serial else PILOT_PROBE_MAX_IN_FLIGHT)


@dataclass
class Probes:
    """The drill's two probes (as ``DrillProbes.start`` makes them), with the pilot call metered."""

    pilot: Probe
    expanded: Probe
    meter: ThreadCpu

    @classmethod
    def start(cls, flowengine: FlowEngineClient, config: DrillConfig, *, serial: bool = False) -> Probes:
        """The drill's pilot probe (overlapping calls); ``serial``: one call at a time, for comparison."""
        meter = ThreadCpu(pilot_flow_call(flowengine, config.pilot_repo))
        pilot = pilot_probe("pilot", meter, serial=serial).start()
        repo = config.expanded_for(PHASE)[0]
        expanded = Probe(f"expanded:{repo}", expanded_config_call(flowengine, repo), rate_hz=EXPANDED_PROBE_HZ).start()
        return cls(pilot, expanded, meter)

    def stop(self) -> None:
        self.pilot.stop()
        self.expanded.stop()


def worst_window(times: list[float], start: float, end: float, width_s: float = 1.0) -> int | None:
    """The fewest requests started in any ``width_s`` window that begins at a request and ends by ``end``."""
    ts = sorted(t for t in times if start <= t <= end)
    worst: int | None = None
    j = 0
    for i, t in enumerate(ts):
        if t + width_s > end:
            break
        j = max(j, i)
        while j < len(ts) and ts[j] < t + width_s:
            j += 1
        worst = j - i if worst is None else min(worst, j - i)
    return worst


def max_gap(times: list[float]) -> float:
    ts = sorted(times)
    return max((b - a for a, b in itertools.pairwise(ts)), default=0.0)


# --- rollback execution (Steps 1-4 through the library) ---------------------------------------------


def check_rolled_back(runbook: actions.Runbook, config: DrillConfig) -> None:
    """The end state Steps 1-4 promise, read back from the cluster and TaskDB."""
    names = config.kubernetes
    deployment = runbook.deployment()
    problems = []
    if allowlist_of(deployment, names.container) != (config.pilot_repo,):
        problems.append(f"allowlist {allowlist_of(deployment, names.container)}")
    if (deployment.spec.replicas if deployment.spec else None) != config.replicas["pilot"]:
        problems.append(f"replicas {deployment.spec.replicas if deployment.spec else None}")
    version = schema.current_version(runbook.taskdb)
    if version != config.schema.pilot_version:
        problems.append(f"schema {version}")
    left = PrometheusRules(runbook.api, names.monitoring_namespace).names() & {
        f"{r}-alerts" for r in config.expanded_for(PHASE)
    }
    if left:
        problems.append(f"{len(left)} alert rules left")
    if problems:
        raise AssertionError("not rolled back: " + "; ".join(problems))


def _record_probe(
    results: Results, probe: Probe, meter: ThreadCpu | None, window: tuple[float, float], *, prefix: str, group: str,
    repos: int | None, what: str,
) -> None:  # fmt: skip
    """Rate, fewest requests in any 1 s window, longest gap, failures, P95 latency and thread CPU of one probe window."""
    t0, t1 = window
    samples = samples_between(probe.samples(), t0, t1)
    times = [s.t_monotonic for s in samples]
    at = f"@{repos}" if repos else ""

    def add(name: str, value: float, label: str, unit: str) -> None:
        results.add(f"{prefix}.{name}{at}", value, label=f"{what}: {label}", unit=unit, group=group, repos=repos)

    add("rate", achieved_rate_hz(samples), "achieved rate", "req/s")
    worst = worst_window(times, t0, t1)
    if worst is not None:
        add("worst_1s", worst, "fewest requests in any 1 s window", "req")
    add("max_gap", max_gap(times), "longest gap between requests", "s")
    add("failed", failed_requests(samples), "failed requests", "req")
    latencies = sorted(s.latency_s for s in samples)
    if latencies:
        add("latency_p95", 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], "P95 latency", "ms")
    if meter is not None:
        cpu, span, calls = meter.between(t0, t1)
        if calls:
            add("thread_cpu", 100 * cpu / span, "probe thread CPU (share of one core)", "%")
            add("thread_cpu_per_req", 1000 * cpu / calls, "probe thread CPU per request", "ms")


def rollback_once(
    bench: Bench, config: DrillConfig, repos: int, results: Results, run_dir: Path, *, serial_probe: bool = False
) -> None:
    """Fresh world + the incident, pre-rollback check 3 (untimed here), then Steps 1-4 timed with both probes on.

    ``serial_probe``: the pilot probe makes one call at a time instead of the drill's overlapping calls;
    its figures go under ``probe_serial`` and ``rollback_serial_probe``.
    """
    results.add(
        f"world.seed@{repos}", bench.reseed(config), label="world (re)seed", unit="s", group="world", repos=repos
    )
    bench.flowengine.inject(INCIDENT)
    runbook = bench.runbook(config)
    started = time.monotonic()
    backups = actions.backup_state(runbook, run_dir / "backups")
    actions.verify_backup(runbook, backups)
    backup = backups.taskdb.wait(120)
    results.add(
        f"pre3.backup@{repos}", time.monotonic() - started,
        label="pre-rollback check 3 (backup + verified restore)", unit="s", group="world", repos=repos,
    )  # fmt: skip
    probes = Probes.start(bench.flowengine, config, serial=serial_probe)
    try:
        sim_pid = bench.simulator_pid()
        cpu0, sim0 = time.process_time(), process_cpu_s(sim_pid)
        marks = [time.monotonic()]
        actions.restrict_allowlist(runbook)
        marks.append(time.monotonic())
        actions.scale_down(runbook)
        marks.append(time.monotonic())
        actions.revert_schema(runbook, backup)
        marks.append(time.monotonic())
        actions.disable_expanded_alerts(runbook, run_dir / "alerts")
        marks.append(time.monotonic())
        cpu1, sim1 = time.process_time(), process_cpu_s(sim_pid)
    finally:
        probes.stop()
    check_rolled_back(runbook, config)
    t0, t4 = marks[0], marks[-1]
    wall = t4 - t0
    if serial_probe:
        results.add(
            f"rollback_serial_probe.execution@{repos}", wall,
            label="rollback execution with a serial pilot probe", unit="s", group="pilot probe, serial", repos=repos,
        )  # fmt: skip
        _record_probe(
            results, probes.pilot, probes.meter, (t0, t4), prefix="probe_serial", group="pilot probe, serial",
            repos=repos, what="serial pilot probe during Steps 1-4",
        )  # fmt: skip
        return
    for index, (a, b) in enumerate(itertools.pairwise(marks), start=1):
        results.add(
            f"rollback.step-{index}@{repos}", b - a, label=f"Step {index}", unit="s", group="rollback", repos=repos
        )
    results.add(
        f"rollback.execution@{repos}", wall, label="rollback execution (Steps 1-4, library)", unit="s",
        group="rollback", repos=repos,
    )  # fmt: skip
    group = "pilot probe"
    _record_probe(
        results, probes.pilot, probes.meter, (t0, t4), prefix="probe", group=group, repos=repos,
        what="pilot probe during Steps 1-4",
    )  # fmt: skip
    results.add(
        f"rollback.process_cpu@{repos}", 100 * (cpu1 - cpu0) / wall,
        label="bench process CPU during Steps 1-4 (client + both probes)", unit="%", group=group, repos=repos,
    )  # fmt: skip
    results.add(
        f"rollback.simulator_cpu@{repos}", 100 * (sim1 - sim0) / wall,
        label="simulator process CPU during Steps 1-4 (serves both probes)", unit="%", group=group, repos=repos,
    )  # fmt: skip


def probe_cost(bench: Bench, config: DrillConfig, results: Results, window_s: float) -> None:
    """The pilot probe alone (no rollback) against an idle baseline of the same length; then the proposed probe alone."""
    pause = threading.Event()
    pid = bench.simulator_pid()
    cpu0, sim0 = time.process_time(), process_cpu_s(pid)
    pause.wait(window_s)  # the measuring window of the baseline, not a settle
    idle_cpu, idle_sim = time.process_time() - cpu0, process_cpu_s(pid) - sim0
    for serial in (False, True):
        meter = ThreadCpu(pilot_flow_call(bench.flowengine, config.pilot_repo))
        probe = pilot_probe("pilot", meter, serial=serial)
        cpu0, sim0, t0 = time.process_time(), process_cpu_s(pid), time.monotonic()
        probe.start()
        pause.wait(window_s)  # the measuring window
        probe.stop()
        t1 = time.monotonic()
        wall = t1 - t0
        cpu, sim = time.process_time() - cpu0, process_cpu_s(pid) - sim0
        if serial:
            _record_probe(
                results, probe, None, (t0, t1), prefix="probe_serial_alone", group="pilot probe, serial",
                repos=None, what="serial pilot probe alone",
            )  # fmt: skip
            continue
        group = "pilot probe"
        _record_probe(
            results, probe, meter, (t0, t1), prefix="probe_alone", group=group, repos=None, what="pilot probe alone"
        )
        calls = max(1, len(probe.samples()))
        results.add(
            "probe_alone.process_cpu", 100 * (cpu - idle_cpu * wall / window_s) / wall,
            label="pilot probe alone: process CPU minus idle baseline (share of one core)", unit="%", group=group,
        )  # fmt: skip
        results.add(
            "probe_alone.cpu_per_req", 1000 * (cpu - idle_cpu * wall / window_s) / calls,
            label="pilot probe alone: process CPU minus idle baseline, per request", unit="ms", group=group,
        )  # fmt: skip
        results.add(
            "probe_alone.simulator_cpu", 100 * (sim - idle_sim * wall / window_s) / wall,
            label="pilot probe alone: simulator CPU minus idle baseline (share of one core)", unit="%", group=group,
        )  # fmt: skip
        results.add(
            "probe_alone.simulator_cpu_per_req", 1000 * (sim - idle_sim * wall / window_s) / calls,
            label="pilot probe alone: simulator CPU minus idle baseline, per request", unit="ms", group=group,
        )  # fmt: skip


# --- Step 1: the drill's implementation against the runbook's kubectl commands ---------------------


def _step1_script(config: DrillConfig) -> str:
    names = config.kubernetes
    ns, dep, pilot = shlex.quote(names.namespace), shlex.quote(names.deployment), shlex.quote(config.pilot_repo)
    jsonpath = shlex.quote('{.spec.template.spec.containers[0].env[?(@.name=="REPO_ALLOWLIST")].value}')
    return (
        f"kubectl set env deployment/{dep} -n {ns} REPO_ALLOWLIST={pilot}\n"
        f'test "$(kubectl get deployment/{dep} -n {ns} -o jsonpath={jsonpath})" = {pilot}\n'
        f"kubectl rollout status deployment/{dep} -n {ns} --timeout=120s\n"
    )


def _settled_pods(runbook: actions.Runbook) -> list[client.V1Pod]:
    return [p for p in runbook.pods() if not (p.metadata and p.metadata.deletion_timestamp)]


def _pod_allowlist(pod: client.V1Pod, container: str) -> tuple[str, ...]:
    for item in pod.spec.containers if pod.spec else []:
        if item.name == container:
            for env in item.env or []:
                if env.name == "REPO_ALLOWLIST":
                    return manifests.parse_allowlist(env.value)
    return ()


def reset_allowlist(runbook: actions.Runbook, config: DrillConfig) -> None:
    """Back to the Phase 6 allowlist, rolled out, with no pod left terminating (untimed)."""
    actions.set_allowlist(runbook, config.allowlist_for(PHASE), action="benchmark reset")
    wait_for_rollout(runbook.api, runbook.namespace, runbook.deployment_name, timeout_s=120)
    replicas = config.replicas_for(PHASE)
    wait_until(lambda: len(runbook.pods()) == replicas, timeout_s=60, describe=f"exactly {replicas} flowengine pods")


def check_step1_done(runbook: actions.Runbook, config: DrillConfig) -> None:
    names = config.kubernetes
    deployment = runbook.deployment()
    pilot = (config.pilot_repo,)
    assert allowlist_of(deployment, names.container) == pilot, allowlist_of(deployment, names.container)
    assert rollout_state(deployment).done, rollout_state(deployment).message
    serving = {_pod_allowlist(p, names.container) for p in _settled_pods(runbook)}
    assert serving == {pilot}, serving


def step1_compare(bench: Bench, config: DrillConfig, results: Results, runs: int, log_dir: Path) -> None:
    """Step 1 by ``restrict_allowlist`` and by the runbook's three kubectl commands, alternating which goes first."""
    bench.reseed(config)
    runbook = bench.runbook(config)
    repos = len(config.expanded_for(PHASE))
    ways: list[tuple[str, Callable[[], object]]] = [
        ("drill", lambda: actions.restrict_allowlist(runbook)),
        ("kubectl", lambda: bench.shell(_step1_script(config), log_dir / "step1-kubectl.log")),
    ]
    for run in range(runs):
        elapsed = {}
        for name, way in ways if run % 2 == 0 else ways[::-1]:
            reset_allowlist(runbook, config)
            started = time.monotonic()
            way()
            elapsed[name] = time.monotonic() - started
            check_step1_done(runbook, config)
        group = "Step 1 vs kubectl"
        results.add(
            "step1.drill",
            elapsed["drill"],
            label="Step 1 by the drill (restrict_allowlist)",
            unit="s",
            group=group,
            repos=repos,
        )
        results.add(
            "step1.kubectl", elapsed["kubectl"], label="Step 1 by the runbook's kubectl set env / get / rollout status",
            unit="s", group=group, repos=repos,
        )  # fmt: skip
        results.add(
            "step1.ratio", elapsed["kubectl"] / elapsed["drill"], label="Step 1: kubectl time / drill time",
            unit="x", group=group, repos=repos,
        )  # fmt: skip


# --- Step 4: the drill's implementation against the runbook's per-repo kubectl loop ----------------


def _step4_script(config: DrillConfig) -> str:
    names = config.kubernetes
    ns, cm, mon = shlex.quote(names.namespace), shlex.quote(names.configmap), shlex.quote(names.monitoring_namespace)
    return (
        f"EXPANDED_REPOS=$(kubectl get configmap {cm} -n {ns} -o jsonpath='{{.data.expanded_repos}}')\n"
        "for repo in $EXPANDED_REPOS; do\n"
        f'  kubectl delete prometheusrule "${{repo}}-alerts" -n {mon}\n'
        "done\n"
        f"kubectl get prometheusrule -n {mon} -o name\n"
    )


def restore_rules(runbook: actions.Runbook, config: DrillConfig) -> None:
    """Every expanded repo's ``<repo>-alerts`` back, as seeded (untimed)."""
    rules = PrometheusRules(runbook.api, config.kubernetes.monitoring_namespace)
    repos = config.expanded_for(PHASE)
    with ThreadPoolExecutor(max_workers=RESTORE_CONCURRENCY) as pool:
        list(pool.map(lambda repo: rules.apply(manifests.alert_rule(repo, rules.namespace)), repos))
    wanted = {f"{r}-alerts" for r in repos}
    missing = wanted - rules.names()
    assert not missing, f"{len(missing)} rules not restored"


def check_step4_done(runbook: actions.Runbook, config: DrillConfig) -> None:
    left = PrometheusRules(runbook.api, config.kubernetes.monitoring_namespace).names() & {
        f"{r}-alerts" for r in config.expanded_for(PHASE)
    }
    assert not left, f"{len(left)} expanded-repo alert rules left, e.g. {sorted(left)[:3]}"


def check_backups(directory: Path, config: DrillConfig) -> None:
    found = {p.stem for p in directory.glob("*.yaml")}
    wanted = {f"{r}-alerts" for r in config.expanded_for(PHASE)}
    assert found == wanted, f"backups differ: {len(found)} found, {len(wanted)} wanted"


STEP4_WAYS = ("drill", "drill-concurrency-32", "listing", "kubectl")
"""The drill's Step 4 as it is; the same with 32 workers (its ``concurrency`` argument); the listing-based
variant proposed in ``proposals.py``; and the runbook's per-repo kubectl loop."""


def step4_compare(bench: Bench, config: DrillConfig, results: Results, runs: int, run_dir: Path) -> None:
    repos = len(config.expanded_for(PHASE))
    bench.reseed(config)
    runbook = bench.runbook(config)
    counter = iter(range(10**6))

    def backup_dir(name: str) -> Path:
        return run_dir / f"{name}-{next(counter)}"

    ways: dict[str, Callable[[Path], object]] = {
        "drill": lambda d: actions.disable_expanded_alerts(runbook, d),
        "drill-concurrency-32": lambda d: actions.disable_expanded_alerts(runbook, d, concurrency=32),
        "listing": lambda d: disable_alerts_from_listing(runbook, d),
        "kubectl": lambda _d: bench.shell(_step4_script(config), run_dir / "step4-kubectl.log"),
    }
    group = "Step 4 vs kubectl"
    for run in range(runs):
        order = list(STEP4_WAYS[run % len(STEP4_WAYS) :] + STEP4_WAYS[: run % len(STEP4_WAYS)])
        elapsed = {}
        for name in order:
            restore_rules(runbook, config)
            directory = backup_dir(name)
            started = time.monotonic()
            ways[name](directory)
            elapsed[name] = time.monotonic() - started
            check_step4_done(runbook, config)
            if name != "kubectl":
                check_backups(directory, config)
        labels = {
            "drill": "Step 4 by the drill (disable_expanded_alerts, 8 workers)",
            "drill-concurrency-32": "Step 4 by the drill with concurrency=32",
            "listing": "Step 4, proposed: backups from one listing, deletes with preconditions",
            "kubectl": "Step 4 by the runbook's loop (one kubectl delete per repo)",
        }
        for name in STEP4_WAYS:
            results.add(f"step4.{name}@{repos}", elapsed[name], label=labels[name], unit="s", group=group, repos=repos)
        results.add(
            f"step4.ratio@{repos}", elapsed["kubectl"] / elapsed["drill"],
            label="Step 4: kubectl loop time / drill time", unit="x", group=group, repos=repos,
        )  # fmt: skip
        results.add(
            f"step4.listing_speedup@{repos}", elapsed["drill"] / elapsed["listing"],
            label="Step 4: drill time / proposed listing variant time", unit="x", group=group, repos=repos,
        )  # fmt: skip


# --- evidence: recording Step 4's backups as artifacts -------------------------------------------------


def record_artifacts(results: Results, repos: int, runs: int, directory: Path) -> None:
    """What the drill's Step 4 does after the deletes: one ``recorder.add_artifact`` per backed-up rule.

    Against ``BatchingRecorder.add_artifacts`` (proposals.py), on the same files, alternating which goes first;
    the evidence.json and the artifact events of both are compared.
    """
    group = "evidence recording (Step 4's backups)"
    sample = yaml.safe_dump(manifests.alert_rule("service-000", "monitoring"), sort_keys=False)
    for run in range(runs):
        elapsed: dict[str, float] = {}
        recorded: dict[str, list[dict[str, Any]]] = {}
        for way in ("library", "batched") if run % 2 == 0 else ("batched", "library"):
            recorder = BatchingRecorder.create(directory / way, incident=INCIDENT)
            backups = recorder.bundle_dir / "backups" / "alerts"
            backups.mkdir(parents=True)
            paths = []
            for i in range(repos):
                path = backups / f"service-{i:03d}-alerts.yaml"
                path.write_text(sample.replace("service-000", f"service-{i:03d}"))
                paths.append(path)
            started = time.monotonic()
            if way == "library":
                for path in paths:
                    recorder.add_artifact(path)
            else:
                recorder.add_artifacts(paths)
            elapsed[way] = time.monotonic() - started
            recorded[way] = json.loads(recorder.evidence_path.read_text()).get("artifacts", [])
            events = [json.loads(line) for line in recorder.timeline_path.read_text().splitlines()]
            assert sum(1 for e in events if e["kind"] == "artifact_added") == repos
            recorder.finish("pass")
        assert recorded["library"] == recorded["batched"], "the batched recorder wrote different artifacts"
        results.add(
            f"evidence.add_artifact@{repos}", elapsed["library"],
            label="recorder.add_artifact once per backup (as the drill's Step 4)", unit="s", group=group, repos=repos,
        )  # fmt: skip
        results.add(
            f"evidence.add_artifacts_batched@{repos}", elapsed["batched"],
            label="proposed recorder.add_artifacts(backups), one write", unit="s", group=group, repos=repos,
        )  # fmt: skip


# --- the whole drill, as a user runs it ----------------------------------------------------------


def drill_once(bench: Bench, config_path: Path, repos: int, results: Results, *, out_dir: Path, run: int) -> None:
    """``rollback-drill run --env NAME --incident mass-failure`` with the N-repo configuration, timed from outside."""
    evidence_dir = out_dir / "drills"
    evidence_dir.mkdir(parents=True, exist_ok=True)
    before = set(evidence_dir.glob("*/evidence.json"))
    argv = [
        str(Path(sys.executable).parent / "rollback-drill"), "run", "--env", bench.state.name,
        "--incident", INCIDENT, "--phase", str(PHASE), "--config", str(config_path), "--evidence-dir", str(evidence_dir),
    ]  # fmt: skip
    log_path = out_dir / "logs" / f"drill-{repos}-{run}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("wb") as out:
        proc = subprocess.run(
            argv,
            cwd=Path(__file__).resolve().parents[1],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1500,
            check=False,
        )
    elapsed = time.monotonic() - started
    group = "whole drill"
    results.add(
        f"drill.total@{repos}",
        elapsed,
        label="whole drill (rollback-drill run, wall)",
        unit="s",
        group=group,
        repos=repos,
    )
    new = sorted(set(evidence_dir.glob("*/evidence.json")) - before)
    if not new:
        raise RuntimeError(f"rollback-drill run exited {proc.returncode} and left no bundle; see {log_path}")
    evidence = json.loads(new[-1].read_text())
    targets = {t["name"]: t for t in evidence.get("targets", [])}
    for name, label in (
        ("rollback_execution", "drill's own rollback_execution target (Step 1 start to Step 4 end)"),
        ("drill", "drill's own drill target (start to bundle sealed)"),
    ):
        if name in targets and targets[name].get("measured") is not None:
            results.add(
                f"drill.{name}@{repos}",
                float(targets[name]["measured"]),
                label=label,
                unit="s",
                group=group,
                repos=repos,
            )
    steps = {s["id"]: s for s in evidence.get("steps", [])}
    for step_id in ("step-1", "step-2", "step-3", "step-4"):
        if step_id in steps and steps[step_id].get("elapsed_s") is not None:
            results.add(
                f"drill.{step_id}@{repos}", float(steps[step_id]["elapsed_s"]), label=f"drill's {step_id} (with its checks)",
                unit="s", group=group, repos=repos,
            )  # fmt: skip
    if proc.returncode != 0 or evidence.get("verdict") != "pass":
        results.checks.append(
            f"drill at {repos} repos, run {run}: exit {proc.returncode}, verdict {evidence.get('verdict')} ({new[-1].parent.name})"
        )
