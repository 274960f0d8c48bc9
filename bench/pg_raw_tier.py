"""The raw tier on PostgreSQL: bytes per stored sample after compaction, compaction speed, and the
commit's cost per batch before (one row per sample, the store of commit 1c13f26^) and after (one
landing row per batch). A timing script, not a test; figures in the PostgreSQL part of docs/storage.md.

    CXPULSE_TEST_POSTGRES=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.pg_raw_tier
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from cxpulse.collector.store import AgentInfo, PendingBatch
from cxpulse.collector.store.postgres import PostgresStore
from cxpulse.v1 import payload as p

from .chunks import T_BASE_US, _batches, desk

S = 1_000_000
HOUR = 3600 * S
HOUR0 = (T_BASE_US // HOUR + 1) * HOUR  # desk-hours aligned to UTC hours: one chunk per series and hour
BEFORE = "1c13f26^"  # the last commit whose PostgreSQL store wrote one row per sample


def _base() -> str:
    url = os.environ.get("CXPULSE_TEST_POSTGRES", "")
    if not url:
        sys.exit("set CXPULSE_TEST_POSTGRES=postgresql://user@host:5432/db")
    return url


def _schema() -> tuple[str, str]:
    name = f"cxpulse_bench_raw_{uuid.uuid4().hex[:8]}"
    return name, f"{_base()}?options={quote(f'-csearch_path={name}')}"


def _drop(name: str) -> None:
    with psycopg.connect(_base(), autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _sizes(url: str, tables: list[str]) -> dict[str, int]:
    """Bytes of each table with its indexes and TOAST, after VACUUM FULL."""
    with psycopg.connect(url, autocommit=True) as c:
        out = {}
        for t in tables:
            c.execute(f"VACUUM FULL {t}")
            row = c.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()
            out[t] = int(row[0]) if row else 0
        return out


def sizes(desks: int = 24, max_rows: int = 20_000) -> None:
    """Desk-hours at the agent's defaults committed as 30 s schema-2 batches, then compacted."""
    name, url = _schema()
    try:
        st = PostgresStore(url)
        empty = _sizes(url, ["chunks", "batches"])
        total = 0
        for d in range(desks):
            k = st.upsert_agent(AgentInfo(f"desk-{d}"), HOUR0)
            for seq, b in enumerate(_batches(desk(3600, seed=d + 1, start_us=HOUR0)), 1):
                data = p.encode(b, version=p.SCHEMA_VERSION)
                total += b.sample_count
                st.commit_batches([PendingBatch(k, 1, seq, p.decode(data), payload=data)], HOUR0 + seq * 30 * S)
        landing = _sizes(url, ["batches"])["batches"] - empty["batches"]
        took = []
        while True:
            t0 = time.perf_counter()
            step = st.compact_raw(HOUR0 + 3 * HOUR, max_rows)
            took.append(time.perf_counter() - t0)
            if step.done:
                break
        with psycopg.connect(url, autocommit=True) as c:  # live rows alone: an old snapshot elsewhere keeps dead ones
            c.execute("CREATE TABLE live (LIKE chunks INCLUDING ALL)")
            c.execute("INSERT INTO live SELECT * FROM chunks")
            c.execute("CREATE TABLE live_empty (LIKE chunks INCLUDING ALL)")
            row = c.execute("SELECT count(*), sum(length(data)) FROM chunks").fetchone()
        got = _sizes(url, ["live", "live_empty"])
        if st.sample_count() != total:
            raise AssertionError(f"{st.sample_count()} samples stored of {total}")
        st.close()
        chunk_bytes = got["live"] - got["live_empty"]
        print(f"{desks} desk-hours, {total:,} samples ({total // desks:,} per desk-hour)")
        print(f"landing rows: {landing / total:.2f} B/sample, {landing / desks / 1000:.0f} kB per desk-hour")
        print(
            f"hour chunks: {chunk_bytes / total:.2f} B/sample ({row[1] / total:.2f} blob), "
            f"{chunk_bytes / desks / 1000:.0f} kB per desk-hour, {row[0]} chunks"
        )
        print(
            f"compaction, {max_rows:,}-sample steps: {len(took)} steps, median {statistics.median(took) * 1e3:.0f} ms,"
            f" max {max(took) * 1e3:.0f} ms, {total / sum(took):,.0f} samples/s"
        )
    finally:
        _drop(name)


def _old_store() -> Any:
    """The PostgreSQL store as it was before the raw tier, loaded from git beside today's modules."""
    src = subprocess.run(
        ["git", "show", f"{BEFORE}:collector/store/postgres.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "postgres_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("cxpulse.collector.store.postgres_before", path)
    if spec is None or spec.loader is None:
        raise RuntimeError("cannot load the old store")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.PostgresStore


def commit_cost(cls: Any, group: int, rounds: int, rollups: bool) -> float:
    """Median us per batch of ``rounds`` commits of ``group`` desks' 30 s batches (194 samples each)."""
    name, url = _schema()
    try:
        st = cls(url)
        if not rollups:
            st._write_rollups = lambda cur, written: None  # the samples' own write alone
        keys = [st.upsert_agent(AgentInfo(f"desk-{d}"), HOUR0) for d in range(group)]
        batches = _batches(desk(30 * rounds + 60, seed=3, start_us=HOUR0))[:rounds]
        per = []
        for seq, b in enumerate(batches, 1):
            data = p.encode(b, version=p.SCHEMA_VERSION)
            pending = [PendingBatch(k, 1, seq, b, payload=data) for k in keys]
            t0 = time.perf_counter()
            st.commit_batches(pending, HOUR0 + seq * 30 * S)
            per.append((time.perf_counter() - t0) / group)
        st.close()
        return statistics.median(per) * 1e6
    finally:
        _drop(name)


def main() -> None:
    sizes()
    old = _old_store()
    for rollups in (False, True):
        for group in (1, 100):
            got = {
                label: [commit_cost(cls, group, 40 if group == 1 else 15, rollups) for _ in range(2)]
                for label, cls in (("rows", old), ("landing", PostgresStore))
            }
            what = "whole commit" if rollups else "samples' write (rollup merge left out)"
            print(
                f"{what}, {group} batch(es) per commit: rows {' / '.join(f'{v:,.0f}' for v in got['rows'])} us/batch,"
                f" landing {' / '.join(f'{v:,.0f}' for v in got['landing'])} us/batch (median, two runs)"
            )


if __name__ == "__main__":
    main()
