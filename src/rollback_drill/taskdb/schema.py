"""TaskDB schema: the pilot's G5 version, the Phase 6/7 migrations on top, and the way back.

The SQL lives in ``rollback_drill/data/migrations``; the runbook's Step 3 applies
``rollback_to_pilot.sql`` as written, and so does the drill.
"""

from __future__ import annotations

from importlib import resources

from rollback_drill.config import DrillConfig
from rollback_drill.errors import VerificationFailed
from rollback_drill.taskdb.identity import require_created_by_drill
from rollback_drill.taskdb.providers import TaskDB

PILOT_MIGRATION_FILE = "20251104_001_pilot.sql"
ROLLBACK_FILE = "rollback_to_pilot.sql"


def migration_sql(name: str) -> str:
    return resources.files("rollback_drill.data").joinpath(f"migrations/{name}").read_text()


def current_version(db: TaskDB) -> str | None:
    """What the runbook checks: ``SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1``."""
    with db.connect() as conn:
        exists = conn.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute("SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1").fetchone()
    return str(row[0]) if row else None


def seed_schema(db: TaskDB, config: DrillConfig, phase: int) -> str:
    """Apply the pilot schema and every migration up to ``phase``; idempotent. Return the resulting version."""
    require_created_by_drill(db, "seed the schema")
    with db.connect() as conn:
        conn.execute(migration_sql(PILOT_MIGRATION_FILE))
        for migration in config.schema.migrations_for(phase):
            conn.execute(migration_sql(migration.file))
    version = current_version(db)
    if version is None:
        raise VerificationFailed("seeding TaskDB left no schema_migrations table")
    return version


def apply_rollback_sql(db: TaskDB) -> None:
    """Run ``rollback_to_pilot.sql`` (one transaction: all or nothing)."""
    with db.connect() as conn:
        conn.execute(migration_sql(ROLLBACK_FILE))
