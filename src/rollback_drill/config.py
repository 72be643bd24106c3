"""The drill configuration (``drill.yaml``), loaded in one place into frozen dataclasses.

Validation collects every problem before failing, so a malformed file is fixed in
one edit, not one error at a time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rollback_drill.errors import ConfigError

RUNBOOK_BUDGETS_S: Mapping[str, float] = {
    "pre-1": 300,
    "pre-2": 300,
    "pre-3": 300,
    "step-1": 120,
    "step-2": 180,
    "step-3": 300,
    "step-4": 120,
    "step-5": 180,
    "step-6": 300,
    "step-7": 300,
    "step-8": 120,
    "rollback_execution": 600,
    "expanded_downtime": 300,
    "total_resolution": 1800,
    "drill": 1200,
}
"""The runbook's budgets, for checking overrides when the configuration loads. The
feature files state the same budgets in words and are what the drill measures against."""

TIME_SCALE_MAX = 1.0
"""Waiting windows are only ever shortened: a scale above 1 would stretch the runbook's triage and soak."""

HEALTH_WINDOW_S = 600.0
"""Step 6 reviews the dashboard over "the last 10 min" (``health_window_s`` in drill.yaml)."""

_REPO = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
"""Repo names become Kubernetes object names (``<repo>-alerts``), so they follow DNS-1123."""


@dataclass(frozen=True)
class KubernetesNames:
    namespace: str = "production"
    staging_namespace: str = "staging"
    monitoring_namespace: str = "monitoring"
    deployment: str = "flowengine"
    configmap: str = "repo-config"
    container: str = "flowengine"


@dataclass(frozen=True)
class Migration:
    version: str
    phase: int
    file: str


@dataclass(frozen=True)
class SchemaConfig:
    pilot_version: str
    migrations: tuple[Migration, ...]

    def migrations_for(self, phase: int) -> tuple[Migration, ...]:
        return tuple(m for m in self.migrations if m.phase <= phase)


@dataclass(frozen=True)
class Notifications:
    slack_channel: str
    slack_webhook_url_env: str
    pagerduty_severity: str
    pagerduty_routing_key_env: str
    email_sender: str
    email_recipients: tuple[str, ...]
    smtp_url_env: str
    status_page_url_env: str
    status_page_token_env: str


@dataclass(frozen=True)
class Soak:
    duration_s: float
    concurrency: int
    repos: tuple[str, ...]
    success_rate_min: float
    p95_max_s: float


@dataclass(frozen=True)
class Reenablement:
    canary: str
    phase_2: tuple[str, ...]
    phase_3_batch_max: int
    monitoring_s: Mapping[str, float]
    success_rate_min: float
    p95_max_s: float


@dataclass(frozen=True)
class Drills:
    pre_phase_6: dt.date
    pre_phase_7: dt.date
    quarterly_days: int


@dataclass(frozen=True)
class DrillConfig:
    """Everything a drill needs to know about the system it rehearses."""

    source: str
    sha256: str
    runbook_id: str
    pilot_repo: str
    expanded_repos: Mapping[int, tuple[str, ...]]
    replicas: Mapping[str, int]
    kubernetes: KubernetesNames
    schema: SchemaConfig
    notifications: Notifications
    participants: Mapping[str, str]
    incident_commander: str
    soak: Soak
    reenablement: Reenablement
    time_scale: float
    drills: Drills
    budget_overrides_s: Mapping[str, float] = field(default_factory=dict)
    health_window_s: float = HEALTH_WINDOW_S
    """Seconds of flows Step 6 judges when the drill does not know when the rollback ended (the runbook's
    dashboard window); when it does, Step 6 judges the flows since then."""

    def expanded_for(self, phase: int) -> tuple[str, ...]:
        try:
            return self.expanded_repos[phase]
        except KeyError as exc:
            raise ConfigError(f"--phase {phase}: the configuration has no expanded_repos.phase_{phase}") from exc

    def replicas_for(self, phase: int) -> int:
        return self.replicas[f"phase_{phase}"]

    def allowlist_for(self, phase: int) -> tuple[str, ...]:
        return (self.pilot_repo, *self.expanded_for(phase))

    def budget_s(self, name: str, runbook_s: float) -> float:
        """The budget to measure against: the runbook's, or a (checked) tighter override."""
        override = self.budget_overrides_s.get(name)
        return runbook_s if override is None else min(runbook_s, override)


def time_scale_problem(time_scale: float) -> str | None:
    """Why ``time_scale`` cannot scale the waiting windows (triage, monitoring, soak), or None when it can.

    The one rule for drill.yaml's ``time_scale``, ``--time-scale`` and every library function
    that scales a window: greater than 0, and at most 1, because a rehearsal may shorten the
    runbook's windows but never stretch them.
    """
    if isinstance(time_scale, bool) or not isinstance(time_scale, int | float) or not math.isfinite(time_scale):
        return f"must be a finite number, got {time_scale!r}"
    if time_scale <= 0:
        return f"must be greater than 0, got {time_scale:g}"
    if time_scale > TIME_SCALE_MAX:
        return f"must be at most 1 (waiting windows are only ever shortened), got {time_scale:g}"
    return None


def check_time_scale(time_scale: float, name: str = "time_scale") -> float:
    """``time_scale`` itself, or ConfigError (exit 2) saying why it cannot scale a waiting window."""
    problem = time_scale_problem(time_scale)
    if problem is not None:
        raise ConfigError(f"{name} {problem}")
    return float(time_scale)


def default_config_path() -> Path:
    return Path(str(resources.files("rollback_drill.data").joinpath("drill.yaml")))


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            listing = "; ".join(self.items)
            raise ConfigError(f"drill configuration {self.source} is invalid ({len(self.items)} problem(s)): {listing}")


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], problems: _Problems, where: str = "") -> Any:
    path = f"{where}.{key}" if where else key
    if key not in data:
        problems.add(path, "missing")
        return None
    value = data[key]
    if isinstance(kind, tuple):
        ok = isinstance(value, kind) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        problems.add(path, f"must be {expected}, got {type(value).__name__} {value!r}")
        return None
    return value


def _section(data: Mapping[str, Any], key: str, where: str, problems: _Problems) -> dict[str, Any]:
    """A nested mapping (``notifications.email``); anything else is a problem, and its keys read as absent."""
    value = data.get(key) or {}
    if not isinstance(value, dict):
        problems.add(f"{where}.{key}", f"must be a mapping, got {type(value).__name__} {value!r}")
        return {}
    return value


def _repos(value: Any, where: str, problems: _Problems) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        problems.add(where, "must be a non-empty list of repo names")
        return ()
    repos = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not _REPO.match(item):
            problems.add(f"{where}[{index}]", f"{item!r} is not a valid repo name (lowercase letters, digits, dashes)")
        else:
            repos.append(item)
    duplicates = sorted({r for r in repos if repos.count(r) > 1})
    if duplicates:
        problems.add(where, f"lists {', '.join(duplicates)} more than once")
    return tuple(repos)


def _positive(value: Any, where: str, problems: _Problems, *, integer: bool = False, required: bool = False) -> Any:
    if value is None:
        if required:
            problems.add(where, "missing")
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value <= 0
        or (integer and not isinstance(value, int))
    ):
        problems.add(where, f"must be a positive {'integer' if integer else 'number'}, got {value!r}")
        return None
    return value


def _fraction(value: Any, where: str, problems: _Problems, *, required: bool = False) -> Any:
    if value is None:
        if required:
            problems.add(where, "missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        problems.add(where, f"must be a fraction in (0, 1], got {value!r}")
        return None
    return float(value)


def load_config(path: Path | None = None) -> DrillConfig:  # noqa: C901, PLR0912, PLR0915 - one linear pass over the file, kept in one place
    source_path = path or default_config_path()
    try:
        raw_bytes = source_path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"--config {source_path} cannot be read ({exc.strerror}); pass an existing drill.yaml"
        ) from exc
    source = str(source_path)
    try:
        data = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"drill configuration {source} is not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"drill configuration {source} must be a YAML mapping of keys (see the packaged drill.yaml)")
    problems = _Problems(source)

    runbook_id = _get(data, "runbook_id", str, problems)
    pilot = _get(data, "pilot_repo", str, problems)
    if pilot is not None and not _REPO.match(pilot):
        problems.add("pilot_repo", f"{pilot!r} is not a valid repo name")

    expanded: dict[int, tuple[str, ...]] = {}
    raw_expanded = _get(data, "expanded_repos", dict, problems) or {}
    for key, value in raw_expanded.items():
        match = re.fullmatch(r"phase_(\d+)", str(key))
        if not match:
            problems.add(f"expanded_repos.{key}", "keys must be phase_<N>")
            continue
        repos = _repos(value, f"expanded_repos.{key}", problems)
        if pilot in repos:
            problems.add(f"expanded_repos.{key}", f"must not list the pilot repo {pilot!r} (it is always enabled)")
        expanded[int(match.group(1))] = repos
    for phase in (6, 7):
        if raw_expanded and phase not in expanded and f"expanded_repos.phase_{phase}" not in " ".join(problems.items):
            problems.add(f"expanded_repos.phase_{phase}", "missing")

    replicas: dict[str, int] = {}
    raw_replicas = _get(data, "replicas", dict, problems) or {}
    for key in ("pilot", "phase_6", "phase_7"):
        value = _positive(raw_replicas.get(key), f"replicas.{key}", problems, integer=True)
        if key not in raw_replicas:
            problems.add(f"replicas.{key}", "missing")
        elif value is not None:
            replicas[key] = int(value)

    raw_k8s = data.get("kubernetes", {}) or {}
    if not isinstance(raw_k8s, dict):
        problems.add("kubernetes", "must be a mapping")
        raw_k8s = {}
    unknown_k8s = set(raw_k8s) - set(KubernetesNames.__dataclass_fields__)
    if unknown_k8s:
        problems.add("kubernetes", f"unknown keys {', '.join(sorted(unknown_k8s))}")
    kubernetes = KubernetesNames(**{k: str(v) for k, v in raw_k8s.items() if k in KubernetesNames.__dataclass_fields__})

    raw_schema = _get(data, "schema", dict, problems) or {}
    pilot_version = _get(raw_schema, "pilot_version", str, problems, "schema")
    migrations = []
    raw_migrations = raw_schema.get("migrations") or []
    if not isinstance(raw_migrations, list):
        problems.add("schema.migrations", "must be a list of mappings with version, phase, file")
        raw_migrations = []
    for index, item in enumerate(raw_migrations):
        where = f"schema.migrations[{index}]"
        if not isinstance(item, dict):
            problems.add(where, "must be a mapping with version, phase, file")
            continue
        version = _get(item, "version", str, problems, where)
        phase = _get(item, "phase", int, problems, where)
        file = _get(item, "file", str, problems, where)
        if version and pilot_version and version <= pilot_version:
            problems.add(where, f"version {version} must be later than the pilot's {pilot_version}")
        if version and file and phase:
            migrations.append(Migration(version, phase, file))

    raw_notify = _get(data, "notifications", dict, problems) or {}
    slack, pagerduty, email, status_page = (
        _section(raw_notify, name, "notifications", problems) for name in ("slack", "pagerduty", "email", "status_page")
    )
    recipients = email.get("recipients") or []
    if (
        not isinstance(recipients, list)
        or not recipients
        or not all(isinstance(r, str) and "@" in r for r in recipients)
    ):
        problems.add("notifications.email.recipients", "must be a non-empty list of e-mail addresses")
    for section, mapping, keys in (
        ("slack", slack, ("channel", "webhook_url_env")),
        ("pagerduty", pagerduty, ("severity", "routing_key_env")),
        ("email", email, ("sender", "smtp_url_env")),
        ("status_page", status_page, ("url_env", "token_env")),
    ):
        for key in keys:
            value = mapping.get(key) if isinstance(mapping, dict) else None
            if not isinstance(value, str) or not value:
                problems.add(f"notifications.{section}.{key}", "missing")
            elif key.endswith("_env") and not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
                problems.add(
                    f"notifications.{section}.{key}",
                    # The value is not echoed: what was written here is, most likely, the secret itself.
                    f"must be the NAME of an environment variable (e.g. ROLLBACK_DRILL_{section.upper()}_{key.removesuffix('_env').upper()}), "
                    f"not the secret itself; the value given ({len(value)} characters) is not shown",
                )

    participants = _get(data, "participants", dict, problems) or {}
    incident_commander = _get(data, "incident_commander", str, problems)

    raw_soak = _get(data, "soak", dict, problems) or {}
    soak_values = (
        _positive(raw_soak.get("duration_s"), "soak.duration_s", problems, required=True),
        _positive(raw_soak.get("concurrency"), "soak.concurrency", problems, integer=True, required=True),
        _repos(raw_soak.get("repos"), "soak.repos", problems),
        _fraction(raw_soak.get("success_rate_min"), "soak.success_rate_min", problems, required=True),
        _positive(raw_soak.get("p95_max_s"), "soak.p95_max_s", problems, required=True),
    )

    raw_re = _get(data, "reenablement", dict, problems) or {}
    canary = raw_re.get("canary")
    if not isinstance(canary, str) or not _REPO.match(canary):
        problems.add("reenablement.canary", "must be a repo name")
    phase_2 = _repos(raw_re.get("phase_2"), "reenablement.phase_2", problems)
    batch_max = _positive(
        raw_re.get("phase_3_batch_max"), "reenablement.phase_3_batch_max", problems, integer=True, required=True
    )
    monitoring = raw_re.get("monitoring_s") or {}
    monitoring_s = {}
    for key in ("phase_1", "phase_2", "phase_3"):
        value = _positive(
            monitoring.get(key) if isinstance(monitoring, dict) else None, f"reenablement.monitoring_s.{key}", problems
        )
        if value is not None:
            monitoring_s[key] = float(value)
        elif not isinstance(monitoring, dict) or key not in monitoring:
            problems.add(f"reenablement.monitoring_s.{key}", "missing")
    re_rate = _fraction(raw_re.get("success_rate_min"), "reenablement.success_rate_min", problems, required=True)
    re_p95 = _positive(raw_re.get("p95_max_s"), "reenablement.p95_max_s", problems, required=True)
    all_expanded = {r for repos in expanded.values() for r in repos}
    for repo in ([canary] if isinstance(canary, str) else []) + list(phase_2) + list(soak_values[2]):
        if all_expanded and repo not in all_expanded:
            problems.add("reenablement/soak", f"repo {repo!r} is not an expanded repo of any phase")

    time_scale = _positive(data.get("time_scale"), "time_scale", problems, required=True)
    scale_problem = None if time_scale is None else time_scale_problem(time_scale)
    if scale_problem is not None:
        problems.add("time_scale", scale_problem)

    raw_drills = _get(data, "drills", dict, problems) or {}
    pre6 = raw_drills.get("pre_phase_6")
    pre7 = raw_drills.get("pre_phase_7")
    for key, value in (("pre_phase_6", pre6), ("pre_phase_7", pre7)):
        if not isinstance(value, dt.date):
            problems.add(f"drills.{key}", f"must be a date (YYYY-MM-DD), got {value!r}")
    quarterly = _positive(
        raw_drills.get("quarterly_days"), "drills.quarterly_days", problems, integer=True, required=True
    )

    health_window_s = _positive(
        data.get("health_window_s", HEALTH_WINDOW_S), "health_window_s", problems, required=True
    )

    overrides: dict[str, float] = {}
    raw_overrides = data.get("budget_overrides_s") or {}
    if not isinstance(raw_overrides, dict):
        problems.add("budget_overrides_s", "must be a mapping of step id or target name to seconds")
        raw_overrides = {}
    for name, value in raw_overrides.items():
        where = f"budget_overrides_s.{name}"
        if name not in RUNBOOK_BUDGETS_S:
            problems.add(where, f"unknown budget; known: {', '.join(RUNBOOK_BUDGETS_S)}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            problems.add(where, f"must be a positive number of seconds, got {value!r}")
        elif value > RUNBOOK_BUDGETS_S[name]:
            problems.add(
                where, f"{value}s is looser than the runbook's {RUNBOOK_BUDGETS_S[name]:g}s; overrides may only tighten"
            )
        else:
            overrides[name] = float(value)

    problems.raise_if_any()
    return DrillConfig(
        source=source,
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
        runbook_id=runbook_id,
        pilot_repo=pilot,
        expanded_repos=expanded,
        replicas=replicas,
        kubernetes=kubernetes,
        schema=SchemaConfig(pilot_version, tuple(migrations)),
        notifications=Notifications(
            slack_channel=slack["channel"],
            slack_webhook_url_env=slack["webhook_url_env"],
            pagerduty_severity=pagerduty["severity"],
            pagerduty_routing_key_env=pagerduty["routing_key_env"],
            email_sender=email["sender"],
            email_recipients=tuple(recipients),
            smtp_url_env=email["smtp_url_env"],
            status_page_url_env=status_page["url_env"],
            status_page_token_env=status_page["token_env"],
        ),
        participants={str(k): str(v) for k, v in participants.items()},
        incident_commander=incident_commander,
        soak=Soak(
            float(soak_values[0]), int(soak_values[1]), soak_values[2], float(soak_values[3]), float(soak_values[4])
        ),
        reenablement=Reenablement(str(canary), phase_2, int(batch_max), monitoring_s, float(re_rate), float(re_p95)),
        time_scale=float(time_scale),
        drills=Drills(pre6, pre7, int(quarterly)),  # type: ignore[arg-type] # checked above: both are dates
        budget_overrides_s=overrides,
        health_window_s=float(health_window_s),
    )
