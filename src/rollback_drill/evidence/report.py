# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""``report.html``: one self-contained page a reviewer reads before signing.

Inline CSS and inline SVG only: no script, no external URL, no web font, so the page
opens the same from a USB stick a year later. Every value from the evidence is
HTML-escaped after redaction, and the finished page goes through the redactor once more.

Approvals are shown as stored in ``approvals/`` (not verified here: that is
``rollback-drill evidence verify --allowed-signers``). The copy of the report inside a
sealed bundle is rendered before anyone signs, so its approval block shows the
runbook's blank lines; ``rollback-drill evidence report --output DIR`` renders a copy
with the signatures filled in, without touching the signed bundle.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from rollback_drill.evidence.bundle import (
    APPROVALS_DIR,
    MANIFEST_NAME,
    RCA_NAME,
    REPORT_NAME,
    bundle_files,
    load_evidence,
    load_timeline,
    require_bundle,
    write_atomic,
)
from rollback_drill.evidence.controls import controls_document
from rollback_drill.evidence.rca import (
    format_duration,
    format_time,
    incident_id,
    incident_title,
    key_moments,
    parse_time,
)
from rollback_drill.evidence.recorder import EVIDENCE_NAME, sha256_file
from rollback_drill.evidence.redact import REDACTOR, Redactor
from rollback_drill.evidence.sign import ROLE_DUTIES, ROLES, Approval, read_approvals

VERDICT_COLOURS: Final = {"pass": "#1b5e20", "fail": "#b71c1c", "aborted": "#e65100"}
STATUS_COLOURS: Final = {
    "pass": "#2e7d32",
    "over-budget": "#d32f2f",
    "fail": "#b71c1c",
    "skipped": "#9e9e9e",
    "unfinished": "#ef6c00",
}
BUDGET_COLOUR: Final = "#cfd8e3"

# Chart geometry, in SVG user units (the SVG scales to the page's width).
_WIDTH: Final = 1180
_LABEL_W: Final = 300
_VALUE_W: Final = 200
_TOP: Final = 46
_ROW_H: Final = 30
_BAR_H: Final = 14
_BUDGET_H: Final = 24
_NICE_TICKS_S: Final = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)

# Files the report cannot list with a hash: itself, its sibling, and the two that sealing rewrites.
_NOT_LISTED: Final = frozenset({REPORT_NAME, RCA_NAME, EVIDENCE_NAME, MANIFEST_NAME})

_CSS: Final = """
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 0; color: #1a1a1a; background: #fafafa; }
main { max-width: 1200px; margin: 0 auto; padding: 0 24px 48px; }
.verdict { color: #fff; padding: 28px 24px; }
.verdict .word { font-size: 64px; font-weight: bold; letter-spacing: 4px; line-height: 1; }
.verdict .what { font-size: 20px; margin-top: 10px; }
.verdict .why { font-size: 16px; margin-top: 8px; }
h2 { border-bottom: 2px solid #ccc; padding-bottom: 4px; margin-top: 36px; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border: 1px solid #d0d0d0; padding: 5px 8px; text-align: left; vertical-align: top; font-size: 14px; }
th { background: #eceff1; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; word-break: break-all; }
.met-yes { color: #1b5e20; font-weight: bold; }
.met-no { color: #b71c1c; font-weight: bold; }
.met-unknown { color: #616161; }
.status-pass { color: #2e7d32; } .status-over-budget, .status-fail { color: #b71c1c; font-weight: bold; }
.status-skipped { color: #757575; }
.drift { background: #fff3e0; }
.empty { color: #757575; font-style: italic; }
.chart { background: #fff; border: 1px solid #d0d0d0; }
.signoff li { margin: 4px 0; }
.signline { font-family: "DejaVu Sans Mono", monospace; }
footer { color: #757575; font-size: 12px; margin-top: 40px; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else str(value)
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value)}"
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _cell(value: Any) -> str:
    """A table cell's content, escaped: scalars as text, structures as compact JSON."""
    if value is None:
        return '<span class="empty">—</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return esc(_number(value))
    if isinstance(value, str):
        return esc(value)
    return f"<code>{esc(json.dumps(value, ensure_ascii=False, sort_keys=True))}</code>"


def _records_table(items: list[Any], css_class: str = "") -> str:
    """A table of a list of JSON objects, one column per key (in order of first appearance)."""
    records = [item if isinstance(item, dict) else {"value": item} for item in items]
    columns: list[str] = []
    for record in records:
        columns += [str(k) for k in record if str(k) not in columns]
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_cell(record.get(c))}</td>" for c in columns) + "</tr>" for record in records
    )
    return f'<table class="{esc(css_class)}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _mapping_table(mapping: dict[str, Any], css_class: str = "") -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{_cell(v)}</td></tr>" for k, v in mapping.items())
    return f'<table class="{esc(css_class)}"><tbody>{rows}</tbody></table>'


# -- the chart ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bar:
    step_id: str
    title: str
    status: str
    start_s: float | None
    elapsed_s: float | None
    budget_s: float
    unfinished: bool


def _bars(evidence: dict[str, Any], timeline: list[dict[str, Any]], origin: datetime) -> list[_Bar]:
    last_seen = parse_time(evidence.get("finished_at")) or max(
        (t for t in (parse_time(e.get("t_wall")) for e in timeline) if t is not None), default=origin
    )
    bars: list[_Bar] = []
    for step in evidence.get("steps") or []:
        if not isinstance(step, dict):
            continue
        started = parse_time(step.get("started_at"))
        start_s = (started - origin).total_seconds() if started else None
        elapsed = step.get("elapsed_s")
        unfinished = False
        if not isinstance(elapsed, int | float) or isinstance(elapsed, bool):
            elapsed = None
            finished = parse_time(step.get("finished_at"))
            if started is not None:
                end = finished or last_seen
                elapsed = max(0.0, (end - started).total_seconds())
                unfinished = finished is None
        budget = step.get("budget_s")
        bars.append(
            _Bar(
                step_id=str(step.get("id")),
                title=str(step.get("title") or ""),
                status="unfinished" if unfinished else str(step.get("status")),
                start_s=start_s,
                elapsed_s=float(elapsed) if elapsed is not None else None,
                budget_s=float(budget) if isinstance(budget, int | float) and not isinstance(budget, bool) else 0.0,
                unfinished=unfinished,
            )
        )
    return bars


def _tick(span_s: float) -> float:
    for tick in _NICE_TICKS_S:
        if span_s / tick <= 10:
            return float(tick)
    return float(math.ceil(span_s / 10 / 86400) * 86400)


def _short_duration(seconds: float | None) -> str:
    """``12.3s``, ``3m20s``, ``1h5m``: chart labels, where space is short."""
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return _tick_label(round(seconds))


def _tick_label(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m" + (f"{secs}s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h" + (f"{minutes}m" if minutes else "")


@dataclass(frozen=True)
class _Scale:
    """Seconds from the drill's start to SVG x."""

    x0: float
    per_second: float

    def x(self, seconds: float) -> float:
        return round(self.x0 + max(0.0, seconds) * self.per_second, 2)

    def width(self, seconds: float) -> float:
        return round(max(0.0, seconds) * self.per_second, 2)


def _markers(timeline: list[dict[str, Any]], origin: datetime) -> list[tuple[str, float]]:
    found = []
    for kind, label in (("incident_injected", "incident"), ("decision_made", "decision")):
        event = next((e for e in timeline if e.get("kind") == kind), None)
        moment = parse_time(event.get("t_wall")) if event else None
        if moment is not None:
            found.append((label, (moment - origin).total_seconds()))
    return found


def _axis(scale: _Scale, span: float, bottom: float) -> str:
    parts = []
    tick = _tick(span)
    value = 0.0
    while value <= span + 1e-9:
        x = scale.x(value)
        parts.append(
            f'<line class="grid" x1="{x}" y1="{_TOP - 8}" x2="{x}" y2="{bottom}" stroke="#e0e0e0"/>'
            f'<text x="{x}" y="{_TOP - 12}" text-anchor="middle" fill="#616161">{esc(_tick_label(value))}</text>'
        )
        value += tick
    return "".join(parts)


def _row(index: int, bar: _Bar, scale: _Scale, previous_end: float) -> str:
    """One step's row: its label, its budget behind, its bar, and its numbers at the right."""
    mid = _TOP + index * _ROW_H + _ROW_H / 2
    label = f"{bar.step_id} {bar.title}"
    short = label if len(label) <= 42 else label[:41] + "…"
    colour = STATUS_COLOURS.get(bar.status, STATUS_COLOURS["fail"])
    step = esc(bar.step_id)
    parts = [f'<text class="step-label" x="10" y="{mid + 4}"><title>{esc(label)}</title>{esc(short)}</text>']
    if bar.start_s is None:
        parts.append(
            f'<rect class="bar skipped" data-step="{step}" x="{scale.x(previous_end)}" y="{mid - _BAR_H / 2}" '
            f'width="3" height="{_BAR_H}" fill="{colour}"><title>{step}: skipped</title></rect>'
        )
        value_text = "skipped"
    else:
        if bar.budget_s > 0:
            end = scale.x(bar.start_s + bar.budget_s)
            parts.append(
                f'<rect class="budget" data-step="{step}" x="{scale.x(bar.start_s)}" y="{mid - _BUDGET_H / 2}" '
                f'width="{scale.width(bar.budget_s)}" height="{_BUDGET_H}" fill="{BUDGET_COLOUR}" rx="2">'
                f"<title>{step} budget {esc(format_duration(bar.budget_s))}</title></rect>"
                f'<line class="budget-end" x1="{end}" y1="{mid - _BUDGET_H / 2}" x2="{end}" '
                f'y2="{mid + _BUDGET_H / 2}" stroke="#546e7a" stroke-width="2"/>'
            )
        tooltip = f"{label}: {format_duration(bar.elapsed_s)} of a {format_duration(bar.budget_s)} budget, {bar.status}"
        parts.append(
            f'<rect class="bar {esc(bar.status)}" data-step="{step}" x="{scale.x(bar.start_s)}" '
            f'y="{mid - _BAR_H / 2}" width="{max(2.0, scale.width(bar.elapsed_s or 0.0))}" height="{_BAR_H}" '
            f'fill="{colour}"><title>{esc(tooltip)}</title></rect>'
        )
        value_text = f"{_short_duration(bar.elapsed_s)} of {_short_duration(bar.budget_s)}"
        if bar.status != "pass":
            value_text += f", {bar.status}"
    parts.append(
        f'<text class="step-value" x="{_WIDTH - _VALUE_W}" y="{mid + 4}" fill="{colour}">{esc(value_text)}</text>'
    )
    return "".join(parts)


def _legend(y: float) -> str:
    parts = []
    x = 10
    entries = (
        ("pass", STATUS_COLOURS["pass"]),
        ("over budget / failed", STATUS_COLOURS["fail"]),
        ("unfinished", STATUS_COLOURS["unfinished"]),
        ("skipped", STATUS_COLOURS["skipped"]),
        ("budget", BUDGET_COLOUR),
    )
    for name, colour in entries:
        parts.append(
            f'<rect x="{x}" y="{y - 10}" width="14" height="12" fill="{colour}"/>'
            f'<text x="{x + 20}" y="{y}">{esc(name)}</text>'
        )
        x += 40 + len(name) * 7
    return "".join(parts)


def timeline_svg(evidence: dict[str, Any], timeline: list[dict[str, Any]]) -> str:
    """A Gantt chart: one row per runbook step, its bar placed at its start and as long as
    it took, its budget drawn lighter behind it; over budget and failed steps in red."""
    origin = parse_time(evidence.get("started_at"))
    bars = _bars(evidence, timeline, origin) if origin else []
    if origin is None or not bars:
        return '<p class="empty">No runbook step was recorded.</p>'
    markers = _markers(timeline, origin)
    span = max(
        [1.0]
        + [b.start_s + max(b.elapsed_s or 0.0, b.budget_s) for b in bars if b.start_s is not None]
        + [t for _, t in markers]
    )
    x0 = _LABEL_W + 10
    scale = _Scale(x0, (_WIDTH - x0 - _VALUE_W - 10) / span)
    bottom = _TOP + len(bars) * _ROW_H
    height = bottom + 38 + 13 * len(markers)
    opening = (
        f'<svg class="chart" role="img" aria-label="Runbook steps on a time line" viewBox="0 0 {_WIDTH} {height}" '
        'width="100%" preserveAspectRatio="xMinYMin meet" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">'
    )
    parts = [
        opening,
        f'<text x="10" y="20" font-weight="bold">Runbook steps, time from drill start ({esc(format_time(origin))})</text>',
        _axis(scale, span, bottom),
    ]
    previous_end = 0.0
    for index, bar in enumerate(bars):
        parts.append(_row(index, bar, scale, previous_end))
        if bar.start_s is not None:
            previous_end = bar.start_s + (bar.elapsed_s or 0.0)
    for index, (label, at) in enumerate(markers):
        # One label line per marker, so markers close in time do not print over each other.
        parts.append(
            f'<line class="marker" x1="{scale.x(at)}" y1="{_TOP - 6}" x2="{scale.x(at)}" y2="{bottom + 4 + 13 * index}" '
            f'stroke="#6a1b9a" stroke-dasharray="4 3"/>'
            f'<text x="{scale.x(at) + 3}" y="{bottom + 14 + 13 * index}" fill="#6a1b9a">{esc(label)}</text>'
        )
    parts += [_legend(bottom + 26 + 13 * len(markers)), "</svg>"]
    return "".join(parts)


# -- sections ---------------------------------------------------------------------------


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _facts(evidence: dict[str, Any]) -> str:
    target = _object(evidence.get("target"))
    runbook = _object(evidence.get("runbook"))
    tool = _object(evidence.get("tool"))
    decision = _object(evidence.get("decision"))
    facts = {
        "Drill id": evidence.get("drill_id"),
        "Incident": f"{evidence.get('incident')} ({incident_title(str(evidence.get('incident') or ''))})",
        "RCA incident id": incident_id(evidence),
        "Phase": evidence.get("phase"),
        "Decision": decision.get("priority"),
        "Target": target.get("kind"),
        "Server version": target.get("server_version"),
        "Cluster fingerprint": target.get("fingerprint"),
        "Started": evidence.get("started_at"),
        "Finished": evidence.get("finished_at"),
        "Runbook": f"{runbook.get('id')} (sha256 {runbook.get('sha256') or 'not recorded'})",
        "Tool": f"rollback-drill {tool.get('version')} (git {tool.get('git_sha') or 'not recorded'})",
        "Configuration sha256": evidence.get("config_sha256"),
        "Mode": evidence.get("mode"),
    }
    return _mapping_table({k: v for k, v in facts.items() if v is not None or k in {"Finished", "Decision"}}, "facts")


def _steps_table(evidence: dict[str, Any]) -> str:
    rows = []
    for step in evidence.get("steps") or []:
        if not isinstance(step, dict):
            continue
        status = str(step.get("status"))
        rows.append(
            "<tr>"
            f"<td>{esc(step.get('id'))}</td><td>{esc(step.get('title'))}</td>"
            f'<td class="num">{esc(format_duration(step.get("budget_s")))}</td>'
            f'<td class="num">{esc(format_duration(step.get("elapsed_s")))}</td>'
            f'<td class="status-{esc(status)}">{esc(status)}</td>'
            f"<td>{_cell(step.get('error'))}</td>"
            "</tr>"
        )
    if not rows:
        return '<p class="empty">No runbook step was recorded.</p>'
    return (
        '<table class="steps"><thead><tr><th>Step</th><th>Title</th><th>Budget</th><th>Elapsed</th>'
        f"<th>Status</th><th>Error</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _targets_table(evidence: dict[str, Any]) -> str:
    rows = []
    for target in evidence.get("targets") or []:
        if not isinstance(target, dict):
            continue
        met = target.get("met")
        met_html = (
            '<span class="met-yes">met</span>'
            if met is True
            else '<span class="met-no">MISSED</span>'
            if met is False
            else '<span class="met-unknown">reported</span>'
        )
        limit = target.get("limit")
        rows.append(
            "<tr>"
            f"<td>{esc(target.get('name'))}</td>"
            f'<td class="num">{esc(_number(limit)) if limit is not None else "—"}</td>'
            f'<td class="num">{esc(_number(target.get("measured")))}</td>'
            f"<td>{esc(target.get('unit'))}</td><td>{met_html}</td>"
            "</tr>"
        )
    if not rows:
        return '<p class="empty">No drill target was measured.</p>'
    return (
        '<table class="targets"><thead><tr><th>Target</th><th>Limit</th><th>Measured</th><th>Unit</th>'
        f"<th>Met</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _decision(evidence: dict[str, Any]) -> str:
    decision = evidence.get("decision")
    if not isinstance(decision, dict):
        return '<p class="empty">No decision was recorded.</p>'

    def items(values: Any) -> str:
        listed = [f"<li>{esc(v)}</li>" for v in values or []] if isinstance(values, list) else []
        return f"<ul>{''.join(listed)}</ul>" if listed else '<span class="empty">none</span>'

    return (
        '<table class="decision"><tbody>'
        f"<tr><th>Priority</th><td><strong>{esc(decision.get('priority'))}</strong></td></tr>"
        f"<tr><th>Action</th><td>{esc(decision.get('action'))}</td></tr>"
        f"<tr><th>Criteria met</th><td>{items(decision.get('criteria_met'))}</td></tr>"
        f"<tr><th>Reasons</th><td>{items(decision.get('reasons'))}</td></tr>"
        f"<tr><th>Triage</th><td>{esc(format_duration(decision.get('triage_s')))}</td></tr>"
        "</tbody></table>"
    )


def _warnings(evidence: dict[str, Any]) -> str:
    warnings = [w for w in evidence.get("warnings") or [] if isinstance(w, dict)]
    if not warnings:
        return '<p class="empty">No warnings.</p>'
    rows = "".join(
        f'<tr class="{"drift" if "drift" in str(w.get("code")) else ""}">'
        f"<td>{esc(w.get('code'))}</td><td>{_cell(w.get('step'))}</td><td>{esc(w.get('message'))}</td></tr>"
        for w in warnings
    )
    return (
        '<table class="warnings"><thead><tr><th>Code</th><th>Step</th><th>Message</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _artifacts(bundle_dir: Path) -> str:
    files, _ = bundle_files(bundle_dir)
    rows = []
    for relative in files:
        if relative in _NOT_LISTED:
            continue
        digest, size = sha256_file(bundle_dir / relative)
        rows.append(f'<tr><td>{esc(relative)}</td><td class="num">{size}</td><td class="mono">{esc(digest)}</td></tr>')
    table = (
        '<table class="artifacts"><thead><tr><th>File</th><th>Bytes</th><th>sha256</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="empty">No other files.</p>'
    )
    note = (
        f"<p>{esc(REPORT_NAME)}, {esc(RCA_NAME)} and {esc(EVIDENCE_NAME)} cannot carry their own hashes: "
        f"{esc(MANIFEST_NAME)} holds every file's sha256 once the bundle is sealed. Check it with "
        f"<code>rollback-drill evidence verify {esc(bundle_dir.name)}</code> or "
        f"<code>sha256sum -c {esc(MANIFEST_NAME)}</code>.</p>"
    )
    return table + note


def _signoff(approvals: list[Approval], manifest_sha: str | None) -> str:
    by_role: dict[str, list[Approval]] = {}
    for approval in approvals:
        by_role.setdefault(approval.role, []).append(approval)
    checklist = "".join(
        f"<li>{'&#9745;' if role in by_role else '&#9744;'} <strong>{esc(role)}:</strong> {esc(ROLE_DUTIES[role])}</li>"
        for role in ROLES
    )
    lines = []
    for role in ROLES:
        signed = by_role.get(role)
        if not signed:
            lines.append(
                f'<li class="signline" data-role="{esc(role)}">{esc(role)}: ________________ (Date: ______)</li>'
            )
            continue
        for approval in signed:
            current = manifest_sha is not None and approval.manifest_sha256 == manifest_sha
            state = "over the current manifest" if current else "over a DIFFERENT manifest: the bundle changed since"
            lines.append(
                f'<li class="signline signed" data-role="{esc(role)}">{esc(role)}: <strong>{esc(approval.name)}</strong> '
                f"(Date: {esc(approval.signed_at[:10])}) — signed {esc(approval.signed_at)} with key "
                f"{esc(approval.key_fingerprint or 'unknown')}, {esc(state)} "
                f"<code>{esc(approval.manifest_sha256[:16])}…</code> ({esc(approval.file)})</li>"
            )
    return (
        '<div class="signoff"><p><strong>Approval (required before each rollout phase):</strong></p>'
        f"<ul>{checklist}</ul><p><strong>Approved By:</strong></p><ul>{''.join(lines)}</ul>"
        "<p>This page shows the approvals as stored; only "
        "<code>rollback-drill evidence verify DIR --allowed-signers FILE</code> proves who signed.</p></div>"
    )


_CONFORMANCE_STATUS_CLASS: Final = {
    "ok": "status-pass",
    "drifted": "status-fail",
    "not-runnable": "status-skipped",
    "manual": "status-skipped",
}


def _multiline(value: Any) -> str:
    if value is None or value == "":
        return '<span class="empty">—</span>'
    return f"<code>{esc(value).replace(chr(10), '<br>')}</code>"


def _notes(notes: Any) -> str:
    items = [f"<li>{esc(n)}</li>" for n in notes] if isinstance(notes, list) else []
    return f"<ul>{''.join(items)}</ul>" if items else ""


def _conformance(conformance: dict[str, Any]) -> str:
    """The runbook's commands as run by ``rollback-drill conformance``: counts, then one row per command (drifts
    highlighted, with what came back and the proposed correction). Any other shape is shown as a plain table."""
    commands = conformance.get("commands")
    if not isinstance(commands, list):
        return _mapping_table(conformance, "conformance")
    runbook = _object(conformance.get("runbook"))
    counts = _object(conformance.get("counts"))
    summary = _mapping_table(
        {
            "Runbook": f"{runbook.get('id') or runbook.get('path')} (sha256 {runbook.get('sha256')})",
            "World": f"Phase {conformance.get('phase')}, incident {conformance.get('incident') or 'none'}",
            "Commands in the document": conformance.get("commands_in_document"),
            **{str(k): v for k, v in counts.items()},
        },
        "conformance-summary",
    )
    rows = []
    for row in commands:
        if not isinstance(row, dict):
            continue
        status = str(row.get("status"))
        drift = ' class="drift"' if status == "drifted" else ""
        fix = row.get("proposed_fix")
        check = row.get("fix_check")
        rows.append(
            f"<tr{drift}>"
            f'<td class="num">{esc(row.get("line"))}</td><td>{esc(row.get("section"))}</td>'
            f"<td>{esc(row.get('kind'))}</td>"
            f'<td class="{_CONFORMANCE_STATUS_CLASS.get(status, "status-fail")}">{esc(status)}</td>'
            f"<td>{_multiline(row.get('command'))}</td><td>{_cell(row.get('expected'))}</td>"
            f"<td>{_multiline(row.get('actual'))}<br>{esc(row.get('why'))}{_notes(row.get('notes'))}</td>"
            f"<td>{_multiline(fix)}{'<br>' + esc(check) if check else ''}</td>"
            "</tr>"
        )
    drifts = [d for d in conformance.get("drifted") or [] if isinstance(d, dict)]
    drift_list = (
        "<h3>Where the runbook has drifted</h3><ul>"
        + "".join(f"<li>line {esc(d.get('line'))} ({esc(d.get('section'))}): {esc(d.get('why'))}</li>" for d in drifts)
        + "</ul>"
        if drifts
        else '<p class="empty">No runnable command drifted.</p>'
    )
    table = (
        '<table class="conformance"><thead><tr><th>Line</th><th>Section</th><th>Kind</th><th>Status</th>'
        "<th>Command</th><th>Expected</th><th>What came back, and why</th><th>Proposed fix</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return summary + drift_list + "<h3>Every command, in the runbook's order</h3>" + table


def _met_cell(met: Any) -> str:
    if met is True:
        return '<span class="met-yes">met</span>'
    if met is False:
        return '<span class="met-no">NOT MET</span>'
    return '<span class="met-unknown">to confirm</span>'


def _controls(document: dict[str, Any]) -> str:
    """Each control: what it asks, and the evidence rows that answer it, measured against the objective."""
    parts = [f'<p class="note">{esc(document.get("note"))} Also in controls.json.</p>']
    for control in document.get("controls") or []:
        rows = "".join(
            f"<tr><td><code>{esc(row.get('field'))}</code></td><td>{_cell(row.get('measured'))}</td>"
            f"<td>{esc(row.get('objective'))}</td><td>{_met_cell(row.get('met'))}</td></tr>"
            for row in control.get("evidence") or []
        )
        parts.append(
            f"<h3>{esc(control.get('id'))}: {esc(control.get('title'))} <small>({esc(control.get('status'))})</small></h3>"
            f"<p>{esc(control.get('asks'))}</p>"
            '<table class="controls"><thead><tr><th>Evidence</th><th>Measured</th><th>Objective</th><th>Met</th></tr>'
            f"</thead><tbody>{rows}</tbody></table>"
        )
    return "".join(parts)


def _gaps(document: dict[str, Any]) -> str:
    gaps = [g for g in document.get("gaps") or [] if isinstance(g, dict)]
    if not gaps:
        return f'<p class="empty">None. Next drill due {esc(document.get("next_drill_due") or "—")}.</p>'
    rows = "".join(
        f"<tr><td>{esc(g.get('kind'))}</td><td>{_cell(g.get('item'))}</td><td>{_cell(g.get('detail'))}</td>"
        f"<td>{esc(g.get('owner'))}</td><td>{_cell(g.get('due'))}<br><small>{esc(g.get('due_because'))}</small></td></tr>"
        for g in gaps
    )
    return (
        '<table class="gaps"><thead><tr><th>Kind</th><th>Item</th><th>Detail</th><th>Owner</th><th>Due</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )


def report_html(bundle_dir: Path, evidence: dict[str, Any], timeline: list[dict[str, Any]]) -> str:
    """The report page (not yet redacted as a whole)."""
    verdict = str(evidence.get("verdict") or "aborted")
    colour = VERDICT_COLOURS.get(verdict, VERDICT_COLOURS["fail"])
    incident = str(evidence.get("incident") or "")
    why = ""
    if verdict == "aborted":
        why = f'<div class="why">Aborted: {esc(evidence.get("abort_reason") or "the drill did not finish")}</div>'
    elif verdict == "fail":
        missed = [
            str(t.get("name")) for t in evidence.get("targets") or [] if isinstance(t, dict) and t.get("met") is False
        ]
        failed = [
            str(s.get("id"))
            for s in evidence.get("steps") or []
            if isinstance(s, dict) and s.get("status") in {"fail", "over-budget"}
        ]
        reasons = ([f"targets missed: {', '.join(missed)}"] if missed else []) + (
            [f"steps failed or over budget: {', '.join(failed)}"] if failed else []
        )
        why = f'<div class="why">{esc("; ".join(reasons) or "see the steps and targets below")}</div>'
    moments = key_moments(evidence, timeline)
    moments_rows = "".join(
        f"<tr><td>{esc(format_time(m.at))}</td><td>{esc(m.label)}</td><td>{esc(m.source)}</td></tr>"
        for m in moments.in_order()
    )
    participants = _object(evidence.get("participants"))
    manifest_path = bundle_dir / MANIFEST_NAME
    manifest_sha = sha256_file(manifest_path)[0] if manifest_path.is_file() else None
    header = (
        f'<header class="verdict verdict-{esc(verdict)}" style="background:{colour}">'
        f'<div class="word">{esc(verdict.upper())}</div>'
        f'<div class="what">Rollback drill {esc(evidence.get("drill_id"))}: RB-LAUNCH-002 rollback to pilot scope, '
        f"incident {esc(incident)}</div>{why}</header>"
    )
    timeline_section = (
        f'<h2>Timeline</h2>{timeline_svg(evidence, timeline)}<h3>Key moments</h3><table class="moments">'
        f"<thead><tr><th>Time</th><th>Moment</th><th>From</th></tr></thead><tbody>{moments_rows}</tbody></table>"
        f"<h3>Steps</h3>{_steps_table(evidence)}"
    )
    sections = [
        header,
        "<main>",
        f"<h2>Drill</h2>{_facts(evidence)}",
        timeline_section,
        f"<h2>Drill targets</h2>{_targets_table(evidence)}",
        f"<h2>Decision</h2>{_decision(evidence)}",
        "<h2>Participants</h2>"
        + (_mapping_table(participants, "participants") if participants else '<p class="empty">None recorded.</p>'),
        f"<h2>Warnings</h2>{_warnings(evidence)}",
    ]
    notifications = evidence.get("notifications")
    if isinstance(notifications, list) and notifications:
        sections.append(f"<h2>Notifications</h2>{_records_table(notifications, 'notifications')}")
    gameday = evidence.get("gameday")
    if evidence.get("mode") == "gameday" and isinstance(gameday, dict):
        # A game day: people's step times beside the automated drills' (history), and who acknowledged what.
        sections.append(
            f"<h2>Game day: people vs the automated drill</h2>{_records_table(gameday.get('comparison') or [], 'gameday')}"
            f"<h3>Acknowledgements</h3>{_records_table(gameday.get('acknowledgements') or [], 'gameday')}"
            f"<h3>What the drill observed</h3>{_records_table(gameday.get('steps') or [], 'gameday')}"
        )
    conformance = evidence.get("conformance")
    if isinstance(conformance, dict) and conformance:
        sections.append(f"<h2>Conformance</h2>{_conformance(conformance)}")
    for key, title in (("phases", "Re-enablement phases"), ("faults", "Faults"), ("measurements", "Measurements")):
        value = evidence.get(key)
        if isinstance(value, list) and value:
            sections.append(f"<h2>{esc(title)}</h2>{_records_table(value, key)}")
        elif isinstance(value, dict) and value:
            sections.append(f"<h2>{esc(title)}</h2>{_mapping_table(value, key)}")
    controls = controls_document(evidence, timeline)
    sections += [
        f"<h2>Controls</h2>{_controls(controls)}",
        f"<h2>Gaps and follow-ups</h2>{_gaps(controls)}",
        f"<h2>Artifacts</h2>{_artifacts(bundle_dir)}",
        f"<h2>Approval &amp; Sign-Off</h2>{_signoff(read_approvals(bundle_dir), manifest_sha)}",
        (
            f"<footer>Rendered from {esc(EVIDENCE_NAME)} and timeline.jsonl of bundle {esc(bundle_dir.name)}. "
            f"Approvals live in {esc(APPROVALS_DIR)}/.</footer>"
        ),
        "</main>",
    ]
    title = f"Rollback drill {evidence.get('drill_id')}: {verdict.upper()}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>" + "".join(sections) + "</body></html>\n"
    )


def render_report(bundle_dir: Path, *, output_dir: Path | None = None, redactor: Redactor | None = None) -> Path:
    """Write ``report.html`` into the bundle (or into ``output_dir``) and return its path."""
    bundle_dir = require_bundle(bundle_dir)
    redactor = redactor if redactor is not None else REDACTOR
    evidence = redactor.redact(load_evidence(bundle_dir))
    timeline = redactor.redact(load_timeline(bundle_dir))
    page = redactor.redact_text(report_html(bundle_dir, evidence, timeline))
    target_dir = Path(output_dir) if output_dir is not None else bundle_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / REPORT_NAME
    write_atomic(target, page.encode("utf-8"))
    return target
