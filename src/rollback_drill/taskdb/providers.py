"""TaskDB provisioning: a real PostgreSQL 15, from a container, a local initdb, or a DSN.

`container` (the default) runs testcontainers' PostgresContainer on the Docker
engine; `local` runs initdb/pg_ctl in a directory of the environment; `dsn` uses
an existing database (staging), whose DSN only ever comes from
``ROLLBACK_DRILL_TASKDB_DSN``. Every provider listens on, or connects to,
127.0.0.1 when it starts the server itself.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

import psycopg

from rollback_drill.errors import ConfigError, InputError, ToolchainError
from rollback_drill.evidence.redact import add_secret
from rollback_drill.ports import free_port
from rollback_drill.timing.clock import Clock
from rollback_drill.timing.wait import NotYet, wait_until

ProviderName = Literal["container", "local", "dsn"]
PROVIDERS: tuple[ProviderName, ...] = ("container", "local", "dsn")
DSN_ENV = "ROLLBACK_DRILL_TASKDB_DSN"
DATABASE = "flowengine_db"
USER = "flowengine_user"
"""The database and role the runbook's own commands name (`psql -U flowengine_user -d flowengine_db`)."""


@dataclass(frozen=True)
class TaskDB:
    """Where TaskDB is and how to reach it. ``password`` never appears in repr or in ``public()``."""

    provider: ProviderName
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    container_id: str | None = None
    data_dir: str | None = None
    server_major: int | None = None
    created_by_drill: bool = False
    """True only for a database the drill started itself (``container``, ``local``): only those are ever seeded,
    reset or corrupted on purpose. A ``dsn`` database is somebody's and is never."""

    @property
    def dsn(self) -> str:
        return f"postgresql://{quote(self.user)}:{quote(self.password)}@{self.host}:{self.port}/{quote(self.database)}"

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{quote(self.user)}:{quote(self.password)}@{self.host}:{self.port}/{quote(database)}"

    @property
    def redacted_dsn(self) -> str:
        return f"postgresql://{self.user}:***@{self.host}:{self.port}/{self.database}"

    def public(self) -> dict[str, object]:
        """What may be printed or recorded: everything but the password."""
        return {
            "provider": self.provider,
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "user": self.user,
        }

    def to_state(self) -> dict[str, object]:
        """For the environment's state file (mode 0600): the password is needed to reconnect."""
        return asdict(self)

    @classmethod
    def from_state(cls, data: dict[str, object]) -> TaskDB:
        """The handle a state file recorded. Files written before the flag existed: the drill started a
        ``container`` or ``local`` database itself, never a ``dsn`` one."""
        recorded = {"created_by_drill": data.get("provider") in {"container", "local"}, **data}
        return cls(**recorded)  # type: ignore[arg-type]

    def connect(self, *, timeout_s: float = 5.0, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
        try:
            return psycopg.connect(self.dsn, connect_timeout=max(1, int(timeout_s)), autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise InputError(
                f"TaskDB at {self.redacted_dsn} is not reachable ({_first_line(exc)}); "
                "check that it is running and the credentials are right"
            ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def wait_ready(db: TaskDB, timeout_s: float = 60.0, *, clock: Clock | None = None) -> int:
    """Wait until the server accepts a query; return its major version."""

    def major_version() -> tuple[int] | NotYet:
        # A one-element tuple is truthy even for a version of 0, so any answer ends the wait.
        try:
            with psycopg.connect(db.dsn, connect_timeout=2, autocommit=True) as conn:
                row = conn.execute("SHOW server_version_num").fetchone()
                return (int(str(row[0])) // 10000 if row else 0,)
        except psycopg.OperationalError as exc:
            return NotYet(f"error {_first_line(exc)}")

    (version,) = wait_until(
        major_version,
        timeout_s=timeout_s,
        describe=f"TaskDB at {db.redacted_dsn} to accept connections",
        interval_s=0.3,
        clock=clock,
        hint="check that the server is running and listening on that port",
    )
    return version


# --- dsn ---------------------------------------------------------------------------------------


def from_dsn(dsn: str | None = None) -> TaskDB:
    """An existing TaskDB (staging). The DSN comes from ROLLBACK_DRILL_TASKDB_DSN, never the command line."""
    value = dsn if dsn is not None else os.environ.get(DSN_ENV)
    if not value:
        raise ConfigError(
            f"--taskdb dsn needs the DSN in the environment: export {DSN_ENV}=postgresql://USER:PASSWORD@HOST:PORT/DB"
        )
    parts = urlsplit(value)
    if parts.scheme not in {"postgresql", "postgres"} or not parts.hostname or not parts.path.strip("/"):
        raise ConfigError(f"{DSN_ENV} is not a postgresql://USER:PASSWORD@HOST:PORT/DB URL")
    password = unquote(parts.password or "")
    add_secret(password)
    db = TaskDB(
        provider="dsn",
        host=parts.hostname,
        port=parts.port or 5432,
        database=unquote(parts.path.strip("/")),
        user=unquote(parts.username or ""),
        password=password,
    )
    with db.connect() as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    return TaskDB(**{**asdict(db), "server_major": int(str(row[0])) // 10000 if row else None})


# --- local -------------------------------------------------------------------------------------


def _pg_bindir() -> Path:
    candidates = [Path("/usr/lib/postgresql/15/bin")]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise ToolchainError("--taskdb local needs PostgreSQL 15's initdb and pg_ctl: apt-get install postgresql-15")


RELOCATED_PREFIX = "rollback-drill-taskdb-"
"""A local TaskDB whose own directory the `postgres` user cannot reach runs in a directory of this name under /tmp."""


def start_local(data_root: Path) -> TaskDB:
    """initdb + pg_ctl under ``data_root``, on a free 127.0.0.1 port, password authentication.

    As root, Postgres runs as the `postgres` user, which must be able to reach its data directory.
    When a parent of ``data_root`` is closed to it (a 0700 home or pytest directory), the data goes
    to a fresh directory under /tmp instead (0711, so only what is inside is reachable), which
    ``stop_local`` removes: no directory of the user's has its permissions changed.
    """
    bindir = _pg_bindir()
    run_as = _postgres_user_prefix()
    data_root.parent.mkdir(parents=True, exist_ok=True)  # made under the umask, which may close it too
    if run_as and not _reachable_by_others(data_root.parent):
        relocated = Path(tempfile.mkdtemp(prefix=RELOCATED_PREFIX))
        relocated.chmod(0o711)
        data_root = relocated / "taskdb"
    data_dir = data_root / "pgdata"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if run_as:
        shutil.chown(data_root, "postgres", "postgres")
    password = secrets.token_urlsafe(18)
    add_secret(password)
    pwfile = data_root / ".pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    if run_as:
        shutil.chown(pwfile, "postgres", "postgres")  # initdb runs as postgres and must read it
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data_dir), "-E", "UTF8", "--locale=C.UTF-8", "-U", USER,
         f"--pwfile={pwfile}", "--auth=scram-sha-256"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    pwfile.unlink()
    port = free_port()
    log = data_root / "postgres.log"
    subprocess.run(
        [*run_as, str(bindir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-w", "-t", "60",
         "-o", f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={data_root}", "start"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    bootstrap = TaskDB("local", "127.0.0.1", port, "postgres", USER, password, data_dir=str(data_dir))
    with bootstrap.connect() as conn:
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    db = TaskDB("local", "127.0.0.1", port, DATABASE, USER, password, data_dir=str(data_dir), created_by_drill=True)
    return TaskDB(**{**asdict(db), "server_major": wait_ready(db)})


def _reachable_by_others(directory: Path) -> bool:
    """Whether a user other than the owner may pass through ``directory`` and every directory above it."""
    return all(path.stat().st_mode & 0o001 for path in [directory, *directory.parents])


def _postgres_user_prefix() -> list[str]:
    """initdb refuses to run as root; run it as the `postgres` user where we are root."""
    if os.geteuid() != 0:
        return []
    try:
        import pwd  # noqa: PLC0415 - POSIX only, and only needed here

        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ToolchainError(
            "running as root, --taskdb local needs a `postgres` system user (apt-get install postgresql-15)"
        ) from exc
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups"]


def _relocated_root(data_dir: Path) -> Path | None:
    """The directory under /tmp that ``start_local`` made for ``data_dir``, if it made one."""
    root = data_dir.parent.parent
    temp = Path(tempfile.gettempdir())
    return root if root.parent == temp and root.name.startswith(RELOCATED_PREFIX) else None


def stop_local(db: TaskDB) -> None:
    if not db.data_dir or not Path(db.data_dir).exists():
        return
    bindir = _pg_bindir()
    run_as = _postgres_user_prefix()
    subprocess.run(
        [*run_as, str(bindir / "pg_ctl"), "-D", db.data_dir, "-m", "immediate", "-w", "stop"],
        check=False, capture_output=True,
    )  # fmt: skip
    relocated = _relocated_root(Path(db.data_dir))
    if relocated is not None:
        shutil.rmtree(relocated, ignore_errors=True)


# --- container ---------------------------------------------------------------------------------


def start_container(image: str, *, label: str, network: str | None = None) -> TaskDB:
    """PostgresContainer from testcontainers, published on 127.0.0.1 only.

    ``network``: a Docker network to start it on (kind's, for pods to reach it). It is given at
    start because connecting a running container to another network re-publishes its ports on
    new host ports.

    The reaper (ryuk) image cannot be pulled where the registry is unreachable, so it is
    disabled and the environment removes the container itself (``stop_container``).
    """
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
    from testcontainers.community.postgres import PostgresContainer  # noqa: PLC0415 - imports docker; only the container provider needs it

    password = secrets.token_urlsafe(18)
    add_secret(password)
    container = PostgresContainer(image, username=USER, password=password, dbname=DATABASE, driver=None)
    container.with_kwargs(labels={"rollback-drill": label}, **({"network": network} if network else {}))
    # docker-py accepts (host_ip, host_port); a random port on loopback only, whatever dockerd's --ip.
    container.ports = {"5432/tcp": ("127.0.0.1", None)}  # type: ignore[dict-item] # docker-py takes (ip, port)
    try:
        container.start()
    except Exception as exc:
        raise ToolchainError(f"the TaskDB container ({image}) did not start: {_first_line(exc)}") from exc
    wrapped = container.get_wrapped_container()
    db = TaskDB(
        provider="container",
        host="127.0.0.1",
        port=int(container.get_exposed_port(5432)),
        database=DATABASE,
        user=USER,
        password=password,
        container_id=str(wrapped.id),
        created_by_drill=True,
    )
    return TaskDB(**{**asdict(db), "server_major": wait_ready(db)})


def stop_container(db: TaskDB) -> None:
    if db.container_id:
        subprocess.run(["docker", "rm", "-f", "-v", db.container_id], check=False, capture_output=True)


def stop(db: TaskDB) -> None:
    """Remove what the drill started. A `dsn` database is never touched."""
    if db.provider == "container":
        stop_container(db)
    elif db.provider == "local":
        stop_local(db)
