"""The API server's own record of the drill: its audit events in the drill's time, each write
attributed to the runbook step (or the drill's phase) that made it.

The drill's timeline is written by the drill; the audit log is written by the API server, so a
write nobody recorded (somebody's ``kubectl`` during the drill) shows up here and nowhere else.
Attribution is by time window first: the drill's admin kubeconfig is one identity, shared by the
drill, kwok and anybody who uses the same file, so the user alone cannot tell them apart. A write
by any other user that is neither the drill's nor the control plane's is unexplained wherever it
falls.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from rollback_drill.evidence.bundle import add_warnings, evidence_bytes, load_evidence, load_timeline, write_atomic
from rollback_drill.evidence.recorder import EVIDENCE_NAME
from rollback_drill.evidence.redact import REDACTOR, Redactor

AUDIT_NAME: Final = "audit.jsonl"
WRITE_VERBS: Final = frozenset({"create", "update", "patch", "delete", "deletecollection"})
FAILED_STATUS: Final = 400
CONTROL_PLANE_USER_PREFIXES: Final = (
    # Controllers run with their own ServiceAccounts (--use-service-account-credentials).
    "system:serviceaccount:kube-system:",
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:apiserver",
    "system:node:",
)
SET_UP: Final = "set-up"
"""Writes before the first runbook step: seeding the world, the drill's identity and Lease, injection."""
BETWEEN_STEPS: Final = "between-steps"
"""Writes between two runbook steps: the scenario's checks and the controllers catching up."""
WRAP_UP: Final = "wrap-up"
"""Writes after the last runbook step: put-back, closing the drill target, releasing the Lease."""


@dataclass(frozen=True)
class StepWindow:
    step: str
    started: datetime
    finished: datetime | None
    """None while the step never finished (an aborted drill): it lasts to the end of the record."""

    def holds(self, moment: datetime) -> bool:
        return self.started <= moment and (self.finished is None or moment <= self.finished)


@dataclass(frozen=True)
class Attribution:
    """Every successful write of the audit slice, by runbook step or drill phase, and those nobody explains."""

    events: int
    writes: int
    by_step: Mapping[str, int] = field(default_factory=dict)
    by_phase: Mapping[str, int] = field(default_factory=dict)
    unexplained: tuple[Mapping[str, Any], ...] = ()

    def to_evidence(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "writes": self.writes,
            "by_step": dict(self.by_step),
            "by_phase": dict(self.by_phase),
            "unexplained": [dict(write) for write in self.unexplained],
        }


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp (the API server's microseconds or the timeline's milliseconds) as UTC."""
    return datetime.fromisoformat(text).astimezone(UTC)


def step_windows(timeline: Iterable[Mapping[str, Any]]) -> list[StepWindow]:
    """Each runbook step's window, from its ``step_started`` to its ``step_finished`` event."""
    opened: dict[str, datetime] = {}
    windows: list[StepWindow] = []
    for event in timeline:
        if event.get("kind") == "step_started":
            opened[str(event["step"])] = parse_time(str(event["t_wall"]))
        elif event.get("kind") == "step_finished" and str(event.get("step")) in opened:
            step = str(event["step"])
            windows.append(StepWindow(step, opened.pop(step), parse_time(str(event["t_wall"]))))
    windows += [StepWindow(step, started, None) for step, started in opened.items()]
    return sorted(windows, key=lambda window: window.started)


def is_write(event: Mapping[str, Any]) -> bool:
    """A write that took effect: a writing verb the API server did not refuse."""
    status = event.get("responseStatus") or {}
    code = status.get("code", 0) if isinstance(status, Mapping) else 0
    return event.get("verb") in WRITE_VERBS and int(code) < FAILED_STATUS


def _user(event: Mapping[str, Any]) -> str:
    user = event.get("user") or {}
    return str(user.get("username", "")) if isinstance(user, Mapping) else ""


def is_known_user(username: str, drill_users: Collection[str]) -> bool:
    return username in drill_users or username.startswith(CONTROL_PLANE_USER_PREFIXES)


def summarize_write(event: Mapping[str, Any]) -> dict[str, Any]:
    """What an auditor needs to find a write again: when, who, what, and the API server's answer."""
    target = event.get("objectRef") or {}
    status = event.get("responseStatus") or {}
    return {
        "time": event.get("requestReceivedTimestamp"),
        "audit_id": event.get("auditID"),
        "user": _user(event),
        "impersonated_user": (event.get("impersonatedUser") or {}).get("username"),
        "verb": event.get("verb"),
        "resource": target.get("resource"),
        "subresource": target.get("subresource"),
        "namespace": target.get("namespace"),
        "name": target.get("name"),
        "code": status.get("code"),
    }


def _phase(moment: datetime, windows: Sequence[StepWindow]) -> str:
    if not windows or moment < windows[0].started:
        return SET_UP
    last = windows[-1]
    if last.finished is not None and moment > last.finished:
        return WRAP_UP
    return BETWEEN_STEPS


def attribute_writes(
    events: Iterable[Mapping[str, Any]],
    timeline: Iterable[Mapping[str, Any]],
    *,
    drill_users: Collection[str],
) -> Attribution:
    """Attribute each successful write to the runbook step whose window holds it, else to the drill
    phase it fell in (``SET_UP``, ``BETWEEN_STEPS``, ``WRAP_UP``).

    A write is unexplained when it was made by a user that is neither one of ``drill_users`` nor the
    control plane's own (``CONTROL_PLANE_USER_PREFIXES``); an impersonated write counts as the user
    impersonated. Pure: the caller reads the files.
    """
    windows = step_windows(timeline)
    by_step: dict[str, int] = {}
    by_phase: dict[str, int] = {}
    unexplained: list[dict[str, Any]] = []
    counted = writes = 0
    for event in events:
        counted += 1
        if not is_write(event):
            continue
        writes += 1
        impersonated = event.get("impersonatedUser") or {}
        user = str(impersonated.get("username") or _user(event))
        if not is_known_user(user, drill_users):
            unexplained.append(summarize_write(event))
            continue
        moment = parse_time(str(event["requestReceivedTimestamp"]))
        step = next((window.step for window in windows if window.holds(moment)), None)
        if step is not None:
            by_step[step] = by_step.get(step, 0) + 1
        else:
            phase = _phase(moment, windows)
            by_phase[phase] = by_phase.get(phase, 0) + 1
    return Attribution(counted, writes, by_step, by_phase, tuple(unexplained))


def read_audit_events(log: Path, *, since: datetime | None = None) -> list[dict[str, Any]]:
    """The events of an audit log and its rotated backups (``audit-<time>.log`` beside it), oldest first.

    A line the API server was still writing (the last, unterminated) is skipped. With ``since``, a
    rotated file last written before it is not read at all: an environment that served many drills
    keeps up to 400 MB of log, and a drill needs only its own minutes of it.
    """
    rotated = sorted(log.parent.glob(f"{log.stem}-*{log.suffix}"))
    events: list[dict[str, Any]] = []
    for path in [*rotated, log]:
        if not path.is_file():
            continue
        if since is not None and datetime.fromtimestamp(path.stat().st_mtime, UTC) < since:
            continue
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(event, dict) and "requestReceivedTimestamp" in event:
                    events.append(event)
    return sorted(events, key=lambda event: parse_time(str(event["requestReceivedTimestamp"])))


def slice_events(events: Iterable[Mapping[str, Any]], start: datetime, finish: datetime) -> list[Mapping[str, Any]]:
    """The events whose request arrived within [start, finish]."""
    return [event for event in events if start <= parse_time(str(event["requestReceivedTimestamp"])) <= finish]


def _who(write: Mapping[str, Any]) -> str:
    impersonated = write.get("impersonated_user")
    return f"{write['user']} as {impersonated}" if impersonated else str(write["user"])


def record_audit(
    bundle_dir: Path,
    audit_log: Path,
    *,
    drill_users: Collection[str],
    redactor: Redactor | None = None,
    now: datetime | None = None,
) -> Attribution:
    """Copy the audit events of the drill's time into ``audit.jsonl`` (redacted), write the attribution
    into evidence.json as ``audit``, and add an ``unexplained-write`` warning for each write nobody
    explains. Called before the bundle is sealed; an unfinished drill's time ends ``now``.
    """
    redactor = redactor if redactor is not None else REDACTOR
    doc = load_evidence(bundle_dir)
    start = parse_time(str(doc["started_at"]))
    finished = doc.get("finished_at")
    finish = parse_time(str(finished)) if finished else (now or datetime.now(UTC))
    events = slice_events(read_audit_events(audit_log, since=start), start, finish)
    with (bundle_dir / AUDIT_NAME).open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(redactor.redact(event), ensure_ascii=False) + "\n" for event in events)
    attribution = attribute_writes(events, load_timeline(bundle_dir), drill_users=drill_users)
    doc["audit"] = attribution.to_evidence()
    write_atomic(bundle_dir / EVIDENCE_NAME, evidence_bytes(doc, redactor))
    add_warnings(
        bundle_dir,
        [
            {
                "code": "unexplained-write",
                "step": None,
                "message": (
                    f"{_who(write)} made a {write['verb']} of {write['resource']} "
                    f"{write['namespace']}/{write['name']} at {write['time']} that no runbook step or drill phase explains"
                ),
            }
            for write in attribution.unexplained
        ],
        redactor,
    )
    return attribution
