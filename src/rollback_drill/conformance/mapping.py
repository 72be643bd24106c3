"""How a runbook command reaches the drill's stand-ins for the services it names.

- ``kubectl exec ... deployment/postgres -- psql|pg_dump`` becomes the same tool against the
  TaskDB (``PGHOST``/``PGPORT``; ``/migrations/`` is the packaged migrations);
- ``kubectl exec ... deployment/flowengine -- curl http://localhost:8080/...`` becomes ``curl``
  on the drill's FlowEngine URL;
- the status page's URL becomes the local sink's, with its token in the environment;
- ``blocks``, ``slack-cli``, ``pagerduty`` and ``mail`` are the stand-ins on the sandbox's PATH.

Every mapping is said in words, for the report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Final

from rollback_drill.conformance.runbook import RunbookCommand
from rollback_drill.conformance.standins import TOOLS

_EXEC_PREFIX: Final = re.compile(r"kubectl\s+exec\s+.*?\s--\s+")
_LOCAL_URL: Final = re.compile(r"https?://(?:localhost|127\.0\.0\.1)(?::\d+)?")
_STATUS_PAGE_URL: Final = re.compile(r"https?://status\.[A-Za-z0-9.-]+")
_MIGRATIONS: Final = re.compile(r"(?<![\w./-])/migrations/")


def migrations_dir() -> Path:
    """The packaged migrations, which the runbook's ``/migrations/`` in the postgres pod stands for."""
    return Path(str(resources.files("rollback_drill.data").joinpath("migrations")))


@dataclass(frozen=True)
class StandinEndpoints:
    """Where the stand-ins of one run listen."""

    taskdb_host: str
    taskdb_port: int
    taskdb_password: str
    taskdb_provider: str
    flowengine_url: str
    """The production FlowEngine's base URL."""
    sinks_url: str
    """The notification sinks' HTTP URL (the status page's stand-in)."""
    status_page_token_env: str
    """The variable the runbook's status-page call reads its token from."""
    status_page_token: str


@dataclass(frozen=True)
class MappedCommand:
    text: str
    """What bash runs."""
    mappings: tuple[str, ...]
    """Each mapping, in words."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment the mapped command needs (the TaskDB's connection, the status page's token)."""


def map_onto_standins(text: str, command: RunbookCommand, endpoints: StandinEndpoints) -> MappedCommand:
    """``text`` (``command``'s text, already rewritten for the sandbox) aimed at the drill's stand-ins."""
    mappings: list[str] = []
    env: dict[str, str] = {}
    if command.kind == "kubectl-exec-db":
        text = _EXEC_PREFIX.sub("", text)
        env.update(
            PGHOST=endpoints.taskdb_host,
            PGPORT=str(endpoints.taskdb_port),
            PGPASSWORD=endpoints.taskdb_password,
            PGCONNECT_TIMEOUT="5",
        )
        mappings.append(
            "kubectl exec ... deployment/postgres -- is the TaskDB at "
            f"{endpoints.taskdb_host}:{endpoints.taskdb_port} ({endpoints.taskdb_provider})"
        )
        if _MIGRATIONS.search(text):
            text = _MIGRATIONS.sub(f"{migrations_dir()}/", text)
            mappings.append(f"/migrations/ is the packaged {migrations_dir()}/")
    elif command.kind == "kubectl-exec-http":
        text = _EXEC_PREFIX.sub("", text)
        url = endpoints.flowengine_url
        text = _LOCAL_URL.sub(url, text)
        mappings.append(f"kubectl exec ... deployment/flowengine -- curl http://localhost:8080 is curl {url}")
    elif command.kind == "notify" and _STATUS_PAGE_URL.search(text):
        url = endpoints.sinks_url
        text = _STATUS_PAGE_URL.sub(url, text)
        env[endpoints.status_page_token_env] = endpoints.status_page_token
        mappings.append(f"the status page is the local sink at {url}; ${endpoints.status_page_token_env} its token")
    elif command.kind in {"blocks", "notify"}:
        tools = ", ".join(p for p in command.classification.programs if p in TOOLS)
        mappings.append(f"{tools}: the drill's stand-in (rollback_drill.conformance.standins)")
    return MappedCommand(text, tuple(mappings), env)
