"""Latency sketch: merges are exact, quantiles stay within the relative-error bound, bytes round-trip.

Property tests over seeded random data (stdlib ``random``; every failure is reproducible from
its seed): realistic RTT shapes (log-normal, bimodal Wi-Fi, heavy tail, zeros, constant).
"""

from __future__ import annotations

import json
import math
import random
import struct

import pytest

from cxpulse.collector.store.sketch import DEFAULT_GAMMA, LatencySketch

SEEDS = range(40)


def sample(rng: random.Random) -> list[int]:
    n = rng.choice([1, 2, 7, 100, 1000, 5000])
    shape = rng.choice(["lognormal", "bimodal", "pareto", "uniform", "zeros", "constant"])
    if shape == "lognormal":  # RTT to an app edge: ~20 ms, right-skewed
        return [round(rng.lognormvariate(math.log(20_000), 0.6)) for _ in range(n)]
    if shape == "bimodal":  # Wi-Fi: fast most of the time, retries sometimes
        return [
            round(rng.gauss(3_000, 500)) if rng.random() < 0.9 else round(rng.gauss(80_000, 20_000)) for _ in range(n)
        ]
    if shape == "pareto":
        return [min(600_000_000, round(1_000 * rng.paretovariate(1.2))) for _ in range(n)]
    if shape == "uniform":
        return [rng.randint(1, 2_000_000) for _ in range(n)]
    if shape == "zeros":
        return [rng.choice([0, 0, 1, 2, 50]) for _ in range(n)]
    return [rng.randint(1, 10**6)] * n


def true_quantile(values: list[int], q: float) -> int:
    s = sorted(values)
    return s[max(1, math.ceil(q * len(s))) - 1]


@pytest.mark.parametrize("seed", SEEDS)
def test_merge_of_parts_equals_the_sketch_of_the_union(seed):
    rng = random.Random(seed)
    values = sample(rng)
    union = LatencySketch.of(values)
    # Split the minute between up to three collectors, in any order, and merge in any order.
    parts: list[list[int]] = [[] for _ in range(rng.randint(2, 3))]
    for v in values:
        rng.choice(parts).append(v)
    sketches = [LatencySketch.of(p) for p in parts]
    rng.shuffle(sketches)
    merged = LatencySketch()
    for s in sketches:
        merged.merge(s)
    assert merged == union
    assert merged.to_bytes() == union.to_bytes()  # bit for bit, whatever the split
    assert (merged.count, merged.sum, merged.min, merged.max) == (len(values), sum(values), min(values), max(values))


@pytest.mark.parametrize("seed", SEEDS)
def test_quantiles_within_the_relative_error_bound(seed):
    rng = random.Random(1000 + seed)
    values = sample(rng)
    s = LatencySketch.of(values)
    bound = s.relative_error * (1 + 1e-9)
    for q in [0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1]:
        truth = true_quantile(values, q)
        est = s.quantile(q)
        if truth == 0:
            assert est == 0
        else:
            assert abs(est - truth) <= bound * truth, (q, truth, est)
    assert s.quantile(0) == min(values) and s.quantile(1) == max(values)


def test_bound_is_about_one_percent_at_default_gamma():
    assert DEFAULT_GAMMA == 1.02
    assert LatencySketch().relative_error == pytest.approx(0.02 / 2.02)


def test_merge_is_associative_and_commutative():
    rng = random.Random(7)
    a, b, c = (LatencySketch.of(sample(rng)) for _ in range(3))
    assert (a + b) + c == a + (b + c) == c + b + a
    before = a.to_bytes()
    _ = a + b
    assert a.to_bytes() == before  # + leaves its operands alone


def test_bytes_and_dict_round_trip():
    rng = random.Random(3)
    for _ in range(20):
        s = LatencySketch.of(sample(rng))
        assert LatencySketch.from_bytes(s.to_bytes()) == s
        assert LatencySketch.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    empty = LatencySketch()
    assert LatencySketch.from_bytes(empty.to_bytes()) == empty and empty.quantile(0.5) is None


def test_bytes_are_compact():
    rng = random.Random(11)
    minute = [round(rng.lognormvariate(math.log(20_000), 0.3)) for _ in range(60)]
    s = LatencySketch.of(minute)
    assert len(s.to_bytes()) <= 11 + 4 * 4 + 2 + 3 * len(s.buckets)
    assert len(s.to_bytes()) < 200  # a minute of 1 Hz RTTs


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"XX\x01" + b"\x00" * 20,
        b"LS\x09" + b"\x00" * 20,
    ],
)
def test_from_bytes_rejects_what_it_did_not_write(data):
    with pytest.raises(ValueError):
        LatencySketch.from_bytes(data)


def test_from_bytes_rejects_truncation_trailing_bytes_and_lies():
    good = LatencySketch.of([1000, 2000, 3000]).to_bytes()
    with pytest.raises(ValueError):
        LatencySketch.from_bytes(good[:-1])
    with pytest.raises(ValueError):
        LatencySketch.from_bytes(good + b"\x00")
    d = LatencySketch.of([1000, 2000]).to_dict()
    d["max"] = 50_000  # does not fall in the highest bucket
    with pytest.raises(ValueError):
        LatencySketch.from_dict(d)
    d = LatencySketch.of([1000, 2000]).to_dict()
    d["count"] = 3
    with pytest.raises(ValueError):
        LatencySketch.from_dict(d)


def test_inputs():
    s = LatencySketch()
    s.add(1500.4)  # floats round to whole microseconds
    s.add(0)
    s.add(7, count=3)
    assert (s.count, s.sum, s.min, s.max, s.zero) == (5, 1500 + 21, 0, 1500, 1)
    assert s.mean == pytest.approx(1521 / 5)
    for bad in (-1, math.nan, math.inf):
        with pytest.raises(ValueError):
            s.add(bad)
    with pytest.raises(TypeError):
        s.add("12")
    with pytest.raises(ValueError):
        s.add(5, count=-1)
    with pytest.raises(ValueError):
        s.quantile(1.5)
    with pytest.raises(ValueError):
        s.merge(LatencySketch(gamma=1.05))
    with pytest.raises(ValueError):
        LatencySketch(gamma=1.0)


def _decode_by_the_book(data: bytes) -> LatencySketch:
    """The byte format read one varint at a time, as ``to_bytes`` writes it, checked by ``from_dict``."""
    if len(data) < 11 or data[:3] != b"LS\x01":
        raise ValueError("header")
    pos = 11

    def varint() -> int:
        nonlocal pos
        n = shift = 0
        while True:
            if pos >= len(data) or shift > 126:
                raise ValueError("truncated or too long")
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return n

    zero, total, lo, hi, n = (varint() for _ in range(5))
    buckets, key = [], None
    for _ in range(n):
        d, c = varint(), varint()
        if key is not None and d == 0:
            raise ValueError("not increasing")
        key = (d // 2 if d % 2 == 0 else -(d + 1) // 2) if key is None else key + d
        buckets.append([key, c])
    if pos != len(data):
        raise ValueError("trailing bytes")
    return LatencySketch.from_dict(
        {
            "gamma": struct.unpack(">d", data[3:11])[0],
            "buckets": buckets,
            "zero": zero,
            "sum": total,
            "min": lo,
            "max": hi,
        }
    )


def _outcome(decode, data: bytes):
    try:
        return decode(data)
    except ValueError:
        return ValueError


@pytest.mark.parametrize("seed", range(10))
def test_from_bytes_reads_what_the_format_says_good_bytes_or_bad(seed):
    """from_bytes reads one-byte bucket bodies with slices and longer ones varint by varint; both
    must give the sketch the format describes, and refuse (ValueError) the same damaged bytes."""
    rng = random.Random(500 + seed)
    for _ in range(30):
        s = LatencySketch.of(sample(rng))  # up to 5,000 values: counts and deltas of one and more bytes
        good = s.to_bytes()
        assert LatencySketch.from_bytes(good) == _decode_by_the_book(good) == s
        for _ in range(20):
            bad = bytearray(good)
            how = rng.randrange(4)
            i = rng.randrange(11, len(bad)) if len(bad) > 11 else 11
            if how == 0 and i < len(bad):
                bad[i] = rng.randrange(256)
            elif how == 1:
                del bad[i:]
            elif how == 2:
                bad[i:i] = bytes([rng.randrange(256)])
            elif i < len(bad):
                bad[i] = rng.choice([0, 1, 0x7F, 0x80])
            bad = bytes(bad)
            want = _outcome(_decode_by_the_book, bad)
            got = _outcome(LatencySketch.from_bytes, bad)
            assert got == want, (bad.hex(), got, want)
