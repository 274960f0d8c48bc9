"""PostgreSQL store: the SQLite store's contract, for several collectors sharing one database.

Same interface and semantics as ``SqliteStore`` (one test suite runs against both);
what differs is that more than one collector may write the same agent at once:
an agent whose connection moves to another collector behind a load balancer
replays its unacknowledged batches there while the first collector may still be
committing them.

Exactly-once under concurrent collectors
----------------------------------------
The agent's ``seqs`` row (agent, epoch) -> committed_seq is the lock that decides.
``commit_batches`` runs one transaction that

1. makes sure every (agent, epoch) it touches has a row (``INSERT .. ON CONFLICT DO
   NOTHING``; a concurrent insert of the same key waits for the other transaction),
2. locks those rows with ``SELECT .. FOR UPDATE``, in (agent, epoch) order so that two
   collectors holding several agents cannot deadlock, and reads committed_seq. Under
   READ COMMITTED a row lock that had to wait returns the row as the other transaction
   committed it, so the value read is the latest committed one,
3. decides per batch exactly as SQLite does: a seq at or below the high-water mark is
   a duplicate (``stored=False``), anything above is written and raises the mark,
4. COPYs the samples, upserts events, inserts paths, merges the per-minute rollups
   (under a per-agent advisory lock, see ``_write_rollups``), writes the new marks, COMMITs.

While a transaction holds an agent's seq row, no other collector can decide about
that agent's batches: the second one waits, then sees the first one's mark and
drops what it already holds. A batch is never stored twice (the mark and the
samples commit or vanish together) and never lost (a batch is only called a
duplicate when a committed transaction already holds its seq, and a rollback
leaves the mark where it was, so the agent's retry is written). All locks a
commit takes on series, events and samples belong to agents whose seq row it
already holds, so they cannot form a cycle with another collector either.

The mark is a high-water mark, as in SQLite: it relies on batches of one
(agent, epoch) reaching ``commit_batches`` in seq order, which a stream gives
and a replay after reconnecting gives (it starts after the mark it was told).
A later seq committed while an earlier one of the same stream failed would
hide the earlier one, so a stream must stop committing after a failed commit.

A write that met a lost connection or a deadlock is retried (reconnecting):
nothing of a lost transaction was written, and if the COMMIT did land before
the link died, the marks turn the retry into duplicates, not second copies.

Durability
----------
An ack needs the commit on disk: PostgreSQL's default ``synchronous_commit=on``
gives that (the COMMIT returns after the WAL is flushed). The writer session
insists on it: if the server or role says ``off``, the session sets ``on`` and
logs a warning. A connection lost during COMMIT leaves the outcome unknown; the
retry above (or the agent's replay, if the retries fail) asks the seq row, which knows.

Connections
-----------
One write connection (the ingest writer thread's); lookups use a small pool of
read-only connections, so a lookup never waits behind a group commit. The writer
sets ``lock_timeout`` (a commit waiting over 30 s on another collector fails and
the agent retries) and ``idle_in_transaction_session_timeout`` (a collector that
hangs mid-transaction releases the agents it locked).

Schema
------
Tables live in their own schema (``cxpulse`` by default; the first entry of a
``search_path`` given in the URL's ``options`` otherwise), created on first open.
Numbered migrations are applied in order in one transaction under an advisory
lock, recorded in ``schema_migrations(version, applied_at)``, so two collectors
starting at once do not race. The per-kind sample tables follow the payload's
kind table (``cxpulse.v1.kinds``): a new kind or column is additive and nullable,
so it is reconciled at open under the same lock; a type change needs a migration.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from cxpulse.v1.kinds import KINDS, STR
from cxpulse.v1.payload import Event, PathHop, PathSnapshot, SampleBatch

from . import rollup as ru
from .types import (KEPT_TABLES, RAW_TABLES, AgentInfo, AgentRecord, IncidentRecord, KeptTables, PendingBatch, Row, RttRow, UserChange,
               search_words, user_key)
from .commit_plan import mark_keys, plan_commit, to_signed64
from .db import SCHEMA_NAME, connect_postgres, schema_from_url

log = logging.getLogger("cxpulse.collector.store.postgres")
T = TypeVar("T")

_MIGRATE_LOCK_CLASS = 0x63787075  # "cxpu": advisory lock namespace for schema migrations
_ROLLUP_LOCK_CLASS = 0x63787072  # "cxpr": one transaction-scoped advisory lock per agent for its rollups
_INCIDENT_LOCK_CLASS = 0x63787069  # "cxpi": incident updates, one collector at a time
_READERS_IDLE = 4  # idle read connections kept open for lookups
_RETRIES = 3  # attempts for a write that met a lost connection or a deadlock

# Numbered migrations; ``{s}`` is the quoted schema name. Never edit a released one: add the next.
MIGRATIONS: list[str] = [
    # 1: agents, seq marks, series, events, paths (sample tables follow kinds.py, see _reconcile_kinds).
    """
    CREATE TABLE {s}.agents (
        key BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        agent_id TEXT NOT NULL UNIQUE,
        host TEXT NOT NULL DEFAULT '',
        os_user TEXT NOT NULL DEFAULT '',
        os TEXT NOT NULL DEFAULT '',
        agent_version TEXT NOT NULL DEFAULT '',
        site TEXT NOT NULL DEFAULT '',
        first_seen_us BIGINT NOT NULL,
        last_seen_us BIGINT NOT NULL
    );
    CREATE TABLE {s}.seqs (
        agent BIGINT NOT NULL REFERENCES {s}.agents(key),
        epoch BIGINT NOT NULL,
        committed_seq BIGINT NOT NULL,
        PRIMARY KEY (agent, epoch)
    );
    CREATE TABLE {s}.series (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        agent BIGINT NOT NULL REFERENCES {s}.agents(key),
        target TEXT NOT NULL,
        address TEXT NOT NULL,
        kind TEXT NOT NULL,
        method TEXT NOT NULL,
        hop INTEGER NOT NULL DEFAULT 0,
        UNIQUE (agent, target, address, kind, method, hop)
    );
    CREATE TABLE {s}.events (
        agent BIGINT NOT NULL REFERENCES {s}.agents(key),
        id TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        start_us BIGINT NOT NULL,
        end_us BIGINT,
        severity INTEGER NOT NULL,
        evidence TEXT NOT NULL,
        PRIMARY KEY (agent, id)
    );
    CREATE INDEX events_by_agent_time ON {s}.events (agent, start_us);
    CREATE TABLE {s}.paths (
        agent BIGINT NOT NULL REFERENCES {s}.agents(key),
        target TEXT NOT NULL,
        address TEXT NOT NULL,
        ts_us BIGINT NOT NULL,
        method TEXT NOT NULL,
        reached BOOLEAN NOT NULL,
        hops JSONB NOT NULL
    );
    CREATE INDEX paths_by_agent_time ON {s}.paths (agent, ts_us);
    """,
    # 2 (issue 4): per-minute rollups, merged in the commit of their samples; incidents across agents.
    """
    CREATE TABLE {s}.rollups (
        agent BIGINT NOT NULL,
        minute_us BIGINT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        hop INTEGER NOT NULL DEFAULT 0,
        n INTEGER NOT NULL DEFAULT 0,
        data BYTEA NOT NULL,
        PRIMARY KEY (agent, minute_us, kind, target)
    );
    CREATE INDEX rollups_by_minute ON {s}.rollups (minute_us);
    CREATE TABLE {s}.incidents (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        kind TEXT NOT NULL,
        scope TEXT NOT NULL,
        start_us BIGINT NOT NULL,
        last_us BIGINT NOT NULL,
        end_us BIGINT,
        detected_us BIGINT NOT NULL,
        evidence TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX incidents_by_time ON {s}.incidents (start_us);
    CREATE TABLE {s}.incident_agents (
        incident BIGINT NOT NULL REFERENCES {s}.incidents(id) ON DELETE CASCADE,
        agent BIGINT NOT NULL,
        first_us BIGINT NOT NULL,
        last_us BIGINT NOT NULL,
        PRIMARY KEY (incident, agent)
    );
    CREATE INDEX incident_agents_by_agent ON {s}.incident_agents (agent);
    """,
    # 3: kept minute scores and 15-minute block merges (score/kept.py), caches keyed by a digest
    # of the rollups they were computed from.
    """
    CREATE TABLE {s}.minute_scores (
        agent BIGINT NOT NULL,
        minute_us BIGINT NOT NULL,
        digest BYTEA NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (agent, minute_us)
    );
    CREATE TABLE {s}.block_merges (
        agent BIGINT NOT NULL,
        minute_us BIGINT NOT NULL,
        digest BYTEA NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (agent, minute_us)
    );
    """,
    # 4 (issue 16): the desk user's display name, a folded search key (store.user_key), and each
    # change of desk user. Agents already known get their key from the login until their next Hello.
    """
    ALTER TABLE {s}.agents ADD COLUMN display_name TEXT NOT NULL DEFAULT '',
                           ADD COLUMN user_key TEXT NOT NULL DEFAULT '';
    UPDATE {s}.agents SET user_key = ' ' || lower(os_user) || ' ';
    CREATE TABLE {s}.agent_users (
        agent BIGINT NOT NULL REFERENCES {s}.agents(key),
        since_us BIGINT NOT NULL,
        os_user TEXT NOT NULL,
        display_name TEXT NOT NULL,
        user_key TEXT NOT NULL,
        PRIMARY KEY (agent, since_us)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
_AGENT_COLUMNS = "key, agent_id, host, os_user, os, agent_version, site, display_name, first_seen_us, last_seen_us"
MAX_USER_CHANGES = 1000  # per lookup window: a hot desk sees a few a day


def _agent_record(r: tuple) -> AgentRecord:
    return AgentRecord(r[0], AgentInfo(*r[1:8]), r[8], r[9])


class PostgresStore(KeptTables):
    def __init__(self, url: str, schema: str | None = None):
        self.url = url
        self.schema = schema or schema_from_url(url)
        if not SCHEMA_NAME.fullmatch(self.schema):
            raise ValueError(f"schema name {self.schema!r} must be lower-case letters, digits and _")
        self._s = f'"{self.schema}"'
        self._lock = threading.Lock()
        self._series_cache: dict[tuple[int, str, str, str, str, int], int] = {}
        self._readers: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._db = self._connect_writer()
        self._migrate()

    # -- connections --

    def _connect(self, role: str) -> psycopg.Connection:
        return connect_postgres(self.url, role)

    def _connect_writer(self) -> psycopg.Connection:
        db = self._connect("collector")
        if db.execute("SHOW synchronous_commit").fetchone()[0] == "off":
            log.warning("synchronous_commit is off for this role/database: the collector sets it on (acks need it)")
            db.execute("SET synchronous_commit = on")
        if db.execute("SHOW fsync").fetchone()[0] != "on":
            log.warning("the PostgreSQL server runs with fsync=off: acknowledged batches can be lost on a crash")
        # A collector stuck mid-transaction must not hold an agent's seq row forever,
        # and one waiting on such a lock should fail (the agent retries) rather than hang.
        db.execute("SET idle_in_transaction_session_timeout = '60s'")
        db.execute("SET lock_timeout = '30s'")
        return db

    def _writer(self) -> psycopg.Connection:
        """The write connection, reopened if the server dropped it (the agent's replay covers the gap)."""
        if self._db.closed or self._db.broken:
            self._db.close()
            self._db = self._connect_writer()
        return self._db

    def _query(self, sql: str, params: object = None) -> list[tuple]:
        """Run one read on a pooled connection, never the writer's, so lookups do not queue behind commits.

        A pooled connection the server dropped (a restart) is noticed on use;
        the read is idempotent, so it runs once more on a new connection.
        """
        for attempt in (0, 1):
            try:
                db = self._readers.get_nowait()
            except queue.Empty:
                db = self._connect("lookup")
                db.execute("SET default_transaction_read_only = on")
            try:
                rows = db.execute(sql, params).fetchall()
            except psycopg.OperationalError:
                db.close()
                if attempt or not db.broken:
                    raise
                continue
            except BaseException:
                db.close()
                raise
            if self._readers.qsize() < _READERS_IDLE:
                self._readers.put(db)
            else:
                db.close()
            return rows
        raise AssertionError("unreachable")

    # -- schema --

    def _migrate(self) -> None:
        db, s = self._db, self._s
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))", (_MIGRATE_LOCK_CLASS, self.schema))
            if db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)).fetchone() is None:
                db.execute(f"CREATE SCHEMA {s}")
            db.execute(
                f"""CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
                        version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
            )
            done = {r[0] for r in db.execute(f"SELECT version FROM {s}.schema_migrations")}
            newest = max(done, default=0)
            if newest > SCHEMA_VERSION:
                raise RuntimeError(
                    f"schema {self.schema} has schema version {newest}, newer than this collector's {SCHEMA_VERSION}"
                )
            for version, ddl in enumerate(MIGRATIONS, start=1):
                if version not in done:
                    db.execute(ddl.format(s=s))
                    db.execute(f"INSERT INTO {s}.schema_migrations (version) VALUES (%s)", (version,))
                    log.info("applied schema migration %d to %s", version, self.schema)
            self._reconcile_kinds(db)

    def _reconcile_kinds(self, db: psycopg.Connection) -> None:
        """One samples table per kind, columns from kinds.py; adds only what is missing.

        No foreign key on ``series``: COPY would check it per row, and ids come from
        the same transaction. Existing columns are read first so that a normal start
        takes no table lock (ALTER TABLE would block ingest of running collectors).
        """
        s = self._s
        have: dict[str, set[str]] = {}
        for table, column in db.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s", (self.schema,)
        ):
            have.setdefault(table, set()).add(column)
        for kind, cols in KINDS.items():
            table = f"samples_{kind}"
            if table not in have:
                db.execute(f"CREATE TABLE {s}.{table} (series BIGINT NOT NULL, ts_us BIGINT NOT NULL)")
                db.execute(f"CREATE INDEX {table}_by_series_time ON {s}.{table} (series, ts_us)")
            for c, t in cols.items():
                if c not in have.get(table, ()):
                    db.execute(f'ALTER TABLE {s}.{table} ADD COLUMN "{c}" {"TEXT" if t == STR else "BIGINT"}')

    def _retrying(self, fn: Callable[[], T], what: str) -> T:
        """Run a write again after a lost connection or a deadlock, with jittered backoff.

        Safe for every write here: a lost transaction wrote nothing, and if the
        connection died during COMMIT and the commit did land, the seq marks make
        the retry a duplicate (``stored=False``), never a second copy. Anything
        else (a bad row, a lock wait timeout) fails at once: the agent retries.
        """
        for attempt in range(_RETRIES):
            try:
                return fn()
            except psycopg.OperationalError as exc:
                transient = isinstance(exc, pg_errors.DeadlockDetected) or self._db.closed or self._db.broken
                if not transient or attempt == _RETRIES - 1:
                    raise
                delay = 0.05 * (2**attempt) * random.uniform(0.5, 1.5)
                log.warning("%s failed (%s); retrying in %.2f s", what, str(exc).strip(), delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    # -- writes (the ingest writer thread; the lock only guards misuse from elsewhere) --

    def upsert_agent(self, info: AgentInfo, now_us: int) -> int:
        with self._lock:
            return self._retrying(lambda: self._upsert_agent(info, now_us), f"upsert of agent {info.agent_id}")

    def _upsert_agent(self, info: AgentInfo, now_us: int) -> int:
        """As SqliteStore.upsert_agent: a Hello without a user keeps the last one; a change is recorded."""
        key_text = user_key(info.os_user, info.display_name)
        db = self._writer()
        with db.transaction():
            row = db.execute(
                f"""INSERT INTO {self._s}.agents
                        (agent_id, host, os_user, os, agent_version, site, first_seen_us, last_seen_us,
                         display_name, user_key)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                    ON CONFLICT (agent_id) DO UPDATE SET host = excluded.host, os = excluded.os,
                      agent_version = excluded.agent_version, site = excluded.site,
                      last_seen_us = excluded.last_seen_us,
                      os_user = CASE WHEN excluded.os_user = '' THEN agents.os_user ELSE excluded.os_user END,
                      display_name = CASE WHEN excluded.os_user = '' THEN agents.display_name
                                          ELSE excluded.display_name END,
                      user_key = CASE WHEN excluded.os_user = '' THEN agents.user_key ELSE excluded.user_key END
                    RETURNING key""",
                (info.agent_id, info.host, info.os_user, info.os, info.agent_version, info.site, now_us, now_us,
                 info.display_name, key_text),
            ).fetchone()
            last = db.execute(
                f"""SELECT os_user, display_name FROM {self._s}.agent_users WHERE agent = %s
                    ORDER BY since_us DESC LIMIT 1""", (row[0],)).fetchone()
            if last is None or tuple(last) != (info.os_user, info.display_name):
                db.execute(
                    f"""INSERT INTO {self._s}.agent_users VALUES (%s, %s, %s, %s, %s)
                        ON CONFLICT (agent, since_us) DO UPDATE SET os_user = excluded.os_user,
                          display_name = excluded.display_name, user_key = excluded.user_key""",
                    (row[0], now_us, info.os_user, info.display_name, key_text))
        return row[0]

    def committed_seq(self, agent_key: int, epoch: int) -> int:
        """Read on the write connection: the ingest writer asks it in order with its commits."""

        def read() -> int:
            row = self._writer().execute(
                f"SELECT committed_seq FROM {self._s}.seqs WHERE agent = %s AND epoch = %s",
                (agent_key, to_signed64(epoch)),
            ).fetchone()
            return row[0] if row else 0

        with self._lock:
            return self._retrying(read, "committed seq read")

    def commit_batches(self, batches: list[PendingBatch], now_us: int | None = None) -> None:
        """As SqliteStore.commit_batches: with ``now_us``, the senders' last_seen moves up to it."""
        if not batches:
            return
        with self._lock:
            self._retrying(lambda: self._commit_once(batches, now_us), f"commit of {len(batches)} batches")

    def _commit_once(self, batches: list[PendingBatch], now_us: int | None = None) -> None:
        db, s = self._writer(), self._s
        fresh: list[tuple] = []  # series created in this transaction: forgotten if it rolls back
        try:
            with db.transaction(), db.cursor() as cur:
                plan = plan_commit(batches, self._lock_marks(cur, mark_keys(batches)))
                plan.apply(batches)
                rows: dict[str, list[tuple]] = {kind: [] for kind in KINDS}
                for b in plan.written:
                    for x in b.batch.series:
                        sid = self._series_id(cur, fresh, b.agent_key, x.target, x.address, x.kind, x.method, x.hop or 0)
                        rows[x.kind].extend(zip([sid] * len(x.ts_us), x.ts_us, *x.cols.values()))
                events = plan.event_rows()
                paths = [(b.agent_key, p.target, p.address, p.ts_us, p.method, p.reached,
                          Jsonb([[h.ttl, h.address, h.rtt_us] for h in p.hops]))
                         for b in plan.written for p in b.batch.paths]
                for kind, kind_rows in rows.items():
                    if kind_rows:
                        self._copy(cur, kind, kind_rows)
                if events:
                    # An event is sent when it opens and again when it closes: keep the latest state.
                    cur.executemany(
                        f"""INSERT INTO {s}.events (agent, id, kind, target, start_us, end_us, severity, evidence)
                            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                            ON CONFLICT (agent, id) DO UPDATE SET kind = excluded.kind, end_us = excluded.end_us,
                              severity = GREATEST({s}.events.severity, excluded.severity),
                              evidence = excluded.evidence""",
                        events,
                    )
                if paths:
                    cur.executemany(
                        f"""INSERT INTO {s}.paths (agent, target, address, ts_us, method, reached, hops)
                            VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                        paths,
                    )
                self._write_rollups(cur, plan.rollup_input())
                moved = [(seq, a, e) for (a, e), seq in plan.marks.items()]
                if moved:
                    cur.executemany(f"UPDATE {s}.seqs SET committed_seq = %s WHERE agent = %s AND epoch = %s", moved)
                if now_us is not None:
                    # One statement per commit; rows locked in key order, after the seq rows and the
                    # advisory locks like every commit, so two collectors cannot deadlock on them.
                    cur.execute(
                        f"""UPDATE {s}.agents a SET last_seen_us = GREATEST(a.last_seen_us, %s)
                            FROM (SELECT key FROM {s}.agents WHERE key = ANY(%s) ORDER BY key FOR UPDATE) l
                            WHERE a.key = l.key""",
                        (now_us, plan.agents))
        except BaseException:
            for key in fresh:
                self._series_cache.pop(key, None)
            for b in batches:
                b.stored = None
            raise

    def _write_rollups(self, cur: psycopg.Cursor, written: list[tuple[int, SampleBatch]]) -> None:
        """Merge this commit's rollups into the stored ones, in the commit's own transaction.

        Two collectors may hold parts of the same agent-minute. The merge (sketches included)
        runs here in Python as read-modify-write, made safe by a transaction-scoped advisory
        lock per agent, taken in agent order after the seq rows: every collector writing an
        agent's rollups holds that agent's lock, so no second writer can slip between the read
        and the upsert. The seq row alone would not do: it is per (agent, epoch), and an agent
        replaying an old epoch's batches elsewhere writes the same minutes under another row.
        Locks are taken in one global order (seq rows by key, then advisory locks by agent),
        so collectors cannot deadlock on them. A PL/pgSQL merge of the sketch bytes would save
        the read but duplicate the sketch format in a second language; one agent's rows for the
        minutes of one commit are few (about ten targets per minute), so the read is cheap.
        """
        parts, spans = ru.commit_work(written)
        agents = sorted({r.agent for r in parts.values()} | set(spans))
        if not agents:
            return
        for a in agents:
            cur.execute("SELECT pg_advisory_xact_lock(%s::integer, %s::integer)", (_ROLLUP_LOCK_CLASS, a & 0x7FFFFFFF))
        s = self._s
        by_agent: dict[int, list[ru.Rollup]] = {}
        for r in parts.values():
            by_agent.setdefault(r.agent, []).append(r)
        upserts: list[tuple] = []
        for agent, rs in by_agent.items():
            lo, hi = min(r.minute_us for r in rs), max(r.minute_us for r in rs)
            cur.execute(
                f"""SELECT minute_us, kind, target, hop, data FROM {s}.rollups
                    WHERE agent = %s AND minute_us BETWEEN %s AND %s AND kind <> %s""", (agent, lo, hi, ru.EVENTS))
            have = {(m, kind, target): (hop, bytes(data)) for m, kind, target, hop, data in cur.fetchall()}
            for r in rs:
                old = have.get((r.minute_us, r.kind, r.target))
                if old is not None:
                    ru.merge(r, ru.Rollup(agent, r.minute_us, r.kind, r.target, old[0], ru.decode(r.kind, old[1])))
                upserts.append((agent, r.minute_us, r.kind, r.target, r.hop, r.count, ru.encode(r.kind, r.data)))
        deletes: list[tuple] = []
        cols = "id, kind, target, start_us, end_us, severity, evidence"
        for agent, span in spans.items():
            cur.execute(
                f"""SELECT {cols} FROM {s}.events
                    WHERE agent = %s AND end_us IS NULL AND start_us >= %s AND start_us <= %s""",
                (agent, span.now_us - ru.OPEN_EVENT_HORIZON_US, span.now_us))
            open_events = [Event(*row) for row in cur.fetchall()]
            minutes = ru.minutes_to_redo(span, open_events)
            if not minutes:
                continue
            lo, hi = min(minutes), max(minutes) + ru.MINUTE_US
            cur.execute(
                f"""SELECT {cols} FROM {s}.events
                    WHERE agent = %s AND start_us < %s AND start_us >= %s AND (end_us IS NULL OR end_us >= %s)""",
                (agent, hi, lo - ru.OPEN_EVENT_HORIZON_US, lo))
            evs = [Event(*row) for row in cur.fetchall()]
            for m, r in ru.event_rollups(agent, evs, minutes, span.now_us).items():
                if r.data["spans"]:
                    upserts.append((agent, m, r.kind, r.target, 0, r.count, ru.encode(r.kind, r.data)))
                else:
                    deletes.append((agent, m, ru.EVENTS, ru.EVENTS_TARGET))
        if upserts:
            cur.executemany(
                f"""INSERT INTO {s}.rollups (agent, minute_us, kind, target, hop, n, data)
                    VALUES (%s, %s, %s, %s, %s, %s, %s)
                    ON CONFLICT (agent, minute_us, kind, target) DO UPDATE SET hop = excluded.hop, n = excluded.n,
                      data = excluded.data""",
                upserts,
            )
        if deletes:
            cur.executemany(
                f"DELETE FROM {s}.rollups WHERE agent = %s AND minute_us = %s AND kind = %s AND target = %s", deletes)

    def _lock_marks(self, cur: psycopg.Cursor, keys: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
        """Lock the (agent, epoch) seq rows, in key order, and read their committed marks."""
        agents, epochs = [a for a, _ in keys], [e for _, e in keys]
        cur.execute(
            f"""INSERT INTO {self._s}.seqs (agent, epoch, committed_seq)
                SELECT a, e, 0 FROM unnest(%s::bigint[], %s::bigint[]) AS k(a, e) ORDER BY a, e
                ON CONFLICT (agent, epoch) DO NOTHING""",
            (agents, epochs),
        )
        cur.execute(
            f"""SELECT agent, epoch, committed_seq FROM {self._s}.seqs
                WHERE (agent, epoch) IN (SELECT * FROM unnest(%s::bigint[], %s::bigint[]))
                ORDER BY agent, epoch FOR UPDATE""",
            (agents, epochs),
        )
        return {(a, e): seq for a, e, seq in cur.fetchall()}

    def _copy(self, cur: psycopg.Cursor, kind: str, rows: list[tuple]) -> None:
        names = ", ".join(f'"{c}"' for c in KINDS[kind])
        with cur.copy(f"COPY {self._s}.samples_{kind} (series, ts_us, {names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _series_id(self, cur: psycopg.Cursor, fresh: list[tuple], agent: int, target: str, address: str,
                   kind: str, method: str, hop: int) -> int:
        """Series id from the cache, else insert-or-find (another collector may be creating it too)."""
        key = (agent, target, address, kind, method, hop)
        sid = self._series_cache.get(key)
        if sid is not None:
            return sid
        row = cur.execute(
            f"""INSERT INTO {self._s}.series (agent, target, address, kind, method, hop)
                VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id""",
            key,
        ).fetchone()
        if row is None:
            row = cur.execute(
                f"""SELECT id FROM {self._s}.series WHERE agent = %s AND target = %s AND address = %s
                    AND kind = %s AND method = %s AND hop = %s""",
                key,
            ).fetchone()
        else:
            fresh.append(key)
        self._series_cache[key] = row[0]
        return row[0]

    # -- reads (pooled read connections, never the writer's) --

    def find_agents(self, query: str, limit: int = 50) -> list[AgentRecord]:
        like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        words = search_words(query)
        params: dict = {"q": like, "n": limit, **{f"w{i}": w for i, w in enumerate(words)}}
        by_words = ""
        if words:
            now = " AND ".join(f"a.user_key LIKE %(w{i})s" for i in range(len(words)))
            then = " AND ".join(f"u.user_key LIKE %(w{i})s" for i in range(len(words)))
            by_words = (f" OR ({now}) OR EXISTS (SELECT 1 FROM {self._s}.agent_users u"
                        f" WHERE u.agent = a.key AND {then})")
        got = self._query(
            f"""SELECT {_AGENT_COLUMNS.replace("key, ", "a.key, ", 1)}
                FROM {self._s}.agents a
                WHERE os_user ILIKE %(q)s ESCAPE '\\' OR host ILIKE %(q)s ESCAPE '\\'
                   OR agent_id ILIKE %(q)s ESCAPE '\\' OR site ILIKE %(q)s ESCAPE '\\'{by_words}
                ORDER BY last_seen_us DESC, a.key LIMIT %(n)s""",
            params,
        )
        return [_agent_record(r) for r in got]

    def agent(self, agent_id: str) -> AgentRecord | None:
        got = self._query(f"SELECT {_AGENT_COLUMNS} FROM {self._s}.agents WHERE agent_id = %s", (agent_id,))
        return None if not got else _agent_record(got[0])

    def user_changes(self, agent_key: int, since_us: int, until_us: int) -> list[UserChange]:
        got = self._query(
            f"""SELECT since_us, os_user, display_name FROM {self._s}.agent_users
                WHERE agent = %(a)s AND since_us < %(u)s
                  AND since_us >= coalesce((SELECT max(since_us) FROM {self._s}.agent_users
                                            WHERE agent = %(a)s AND since_us <= %(s)s), 0)
                ORDER BY since_us LIMIT %(n)s""",
            {"a": agent_key, "s": since_us, "u": until_us, "n": MAX_USER_CHANGES})
        return [UserChange(*r) for r in got]

    def rtt_rows(self, agent_key: int, since_us: int, until_us: int) -> list[RttRow]:
        return [RttRow(r.target, r.address, r.method, r.ts_us, r.values["rtt"], r.hop)
                for r in self.rows(agent_key, "rtt", since_us, until_us)]

    def rows(self, agent_key: int, kind: str, since_us: int, until_us: int) -> list[Row]:
        cols = list(KINDS[kind])
        names = ", ".join(f'x."{c}"' for c in cols)
        # COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
        got = self._query(
            f"""SELECT s.target, s.address, s.method, s.hop, x.ts_us, {names}
                FROM {self._s}.series s JOIN {self._s}.samples_{kind} x ON x.series = s.id
                WHERE s.agent = %s AND s.kind = %s AND x.ts_us >= %s AND x.ts_us < %s
                ORDER BY s.target COLLATE "C", x.ts_us""",
            (agent_key, kind, since_us, until_us),
        )
        return [Row(r[0], r[1], r[2], r[3] or None, r[4], dict(zip(cols, r[5:]))) for r in got]

    def events(self, agent_key: int, since_us: int, until_us: int) -> list[Event]:
        """Events that overlap the window (open ones included)."""
        got = self._query(
            f"""SELECT id, kind, target, start_us, end_us, severity, evidence FROM {self._s}.events
                WHERE agent = %s AND start_us < %s AND (end_us IS NULL OR end_us >= %s)
                ORDER BY start_us""",
            (agent_key, until_us, since_us),
        )
        return [Event(*r) for r in got]

    def paths(self, agent_key: int, since_us: int, until_us: int) -> list[PathSnapshot]:
        got = self._query(
            f"""SELECT target, address, ts_us, method, reached, hops FROM {self._s}.paths
                WHERE agent = %s AND ts_us >= %s AND ts_us < %s ORDER BY ts_us""",
            (agent_key, since_us, until_us),
        )
        return [PathSnapshot(r[0], r[1], r[2], r[3], r[4], [PathHop(*h) for h in r[5]]) for r in got]

    def sample_count(self, agent_key: int | None = None) -> int:
        s = self._s
        if agent_key is None:
            parts = [f"SELECT count(*) AS n FROM {s}.samples_{kind}" for kind in KINDS]
        else:
            parts = [f"SELECT count(*) AS n FROM {s}.samples_{kind} x JOIN {s}.series s ON x.series = s.id "
                     f"WHERE s.agent = %(a)s" for kind in KINDS]
        query = f"SELECT sum(n)::bigint FROM ({' UNION ALL '.join(parts)}) c"
        return self._query(query, None if agent_key is None else {"a": agent_key})[0][0]

    # -- rollups, incidents, retention --

    def all_agents(self) -> list[AgentRecord]:
        got = self._query(
            f"SELECT {_AGENT_COLUMNS} FROM {self._s}.agents ORDER BY key")
        return [_agent_record(r) for r in got]

    def rollups(self, since_us: int, until_us: int, agent_key: int | None = None,
                kinds: Sequence[str] | None = None) -> list[ru.Rollup]:
        sql = f"SELECT agent, minute_us, kind, target, hop, data FROM {self._s}.rollups WHERE minute_us >= %s AND minute_us < %s"
        args: list = [since_us, until_us]
        if agent_key is not None:
            sql += " AND agent = %s"
            args.append(agent_key)
        if kinds is not None:
            sql += " AND kind = ANY(%s)"
            args.append(list(kinds))
        got = self._query(sql + ' ORDER BY agent, minute_us, kind COLLATE "C", target COLLATE "C"', args)
        out = []
        for a, m, k, t, h, d in got:
            raw = bytes(d)
            out.append(ru.Rollup(a, m, k, t, h, None, raw))
        return out

    def _kept(self, table: str, since_us: int, until_us: int, agent_key: int | None) -> dict[tuple[int, int], tuple[bytes, bytes]]:
        sql = f"SELECT agent, minute_us, digest, data FROM {self._s}.{table} WHERE minute_us >= %s AND minute_us < %s"
        args: list = [since_us, until_us]
        if agent_key is not None:
            sql += " AND agent = %s"
            args.append(agent_key)
        return {(a, m): (bytes(g), bytes(d)) for a, m, g, d in self._query(sql, args)}

    def _keep(self, table: str, rows: list[tuple[int, int, bytes, bytes]]) -> None:
        if not rows:
            return
        s = self._s

        def run() -> None:
            db = self._writer()
            with db.transaction():
                db.cursor().executemany(
                    f"""INSERT INTO {s}.{table} (agent, minute_us, digest, data) VALUES (%s, %s, %s, %s)
                        ON CONFLICT (agent, minute_us) DO UPDATE SET digest = excluded.digest, data = excluded.data""",
                    sorted(rows))  # key order: two collectors writing the same minutes take row locks alike
        with self._lock:
            self._retrying(run, f"kept {table}")

    def incidents(self, since_us: int, until_us: int, agent_key: int | None = None) -> list[IncidentRecord]:
        s = self._s
        sql = f"""SELECT id, kind, scope, start_us, last_us, end_us, detected_us, evidence FROM {s}.incidents
                  WHERE start_us < %s AND (end_us IS NULL OR end_us >= %s)"""
        args: list = [until_us, since_us]
        if agent_key is not None:
            sql += f" AND id IN (SELECT incident FROM {s}.incident_agents WHERE agent = %s)"
            args.append(agent_key)
        incs = [IncidentRecord(*r) for r in self._query(sql + " ORDER BY start_us, id", args)]
        if incs:
            members = self._query(
                f"SELECT incident, agent, first_us, last_us FROM {s}.incident_agents WHERE incident = ANY(%s) ORDER BY agent",
                ([i.id for i in incs],))
            by_id = {i.id: i for i in incs}
            for inc, a, f, last in members:
                by_id[inc].agents[a] = (f, last)
        return incs

    def update_incidents(self, change) -> list[IncidentRecord]:
        with self._lock:
            return self._retrying(lambda: self._update_incidents(change), "incident update")

    def _update_incidents(self, change) -> list[IncidentRecord]:
        db, s = self._writer(), self._s
        with db.transaction(), db.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s::integer, 0)", (_INCIDENT_LOCK_CLASS,))
            cur.execute(f"""SELECT id, kind, scope, start_us, last_us, end_us, detected_us, evidence FROM {s}.incidents
                            WHERE end_us IS NULL ORDER BY id""")
            open_now = [IncidentRecord(*r) for r in cur.fetchall()]
            if open_now:
                cur.execute(f"SELECT incident, agent, first_us, last_us FROM {s}.incident_agents WHERE incident = ANY(%s)",
                            ([i.id for i in open_now],))
                by_id = {i.id: i for i in open_now}
                for inc, a, f, last in cur.fetchall():
                    by_id[inc].agents[a] = (f, last)
            out = change(open_now)
            for inc in out:
                if inc.id is None:
                    cur.execute(
                        f"""INSERT INTO {s}.incidents (kind, scope, start_us, last_us, end_us, detected_us, evidence)
                            VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                        (inc.kind, inc.scope, inc.start_us, inc.last_us, inc.end_us, inc.detected_us, inc.evidence))
                    inc.id = cur.fetchone()[0]
                else:
                    cur.execute(f"UPDATE {s}.incidents SET start_us = %s, last_us = %s, end_us = %s, evidence = %s WHERE id = %s",
                                (inc.start_us, inc.last_us, inc.end_us, inc.evidence, inc.id))
                if inc.agents:
                    cur.executemany(
                        f"""INSERT INTO {s}.incident_agents (incident, agent, first_us, last_us) VALUES (%s, %s, %s, %s)
                            ON CONFLICT (incident, agent) DO UPDATE SET
                              first_us = LEAST({s}.incident_agents.first_us, excluded.first_us),
                              last_us = GREATEST({s}.incident_agents.last_us, excluded.last_us)""",
                        [(inc.id, a, f, last) for a, (f, last) in inc.agents.items()])
        return out

    def delete_raw_before(self, cutoff_us: int, limit: int) -> int:
        for kind in RAW_TABLES:
            n = self.delete_kind_before(kind, cutoff_us, limit)
            if n:
                return n
        return 0

    def delete_kind_before(self, kind: str, cutoff_us: int, limit: int) -> int:
        table, col = RAW_TABLES[kind]
        return self._delete_chunk(
            f"""DELETE FROM {self._s}.{table} WHERE ctid = ANY(ARRAY(
                  SELECT ctid FROM {self._s}.{table} WHERE {col} < %s LIMIT %s))""", (cutoff_us, limit))

    def delete_rollups_before(self, cutoff_us: int, limit: int) -> int:
        s = self._s
        n = self._delete_chunk(
            f"""DELETE FROM {s}.rollups WHERE ctid = ANY(ARRAY(
                  SELECT ctid FROM {s}.rollups WHERE minute_us < %s LIMIT %s))""", (cutoff_us, limit))
        if n:
            return n
        for table in KEPT_TABLES:
            n = self._delete_chunk(
                f"""DELETE FROM {s}.{table} WHERE ctid = ANY(ARRAY(
                      SELECT ctid FROM {s}.{table} WHERE minute_us < %s LIMIT %s))""", (cutoff_us, limit))
            if n:
                return n
        return self._delete_chunk(
            f"""DELETE FROM {s}.incidents WHERE id IN (
                  SELECT id FROM {s}.incidents WHERE end_us IS NOT NULL AND end_us < %s LIMIT %s)""", (cutoff_us, limit))

    def _delete_chunk(self, sql: str, args: tuple) -> int:
        """One bounded delete in its own short transaction on the writer connection."""
        def run() -> int:
            db = self._writer()
            with db.transaction():
                return db.execute(sql, args).rowcount
        with self._lock:
            return self._retrying(run, "retention delete")

    def series_methods(self, agent_key: int, kind: str) -> dict[str, set[str]]:
        """Target -> the measuring methods of its series (the lookup's long windows read no raw rows)."""
        got = self._query(f"SELECT target, method FROM {self._s}.series WHERE agent = %s AND kind = %s", [agent_key, kind])
        out: dict[str, set[str]] = {}
        for t, m in got:
            out.setdefault(t, set()).add(m)
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                return
