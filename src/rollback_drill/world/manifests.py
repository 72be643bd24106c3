"""The objects of the drill world, as the runbook describes them before a rollback.

Pure functions from the configuration to manifests: no cluster needed, so the
shapes are unit-tested and the same manifests seed every drill-made cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollback_drill.config import DrillConfig
from rollback_drill.kube.rules import GROUP as PROMETHEUS_GROUP
from rollback_drill.kube.rules import PLURAL as PROMETHEUS_PLURAL
from rollback_drill.kube.rules import VERSION as PROMETHEUS_VERSION

FAULT_ANNOTATION = "rollback-drill.io/fault"
"""Set on the pod template (and its pods) to stage a fault kwok acts out, e.g. ``crash-loop``."""
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
WORLD_LABEL = "rollback-drill.io/world"


KWOK_IMAGE_PREFIX = "registry.invalid/"
"""kwok's pods name an image no registry serves: nothing ever pulls it."""
TASKDB_DSN_ENV = "ROLLBACK_DRILL_TASKDB_DSN"
HTTP_PORT = 8080


@dataclass(frozen=True)
class PodRuntime:
    """FlowEngine as real pods (the ``kind`` target): the simulator image, and TaskDB as the pods reach it.

    Without one, the pods are kwok's: their image is never pulled and the simulator runs beside the
    cluster, following them through a watch.
    """

    image: str
    """A locally built image the nodes already hold (``kind load``), so it is never pulled."""
    dsn_secret: str = "flowengine-taskdb"  # noqa: S105 - the Secret's name, not its content
    """The Secret (key ``dsn``) with TaskDB's DSN as seen from a pod."""
    node_port: int = 30080
    """The flowengine Service's NodePort, which the kind node publishes on 127.0.0.1."""


def allowlist_value(repos: tuple[str, ...] | list[str]) -> str:
    """``REPO_ALLOWLIST`` as the runbook writes it: comma-separated, pilot first."""
    return ",".join(repos)


def parse_allowlist(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _pod_container(config: DrillConfig, runtime: PodRuntime) -> dict[str, Any]:
    """What the container gains when it really runs: the simulator, TaskDB's DSN, and the staged fault."""
    return {
        "image": runtime.image,
        "imagePullPolicy": "Never",
        "command": [
            *("python3", "-m", "rollback_drill.flowengine", "--in-pod", "--port", str(HTTP_PORT)),
            *("--pilot-repo", config.pilot_repo, "--allowlist-source", "env:REPO_ALLOWLIST", "--shared-injections"),
        ],
        "extra_env": [
            {"name": TASKDB_DSN_ENV, "valueFrom": {"secretKeyRef": {"name": runtime.dsn_secret, "key": "dsn"}}},
            # The staged fault is the pod's annotation; a pod that has it crashes at start, again and again.
            {
                "name": "FLOWENGINE_FAULT",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{FAULT_ANNOTATION}']"}},
            },
        ],
    }


def flowengine_deployment(
    config: DrillConfig, phase: int, namespace: str, runtime: PodRuntime | None = None
) -> dict[str, Any]:
    names = config.kubernetes
    labels = {"app": names.deployment, WORLD_LABEL: "true"}
    container: dict[str, Any] = {
        "name": names.container,
        # Never pulled: kwok plays the nodes. On kind the simulator image replaces it.
        "image": f"{KWOK_IMAGE_PREFIX}flowengine:phase-{phase}",
        "ports": [{"name": "http", "containerPort": HTTP_PORT}],
        "env": [
            {"name": "REPO_ALLOWLIST", "value": allowlist_value(config.allowlist_for(phase))},
            {"name": "FLOWENGINE_PHASE", "value": str(phase)},
        ],
        "readinessProbe": {"httpGet": {"path": "/health", "port": HTTP_PORT}, "periodSeconds": 5},
    }
    if runtime is not None:
        real = _pod_container(config, runtime)
        container["env"] += real.pop("extra_env")
        container.update(real)
        container["readinessProbe"] = {
            "httpGet": {"path": "/health", "port": HTTP_PORT},
            "periodSeconds": 2,
            "failureThreshold": 2,
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": names.deployment, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": config.replicas_for(phase),
            "selector": {"matchLabels": {"app": names.deployment}},
            # Zero downtime for the pilot: a new pod must be ready before an old one goes.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "50%"}},
            "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 5,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container],
                    # A real pod serves 8 s after SIGTERM (while the Service forgets it), then stops.
                    "terminationGracePeriodSeconds": 15 if runtime is not None else 30,
                },
            },
        },
    }


def flowengine_service(config: DrillConfig, namespace: str, runtime: PodRuntime) -> dict[str, Any]:
    """The Service in front of the Ready flowengine pods; its NodePort is what the drill's client calls."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": config.kubernetes.deployment, "namespace": namespace, "labels": {WORLD_LABEL: "true"}},
        "spec": {
            "type": "NodePort",
            "selector": {"app": config.kubernetes.deployment},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": runtime.node_port}],
        },
    }


def taskdb_secret(namespace: str, runtime: PodRuntime, dsn: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": runtime.dsn_secret, "namespace": namespace, "labels": {WORLD_LABEL: "true"}},
        "type": "Opaque",
        "stringData": {"dsn": dsn},
    }


def repo_config_map(config: DrillConfig, phase: int, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config.kubernetes.configmap, "namespace": namespace, "labels": {WORLD_LABEL: "true"}},
        "data": {
            "pilot_repo": config.pilot_repo,
            # Whitespace-separated, as the runbook's `for repo in $EXPANDED_REPOS` expects.
            "expanded_repos": " ".join(config.expanded_for(phase)),
            "phase": str(phase),
        },
    }


FAILURES_PER_HOUR_LIMIT = 5
"""The runbook's failing repo: more than 5 flow failures per hour."""
P95_LATENCY_LIMIT_S = 150
"""The runbook's P2 SLO violation: P95 flow duration above 150 s."""
CRASH_LOOP_RULE_NAME = "kube-state-metrics-alerts"
KUBE_STATE_METRICS_JOB = "kube-state-metrics"
"""The scrape job kube-state-metrics is read under; kubernetes-mixin's alerts select it by this name."""


def _prometheus_rule(name: str, namespace: str, labels: dict[str, str], groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{PROMETHEUS_GROUP}/{PROMETHEUS_VERSION}",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"groups": groups},
    }


def _repo_rules(repo: str, failures_for: str, latency_for: str, failures_window: str = "1h") -> list[dict[str, Any]]:
    """A repo's alerts on FlowEngine's metrics, each labelled with the repo so a silence or a route can name it."""
    series = f'flow_failures_total{{repo="{repo}"}}'
    if failures_window == "1h":
        # rate over the last hour, per hour: the runbook's "failures/hour".
        expr = f"sum(rate({series}[1h])) * 3600 > {FAILURES_PER_HOUR_LIMIT}"
    else:
        # A drill that scales its time counts the failures of its scaled hour, so an incident's alert
        # resolves once it is over. A series that first appears already counting (a repo's first failures,
        # backdated at once) has no increase Prometheus can see: its whole value counts while it is new.
        expr = (
            f"sum(increase({series}[{failures_window}])) > {FAILURES_PER_HOUR_LIMIT} "
            f"or sum({series} unless {series} offset {failures_window}) > {FAILURES_PER_HOUR_LIMIT}"
        )
    return [
        {
            "alert": "FlowFailureRateHigh",
            "expr": expr,
            "for": failures_for,
            "labels": {"severity": "critical", "repo": repo},
            "annotations": {"summary": f"{repo}: more than {FAILURES_PER_HOUR_LIMIT} flow failures per hour"},
        },
        {
            "alert": "FlowLatencyP95High",
            # Needs flow_duration_seconds labelled by repo; a FlowEngine that keeps one histogram for all
            # repos never fires it (FlowEngineLatencyP95High, in the pilot's rules, watches the whole service).
            "expr": (
                "histogram_quantile(0.95, sum by (le) "
                f'(rate(flow_duration_seconds_bucket{{repo="{repo}"}}[30m]))) > {P95_LATENCY_LIMIT_S}'
            ),
            "for": latency_for,
            "labels": {"severity": "warning", "repo": repo},
            "annotations": {"summary": f"{repo}: P95 flow duration above {P95_LATENCY_LIMIT_S} s"},
        },
    ]


def alert_rule(
    repo: str, namespace: str, *, failures_for: str = "10m", latency_for: str = "30m", failures_window: str = "1h"
) -> dict[str, Any]:
    """``<repo>-alerts``: the rules an expanded repo's on-call is paged by.

    ``failures_for`` and ``latency_for`` are the ``for:`` windows (Prometheus durations), ``failures_window``
    the hour the failures are counted over; a drill scales them by its time scale (``scaled_windows``).
    """
    return _prometheus_rule(
        f"{repo}-alerts",
        namespace,
        {WORLD_LABEL: "true", "repo": repo},
        [{"name": f"{repo}.flowengine", "rules": _repo_rules(repo, failures_for, latency_for, failures_window)}],
    )


def pilot_alert_rule(
    pilot: str, namespace: str, *, failures_for: str = "10m", latency_for: str = "30m", failures_window: str = "1h"
) -> dict[str, Any]:
    """``<pilot>-alerts``: the pilot's own alerts, which Step 4 keeps, and FlowEngine's service-wide P95.

    The pilot's rules carry ``repo: <pilot>``, so its failures never page an expanded repo's on-call.
    """
    service_wide = {
        "alert": "FlowEngineLatencyP95High",
        "expr": (
            f"histogram_quantile(0.95, sum by (le) (rate(flow_duration_seconds_bucket[30m]))) > {P95_LATENCY_LIMIT_S}"
        ),
        "for": latency_for,
        "labels": {"severity": "warning", "repo": pilot},
        "annotations": {"summary": f"FlowEngine: P95 flow duration above {P95_LATENCY_LIMIT_S} s"},
    }
    return _prometheus_rule(
        f"{pilot}-alerts",
        namespace,
        {WORLD_LABEL: "true", "repo": pilot, "scope": "pilot"},
        [
            {
                "name": f"{pilot}.flowengine",
                "rules": [*_repo_rules(pilot, failures_for, latency_for, failures_window), service_wide],
            }
        ],
    )


def crash_loop_alert_rule(namespace: str, *, crash_loop_for: str = "15m") -> dict[str, Any]:
    """kubernetes-mixin's ``KubePodCrashLooping`` (as kube-prometheus ships it) on kube-state-metrics.

    From kubernetes-monitoring/kubernetes-mixin, ``alerts/apps_alerts.libsonnet``: a container whose
    waiting reason was CrashLoopBackOff at any point of the last 5 minutes, for 15 minutes, severity warning.
    """
    rule = {
        "alert": "KubePodCrashLooping",
        "expr": (
            "max_over_time(kube_pod_container_status_waiting_reason"
            f'{{reason="CrashLoopBackOff", job="{KUBE_STATE_METRICS_JOB}"}}[5m]) >= 1'
        ),
        "for": crash_loop_for,
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Pod is crash looping.",
            "description": (
                "Pod {{ $labels.namespace }}/{{ $labels.pod }} ({{ $labels.container }}) is in waiting state "
                '(reason: "CrashLoopBackOff").'
            ),
        },
    }
    return _prometheus_rule(
        CRASH_LOOP_RULE_NAME, namespace, {WORLD_LABEL: "true"}, [{"name": "kubernetes-apps", "rules": [rule]}]
    )


def standing_rule_names(pilot: str) -> frozenset[str]:
    """The PrometheusRules the world seeds beside the expanded repos' and Step 4 never touches:
    the pilot's own ``<pilot>-alerts`` and the cluster's crash-loop rule."""
    return frozenset({f"{pilot}-alerts", CRASH_LOOP_RULE_NAME})


def _string_map() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def prometheus_rule_crd() -> dict[str, Any]:
    """The PrometheusRule CRD with the prometheus-operator's structural schema (v1).

    Only the fields a real cluster accepts: the API server prunes or, with strict
    field validation, rejects anything else, exactly as it would in production.
    In particular rules have no ``enabled`` field, which the runbook's Step 4 patches.
    """
    duration = {
        "type": "string",
        "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
    }
    rule = {
        "type": "object",
        "required": ["expr"],
        "properties": {
            "alert": {"type": "string"},
            "annotations": _string_map(),
            "expr": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True},
            "for": duration,
            "keep_firing_for": {"type": "string", "minLength": 1, "pattern": duration["pattern"]},
            "labels": _string_map(),
            "record": {"type": "string"},
        },
    }
    group = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "interval": duration,
            "labels": _string_map(),
            "limit": {"type": "integer"},
            "name": {"type": "string", "minLength": 1},
            "partial_response_strategy": {"type": "string", "pattern": "^(?i)(abort|warn)?$"},
            "query_offset": duration,
            "rules": {"type": "array", "items": rule},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PROMETHEUS_PLURAL}.{PROMETHEUS_GROUP}"},
        "spec": {
            "group": PROMETHEUS_GROUP,
            "names": {
                "kind": "PrometheusRule",
                "listKind": "PrometheusRuleList",
                "plural": PROMETHEUS_PLURAL,
                "singular": "prometheusrule",
                "categories": ["prometheus-operator"],
                "shortNames": ["promrule"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": PROMETHEUS_VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "groups": {
                                            "type": "array",
                                            "items": group,
                                            "x-kubernetes-list-map-keys": ["name"],
                                            "x-kubernetes-list-type": "map",
                                        }
                                    },
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


CRASH_LOOP_STAGE = f"""apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: rollback-drill-crash-loop
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.annotations["{FAULT_ANNOTATION}"]'
      operator: 'In'
      values:
      - 'crash-loop'
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
  delay:
    durationMilliseconds: 2000
  next:
    statusTemplate: |
      {{{{ $now := Now }}}}
      {{{{ $restarts := 0 }}}}
      {{{{ range .status.containerStatuses }}}}{{{{ $restarts = .restartCount }}}}{{{{ end }}}}
      phase: Running
      conditions:
      - lastTransitionTime: {{{{ $now | Quote }}}}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{{{ $now | Quote }}}}
        status: "False"
        reason: ContainersNotReady
        type: Ready
      - lastTransitionTime: {{{{ $now | Quote }}}}
        status: "False"
        reason: ContainersNotReady
        type: ContainersReady
      containerStatuses:
      {{{{ range .spec.containers }}}}
      - image: {{{{ .image | Quote }}}}
        name: {{{{ .name | Quote }}}}
        ready: false
        started: false
        restartCount: {{{{ add1 $restarts }}}}
        lastState:
          terminated:
            exitCode: 137
            reason: OOMKilled
            startedAt: {{{{ $now | Quote }}}}
            finishedAt: {{{{ $now | Quote }}}}
        state:
          waiting:
            reason: CrashLoopBackOff
            message: back-off restarting failed container {{{{ .name }}}}
      {{{{ end }}}}
"""
"""A kwok Stage that really reports CrashLoopBackOff with a restart count that keeps rising."""


def fault_patch(fault: str) -> dict[str, Any]:
    """The patch that stages ``fault`` (e.g. ``crash-loop``) on a pod or a pod template: the fault annotation."""
    return {"metadata": {"annotations": {FAULT_ANNOTATION: fault}}}


RUNBOOK_WINDOWS_S = {"failures_for": 600.0, "latency_for": 1800.0, "failures_window": 3600.0, "crash_loop_for": 900.0}
"""The seeded alerts' windows as the runbook's monitoring has them: ``for: 10m``, ``30m``, the hour, ``15m``."""
MIN_SCALED_WINDOW_S = {"failures_window": 5.0}
"""A scaled hour holds at least a few 1 s scrapes: ``increase`` needs two samples in its window."""


def prometheus_duration(seconds: float) -> str:
    """A Prometheus duration in whole milliseconds (``0.6`` -> ``600ms``), as the PrometheusRule schema accepts it."""
    return f"{max(0, round(seconds * 1000))}ms"


def scaled_windows(time_scale: float) -> dict[str, str]:
    """The seeded alerts' windows scaled by a drill's time scale, as keyword arguments of the rule makers."""
    return {
        name: prometheus_duration(max(seconds * time_scale, MIN_SCALED_WINDOW_S.get(name, 0.0)))
        for name, seconds in RUNBOOK_WINDOWS_S.items()
    }
