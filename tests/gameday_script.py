"""The team of a game day, as a script: the runbook's commands, run against the drill environment in order.

Each function does what a person at a terminal would do after sourcing
``gameday.env``: real ``kubectl`` (the drill's build), real ``psql``/``pg_dump``,
HTTP posts to the sinks and the FlowEngine, mail over SMTP. Nothing here calls
the library's runbook actions: the game day must observe what people did.
"""

from __future__ import annotations

import json
import shlex
import smtplib
import subprocess
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

PILOT = "compliance-service"
TIMEOUT_S = 150


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of ``gameday.env`` (``export NAME=value`` lines, shell-quoted)."""
    found = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            found[name] = shlex.split(value)[0] if value else ""
    return found


class Team:
    def __init__(self, env: dict[str, str], *, incident: str = "mass-failure") -> None:
        self.env = env
        self.incident = incident
        self.tmp = Path(env["GAMEDAY_TMP"])

    def sh(self, command: str) -> str:
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        assert proc.returncode == 0, f"{command!r} failed ({proc.returncode}): {proc.stderr[-800:]}"
        return proc.stdout

    def post(self, url: str, body: dict[str, object], headers: dict[str, str] | None = None) -> int:
        request = urllib.request.Request(  # noqa: S310 - loopback sinks of the drill
            url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
            method="POST",
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as answer:
            return int(answer.status)

    def mail(self, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = "sre-oncall@example.com"
        message["To"] = "engineering-leads@example.com"
        message["Subject"] = subject
        message.set_content(body)
        with smtplib.SMTP(self.env["SMTP_HOST"], int(self.env["SMTP_PORT"]), timeout=10) as smtp:
            smtp.send_message(message)

    def slack(self, text: str) -> None:
        assert self.post(self.env["SLACK_WEBHOOK_URL"], {"text": text}) == 200

    # -- the runbook, step by step ---------------------------------------------------------------

    def pre_1(self) -> None:
        self.sh("kubectl get deployment/flowengine -n production")
        self.sh('curl -s --noproxy "*" "$FLOWENGINE_URL/logs?tail=100" > /dev/null || true')

    def pre_2(self) -> None:
        self.slack("P1 INCIDENT: Initiating rollback to pilot scope. Reason: game day")
        event = {
            "routing_key": "gameday-routing-key",
            "event_action": "trigger",
            "payload": {"summary": "Multi-LLM Orchestrator Rollback", "source": "gameday", "severity": "critical"},
        }
        assert self.post(self.env["PAGERDUTY_EVENTS_URL"], event) == 202
        self.mail("URGENT: FlowEngine Rollback to Pilot", "Initiating emergency rollback to pilot scope.")

    def pre_3(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
        self.sh(
            f'kubectl get deployment/flowengine -n production -o yaml > "$GAMEDAY_TMP/flowengine_pre_rollback_{stamp}.yaml"'
        )
        self.sh(
            f'kubectl get configmap repo-config -n production -o yaml > "$GAMEDAY_TMP/repo_config_pre_rollback_{stamp}.yaml"'
        )
        self.sh(f'pg_dump | gzip > "$GAMEDAY_TMP/taskdb_pre_rollback_{stamp}.sql.gz"')

    def step_1(self) -> None:
        self.sh(f"kubectl set env deployment/flowengine -n production REPO_ALLOWLIST={PILOT}")
        if self.incident != "crash-loop":  # a crash-looping rollout never finishes; Step 2 restarts it
            self.sh("kubectl rollout status deployment/flowengine -n production --timeout=120s")

    def step_2(self) -> None:
        self.sh("kubectl scale deployment/flowengine -n production --replicas=3")
        if self.incident == "crash-loop":  # the runbook's restart, with the pilot's config (no staged fault)
            self.sh(
                "kubectl patch deployment/flowengine -n production --type=json "
                '-p \'[{"op": "remove", "path": "/spec/template/metadata/annotations/rollback-drill.io~1fault"}]\''
            )
        self.sh("kubectl rollout status deployment/flowengine -n production --timeout=180s")

    def step_3(self) -> None:
        self.sh('psql -v ON_ERROR_STOP=1 --no-psqlrc -q -f "$ROLLBACK_SQL"')

    def step_4(self) -> None:
        self.sh(
            "EXPANDED_REPOS=$(kubectl get configmap repo-config -n production -o jsonpath='{.data.expanded_repos}'); "
            "for repo in $EXPANDED_REPOS; do "
            'kubectl get prometheusrule "${repo}-alerts" -n monitoring -o yaml > "$GAMEDAY_TMP/${repo}-alerts.yaml" && '
            'kubectl delete prometheusrule "${repo}-alerts" -n monitoring; done'
        )

    def step_5(self) -> None:
        body = {"repo": PILOT, "family": "compliance", "block_type": "attestation", "config": "test-basel-i.json"}
        assert self.post(self.env["FLOWENGINE_URL"] + "/api/v1/flows", body) == 200

    def step_6(self) -> None:
        self.sh('curl -s --noproxy "*" "$FLOWENGINE_URL/health/db"')

    def step_7(self) -> None:
        self.slack(f"Rollback to pilot scope COMPLETE. Status: Pilot repo ({PILOT}) operational")
        self.mail("FlowEngine rollback complete", "Rollback to pilot scope completed successfully.")

    def step_8(self) -> None:
        status = self.post(
            self.env["STATUS_PAGE_URL"],
            {"title": "FlowEngine: degraded service for expanded repos", "status": "monitoring"},
            {"Authorization": f"Bearer {self.env['STATUS_PAGE_API_KEY']}"},
        )
        assert status == 201

    def action(self, step_id: str) -> Callable[[], None]:
        action: Callable[[], None] = getattr(self, step_id.replace("-", "_"))
        return action
