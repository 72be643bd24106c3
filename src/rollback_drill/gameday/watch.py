"""Watching the drill world while people work: each runbook step is verified from observed state.

A participant's word never verifies a step (pre-1 aside, where reading logs leaves
no trace: there the incident must be live *and* someone must say they confirmed
it). Every check reuses the library's own reads: ``allowlist_of``,
``rollout_state``, ``ready_running_pods``, ``schema.current_version``,
``PrometheusRules.names``, ``system_health``, the sinks' journal.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from rollback_drill.config import DrillConfig
from rollback_drill.errors import DrillError
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.gameday.plan import MESSAGE_SERVICES
from rollback_drill.kube.rollout import rollout_state
from rollback_drill.kube.rules import PrometheusRules
from rollback_drill.runbook import actions
from rollback_drill.runbook.actions import Runbook
from rollback_drill.taskdb import schema
from rollback_drill.world.seed import allowlist_of

BACKUP_PATTERNS = (
    "flowengine_pre_rollback_*.yaml",
    "repo_config_pre_rollback_*.yaml",
    "taskdb_pre_rollback_*.sql.gz",
)
"""Where pre-rollback check 3 writes (``/tmp/`` of the runbook, the game day's directory here)."""

SERVICE_OK = {"slack": 200, "pagerduty": 202, "status-page": 201, "email": 250}
"""The answer a sink gives a message the real service would have accepted."""


@dataclass(frozen=True)
class Observation:
    """What a check saw: whether the step's expected state holds, and what was read."""

    ok: bool
    detail: str


@dataclass
class WatchContext:
    """What the checks need to know about the game day so far."""

    announced_journal_line: dict[str, int] = field(default_factory=dict)
    """Step id -> how many lines the sinks' journal had when the step was announced."""
    flow_baseline: int | None = None
    """Highest flow id in TaskDB when Step 4 was verified (or Step 5 announced): Step 5's flow must come after."""
    health_since_s: float | None = None
    """Seconds ago Step 6's window of flows starts (Step 4 verified, or Step 5 announced)."""
    acknowledged: set[str] = field(default_factory=set)
    """Steps some participant acknowledged."""


def _seen(detail: str) -> Observation:
    return Observation(ok=True, detail=detail)


def _not_yet(detail: str) -> Observation:
    return Observation(ok=False, detail=detail)


class Watcher:
    """Reads the cluster, TaskDB, FlowEngine, the sinks' journal and the backup directory."""

    def __init__(
        self,
        runbook: Runbook,
        *,
        incident: str,
        journal: Path,
        backup_dir: Path,
    ) -> None:
        self.runbook = runbook
        self.incident = incident
        self.journal = journal
        self.backup_dir = backup_dir

    @property
    def config(self) -> DrillConfig:
        return self.runbook.config

    @property
    def flowengine(self) -> FlowEngineClient:
        return self.runbook.flowengine

    # -- reads shared by several steps -----------------------------------------------------------

    def journal_entries(self) -> list[dict[str, Any]]:
        try:
            lines = self.journal.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            try:
                entries.append(json.loads(line))
            except ValueError:
                entries.append({})  # a line being written; it keeps its place
        return entries

    def journal_length(self) -> int:
        return len(self.journal_entries())

    def max_flow_id(self) -> int:
        with self.runbook.taskdb.connect() as conn:
            row = conn.execute("SELECT coalesce(max(id), 0) FROM flows").fetchone()
        return int(row[0]) if row else 0  # type: ignore[call-overload] # psycopg rows are untyped

    # -- one check per step ----------------------------------------------------------------------

    def check(self, step_id: str, ctx: WatchContext) -> Observation:
        """The step's expected state, observed now. Errors reading it count as not (yet) observed."""
        method = getattr(self, "_" + step_id.replace("-", "_"))
        try:
            result: Observation = method(ctx)
        except (ApiException, DrillError, OSError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            return Observation(ok=False, detail=f"could not read: {first}")
        return result

    def _pre_1(self, ctx: WatchContext) -> Observation:
        live = [record.name for record in self.flowengine.incidents()]
        if self.incident not in live:
            return _not_yet(f"incident {self.incident} not live in FlowEngine (live: {live or 'none'})")
        if "pre-1" not in ctx.acknowledged:
            return _not_yet(f"{self.incident} is live; waiting for a participant to confirm it (ack ROLE)")
        return _seen(f"{self.incident} live in FlowEngine and confirmed by a participant")

    def _messages(self, step_id: str, ctx: WatchContext) -> Observation:
        start = ctx.announced_journal_line.get(step_id)
        if start is None:
            return _not_yet("not announced yet")
        entries = self.journal_entries()[start:]
        needed = MESSAGE_SERVICES[step_id]
        got = {str(e.get("service")) for e in entries if e.get("status") == SERVICE_OK.get(str(e.get("service")), -1)}
        missing = [service for service in needed if service not in got]
        if missing:
            return _not_yet(f"waiting for {', '.join(missing)} (received since announced: {sorted(got) or 'nothing'})")
        return _seen(f"received {', '.join(needed)}")

    def _pre_2(self, ctx: WatchContext) -> Observation:
        return self._messages("pre-2", ctx)

    def _pre_3(self, _ctx: WatchContext) -> Observation:
        missing = []
        for pattern in BACKUP_PATTERNS:
            files = [p for p in self.backup_dir.glob(pattern) if p.is_file() and p.stat().st_size > 0]
            if pattern.endswith(".gz"):
                files = [p for p in files if _complete_gzip(p)]
            if not files:
                missing.append(pattern)
        if missing:
            return _not_yet(f"missing in {self.backup_dir}: {', '.join(missing)}")
        return _seen(f"backups present in {self.backup_dir}")

    def _step_1(self, _ctx: WatchContext) -> Observation:
        pilot = (self.config.pilot_repo,)
        deployment = self.runbook.deployment()
        allowlist = allowlist_of(deployment, self.config.kubernetes.container)
        if allowlist != pilot:
            return _not_yet(f"REPO_ALLOWLIST is {','.join(allowlist) or '(unset)'}")
        rollout = rollout_state(deployment)
        if not rollout.done and actions.crash_looping_pods(self.runbook):
            # As the drill's own Step 1: a crash-looping Deployment cannot finish a rollout; Step 2 restarts it.
            return _seen(f"REPO_ALLOWLIST={pilot[0]}; rollout blocked by the crash loop (Step 2 restarts FlowEngine)")
        if not rollout.done:
            return _not_yet(f"REPO_ALLOWLIST is {pilot[0]}; {rollout.message}")
        return _seen(f"REPO_ALLOWLIST={pilot[0]}, {rollout.message}")

    def _step_2(self, _ctx: WatchContext) -> Observation:
        target = self.config.replicas["pilot"]
        deployment = self.runbook.deployment()
        replicas = int(deployment.spec.replicas or 0) if deployment.spec else 0
        ready = actions.ready_running_pods(self.runbook)
        ok = replicas == target and ready == target
        return Observation(ok, f"replicas {replicas}, {ready} pods Running and Ready (expected {target} and {target})")

    def _step_3(self, _ctx: WatchContext) -> Observation:
        version = schema.current_version(self.runbook.taskdb)
        pilot = self.config.schema.pilot_version
        return Observation(version == pilot, f"schema version {version} (pilot {pilot})")

    def _step_4(self, _ctx: WatchContext) -> Observation:
        rules = PrometheusRules(self.runbook.api, self.config.kubernetes.monitoring_namespace).names()
        left = sorted(rules & {f"{repo}-alerts" for repo in self.runbook.expanded_repos()})
        if left:
            shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
            return _not_yet(f"{len(left)} expanded-repo alert rules left: {shown}")
        return _seen("no expanded-repo alert rule left")

    def _step_5(self, ctx: WatchContext) -> Observation:
        if ctx.flow_baseline is None:
            return _not_yet("waiting for Step 4 (the pilot flow must come after it)")
        with self.runbook.taskdb.connect() as conn:
            row = conn.execute(
                "SELECT id, status, gates_passed FROM flows WHERE repo = %s AND id > %s ORDER BY "
                "(status = 'completed' AND gates_passed = %s) DESC, id DESC LIMIT 1",
                (self.config.pilot_repo, ctx.flow_baseline, actions.QUALITY_GATES),
            ).fetchone()
        if row is None:
            return _not_yet(f"no {self.config.pilot_repo} flow in TaskDB after flow {ctx.flow_baseline}")
        flow_id, status, gates = row
        ok = status == "completed" and gates == actions.QUALITY_GATES
        return Observation(ok, f"pilot flow {flow_id}: {status}, {gates}/{actions.QUALITY_GATES} gates")

    def _step_6(self, ctx: WatchContext) -> Observation:
        if ctx.health_since_s is None:
            return _not_yet("waiting for Step 4 or Step 5 (the health window starts there)")
        report = actions.system_health(self.runbook, window_s=max(1.0, ctx.health_since_s))
        problems = report.problems(self.config.pilot_repo)
        if problems:
            return _not_yet("; ".join(problems))
        return _seen(f"healthy: pods {report.pods_ready}/{report.pods_expected}, db {report.db}, models healthy")

    def _step_7(self, ctx: WatchContext) -> Observation:
        return self._messages("step-7", ctx)

    def _step_8(self, ctx: WatchContext) -> Observation:
        return self._messages("step-8", ctx)


def _complete_gzip(path: Path) -> bool:
    """A dump still being written (the runbook's ``&``) is not a backup yet."""
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 16):
                pass
    except (OSError, EOFError, zlib.error):
        return False
    return True
