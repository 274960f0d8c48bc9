"""Disk per desk of the rollup tiers: minute rollups and 15-minute ones, per desk-day, in SQLite.

Realistic desk-days (bench.chunks.desk: the agent's defaults with noise, loss and strings) go
through a real SqliteStore in 30 s batches; the settle job merges the 15-minute blocks; each
table's pages and index pages (dbstat, after VACUUM) are divided by the desk-days written. Then
the sealing job seals every hour, and the minute tier is measured again (rows left + sealed hours).

    .venv/bin/python -m bench.rollup_tiers [desks]
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time

from cxpulse.collector.jobs.retention import DEFAULT_MINUTE_DAYS, DEFAULT_ROLLUP_DAYS
from cxpulse.collector.jobs.rollup_sealing import seal_once
from cxpulse.collector.jobs.rollup_tiers import settle_once
from cxpulse.collector.store import AgentInfo, PendingBatch
from cxpulse.collector.store.sealed import SEAL_AFTER_US
from cxpulse.collector.store.sqlite import SqliteStore

from .chunks import T_BASE_US, _batches, desk

DAY_S = 86_400
DAY_US = DAY_S * 1_000_000
COMMIT = 20  # batches per commit (a group commit of the ingest writer)


def table_bytes(path: str, *names: str) -> int:
    with sqlite3.connect(path) as db:
        return int(
            db.execute(
                f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({', '.join('?' * len(names))})", names
            ).fetchone()[0]
            or 0
        )


def main(desks: int = 2) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/tiers.sqlite"
        store = SqliteStore(path)
        t = time.monotonic()
        for d in range(desks):
            k = store.upsert_agent(AgentInfo(f"desk-{d}"), T_BASE_US)
            batches = _batches(desk(DAY_S, seed=1 + d))
            for i in range(0, len(batches), COMMIT):
                store.commit_batches([PendingBatch(k, 1, i + j + 1, b) for j, b in enumerate(batches[i : i + COMMIT])])
        ingest_s, t = time.monotonic() - t, time.monotonic()
        settled = asyncio.run(
            settle_once(store, now_us=T_BASE_US + 10 * DAY_S * 1_000_000, max_blocks=10**6, pause_s=0)
        )
        settle_s = time.monotonic() - t
        day = (T_BASE_US, T_BASE_US + DAY_S * 1_000_000)
        t = time.perf_counter()
        want = [(r.key, r.raw) for r in store.rollups(*day, agent_key=k)]
        read_rows_ms = (time.perf_counter() - t) * 1e3
        store.close()
        with sqlite3.connect(path) as db:
            db.execute("VACUUM")
        minute = table_bytes(path, "rollups", "rollups_by_minute") / desks
        block = table_bytes(path, "rollups_15m", "rollups_15m_by_minute") / desks
        store = SqliteStore(path)
        t = time.monotonic()
        sealing = asyncio.run(seal_once(store, now_us=T_BASE_US + 10 * DAY_S * 1_000_000, max_steps=10**6, pause_s=0))
        seal_s, t = time.monotonic() - t, time.perf_counter()
        got = [(r.key, r.raw) for r in store.rollups(*day, agent_key=k)]
        read_sealed_ms = (time.perf_counter() - t) * 1e3
        if got != want:
            raise AssertionError("sealed minute rollups read back differently")
        store.close()
        with sqlite3.connect(path) as db:
            db.execute("VACUUM")
        sealed_minute = (
            table_bytes(
                path,
                "rollups",
                "rollups_by_minute",
                "rollup_hours",
                "sqlite_autoindex_rollup_hours_1",
                "rollup_hours_by_start",
            )
            / desks
        )
        sealed_block = (
            table_bytes(
                path,
                "rollups_15m",
                "rollups_15m_by_minute",
                "block_days",
                "sqlite_autoindex_block_days_1",
                "block_days_by_start",
            )
            / desks
        )
    out = {
        "minute rollups, bytes per desk-day": minute,
        "15-minute rollups, bytes per desk-day": block,
        f"minute rollups x {DEFAULT_MINUTE_DAYS:g} days, MB per desk": minute * DEFAULT_MINUTE_DAYS / 1e6,
        f"15-minute rollups x {DEFAULT_ROLLUP_DAYS:g} days, MB per desk": block * DEFAULT_ROLLUP_DAYS / 1e6,
        f"minute rollups x {DEFAULT_ROLLUP_DAYS:g} days (before), MB per desk": minute * DEFAULT_ROLLUP_DAYS / 1e6,
        "minute rollups sealed per agent-hour, bytes per desk-day": sealed_minute,
        f"minute rollups sealed after {SEAL_AFTER_US // DAY_US} day x {DEFAULT_MINUTE_DAYS:g} days, MB per desk": (
            minute * SEAL_AFTER_US / DAY_US + sealed_minute * (DEFAULT_MINUTE_DAYS - SEAL_AFTER_US / DAY_US)
        )
        / 1e6,
        "15-minute rollups sealed per agent-day, bytes per desk-day": sealed_block,
        f"15-minute rollups sealed x {DEFAULT_ROLLUP_DAYS:g} days, MB per desk": sealed_block
        * DEFAULT_ROLLUP_DAYS
        / 1e6,
    }
    out["settle, ms per desk-block"] = settle_s / (settled.blocks * desks) * 1e3
    out["seal, ms per desk-hour"] = seal_s / (24 * desks) * 1e3
    out["a desk-day's minute rollups read, rows, ms"] = read_rows_ms
    out["a desk-day's minute rollups read, sealed, ms"] = read_sealed_ms
    print(
        f"sealed {sealing.rows:,} minute rollups and {sealing.blocks:,} 15-minute ones in {sealing.steps} steps, "
        f"{seal_s:.1f} s"
    )
    print(f"{desks} desk-day(s) written in {ingest_s:.0f} s; {settled.blocks} blocks settled in {settle_s:.1f} s")
    for name, v in out.items():
        print(f"  {name}: {v:,.1f}")
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
