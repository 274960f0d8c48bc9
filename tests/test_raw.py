"""The raw tier's pure half (store/raw.py): landing payloads back to series, hour folding, the merge
precedence of rows, and chart buckets equal to what the old per-row SQL returned on the same data."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxpulse.collector.store import PendingBatch, chunks, raw
from cxpulse.collector.store.sqlite import _SQL_BUCKET_RTT, _SQL_BUCKET_WIFI
from cxpulse.collector.store.types import Row
from cxpulse.v1 import payload as p

T0 = 1_790_000_000_000_000  # 2026-09-21T13:46:40Z, not on an hour
H0 = raw.hour_of(T0)


def desk_batch(start: int = T0, n: int = 40) -> p.SampleBatch:
    gw = p.Series("gateway", "192.168.1.1", p.METHOD_ICMP_RAW, hop=1)
    isp = p.Series("isp", "203.0.113.1", p.METHOD_ICMP_DGRAM)
    wifi = p.Series("wifi", "wlan0", "nl80211", kind="wifi")
    for i in range(n):
        gw.add(start + i * 1_000_000 + i % 3, None if i % 7 == 3 else 2_000 + i)
        isp.add(start + i * 1_000_000 + 17, 15_000 - i)
    for i in range(0, n, 5):
        wifi.add(start + i * 1_000_000, conn=1, ssid="corp", rssi=-60 - i % 4, band="5")
    return p.SampleBatch([gw, isp, wifi])


def test_hour_of():
    assert raw.hour_of(H0) == H0 and raw.hour_of(H0 + raw.HOUR_US - 1) == H0
    assert raw.hour_of(H0 + raw.HOUR_US) == H0 + raw.HOUR_US
    assert H0 % raw.HOUR_US == 0 and raw.SETTLE_US == 600_000_000


@pytest.mark.parametrize("version", [1, 2])
def test_series_samples_gives_back_what_was_sent(version):
    batch = desk_batch()
    got = raw.series_samples(p.encode(batch, version=version))
    assert set(got) == {
        ("gateway", "192.168.1.1", "rtt", p.METHOD_ICMP_RAW, 1),
        ("isp", "203.0.113.1", "rtt", p.METHOD_ICMP_DGRAM, 0),
        ("wifi", "wlan0", "wifi", "nl80211", 0),
    }
    for s in batch.series:
        kind, ts, cols = got[(s.target, s.address, s.kind, s.method, s.hop or 0)]
        assert (kind, ts, cols) == (s.kind, s.ts_us, s.cols)


def test_series_samples_reads_a_column_older_agents_lacked():
    dev = p.Series("device", "local", "os", kind="device")
    dev.add(T0, cpu=100, mem=200)
    data = p.encode(p.SampleBatch([dev]))
    import msgpack

    obj = msgpack.unpackb(data)
    for col in ("up", "dn", "upb", "dnb", "spd"):
        del obj["s"][0][col]
    ((_, _, cols),) = raw.series_samples(msgpack.packb(obj)).values()
    assert cols["cpu"] == [100] and cols["spd"] == [None]


def test_landing_record_and_payload_bytes():
    batch = desk_batch()
    b = PendingBatch(1, 1, 1, batch)
    start, end, n, data = raw.landing_record(b)
    assert (start, end, n) == (T0, T0 + 39_000_017, 40 + 40 + 8)
    assert p.decode(data).series == batch.series
    sent = p.encode(batch, version=2)
    assert raw.payload_bytes(PendingBatch(1, 1, 1, batch, payload=sent)) is sent
    assert raw.landing_record(PendingBatch(1, 1, 1, p.SampleBatch())) is None
    empty_series = p.SampleBatch([p.Series("gw", "a", p.METHOD_ICMP_RAW)])
    assert raw.landing_record(PendingBatch(1, 1, 1, empty_series)) is None


def test_by_hour_splits_at_utc_hours():
    ts = [H0 + raw.HOUR_US - 2, H0 + raw.HOUR_US - 1, H0 + raw.HOUR_US, H0 + 3 * raw.HOUR_US]
    got = raw.by_hour(ts, {"rtt": [1, 2, 3, 4]})
    assert got == {
        H0: ([ts[0], ts[1]], {"rtt": [1, 2]}),
        H0 + raw.HOUR_US: ([ts[2]], {"rtt": [3]}),
        H0 + 3 * raw.HOUR_US: ([ts[3]], {"rtt": [4]}),
    }
    assert raw.by_hour([T0, T0 + 1], {"rtt": [5, None]}) == {H0: ([T0, T0 + 1], {"rtt": [5, None]})}


def test_fold_later_wins_and_sorts():
    first = chunks.encode("rtt", [T0, T0 + 2], {"rtt": [1, 2]})
    second = chunks.encode("rtt", [T0 + 2, T0 + 4], {"rtt": [20, 4]})
    data = raw.fold("rtt", [first, second], [T0 + 4, T0 + 1], {"rtt": [40, None]})
    s = chunks.decode("rtt", data)
    assert s.ts_us == [T0, T0 + 1, T0 + 2, T0 + 4] and s.cols["rtt"] == [1, None, 20, 40]
    assert raw.fold_parts("rtt", [first, ([T0 + 9], {"rtt": [9]})])[:3] == (T0, T0 + 9, 3)
    assert raw.fold_parts("rtt", [([], {"rtt": []})]) is None


def test_rows_of_precedence_window_and_hop():
    legacy = ([T0, T0 + 1, T0 + 2], {"rtt": [1, 1, 1]})
    chunk = chunks.encode("rtt", [T0 + 1, T0 + 3], {"rtt": [2, 2]})
    landing = ([T0 + 3, T0 + 5], {"rtt": [3, None]})
    rows = raw.rows_of("rtt", "gw", "a", "m", 0, [legacy, chunk, landing], T0 + 1, T0 + 5)
    assert rows == [
        Row("gw", "a", "m", None, T0 + 1, {"rtt": 2}),
        Row("gw", "a", "m", None, T0 + 2, {"rtt": 1}),
        Row("gw", "a", "m", None, T0 + 3, {"rtt": 3}),
    ]
    one = raw.rows_of("rtt", "gw", "a", "m", 2, [chunk], 0, T0 + 2)
    assert one == [Row("gw", "a", "m", 2, T0 + 1, {"rtt": 2})]
    wide = raw.rows_of("wifi", "w", "a", "m", 0, [([T0], {"conn": [1]})], 0, T0 + 1)
    assert wide[0].values["conn"] == 1 and wide[0].values["ssid"] is None


def _sql_rtt(ts, rtt, since, until, start, step):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE samples_rtt (series INTEGER, ts_us INTEGER, rtt INTEGER)")
    db.executemany("INSERT INTO samples_rtt VALUES (1, ?, ?)", zip(ts, rtt))
    return db.execute(_SQL_BUCKET_RTT, (1, since, until, start, step)).fetchall()


def _sql_wifi(rows, since, until, start, step):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE series (id INTEGER PRIMARY KEY, agent INTEGER, kind TEXT)")
    db.execute("CREATE TABLE samples_wifi (series INTEGER, ts_us INTEGER, conn INTEGER, rssi INTEGER)")
    db.executemany("INSERT INTO series VALUES (?, ?, ?)", [(1, 1, "wifi"), (2, 1, "wifi"), (3, 2, "wifi")])
    db.executemany("INSERT INTO samples_wifi VALUES (?, ?, ?, ?)", rows)
    return db.execute(_SQL_BUCKET_WIFI, (1, since, until, start, step)).fetchall()


def _in(ts, cols, since, until):
    keep = [i for i, t in enumerate(ts) if since <= t < until]
    return [ts[i] for i in keep], [[c[i] for i in keep] for c in cols]


def _exact(a, b):
    """Equal values and equal types (total() is a float, count() and min() integers)."""
    return a == b and [[type(x) for x in r] for r in a] == [[type(x) for x in r] for r in b]


def test_rtt_buckets_match_the_sql_on_a_desk():
    s = desk_batch(n=300).series[0]
    ts, rtt = s.ts_us, s.cols["rtt"]
    for since, until, start, step in [
        (T0, T0 + 300_000_000, T0, 10_000_000),
        (T0 + 5_500_000, T0 + 200_000_000, T0 + 7_000_000, 60_000_000),  # buckets before start: truncation
        (0, 1 << 62, T0 + 150_000_000, 7_000_000),
    ]:
        wts, (wrtt,) = _in(ts, [rtt], since, until)
        want = _sql_rtt(ts, rtt, since, until, start, step)
        assert _exact(raw.rtt_buckets(wts, wrtt, start, step), want)
    assert raw.rtt_buckets([], [], T0, 1) == [] == _sql_rtt([], [], 0, 1 << 62, T0, 1)


rtt_values = st.one_of(st.none(), st.integers(0, 60_000_000))


@settings(max_examples=150, deadline=None)
@given(
    samples=st.lists(st.tuples(st.integers(0, 10_000), rtt_values), unique_by=lambda x: x[0], max_size=60),
    start=st.integers(-2_000, 12_000),
    step=st.sampled_from([1, 7, 100, 999, 5_000, -30, 0]),
)
def test_rtt_buckets_match_the_sql(samples, start, step):
    samples.sort()
    ts = [T0 + t for t, _ in samples]
    rtt = [v for _, v in samples]
    want = _sql_rtt(ts, rtt, 0, 1 << 62, T0 + start, step)
    assert _exact(raw.rtt_buckets(ts, rtt, T0 + start, step), want)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([1, 2, 3]),
            st.integers(0, 10_000),
            st.one_of(st.none(), st.integers(0, 2)),
            st.one_of(st.none(), st.integers(-120, 0)),
        ),
        max_size=60,
    ),
    start=st.integers(-2_000, 12_000),
    step=st.sampled_from([1, 7, 100, 5_000, -30]),
    since=st.integers(0, 5_000),
)
def test_wifi_buckets_match_the_sql(rows, start, step, since):
    rows = [(s, T0 + t, c, r) for s, t, c, r in rows]
    want = _sql_wifi(rows, T0 + since, T0 + 9_000, T0 + start, step)
    mine = [r for r in rows if r[0] in (1, 2) and T0 + since <= r[1] < T0 + 9_000]
    got = raw.wifi_buckets([r[1] for r in mine], [r[2] for r in mine], [r[3] for r in mine], T0 + start, step)
    assert _exact(got, want)


def test_dataclasses_default_to_nothing_done():
    assert raw.CompactStep() == raw.CompactStep(0, 0, 0, False)
    assert raw.RawProgress() == raw.RawProgress(0, 0, 0)
