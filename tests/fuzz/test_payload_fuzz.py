"""Fuzz the payload decoder and the ingest validator: whatever arrives, the decoder either refuses it
with its own error (PayloadError) or returns a batch that really satisfies the schema; the validator
never raises and never passes a value outside its ranges. Bounded: a few hundred examples each."""

from __future__ import annotations

import msgpack
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cxpulse.collector.ingest.validate import RANGES, check_batch
from cxpulse.v1 import payload
from cxpulse.v1.kinds import EVENT_KINDS, INT, KIND_METHODS, KINDS, MAX_EVIDENCE, MAX_STR, STR, US

from .strategies import NOW_US, any_msgpack, structured, valid_batches

# Bounded so that the whole fuzz suite stays under a minute on a loaded 2-core machine; structured
# inputs cost more to generate than raw bytes, so they get fewer examples.
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=_QUIET)
FUZZ_STRUCTURED = settings(max_examples=40, deadline=None, suppress_health_check=_QUIET)
MIN_TS, MAX_TS = 946_684_800_000_000, 4_102_444_800_000_000


def assert_schema(b: payload.SampleBatch) -> None:
    """The schema, restated independently of the decoder: what it accepted must satisfy all of it."""
    for s in b.series:
        assert s.kind in KINDS and s.method in KIND_METHODS[s.kind]
        assert (
            isinstance(s.target, str)
            and 0 < len(s.target) <= 256
            and isinstance(s.address, str)
            and 0 < len(s.address) <= 256
        )
        assert s.hop is None or (type(s.hop) is int and 1 <= s.hop <= 64)
        assert set(s.cols) == set(KINDS[s.kind])
        assert all(type(t) is int and MIN_TS <= t <= MAX_TS for t in s.ts_us)
        assert all(a <= b for a, b in zip(s.ts_us, s.ts_us[1:]))
        for name, ctype in KINDS[s.kind].items():
            col = s.cols[name]
            assert len(col) == len(s.ts_us)
            for v in col:
                if v is None:
                    continue
                if ctype == US:
                    assert type(v) is int and 0 <= v <= 600_000_000
                elif ctype == INT:
                    assert type(v) is int and abs(v) <= 1 << 40
                elif ctype == STR:
                    assert isinstance(v, str) and len(v) <= MAX_STR
    for e in b.events:
        assert (
            e.kind in EVENT_KINDS
            and 1 <= e.severity <= 3
            and isinstance(e.evidence, str)
            and len(e.evidence) <= MAX_EVIDENCE
        )
        assert MIN_TS <= e.start_us <= MAX_TS and (e.end_us is None or e.end_us >= e.start_us)
        assert isinstance(e.id, str) and 0 < len(e.id) <= MAX_STR
    for p in b.paths:
        assert MIN_TS <= p.ts_us <= MAX_TS and isinstance(p.reached, bool) and len(p.hops) <= 64
        for h in p.hops:
            assert type(h.ttl) is int and 1 <= h.ttl <= 64
            assert h.rtt_us is None or (type(h.rtt_us) is int and 0 <= h.rtt_us <= 600_000_000)


def assert_validated(b: payload.SampleBatch) -> None:
    """check_batch never raises; when it passes a batch, every ranged value and time is inside."""
    problem = check_batch(b, NOW_US)
    assert problem is None or isinstance(problem, str)
    if problem is None:
        for s in b.series:
            assert all(NOW_US - 8 * 86_400_000_000 <= t <= NOW_US + 600_000_000 for t in s.ts_us)
            for name, col in s.cols.items():
                lo_hi = RANGES.get((s.kind, name))
                if lo_hi:
                    assert all(v is None or lo_hi[0] <= v <= lo_hi[1] for v in col)


def decode_or_refuse(data: bytes) -> payload.SampleBatch | None:
    try:
        b = payload.decode(data)
    except payload.PayloadError:
        return None
    assert_schema(b)
    assert_validated(b)
    return b


@FUZZ
@given(st.binary(max_size=2048))
@example(b"")
@example(b"\xc1")
@example(b"\x81\xa1v\x01")
@example(b"\xdd\xff\xff\xff\xff")  # an array claiming 4 billion entries
def test_arbitrary_bytes(data):
    decode_or_refuse(data)


@FUZZ
@given(any_msgpack)
def test_arbitrary_msgpack_values(obj):
    decode_or_refuse(msgpack.packb(obj, use_bin_type=True))


@FUZZ_STRUCTURED
@given(structured)
def test_payload_shaped_maps_with_arbitrary_insides(obj):
    decode_or_refuse(msgpack.packb(obj, use_bin_type=True))


@FUZZ_STRUCTURED
@given(valid_batches)
def test_valid_batches_round_trip(b):
    back = payload.decode(payload.encode(b))
    assert_schema(back)
    assert back.sample_count == b.sample_count
    assert [(s.target, s.kind, s.ts_us) for s in back.series] == [
        (s.target, s.kind, sorted(s.ts_us)) for s in b.series if len(s)
    ]
    assert back.events == b.events and back.paths == b.paths
    assert_validated(back)


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (i,))
    yield path


@FUZZ_STRUCTURED
@given(valid_batches, st.data())
def test_valid_payloads_with_one_part_replaced(b, data):
    obj = msgpack.unpackb(payload.encode(b), raw=False)
    paths = list(_leaves(obj))
    path = data.draw(st.sampled_from(paths))
    new = data.draw(any_msgpack)
    if not path:
        obj = new
    else:
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        parent[path[-1]] = new
    decode_or_refuse(msgpack.packb(obj, use_bin_type=True))


@FUZZ_STRUCTURED
@given(valid_batches, st.data())
def test_valid_payloads_with_bytes_flipped_cut_or_inserted(b, data):
    raw = bytearray(payload.encode(b))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[i : i + data.draw(st.integers(1, 8))]
        else:
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    decode_or_refuse(bytes(raw))
