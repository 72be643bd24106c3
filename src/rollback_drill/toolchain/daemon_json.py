"""Registering the runc wrapper in dockerd's ``daemon.json`` and taking it out again.

``scripts/install-runc-wrapper.sh`` and ``scripts/uninstall-runc-wrapper.sh`` run this file by
its path with the system's python3 (as root, where the drill's virtualenv may not be), so it
uses the standard library only and imports nothing of the package.

Registering keeps what the file was: a copy beside it (``daemon.json.rollback-drill.orig``),
or, when there was no file, a marker (``daemon.json.rollback-drill.absent``). Restoring does not
copy the backup back over the file, which would drop whatever was changed since: it takes out
the runtime it added and puts back the default runtime the original had (or none), then removes
the file if it did not exist before and holds nothing else. The backup and the marker go last.

usage: daemon_json.py register FILE RUNTIME BINARY
       daemon_json.py restore FILE RUNTIME [--dry-run]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Final

BACKUP_SUFFIX: Final = ".rollback-drill.orig"
ABSENT_SUFFIX: Final = ".rollback-drill.absent"


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def absent_marker(path: Path) -> Path:
    return path.with_name(path.name + ABSENT_SUFFIX)


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return {}
    config = json.loads(text)
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds no JSON object")  # noqa: TRY004 - a command-line tool's one message
    return config


def _write(path: Path, config: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)  # noqa: PTH101 - the mode of the file it replaces
    tmp.replace(path)


def registered(config: dict[str, Any] | None, runtime: str, binary: str) -> dict[str, Any]:
    """``config`` with ``runtime`` added (running ``binary``) and made the default runtime."""
    result = dict(config or {})
    result["runtimes"] = {**result.get("runtimes", {}), runtime: {"path": binary}}
    result["default-runtime"] = runtime
    return result


def restored(current: dict[str, Any], original: dict[str, Any] | None, runtime: str) -> dict[str, Any]:
    """``current`` without ``runtime``: its entry gone, the original's default runtime (or none) back."""
    result = dict(current)
    runtimes = {k: v for k, v in result.get("runtimes", {}).items() if k != runtime}
    if runtimes or "runtimes" in (original or {}):
        result["runtimes"] = runtimes
    else:
        result.pop("runtimes", None)
    if result.get("default-runtime") == runtime:
        before = (original or {}).get("default-runtime")
        if before and before != runtime:
            result["default-runtime"] = before
        else:
            result.pop("default-runtime", None)
    return result


def register(path: Path, runtime: str, binary: str) -> None:
    """Add ``runtime`` to ``path`` as dockerd's default, keeping what the file was the first time."""
    current = _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not backup_path(path).exists() and not absent_marker(path).exists():
        if current is None:
            absent_marker(path).write_text("daemon.json did not exist before rollback-drill registered its runtime\n")
        else:
            backup_path(path).write_bytes(path.read_bytes())
    _write(path, registered(current, runtime, binary))


def restore(path: Path, runtime: str, *, dry_run: bool = False) -> str:
    """Take ``runtime`` out of ``path`` again; return what was (or, with ``dry_run``, would be) done."""
    current = _read(path)
    backup, marker = backup_path(path), absent_marker(path)
    original = _read(backup)
    if current is None:
        action = f"{path} does not exist; nothing to restore"
    else:
        result = restored(current, original, runtime)
        if not result and marker.exists():
            action = f"remove {path} (it did not exist before)"
            if not dry_run:
                path.unlink()
        elif result == current:
            action = f"{path} does not name {runtime}; left as it is"
        else:
            action = f"write {path}: default runtime {result.get('default-runtime', 'runc (dockerd default)')}"
            if not dry_run:
                _write(path, result)
    if not dry_run:
        backup.unlink(missing_ok=True)
        marker.unlink(missing_ok=True)
    return action


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "register":  # register FILE RUNTIME BINARY
        register(Path(argv[1]), argv[2], argv[3])
        return 0
    if len(argv) in {3, 4} and argv[0] == "restore" and argv[3:] in ([], ["--dry-run"]):
        print(restore(Path(argv[1]), argv[2], dry_run=argv[3:] == ["--dry-run"]))
        return 0
    print(__doc__.strip().rsplit("\n\n", 1)[-1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
