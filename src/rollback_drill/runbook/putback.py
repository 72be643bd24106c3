"""Putting a kubeconfig (staging) target back as it was before the drill, from the drill's own backups.

A drill-made cluster is thrown away afterwards; a staging cluster is not. After the
drill, the allowlist and replicas come back from the pre-rollback Deployment YAML,
the alert rules from Step 4's backups and TaskDB from the verified pg_dump, and the
result is compared with what was backed up (CONVENTIONS, "Putting a kubeconfig target
back"). ``put_back_after_drill`` is what a drill runs once its scenario is over;
``put_back`` is the put-back itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rollback_drill.errors import VerificationFailed
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.runbook import actions
from rollback_drill.runbook.actions import Backups, Runbook
from rollback_drill.targets.cluster import Cluster
from rollback_drill.taskdb import backup as taskdb_backup
from rollback_drill.taskdb import schema
from rollback_drill.world.manifests import parse_allowlist
from rollback_drill.world.seed import read_world

PUT_BACK_FAILED: Final = "put-back-failed"
"""The warning a failed put-back leaves in the evidence; a drill with it is a failed drill, whatever its steps said."""
DUMP_TIMEOUT_S: Final = 120.0
"""How long the end of a drill waits for the pre-rollback TaskDB dump still running in the background."""


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


def put_back_needed(cluster: Cluster, keep: str) -> bool:
    """A cluster the drill did not create outlives it and is put back, unless ``--keep always`` leaves it as the drill left it."""
    return not cluster.created_by_drill and keep != "always"


def put_back_after_drill(
    runbook: Runbook, backups: Backups, alert_backup_dir: Path, recorder: Recorder, *, keep: str
) -> PutBack | None:
    """The end of a drill that took ``backups``: put a kubeconfig target back, check it, and record either outcome.

    The TaskDB dump runs in the background and is waited for first, on every target, so it
    never outlives the drill. A drill-made cluster (or ``--keep always``) is left as it is and
    None is returned. A put-back that fails leaves the ``put-back-failed`` warning and raises.
    """
    if not backups.taskdb.done:
        backups.taskdb.wait(DUMP_TIMEOUT_S)
    if not put_back_needed(runbook.cluster, keep):
        return None
    alert_backups = tuple(sorted(alert_backup_dir.glob("*.yaml")))
    try:
        result = put_back(runbook, backups, alert_backups)
    except Exception as exc:
        recorder.warn(PUT_BACK_FAILED, f"the cluster was not put back as it was: {exc}", None)
        raise
    recorder.event("put_back", **result.evidence())
    return result
