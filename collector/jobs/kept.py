"""The kept-scores loop: every minute, the minutes (and 15-minute blocks) that just settled, kept.
So the helpdesk's first view of the day reads kept scores instead of scoring; what to keep and how is ``score.kept``.
A failed run is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..score.kept import BLOCK_US, keep_blocks, keep_recent
from ..store import rollup as ru
from .kept_groups import keep_groups_step

__all__ = ["kept_scores_loop"]

log = logging.getLogger("cxpulse.collector.score")


async def kept_scores_loop(
    store, interval_s: float = 60.0, settle_s: float = 60.0, minutes: int = 2, now_us: Callable[[], int] | None = None
) -> None:
    """Every ``interval_s``, keep the scores of the last ``minutes`` settled minutes of every agent.

    A minute is taken as settled ``settle_s`` after it ends (agents send every 30 s); one that
    changes later is rescored by the next reader (its digest no longer matches). The work runs in
    a thread; a failed run is logged, never fatal. Each 15-minute block that settles is kept
    merged for every agent (``keep_blocks``) once, and with the block that ends an hour the hour.
    """
    last_block = None
    while True:
        try:
            now = now_us() if now_us is not None else time.time_ns() // 1000
            until = ru.minute_of(now - int(settle_s * 1e6))
            t0 = time.perf_counter()
            wrote, hits = await asyncio.to_thread(
                keep_recent, store, until - minutes * ru.MINUTE_US, until, now_us=now
            )  # ``now``: the last of these minutes settled, the one before is kept as trusted (score/kept.py)
            block = until - until % BLOCK_US - BLOCK_US  # the latest block that has settled
            blocks = 0
            if block != last_block:
                blocks = await asyncio.to_thread(keep_blocks, store, block)
                last_block = block
            await asyncio.to_thread(keep_groups_step, store, until)  # "is it just me?" rows (jobs/kept_groups.py)
            log.debug(
                "kept %d minute score(s) (%d already kept) and %d block and hour merge(s) in %.2f s",
                wrote,
                hits,
                blocks,
                time.perf_counter() - t0,
            )
        except Exception:
            log.exception("keeping minute scores failed")
        await asyncio.sleep(interval_s)
