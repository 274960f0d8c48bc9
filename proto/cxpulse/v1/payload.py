"""The msgpack sample payload carried in ``Batch.payload`` (schema: PAYLOAD.md).

Agent and collector share this one codec so that the bytes the agent spools are
exactly the bytes the collector validates. Columns per series, delta timestamps
and integer microseconds keep a batch small without a compressor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

METHOD_ICMP_RAW = "icmp_raw"
METHOD_ICMP_DGRAM = "icmp_dgram"
METHOD_TCP_CONNECT = "tcp_connect"
METHODS = (METHOD_ICMP_RAW, METHOD_ICMP_DGRAM, METHOD_TCP_CONNECT)

KIND_RTT = "rtt"
KINDS = (KIND_RTT,)

# Sanity bounds: a timestamp outside these years is a broken clock or garbage.
_MIN_TS_US = 946_684_800_000_000  # 2000-01-01
_MAX_TS_US = 4_102_444_800_000_000  # 2100-01-01
_MAX_RTT_US = 600_000_000  # 10 minutes: no probe waits longer
MAX_NAME_LEN = 256


class PayloadError(ValueError):
    """The payload cannot be accepted as sent; ``version_mismatch`` marks schema errors."""

    def __init__(self, message: str, *, version_mismatch: bool = False):
        super().__init__(message)
        self.version_mismatch = version_mismatch


@dataclass
class Series:
    """One measured thing over one batch: a target, by one method, at one address."""

    target: str
    address: str
    method: str
    kind: str = KIND_RTT
    ts_us: list[int] = field(default_factory=list)
    rtt_us: list[int | None] = field(default_factory=list)

    def add(self, ts_us: int, rtt_us: int | None) -> None:
        self.ts_us.append(ts_us)
        self.rtt_us.append(rtt_us)

    def __len__(self) -> int:
        return len(self.ts_us)


@dataclass
class SampleBatch:
    series: list[Series] = field(default_factory=list)

    @property
    def sample_count(self) -> int:
        return sum(len(s) for s in self.series)


def encode(batch: SampleBatch) -> bytes:
    """Encode a batch; series without samples are left out."""
    live = [s for s in batch.series if len(s)]
    t0 = min((min(s.ts_us) for s in live), default=0)
    out = []
    for s in live:
        steps = [b - a for a, b in zip(s.ts_us, s.ts_us[1:])]
        # Samples come on a cadence: store each step as its deviation from the
        # typical step, which is a small number (1-3 bytes) instead of a 5-byte one.
        iv = sorted(steps)[len(steps) // 2] if steps else 0
        dt = [s.ts_us[0] - t0] + [d - iv for d in steps]
        out.append({"tg": s.target, "a": s.address, "k": s.kind, "m": s.method, "iv": iv, "dt": dt, "rtt": list(s.rtt_us)})
    return msgpack.packb({"v": SCHEMA_VERSION, "t0": t0, "s": out}, use_bin_type=True)


def peek_version(data: bytes) -> int | None:
    try:
        obj = msgpack.unpackb(data, raw=False, max_bin_len=0, max_ext_len=0)
    except Exception:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("v"), int):
        return obj["v"]
    return None


def decode(data: bytes, *, max_samples: int = 1_000_000) -> SampleBatch:
    """Decode and validate; raises PayloadError with a reason a person can act on."""
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=0,
            max_ext_len=0,
            max_str_len=MAX_NAME_LEN * 4,
            max_array_len=max_samples,
            max_map_len=64,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise PayloadError(f"payload is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise PayloadError(f"payload must be a map, got {type(obj).__name__}")
    version = obj.get("v")
    if version not in SUPPORTED_VERSIONS:
        raise PayloadError(
            f"payload schema version {version!r} is not supported (collector reads {sorted(SUPPORTED_VERSIONS)})",
            version_mismatch=True,
        )
    t0 = obj.get("t0")
    series = obj.get("s")
    if not _is_int(t0):
        raise PayloadError("payload field 't0' must be an integer (microseconds since the Unix epoch)")
    if not isinstance(series, list):
        raise PayloadError("payload field 's' must be a list of series")
    result = SampleBatch()
    total = 0
    for i, raw in enumerate(series):
        s = _decode_series(i, raw, t0)
        total += len(s)
        if total > max_samples:
            raise PayloadError(f"payload holds more than {max_samples} samples")
        result.series.append(s)
    return result


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _name(i: int, raw: dict, key: str, allowed: tuple[str, ...] | None = None) -> str:
    v = raw.get(key)
    if not isinstance(v, str) or not v or len(v) > MAX_NAME_LEN:
        raise PayloadError(f"series {i}: field {key!r} must be a non-empty string of at most {MAX_NAME_LEN} characters")
    if allowed is not None and v not in allowed:
        raise PayloadError(f"series {i}: {key!r} value {v!r} is not one of {list(allowed)}")
    return v


def _decode_series(i: int, raw: object, t0: int) -> Series:
    if not isinstance(raw, dict):
        raise PayloadError(f"series {i} must be a map")
    s = Series(
        target=_name(i, raw, "tg"),
        address=_name(i, raw, "a"),
        kind=_name(i, raw, "k", KINDS),
        method=_name(i, raw, "m", METHODS),
    )
    dt, rtt, iv = raw.get("dt"), raw.get("rtt"), raw.get("iv", 0)
    if not isinstance(dt, list) or not isinstance(rtt, list):
        raise PayloadError(f"series {i}: 'dt' and 'rtt' must be lists")
    if not _is_int(iv) or iv < 0:
        raise PayloadError(f"series {i}: 'iv' must be a non-negative integer (microseconds)")
    if len(dt) != len(rtt):
        raise PayloadError(f"series {i}: 'dt' has {len(dt)} entries but 'rtt' has {len(rtt)}")
    ts = t0
    for j, (d, r) in enumerate(zip(dt, rtt)):
        if not _is_int(d):
            raise PayloadError(f"series {i} sample {j}: timestamp delta must be an integer")
        step = d if j == 0 else iv + d
        if step < 0:
            raise PayloadError(f"series {i} sample {j}: timestamps must not go backwards")
        ts += step
        if not _MIN_TS_US <= ts <= _MAX_TS_US:
            raise PayloadError(f"series {i} sample {j}: timestamp {ts} us is outside 2000-2100")
        if r is not None and (not _is_int(r) or not 0 <= r <= _MAX_RTT_US):
            raise PayloadError(f"series {i} sample {j}: rtt must be null (lost) or 0..{_MAX_RTT_US} us, got {r!r}")
        s.ts_us.append(ts)
        s.rtt_us.append(r)
    return s
