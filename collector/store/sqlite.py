"""SQLite store: WAL with synchronous=FULL, so an ack means the batch survives power loss.

One connection writes (the ingest writer thread); lookups open their own
read connections, which WAL lets run beside the writer.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import urllib.parse

from cxpulse.v1.kinds import KINDS, STR
from cxpulse.v1.payload import Event, PathHop, PathSnapshot

from . import AgentInfo, AgentRecord, PendingBatch, Row, RttRow

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


def _kind_tables() -> str:
    """One samples table per series kind, columns as the payload's kind table says."""
    out = []
    for kind, cols in KINDS.items():
        defs = ", ".join(f'"{c}" {"TEXT" if t == STR else "INTEGER"}' for c, t in cols.items())
        out.append(f"CREATE TABLE IF NOT EXISTS samples_{kind} (series INTEGER NOT NULL, ts_us INTEGER NOT NULL, {defs});")
        out.append(f"CREATE INDEX IF NOT EXISTS samples_{kind}_by_series_time ON samples_{kind} (series, ts_us);")
    return "\n".join(out)


def _insert_sql(kind: str) -> str:
    cols = list(KINDS[kind])
    names = ", ".join(f'"{c}"' for c in cols)
    return f"INSERT INTO samples_{kind} (series, ts_us, {names}) VALUES (?, ?{', ?' * len(cols)})"


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
        self._series_cache: dict[tuple[int, str, str, str, str, int], int] = {}
        with self._db:
            self._db.executescript(_SCHEMA + _kind_tables())
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
                rows: dict[str, list[tuple]] = {kind: [] for kind in KINDS}
                events: list[tuple] = []
                paths: list[tuple] = []
                for b in batches:
                    k = (b.agent_key, to_signed64(b.epoch))
                    if k not in committed:
                        r = db.execute("SELECT committed_seq FROM seqs WHERE agent=? AND epoch=?", k).fetchone()
                        committed[k] = r[0] if r else 0
                    if b.seq <= committed[k]:
                        b.stored = False
                    else:
                        for s in b.batch.series:
                            sid = self._series_id(b.agent_key, s.target, s.address, s.kind, s.method, s.hop or 0)
                            rows[s.kind].extend(zip([sid] * len(s.ts_us), s.ts_us, *s.cols.values()))
                        events.extend(
                            (b.agent_key, e.id, e.kind, e.target, e.start_us, e.end_us, e.severity, e.evidence)
                            for e in b.batch.events
                        )
                        paths.extend(
                            (b.agent_key, p.target, p.address, p.ts_us, p.method, int(p.reached),
                             json.dumps([[h.ttl, h.address, h.rtt_us] for h in p.hops]))
                            for p in b.batch.paths
                        )
                        committed[k] = b.seq
                        b.stored = True
                    b.committed_seq = committed[k]
                for kind, kind_rows in rows.items():
                    if kind_rows:
                        db.executemany(_insert_sql(kind), kind_rows)
                # An event is sent when it opens and again when it closes: keep the latest state.
                db.executemany(
                    """INSERT INTO events (agent, id, kind, target, start_us, end_us, severity, evidence)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (agent, id) DO UPDATE SET kind=excluded.kind, end_us=excluded.end_us,
                         severity=max(severity, excluded.severity), evidence=excluded.evidence""",
                    events,
                )
                db.executemany("INSERT INTO paths VALUES (?, ?, ?, ?, ?, ?, ?)", paths)
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

    def _series_id(self, agent: int, target: str, address: str, kind: str, method: str, hop: int) -> int:
        key = (agent, target, address, kind, method, hop)
        sid = self._series_cache.get(key)
        if sid is None:
            row = self._db.execute(
                "SELECT id FROM series WHERE agent=? AND target=? AND address=? AND kind=? AND method=? AND hop=?", key
            ).fetchone()
            if row is None:
                sid = self._db.execute(
                    "INSERT INTO series (agent, target, address, kind, method, hop) VALUES (?, ?, ?, ?, ?, ?)", key
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
        return [RttRow(r.target, r.address, r.method, r.ts_us, r.values["rtt"], r.hop)
                for r in self.rows(agent_key, "rtt", since_us, until_us)]

    def rows(self, agent_key: int, kind: str, since_us: int, until_us: int) -> list[Row]:
        cols = list(KINDS[kind])
        names = ", ".join(f'x."{c}"' for c in cols)
        with self._reader() as db:
            got = db.execute(
                f"""SELECT s.target, s.address, s.method, s.hop, x.ts_us, {names}
                    FROM series s JOIN samples_{kind} x ON x.series = s.id
                    WHERE s.agent = ? AND s.kind = ? AND x.ts_us >= ? AND x.ts_us < ?
                    ORDER BY s.target, x.ts_us""",
                (agent_key, kind, since_us, until_us),
            ).fetchall()
        return [Row(r[0], r[1], r[2], r[3] or None, r[4], dict(zip(cols, r[5:]))) for r in got]

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

    def paths(self, agent_key: int, since_us: int, until_us: int) -> list[PathSnapshot]:
        with self._reader() as db:
            got = db.execute(
                """SELECT target, address, ts_us, method, reached, hops FROM paths
                   WHERE agent = ? AND ts_us >= ? AND ts_us < ? ORDER BY ts_us""",
                (agent_key, since_us, until_us),
            ).fetchall()
        return [PathSnapshot(r[0], r[1], r[2], r[3], bool(r[4]), [PathHop(*h) for h in json.loads(r[5])]) for r in got]

    def sample_count(self, agent_key: int | None = None) -> int:
        total = 0
        with self._reader() as db:
            for kind in KINDS:
                if agent_key is None:
                    total += db.execute(f"SELECT count(*) FROM samples_{kind}").fetchone()[0]
                else:
                    total += db.execute(
                        f"SELECT count(*) FROM samples_{kind} x JOIN series s ON x.series = s.id WHERE s.agent = ?",
                        (agent_key,),
                    ).fetchone()[0]
        return total

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
