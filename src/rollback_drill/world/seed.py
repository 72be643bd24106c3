"""Seeding the drill world on a cluster the drill created, and resetting it to the Phase 6/7 state.

Idempotent: seeding twice leaves the same world. Never called on a `kubeconfig`
target: there the world is the real one, and the drill only checks it
(``check_world``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollback_drill.config import DrillConfig, KubernetesNames
from rollback_drill.errors import InputError, UnsafeTarget
from rollback_drill.flowengine.simulator import clear_shared_injections
from rollback_drill.kube.conflict import create_or_replace, suppress_conflict
from rollback_drill.kube.rollout import settled, wait_for_rollout
from rollback_drill.kube.rules import PrometheusRules
from rollback_drill.targets.cluster import Cluster
from rollback_drill.taskdb import schema
from rollback_drill.taskdb.identity import require_created_by_drill
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.timing.wait import wait_until
from rollback_drill.world import manifests


@dataclass(frozen=True)
class WorldState:
    """What the runbook's checks read, in one snapshot."""

    phase: int
    allowlist: tuple[str, ...]
    replicas: int
    available_replicas: int
    expanded_repos: tuple[str, ...]
    alert_rules: tuple[str, ...]
    schema_version: str | None
    generation: int
    pilot_repo: str | None = None
    """The pilot of the configuration the world was read with (its alert rules stay through Step 4)."""

    def evidence(self) -> dict[str, Any]:
        return {
            "allowlist": list(self.allowlist),
            "replicas": self.replicas,
            "available_replicas": self.available_replicas,
            "alert_rules": list(self.alert_rules),
            "schema_version": self.schema_version,
            "generation": self.generation,
        }


def ensure_crd(api: client.ApiClient) -> None:
    crd = manifests.prometheus_rule_crd()
    ext = client.ApiextensionsV1Api(api)
    name = crd["metadata"]["name"]
    with suppress_conflict():
        ext.create_custom_resource_definition(crd)  # type: ignore[arg-type]

    def established() -> bool:
        current = ext.read_custom_resource_definition(name)
        conditions = current.status.conditions if current.status else None
        return any(c.type == "Established" and c.status == "True" for c in conditions or [])

    wait_until(established, timeout_s=30, describe=f"CRD {name} Established")
    # The discovery cache of a fresh API server lags the Established condition by a moment.
    wait_until(
        lambda: _rules_served(api),
        timeout_s=30,
        describe="prometheusrules.monitoring.coreos.com served by the API",
    )


def _rules_served(api: client.ApiClient) -> bool:
    try:
        PrometheusRules(api, "default").names()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _ensure_namespace(core: client.CoreV1Api, name: str) -> None:
    with suppress_conflict():
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))


def _prepare_pods(
    core: client.CoreV1Api,
    config: DrillConfig,
    phase: int,
    taskdb: TaskDB | None,
    *,
    runtime: manifests.PodRuntime,
    dsn: str,
) -> None:
    """What real pods need before they start: TaskDB's DSN, their Service, and TaskDB itself at the phase's schema."""
    names = config.kubernetes
    for namespace in (names.namespace, names.staging_namespace):
        secret = manifests.taskdb_secret(namespace, runtime, dsn)
        create_or_replace(
            partial(core.create_namespaced_secret, namespace, cast("Any", secret)),
            partial(core.replace_namespaced_secret, runtime.dsn_secret, namespace, cast("Any", secret)),
        )
    _ensure_service(core, manifests.flowengine_service(config, names.namespace, runtime))
    if taskdb is not None:
        # Their shared injections are forgotten here, in TaskDB: a crash-looping FlowEngine cannot be asked to.
        with taskdb.connect() as conn:
            clear_shared_injections(conn)
        reset_taskdb(taskdb, config, phase)


def _ensure_service(core: client.CoreV1Api, service: dict[str, Any]) -> None:
    """Create the Service once; a reseeded world keeps it (its NodePort is what the drill's client calls)."""
    meta = service["metadata"]
    try:
        core.read_namespaced_service(meta["name"], meta["namespace"])
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_service(meta["namespace"], cast("Any", service))


def _sync_alert_rules(api: client.ApiClient, config: DrillConfig, phase: int, time_scale: float) -> None:
    """Every expanded repo's ``<repo>-alerts``, the pilot's own and the crash-loop rule, their windows scaled."""
    rules = PrometheusRules(api, config.kubernetes.monitoring_namespace)
    windows = manifests.scaled_windows(time_scale)
    repo_windows = {k: v for k, v in windows.items() if k != "crash_loop_for"}
    wanted = [manifests.alert_rule(repo, rules.namespace, **repo_windows) for repo in config.expanded_for(phase)]
    wanted.append(manifests.pilot_alert_rule(config.pilot_repo, rules.namespace, **repo_windows))
    wanted.append(manifests.crash_loop_alert_rule(rules.namespace, crash_loop_for=windows["crash_loop_for"]))
    for stale in rules.names() - {rule["metadata"]["name"] for rule in wanted}:
        rules.delete(stale)
    for rule in wanted:
        rules.apply(rule)


def seed_world(
    api: client.ApiClient,
    cluster: Cluster,
    config: DrillConfig,
    phase: int,
    taskdb: TaskDB | None,
    *,
    rollout_timeout_s: float = 120,
    runtime: manifests.PodRuntime | None = None,
    pod_taskdb_dsn: str | None = None,
    time_scale: float = 1.0,
) -> WorldState:
    """Namespaces, the flowengine Deployment (production and staging), repo-config, the alert rules, the TaskDB schema.

    The alert rules' ``for:`` windows (and the failures' hour) are the runbook's times ``time_scale``.

    With a ``runtime`` (the kind target) the pods really run the simulator: they get TaskDB's DSN as the
    pods reach it (``pod_taskdb_dsn``, in a Secret) and production gets the flowengine Service.
    """
    if runtime is not None and not pod_taskdb_dsn:
        raise InputError("FlowEngine pods need TaskDB's DSN as they reach it (pod_taskdb_dsn)")
    if not cluster.created_by_drill:
        raise UnsafeTarget(
            f"refusing to seed the drill world on {cluster.fingerprint}: the world is only seeded on clusters the drill created"
        )
    if taskdb is not None:  # before anything is written to it, the shared injections included
        require_created_by_drill(taskdb, "seed the drill world")
    names = config.kubernetes
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    for namespace in (names.namespace, names.staging_namespace, names.monitoring_namespace):
        _ensure_namespace(core, namespace)
    ensure_crd(api)
    if runtime is not None and pod_taskdb_dsn:
        _prepare_pods(core, config, phase, taskdb, runtime=runtime, dsn=pod_taskdb_dsn)
    for namespace in (names.namespace, names.staging_namespace):
        body = manifests.flowengine_deployment(config, phase, namespace, runtime)
        create_or_replace(
            partial(apps.create_namespaced_deployment, namespace, cast("Any", body)),
            partial(apps.replace_namespaced_deployment, names.deployment, namespace, cast("Any", body)),
        )
    cm = manifests.repo_config_map(config, phase, names.namespace)
    create_or_replace(
        partial(core.create_namespaced_config_map, names.namespace, cast("Any", cm)),
        partial(core.replace_namespaced_config_map, names.configmap, names.namespace, cast("Any", cm)),
    )
    _delete_faulted_pods(core, config)
    _sync_alert_rules(api, config, phase, time_scale)
    if taskdb is not None and runtime is None:
        reset_taskdb(taskdb, config, phase)
    for namespace in (names.namespace, names.staging_namespace):
        wait_for_rollout(api, namespace, names.deployment, timeout_s=rollout_timeout_s)
    if runtime is not None:
        _wait_old_pods_gone(core, config, rollout_timeout_s)
    return read_world(api, config, taskdb, phase)


def _wait_old_pods_gone(core: client.CoreV1Api, config: DrillConfig, timeout_s: float) -> None:
    """Real pods of the previous world drain for seconds after the rollout; the Service has forgotten
    them by the time they are gone, so the drill's first call does not land on one."""
    names = config.kubernetes

    def none_terminating() -> bool:
        pods = core.list_namespaced_pod(names.namespace, label_selector=f"app={names.deployment}").items
        return not any(p.metadata and p.metadata.deletion_timestamp for p in pods)

    wait_until(none_terminating, timeout_s=timeout_s, describe=f"old flowengine pods in {names.namespace} gone")


def _delete_faulted_pods(core: client.CoreV1Api, config: DrillConfig) -> None:
    """Pods a staged fault was applied to keep it; a fresh world starts from fresh pods."""
    names = config.kubernetes
    for namespace in (names.namespace, names.staging_namespace):
        for pod in core.list_namespaced_pod(namespace, label_selector=f"app={names.deployment}").items:
            annotations = (pod.metadata.annotations or {}) if pod.metadata else {}
            if manifests.FAULT_ANNOTATION in annotations and pod.metadata and pod.metadata.name:
                try:
                    core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
                except ApiException as exc:
                    if exc.status != 404:  # already gone: the ReplicaSet scaled it away first
                        raise


def reset_taskdb(taskdb: TaskDB, config: DrillConfig, phase: int) -> None:
    """TaskDB back to the phase's schema, with no flows: drop everything in ``public`` and migrate again.

    Only on a TaskDB the drill created (``UnsafeTarget`` otherwise, before anything is dropped).
    """
    require_created_by_drill(taskdb, "reset (DROP SCHEMA public CASCADE) and seed")
    with taskdb.connect() as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
    schema.seed_schema(taskdb, config, phase)
    if phase >= 6:
        with taskdb.connect() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO repo_quotas (repo, daily_budget_usd, max_concurrency) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [(repo, 20.0, 5) for repo in config.allowlist_for(phase)],
            )


def read_world(api: client.ApiClient, config: DrillConfig, taskdb: TaskDB | None, phase: int) -> WorldState:
    names = config.kubernetes
    deployment = client.AppsV1Api(api).read_namespaced_deployment(names.deployment, names.namespace)
    cm = client.CoreV1Api(api).read_namespaced_config_map(names.configmap, names.namespace)
    return WorldState(
        phase=phase,
        allowlist=allowlist_of(deployment, names.container),
        replicas=int(deployment.spec.replicas or 0) if deployment.spec else 0,
        available_replicas=int(deployment.status.available_replicas or 0) if deployment.status else 0,
        expanded_repos=tuple((cm.data or {}).get("expanded_repos", "").split()),
        alert_rules=tuple(sorted(PrometheusRules(api, names.monitoring_namespace).names())),
        schema_version=schema.current_version(taskdb) if taskdb is not None else None,
        generation=int(deployment.metadata.generation or 0) if deployment.metadata else 0,
        pilot_repo=config.pilot_repo,
    )


def allowlist_of(deployment: client.V1Deployment, container: str) -> tuple[str, ...]:
    """What the runbook's jsonpath reads: ``.spec.template.spec.containers[0].env[?(@.name=="REPO_ALLOWLIST")].value``."""
    spec = deployment.spec.template.spec if deployment.spec and deployment.spec.template else None
    for item in spec.containers if spec else []:
        if item.name == container:
            for env in item.env or []:
                if env.name == "REPO_ALLOWLIST":
                    return manifests.parse_allowlist(env.value)
    return ()


def check_world(api: client.ApiClient, config: DrillConfig) -> list[str]:
    """On a real (kubeconfig) cluster: what the runbook needs that is missing. Changes nothing."""
    names = config.kubernetes
    missing = []
    try:
        client.AppsV1Api(api).read_namespaced_deployment(names.deployment, names.namespace)
    except ApiException as exc:
        missing.append(f"deployment/{names.deployment} in {names.namespace} ({exc.status})")
    try:
        client.CoreV1Api(api).read_namespaced_config_map(names.configmap, names.namespace)
    except ApiException as exc:
        missing.append(f"configmap/{names.configmap} in {names.namespace} ({exc.status})")
    try:
        PrometheusRules(api, names.monitoring_namespace).names()
    except ApiException as exc:
        missing.append(f"prometheusrules in {names.monitoring_namespace} ({exc.status})")
    return missing


def make_world_by_hand(api: client.ApiClient, config: DrillConfig, phase: int, *, settle_timeout_s: float = 60) -> None:
    """The world as a team makes its own with plain creates: for a cluster that stands for somebody else's.

    Production gets the flowengine Deployment and repo-config, monitoring the alert rules; there is
    no staging copy and no Service, and nothing records the cluster as the drill's. The identity
    guard's own test aims the runbook at it. Only creates: where either namespace exists it refuses
    before writing anything, so it never changes a world that is already there.
    """
    names = config.kubernetes
    core = client.CoreV1Api(api)
    present = {ns.metadata.name for ns in core.list_namespace().items if ns.metadata}
    if present & {names.namespace, names.monitoring_namespace}:
        raise UnsafeTarget(
            f"refusing to make a FlowEngine world by hand: namespace {names.namespace} or {names.monitoring_namespace} "
            "already exists; this is only done on an empty cluster"
        )
    for namespace in (names.namespace, names.monitoring_namespace):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    ensure_crd(api)
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(
        names.namespace, cast("Any", manifests.flowengine_deployment(config, phase, names.namespace))
    )
    core.create_namespaced_config_map(
        names.namespace, cast("Any", manifests.repo_config_map(config, phase, names.namespace))
    )
    rules = PrometheusRules(api, names.monitoring_namespace)
    for repo in config.expanded_for(phase):
        rules.create(manifests.alert_rule(repo, names.monitoring_namespace))
    wait_until(
        lambda: settled(apps.read_namespaced_deployment(names.deployment, names.namespace)),
        timeout_s=settle_timeout_s,
        describe=f"deployment/{names.deployment} observed and its {config.replicas_for(phase)} pods created",
        hint="see kube-controller-manager.log in the control plane's directory",
    )


def resource_versions(api: client.ApiClient, names: KubernetesNames) -> dict[str, str]:
    """The resourceVersion of the flowengine Deployment (and its generation), repo-config and every alert rule.

    Any write to one of them, even one that changes nothing, gives it a new resourceVersion.
    """
    deployment = client.AppsV1Api(api).read_namespaced_deployment(names.deployment, names.namespace)
    configmap = client.CoreV1Api(api).read_namespaced_config_map(names.configmap, names.namespace)
    deployment_meta = deployment.metadata or client.V1ObjectMeta()
    versions = {
        f"deployment/{names.deployment}": str(deployment_meta.resource_version),
        f"deployment/{names.deployment} generation": str(deployment_meta.generation),
        f"configmap/{names.configmap}": str(configmap.metadata.resource_version if configmap.metadata else None),
    }
    for item in PrometheusRules(api, names.monitoring_namespace).items():
        versions[f"prometheusrule/{item['metadata']['name']}"] = str(item["metadata"]["resourceVersion"])
    return versions
