"""One way to reach the collector's database: its URL parsed once, SQLite or PostgreSQL connected.
The store, the security registry and the config versions all open it here: the same URL forms, pragmas, schema,
placeholders and migrations (docs/storage.md, "Layout").
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cxpulse.extras import require

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = "cxpulse"
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# The store's write connection (bench/ceiling.py uses the same, so its ceiling is comparable).
# synchronous=FULL in WAL mode: a commit is on disk before the ack. A 64 MiB page cache (default
# 2 MiB) keeps the sample indexes' hot pages across a group commit of a few hundred thousand rows:
# about 15 % less CPU per row in large commits here; it costs that much RSS at most.
WRITER_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000", "cache_size=-65536")
# Side connections (registry, config versions): the same durability, the default cache.
SIDE_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000")

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


@dataclass(frozen=True)
class StoreUrl:
    """A parsed store URL: a SQLite file ``path``, or a PostgreSQL ``url`` and its ``schema``."""

    url: str
    postgres: bool
    path: str = ""
    schema: str = ""


def parse_url(url: str) -> StoreUrl:
    """``sqlite:///abs/path``, a bare path, or ``postgresql://`` / ``postgres://`` (schema from the
    first ``search_path`` in the URL's ``options``, else ``cxpulse``)."""
    if url.startswith(("postgresql://", "postgres://")):
        return StoreUrl(url, True, schema=schema_from_url(url))
    return StoreUrl(url, False, path=url[len("sqlite://") :] if url.startswith("sqlite://") else url)


def schema_from_url(url: str) -> str:
    """The schema named first in the URL's ``options=-csearch_path=...``, else ``cxpulse``."""
    require("psycopg")  # the 'postgres' extra; MissingExtra names it in one line (cxpulse.extras)
    from psycopg.conninfo import conninfo_to_dict

    options = conninfo_to_dict(url).get("options") or ""
    m = re.search(r"(?:^|\s)-c\s*search_path\s*=\s*([^\s,]+)", str(options))
    return m.group(1).strip('"') if m else DEFAULT_SCHEMA


def make_private(path: str) -> None:
    """The database file, its -wal/-shm/-journal and its directory readable by this account only.

    The database holds every person's data, so another local user must not read it past the API
    (no key, no audit entry). The file is created 0600 before SQLite opens it: SQLite gives the
    -wal/-shm it creates later the main file's mode, so those are 0600 too; files an older
    version left 0644 are tightened on every open. A directory we create is 0700; an existing one
    owned by this account (``/var/lib/cxpulse`` made 0755 by a package) is tightened too, unless it
    is shared (sticky, like /tmp), the home or the working directory (``--db collector.sqlite`` in
    a checkout): there the files' own 0600 protects the data.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=PRIVATE_DIR_MODE, exist_ok=True)
    if os.name == "posix":
        st = os.stat(parent)
        if (
            st.st_uid == os.getuid()
            and not st.st_mode & 0o1000
            and st.st_mode & 0o077
            and parent not in (os.path.expanduser("~"), os.getcwd())
        ):
            os.chmod(parent, PRIVATE_DIR_MODE)
    if not os.path.exists(path):
        # Only a file that does not exist yet is opened here: closing a descriptor of a database
        # this process already has open would drop SQLite's POSIX locks on it (fcntl semantics).
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), PRIVATE_FILE_MODE))
        except FileExistsError:  # another opener was first; its mode is checked below
            pass
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            if os.stat(path + suffix).st_mode & 0o077:
                os.chmod(path + suffix, PRIVATE_FILE_MODE)
        except FileNotFoundError:
            pass


def connect_sqlite(path: str, pragmas: Sequence[str] = SIDE_PRAGMAS) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit) to a private database file."""
    make_private(path)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    for pragma in pragmas:
        conn.execute(f"PRAGMA {pragma}")
    make_private(path)  # the -wal/-shm just made, should SQLite ever not copy the mode
    return conn


def connect_postgres(url: str, role: str, schema: str | None = None) -> Any:
    """An autocommit psycopg connection named ``cxpulse-<role>``; with ``schema``, its search_path.

    ``connect_timeout`` and ``application_name`` given in the URL win over these defaults.
    """
    require("psycopg")
    import psycopg
    import psycopg.sql
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    extra: dict[str, Any] = {
        k: v for k, v in (("connect_timeout", 10), ("application_name", f"cxpulse-{role}")) if k not in params
    }
    conn = psycopg.connect(url, autocommit=True, **extra)
    if schema is not None:
        conn.execute(psycopg.sql.SQL("SET search_path TO {}").format(psycopg.sql.Identifier(schema)))
    return conn


class Db:
    """One connection and the two dialects' differences (placeholders, DDL types, transactions).

    For the small side tables (registry, config versions); every call holds one lock, so threads
    may share it. SQL is written with ``?`` placeholders; PostgreSQL gets ``%s``.
    """

    def __init__(self, url: str | StoreUrl, role: str = "collector", pragmas: Sequence[str] = SIDE_PRAGMAS):
        self.target = url if isinstance(url, StoreUrl) else parse_url(url)
        self.url = self.target.url
        self.pg = self.target.postgres
        self.schema = self.target.schema
        if self.pg and not SCHEMA_NAME.fullmatch(self.schema):
            raise ValueError(f"schema name {self.schema!r} must be lower-case letters, digits and _")
        self.role = role
        self.pragmas = tuple(pragmas)
        # DDL types: a 64-bit integer column and an auto-numbered primary key.
        self.bigint = "BIGINT" if self.pg else "INTEGER"
        self.serial = "BIGSERIAL PRIMARY KEY" if self.pg else "INTEGER PRIMARY KEY"
        self._lock = threading.RLock()
        self._conn = self._connect()

    def _connect(self) -> Any:
        if self.pg:
            return connect_postgres(self.url, self.role, self.schema)
        return connect_sqlite(self.target.path, self.pragmas)

    def sql(self, sql: str) -> str:
        """``?`` placeholders as this dialect spells them."""
        return sql.replace("?", "%s") if self.pg else sql

    def _usable(self) -> Any:
        if self.pg and (self._conn.closed or self._conn.broken):
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = self._connect()
        return self._conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            cur = self._usable().execute(self.sql(sql), tuple(params))
            return [tuple(r) for r in cur.fetchall()] if cur.description else []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._lock:
            return int(self._usable().execute(self.sql(sql), tuple(params)).rowcount)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Serialize writers: BEGIN IMMEDIATE in SQLite, a normal transaction plus row locks in PostgreSQL."""
        with self._lock:
            conn = self._usable()
            if self.pg:
                with conn.transaction():
                    yield
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def ensure_schema(self) -> None:
        """PostgreSQL: create the URL's schema if it is missing (SQLite has none)."""
        if self.pg:
            import psycopg.sql

            with self._lock:
                self._usable().execute(
                    psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(psycopg.sql.Identifier(self.schema))
                )

    def migrate(self, table: str, migrations: Sequence[str], lock_class: int, what: str) -> None:
        """Apply the numbered ``migrations`` not yet recorded in ``table``, in one transaction.

        Each migration is DDL with ``{bigint}`` and ``{serial}`` for the dialect's types, statements
        split on ``;``. On PostgreSQL an advisory lock (``lock_class``, the schema) lets two
        collectors start at once; on SQLite BEGIN IMMEDIATE does. A database newer than the
        migrations known here is refused (``what`` names the tables in the error).
        """
        with self._lock:
            conn = self._usable()
            if self.pg:
                import psycopg.sql

                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))", (lock_class, self.schema))
                    conn.execute(
                        psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(psycopg.sql.Identifier(self.schema))
                    )
                    self._apply(conn, table, migrations, what)
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._apply(conn, table, migrations, what)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _apply(self, conn: Any, table: str, migrations: Sequence[str], what: str) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY, applied_us {self.bigint} NOT NULL)"
        )
        done = {r[0] for r in conn.execute(f"SELECT version FROM {table}").fetchall()}
        if max(done, default=0) > len(migrations):
            raise RuntimeError(f"{what} tables have version {max(done)}, newer than this collector's {len(migrations)}")
        for version, ddl in enumerate(migrations, start=1):
            if version in done:
                continue
            for stmt in ddl.format(bigint=self.bigint, serial=self.serial).split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(self.sql(f"INSERT INTO {table} VALUES (?, ?)"), (version, time.time_ns() // 1000))
            log.info("applied %s migration %d", what, version)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
