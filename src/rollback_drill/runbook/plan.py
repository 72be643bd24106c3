"""`--dry-run`: what each runbook step would change on this cluster, read without changing anything."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client

from rollback_drill.config import DrillConfig
from rollback_drill.kube.rules import PrometheusRules
from rollback_drill.taskdb import schema
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.world.manifests import allowlist_value
from rollback_drill.world.seed import read_world


@dataclass(frozen=True)
class PlannedChange:
    step: str
    title: str
    change: str
    """What would change, or 'nothing' with the reason."""


def plan_rollback(api: client.ApiClient, config: DrillConfig, taskdb: TaskDB | None) -> list[PlannedChange]:
    world = read_world(api, config, taskdb, 0)
    names = config.kubernetes
    pilot = config.pilot_repo
    plan = [
        PlannedChange(
            "pre-3",
            "Backup current state",
            f"writes deployment/{names.deployment} and configmap/{names.configmap} as YAML and a pg_dump of TaskDB (no change to the system)",
        ),
    ]
    if world.allowlist == (pilot,):
        plan.append(
            PlannedChange(
                "step-1", "Disable orchestrator for expanded repos", f"nothing: REPO_ALLOWLIST is already {pilot!r}"
            )
        )
    else:
        plan.append(
            PlannedChange(
                "step-1",
                "Disable orchestrator for expanded repos",
                f"REPO_ALLOWLIST {allowlist_value(world.allowlist)!r} → {pilot!r} (a rollout of {world.replicas} pods)",
            )
        )
    target = config.replicas["pilot"]
    plan.append(
        PlannedChange(
            "step-2",
            "Scale down FlowEngine",
            f"replicas {world.replicas} → {target}"
            if world.replicas > target
            else f"nothing: {world.replicas} replicas (not above {target})",
        )
    )
    if taskdb is None:
        plan.append(PlannedChange("step-3", "Revert database schema", "unknown: no TaskDB to read"))
    else:
        version = schema.current_version(taskdb)
        pilot_version = config.schema.pilot_version
        plan.append(
            PlannedChange(
                "step-3",
                "Revert database schema",
                f"schema {version} → {pilot_version} (rollback_to_pilot.sql, after a verified backup)"
                if version is not None and version > pilot_version
                else f"nothing: schema version {version}",
            )
        )
    rules = PrometheusRules(api, names.monitoring_namespace).names()
    doomed = sorted(f"{repo}-alerts" for repo in world.expanded_repos if f"{repo}-alerts" in rules)
    plan.append(
        PlannedChange(
            "step-4",
            "Disable expanded repo alerts",
            f"back up and delete {len(doomed)} PrometheusRules in {names.monitoring_namespace}: {', '.join(doomed)}"
            if doomed
            else "nothing: no expanded-repo alert rule left",
        )
    )
    plan += [
        PlannedChange(
            "step-5",
            "Verify pilot repo functionality",
            f"runs one flow for {pilot} (a TaskDB row, no configuration change)",
        ),
        PlannedChange("step-6", "Verify system health", "reads only"),
        PlannedChange(
            "step-7",
            "Stakeholder communication",
            "sends the completion notice (to the local sinks unless --notify live)",
        ),
        PlannedChange(
            "step-8", "Update status page", "posts the status-page update (to the local sinks unless --notify live)"
        ),
    ]
    return plan
