"""Every runbook action that changes the cluster or TaskDB, tried one by one: the proof that the guard covers them.

Pointed at a cluster the drill did not create and that no allowlist names, each of these
must be refused (``UnsafeTarget``) before it changes anything. ``try_destructive_actions``
records what each raised instead of stopping at the first, so one report shows them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rollback_drill.errors import InputError
from rollback_drill.runbook import actions
from rollback_drill.runbook.actions import Runbook
from rollback_drill.taskdb.backup import BackupResult

ROLLOUT_TIMEOUT_S = 5.0
"""A refused action never waits for a rollout; one that was wrongly allowed should not hold the report up long."""


def destructive_calls(
    runbook: Runbook, *, backup: BackupResult, rule_backups: tuple[Path, ...], alerts_dir: Path
) -> dict[str, Callable[[], object]]:
    """Action name (as in ``runbook.actions``) → a call of it with what it needs."""
    return {
        "restrict_allowlist": lambda: actions.restrict_allowlist(runbook, timeout_s=ROLLOUT_TIMEOUT_S),
        "scale_down": lambda: actions.scale_down(runbook, timeout_s=ROLLOUT_TIMEOUT_S),
        "restart_with_pilot_config": lambda: actions.restart_with_pilot_config(runbook),
        "revert_schema": lambda: actions.revert_schema(runbook, backup),
        "disable_expanded_alerts": lambda: actions.disable_expanded_alerts(runbook, alerts_dir),
        "restore_alert_rules": lambda: actions.restore_alert_rules(runbook, rule_backups),
    }


def try_destructive_actions(
    runbook: Runbook,
    names: Sequence[str],
    *,
    backup: BackupResult,
    rule_backups: tuple[Path, ...],
    alerts_dir: Path,
) -> dict[str, Exception | None]:
    """Try each named action in turn; what each raised, or None where it went through.

    Every name is checked before any action runs: an unknown one raises ``InputError`` and nothing is tried.
    """
    calls = destructive_calls(runbook, backup=backup, rule_backups=rule_backups, alerts_dir=alerts_dir)
    unknown = [name for name in names if name not in calls]
    if unknown:
        raise InputError(
            f"no destructive runbook action is named {', '.join(map(repr, unknown))}; known: {', '.join(calls)}"
        )
    outcomes: dict[str, Exception | None] = {}
    for name in names:
        try:
            calls[name]()
        except Exception as exc:  # noqa: BLE001 - every outcome is returned, for the caller to judge
            outcomes[name] = exc
        else:
            outcomes[name] = None
    return outcomes
