"""What the collector's kept-scores loop costs per run (collector/score/kept.py).

    .venv/bin/python -m bench.kept --agents 1000

A store of ``agents`` agents with 120 recent minutes of rollups (bench.lookup's generator), the
last 30 minutes kept but the newest; then, as the loop does each minute, ``keep_recent`` over the
last 2 settled minutes (one new minute per agent, one found kept), three times; and ``keep_blocks``
for one 15-minute block of every agent (three blocks an hour) and for the block that ends an hour
(it keeps the hour too, built from its kept blocks). Prints wall and CPU seconds per run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from .lookup import MINUTE_US, LookupPlan, fill


def run(agents: int, log=print) -> dict[str, float]:
    from cxpulse.collector.score.kept import BLOCK_US, HOUR_US, keep_blocks, keep_recent
    from cxpulse.collector.store import open_store

    tmp = tempfile.mkdtemp(prefix="cxpulse-bench-kept-")
    try:
        path = os.path.join(tmp, "c.sqlite")
        end = (time.time_ns() // 1000) // MINUTE_US * MINUTE_US
        fill(path, LookupPlan(agents, 0, 120, 1, 1, False), end, log)
        store = open_store(path)
        try:
            t0 = time.perf_counter()
            kept, _ = keep_recent(store, end - 30 * MINUTE_US, end - MINUTE_US)
            took = time.perf_counter() - t0
            log(f"   first keep of a store filled without a collector: {kept} minutes in {took:.1f} s")
            out: dict[str, float] = {}
            for i in range(3):
                # The newest minute as the loop finds it: not kept yet.
                store.keep_scores([(a, end - MINUTE_US, b"\0" * 16, b"\x80") for a in range(1, agents + 1)])
                t, c = time.perf_counter(), time.process_time()
                wrote, hits = keep_recent(store, end - 2 * MINUTE_US, end)
                out[f"minutes_run{i}_cpu_s"] = cpu = time.process_time() - c
                wall = time.perf_counter() - t
                log(f"   keep_recent: {wrote} scored, {hits} found kept: {wall:.2f} s wall, {cpu:.2f} s CPU")
            hour_end = end - end % HOUR_US  # the latest hour that has ended: whole inside the 120 minutes
            for b in range(hour_end - HOUR_US, hour_end - BLOCK_US, BLOCK_US):  # kept as they settled
                t, c = time.perf_counter(), time.process_time()
                n = keep_blocks(store, b)
                out["block_cpu_s"] = cpu = time.process_time() - c
            log(f"   keep_blocks, one block: {n} rows: {time.perf_counter() - t:.2f} s wall, {cpu:.2f} s CPU")
            t, c = time.perf_counter(), time.process_time()
            n = keep_blocks(store, hour_end - BLOCK_US)
            out["hour_cpu_s"] = cpu = time.process_time() - c
            wall = time.perf_counter() - t
            log(f"   keep_blocks, the hour's last block: {n} rows: {wall:.2f} s wall, {cpu:.2f} s CPU")
            blocks_per_hour = 3 * out["block_cpu_s"] + out["hour_cpu_s"]
            per_min = min(v for k, v in out.items() if k.startswith("minutes_")) + blocks_per_hour / 60
            out["cpu_s_per_minute"] = per_min
            share = 100 * per_min / 60
            log(f"   the loop: {per_min:.2f} s of CPU per minute for {agents} agents ({share:.1f} % of a core)")
            return out
        finally:
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.kept", description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000)
    args = ap.parse_args(argv)
    if not 1 <= args.agents <= 100_000:
        ap.error("--agents must be within 1..100000")
    run(args.agents)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
