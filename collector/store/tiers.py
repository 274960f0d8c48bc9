"""Rollup tiers: minute rollups, and 15-minute ones settled from them that outlive them.
Pure: the marks' names and which tier each part of a window reads from (docs/storage.md,
"Retention by resolution"); the stores run the reads.
"""

from __future__ import annotations

from collections.abc import Callable

from . import rollup as ru

__all__ = ["BLOCKS", "BLOCKS_SETTLED", "MINUTES", "MINUTES_FLOOR", "tiered"]

MINUTES, BLOCKS = "rollups", "rollups_15m"  # the tables
# Marks (one row each in ``rollup_marks``, only ever raised): every 15-minute block below
# BLOCKS_SETTLED is settled; below MINUTES_FLOOR minute rollups may be gone (retention raises it
# before it deletes, never past BLOCKS_SETTLED), so reads take blocks there.
BLOCKS_SETTLED, MINUTES_FLOOR = "blocks_settled", "minutes_floor"

Read = Callable[[str, int, int], list[tuple]]  # (table, since, until) -> (agent, minute, kind, target, hop, data)


def tiered(since_us: int, until_us: int, floor_us: int, read: Read) -> list[ru.Rollup]:
    """Rollups of [since, until) at the finest resolution kept: minutes from the floor on, the
    15-minute blocks overlapping the window before it. Ordered by agent, start, kind, target."""
    out = []
    if since_us < floor_us:
        for a, m, k, t, h, d in read(BLOCKS, ru.block_of(since_us), min(until_us, floor_us)):
            out.append(ru.Rollup(a, m, k, t, h, None, bytes(d), span_us=ru.BLOCK_US))
    if until_us > floor_us:
        blocks = len(out)
        for a, m, k, t, h, d in read(MINUTES, max(since_us, floor_us), until_us):
            out.append(ru.Rollup(a, m, k, t, h, None, bytes(d)))
        if blocks and len(out) > blocks:
            out.sort(key=lambda r: r.key)
    return out
