"""What the drill's probes ask FlowEngine, and what counts as a clean answer.

The pilot probe runs the pilot's flow (``blocks generate``) at a fixed rate from
Step 1 to Step 8: any answer but a completed flow is pilot impact. The
expanded-repo probe asks an expanded repo's config: served before the rollout,
or the clean refusal "Restricted to pilot scope" after it, are clean; anything
else (errors, unavailability, a refusal for another reason) is downtime.
"""

from __future__ import annotations

from collections.abc import Callable

from rollback_drill.flowengine.client import FlowEngineClient, FlowEngineUnavailable
from rollback_drill.runbook.actions import RESTRICTED_REASON
from rollback_drill.timing.probe import ProbeOutcome

PILOT_PROBE_HZ = 10.0
EXPANDED_PROBE_HZ = 10.0
PILOT_PROBE_MAX_IN_FLIGHT = 8
"""The pilot probe keeps its schedule while up to 8 answers are pending (800 ms at 10 Hz)."""


def pilot_flow_call(flowengine: FlowEngineClient, pilot: str) -> Callable[[], ProbeOutcome]:
    def call() -> ProbeOutcome:
        try:
            flow = flowengine.generate(pilot, family="compliance", block_type="attestation", config="probe")
        except FlowEngineUnavailable as exc:
            return ProbeOutcome(ok=False, kind="unavailable", detail=str(exc)[:200])
        if flow.completed:
            return ProbeOutcome(ok=True, kind="served")
        return ProbeOutcome(ok=False, kind=flow.status, detail=str(flow.cause or flow.reason or ""))

    return call


def expanded_config_call(flowengine: FlowEngineClient, repo: str) -> Callable[[], ProbeOutcome]:
    def call() -> ProbeOutcome:
        try:
            config = flowengine.repo_config(repo)
        except FlowEngineUnavailable as exc:
            return ProbeOutcome(ok=False, kind="unavailable", detail=str(exc)[:200])
        if config.enabled:
            return ProbeOutcome(ok=True, kind="served")
        if config.reason == RESTRICTED_REASON:
            return ProbeOutcome(ok=True, kind="refused", detail=RESTRICTED_REASON)
        return ProbeOutcome(ok=False, kind="refused", detail=str(config.reason))

    return call
