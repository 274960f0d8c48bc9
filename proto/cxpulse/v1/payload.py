"""The msgpack sample payload carried in ``Batch.payload``: one codec for agent and collector.
The bytes the agent spools are exactly the bytes the collector validates.
Schema, versions 1 and 2 (deflated with a preset dictionary) and why this shape: PAYLOAD.md beside this file.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TypeGuard

import msgpack

from .kinds import ADDED_COLUMNS, EVENT_KINDS, INT, KIND_METHODS, KINDS, MAX_EVIDENCE, MAX_STR, STR, US

SCHEMA_VERSION = 2  # what the agent writes (Hello.payload_schema)
SUPPORTED_VERSIONS = frozenset({1, 2})

# Schema 2: this byte, then the schema-1 map (with "v": 2) as a raw deflate stream with the preset
# dictionary below. 0xc1 is the one byte msgpack never uses, so no schema-1 payload starts with it.
COMPRESSED_MARK = b"\xc1"
# Frozen with schema 2: a spooled payload must inflate the same way years later. Never edit;
# a new dictionary needs a new schema version.
# fmt: off
_ZDICT_V2_TOKENS = (
    "v", "t0", "s", "e", "p", "tg", "a", "k", "m", "iv", "dt", "h", "id", "sev", "x", "ts", "r", "hops",
    "rtt", "icmp_raw", "icmp_dgram", "tcp_connect", "gateway", "isp", "public",
    "http", "https", "dns", "tcp", "tls", "ttfb", "total", "status", "ver", "HTTP/1.1", "HTTP/2", "cert", "err",
    "timeout", "refused", "voice", "udp_reflect", "sent", "recv", "dup", "reord", "rtt95", "jit", "loss", "burst",
    "run", "device", "os", "cpu", "mem", "top", "nicerr", "if", "ifk", "ethernet", "wifi", "vpn", "proxy",
    "nl80211", "iw", "wlanapi", "netsh", "corewlan", "conn", "ssid", "bssid", "rssi", "noise", "snr", "ch", "mhz",
    "band", "phy", "tx", "rx", "q", "2.4", "5", "6", "802.11ax", "802.11ac", "802.11n", "<hidden-by-os>",
)
# fmt: on
_ZDICT_V2 = b"".join(msgpack.packb(t) for t in _ZDICT_V2_TOKENS)
MAX_INFLATED = 8 << 20  # a schema-2 payload may not inflate beyond this (the compressed limit is 1 MiB)

METHOD_ICMP_RAW = "icmp_raw"
METHOD_ICMP_DGRAM = "icmp_dgram"
METHOD_TCP_CONNECT = "tcp_connect"
METHODS = KIND_METHODS["rtt"]

KIND_RTT = "rtt"

# Sanity bounds: a timestamp outside these years is a broken clock or garbage.
_MIN_TS_US = 946_684_800_000_000  # 2000-01-01
_MAX_TS_US = 4_102_444_800_000_000  # 2100-01-01
_MAX_US = 600_000_000  # 10 minutes: no probe phase lasts longer
_MAX_INT = 1 << 40
MAX_NAME_LEN = 256
_MAX_HOPS = 64


class PayloadError(ValueError):
    """The payload cannot be accepted as sent; ``version_mismatch`` marks schema errors."""

    def __init__(self, message: str, *, version_mismatch: bool = False):
        super().__init__(message)
        self.version_mismatch = version_mismatch


@dataclass
class Series:
    """One measured thing over one batch: a target, of one kind, by one method, at one address.

    ``hop`` is the TTL distance for per-hop RTT series (None for targets named by config).
    """

    target: str
    address: str
    method: str
    kind: str = KIND_RTT
    hop: int | None = None
    ts_us: list[int] = field(default_factory=list)
    cols: dict[str, list] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in KINDS[self.kind]:
            self.cols.setdefault(name, [])

    @property
    def rtt_us(self) -> list[int | None]:
        return self.cols["rtt"]

    def add(self, ts_us: int, rtt_us: int | None = None, /, **values) -> None:
        """rtt: ``add(ts, rtt_us)``; other kinds: ``add(ts, dns=..., tcp=...)`` (missing columns are null)."""
        self.ts_us.append(ts_us)
        if self.kind == KIND_RTT and not values:
            values = {"rtt": rtt_us}
        for name, col in self.cols.items():
            col.append(values.get(name))

    def __len__(self) -> int:
        return len(self.ts_us)


@dataclass
class Event:
    """A micro-disruption seen by the agent's detector. ``end_us`` None: still open.

    The id is stable across batches (an event is sent when it opens and again
    when it closes); the collector keeps the latest state per id.
    """

    id: str
    kind: str
    target: str
    start_us: int
    end_us: int | None
    severity: int  # 1 minor, 2 major, 3 critical
    evidence: str = ""


@dataclass
class PathHop:
    ttl: int
    address: str | None
    rtt_us: int | None


@dataclass
class PathSnapshot:
    """One traced path to a target; the collector keeps them to show path changes."""

    target: str
    address: str
    ts_us: int
    method: str
    reached: bool
    hops: list[PathHop] = field(default_factory=list)


@dataclass
class SampleBatch:
    series: list[Series] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    paths: list[PathSnapshot] = field(default_factory=list)

    @property
    def sample_count(self) -> int:
        """Samples in series plus events and paths: every item the collector stores counts once."""
        return sum(len(s) for s in self.series) + len(self.events) + len(self.paths)


def encode(batch: SampleBatch, *, version: int = 1) -> bytes:
    """Encode a batch; series without samples are left out.

    Version 1 (the default, for tools and tests that look inside) is plain msgpack; the agent
    sends version 2 (``SCHEMA_VERSION``): the same map, deflated.
    """
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"cannot encode payload schema {version}")
    live = [s for s in batch.series if len(s)]
    starts = [min(s.ts_us) for s in live] + [e.start_us for e in batch.events] + [p.ts_us for p in batch.paths]
    t0 = min(starts, default=0)
    out: dict = {"v": version, "t0": t0, "s": []}
    for s in live:
        if any(b < a for a, b in zip(s.ts_us, s.ts_us[1:])):
            s = _time_ordered(s)  # probes can finish out of order (a lost one waits for its timeout)
        steps = [b - a for a, b in zip(s.ts_us, s.ts_us[1:])]
        # Samples come on a cadence: store each step as its deviation from the
        # typical step, which is a small number (1-3 bytes) instead of a 5-byte one.
        iv = sorted(steps)[len(steps) // 2] if steps else 0
        d = {
            "tg": s.target,
            "a": s.address,
            "k": s.kind,
            "m": s.method,
            "iv": iv,
            "dt": [s.ts_us[0] - t0] + [x - iv for x in steps],
        }
        if s.hop is not None:
            d["h"] = s.hop
        for name, col in s.cols.items():
            d[name] = list(col)
        out["s"].append(d)
    if batch.events:
        out["e"] = [
            {
                "id": e.id,
                "k": e.kind,
                "tg": e.target,
                "s": e.start_us - t0,
                "e": None if e.end_us is None else e.end_us - e.start_us,
                "sev": e.severity,
                "x": e.evidence,
            }
            for e in batch.events
        ]
    if batch.paths:
        out["p"] = [
            {
                "tg": p.target,
                "a": p.address,
                "ts": p.ts_us - t0,
                "m": p.method,
                "r": p.reached,
                "hops": [[h.ttl, h.address, h.rtt_us] for h in p.hops],
            }
            for p in batch.paths
        ]
    packed = msgpack.packb(out, use_bin_type=True)
    if version == 1:
        return packed
    z = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=_ZDICT_V2)
    return COMPRESSED_MARK + z.compress(packed) + z.flush()


def _inflate(data: bytes) -> bytes:
    """The schema-2 body, bounded: a small payload must not inflate into a large allocation."""
    z = zlib.decompressobj(-15, zdict=_ZDICT_V2)
    try:
        out = z.decompress(data[1:], MAX_INFLATED + 1)
        if not z.unconsumed_tail:
            out += z.flush()  # what zlib still holds: at most one window
        if z.unconsumed_tail or len(out) > MAX_INFLATED:
            raise PayloadError(f"schema 2 payload inflates beyond {MAX_INFLATED} bytes")
    except zlib.error as exc:
        raise PayloadError(f"schema 2 payload does not inflate: {exc}") from None
    if not z.eof or z.unused_data:
        raise PayloadError("schema 2 payload is truncated or has trailing bytes")
    return out


def _time_ordered(s: Series) -> Series:
    order = sorted(range(len(s.ts_us)), key=s.ts_us.__getitem__)
    return Series(
        target=s.target,
        address=s.address,
        method=s.method,
        kind=s.kind,
        hop=s.hop,
        ts_us=[s.ts_us[i] for i in order],
        cols={k: [v[i] for i in order] for k, v in s.cols.items()},
    )


def decode(data: bytes, *, max_samples: int = 1_000_000) -> SampleBatch:
    """Decode and validate; raises PayloadError with a reason a person can act on."""
    compressed = data[:1] == COMPRESSED_MARK
    if compressed:
        data = _inflate(data)
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=0,
            max_ext_len=0,
            max_str_len=MAX_EVIDENCE * 4,
            max_array_len=max_samples,
            max_map_len=64,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise PayloadError(f"payload is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise PayloadError(f"payload must be a map, got {type(obj).__name__}")
    version = obj.get("v")
    if not _is_int(version) or version not in SUPPORTED_VERSIONS or compressed != (version == 2):
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
    events, paths = obj.get("e", []), obj.get("p", [])
    if not isinstance(events, list) or not isinstance(paths, list):
        raise PayloadError("payload fields 'e' (events) and 'p' (paths) must be lists")
    result.events = [_decode_event(i, raw, t0) for i, raw in enumerate(events)]
    result.paths = [_decode_path(i, raw, t0) for i, raw in enumerate(paths)]
    return result


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _name(where: str, raw: dict, key: str, allowed: tuple[str, ...] | None = None, max_len: int = MAX_NAME_LEN) -> str:
    v = raw.get(key)
    if not isinstance(v, str) or not v or len(v) > max_len:
        raise PayloadError(f"{where}: field {key!r} must be a non-empty string of at most {max_len} characters")
    if allowed is not None and v not in allowed:
        raise PayloadError(f"{where}: {key!r} value {v!r} is not one of {list(allowed)}")
    return v


def _ts(where: str, ts: int) -> int:
    if not _MIN_TS_US <= ts <= _MAX_TS_US:
        raise PayloadError(f"{where}: timestamp {ts} us is outside 2000-2100")
    return ts


def _check_value(where: str, name: str, ctype: str, v: object) -> None:
    if v is None:
        return
    if ctype == US:
        if not _is_int(v) or not 0 <= v <= _MAX_US:
            raise PayloadError(f"{where}: {name} must be null or 0..{_MAX_US} us, got {v!r}")
    elif ctype == INT:
        if not _is_int(v) or not -_MAX_INT <= v <= _MAX_INT:
            raise PayloadError(f"{where}: {name} must be null or an integer, got {v!r}")
    elif ctype == STR:
        if not isinstance(v, str) or len(v) > MAX_STR:
            raise PayloadError(f"{where}: {name} must be null or a string of at most {MAX_STR} characters")


def _decode_series(i: int, raw: object, t0: int) -> Series:
    where = f"series {i}"
    if not isinstance(raw, dict):
        raise PayloadError(f"{where} must be a map")
    kind = _name(where, raw, "k", tuple(KINDS))
    s = Series(
        target=_name(where, raw, "tg"),
        address=_name(where, raw, "a"),
        kind=kind,
        method=_name(where, raw, "m", KIND_METHODS[kind]),
    )
    hop = raw.get("h")
    if hop is not None and (not _is_int(hop) or not 0 < hop <= _MAX_HOPS):
        raise PayloadError(f"{where}: 'h' (hop) must be 1..{_MAX_HOPS}")
    s.hop = hop
    dt, iv = raw.get("dt"), raw.get("iv", 0)
    if not isinstance(dt, list):
        raise PayloadError(f"{where}: 'dt' must be a list")
    if not _is_int(iv) or iv < 0:
        raise PayloadError(f"{where}: 'iv' must be a non-negative integer (microseconds)")
    spec = KINDS[kind]
    added = ADDED_COLUMNS.get(kind, frozenset())
    for name, ctype in spec.items():
        col = raw.get(name)
        if col is None and name in added:
            col = [None] * len(dt)  # an older agent: the column did not exist yet
        if not isinstance(col, list):
            raise PayloadError(f"{where}: column {name!r} of kind {kind!r} must be a list")
        if len(col) != len(dt):
            raise PayloadError(f"{where}: 'dt' has {len(dt)} entries but {name!r} has {len(col)}")
        for j, v in enumerate(col):
            _check_value(f"{where} sample {j}", name, ctype, v)
        s.cols[name] = col
    ts = t0
    for j, d in enumerate(dt):
        if not _is_int(d):
            raise PayloadError(f"{where} sample {j}: timestamp delta must be an integer")
        step = d if j == 0 else iv + d
        if step < 0:
            raise PayloadError(f"{where} sample {j}: timestamps must not go backwards")
        ts += step
        s.ts_us.append(_ts(f"{where} sample {j}", ts))
    return s


def _decode_event(i: int, raw: object, t0: int) -> Event:
    where = f"event {i}"
    if not isinstance(raw, dict):
        raise PayloadError(f"{where} must be a map")
    start, dur, sev, ev = raw.get("s"), raw.get("e"), raw.get("sev"), raw.get("x", "")
    if not _is_int(start) or start < 0:
        raise PayloadError(f"{where}: 's' must be a non-negative offset from t0")
    if dur is not None and (not _is_int(dur) or dur < 0):
        raise PayloadError(f"{where}: 'e' must be null (open) or a non-negative duration")
    if not _is_int(sev) or not 1 <= sev <= 3:
        raise PayloadError(f"{where}: 'sev' must be 1, 2 or 3")
    if not isinstance(ev, str) or len(ev) > MAX_EVIDENCE:
        raise PayloadError(f"{where}: 'x' (evidence) must be a string of at most {MAX_EVIDENCE} characters")
    start_us = _ts(where, t0 + start)
    return Event(
        id=_name(where, raw, "id", max_len=MAX_STR),
        kind=_name(where, raw, "k", EVENT_KINDS),
        target=_name(where, raw, "tg"),
        start_us=start_us,
        end_us=None if dur is None else start_us + dur,
        severity=sev,
        evidence=ev,
    )


def _decode_path(i: int, raw: object, t0: int) -> PathSnapshot:
    where = f"path {i}"
    if not isinstance(raw, dict):
        raise PayloadError(f"{where} must be a map")
    ts, reached, hops = raw.get("ts"), raw.get("r"), raw.get("hops")
    if not _is_int(ts) or ts < 0:
        raise PayloadError(f"{where}: 'ts' must be a non-negative offset from t0")
    if not isinstance(reached, bool):
        raise PayloadError(f"{where}: 'r' must be true or false")
    if not isinstance(hops, list) or len(hops) > _MAX_HOPS:
        raise PayloadError(f"{where}: 'hops' must be a list of at most {_MAX_HOPS} hops")
    out = []
    for j, h in enumerate(hops):
        if not (
            isinstance(h, list)
            and len(h) == 3
            and _is_int(h[0])
            and 0 < h[0] <= _MAX_HOPS
            and (h[1] is None or (isinstance(h[1], str) and 0 < len(h[1]) <= MAX_NAME_LEN))
        ):
            raise PayloadError(f"{where} hop {j}: must be [ttl 1..{_MAX_HOPS}, address or null, rtt_us or null]")
        _check_value(f"{where} hop {j}", "rtt", US, h[2])
        out.append(PathHop(h[0], h[1], h[2]))
    return PathSnapshot(
        target=_name(where, raw, "tg"),
        address=_name(where, raw, "a"),
        ts_us=_ts(where, t0 + ts),
        method=_name(where, raw, "m", max_len=32),
        reached=reached,
        hops=out,
    )
