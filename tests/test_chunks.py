"""Compressed sample chunks (collector/store/chunks.py): every kind back exactly, damage refused.

A chunk holds one series' samples sorted by time with one sample per timestamp: out-of-order
input is sorted, and of samples with equal timestamps the last one given is kept (a merge
therefore lets a later chunk win). Realistic data comes from the storage benchmark's desk.
"""

from __future__ import annotations

import zlib
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.chunks import T_BASE_US, desk
from cxpulse.collector.store import chunks
from cxpulse.collector.store.chunks import ChunkError, decode, encode, merge
from cxpulse.v1.kinds import ADDED_COLUMNS, INT, KINDS, STR, US

S = 1_000_000


def _roundtrip(kind: str, ts: list[int], cols: dict[str, list]) -> chunks.Samples:
    out = decode(kind, encode(kind, ts, cols))
    assert out.kind == kind and out.ts_us == ts and out.cols == {k: list(cols[k]) for k in KINDS[kind]}
    return out


@pytest.fixture(scope="module")
def ten_minutes():
    return desk(600, seed=7)


def test_every_kind_of_a_realistic_desk_comes_back_exactly(ten_minutes):
    kinds = set()
    for s in ten_minutes:
        _roundtrip(s.kind, s.ts_us, s.cols)
        kinds.add(s.kind)
    assert kinds == set(KINDS)
    gateway = next(s for s in ten_minutes if s.target == "gateway")
    assert None in gateway.cols["rtt"], "the desk's RTT must include lost samples (None)"
    wifi = next(s for s in ten_minutes if s.kind == "wifi")
    assert decode("wifi", encode("wifi", wifi.ts_us, wifi.cols)).cols["ssid"][0] == "CorpNet"


def test_a_desk_hour_of_rtt_costs_a_few_bytes_per_sample():
    gateway = next(s for s in desk(3600, seed=3) if s.target == "gateway")
    size = len(encode("rtt", gateway.ts_us, gateway.cols))
    assert size / len(gateway) < 5, f"{size / len(gateway):.2f} B/sample (rows cost 42)"


def test_empty_and_one_sample_chunks():
    for kind, spec in KINDS.items():
        empty = decode(kind, encode(kind, [], {c: [] for c in spec}))
        assert empty.ts_us == [] and all(v == [] for v in empty.cols.values())
        _roundtrip(kind, [T_BASE_US], {c: [None] for c in spec})
    _roundtrip("rtt", [T_BASE_US], {"rtt": [812]})
    _roundtrip(
        "http",
        [T_BASE_US],
        {
            "dns": [0],
            "tcp": [600_000_000],
            "tls": [None],
            "ttfb": [1],
            "total": [2],
            "status": [200],
            "ver": ["HTTP/2"],
            "cert": [-3],
            "err": [""],
        },
    )


def test_out_of_order_input_is_sorted_and_the_last_of_equal_timestamps_wins():
    out = decode("rtt", encode("rtt", [3 * S, 1 * S, 2 * S, 1 * S], {"rtt": [30, 10, 20, 11]}))
    assert out.ts_us == [1 * S, 2 * S, 3 * S] and out.cols["rtt"] == [11, 20, 30]


def test_window_decode_is_half_open():
    ts = [T_BASE_US + i * S for i in range(100)]
    data = encode("rtt", ts, {"rtt": [i if i % 7 else None for i in range(100)]})
    part = decode("rtt", data, ts[10], ts[20])
    assert part.ts_us == ts[10:20] and part.cols["rtt"] == [i if i % 7 else None for i in range(10, 20)]
    assert decode("rtt", data, None, ts[3]).ts_us == ts[:3]
    assert decode("rtt", data, ts[97] + 1).ts_us == ts[98:]
    assert decode("rtt", data, ts[-1] + 1).ts_us == []


def test_merge_of_consecutive_chunks_equals_one_chunk_of_them_all(ten_minutes):
    for s in ten_minutes:
        cut = [0, len(s) // 3, len(s) // 2, len(s)]
        parts = [encode(s.kind, s.ts_us[a:b], {k: v[a:b] for k, v in s.cols.items()}) for a, b in pairwise(cut)]
        assert merge(s.kind, parts) == encode(s.kind, s.ts_us, s.cols)
    assert decode("rtt", merge("rtt", [])).ts_us == []


def test_merge_of_overlapping_chunks_keeps_the_later_chunks_sample():
    a = encode("rtt", [1 * S, 2 * S, 3 * S], {"rtt": [1, 2, 3]})
    b = encode("rtt", [2 * S, 4 * S], {"rtt": [None, 4]})
    out = decode("rtt", merge("rtt", [a, b]))
    assert out.ts_us == [1 * S, 2 * S, 3 * S, 4 * S] and out.cols["rtt"] == [1, None, 3, 4]


def test_a_column_the_kind_gained_later_reads_as_none():
    old = {c: [None] for c in KINDS["device"] if c not in ADDED_COLUMNS["device"]}
    out = decode("device", encode("device", [T_BASE_US], old))
    assert all(out.cols[c] == [None] for c in ADDED_COLUMNS["device"])
    # A chunk written before the columns existed (fewer columns in the body) reads the same way.
    body = chunks._body(encode("device", [T_BASE_US], {**old, **{c: [1] for c in ADDED_COLUMNS["device"]}}))
    short = chunks.msgpack.packb(body[: 3 + len(old)], use_bin_type=True)
    older = bytes([chunks.FORMAT]) + short + chunks._CRC.pack(zlib.crc32(short))
    assert decode("device", older).cols["up"] == [None]


@pytest.mark.parametrize(
    "kind, cols, why",
    [
        ("rtt", {"rtt": [1.5]}, "not an integer"),
        ("rtt", {"rtt": [True]}, "not an integer"),
        ("rtt", {"rtt": ["812"]}, "not an integer"),
        ("rtt", {"rtt": [1, 2]}, "values for 1 timestamps"),
        ("rtt", {"rtt": [1], "x": [1]}, "no column"),
        ("rtt", {}, "needs column"),
    ],
)
def test_values_the_kind_does_not_hold_are_refused(kind, cols, why):
    with pytest.raises(ValueError, match=why):
        encode(kind, [T_BASE_US], cols)
    wifi = {c: [None] for c in KINDS["wifi"]}
    with pytest.raises(ValueError, match="not a string"):
        encode("wifi", [T_BASE_US], {**wifi, "ssid": [5]})


def test_damaged_chunks_are_refused_with_a_reason(ten_minutes):
    s = next(s for s in ten_minutes if s.kind == "http")
    good = encode("http", s.ts_us, s.cols)
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x10
        with pytest.raises(ChunkError):
            decode("http", bytes(bad))
    for cut in (0, 1, 5, len(good) // 2, len(good) - 1):
        with pytest.raises(ChunkError):
            decode("http", good[:cut])
    with pytest.raises(ChunkError, match=r"trailing|checksum"):
        decode("http", good + b"\x00")
    with pytest.raises(ChunkError, match="format"):
        decode("http", bytes([0x02]) + good[1:])
    with pytest.raises(ChunkError, match="another kind"):
        decode("rtt", good)
    with pytest.raises(ValueError, match="unknown kind"):
        decode("nope", good)


# --- properties ----------------------------------------------------------------------------------


def _values(ctype: str):
    if ctype == US:
        return st.one_of(st.none(), st.integers(0, 600_000_000))
    if ctype == INT:
        return st.one_of(st.none(), st.integers(-(2**40), 2**40), st.integers(-200, 1200))
    assert ctype == STR
    return st.one_of(st.none(), st.text(max_size=128), st.sampled_from(["CorpNet", "<hidden-by-os>", ""]))


@st.composite
def samples(draw, unique: bool = True):
    kind = draw(st.sampled_from(sorted(KINDS)))
    n = draw(st.integers(0, 40))
    gaps = draw(st.lists(st.one_of(st.integers(1, 2_000_000), st.integers(1, 40 * 86_400 * S)), min_size=n, max_size=n))
    t = draw(st.integers(946_684_800 * S, 4_102_444_800 * S))
    ts = []
    for g in gaps:
        t += g
        ts.append(t)
    if not unique and ts:
        ts = draw(st.permutations(ts + draw(st.lists(st.sampled_from(ts), max_size=5))))
    cols = {c: draw(st.lists(_values(ct), min_size=len(ts), max_size=len(ts))) for c, ct in KINDS[kind].items()}
    return kind, ts, cols


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples())
def test_property_round_trip(case):
    _roundtrip(*case)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples(unique=False))
def test_property_any_order_reads_back_sorted_with_the_last_of_each_timestamp(case):
    kind, ts, cols = case
    last = {t: i for i, t in enumerate(ts)}
    order = sorted(last.values(), key=ts.__getitem__)
    out = decode(kind, encode(kind, ts, cols))
    assert out.ts_us == [ts[i] for i in order]
    assert out.cols == {c: [v[i] for i in order] for c, v in cols.items()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples(), st.data())
def test_property_window_and_merge_agree_with_slicing(case, data):
    kind, ts, cols = case
    cut = data.draw(st.integers(0, len(ts)))
    a = encode(kind, ts[:cut], {c: v[:cut] for c, v in cols.items()})
    b = encode(kind, ts[cut:], {c: v[cut:] for c, v in cols.items()})
    whole = decode(kind, merge(kind, [a, b]))
    assert whole.ts_us == ts and whole.cols == cols
    if ts:
        lo, hi = sorted(data.draw(st.integers(ts[0] - 1, ts[-1] + 1)) for _ in range(2))
        part = decode(kind, encode(kind, ts, cols), lo, hi)
        keep = [i for i, t in enumerate(ts) if lo <= t < hi]
        assert part.ts_us == [ts[i] for i in keep]
        assert part.cols == {c: [v[i] for i in keep] for c, v in cols.items()}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(sorted(KINDS)))
def test_property_arbitrary_bytes_never_raise_anything_but_chunk_error(data, kind):
    try:
        decode(kind, data)
    except ChunkError:
        pass
    for head in (bytes([chunks.FORMAT]), bytes([chunks.FORMAT | 0x80])):
        try:
            decode(kind, head + data)
        except ChunkError:
            pass


def _sealed(body: object) -> bytes:
    """A body with a valid checksum: what reaches the structure checks behind the CRC."""
    packed = chunks.msgpack.packb(body, use_bin_type=True)
    return bytes([chunks.FORMAT]) + packed + chunks._CRC.pack(zlib.crc32(packed))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples(), st.data())
def test_property_a_damaged_body_behind_a_valid_checksum_is_refused_cleanly(case, data):
    from tests.fuzz.strategies import any_msgpack

    kind, ts, cols = case
    body = chunks._body(encode(kind, ts, cols))
    i = data.draw(st.integers(0, len(body) - 1))
    damage = st.one_of(any_msgpack, st.binary(max_size=12))
    if isinstance(body[i], list) and body[i] and data.draw(st.booleans()):
        body[i][data.draw(st.integers(0, len(body[i]) - 1))] = data.draw(damage)  # inside a column
    else:
        body[i] = data.draw(damage)
    try:
        out = decode(kind, _sealed(body))
    except ChunkError:
        return
    assert len(out.ts_us) == len(set(out.ts_us)) and all(len(v) == len(out.ts_us) for v in out.cols.values())


def test_the_storage_benchmark_reports_its_figures():
    """The smallest run of bench.chunks end to end (SQLite only): every figure present and sane."""
    from bench.chunks import PLANS, run

    figures, details = run(PLANS["smoke"], log=lambda _: None)
    assert all(f.value is not None and f.value > 0 for f in figures) and not details["errors"]
    value = {f.name: float(f.value or 0) for f in figures}
    assert (
        1
        < value["desk at defaults, 1 h chunks: bytes/sample"]
        < value["desk at defaults, 30 s (as committed) chunks: bytes/sample"]
        < 42
    )
    week = next(f for f in figures if f.name == "disk per desk-week at defaults, raw + rollups (SQLite)")
    assert week.budget == 10 and 0 < week.value < week.peer_value  # as built: less than as rows
