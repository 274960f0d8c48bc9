"""Sealed minute rollups: an agent-hour's minute rollup rows kept as one deflated row (issue 19).
Sealing moves rows with their bytes unchanged, so answers and kept digests stay the same; pure
packing and merging here, the stores run the SQL. Design: docs/storage.md, "Sealed hours".
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import msgpack

from .raw import HOUR_US, hour_of

__all__ = ["FORMAT", "MINUTES_SEALED", "SEAL_AFTER_US", "SealedRow", "hours_touched", "merge_rows", "pack", "unpack"]

FORMAT = 1
MINUTE_US = 60_000_000
# Hours that ended this long ago are sealed. A batch for a sealed hour (a desk's spool replaying a
# day late) unseals that agent-hour in its commit first, so a late sample costs a move, not a wrong
# answer; a day keeps that rare while the 34 older days of minute rollups shrink ~3.7x.
SEAL_AFTER_US = 86_400 * 1_000_000
# The mark (``rollup_marks``): no agent-hour at or above it is sealed, so a commit whose minutes all
# lie at or above it (every live batch) skips the sealed-row check.
MINUTES_SEALED = "minutes_sealed"

# (minute_us, kind, target, hop, n, data): a ``rollups`` row without its agent.
SealedRow = tuple[int, str, str, int, int, bytes]


def pack(hour_us: int, rows: Iterable[SealedRow]) -> bytes:
    """One agent-hour's rows as FORMAT byte + zlib (with its Adler-32 check) of a msgpack list,
    minutes as offsets in the hour; rows sorted by (minute, kind, target) as the table orders them."""
    body = []
    for m, kind, target, hop, n, data in sorted(rows, key=lambda r: (r[0], r[1], r[2])):
        if not hour_us <= m < hour_us + HOUR_US:
            raise ValueError(f"minute {m} is not in the hour starting {hour_us}")
        body.append(((m - hour_us) // MINUTE_US, kind, target, hop, n, bytes(data)))
    return bytes((FORMAT,)) + zlib.compress(msgpack.packb(body, use_bin_type=True), 6)


def unpack(hour_us: int, blob: bytes) -> list[SealedRow]:
    """The rows ``pack`` was given, sorted; ValueError for a blob of another format or damaged."""
    blob = bytes(blob)
    if not blob or blob[0] != FORMAT:
        raise ValueError(f"sealed rollups of format {blob[:1].hex() or 'none'}, this collector reads {FORMAT}")
    try:
        body = msgpack.unpackb(zlib.decompress(blob[1:]), raw=False, use_list=False)
    except (zlib.error, ValueError, msgpack.UnpackException) as exc:
        raise ValueError(f"damaged sealed rollups of the hour {hour_us}: {exc}") from None
    return [(hour_us + off * MINUTE_US, kind, target, hop, n, data) for off, kind, target, hop, n, data in body]


def merge_rows(old: Sequence[SealedRow], new: Sequence[SealedRow]) -> list[SealedRow]:
    """A sealed hour and the table rows of the same agent-hour (a step that sealed part of it before):
    keys are in one place only, so this is a union; a key in both keeps the table's (newer) row."""
    by_key = {(r[0], r[1], r[2]): r for r in old}
    by_key.update({(r[0], r[1], r[2]): r for r in new})
    return [by_key[k] for k in sorted(by_key)]


def hours_touched(lo_us: int, hi_us: int, below_us: int) -> list[int]:
    """The hours of minutes [lo, hi] (inclusive) that lie below the mark ``below_us``: the only
    ones a commit may find sealed."""
    return list(range(hour_of(lo_us), min(hi_us + 1, below_us), HOUR_US))
