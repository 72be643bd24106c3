"""`make bench`: how fast the drill environment and the rollback are, and how they grow from 10 to 200 repos.

One run, on this machine: 3 environment up/down cycles, then one more environment
reused for everything in-world (probe cost, rollback execution, Step 4 against the
runbook's kubectl loop, the whole drill at each repo count, Step 1 against kubectl).
Writes ``reports/bench/<UTC timestamp>/results.json`` (after every section), the plot,
and regenerates ``benchmarks/README.md`` from the results at the end.

    .venv/bin/python benchmarks/run.py            # the full run (make bench)
    .venv/bin/python benchmarks/run.py --quick    # one run of each, 10 repos only; README left alone
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import report
import scenarios
from results import Results, log, machine_info, versions

from rollback_drill import environment
from rollback_drill.toolchain.build import ensure_binaries
from rollback_drill.toolchain.images import ensure_postgres_image

ROOT = Path(__file__).resolve().parents[1]


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run of everything at 10 repos (a smoke test)")
    parser.add_argument("--sizes", help="expanded repo counts (default 10,50,200; with --quick, 10)")
    parser.add_argument("--out", type=Path, help="output directory (default reports/bench/<UTC timestamp>)")
    parser.add_argument(
        "--readme",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="regenerate benchmarks/README.md (default: yes unless --quick)",
    )
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Plan:
    """How many runs of what: at least 3 of everything, 5 of the cheap ones (a ``--quick`` run: 1)."""

    sizes: tuple[int, ...]
    env_cycles: int
    drill_overhead_runs: int
    probe_alone_runs: int
    probe_alone_window_s: float
    rollback_runs: int
    serial_probe_runs: int
    drill_runs: int
    step1_runs: int
    step4_runs: dict[int, int]
    evidence_runs: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        sizes = tuple(int(s) for s in (args.sizes or ("10" if args.quick else "10,50,200")).split(","))
        one = args.quick
        return cls(
            sizes=sizes,
            env_cycles=1 if one else 3,
            drill_overhead_runs=1 if one else 5,
            probe_alone_runs=1 if one else 5,
            probe_alone_window_s=5.0,
            rollback_runs=1 if one else 3,
            serial_probe_runs=1 if one else 3,
            drill_runs=1 if one else 3,
            step1_runs=1 if one else 5,
            step4_runs={n: 1 if one else (5 if n <= 50 else 3) for n in sizes},
            evidence_runs=1 if one else 5,
        )

    @property
    def serial_probe_sizes(self) -> tuple[int, ...]:
        return tuple(sorted({min(self.sizes), max(self.sizes)}))


def environment_cycles(results: Results, plan: Plan, name: str) -> None:
    """Fresh environments up and down: the library's bring_up and the proposed parallel one, alternating."""
    for cycle in range(1, plan.env_cycles + 1):
        for variant in (False, True) if cycle % 2 else (True, False):
            label = "proposed parallel bring-up" if variant else "library bring_up"
            with results.section(f"environment up/down, cycle {cycle}, {label}"):
                scenarios.env_cycle(results, f"{name}-{'p' if variant else 'c'}{cycle}", variant=variant)
    for _ in range(plan.drill_overhead_runs):
        with results.section("fixed cost of a drill run (imports, pytest collection)"):
            scenarios.drill_overhead(results, ROOT)


def evidence_recording(results: Results, plan: Plan, out: Path) -> None:
    """Step 4's backups recorded as artifacts, one call per file against one batched call (no cluster needed)."""
    for n in plan.sizes:
        with results.section(f"recording {n} Step 4 backups as evidence artifacts"):
            scenarios.record_artifacts(results, n, plan.evidence_runs, out / "work" / f"evidence-{n}")


def in_world(results: Results, plan: Plan, bench: scenarios.Bench, out: Path) -> None:
    """Everything measured on the one reused environment."""
    configs = {n: scenarios.write_config(n, out / "configs") for n in sorted({10, *plan.sizes})}
    work = out / "work"
    if bench.taskdb is not None:
        with bench.taskdb.connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
            results.versions["TaskDB server"] = str(row[0]) if row else "?"
    with results.section("pilot probe alone, against an idle baseline"):
        bench.reseed(configs[10][1])
        for _ in range(plan.probe_alone_runs):
            scenarios.probe_cost(bench, configs[10][1], results, plan.probe_alone_window_s)
    for n in plan.sizes:
        path, config = configs[n]
        for r in range(1, plan.rollback_runs + 1):
            with results.section(f"rollback execution at {n} repos, run {r}"):
                scenarios.rollback_once(bench, config, n, results, work / f"rollback-{n}-{r}")
        with results.section(f"Step 4 against the kubectl loop at {n} repos"):
            scenarios.step4_compare(bench, config, results, plan.step4_runs[n], work / f"step4-{n}")
        for r in range(1, plan.drill_runs + 1):
            with results.section(f"whole drill at {n} repos, run {r}"):
                scenarios.drill_once(bench, path, n, results, out_dir=out, run=r)
    for n in plan.serial_probe_sizes:
        for r in range(1, plan.serial_probe_runs + 1):
            with results.section(f"rollback execution at {n} repos with a serial pilot probe, run {r}"):
                run_dir = work / f"rollback-serial-probe-{n}-{r}"
                scenarios.rollback_once(bench, configs[n][1], n, results, run_dir, serial_probe=True)
    with results.section("Step 1 against kubectl set env + rollout status"):
        scenarios.step1_compare(bench, configs[10][1], results, plan.step1_runs, work)


def run(args: argparse.Namespace) -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or ROOT / "reports" / "bench" / stamp
    out.mkdir(parents=True, exist_ok=True)
    # The benchmark's environments, and the history of its drills, stay in its own directory: it neither lists
    # nor touches anyone else's environment, and its drills do not count in `rollback-drill history`/`schedule`.
    os.environ["XDG_STATE_HOME"] = str(out / "state")
    results = Results(out / "results.json", quick=args.quick)
    plan = Plan.from_args(args)
    results.params = {
        **asdict(plan),
        "serial_probe_sizes": plan.serial_probe_sizes,
        "phase": scenarios.PHASE,
        "incident": scenarios.INCIDENT,
    }
    log(
        f"writing to {out}; if interrupted, remove what is left with: XDG_STATE_HOME={out / 'state'} rollback-drill env down --name NAME"
    )
    results.machine = machine_info()
    kubectl = ensure_binaries()["kubectl"]
    results.versions = versions(kubectl, ROOT)
    results.versions["TaskDB image"] = ensure_postgres_image()
    results.save()
    name = f"bench-{stamp.lower()}"
    try:
        environment_cycles(results, plan, name)
        evidence_recording(results, plan, out)
        log(f"== bringing up {name}, reused for every in-world measurement")
        state = environment.bring_up(name, with_world=True, phase=scenarios.PHASE, progress=scenarios.progress)
        bench = scenarios.Bench(state, kubectl, out / "work")
        try:
            in_world(results, plan, bench, out)
        finally:
            bench.close()
            started = time.monotonic()
            environment.tear_down(state)
            log(f"== {name} torn down in {time.monotonic() - started:.1f}s")
    finally:
        results.load.stop()
        results.save()
    write_readme = (not args.quick) if args.readme is None else args.readme
    readme = report.write(results.path, readme=report.HERE / "README.md" if write_readme else None)
    if readme:
        # The page and the numbers it was made from are committed together, so either can be checked.
        shutil.copy2(results.path, report.HERE / "results.json")
    log(f"results: {results.path}" + (f"; README: {readme}" if readme else ""))
    return 1 if results.errors else 0


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    return run(parse(argv))


if __name__ == "__main__":
    sys.exit(main())
