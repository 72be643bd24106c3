"""The runbook's failure paths, rehearsed: a schema revert that breaks halfway, and a Step 1 done wrongly.

A drill proves the rollback also fails safely: Step 3 restores TaskDB from the
pre-rollback dump when its script breaks, and the pilot probe catches a Step 1 that
drops the pilot from the allowlist as pilot impact. Each function stages the fault,
performs the step, and returns what a check needs to judge it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rollback_drill.errors import VerificationFailed
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.runbook import actions
from rollback_drill.runbook.actions import Backups, Runbook
from rollback_drill.runbook.drill import DrillProbes
from rollback_drill.runbook.perform import BACKUP_WAIT_S
from rollback_drill.runbook.targets import DrillTargets, record_targets
from rollback_drill.taskdb import schema
from rollback_drill.taskdb.identity import require_created_by_drill
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.timing.clock import Clock
from rollback_drill.timing.wait import wait_until
from rollback_drill.timing.windows import Marks, step_end, step_start
from rollback_drill.world.manifests import allowlist_value

PROBES_AFTER_WRONG_ROLLOUT: Final = 5
"""Pilot probe requests awaited after the wrong rollout, as the probe would go on asking until Step 8."""
PROBES_AFTER_WRONG_ROLLOUT_TIMEOUT_S: Final = 10.0
WRONG_ROLLOUT_TIMEOUT_S: Final = 120.0
"""``kubectl rollout status --timeout=120s``, as in Step 1."""
STEPS_THE_WRONG_STEP_1_STANDS_FOR: Final = ("step-4", "step-5", "step-8")
"""The ends of the rollback's steps the pilot impact window needs; the wrong Step 1 stands in for all of them."""


def break_halfway(db: TaskDB) -> None:
    """A rollback script that drops one table, then another, committed, then fails: half a revert.

    A fault the drill plants, so only in a TaskDB the drill created, never in somebody's staging.
    """
    require_created_by_drill(db, "break Step 3's script halfway (DROP TABLE)")
    with db.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS model_routes")
        conn.execute("DROP TABLE repo_quotas")  # committed: autocommit, no transaction around it
        conn.execute("SELECT no_such_function()")


@dataclass(frozen=True)
class FailedRevert:
    """Step 3 performed with a broken script: the schema version before it, and how the step failed."""

    version_before: str | None
    error: str | None
    """The step's failure message, or None when Step 3 (wrongly) did not fail."""


def revert_schema_breaking_halfway(runbook: Runbook, backups: Backups) -> FailedRevert:
    """Step 3 with ``break_halfway`` as its script; Step 3 should restore the pre-rollback dump and fail saying so."""
    before = schema.current_version(runbook.taskdb)
    try:
        actions.revert_schema(runbook, backups.taskdb.wait(BACKUP_WAIT_S), apply_sql=break_halfway)
    except VerificationFailed as failure:
        return FailedRevert(before, str(failure))
    return FailedRevert(before, None)


def restrict_allowlist_omitting_pilot(
    runbook: Runbook,
    expanded_repos: tuple[str, ...],
    probes: DrillProbes,
    *,
    marks: Marks,
    clock: Clock,
    recorder: Recorder,
    incident: str,
) -> DrillTargets:
    """Step 1 done wrongly (the expanded repos, without the pilot), rolled out, and the drill targets measured.

    The pilot probe goes on asking after the rollout; the steps whose ends bound the
    pilot impact window are marked as ended now, so that the window covers the harm.
    """
    marks.mark(step_start("step-1"), overwrite=True)
    actions.set_allowlist(runbook, expanded_repos, action="restrict the allowlist wrongly")
    actions.wait_rollout_unless_crash_loop(runbook, WRONG_ROLLOUT_TIMEOUT_S)
    rolled_out = clock.monotonic()
    wait_until(
        lambda: sum(1 for s in probes.pilot.samples() if s.t_monotonic > rolled_out) >= PROBES_AFTER_WRONG_ROLLOUT,
        timeout_s=PROBES_AFTER_WRONG_ROLLOUT_TIMEOUT_S,
        describe=f"{PROBES_AFTER_WRONG_ROLLOUT} pilot probe requests after the wrong rollout",
    )
    for step in STEPS_THE_WRONG_STEP_1_STANDS_FOR:
        marks.mark(step_end(step), overwrite=True)
    recorder.warn(
        "wrong-step-1", f"REPO_ALLOWLIST set to {allowlist_value(expanded_repos)!r}, without the pilot", "step-1"
    )
    return record_targets(marks, probes, recorder, runbook.config, incident)
