"""What a game day announces: the runbook's steps in order, their budgets, and the runbook's own commands.

The commands come from the runbook shipped with the tool (``parse_runbook``), so
a game day shows exactly what the document says. The drill environment differs
from production in a few places (``/tmp/`` is a directory of the game day, TaskDB
is reached with ``psql`` instead of ``kubectl exec deployment/postgres``, ``blocks``
is the FlowEngine HTTP API); ``LOCAL_HINTS`` says how, step by step.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

from rollback_drill.conformance.runbook import parse_runbook
from rollback_drill.runbook.drill import RUNBOOK_FILE


@dataclass(frozen=True)
class GamedayStep:
    """One runbook step as the game day announces and times it."""

    id: str
    title: str
    budget_s: float
    """The runbook's budget, in seconds (the same words as the features: Step 1 "within 2 minutes")."""
    verified_by: str
    """What the drill must observe before it marks the step verified (shown to the facilitator)."""


STEPS: Final = (
    GamedayStep(
        "pre-1", "Incident confirmation", 300, "the incident's signal live in FlowEngine and a participant's ack"
    ),
    GamedayStep(
        "pre-2", "Stakeholder notification", 300, "a Slack post, a PagerDuty trigger and an email at the sinks"
    ),
    GamedayStep(
        "pre-3", "Backup current state", 300, "the Deployment and ConfigMap YAML and a TaskDB dump in $GAMEDAY_TMP"
    ),
    GamedayStep(
        "step-1", "Disable orchestrator for expanded repos", 120, "REPO_ALLOWLIST is the pilot only, rolled out"
    ),
    GamedayStep("step-2", "Scale down FlowEngine", 180, "3 replicas and 3 pods Running and Ready"),
    GamedayStep("step-3", "Revert database schema", 300, "the TaskDB schema at the pilot's version"),
    GamedayStep("step-4", "Disable expanded repo alerts", 120, "no <repo>-alerts PrometheusRule of an expanded repo"),
    GamedayStep(
        "step-5", "Verify pilot repo functionality", 180, "a completed pilot flow with 5/5 gates in TaskDB after Step 4"
    ),
    GamedayStep(
        "step-6", "Verify system health", 300, "pods, /health/db, /health/models/* and the pilot-only flows healthy"
    ),
    GamedayStep("step-7", "Stakeholder communication", 300, "a Slack post and an email at the sinks"),
    GamedayStep("step-8", "Update status page", 120, "a status-page incident accepted (201) by the sink"),
)
STEP_IDS: Final = tuple(step.id for step in STEPS)
MESSAGE_SERVICES: Final = {
    "pre-2": ("slack", "pagerduty", "email"),
    "step-7": ("slack", "email"),
    "step-8": ("status-page",),
}
"""Which sink services must have received a message, after the step was announced, for it to count."""

LOCAL_HINTS: Final = {
    "pre-1": (
        "kubectl logs deployment/flowengine -n production   (the simulator's log: curl -s $FLOWENGINE_URL/logs)",
    ),
    "pre-2": (
        'curl -s -X POST "$SLACK_WEBHOOK_URL" -H "Content-Type: application/json" -d \'{"text": "P1 INCIDENT: ..."}\'',
        'curl -s -X POST "$PAGERDUTY_EVENTS_URL" -H "Content-Type: application/json" -d \'{"routing_key": "gameday", "event_action": "trigger", "payload": {"summary": "Rollback", "source": "gameday", "severity": "critical"}}\'',
        "email: SMTP at $SMTP_HOST:$SMTP_PORT, e.g. python3 -c 'import smtplib; smtplib.SMTP(\"$SMTP_HOST\", $SMTP_PORT).sendmail(...)'",
    ),
    "pre-3": (
        "/tmp/ is $GAMEDAY_TMP here",  # noqa: S108 - the runbook's words, mapped away from /tmp
        'pg_dump flowengine_db | gzip > "$GAMEDAY_TMP/taskdb_pre_rollback_$(date +%Y%m%d_%H%M%S).sql.gz"   (PG* variables are set)',
    ),
    "step-2": (
        "crash-loop only: the pilot's config has no staged fault; restart without it:",
        'kubectl patch deployment/flowengine -n production --type=json -p \'[{"op": "remove", "path": "/spec/template/metadata/annotations/rollback-drill.io~1fault"}]\'',
    ),
    "step-3": (
        'psql -v ON_ERROR_STOP=1 -f "$ROLLBACK_SQL"   (instead of kubectl exec deployment/postgres -- psql ...)',
    ),
    "step-4": (
        "the runbook's patch is refused (PrometheusRule has no 'enabled' field): back up and delete each rule",
        'kubectl get prometheusrule "${repo}-alerts" -n monitoring -o yaml > "$GAMEDAY_TMP/${repo}-alerts.yaml" && kubectl delete prometheusrule "${repo}-alerts" -n monitoring',
    ),
    "step-5": (
        'curl -s -X POST "$FLOWENGINE_URL/api/v1/flows" -H "Content-Type: application/json" -d \'{"repo": "compliance-service", "family": "compliance", "block_type": "attestation"}\'',
    ),
    "step-6": (
        'curl -s "$FLOWENGINE_URL/health/db"; for p in anthropic openai google; do curl -s "$FLOWENGINE_URL/health/models/$p"; done',
    ),
    "step-7": (
        'curl -s -X POST "$SLACK_WEBHOOK_URL" -d \'{"text": "Rollback to pilot scope COMPLETE"}\'   and an email',
    ),
    "step-8": (
        'curl -s -X POST "$STATUS_PAGE_URL" -H "Authorization: Bearer $STATUS_PAGE_API_KEY" -H "Content-Type: application/json" -d \'{"title": "...", "status": "monitoring"}\'',
    ),
}


def runbook_path() -> Path:
    return Path(str(resources.files("rollback_drill.data").joinpath(f"runbooks/{RUNBOOK_FILE}")))


def runbook_commands() -> dict[str, tuple[str, ...]]:
    """The runbook's own commands, by step id, in document order."""
    parsed = parse_runbook(runbook_path())
    found: dict[str, list[str]] = {step_id: [] for step_id in STEP_IDS}
    for command in parsed.commands:
        if command.step_id in found:
            found[command.step_id].append(command.text)
    return {step_id: tuple(texts) for step_id, texts in found.items()}


def shell_file(variables: dict[str, str]) -> str:
    """A file to ``source``: one ``export NAME=value`` a line, quoted for the shell."""
    lines = ["# rollback-drill game day: source this file (it holds the TaskDB password; mode 0600)"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]
    return "\n".join(lines) + "\n"
