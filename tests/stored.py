"""What a SQLite collector file holds, read straight from the file while a collector may be running:
the raw tier's three places (legacy samples_* rows, hour chunks, landing batches) merged, so tests
that count stored samples do not depend on whether compaction has run yet.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cxpulse.collector.store import chunks, raw


def in_store_order(db: Path | str, kind: str, agent_id: str | None = None) -> list[tuple[tuple, int, dict]]:
    """((target, address, method, hop), ts_us, {column: value}) of every stored sample of ``kind`` in
    the order it was written (legacy rows by rowid, chunks by id, landing batches by id and payload
    order), repeats kept."""
    from cxpulse.v1.kinds import KINDS

    names = list(KINDS[kind])
    got: list[tuple[tuple, int, dict]] = []
    con = sqlite3.connect(str(db), timeout=30)
    try:
        agent_where, args = ("AND a.agent_id = ?", (agent_id,)) if agent_id is not None else ("", ())
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if f"samples_{kind}" in tables:
            cols = ", ".join(f"x.{c}" for c in names)
            for target, address, method, hop, ts, *vals in con.execute(
                f"""SELECT s.target, s.address, s.method, s.hop, x.ts_us, {cols} FROM samples_{kind} x
                    JOIN series s ON s.id = x.series JOIN agents a ON a.key = s.agent WHERE 1 {agent_where}
                    ORDER BY x.rowid""",
                args,
            ):
                got.append(((target, address, method, hop), ts, dict(zip(names, vals, strict=True))))
        if "chunks" in tables:
            for target, address, method, hop, data in con.execute(
                f"""SELECT s.target, s.address, s.method, s.hop, c.data FROM chunks c
                    JOIN series s ON s.id = c.series JOIN agents a ON a.key = s.agent
                    WHERE s.kind = ? {agent_where} ORDER BY c.id""",
                (kind, *args),
            ):
                s = chunks.decode(kind, data)
                for i, ts in enumerate(s.ts_us):
                    got.append(((target, address, method, hop), ts, {c: s.cols[c][i] for c in names}))
        if "batches" in tables:
            for (payload,) in con.execute(
                f"SELECT b.payload FROM batches b JOIN agents a ON a.key = b.agent WHERE 1 {agent_where} ORDER BY b.id",
                args,
            ):
                for (target, address, k, method, hop), (_k, ts_list, cols) in raw.series_samples(payload).items():
                    if k == kind:
                        for i, ts in enumerate(ts_list):
                            got.append(((target, address, method, hop), ts, {c: cols[c][i] for c in names}))
    finally:
        con.close()
    return got


def rtt_in_store_order(db: Path | str, agent_id: str | None = None) -> list[tuple[tuple, int, int | None]]:
    """((target, address, method, hop), ts_us, rtt) of every stored RTT sample in the order it was
    written, repeats kept."""
    return [(key, ts, row["rtt"]) for key, ts, row in in_store_order(db, "rtt", agent_id)]


def rtt_samples(db: Path | str, agent_id: str | None = None) -> list[tuple[str, str, int, int | None]]:
    """(target, method, ts_us, rtt) of every stored RTT sample by target then time, a sample written
    twice listed twice (exactly-once tests count on it)."""
    return sorted(
        ((k[0], k[2], ts, v) for k, ts, v in rtt_in_store_order(db, agent_id)), key=lambda r: (r[0], r[2], r[1])
    )


def rtt_count(db: Path | str, agent_id: str | None = None) -> int:
    """How many RTT samples the file holds (for one agent, or all)."""
    return len(rtt_samples(db, agent_id))


def stored_count(db: Path | str) -> int:
    """Samples of every kind the file holds (as written, in all three places) plus event and path rows."""
    con = sqlite3.connect(str(db), timeout=30)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "batches" in tables and "chunks" in tables, "not a raw-tier collector file"
        n = sum(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables if t.startswith("samples_"))
        n += sum(con.execute(f"SELECT coalesce(sum(n), 0) FROM {t}").fetchone()[0] for t in ("batches", "chunks"))
        n += sum(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("events", "paths"))
        return n
    finally:
        con.close()
