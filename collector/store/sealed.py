"""Sealed rollups: an agent-hour of minute rollups, or an agent-day of 15-minute ones, kept as one
deflated row (issue 19). Sealing moves rows with their bytes unchanged, so answers and kept digests
stay the same; pure packing here, the stores run the SQL. Design: docs/storage.md, "Sealed rollups".
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgpack

from . import tiers

__all__ = ["BLOCK_DAYS", "FORMAT", "MINUTE_HOURS", "SEAL_AFTER_US", "TIERS", "SealedRow", "SealedTier", "pack"]

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


def pack(start_us: int, span_us: int, rows: Iterable[SealedRow]) -> bytes:
    """One agent-span's rows as FORMAT byte + zlib (with its Adler-32 check) of a msgpack list,
    minutes as offsets in the span; rows sorted by (minute, kind, target) as the table orders them."""
    body = []
    for m, kind, target, hop, n, data in sorted(rows, key=lambda r: (r[0], r[1], r[2])):
        if not start_us <= m < start_us + span_us:
            raise ValueError(f"minute {m} is not in the span starting {start_us}")
        body.append(((m - start_us) // MINUTE_US, kind, target, hop, n, bytes(data)))
    return bytes((FORMAT,)) + zlib.compress(msgpack.packb(body, use_bin_type=True), 6)


def unpack(start_us: int, blob: bytes) -> list[SealedRow]:
    """The rows ``pack`` was given, sorted; ValueError for a blob of another format or damaged."""
    blob = bytes(blob)
    if not blob or blob[0] != FORMAT:
        raise ValueError(f"sealed rollups of format {blob[:1].hex() or 'none'}, this collector reads {FORMAT}")
    try:
        body = msgpack.unpackb(zlib.decompress(blob[1:]), raw=False, use_list=False)
    except (zlib.error, ValueError, msgpack.UnpackException) as exc:
        raise ValueError(f"damaged sealed rollups of the span starting {start_us}: {exc}") from None
    return [(start_us + off * MINUTE_US, kind, target, hop, n, data) for off, kind, target, hop, n, data in body]


def merge_rows(old: Sequence[SealedRow], new: Sequence[SealedRow]) -> list[SealedRow]:
    """A sealed span and the table rows of the same agent-span (a step that sealed part of it before):
    keys are in one place only, so this is a union; a key in both keeps the table's (newer) row."""
    by_key = {(r[0], r[1], r[2]): r for r in old}
    by_key.update({(r[0], r[1], r[2]): r for r in new})
    return [by_key[k] for k in sorted(by_key)]


def rows_in(
    sealed_rows: Iterable[tuple[int, int, bytes]], lo_us: int, hi_us: int, kinds: Iterable[str] | None
) -> list[tuple]:
    """(agent, minute, kind, target, hop, data) of sealed (agent, start, blob) rows, within [lo, hi)
    and of ``kinds``: what the row table's read returns."""
    wanted = None if kinds is None else set(kinds)
    return [
        (agent, m, kind, target, hop, data)
        for agent, start, blob in sealed_rows
        for m, kind, target, hop, _n, data in unpack(start, blob)
        if lo_us <= m < hi_us and (wanted is None or kind in wanted)
    ]


def first_minute(sealed_rows: Iterable[tuple[int, bytes]], since_us: int) -> int | None:
    """The first minute at or after ``since`` in sealed (start, blob) rows given in start order."""
    for start, blob in sealed_rows:
        m = min((r[0] for r in unpack(start, blob) if r[0] >= since_us), default=None)
        if m is not None:
            return m
    return None
