"""The one table of options shared by `rollback-drill run` and plain `pytest features/`.

Both front ends register every entry here with the same name, default and help, so a
drill started either way means the same thing. The table is plain data: the CLI
feeds it to argparse, ``conftest.py`` to pytest's parser (which is argparse-like).
``resolve_settings`` then turns the parsed values, once and before anything runs, into
the ``Settings`` the library takes; only the front doors (``cli``, ``run``, ``conftest``
and ``fixtures``) import this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rollback_drill.config import DrillConfig, load_config
from rollback_drill.errors import ConfigError
from rollback_drill.settings import (
    KEEP_POLICIES,
    NOTIFY_MODES,
    PHASES,
    TARGETS,
    TASKDB_PROVIDERS,
    TIME_SCALE_EXAMPLE,
    Keep,
    NotifyMode,
    Phase,
    Settings,
    Target,
    TaskDBProvider,
    check_taskdb_for_target,
    parse_participants,
    resolve_time_scale,
)

Choice = TypeVar("Choice", bound=str | int)


@dataclass(frozen=True)
class Option:
    flag: str
    help: str
    default: Any = None
    choices: tuple[str, ...] | None = None
    is_flag: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return "drill_" + self.flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option(
        "--config",
        "drill configuration (YAML); default: the packaged drill.yaml, which matches the runbook",
        metavar="PATH",
    ),
    Option("--target", "where the drill runs", "local", TARGETS),
    Option(
        "--kubeconfig", "kubeconfig of the cluster for --target kubeconfig (and the file kind writes)", metavar="PATH"
    ),
    Option("--context", "kubeconfig context for --target kubeconfig", metavar="NAME"),
    Option("--cluster-allowlist", "file of cluster fingerprints destructive actions may touch", metavar="PATH"),
    Option("--env", "reuse an environment made by `rollback-drill env up --name NAME`", metavar="NAME"),
    Option(
        "--taskdb",
        "TaskDB provider; with dsn the DSN comes from ROLLBACK_DRILL_TASKDB_DSN",
        "container",
        TASKDB_PROVIDERS,
    ),
    Option("--flowengine-url", "a real FlowEngine (staging); default: the local reference simulator", metavar="URL"),
    Option(
        "--phase",
        "expanded scope the world starts from (6: 10 repos, 7: 50)",
        "6",
        tuple(str(phase) for phase in PHASES),
    ),
    Option("--incident", "incident to inject", "mass-failure", metavar="NAME"),
    Option(
        "--declared",
        "the incident is declared (staging): decide from its declared signals",
        is_flag=True,
        default=False,
    ),
    Option(
        "--time-scale",
        "scales waiting windows (triage, monitoring, soak) by X in (0, 1]; never budgets or targets; "
        "default: drill.yaml's, 1.0 on a kubeconfig target",
        metavar="X",
    ),
    Option("--participants", "people named in evidence and messages, 'Role=Name,...'", metavar="LIST"),
    Option("--incident-commander", "the Incident Commander named in evidence and messages", metavar="NAME"),
    Option("--evidence-dir", "where evidence bundles go", "reports", metavar="DIR"),
    Option("--keep", "what to leave behind after the drill", "never", KEEP_POLICIES),
    Option("--dry-run", "print what each step would change; change nothing", is_flag=True, default=False),
    Option(
        "--notify",
        "where the runbook's messages go: the local sinks, or (opt-in) the endpoints drill.yaml names",
        "sinks",
        NOTIFY_MODES,
    ),
    Option(
        "--binaries-dir", "directory with prebuilt control-plane binaries instead of the Go-built cache", metavar="DIR"
    ),
)


class _AddOption(Protocol):
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


def register(add_option: _AddOption) -> None:
    """Register every option on an argparse parser or a pytest option group (``addoption``)."""
    for option in OPTIONS:
        kwargs: dict[str, Any] = {"dest": option.dest, "help": option.help, "default": option.default}
        if option.is_flag:
            kwargs["action"] = "store_true"
        else:
            if option.choices:
                kwargs["choices"] = option.choices
            if option.metavar:
                kwargs["metavar"] = option.metavar
        add_option(option.flag, **kwargs)


@dataclass(frozen=True)
class DrillOptions:
    """The options as given, parsed and typed, before drill.yaml is read. Built from argparse's namespace or
    pytest's config the same way; ``resolve_settings`` turns them into the ``Settings`` the drill runs with."""

    config: Path | None = None
    target: Target = "local"
    kubeconfig: Path | None = None
    context: str | None = None
    cluster_allowlist: Path | None = None
    env: str | None = None
    taskdb: TaskDBProvider = "container"
    flowengine_url: str | None = None
    phase: Phase = 6
    incident: str = "mass-failure"
    declared: bool = False
    time_scale: float | None = None
    participants: dict[str, str] = field(default_factory=dict)
    incident_commander: str | None = None
    evidence_dir: Path = Path("reports")
    keep: Keep = "never"
    dry_run: bool = False
    notify: NotifyMode = "sinks"
    binaries_dir: Path | None = None

    @classmethod
    def from_values(cls, get: Any) -> DrillOptions:
        """``get(dest)`` returns the raw value of an option (argparse namespace attr or pytest getoption)."""
        raw = {option.flag.lstrip("-").replace("-", "_"): get(option.dest) for option in OPTIONS}
        return cls(
            config=_path(raw["config"]),
            target=_one_of("--target", raw["target"], TARGETS),
            kubeconfig=_path(raw["kubeconfig"]),
            context=raw["context"],
            cluster_allowlist=_path(raw["cluster_allowlist"]),
            env=raw["env"],
            taskdb=_one_of("--taskdb", raw["taskdb"], TASKDB_PROVIDERS),
            flowengine_url=raw["flowengine_url"],
            phase=_one_of("--phase", raw["phase"], PHASES),
            incident=raw["incident"],
            declared=bool(raw["declared"]),
            time_scale=_number("--time-scale", raw["time_scale"], TIME_SCALE_EXAMPLE),
            participants=parse_participants(raw["participants"]),
            incident_commander=raw["incident_commander"],
            evidence_dir=Path(raw["evidence_dir"]),
            keep=_one_of("--keep", raw["keep"], KEEP_POLICIES),
            dry_run=bool(raw["dry_run"]),
            notify=_one_of("--notify", raw["notify"], NOTIFY_MODES),
            binaries_dir=_path(raw["binaries_dir"]),
        )

    def validate(self) -> None:
        """Cross-option checks; each failure names the problem and the fix."""
        if self.target == "kubeconfig" and self.kubeconfig is None:
            raise ConfigError("--target kubeconfig needs --kubeconfig PATH (and usually --context NAME)")
        if self.target != "kubeconfig" and self.context is not None and self.kubeconfig is None:
            raise ConfigError("--context only applies with --kubeconfig")
        check_taskdb_for_target(self.target, self.taskdb)

    def resolve(self, config: DrillConfig | None = None) -> Settings:
        """These options against their drill.yaml (``config``, else loaded from ``--config``): the drill's settings.

        Precedence, for each value both may give: the option, then drill.yaml; the waiting
        windows' scale is ``--time-scale``, else 1.0 on a kubeconfig target, else drill.yaml's.
        """
        self.validate()
        drill_config = config if config is not None else load_config(self.config)
        time_scale = resolve_time_scale(self.time_scale, self.target, drill_config.time_scale)
        return Settings(
            config=drill_config,
            time_scale=time_scale.factor,
            time_scale_source=time_scale.source,
            config_path=self.config,
            target=self.target,
            kubeconfig=self.kubeconfig,
            context=self.context,
            cluster_allowlist=self.cluster_allowlist,
            env=self.env,
            taskdb=self.taskdb,
            flowengine_url=self.flowengine_url,
            phase=self.phase,
            incident=self.incident,
            declared=self.declared,
            participants=dict(self.participants or drill_config.participants),
            incident_commander=self.incident_commander or drill_config.incident_commander,
            evidence_dir=self.evidence_dir,
            keep=self.keep,
            dry_run=self.dry_run,
            notify=self.notify,
            binaries_dir=self.binaries_dir,
        )


def resolve_settings(get: Callable[[str], Any]) -> Settings:
    """The settings from the raw option values (``get(dest)``: an argparse namespace attribute or pytest's getoption).

    Raises ``ConfigError`` (exit 2, one line naming the fix) for any option or drill.yaml
    value that cannot work, before anything has run.
    """
    return DrillOptions.from_values(get).resolve()


def names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(DrillOptions))


def _path(value: Any) -> Path | None:
    return Path(value) if value not in (None, "") else None


def _one_of(flag: str, value: Any, choices: tuple[Choice, ...]) -> Choice:
    """``value`` as the one of ``choices`` it spells (argparse already refused others; this gives it its type)."""
    for candidate in choices:
        if str(candidate) == str(value):
            return candidate
    raise ConfigError(f"{flag} {value!r} is not one of {', '.join(map(str, choices))}")


def _number(flag: str, value: Any, example: str) -> float | None:
    """A number, or None when the option is not given; whether it is in range is the setting's own rule."""
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{flag} {value!r} is not a number; use e.g. {example}") from exc
