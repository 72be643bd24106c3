# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""``controls.json``: which evidence of the drill answers which control, and what is left to do.

Five controls that ask for tested recovery (SOC 2 A1.3; ISO/IEC 27001:2022 A.5.30 and A.8.13;
DORA Art. 11(6) and Art. 12), each mapped to the evidence fields that answer it, with the
measured value beside the objective. Then the gaps and follow-ups the drill leaves (missed
targets, failed or over-budget steps, runbook drift, manual steps, a cluster not put back), each
with an owner role from the runbook's Emergency Contact List and a due date: 24 hours after the
drill for what needs the runbook's RCA, the next drill otherwise.

Each control is described by what it asks, in a line; this is a map to the evidence, not advice
on whether an organisation complies. The same document feeds report.html's "Controls" section.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Final

from rollback_drill.config import Drills, load_config
from rollback_drill.evidence.bundle import APPROVALS_DIR, load_evidence, load_timeline, require_bundle, write_atomic
from rollback_drill.evidence.rca import parse_time
from rollback_drill.evidence.recorder import format_utc, to_jsonable
from rollback_drill.evidence.redact import REDACTOR, Redactor
from rollback_drill.evidence.sign import ROLES

CONTROLS_NAME: Final = "controls.json"
CONTROLS_SCHEMA: Final = "rollback-drill/controls-v1"
RUNBOOK_RESOURCE: Final = "runbooks/RB-LAUNCH-002-rollback-to-pilot.md"
RCA_DUE: Final = timedelta(hours=24)
"""The runbook's "Required Actions (Within 24 Hours)", the first of which is the RCA."""

_CONTACT_ROW_RE: Final = re.compile(
    r"^\|\s*\*\*(?P<role>[^*|]+)\*\*\s*\|\s*(?P<primary>[^|]+?)\s*\|\s*(?P<backup>[^|]+?)\s*\|"
)


def next_quarterly_due(last_passed: date, quarterly_days: int) -> date:
    """The runbook's quarterly drill: due ``quarterly_days`` after the last drill that passed."""
    return last_passed + timedelta(days=quarterly_days)


def next_drill_due(drill_day: date, *, passed: bool, drills: Drills) -> date:
    """When the next drill is due after this one: the next pre-phase date after it, or the
    quarterly date it sets, whichever comes first. A drill that did not pass sets no quarterly
    date: the next one is due at once."""
    if not passed:
        return drill_day
    candidates = [next_quarterly_due(drill_day, drills.quarterly_days)]
    candidates += [due for due in (drills.pre_phase_6, drills.pre_phase_7) if due > drill_day]
    return min(candidates)


@dataclass(frozen=True)
class Owner:
    """A role of the runbook's Emergency Contact List."""

    role: str
    primary: str
    backup: str

    def __str__(self) -> str:
        return f"{self.role} ({self.primary}; backup {self.backup})"


def contact_list(runbook_text: str | None = None) -> dict[str, Owner]:
    """The runbook's Emergency Contact List: role -> owner (primary and backup)."""
    if runbook_text is None:
        runbook_text = resources.files("rollback_drill.data").joinpath(RUNBOOK_RESOURCE).read_text(encoding="utf-8")
    start = runbook_text.find("## Emergency Contact List")
    owners: dict[str, Owner] = {}
    if start < 0:
        return owners
    for line in runbook_text[start:].splitlines()[1:]:
        if line.startswith("## "):
            break
        match = _CONTACT_ROW_RE.match(line)
        if match:
            role = match["role"].strip()
            owners[role] = Owner(role, match["primary"].strip(), match["backup"].strip())
    return owners


def _owner(owners: dict[str, Owner], role: str) -> str:
    owner = owners.get(role)
    return str(owner) if owner is not None else role


# -- the evidence rows ---------------------------------------------------------------------------------


def _target_row(evidence: dict[str, Any], name: str) -> dict[str, Any]:
    target = next((t for t in evidence.get("targets") or [] if isinstance(t, dict) and t.get("name") == name), None)
    if target is None:
        return {"field": f"targets[{name}]", "measured": None, "objective": "measured by the drill", "met": None}
    limit, unit = target.get("limit"), target.get("unit") or ""
    if limit is None:
        objective = "reported (the runbook sets no limit)"
    elif unit == "requests":
        objective = f"<= {limit:g} failed {unit}"
    else:
        objective = f"< {limit:g} {unit}".rstrip()
    measured = target.get("measured")
    return {
        "field": f"targets[{name}].measured",
        "measured": f"{measured:g} {unit}".rstrip() if isinstance(measured, int | float) else None,
        "objective": objective,
        "met": target.get("met"),
    }


def _pilot_row(evidence: dict[str, Any]) -> dict[str, Any]:
    names = {t.get("name") for t in evidence.get("targets") or [] if isinstance(t, dict)}
    return _target_row(evidence, "pilot_restored_by_step_5" if "pilot_restored_by_step_5" in names else "pilot_impact")


def _backup_row(evidence: dict[str, Any], timeline: list[dict[str, Any]]) -> dict[str, Any]:
    verified = next((e for e in timeline if e.get("kind") == "backup_verified"), None)
    took_backup = any(isinstance(s, dict) and s.get("id") == "pre-3" for s in evidence.get("steps") or [])
    if verified is not None:
        tables = _object(verified.get("tables"))
        measured: str | None = f"restored to a scratch database and matched its snapshot ({len(tables)} tables)"
        met: bool | None = True
    else:
        measured = "no verified restore in the timeline" if took_backup else None
        met = False if took_backup else None
    return {
        "field": "timeline: backup_verified",
        "measured": measured,
        "objective": "a backup restored and compared with what was backed up",
        "met": met,
    }


def _backup_files_row(evidence: dict[str, Any]) -> dict[str, Any]:
    backups = [
        a
        for a in evidence.get("artifacts") or []
        if isinstance(a, dict) and str(a.get("path", "")).startswith("backups/")
    ]
    return {
        "field": "artifacts[backups/*]",
        "measured": f"{len(backups)} backup file(s), each with its sha256 in the manifest" if backups else None,
        "objective": "the backups taken before the rollback kept with the evidence",
        "met": bool(backups)
        if any(isinstance(s, dict) and s.get("id") == "pre-3" for s in evidence.get("steps") or [])
        else None,
    }


def _steps_row(evidence: dict[str, Any]) -> dict[str, Any]:
    steps = [s for s in evidence.get("steps") or [] if isinstance(s, dict)]
    failed = [str(s.get("id")) for s in steps if s.get("status") in {"fail", "over-budget"}]
    return {
        "field": "steps[*].status",
        "measured": f"{len(steps) - len(failed)} of {len(steps)} runbook steps within budget"
        + (f"; not: {', '.join(failed)}" if failed else ""),
        "objective": "every runbook step performed within its budget",
        "met": (not failed) if steps else None,
    }


def _verdict_row(evidence: dict[str, Any]) -> dict[str, Any]:
    verdict = evidence.get("verdict")
    return {
        "field": "verdict",
        "measured": f"{verdict} on {evidence.get('finished_at') or evidence.get('started_at')}",
        "objective": "the recovery procedure rehearsed end to end and passed",
        "met": verdict == "pass",
    }


def _participants_row(evidence: dict[str, Any]) -> dict[str, Any]:
    participants = _object(evidence.get("participants"))
    return {
        "field": "participants",
        "measured": ", ".join(f"{role}: {who}" for role, who in participants.items()) or None,
        "objective": "the people and roles who took part, named",
        "met": bool(participants) or None,
    }


def _approvals_row() -> dict[str, Any]:
    return {
        "field": f"{APPROVALS_DIR}/",
        "measured": "signed after sealing; check with `rollback-drill evidence verify --allowed-signers FILE`",
        "objective": f"approved by {', '.join(ROLES)}",
        "met": None,
    }


def _plan_row(evidence: dict[str, Any]) -> dict[str, Any]:
    runbook = _object(evidence.get("runbook"))
    sha = runbook.get("sha256")
    return {
        "field": "runbook.sha256, config_sha256",
        "measured": f"{runbook.get('id')} sha256 {sha}; drill.yaml sha256 {evidence.get('config_sha256')}"
        if sha
        else None,
        "objective": "the plan tested is identified exactly",
        "met": bool(sha) or None,
    }


def _notifications_row(evidence: dict[str, Any]) -> dict[str, Any]:
    notifications = [n for n in evidence.get("notifications") or [] if isinstance(n, dict)]
    return {
        "field": "notifications",
        "measured": f"{len(notifications)} notification(s) recorded" if notifications else None,
        "objective": "the runbook's stakeholder messages sent during the drill",
        "met": bool(notifications) or None,
    }


def _next_drill_row(next_due: date | None) -> dict[str, Any]:
    return {
        "field": "next drill (drill.yaml schedule)",
        "measured": next_due.isoformat() if next_due else None,
        "objective": "pre-phase dates, and every 90 days (quarterly); at least yearly under DORA",
        "met": None,
    }


def _status(rows: list[dict[str, Any]]) -> str:
    judged = [row["met"] for row in rows if row["met"] is not None]
    if any(met is False for met in judged):
        return "not met"
    return "evidenced" if judged else "not evidenced"


def _controls(evidence: dict[str, Any], timeline: list[dict[str, Any]], next_due: date | None) -> list[dict[str, Any]]:
    backup = _backup_row(evidence, timeline)
    definitions = [
        (
            "SOC 2 A1.3",
            "AICPA Trust Services Criteria (Availability)",
            "Recovery plan procedures that support system recovery are tested.",
            [
                _verdict_row(evidence),
                _target_row(evidence, "rollback_execution"),
                _target_row(evidence, "total_resolution"),
                _steps_row(evidence),
                backup,
            ],
        ),
        (
            "ISO/IEC 27001:2022 A.5.30",
            "ICT readiness for business continuity",
            "ICT readiness is planned, implemented, maintained and tested against continuity objectives.",
            [
                _plan_row(evidence),
                _target_row(evidence, "rollback_execution"),
                _target_row(evidence, "expanded_downtime"),
                _pilot_row(evidence),
                _participants_row(evidence),
                _next_drill_row(next_due),
            ],
        ),
        (
            "ISO/IEC 27001:2022 A.8.13",
            "Information backup",
            "Backup copies are kept and regularly tested in line with the backup policy.",
            [backup, _backup_files_row(evidence)],
        ),
        (
            "DORA Art. 11(6)",
            "ICT business continuity policy: testing",
            (
                "Response and recovery plans are tested at least yearly and after substantive changes; "
                "crisis communication plans are tested."
            ),
            [
                _verdict_row(evidence),
                _plan_row(evidence),
                _notifications_row(evidence),
                _participants_row(evidence),
                _approvals_row(),
                _next_drill_row(next_due),
            ],
        ),
        (
            "DORA Art. 12",
            "Backup policies, restoration and recovery procedures",
            (
                "Backups are taken and restoration and recovery procedures are tested periodically, "
                "recovering with minimal disruption."
            ),
            [backup, _backup_files_row(evidence), _target_row(evidence, "total_resolution"), _pilot_row(evidence)],
        ),
    ]
    return [
        {"id": control_id, "title": title, "asks": asks, "status": _status(rows), "evidence": rows}
        for control_id, title, asks, rows in definitions
    ]


# -- gaps and follow-ups -------------------------------------------------------------------------------


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _missed(evidence: dict[str, Any], owner: str, due: dict[str, Any]) -> list[dict[str, Any]]:
    """Missed targets and failed or over-budget steps: what the RCA explains."""
    targets = [
        {
            "kind": "missed-target",
            "item": t.get("name"),
            "detail": f"measured {t.get('measured')} {t.get('unit')}, limit {t.get('limit')}",
            "owner": owner,
            **due,
        }
        for t in evidence.get("targets") or []
        if isinstance(t, dict) and t.get("met") is False
    ]
    steps = [
        {
            "kind": f"step-{s.get('status')}",
            "item": s.get("id"),
            "detail": f"{s.get('title')}: {s.get('elapsed_s')} s of {s.get('budget_s')} s"
            + (f"; {s.get('error')}" if s.get("error") else ""),
            "owner": owner,
            **due,
        }
        for s in evidence.get("steps") or []
        if isinstance(s, dict) and s.get("status") in {"fail", "over-budget"}
    ]
    return targets + steps


def _warned(
    evidence: dict[str, Any], owners: dict[str, Owner], rca: dict[str, Any], by_next_drill: dict[str, Any]
) -> list[dict[str, Any]]:
    """Warnings: a cluster not put back (with the RCA), runbook drift (the runbook's owners), the rest."""
    gaps = []
    for warning in evidence.get("warnings") or []:
        if not isinstance(warning, dict):
            continue
        code = str(warning.get("code"))
        if code == "put-back-failed":
            kind, item, owner, due = "put-back", code, _owner(owners, "Incident Commander"), rca
        elif "drift" in code:
            kind, item, owner, due = (
                "runbook-drift",
                warning.get("step") or code,
                _owner(owners, "Engineering"),
                by_next_drill,
            )
        else:
            kind, item, owner, due = "warning", code, _owner(owners, "Incident Commander"), by_next_drill
        gaps.append({"kind": kind, "item": item, "detail": warning.get("message"), "owner": owner, **due})
    return gaps


def _manual(
    evidence: dict[str, Any], owners: dict[str, Owner], rca: dict[str, Any], by_next_drill: dict[str, Any]
) -> list[dict[str, Any]]:
    """Steps the drill leaves to a person: the runbook's manual commands, a credential rotation."""
    commands = _object(evidence.get("conformance")).get("commands") or []
    gaps = [
        {
            "kind": "manual-step",
            "item": f"runbook line {c.get('line')}",
            "detail": c.get("why"),
            "owner": _owner(owners, "Incident Commander"),
            **by_next_drill,
        }
        for c in commands
        if isinstance(c, dict) and c.get("status") == "manual"
    ]
    if evidence.get("incident") == "security-breach":
        gaps.append(
            {
                "kind": "manual-step",
                "item": "credential rotation",
                "detail": "the leaked credentials are rotated by hand; the drill does not rotate them",
                "owner": _owner(owners, "Security"),
                **rca,
            }
        )
    return gaps


def _gaps(
    evidence: dict[str, Any], owners: dict[str, Owner], rca_due: str | None, next_due: str | None
) -> list[dict[str, Any]]:
    rca = {"due": rca_due, "due_because": "the runbook's RCA, within 24 hours"}
    by_next_drill = {"due": next_due, "due_because": "before the next drill"}
    return [
        *_missed(evidence, _owner(owners, "Incident Commander"), rca),
        *_warned(evidence, owners, rca, by_next_drill),
        *_manual(evidence, owners, rca, by_next_drill),
    ]


def controls_document(
    evidence: dict[str, Any],
    timeline: list[dict[str, Any]],
    *,
    drills: Drills | None = None,
    owners: dict[str, Owner] | None = None,
) -> dict[str, Any]:
    """The controls document of one drill's evidence and timeline."""
    drills = drills if drills is not None else load_config().drills
    owners = owners if owners is not None else contact_list()
    finished = parse_time(evidence.get("finished_at")) or parse_time(evidence.get("started_at"))
    next_due = (
        next_drill_due(finished.date(), passed=evidence.get("verdict") == "pass", drills=drills) if finished else None
    )
    rca_due = format_utc(finished + RCA_DUE) if finished else None
    document = {
        "schema": CONTROLS_SCHEMA,
        "drill_id": evidence.get("drill_id"),
        "note": "What each control asks, and the evidence of this drill that answers it; not legal advice.",
        "next_drill_due": next_due.isoformat() if next_due else None,
        "controls": _controls(evidence, timeline, next_due),
        "gaps": _gaps(evidence, owners, rca_due, next_due.isoformat() if next_due else None),
    }
    result: dict[str, Any] = to_jsonable(document)
    return result


def write_controls(bundle_dir: Path, *, drills: Drills | None = None, redactor: Redactor | None = None) -> Path:
    """Write ``controls.json`` into the bundle (before it is sealed) and return its path."""
    bundle_dir = require_bundle(bundle_dir)
    redactor = redactor if redactor is not None else REDACTOR
    document = redactor.redact(controls_document(load_evidence(bundle_dir), load_timeline(bundle_dir), drills=drills))
    path = bundle_dir / CONTROLS_NAME
    write_atomic(path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return path
