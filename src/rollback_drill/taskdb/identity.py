"""Who a TaskDB is, and the guard in front of everything that writes to one the drill did not create.

A TaskDB's identity is ``pg:<host>:<port>/<database>#<system_identifier>``. Host and
port are the DSN's, taken as written: ``db.internal`` and its IP address are two
spellings of one server, and neither alone is trusted. What makes the identity name one
server is the system identifier PostgreSQL chose at ``initdb`` (``pg_control_system()``):
a different server behind the same hostname (a restored replica, a new instance)
has another, so an allowlist entry written for one never admits the other.

A database the drill started (``container``, ``local``) is its own to seed, reset and
corrupt. Any other (``dsn``) is written to only when its identity is on the
``--cluster-allowlist`` file, and then only by the runbook's own steps: it is never
seeded, reset or injected into, and nothing in it is dropped.
"""

from __future__ import annotations

import psycopg

from rollback_drill.errors import InputError, UnsafeTarget
from rollback_drill.taskdb import providers
from rollback_drill.taskdb.providers import TaskDB

SYSTEM_IDENTIFIER_QUERY = "SELECT system_identifier FROM pg_control_system()"


def format_identity(host: str, port: int, database: str, system_identifier: int | str) -> str:
    """``pg:<host>:<port>/<database>#<system_identifier>``; an IPv6 address is bracketed, as in a URL."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"pg:{shown}:{port}/{database}#{system_identifier}"


def system_identifier(db: TaskDB) -> str:
    """The server's system identifier, which no other PostgreSQL server shares."""
    with db.connect() as conn:
        try:
            row = conn.execute(SYSTEM_IDENTIFIER_QUERY).fetchone()
        except psycopg.errors.InsufficientPrivilege as exc:
            raise InputError(
                f"TaskDB at {db.redacted_dsn}: {db.user} may not read pg_control_system(), which names the server "
                f"({str(exc).strip().splitlines()[0] if str(exc).strip() else 'permission denied'}); "
                f"ask its owner to run GRANT EXECUTE ON FUNCTION pg_control_system() TO {db.user}"
            ) from exc
    if row is None or row[0] is None:
        raise InputError(f"TaskDB at {db.redacted_dsn} returned no system identifier; is it PostgreSQL?")
    return str(row[0])


def identify(db: TaskDB) -> str:
    """The TaskDB's identity, read from the server."""
    return format_identity(db.host, db.port, db.database, system_identifier(db))


def require_created_by_drill(db: TaskDB, action: str) -> None:
    """Refuse ``action`` (seeding, a reset, a corruption) unless the drill started this database itself.

    Allowlisting does not lift this: an allowlisted TaskDB may be rolled back by the runbook,
    never wiped or corrupted to make a drill world.
    """
    if db.created_by_drill:
        return
    raise UnsafeTarget(
        f"refusing to {action} on TaskDB {db.redacted_dsn}: the drill did not create it, and only a TaskDB "
        "the drill created is ever seeded, reset or injected into; use a drill environment (--taskdb container)"
    )


def guard_writes(db: TaskDB, allowlist: frozenset[str], action: str = "write to") -> str:
    """Refuse ``action`` unless the drill created this TaskDB or its identity is allowlisted; return the identity.

    The drill's own databases need no entry.
    """
    if db.created_by_drill:
        return identify(db)
    identity = identify(db)
    if identity in allowlist:
        return identity
    raise UnsafeTarget(
        f"refusing to {action} TaskDB {identity}: it was not created by the drill and is not allowlisted; "
        f"if this is a drill or staging database, add the line '{identity}' to the --cluster-allowlist file"
    )


def guard_dsn_taskdb(allowlist: frozenset[str]) -> str:
    """``--taskdb dsn``, before anything runs: the database ``ROLLBACK_DRILL_TASKDB_DSN`` names, identified and
    refused (``UnsafeTarget``) unless its identity is allowlisted; return the identity for the evidence."""
    return guard_writes(providers.from_dsn(), allowlist, "run the drill against")
