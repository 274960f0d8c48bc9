"""The msgpack payload: round trip, validation with reasons, and its size per sample."""

from __future__ import annotations

import msgpack
import pytest

from cxpulse.v1 import payload as p

T0 = 1_790_000_000_000_000


def batch(n: int = 10, targets: int = 1) -> p.SampleBatch:
    out = p.SampleBatch()
    for k in range(targets):
        s = p.Series(target=f"t{k}", address=f"127.0.0.{k + 1}", method=p.METHOD_ICMP_RAW)
        for i in range(n):
            s.add(T0 + i * 1_000_000 + 137 * i, None if i % 4 == 3 else 800 + 13 * i)
        out.series.append(s)
    return out


def test_round_trip_keeps_every_sample_exactly():
    b = batch(10, 3)
    back = p.decode(p.encode(b))
    assert back.sample_count == 30
    for a, z in zip(b.series, back.series):
        assert (a.target, a.address, a.method, a.kind) == (z.target, z.address, z.method, z.kind)
        assert a.ts_us == z.ts_us and a.rtt_us == z.rtt_us


def test_schema_2_is_the_same_map_deflated_and_both_versions_decode():
    b = batch(30, 3)
    b.events.append(p.Event(id="ev-1", kind="outage", target="t1", start_us=T0 + 5_000_000, end_us=None, severity=3))
    v1, v2 = p.encode(b), p.encode(b, version=2)
    assert v2[:1] == p.COMPRESSED_MARK and len(v2) < 0.75 * len(v1)
    one, two = p.decode(v1), p.decode(v2)
    assert one.series == two.series and one.events == two.events and two.sample_count == 91
    # The mark and the version inside must agree: an uncompressed "v": 2 is refused, as is a deflated v1.
    with pytest.raises(p.PayloadError) as err:
        p.decode(msgpack.packb({"v": 2, "t0": T0, "s": []}))
    assert err.value.version_mismatch


def test_schema_2_inflation_is_bounded():
    import zlib

    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = p.COMPRESSED_MARK + z.compress(b"\x90" * (p.MAX_INFLATED + 1)) + z.flush()
    assert len(bomb) < 64 * 1024
    with pytest.raises(p.PayloadError, match="inflates beyond"):
        p.decode(bomb)


def test_empty_series_are_left_out():
    b = batch(3)
    b.series.append(p.Series(target="idle", address="::1", method=p.METHOD_TCP_CONNECT))
    assert [s.target for s in p.decode(p.encode(b)).series] == ["t0"]


def test_compact_one_hz_three_targets_ten_seconds():
    data = p.encode(batch(10, 3))
    per_sample = len(data) / 30
    print(f"payload: {len(data)} bytes for 30 samples = {per_sample:.1f} B/sample")
    # Per sample ~4 B (1 B time deviation, 3 B RTT); the rest is per-series names, amortized over the batch.
    assert per_sample < 10, "payload grew: at 1 Hz x 3 targets this is the bulk of the 0.5 kbit/s upload budget"


@pytest.mark.parametrize(
    "obj, reason",
    [
        ([1, 2], "must be a map"),
        ({"v": 2, "t0": T0, "s": []}, "schema version 2"),
        ({"t0": T0, "s": []}, "schema version None"),
        ({"v": 1, "t0": 1.5, "s": []}, "'t0' must be an integer"),
        ({"v": 1, "t0": T0, "s": {}}, "'s' must be a list"),
        (
            {"v": 1, "t0": T0, "s": [{"tg": "a", "a": "x", "k": "rtt", "m": "carrier_pigeon", "dt": [0], "rtt": [1]}]},
            "carrier_pigeon",
        ),
        (
            {"v": 1, "t0": T0, "s": [{"tg": "a", "a": "x", "k": "rtt", "m": "icmp_raw", "dt": [0, 1], "rtt": [1]}]},
            "'dt' has 2",
        ),
        (
            {"v": 1, "t0": T0, "s": [{"tg": "a", "a": "x", "k": "rtt", "m": "icmp_raw", "dt": [-5], "rtt": [1]}]},
            "must not go backwards",
        ),
        (
            {"v": 1, "t0": 5, "s": [{"tg": "a", "a": "x", "k": "rtt", "m": "icmp_raw", "dt": [0], "rtt": [1]}]},
            "outside 2000-2100",
        ),
        (
            {"v": 1, "t0": T0, "s": [{"tg": "a", "a": "x", "k": "rtt", "m": "icmp_raw", "dt": [0], "rtt": [-1]}]},
            "rtt must be null",
        ),
        (
            {"v": 1, "t0": T0, "s": [{"tg": "", "a": "x", "k": "rtt", "m": "icmp_raw", "dt": [0], "rtt": [1]}]},
            "'tg' must be a non-empty",
        ),
        (
            {"v": 1, "t0": T0, "s": [{"tg": "a", "a": "x", "k": "rtt", "m": "icmp_raw", "dt": [0], "rtt": [True]}]},
            "rtt must be null",
        ),
    ],
)
def test_invalid_payloads_say_why(obj, reason):
    with pytest.raises(p.PayloadError) as err:
        p.decode(msgpack.packb(obj))
    assert reason in str(err.value)


def test_version_errors_are_marked():
    with pytest.raises(p.PayloadError) as err:
        p.decode(msgpack.packb({"v": 9, "t0": T0, "s": []}))
    assert err.value.version_mismatch
    with pytest.raises(p.PayloadError) as err:
        p.decode(b"\xff\xc1")
    assert not err.value.version_mismatch and "not valid msgpack" in str(err.value)
    with pytest.raises(p.PayloadError) as err:
        p.decode(p.COMPRESSED_MARK + b"\xff garbage")  # the schema-2 mark, then no deflate stream
    assert not err.value.version_mismatch and "does not inflate" in str(err.value)


def test_sample_bomb_is_refused():
    s = p.Series(target="a", address="b", method=p.METHOD_ICMP_RAW)
    for i in range(2000):
        s.add(T0 + i, 1)
    with pytest.raises(p.PayloadError):
        p.decode(p.encode(p.SampleBatch([s])), max_samples=1000)


def test_other_kinds_events_and_paths_round_trip():
    http = p.Series(target="crm", address="127.0.0.1", method="https", kind="http")
    http.add(T0, dns=1200, tcp=800, tls=4000, ttfb=90000, total=120000, status=200, ver="HTTP/1.1", cert=29)
    http.add(T0 + 30_000_000, dns=None, err="dns")
    voice = p.Series(target="reflector", address="127.0.0.1", method="udp_reflect", kind="voice")
    voice.add(T0, sent=250, recv=248, dup=0, reord=1, rtt=20000, rtt95=25000, jit=1500, loss=8, burst=100, run=2)
    hop = p.Series(target="isp", address="10.9.9.1", method=p.METHOD_ICMP_RAW, hop=2)
    hop.add(T0, 9000)
    ev = p.Event(
        id="x1", kind="loss_burst", target="isp", start_us=T0 + 5, end_us=None, severity=2, evidence="4/5 lost"
    )
    path = p.PathSnapshot(
        target="crm",
        address="10.9.9.9",
        ts_us=T0,
        method="icmp",
        reached=True,
        hops=[p.PathHop(1, "10.0.0.1", 500), p.PathHop(2, None, None), p.PathHop(3, "10.9.9.9", 9000)],
    )
    b = p.SampleBatch([http, voice, hop], [ev], [path])
    back = p.decode(p.encode(b))
    assert back.sample_count == 2 + 1 + 1 + 1 + 1 == b.sample_count
    assert back.series[0].cols["status"] == [200, None] and back.series[0].cols["err"] == [None, "dns"]
    assert back.series[1].cols["burst"] == [100] and back.series[2].hop == 2
    assert back.events == [ev] and back.paths == [path]
    closed = p.Event(**{**ev.__dict__, "end_us": T0 + 3_000_000})
    assert p.decode(p.encode(p.SampleBatch(events=[closed]))).events == [closed]


@pytest.mark.parametrize(
    "patch, reason",
    [
        ({"e": [{"id": "a", "k": "meteor", "tg": "x", "s": 0, "e": None, "sev": 1, "x": ""}]}, "meteor"),
        ({"e": [{"id": "a", "k": "outage", "tg": "x", "s": 0, "e": None, "sev": 7, "x": ""}]}, "'sev'"),
        ({"e": [{"id": "a", "k": "outage", "tg": "x", "s": 0, "e": -1, "sev": 1, "x": ""}]}, "duration"),
        ({"p": [{"tg": "x", "a": "y", "ts": 0, "m": "icmp", "r": True, "hops": [[0, "a", 1]]}]}, "ttl"),
        ({"p": [{"tg": "x", "a": "y", "ts": 0, "m": "icmp", "r": 1, "hops": []}]}, "'r'"),
        ({"s": [{"tg": "a", "a": "x", "k": "http", "m": "https", "dt": [0], "dns": [1]}]}, "column 'tcp'"),
        ({"s": [{"tg": "a", "a": "x", "k": "http", "m": "icmp_raw", "dt": [0]}]}, "'icmp_raw' is not one of"),
        ({"s": [{"tg": "a", "a": "x", "k": "rtt", "m": "icmp_raw", "h": 0, "dt": [0], "rtt": [1]}]}, "'h' (hop)"),
    ],
)
def test_invalid_events_paths_and_kinds(patch, reason):
    obj = {"v": 1, "t0": T0, "s": [], **patch}
    with pytest.raises(p.PayloadError) as err:
        p.decode(msgpack.packb(obj))
    assert reason in str(err.value)


def test_samples_added_out_of_order_are_sent_in_time_order():
    """A lost probe completes after later ones: the encoder must not produce backwards timestamps."""
    s = p.Series(target="t", address="a", method=p.METHOD_ICMP_RAW)
    for ts, r in [(T0, 1), (T0 + 500_000, 2), (T0 + 250_000, None), (T0 + 750_000, 4)]:
        s.add(ts, r)
    back = p.decode(p.encode(p.SampleBatch([s]))).series[0]
    assert back.ts_us == [T0, T0 + 250_000, T0 + 500_000, T0 + 750_000] and back.rtt_us == [1, None, 2, 4]


OWN = {"up": 9_600, "dn": 850, "upb": 10_000, "dnb": 48_000, "spd": 1000}


def _device(**own) -> p.Series:
    s = p.Series(target="device", address="local", method="os", kind="device")
    s.add(T0, cpu=120, mem=480, nicerr=0, ifk="ethernet", **own)
    s.add(T0 + 10_000_000, cpu=130, mem=481, nicerr=0, ifk="ethernet", **{k: v // 2 for k, v in own.items()})
    return s


@pytest.mark.parametrize("version", sorted(p.SUPPORTED_VERSIONS))
def test_device_own_traffic_round_trips(version):
    back = p.decode(p.encode(p.SampleBatch([_device(**OWN)]), version=version))
    (s,) = back.series
    assert {c: s.cols[c] for c in OWN} == {c: [v, v // 2] for c, v in OWN.items()}


def test_a_device_sample_from_before_the_own_traffic_columns_is_valid():
    """An older agent sends the device kind without up/dn/upb/dnb/spd (kinds.ADDED_COLUMNS): the
    collector reads them as null instead of refusing its batches; any other missing column is refused."""
    raw = msgpack.unpackb(p.encode(p.SampleBatch([_device(**OWN)])))
    for c in OWN:
        del raw["s"][0][c]
    (s,) = p.decode(msgpack.packb(raw)).series
    assert s.cols["up"] == [None, None] and s.cols["spd"] == [None, None] and s.cols["cpu"] == [120, 130]
    del raw["s"][0]["cpu"]
    with pytest.raises(p.PayloadError, match="column 'cpu'"):
        p.decode(msgpack.packb(raw))


@pytest.mark.parametrize(
    ("column", "value", "ok"),
    [
        ("up", 100_000_000, True),
        ("up", 100_000_001, False),
        ("dn", -1, False),
        ("upb", 0, True),
        ("dnb", 100_000_001, False),
        ("spd", 1_000_000, True),
        ("spd", 1_000_001, False),
        ("spd", -10, False),
    ],
)
def test_own_traffic_bounds_at_the_collector_edge(column, value, ok):
    from cxpulse.collector.ingest.validate import check_batch

    b = p.decode(p.encode(p.SampleBatch([_device(**dict(OWN, **{column: value}))])))
    problem = check_batch(b, T0 + 60_000_000)
    assert (problem is None) == ok, problem
    if not ok:
        assert f"{column} = {value}" in problem
