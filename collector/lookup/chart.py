"""The timeline chart's series: one agent's samples bucketed per hop (RTT, loss, jitter) and Wi-Fi.
The bucket width is the smallest readable one that keeps a series under the page's point budget;
a store that can aggregate by itself (``store.capabilities.Buckets``) does it, any other is read row by row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..store import Store
from ..store.capabilities import Buckets

__all__ = ["DEFAULT_POINTS", "MAX_POINTS", "chart", "event_dict", "pick_step_s", "score_points"]

S = 1_000_000
MAX_POINTS = 5000
DEFAULT_POINTS = 720
# Bucket widths a person reads easily on a time axis; the timeline picks the smallest that fits.
NICE_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def pick_step_s(span_s: int, points: int) -> int:
    """The smallest readable bucket width that keeps the series at or under ``points`` buckets."""
    want = max(1, math.ceil(span_s / max(1, points)))
    return next((s for s in NICE_STEPS_S if s >= want), math.ceil(want / 86400) * 86400)


def chart(store: Store, key: int, since: int, until: int, points: int, aggregate: bool = True) -> dict:
    """Buckets of [since, until) on round times (10:00, 10:02, ...): per hop, gateway first, and Wi-Fi.

    ``aggregate`` False reads row by row even where the store could sum (tests compare the two).
    """
    step_s = pick_step_s((until - since) // S, points)
    step = step_s * S
    start = (since // step) * step  # buckets on round times: 10:00, 10:02, ... not 10:00:37
    size = max(1, -(-(until - start) // step))
    got = store_buckets(store, key, since, until, start, step, size) if aggregate else None
    if got is not None:
        accs, wifi = got
    else:
        accs = rtt_buckets(store, key, since, until, start, step, size)
        wifi = wifi_buckets(store, key, since, until, start, step, size)
    order = sorted(accs.items(), key=lambda kv: (kv[0] != "gateway", kv[1].hop is None, kv[1].hop or 0, kv[0]))
    return {
        "start_us": start,
        "step_s": step_s,
        "buckets": size,
        "hops": [hop_series(t, a) for t, a in order],
        "wifi": wifi_series(wifi, size),
    }


@dataclass
class Acc:
    """Per-bucket sums for one RTT target; turned into ms/percent series at the end."""

    hop: int | None
    n: list[int]
    ok: list[int]
    total: list[float]
    lo: list[float | None]
    hi: list[float | None]
    jsum: list[float]
    jn: list[int]
    addresses: set[str] = field(default_factory=set)

    @classmethod
    def empty(cls, size: int, hop: int | None) -> Acc:
        return cls(hop, [0] * size, [0] * size, [0.0] * size, [None] * size, [None] * size, [0.0] * size, [0] * size)


def rtt_buckets(store: Store, key: int, since: int, until: int, start: int, step: int, size: int) -> dict[str, Acc]:
    """Buckets from the store's rows: works on every Store, costs about 1.5 s per 250k samples.

    Jitter here is the mean |change of RTT| between consecutive samples of one series that were
    both answered (a lost sample breaks the pair), per bucket of the later sample.
    """
    accs: dict[str, Acc] = {}
    prev: dict[tuple, int | None] = {}
    for r in store.rows(key, "rtt", since, until):
        a = accs.get(r.target)
        if a is None:
            a = accs[r.target] = Acc.empty(size, r.hop)
        if r.hop and not a.hop:
            a.hop = r.hop
        a.addresses.add(r.address)
        b = (r.ts_us - start) // step
        a.n[b] += 1
        v = r.values["rtt"]
        series = (r.target, r.address, r.method, r.hop)
        p = prev.get(series)
        prev[series] = v
        if v is None:
            continue
        a.ok[b] += 1
        a.total[b] += v
        a.lo[b] = v if a.lo[b] is None or v < a.lo[b] else a.lo[b]
        a.hi[b] = v if a.hi[b] is None or v > a.hi[b] else a.hi[b]
        if p is not None:
            a.jsum[b] += abs(v - p)
            a.jn[b] += 1
    return accs


def wifi_buckets(store: Store, key: int, since: int, until: int, start: int, step: int, size: int) -> list[tuple]:
    """Per bucket: (b, readings, connected, rssi sum, rssi count, rssi min) from the store's rows."""
    acc: dict[int, list] = {}
    for r in store.rows(key, "wifi", since, until):
        b = (r.ts_us - start) // step
        x = acc.setdefault(b, [b, 0, 0, 0.0, 0, None])
        x[1] += 1
        v = r.values
        if v["conn"]:
            x[2] += 1
            if v["rssi"] is not None:
                x[3] += v["rssi"]
                x[4] += 1
                x[5] = v["rssi"] if x[5] is None or v["rssi"] < x[5] else x[5]
    return [tuple(x) for x in acc.values()]


def store_buckets(
    store: Store, key: int, since: int, until: int, start: int, step: int, size: int
) -> tuple[dict[str, Acc], list[tuple]] | None:
    """The same buckets as the row-by-row path, aggregated by the store itself (SQLite: a day of three
    hops in ~0.3 s); None when the store cannot.

    The Store protocol hands out one Python object per sample, which for a day at 1 Hz (260k
    samples) takes 1.5 s, more than the page's budget. A test pins both paths to the same
    series (tests/web/test_api.py).
    """
    if not isinstance(store, Buckets):
        return None
    per_series, wifi = store.buckets(key, since, until, start, step)
    accs: dict[str, Acc] = {}
    for target, addr, hop, rows in per_series:
        if not rows:
            continue
        a = accs.get(target)
        if a is None:
            a = accs[target] = Acc.empty(size, None)
        if hop:
            a.hop = a.hop or hop
        a.addresses.add(addr)
        for b, n, ok, total, lo, hi, dsum, dn in rows:
            a.n[b] += n
            a.ok[b] += ok
            a.total[b] += total
            a.jsum[b] += dsum
            a.jn[b] += dn
            if lo is not None:
                a.lo[b] = lo if a.lo[b] is None or lo < a.lo[b] else a.lo[b]
                a.hi[b] = hi if a.hi[b] is None or hi > a.hi[b] else a.hi[b]
    return accs, wifi


def _ms(us: float | None, digits: int = 2) -> float | None:
    return None if us is None else round(us / 1000.0, digits)


def hop_series(target: str, a: Acc) -> dict:
    return {
        "target": target,
        "hop": a.hop,
        "addresses": sorted(x for x in a.addresses if x),
        "samples": a.n,
        "rtt_avg_ms": [_ms(t / k) if k else None for t, k in zip(a.total, a.ok)],
        "rtt_min_ms": [_ms(v) for v in a.lo],
        "rtt_max_ms": [_ms(v) for v in a.hi],
        "loss_pct": [round(100.0 * (n - k) / n, 1) if n else None for n, k in zip(a.n, a.ok)],
        "jitter_ms": [_ms(s / k) if k else None for s, k in zip(a.jsum, a.jn)],
    }


def wifi_series(buckets: list[tuple], size: int) -> dict | None:
    """RSSI per bucket (mean and lowest of connected readings) and the share of readings connected."""
    if not buckets:
        return None
    avg: list[float | None] = [None] * size
    lo: list[int | None] = [None] * size
    conn: list[float | None] = [None] * size
    for b, n, c, rsum, rn, rmin in buckets:
        avg[b] = round(rsum / rn, 1) if rn else None
        lo[b] = rmin
        conn[b] = round(100.0 * c / n, 1) if n else None
    return {"rssi_avg_dbm": avg, "rssi_min_dbm": lo, "connected_pct": conn}


def event_dict(e) -> dict:
    return {
        "id": e.id,
        "kind": e.kind,
        "target": e.target,
        "start_us": e.start_us,
        "end_us": e.end_us,
        "duration_s": None if e.end_us is None else round((e.end_us - e.start_us) / 1e6, 1),
        "severity": e.severity,
        "evidence": e.evidence,
    }


def score_points(view_agent: dict | None) -> list[dict]:
    """The per-minute score timeline from the view's score section, as [{t_us, score, label, limiting}]."""
    score = (view_agent or {}).get("score")
    if not isinstance(score, dict):
        return []
    tl = None
    for k in ("timeline", "minutes", "per_minute"):
        if isinstance(score.get(k), list):
            tl = score[k]
            break
    out = []
    for m in tl or []:
        if not isinstance(m, dict):
            continue
        t = next((m[k] for k in ("start_us", "minute_us", "ts_us", "t_us") if isinstance(m.get(k), int)), None)
        s = m.get("score")
        if t is None or not isinstance(s, (int, float)):
            continue
        lim = m.get("limiting") or m.get("limiting_component")
        out.append(
            {
                "t_us": t,
                "score": round(float(s), 1),
                "label": m.get("label"),
                "limiting": lim.get("name") if isinstance(lim, dict) else lim,
            }
        )
    out.sort(key=lambda p: p["t_us"])
    return out
