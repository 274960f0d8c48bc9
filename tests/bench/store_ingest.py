"""Ingest throughput of the stores: rows/s through ``commit_batches`` with 1,000-row batches.

A first figure for when one collector's store is outgrown. Each commit is a durable
transaction (SQLite WAL + synchronous=FULL; PostgreSQL synchronous_commit=on), so
the group size (batches per commit, what the ingest writer's group commit gathers
under load) matters as much as the row count. Batches are built before the clock
starts: this measures the store, not the payload codec.

    .venv/bin/python -m tests.bench.store_ingest                 # SQLite only
    CXPULSE_TEST_POSTGRES=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m tests.bench.store_ingest --rows 200000 --group 1 --group 16

SQLite writes into a temporary directory under --dir (default: the current one, so
the figure is for a real disk, not a tmpfs). PostgreSQL writes into a fresh schema
that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from urllib.parse import quote

from cxpulse.collector.store import AgentInfo, PendingBatch, Store, open_store
from cxpulse.v1 import payload as p

T0 = 1_790_000_000_000_000
AGENTS = 20
SERIES_PER_BATCH = 10  # targets per agent: gateway, hops, anchors, app edges


def make_batches(rows: int, batch_rows: int) -> list[tuple[int, int, p.SampleBatch]]:
    """(agent index, seq, batch): agents take turns, each batch 10 RTT series at 1 s cadence."""
    per_series = batch_rows // SERIES_PER_BATCH
    out = []
    for n in range(rows // batch_rows):
        agent, seq = n % AGENTS, n // AGENTS + 1
        start = T0 + seq * per_series * 1_000_000
        series = []
        for t in range(SERIES_PER_BATCH):
            s = p.Series(target=f"target-{t}", address=f"127.0.0.{t + 1}", method=p.METHOD_ICMP_RAW)
            for i in range(per_series):
                s.add(start + i * 1_000_000 + t * 1000, None if (i + t) % 97 == 0 else 800 + (i * 37 + t) % 9000)
            series.append(s)
        out.append((agent, seq, p.SampleBatch(series)))
    return out


def run(store: Store, batches: list[tuple[int, int, p.SampleBatch]], group: int) -> float:
    """Seconds to commit all batches, ``group`` batches per transaction."""
    keys = [store.upsert_agent(AgentInfo(f"bench-agent-{i}", f"desk-{i:03}", f"user{i}"), 1) for i in range(AGENTS)]
    pending = [PendingBatch(keys[a], 1, seq, b) for a, seq, b in batches]
    t = time.perf_counter()
    for i in range(0, len(pending), group):
        store.commit_batches(pending[i : i + group])
    elapsed = time.perf_counter() - t
    assert all(b.stored for b in pending), "a batch was not stored"
    return elapsed


def report(name: str, rows: int, n_batches: int, group: int, seconds: float) -> None:
    print(
        f"{name:10} {rows:>8} rows  {n_batches:>5} batches  group {group:>3}  {seconds:7.2f} s  "
        f"{rows / seconds:>10,.0f} rows/s  {n_batches / seconds:>7,.0f} batches/s",
        flush=True,
    )


def bench_sqlite(batches, rows: int, groups: list[int], where: str) -> None:
    for group in groups:
        with tempfile.TemporaryDirectory(prefix="cxpulse-bench-", dir=where) as tmp:
            store = open_store(os.path.join(tmp, "bench.sqlite"))
            try:
                report("sqlite", rows, len(batches), group, run(store, batches, group))
            finally:
                store.close()


def bench_postgres(batches, rows: int, groups: list[int], url: str) -> None:
    import psycopg

    for group in groups:
        schema = f"cxpulse_bench_{uuid.uuid4().hex[:10]}"
        sep = "&" if "?" in url else "?"
        store = open_store(f"{url}{sep}options={quote(f'-csearch_path={schema}')}")
        try:
            report("postgres", rows, len(batches), group, run(store, batches, group))
        finally:
            store.close()
            with psycopg.connect(url, autocommit=True) as db:
                db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200_000, help="rows per run (default 200000)")
    ap.add_argument("--batch-rows", type=int, default=1000, help="rows per batch (default 1000)")
    ap.add_argument("--group", type=int, action="append", help="batches per commit (repeatable; default 1 and 16)")
    ap.add_argument("--dir", default=".", help="where SQLite's temporary database goes (default: current directory)")
    ap.add_argument(
        "--postgres",
        default=os.environ.get("CXPULSE_TEST_POSTGRES", ""),
        help="PostgreSQL URL (default: $CXPULSE_TEST_POSTGRES; empty: SQLite only)",
    )
    args = ap.parse_args()
    rows = min(args.rows, 2_000_000)  # bounded: a benchmark, not a soak test
    groups = args.group or [1, 16]
    batches = make_batches(rows, args.batch_rows)
    rows = len(batches) * args.batch_rows
    bench_sqlite(batches, rows, groups, args.dir)
    if args.postgres:
        bench_postgres(batches, rows, groups, args.postgres)
    else:
        print("postgres   skipped: give --postgres URL or set CXPULSE_TEST_POSTGRES")


if __name__ == "__main__":
    main()
