"""Retention: raw samples for days, rollups for a year and more, deleted in small steps.

Why two horizons: raw second-level samples are what a ticket needs this week (7 days by default)
and by far the most rows; the per-minute rollups (and incidents) carry the scores, journeys and
triage over any window and are kept long (400 days by default: a year plus a comparison month).

Why small steps: one big DELETE would hold the write lock for as long as it runs and stall
ingest (acks would wait). Each step deletes at most ``chunk`` rows in its own short
transaction, then yields to the event loop, so ingest commits interleave with the cleanup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

__all__ = ["DEFAULT_RAW_DAYS", "DEFAULT_ROLLUP_DAYS", "RetentionResult", "enforce_once", "retention_loop"]

log = logging.getLogger("cxpulse.collector.retention")

DEFAULT_RAW_DAYS = 7.0
DEFAULT_ROLLUP_DAYS = 400.0
CHUNK = 5_000  # rows per delete transaction: a few milliseconds of lock on SQLite
PAUSE_S = 0.05  # between chunks: lets queued ingest commits through
DAY_US = 86_400 * 1_000_000


@dataclass
class RetentionResult:
    raw_deleted: int = 0
    rollups_deleted: int = 0


def _check(raw_days: float, rollup_days: float) -> None:
    if not raw_days > 0 or not rollup_days > 0:
        raise ValueError(f"retention must be positive: raw {raw_days} days, rollups {rollup_days} days")
    if rollup_days < raw_days:
        raise ValueError(f"rollups ({rollup_days} days) must be kept at least as long as raw samples ({raw_days} days)")


async def enforce_once(store, raw_days: float = DEFAULT_RAW_DAYS, rollup_days: float = DEFAULT_ROLLUP_DAYS,
                       now_us: int | None = None, chunk: int = CHUNK, pause_s: float = PAUSE_S) -> RetentionResult:
    """Delete everything past its horizon, chunk by chunk, each chunk in a worker thread."""
    _check(raw_days, rollup_days)
    now_us = now_us if now_us is not None else time.time_ns() // 1000
    out = RetentionResult()
    for attr, fn, days in (("raw_deleted", store.delete_raw_before, raw_days),
                           ("rollups_deleted", store.delete_rollups_before, rollup_days)):
        cutoff = now_us - round(days * DAY_US)
        while True:
            n = await asyncio.to_thread(fn, cutoff, chunk)
            if not n:
                break
            setattr(out, attr, getattr(out, attr) + n)
            await asyncio.sleep(pause_s)
    return out


async def retention_loop(store, raw_days: float = DEFAULT_RAW_DAYS, rollup_days: float = DEFAULT_ROLLUP_DAYS,
                         interval_s: float = 3600.0) -> None:
    """Enforce retention now and then every ``interval_s`` until cancelled.

    Bad horizons fail at once (start-up); a failed run afterwards is logged and retried at the
    next interval, never fatal.
    """
    _check(raw_days, rollup_days)
    while True:
        try:
            r = await enforce_once(store, raw_days, rollup_days)
            if r.raw_deleted or r.rollups_deleted:
                log.info("retention: deleted %d raw rows (older than %g days) and %d rollup rows (older than %g days)",
                         r.raw_deleted, raw_days, r.rollups_deleted, rollup_days)
        except Exception:  # never crash after start-up
            log.exception("retention run failed; retrying in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
