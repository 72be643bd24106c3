"""Injecting an incident into the drill world: the FlowEngine signal, and the Kubernetes side where there is one.

The simulator produces each incident's signal (CONVENTIONS, "Incidents"). A crash
loop also needs the cluster to act it out: the pods get the fault annotation that
the drill's kwok Stage turns into CrashLoopBackOff with rising restarts (on kind, the
pods' own containers exit at start while they carry it), and so does the pod
template, so that every new pod crashes too until Step 2 restarts FlowEngine with
the pilot's configuration.
"""

from __future__ import annotations

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from rollback_drill.config import DrillConfig
from rollback_drill.errors import InputError
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.flowengine.client import FlowEngineClient, IncidentRecord
from rollback_drill.flowengine.incidents import INCIDENT_NAMES
from rollback_drill.taskdb.identity import require_created_by_drill
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.timing.wait import wait_until
from rollback_drill.world.manifests import FAULT_ANNOTATION, KWOK_IMAGE_PREFIX


def check_incident_name(name: str) -> str:
    if name not in INCIDENT_NAMES:
        raise InputError(f"unknown incident {name!r}; valid incidents: {', '.join(INCIDENT_NAMES)}")
    return name


def stage_crash_loop(api: client.ApiClient, config: DrillConfig) -> int:
    """Annotate the pod template and every running pod; return how many pods now crash.

    kwok's pods crash as soon as they carry the annotation. Real pods (kind) read it at start, through
    the downward API, so each running container is stopped once: the kubelet starts it again with the
    annotation, it exits 1, and from then on the kubelet's own back-off makes the crash loop.
    """
    names = config.kubernetes
    apps = client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    annotation = {"metadata": {"annotations": {FAULT_ANNOTATION: "crash-loop"}}}
    deployment = apps.patch_namespaced_deployment(
        names.deployment, names.namespace, {"spec": {"template": annotation}}, field_validation="Strict"
    )
    pods = core.list_namespaced_pod(names.namespace, label_selector=f"app={names.deployment}").items
    for pod in pods:
        if pod.metadata and pod.metadata.name:
            core.patch_namespaced_pod(pod.metadata.name, names.namespace, annotation, field_validation="Strict")
    if runs_real_pods(deployment, names.container):
        for pod in pods:
            if pod.metadata and pod.metadata.name and not pod.metadata.deletion_timestamp:
                _stop_container(api, names.namespace, pod.metadata.name, names.container)
    return len(pods)


def runs_real_pods(deployment: client.V1Deployment, container: str) -> bool:
    """Whether the Deployment's pods really run (kind): kwok's never-pulled image is ``registry.invalid/...``."""
    spec = deployment.spec.template.spec if deployment.spec and deployment.spec.template else None
    for item in spec.containers if spec else []:
        if item.name == container:
            return not str(item.image or "").startswith(KWOK_IMAGE_PREFIX)
    return False


def _stop_container(api: client.ApiClient, namespace: str, pod: str, container: str) -> None:
    """``kubectl exec POD -- kill 1``: the simulator stops on SIGTERM and the kubelet restarts the container."""
    try:
        stream(
            client.CoreV1Api(api).connect_get_namespaced_pod_exec,
            pod,
            namespace,
            container=container,
            command=["python3", "-c", "import os, signal; os.kill(1, signal.SIGTERM)"],
            stderr=True,
            stdout=True,
            stdin=False,
            tty=False,
        )
    except ApiException as exc:
        if exc.status != 404:  # the pod went away meanwhile: its replacement starts with the annotation anyway
            raise


TASKDB_CORRUPTING = frozenset({"db-corruption"})
"""Incidents whose injection changes TaskDB's schema and rows for real (drops a constraint, writes invalid quotas)."""


def check_injectable(name: str, taskdb: TaskDB | None) -> None:
    """An incident that corrupts TaskDB only ever goes into a TaskDB the drill created (``UnsafeTarget`` otherwise)."""
    if name in TASKDB_CORRUPTING and taskdb is not None:
        require_created_by_drill(taskdb, f"inject {name} (ALTER TABLE repo_quotas DROP CONSTRAINT)")


def inject(
    name: str,
    flowengine: FlowEngineClient,
    api: client.ApiClient | None,
    config: DrillConfig,
    *,
    taskdb: TaskDB | None = None,
) -> IncidentRecord:
    """Inject ``name``: the cluster side first (if any, and only with a drill-made cluster's ``api``), then the signal.

    ``taskdb``: the TaskDB behind ``flowengine``; an incident that corrupts it is refused unless the drill
    created it. Where FlowEngine's pods really run (kind), a crash loop takes FlowEngine down with it, so
    the signal goes first, while the pods still answer.
    """
    check_incident_name(name)
    check_injectable(name, taskdb)
    if name == "crash-loop" and api is not None:
        names = config.kubernetes
        deployment = client.AppsV1Api(api).read_namespaced_deployment(names.deployment, names.namespace)
        record = flowengine.inject(name) if runs_real_pods(deployment, names.container) else None
        stage_crash_loop(api, config)
        # "Crash loop > 15 minutes": by the time anyone looks, nothing is available. Wait until that is true here too.
        wait_until(
            lambda: _available_replicas(api, config) == 0,
            timeout_s=90,
            describe="deployment/flowengine with no available replica after staging the crash loop",
            hint="kwok's crash-loop Stage (kwok.log), or on kind the pods' FLOWENGINE_FAULT (kubectl logs --previous)",
        )
        if record is not None:
            return record
    return flowengine.inject(name)


def _available_replicas(api: client.ApiClient, config: DrillConfig) -> int:
    names = config.kubernetes
    status = client.AppsV1Api(api).read_namespaced_deployment_status(names.deployment, names.namespace).status
    return int(status.available_replicas or 0) if status else 0


def record_injection(recorder: Recorder, record: IncidentRecord, phase: int) -> None:
    """What the evidence, the report and the RCA need to know about the injection."""
    recorder.event("incident_injected", incident=record.name, repos=list(record.repos), pilot_hit=record.pilot_hit)
    recorder.set("incident", record.name)
    recorder.set("phase", phase)
    recorder.set("affected_repos", list(record.repos))
