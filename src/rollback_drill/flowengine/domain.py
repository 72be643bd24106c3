"""FlowEngine's rules, without HTTP or TaskDB: a flow's outcome, its verification, health, stats and signals.

Each function takes what TaskDB and the injections said, and returns the document FlowEngine
answers with (or the values it writes). The simulator's other rooms fetch those inputs
(``store``), apply incidents (``faults``) and serve the answers (``api``, ``server``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from random import Random
from typing import Final

from rollback_drill.flowengine.incidents import (
    GATES,
    MODEL_PROVIDERS,
    MUTATION_GATE_MIN_KILL_RATE,
    TASKDB_INTEGRITY_CAUSE,
)
from rollback_drill.flowengine.injection_state import FlowEffect

SIGNAL_WINDOW_S: Final = 3600.0
"""Failures, flows and P95 in the signals are over the last hour."""
SPEND_WINDOW_S: Final = 86400.0
"""Daily spend is the cost of the flows of the last 24 hours."""
FAILED_DURATION_S: Final = (5.0, 30.0)
"""How long a failed flow runs before it fails."""
FLOW_FIELDS: Final = ("repo", "family", "block_type")
"""The string fields ``POST /api/v1/flows`` needs (``blocks generate --repo --family --block-type``)."""


def as_float(value: object) -> float | None:
    """A number from TaskDB (numeric, integer, double), or None."""
    if value is None:
        return None
    if isinstance(value, Decimal | int | float):
        return float(value)
    return None


class SharedRandom:
    """The simulated durations and costs: one seeded generator, drawn from by every request thread."""

    def __init__(self, rng: Random | None = None) -> None:
        self._rng = rng if rng is not None else Random()  # noqa: S311 - simulated durations, not secrets
        self._lock = threading.Lock()

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._rng.uniform(low, high)

    def random(self) -> float:
        with self._lock:
            return self._rng.random()

    @contextmanager
    def held(self) -> Iterator[Random]:
        """The generator itself, for a series of draws no other thread interleaves with."""
        with self._lock:
            yield self._rng


# --- flows ----------------------------------------------------------------------------------------


def missing_flow_fields(body: Mapping[str, object]) -> list[str]:
    """The fields of a flow request that are missing, empty or not strings."""
    return [key for key in FLOW_FIELDS if not isinstance(body.get(key), str) or not body[key]]


def pick_provider(draw: float) -> str:
    """The model provider of a flow, from a draw in [0, 1)."""
    return MODEL_PROVIDERS[int(draw * len(MODEL_PROVIDERS)) % len(MODEL_PROVIDERS)]


@dataclass(frozen=True)
class FlowOutcome:
    """What one flow comes to: why it failed (or None), how long it took, what it cost, which gates passed."""

    cause: str | None
    duration_s: float
    cost_usd: float
    gates: tuple[tuple[str, bool], ...]
    """(gate, passed) for each of the five gates, in ``GATES`` order."""

    @property
    def failed(self) -> bool:
        return self.cause is not None

    @property
    def status(self) -> str:
        return "failed" if self.failed else "completed"

    @property
    def gates_passed(self) -> int:
        return sum(1 for _, passed in self.gates if passed)

    def task_rows(self) -> list[tuple[str, str]]:
        """(gate, task status) as TaskDB's ``tasks`` records them: a failed flow skips its gates."""
        return [(gate, "skipped" if self.failed else ("passed" if passed else "failed")) for gate, passed in self.gates]


def flow_outcome(effect: FlowEffect, *, integrity_failed: bool, draw: Callable[[float, float], float]) -> FlowOutcome:
    """A flow under the active injections: TaskDB's failed integrity check fails it before anything else does."""
    cause = TASKDB_INTEGRITY_CAUSE if integrity_failed else effect.cause
    failed = cause is not None
    duration = round(draw(*FAILED_DURATION_S) if failed else draw(*effect.duration_range_s), 1)
    cost = 0.0 if failed else round(draw(*effect.cost_range_usd), 4)
    mutation_fails = effect.kill_rate < MUTATION_GATE_MIN_KILL_RATE
    gates = tuple((gate, not failed and not (gate == "mutation" and mutation_fails)) for gate in GATES)
    return FlowOutcome(cause, duration, cost, gates)


def flow_answer(outcome: FlowOutcome, *, flow_id: int, repo: str, provider: str | None) -> dict[str, object]:
    """The body of ``POST /api/v1/flows`` for a recorded flow (``provider`` None when TaskDB does not keep it)."""
    if outcome.failed:
        return {
            "status": "failed",
            "cause": outcome.cause,
            "flow_id": flow_id,
            "repo": repo,
            "duration_s": outcome.duration_s,
        }
    return {
        "flow_id": flow_id,
        "repo": repo,
        "status": "completed",
        "duration_s": outcome.duration_s,
        "cost_usd": outcome.cost_usd,
        "quality_gates": [{"name": gate, "passed": passed} for gate, passed in outcome.gates],
        "gates_passed": outcome.gates_passed,
        "provider": provider,
    }


def verification(
    flow_id: int, *, repo: object, status: object, task_status: Mapping[str, str], strict: bool
) -> dict[str, object]:
    """``blocks verify``: strict needs all five gates; lenient tolerates one failed gate; a failed flow never passes."""
    gates = [{"name": gate, "passed": task_status.get(gate) == "passed"} for gate in GATES]
    passed_count = sum(1 for g in gates if g["passed"])
    completed = status == "completed"
    passed = completed and (passed_count == len(GATES) if strict else passed_count >= len(GATES) - 1)
    return {
        "flow_id": flow_id,
        "repo": repo,
        "status": status,
        "strict": strict,
        "passed": passed,
        "gates": gates,
        "gates_passed": passed_count,
    }


# --- health ---------------------------------------------------------------------------------------


def health_reasons(
    *, crash_loop_s: float | None, taskdb_problem: str | None, credentials_leaked: bool, rate_limited: Sequence[str]
) -> list[str]:
    """Why ``/health`` says ``degraded``; empty when it is ``healthy``."""
    reasons: list[str] = []
    if crash_loop_s:
        reasons.append(f"flowengine crash loop: Deployment unavailable for {crash_loop_s:.0f} s")
    if taskdb_problem:
        reasons.append(f"TaskDB: {taskdb_problem}")
    if credentials_leaked:
        reasons.append("credential leak detected")
    if rate_limited:
        reasons.append(f"model providers rate-limiting: {', '.join(rate_limited)}")
    return reasons


# --- stats and signals ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowSummary:
    """Flows of one repo (or of all, ``repo`` None) in a window, as TaskDB aggregates them."""

    repo: str | None
    flows: int
    failed: int
    p50_s: object
    p95_s: object


def summary(row: WindowSummary) -> dict[str, object]:
    """One entry of ``/api/v1/stats``."""
    return {
        "flows": row.flows,
        "failed": row.failed,
        "success_rate": (row.flows - row.failed) / row.flows if row.flows else None,
        "p50_s": as_float(row.p50_s),
        "p95_s": as_float(row.p95_s),
    }


def stats_document(rows: Sequence[WindowSummary], *, window_s: float, since: str) -> dict[str, object]:
    """``/api/v1/stats``: the whole window, and each repo that ran flows in it."""
    overall = summary(WindowSummary(None, 0, 0, None, None))
    per_repo: dict[str, dict[str, object]] = {}
    for row in rows:
        if row.repo is None:
            overall = summary(row)
        else:
            per_repo[row.repo] = summary(row)
    return {"window_s": window_s, "since": since, **overall, "active_repos": sorted(per_repo), "repos": per_repo}


@dataclass(frozen=True)
class RepoFailures:
    """One served repo's flows and failures in its signal window, and the most common cause."""

    repo: str | None
    flows: int
    failed: int
    cause: str | None
    p95_s: object


def repo_signals(
    served: Sequence[str], rows: Sequence[RepoFailures], kill_rate: Callable[[str], float]
) -> tuple[list[dict[str, object]], float]:
    """The ``repos`` of the signals, one per served repo (a repo with no flows has none failing), and the P95."""
    by_repo = {row.repo: row for row in rows if row.repo is not None}
    p95 = next((as_float(row.p95_s) or 0.0 for row in rows if row.repo is None), 0.0)
    repos: list[dict[str, object]] = []
    for repo in served:
        row = by_repo.get(repo)
        repos.append(
            {
                "repo": repo,
                "failures_last_hour": row.failed if row else 0,
                "flows_last_hour": row.flows if row else 0,
                "cause": row.cause if row else None,
                "kill_rate": kill_rate(repo),
            }
        )
    return repos, p95
