"""The raw tier's pure half, shared by both stores and the compaction job: landing rows (a batch's
payload as received) and hour chunks (chunks.py), merged into the rows and chart buckets readers
got from the old per-sample tables. No database code here. Design: docs/storage-chunks.md.
"""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from operator import sub

import msgpack

from cxpulse.v1 import payload as wire
from cxpulse.v1.kinds import KINDS

from . import chunks
from .types import PendingBatch, Row, RttRow

__all__ = [
    "HOUR_US",
    "SETTLE_US",
    "CompactStep",
    "Part",
    "RawProgress",
    "SeriesKey",
    "by_hour",
    "fold",
    "fold_parts",
    "hour_of",
    "landing_record",
    "landing_samples",
    "merged",
    "payload_bytes",
    "rows_of",
    "rtt_buckets",
    "rtt_rows_of",
    "series_samples",
    "wifi_buckets",
]

HOUR_US = 3_600_000_000
SETTLE_US = 10 * 60 * 1_000_000  # an hour is compacted once it ended this long ago (late batches land first)

# (target, address, kind, method, hop), hop None stored as 0: the series table's key within an agent.
SeriesKey = tuple[str, str, str, str, int]
# One source of a series' samples: a chunk's bytes, or (timestamps, columns) in time order.
Part = bytes | tuple[Sequence[int], Mapping[str, Sequence]]


@dataclass
class CompactStep:
    """What one ``compact_raw`` transaction did."""

    legacy_rows: int = 0  # samples_* rows folded into chunks this step
    landing_rows: int = 0  # batches rows folded this step
    chunks_written: int = 0
    done: bool = False  # nothing settled is left to fold now


@dataclass
class RawProgress:
    legacy_rows_left: int = 0  # an estimate (max rowid on SQLite, reltuples on PostgreSQL): costs no count
    landing_rows: int = 0
    chunks: int = 0


def hour_of(ts_us: int) -> int:
    """The start of the UTC hour holding ``ts_us`` (us)."""
    return ts_us - ts_us % HOUR_US


def payload_bytes(b: PendingBatch) -> bytes:
    """The bytes to land: as received when the ingest passed them, else the batch encoded (tests,
    scenario loaders; schema 1, plain msgpack: a quarter of schema 2's deflate cost)."""
    if b.payload is not None:
        return b.payload
    return wire.encode(b.batch, version=1)


def landing_record(b: PendingBatch) -> tuple[int, int, int, bytes] | None:
    """(start_us, end_us, samples, payload) of the batch's landing row; None when it has no samples."""
    live = [s for s in b.batch.series if s.ts_us]
    if not live:
        return None
    start = min(min(s.ts_us) for s in live)
    end = max(max(s.ts_us) for s in live)
    return start, end, sum(len(s.ts_us) for s in live), payload_bytes(b)


def _payload_map(data: bytes) -> dict:
    """The payload's map without the decoder's checks: landing rows hold payloads that passed them
    (or that this collector encoded itself), and reads must not refuse what was stored."""
    if data[:1] == wire.COMPRESSED_MARK:
        data = wire._inflate(data)  # the bounded schema-2 inflate, shared with the decoder
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def series_samples(data: bytes) -> dict[SeriesKey, tuple[str, list[int], dict[str, list]]]:
    """Per series of a landing payload: (kind, timestamps, columns); two series of one key in a
    batch are joined in payload order (the later one wins on an equal timestamp, as everywhere)."""
    obj = _payload_map(data)
    t0 = obj.get("t0", 0)
    out: dict[SeriesKey, tuple[str, list[int], dict[str, list]]] = {}
    for s in obj.get("s", []):
        kind = s["k"]
        dt = s["dt"]
        iv = s.get("iv", 0)
        ts = list(accumulate(map(iv.__add__, dt[1:]), initial=t0 + dt[0])) if dt else []
        n = len(ts)
        cols = {name: list(s[name]) if s.get(name) is not None else [None] * n for name in KINDS[kind]}
        key = (s["tg"], s["a"], kind, s["m"], s.get("h") or 0)
        have = out.get(key)
        if have is None:
            out[key] = (kind, ts, cols)
        else:
            have[1].extend(ts)
            for name, col in cols.items():
                have[2][name].extend(col)
    return out


@functools.lru_cache(maxsize=256)
def landing_samples(data: bytes) -> dict[SeriesKey, tuple[str, list[int], dict[str, list]]]:
    """``series_samples`` for readers, kept for the last 256 payloads read: a landing row never
    changes, and one page view reads the last hour's batches six times. Shared: never modify it."""
    return series_samples(data)


def by_hour(ts: Sequence[int], cols: Mapping[str, Sequence]) -> dict[int, tuple[list[int], dict[str, list]]]:
    """Samples split by UTC hour (input order kept within each hour)."""
    out: dict[int, tuple[list[int], dict[str, list]]] = {}
    names = list(cols)
    if ts and hour_of(ts[0]) == hour_of(ts[-1]) and all(a <= b for a, b in pairwise(ts)):
        return {hour_of(ts[0]): (list(ts), {k: list(cols[k]) for k in names})}
    for i, t in enumerate(ts):
        h = hour_of(t)
        got = out.get(h)
        if got is None:
            got = out[h] = ([], {k: [] for k in names})
        got[0].append(t)
        for k in names:
            got[1][k].append(cols[k][i])
    return out


def merged(kind: str, parts: Sequence[Part], since_us: int | None, until_us: int | None) -> chunks.Samples:
    """The parts' samples in time order, one per timestamp (the later part wins), cut to the window."""
    names = list(KINDS[kind])
    pieces: list[tuple[Sequence[int], Mapping[str, Sequence]]] = []
    for part in parts:
        if isinstance(part, (bytes, bytearray, memoryview)):
            s = chunks.decode(kind, bytes(part), since_us, until_us)
            if s.ts_us:
                pieces.append((s.ts_us, s.cols))
        elif part[0]:
            pieces.append(part)
    if len(pieces) == 1:
        ts, cols = pieces[0]
        if all(a < b for a, b in pairwise(ts)):
            full = {k: list(cols[k]) if k in cols else [None] * len(ts) for k in names}
            return chunks.Samples(kind, list(ts), full).window(since_us, until_us)
    all_ts: list[int] = []
    all_cols: dict[str, list] = {k: [] for k in names}
    for ts, cols in pieces:
        all_ts.extend(ts)
        for k in names:
            all_cols[k].extend(cols[k] if k in cols else [None] * len(ts))
    if not all(a < b for a, b in pairwise(all_ts)):
        last = {t: i for i, t in enumerate(all_ts)}  # the last index of each timestamp wins
        order = sorted(last.values(), key=all_ts.__getitem__)
        all_ts = [all_ts[i] for i in order]
        all_cols = {k: [v[i] for i in order] for k, v in all_cols.items()}
    return chunks.Samples(kind, all_ts, all_cols).window(since_us, until_us)


def fold_parts(kind: str, parts: Sequence[Part]) -> tuple[int, int, int, bytes] | None:
    """(start_us, end_us, samples, chunk) of the parts merged into one chunk, in precedence order
    (the later part wins on an equal timestamp); None when they hold no samples."""
    s = merged(kind, parts, None, None)
    if not s.ts_us:
        return None
    return s.ts_us[0], s.ts_us[-1], len(s.ts_us), chunks.encode(kind, s.ts_us, s.cols)


def fold(kind: str, existing: Sequence[bytes], ts: Sequence[int], cols: Mapping[str, Sequence]) -> bytes:
    """One chunk: the existing chunks (id order) then the new samples, the later winning on equal ts."""
    s = merged(kind, [*existing, (ts, cols)], None, None)
    return chunks.encode(kind, s.ts_us, s.cols)


def rows_of(
    kind: str,
    target: str,
    address: str,
    method: str,
    hop: int | None,
    parts: Sequence[Part],
    since_us: int,
    until_us: int,
) -> list[Row]:
    """One series' rows in [since, until), by time, from its parts in precedence order (legacy rows,
    chunks by id, landing samples by id): the later part wins on an equal timestamp."""
    s = merged(kind, parts, since_us, until_us)
    names = list(KINDS[kind])
    hop_out = hop or None
    columns = [s.cols[k] for k in names]
    return [Row(target, address, method, hop_out, t, dict(zip(names, vals))) for t, *vals in zip(s.ts_us, *columns)]


def rtt_rows_of(
    target: str, address: str, method: str, hop: int | None, parts: Sequence[Part], since_us: int, until_us: int
) -> list[RttRow]:
    """``rows_of`` for RTT as RttRow, built straight from the merged samples (no Row in between)."""
    s = merged("rtt", parts, since_us, until_us)
    hop_out = hop or None
    return [RttRow(target, address, method, t, v, hop_out) for t, v in zip(s.ts_us, s.cols["rtt"])]


def _bucket(ts: int, start_us: int, step_us: int) -> int | None:
    """SQLite's ``(ts - start) / step`` on integers: truncated toward zero, NULL for a zero step."""
    if step_us == 0:
        return None
    num = ts - start_us
    q = abs(num) // abs(step_us)
    return q if (num >= 0) == (step_us > 0) else -q


def _sorted_groups(groups: dict) -> list:
    """GROUP BY's order in SQLite: NULL first, then ascending."""
    return [groups[b] for b in sorted(groups, key=lambda b: (b is not None, b or 0))]


def rtt_buckets(ts: Sequence[int], rtt: Sequence[int | None], start_us: int, step_us: int) -> list[tuple]:
    """What ``_SQL_BUCKET_RTT`` returns for one series' samples (time order, already in the window):
    (bucket, samples, answered, rtt total, rtt min, rtt max, |dRTT| total, |dRTT| pairs), totals float."""
    if ts and step_us > 0 and ts[0] >= start_us and list(ts) == sorted(ts):
        return _rtt_buckets_sliced(ts, rtt, start_us, step_us)
    groups: dict[int | None, list] = {}
    prev: int | None = None
    for t, v in zip(ts, rtt):
        b = _bucket(t, start_us, step_us)
        g = groups.get(b)
        if g is None:
            g = groups[b] = [b, 0, 0, 0, None, None, 0, 0]
        g[1] += 1
        if v is not None:
            g[2] += 1
            g[3] += v
            g[4] = v if g[4] is None or v < g[4] else g[4]
            g[5] = v if g[5] is None or v > g[5] else g[5]
            if prev is not None:
                g[6] += abs(v - prev)
                g[7] += 1
        prev = v
    return [(b, n, k, float(tot), lo, hi, float(dt), dn) for b, n, k, tot, lo, hi, dt, dn in _sorted_groups(groups)]


def _rtt_buckets_sliced(ts: Sequence[int], rtt: Sequence[int | None], start_us: int, step_us: int) -> list[tuple]:
    """``rtt_buckets`` on ascending samples from ``start_us`` on: each bucket a slice, summed by builtins
    (a day of one hop is 86,400 samples; a loop per sample took 0.2 s of the page's second)."""
    out: list[tuple] = []
    i, end = 0, len(ts)
    while i < end:
        b = (ts[i] - start_us) // step_us
        j = bisect_left(ts, start_us + (b + 1) * step_us, i)
        got = [v for v in rtt[i:j] if v is not None]
        w = rtt[i - 1 if i else 0 : j]  # a pair belongs to its later sample's bucket
        if None not in w:
            dsum, dn = sum(map(abs, map(sub, w[1:], w[:-1]))), len(w) - 1
        else:
            pairs = [abs(y - x) for x, y in pairwise(w) if x is not None and y is not None]
            dsum, dn = sum(pairs), len(pairs)
        lo, hi = (min(got), max(got)) if got else (None, None)
        out.append((b, j - i, len(got), float(sum(got)), lo, hi, float(dsum), dn))
        i = j
    return out


def wifi_buckets(
    ts: Sequence[int], conn: Sequence[int | None], rssi: Sequence[int | None], start_us: int, step_us: int
) -> list[tuple]:
    """What ``_SQL_BUCKET_WIFI`` returns for an agent's Wi-Fi samples (any order, already in the
    window): (bucket, readings, connected, RSSI total (float), RSSI count, RSSI min)."""
    groups: dict[int | None, list] = {}
    for t, c, r in zip(ts, conn, rssi):
        b = _bucket(t, start_us, step_us)
        g = groups.get(b)
        if g is None:
            g = groups[b] = [b, 0, 0, 0, 0, None]
        g[1] += 1
        if c:
            g[2] += 1
            if r is not None:
                g[3] += r
                g[4] += 1
                g[5] = r if g[5] is None or r < g[5] else g[5]
    return [(b, n, k, float(tot), rn, lo) for b, n, k, tot, rn, lo in _sorted_groups(groups)]
