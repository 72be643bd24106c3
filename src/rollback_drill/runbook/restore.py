"""Putting a kubeconfig (staging) target back as it was before the drill, from the drill's own backups.

A drill-made cluster is thrown away afterwards; a staging cluster is not. After the
drill, the allowlist and replicas come back from the pre-rollback Deployment YAML,
the alert rules from Step 4's backups and TaskDB from the verified pg_dump, and the
result is compared with what was backed up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback_drill.errors import VerificationFailed
from rollback_drill.runbook import actions
from rollback_drill.runbook.actions import Backups, Runbook
from rollback_drill.taskdb import backup as taskdb_backup
from rollback_drill.taskdb import schema
from rollback_drill.world.manifests import parse_allowlist
from rollback_drill.world.seed import read_world


@dataclass(frozen=True)
class PutBack:
    allowlist: tuple[str, ...]
    replicas: int
    alert_rules: tuple[str, ...]
    schema_version: str | None

    def evidence(self) -> dict[str, Any]:
        return {
            "allowlist": list(self.allowlist),
            "replicas": self.replicas,
            "alert_rules": list(self.alert_rules),
            "schema_version": self.schema_version,
        }


def _backed_up_allowlist(deployment: dict[str, Any], container: str) -> tuple[str, ...]:
    for item in deployment["spec"]["template"]["spec"]["containers"]:
        if item["name"] == container:
            for env in item.get("env") or []:
                if env["name"] == "REPO_ALLOWLIST":
                    return parse_allowlist(env.get("value"))
    return ()


def put_back(runbook: Runbook, backups: Backups, alert_backups: tuple[Path, ...]) -> PutBack:
    """Restore what the rollback changed and check it; raise VerificationFailed naming any difference."""
    names = runbook.config.kubernetes
    wanted_allowlist = _backed_up_allowlist(backups.deployment, names.container)
    wanted_replicas = int(backups.deployment["spec"]["replicas"])
    actions.set_allowlist(runbook, wanted_allowlist, action="put the allowlist back")
    runbook.apps().patch_namespaced_deployment_scale(
        runbook.deployment_name, runbook.namespace, {"spec": {"replicas": wanted_replicas}}, field_validation="Strict"
    )
    actions.wait_rollout_unless_crash_loop(runbook, actions.STEP_2_ROLLOUT_TIMEOUT_S)
    restored_rules = actions.restore_alert_rules(runbook, alert_backups) if alert_backups else ()
    dump = backups.taskdb.wait(120)
    if schema.current_version(runbook.taskdb) != _dumped_version(dump):
        runbook.guard("restore TaskDB")
        taskdb_backup.restore_in_place(runbook.taskdb, dump.path)
    world = read_world(runbook.api, runbook.config, runbook.taskdb, 0)
    result = PutBack(world.allowlist, world.replicas, tuple(sorted(restored_rules)), world.schema_version)
    differences = []
    if world.allowlist != wanted_allowlist:
        differences.append(f"allowlist {list(world.allowlist)} != {list(wanted_allowlist)}")
    if world.replicas != wanted_replicas:
        differences.append(f"replicas {world.replicas} != {wanted_replicas}")
    missing_rules = {p.stem for p in alert_backups} - set(world.alert_rules)
    if missing_rules:
        differences.append(f"alert rules not back: {sorted(missing_rules)}")
    if world.schema_version != _dumped_version(dump):
        differences.append(f"schema {world.schema_version} != {_dumped_version(dump)}")
    if differences:
        raise VerificationFailed("putting the cluster back left differences: " + "; ".join(differences))
    return result


def _dumped_version(dump: taskdb_backup.BackupResult) -> str | None:
    return dump.schema_version
