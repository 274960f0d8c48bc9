"""SQLite store: WAL with synchronous=FULL, so an ack means the batch survives power loss.

One connection writes (the ingest writer thread); lookups open their own
read connections, which WAL lets run beside the writer.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse

from . import AgentInfo, AgentRecord, PendingBatch, RttRow

SCHEMA_VERSION = 1

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
    last_seen_us INTEGER NOT NULL
);
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
    UNIQUE (agent, target, address, kind, method)
);
CREATE TABLE IF NOT EXISTS samples (
    series INTEGER NOT NULL,
    ts_us INTEGER NOT NULL,
    rtt_us INTEGER
);
CREATE INDEX IF NOT EXISTS samples_by_series_time ON samples (series, ts_us);
"""


def to_signed64(v: int) -> int:
    """SQLite integers are signed 64-bit; the wire's uint64 epoch is stored reinterpreted."""
    return v - (1 << 64) if v >= (1 << 63) else v


class SqliteStore:
    def __init__(self, path: str):
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        self._db = self._connect()
        self._lock = threading.Lock()
        self._series_cache: dict[tuple[int, str, str, str, str], int] = {}
        with self._db:
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise RuntimeError(
                    f"database {path} has schema version {row[0]}, newer than this collector's {SCHEMA_VERSION}"
                )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=30000")
        return db

    # -- writes (one thread at a time; the ingest writer serializes them) --

    def upsert_agent(self, info: AgentInfo, now_us: int) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    """INSERT INTO agents (agent_id, host, os_user, os, agent_version, site, first_seen_us, last_seen_us)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (agent_id) DO UPDATE SET host=excluded.host, os_user=excluded.os_user,
                         os=excluded.os, agent_version=excluded.agent_version, site=excluded.site,
                         last_seen_us=excluded.last_seen_us""",
                    (info.agent_id, info.host, info.os_user, info.os, info.agent_version, info.site, now_us, now_us),
                )
                key = self._db.execute("SELECT key FROM agents WHERE agent_id=?", (info.agent_id,)).fetchone()[0]
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

    def commit_batches(self, batches: list[PendingBatch]) -> None:
        if not batches:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                committed: dict[tuple[int, int], int] = {}
                rows: list[tuple[int, int, int | None]] = []
                for b in batches:
                    k = (b.agent_key, to_signed64(b.epoch))
                    if k not in committed:
                        r = db.execute("SELECT committed_seq FROM seqs WHERE agent=? AND epoch=?", k).fetchone()
                        committed[k] = r[0] if r else 0
                    if b.seq <= committed[k]:
                        b.stored = False
                    else:
                        for s in b.batch.series:
                            sid = self._series_id(b.agent_key, s.target, s.address, s.kind, s.method)
                            rows.extend(zip([sid] * len(s.ts_us), s.ts_us, s.rtt_us))
                        committed[k] = b.seq
                        b.stored = True
                    b.committed_seq = committed[k]
                db.executemany("INSERT INTO samples (series, ts_us, rtt_us) VALUES (?, ?, ?)", rows)
                db.executemany(
                    """INSERT INTO seqs (agent, epoch, committed_seq) VALUES (?, ?, ?)
                       ON CONFLICT (agent, epoch) DO UPDATE SET committed_seq=excluded.committed_seq""",
                    [(a, e, s) for (a, e), s in committed.items()],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._series_cache.clear()  # ids created inside the rolled-back transaction are gone
                for b in batches:
                    b.stored = None
                raise

    def _series_id(self, agent: int, target: str, address: str, kind: str, method: str) -> int:
        key = (agent, target, address, kind, method)
        sid = self._series_cache.get(key)
        if sid is None:
            row = self._db.execute(
                "SELECT id FROM series WHERE agent=? AND target=? AND address=? AND kind=? AND method=?", key
            ).fetchone()
            if row is None:
                sid = self._db.execute(
                    "INSERT INTO series (agent, target, address, kind, method) VALUES (?, ?, ?, ?, ?)", key
                ).lastrowid
            else:
                sid = row[0]
            self._series_cache[key] = sid
        return sid

    # -- reads (own connection per call keeps readers off the writer's connection) --

    def find_agents(self, query: str, limit: int = 50) -> list[AgentRecord]:
        like = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._reader() as db:
            rows = db.execute(
                """SELECT key, agent_id, host, os_user, os, agent_version, site, first_seen_us, last_seen_us
                   FROM agents
                   WHERE lower(os_user) LIKE ?1 ESCAPE '\\' OR lower(host) LIKE ?1 ESCAPE '\\'
                      OR lower(agent_id) LIKE ?1 ESCAPE '\\' OR lower(site) LIKE ?1 ESCAPE '\\'
                   ORDER BY last_seen_us DESC LIMIT ?2""",
                (like, limit),
            ).fetchall()
        return [AgentRecord(r[0], AgentInfo(*r[1:7]), r[7], r[8]) for r in rows]

    def rtt_rows(self, agent_key: int, since_us: int, until_us: int) -> list[RttRow]:
        with self._reader() as db:
            rows = db.execute(
                """SELECT s.target, s.address, s.method, x.ts_us, x.rtt_us
                   FROM series s JOIN samples x ON x.series = s.id
                   WHERE s.agent = ? AND s.kind = 'rtt' AND x.ts_us >= ? AND x.ts_us < ?
                   ORDER BY s.target, x.ts_us""",
                (agent_key, since_us, until_us),
            ).fetchall()
        return [RttRow(*r) for r in rows]

    def sample_count(self, agent_key: int | None = None) -> int:
        with self._reader() as db:
            if agent_key is None:
                return db.execute("SELECT count(*) FROM samples").fetchone()[0]
            return db.execute(
                "SELECT count(*) FROM samples x JOIN series s ON x.series = s.id WHERE s.agent = ?", (agent_key,)
            ).fetchone()[0]

    def _reader(self):
        return _Reader(self.path)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Reader:
    def __init__(self, path: str):
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        self.db = sqlite3.connect(f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=ro", uri=True, timeout=30)
        self.db.execute("PRAGMA busy_timeout=30000")
        return self.db

    def __exit__(self, *exc) -> None:
        self.db.close()
