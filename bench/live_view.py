"""One live desk's 1 h lookup on the raw tier: an hour of 30 s batches as landed (not yet compacted),
the first view (scores, summary, chart), the chart again, and the RTT rows alone, in process.

    .venv/bin/python -m bench.live_view [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from cxpulse.collector.lookup.service import LookupService
from cxpulse.collector.store.sqlite import SqliteStore

from .raw_tier import HOUR0, S, _commit_all, _work


def _ms(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    end = HOUR0 + 3600 * S
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "live.sqlite")
        store = SqliteStore(path)
        _commit_all(store, _work(1), True)
        key = store.agent("desk-0").key
        firsts = []
        for _ in range(max(1, args.rounds // 5)):
            svc = LookupService(store, now_us=lambda: end)  # a fresh view cache: the helpdesk's first look
            firsts += _ms(lambda svc=svc: svc.agent("desk-0", end - 3600 * S, end, 1300, True, None), 1)
        again = _ms(lambda: svc.timeline("desk-0", end - 3600 * S, end, 1300), args.rounds)
        rtt = _ms(lambda: store.rtt_rows(key, end - 3600 * S, end), args.rounds)
        store.close()
    print(f"{'first 1 h view, cold':22} {firsts[0]:7.1f} ms (nothing decoded yet)")
    for name, got in (
        ("first 1 h view, warm", firsts[1:] or firsts),  # a new view cache, landing payloads decoded
        ("its chart again", again),
        ("RTT rows of the hour", rtt),
    ):
        print(f"{name:22} median {statistics.median(got):7.1f} ms, min {min(got):7.1f} ms ({len(got)} runs)")


if __name__ == "__main__":
    main()
