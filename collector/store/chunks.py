"""One series' samples of one kind as one compact chunk and back, exactly: ~3.4 bytes per RTT sample
in an hour's chunk instead of a 42-byte row (delta-of-delta timestamps, zigzag deltas, a None bitmap,
string tables, byte planes, deflate). Format, choices and figures: docs/storage-chunks.md.
"""

from __future__ import annotations

import array
import struct
import zlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise

import msgpack

from cxpulse.v1.kinds import ADDED_COLUMNS, KINDS, STR

__all__ = ["FORMAT", "ChunkError", "Samples", "decode", "encode", "merge"]

FORMAT = 1  # the first byte of every chunk; a reader refuses a format it does not know
_DEFLATED = 0x80  # flag on the first byte: the body is a raw deflate stream
_CRC = struct.Struct(">I")
MAX_SAMPLES = 4_000_000  # a chunk is at most a day of a 20 Hz series; bounds what a damaged one allocates
_MAX_BODY = 64 << 20  # a day of a 20 Hz device series is ~10 MiB unpacked
_TYPECODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_U64 = 1 << 64


class ChunkError(ValueError):
    """A chunk that cannot be decoded: damaged, truncated, of another kind or of an unknown format."""


@dataclass
class Samples:
    """One series' samples: ``ts_us`` strictly increasing, ``cols`` one list per column of the kind."""

    kind: str
    ts_us: list[int] = field(default_factory=list)
    cols: dict[str, list] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}")
        for name in KINDS[self.kind]:
            self.cols.setdefault(name, [])

    def __len__(self) -> int:
        return len(self.ts_us)

    def window(self, start_us: int | None = None, end_us: int | None = None) -> Samples:
        """The samples with ``start_us <= ts < end_us`` (either bound None: open)."""
        lo = 0 if start_us is None else bisect_left(self.ts_us, start_us)
        hi = len(self.ts_us) if end_us is None else bisect_left(self.ts_us, end_us)
        if lo == 0 and hi == len(self.ts_us):
            return self
        return Samples(self.kind, self.ts_us[lo:hi], {k: v[lo:hi] for k, v in self.cols.items()})


def _normalized(kind: str, ts_us: Sequence[int], cols: Mapping[str, Sequence]) -> Samples:
    """Sorted by time, one sample per timestamp: of samples with equal timestamps the last given wins."""
    names = KINDS[kind]
    n = len(ts_us)
    for name in names:
        if name not in cols and name not in ADDED_COLUMNS.get(kind, ()):
            raise ValueError(f"kind {kind!r} needs column {name!r}")
        if name in cols and len(cols[name]) != n:
            raise ValueError(f"column {name!r} has {len(cols[name])} values for {n} timestamps")
    unknown = set(cols) - set(names)
    if unknown:
        raise ValueError(f"kind {kind!r} has no column(s) {sorted(unknown)}")
    full = {name: list(cols[name]) if name in cols else [None] * n for name in names}
    if all(a < b for a, b in pairwise(ts_us)):
        return Samples(kind, list(ts_us), full)
    last = {t: i for i, t in enumerate(ts_us)}  # the last index of each timestamp
    order = sorted(last.values(), key=ts_us.__getitem__)
    return Samples(kind, [ts_us[i] for i in order], {k: [v[i] for i in order] for k, v in full.items()})


def _zigzag(values: Iterable[int]) -> list[int]:
    return [(x << 1) if x >= 0 else ((-x << 1) - 1) for x in values]


def _unzigzag(values: Iterable[int]) -> list[int]:
    return [(z >> 1) if not z & 1 else -((z + 1) >> 1) for z in values]


def _planes(values: list[int]) -> bytes:
    """Unsigned integers as byte planes: the width, then all low bytes, then all next bytes, ...

    Small numbers leave the high planes all zero, which deflate reduces to almost nothing: the
    effect of varints, at the speed of C slicing instead of a Python loop per byte.
    """
    if not values:
        return b""
    top = max(values)
    if top >= _U64:
        raise ValueError(f"value {top} does not fit 64 bits after delta and zigzag coding")
    width = 1 if top < 0x100 else 2 if top < 0x10000 else 4 if top < 0x1_0000_0000 else 8
    raw = array.array(_TYPECODES[width], values)
    if raw.itemsize != width:  # "I" is 4 bytes on every platform Python supports, but say so if not
        raise RuntimeError(f"array typecode {_TYPECODES[width]!r} is {raw.itemsize} bytes here")
    if struct.pack("=H", 1) != struct.pack("<H", 1):
        raw.byteswap()  # planes are little-endian on every machine
    data = raw.tobytes()
    return bytes([width]) + b"".join(data[i::width] for i in range(width))


def _unplanes(data: object, count: int) -> list[int]:
    if not isinstance(data, bytes):
        raise ChunkError("a column's values are not bytes")
    if not count:
        if data:
            raise ChunkError("a column without values carries bytes")
        return []
    if not data or data[0] not in _TYPECODES or len(data) != 1 + data[0] * count:
        raise ChunkError(f"a column's byte planes do not hold {count} values")
    width = data[0]
    buf = bytearray(width * count)
    for i in range(width):
        buf[i::width] = data[1 + i * count : 1 + (i + 1) * count]
    raw = array.array(_TYPECODES[width])
    raw.frombytes(bytes(buf))
    if struct.pack("=H", 1) != struct.pack("<H", 1):
        raw.byteswap()
    return raw.tolist()


def _nulls(col: list) -> bytes | None:
    """Bitmap of the None positions (bit i of the little-endian integer), or None when there are none."""
    if None not in col:
        return None
    bits = "".join("1" if v is None else "0" for v in reversed(col))
    return int(bits, 2).to_bytes((len(col) + 7) // 8, "little")


def _null_positions(bitmap: bytes | None, n: int) -> list[bool]:
    if bitmap is None or not n:
        if bitmap not in (None, b""):
            raise ChunkError("a column's null bitmap has the wrong length")
        return [False] * n
    if not isinstance(bitmap, bytes) or len(bitmap) != (n + 7) // 8:
        raise ChunkError("a column's null bitmap has the wrong length")
    value = int.from_bytes(bitmap, "little")
    if value >> n:
        raise ChunkError("a column's null bitmap marks samples beyond the chunk")
    bits = bin(value)[2:].zfill(n)
    return [b == "1" for b in reversed(bits)]


def encode(kind: str, ts_us: Sequence[int], cols: Mapping[str, Sequence], *, level: int = 6) -> bytes:
    """One chunk of ``kind`` samples. Out-of-order input is sorted; of equal timestamps the last wins.

    A column the kind gained later (``kinds.ADDED_COLUMNS``) may be left out: it reads as None.
    ``level`` is zlib's: 6 compresses as well as 9 on these columns (docs/storage-chunks.md).
    """
    s = _normalized(kind, ts_us, cols)
    n = len(s.ts_us)
    ts = s.ts_us
    steps = [b - a for a, b in pairwise(ts)]
    dod = _zigzag([b - a for a, b in zip([0, *steps], steps)])
    body: list = [n, ts[0] if n else 0, _planes(dod)]
    for name, ctype in KINDS[kind].items():
        col = s.cols[name]
        nulls = _nulls(col)
        present = col if nulls is None else [v for v in col if v is not None]
        if ctype == STR:
            table: dict[str, int] = {}
            for v in present:
                if not isinstance(v, str):
                    raise ValueError(f"column {name!r} holds {v!r}, not a string")
                table.setdefault(v, len(table))
            body.append([nulls, list(table), _planes([table[v] for v in present])])
        else:
            if not all(type(v) is int for v in present):
                bad = next(v for v in present if type(v) is not int)
                raise ValueError(f"column {name!r} holds {bad!r}, not an integer")
            body.append([nulls, _planes(_zigzag([b - a for a, b in zip([0, *present], present)]))])
    packed = msgpack.packb(body, use_bin_type=True)
    crc = _CRC.pack(zlib.crc32(packed))
    z = zlib.compressobj(level, zlib.DEFLATED, -15)
    deflated = z.compress(packed) + z.flush()
    if len(deflated) < len(packed):
        return bytes([FORMAT | _DEFLATED]) + deflated + crc
    return bytes([FORMAT]) + packed + crc


def _body(data: bytes) -> list:
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < 6:
        raise ChunkError("chunk is too short to be one")
    data = bytes(data)
    head, payload, crc = data[0], data[1:-4], data[-4:]
    if head & ~_DEFLATED != FORMAT:
        raise ChunkError(f"chunk format {head & ~_DEFLATED} is not one this reader knows (it reads {FORMAT})")
    if head & _DEFLATED:
        z = zlib.decompressobj(-15)
        try:
            payload = z.decompress(payload, _MAX_BODY)
        except zlib.error as exc:
            raise ChunkError(f"chunk does not inflate: {exc}") from None
        if not z.eof or z.unused_data or z.unconsumed_tail:
            raise ChunkError("chunk is truncated, too large or has trailing bytes")
    if _CRC.pack(zlib.crc32(payload)) != crc:
        raise ChunkError("chunk checksum does not match: the chunk is damaged")
    try:
        body = msgpack.unpackb(payload, raw=False, strict_map_key=True, max_ext_len=0, max_map_len=0)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ChunkError(f"chunk body is not valid: {type(exc).__name__}: {exc}") from None
    if not isinstance(body, list) or len(body) < 3:
        raise ChunkError("chunk body is not a chunk")
    return body


def decode(kind: str, data: bytes, start_us: int | None = None, end_us: int | None = None) -> Samples:
    """The samples of a chunk of ``kind``, or of those with ``start_us <= ts < end_us``; ChunkError if damaged."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    body = _body(data)
    n, ts0, ts_planes, columns = body[0], body[1], body[2], body[3:]
    spec = KINDS[kind]
    if type(n) is not int or not 0 <= n <= MAX_SAMPLES or type(ts0) is not int or not isinstance(ts_planes, bytes):
        raise ChunkError("chunk header is not a sample count, a first timestamp and timestamp planes")
    if len(columns) > len(spec):
        raise ChunkError(f"chunk has {len(columns)} columns; kind {kind!r} has {len(spec)}: is it of another kind?")
    missing = list(spec)[len(columns) :]
    if any(name not in ADDED_COLUMNS.get(kind, ()) for name in missing):
        raise ChunkError(f"chunk lacks column(s) {missing} of kind {kind!r}: is it of another kind?")
    steps = list(accumulate(_unzigzag(_unplanes(ts_planes, max(n - 1, 0)))))
    ts = list(accumulate([ts0, *steps])) if n else []
    if any(step <= 0 for step in steps):
        raise ChunkError("chunk timestamps do not increase")
    out = Samples(kind, ts, {})
    for name, raw in zip(spec, columns):
        string = spec[name] == STR
        if not isinstance(raw, list) or len(raw) != (3 if string else 2):
            raise ChunkError(f"chunk column {name!r} is not a {'string' if string else 'number'} column")
        nulls = _null_positions(raw[0], n)
        count = n - sum(nulls)
        if string:
            table = raw[1]
            if not isinstance(table, list) or not all(isinstance(v, str) for v in table):
                raise ChunkError(f"chunk column {name!r} has no string table")
            try:
                present = [table[i] for i in _unplanes(raw[2], count)]
            except IndexError:
                raise ChunkError(f"chunk column {name!r} points past its string table") from None
        else:
            present = list(accumulate(_unzigzag(_unplanes(raw[1], count))))
        if count == n:
            out.cols[name] = present
        else:
            it = iter(present)
            out.cols[name] = [None if null else next(it) for null in nulls]
    for name in missing:
        out.cols[name] = [None] * n
    return out.window(start_us, end_us)


def merge(kind: str, chunks: Iterable[bytes], *, level: int = 6) -> bytes:
    """Consecutive chunks of one series as one (compaction). Where they overlap, a later chunk's
    sample wins over an earlier one's at the same timestamp, as in ``encode``."""
    ts: list[int] = []
    cols: dict[str, list] = {name: [] for name in KINDS[kind]}
    for data in chunks:
        part = decode(kind, data)
        ts += part.ts_us
        for name, values in part.cols.items():
            cols[name] += values
    return encode(kind, ts, cols, level=level)
