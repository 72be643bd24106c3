"""FlowEngine: the API client the drill's steps use, the reference simulator, and incident injection.

On staging the client talks to the real FlowEngine by URL; locally the same client talks to
``Simulator`` (``python -m rollback_drill.flowengine`` runs it as its own process).
"""

from rollback_drill.flowengine.client import (
    FlowEngineClient,
    FlowEngineRequestError,
    FlowEngineUnavailable,
    FlowResult,
    GateResult,
    Health,
    IncidentRecord,
    LogTail,
    MetricSample,
    RepoConfig,
    RepoStats,
    Stats,
    Verification,
)
from rollback_drill.flowengine.incidents import CATALOGUE, GATES, INCIDENT_NAMES, MODEL_PROVIDERS, IncidentSpec
from rollback_drill.flowengine.simulator import (
    NOT_ALLOWLISTED_REASON,
    RESTRICTED_REASON,
    AllowlistSource,
    AllowlistView,
    ServedScope,
    Simulator,
)

__all__ = [
    "CATALOGUE",
    "GATES",
    "INCIDENT_NAMES",
    "MODEL_PROVIDERS",
    "NOT_ALLOWLISTED_REASON",
    "RESTRICTED_REASON",
    "AllowlistSource",
    "AllowlistView",
    "FlowEngineClient",
    "FlowEngineRequestError",
    "FlowEngineUnavailable",
    "FlowResult",
    "GateResult",
    "Health",
    "IncidentRecord",
    "IncidentSpec",
    "LogTail",
    "MetricSample",
    "RepoConfig",
    "RepoStats",
    "ServedScope",
    "Simulator",
    "Stats",
    "Verification",
]
