"""Fix verification on staging: the runbook's soak test, as real, bounded HTTP load.

The runbook (Post-Rollback Analysis, "Fix Verification (Staging Environment)") says::

    kubectl apply -f <fix-manifest>.yaml -n staging
    blocks test soak --env staging --repos financial-reporting,customer-analytics --duration 2h --concurrency 5
    # Expected: Success rate >=99%, P95 latency <120s, zero recurrence of incident symptoms

``run_soak`` is that command: ``concurrency`` workers run real flows (``POST /api/v1/flows``
through ``FlowEngineClient.generate``) round-robin over the configured repos, back to back,
until the soak's duration (``soak.duration_s`` x time_scale) has passed or ``max_requests``
were sent, whichever comes first; it stops by itself. Its numbers are the requests' own
answers: success rate, P50/P95 of the flows' reported durations, how many requests, and how
many failed with the incident's own cause (a recurrence). The staging FlowEngine's
``/api/v1/stats`` over the same window is read back as a cross-check that every request
was a flow in staging's TaskDB.

Which FlowEngine: on staging, the staging FlowEngine's URL (``--flowengine-url``). In the
drill, a second simulator that serves what the ``flowengine`` pods of namespace ``staging``
allow (``fixtures/staging.py``), backed by its own database: after the rollback the
production FlowEngine refuses the soak's repos ("Restricted to pilot scope"), as it should.

``FlowMeasurement`` and ``Criteria`` are shared with the phased re-enablement, whose
monitoring windows apply the same success criteria.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from kubernetes import client
from psycopg import sql

from rollback_drill.config import DrillConfig, check_time_scale
from rollback_drill.errors import InputError, VerificationFailed, WaitTimeout
from rollback_drill.flowengine.client import FlowEngineClient, FlowEngineUnavailable, FlowResult, Stats
from rollback_drill.flowengine.incidents import CAUSES, TASKDB_INTEGRITY_CAUSE
from rollback_drill.kube.rollout import wait_for_rollout
from rollback_drill.runbook.actions import Runbook
from rollback_drill.taskdb import schema
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.timing.clock import Clock, SystemClock
from rollback_drill.timing.wait import wait_until

FIX_ANNOTATION: Final = "rollback-drill.io/fix"
"""Set on the staging pod template by ``deploy_fix_to_staging``: the drill's ``kubectl apply -f <fix-manifest>``."""
STAGING_DATABASE: Final = "flowengine_staging_db"
"""Staging's TaskDB in the drill: a database of its own on the drill's Postgres, so staging's flows never
mix with production's (the soak's numbers and production's Step 6 window stay apart)."""
SOAK_MAX_REQUESTS: Final = 50_000
"""A hard cap on the soak's requests. Far above what 5 workers send in the drill's scaled soak (a few
thousand in 7.2 s) and on staging (5 concurrent flows of 40-90 s for 2 h: about 600)."""
SERVED_TIMEOUT_S: Final = 60.0
"""How long a FlowEngine may take to serve a repo after its pods rolled out (a watch event or two)."""
JOIN_MARGIN_S: Final = 5.0
"""Beyond the duration and one request's timeout, how long load workers may take to stop."""
MIN_STATS_WINDOW_S: Final = 1.0
"""FlowEngine's ``/api/v1/stats`` refuses windows under one second."""


def symptom_causes(incident: str | None) -> frozenset[str]:
    """The failure causes that mean the incident is back: what its flows failed with.

    Incidents whose symptom is not a failed flow (a crash loop, a leak, spend, latency) have
    none here; their recurrence shows in the other criteria (unavailable answers fail the
    success rate, slow flows fail the P95).
    """
    if incident is None:
        return frozenset()
    if incident == "db-corruption":
        return frozenset({TASKDB_INTEGRITY_CAUSE})
    cause = CAUSES.get(incident)
    return frozenset({cause}) if cause else frozenset()


# --- one flow, many flows ----------------------------------------------------------------------


@dataclass(frozen=True)
class FlowSample:
    """One request's answer."""

    repo: str
    status: str
    """``completed``, ``failed``, ``refused`` or ``unavailable``."""
    duration_s: float | None
    """FlowEngine's reported duration of the flow (not the request's latency)."""
    cause: str | None
    """Why it failed (the flow's cause), was refused (the reason) or was not answered."""
    flow_id: int | None = None
    t_monotonic: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @classmethod
    def of(cls, result: FlowResult, t_monotonic: float = 0.0) -> FlowSample:
        cause = result.cause if result.status == "failed" else result.reason
        return cls(result.repo, result.status, result.duration_s, cause, result.flow_id, t_monotonic)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank percentile (Postgres' ``percentile_disc``): the smallest value with at least ``q`` of all at or below it."""
    if not 0 < q <= 1:
        raise ValueError(f"percentile q must be in (0, 1], got {q!r}")
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class FlowMeasurement:
    """What a set of requests measured. Every answer but ``completed`` counts against the success rate."""

    requests: int
    completed: int
    failed: int
    refused: int
    unavailable: int
    success_rate: float | None
    """completed / requests; None without requests."""
    p50_s: float | None
    p95_s: float | None
    """Of the completed flows' reported durations, as FlowEngine's own stats compute them."""
    recurrences: int
    """Failures with one of the incident's own causes."""
    causes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Every failure cause (or refusal reason) seen, with its count."""

    @classmethod
    def of(cls, samples: Sequence[FlowSample], symptoms: frozenset[str] = frozenset()) -> FlowMeasurement:
        statuses = Counter(s.status for s in samples)
        durations = [s.duration_s for s in samples if s.ok and s.duration_s is not None]
        requests = len(samples)
        return cls(
            requests=requests,
            completed=statuses["completed"],
            failed=statuses["failed"],
            refused=statuses["refused"],
            unavailable=statuses["unavailable"],
            success_rate=statuses["completed"] / requests if requests else None,
            p50_s=percentile(durations, 0.50),
            p95_s=percentile(durations, 0.95),
            recurrences=sum(1 for s in samples if is_recurrence(s, symptoms)),
            causes=MappingProxyType(dict(Counter(s.cause or s.status for s in samples if not s.ok))),
        )

    def evidence(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "failed": self.failed,
            "refused": self.refused,
            "unavailable": self.unavailable,
            "success_rate": _round(self.success_rate),
            "p50_s": self.p50_s,
            "p95_s": self.p95_s,
            "recurrences": self.recurrences,
            "causes": dict(self.causes),
        }


def is_recurrence(sample: FlowSample, symptoms: frozenset[str]) -> bool:
    return sample.status == "failed" and sample.cause in symptoms


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


@dataclass(frozen=True)
class Criteria:
    """The runbook's success criteria for the soak and for every re-enablement phase."""

    success_rate_min: float
    """'Success rate: >=99%': at least this fraction of flows complete."""
    p95_max_s: float
    """'P95 latency: <120s': strictly below this."""

    def problems(self, *, flows: int, success_rate: float | None, p95_s: float | None, recurrences: int) -> list[str]:
        """What the numbers fail; empty when they meet every criterion."""
        found = []
        if flows <= 0 or success_rate is None:
            found.append("no flow ran, so nothing was verified")
        elif success_rate < self.success_rate_min:
            found.append(f"success rate {success_rate:.2%} of {flows} flows (must be >= {self.success_rate_min:.0%})")
        if flows > 0 and p95_s is None:
            found.append("no flow completed, so there is no P95")
        elif p95_s is not None and p95_s >= self.p95_max_s:
            found.append(f"P95 {p95_s:.1f}s (must be < {self.p95_max_s:g}s)")
        if recurrences:
            found.append(f"{recurrences} recurrence(s) of the incident's symptom (must be zero)")
        return found

    def measurement_problems(self, measurement: FlowMeasurement) -> list[str]:
        return self.problems(
            flows=measurement.requests,
            success_rate=measurement.success_rate,
            p95_s=measurement.p95_s,
            recurrences=measurement.recurrences,
        )


# --- bounded load ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadRun:
    """What a bounded load sent and got back."""

    samples: tuple[FlowSample, ...]
    started_at: datetime
    elapsed_s: float
    stopped_early: str | None
    """Why the load stopped before its duration and count ran out, if it did."""


class _BoundedLoad:
    """The workers of one ``run_flows`` call and what they share."""

    def __init__(
        self,
        generate: Callable[[str], FlowResult],
        repos: Sequence[str],
        *,
        duration_s: float,
        max_requests: int,
        rate_hz: float | None,
        stop_on: Callable[[FlowSample], str | None] | None,
    ) -> None:
        self._generate = generate
        self._repos = repos
        self._max_requests = max_requests
        self._period = 1.0 / rate_hz if rate_hz else 0.0
        self._stop_on = stop_on
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._issued = 0
        self.samples: list[FlowSample] = []
        self.errors: list[BaseException] = []
        self.reasons: list[str] = []
        self.start = time.monotonic()
        self.deadline = self.start + duration_s

    def stop(self) -> None:
        self._stop.set()

    def _ticket(self) -> tuple[int, float] | None:
        """The next request's index and its start slot, or None once the count is used up or the load stopped."""
        with self._lock:
            if self._stop.is_set() or self._issued >= self._max_requests:
                return None
            index = self._issued
            self._issued += 1
        return index, self.start + index * self._period

    def worker(self) -> None:
        while (ticket := self._ticket()) is not None:
            index, slot = ticket
            if slot >= self.deadline:
                return
            # The pause before a paced request is the load's rate; stop() ends it at once.
            if slot > time.monotonic() and self._stop.wait(slot - time.monotonic()):
                return
            t0 = time.monotonic()
            if t0 >= self.deadline:
                return
            if not self._request(self._repos[index % len(self._repos)], t0):
                return

    def _request(self, repo: str, t0: float) -> bool:
        try:
            sample = FlowSample.of(self._generate(repo), t0)
        except FlowEngineUnavailable as exc:
            sample = FlowSample(repo, "unavailable", None, str(exc)[:200], None, t0)
        except Exception as exc:  # noqa: BLE001 - raised to the caller once the other workers have stopped
            with self._lock:
                self.errors.append(exc)
            self._stop.set()
            return False
        reason = self._stop_on(sample) if self._stop_on is not None else None
        with self._lock:
            self.samples.append(sample)
            if reason and not self.reasons:
                self.reasons.append(reason)
        if reason:
            self._stop.set()
            return False
        return True


def run_flows(
    generate: Callable[[str], FlowResult],
    repos: Sequence[str],
    *,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    rate_hz: float | None = None,
    stop_on: Callable[[FlowSample], str | None] | None = None,
    request_timeout_s: float = 5.0,
    clock: Clock | None = None,
) -> LoadRun:
    """Run flows round-robin over ``repos`` from ``concurrency`` workers, bounded in time and count.

    Each worker starts a request only while fewer than ``max_requests`` were started and
    ``duration_s`` has not passed; requests in flight finish. ``rate_hz`` paces all workers
    together on fixed slots (behind schedule, they catch up at once; the count bound still holds);
    without it they run back to back.
    ``stop_on`` sees every answer and ends the load when it returns a reason. An answer
    FlowEngine could not give (``FlowEngineUnavailable``) is an ``unavailable`` sample; any
    other error stops the load and is raised.
    """
    if not repos:
        raise InputError("a load needs at least one repo to run flows for")
    if concurrency < 1 or max_requests < 0 or not math.isfinite(duration_s) or duration_s < 0:
        raise InputError(
            f"a load needs concurrency >= 1, max_requests >= 0 and a finite duration >= 0; got {concurrency}, "
            f"{max_requests}, {duration_s}"
        )
    if rate_hz is not None and (not math.isfinite(rate_hz) or rate_hz <= 0):
        raise InputError(f"rate_hz must be a finite number > 0, got {rate_hz!r}")
    started_at = (clock if clock is not None else SystemClock()).wall()
    load = _BoundedLoad(
        generate, repos, duration_s=duration_s, max_requests=max_requests, rate_hz=rate_hz, stop_on=stop_on
    )
    threads = [threading.Thread(target=load.worker, name=f"flow-load-{i}", daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    join_deadline = load.deadline + request_timeout_s + JOIN_MARGIN_S
    for thread in threads:
        thread.join(max(0.0, join_deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        load.stop()
        raise WaitTimeout(
            f"flow load on {', '.join(repos)} did not stop within {join_deadline - load.start:.1f}s "
            f"({duration_s:.1f}s of load + one request's {request_timeout_s:g}s timeout); a request is hanging: "
            "give the FlowEngine client a timeout"
        )
    if load.errors:
        raise load.errors[0]
    ordered = tuple(sorted(load.samples, key=lambda s: s.t_monotonic))
    return LoadRun(ordered, started_at, time.monotonic() - load.start, load.reasons[0] if load.reasons else None)


def wait_served(flowengine: FlowEngineClient, repos: Iterable[str], *, timeout_s: float = SERVED_TIMEOUT_S) -> None:
    """Wait until FlowEngine serves every repo (``blocks config show`` says enabled)."""
    pending = list(repos)

    def served() -> bool:
        pending[:] = [repo for repo in pending if not flowengine.repo_config(repo).enabled]
        return not pending

    wait_until(
        served,
        timeout_s=timeout_s,
        interval_s=0.1,
        describe=f"FlowEngine at {flowengine.base_url} serving {', '.join(pending)}",
        hint="check REPO_ALLOWLIST of the flowengine pods and that they are Ready",
    )


@dataclass(frozen=True)
class ServerNumbers:
    """FlowEngine's own view of some repos over a window (``/api/v1/stats``)."""

    flows: int
    failed: int
    success_rate: float | None
    p95_s: float | None
    """The highest of the repos' P95s: an upper bound of their combined P95 (if every repo has 95 % of its
    flows at or under it, so do all of them together)."""

    @classmethod
    def of(cls, stats: Stats, repos: Iterable[str]) -> ServerNumbers:
        chosen = [r for r in (stats.repo(name) for name in repos) if r is not None]
        flows = sum(r.flows for r in chosen)
        failed = sum(r.failed for r in chosen)
        p95s = [r.p95_s for r in chosen if r.p95_s is not None]
        return cls(flows, failed, (flows - failed) / flows if flows else None, max(p95s) if p95s else None)

    def evidence(self) -> dict[str, Any]:
        return {
            "flows": self.flows,
            "failed": self.failed,
            "success_rate": _round(self.success_rate),
            "p95_s": self.p95_s,
        }


def read_server_numbers(
    flowengine: FlowEngineClient, repos: Iterable[str], since: datetime, clock: Clock | None = None
) -> ServerNumbers:
    """FlowEngine's stats of ``repos`` for the flows started since ``since``.

    ``since`` goes to FlowEngine as an absolute instant: a window measured here would be
    subtracted from FlowEngine's later clock and miss the soak's first flows by the request's latency.
    """
    now = (clock if clock is not None else SystemClock()).wall()
    window = max(MIN_STATS_WINDOW_S, (now - since).total_seconds())
    return ServerNumbers.of(flowengine.stats(window_s=window, since=since), repos)


# --- the soak ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakPlan:
    """``blocks test soak --env staging --repos ... --duration 2h --concurrency 5``, from the configuration."""

    repos: tuple[str, ...]
    concurrency: int
    runbook_duration_s: float
    """The soak's length as the runbook counts it: the configured 2 hours, or longer."""
    duration_s: float
    """What the drill soaks for: ``runbook_duration_s`` x time_scale."""
    max_requests: int
    criteria: Criteria
    incident: str | None
    symptoms: frozenset[str]

    @classmethod
    def from_config(
        cls,
        config: DrillConfig,
        *,
        time_scale: float,
        incident: str | None,
        runbook_duration_s: float | None = None,
        max_requests: int = SOAK_MAX_REQUESTS,
    ) -> SoakPlan:
        """The configured soak; ``runbook_duration_s`` lengthens it ("2-4 hours minimum"), never shortens it."""
        check_time_scale(time_scale)
        soak = config.soak
        duration = soak.duration_s if runbook_duration_s is None else runbook_duration_s
        if not math.isfinite(duration) or duration < soak.duration_s:
            raise InputError(
                f"a soak of {duration:g}s is shorter than the configured {soak.duration_s:g}s; the runbook asks for "
                "2-4 hours minimum, so a soak may be longer than configured, never shorter"
            )
        return cls(
            repos=soak.repos,
            concurrency=soak.concurrency,
            runbook_duration_s=duration,
            duration_s=duration * time_scale,
            max_requests=max_requests,
            criteria=Criteria(soak.success_rate_min, soak.p95_max_s),
            incident=incident,
            symptoms=symptom_causes(incident),
        )

    def evidence(self) -> dict[str, Any]:
        return {
            "repos": list(self.repos),
            "concurrency": self.concurrency,
            "runbook_duration_s": self.runbook_duration_s,
            "duration_s": round(self.duration_s, 6),
            "max_requests": self.max_requests,
            "success_rate_min": self.criteria.success_rate_min,
            "p95_max_s": self.criteria.p95_max_s,
            "incident": self.incident,
            "symptoms": sorted(self.symptoms),
        }


@dataclass(frozen=True)
class SoakResult:
    """What the soak measured, and whether the fix may go on to production re-enablement."""

    plan: SoakPlan
    flowengine_url: str
    started_at: datetime
    elapsed_s: float
    measurement: FlowMeasurement
    server: ServerNumbers
    """The staging FlowEngine's count of the soak repos' flows in the same window: every request the
    soak got an answer to should be one of them."""

    def problems(self) -> list[str]:
        return self.plan.criteria.measurement_problems(self.measurement)

    @property
    def passed(self) -> bool:
        return not self.problems()

    def evidence(self) -> dict[str, Any]:
        return {
            "env": "staging",
            "flowengine": self.flowengine_url,
            "started_at": self.started_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "elapsed_s": round(self.elapsed_s, 3),
            **self.plan.evidence(),
            **self.measurement.evidence(),
            "server_flows": self.server.flows,
            "passed": self.passed,
            "problems": self.problems(),
        }


def run_soak(staging: FlowEngineClient, plan: SoakPlan, *, clock: Clock | None = None) -> SoakResult:
    """Run the soak against the staging FlowEngine; stops by itself when its duration or count runs out.

    Refuses to start (``VerificationFailed``) when staging does not serve the soak's repos:
    a soak of refusals would verify nothing.
    """
    try:
        wait_served(staging, plan.repos)
    except WaitTimeout as exc:
        raise VerificationFailed(
            f"the staging FlowEngine at {staging.base_url} does not serve the soak's repos ({exc}); "
            "deploy the fix to staging with those repos in its REPO_ALLOWLIST first"
        ) from exc
    load = run_flows(
        staging.generate,
        plan.repos,
        concurrency=plan.concurrency,
        duration_s=plan.duration_s,
        max_requests=plan.max_requests,
        request_timeout_s=staging.timeout_s,
        clock=clock,
    )
    server = read_server_numbers(staging, plan.repos, load.started_at, clock)
    return SoakResult(
        plan=plan,
        flowengine_url=staging.base_url,
        started_at=load.started_at,
        elapsed_s=load.elapsed_s,
        measurement=FlowMeasurement.of(load.samples, plan.symptoms),
        server=server,
    )


# --- staging -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixDeployment:
    """``kubectl apply -f <fix-manifest>.yaml -n staging``, as the drill plays it."""

    fix_id: str
    namespace: str
    rollout: str
    cleared_incidents: tuple[str, ...]

    def evidence(self) -> dict[str, Any]:
        return {
            "fix_id": self.fix_id,
            "namespace": self.namespace,
            "rollout": self.rollout,
            "cleared_incidents": list(self.cleared_incidents),
        }


def deploy_fix_to_staging(
    runbook: Runbook, staging: FlowEngineClient, *, fix_id: str, timeout_s: float = 120
) -> FixDeployment:
    """Roll the fix out to the staging Deployment, and take the incident out of the FlowEngines.

    The fix is a new pod template (annotated with ``fix_id``), rolled out and waited for as
    ``kubectl rollout status`` would. The incident the drill injected lives in the
    simulators, so deploying the fix clears it there: in staging's FlowEngine, and in
    production's, where the same fix arrives with the re-enablement's rollouts.
    """
    runbook.guard("deploy the fix to staging")
    names = runbook.config.kubernetes
    patch = {"spec": {"template": {"metadata": {"annotations": {FIX_ANNOTATION: fix_id}}}}}
    client.AppsV1Api(runbook.api).patch_namespaced_deployment(
        names.deployment, names.staging_namespace, patch, field_validation="Strict"
    )
    state = wait_for_rollout(runbook.api, names.staging_namespace, names.deployment, timeout_s=timeout_s)
    cleared = (*staging.clear_incidents(), *runbook.flowengine.clear_incidents())
    return FixDeployment(fix_id, names.staging_namespace, state.message, tuple(dict.fromkeys(cleared)))


def provision_staging_taskdb(taskdb: TaskDB, config: DrillConfig, *, database: str = STAGING_DATABASE) -> TaskDB:
    """Staging's TaskDB for the drill: a database of its own beside production's, on the pilot's schema.

    Only on a Postgres the drill runs itself: a ``dsn`` TaskDB is somebody's real database,
    and a real staging has its own FlowEngine and TaskDB (``--flowengine-url``).
    """
    if taskdb.provider == "dsn":
        raise InputError(
            "--taskdb dsn: the drill does not create databases on a TaskDB it did not start; "
            "pass --flowengine-url with the staging FlowEngine to soak against"
        )
    with taskdb.connect() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    staging = replace(taskdb, database=database)
    schema.seed_schema(staging, config, 0)
    return staging
