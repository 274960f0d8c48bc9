"""A mergeable latency sketch: fixed logarithmic buckets, bounded relative error, exact merges.
DDSketch's idea (gamma 1.02: 0.99 % relative error; count, sum, min and max exact); why this
shape, buckets and size: docs/storage.md, "The latency sketch".
"""

from __future__ import annotations

import math
import struct
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import accumulate

__all__ = ["DEFAULT_GAMMA", "LatencySketch"]

DEFAULT_GAMMA = 1.02
_MAGIC = b"LS"
_VERSION = 1
_GAMMA = struct.Struct(">d")


class LatencySketch:
    """Counts of latencies (integer microseconds) in fixed relative-error buckets."""

    __slots__ = ("_log_gamma", "buckets", "count", "gamma", "max", "min", "sum", "zero")

    def __init__(self, gamma: float = DEFAULT_GAMMA) -> None:
        if not (math.isfinite(gamma) and 1 < gamma <= 2):
            raise ValueError(f"gamma must be within (1, 2], got {gamma!r}")
        self.gamma = float(gamma)
        self._log_gamma = math.log(self.gamma)
        self.buckets: dict[int, int] = {}
        self.zero = 0  # values of 0 us
        self.count = 0
        self.sum = 0  # exact, integer microseconds
        self.min: int | None = None
        self.max: int | None = None

    # --- building -------------------------------------------------------------------------

    @classmethod
    def of(cls, values_us: Iterable[int | float], gamma: float = DEFAULT_GAMMA) -> LatencySketch:
        s = cls(gamma)
        for v in values_us:
            s.add(v)
        return s

    @property
    def relative_error(self) -> float:
        """The bound on |estimate - true| / true for any quantile (of values >= 1 us)."""
        return (self.gamma - 1) / (self.gamma + 1)

    def key(self, value_us: int) -> int:
        """The bucket of a value >= 1: the k with gamma^(k-1) < value <= gamma^k."""
        return math.ceil(math.log(value_us) / self._log_gamma)

    def add(self, value_us: int | float, count: int = 1) -> None:
        """Count ``value_us`` (rounded to whole microseconds) ``count`` times."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an int >= 0, got {count!r}")
        if isinstance(value_us, bool) or not isinstance(value_us, (int, float)):
            raise TypeError(f"value must be a number of microseconds, got {type(value_us).__name__}")
        if isinstance(value_us, float):
            if not math.isfinite(value_us):
                raise ValueError(f"value must be finite, got {value_us!r}")
            value_us = round(value_us)
        if value_us < 0:
            raise ValueError(f"a latency cannot be negative: {value_us}")
        if count == 0:
            return
        if value_us == 0:
            self.zero += count
        else:
            k = self.key(value_us)
            self.buckets[k] = self.buckets.get(k, 0) + count
        self.count += count
        self.sum += value_us * count
        self.min = value_us if self.min is None else min(self.min, value_us)
        self.max = value_us if self.max is None else max(self.max, value_us)

    def add_many(self, values_us: Sequence[int]) -> None:
        """Count many integer latencies at once: the same sketch as ``add`` of each, bit for bit.

        Why: the collector builds one sketch per agent, target and minute for every sample it
        ingests, and ``add`` costs a type check and a logarithm per value in Python. Here values
        below ``_TABLE_LIMIT`` µs take their bucket from a table built once per gamma (one C-level
        lookup and count per value); larger ones are sorted and each of their buckets is counted
        with one bisection to its upper bound. Both find their edges with ``key`` itself, so every
        value lands where ``add`` puts it. Integers only (the payload's microseconds).
        """
        if not values_us:
            return
        lo, hi = min(values_us), max(values_us)
        if lo < 0:
            raise ValueError(f"a latency cannot be negative: {lo}")
        if not set(map(type, values_us)) <= {int}:
            raise TypeError("add_many takes integer microseconds (use add for floats)")
        buckets = self.buckets
        if hi < _TABLE_LIMIT:
            counts: Counter[int | None] = Counter(map(self._table().__getitem__, values_us))
        else:
            counts = Counter(map(self._table().__getitem__, [v for v in values_us if v < _TABLE_LIMIT]))
            self._count_sorted(sorted(v for v in values_us if v >= _TABLE_LIMIT))
        self.zero += counts.pop(None, 0)
        for k, c in counts.items():
            if k is not None:  # popped above; the check tells the type checker
                buckets[k] = buckets.get(k, 0) + c
        self.count += len(values_us)
        self.sum += sum(values_us)
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)

    def _count_sorted(self, vals: list[int]) -> None:
        """Bucket counts of sorted values >= 1: one bisection per bucket (count/sum/min/max are the caller's)."""
        i, n = 0, len(vals)
        buckets = self.buckets
        while i < n:
            k = self.key(vals[i])
            j = bisect_right(vals, self._bucket_upper(k), i)
            buckets[k] = buckets.get(k, 0) + (j - i)
            i = j

    def _table(self) -> list[int | None]:
        """Bucket of every integer below ``_TABLE_LIMIT`` (None for 0), built once per gamma."""
        table = _TABLES.get(self.gamma)
        if table is None:
            table = [None]
            k = self.key(1)
            while len(table) < _TABLE_LIMIT:
                top = min(self._bucket_upper(k), _TABLE_LIMIT - 1)
                table.extend([k] * (top + 1 - len(table)))
                k += 1
            _TABLES[self.gamma] = table
        return table

    def _bucket_upper(self, k: int) -> int:
        """The largest integer v with key(v) == k (the float estimate, corrected with key itself)."""
        v = max(1, math.floor(self.gamma**k))
        while self.key(v + 1) <= k:
            v += 1
        while v > 1 and self.key(v) > k:
            v -= 1
        return v

    def merge(self, other: LatencySketch) -> LatencySketch:
        """Add ``other`` into this sketch (in place; returns self). Exact: counts add."""
        if not isinstance(other, LatencySketch):
            raise TypeError(f"can only merge a LatencySketch, got {type(other).__name__}")
        if other.gamma != self.gamma:
            raise ValueError(f"cannot merge sketches of different gamma ({self.gamma} and {other.gamma})")
        buckets = self.buckets
        get = buckets.get
        for k, c in other.buckets.items():
            buckets[k] = get(k, 0) + c
        self.zero += other.zero
        self.count += other.count
        self.sum += other.sum
        if other.count and other.min is not None and other.max is not None:  # both set once a value is in
            self.min = other.min if self.min is None else min(self.min, other.min)
            self.max = other.max if self.max is None else max(self.max, other.max)
        return self

    def __reduce__(self) -> tuple:
        """Pickle as plain values: decode workers send sketches back in every batch's rollups, and
        the default slot-by-slot state costs the receiving (GIL-bound) collector more."""
        return (_restore, (self.gamma, self.buckets, self.zero, self.count, self.sum, self.min, self.max))

    def copy(self) -> LatencySketch:
        s = LatencySketch(self.gamma)
        return s.merge(self)

    def __add__(self, other: LatencySketch) -> LatencySketch:
        return self.copy().merge(other)

    # --- reading --------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.count

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile (as in docs/metrics.md), within ``relative_error``; None if empty.

        The lowest and highest rank return the exact minimum and maximum.
        """
        if not 0 <= q <= 1:
            raise ValueError(f"q must be within [0, 1], got {q!r}")
        if not self.count or self.min is None or self.max is None:
            return None
        rank = max(1, math.ceil(q * self.count))
        if rank == 1:
            return float(self.min)  # the extremes are kept exactly
        if rank == self.count:
            return float(self.max)
        seen = self.zero
        if rank <= seen:
            return 0.0
        for k in sorted(self.buckets):
            seen += self.buckets[k]
            if rank <= seen:
                estimate = 2 * self.gamma**k / (self.gamma + 1)
                return float(min(max(estimate, self.min), self.max))
        raise AssertionError("bucket counts do not add up to count")  # guarded by from_bytes/validation

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencySketch):
            return NotImplemented
        return (self.gamma, self.zero, self.count, self.sum, self.min, self.max) == (
            other.gamma,
            other.zero,
            other.count,
            other.sum,
            other.min,
            other.max,
        ) and {k: c for k, c in self.buckets.items() if c} == {k: c for k, c in other.buckets.items() if c}

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"LatencySketch(count={self.count}, min={self.min}, max={self.max}, "
            f"buckets={len(self.buckets)}, gamma={self.gamma})"
        )

    # --- serialization --------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Compact form for the store: header, exact figures, then delta-coded buckets."""
        out = bytearray(_MAGIC)
        out.append(_VERSION)
        out += struct.pack(">d", self.gamma)
        for n in (self.zero, self.sum, self.min or 0, self.max or 0):
            _put_uvarint(out, n)
        keys = sorted(k for k, c in self.buckets.items() if c)
        _put_uvarint(out, len(keys))
        prev = None
        for k in keys:
            _put_uvarint(out, _zigzag(k) if prev is None else k - prev)
            _put_uvarint(out, self.buckets[k])
            prev = k
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> LatencySketch:
        """Inverse of ``to_bytes``; ValueError on anything it did not write.

        Why two ways through the buckets: a day's lookup decodes some 16,000 sketches, and
        reading them varint by varint in Python was a good part of its time. In a minute's
        sketch the first key takes two bytes and every count and later delta one (below 128);
        then the byte values *are* the varints, and keys and counts come from slices and
        ``accumulate`` (C loops). Any other body takes the varint loop, which also says exactly
        what is wrong with bad bytes.
        """
        if len(data) < 11 or data[:2] != _MAGIC:
            raise ValueError("not a latency sketch")
        if data[2] != _VERSION:
            raise ValueError(f"latency sketch version {data[2]} is not supported (reads {_VERSION})")
        (gamma,) = _GAMMA.unpack_from(data, 3)
        s = cls(gamma)
        (zero, total, lo, hi, n), pos = _get_uvarints(data, 11, 5)
        body = data[pos:]
        # One-byte body: the first key (zigzag: 2 bytes for any value above 1 ms), then count,
        # delta, count, ... each a single byte.
        if len(body) == 2 * n + 1 and n and body[0] >= 0x80 and max(body[1:]) < 0x80:
            counts, deltas = body[2::2], body[3::2]
            if 0 in deltas:
                raise ValueError("latency sketch buckets are not in increasing order")
            if 0 in counts:
                raise ValueError("latency sketch holds an empty bucket")
            s.buckets = dict(zip(accumulate(deltas, initial=_unzigzag((body[0] & 0x7F) | body[1] << 7)), counts))
            count = zero + sum(counts)
        else:
            count = zero + s._read_buckets(data, pos, n)
        s.zero, s.count, s.sum = zero, count, total
        if count:
            s.min, s.max = lo, hi
        s._check()
        return s

    def _read_buckets(self, data: bytes, pos: int, n: int) -> int:
        """``n`` delta-coded buckets from ``pos`` to the end of ``data``, varint by varint; their total count."""
        key = None
        count = 0
        for _ in range(n):
            (d, c), pos = _get_uvarints(data, pos, 2)
            if key is None:
                key = _unzigzag(d)
            elif d == 0:
                raise ValueError("latency sketch buckets are not in increasing order")
            else:
                key += d
            if c == 0:
                raise ValueError("latency sketch holds an empty bucket")
            self.buckets[key] = c
            count += c
        if pos != len(data):
            raise ValueError(f"latency sketch has {len(data) - pos} trailing bytes")
        return count

    def to_dict(self) -> dict:
        """JSON-friendly form (for the HTTP API and for people)."""
        return {
            "gamma": self.gamma,
            "count": self.count,
            "zero": self.zero,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "buckets": [[k, self.buckets[k]] for k in sorted(self.buckets) if self.buckets[k]],
        }

    @classmethod
    def from_dict(cls, d: dict) -> LatencySketch:
        try:
            s = cls(float(d["gamma"]))
            for k, c in d["buckets"]:
                if not isinstance(k, int) or not isinstance(c, int) or c <= 0 or k in s.buckets:
                    raise ValueError(f"bad bucket {[k, c]!r}")
                s.buckets[k] = c
            s.zero, s.sum, s.min, s.max = int(d["zero"]), int(d["sum"]), d["min"], d["max"]
            s.count = s.zero + sum(s.buckets.values())
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a latency sketch: {exc}") from None
        if d.get("count", s.count) != s.count:
            raise ValueError(f"count {d.get('count')} does not match the buckets ({s.count})")
        s._check()
        return s

    def _check(self) -> None:
        """Figures consistent with the buckets: min and max fall in the first and last bucket."""
        if self.zero < 0 or self.sum < 0:
            raise ValueError("latency sketch has negative figures")
        if not self.count:
            self.min = self.max = None
            if self.sum:
                raise ValueError("empty latency sketch with a non-zero sum")
            return
        if not (isinstance(self.min, int) and isinstance(self.max, int) and 0 <= self.min <= self.max):
            raise ValueError(f"latency sketch min/max invalid: {self.min!r}, {self.max!r}")
        if self.zero:
            min_ok = self.min == 0
        else:
            min_ok = self.min > 0 and self.key(self.min) == min(self.buckets)
        if self.buckets:
            max_ok = self.max > 0 and self.key(self.max) == max(self.buckets)
        else:
            max_ok = self.max == 0
        if not (min_ok and max_ok):
            raise ValueError("latency sketch min/max do not match its lowest/highest bucket")


def _restore(
    gamma: float, buckets: dict[int, int], zero: int, count: int, total: int, lo: int | None, hi: int | None
) -> LatencySketch:
    s = LatencySketch.__new__(LatencySketch)
    s.gamma, s._log_gamma, s.buckets = gamma, math.log(gamma), buckets
    s.zero, s.count, s.sum, s.min, s.max = zero, count, total, lo, hi
    return s


# add_many's lookup table: 2^19 µs (524 ms) covers nearly every RTT; 4 MiB per gamma in use.
_TABLE_LIMIT = 1 << 19
_TABLES: dict[float, list[int | None]] = {}


def _zigzag(n: int) -> int:
    return 2 * n if n >= 0 else -2 * n - 1


def _unzigzag(z: int) -> int:
    return z // 2 if z % 2 == 0 else -(z + 1) // 2


def _put_uvarint(out: bytearray, n: int) -> None:
    if n < 0:
        raise ValueError(f"cannot encode negative {n}")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _get_uvarints(data: bytes, pos: int, k: int) -> tuple[list[int], int]:
    """``k`` varints from ``pos``, and the position after them."""
    out = []
    end = len(data)
    for _ in range(k):
        n = shift = 0
        while True:
            if pos >= end:
                raise ValueError("latency sketch is truncated")
            if shift > 63 * 2:
                raise ValueError("latency sketch varint too long")
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
        out.append(n)
    return out, pos
