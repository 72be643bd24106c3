"""Writing a conformance report: ``conformance.json``, and an evidence bundle whose report.html has the table.

The bundle is a conformance bundle, not a drill's: its drill id reads
``<UTC timestamp>-conformance-<random>``, its ``mode`` is ``conformance``, and it is not
appended to the drill history (a conformance run is no rehearsal of the rollback, so it must
not count towards the drill schedule). Each drift is also a ``runbook-drift`` warning of the
runbook step it belongs to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rollback_drill.config import DrillConfig
from rollback_drill.conformance.report import ConformanceReport
from rollback_drill.evidence.bundle import seal
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.evidence.redact import redact
from rollback_drill.evidence.report import render_report
from rollback_drill.timing.clock import Clock

CONFORMANCE_NAME: Final = "conformance.json"
DRIFT_WARNING: Final = "runbook-drift"


@dataclass(frozen=True)
class ConformanceFiles:
    bundle_dir: Path
    conformance_json: Path
    evidence_json: Path
    report_html: Path
    manifest: Path


def conformance_json(report: ConformanceReport) -> str:
    return json.dumps(redact(report.to_json()), indent=2, ensure_ascii=False) + "\n"


def write_bundle(
    report: ConformanceReport, evidence_dir: Path, *, config: DrillConfig, clock: Clock | None = None
) -> ConformanceFiles:
    """``evidence_dir/<id>/`` with conformance.json, evidence.json (``conformance`` set), report.html and the manifest.

    ``evidence_dir`` may be relative (the command's default is ``reports``): it is made absolute
    first, so every path below names the same file whatever the working directory, and the
    artifact is recorded by its name inside the bundle, never by a path the recorder would
    join onto the bundle a second time.
    """
    recorder = Recorder.create(evidence_dir.absolute(), incident="conformance", clock=clock)
    with recorder:
        recorder.set("runbook", {"id": report.runbook.runbook_id or config.runbook_id, "sha256": report.runbook.sha256})
        recorder.set("config_sha256", config.sha256)
        recorder.set("target", report.target)
        recorder.set("mode", "conformance")
        recorder.set("phase", report.phase)
        recorder.set("conformance", report.evidence())
        for result in report.drifted():
            recorder.warn(
                DRIFT_WARNING, f"line {result.line} ({result.command.section}): {result.why}", result.command.step_id
            )
        path = recorder.bundle_dir / CONFORMANCE_NAME
        path.write_text(conformance_json(report), encoding="utf-8")
        recorder.add_artifact(Path(CONFORMANCE_NAME))
        recorder.finish("pass" if report.ok else "fail")
    bundle_dir = recorder.bundle_dir
    report_html = render_report(bundle_dir)
    manifest = seal(bundle_dir)
    return ConformanceFiles(bundle_dir, path, recorder.evidence_path, report_html, manifest)
