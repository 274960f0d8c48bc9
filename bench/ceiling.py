"""The ceiling the ingest path is judged against: a bare insert of the same rows, same durability.

The end-to-end ingest rate alone says little: is 300,000 samples/s good on this disk? A bare
``executemany`` of the same RTT rows into the same table (schema made by the store itself, with
its index), with the same durability (SQLite WAL + synchronous=FULL; PostgreSQL
synchronous_commit=on) and 1,000 rows per commit, is about the best the database does here.
The ratio ingest / ceiling is then a property of our code, not of the machine. PostgreSQL is also
measured with COPY, which is what its store uses.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

from cxpulse.v1.kinds import KINDS

T_BASE_US = 1_780_000_000_000_000
SERIES = 10


def rows(n: int, first_series: int = 1) -> Iterator[tuple[int, int, int | None]]:
    """The generator's rows: 10 series at a 1 s cadence, one sample in 97 lost."""
    per = n // SERIES
    for t in range(SERIES):
        for i in range(per):
            rtt = None if (i + t) % 97 == 0 else 800 + (i * 37 + t) % 9000
            yield (first_series + t, T_BASE_US + i * 1_000_000 + t * 1000, rtt)


def _insert_sql(schema: str = "") -> str:
    cols = ", ".join(f'"{c}"' for c in KINDS["rtt"])
    return f"INSERT INTO {schema}samples_rtt (series, ts_us, {cols}) VALUES (?, ?{', ?' * len(KINDS['rtt'])})"


def sqlite_ceiling(n_rows: int, per_commit: int = 1000, where: str | None = None) -> dict:
    """Rows/s of BEGIN IMMEDIATE; executemany(per_commit rows); COMMIT into the store's own schema."""
    from cxpulse.collector.store import open_store
    from cxpulse.collector.store.sqlite import WRITER_PRAGMAS

    data = list(rows(n_rows))
    with tempfile.TemporaryDirectory(prefix="cxpulse-bench-ceiling-", dir=where) as tmp:
        path = os.path.join(tmp, "ceiling.sqlite")
        open_store(path).close()  # the schema exactly as the collector creates it
        db = sqlite3.connect(path, isolation_level=None)
        try:
            for pragma in WRITER_PRAGMAS:  # the store's own write settings, durability included
                db.execute(f"PRAGMA {pragma}")
            sync = db.execute("PRAGMA synchronous").fetchone()[0]
            sql = _insert_sql()
            t = time.perf_counter()
            for i in range(0, len(data), per_commit):
                db.execute("BEGIN IMMEDIATE")
                db.executemany(sql, data[i : i + per_commit])
                db.execute("COMMIT")
            elapsed = time.perf_counter() - t
        finally:
            db.close()
    return {
        "store": "sqlite",
        "method": "executemany",
        "rows": len(data),
        "rows_per_commit": per_commit,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(len(data) / elapsed),
        "synchronous": sync,
    }


def postgres_ceiling(url: str, n_rows: int, per_commit: int = 1000) -> list[dict]:
    """executemany and COPY, each per_commit rows per transaction, into a fresh schema (dropped after)."""
    import psycopg

    from cxpulse.collector.store import open_store

    data = list(rows(n_rows))
    schema = f"cxpulse_bench_{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in url else "?"
    open_store(f"{url}{sep}options={quote(f'-csearch_path={schema}')}").close()
    out = []
    try:
        with psycopg.connect(url) as db:
            db.execute("SET synchronous_commit = on")
            sync = db.execute("SHOW synchronous_commit").fetchone()[0]
            db.commit()
            sql = _insert_sql(f'"{schema}".').replace("?", "%s")
            with db.cursor() as cur:
                t = time.perf_counter()
                for i in range(0, len(data), per_commit):
                    cur.executemany(sql, data[i : i + per_commit])
                    db.commit()
                elapsed = time.perf_counter() - t
            out.append(
                {
                    "store": "postgres",
                    "method": "executemany",
                    "rows": len(data),
                    "rows_per_commit": per_commit,
                    "seconds": round(elapsed, 3),
                    "rows_per_s": round(len(data) / elapsed),
                    "synchronous": sync,
                }
            )
            cols = ", ".join(f'"{c}"' for c in KINDS["rtt"])
            with db.cursor() as cur:
                t = time.perf_counter()
                for i in range(0, len(data), per_commit):
                    with cur.copy(f'COPY "{schema}".samples_rtt (series, ts_us, {cols}) FROM STDIN') as copy:
                        for r in data[i : i + per_commit]:
                            copy.write_row(r)
                    db.commit()
                elapsed = time.perf_counter() - t
            out.append(
                {
                    "store": "postgres",
                    "method": "copy",
                    "rows": len(data),
                    "rows_per_commit": per_commit,
                    "seconds": round(elapsed, 3),
                    "rows_per_s": round(len(data) / elapsed),
                    "synchronous": sync,
                }
            )
    finally:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return out


def desk_payloads(n: int) -> list[tuple[bytes, int, int, int]]:
    """``n`` consecutive 30 s batches of one desk at the agent's defaults, as the agent encodes them
    (schema 2): (payload, samples, first ts us, last ts us)."""
    from cxpulse.v1 import payload as p

    from .chunks import _batches, desk

    out = []
    for b in _batches(desk(n * 30, seed=7))[:n]:
        ts = [t for s in b.series for t in s.ts_us]
        out.append((p.encode(b, version=p.SCHEMA_VERSION), b.sample_count, min(ts), max(ts)))
    return out


def sqlite_landing_ceiling(n_batches: int, per_commit: int = 500, where: str | None = None) -> dict:
    """Samples/s of a bare insert of landing rows (one row per 30 s desk batch, the payload as sent),
    ``per_commit`` rows per durable commit, into the store's own ``batches`` table: what the disk and
    SQLite allow the landing design, with no decoding at all."""
    from cxpulse.collector.store import AgentInfo, open_store
    from cxpulse.collector.store.sqlite import WRITER_PRAGMAS

    desk = desk_payloads(min(n_batches, 240))
    agents = max(1, n_batches // len(desk))
    with tempfile.TemporaryDirectory(prefix="cxpulse-bench-ceiling-", dir=where) as tmp:
        path = os.path.join(tmp, "landing.sqlite")
        store = open_store(path)
        try:
            keys = [store.upsert_agent(AgentInfo(f"ceiling-{a}"), T_BASE_US) for a in range(agents)]
        finally:
            store.close()
        data = [
            (key, 1, seq + 1, start, end, T_BASE_US, n, payload)
            for key in keys
            for seq, (payload, n, start, end) in enumerate(desk)
        ][:n_batches]
        db = sqlite3.connect(path, isolation_level=None)
        try:
            for pragma in WRITER_PRAGMAS:
                db.execute(f"PRAGMA {pragma}")
            sync = db.execute("PRAGMA synchronous").fetchone()[0]
            sql = (
                "INSERT INTO batches (agent, epoch, seq, start_us, end_us, committed_us, n, payload)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            )
            t = time.perf_counter()
            for i in range(0, len(data), per_commit):
                db.execute("BEGIN IMMEDIATE")
                db.executemany(sql, data[i : i + per_commit])
                db.execute("COMMIT")
            elapsed = time.perf_counter() - t
        finally:
            db.close()
    samples = sum(r[6] for r in data)
    return {
        "store": "sqlite",
        "method": "landing",
        "rows": len(data),
        "rows_per_commit": per_commit,
        "samples": samples,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(len(data) / elapsed),
        "samples_per_s": round(samples / elapsed),
        "commits_per_s": round(len(data) / per_commit / elapsed, 1),
        "synchronous": sync,
    }


def decode_rate(n_batches: int = 120) -> dict:
    """Samples/s one core decodes and validates (payload.decode) and rolls up (rollup.rolled) from
    desk batches: the Python work the collector does per batch before its commit, in-process."""
    from cxpulse.collector.store import rollup
    from cxpulse.v1 import payload as p

    desk = desk_payloads(n_batches)
    samples = sum(n for _, n, _, _ in desk)
    t = time.process_time()
    decoded = [p.decode(payload) for payload, _, _, _ in desk]
    t_decode = time.process_time() - t
    t = time.process_time()
    for b in decoded:
        rollup.rolled(b)
    t_rollup = time.process_time() - t
    return {
        "batches": len(desk),
        "samples": samples,
        "decode_us_per_sample": round(t_decode / samples * 1e6, 2),
        "rollup_us_per_sample": round(t_rollup / samples * 1e6, 2),
        "samples_per_cpu_s": round(samples / (t_decode + t_rollup)),
    }
