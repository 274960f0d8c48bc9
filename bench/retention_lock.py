"""Does retention block ingest? A day of desks' raw chunks and minute rollups expires while a live desk
commits a 30 s batch every 20 ms; each commit's time (its wait for the write lock included) is measured.
The day's minute rollups are sealed first, as ``collector serve`` seals them a day on (``--rows``: not,
as in a store upgraded from row rollups).

    .venv/bin/python -m bench.retention_lock [--desks 4] [--rows] [--postgres]

``--postgres``: on CXPULSE_TEST_POSTGRES, in a schema of its own (dropped after). There a delete
takes no table lock (MVCC), so what is measured is whether retention's deletes and their I/O
slow the live desk's commits, not a lock wait.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cxpulse.collector.jobs.retention import enforce_once
from cxpulse.collector.jobs.rollup_sealing import seal_once
from cxpulse.collector.store import AgentInfo, PendingBatch, Store
from cxpulse.collector.store.sqlite import SqliteStore
from cxpulse.v1 import payload as p

from .chunks import _batches, desk
from .raw_tier import HOUR0, S
from .report import Figure, load_now

HOUR = 3600 * S
DAY = 24 * HOUR
BUDGET_MS = 100.0  # issue 19: retention of a day's expired data never blocks ingest for more than this
GROUP = 20  # batches per commit while filling, as the ingest writer groups them


@dataclass(frozen=True)
class RetentionPlan:
    desks: int  # desk-days that expire
    baseline_s: float  # the live desk alone, before retention starts
    sealed: bool = True  # the minute rollups sealed before they expire, as serve does a day on


PLANS = {"full": RetentionPlan(2, 10.0), "quick": RetentionPlan(1, 5.0), "smoke": RetentionPlan(1, 1.0)}


def _shifted(b: p.SampleBatch, by_us: int) -> p.SampleBatch:
    """The batch moved in time (series only: the fill has no events or paths)."""
    return p.SampleBatch(
        series=[
            p.Series(s.target, s.address, s.method, s.kind, s.hop, [t + by_us for t in s.ts_us], s.cols)
            for s in b.series
        ]
    )


def _fill(store: Store, hour: list[p.SampleBatch], desks: int, log) -> int:
    """``desks`` desks, each a day of the same desk-hour moved hour by hour; landing rows then compacted."""
    samples = 0
    for d in range(desks):
        key = store.upsert_agent(AgentInfo(f"desk-{d}"), 1)
        seq = 0
        for h in range(24):
            moved = [_shifted(b, h * HOUR) for b in hour]
            for i in range(0, len(moved), GROUP):
                group = moved[i : i + GROUP]
                pending = [PendingBatch(key, 1, seq + j + 1, b) for j, b in enumerate(group)]
                seq += len(group)
                store.commit_batches(pending, max(t for b in group for s in b.series for t in s.ts_us))
                samples += sum(len(s) for b in group for s in b.series)
        log(f"   desk {d + 1}/{desks}: a day committed")
    steps = 0
    while not store.compact_raw(HOUR0 + DAY + 2 * HOUR, 100_000).done and steps < 100_000:
        steps += 1
    log(f"   compacted in {steps + 1} steps; {store.raw_progress()}")
    return samples


def _ingest(store: Store, hour: list[p.SampleBatch], now_us: int, stop: threading.Event, took: list[float]) -> None:
    """A live desk: one 30 s batch every 20 ms until ``stop``; each commit's milliseconds into ``took``."""
    key = store.upsert_agent(AgentInfo("live-desk"), 1)
    seq = int(now_us // S)  # above any earlier run's marks
    for i in range(1_000_000):
        if stop.is_set():
            break
        b = _shifted(hour[i % len(hour)], now_us - HOUR0 + (i // len(hour)) * HOUR)
        t = time.perf_counter()
        store.commit_batches([PendingBatch(key, 1, seq + i, b)], now_us)
        took.append((time.perf_counter() - t) * 1000)
        stop.wait(0.02)


def _timed(store: Store) -> dict[str, list[float]]:
    """Each write the retention run makes, timed (milliseconds per call, by store method): which
    step holds the write lock longest."""
    took: dict[str, list[float]] = {}
    for name in (
        "write_blocks",
        "raise_mark",
        "delete_raw_before",
        "delete_kind_before",
        "delete_rollups_before",
        "delete_blocks_before",
    ):
        fn = getattr(store, name)

        def timed(*a, _fn=fn, _name=name, **k):
            t = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                took.setdefault(_name, []).append((time.perf_counter() - t) * 1000)

        setattr(store, name, timed)
    return took


def _summary(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return f"{name:30} {len(ms):5} commits: p50 {q[49]:6.1f} ms, p99 {q[98]:6.1f} ms, max {max(ms):6.1f} ms"


@contextlib.contextmanager
def _store(postgres: bool) -> Iterator[Store]:
    """A new SQLite file, or a new PostgreSQL schema (``pg_raw_tier._schema``); removed after."""
    if postgres:
        from cxpulse.collector.store import open_store

        from .pg_raw_tier import _drop, _schema

        name, url = _schema()
        try:
            yield open_store(url)
        finally:
            _drop(name)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield SqliteStore(os.path.join(tmp, "retention.sqlite"))


def run(plan: RetentionPlan, log: Any = print, postgres: bool = False) -> tuple[list[Figure], dict[str, Any]]:
    hour = _batches(desk(3600, seed=1, start_us=HOUR0))
    # Ten days on: the day is past a one-day horizon for raw and minute rollups, and its 15-minute
    # blocks settle first (settling waits out the agents' 7-day spool), as on a real collector.
    now = HOUR0 + 10 * DAY
    with _store(postgres) as store:
        try:
            t0 = time.perf_counter()
            samples = _fill(store, hour, plan.desks, log)
            if plan.sealed:
                sealed = asyncio.run(seal_once(store, now_us=now, max_steps=10**6, pause_s=0))
                log(f"   sealed {sealed.rows:,} minute rollups")
            log(f"   filled {samples:,} samples in {time.perf_counter() - t0:.0f} s")
            steps = _timed(store)
            stop = threading.Event()
            ms: list[float] = []
            live = threading.Thread(target=_ingest, args=(store, hour, now, stop, ms))
            live.start()
            time.sleep(plan.baseline_s)
            base_n = len(ms)
            t0 = time.perf_counter()
            try:
                result = asyncio.run(enforce_once(store, raw_days=1, rollup_days=400, now_us=now, minute_days=1))
            finally:
                took_s = time.perf_counter() - t0
                stop.set()
                live.join(60)
        finally:
            store.close()
    base, during = ms[:base_n], ms[base_n:]
    log(f"   retention: {took_s:.1f} s; {result}")
    for name, got in steps.items():
        log(f"   {name:22} {len(got):4} calls, longest {max(got):6.1f} ms, median {statistics.median(got):5.1f} ms")
    log("   " + _summary("live desk, before retention", base))
    log("   " + _summary("live desk, during retention", during))
    state = "minute rollups sealed" if plan.sealed else "minute rollups as rows"
    on = ", PostgreSQL" if postgres else ""  # the SQLite figures keep the names of earlier records
    figures = [
        Figure(
            "retention",
            f"longest ingest commit while {plan.desks} desk-day(s) expire{on}",
            "ms",
            round(max(during), 1),
            BUDGET_MS,
            "<=",
            peer="longest before retention",
            peer_value=round(max(base), 1) if base else None,
            load=load_now(),
            note=f"{len(during)} commits of a live desk every 20 ms; {state}; retention took {took_s:.1f} s",
        ),
        Figure(
            "retention",
            "longest retention step" + (on if postgres else " (write lock held)"),
            "ms",
            round(max((max(v) for v in steps.values() if v), default=0.0), 1),
            load=load_now(),
            note=", ".join(f"{k} {max(v):.1f}" for k, v in steps.items() if v),
        ),
    ]
    details = {
        "store": "postgres" if postgres else "sqlite",
        "plan": plan.__dict__,
        "samples": samples,
        "retention_s": round(took_s, 1),
        "commits_ms_before": [round(x, 1) for x in base],
        "commits_ms_during": [round(x, 1) for x in during],
    }
    return figures, details


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--desks", type=int, default=4)
    ap.add_argument("--baseline-s", type=float, default=10.0)
    ap.add_argument("--rows", action="store_true", help="minute rollups as rows (a store upgraded, not yet sealed)")
    ap.add_argument("--postgres", action="store_true", help="on CXPULSE_TEST_POSTGRES, in a schema of its own")
    args = ap.parse_args()
    figures, _ = run(RetentionPlan(args.desks, args.baseline_s, sealed=not args.rows), postgres=args.postgres)
    for f in figures:
        verdict = "" if f.passed is None else " PASS" if f.passed else " FAIL"
        print(f"{f.name}: {f.value} {f.unit}{verdict} ({f.note})")


if __name__ == "__main__":
    main()
