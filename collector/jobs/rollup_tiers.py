"""Settling 15-minute rollups: complete blocks of minute rollups merged into the coarser tier.
Resumable (the store's settled mark) and bounded (``max_blocks`` per run); retention runs it before expiring minutes.
Design notes: docs/storage.md, "Retention by resolution".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..store import rollup as ru
from ..store import tiers

__all__ = ["MAX_BLOCKS", "SETTLE_LAG_US", "WRITE_ROWS", "SettleResult", "settle_once"]

# A block is settled 8 days after it ends: an agent's spool keeps 7 days (agent/spool.py), so the
# minute rollups it merges are final by then. Retention keeps minute rollups until their block
# settled, whatever their horizon says.
SETTLE_LAG_US = 8 * 86_400 * 1_000_000
MAX_BLOCKS = 96 * 7  # a week of blocks per run; a store catching up takes several runs
WRITE_ROWS = 2_000  # 15-minute rollups per write transaction: about 50 ms of lock on SQLite
AGENTS_PER_STEP = 100  # agents merged at a time: their minute rollups of one block held in memory


@dataclass
class SettleResult:
    blocks: int = 0  # blocks written (empty stretches are skipped, not counted)
    rollups: int = 0  # 15-minute rollups written
    settled_us: int = 0  # the settled mark after the run
    done: bool = True  # False: stopped at ``max_blocks`` with more to settle


async def settle_once(
    store,
    now_us: int | None = None,
    lag_us: int = SETTLE_LAG_US,
    max_blocks: int = MAX_BLOCKS,
    pause_s: float = 0.05,
) -> SettleResult:
    """Settle the complete blocks ending ``lag_us`` before now, from the settled mark on.

    Each block, ``AGENTS_PER_STEP`` agents at a time: their minute rollups read (a read
    connection), merged (``rollup.block_rollups``, in a worker thread), written ``WRITE_ROWS`` at
    a time, each in its own short transaction; then the mark is raised past the block. Reads take
    a block only below the minutes' floor, never past the mark, so a half-written block is never
    read. Settling a block again writes the same rows.
    """
    now_us = now_us if now_us is not None else time.time_ns() // 1000
    end = ru.block_of(now_us - lag_us)
    mark = await asyncio.to_thread(store.rollup_mark, tiers.BLOCKS_SETTLED)
    out = SettleResult(settled_us=mark)
    while mark < end:
        if out.blocks >= max_blocks:
            out.done = False
            break
        nxt = await asyncio.to_thread(store.next_rollup_minute, mark)
        start = end if nxt is None else min(end, max(mark, ru.block_of(nxt)))
        if start >= end:  # nothing more before the end: the empty stretch is settled as it is
            mark = await asyncio.to_thread(store.raise_mark, tiers.BLOCKS_SETTLED, end)
            break
        until = start + ru.BLOCK_US
        if start < await asyncio.to_thread(store.rollup_mark, tiers.MINUTES_FLOOR):
            raise RuntimeError(f"the minutes' floor passed the settled mark {mark}: not settling from partial minutes")
        agents = [a.key for a in await asyncio.to_thread(store.all_agents)]
        for i in range(0, len(agents), AGENTS_PER_STEP):  # the block is not read before its mark: any split
            blocks = await asyncio.to_thread(_merged, store, start, until, agents[i : i + AGENTS_PER_STEP])
            for j in range(0, len(blocks), WRITE_ROWS):
                await asyncio.to_thread(store.write_blocks, blocks[j : j + WRITE_ROWS])
                if pause_s:
                    await asyncio.sleep(pause_s)
            out.rollups += len(blocks)
        await asyncio.to_thread(store.raise_mark, tiers.BLOCKS_SETTLED, until)
        out.blocks += 1
        mark = until
        if pause_s:
            await asyncio.sleep(pause_s)
    out.settled_us = mark
    return out


def _merged(store, since_us: int, until_us: int, agents: list[int]) -> list[ru.Rollup]:
    """The 15-minute rollups of these agents' block, read one agent at a time (an index range)."""
    out: list[ru.Rollup] = []
    for a in agents:
        out += ru.block_rollups(r for r in store.rollups(since_us, until_us, a) if r.span_us == ru.MINUTE_US)
    return out
