"""Sealed rollups: an agent-hour of minute rollups (or of kept minute scores), an agent-day of
15-minute ones (or of kept block merges), as one deflated row (issue 19). Rows move with their bytes
unchanged, so answers and kept digests stay the same; pure packing here, the stores run the SQL.
Design: docs/storage.md, "Sealed rollups".
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgpack

from . import tiers

__all__ = [
    "BLOCK_DAYS",
    "FORMAT",
    "KEPT",
    "MINUTE_HOURS",
    "SEAL_AFTER_US",
    "TIERS",
    "KeptTier",
    "SealedRow",
    "SealedTier",
    "pack",
]

FORMAT = 1
MINUTE_US = 60_000_000
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
# Minute rollups are sealed once their hour ended this long ago. A batch for a sealed hour (a desk's
# spool replaying a day late) unseals that agent-hour in its commit first, so a late sample costs a
# move, not a wrong answer; a day keeps that rare while the 34 older days shrink ~3.7x.
SEAL_AFTER_US = DAY_US

# (minute_us, kind, target, hop, n, data): a rollup row without its agent.
SealedRow = tuple[int, str, str, int, int, bytes]


@dataclass(frozen=True)
class SealedTier:
    """Where one rollup tier's rows go when sealed: ``table`` (agent, start_us, data), one row per
    agent and ``span_us``. ``mark`` (in ``rollup_marks``): no span at or above it is sealed, so a
    write whose minutes all lie above it (every live batch) skips the sealed-row check."""

    rows: str  # the tier's row table (store/tiers.py)
    table: str
    span_us: int
    mark: str

    def start_of(self, ts_us: int) -> int:
        return ts_us - ts_us % self.span_us

    def touched(self, lo_us: int, hi_us: int, below_us: int) -> list[int]:
        """The spans of minutes [lo, hi] (inclusive) that lie below the mark: the only ones a write
        may find sealed."""
        return list(range(self.start_of(lo_us), min(hi_us + 1, below_us), self.span_us))

    def pack(self, start_us: int, rows: Iterable[SealedRow]) -> bytes:
        return pack(start_us, self.span_us, rows)


MINUTE_HOURS = SealedTier(tiers.MINUTES, "rollup_hours", HOUR_US, "minutes_sealed")
# 15-minute rollups are written only by settling (8 days on); a day is sealed once settling passed it.
BLOCK_DAYS = SealedTier(tiers.BLOCKS, "block_days", DAY_US, "blocks_sealed")
TIERS = {t.rows: t for t in (MINUTE_HOURS, BLOCK_DAYS)}


def pack(start_us: int, span_us: int, rows: Iterable[tuple]) -> bytes:
    """One agent-span's rows, each (minute_us, *rest), as FORMAT byte + zlib (with its Adler-32 check)
    of a msgpack list, minutes as offsets in the span; sorted as the tables order them."""
    body = []
    for m, *rest in sorted(rows, key=lambda r: r[:3]):
        if not start_us <= m < start_us + span_us:
            raise ValueError(f"minute {m} is not in the span starting {start_us}")
        body.append(((m - start_us) // MINUTE_US, *(bytes(x) if isinstance(x, memoryview) else x for x in rest)))
    return bytes((FORMAT,)) + zlib.compress(msgpack.packb(body, use_bin_type=True), 6)


def _body(start_us: int, blob: bytes) -> tuple:
    """The msgpack list ``pack`` wrote (minutes as offsets); ValueError for another format or damage."""
    blob = bytes(blob)
    if not blob or blob[0] != FORMAT:
        raise ValueError(f"sealed rows of format {blob[:1].hex() or 'none'}, this collector reads {FORMAT}")
    try:
        return msgpack.unpackb(zlib.decompress(blob[1:]), raw=False, use_list=False)
    except (zlib.error, ValueError, msgpack.UnpackException) as exc:
        raise ValueError(f"damaged sealed rows of the span starting {start_us}: {exc}") from None


def unpack(start_us: int, blob: bytes) -> list[tuple]:
    """The rows ``pack`` was given, sorted."""
    return [(start_us + off * MINUTE_US, *rest) for off, *rest in _body(start_us, blob)]


@dataclass(frozen=True)
class KeptTier:
    """Where the kept scores or merges of ``rows`` (score/kept.py's caches, (agent, minute_us,
    digest, data)) go when sealed: ``table`` (agent, start_us, data), one row per agent and span.
    A cache needs no mark: a row written later stays a row and wins over the sealed copy."""

    rows: str
    table: str
    span_us: int

    def start_of(self, ts_us: int) -> int:
        return ts_us - ts_us % self.span_us


KEPT = {
    "minute_scores": KeptTier("minute_scores", "kept_score_hours", HOUR_US),
    "block_merges": KeptTier("block_merges", "kept_merge_days", DAY_US),
    "hour_merges": KeptTier("hour_merges", "kept_hour_merge_days", DAY_US),
}


def kept_in(
    sealed_rows: Iterable[tuple[int, int, bytes]], lo_us: int, hi_us: int
) -> dict[tuple[int, int], tuple[bytes, bytes]]:
    """(agent, minute) -> (digest, data) of sealed (agent, start, blob) rows within [lo, hi)."""
    return {
        (agent, m): (digest, data)
        for agent, start, blob in sealed_rows
        for m, digest, data in unpack(start, blob)
        if lo_us <= m < hi_us
    }


def merge_rows(old: Sequence[SealedRow], new: Sequence[SealedRow]) -> list[SealedRow]:
    """A sealed span and the table rows of the same agent-span (a step that sealed part of it before):
    keys are in one place only, so this is a union; a key in both keeps the table's (newer) row."""
    by_key = {(r[0], r[1], r[2]): r for r in old}
    by_key.update({(r[0], r[1], r[2]): r for r in new})
    return [by_key[k] for k in sorted(by_key)]


def in_key_order(rows: list, more: list) -> list:
    """Table rows and sealed ones (``rows_in``), each already in (agent, minute, kind, target) order,
    as one list in that order."""
    if not more or not rows:
        return more or rows
    return list(heapq.merge(rows, more, key=lambda r: r[:4]))


def rows_in(
    sealed_rows: Iterable[tuple[int, int, bytes]], lo_us: int, hi_us: int, kinds: Iterable[str] | None
) -> list[tuple]:
    """(agent, minute, kind, target, hop, data) of sealed (agent, start, blob) rows, within [lo, hi)
    and of ``kinds``: what the row table's read returns."""
    wanted = None if kinds is None else set(kinds)
    out = []
    for agent, start, blob in sealed_rows:
        first, last = -((start - lo_us) // MINUTE_US), -((start - hi_us) // MINUTE_US)  # offsets [first, last)
        for off, kind, target, hop, _n, data in _body(start, blob):
            if first <= off < last and (wanted is None or kind in wanted):
                out.append((agent, start + off * MINUTE_US, kind, target, hop, data))
    return out


def first_minute(sealed_rows: Iterable[tuple[int, bytes]], since_us: int) -> int | None:
    """The first minute at or after ``since`` in sealed (start, blob) rows given in start order."""
    for start, blob in sealed_rows:
        m = min((r[0] for r in unpack(start, blob) if r[0] >= since_us), default=None)
        if m is not None:
            return m
    return None
