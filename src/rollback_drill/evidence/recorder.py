# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""The recorder: a drill's timeline and evidence, written while the drill runs.

A bundle directory ``<evidence_dir>/<drill_id>/`` holds

- ``timeline.jsonl``: one JSON object per event, appended, flushed and fsync'ed as it
  happens, so a crash or a kill loses nothing that was recorded; and
- ``evidence.json``: the document of ``schemas/evidence-v1.json``. It exists from the
  first moment with verdict ``aborted`` and ``finished_at`` null, and is rewritten
  atomically (temporary file, fsync, rename) on every change, so it is always either
  the old or the new document and never half of one.

Everything written goes through the redactor first.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import hashlib
import json
import math
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePath
from typing import IO, TYPE_CHECKING, Any, Final, Self

from rollback_drill.errors import DrillError, InputError
from rollback_drill.evidence.redact import REDACTOR, Redactor
from rollback_drill.timing.budget import Budget
from rollback_drill.timing.clock import Clock, SystemClock

if TYPE_CHECKING:
    from types import TracebackType

SCHEMA_ID: Final = "rollback-drill/evidence-v1"
RUNBOOK_ID: Final = "RB-LAUNCH-002"
TIMELINE_NAME: Final = "timeline.jsonl"
EVIDENCE_NAME: Final = "evidence.json"

VERDICTS: Final = frozenset({"pass", "fail", "aborted"})
STEP_STATUSES: Final = frozenset({"pass", "fail", "over-budget", "skipped"})

DRILL_ID_RE: Final = re.compile(r"^\d{8}T\d{6}Z-[a-z0-9-]+-[0-9a-f]{6}$")
STEP_ID_RE: Final = re.compile(r"^(pre-[1-3]|step-[1-8]|soak|phase-[1-3])$")

NOT_FINISHED: Final = "not finished"
"""The error of a step that was open when the drill ended (or when evidence.json was
last written, had the process died then)."""

# Fields the recorder keeps itself; set() refuses them so they cannot contradict it.
_OWN_FIELDS: Final = frozenset({"schema", "drill_id", "started_at", "finished_at", "verdict", "abort_reason", "steps"})
_EVENT_RESERVED: Final = frozenset({"seq", "t_wall", "t_mono", "kind"})


def format_utc(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a Z: ``2026-11-27T09:14:03.250Z``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise DrillError(f"the clock returned a naive datetime ({moment!r}); a Clock's wall() must be UTC-aware")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def incident_slug(incident: str) -> str:
    """The incident as it appears in a drill id: lower case, ``[a-z0-9-]`` only."""
    slug = re.sub(r"[^a-z0-9-]+", "-", incident.strip().lower()).strip("-")
    if not slug:
        raise InputError(f"incident {incident!r} has no letters or digits; name one of the incidents in CONVENTIONS.md")
    return slug


def new_drill_id(incident: str, now: datetime) -> str:
    """``<UTC %Y%m%dT%H%M%SZ>-<incident>-<6 hex random>``."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise DrillError(f"new_drill_id needs a UTC-aware datetime, got {now!r}")
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{incident_slug(incident)}-{secrets.token_hex(3)}"


def tool_version() -> str:
    try:
        return metadata.version("rollback-drill")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def sha256_file(path: Path) -> tuple[str, int]:
    """The sha256 (hex) and size in bytes of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def to_jsonable(value: Any) -> Any:  # noqa: PLR0911 - one branch per kind of value is the clearest form
    """``value`` as plain JSON data: dataclasses, paths, datetimes, enums, sets and tuples
    are converted; non-finite floats become null (JSON has no NaN); anything else
    unknown becomes its ``str``, so recording never crashes the drill."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((to_jsonable(v) for v in value), key=repr)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    return str(value)


@dataclasses.dataclass
class _OpenStep:
    index: int
    """Position of the step in the evidence's ``steps`` list."""
    started_mono: float
    budget: Budget


class Recorder:
    """Writes one drill's bundle: ``timeline.jsonl`` and ``evidence.json``.

    Make one with ``Recorder.create``. All methods are thread-safe. After ``finish``
    (or ``abort``) the recorder is closed: further calls raise ``DrillError``, except
    ``abort``, which is then a no-op, so teardown code can always call it.
    """

    def __init__(
        self,
        bundle_dir: Path,
        drill_id: str,
        incident: str,
        clock: Clock,
        redactor: Redactor,
    ) -> None:
        """Prefer ``Recorder.create``, which makes the directory and the id."""
        self._bundle_dir = bundle_dir
        self._drill_id = drill_id
        self._clock = clock
        self._redactor = redactor
        self._lock = threading.RLock()
        self._seq = 0
        self._finished = False
        self._open_steps: dict[str, _OpenStep] = {}
        self._started_mono = clock.monotonic()
        self._timeline: IO[str] = (bundle_dir / TIMELINE_NAME).open("a", encoding="utf-8")
        self._doc: dict[str, Any] = {
            "schema": SCHEMA_ID,
            "drill_id": drill_id,
            "runbook": {"id": RUNBOOK_ID, "sha256": None},
            "tool": {"version": tool_version(), "git_sha": None},
            "config_sha256": None,
            "started_at": format_utc(clock.wall()),
            "finished_at": None,
            # Until finish() says otherwise the drill has not passed: a killed drill
            # leaves exactly this behind.
            "verdict": "aborted",
            "target": {"kind": None, "server_version": None, "fingerprint": None},
            "incident": incident,
            "decision": None,
            "participants": {},
            "steps": [],
            "targets": [],
            "artifacts": [],
            "warnings": [],
        }
        with self._lock:
            self._write_evidence()
            self._event("drill_started", {"drill_id": drill_id, "incident": incident})

    @classmethod
    def create(
        cls,
        evidence_dir: Path,
        *,
        incident: str,
        clock: Clock | None = None,
        redactor: Redactor | None = None,
        drill_id: str | None = None,
    ) -> Recorder:
        """Make ``evidence_dir/<drill_id>/``, open its timeline and write the initial evidence.

        A given ``drill_id`` must match the schema's pattern and must not exist yet:
        two drills never share a bundle.
        """
        clock = clock if clock is not None else SystemClock()
        redactor = redactor if redactor is not None else REDACTOR
        if drill_id is None:
            drill_id = new_drill_id(incident, clock.wall())
        elif not DRILL_ID_RE.fullmatch(drill_id):
            raise InputError(
                f"drill id {drill_id!r} is not <UTC %Y%m%dT%H%M%SZ>-<incident>-<6 hex>; omit it to get a fresh one"
            )
        bundle_dir = Path(evidence_dir) / drill_id
        try:
            bundle_dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise InputError(
                f"evidence bundle {bundle_dir} already exists; each drill needs its own drill id"
            ) from None
        return cls(bundle_dir, drill_id, incident, clock, redactor)

    # -- properties --------------------------------------------------------------

    @property
    def bundle_dir(self) -> Path:
        return self._bundle_dir

    @property
    def drill_id(self) -> str:
        return self._drill_id

    @property
    def timeline_path(self) -> Path:
        return self._bundle_dir / TIMELINE_NAME

    @property
    def evidence_path(self) -> Path:
        return self._bundle_dir / EVIDENCE_NAME

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def finished(self) -> bool:
        with self._lock:
            return self._finished

    @property
    def evidence(self) -> dict[str, Any]:
        """A deep copy of the evidence as written to evidence.json (redacted)."""
        with self._lock:
            return self._rendered()

    # -- events ------------------------------------------------------------------

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one event to the timeline and return it as written (redacted).

        The line is flushed and fsync'ed before this returns.
        """
        reserved = _EVENT_RESERVED & fields.keys()
        if reserved:
            raise DrillError(f"event fields {sorted(reserved)} are set by the recorder; rename them")
        with self._lock:
            self._check_open(f"record event {kind!r}")
            return self._event(kind, fields)

    def _event(self, kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        self._seq += 1
        record: dict[str, Any] = {
            "seq": self._seq,
            "t_wall": format_utc(self._clock.wall()),
            "t_mono": round(self._clock.monotonic() - self._started_mono, 6),
            "kind": kind,
        }
        record.update(fields)
        written: dict[str, Any] = self._redactor.redact(to_jsonable(record))
        self._timeline.write(json.dumps(written, ensure_ascii=False, allow_nan=False) + "\n")
        self._timeline.flush()
        os.fsync(self._timeline.fileno())
        return written

    # -- fields ------------------------------------------------------------------

    def set(self, field: str, value: Any) -> None:
        """Set a top-level evidence field ("target", "decision", "participants", ...) and
        rewrite evidence.json."""
        if field in _OWN_FIELDS:
            raise DrillError(f"evidence field {field!r} is kept by the recorder; use begin_step/end_step/finish")
        with self._lock:
            self._check_open(f"set {field!r}")
            self._doc[field] = to_jsonable(value)
            self._write_evidence()
            self._event("evidence_set", {"field": field})

    def append(self, field: str, item: Any) -> None:
        """Append ``item`` to the list field ``field`` (created if missing) and rewrite evidence.json."""
        if field in _OWN_FIELDS:
            raise DrillError(f"evidence field {field!r} is kept by the recorder; use begin_step/end_step/finish")
        with self._lock:
            self._check_open(f"append to {field!r}")
            current = self._doc.setdefault(field, [])
            if not isinstance(current, list):
                raise DrillError(f"evidence field {field!r} is a {type(current).__name__}, not a list; use set()")
            current.append(to_jsonable(item))
            self._write_evidence()

    def warn(self, code: str, message: str, step: str | None = None) -> None:
        """Record a warning (e.g. a runbook drift) in the evidence and the timeline."""
        if step is not None and not STEP_ID_RE.fullmatch(step):
            raise DrillError(f"warning step {step!r} is not a runbook step id (pre-1..3, step-1..8, soak, phase-1..3)")
        with self._lock:
            self._check_open(f"warn {code!r}")
            self.append("warnings", {"code": code, "message": message, "step": step})
            self._event("warning", {"code": code, "message": message, "step": step})

    def set_targets(self, targets: list[dict[str, Any]]) -> None:
        """Replace the drill targets: [{name, limit, measured, unit, met}]."""
        with self._lock:
            self._check_open("set targets")
            self._doc["targets"] = to_jsonable(list(targets))
            self._write_evidence()
            self._event("targets_set", {"targets": targets})

    def add_artifact(self, path: Path) -> dict[str, Any]:
        """Record a file of the bundle: {path relative to the bundle, sha256, bytes}.

        A relative ``path`` is taken relative to the bundle directory; the file must
        be inside it.
        """
        return self.add_artifacts([path])[0]

    def add_artifacts(self, paths: list[Path]) -> list[dict[str, Any]]:
        """Record several files at once: one rewrite of evidence.json for the batch.

        Step 4 backs up one rule per expanded repo; recording them one by one would
        rewrite the growing evidence.json once per file.
        """
        entries = [self._artifact_entry(path) for path in paths]
        with self._lock:
            self._check_open(f"add {len(entries)} artifact(s)")
            self._doc.setdefault("artifacts", []).extend(to_jsonable(entry) for entry in entries)
            self._write_evidence()
            for entry in entries:
                self._event("artifact_added", dict(entry))
        return [dict(entry) for entry in entries]

    def _artifact_entry(self, path: Path) -> dict[str, Any]:
        full = path if path.is_absolute() else self._bundle_dir / path
        try:
            relative = full.resolve().relative_to(self._bundle_dir.resolve())
        except ValueError:
            raise DrillError(
                f"artifact {path} is outside the bundle {self._bundle_dir}; copy it into the bundle first"
            ) from None
        if not full.is_file():
            raise DrillError(f"artifact {full} is not a file; write it before recording it")
        digest, size = sha256_file(full)
        return {"path": relative.as_posix(), "sha256": digest, "bytes": size}

    # -- steps -------------------------------------------------------------------

    def begin_step(self, step_id: str, title: str, budget_s: float) -> None:
        """Start timing runbook step ``step_id`` against ``budget_s`` seconds."""
        if not STEP_ID_RE.fullmatch(step_id):
            raise DrillError(f"step id {step_id!r} is not a runbook step id (pre-1..3, step-1..8, soak, phase-1..3)")
        budget = Budget(float(budget_s))  # refuses a budget that is not a positive number of seconds
        with self._lock:
            self._check_open(f"begin step {step_id}")
            if step_id in self._open_steps:
                raise DrillError(f"step {step_id} is already running; end it before beginning it again")
            now_mono = self._clock.monotonic()
            steps: list[dict[str, Any]] = self._doc["steps"]
            steps.append(
                {
                    "id": step_id,
                    "title": title,
                    "budget_s": float(budget_s),
                    "elapsed_s": None,
                    # Written like this while the step runs, so a killed drill does not
                    # claim the step passed.
                    "status": "fail",
                    "started_at": format_utc(self._clock.wall()),
                    "finished_at": None,
                    "error": NOT_FINISHED,
                }
            )
            self._open_steps[step_id] = _OpenStep(index=len(steps) - 1, started_mono=now_mono, budget=budget)
            self._write_evidence()
            self._event("step_started", {"step": step_id, "title": title, "budget_s": float(budget_s)})

    def end_step(self, step_id: str, status: str | None = None, error: str | None = None) -> dict[str, Any]:
        """Stop timing ``step_id``. With ``status`` None it is ``pass`` when the step took
        no longer than its budget and ``over-budget`` otherwise. Returns the step's entry."""
        if status is not None and status not in STEP_STATUSES:
            raise DrillError(f"step status {status!r} is not one of {sorted(STEP_STATUSES)}")
        with self._lock:
            self._check_open(f"end step {step_id}")
            return self._end_step(step_id, status, error)

    def _end_step(self, step_id: str, status: str | None, error: str | None) -> dict[str, Any]:
        open_step = self._open_steps.pop(step_id, None)
        if open_step is None:
            raise DrillError(f"step {step_id} is not running; begin_step it first")
        entry: dict[str, Any] = self._doc["steps"][open_step.index]
        elapsed = round(max(0.0, self._clock.monotonic() - open_step.started_mono), 6)
        if status is None:
            status = open_step.budget.status(elapsed)
        entry.update(
            elapsed_s=elapsed,
            status=status,
            finished_at=format_utc(self._clock.wall()),
            error=error,
        )
        self._write_evidence()
        self._event(
            "step_finished",
            {"step": step_id, "status": status, "elapsed_s": elapsed, "budget_s": entry["budget_s"], "error": error},
        )
        return copy.deepcopy(entry)

    def skip_step(self, step_id: str, title: str, budget_s: float, reason: str) -> None:
        """Record a runbook step that was not performed, and why."""
        if not STEP_ID_RE.fullmatch(step_id):
            raise DrillError(f"step id {step_id!r} is not a runbook step id (pre-1..3, step-1..8, soak, phase-1..3)")
        with self._lock:
            self._check_open(f"skip step {step_id}")
            self._doc["steps"].append(
                {
                    "id": step_id,
                    "title": title,
                    "budget_s": float(budget_s),
                    "elapsed_s": None,
                    "status": "skipped",
                    "started_at": None,
                    "finished_at": None,
                    "error": reason,
                }
            )
            self._write_evidence()
            self._event("step_skipped", {"step": step_id, "title": title, "reason": reason})

    @property
    def open_steps(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._open_steps)

    # -- the end -----------------------------------------------------------------

    def finish(self, verdict: str) -> None:
        """Seal the drill: close open steps as failed, set the verdict and finished_at,
        write evidence.json, record ``drill_finished`` and close the timeline."""
        if verdict not in VERDICTS:
            raise DrillError(f"verdict {verdict!r} is not one of {sorted(VERDICTS)}")
        with self._lock:
            self._check_open("finish")
            self._finish(verdict)

    def _finish(self, verdict: str) -> None:
        for step_id in list(self._open_steps):
            self._end_step(step_id, "fail", NOT_FINISHED)
        self._doc["finished_at"] = format_utc(self._clock.wall())
        self._doc["verdict"] = verdict
        self._write_evidence()
        self._event("drill_finished", {"verdict": verdict})
        self._finished = True
        self._timeline.close()

    def abort(self, reason: str) -> None:
        """Finish with verdict ``aborted``, recording why. Does nothing when the drill
        has already finished, so it is safe in any teardown."""
        with self._lock:
            if self._finished:
                return
            self._event("drill_aborted", {"reason": reason})
            self._doc["abort_reason"] = reason
            self._finish("aborted")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.abort(f"{type(exc).__name__}: {exc}")
        else:
            self.abort("the recorder was closed without a verdict")

    # -- writing -----------------------------------------------------------------

    def _check_open(self, action: str) -> None:
        if self._finished:
            raise DrillError(f"cannot {action}: drill {self._drill_id} has finished and its bundle is sealed")

    def _rendered(self) -> dict[str, Any]:
        rendered: dict[str, Any] = self._redactor.redact(to_jsonable(self._doc))
        return rendered

    def _write_evidence(self) -> None:
        """Rewrite evidence.json atomically: a temporary file in the same directory,
        fsync'ed, then renamed over the old one, then the directory fsync'ed."""
        text = json.dumps(self._rendered(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        fd, tmp_name = tempfile.mkstemp(prefix=f".{EVIDENCE_NAME}.", suffix=".tmp", dir=self._bundle_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            Path(tmp_name).replace(self.evidence_path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(self._bundle_dir)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
