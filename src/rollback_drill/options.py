"""The one table of options shared by `rollback-drill run` and plain `pytest features/`.

Both front ends register every entry here with the same name, default and help, so a
drill started either way means the same thing. The table is plain data: the CLI
feeds it to argparse, ``conftest.py`` to pytest's parser (which is argparse-like).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from rollback_drill.errors import ConfigError


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
    Option("--target", "where the drill runs", "local", ("local", "kind", "kubeconfig")),
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
        ("container", "local", "dsn"),
    ),
    Option("--flowengine-url", "a real FlowEngine (staging); default: the local reference simulator", metavar="URL"),
    Option("--phase", "expanded scope the world starts from (6: 10 repos, 7: 50)", "6", ("6", "7")),
    Option("--incident", "incident to inject", "mass-failure", metavar="NAME"),
    Option(
        "--declared",
        "the incident is declared (staging): decide from its declared signals",
        is_flag=True,
        default=False,
    ),
    Option("--time-scale", "scales waiting windows (triage, monitoring, soak); never budgets or targets", metavar="X"),
    Option("--participants", "people named in evidence and messages, 'Role=Name,...'", metavar="LIST"),
    Option("--incident-commander", "the Incident Commander named in evidence and messages", metavar="NAME"),
    Option("--evidence-dir", "where evidence bundles go", "reports", metavar="DIR"),
    Option("--keep", "what to leave behind after the drill", "never", ("never", "on-failure", "always")),
    Option("--dry-run", "print what each step would change; change nothing", is_flag=True, default=False),
    Option(
        "--notify",
        "where the runbook's messages go: the local sinks, or (opt-in) the endpoints drill.yaml names",
        "sinks",
        ("sinks", "live"),
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
    """The options, parsed and typed. Built from argparse's namespace or pytest's config the same way."""

    config: Path | None = None
    target: str = "local"
    kubeconfig: Path | None = None
    context: str | None = None
    cluster_allowlist: Path | None = None
    env: str | None = None
    taskdb: str = "container"
    flowengine_url: str | None = None
    phase: int = 6
    incident: str = "mass-failure"
    declared: bool = False
    time_scale: float | None = None
    participants: dict[str, str] = field(default_factory=dict)
    incident_commander: str | None = None
    evidence_dir: Path = Path("reports")
    keep: str = "never"
    dry_run: bool = False
    notify: str = "sinks"
    binaries_dir: Path | None = None

    @classmethod
    def from_values(cls, get: Any) -> DrillOptions:
        """``get(dest)`` returns the raw value of an option (argparse namespace attr or pytest getoption)."""
        raw = {option.flag.lstrip("-").replace("-", "_"): get(option.dest) for option in OPTIONS}
        return cls(
            config=_path(raw["config"]),
            target=raw["target"],
            kubeconfig=_path(raw["kubeconfig"]),
            context=raw["context"],
            cluster_allowlist=_path(raw["cluster_allowlist"]),
            env=raw["env"],
            taskdb=raw["taskdb"],
            flowengine_url=raw["flowengine_url"],
            phase=int(raw["phase"]),
            incident=raw["incident"],
            declared=bool(raw["declared"]),
            time_scale=_positive_float("--time-scale", raw["time_scale"]),
            participants=parse_participants(raw["participants"]),
            incident_commander=raw["incident_commander"],
            evidence_dir=Path(raw["evidence_dir"]),
            keep=raw["keep"],
            dry_run=bool(raw["dry_run"]),
            notify=raw["notify"],
            binaries_dir=_path(raw["binaries_dir"]),
        )

    def validate(self) -> None:
        """Cross-option checks; each failure names the problem and the fix."""
        if self.target == "kubeconfig" and self.kubeconfig is None:
            raise ConfigError("--target kubeconfig needs --kubeconfig PATH (and usually --context NAME)")
        if self.target != "kubeconfig" and self.context is not None and self.kubeconfig is None:
            raise ConfigError("--context only applies with --kubeconfig")
        if self.taskdb == "dsn" and self.target == "local" and self.env is None:
            # Allowed (a local cluster against an external database), but say nothing: it is legitimate for staging-like runs.
            pass


def names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(DrillOptions))


def _path(value: Any) -> Path | None:
    return Path(value) if value not in (None, "") else None


def _positive_float(flag: str, value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{flag} {value!r} is not a number; use e.g. {flag} 0.01") from exc
    if not number > 0:
        raise ConfigError(f"{flag} must be greater than 0, got {value!r}")
    return number


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
