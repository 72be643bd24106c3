# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""The runbook's Root Cause Analysis template ("Post-Rollback Analysis"), filled from a drill.

What the evidence knows is filled in: the incident id, date, severity, duration,
affected repos, the timeline with real timestamps, and action items that follow from
the run (leaked credentials to rotate, schema changes to restore in staging first,
runbook drift to fix, steps over budget, targets missed). What only people know (root
cause, contributing factors, prevention) is marked TO BE COMPLETED.

The key moments are read from the timeline's events where the drill recorded them
(``incident_injected``, ``decision_made``) and from the steps otherwise:

- incident detected: the decision (the ``detect`` window ends there);
- rollback initiated: Step 1 starts;
- rollback complete: Step 4 ends (the ``rollback_execution`` window ends there);
- pilot repo verified operational: Step 5 ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from rollback_drill.evidence.bundle import RCA_NAME, load_evidence, load_timeline, require_bundle, write_atomic
from rollback_drill.evidence.redact import REDACTOR, Redactor

TO_BE_COMPLETED: Final = "TO BE COMPLETED"

INCIDENT_TITLES: Final = {
    "crash-loop": "FlowEngine Crash Loop",
    "db-corruption": "Database Corruption",
    "security-breach": "Security Breach",
    "cost-runaway": "Cost Runaway",
    "mass-failure": "Mass Concurrent Failures",
    "quality-degradation": "Persistent Quality Degradation",
    "slo-violation": "Sustained SLO Violations",
    "model-outage": "Model API Quota Exhaustion",
    "cascading-failure": "Cascading Failures",
    "single-repo-failure": "Single Repo Failure",
    "intermittent-errors": "Intermittent Errors",
    "user-error": "User Error",
}
"""The runbook's names for the drill's incidents (CONVENTIONS, "Incidents")."""

_DONE: Final = frozenset({"pass", "over-budget"})
_ROLLING_BACK: Final = frozenset({"roll back", "triage then roll back"})


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 UTC timestamp of the evidence as an aware datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def format_time(moment: datetime | None) -> str:
    return "not reached" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: float | None) -> str:
    """``45.2 s``, ``4 min 7 s``, ``1 h 2 min``."""
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min {secs} s" if secs else f"{minutes} min"


@dataclass(frozen=True)
class Moment:
    """One instant of the RCA timeline, and where it was read from."""

    label: str
    at: datetime | None
    source: str


@dataclass(frozen=True)
class KeyMoments:
    injected: Moment
    detected: Moment
    initiated: Moment
    complete: Moment
    verified: Moment
    finished: Moment

    def in_order(self) -> tuple[Moment, ...]:
        return (self.injected, self.detected, self.initiated, self.complete, self.verified, self.finished)

    @property
    def incident_duration_s(self) -> float | None:
        """Incident injected (or, failing that, drill start) to rollback complete."""
        if self.injected.at is None or self.complete.at is None:
            return None
        return max(0.0, (self.complete.at - self.injected.at).total_seconds())


def _first_event(timeline: list[dict[str, Any]], kind: str, **match: Any) -> dict[str, Any] | None:
    for event in timeline:
        if event.get("kind") == kind and all(event.get(k) == v for k, v in match.items()):
            return event
    return None


def step_entry(evidence: dict[str, Any], step_id: str) -> dict[str, Any] | None:
    """The evidence's entry for ``step_id`` (the last one, if the step ran twice)."""
    found = None
    for step in evidence.get("steps") or []:
        if isinstance(step, dict) and step.get("id") == step_id:
            found = step
    return found


def _injected(evidence: dict[str, Any], timeline: list[dict[str, Any]]) -> Moment:
    event = _first_event(timeline, "incident_injected")
    if event is not None:
        return Moment("Incident injected (drill)", parse_time(event.get("t_wall")), "event incident_injected")
    return Moment(
        "Drill started (no incident_injected event recorded)", parse_time(evidence.get("started_at")), "started_at"
    )


def _detected(evidence: dict[str, Any], timeline: list[dict[str, Any]]) -> Moment:
    decided = _first_event(timeline, "decision_made") or _first_event(timeline, "evidence_set", field="decision")
    if decided is not None:
        return Moment("Incident detected", parse_time(decided.get("t_wall")), f"event {decided.get('kind')}")
    pre_1 = step_entry(evidence, "pre-1")
    if pre_1 is not None:
        return Moment("Incident detected", parse_time(pre_1.get("started_at")), "pre-1 started")
    return Moment("Incident detected", None, "no decision recorded")


def _step_end(evidence: dict[str, Any], step_id: str, done: str, failed: str) -> Moment:
    """When ``step_id`` ended: labelled ``done`` if it passed (even over budget), ``failed`` if not."""
    step = step_entry(evidence, step_id)
    if step is not None and step.get("status") in _DONE:
        return Moment(done, parse_time(step.get("finished_at")), f"{step_id} finished")
    if step is not None and step.get("finished_at"):
        return Moment(failed, parse_time(step.get("finished_at")), f"{step_id} failed")
    return Moment(done, None, f"{step_id} not finished")


def _finished(evidence: dict[str, Any], timeline: list[dict[str, Any]]) -> Moment:
    finished_at = parse_time(evidence.get("finished_at"))
    verdict = str(evidence.get("verdict") or "aborted")
    if finished_at is not None:
        return Moment(f"Drill finished, verdict {verdict}", finished_at, "finished_at")
    last_seen = max((t for t in (parse_time(e.get("t_wall")) for e in timeline) if t is not None), default=None)
    return Moment(f"Drill ended without finishing (verdict {verdict}); last event", last_seen, "timeline")


def key_moments(evidence: dict[str, Any], timeline: list[dict[str, Any]]) -> KeyMoments:
    """The RCA timeline's instants, from the drill's events and steps."""
    step_1 = step_entry(evidence, "step-1")
    return KeyMoments(
        injected=_injected(evidence, timeline),
        detected=_detected(evidence, timeline),
        initiated=Moment(
            "Rollback initiated", parse_time(step_1.get("started_at")) if step_1 else None, "step-1 started"
        ),
        complete=_step_end(evidence, "step-4", "Rollback complete", "Rollback FAILED (Step 4 did not pass)"),
        verified=_step_end(evidence, "step-5", "Pilot repo verified operational", "Pilot repo verification FAILED"),
        finished=_finished(evidence, timeline),
    )


def incident_id(evidence: dict[str, Any]) -> str:
    """``INC-<YYYYMMDD>-<nnn>``: the drill's UTC start date, and a number taken from the
    drill id's random suffix, so the same drill always gets the same id."""
    drill_id = str(evidence.get("drill_id") or "")
    started = parse_time(evidence.get("started_at"))
    date = drill_id[:8] if drill_id[:8].isdigit() else (started.strftime("%Y%m%d") if started else "00000000")
    suffix = drill_id.rsplit("-", 1)[-1]
    try:
        number = int(suffix, 16) % 1000
    except ValueError:
        number = sum(drill_id.encode()) % 1000
    return f"INC-{date}-{number:03d}"


def incident_title(incident: str) -> str:
    return INCIDENT_TITLES.get(incident, incident.replace("-", " ").strip().title() or "Unknown incident")


def affected_repos(evidence: dict[str, Any], timeline: list[dict[str, Any]]) -> list[str]:
    """``affected_repos`` of the evidence, or the repos the ``incident_injected`` event names."""
    repos = evidence.get("affected_repos")
    if not isinstance(repos, list):
        event = _first_event(timeline, "incident_injected") or {}
        repos = event.get("affected_repos", event.get("repos"))
    if not isinstance(repos, list):
        return []
    return [str(r) for r in repos]


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _schema_items(evidence: dict[str, Any], today: str, next_day: str) -> list[str]:
    step_3 = step_entry(evidence, "step-3")
    if step_3 is not None and step_3.get("status") in _DONE:
        item = (
            "Engineering TL: Restore schema changes in staging first: re-apply the migrations Step 3 reverted in "
            f"staging and verify them before re-enabling any repo (Due: {next_day})"
        )
        return [item]
    if step_3 is not None and step_3.get("status") == "fail":
        error = _one_line(step_3.get("error") or "no error recorded")
        item = (
            f"DBA: Investigate the failed schema revert of Step 3 ({error}) "
            f"and confirm the pre-rollback backup was restored (Due: {today})"
        )
        return [item]
    return []


def _warning_items(evidence: dict[str, Any], next_day: str) -> list[str]:
    items = []
    for warning in evidence.get("warnings") or []:
        if not isinstance(warning, dict):
            continue
        code = _one_line(warning.get("code") or "warning")
        where = f" ({warning['step']})" if warning.get("step") else ""
        message = _one_line(warning.get("message") or "")
        if "drift" in code:
            items.append(f"SRE Lead: Fix runbook RB-LAUNCH-002{where}, runbook drift: {message} (Due: {next_day})")
        else:
            items.append(f"SRE Lead: Review warning {code}{where}: {message} (Due: {next_day})")
    return items


def _step_items(evidence: dict[str, Any], next_day: str) -> list[str]:
    items = []
    for step in evidence.get("steps") or []:
        if not isinstance(step, dict):
            continue
        label = f'{step.get("id")} "{_one_line(step.get("title") or "")}"'
        if step.get("status") == "fail":
            error = _one_line(step.get("error") or "no error recorded")
            items.append(f"Engineering TL: Find out why {label} failed: {error} (Due: {next_day})")
        elif step.get("status") == "over-budget":
            items.append(
                f"SRE Lead: Find out why {label} took {format_duration(step.get('elapsed_s'))}, "
                f"over its budget of {format_duration(step.get('budget_s'))} (Due: {next_day})"
            )
    return items


def action_items(evidence: dict[str, Any], moments: KeyMoments) -> list[str]:
    """``<Owner>: <Action> (Due: <date>)`` lines, from what the drill found."""
    base = moments.initiated.at or moments.injected.at or parse_time(evidence.get("started_at"))
    today = base.date().isoformat() if base else "unknown"
    next_day = (base + timedelta(days=1)).date().isoformat() if base else "unknown"
    items = [
        f"Incident Commander: Complete the root cause, contributing factors and prevention of this RCA (Due: {next_day})"
    ]
    if evidence.get("incident") == "security-breach":
        items.append(f"InfoSec Lead: Rotate leaked credentials (every credential the breach exposed) (Due: {today})")
    items += _schema_items(evidence, today, next_day)
    items += _warning_items(evidence, next_day)
    items += _step_items(evidence, next_day)
    items += [
        f"SRE Lead: Drill target {target.get('name')} missed: measured {target.get('measured')} "
        f"{target.get('unit')}, limit {target.get('limit')} (Due: {next_day})"
        for target in evidence.get("targets") or []
        if isinstance(target, dict) and target.get("met") is False
    ]
    if evidence.get("verdict") == "aborted":
        reason = _one_line(evidence.get("abort_reason") or "no reason recorded")
        items.append(f"SRE Lead: Run the drill again; it was aborted: {reason} (Due: {next_day})")
    return items


def rca_markdown(evidence: dict[str, Any], timeline: list[dict[str, Any]]) -> str:
    """The RCA document (Markdown), not yet redacted."""
    incident = str(evidence.get("incident") or "unknown")
    moments = key_moments(evidence, timeline)
    decision = evidence.get("decision") if isinstance(evidence.get("decision"), dict) else None
    severity = str(decision.get("priority")) if decision else "not decided (no decision recorded)"
    date_source = moments.initiated.at or moments.injected.at
    repos = affected_repos(evidence, timeline)
    verdict = str(evidence.get("verdict") or "aborted")
    duration = moments.incident_duration_s

    lines = [
        f"# Root Cause Analysis: {incident_title(incident)} (rollback drill)",
        "",
        (
            f"> Rehearsal of RB-LAUNCH-002: drill `{evidence.get('drill_id')}`, incident `{incident}` injected on "
            f"purpose, verdict **{verdict}**. Filled from the drill's evidence bundle; parts marked {TO_BE_COMPLETED} "
            "are for the Incident Commander."
        ),
        "",
        f"**Incident ID:** {incident_id(evidence)}",
        f"**Date:** {date_source.date().isoformat() if date_source else 'unknown'}",
        f"**Severity:** {severity}",
        (
            f"**Duration:** {format_time(moments.injected.at)} - {format_time(moments.complete.at)}"
            f" ({format_duration(duration)}, incident injected to rollback complete)"
        ),
        f"**Affected Repos:** {', '.join(repos) if repos else 'not recorded in the evidence'}",
        "",
        "## Timeline",
    ]
    lines += [f"- {format_time(m.at)}: {m.label}" for m in moments.in_order()]
    lines += [
        "",
        "## Root Cause",
        (
            f"{TO_BE_COMPLETED}: detailed analysis of what caused the incident. "
            f"(In this drill the cause was the injected `{incident}` incident.)"
        ),
        "",
        "## Contributing Factors",
        f"- Factor 1: {TO_BE_COMPLETED}",
        f"- Factor 2: {TO_BE_COMPLETED}",
        "",
        "## Resolution",
    ]
    action = str(decision.get("action")) if decision else ""
    if decision is None or action in _ROLLING_BACK:
        lines.append("Rolled back to pilot scope per RB-LAUNCH-002.")
    else:
        lines.append(f'No rollback: the decision framework answered {severity}, action "{action}".')
    if verdict != "pass":
        reason = evidence.get("abort_reason") if verdict == "aborted" else None
        lines.append(
            f"The drill's verdict is **{verdict}**"
            + (f" ({_one_line(reason)})" if reason else "")
            + ": see the action items and report.html."
        )
    if decision is not None:
        lines += ["", "Decision criteria met:"]
        lines += [f"- {_one_line(c)}" for c in decision.get("criteria_met") or []] or ["- none"]
        lines += ["", "Decision reasons:"]
        lines += [f"- {_one_line(r)}" for r in decision.get("reasons") or []] or ["- none"]
    lines += [
        "",
        "## Prevention",
        f"- Action 1: {TO_BE_COMPLETED} (how to prevent recurrence)",
        f"- Action 2: {TO_BE_COMPLETED} (monitoring improvements)",
        f"- Action 3: {TO_BE_COMPLETED} (process changes)",
        "",
        "## Action Items",
    ]
    lines += [f"- [ ] {_one_line(item)}" for item in action_items(evidence, moments)]
    return "\n".join(lines) + "\n"


def render_rca(bundle_dir: Path, *, output_dir: Path | None = None, redactor: Redactor | None = None) -> Path:
    """Write ``rca.md`` into the bundle (or into ``output_dir``) and return its path."""
    bundle_dir = require_bundle(bundle_dir)
    redactor = redactor if redactor is not None else REDACTOR
    evidence = redactor.redact(load_evidence(bundle_dir))
    timeline = redactor.redact(load_timeline(bundle_dir))
    text = redactor.redact_text(rca_markdown(evidence, timeline))
    target_dir = Path(output_dir) if output_dir is not None else bundle_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / RCA_NAME
    write_atomic(target, text.encode("utf-8"))
    return target
