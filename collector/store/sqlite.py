"""SQLite store: WAL with synchronous=FULL, so an ack means the batch survives power loss.
One connection writes (the ingest writer thread); lookups open their own
read connections, which WAL lets run beside the writer.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from itertools import groupby

from cxpulse.v1.kinds import KINDS, STR
from cxpulse.v1.payload import Event, PathHop, PathSnapshot, SampleBatch

from . import late_writes, raw, sealed, tiers
from . import rollup as ru
from .commit_plan import mark_keys, plan_commit, to_signed64
from .db import WRITER_PRAGMAS, connect_sqlite
from .types import (
    KEPT_TABLES,
    RAW_TABLES,
    AgentInfo,
    AgentRecord,
    IncidentRecord,
    KeptTables,
    PendingBatch,
    Row,
    RttRow,
    UserChange,
    search_words,
    user_key,
)

# 2: the raw tier (issue 19): batches land in ``batches``, settled hours become ``chunks``; a collector
# of version 1 would not see them, so it refuses the file. 3: late writes are marked (store/late_writes.py);
# a collector of version 2 would write late minutes without a mark.
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (
    key INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL DEFAULT '',
    os_user TEXT NOT NULL DEFAULT '',
    os TEXT NOT NULL DEFAULT '',
    agent_version TEXT NOT NULL DEFAULT '',
    site TEXT NOT NULL DEFAULT '',
    first_seen_us INTEGER NOT NULL,
    last_seen_us INTEGER NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    user_key TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS agent_users (
    agent INTEGER NOT NULL REFERENCES agents(key),
    since_us INTEGER NOT NULL,
    os_user TEXT NOT NULL,
    display_name TEXT NOT NULL,
    user_key TEXT NOT NULL,
    PRIMARY KEY (agent, since_us)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seqs (
    agent INTEGER NOT NULL REFERENCES agents(key),
    epoch INTEGER NOT NULL,
    committed_seq INTEGER NOT NULL,
    PRIMARY KEY (agent, epoch)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    agent INTEGER NOT NULL REFERENCES agents(key),
    target TEXT NOT NULL,
    address TEXT NOT NULL,
    kind TEXT NOT NULL,
    method TEXT NOT NULL,
    hop INTEGER NOT NULL DEFAULT 0,
    UNIQUE (agent, target, address, kind, method, hop)
);
CREATE TABLE IF NOT EXISTS events (
    agent INTEGER NOT NULL REFERENCES agents(key),
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER,
    severity INTEGER NOT NULL,
    evidence TEXT NOT NULL,
    PRIMARY KEY (agent, id)
);
CREATE INDEX IF NOT EXISTS events_by_agent_time ON events (agent, start_us);
CREATE TABLE IF NOT EXISTS paths (
    agent INTEGER NOT NULL REFERENCES agents(key),
    target TEXT NOT NULL,
    address TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    method TEXT NOT NULL,
    reached INTEGER NOT NULL,
    hops TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS paths_by_agent_time ON paths (agent, ts_us);
"""

# Issue 4: per-minute rollups (merged in the commit that writes their samples) and incidents.
# Additive tables: a database of an older collector gains them at open.
_ROLLUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollups (
    agent INTEGER NOT NULL,
    minute_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    hop INTEGER NOT NULL DEFAULT 0,
    n INTEGER NOT NULL DEFAULT 0,
    data BLOB NOT NULL,
    PRIMARY KEY (agent, minute_us, kind, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollups_by_minute ON rollups (minute_us);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    last_us INTEGER NOT NULL,
    end_us INTEGER,
    detected_us INTEGER NOT NULL,
    evidence TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS incidents_by_time ON incidents (start_us);
CREATE TABLE IF NOT EXISTS incident_agents (
    incident INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    agent INTEGER NOT NULL,
    first_us INTEGER NOT NULL,
    last_us INTEGER NOT NULL,
    PRIMARY KEY (incident, agent)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS incident_agents_by_agent ON incident_agents (agent);
"""

# Issue 19: 15-minute rollups settled from the minute ones (kept after those expire), and the marks
# that say how far settling got and below which minute rollups may be gone (docs/storage.md).
_TIER_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollups_15m (
    agent INTEGER NOT NULL,
    minute_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    hop INTEGER NOT NULL DEFAULT 0,
    n INTEGER NOT NULL DEFAULT 0,
    data BLOB NOT NULL,
    PRIMARY KEY (agent, minute_us, kind, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollups_15m_by_minute ON rollups_15m (minute_us);
CREATE TABLE IF NOT EXISTS rollup_marks (name TEXT PRIMARY KEY, at_us INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rollup_hours (
    agent INTEGER NOT NULL,
    start_us INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (agent, start_us)
);
CREATE INDEX IF NOT EXISTS rollup_hours_by_start ON rollup_hours (start_us);
CREATE TABLE IF NOT EXISTS block_days (
    agent INTEGER NOT NULL,
    start_us INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (agent, start_us)
);
CREATE INDEX IF NOT EXISTS block_days_by_start ON block_days (start_us);
CREATE TABLE IF NOT EXISTS kept_score_hours (
    agent INTEGER NOT NULL,
    start_us INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (agent, start_us)
);
CREATE INDEX IF NOT EXISTS kept_score_hours_by_start ON kept_score_hours (start_us);
CREATE TABLE IF NOT EXISTS kept_merge_days (
    agent INTEGER NOT NULL,
    start_us INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (agent, start_us)
);
CREATE INDEX IF NOT EXISTS kept_merge_days_by_start ON kept_merge_days (start_us);
CREATE TABLE IF NOT EXISTS kept_hour_merge_days (
    agent INTEGER NOT NULL,
    start_us INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (agent, start_us)
);
CREATE INDEX IF NOT EXISTS kept_hour_merge_days_by_start ON kept_hour_merge_days (start_us);
-- store/late_writes.py: AUTOINCREMENT, because a mark is forgotten by its id and an id must never come back
CREATE TABLE IF NOT EXISTS late_writes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent INTEGER NOT NULL,
    lo_us INTEGER NOT NULL,
    hi_us INTEGER NOT NULL,
    at_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS late_writes_by_agent ON late_writes (agent, lo_us);
"""

# Issue 19: the raw tier (docs/storage-chunks.md). A committed batch lands as one row of its payload
# bytes; compaction folds settled hours into one chunk per series and hour. The samples_* tables
# keep what an older collector wrote until compaction has folded it.
_RAW_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    agent INTEGER NOT NULL REFERENCES agents(key),
    epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    committed_us INTEGER NOT NULL,
    n INTEGER NOT NULL,
    payload BLOB NOT NULL,
    UNIQUE (agent, epoch, seq)
);
CREATE INDEX IF NOT EXISTS batches_by_agent_time ON batches (agent, start_us);
CREATE INDEX IF NOT EXISTS batches_by_end ON batches (end_us);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    series INTEGER NOT NULL REFERENCES series(id),
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_series_time ON chunks (series, start_us);
CREATE INDEX IF NOT EXISTS chunks_by_end ON chunks (end_us);
"""


def _kind_tables() -> str:
    """One samples table per series kind, columns as the payload's kind table says."""
    out = []
    for kind, cols in KINDS.items():
        defs = ", ".join(f'"{c}" {"TEXT" if t == STR else "INTEGER"}' for c, t in cols.items())
        out.append(
            f"CREATE TABLE IF NOT EXISTS samples_{kind} (series INTEGER NOT NULL, ts_us INTEGER NOT NULL, {defs});"
        )
        out.append(f"CREATE INDEX IF NOT EXISTS samples_{kind}_by_series_time ON samples_{kind} (series, ts_us);")
    return "\n".join(out)


def _add_kind_columns(db: sqlite3.Connection) -> None:
    """Databases made before a kind gained a column (kinds.ADDED_COLUMNS: the device sample's own
    traffic, issue 17): add it, nullable, in place; rows stored before read it as null."""
    for kind, cols in KINDS.items():
        have = {r[1] for r in db.execute(f"PRAGMA table_info(samples_{kind})")}
        for c, t in cols.items():
            if c not in have:
                db.execute(f'ALTER TABLE samples_{kind} ADD COLUMN "{c}" {"TEXT" if t == STR else "INTEGER"}')


def _late_seq(db: sqlite3.Connection) -> int:
    """The highest late-write mark id ever handed out (AUTOINCREMENT's counter; 0: none yet)."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'late_writes'").fetchone()
    return int(row[0]) if row else 0


def _keep_sql(table: str) -> str:
    """Write a kept row (score/kept.py's caches), replacing the one of the same agent and minute."""
    return f"""INSERT INTO {table} (agent, minute_us, digest, data) VALUES (?, ?, ?, ?)
               ON CONFLICT (agent, minute_us) DO UPDATE SET digest = excluded.digest, data = excluded.data"""


def _kept_tables() -> str:
    """score/kept.py's caches: one row per agent and minute (or block start), digest and data."""
    return "".join(
        f"CREATE TABLE IF NOT EXISTS {t} (agent INTEGER NOT NULL, minute_us INTEGER NOT NULL, "
        "digest BLOB NOT NULL, data BLOB NOT NULL, PRIMARY KEY (agent, minute_us)) WITHOUT ROWID;"
        for t in KEPT_TABLES
    )


def _insert_sql(kind: str) -> str:
    cols = list(KINDS[kind])
    names = ", ".join(f'"{c}"' for c in cols)
    return f"INSERT INTO samples_{kind} (series, ts_us, {names}) VALUES (?, ?{', ?' * len(cols)})"


_INSERT_LANDING = """INSERT INTO batches (agent, epoch, seq, start_us, end_us, committed_us, n, payload)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
_MIGRATION_MARK = "raw_migration"  # meta: '<series>:<hour_us>', where the walk over legacy rows resumes
_MIGRATION_ROWS = "raw_migration_rows"  # meta: '<legacy rows at the start (estimate)>:<rows folded since>'
MAX_SERIES_PER_STEP = 2_000  # series a compaction step looks at for legacy rows (index seeks, ~30 us each)
MAX_LANDING_PER_STEP = 200  # landing rows a compaction step folds at most
CHUNK_DELETE_ROWS = 500  # chunk rows a retention step deletes at most: an hour's chunk is a few pages

_AGENT_COLUMNS = "key, agent_id, host, os_user, os, agent_version, site, display_name, first_seen_us, last_seen_us"
MAX_USER_CHANGES = 1000  # per lookup window: a hot desk sees a few a day


def _agent_record(r: tuple) -> AgentRecord:
    return AgentRecord(r[0], AgentInfo(*r[1:8]), r[8], r[9])


def _add_user_columns(db: sqlite3.Connection) -> None:
    """Databases made before display names: add the columns (SQLite adds a column in place) and fill
    the search key of the agents already known."""
    have = {r[1] for r in db.execute("PRAGMA table_info(agents)")}
    for column in ("display_name", "user_key"):
        if column not in have:
            db.execute(f"ALTER TABLE agents ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
    if "user_key" not in have:
        rows = db.execute("SELECT key, os_user, display_name FROM agents").fetchall()
        db.executemany("UPDATE agents SET user_key = ? WHERE key = ?", [(user_key(u, d), k) for k, u, d in rows])


def _user_words_sql(words: list[str], first: int) -> tuple[str, list[str]]:
    """SQL true when every word is in the agent's user key, now or in a recorded change."""
    if not words:
        return "", []
    now = " AND ".join(f"agents.user_key LIKE ?{first + i}" for i in range(len(words)))
    then = " AND ".join(f"u.user_key LIKE ?{first + i}" for i in range(len(words)))
    return f" OR ({now}) OR EXISTS (SELECT 1 FROM agent_users u WHERE u.agent = agents.key AND {then})", words


class SqliteStore(KeptTables):
    def __init__(self, path: str):
        self.path = path
        self._db = self._connect()
        self._lock = threading.Lock()
        self._series_cache: dict[tuple[int, str, str, str, str, int], int] = {}
        with self._db:
            self._db.executescript(
                _SCHEMA + _kind_tables() + _ROLLUP_SCHEMA + _TIER_SCHEMA + _RAW_SCHEMA + _kept_tables()
            )
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise RuntimeError(
                    f"database {path} has schema version {row[0]}, newer than this collector's {SCHEMA_VERSION}"
                )
            elif int(row[0]) < SCHEMA_VERSION:  # the additive tables above are its migration
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            _add_user_columns(self._db)
            _add_kind_columns(self._db)

    def _connect(self) -> sqlite3.Connection:
        return connect_sqlite(self.path, WRITER_PRAGMAS)

    # -- writes (one thread at a time; the ingest writer serializes them) --

    def upsert_agent(self, info: AgentInfo, now_us: int) -> int:
        """Create or refresh the agent from its Hello; a changed desk user is recorded in agent_users.

        A Hello without a user (nobody logged on) keeps the last user on the agent, so the helpdesk
        still finds the desk by the name of whoever used it last; the change itself is recorded.
        """
        key_text = user_key(info.os_user, info.display_name)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    """INSERT INTO agents (agent_id, host, os_user, os, agent_version, site, first_seen_us,
                                           last_seen_us,
                                           display_name, user_key)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (agent_id) DO UPDATE SET host=excluded.host, os=excluded.os,
                         agent_version=excluded.agent_version, site=excluded.site, last_seen_us=excluded.last_seen_us,
                         os_user=CASE WHEN excluded.os_user = '' THEN agents.os_user ELSE excluded.os_user END,
                         display_name=CASE WHEN excluded.os_user = '' THEN agents.display_name
                                           ELSE excluded.display_name END,
                         user_key=CASE WHEN excluded.os_user = '' THEN agents.user_key ELSE excluded.user_key END""",
                    (
                        info.agent_id,
                        info.host,
                        info.os_user,
                        info.os,
                        info.agent_version,
                        info.site,
                        now_us,
                        now_us,
                        info.display_name,
                        key_text,
                    ),
                )
                key = self._db.execute("SELECT key FROM agents WHERE agent_id=?", (info.agent_id,)).fetchone()[0]
                last = self._db.execute(
                    """SELECT os_user, display_name FROM agent_users WHERE agent = ?
                                           ORDER BY since_us DESC LIMIT 1""",
                    (key,),
                ).fetchone()
                if last is None or tuple(last) != (info.os_user, info.display_name):
                    self._db.execute(
                        "INSERT OR REPLACE INTO agent_users VALUES (?, ?, ?, ?, ?)",
                        (key, now_us, info.os_user, info.display_name, key_text),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return key

    def committed_seq(self, agent_key: int, epoch: int) -> int:
        row = self._db.execute(
            "SELECT committed_seq FROM seqs WHERE agent=? AND epoch=?", (agent_key, to_signed64(epoch))
        ).fetchone()
        return row[0] if row else 0

    def commit_batches(self, batches: list[PendingBatch], now_us: int | None = None) -> None:
        """Store the batches in one transaction; with ``now_us``, the senders' last_seen moves up to it.

        The ingest writer passes its clock: last_seen then advances with every commit (one UPDATE for
        all agents of the group, in the same transaction), not only at connect, so a desk that streams
        for hours is "reporting", not "silent". Without ``now_us`` (tests, scenario loaders that write
        old data) last_seen is left as the agent's Hello set it.
        """
        if not batches:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                marks: dict[tuple[int, int], int] = {}
                for k in mark_keys(batches):
                    r = db.execute("SELECT committed_seq FROM seqs WHERE agent=? AND epoch=?", k).fetchone()
                    marks[k] = r[0] if r else 0
                plan = plan_commit(batches, marks)
                plan.apply(batches)
                committed_us = now_us if now_us is not None else time.time_ns() // 1000
                landing: list[tuple] = []
                for b in plan.written:
                    for s in b.batch.series:  # series rows exist before their samples are read or compacted
                        self._series_id(b.agent_key, s.target, s.address, s.kind, s.method, s.hop or 0)
                    rec = raw.landing_record(b)
                    if rec is not None:
                        start, end, n, data = rec
                        landing.append((b.agent_key, to_signed64(b.epoch), b.seq, start, end, committed_us, n, data))
                paths = [
                    (
                        b.agent_key,
                        p.target,
                        p.address,
                        p.ts_us,
                        p.method,
                        int(p.reached),
                        json.dumps([[h.ttl, h.address, h.rtt_us] for h in p.hops]),
                    )
                    for b in plan.written
                    for p in b.batch.paths
                ]
                db.executemany(_INSERT_LANDING, landing)
                # An event is sent when it opens and again when it closes: keep the latest state.
                db.executemany(
                    """INSERT INTO events (agent, id, kind, target, start_us, end_us, severity, evidence)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (agent, id) DO UPDATE SET kind=excluded.kind, end_us=excluded.end_us,
                         severity=max(severity, excluded.severity), evidence=excluded.evidence""",
                    plan.event_rows(),
                )
                db.executemany("INSERT INTO paths VALUES (?, ?, ?, ?, ?, ?, ?)", paths)
                self._write_rollups(db, plan.rollup_input(), committed_us)
                db.executemany(
                    """INSERT INTO seqs (agent, epoch, committed_seq) VALUES (?, ?, ?)
                       ON CONFLICT (agent, epoch) DO UPDATE SET committed_seq=excluded.committed_seq""",
                    [(a, e, s) for (a, e), s in plan.marks.items()],
                )
                if now_us is not None:
                    # A replayed (already stored) batch counts too: the agent did talk to us just now.
                    db.execute(
                        "UPDATE agents SET last_seen_us = max(last_seen_us, ?) "
                        "WHERE key IN (SELECT value FROM json_each(?))",
                        (now_us, json.dumps(plan.agents)),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._series_cache.clear()  # ids created inside the rolled-back transaction are gone
                for b in batches:
                    b.stored = None
                raise

    def _write_rollups(self, db: sqlite3.Connection, written: list[tuple[int, SampleBatch]], now_us: int) -> None:
        """Merge this commit's rollups into the stored ones, in the commit's own transaction, and
        mark the minutes written late (store/late_writes.py; ``now_us``: the commit's clock).

        Read-modify-write is safe here: the transaction is BEGIN IMMEDIATE, so no other writer
        (another collector process on the same file included) runs between the read and the write.
        """
        parts, spans = ru.commit_work(written)
        by_agent: dict[int, list[ru.Rollup]] = {}
        for r in parts.values():
            by_agent.setdefault(r.agent, []).append(r)
        upserts: list[tuple] = []
        hours = sealed.MINUTE_HOURS
        sealed_below = _mark(db, hours.mark)
        for agent, rs in by_agent.items():
            lo, hi = min(r.minute_us for r in rs), max(r.minute_us for r in rs)
            _unseal(db, hours, agent, lo, hi, sealed_below)
            have = {
                (m, kind, target): (hop, data)
                for m, kind, target, hop, data in db.execute(
                    "SELECT minute_us, kind, target, hop, data FROM rollups"
                    " WHERE agent = ? AND minute_us BETWEEN ? AND ? AND kind != ?",
                    (agent, lo, hi, ru.EVENTS),
                )
            }
            for r in rs:
                old = have.get((r.minute_us, r.kind, r.target))
                if old is not None:
                    ru.merge(r, ru.Rollup(agent, r.minute_us, r.kind, r.target, old[0], ru.decode(r.kind, old[1])))
                upserts.append((agent, r.minute_us, r.kind, r.target, r.hop, r.count, ru.encode(r.kind, r.data)))
        deletes: list[tuple] = []
        for agent, span in spans.items():
            open_events = [
                Event(*row)
                for row in db.execute(
                    """SELECT id, kind, target, start_us, end_us, severity, evidence FROM events
                   WHERE agent = ? AND end_us IS NULL AND start_us >= ? AND start_us <= ?""",
                    (agent, span.now_us - ru.OPEN_EVENT_HORIZON_US, span.now_us),
                )
            ]
            minutes = ru.minutes_to_redo(span, open_events)
            if not minutes:
                continue
            _unseal(db, hours, agent, min(minutes), max(minutes), sealed_below)
            lo, hi = min(minutes), max(minutes) + ru.MINUTE_US
            evs = [
                Event(*row)
                for row in db.execute(
                    """SELECT id, kind, target, start_us, end_us, severity, evidence FROM events
                   WHERE agent = ? AND start_us < ? AND start_us >= ? AND (end_us IS NULL OR end_us >= ?)""",
                    (agent, hi, lo - ru.OPEN_EVENT_HORIZON_US, lo),
                )
            ]
            for m, r in ru.event_rollups(agent, evs, minutes, span.now_us).items():
                if r.data["spans"]:
                    upserts.append((agent, m, r.kind, r.target, 0, r.count, ru.encode(r.kind, r.data)))
                else:
                    deletes.append((agent, m, ru.EVENTS, ru.EVENTS_TARGET))
        db.executemany(
            """INSERT INTO rollups (agent, minute_us, kind, target, hop, n, data) VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (agent, minute_us, kind, target) DO UPDATE SET hop = excluded.hop, n = excluded.n,
                 data = excluded.data""",
            upserts,
        )
        db.executemany("DELETE FROM rollups WHERE agent = ? AND minute_us = ? AND kind = ? AND target = ?", deletes)
        db.executemany(
            "INSERT INTO late_writes (agent, lo_us, hi_us, at_us) VALUES (?, ?, ?, ?)",
            late_writes.late_ranges([*upserts, *deletes], now_us),
        )

    def _series_id(self, agent: int, target: str, address: str, kind: str, method: str, hop: int) -> int:
        key = (agent, target, address, kind, method, hop)
        sid = self._series_cache.get(key)
        if sid is None:
            row = self._db.execute(
                "SELECT id FROM series WHERE agent=? AND target=? AND address=? AND kind=? AND method=? AND hop=?", key
            ).fetchone()
            if row is None:
                new = self._db.execute(
                    "INSERT INTO series (agent, target, address, kind, method, hop) VALUES (?, ?, ?, ?, ?, ?)", key
                ).lastrowid
                assert new is not None  # an INSERT into a rowid table always sets it
                sid = new
            else:
                sid = row[0]
            self._series_cache[key] = sid
        return sid

    # -- reads (own connection per call keeps readers off the writer's connection) --

    def find_agents(self, query: str, limit: int = 50) -> list[AgentRecord]:
        like = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        by_words, words = _user_words_sql(search_words(query), 3)
        with self._reader() as db:
            rows = db.execute(
                f"""SELECT {_AGENT_COLUMNS}
                   FROM agents
                   WHERE lower(os_user) LIKE ?1 ESCAPE '\\' OR lower(host) LIKE ?1 ESCAPE '\\'
                      OR lower(agent_id) LIKE ?1 ESCAPE '\\' OR lower(site) LIKE ?1 ESCAPE '\\'{by_words}
                   ORDER BY last_seen_us DESC LIMIT ?2""",
                (like, limit, *words),
            ).fetchall()
        return [_agent_record(r) for r in rows]

    def agent(self, agent_id: str) -> AgentRecord | None:
        with self._reader() as db:
            r = db.execute(f"SELECT {_AGENT_COLUMNS} FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
        return None if r is None else _agent_record(r)

    def user_changes(self, agent_key: int, since_us: int, until_us: int) -> list[UserChange]:
        with self._reader() as db:
            rows = db.execute(
                """SELECT since_us, os_user, display_name FROM agent_users
                   WHERE agent = ?1 AND since_us < ?3
                     AND since_us >= coalesce((SELECT max(since_us) FROM agent_users
                                               WHERE agent = ?1 AND since_us <= ?2), 0)
                   ORDER BY since_us LIMIT ?4""",
                (agent_key, since_us, until_us, MAX_USER_CHANGES),
            ).fetchall()
        return [UserChange(*r) for r in rows]

    def rtt_rows(self, agent_key: int, since_us: int, until_us: int) -> list[RttRow]:
        out: list[RttRow] = []
        for (_, target, address, method, hop), parts in self._series_parts(agent_key, "rtt", since_us, until_us):
            out.extend(raw.rtt_rows_of(target, address, method, hop, parts, since_us, until_us))
        out.sort(key=lambda r: (r.target, r.ts_us))  # stable: series in id order where both are equal
        return out

    def rows(self, agent_key: int, kind: str, since_us: int, until_us: int) -> list[Row]:
        out: list[Row] = []
        for (_, target, address, method, hop), parts in self._series_parts(agent_key, kind, since_us, until_us):
            out.extend(raw.rows_of(kind, target, address, method, hop, parts, since_us, until_us))
        out.sort(key=lambda r: (r.target, r.ts_us))  # stable: series in id order where both are equal
        return out

    def _series_parts(
        self, agent_key: int, kind: str, since_us: int, until_us: int
    ) -> list[tuple[tuple, list[raw.Part]]]:
        """Each series of the agent and kind that has samples in the window, with their parts (legacy
        rows, chunks, landing batches: store/raw.py), read in one transaction, so a compaction step
        committing meanwhile is seen whole or not at all."""
        with self._reader() as db:
            db.execute("BEGIN")
            series = _series_of(db, agent_key, kind)
            parts = _parts(db, agent_key, kind, series, since_us, until_us)
        return [(r, parts[r[0]]) for r in series if parts[r[0]]]

    def events(self, agent_key: int, since_us: int, until_us: int) -> list[Event]:
        """Events that overlap the window (open ones included)."""
        with self._reader() as db:
            got = db.execute(
                """SELECT id, kind, target, start_us, end_us, severity, evidence FROM events
                   WHERE agent = ? AND start_us < ? AND (end_us IS NULL OR end_us >= ?)
                   ORDER BY start_us""",
                (agent_key, until_us, since_us),
            ).fetchall()
        return [Event(*r) for r in got]

    def events_of(self, agent_keys: list[int], since_us: int, until_us: int) -> dict[int, list[Event]]:
        """``events`` of each of these agents (those with none left out), in one statement."""
        with self._reader() as db:
            got = db.execute(
                """SELECT agent, id, kind, target, start_us, end_us, severity, evidence FROM events
                   WHERE agent IN (SELECT value FROM json_each(?)) AND start_us < ?
                     AND (end_us IS NULL OR end_us >= ?)
                   ORDER BY agent, start_us""",
                (json.dumps(list(agent_keys)), until_us, since_us),
            ).fetchall()
        out: dict[int, list[Event]] = {}
        for r in got:
            out.setdefault(r[0], []).append(Event(*r[1:]))
        return out

    def paths(self, agent_key: int, since_us: int, until_us: int) -> list[PathSnapshot]:
        with self._reader() as db:
            got = db.execute(
                """SELECT target, address, ts_us, method, reached, hops FROM paths
                   WHERE agent = ? AND ts_us >= ? AND ts_us < ? ORDER BY ts_us""",
                (agent_key, since_us, until_us),
            ).fetchall()
        return [PathSnapshot(r[0], r[1], r[2], r[3], bool(r[4]), [PathHop(*h) for h in json.loads(r[5])]) for r in got]

    def sample_count(self, agent_key: int | None = None) -> int:
        """Legacy rows, plus the samples of chunks and landing batches (their ``n``)."""
        total = 0
        with self._reader() as db:
            db.execute("BEGIN")
            for kind in KINDS:
                if agent_key is None:
                    total += db.execute(f"SELECT count(*) FROM samples_{kind}").fetchone()[0]
                else:
                    total += db.execute(
                        f"SELECT count(*) FROM samples_{kind} x JOIN series s ON x.series = s.id WHERE s.agent = ?",
                        (agent_key,),
                    ).fetchone()[0]
            if agent_key is None:
                total += db.execute("SELECT coalesce(sum(n), 0) FROM chunks").fetchone()[0]
                total += db.execute("SELECT coalesce(sum(n), 0) FROM batches").fetchone()[0]
            else:
                total += db.execute(
                    "SELECT coalesce(sum(c.n), 0) FROM chunks c JOIN series s ON c.series = s.id WHERE s.agent = ?",
                    (agent_key,),
                ).fetchone()[0]
                total += db.execute("SELECT coalesce(sum(n), 0) FROM batches WHERE agent = ?", (agent_key,)).fetchone()[
                    0
                ]
        return total

    # -- rollups, incidents, retention --

    def all_agents(self) -> list[AgentRecord]:
        with self._reader() as db:
            rows = db.execute(f"SELECT {_AGENT_COLUMNS} FROM agents ORDER BY key").fetchall()
        return [_agent_record(r) for r in rows]

    def rollups(
        self, since_us: int, until_us: int, agent_key: int | None = None, kinds: Sequence[str] | None = None
    ) -> list[ru.Rollup]:
        with self._reader() as db:
            db.execute("BEGIN")  # one snapshot: a sealing step moves rows between the two tables
            floor = _mark(db, tiers.MINUTES_FLOOR)
            marks = {t.rows: _mark(db, t.mark) for t in sealed.TIERS.values()}
            return tiers.tiered(
                since_us,
                until_us,
                floor,
                lambda table, lo, hi: self._read_rollups(db, table, lo, hi, agent_key, kinds, marks.get(table, 0)),
            )

    @staticmethod
    def _read_rollups(
        db: sqlite3.Connection,
        table: str,
        since_us: int,
        until_us: int,
        agent_key: int | None,
        kinds,
        sealed_below: int = 0,
    ) -> list[tuple]:
        sql = f"SELECT agent, minute_us, kind, target, hop, data FROM {table} WHERE minute_us >= ? AND minute_us < ?"
        args: list = [since_us, until_us]
        if agent_key is not None:
            sql += " AND agent = ?"
            args.append(agent_key)
        if kinds is not None:
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args.extend(kinds)
        rows = db.execute(sql + " ORDER BY agent, minute_us, kind, target", args).fetchall()
        tier = sealed.TIERS.get(table)
        if tier is None or since_us >= sealed_below:
            return rows
        sql = f"SELECT agent, start_us, data FROM {tier.table} WHERE start_us >= ? AND start_us < ?"
        args = [tier.start_of(since_us), min(until_us, sealed_below)]
        if agent_key is not None:
            sql += " AND agent = ?"
            args.append(agent_key)
        more = sealed.rows_in(db.execute(sql + " ORDER BY agent, start_us", args), since_us, until_us, kinds)
        return sealed.in_key_order(rows, more)

    def rollup_mark(self, name: str) -> int:
        with self._reader() as db:
            return _mark(db, name)

    def next_rollup_minute(self, since_us: int) -> int | None:
        with self._reader() as db:
            db.execute("BEGIN")
            first = db.execute("SELECT min(minute_us) FROM rollups WHERE minute_us >= ?", (since_us,)).fetchone()[0]
            m = sealed.first_minute(
                db.execute(
                    "SELECT start_us, data FROM rollup_hours WHERE start_us >= ? AND start_us < ? ORDER BY start_us",
                    (raw.hour_of(since_us), 1 << 62 if first is None else first),
                ),
                since_us,
            )
            return first if m is None else m if first is None else min(m, first)

    def write_blocks(self, blocks: list[ru.Rollup]) -> None:
        rows = [(r.agent, r.minute_us, r.kind, r.target, r.hop, r.count, ru.encode(r.kind, r.data)) for r in blocks]
        if not rows:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                days = sealed.BLOCK_DAYS
                below = _mark(db, days.mark)
                for agent, group in groupby(sorted(rows), key=lambda r: r[0]):  # settling again, after sealing
                    ms = [r[1] for r in group]
                    _unseal(db, days, agent, min(ms), max(ms), below)
                db.executemany(
                    """INSERT INTO rollups_15m VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agent, minute_us, kind, target)
                       DO UPDATE SET hop = excluded.hop, n = excluded.n, data = excluded.data""",
                    rows,
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def raise_mark(self, name: str, at_us: int) -> int:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                _raise_mark(db, name, at_us)
                got = _mark(db, name)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return got

    def _kept(
        self, table: str, since_us: int, until_us: int, agent_key: int | None
    ) -> dict[tuple[int, int], tuple[bytes, bytes]]:
        tier = sealed.KEPT[table]
        sql = f"SELECT agent, minute_us, digest, data FROM {table} WHERE minute_us >= ? AND minute_us < ?"
        args: list = [since_us, until_us]
        old = f"SELECT agent, start_us, data FROM {tier.table} WHERE start_us >= ? AND start_us < ?"
        old_args: list = [tier.start_of(since_us), until_us]
        if agent_key is not None:
            sql += " AND agent = ?"
            args.append(agent_key)
            old += " AND agent = ?"
            old_args.append(agent_key)
        with self._reader() as db:
            db.execute("BEGIN")  # one snapshot: a sealing step moves rows between the two tables
            out = sealed.kept_in(db.execute(old, old_args), since_us, until_us)
            out.update({(a, m): (g, d) for a, m, g, d in db.execute(sql, args)})  # a row wins: written later
            return out

    def late_write_seq(self) -> int:
        with self._reader() as db:
            return _late_seq(db)

    def keep_trusted_scores(self, plain: list[tuple], trusted: list[tuple], seq: int) -> bool:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")  # no commit runs between the check and the write
            try:
                ok = _late_seq(db) == seq
                db.executemany(_keep_sql("minute_scores"), trusted if ok else plain)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return ok

    def late_writes(self, since_us: int, until_us: int, agent_key: int | None = None) -> list[late_writes.LateWrite]:
        sql = "SELECT id, agent, lo_us, hi_us FROM late_writes WHERE hi_us >= ? AND lo_us < ?"
        args: list = [since_us, until_us]
        if agent_key is not None:
            sql += " AND agent = ?"
            args.append(agent_key)
        with self._reader() as db:
            return [late_writes.LateWrite(*r) for r in db.execute(sql + " ORDER BY id", args)]

    def forget_late_writes(self, ids: Sequence[int], trim: Sequence[int] = (), from_us: int = 0) -> None:
        if not ids and not trim:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM late_writes WHERE id = ?", [(i,) for i in ids])
                db.executemany(
                    "UPDATE late_writes SET lo_us = max(lo_us, ?) WHERE id = ?", [(from_us, i) for i in trim]
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _keep(self, table: str, rows: list[tuple[int, int, bytes, bytes]]) -> None:
        if not rows:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_keep_sql(table), rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def incidents(self, since_us: int, until_us: int, agent_key: int | None = None) -> list[IncidentRecord]:
        sql = """SELECT id, kind, scope, start_us, last_us, end_us, detected_us, evidence FROM incidents
                 WHERE start_us < ? AND (end_us IS NULL OR end_us >= ?)"""
        args: list = [until_us, since_us]
        if agent_key is not None:
            sql += " AND id IN (SELECT incident FROM incident_agents WHERE agent = ?)"
            args.append(agent_key)
        with self._reader() as db:
            return self._with_agents(db, [IncidentRecord(*r) for r in db.execute(sql + " ORDER BY start_us, id", args)])

    @staticmethod
    def _with_agents(db: sqlite3.Connection, incs: list[IncidentRecord]) -> list[IncidentRecord]:
        for inc in incs:
            inc.agents = {
                a: (f, last)
                for a, f, last in db.execute(
                    "SELECT agent, first_us, last_us FROM incident_agents WHERE incident = ? ORDER BY agent", (inc.id,)
                )
            }
        return incs

    def update_incidents(self, change: Callable[[list[IncidentRecord]], list[IncidentRecord]]) -> list[IncidentRecord]:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                open_now = self._with_agents(
                    db,
                    [
                        IncidentRecord(*r)
                        for r in db.execute(
                            """SELECT id, kind, scope, start_us, last_us, end_us, detected_us, evidence FROM incidents
                       WHERE end_us IS NULL ORDER BY id"""
                        )
                    ],
                )
                out = change(open_now)
                for inc in out:
                    if inc.id is None:
                        inc.id = db.execute(
                            """INSERT INTO incidents (kind, scope, start_us, last_us, end_us, detected_us, evidence)
                               VALUES (?, ?, ?, ?, ?, ?, ?)""",
                            (inc.kind, inc.scope, inc.start_us, inc.last_us, inc.end_us, inc.detected_us, inc.evidence),
                        ).lastrowid
                    else:
                        db.execute(
                            "UPDATE incidents SET start_us = ?, last_us = ?, end_us = ?, evidence = ? WHERE id = ?",
                            (inc.start_us, inc.last_us, inc.end_us, inc.evidence, inc.id),
                        )
                    db.executemany(
                        """INSERT INTO incident_agents (incident, agent, first_us, last_us) VALUES (?, ?, ?, ?)
                           ON CONFLICT (incident, agent) DO UPDATE SET first_us = min(first_us, excluded.first_us),
                             last_us = max(last_us, excluded.last_us)""",
                        [(inc.id, a, f, last) for a, (f, last) in inc.agents.items()],
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return out

    def delete_raw_before(self, cutoff_us: int, limit: int) -> int:
        """Every raw kind, then landing batches that ended before the cutoff (not yet compacted).
        Counts samples: a chunk or landing row counts the samples it held."""
        for kind in RAW_TABLES:
            n = self.delete_kind_before(kind, cutoff_us, limit)
            if n:
                return n
        return self._delete_chunk(
            "DELETE FROM batches WHERE id IN (SELECT id FROM batches WHERE end_us < ? LIMIT ?) RETURNING n",
            (cutoff_us, min(limit, CHUNK_DELETE_ROWS)),
        )

    def delete_kind_before(self, kind: str, cutoff_us: int, limit: int) -> int:
        """Legacy rows first, then chunks whose last sample is older than the cutoff."""
        table, col = RAW_TABLES[kind]
        n = self._delete_chunk(
            f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {col} < ? LIMIT ?)",
            (cutoff_us, limit),
        )
        if n or kind not in KINDS:
            return n
        while self._fold_landing_before(cutoff_us):  # a batch holds every kind: fold it, then cut by kind
            pass
        return self._delete_chunk(
            """DELETE FROM chunks WHERE id IN (SELECT c.id FROM chunks c JOIN series s ON c.series = s.id
               WHERE c.end_us < ? AND s.kind = ? LIMIT ?) RETURNING n""",
            (cutoff_us, kind, min(limit, CHUNK_DELETE_ROWS)),
        )

    def delete_rollups_before(self, cutoff_us: int, limit: int) -> int:
        n = self._delete_chunk(
            """DELETE FROM rollups WHERE (agent, minute_us, kind, target) IN
               (SELECT agent, minute_us, kind, target FROM rollups WHERE minute_us < ? LIMIT ?)""",
            (cutoff_us, limit),
        )
        if n:
            return n
        n = self._delete_chunk(  # whole sealed hours only: readers skip the minutes below the floor
            """DELETE FROM rollup_hours WHERE rowid IN
               (SELECT rowid FROM rollup_hours WHERE start_us <= ? LIMIT ?)""",
            (cutoff_us - raw.HOUR_US, max(1, limit // 60)),
        )
        if n:
            return n
        for table in KEPT_TABLES:
            n = self._delete_chunk(
                f"""DELETE FROM {table} WHERE (agent, minute_us) IN
                    (SELECT agent, minute_us FROM {table} WHERE minute_us < ? LIMIT ?)""",
                (cutoff_us, limit),
            )
            if n:
                return n
            tier = sealed.KEPT[table]
            n = self._delete_chunk(  # whole sealed spans, once all of a span expired
                f"""DELETE FROM {tier.table} WHERE rowid IN
                    (SELECT rowid FROM {tier.table} WHERE start_us <= ? LIMIT ?)""",
                (cutoff_us - tier.span_us, max(1, limit // 60)),
            )
            if n:
                return n
        self._delete_chunk(  # marks of minutes gone, an hour past them (store/late_writes.py); uncounted:
            # few, a mark is not a rollup, and the next run takes what ``limit`` left
            "DELETE FROM late_writes WHERE id IN (SELECT id FROM late_writes WHERE hi_us < ? LIMIT ?)",
            (cutoff_us - raw.HOUR_US, limit),
        )
        return 0

    def delete_blocks_before(self, cutoff_us: int, limit: int) -> int:
        n = self._delete_chunk(
            """DELETE FROM rollups_15m WHERE (agent, minute_us, kind, target) IN
               (SELECT agent, minute_us, kind, target FROM rollups_15m WHERE minute_us < ? LIMIT ?)""",
            (cutoff_us, limit),
        )
        if n:
            return n
        n = self._delete_chunk(  # whole sealed days only: before the cut they are all expired
            """DELETE FROM block_days WHERE rowid IN
               (SELECT rowid FROM block_days WHERE start_us <= ? LIMIT ?)""",
            (cutoff_us - sealed.DAY_US, max(1, limit // 96)),
        )
        if n:
            return n
        return self._delete_chunk(
            """DELETE FROM incidents WHERE id IN
               (SELECT id FROM incidents WHERE end_us IS NOT NULL AND end_us < ? LIMIT ?)""",
            (cutoff_us, limit),
        )

    def _delete_chunk(self, sql: str, args: tuple) -> int:
        """One bounded delete in its own short transaction, so ingest waits at most one chunk.

        Rows deleted, or with ``RETURNING n`` (chunks, landing batches) the samples they held."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(sql, args)
                n = sum(r[0] for r in cur) if "RETURNING n" in sql else cur.rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return n

    def series_methods(self, agent_key: int, kind: str) -> dict[str, set[str]]:
        """Target -> the measuring methods of its series (the lookup's long windows read no raw rows)."""
        with self._reader() as db:
            got = db.execute(
                "SELECT target, method FROM series WHERE agent = ? AND kind = ?", (agent_key, kind)
            ).fetchall()
        out: dict[str, set[str]] = {}
        for t, m in got:
            out.setdefault(t, set()).add(m)
        return out

    def buckets(
        self, agent_key: int, since_us: int, until_us: int, start_us: int, step_us: int
    ) -> tuple[list[tuple], list[tuple]]:
        """Per-bucket sums for the lookup's chart, without a Python object per sample (a day at 1 Hz
        is 260k samples: as Row objects that alone takes longer than the page may).

        Returns (per RTT series: (target, address, hop, [(bucket, samples, answered, rtt sum,
        rtt min, rtt max, |dRTT| sum, |dRTT| pairs)]), Wi-Fi: [(bucket, readings, connected,
        RSSI sum, RSSI count, RSSI min)]); bucket = (ts - start) // step. |dRTT| pairs are
        consecutive answered samples of one series (a lost sample breaks the pair). One read
        transaction; each landing batch decoded once; a series with only legacy rows in the
        window is summed by SQL (a store not yet compacted).
        """
        window = (since_us, until_us)
        with self._reader() as db:
            db.execute("BEGIN")
            series = {kind: _series_of(db, agent_key, kind) for kind in ("rtt", "wifi")}
            new = _new_parts(db, agent_key, series, since_us, until_us)
            rtt: list[tuple] = []
            legacy = _legacy_parts(db, "rtt", [r[0] for r in series["rtt"] if new[r[0]]], since_us, until_us)
            for sid, target, address, _method, hop in series["rtt"]:
                if not new[sid]:
                    rows = db.execute(_SQL_BUCKET_RTT, (sid, *window, start_us, step_us)).fetchall()
                else:
                    s = raw.merged("rtt", [*legacy[sid], *new[sid]], since_us, until_us)
                    rows = raw.rtt_buckets(s.ts_us, s.cols["rtt"], start_us, step_us)
                rtt.append((target, address, hop, rows))
            wifi_ids = [r[0] for r in series["wifi"]]
            if not any(new[sid] for sid in wifi_ids):
                return rtt, db.execute(_SQL_BUCKET_WIFI, (agent_key, *window, start_us, step_us)).fetchall()
            wifi_legacy = _legacy_parts(db, "wifi", wifi_ids, since_us, until_us)
        ts: list[int] = []
        conn: list = []
        rssi: list = []
        for sid in wifi_ids:
            s = raw.merged("wifi", [*wifi_legacy[sid], *new[sid]], since_us, until_us)
            ts += s.ts_us
            conn += s.cols["conn"]
            rssi += s.cols["rssi"]
        return rtt, raw.wifi_buckets(ts, conn, rssi, start_us, step_us)

    # -- the raw tier's compaction (issue 19; store/raw.py, docs/storage-chunks.md) --

    def compact_raw(self, now_us: int, max_rows: int = 20_000) -> raw.CompactStep:
        """One short transaction: legacy rows of settled series-hours into chunks (walking series by
        id from meta 'raw_migration'), else settled landing batches, oldest first; ~``max_rows``."""
        cut = raw.hour_of(now_us - raw.SETTLE_US)  # hours before this one ended SETTLE_US ago
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                step, legacy_idle = self._compact_legacy(db, cut, max_rows)
                if not step.legacy_rows:
                    self._compact_landing(db, step, cut, now_us - raw.SETTLE_US, max_rows)
                    left = db.execute(
                        "SELECT 1 FROM batches WHERE end_us < ? AND committed_us <= ? LIMIT 1",
                        (cut, now_us - raw.SETTLE_US),
                    ).fetchone()
                    step.done = legacy_idle and left is None
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._series_cache.clear()
                raise
        return step

    # -- sealed minute rollups (issue 19; store/sealed.py, docs/storage.md "Sealed hours") --

    def seal_rollups(self, before_us: int, max_rows: int = 20_000, tier: str = tiers.MINUTES) -> int:
        """One short transaction: rollups of ``tier`` in the oldest span (an hour of minutes, a day of
        15-minute rollups) ending by ``before_us``, ~``max_rows`` of them (whole agents but the last),
        into one sealed row per agent-span. Returns the rows sealed; 0 when none is left."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                n = self._seal_step(db, sealed.TIERS[tier], before_us, max_rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return n

    def seal_kept(self, table: str, agent: int, before_us: int, max_rows: int = 20_000) -> int:
        """One short transaction: the agent's kept rows of ``table`` (minute scores, block merges) in
        spans ending by ``before_us``, oldest first, ~``max_rows`` of them, into one sealed row per
        span (per agent: the tables' key leads with the agent). Returns the rows sealed."""
        tier = sealed.KEPT[table]
        cut = tier.start_of(before_us)
        with self._reader() as db:  # most agents, most runs: nothing old, and no write lock taken
            if (
                db.execute(f"SELECT 1 FROM {table} WHERE agent = ? AND minute_us < ? LIMIT 1", (agent, cut)).fetchone()
                is None
            ):
                return 0
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    f"""SELECT minute_us, digest, data FROM {table} WHERE agent = ? AND minute_us < ?
                        ORDER BY minute_us LIMIT ?""",
                    (agent, cut, max_rows),
                ).fetchall()
                for start, group in groupby(rows, key=lambda r: tier.start_of(r[0])):
                    got = db.execute(
                        f"SELECT data FROM {tier.table} WHERE agent = ? AND start_us = ?", (agent, start)
                    ).fetchone()
                    merged = {r[0]: r for r in sealed.unpack(start, got[0])} if got else {}
                    merged.update({r[0]: r for r in group})  # the row was written after the sealed copy
                    db.execute(
                        f"""INSERT INTO {tier.table} (agent, start_us, data) VALUES (?, ?, ?)
                            ON CONFLICT (agent, start_us) DO UPDATE SET data = excluded.data""",
                        (agent, start, sealed.pack(start, tier.span_us, merged.values())),
                    )
                db.executemany(f"DELETE FROM {table} WHERE agent = ? AND minute_us = ?", [(agent, r[0]) for r in rows])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return len(rows)

    @staticmethod
    def _seal_step(db: sqlite3.Connection, tier: sealed.SealedTier, before_us: int, max_rows: int) -> int:
        first = db.execute(
            f"SELECT min(minute_us) FROM {tier.rows} WHERE minute_us < ?", (tier.start_of(before_us),)
        ).fetchone()[0]
        if first is None:
            return 0
        start = tier.start_of(first)
        _raise_mark(db, tier.mark, start + tier.span_us)  # writes from now on check this span
        rows = db.execute(
            f"""SELECT agent, minute_us, kind, target, hop, n, data FROM {tier.rows}
               WHERE minute_us >= ? AND minute_us < ? ORDER BY agent LIMIT ?""",
            (start, start + tier.span_us, max_rows),
        ).fetchall()
        for agent, group in groupby(rows, key=lambda r: r[0]):
            new = [r[1:] for r in group]
            old = db.execute(
                f"SELECT data FROM {tier.table} WHERE agent = ? AND start_us = ?", (agent, start)
            ).fetchone()
            merged = sealed.merge_rows(sealed.unpack(start, old[0]) if old else [], new)
            db.execute(
                f"""INSERT INTO {tier.table} (agent, start_us, data) VALUES (?, ?, ?)
                   ON CONFLICT (agent, start_us) DO UPDATE SET data = excluded.data""",
                (agent, start, tier.pack(start, merged)),
            )
            db.executemany(
                f"DELETE FROM {tier.rows} WHERE agent = ? AND minute_us = ? AND kind = ? AND target = ?",
                [(agent, m, kind, target) for m, kind, target, *_ in new],
            )
        return len(rows)

    def _compact_legacy(self, db: sqlite3.Connection, cut: int, max_rows: int) -> tuple[raw.CompactStep, bool]:
        """Fold legacy rows; also says whether a whole walk over the series found nothing settled."""
        step = raw.CompactStep()
        mark = _meta(db, _MIGRATION_MARK)
        sid, hour = (int(x) for x in mark.split(":")) if mark else (0, 0)
        whole_walk = sid == 0 and hour == 0
        kinds: dict[int, str] = {}
        for _ in range(MAX_SERIES_PER_STEP):
            if step.legacy_rows >= max_rows:
                break
            kind = kinds.get(sid) or (
                (db.execute("SELECT kind FROM series WHERE id = ?", (sid,)).fetchone() or [None])[0] if sid else None
            )
            first = None
            if kind is not None:
                kinds[sid] = kind
                first = db.execute(
                    f"SELECT min(ts_us) FROM samples_{kind} WHERE series = ? AND ts_us >= ? AND ts_us < ?",
                    (sid, hour, cut),
                ).fetchone()[0]
            if first is None:  # this series is done (or has only unsettled rows): the next with legacy rows
                nxt = [
                    db.execute(f"SELECT min(series) FROM samples_{k} WHERE series > ?", (sid,)).fetchone()[0]
                    for k in KINDS
                ]
                sid, hour = min((x for x in nxt if x is not None), default=0), 0
                if sid == 0:  # the walk is over: the next one starts from the first series
                    _set_meta(db, _MIGRATION_MARK, "0:0")
                    return step, whole_walk and not step.legacy_rows
                continue
            assert kind is not None
            h = raw.hour_of(first)
            cols = list(KINDS[kind])
            names = ", ".join(f'"{c}"' for c in cols)
            got = db.execute(
                f"""SELECT ts_us, {names} FROM samples_{kind} WHERE series = ? AND ts_us >= ? AND ts_us < ?
                    ORDER BY ts_us, rowid""",
                (sid, h, h + raw.HOUR_US),
            ).fetchall()
            columns = list(zip(*got))
            step.chunks_written += _write_chunk(db, sid, kind, h, [(columns[0], dict(zip(cols, columns[1:])))], True)
            db.execute(
                f"DELETE FROM samples_{kind} WHERE series = ? AND ts_us >= ? AND ts_us < ?", (sid, h, h + raw.HOUR_US)
            )
            step.legacy_rows += len(got)
            hour = h + raw.HOUR_US
        _set_meta(db, _MIGRATION_MARK, f"{sid}:{hour}")
        if step.legacy_rows:
            total, done = self._migration_rows(db)
            _set_meta(db, _MIGRATION_ROWS, f"{total}:{done + step.legacy_rows}")
        return step, False

    @staticmethod
    def _migration_rows(db: sqlite3.Connection) -> tuple[int, int]:
        """(legacy rows when the migration began (estimate), rows folded since), set on first use."""
        got = _meta(db, _MIGRATION_ROWS)
        if got is not None:
            total, done = (int(x) for x in got.split(":"))
            return total, done
        total = 0
        for kind in KINDS:
            lo, hi = db.execute(f"SELECT min(rowid), max(rowid) FROM samples_{kind}").fetchone()
            total += 0 if lo is None else hi - lo + 1
        _set_meta(db, _MIGRATION_ROWS, f"{total}:0")
        return total, 0

    def _compact_landing(
        self, db: sqlite3.Connection, step: raw.CompactStep, cut: int, committed_before: int, max_rows: int
    ) -> None:
        """Fold settled landing batches, oldest first, into their series-hours' chunks."""
        got = db.execute(
            "SELECT id, agent, n, payload FROM batches WHERE end_us < ? AND committed_us <= ? ORDER BY id LIMIT ?",
            (cut, committed_before, MAX_LANDING_PER_STEP),
        ).fetchall()
        taken: list[int] = []
        samples = 0
        work: dict[tuple[int, int], tuple[str, list[raw.Part]]] = {}
        for bid, agent, n, data in got:
            if taken and samples + n > max_rows:
                break
            taken.append(bid)
            samples += n
            for (target, address, kind, method, hop), (_, ts, cols) in raw.series_samples(data).items():
                sid = self._series_id(agent, target, address, kind, method, hop)
                for h, part in raw.by_hour(ts, cols).items():
                    work.setdefault((sid, h), (kind, []))[1].append(part)
        for (sid, h), (kind, parts) in sorted(work.items()):
            step.chunks_written += _write_chunk(db, sid, kind, h, parts, False)
        db.executemany("DELETE FROM batches WHERE id = ?", [(i,) for i in taken])
        step.landing_rows = len(taken)

    def _fold_landing_before(self, cutoff_us: int) -> int:
        """Fold landing batches that ended before a retention cutoff into chunks (one short
        transaction), so retention can cut them kind by kind; returns how many were folded."""
        step = raw.CompactStep()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                self._compact_landing(db, step, cutoff_us, 1 << 62, 20_000)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._series_cache.clear()
                raise
        return step.landing_rows

    def raw_progress(self) -> raw.RawProgress:
        with self._reader() as db:
            db.execute("BEGIN")
            left = 0
            if any(db.execute(f"SELECT 1 FROM samples_{k} LIMIT 1").fetchone() for k in KINDS):
                got = _meta(db, _MIGRATION_ROWS)
                total, done = (int(x) for x in got.split(":")) if got else (0, 0)
                if got is None:
                    for kind in KINDS:
                        lo, hi = db.execute(f"SELECT min(rowid), max(rowid) FROM samples_{kind}").fetchone()
                        total += 0 if lo is None else hi - lo + 1
                left = max(1, total - done)
            return raw.RawProgress(
                legacy_rows_left=left,
                landing_rows=db.execute("SELECT count(*) FROM batches").fetchone()[0],
                chunks=db.execute("SELECT count(*) FROM chunks").fetchone()[0],
            )

    def _reader(self):
        return _Reader(self.path)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _series_of(db: sqlite3.Connection, agent_key: int, kind: str) -> list[tuple[int, str, str, str, int]]:
    """(id, target, address, method, hop) of the agent's series of one kind, by id."""
    return db.execute(
        "SELECT id, target, address, method, hop FROM series WHERE agent = ? AND kind = ? ORDER BY id",
        (agent_key, kind),
    ).fetchall()


def _parts(
    db: sqlite3.Connection,
    agent_key: int,
    kind: str,
    series: list[tuple[int, str, str, str, int]],
    since_us: int,
    until_us: int,
) -> dict[int, list[raw.Part]]:
    """Per series id, its samples' sources in [since, until) in precedence order (raw.rows_of):
    legacy rows, then chunks by id, then landing batches by id."""
    legacy = _legacy_parts(db, kind, [r[0] for r in series], since_us, until_us)
    new = _new_parts(db, agent_key, {kind: series}, since_us, until_us)
    return {sid: [*legacy[sid], *new[sid]] for sid in legacy}


def _legacy_parts(
    db: sqlite3.Connection, kind: str, ids: list[int], since_us: int, until_us: int
) -> dict[int, list[raw.Part]]:
    """Per series id, its legacy samples_* rows in [since, until) as one (timestamps, columns) part."""
    parts: dict[int, list[raw.Part]] = {sid: [] for sid in ids}
    if not ids:
        return parts
    cols = list(KINDS[kind])
    names = ", ".join(f'"{c}"' for c in cols)
    got = db.execute(
        f"""SELECT series, ts_us, {names} FROM samples_{kind}
            WHERE series IN ({", ".join(str(int(i)) for i in ids)}) AND ts_us >= ? AND ts_us < ?
            ORDER BY series, ts_us, rowid""",
        (since_us, until_us),
    ).fetchall()
    for sid, grp in groupby(got, key=lambda r: r[0]):
        columns = list(zip(*grp))
        parts[sid].append((columns[1], dict(zip(cols, columns[2:]))))
    return parts


def _new_parts(
    db: sqlite3.Connection,
    agent_key: int,
    series: dict[str, list[tuple[int, str, str, str, int]]],
    since_us: int,
    until_us: int,
) -> dict[int, list[raw.Part]]:
    """Per series id (of the kinds given), its chunks by id then its landing batches by id that
    reach into [since, until); each landing payload decoded once for all the kinds."""
    parts: dict[int, list[raw.Part]] = {r[0]: [] for rows in series.values() for r in rows}
    if not parts:
        return parts
    ids = ", ".join(str(int(sid)) for sid in parts)
    for sid, data in db.execute(
        f"""SELECT series, data FROM chunks WHERE series IN ({ids})
            AND start_us < ? AND start_us >= ? AND end_us >= ? ORDER BY series, id""",
        (until_us, since_us - raw.HOUR_US, since_us),
    ):
        parts[sid].append(data)
    by_key = {(t, a, kind, m, h): sid for kind, rows in series.items() for sid, t, a, m, h in rows}
    for (data,) in db.execute(
        "SELECT payload FROM batches WHERE agent = ? AND start_us < ? AND end_us >= ? ORDER BY id",
        (agent_key, until_us, since_us),
    ):
        for key, (_, ts, values) in raw.landing_samples(data).items():
            sid = by_key.get(key)
            if sid is not None:
                parts[sid].append((ts, values))
    return parts


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _write_chunk(db: sqlite3.Connection, sid: int, kind: str, hour_us: int, new: list[raw.Part], first: bool) -> int:
    """Fold ``new`` samples into the series-hour's chunk (rewritten as one row); returns chunks written.

    ``first``: the new samples come before the chunk's in precedence (legacy rows), else after."""
    old = db.execute(
        "SELECT id, data FROM chunks WHERE series = ? AND start_us >= ? AND start_us < ? ORDER BY id",
        (sid, hour_us, hour_us + raw.HOUR_US),
    ).fetchall()
    have: list[raw.Part] = [data for _, data in old]
    got = raw.fold_parts(kind, [*new, *have] if first else [*have, *new])
    db.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i, _ in old])
    if got is None:
        return 0
    db.execute("INSERT INTO chunks (series, start_us, end_us, n, data) VALUES (?, ?, ?, ?, ?)", (sid, *got))
    return 1


def _unseal(
    db: sqlite3.Connection, tier: sealed.SealedTier, agent: int, lo_us: int, hi_us: int, sealed_below: int
) -> None:
    """Move the agent's sealed spans holding minutes [lo, hi] back to the tier's rows (bytes
    unchanged) before a write merges into them, so each rollup key is in one place only."""
    for start in tier.touched(lo_us, hi_us, sealed_below):
        got = db.execute(
            f"DELETE FROM {tier.table} WHERE agent = ? AND start_us = ? RETURNING data", (agent, start)
        ).fetchall()
        if not got:
            continue
        row = got[0]
        db.executemany(
            f"""INSERT INTO {tier.rows} (agent, minute_us, kind, target, hop, n, data) VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (agent, minute_us, kind, target) DO NOTHING""",
            [(agent, *r) for r in sealed.unpack(start, row[0])],
        )


def _mark(db: sqlite3.Connection, name: str) -> int:
    row = db.execute("SELECT at_us FROM rollup_marks WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def _raise_mark(db: sqlite3.Connection, name: str, at_us: int) -> None:
    """Marks only move forward: a slower collector settling the same block cannot move one back."""
    db.execute(
        """INSERT INTO rollup_marks (name, at_us) VALUES (?, ?)
           ON CONFLICT (name) DO UPDATE SET at_us = max(at_us, excluded.at_us)""",
        (name, at_us),
    )


_SQL_BUCKET_RTT = """SELECT b, count(*), count(rtt), total(rtt), min(rtt), max(rtt), total(d), count(d) FROM (
                       SELECT (ts_us - ?4) / ?5 AS b, rtt, abs(rtt - lag(rtt) OVER (ORDER BY ts_us)) AS d
                       FROM samples_rtt WHERE series = ?1 AND ts_us >= ?2 AND ts_us < ?3)
                     GROUP BY b"""
_SQL_BUCKET_WIFI = """SELECT (x.ts_us - ?4) / ?5 AS b, count(*), count(CASE WHEN x.conn THEN 1 END),
                             total(CASE WHEN x.conn THEN x.rssi END), count(CASE WHEN x.conn THEN x.rssi END),
                             min(CASE WHEN x.conn THEN x.rssi END)
                      FROM series s JOIN samples_wifi x ON x.series = s.id
                      WHERE s.agent = ?1 AND s.kind = 'wifi' AND x.ts_us >= ?2 AND x.ts_us < ?3
                      GROUP BY b"""


class _Reader:
    def __init__(self, path: str):
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        self.db = sqlite3.connect(
            f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=ro", uri=True, timeout=30
        )
        self.db.execute("PRAGMA busy_timeout=30000")
        return self.db

    def __exit__(self, *exc) -> None:
        self.db.close()
