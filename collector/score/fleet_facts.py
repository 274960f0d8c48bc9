"""What the fleet reads of an agent-minute (per RTT target: samples, lost, RTT sketch; per app: checks,
failed, total-time sketch), kept in its minute score row, whose digest covers them (score/kept.py):
the fleet merges these instead of decoding every agent's rollups (issue 19)."""

from __future__ import annotations

from collections.abc import Iterable

import msgpack

from ..store import rollup as ru
from ..store.sketch import LatencySketch

__all__ = ["merge_window", "of_minute", "packed", "unpacked"]

# (kind, the rollup field of its bad count, the rollup field of its sketch)
_KINDS = {"rtt": ("lost", "rtt"), "http": ("failed", "total")}


def _sketch_out(s: LatencySketch | None) -> list | None:
    """A sketch as plain values (None when empty: a merge skips an empty sketch)."""
    if s is None or not s.count:
        return None
    return [s.gamma, s.zero, s.count, s.sum, s.min, s.max, list(s.buckets), list(s.buckets.values())]


def of_minute(rollups: Iterable[ru.Rollup]) -> list:
    """The facts of one minute's rollups: [kind, target, n, bad, sketch] per RTT target and app."""
    out = []
    for r in rollups:
        fields = _KINDS.get(r.kind)
        if fields is not None:
            d = r.data
            out.append([r.kind, r.target, d["n"], d[fields[0]], _sketch_out(d[fields[1]])])
    return out


def packed(rollups: Iterable[ru.Rollup]) -> bytes:
    """``of_minute`` as kept: msgpack bytes inside the minute's kept row, unpacked by the fleet alone."""
    return msgpack.packb(of_minute(rollups), use_bin_type=True)


def unpacked(data: bytes) -> list:
    return msgpack.unpackb(data, raw=False)


def merge_window(minutes: Iterable[list]) -> dict[tuple[str, str], tuple[int, int, LatencySketch | None]]:
    """(kind, target) -> (n, bad, merged sketch or None) over the minutes' facts: exactly what
    ``timeline.merged`` of their rollups holds in those fields (counts add, sketches merge)."""
    acc: dict[tuple[str, str], list] = {}
    for facts in minutes:
        for kind, target, n, bad, sk in facts:
            a = acc.get((kind, target))
            if a is None:
                a = acc[(kind, target)] = [0, 0, None]
            a[0] += n or 0
            a[1] += bad or 0
            if sk is None:
                continue
            gamma, zero, count, total, lo, hi, keys, counts = sk
            s = a[2]
            if s is None:
                s = a[2] = LatencySketch(gamma)
            elif s.gamma != gamma:
                raise ValueError(f"cannot merge sketches of different gamma ({s.gamma} and {gamma})")
            b = s.buckets
            get = b.get
            for k, c in zip(keys, counts):
                b[k] = get(k, 0) + c
            s.zero += zero
            s.count += count
            s.sum += total
            s.min = lo if s.min is None else min(s.min, lo)
            s.max = hi if s.max is None else max(s.max, hi)
    return {k: (a[0], a[1], a[2]) for k, a in acc.items()}
