"""The raw tier on SQLite, measured: bytes per stored sample in landing rows and, after compaction,
in hour chunks; and the commit's cost per batch against the previous collector's row inserts.

Desks at the agent's defaults (bench/chunks.py), 30 s batches sent as schema 2, committed in groups
as the ingest writer does. The "before" store is sqlite.py as of the commit named by --before.

    .venv/bin/python -m bench.raw_tier [--desks 4] [--before a821044^]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cxpulse.collector.store import AgentInfo, PendingBatch, raw
from cxpulse.collector.store.sqlite import SqliteStore
from cxpulse.v1 import payload as p

from .chunks import _batches, desk

S = 1_000_000
HOUR0 = 1_780_002_000 * S  # an hour's start (UTC), 2026
GROUP = 20  # batches per commit: the writer takes what queued while the last commit ran


def _old_store_class(rev: str) -> type:
    """SqliteStore as of ``rev``, loaded beside today's modules (its relative imports resolve here)."""
    src = subprocess.run(
        ["git", "show", f"{rev}:collector/store/sqlite.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "sqlite_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("cxpulse.collector.store.sqlite_before", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.SqliteStore


def _work(desks: int) -> list[list[tuple[int, int, p.SampleBatch, bytes]]]:
    """Commit groups of (desk, seq, batch, payload as sent), desks interleaved in time order."""
    per_desk = [_batches(desk(3600, seed=d + 1, start_us=HOUR0)) for d in range(desks)]
    items = [
        (d, seq, b, p.encode(b, version=p.SCHEMA_VERSION))
        for seq in range(1, max(len(x) for x in per_desk) + 1)
        for d, batches in enumerate(per_desk)
        if seq <= len(batches)
        for b in [batches[seq - 1]]
    ]
    return [items[i : i + GROUP] for i in range(0, len(items), GROUP)]


def _commit_all(store, groups, with_payload: bool) -> tuple[float, int]:
    """Seconds spent in commit_batches and batches committed (each group against a fresh decode)."""
    keys = [store.upsert_agent(AgentInfo(f"desk-{d}"), 1) for d in range(max(g[0] for gr in groups for g in gr) + 1)]
    spent = 0.0
    n = 0
    for group in groups:
        pending = [
            PendingBatch(keys[d], 1, seq, p.decode(data), payload=data if with_payload else None)
            for d, seq, _, data in group
        ]
        end = max(t for b in pending for s in b.batch.series for t in s.ts_us)
        t0 = time.perf_counter()
        store.commit_batches(pending, end)
        spent += time.perf_counter() - t0
        n += len(pending)
    return spent, n


def _table_bytes(path: str) -> dict[str, int]:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        db.execute("VACUUM")
        return dict(db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    finally:
        db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--desks", type=int, default=4)
    ap.add_argument("--before", default="a821044^", help="the commit whose sqlite.py wrote sample rows")
    ap.add_argument("--rounds", type=int, default=3, help="commit timings alternate before/after; medians")
    args = ap.parse_args()
    old_class = _old_store_class(args.before)
    groups = _work(args.desks)
    samples = sum(len(s) for g in groups for _, _, b, _ in g for s in b.series)
    with tempfile.TemporaryDirectory() as tmp:
        old_path, new_path = os.path.join(tmp, "before.sqlite"), os.path.join(tmp, "after.sqlite")
        old_times, new_times = [], []
        for r in range(args.rounds):
            for path in (old_path, new_path):
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(path + suffix):
                        os.remove(path + suffix)
            old = old_class(old_path)
            old_s, n = _commit_all(old, groups, False)
            old.close()
            new = SqliteStore(new_path)
            new_s, _ = _commit_all(new, groups, True)
            old_times.append(old_s / n)
            new_times.append(new_s / n)
            if r < args.rounds - 1:
                new.close()
        landing = _table_bytes(new_path)
        steps = 0
        while True:
            steps += 1
            if new.compact_raw(HOUR0 + 3 * raw.HOUR_US).done:
                break
        progress = new.raw_progress()
        new.close()
        compacted = _table_bytes(new_path)
        before = _table_bytes(old_path)

    def per_sample(sizes: dict[str, int], *names: str) -> str:
        got = sum(sizes.get(x, 0) for x in names)
        return f"{got / samples:.2f} B/sample ({got / 1024 / args.desks:.0f} KiB per desk-hour)"

    rows = [f"samples_{k}" for k in ("rtt", "http", "voice", "device", "wifi")]
    row_indexes = [f"{t}_by_series_time" for t in rows]
    print(f"{args.desks} desk-hours, {samples} samples, {n} batches of 30 s, {GROUP} per commit")
    print(f"rows (before):          {per_sample(before, *rows, *row_indexes)}")
    landing_names = ("batches", "batches_by_agent_time", "batches_by_end", "sqlite_autoindex_batches_1")
    print(f"landing rows:           {per_sample(landing, *landing_names)}")
    print(
        f"hour chunks (compacted): {per_sample(compacted, 'chunks', 'chunks_by_series_time', 'chunks_by_end')}"
        f"; {progress.chunks} chunks in {steps} compaction steps"
    )
    whole = f"{sum(before.values()) / samples:.2f} / {sum(compacted.values()) / samples:.2f}"
    print(f"whole file, before / after compaction: {whole} B/sample (rollups included)")
    old_ms, new_ms = sorted(old_times)[len(old_times) // 2] * 1e3, sorted(new_times)[len(new_times) // 2] * 1e3
    print(
        f"commit per batch, median of {args.rounds}: before {old_ms:.2f} ms, after {new_ms:.2f} ms"
        f" (rollups included, {GROUP} batches per commit, synchronous=FULL)"
    )


if __name__ == "__main__":
    main()
