"""Meaning checks on a decoded batch: ranges per column and timestamps against the collector's clock.
A value no working agent sends, or a seq the store cannot hold, refuses the batch whole before it costs anyone.
Design notes: docs/collector-internals.md, "collector/ingest/validate.py".
"""

from __future__ import annotations

from cxpulse.v1.payload import SampleBatch

__all__ = ["MAX_SEQ", "RANGES", "check_batch", "check_hello", "check_seq"]

S = 1_000_000  # microseconds per second

# (kind, column) -> inclusive (low, high); columns not listed are bounded by the decoder only.
RANGES: dict[tuple[str, str], tuple[int, int]] = {
    ("rtt", "rtt"): (0, 60 * S),
    ("http", "dns"): (0, 120 * S),
    ("http", "tcp"): (0, 120 * S),
    ("http", "tls"): (0, 120 * S),
    ("http", "ttfb"): (0, 300 * S),
    ("http", "total"): (0, 300 * S),
    ("http", "status"): (0, 999),
    ("http", "cert"): (-36_500, 36_500),  # days left; negative: expired
    ("voice", "sent"): (0, 1_000_000),
    ("voice", "recv"): (0, 1_000_000),
    ("voice", "dup"): (0, 1_000_000),
    ("voice", "reord"): (0, 1_000_000),
    ("voice", "rtt"): (0, 60 * S),
    ("voice", "rtt95"): (0, 60 * S),
    ("voice", "jit"): (0, 60 * S),
    ("voice", "loss"): (0, 1000),  # permille
    ("voice", "burst"): (0, 1000),
    ("voice", "run"): (0, 1_000_000),
    ("device", "cpu"): (0, 1000),  # permille
    ("device", "mem"): (0, 1000),
    ("device", "nicerr"): (0, 1 << 40),
    ("device", "up"): (0, 100_000_000),  # kbit/s: the desk's own traffic, up to 100 Gbit/s
    ("device", "dn"): (0, 100_000_000),
    ("device", "upb"): (0, 100_000_000),
    ("device", "dnb"): (0, 100_000_000),
    ("device", "spd"): (0, 1_000_000),  # Mbit/s link speed
    ("wifi", "conn"): (0, 1),
    ("wifi", "rssi"): (-120, 0),  # dBm
    ("wifi", "noise"): (-120, 0),
    ("wifi", "snr"): (-20, 120),  # dB
    ("wifi", "ch"): (0, 255),
    ("wifi", "mhz"): (0, 70_000),
    ("wifi", "tx"): (0, 100_000_000),  # kbit/s
    ("wifi", "rx"): (0, 100_000_000),
    ("wifi", "q"): (0, 100),  # percent
}
MAX_EVENT_S = 7 * 86_400  # an event longer than the spool's horizon is a stuck clock
# The largest seq and seq_epoch a store holds (SQLite INTEGER and PostgreSQL BIGINT are signed 64-bit).
MAX_SEQ = (1 << 63) - 1
MAX_PAYLOAD_SCHEMA = 1_000  # schema versions are small; anything else is not an agent of ours


def check_seq(seq: int) -> str | None:
    """Why a batch's seq cannot be taken, or None."""
    if seq == 0:
        return "seq must start at 1"
    if seq > MAX_SEQ:
        return f"seq {seq} is beyond the largest the collector stores ({MAX_SEQ})"
    return None


def check_hello(seq_epoch: int, payload_schema: int) -> str | None:
    """Why a Hello's integers cannot be taken, or None (its strings are checked by the service).

    Every uint64 seq_epoch is held: the stores map it onto signed 64 bits (store.sqlite.to_signed64)."""
    if not 0 <= seq_epoch < 1 << 64:
        return f"seq_epoch {seq_epoch} is not a 64-bit number"
    if payload_schema > MAX_PAYLOAD_SCHEMA:
        return f"payload_schema {payload_schema} is not a schema version"
    return None


def check_batch(
    batch: SampleBatch, now_us: int, max_future_s: float = 600.0, max_age_s: float = 8 * 86_400.0
) -> str | None:
    """Why this batch must be refused, or None. ``max_age_s`` 0: no lower bound on sample times."""
    hi = now_us + int(max_future_s * S)
    lo = now_us - int(max_age_s * S) if max_age_s else None
    for i, s in enumerate(batch.series):
        where = f"series {i} ({s.kind} {s.target!r})"
        if s.ts_us:
            problem = _times(where, min(s.ts_us), max(s.ts_us), lo, hi)
            if problem:
                return problem
        for name, col in s.cols.items():
            bounds = RANGES.get((s.kind, name))
            if bounds is None:
                continue
            low, high = bounds
            present = [v for v in col if v is not None]
            if present and (min(present) < low or max(present) > high):  # C-speed scan; the index only on failure
                j, v = next((j, v) for j, v in enumerate(col) if v is not None and not low <= v <= high)
                return f"{where} sample {j}: {name} = {v} is outside {low}..{high}"
        if s.kind == "voice":
            for j, (sent, recv) in enumerate(zip(s.cols["sent"], s.cols["recv"])):
                if sent is not None and recv is not None and recv > 2 * sent + 10:
                    return f"{where} sample {j}: received {recv} of {sent} sent packets"
    for i, e in enumerate(batch.events):
        where = f"event {i} ({e.kind})"
        problem = _times(where, e.start_us, e.start_us if e.end_us is None else e.end_us, lo, hi)
        if problem:
            return problem
        if e.end_us is not None and e.end_us - e.start_us > MAX_EVENT_S * S:
            return f"{where}: lasts {(e.end_us - e.start_us) // S} s, longer than {MAX_EVENT_S} s"
    for i, p in enumerate(batch.paths):
        problem = _times(f"path {i}", p.ts_us, p.ts_us, lo, hi)
        if problem:
            return problem
        for h in p.hops:
            if h.rtt_us is not None and h.rtt_us > 60 * S:
                return f"path {i} hop {h.ttl}: rtt {h.rtt_us} us is outside 0..{60 * S}"
    return None


def _times(where: str, first: int, last: int, lo: int | None, hi: int) -> str | None:
    if last > hi:
        return (
            f"{where}: timestamp {last} us is {(last - hi) // S + 1} s beyond the collector's clock plus "
            f"the allowed skew; check the desk's clock"
        )
    if lo is not None and first < lo:
        return (
            f"{where}: timestamp {first} us is older than the collector accepts (the agent's spool keeps "
            f"7 days); check the desk's clock"
        )
    return None
