"""Faster variants of library code, measured by the benchmark beside the real thing before anyone changes ``src/``.

Each variant keeps what the drill verifies: same guard, same backups (one YAML file
per removed rule, written before the rule is deleted), same drift check, same final
check that no expanded repo's rule is left. ``report.py`` turns the measured
difference into the proposal in the README.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollback_drill import environment
from rollback_drill.config import load_config
from rollback_drill.errors import DrillError, VerificationFailed
from rollback_drill.evidence.recorder import Recorder, format_utc, sha256_file, to_jsonable
from rollback_drill.kube.rules import GROUP, PLURAL, VERSION, PrometheusRules
from rollback_drill.runbook import actions
from rollback_drill.targets import local
from rollback_drill.targets.cluster import identify
from rollback_drill.toolchain.build import ensure_binaries
from rollback_drill.world.manifests import CRASH_LOOP_STAGE


def disable_alerts_from_listing(
    runbook: actions.Runbook, backup_dir: Path, *, concurrency: int = 8
) -> actions.AlertsResult:
    """Step 4 as ``disable_expanded_alerts``, with the backups taken from the one listing it already makes.

    The library lists the rules (``rules.names()``), then GETs each one again to back it
    up before deleting it: two requests per repo. The listing already holds every
    object in full, so this writes the backup from it and deletes with a
    ``resourceVersion`` precondition: if a rule changed after the listing, the delete is
    refused (409) and that one rule falls back to GET + backup + delete, so a backup
    never differs from what was removed. One request per repo.
    """
    runbook.guard("disable expanded-repo alerts (Step 4)")
    namespace = runbook.config.kubernetes.monitoring_namespace
    rules = PrometheusRules(runbook.api, namespace)
    custom = client.CustomObjectsApi(runbook.api)
    expanded = runbook.expanded_repos()
    wanted = [f"{repo}-alerts" for repo in expanded]
    listed = {item["metadata"]["name"]: item for item in rules.items()}
    targets = [name for name in wanted if name in listed]
    drift = actions.try_runbook_alert_patch(runbook, targets[0]) if targets else None
    if targets and drift is None:  # the patch went through: the listing no longer matches that rule
        listed[targets[0]] = rules.get(targets[0])
    backup_dir.mkdir(parents=True, exist_ok=True)

    def delete(name: str, body: dict[str, Any]) -> bool:
        version = body["metadata"]["resourceVersion"]
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=version))
        try:
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body=options)
        except ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status == 409:  # changed since the listing: back up what is there now, then delete it
                return backup_and_delete(name, rules.get(name))
            raise
        return True

    def backup_and_delete(name: str, body: dict[str, Any]) -> bool:
        path = backup_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        return delete(name, body)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        deleted = list(pool.map(lambda name: (name, backup_and_delete(name, listed[name])), targets))
    remaining = rules.names() & set(wanted)
    if remaining:
        raise VerificationFailed(f"alert rules still present after Step 4: {', '.join(sorted(remaining))}")
    disabled = tuple(name for name, done in deleted if done)
    already = tuple(name for name in wanted if name not in disabled)
    backups = tuple(backup_dir / f"{name}.yaml" for name in disabled)
    return actions.AlertsResult(disabled, already, backups, drift)


# --- environment up: TaskDB beside the control plane, the sinks beside the simulator --------------------


def bring_up_parallel(
    name: str, *, progress: Callable[[str], None] = lambda _m: None, phase: int = 6
) -> environment.EnvironmentState:
    """``environment.bring_up(name, with_world=True)`` with the independent parts started at the same time.

    The TaskDB container does not need the cluster, and the notification sinks do not
    need the simulator, so each pair starts together; everything else, and the state
    file written after each part, is as in the library. ``timings_s`` keeps every part's
    own time (the parts overlap, so they add up to more than the total).
    """
    path = environment.state_path(name)
    if path.exists():
        raise FileExistsError(path)
    directory = environment.envs_dir() / name
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    state = environment.EnvironmentState(name=name, target="local", directory=str(directory))
    state.save()
    timed = environment._timed  # noqa: SLF001 - the library's own timing helper, so the parts are named alike
    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="bring-up") as pool:
            db_future = pool.submit(
                timed,
                state,
                "taskdb",
                progress,
                lambda: environment._start_taskdb("container", directory, name),  # noqa: SLF001
            )
            binaries = timed(state, "binaries", progress, ensure_binaries)
            plane = timed(
                state,
                "control plane",
                progress,
                lambda: local.start(directory / "cluster", binaries, extra_stages=CRASH_LOOP_STAGE),
            )
            state.control_plane = plane.to_state()
            state.kubeconfig = plane.kubeconfig
            state.save()
            timed(state, "nodes and namespaces", progress, lambda: environment._prepare_cluster(plane.kubeconfig))  # noqa: SLF001
            cluster = identify("local", plane.kubeconfig, created_by_drill=True)
            state.fingerprint = cluster.fingerprint
            state.server_version = cluster.server_version
            db = db_future.result()
            state.taskdb = db.to_state()
            state.save()
        config = load_config()
        timed(state, "world", progress, lambda: environment._seed(cluster, db, config, phase))  # noqa: SLF001
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bring-up") as pool:
            sinks = pool.submit(
                timed, state, "notification sinks", progress, lambda: environment.start_sinks(directory)
            )
            state.services["flowengine"] = timed(
                state,
                "flowengine simulator",
                progress,
                lambda: environment.start_simulator(directory, plane.kubeconfig, db, config),
            )
            state.services["sinks"] = sinks.result()
        state.save()
    except BaseException:
        if state.taskdb is None and "db_future" in locals() and db_future.done() and db_future.exception() is None:
            state.taskdb = db_future.result().to_state()
        environment.tear_down(state)
        raise
    return state


# --- evidence: record a step's artifacts in one write, not one evidence rewrite per file ------------------


class BatchingRecorder(Recorder):
    """``Recorder`` with ``add_artifacts(paths)``: the same entries and events as ``add_artifact`` once per path,
    with evidence.json rewritten (and the timeline fsync'ed) once for the batch instead of once per file.

    Step 4 records one backup per expanded repo; with ``add_artifact`` each one redacts,
    serialises and fsyncs the whole (growing) evidence.json, which is quadratic in the
    repo count.
    """

    def add_artifacts(self, paths: list[Path]) -> list[dict[str, Any]]:
        entries = []
        for path in paths:
            full = path if path.is_absolute() else self._bundle_dir / path
            relative = full.resolve().relative_to(self._bundle_dir.resolve())
            if not full.is_file():
                raise DrillError(f"artifact {full} is not a file; write it before recording it")
            digest, size = sha256_file(full)
            entries.append({"path": relative.as_posix(), "sha256": digest, "bytes": size})
        with self._lock:
            self._check_open(f"add {len(entries)} artifacts")
            current = self._doc.setdefault("artifacts", [])
            current.extend(to_jsonable(entry) for entry in entries)
            self._write_evidence()
            for entry in entries:
                self._seq += 1
                record = {
                    "seq": self._seq,
                    "t_wall": format_utc(self._clock.wall()),
                    "t_mono": round(self._clock.monotonic() - self._started_mono, 6),
                    "kind": "artifact_added",
                    **entry,
                }
                self._timeline.write(
                    json.dumps(self._redactor.redact(to_jsonable(record)), ensure_ascii=False, allow_nan=False) + "\n"
                )
            self._timeline.flush()
            os.fsync(self._timeline.fileno())
        return [dict(e) for e in entries]
