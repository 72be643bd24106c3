# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""The evidence bundle's files: sealing them with a manifest, checking them against it, masking secrets.

A sealed bundle ``reports/<drill_id>/`` holds

- the recorder's ``timeline.jsonl`` and ``evidence.json``, plus whatever artifacts the
  drill copied in (backups, logs, ``report.html``, ``rca.md``, ...);
- ``MANIFEST.sha256``: ``<sha256 hex>  <relative path>`` for every file of the bundle
  except the manifest itself and ``approvals/``, sorted by path, in the format of
  ``sha256sum`` (``cd BUNDLE && sha256sum -c MANIFEST.sha256`` checks it without this
  tool);
- ``approvals/``: one signed approval per person (``rollback_drill.evidence.sign``). They
  sign the manifest, so they are added after sealing and are not part of it.

``evidence.json``'s ``artifacts`` lists every file of the manifest except evidence.json
itself (a file cannot carry its own hash); the manifest carries evidence.json's.

The renderers (``report``, ``rca``), the approvals (``sign``) and the history build on this
module; ``verify`` (files and approvals) and ``finalize`` (the end of a drill) build on them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

from rollback_drill.errors import DrillError, InputError
from rollback_drill.evidence.recorder import EVIDENCE_NAME, TIMELINE_NAME, sha256_file
from rollback_drill.evidence.redact import REDACTOR, Redactor
from rollback_drill.evidence.schema import validate_evidence

MANIFEST_NAME: Final = "MANIFEST.sha256"
APPROVALS_DIR: Final = "approvals"
ATTESTATION_NAME: Final = "attestation.intoto.jsonl"
"""The signed in-toto attestation (evidence.attest). It names the sealed files, so it lies outside the manifest."""
REPORT_NAME: Final = "report.html"
RCA_NAME: Final = "rca.md"

_MANIFEST_LINE_RE: Final = re.compile(r"^(?P<sha>[0-9a-f]{64})  (?P<path>.+)$")
# sha256sum escapes names with a backslash or a newline; such names are refused instead,
# so every manifest line stays plain "<hex>  <path>".
_UNSAFE_NAME_RE: Final = re.compile(r"[\\\n\r]")


@dataclass(frozen=True)
class Problem:
    """One way a bundle fails verification, naming the file concerned."""

    kind: str
    """``missing``, ``changed``, ``extra``, ``manifest``, ``evidence``, ``schema``, ``artifacts``, ``approval``."""
    path: str
    """The file, relative to the bundle."""
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


@dataclass(frozen=True)
class FilesCheck:
    """What checking a sealed bundle's files against its manifest found; approvals are ``evidence.verify``'s."""

    manifest_bytes: bytes
    drill_id: str | None
    verdict: str | None
    files_checked: int
    """Entries of the manifest."""
    problems: tuple[Problem, ...]


# -- files ------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: a temporary file beside it, fsync'ed, renamed.
    A replaced file keeps its mode; a new one is 0644 (a report is meant to be read)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o644
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        Path(tmp_name).replace(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def require_bundle(bundle_dir: Path, *, sealed: bool = False) -> Path:
    """``bundle_dir`` if it is an evidence bundle (and sealed, when asked); InputError otherwise."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise InputError(f"{bundle_dir} is not a directory; pass an evidence bundle, reports/<drill_id>/")
    if not (bundle_dir / EVIDENCE_NAME).is_file():
        raise InputError(
            f"{bundle_dir} is not an evidence bundle: it has no {EVIDENCE_NAME}; pass a reports/<drill_id>/ directory"
        )
    if sealed and not (bundle_dir / MANIFEST_NAME).is_file():
        raise InputError(
            f"{bundle_dir} is not a sealed evidence bundle: it has no {MANIFEST_NAME}; "
            "a drill seals its bundle when it ends (finalize_bundle)"
        )
    return bundle_dir


def _excluded(relative: str) -> bool:
    return relative in {MANIFEST_NAME, APPROVALS_DIR, ATTESTATION_NAME} or relative.startswith(APPROVALS_DIR + "/")


def bundle_files(bundle_dir: Path) -> tuple[list[str], list[str]]:
    """The bundle's regular files (relative, '/'-separated, sorted) that the manifest covers,
    and the entries it cannot cover (symlinks, sockets, ...)."""
    files: list[str] = []
    odd: list[str] = []
    for root, dirs, names in os.walk(bundle_dir):
        root_path = Path(root)
        for name in list(dirs):
            relative = (root_path / name).relative_to(bundle_dir).as_posix()
            if _excluded(relative):
                dirs.remove(name)
            elif (root_path / name).is_symlink():
                dirs.remove(name)
                odd.append(relative)
        for name in names:
            full = root_path / name
            relative = full.relative_to(bundle_dir).as_posix()
            if _excluded(relative):
                continue
            if full.is_symlink() or not full.is_file():
                odd.append(relative)
            else:
                files.append(relative)
    return sorted(files), sorted(odd)


def manifest_text(entries: dict[str, str]) -> str:
    """``<sha256>  <path>`` lines, sorted by path, as ``sha256sum`` writes them."""
    return "".join(f"{entries[path]}  {path}\n" for path in sorted(entries))


def parse_manifest(text: str) -> tuple[dict[str, str], list[Problem]]:
    """The manifest's path -> sha256, and every line that is not ``<sha256>  <path>``."""
    entries: dict[str, str] = {}
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _MANIFEST_LINE_RE.fullmatch(line)
        if match is None:
            problems.append(
                Problem("manifest", MANIFEST_NAME, f"line {number} is not '<sha256>  <path>': {line[:80]!r}")
            )
            continue
        path = match["path"]
        parts = PurePosixPath(path).parts
        if path.startswith("/") or ".." in parts or _excluded(path):
            problems.append(Problem("manifest", MANIFEST_NAME, f"line {number} names {path!r}, which it may not cover"))
            continue
        if path in entries:
            problems.append(Problem("manifest", MANIFEST_NAME, f"line {number} lists {path} a second time"))
            continue
        entries[path] = match["sha"]
    return entries, problems


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_sha256(bundle_dir: Path) -> str:
    """sha256 of the bundle's MANIFEST.sha256, which is what approvals sign."""
    return sha256_bytes((Path(bundle_dir) / MANIFEST_NAME).read_bytes())


def load_evidence(bundle_dir: Path) -> dict[str, Any]:
    """evidence.json of a bundle; InputError when it is missing or not a JSON object."""
    path = require_bundle(bundle_dir) / EVIDENCE_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); the bundle is damaged") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{path} is not a JSON object; the bundle is damaged")
    return doc


def load_timeline(bundle_dir: Path) -> list[dict[str, Any]]:
    """The events of timeline.jsonl, in order. A line that is not a JSON object (the torn
    last line of a killed drill) is skipped: the evidence must still render."""
    path = Path(bundle_dir) / TIMELINE_NAME
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    events: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def evidence_bytes(doc: dict[str, Any], redactor: Redactor) -> bytes:
    """evidence.json as the recorder writes it, after redaction."""
    rendered = redactor.redact(doc)
    return (json.dumps(rendered, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def has_approvals(bundle_dir: Path) -> bool:
    approvals = Path(bundle_dir) / APPROVALS_DIR
    return approvals.is_dir() and any(approvals.iterdir())


# -- sealing ----------------------------------------------------------------------


def seal(bundle_dir: Path, *, redactor: Redactor | None = None) -> Path:
    """Write ``MANIFEST.sha256`` over every file of the bundle (except itself and
    ``approvals/``) and record them as evidence.json's ``artifacts``. Returns the manifest's path.

    Sealing again after a file changed is allowed until someone has signed, and removes the
    attestation, which named the files as they were (``evidence.attest`` writes a new one): a bundle
    with approvals is refused (InputError) if sealing would change its manifest, because
    that would void the signatures.
    """
    bundle_dir = require_bundle(bundle_dir)
    redactor = redactor if redactor is not None else REDACTOR
    files, odd = bundle_files(bundle_dir)
    if odd:
        raise InputError(
            f"bundle {bundle_dir} holds {', '.join(odd)}, which is not a regular file; "
            "copy the file into the bundle instead of linking it"
        )
    for relative in files:
        if _UNSAFE_NAME_RE.search(relative):
            raise InputError(f"bundle file {relative!r} has a backslash or a line break in its name; rename it")
        if redactor.redact_text(relative) != relative:
            raise InputError(
                f"bundle file {redactor.redact_text(relative)!r} has a secret in its name; rename it before sealing"
            )

    entries: dict[str, str] = {}
    artifacts: list[dict[str, Any]] = []
    for relative in files:
        if relative == EVIDENCE_NAME:
            continue
        digest, size = sha256_file(bundle_dir / relative)
        entries[relative] = digest
        artifacts.append({"path": relative, "sha256": digest, "bytes": size})

    doc = load_evidence(bundle_dir)
    doc["artifacts"] = artifacts
    new_evidence = evidence_bytes(doc, redactor)
    entries[EVIDENCE_NAME] = sha256_bytes(new_evidence)
    text = manifest_text(entries).encode("utf-8")

    manifest_path = bundle_dir / MANIFEST_NAME
    old = manifest_path.read_bytes() if manifest_path.is_file() else None
    if old == text and (bundle_dir / EVIDENCE_NAME).read_bytes() == new_evidence:
        return manifest_path
    if has_approvals(bundle_dir):
        changed = sorted(set(_manifest_diff(old, text)))
        raise InputError(
            f"bundle {bundle_dir} is signed ({APPROVALS_DIR}/ is not empty) and sealing it again would change "
            f"{', '.join(changed) or 'its manifest'}, voiding the signatures; put the files back as they were, "
            f"or move {APPROVALS_DIR}/ away and have the bundle signed again"
        )
    write_atomic(bundle_dir / EVIDENCE_NAME, new_evidence)
    write_atomic(manifest_path, text)
    # The attestation names the files as they were sealed before; it no longer speaks for them.
    (bundle_dir / ATTESTATION_NAME).unlink(missing_ok=True)
    return manifest_path


def _manifest_diff(old: bytes | None, new: bytes) -> list[str]:
    before, _ = parse_manifest(old.decode("utf-8", errors="replace")) if old is not None else ({}, [])
    after, _ = parse_manifest(new.decode("utf-8"))
    return [path for path in before.keys() | after.keys() if before.get(path) != after.get(path)]


# -- checking the files --------------------------------------------------------


def check_files(bundle_dir: Path) -> FilesCheck:
    """Recompute every hash of a sealed bundle and validate evidence.json (approvals aside).

    Raises InputError when ``bundle_dir`` is not a sealed bundle (no evidence.json or no
    manifest). Everything else is a ``Problem``: each missing, extra or changed file is named.
    """
    bundle_dir = require_bundle(bundle_dir, sealed=True)
    manifest_bytes = (bundle_dir / MANIFEST_NAME).read_bytes()
    entries, problems = parse_manifest(manifest_bytes.decode("utf-8", errors="replace"))

    files, odd = bundle_files(bundle_dir)
    on_disk = set(files)
    problems += [
        Problem("extra", relative, "is not a regular file (a symlink?), so it cannot be sealed") for relative in odd
    ]
    for relative in sorted(entries.keys() - on_disk):
        problems.append(Problem("missing", relative, f"is listed in {MANIFEST_NAME} but is not in the bundle"))
    for relative in sorted(on_disk - entries.keys()):
        problems.append(Problem("extra", relative, f"is in the bundle but not in {MANIFEST_NAME}"))
    sizes: dict[str, int] = {}
    for relative in sorted(entries.keys() & on_disk):
        digest, size = sha256_file(bundle_dir / relative)
        if digest != entries[relative]:
            problems.append(Problem("changed", relative, f"sha256 is {digest}, the manifest says {entries[relative]}"))
        else:
            sizes[relative] = size  # sizes are compared with the artifacts only where the content is as sealed

    drill_id, verdict, evidence_problems = _check_evidence(bundle_dir, entries, sizes)
    return FilesCheck(
        manifest_bytes=manifest_bytes,
        drill_id=drill_id,
        verdict=verdict,
        files_checked=len(entries),
        problems=(*problems, *evidence_problems),
    )


def _check_evidence(
    bundle_dir: Path, entries: dict[str, str], sizes: dict[str, int]
) -> tuple[str | None, str | None, list[Problem]]:
    problems: list[Problem] = []
    try:
        doc = json.loads((bundle_dir / EVIDENCE_NAME).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, None, [Problem("evidence", EVIDENCE_NAME, f"is not valid JSON: {exc}")]
    if not isinstance(doc, dict):
        return None, None, [Problem("evidence", EVIDENCE_NAME, "is not a JSON object")]
    problems += [Problem("schema", EVIDENCE_NAME, message) for message in validate_evidence(doc)]
    drill_id = doc.get("drill_id") if isinstance(doc.get("drill_id"), str) else None
    verdict = doc.get("verdict") if isinstance(doc.get("verdict"), str) else None

    return drill_id, verdict, problems + _check_artifacts(doc.get("artifacts"), entries, sizes)


def _check_artifacts(artifacts: Any, entries: dict[str, str], sizes: dict[str, int]) -> list[Problem]:
    """evidence.json's artifacts against the manifest: the same files, the same hashes and sizes."""
    problems: list[Problem] = []
    listed: dict[str, dict[str, Any]] = {}
    for item in artifacts if isinstance(artifacts, list) else []:
        if isinstance(item, dict) and isinstance(item.get("path"), str):
            listed[item["path"]] = item
    for path, item in sorted(listed.items()):
        if path == EVIDENCE_NAME:
            problems.append(Problem("artifacts", path, "evidence.json cannot list itself as an artifact"))
        elif path not in entries:
            problems.append(
                Problem("artifacts", path, f"is listed in evidence.json's artifacts but not in {MANIFEST_NAME}")
            )
        elif item.get("sha256") != entries[path]:
            problems.append(
                Problem(
                    "artifacts",
                    path,
                    f"evidence.json's artifacts say sha256 {item.get('sha256')}, the manifest {entries[path]}",
                )
            )
        elif path in sizes and item.get("bytes") != sizes[path]:
            problems.append(
                Problem(
                    "artifacts",
                    path,
                    f"evidence.json's artifacts say {item.get('bytes')} bytes, the file has {sizes[path]}",
                )
            )
    problems += [
        Problem("artifacts", path, f"is in {MANIFEST_NAME} but missing from evidence.json's artifacts")
        for path in sorted(entries.keys() - listed.keys() - {EVIDENCE_NAME})
    ]
    return problems


# -- secrets ------------------------------------------------------------------------


def scan_for_secrets(bundle_dir: Path, *, redactor: Redactor | None = None) -> list[str]:
    """Every file of the bundle (manifest and approvals included) in which the redactor
    would still mask something: a registered secret or a secret-looking value.

    Binary files are read as Latin-1, which finds secrets stored as ASCII."""
    redactor = redactor if redactor is not None else REDACTOR
    found: list[str] = []
    for path in sorted(p for p in Path(bundle_dir).rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        if redactor.redact_text(text) != text:
            found.append(path.relative_to(bundle_dir).as_posix())
    return found


def mask_secrets_in_place(bundle_dir: Path, redactor: Redactor) -> tuple[list[dict[str, Any]], set[str]]:
    """The safety net before sealing: text files that still hold something the redactor
    masks are rewritten through it; binary ones are only reported. Returns the warnings
    and the binary files reported."""
    warnings: list[dict[str, Any]] = []
    binary: set[str] = set()
    for relative in scan_for_secrets(bundle_dir, redactor=redactor):
        if _excluded(relative):
            continue  # never rewrite a manifest or an approval: that would break its signature
        path = bundle_dir / relative
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            binary.add(relative)
            warnings.append(
                {
                    "code": "possible-secret-in-binary",
                    "message": f"{relative} is binary and contains a value the redactor masks; "
                    "check it before sharing the bundle",
                    "step": None,
                }
            )
            continue
        if relative == EVIDENCE_NAME:
            _mask_evidence(path, text, redactor)
        else:
            write_atomic(path, redactor.redact_text(text).encode("utf-8"))
        warnings.append(
            {
                "code": "secret-masked-at-finalize",
                "message": f"{relative} still held a value the redactor masks; it was masked before sealing. "
                "Find the writer that bypassed rollback_drill.evidence.redact",
                "step": None,
            }
        )
    return warnings, binary


def _mask_evidence(path: Path, text: str, redactor: Redactor) -> None:
    # Structured first (keeps the JSON intact); then text-level for what hides in keys.
    data = evidence_bytes(json.loads(text), redactor)
    masked = data.decode("utf-8")
    if redactor.redact_text(masked) != masked:
        masked = redactor.redact_text(masked)
        try:
            json.loads(masked)
        except json.JSONDecodeError:
            raise DrillError(
                f"{path} holds a secret that cannot be masked without breaking its JSON; do not share the bundle"
            ) from None
        data = masked.encode("utf-8")
    write_atomic(path, data)


def add_warnings(bundle_dir: Path, warnings: list[dict[str, Any]], redactor: Redactor) -> None:
    if not warnings:
        return
    doc = load_evidence(bundle_dir)
    existing = doc.get("warnings")
    doc["warnings"] = [*(existing if isinstance(existing, list) else []), *warnings]
    write_atomic(bundle_dir / EVIDENCE_NAME, evidence_bytes(doc, redactor))
