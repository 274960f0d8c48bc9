"""Per-minute rollups: what one agent measured of one target in one minute, in a mergeable form.
Pure: the store merges them in its commit and stores ``encode``'s bytes; scoring ``decode``s them.
Why mergeable, events, fragments: docs/storage.md, "Rollups".
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise, repeat
from operator import and_, is_, sub
from typing import Any

import msgpack

from cxpulse.v1.payload import Event, SampleBatch, Series

from .sketch import LatencySketch

__all__ = [
    "BLOCK_US",
    "EVENTS",
    "EVENTS_TARGET",
    "FIELDS",
    "MINUTE_US",
    "AgentSpan",
    "RolledBatch",
    "Rollup",
    "batch_rollups",
    "block_of",
    "block_rollups",
    "canonical_bytes",
    "commit_work",
    "decode",
    "empty",
    "encode",
    "event_minutes",
    "event_rollups",
    "merge",
    "merge_all",
    "merge_data",
    "minute_of",
    "minutes_to_redo",
    "normalized",
    "rolled",
    "rollups_of_batches",
    "rtt_jitter",
    "rtt_loss_runs",
    "sketch_count_le",
]

MINUTE_US = 60_000_000
BLOCK_US = 15 * MINUTE_US  # the coarser tier: kept after the minute rollups expire (docs/storage.md)
EVENTS = "events"
EVENTS_TARGET = ""  # one events rollup per agent-minute, over all targets
CPU_HIGH_PERMILLE = 900  # the detector's device_pressure thresholds (agent/detector: CPU > 90%, memory > 95%)
MEM_HIGH_PERMILLE = 950
# The desk's own traffic is "near what its link carried at best" at this share of the best (the
# agent's decaying maximum, or the link speed when that is lower), and from this rate on: an idle
# desk at 3 of its best 4 kbit/s fills nothing (issue 17).
OWN_NEAR_BEST = 0.8
OWN_MIN_KBPS = 256
SET_CAP = 8  # a set field keeps its 8 smallest members: bounded, and still associative
SPANS_CAP = 64  # events per agent-minute kept for stability (the longest, most severe first)
OPEN_EVENT_HORIZON_US = 24 * 3600 * 1_000_000  # events are looked for at most a day before a minute

# Merge operations of each field, per kind.
ADD, MAX, SKETCH, SET, COUNTS, HIST, FRAGS, ARGMAX = "add", "max", "sketch", "set", "counts", "hist", "frags", "argmax"

FIELDS: dict[str, dict[str, str]] = {
    # RTT to a hop or target: samples, lost, RTT distribution, |dRTT| within fragments, loss runs
    # within fragments, fragment ends (to join neighbours), addresses seen.
    "rtt": {
        "n": ADD,
        "lost": ADD,
        "rtt": SKETCH,
        "jit_sum": ADD,
        "jit_n": ADD,
        "runs": ADD,
        "frags": FRAGS,
        "addr": SET,
    },
    # App checks: failures by class, and a distribution per phase (successful checks' totals).
    "http": {
        "n": ADD,
        "failed": ADD,
        "errs": COUNTS,
        "dns": SKETCH,
        "tcp": SKETCH,
        "tls": SKETCH,
        "ttfb": SKETCH,
        "total": SKETCH,
        "addr": SET,
    },
    # Voice-cadence runs: packets sent/received, run medians of RTT and jitter, worst burst and run.
    "voice": {
        "runs": ADD,
        "failed": ADD,
        "sent": ADD,
        "recv": ADD,
        "loss_runs": ADD,
        "rtt": SKETCH,
        "jit": SKETCH,
        "burst_max": MAX,
        "run_max": MAX,
        "reord": ADD,
        "addr": SET,
    },
    # Device readings: CPU/memory (permille) sums, maxima and readings above the pressure lines;
    # the desk's own traffic (kbit/s): readings with a rate, sums, readings near the best (and the
    # rates of those), the best the agent reported and the link speed (Mbit/s), per direction.
    "device": {
        "n": ADD,
        "cpu_sum": ADD,
        "cpu_max": MAX,
        "cpu_hi": ADD,
        "mem_sum": ADD,
        "mem_max": MAX,
        "mem_hi": ADD,
        "nicerr": ADD,
        "top": ARGMAX,
        "ifk": SET,
        "if": SET,
        "vpn": SET,
        "proxy": SET,
        "tr_n": ADD,
        "up_sum": ADD,
        "dn_sum": ADD,
        "up_hi": ADD,
        "dn_hi": ADD,
        "up_hi_sum": ADD,
        "dn_hi_sum": ADD,
        "up_best": MAX,
        "dn_best": MAX,
        "spd": MAX,
    },
    # Wi-Fi readings: connected share, RSSI/SNR histograms (exact, 1 dB), tx-rate distribution.
    "wifi": {"n": ADD, "conn": ADD, "rssi": HIST, "snr": HIST, "tx": SKETCH, "bssid": SET, "band": SET},
}


def minute_of(ts_us: int) -> int:
    """The start of the minute holding ``ts_us`` (UTC minutes; µs since the epoch)."""
    return ts_us - ts_us % MINUTE_US


def block_of(ts_us: int) -> int:
    """The start of the 15-minute block holding ``ts_us`` (UTC; µs since the epoch)."""
    return ts_us - ts_us % BLOCK_US


class Rollup:
    """One agent-minute of one target. ``data`` holds the kind's fields (live: sketches as objects).

    ``raw``: the stored bytes the rollup was read from (None when built or merged here). A
    rollup read from the store is decoded on first use of ``data``: the kept minute scores
    (score/kept.py) need only the bytes of a minute already scored, and an app's recent
    availability needs the checks of the minutes before only when a check failed.
    """

    __slots__ = ("_data", "agent", "hop", "kind", "minute_us", "raw", "span_us", "target")

    def __init__(
        self,
        agent: int,
        minute_us: int,
        kind: str,
        target: str,
        hop: int = 0,
        data: dict | None = None,
        raw: bytes | None = None,
        span_us: int = MINUTE_US,
    ):
        self.agent, self.minute_us, self.kind, self.target, self.hop = agent, minute_us, kind, target, hop
        self.span_us = span_us  # MINUTE_US, or BLOCK_US for a 15-minute rollup starting at ``minute_us``
        self._data = data if data is not None or raw is not None else {}
        self.raw = raw

    @property
    def data(self) -> dict:
        d = self._data
        if d is None:
            d = self._data = decode(self.kind, self.raw or b"")
        return d

    @data.setter
    def data(self, value: dict) -> None:
        self._data = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rollup):
            return NotImplemented
        return (self.agent, self.minute_us, self.kind, self.target, self.hop, self.span_us, self.data) == (
            other.agent,
            other.minute_us,
            other.kind,
            other.target,
            other.hop,
            other.span_us,
            other.data,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def __repr__(self) -> str:
        span = "" if self.span_us == MINUTE_US else f", span_us={self.span_us!r}"
        return (
            f"Rollup(agent={self.agent!r}, minute_us={self.minute_us!r}, kind={self.kind!r}, "
            f"target={self.target!r}, hop={self.hop!r}, data={self.data!r}{span})"
        )

    @property
    def key(self) -> tuple[int, int, str, str]:
        return (self.agent, self.minute_us, self.kind, self.target)

    @property
    def count(self) -> int:
        """Samples (checks, runs, readings, event spans) behind this rollup."""
        if self.kind == EVENTS:
            return len(self.data.get("spans", ()))
        return int(self.data.get("runs" if self.kind == "voice" else "n", 0))


def own_digest(rollups: Sequence[Rollup]) -> bytes | None:
    """A digest of these rollups' stored bytes, what the caches of score/kept.py are keyed by
    (None when one was not read from the store)."""
    parts = []
    for r in sorted(rollups, key=_kind_target) if len(rollups) > 1 else rollups:
        raw = r.raw
        if raw is None:
            return None
        parts.append(f"{r.minute_us}\0{r.kind}\0{r.target}\0{r.hop}\0{len(raw)}\0".encode())
        parts.append(raw)
    return hashlib.blake2b(b"".join(parts), digest_size=16).digest()  # one update: the same digest, faster


def _kind_target(r: Rollup) -> tuple[str, str]:
    return r.kind, r.target


# --- the fields ----------------------------------------------------------------------------------


def empty(kind: str) -> dict:
    if kind == EVENTS:
        return {"spans": []}
    out: dict = {}
    for name, op in FIELDS[kind].items():
        out[name] = 0 if op == ADD else [] if op in (SET, FRAGS) else {} if op in (COUNTS, HIST) else None
    return out


def merge_data(kind: str, a: dict, b: dict) -> dict:
    """Merge ``b`` into ``a`` (in place; returns a). Every operation is associative and commutative."""
    return merge_all(kind, a, (b,))


def merge_all(kind: str, a: dict, others: Sequence[dict]) -> dict:
    """Merge each of ``others`` into ``a`` (in place; returns a): ``merge_data`` of each in turn,
    with one pass per field over all of them.

    Why all at once: a day's lookup merges 1,440 minutes per target, and merging them one pair
    at a time re-sorted the RTT fragments and the sets at every step (and went through the
    field table 1,440 times).
    """
    if kind == EVENTS:  # events rollups are replaced, never merged (see the module docstring)
        if others:
            a["spans"] = list(others[-1]["spans"])
        return a
    for name, op in FIELDS[kind].items():
        x = a.get(name)
        ys = [d.get(name) for d in others]
        if op == ADD:
            a[name] = sum((y or 0 for y in ys), x or 0)
        elif op in (MAX, ARGMAX):
            vals = [v for v in (x, *ys) if v is not None]
            a[name] = (
                None if not vals else max(vals) if op == MAX else vals[0] if len(vals) == 1 else max(map(list, vals))
            )
        elif op == SKETCH:
            for y in ys:
                if y is not None and y.count:
                    a[name] = x = y.copy() if x is None else x.merge(y)
        elif op == SET:
            a[name] = sorted(set(x or ()).union(*(y for y in ys if y)))[:SET_CAP]
        elif op in (COUNTS, HIST):
            d = dict(x or {})
            for y in ys:
                for k, v in (y or {}).items():
                    d[k] = d.get(k, 0) + v
            a[name] = d
        elif op == FRAGS:
            a[name] = _sorted_frags([list(f) for y in (x, *ys) for f in (y or ())])
    return a


def merge(a: Rollup, b: Rollup) -> Rollup:
    """Merge ``b`` into ``a`` (same key); the hop is the highest seen (deterministic under any order)."""
    if a.key != b.key:
        raise ValueError(f"cannot merge rollups of different keys: {a.key} and {b.key}")
    a.hop = max(a.hop, b.hop)
    merge_data(a.kind, a.data, b.data)
    return a


def block_rollups(rollups: Iterable[Rollup]) -> list[Rollup]:
    """The 15-minute rollups of these minute rollups: one per (agent, block, kind, target).

    Sample kinds merge with ``merge_all`` (exact: the same figures as one rollup of the block's
    samples; RTT fragments joined, as a settled block gets no more parts). An ``events`` block
    holds its minutes' spans, the pieces of one event that meet at a minute boundary joined
    again (``SPANS_CAP`` at most, as for a minute). Ordered by key.
    """
    groups: dict[tuple[int, int, str, str], list[Rollup]] = {}
    for r in rollups:
        groups.setdefault((r.agent, block_of(r.minute_us), r.kind, r.target), []).append(r)
    out = []
    for (agent, block, kind, target), g in sorted(groups.items()):
        hop = max(r.hop for r in g)
        if kind == EVENTS:
            data = {"spans": _joined_spans([s for r in g for s in r.data["spans"]])}
        else:
            data = normalized(kind, merge_all(kind, empty(kind), [r.data for r in g]))  # settled: frags joined
        out.append(Rollup(agent, block, kind, target, hop, data, span_us=BLOCK_US))
    return out


def _joined_spans(spans: list) -> list:
    """Event spans with the pieces of one event that meet end to start joined into one."""
    out: list[list] = []
    last: dict[tuple, list] = {}
    for s in sorted((list(s) for s in spans), key=lambda s: (s[5], s[6], s[0], s[1])):
        key = (s[2], s[3], s[4], s[5], s[6])
        prev = last.get(key)
        if prev is not None and prev[1] == s[0]:
            prev[1] = max(prev[1], s[1])
            continue
        out.append(s)
        last[key] = s
    if len(out) > SPANS_CAP:
        out = sorted(out, key=lambda s: (-s[2], s[0] - s[1]))[:SPANS_CAP]
    return sorted(out, key=lambda s: (s[0], s[1], s[3], s[4], s[5]))


def _frag_key(f: Sequence) -> tuple:
    return (f[0], f[1], -1 if f[2] is None else f[2], -1 if f[3] is None else f[3], f[4], f[5])


def _sorted_frags(frags: Iterable[Sequence]) -> list:
    """Fragments in ``_frag_key`` order.

    Plain list comparison orders them the same way wherever it can compare two of them (it
    raises only where a None meets a number, which the key maps to -1), and it skips a Python
    key call per fragment: a day has 26,000 RTT fragments, read three times by a lookup.
    """
    fs = list(frags)
    try:
        return sorted(fs)
    except TypeError:  # a tie in time between an answered and a lost end, or a tuple among lists
        return sorted(fs, key=_frag_key)


# --- bytes ----------------------------------------------------------------------------------------


def encode(kind: str, data: dict) -> bytes:
    """Canonical bytes: fields in name order, sketches as their canonical bytes, maps key-sorted.

    The same rollup always encodes to the same bytes, so "the split added up exactly" can be
    checked byte for byte.
    """
    out: dict = {}
    if kind == EVENTS:
        out["spans"] = sorted([list(s) for s in data.get("spans", ())], key=lambda s: (s[0], s[1], s[3], s[4], s[5]))
    else:
        for name in sorted(FIELDS[kind]):
            op, v = FIELDS[kind][name], data.get(name)
            if op == SKETCH:
                v = v.to_bytes() if v is not None and v.count else None
            elif op in (COUNTS, HIST):
                counts = v or {}
                v = {k: counts[k] for k in sorted(counts) if counts[k]}
            out[name] = v
    return msgpack.packb(out, use_bin_type=True)


def decode(kind: str, raw: bytes) -> dict:
    d = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    if kind == EVENTS:
        return {"spans": d.get("spans", [])}
    out = empty(kind)
    for name, op in FIELDS[kind].items():
        if name not in d:
            continue  # a field added later: its empty value
        v = d[name]
        if op == SKETCH:
            v = LatencySketch.from_bytes(v) if v else None
        elif op in (COUNTS, HIST):
            v = dict(v or {})
        out[name] = v
    return out


# --- from a batch to its rollups --------------------------------------------------------------------


@dataclass(eq=False)
class RolledBatch(SampleBatch):
    """A batch that brings its own rollups, built where it was decoded (a decode worker process).

    Why: building rollups is per-sample work, and the store's commit (where rollups used to be
    built) runs on the one thread that every ingested sample waits for. ``rollups`` are those of
    ``batch_rollups`` under agent key 0; the first ``rollups_of_batches`` that uses them takes
    them (merging mutates them), so a retried commit rebuilds them from the samples.
    """

    rollups: list[Rollup] | None = None


def batch_rollups(batch: SampleBatch, agent: int = 0) -> list[Rollup]:
    """One batch's rollups (per series and minute, not yet merged across series of the same key)."""
    return [r for s in batch.series if s.kind in FIELDS and len(s) for r in _series_rollups(agent, s)]


def rolled(batch: SampleBatch) -> RolledBatch:
    """The batch with its rollups built now (see RolledBatch)."""
    return RolledBatch(batch.series, batch.events, batch.paths, batch_rollups(batch))


def rollups_of_batches(items: Iterable[tuple[int, SampleBatch]]) -> dict[tuple, Rollup]:
    """The rollups of (agent key, batch) pairs, merged per key (the store merges them with what it holds)."""
    out: dict[tuple, Rollup] = {}
    for agent, batch in items:
        pre = getattr(batch, "rollups", None)
        if pre is not None:
            batch.rollups = None  # type: ignore[attr-defined]  # a RolledBatch's, taken: merges below mutate them
            for r in pre:
                r.agent = agent
        for r in pre if pre is not None else batch_rollups(batch, agent):
            have = out.get(r.key)
            out[r.key] = r if have is None else merge(have, r)
    return out


def _series_rollups(agent: int, s: Series) -> list[Rollup]:
    """One rollup per minute the series touches, each built from that minute's contiguous slice.

    Samples are put in time order first (a copy, only if they are not already), so a minute is
    one slice found by bisection: builders see ``range`` objects and can work on whole slices.
    """
    ts = s.ts_us
    if ts != sorted(ts):
        order = sorted(range(len(ts)), key=ts.__getitem__)
        s = Series(
            s.target,
            s.address,
            s.method,
            s.kind,
            s.hop,
            [ts[i] for i in order],
            {c: [v[i] for i in order] for c, v in s.cols.items()},
        )
        ts = s.ts_us
    build = _BUILDERS[s.kind]
    out = []
    i, n = 0, len(ts)
    while i < n:
        minute = minute_of(ts[i])
        j = bisect_left(ts, minute + MINUTE_US, i)
        data = empty(s.kind)
        build(data, s, range(i, j))
        if "addr" in data:
            data["addr"] = [s.address[:64]]
        out.append(Rollup(agent, minute, s.kind, s.target, s.hop or 0, data))
        i = j
    return out


def _build_rtt(d: dict, s: Series, idx: range) -> None:
    """Whole-slice operations (C loops), not a Python loop per sample: this runs for every RTT ingested."""
    rtts = s.cols["rtt"][idx.start : idx.stop]
    lost = rtts.count(None)
    if lost:
        answered = [v for v in rtts if v is not None]
        nones = list(map(is_, rtts, repeat(None)))
        runs = lost - sum(map(and_, nones, nones[1:]))  # a run starts at each None not after a None
    else:
        answered, runs = rtts, 0
    d["lost"] = lost
    if len(answered) > 1:
        d["jit_sum"] = sum(map(abs, map(sub, answered[1:], answered)))
        d["jit_n"] = len(answered) - 1
    sk = None
    if answered:
        sk = LatencySketch()
        sk.add_many(answered)
    d["n"] = len(rtts)
    d["rtt"] = sk
    d["runs"] = runs
    d["frags"] = [
        [
            s.ts_us[idx.start],
            s.ts_us[idx.stop - 1],
            answered[0] if answered else None,
            answered[-1] if answered else None,
            int(rtts[0] is None),
            int(rtts[-1] is None),
        ]
    ]


def _build_http(d: dict, s: Series, idx: list[int]) -> None:
    c = s.cols
    for i in idx:
        d["n"] += 1
        err = c["err"][i]
        if err:
            d["failed"] += 1
            d["errs"][err] = d["errs"].get(err, 0) + 1
        for phase in ("dns", "tcp", "tls", "ttfb"):
            if c[phase][i] is not None:
                _sketch_add(d, phase, c[phase][i])
        if not err and c["total"][i] is not None:
            _sketch_add(d, "total", c["total"][i])


def _build_voice(d: dict, s: Series, idx: list[int]) -> None:
    c = s.cols
    for i in idx:
        d["runs"] += 1
        sent, recv = c["sent"][i] or 0, c["recv"][i] or 0
        if c["err"][i] or not sent:
            d["failed"] += 1
            continue
        d["sent"] += sent
        d["recv"] += recv
        lost = max(0, sent - recv)
        run = c["run"][i] or 0
        if lost:
            # The payload has the longest loss run, not the number of runs: lost / longest is the
            # fewest runs the loss can be in, so BurstR comes out at most as bursty as it was.
            d["loss_runs"] += math.ceil(lost / run) if run else lost
        for col, name in (("rtt", "rtt"), ("jit", "jit")):
            if c[col][i] is not None:
                _sketch_add(d, name, c[col][i])
        for col, name in (("burst", "burst_max"), ("run", "run_max")):
            if c[col][i] is not None:
                d[name] = c[col][i] if d[name] is None else max(d[name], c[col][i])
        d["reord"] += c["reord"][i] or 0


def _build_device(d: dict, s: Series, idx: list[int]) -> None:
    c = s.cols
    for i in idx:
        d["n"] += 1
        cpu, mem = c["cpu"][i], c["mem"][i]
        if cpu is not None:
            d["cpu_sum"] += cpu
            d["cpu_max"] = cpu if d["cpu_max"] is None else max(d["cpu_max"], cpu)
            d["cpu_hi"] += cpu > CPU_HIGH_PERMILLE
            if c["top"][i]:
                cand = [cpu, c["top"][i][:64]]
                d["top"] = cand if d["top"] is None else max(d["top"], cand)
        if mem is not None:
            d["mem_sum"] += mem
            d["mem_max"] = mem if d["mem_max"] is None else max(d["mem_max"], mem)
            d["mem_hi"] += mem > MEM_HIGH_PERMILLE
        d["nicerr"] += c["nicerr"][i] or 0
        for col in ("ifk", "if", "proxy"):
            if c[col][i]:
                d[col] = sorted(set(d[col]) | {c[col][i][:64]})[:SET_CAP]
        if c["vpn"][i]:
            d["vpn"] = sorted(set(d["vpn"]) | {v.strip()[:64] for v in c["vpn"][i].split(",") if v.strip()})[:SET_CAP]
        if c["up"][i] is not None or c["dn"][i] is not None:
            _own_traffic(d, c["up"][i] or 0, c["dn"][i] or 0, c["upb"][i], c["dnb"][i], c["spd"][i])


def _own_traffic(d: dict, up: int, dn: int, upb: int | None, dnb: int | None, spd: int | None) -> None:
    """One reading of the desk's own traffic: is each direction near what the link carried at best?"""
    d["tr_n"] += 1
    if spd:
        d["spd"] = spd if d["spd"] is None else max(d["spd"], spd)
    for name, rate, best in (("up", up, upb), ("dn", dn, dnb)):
        d[f"{name}_sum"] += rate
        if best is not None:
            d[f"{name}_best"] = best if d[f"{name}_best"] is None else max(d[f"{name}_best"], best)
        ref = max(best or 0, rate)
        if spd:
            ref = min(ref, spd * 1000)
        if rate >= OWN_MIN_KBPS and rate >= OWN_NEAR_BEST * ref:
            d[f"{name}_hi"] += 1
            d[f"{name}_hi_sum"] += rate


def _build_wifi(d: dict, s: Series, idx: list[int]) -> None:
    c = s.cols
    for i in idx:
        d["n"] += 1
        if not c["conn"][i]:
            continue
        d["conn"] += 1
        for col in ("rssi", "snr"):
            v = c[col][i]
            if v is not None:
                d[col][v] = d[col].get(v, 0) + 1
        if c["tx"][i] is not None and c["tx"][i] >= 0:
            _sketch_add(d, "tx", c["tx"][i])
        for col in ("bssid", "band"):
            if c[col][i]:
                d[col] = sorted(set(d[col]) | {c[col][i][:64]})[:SET_CAP]


def _sketch_add(d: dict, name: str, v: int) -> None:
    if d[name] is None:
        d[name] = LatencySketch()
    d[name].add(v)


_BUILDERS: dict[str, Callable[[dict, Series, Any], None]] = {
    "rtt": _build_rtt,
    "http": _build_http,
    "voice": _build_voice,
    "device": _build_device,
    "wifi": _build_wifi,
}


# --- events ---------------------------------------------------------------------------------------


def event_rollups(agent: int, events: Iterable[Event], minutes: Iterable[int], now_us: int) -> dict[int, Rollup]:
    """The ``events`` rollup of each given minute, from every event of the agent that overlaps it.

    An event's part of a minute is kept as a span (start, end, severity, kind, target, id, the
    event's own start),
    clipped to the minute: the stability component reads these spans exactly as it would read
    the events. An open event runs to ``now_us`` (the latest time the agent has reported); it
    is recomputed when more data or its close arrives. Minutes without spans get an empty rollup
    (the store deletes those rows).
    """
    evs = list(events)
    out: dict[int, Rollup] = {}
    for m in sorted(set(minutes)):
        end_m = m + MINUTE_US
        spans: list[list[Any]] = []
        for e in evs:
            end = e.end_us if e.end_us is not None else max(now_us, e.start_us)
            if end <= e.start_us:
                end = e.start_us + 1_000_000  # an instant (path change, roam) counts one second
            lo, hi = max(e.start_us, m), min(end, end_m)
            if lo < hi or (lo == hi == e.start_us and m <= e.start_us < end_m):
                spans.append([lo, hi, int(e.severity), e.kind, e.target[:64], e.id[:128], e.start_us])
        if len(spans) > SPANS_CAP:
            spans = sorted(spans, key=lambda s: (-s[2], s[0] - s[1]))[:SPANS_CAP]
        out[m] = Rollup(agent, m, EVENTS, EVENTS_TARGET, 0, {"spans": spans})
    return out


def event_minutes(events: Iterable[Event], now_us: int, max_minutes: int = 24 * 60) -> set[int]:
    """The minutes to recompute for events just written: from each start up to ``now_us`` or its end.

    Up to ``now_us`` even for a closed event: while it was open, an earlier commit counted it up
    to that commit's time, which may lie after its real end; those minutes must be redone too.
    At most ``max_minutes`` per event.
    """
    out: set[int] = set()
    for e in events:
        end = max(e.end_us or 0, e.start_us, now_us)
        first = minute_of(e.start_us)
        last = min(minute_of(end), first + (max_minutes - 1) * MINUTE_US)
        out.update(range(first, last + 1, MINUTE_US))
    return out


# --- derived figures --------------------------------------------------------------------------------


def normalized(kind: str, data: dict) -> dict:
    """The rollup as it reads: fragments joined in time order into one (rtt), everything else as is.

    Two stored rollups of the same samples may hold different fragment lists (one per batch that
    brought a part of the minute); joined, they are equal field for field. The store keeps the
    fragments, so that a part arriving later still joins at the right place.
    """
    if kind != "rtt" or len(data.get("frags") or ()) <= 1:
        return data
    out = dict(data)
    frags = _sorted_frags(data["frags"])
    out["jit_sum"], out["jit_n"] = rtt_jitter(data)
    out["runs"] = rtt_loss_runs(data)
    answered = [f for f in frags if f[2] is not None]
    out["frags"] = [
        [
            frags[0][0],
            max(f[1] for f in frags),
            answered[0][2] if answered else None,
            answered[-1][3] if answered else None,
            frags[0][4],
            frags[-1][5],
        ]
    ]
    return out


def canonical_bytes(kind: str, data: dict) -> bytes:
    """``encode`` of the normalized rollup: equal bytes mean equal rollups, however they were split."""
    return encode(kind, normalized(kind, data))


def rtt_jitter(d: Mapping) -> tuple[int, int]:
    """(sum of |dRTT| in µs, pairs) over consecutive answered RTTs, joining fragments in time order."""
    total, pairs = d.get("jit_sum", 0), d.get("jit_n", 0)
    prev = None
    for f in _sorted_frags(d.get("frags") or ()):
        if f[2] is None:
            continue
        if prev is not None:
            total += abs(f[2] - prev)
            pairs += 1
        prev = f[3]
    return total, pairs


def rtt_loss_runs(d: Mapping) -> int:
    """Runs of consecutive lost samples; a run across two fragments counts once."""
    runs = d.get("runs", 0)
    frags = _sorted_frags(d.get("frags") or ())
    for a, b in pairwise(frags):
        if a[5] and b[4]:
            runs -= 1
    return max(runs, 0)


def sketch_count_le(s: LatencySketch | None, limit_us: float) -> int:
    """Values at or below ``limit_us`` (bucket resolution: within the sketch's relative error)."""
    if s is None or not s.count:
        return 0
    if s.max is not None and s.max <= limit_us:
        return s.count
    if s.min is not None and s.min > limit_us:
        return 0
    n = s.zero if limit_us >= 0 else 0
    for k, c in s.buckets.items():
        if 2 * s.gamma**k / (s.gamma + 1) <= limit_us:
            n += c
    return n


# --- what a commit writes ---------------------------------------------------------------------------


@dataclass
class AgentSpan:
    """What one commit brought of one agent: its time span and the events it sent."""

    lo_us: int
    now_us: int
    events: list[Event] = field(default_factory=list)


def commit_work(items: Iterable[tuple[int, SampleBatch]]) -> tuple[dict[tuple, Rollup], dict[int, AgentSpan]]:
    """Sample rollups to merge, and per agent the span and events whose minutes need recomputing.

    Both stores run this inside ``commit_batches`` on the batches they just wrote (duplicates
    excluded), then merge the sample rollups into what they hold and replace the events rollups.
    """
    items = list(items)
    spans: dict[int, AgentSpan] = {}
    for agent, batch in items:
        times = [t for s in batch.series for t in (min(s.ts_us), max(s.ts_us)) if len(s)]
        times += [t for e in batch.events for t in (e.start_us, e.end_us) if t is not None]
        times += [p.ts_us for p in batch.paths]
        if not times:
            continue
        sp = spans.get(agent)
        if sp is None:
            sp = spans[agent] = AgentSpan(min(times), max(times))
        sp.lo_us, sp.now_us = min(sp.lo_us, min(times)), max(sp.now_us, max(times))
        sp.events.extend(batch.events)
    return rollups_of_batches(items), spans


def minutes_to_redo(span: AgentSpan, open_events: Sequence[Event]) -> set[int]:
    """Minutes whose events rollup this commit changes: the events it sent, and the open ones
    (still running) over the commit's own span."""
    minutes = event_minutes(span.events, span.now_us)
    if open_events:
        minutes.update(range(minute_of(span.lo_us), minute_of(span.now_us) + 1, MINUTE_US))
    return minutes
