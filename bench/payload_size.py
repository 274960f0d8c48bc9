"""Payload bytes per hour of recorded batches, re-encoded as if batched longer and per schema.

Why: the upload budget is decided by how a batch is encoded and how long it is, and both can be
judged on real batches without running an agent for an hour per choice. Give it spool files
(``state_dir/spool/*.mpk``, read through their header) or raw payloads; consecutive batches are
merged series by series, as the batcher would have collected them over the longer interval.

    .venv/bin/python -m bench.payload_size /path/to/spool --skip 3 --batch-s 10
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

from cxpulse.agent.spool import CorruptFile, unpack
from cxpulse.v1 import payload as p


def load(paths: list[Path]) -> list[p.SampleBatch]:
    out = []
    for path in paths:
        raw = path.read_bytes()
        try:
            raw = unpack(raw)
        except CorruptFile:
            pass  # a raw payload, not a spool file
        out.append(p.decode(raw))
    return out


def merge(batches: list[p.SampleBatch]) -> p.SampleBatch:
    out, index = p.SampleBatch(), {}
    for b in batches:
        for s in b.series:
            key = (s.target, s.address, s.kind, s.method, s.hop)
            if key not in index:
                index[key] = p.Series(target=s.target, address=s.address, method=s.method, kind=s.kind, hop=s.hop)
                out.series.append(index[key])
            t = index[key]
            t.ts_us += s.ts_us
            for name, col in s.cols.items():
                t.cols[name] += col
        out.events += b.events
        out.paths += b.paths
    return out


def _deflate(data: bytes) -> int:
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    return len(z.compress(data) + z.flush())


def table(batches: list[p.SampleBatch], batch_s: float, groups: tuple[int, ...] = (1, 3, 6)) -> list[dict]:
    rows = []
    for g in groups:
        merged = [merge(batches[i : i + g]) for i in range(0, len(batches) - g + 1, g)]
        if not merged:
            continue
        hours = len(merged) * g * batch_s / 3600
        v1 = [p.encode(b) for b in merged]
        v2 = [p.encode(b, version=2) for b in merged]
        rows.append(
            {
                "batch_s": g * batch_s,
                "batches": len(merged),
                "v1_kB_h": round(sum(map(len, v1)) / hours / 1000, 1),
                "deflate_kB_h": round(sum(map(_deflate, v1)) / hours / 1000, 1),
                "v2_kB_h": round(sum(map(len, v2)) / hours / 1000, 1),
                "v2_B_per_batch": round(sum(map(len, v2)) / len(merged)),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N batches (start-up)")
    ap.add_argument("--batch-s", type=float, default=10.0, help="the interval the recorded batches were closed at")
    args = ap.parse_args()
    batches = load(sorted(args.dir.glob("*.mpk")))[args.skip :]
    print(f"{len(batches)} batches of {args.batch_s:g} s")
    for r in table(batches, args.batch_s):
        print(
            f"{r['batch_s']:5g} s: schema 1 {r['v1_kB_h']:6.1f} kB/h  deflate {r['deflate_kB_h']:6.1f}  "
            f"schema 2 {r['v2_kB_h']:6.1f} kB/h ({r['v2_B_per_batch']} B/batch)"
        )


if __name__ == "__main__":
    main()
