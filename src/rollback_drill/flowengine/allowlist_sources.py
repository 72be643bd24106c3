"""Where the simulator process's allowlist view comes from (``--allowlist-source SPEC``).

- ``static``: ``available_pods`` pods serving the pilot plus ``repos``;
- ``file:PATH``: a JSON file ``{"available_pods": N, "repos": [...]}``, read again when it changes;
- ``env:VAR``: this process is one FlowEngine pod, serving the pilot plus the repos of its own
  ``REPO_ALLOWLIST`` (a comma-separated ``VAR``), as a real replica does;
- ``MODULE:FACTORY``: ``FACTORY(**kwargs)`` returns the source (a callable giving an
  ``AllowlistView``), with kwargs from ``KEY=VALUE`` arguments; this is how the
  cluster-backed source (a Kubernetes watch) plugs in.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from rollback_drill.errors import InputError
from rollback_drill.flowengine.scope import AllowlistSource, AllowlistView

if TYPE_CHECKING:
    from collections.abc import Sequence


def _split_repos(text: str) -> list[str]:
    """Repos separated by commas and/or white space, as REPO_ALLOWLIST and --repos are written."""
    return text.replace(",", " ").split()


class _FileSource:
    """An allowlist view kept in a JSON file, read again whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._view = AllowlistView(0, frozenset())

    def __call__(self) -> AllowlistView:
        with self._lock:
            try:
                stamp = self.path.stat().st_mtime_ns
            except OSError as exc:
                raise InputError(f"allowlist file {self.path} is missing ({exc.strerror})") from exc
            if stamp != self._stamp:
                try:
                    data = json.loads(self.path.read_text())
                    repos = data["repos"]
                    if isinstance(repos, str):
                        repos = _split_repos(repos)
                    self._view = AllowlistView(int(data["available_pods"]), frozenset(str(r) for r in repos))
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise InputError(
                        f'allowlist file {self.path} must hold {{"available_pods": N, "repos": [...]}} ({exc})'
                    ) from exc
                self._stamp = stamp
            return self._view


def allowlist_source(spec: str, *, pilot: str, repos: str, available_pods: int, args: Sequence[str]) -> AllowlistSource:
    """Build the allowlist source that ``--allowlist-source SPEC`` names."""
    if spec == "static":
        view = AllowlistView(available_pods, frozenset({pilot, *_split_repos(repos)}))
        return lambda: view
    if spec.startswith("file:"):
        return _FileSource(Path(spec.removeprefix("file:")))
    if spec.startswith("env:"):
        variable = spec.removeprefix("env:")
        value = os.environ.get(variable)
        if value is None:
            raise InputError(f"--allowlist-source {spec}: the environment variable {variable} is not set")
        own = AllowlistView(1, frozenset({pilot, *_split_repos(value)}))
        return lambda: own
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"--allowlist-source {spec!r}: use static, file:PATH or MODULE:FACTORY")
    kwargs: dict[str, str] = {}
    for item in args:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InputError(f"--allowlist-arg {item!r}: use KEY=VALUE")
        kwargs[key] = value
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"--allowlist-source {spec!r}: cannot import it ({exc})") from exc
    source = factory(**kwargs)
    if not callable(source):
        raise InputError(f"--allowlist-source {spec!r}: the factory returned {type(source).__name__}, not a callable")
    return source  # type: ignore[no-any-return]
