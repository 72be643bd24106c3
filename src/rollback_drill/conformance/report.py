"""The conformance report: one result per runbook command (its status, why, what ran and what came back,
the kubectl calls it made, its checked expectations, a proposed correction), and the report of a whole run
with its evidence and ``conformance.json`` forms.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from rollback_drill.conformance.classify import CommandKind
from rollback_drill.conformance.expect import Check
from rollback_drill.conformance.kubectl import KubectlInvocation
from rollback_drill.conformance.runbook import Expectation, ParsedRunbook, RunbookCommand
from rollback_drill.errors import InputError

Status = Literal["ok", "drifted", "not-runnable", "manual"]
STATUSES: Final[tuple[Status, ...]] = ("ok", "drifted", "not-runnable", "manual")


@dataclass(frozen=True)
class ExpectationResult:
    expectation: Expectation
    checks: tuple[Check, ...]
    judged: bool
    """False when the expectation is stated for another state of the world (``Expected for pilot``) or the
    command is for a person: shown, not held against the runbook."""
    note: str | None = None

    @property
    def holds(self) -> bool:
        return all(check.holds for check in self.checks)

    def evidence(self) -> dict[str, Any]:
        return {
            "line": self.expectation.line,
            "label": self.expectation.label,
            "expected": list(self.expectation.items),
            "holds": self.holds if self.checks else None,
            "judged": self.judged,
            "checks": [{"item": c.item, "holds": c.holds, "how": c.how, "seen": c.detail} for c in self.checks],
            "note": self.note,
        }


@dataclass(frozen=True)
class CommandResult:
    command: RunbookCommand
    status: Status
    why: str
    ran: str | None = None
    """What bash ran, after the mappings (redacted)."""
    mappings: tuple[str, ...] = ()
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    elapsed_s: float = 0.0
    kubectl: tuple[KubectlInvocation, ...] = ()
    expectations: tuple[ExpectationResult, ...] = ()
    proposed_fix: str | None = None
    fix_check: str | None = None
    notes: tuple[str, ...] = ()
    tracked: bool = False
    """A kubectl command naming the flowengine Deployment (or its pods), repo-config or a PrometheusRule."""
    deliveries: tuple[dict[str, Any], ...] = ()
    """What reached the notification sinks (notify commands)."""

    @property
    def line(self) -> int:
        return self.command.line

    @property
    def kind(self) -> CommandKind:
        return self.command.kind

    def summary(self) -> dict[str, Any]:
        """The evidence's (and report.html's) row for this command."""
        command = self.command
        return {
            "index": command.index,
            "line": command.line,
            "section": command.section,
            "step": command.step_id,
            "kind": command.kind,
            "status": self.status,
            "command": shorten(command.text, 400),
            "why": self.why,
            "expected": "; ".join(e.text for e in command.expectations) or None,
            "actual": shorten(self.stdout.strip(), 600) if self.status in {"ok", "drifted"} else None,
            "exit_code": self.exit_code,
            "kubectl_calls": len(self.kubectl),
            "proposed_fix": self.proposed_fix,
            "fix_check": self.fix_check,
            "notes": list(self.notes),
        }

    def to_json(self) -> dict[str, Any]:
        command = self.command
        return {
            **self.summary(),
            "end_line": command.end_line,
            "source": command.source,
            "purpose": command.purpose,
            "classification": {
                "kind": command.kind,
                "reason": command.classification.reason,
                "runnable": command.classification.runnable,
                "targets": list(command.classification.targets),
                "placeholders": list(command.classification.placeholders),
                "lint": list(command.classification.lint),
            },
            "ran": self.ran,
            "mappings": list(self.mappings),
            "stdout": self.stdout,
            "stderr": self.stderr,
            "elapsed_s": round(self.elapsed_s, 3),
            "kubectl": [{"command": k.command, "exit_code": k.exit_code} for k in self.kubectl],
            "expectations": [e.evidence() for e in self.expectations],
            "documented_notes": list(command.notes),
            "tracked": self.tracked,
            "deliveries": list(self.deliveries),
        }


def shorten(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class ConformanceReport:
    """Every command of the runbook, in order, with what happened to it."""

    runbook: ParsedRunbook
    results: tuple[CommandResult, ...]
    environment: str
    target: dict[str, Any]
    phase: int
    incident: str | None
    started_at: str
    finished_at: str
    elapsed_s: float
    work_dir: str
    world: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        tally = Counter(result.status for result in self.results)
        counts: dict[str, int] = {status: tally.get(status, 0) for status in STATUSES}
        counts["total"] = len(self.results)
        return counts

    @property
    def ok(self) -> bool:
        """Nothing runnable drifted (exit code 0 of `rollback-drill conformance`)."""
        return not self.drifted()

    def drifted(self) -> tuple[CommandResult, ...]:
        return tuple(r for r in self.results if r.status == "drifted")

    def result_at_line(self, line: int) -> CommandResult:
        for result in self.results:
            if result.command.line <= line <= result.command.end_line:
                return result
        raise InputError(f"no command of {self.runbook.path} is at line {line}")

    def tracked_not_run(self) -> tuple[CommandResult, ...]:
        """kubectl commands on the flowengine Deployment, repo-config or PrometheusRules that made no kubectl call."""
        return tuple(r for r in self.results if r.tracked and not r.kubectl)

    def evidence(self) -> dict[str, Any]:
        """The evidence's ``conformance`` field: counts, drifts, and one row per command."""
        return {
            "runbook": {"path": self.runbook.path, "id": self.runbook.runbook_id, "sha256": self.runbook.sha256},
            "environment": self.environment,
            "target": self.target,
            "phase": self.phase,
            "incident": self.incident,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "elapsed_s": round(self.elapsed_s, 1),
            "commands_in_document": len(self.runbook.commands),
            "counts": self.counts,
            "drifted": [
                {"line": r.line, "section": r.command.section, "why": r.why, "proposed_fix": r.proposed_fix}
                for r in self.drifted()
            ],
            "commands": [r.summary() for r in self.results],
        }

    def to_json(self) -> dict[str, Any]:
        """``conformance.json``: the evidence plus every command's full record (output, kubectl calls, checks)."""
        doc = self.evidence()
        doc["commands"] = [r.to_json() for r in self.results]
        doc["parse_warnings"] = list(self.runbook.warnings)
        doc["world"] = self.world
        doc["work_dir"] = self.work_dir
        return doc


def delivery_summary(entry: dict[str, Any]) -> dict[str, Any]:
    """The report's record of one message that reached a notification sink."""
    headers = entry.get("headers") if isinstance(entry.get("headers"), dict) else {}
    content_type = next((v for k, v in (headers or {}).items() if str(k).lower() == "content-type"), None)
    return {
        "service": entry.get("service"),
        "status": entry.get("status"),
        "path": entry.get("path"),
        "to": entry.get("to") or entry.get("rcpt_tos"),
        "subject": entry.get("subject"),
        "content_type": content_type,
    }
