# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""Evidence: the timeline recorder, the evidence schema, and redaction.

The ``redact`` function is not re-exported here: the name ``rollback_drill.evidence.redact``
stays the module (CONVENTIONS names it the owner of redaction), so ``import``, ``mock.patch``
and ``monkeypatch`` paths through it keep working. Import it from the module.
"""

from rollback_drill.evidence.recorder import (
    EVIDENCE_NAME,
    SCHEMA_ID,
    TIMELINE_NAME,
    Recorder,
    format_utc,
    new_drill_id,
)
from rollback_drill.evidence.redact import REDACTOR, Redactor, add_secret, redact_text
from rollback_drill.evidence.schema import load_schema, validate_evidence
from rollback_drill.evidence.steps import RUNBOOK_STEP_RE, RunbookStepRef, StepGrouper, parse_runbook_step

__all__ = [
    "EVIDENCE_NAME",
    "REDACTOR",
    "RUNBOOK_STEP_RE",
    "SCHEMA_ID",
    "TIMELINE_NAME",
    "Recorder",
    "Redactor",
    "RunbookStepRef",
    "StepGrouper",
    "add_secret",
    "format_utc",
    "load_schema",
    "new_drill_id",
    "parse_runbook_step",
    "redact_text",
    "validate_evidence",
]
