"""Disk per desk of the rollup tiers: minute rollups and 15-minute ones, per desk-day, as rows and sealed.

Realistic desk-days (bench.chunks.desk: the agent's defaults with noise, loss and strings) go
through a real store in 30 s batches; the settle job merges the 15-minute blocks; each tier's
tables with their indexes are measured (SQLite: dbstat pages after VACUUM; PostgreSQL:
pg_total_relation_size after VACUUM FULL, TOAST included) and divided by the desk-days written.
Then the sealing job seals every hour and day, and both tiers are measured again.

    .venv/bin/python -m bench.rollup_tiers [desks]                 # SQLite
    .venv/bin/python -m bench.rollup_tiers [desks] --postgres      # CXPULSE_TEST_POSTGRES, own schema
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable

from cxpulse.collector.jobs.retention import DEFAULT_MINUTE_DAYS, DEFAULT_ROLLUP_DAYS
from cxpulse.collector.jobs.rollup_sealing import seal_once
from cxpulse.collector.jobs.rollup_tiers import settle_once
from cxpulse.collector.score.kept import BLOCK_US, keep_blocks, keep_recent
from cxpulse.collector.store import AgentInfo, PendingBatch, open_store
from cxpulse.collector.store.sealed import SEAL_AFTER_US

from .chunks import T_BASE_US, _batches, desk

DAY_S = 86_400
DAY_US = DAY_S * 1_000_000
COMMIT = 20  # batches per commit (a group commit of the ingest writer)
MINUTES = ("rollups", "rollup_hours")  # each tier: its rows and its sealed rows
BLOCKS = ("rollups_15m", "block_days")
KEPT = (  # score/kept.py's caches, rows and sealed
    "minute_scores",
    "kept_score_hours",
    "block_merges",
    "kept_merge_days",
    "hour_merges",
    "kept_hour_merge_days",
)


def table_bytes(path: str, *names: str) -> int:
    with sqlite3.connect(path) as db:
        return int(
            db.execute(
                f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({', '.join('?' * len(names))})", names
            ).fetchone()[0]
            or 0
        )


def _sqlite_bytes(path: str) -> Callable[[tuple[str, ...]], int]:
    def size(tables: tuple[str, ...]) -> int:
        with sqlite3.connect(path) as db:
            db.execute("VACUUM")
            names = [
                n
                for (n,) in db.execute(
                    f"SELECT name FROM sqlite_master WHERE tbl_name IN ({', '.join('?' * len(tables))})", tables
                )
            ]
        return table_bytes(path, *names)

    return size


def _postgres_bytes(url: str) -> Callable[[tuple[str, ...]], int]:
    import psycopg

    def size(tables: tuple[str, ...]) -> int:
        with psycopg.connect(url, autocommit=True) as c:
            total = 0
            for t in tables:
                c.execute(f"VACUUM FULL {t}")
                total += int(c.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0])
            return total

    return size


def _read(store, day: tuple[int, int], agent: int) -> tuple[list, float]:
    """A desk-day's minute rollups as read, and the median of three reads' milliseconds."""
    took = []
    for _ in range(3):
        t = time.perf_counter()
        got = [(r.key, r.raw) for r in store.rollups(*day, agent_key=agent)]
        took.append((time.perf_counter() - t) * 1e3)
    return got, statistics.median(took)


def measure(url: str, size: Callable[[tuple[str, ...]], int], desks: int) -> dict[str, float]:
    store = open_store(url)
    try:
        t = time.monotonic()
        for d in range(desks):
            k = store.upsert_agent(AgentInfo(f"desk-{d}"), T_BASE_US)
            batches = _batches(desk(DAY_S, seed=1 + d))
            for i in range(0, len(batches), COMMIT):
                store.commit_batches([PendingBatch(k, 1, i + j + 1, b) for j, b in enumerate(batches[i : i + COMMIT])])
        ingest_s, t = time.monotonic() - t, time.monotonic()
        now = T_BASE_US + 10 * DAY_US
        settled = asyncio.run(settle_once(store, now_us=now, max_blocks=10**6, pause_s=0))
        settle_s = time.monotonic() - t
        t = time.monotonic()
        m0 = T_BASE_US - T_BASE_US % 60_000_000
        kept_minutes = keep_recent(store, m0, m0 + DAY_US)[0]  # as the kept-scores loop keeps each minute
        kept_blocks = sum(keep_blocks(store, b) for b in range(m0 - m0 % BLOCK_US, m0 + DAY_US, BLOCK_US))
        keep_s = time.monotonic() - t
        day = (T_BASE_US, T_BASE_US + DAY_US)
        want, read_rows_ms = _read(store, day, k)
        minute, block, kept = size(MINUTES) / desks, size(BLOCKS) / desks, size(KEPT) / desks
        t = time.monotonic()
        sealing = asyncio.run(seal_once(store, now_us=now, max_steps=10**6, pause_s=0))
        seal_s = time.monotonic() - t
        got, read_sealed_ms = _read(store, day, k)
        if got != want:
            raise AssertionError("sealed minute rollups read back differently")
    finally:
        store.close()
    sealed_minute, sealed_block, sealed_kept = size(MINUTES) / desks, size(BLOCKS) / desks, size(KEPT) / desks
    after_days = SEAL_AFTER_US / DAY_US
    out = {
        "minute rollups, bytes per desk-day": minute,
        "15-minute rollups, bytes per desk-day": block,
        f"minute rollups x {DEFAULT_MINUTE_DAYS:g} days, MB per desk": minute * DEFAULT_MINUTE_DAYS / 1e6,
        f"15-minute rollups x {DEFAULT_ROLLUP_DAYS:g} days, MB per desk": block * DEFAULT_ROLLUP_DAYS / 1e6,
        f"minute rollups x {DEFAULT_ROLLUP_DAYS:g} days (before), MB per desk": minute * DEFAULT_ROLLUP_DAYS / 1e6,
        "minute rollups sealed per agent-hour, bytes per desk-day": sealed_minute,
        f"minute rollups sealed after {after_days:g} day x {DEFAULT_MINUTE_DAYS:g} days, MB per desk": (
            minute * after_days + sealed_minute * (DEFAULT_MINUTE_DAYS - after_days)
        )
        / 1e6,
        "15-minute rollups sealed per agent-day, bytes per desk-day": sealed_block,
        f"15-minute rollups sealed x {DEFAULT_ROLLUP_DAYS:g} days, MB per desk": sealed_block
        * DEFAULT_ROLLUP_DAYS
        / 1e6,
        "kept minute scores and block merges, bytes per desk-day": kept,
        "kept minute scores and block merges sealed, bytes per desk-day": sealed_kept,
        f"kept scores and merges sealed after {after_days:g} day x {DEFAULT_MINUTE_DAYS:g} days, MB per desk": (
            kept * after_days + sealed_kept * (DEFAULT_MINUTE_DAYS - after_days)
        )
        / 1e6,
        "settle, ms per desk-block": settle_s / (settled.blocks * desks) * 1e3,
        "keep, ms per desk-minute": keep_s / (kept_minutes or 1) * 1e3,
        "seal, ms per desk-hour": seal_s / (24 * desks) * 1e3,
        "a desk-day's minute rollups read, rows, ms (median of 3)": read_rows_ms,
        "a desk-day's minute rollups read, sealed, ms (median of 3)": read_sealed_ms,
    }
    print(
        f"{desks} desk-day(s) written in {ingest_s:.0f} s; {settled.blocks} blocks settled in {settle_s:.1f} s; "
        f"{kept_minutes:,} minute scores and {kept_blocks:,} block merges kept in {keep_s:.1f} s; "
        f"sealed {sealing.rows:,} minute rollups, {sealing.blocks:,} 15-minute ones and {sealing.kept:,} kept rows "
        f"in {sealing.steps} steps, "
        f"{seal_s:.1f} s"
    )
    for name, v in out.items():
        print(f"  {name}: {v:,.1f}")
    return out


def main(desks: int = 2, postgres: bool = False) -> dict[str, float]:
    if postgres:
        from .pg_raw_tier import _drop, _schema

        name, url = _schema()
        try:
            return measure(url, _postgres_bytes(url), desks)
        finally:
            _drop(name)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/tiers.sqlite"
        return measure(path, _sqlite_bytes(path), desks)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("desks", nargs="?", type=int, default=2)
    ap.add_argument("--postgres", action="store_true", help="on CXPULSE_TEST_POSTGRES, in a schema of its own")
    args = ap.parse_args()
    main(args.desks, args.postgres)
