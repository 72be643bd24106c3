"""RB-LAUNCH-002, one function per runbook action.

Each function does what the runbook's commands do, through the official
Kubernetes client (strict field validation on every write) and real
pg_dump/psql, then checks the state the runbook expects. Each returns a frozen
result that says what changed and what was already so, which makes a second
rollback an honest no-op report instead of a silent one. Destructive actions
pass the identity guard first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollback_drill.config import DrillConfig
from rollback_drill.errors import DrillError, VerificationFailed, WaitTimeout
from rollback_drill.flowengine.client import FlowEngineClient, FlowResult, Verification
from rollback_drill.flowengine.incidents import MODEL_PROVIDERS
from rollback_drill.kube.rollout import ApiOutage, api_error_line, rollout_state, wait_for_rollout
from rollback_drill.kube.rules import PrometheusRules
from rollback_drill.targets.cluster import Cluster, guard_destructive
from rollback_drill.taskdb import backup as taskdb_backup
from rollback_drill.taskdb import schema
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.timing.wait import wait_until
from rollback_drill.world.manifests import FAULT_ANNOTATION, RESTARTED_AT, allowlist_value
from rollback_drill.world.seed import allowlist_of

RESTRICTED_REASON = "Restricted to pilot scope"
RUNBOOK_ALERT_PATCH = [{"op": "replace", "path": "/spec/groups/0/rules/0/enabled", "value": False}]
"""Step 4 as the runbook writes it. PrometheusRule has no such field (CONVENTIONS, Step 4)."""
PILOT_FLOW_DURATION_MAX_S = 120
PILOT_FLOW_COST_MAX_USD = 2.0
QUALITY_GATES = 5
STEP_1_ROLLOUT_TIMEOUT_S = 120
STEP_2_ROLLOUT_TIMEOUT_S = 180


@dataclass(frozen=True)
class Runbook:
    """What the runbook acts on, in one place: the cluster, TaskDB, FlowEngine and the configuration."""

    api: client.ApiClient
    cluster: Cluster
    config: DrillConfig
    taskdb: TaskDB
    flowengine: FlowEngineClient
    cluster_allowlist: frozenset[str] = frozenset()
    known_drill_clusters: frozenset[str] = frozenset()

    @property
    def namespace(self) -> str:
        return self.config.kubernetes.namespace

    @property
    def deployment_name(self) -> str:
        return self.config.kubernetes.deployment

    def guard(self, action: str) -> None:
        guard_destructive(self.cluster, self.cluster_allowlist, self.known_drill_clusters, action)

    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def deployment(self) -> client.V1Deployment:
        return self.apps().read_namespaced_deployment(self.deployment_name, self.namespace)

    def pods(self) -> list[client.V1Pod]:
        return list(self.core().list_namespaced_pod(self.namespace, label_selector=f"app={self.deployment_name}").items)

    def expanded_repos(self) -> tuple[str, ...]:
        """``kubectl get configmap repo-config -o jsonpath='{.data.expanded_repos}'``, split on white space."""
        cm = self.core().read_namespaced_config_map(self.config.kubernetes.configmap, self.namespace)
        return tuple((cm.data or {}).get("expanded_repos", "").split())


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d_%H%M%S")


# --- pre-rollback ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentConfirmation:
    """Pre-rollback check 1: the error lines and the failures by repo the runbook looks at."""

    error_lines: tuple[str, ...]
    failures_by_repo: dict[str, float]

    @property
    def failing_repos(self) -> tuple[str, ...]:
        return tuple(repo for repo, count in sorted(self.failures_by_repo.items(), key=lambda kv: -kv[1]) if count > 0)

    def evidence(self) -> dict[str, Any]:
        return {"error_lines": len(self.error_lines), "failures_by_repo": self.failures_by_repo}


def confirm_incident(runbook: Runbook, *, tail: int = 100) -> IncidentConfirmation:
    """``kubectl logs deployment/flowengine --tail=100 | grep "ERROR\\|CRITICAL"`` and failures grouped by repo."""
    logs = runbook.flowengine.logs(tail=tail)
    failures: dict[str, float] = {}
    for sample in runbook.flowengine.metric_samples("flow_failures_total"):
        repo = sample.label("repo")
        if repo:
            failures[repo] = failures.get(repo, 0.0) + sample.value
    return IncidentConfirmation(logs.errors(), failures)


@dataclass
class Backups:
    """Pre-rollback check 3. The TaskDB dump runs in the background, as the runbook's ``&`` does."""

    deployment_yaml: Path
    configmap_yaml: Path
    taskdb: taskdb_backup.AsyncBackup
    deployment: dict[str, Any] = field(repr=False, default_factory=dict)
    configmap: dict[str, Any] = field(repr=False, default_factory=dict)
    verified: taskdb_backup.RestoreCheck | None = None


def backup_state(runbook: Runbook, directory: Path) -> Backups:
    """Export the Deployment and the repo-config ConfigMap as YAML; start the TaskDB backup and return at once."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = _timestamp()
    api = runbook.api
    deployment = api.sanitize_for_serialization(runbook.deployment())
    configmap = api.sanitize_for_serialization(
        runbook.core().read_namespaced_config_map(runbook.config.kubernetes.configmap, runbook.namespace)
    )
    deployment_yaml = directory / f"flowengine_pre_rollback_{stamp}.yaml"
    configmap_yaml = directory / f"repo_config_pre_rollback_{stamp}.yaml"
    deployment_yaml.write_text(yaml.safe_dump(deployment, sort_keys=False))
    configmap_yaml.write_text(yaml.safe_dump(configmap, sort_keys=False))
    dump = taskdb_backup.AsyncBackup(runbook.taskdb, directory / f"taskdb_pre_rollback_{stamp}.sql.gz").start()
    return Backups(deployment_yaml, configmap_yaml, dump, deployment, configmap)


def verify_backup(runbook: Runbook, backups: Backups, *, timeout_s: float = 120) -> taskdb_backup.RestoreCheck:
    """Wait for the dump, restore it into a scratch database and compare it with the snapshot it was taken from."""
    result = backups.taskdb.wait(timeout_s)
    check = taskdb_backup.verify_restorable(runbook.taskdb, result)
    if not check.matches:
        raise VerificationFailed(
            f"the TaskDB backup {result.path.name} does not restore faithfully: {'; '.join(check.mismatches)}"
        )
    backups.verified = check
    return check


# --- Step 1 ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllowlistChange:
    before: tuple[str, ...]
    after: tuple[str, ...]
    already_done: bool
    rollout: str
    blocked_by_crash_loop: bool = False
    api_server_unreachable_s: float = 0.0
    """Seconds the step found the API server unreachable and waited for it (a restart it rode out)."""

    def evidence(self) -> dict[str, Any]:
        return {
            "before": list(self.before),
            "after": list(self.after),
            "already_done": self.already_done,
            "rollout": self.rollout,
            "blocked_by_crash_loop": self.blocked_by_crash_loop,
            "api_server_unreachable_s": round(self.api_server_unreachable_s, 3),
        }


def _pod_name(pod: client.V1Pod) -> str:
    return str(pod.metadata.name) if pod.metadata and pod.metadata.name else "?"


def _container_statuses(pod: client.V1Pod) -> list[client.V1ContainerStatus]:
    return list(pod.status.container_statuses or []) if pod.status else []


def crash_looping_pods(runbook: Runbook) -> list[str]:
    return [
        _pod_name(pod)
        for pod in runbook.pods()
        if any(
            cs.state and cs.state.waiting and cs.state.waiting.reason == "CrashLoopBackOff"
            for cs in _container_statuses(pod)
        )
    ]


def set_allowlist(runbook: Runbook, repos: tuple[str, ...], *, action: str) -> tuple[tuple[str, ...], bool]:
    """``kubectl set env deployment/flowengine REPO_ALLOWLIST=...``: a strategic-merge patch of the container's env.

    Returns (the allowlist before, whether it already had this value).
    """
    runbook.guard(action)
    before = allowlist_of(runbook.deployment(), runbook.config.kubernetes.container)
    if before == repos:
        return before, True
    _patch_allowlist(runbook, repos)
    return before, False


def _patch_allowlist(runbook: Runbook, repos: tuple[str, ...]) -> None:
    """The strategic-merge patch itself. It sets a value, so sending it twice is the same as once."""
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": runbook.config.kubernetes.container,
                            "env": [{"name": "REPO_ALLOWLIST", "value": allowlist_value(repos)}],
                        }
                    ]
                }
            }
        }
    }
    runbook.apps().patch_namespaced_deployment(
        runbook.deployment_name, runbook.namespace, patch, field_validation="Strict"
    )


def wait_rollout_unless_crash_loop(
    runbook: Runbook, timeout_s: float, outage: ApiOutage | None = None
) -> tuple[str, bool]:
    """``kubectl rollout status`` — but a crash-looping Deployment cannot finish a rollout, and says so at once.

    An API server that is unreachable for a while (a restart) is waited for within the same
    timeout; ``outage`` keeps how long it was gone. Returns (kubectl's message, whether the
    rollout is blocked by a crash loop).
    """
    deadline = time.monotonic() + timeout_s
    calls = outage or ApiOutage(runbook.api)

    def settled() -> tuple[str, bool] | None:
        state = rollout_state(calls.call(runbook.deployment))
        if state.done:
            return state.message, False
        if state.failed:
            raise VerificationFailed(state.message)
        looping = calls.call(lambda: crash_looping_pods(runbook))
        if looping:
            return (
                f"rollout blocked: {len(looping)} pod(s) in CrashLoopBackOff ({', '.join(sorted(looping)[:3])})",
                True,
            )
        return None

    return wait_until(
        settled,
        timeout_s=max(0.0, deadline - time.monotonic()),
        interval_s=0.25,
        describe=f"rollout of deployment/{runbook.deployment_name} in {runbook.namespace}",
        hint=f"kubectl -n {runbook.namespace} get pods -l app={runbook.deployment_name}",
    )


def restrict_allowlist(runbook: Runbook, *, timeout_s: float = STEP_1_ROLLOUT_TIMEOUT_S) -> AllowlistChange:
    """Step 1: REPO_ALLOWLIST = the pilot only, verified with the runbook's jsonpath, rolled out.

    The whole step shares one deadline. An API server that goes away and comes back within
    it (a restart) is waited for, and the time it was gone is part of the result. A step
    that does not finish says, in one line, what it had already changed.
    """
    pilot = (runbook.config.pilot_repo,)
    container = runbook.config.kubernetes.container
    runbook.guard("restrict the allowlist (Step 1)")
    deadline = time.monotonic() + timeout_s
    outage = ApiOutage(runbook.api)

    def until_deadline(describe: str, call: Callable[[], Any]) -> Any:
        """One call, tried again while the API server is unreachable, until the step's deadline."""
        results: list[Any] = []

        def attempt() -> bool:
            results.append(outage.call(call))
            return True

        wait_until(attempt, timeout_s=max(0.0, deadline - time.monotonic()), interval_s=0.25, describe=describe)
        return results[0]

    def read_allowlist() -> tuple[str, ...]:
        return allowlist_of(runbook.deployment(), container)

    changed = "REPO_ALLOWLIST was not changed"
    try:
        before: tuple[str, ...] = until_deadline("REPO_ALLOWLIST to be read", read_allowlist)
        already = before == pilot
        if already:
            changed = f"REPO_ALLOWLIST already read {pilot[0]!r} and its rollout was not confirmed"
        else:
            changed = (
                f"REPO_ALLOWLIST may read {pilot[0]!r} already (was {allowlist_value(before)!r}): "
                "the patch was sent but not acknowledged"
            )
            until_deadline("REPO_ALLOWLIST to be patched", lambda: _patch_allowlist(runbook, pilot))
            changed = (
                f"REPO_ALLOWLIST was changed to {pilot[0]!r} (was {allowlist_value(before)!r}) "
                "but its rollout was not confirmed"
            )
        after: tuple[str, ...] = until_deadline("REPO_ALLOWLIST to be read back", read_allowlist)
        if after != pilot:
            raise VerificationFailed(
                f"REPO_ALLOWLIST reads {allowlist_value(after)!r} after Step 1, expected {pilot[0]!r}"
            )
        message, blocked = wait_rollout_unless_crash_loop(runbook, max(0.0, deadline - time.monotonic()), outage)
    except (DrillError, ApiException) as exc:
        raise _step_1_incomplete(runbook, exc, outage, timeout_s, changed) from exc
    return AllowlistChange(before, after, already, message, blocked, outage.unreachable_s)


def _step_1_incomplete(
    runbook: Runbook, exc: DrillError | ApiException, outage: ApiOutage, timeout_s: float, changed: str
) -> VerificationFailed:
    """One line: why Step 1 stopped, what it had changed by then (a half-applied step is never silent), what next."""
    down_for = outage.down_for_s
    if down_for is not None:
        why = (
            f"the Kubernetes API server at {outage.server} was unreachable ({outage.last_reason}) "
            f"for the last {down_for:.1f}s of the step's {timeout_s:g}s"
        )
    elif isinstance(exc, ApiException):
        why = api_error_line(exc)
    else:
        why = " ".join(str(exc).split())
    return VerificationFailed(
        f"Step 1 did not finish: {why}; {changed}; check with "
        f"`kubectl -n {runbook.namespace} rollout status deployment/{runbook.deployment_name}` and run Step 1 again "
        "(it only sets the allowlist, so repeating it is safe)"
    )


# --- Step 2 ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleResult:
    before: int
    after: int
    scaled: bool
    restarted: bool
    ready_pods: int
    rollout: str

    def evidence(self) -> dict[str, Any]:
        return {
            "before": self.before,
            "after": self.after,
            "scaled": self.scaled,
            "restarted": self.restarted,
            "ready_pods": self.ready_pods,
            "rollout": self.rollout,
        }


def ready_running_pods(runbook: Runbook) -> int:
    count = 0
    for pod in runbook.pods():
        if pod.metadata and pod.metadata.deletion_timestamp:
            continue
        status = pod.status
        if (
            status
            and status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])
        ):
            count += 1
    return count


def restart_with_pilot_config(runbook: Runbook) -> None:
    """``kubectl rollout restart`` with the pilot's configuration: the restartedAt annotation, and no staged fault."""
    runbook.guard("restart FlowEngine (Step 2)")
    spec = runbook.deployment().spec
    template_meta = spec.template.metadata if spec and spec.template else None
    template_annotations = (template_meta.annotations or {}) if template_meta else {}
    annotations: dict[str, str | None] = {RESTARTED_AT: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if FAULT_ANNOTATION in template_annotations:
        annotations[FAULT_ANNOTATION] = None  # strategic merge: null removes the key
    patch = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
    runbook.apps().patch_namespaced_deployment(
        runbook.deployment_name, runbook.namespace, patch, field_validation="Strict"
    )


def scale_down(runbook: Runbook, *, timeout_s: float = STEP_2_ROLLOUT_TIMEOUT_S) -> ScaleResult:
    """Step 2: replicas above the pilot's baseline go back to it; a crash loop is restarted with the pilot config."""
    pilot_replicas = runbook.config.replicas["pilot"]
    apps = runbook.apps()
    before = int(apps.read_namespaced_deployment_scale(runbook.deployment_name, runbook.namespace).spec.replicas or 0)  # type: ignore[union-attr]
    scaled = before > pilot_replicas
    if scaled:
        runbook.guard("scale FlowEngine down (Step 2)")
        apps.patch_namespaced_deployment_scale(
            runbook.deployment_name,
            runbook.namespace,
            {"spec": {"replicas": pilot_replicas}},
            field_validation="Strict",
        )
    restarted = bool(crash_looping_pods(runbook))
    if restarted:
        restart_with_pilot_config(runbook)
    state = wait_for_rollout(runbook.api, runbook.namespace, runbook.deployment_name, timeout_s=timeout_s)
    after = int(apps.read_namespaced_deployment_scale(runbook.deployment_name, runbook.namespace).spec.replicas or 0)  # type: ignore[union-attr]
    ready = wait_until(
        lambda: (n := ready_running_pods(runbook)) == after and n,
        timeout_s=30,
        describe=f"{after}/{after} flowengine pods Running and Ready",
    )
    return ScaleResult(before, after, scaled, restarted, int(ready), state.message)


# --- Step 3 ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaRevert:
    before: str | None
    after: str | None
    reverted: bool
    restored_from_backup: bool = False

    def evidence(self) -> dict[str, Any]:
        return {
            "before": self.before,
            "after": self.after,
            "reverted": self.reverted,
            "restored_from_backup": self.restored_from_backup,
        }


def revert_schema(
    runbook: Runbook,
    backup: taskdb_backup.BackupResult | None,
    *,
    apply_sql: Callable[[TaskDB], None] = schema.apply_rollback_sql,
) -> SchemaRevert:
    """Step 3: if the schema is later than the pilot's, apply rollback_to_pilot.sql and check the version.

    Refuses to touch the schema without a backup proven restorable. If the revert
    fails, TaskDB is restored from that backup and the step fails with the reason.
    """
    pilot = runbook.config.schema.pilot_version
    before = schema.current_version(runbook.taskdb)
    if before is not None and before <= pilot:
        return SchemaRevert(before, before, reverted=False)
    if backup is None:
        raise VerificationFailed(
            f"refusing to revert the TaskDB schema ({before} → {pilot}) without a verified pre-rollback backup; "
            "pre-rollback check 3 must finish first"
        )
    runbook.guard("revert the TaskDB schema (Step 3)")
    try:
        apply_sql(runbook.taskdb)
        after = schema.current_version(runbook.taskdb)
        _require_version(after, pilot)
    except Exception as exc:
        taskdb_backup.restore_in_place(runbook.taskdb, backup.path)
        restored = schema.current_version(runbook.taskdb)
        raise VerificationFailed(
            f"reverting the schema failed ({exc}); TaskDB was restored from {backup.path.name} (version {restored}) — escalate to the DBA"
        ) from exc
    return SchemaRevert(before, after, reverted=True)


def _require_version(actual: str | None, expected: str) -> None:
    if actual != expected:
        raise VerificationFailed(f"schema version reads {actual} after rollback_to_pilot.sql, expected {expected}")


# --- Step 4 ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertsResult:
    disabled: tuple[str, ...]
    already_disabled: tuple[str, ...]
    backups: tuple[Path, ...]
    drift: str | None

    def evidence(self) -> dict[str, Any]:
        return {
            "disabled": list(self.disabled),
            "already_disabled": list(self.already_disabled),
            "backups": [p.name for p in self.backups],
            "runbook_drift": self.drift,
        }


def try_runbook_alert_patch(runbook: Runbook, rule_name: str) -> str | None:
    """The runbook's own Step 4 patch, as written; returns why it does not work, or None if it does."""
    runbook.guard("try the runbook's alert patch (Step 4)")
    rules = PrometheusRules(runbook.api, runbook.config.kubernetes.monitoring_namespace)
    try:
        rules.json_patch(rule_name, RUNBOOK_ALERT_PATCH)
    except ApiException as exc:
        detail = _status_message(exc)
        return (
            f"the runbook's patch of /spec/groups/0/rules/0/enabled on prometheusrule/{rule_name} is refused by the API server "
            f"({exc.status}: {detail}); PrometheusRule rules have no 'enabled' field"
        )
    return None


def _status_message(exc: ApiException) -> str:
    """The API server's own reason, from its Status body, without the patched object it echoes."""
    try:
        message = str(json.loads(str(exc.body)).get("message", exc.reason))
    except (TypeError, ValueError):
        message = str(exc.reason)
    for marker in ("strict decoding error:", "doc is missing path:", "unable to find api field"):
        if marker in message:
            return message[message.index(marker) :][:300]
    return message[-300:]


def disable_expanded_alerts(runbook: Runbook, backup_dir: Path, *, concurrency: int = 8) -> AlertsResult:
    """Step 4: back up and remove ``<repo>-alerts`` for every expanded repo (the way that works; see CONVENTIONS)."""
    runbook.guard("disable expanded-repo alerts (Step 4)")
    rules = PrometheusRules(runbook.api, runbook.config.kubernetes.monitoring_namespace)
    expanded = runbook.expanded_repos()
    present = rules.names()
    targets = [f"{repo}-alerts" for repo in expanded if f"{repo}-alerts" in present]
    drift = try_runbook_alert_patch(runbook, targets[0]) if targets else None
    backup_dir.mkdir(parents=True, exist_ok=True)

    def backup_and_delete(name: str) -> tuple[str, Path | None]:
        try:
            body = rules.get(name)
        except ApiException as exc:
            if exc.status == 404:
                return name, None
            raise
        path = backup_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        return name, (path if rules.delete(name) else None)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        results = list(pool.map(backup_and_delete, targets))
    remaining = rules.names() & {f"{repo}-alerts" for repo in expanded}
    if remaining:
        raise VerificationFailed(f"alert rules still present after Step 4: {', '.join(sorted(remaining))}")
    disabled = tuple(name for name, path in results if path is not None)
    already = tuple(f"{repo}-alerts" for repo in expanded if f"{repo}-alerts" not in disabled)
    return AlertsResult(disabled, already, tuple(p for _, p in results if p is not None), drift)


def restore_alert_rules(runbook: Runbook, backups: tuple[Path, ...]) -> tuple[str, ...]:
    """Put alert rules back from Step 4's backups (re-enablement, and putting a staging cluster back)."""
    runbook.guard("restore alert rules")
    rules = PrometheusRules(runbook.api, runbook.config.kubernetes.monitoring_namespace)
    restored = []
    for path in backups:
        body = yaml.safe_load(path.read_text())
        metadata = body.get("metadata", {})
        clean = {
            "apiVersion": body["apiVersion"],
            "kind": body["kind"],
            "metadata": {
                "name": metadata["name"],
                "namespace": metadata.get("namespace"),
                "labels": metadata.get("labels", {}),
            },
            "spec": body["spec"],
        }
        rules.apply(clean)
        restored.append(metadata["name"])
    return tuple(restored)


# --- Step 5 ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PilotVerification:
    flow: FlowResult
    verification: Verification

    def problems(self) -> list[str]:
        flow = self.flow
        found = []
        if not flow.completed:
            found.append(f"flow {flow.status} ({flow.cause or flow.reason})")
        if flow.duration_s is None or flow.duration_s >= PILOT_FLOW_DURATION_MAX_S:
            found.append(f"duration {flow.duration_s}s (must be < {PILOT_FLOW_DURATION_MAX_S}s)")
        if flow.cost_usd is None or flow.cost_usd >= PILOT_FLOW_COST_MAX_USD:
            found.append(f"cost ${flow.cost_usd} (must be < ${PILOT_FLOW_COST_MAX_USD:.2f})")
        if flow.gates_passed != QUALITY_GATES:
            found.append(f"quality gates {flow.gates_passed}/{QUALITY_GATES}")
        if not self.verification.passed:
            found.append(f"strict verify failed ({self.verification.gates_passed}/{QUALITY_GATES} gates)")
        return found

    def evidence(self) -> dict[str, Any]:
        return {
            "flow_id": self.flow.flow_id,
            "status": self.flow.status,
            "duration_s": self.flow.duration_s,
            "cost_usd": self.flow.cost_usd,
            "gates_passed": self.flow.gates_passed,
            "strict_verify": self.verification.passed,
        }


def verify_pilot(runbook: Runbook) -> PilotVerification:
    """Step 5: ``blocks generate --repo <pilot> --family compliance --block-type attestation`` and ``blocks verify --strict``."""
    flow = runbook.flowengine.generate(
        runbook.config.pilot_repo, family="compliance", block_type="attestation", config="test-basel-i.json"
    )
    if flow.flow_id is None:
        raise VerificationFailed(
            f"CRITICAL: the pilot repo's test flow did not run ({flow.status}: {flow.reason or flow.cause}); "
            "the rollback failed — escalate to the Engineering TL and the Incident Commander"
        )
    verification = runbook.flowengine.verify(flow.flow_id, strict=True)
    return PilotVerification(flow, verification)


# --- Step 6 ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthReport:
    pods_ready: int
    pods_expected: int
    recent_restarts: int
    db: str
    models: dict[str, str]
    success_rate: float | None
    p95_s: float | None
    active_repos: tuple[str, ...]

    def problems(self, pilot: str) -> list[str]:
        found = []
        if self.pods_ready != self.pods_expected:
            found.append(f"{self.pods_ready}/{self.pods_expected} pods Running")
        if self.recent_restarts:
            found.append(f"{self.recent_restarts} recent restarts")
        if self.db != "healthy":
            found.append(f"/health/db is {self.db}")
        unhealthy = {p: s for p, s in self.models.items() if s != "healthy"}
        if unhealthy:
            found.append(f"model providers not healthy: {unhealthy}")
        if self.success_rate is not None and self.success_rate < 1.0:
            found.append(f"flow success rate {self.success_rate:.1%} (expected 100%)")
        if self.p95_s is not None and self.p95_s >= PILOT_FLOW_DURATION_MAX_S:
            found.append(f"P95 latency {self.p95_s:.0f}s (expected < {PILOT_FLOW_DURATION_MAX_S}s)")
        if self.active_repos != (pilot,):
            found.append(f"active repos {list(self.active_repos)} (expected only {pilot})")
        return found

    def evidence(self) -> dict[str, Any]:
        return {
            "pods": f"{self.pods_ready}/{self.pods_expected}",
            "recent_restarts": self.recent_restarts,
            "db": self.db,
            "models": self.models,
            "success_rate": self.success_rate,
            "p95_s": self.p95_s,
            "active_repos": list(self.active_repos),
        }


def system_health(runbook: Runbook, *, window_s: float) -> HealthReport:
    """Step 6: pods, restarts, TaskDB, model providers and the last ``window_s`` of flows (pilot only)."""
    pods = [p for p in runbook.pods() if not (p.metadata and p.metadata.deletion_timestamp)]
    restarts = sum(int(cs.restart_count or 0) for p in pods for cs in _container_statuses(p))
    stats = runbook.flowengine.stats(window_s=window_s)
    return HealthReport(
        pods_ready=ready_running_pods(runbook),
        pods_expected=runbook.config.replicas["pilot"],
        recent_restarts=restarts,
        db=runbook.flowengine.health_db().status,
        models={p: runbook.flowengine.health_model(p).status for p in MODEL_PROVIDERS},
        success_rate=stats.success_rate,
        p95_s=stats.p95_s,
        active_repos=tuple(sorted(stats.active_repos)),
    )


def wait_healthy(runbook: Runbook, *, window_s: float, timeout_s: float) -> HealthReport:
    """Step 6 allows its budget for the system to settle: the report once it is clean, or the timeout with the last one."""
    last: list[HealthReport] = []

    def clean() -> HealthReport | None:
        report = system_health(runbook, window_s=window_s)
        last[:] = [report]
        return report if not report.problems(runbook.config.pilot_repo) else None

    try:
        return wait_until(clean, timeout_s=timeout_s, interval_s=0.5, describe="system health as Step 6 expects")
    except WaitTimeout as exc:
        problems = last[0].problems(runbook.config.pilot_repo) if last else ["no report"]
        raise VerificationFailed(f"Step 6: system not healthy after {timeout_s:.0f}s: {'; '.join(problems)}") from exc
