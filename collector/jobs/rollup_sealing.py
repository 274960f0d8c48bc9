"""Sealing rollups: each agent-hour of minute rollups (and kept minute scores) a day old, and each
agent-day of settled 15-minute ones (and kept block merges), becomes one deflated row
(store/sealed.py), in short store transactions. Design notes: docs/storage.md, "Sealed rollups".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..store import tiers
from ..store.sealed import KEPT, SEAL_AFTER_US
from .raw_compaction import step_in_thread

__all__ = ["SEAL_ROWS", "SealResult", "rollup_sealing_loop", "seal_once"]

log = logging.getLogger("cxpulse.collector.sealing")

# Minute rollups per step: ~60 desks' hours, tens of ms of write lock beside ingest (bench.sealing).
SEAL_ROWS = 5_000
MAX_STEPS = 400  # steps per run (~2 M rows: a 2,000-desk hour is ~1.4 M) before it logs and goes on
PAUSE_S = 0.05  # between steps: queued ingest commits go first
INTERVAL_S = 600.0  # between runs once nothing is left to seal: an hour becomes due once an hour
FIRST_DELAY_S = 120.0  # after start: a restarted collector first takes its agents back; nothing here is urgent


@dataclass
class SealResult:
    rows: int = 0  # minute rollups moved into sealed hours
    blocks: int = 0  # 15-minute rollups moved into sealed days
    kept: int = 0  # kept minute scores and block merges moved into sealed hours and days
    steps: int = 0
    seconds: float = 0.0
    done: bool = False  # True: nothing old enough was left


async def seal_once(
    store,
    now_us: int | None = None,
    after_us: int = SEAL_AFTER_US,
    max_rows: int = SEAL_ROWS,
    max_steps: int = MAX_STEPS,
    pause_s: float = PAUSE_S,
) -> SealResult:
    """Seal every hour of minute rollups that ended ``after_us`` before now, then every day of
    15-minute rollups below the settled mark, then each agent's kept scores and merges of spans that
    ended ``after_us`` before now; step by step, oldest first."""
    before = (now_us if now_us is not None else time.time_ns() // 1000) - after_us
    out = SealResult()
    t0 = time.perf_counter()
    for tier in (tiers.MINUTES, tiers.BLOCKS):
        if tier == tiers.BLOCKS:  # settling writes only at its mark: the days below are complete
            before = await asyncio.to_thread(store.rollup_mark, tiers.BLOCKS_SETTLED)
        while True:
            if out.steps >= max_steps:
                out.seconds = time.perf_counter() - t0
                return out
            n = await step_in_thread(store.seal_rollups, before, max_rows, tier)
            out.steps += 1
            if tier == tiers.MINUTES:
                out.rows += n
            else:
                out.blocks += n
            if not n:
                break
            if pause_s:
                await asyncio.sleep(pause_s)
    before = (now_us if now_us is not None else time.time_ns() // 1000) - after_us
    agents = [a.key for a in await asyncio.to_thread(store.all_agents)]
    for table in KEPT:  # per agent: the kept tables' key leads with it
        for agent in agents:
            n = max_rows
            while n >= max_rows:  # an agent found with nothing old is one index seek, not a step
                if out.steps >= max_steps:
                    out.seconds = time.perf_counter() - t0
                    return out
                n = await step_in_thread(store.seal_kept, table, agent, before, max_rows)
                out.kept += n
                if n:
                    out.steps += 1
                    if pause_s:
                        await asyncio.sleep(pause_s)
    out.done = True
    out.seconds = time.perf_counter() - t0
    return out


async def rollup_sealing_loop(
    store,
    interval_s: float = INTERVAL_S,
    now_us: Callable[[], int] | None = None,
    first_delay_s: float = FIRST_DELAY_S,
) -> None:
    """Seal ``first_delay_s`` after start, then every ``interval_s`` (at once again while a run stopped
    at its bound: a store upgraded with weeks of rows seals them in the background). Failures are
    logged only."""
    await asyncio.sleep(first_delay_s)
    while True:
        wait = interval_s
        try:
            r = await seal_once(store, now_us() if now_us is not None else None)
            if not r.done:
                wait = 0.0
            if r.rows or r.blocks or r.kept:
                log.info(
                    "sealed %d minute rollups, %d 15-minute ones and %d kept scores and merges in %.1f s%s",
                    r.rows,
                    r.blocks,
                    r.kept,
                    r.seconds,
                    "" if r.done else " (more to do)",
                )
        except Exception:  # never crash after start-up
            log.exception("sealing minute rollups failed; retrying in %.0f s", interval_s)
            wait = interval_s
        await asyncio.sleep(wait)
