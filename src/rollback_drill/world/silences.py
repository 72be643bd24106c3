"""Step 4 by Alertmanager silences: one per expanded repo, the rules left loaded, expired at put-back.

Where a team would rather not touch its PrometheusRules, Step 4 can silence the expanded repos'
alerts instead: a silence per repo (matcher ``repo="<repo>"``), created by the drill with a comment
that names the runbook step. Prometheus keeps evaluating; Alertmanager suppresses, and pages nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rollback_drill.evidence.recorder import Recorder
from rollback_drill.monitoring import alertmanager
from rollback_drill.timing.wait import wait_until
from rollback_drill.world.detection import alertmanager_notifications

CREATED_BY = "rollback-drill"
SILENCE_DURATION_S = 3600.0
"""Long enough for any drill; put-back expires them, and a crashed drill's silences end within the hour."""
SUPPRESSED_TIMEOUT_S = 45.0
"""A scaled ``for:``, a few 1 s evaluations and Alertmanager's intake; the rest is a busy machine."""


@dataclass(frozen=True)
class RepoSilence:
    repo: str
    id: str

    def as_evidence(self) -> dict[str, Any]:
        return {"repo": self.repo, "id": self.id, "matchers": {"repo": self.repo}, "created_by": CREATED_BY}


def silence_expanded_repos(
    alertmanager_url: str, repos: Sequence[str], *, recorder: Recorder
) -> tuple[RepoSilence, ...]:
    """Step 4's silences, one per expanded repo; their ids go into the evidence (``step4_silences``)."""
    made = tuple(
        RepoSilence(
            repo,
            alertmanager.create_silence(
                alertmanager_url,
                matchers={"repo": repo},
                created_by=CREATED_BY,
                comment=f"RB-LAUNCH-002 Step 4: {repo} is restricted to pilot scope (drill {recorder.drill_id})",
                duration_s=SILENCE_DURATION_S,
            ),
        )
        for repo in repos
    )
    recorder.set("step4_silences", [s.as_evidence() for s in made])
    return made


def expire_silences(alertmanager_url: str, silences: Sequence[RepoSilence], *, recorder: Recorder) -> list[str]:
    """Put-back: expire every silence Step 4 made; return the ids still not expired (none, normally)."""
    for silence in silences:
        alertmanager.expire_silence(alertmanager_url, silence.id)
    ours = {s.id for s in silences}
    left = [s.id for s in alertmanager.silences(alertmanager_url) if s.id in ours and s.state != "expired"]
    recorder.event("step4_silences_expired", ids=sorted(ours), still_active=left)
    return left


@dataclass(frozen=True)
class SilencedView:
    """Alertmanager's alerts for the silenced repos: each repo's state, and the pages sent for them since."""

    states: dict[str, str]
    pages_since: tuple[str, ...]


def await_suppressed(
    alertmanager_url: str,
    silences: Sequence[RepoSilence],
    journal: Callable[[], list[dict[str, Any]]],
    *,
    since: datetime,
    timeout_s: float = SUPPRESSED_TIMEOUT_S,
) -> SilencedView:
    """Wait until Alertmanager holds an alert for every silenced repo, each suppressed by that repo's silence."""
    by_repo = {s.repo: s.id for s in silences}

    def states() -> dict[str, str]:
        found: dict[str, str] = {}
        for alert in alertmanager.received_alerts(alertmanager_url):
            repo = alert.labels.get("repo", "")
            if repo in by_repo:
                suppressed = alert.state == "suppressed" and by_repo[repo] in alert.silenced_by
                found[repo] = "suppressed" if suppressed and found.get(repo) != "active" else alert.state
        return found

    def every_repo() -> dict[str, str] | None:
        now = states()
        return now if set(now) == set(by_repo) else None

    seen = wait_until(
        every_repo,
        timeout_s=timeout_s,
        describe=f"Alertmanager to hold an alert for each of {len(by_repo)} silenced repos",
    )
    pages = tuple(
        n.repo or ""
        for n in alertmanager_notifications(journal())
        if n.service == "pagerduty" and n.at >= since and n.repo in by_repo
    )
    return SilencedView(seen, pages)
