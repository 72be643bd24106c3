"""The drill's settings: its options and its ``drill.yaml``, resolved once, before anything runs.

The front doors (``rollback-drill run`` and ``conftest.py``) parse the command line with
the shared option table (``rollback_drill.options``) and resolve it into these settings
once, at start, with the rules kept here: an option that cannot work is refused then
(exit 2), not an hour into a drill. The library takes these settings, or the few values
it needs from them, and never reads the command line itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from rollback_drill.config import DrillConfig, check_time_scale
from rollback_drill.errors import ConfigError

Target = Literal["local", "kind", "kubeconfig"]
TaskDBProvider = Literal["container", "local", "dsn"]
Keep = Literal["never", "on-failure", "always"]
NotifyMode = Literal["sinks", "live"]
Phase = Literal[6, 7]
TimeScaleSource = Literal["--time-scale", "kubeconfig target", "drill.yaml"]
"""Where the waiting windows' scale came from: the operator, a staging target's real windows, or the drill's file."""

TARGETS: tuple[Target, ...] = get_args(Target)
TASKDB_PROVIDERS: tuple[TaskDBProvider, ...] = get_args(TaskDBProvider)
KEEP_POLICIES: tuple[Keep, ...] = get_args(Keep)
NOTIFY_MODES: tuple[NotifyMode, ...] = get_args(NotifyMode)
PHASES: tuple[Phase, ...] = get_args(Phase)

TIME_SCALE_OPTION = "--time-scale"
TIME_SCALE_EXAMPLE = "--time-scale 0.01"


@dataclass(frozen=True)
class TimeScale:
    """The factor applied to every waiting window (triage, monitoring, soak); budgets are never scaled."""

    factor: float
    source: TimeScaleSource

    def for_rehearsal(self, rehearsal_factor: float) -> float:
        """The factor a scenario asks for ("waiting windows are scaled by X"), where drill.yaml's would apply.

        ``--time-scale`` is the operator's explicit choice and wins; a kubeconfig (staging)
        target keeps the windows it was given. The scenario's factor obeys the same rule as
        every other (greater than 0, at most 1).
        """
        if self.source != "drill.yaml":
            return self.factor
        return check_time_scale(rehearsal_factor, "the rehearsal's time scale")


def resolve_time_scale(option: float | None, target: Target, config_time_scale: float) -> TimeScale:
    """``--time-scale`` if given; else 1.0 on a kubeconfig target, where waits are real; else drill.yaml's.

    The option's whole valid range is checked here, before anything runs, so a value the
    re-enablement or the soak would refuse never gets as far as a held triage.
    """
    if option is not None:
        try:
            return TimeScale(check_time_scale(option, TIME_SCALE_OPTION), "--time-scale")
        except ConfigError as exc:
            raise ConfigError(f"{exc}; use e.g. {TIME_SCALE_EXAMPLE}, or leave it out for drill.yaml's") from exc
    if target == "kubeconfig":
        return TimeScale(1.0, "kubeconfig target")
    return TimeScale(check_time_scale(config_time_scale), "drill.yaml")


@dataclass(frozen=True)
class Settings:
    """Everything a drill was told: the options, typed and resolved against its ``drill.yaml``."""

    config: DrillConfig
    """The drill configuration, loaded and checked (``--config``, else the packaged drill.yaml)."""
    time_scale: float
    """The factor on every waiting window (triage, monitoring, soak), checked to be in (0, 1]; never on budgets."""
    time_scale_source: TimeScaleSource
    config_path: Path | None = None
    """``--config`` as given; None for the packaged drill.yaml."""
    target: Target = "local"
    kubeconfig: Path | None = None
    context: str | None = None
    cluster_allowlist: Path | None = None
    env: str | None = None
    """An environment from ``rollback-drill env up --name NAME`` to reuse; None for a throwaway one."""
    taskdb: TaskDBProvider = "container"
    flowengine_url: str | None = None
    """A real FlowEngine (staging), used only through its contract; None for the local simulator."""
    phase: Phase = 6
    incident: str = "mass-failure"
    declared: bool = False
    participants: Mapping[str, str] = field(default_factory=dict)
    """People named in the evidence and the messages: ``--participants``, else drill.yaml's."""
    incident_commander: str = ""
    """``--incident-commander``, else drill.yaml's."""
    evidence_dir: Path = Path("reports")
    keep: Keep = "never"
    dry_run: bool = False
    notify: NotifyMode = "sinks"
    binaries_dir: Path | None = None

    def rehearsal_time_scale(self, rehearsal_factor: float) -> float:
        """The scale for a scenario that asks for its own ("waiting windows are scaled by X")."""
        return TimeScale(self.time_scale, self.time_scale_source).for_rehearsal(rehearsal_factor)


DRILL_MADE_TASKDBS: tuple[TaskDBProvider, ...] = ("container", "local")
"""Providers whose TaskDB the drill creates itself, for the worlds it makes (``--target local|kind``)."""


def check_taskdb_for_target(target: Target, taskdb: TaskDBProvider) -> None:
    """Staging's TaskDB only on staging, and somebody's database never in a world the drill makes.

    A kubeconfig target is somebody's cluster: its FlowEngine writes to its own TaskDB, which the
    drill must reach by DSN (``container``/``local`` would start a second, unrelated database the
    runbook's Step 3 would revert instead). A drill-made target (``local``, ``kind``) seeds and resets
    its TaskDB; a DSN names a database somebody else owns, so it is never handed to one.
    """
    if target == "kubeconfig" and taskdb != "dsn":
        raise ConfigError(
            "--target kubeconfig reaches staging's TaskDB: pass --taskdb dsn with ROLLBACK_DRILL_TASKDB_DSN set"
        )
    if target != "kubeconfig" and taskdb not in DRILL_MADE_TASKDBS:
        raise ConfigError(
            f"--taskdb {taskdb} names a database the drill did not create, and --target {target} seeds and resets "
            "its own: leave --taskdb out (or pass container or local), or use --target kubeconfig for staging"
        )


def parse_participants(value: str | None) -> dict[str, str]:
    """``"SRE On-Call=Ana,Engineering TL=Bo"`` → ``{"SRE On-Call": "Ana", "Engineering TL": "Bo"}``."""
    if not value:
        return {}
    result: dict[str, str] = {}
    for item in value.split(","):
        role, sep, name = item.partition("=")
        if not sep or not role.strip() or not name.strip():
            raise ConfigError(
                f"--participants entry {item!r} is not Role=Name; e.g. --participants 'SRE On-Call=Ana,Engineering TL=Bo'"
            )
        result[role.strip()] = name.strip()
    return result
