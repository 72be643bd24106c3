"""results.json → benchmarks/README.md and the plot of time against repo count.

Run by ``run.py`` at the end of every full run; also on its own, to regenerate the
README from an earlier run: ``.venv/bin/python benchmarks/report.py reports/bench/<stamp>/results.json``.
Nothing in the README is typed by hand: every number and every verdict comes from
the results file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PLOT_NAME = "scaling.png"
SIZES_PLOTTED = (
    ("rollback.execution", "rollback execution (Steps 1-4, library)"),
    ("drill.rollback_execution", "rollback execution as the drill measures it"),
    ("drill.total", "whole drill (rollback-drill run)"),
    ("world.seed", "world (re)seed"),
    ("step4.drill", "Step 4, drill"),
    ("step4.listing", "Step 4, proposed listing variant"),
    ("step4.kubectl", "Step 4, runbook kubectl loop"),
)


@dataclass(frozen=True)
class Goal:
    name: str
    figures: tuple[str, ...]
    """Figure ids (``*`` matches every repo count)."""
    op: str
    limit: float
    unit: str
    on: str = "median"
    """``median``: the median must meet the limit; ``worst``: every run must."""


GOALS = (
    Goal("environment up to ready", ("env.up",), "<=", 30, "s"),
    Goal("full drill (10 repos)", ("drill.total@10",), "<=", 180, "s"),
    Goal("full drill (50 repos)", ("drill.total@50",), "<=", 180, "s"),
    Goal("full drill (200 repos)", ("drill.total@200",), "<=", 180, "s"),
    Goal("rollback execution at 10 repos", ("rollback.execution@10",), "<=", 15, "s"),
    Goal("rollback execution at 200 repos", ("rollback.execution@200",), "<=", 40, "s"),
    Goal("rollback execution at 10 repos, as the drill measures it", ("drill.rollback_execution@10",), "<=", 15, "s"),
    Goal("rollback execution at 200 repos, as the drill measures it", ("drill.rollback_execution@200",), "<=", 40, "s"),
    Goal("Step 4 at 50 repos vs the per-repo kubectl loop", ("step4.ratio@50",), ">=", 5, "x faster"),
    Goal(
        "pilot probe >= 10 requests/s throughout the rollback (fewest requests in any 1 s window, every run, every size)",
        ("probe.worst_1s@*",),
        ">=",
        10,
        "req/s",
        on="worst",
    ),
)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit in {"req", "n"} or (float(value).is_integer() and abs(value) >= 100) or abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return text


def _matching(figures: dict[str, dict[str, Any]], pattern: str) -> list[dict[str, Any]]:
    if pattern.endswith("@*"):
        prefix = pattern[:-1]
        return [f for fid, f in figures.items() if fid.startswith(prefix)]
    return [figures[pattern]] if pattern in figures else []


def evaluate(goal: Goal, figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    found = [f for pattern in goal.figures for f in _matching(figures, pattern) if f["n"]]
    if not found:
        return {"goal": goal, "measured": "not measured", "met": None}
    better: Callable[[float, float], bool] = (lambda a, b: a <= b) if goal.op == "<=" else (lambda a, b: a >= b)
    pooled = [v for f in found for v in f["runs"]]
    median = statistics.median(pooled)
    worst = max(pooled) if goal.op == "<=" else min(pooled)
    decisive = worst if goal.on == "worst" else median
    met = better(decisive, goal.limit)
    runs = len(pooled)
    over = sum(1 for v in pooled if not better(v, goal.limit))
    measured = f"median {_fmt(median)} (min {_fmt(min(pooled))}, max {_fmt(max(pooled))}; {runs} runs)"
    note = "" if not over else f"{over} of {runs} runs miss the limit"
    return {"goal": goal, "measured": measured, "met": met, "note": note}


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional: only the bench extra installs it

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    figures = {f["id"]: f for f in results["figures"]}
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for prefix, label in SIZES_PLOTTED:
        points = sorted(
            (f["repos"], f["median"], f["min"], f["max"])
            for fid, f in figures.items()
            if fid.startswith(prefix + "@") and f["n"] and f["repos"]
        )
        if not points:
            continue
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        err = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=label)
    for y, text in (
        (180, "goal: drill ≤ 3 min"),
        (40, "goal: rollback ≤ 40 s at 200"),
        (15, "goal: rollback ≤ 15 s at 10"),
    ):
        ax.axhline(y, linestyle=":", linewidth=0.8, color="grey")
        ax.text(10, y * 1.04, text, fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([10, 50, 200], labels=["10", "50", "200"])
    ax.set_xlabel("expanded repos")
    ax.set_ylabel("seconds (median; bars: min-max)")
    ax.set_title(f"rollback-drill: time against repo count ({results['started_at']})")
    ax.grid(visible=True, which="both", linewidth=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _mmm(figure: dict[str, Any] | None) -> str:
    if not figure or not figure.get("n"):
        return "—"
    return f"{_fmt(figure['median'])} ({_fmt(figure['min'])}-{_fmt(figure['max'])})"


def _sized(figures: dict[str, dict[str, Any]], prefix: str) -> list[int]:
    return sorted({f["repos"] for fid, f in figures.items() if fid.startswith(prefix + "@") and f["repos"] and f["n"]})


def _better(figures: dict[str, dict[str, Any]], library: str, proposed: str, *, higher: bool = False) -> bool | None:
    a, b = figures.get(library), figures.get(proposed)
    if not (a and b and a["n"] and b["n"]):
        return None
    return b["median"] > a["median"] if higher else b["median"] < a["median"]


def _verdict(better: bool | None) -> str:
    if better is None:
        return "Not measured in this run."
    return "This run supports it." if better else "**This run does not support it** (the variant was not better)."


def _overlap_better(figures: dict[str, dict[str, Any]]) -> bool | None:
    """During Steps 1-4 at the largest size measured both ways: answers are slowest there."""
    sizes = _sized(figures, "probe_serial.worst_1s")
    if not sizes:
        return None
    top = max(sizes)
    return _better(figures, f"probe_serial.worst_1s@{top}", f"probe.worst_1s@{top}", higher=True)


def _overlap_verdict(better: bool | None) -> str:
    if better is None:
        return "Not measured in this run."
    if better:
        return (
            "In this run, during Steps 1-4 at the largest size, the overlapping probe kept more requests in its"
            " worst 1 s window than the serial one."
        )
    return (
        "**In this run, during Steps 1-4 at the largest size, the overlapping probe did not keep more requests in its"
        " worst 1 s window than the serial one.**"
    )


def _probe_comparison(figures: dict[str, dict[str, Any]]) -> list[str]:
    rows = [
        [
            "alone (no rollback): achieved rate, req/s",
            _mmm(figures.get("probe_alone.rate")),
            _mmm(figures.get("probe_serial_alone.rate")),
        ],
        [
            "alone: fewest requests in any 1 s window",
            _mmm(figures.get("probe_alone.worst_1s")),
            _mmm(figures.get("probe_serial_alone.worst_1s")),
        ],
        [
            "alone: P95 latency, ms",
            _mmm(figures.get("probe_alone.latency_p95")),
            _mmm(figures.get("probe_serial_alone.latency_p95")),
        ],
    ]
    for n in _sized(figures, "probe_serial.rate"):
        rows += [
            [
                f"during Steps 1-4 at {n} repos: achieved rate, req/s",
                _mmm(figures.get(f"probe.rate@{n}")),
                _mmm(figures.get(f"probe_serial.rate@{n}")),
            ],
            [
                f"during Steps 1-4 at {n} repos: fewest requests in any 1 s window",
                _mmm(figures.get(f"probe.worst_1s@{n}")),
                _mmm(figures.get(f"probe_serial.worst_1s@{n}")),
            ],
            [
                f"during Steps 1-4 at {n} repos: failed requests",
                _mmm(figures.get(f"probe.failed@{n}")),
                _mmm(figures.get(f"probe_serial.failed@{n}")),
            ],
            [
                f"rollback execution at {n} repos, s",
                _mmm(figures.get(f"rollback.execution@{n}")),
                _mmm(figures.get(f"rollback_serial_probe.execution@{n}")),
            ],
        ]
    return [
        "## The pilot probe: overlapping calls (what the drill runs) against one call at a time",
        "",
        "The drill's pilot probe (`DrillProbes.start`: `Probe(max_in_flight=PILOT_PROBE_MAX_IN_FLIGHT)`, 8) starts",
        "each request on its 10 Hz schedule and skips a slot only when 8 answers are still pending. A serial probe",
        "(`max_in_flight=1`) skips every slot a slow answer covers, so at 10 Hz any answer slower than 100 ms costs",
        "requests. The goal row above judges the drill's probe; the serial column shows why it overlaps. Alone, the",
        f"pilot flow's P95 latency in this run was {_fmt((figures.get('probe_alone.latency_p95') or {}).get('median'))} ms.",
        "Medians (min-max):",
        "",
        *_table(rows, ["", "drill's probe (overlapping)", "serial"]),
        "",
        _overlap_verdict(_overlap_better(figures)),
        "",
    ]


def _env_proposal(figures: dict[str, dict[str, Any]]) -> list[str]:
    parts = sorted({fid.split(".", 2)[2] for fid in figures if fid.startswith(("env.part.", "env_parallel.part."))})
    rows = [["**total, to ready**", _mmm(figures.get("env.up")), _mmm(figures.get("env_parallel.up"))]]
    rows += [
        [part.replace("_", " "), _mmm(figures.get(f"env.part.{part}")), _mmm(figures.get(f"env_parallel.part.{part}"))]
        for part in parts
    ]
    return [
        "### 1. Environment up: start the TaskDB container beside the control plane",
        "",
        "`environment.bring_up` starts its parts one after the other, but the TaskDB container needs nothing from",
        "the cluster, and the notification sinks need nothing from the simulator. `benchmarks/proposals.py::",
        "bring_up_parallel` is `bring_up(with_world=True)` with those two pairs started together (same parts, same",
        "state file written after each). Alternating cycles, seconds, median (min-max); the parts overlap in the",
        "proposal, so they add up to more than its total:",
        "",
        *_table(rows, ["part", "library `bring_up`", "proposed"]),
        "",
        _verdict(_better(figures, "env.up", "env_parallel.up")),
        "",
        "Change in `bring_up` (src/rollback_drill/environment.py): before the `binaries` part, when",
        "`existing_db is None`, submit `_timed(state, 'taskdb', progress, lambda: _start_taskdb(taskdb, directory, name))`",
        "to a `ThreadPoolExecutor(max_workers=1)`; after `nodes and namespaces` and `identify`, take",
        "`db = existing_db or future.result()`. In the `except BaseException` branch, wait for the future first and, if",
        "it produced a TaskDB, put it in `state.taskdb` before `tear_down(state)`, so a failed start-up still removes",
        "the container. Likewise submit `start_sinks(directory)` before `start_simulator(...)` and take its result",
        "after. `timings_s` keeps each part's own duration.",
        "",
    ]


def _evidence_proposal(figures: dict[str, dict[str, Any]]) -> list[str]:
    sizes = _sized(figures, "evidence.add_artifact")
    rows = [
        [
            str(n),
            _mmm(figures.get(f"evidence.add_artifact@{n}")),
            _mmm(figures.get(f"evidence.add_artifacts_batched@{n}")),
            _mmm(figures.get(f"rollback.step-4@{n}")),
            _mmm(figures.get(f"drill.step-4@{n}")),
        ]
        for n in sizes
    ]
    return [
        "### 2. Evidence: record Step 4's backups in one write",
        "",
        "The drill's Step 4 (`steps/runbook_steps.py::_step_4`) calls `recorder.add_artifact(path)` once per",
        "backed-up rule. Each call redacts, serialises, writes and fsyncs the whole evidence.json (which grows with",
        "every call) and fsyncs a timeline line: quadratic in the repo count. The last two columns put the library's",
        "`disable_expanded_alerts` beside the drill's Step 4, which adds this recording and the step's checks.",
        "`benchmarks/proposals.py::BatchingRecorder.add_artifacts(paths)` writes the same artifact entries and the",
        "same `artifact_added` events (checked equal) with one evidence.json rewrite and one fsync. Seconds, median",
        "(min-max):",
        "",
        *_table(
            rows,
            [
                "repos",
                "add_artifact per file",
                "add_artifacts (batch)",
                "library Step 4",
                "drill's Step 4 (with recording and checks)",
            ],
        ),
        "",
        _verdict(
            _better(
                figures,
                f"evidence.add_artifact@{max(_sized(figures, 'evidence.add_artifact'), default=0)}",
                f"evidence.add_artifacts_batched@{max(_sized(figures, 'evidence.add_artifact'), default=0)}",
            )
        ),
        "",
        "Change: add `Recorder.add_artifacts(paths: Sequence[Path]) -> list[dict]` to",
        "src/rollback_drill/evidence/recorder.py (hash and check every path first, then under the lock append all",
        "entries, call `_write_evidence()` once, write one `artifact_added` line per entry and fsync the timeline",
        "once), make `add_artifact` call it with one path, and in `_step_4` replace the loop with",
        "`recorder.add_artifacts(list(result.backups))`. The bundle's content is unchanged.",
        "",
    ]


def _listing_proposal(figures: dict[str, dict[str, Any]]) -> list[str]:
    rows = [
        [
            str(n),
            _mmm(figures.get(f"step4.drill@{n}")),
            _mmm(figures.get(f"step4.drill-concurrency-32@{n}")),
            _mmm(figures.get(f"step4.listing@{n}")),
            _mmm(figures.get(f"step4.listing_speedup@{n}")),
        ]
        for n in _sized(figures, "step4.listing_speedup")
    ]
    if not rows:
        return []
    top = max(_sized(figures, "step4.listing_speedup"))
    return [
        "### 3. Step 4: back up from the listing instead of a GET per rule",
        "",
        "`disable_expanded_alerts` (src/rollback_drill/runbook/actions.py) lists the rules, then GETs each one",
        "again to back it up before deleting it: two requests per repo. The listing already holds every object in",
        "full. `benchmarks/proposals.py::disable_alerts_from_listing` writes each backup from the listing and deletes",
        "with a `resourceVersion` precondition (a rule changed since the listing is refused with 409 and falls back",
        "to GET + backup + delete), so every removed rule still has a backup of exactly what was removed, and the",
        "same final check runs. Measured in the same runs, seconds (speed-up: x), median (min-max):",
        "",
        *_table(rows, ["repos", "drill (8 workers)", "drill, concurrency=32", "listing variant", "drill / listing"]),
        "",
        _verdict(_better(figures, f"step4.drill@{top}", f"step4.listing@{top}")),
        "",
        "Change in `disable_expanded_alerts`: run the drift patch first, then build",
        "`listed = {item['metadata']['name']: item for item in rules.items()}` once (instead of `rules.names()`),",
        "and in `backup_and_delete` write `listed[name]` and delete with",
        "`V1DeleteOptions(preconditions=V1Preconditions(resource_version=...))`, falling back to today's",
        "GET + backup + delete on 409. The concurrency=32 column is the library function with more workers, for",
        "comparison. Step 4's budget is 2 minutes; see the Step 4 figures for how far under it each way is.",
        "",
    ]


def _proposals(figures: dict[str, dict[str, Any]]) -> list[str]:
    """Library changes the numbers argue for, each with its numbers and a verdict from this run."""
    return [
        *_env_proposal(figures),
        *_evidence_proposal(figures),
        *_listing_proposal(figures),
    ]


def _load_note(load: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    median, cores = load["load_1m"]["median"], machine.get("cores") or 1
    if median is None:
        return []
    if median > cores:
        return [
            f"The machine was shared: the 1-minute load average (median {_fmt(median)}) was above its {cores} cores for",
            "the run, so other work competed for the CPU and every figure includes time spent waiting for it. The load",
            "at the start and end of each section is in results.json (`load.sections`).",
        ]
    return [f"The 1-minute load average (median {_fmt(median)}) stayed at or below the {cores} cores."]


def render(results: dict[str, Any], results_path: Path, plot_file: str | None) -> str:
    figures = {f["id"]: f for f in results["figures"]}
    machine, load = results["machine"], results["load"]
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by benchmarks/run.py (benchmarks/report.py) from results.json. Do not edit: run `make bench`. -->",
        "",
        "`make bench` brings up drill environments on this machine, measures how fast the environment and the",
        "rollback are and how they grow from 10 to 200 expanded repos, compares two runbook steps done by the drill",
        "with the runbook's literal kubectl commands, and measures the pilot probe. It writes",
        "`reports/bench/<UTC timestamp>/results.json`, a plot, and this page. It is not part of `make test`; run it",
        "before and after a change to how the drill talks to the cluster.",
        "",
        (
            f"Latest run: `{results_path}` — started {results['started_at']}, took {results['duration_s'] / 60:.1f} minutes"
            + (" (**quick mode: one run per figure, not for comparison**)" if results.get("quick") else "")
            + "."
        ),
        "",
        '## Goals (issue: "Benchmarks: how fast the drill environment and the rollback are")',
        "",
    ]
    goal_rows = []
    for goal in GOALS:
        verdict = evaluate(goal, figures)
        met = verdict["met"]
        status = "not measured" if met is None else ("**met**" if met else "**not met**")
        rule = "every run" if goal.on == "worst" else "median"
        goal_rows.append(
            [
                goal.name,
                f"{goal.op} {_fmt(goal.limit)} {goal.unit} ({rule})",
                verdict["measured"],
                status,
                verdict.get("note", ""),
            ]
        )
    lines += _table(goal_rows, ["goal", "limit (judged on)", "measured", "status", "note"])
    lines += [
        "",
        "## The machine",
        "",
        *_table(
            [
                ["cores", str(machine.get("cores"))],
                ["CPU", str(machine.get("cpu"))],
                ["memory", f"{machine.get('memory_gib')} GiB"],
                ["kernel", str(machine.get("kernel"))],
                ["OS", str(machine.get("os"))],
                ["Python", str(machine.get("python"))],
                [
                    "load average (1 min) during the run",
                    (
                        f"median {_fmt(load['load_1m']['median'])}, min {_fmt(load['load_1m']['min'])}, "
                        f"max {_fmt(load['load_1m']['max'])} ({len(load['samples_t_s_load_1m'])} samples, every 5 s)"
                    ),
                ],
            ],
            ["", ""],
        ),
        "",
        *_load_note(load, machine),
        "",
        "### Versions",
        "",
        *_table([[k, f"`{v}`"] for k, v in results["versions"].items()], ["component", "version"]),
        "",
        "## Figures",
        "",
        "Every figure is the median of its runs, with the min and max; `n` is the number of runs. Ratios are taken",
        "within one run (both ways measured back to back, alternating which goes first) and then summarised.",
        "",
    ]
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in results["figures"]:
        groups.setdefault(f["group"], []).append(f)
    for group, items in groups.items():
        lines += [f"### {group}", ""]
        rows = [
            [
                f["label"],
                str(f["repos"] or ""),
                _fmt(f["median"], f["unit"]),
                _fmt(f["min"], f["unit"]),
                _fmt(f["max"], f["unit"]),
                f["unit"],
                str(f["n"]),
            ]
            for f in sorted(items, key=lambda f: (f["id"].split("@")[0], f["repos"] or 0))
        ]
        lines += [*_table(rows, ["figure", "repos", "median", "min", "max", "unit", "n"]), ""]
    if plot_file:
        lines += ["## Time against repo count", "", f"![time against repo count]({plot_file})", ""]
    lines += [
        "## How each figure is taken",
        "",
        "- **Environment**: `environment.bring_up(name, with_world=True)` (control plane from the cached Go-built",
        "  binaries, kwok nodes, Postgres container, the Phase 6 world, the FlowEngine simulator and the notification",
        "  sinks) timed to its return, and `tear_down`; 3 fresh cycles. The parts are `state.timings_s`.",
        "- **In-world figures** run on one more environment, brought up once and reused; the world is reseeded",
        "  (`seed_world`) with a copy of drill.yaml holding N expanded repos at Phase 6.",
        "- **Rollback execution**: fresh world, `mass-failure` injected, pre-rollback check 3 (backup, verified",
        "  restore; not in the figure), then `restrict_allowlist`, `scale_down`, `revert_schema`,",
        "  `disable_expanded_alerts` timed back to back with the drill's two probes running, and the end state checked",
        "  (allowlist, replicas, schema version, no alert rule left).",
        "- **Whole drill**: `rollback-drill run --env NAME --incident mass-failure --phase 6 --config drill-N.yaml`",
        "  as a subprocess, wall time; its bundle's own `rollback_execution` and `drill` targets are listed beside it.",
        "- **Step 1 / Step 4 against kubectl**: the drill's function against the runbook's commands run by `bash` with",
        "  our Go-built kubectl (`ensure_binaries()['kubectl']`) and the environment's kubeconfig: Step 1 is",
        "  `kubectl set env ... REPO_ALLOWLIST=<pilot>`, the runbook's jsonpath check and `kubectl rollout status`;",
        "  Step 4 reads `EXPANDED_REPOS` from the ConfigMap and runs one `kubectl delete prometheusrule ${repo}-alerts`",
        "  per repo (the runbook's `kubectl patch` is refused by the API server, see CONVENTIONS), then lists the rules.",
        "  The same end state is asserted after each. The drill's Step 4 does more than the loop: it backs up every",
        "  rule first, tries the runbook's patch once to record the drift, and checks that no rule is left.",
        "- **Pilot probe**: the drill's pilot probe (10 Hz, `pilot_flow_call`, overlapping calls) during Steps 1-4. Achieved rate is",
        "  requests/s between the first and last request of the window; *fewest requests in any 1 s window* counts",
        "  requests started in every 1 s window that begins at a request and ends inside the rollback (10 means no",
        "  slot was missed). CPU: the probe thread's own CPU time (`time.thread_time`, read after each call), and,",
        "  with the probe alone, the process's `time.process_time` minus an idle baseline of the same length; the",
        "  simulator's CPU (from /proc) is the server side of the same requests.",
        "",
    ]
    lines += _probe_comparison(figures)
    lines += ["## Proposed library changes", ""]
    proposals = _proposals(figures)
    lines += proposals or ["None: no variant measured faster than the library.", ""]
    if results.get("checks") or results.get("errors"):
        lines += ["## Checks that did not pass, and sections that failed", ""]
        lines += [f"- {c}" for c in results.get("checks", [])]
        lines += [f"- section `{e['section']}`: {e['error'].splitlines()[0]}" for e in results.get("errors", [])]
        lines += [""]
    return "\n".join(lines)


def write(results_path: Path, *, readme: Path | None = HERE / "README.md") -> Path | None:
    results = json.loads(results_path.read_text())
    png = results_path.parent / PLOT_NAME
    plotted = plot(results, png)
    if readme is None:
        return None
    plot_file = None
    if plotted:
        shutil.copyfile(png, readme.parent / PLOT_NAME)
        plot_file = PLOT_NAME
    try:
        shown = results_path.resolve().relative_to(HERE.parent)
    except ValueError:
        shown = results_path
    readme.write_text(render(results, shown, plot_file))
    return readme


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path, help="reports/bench/<stamp>/results.json")
    args = parser.parse_args()
    print(write(args.results))


if __name__ == "__main__":
    main()
