"""Retention by resolution: raw samples for days (per data kind), minute rollups for weeks, 15-minute ones for a year.
Deleted in small steps (at most ``chunk`` rows per short transaction), so ingest commits interleave with the cleanup.
Design notes: docs/storage.md, "Retention by resolution".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..store import rollup as ru
from ..store import tiers
from ..store.types import RAW_TABLES
from .rollup_tiers import settle_once

__all__ = [
    "DEFAULT_MINUTE_DAYS",
    "DEFAULT_RAW_DAYS",
    "DEFAULT_ROLLUP_DAYS",
    "RAW_KINDS",
    "RetentionResult",
    "enforce_once",
    "minute_horizon",
    "raw_horizons",
    "retention_loop",
]

log = logging.getLogger("cxpulse.collector.retention")  # the name operators already filter on

DEFAULT_RAW_DAYS = 7.0
DEFAULT_MINUTE_DAYS = 35.0  # minute rollups: a month of per-minute scores and timelines, plus a few days
DEFAULT_ROLLUP_DAYS = 400.0  # 15-minute rollups (and closed incidents): a year plus a comparison month
CHUNK = 5_000  # rows per delete transaction: a few milliseconds of lock on SQLite
PAUSE_S = 0.05  # between chunks: lets queued ingest commits through
DAY_US = 86_400 * 1_000_000
# Raw data kinds with a horizon each: the sample kinds of the payload, then events and path snapshots.
RAW_KINDS = tuple(RAW_TABLES)


@dataclass
class RetentionResult:
    raw_deleted: int = 0
    rollups_deleted: int = 0  # minute rollups (and kept minute scores)
    blocks_deleted: int = 0  # 15-minute rollups (and closed incidents)
    by_kind: dict[str, int] = field(default_factory=dict)
    blocks_settled: int = 0
    settled_all: bool = True  # False: settling stopped at its bound with more to do


def raw_horizons(raw_days: float | Mapping[str, float]) -> dict[str, float]:
    """Days per kind: one number for all, or a mapping (kinds it leaves out get the default)."""
    if isinstance(raw_days, Mapping):
        unknown = sorted(set(raw_days) - set(RAW_KINDS))
        if unknown:
            raise ValueError(f"retention: unknown data kind {unknown[0]!r} (kinds: {', '.join(RAW_KINDS)})")
        return {k: float(raw_days.get(k, DEFAULT_RAW_DAYS)) for k in RAW_KINDS}
    return {k: float(raw_days) for k in RAW_KINDS}


def minute_horizon(rollup_days: float, minute_days: float | None = None) -> float:
    """Days of minute rollups: as given, else the default but never past the 15-minute rollups'
    (a ``--rollup-days 30`` of before keeps working: both tiers then last 30 days)."""
    return float(minute_days) if minute_days is not None else min(DEFAULT_MINUTE_DAYS, float(rollup_days))


def _check(
    raw_days: float | Mapping[str, float], rollup_days: float, minute_days: float | None = None
) -> tuple[dict[str, float], float]:
    days = raw_horizons(raw_days)
    minutes = minute_horizon(rollup_days, minute_days)
    if not all(d > 0 for d in days.values()) or not rollup_days > 0 or not minutes > 0:
        raise ValueError(f"retention must be positive: raw {days} days, rollups {minutes} / {rollup_days} days")
    longest = max(days.values())
    if minute_days is None and rollup_days < longest:
        raise ValueError(f"rollups ({rollup_days} days) must be kept at least as long as raw samples ({longest} days)")
    if minutes < longest:
        raise ValueError(
            f"minute rollups ({minutes:g} days) must be kept at least as long as raw samples ({longest:g} days)"
        )
    if rollup_days < minutes:
        raise ValueError(
            f"15-minute rollups ({rollup_days:g} days) must be kept at least as long as minute rollups "
            f"({minutes:g} days)"
        )
    return days, minutes


async def enforce_once(
    store,
    raw_days: float | Mapping[str, float] = DEFAULT_RAW_DAYS,
    rollup_days: float = DEFAULT_ROLLUP_DAYS,
    now_us: int | None = None,
    chunk: int = CHUNK,
    pause_s: float = PAUSE_S,
    minute_days: float | None = None,
) -> RetentionResult:
    """Settle 15-minute rollups (one bounded run), then delete everything past its horizon, kind by
    kind and chunk by chunk, each chunk in a worker thread.

    Minute rollups go only below the settled mark (a block is merged before its minutes expire):
    the minutes' floor is raised first, so reads take the 15-minute rollups there from then on.
    """
    days, minutes = _check(raw_days, rollup_days, minute_days)
    now_us = now_us if now_us is not None else time.time_ns() // 1000
    out = RetentionResult()

    async def drain(fn, cutoff: int) -> int:
        total = 0
        while True:
            n = await asyncio.to_thread(fn, cutoff, chunk)
            if not n:
                return total
            total += n
            await asyncio.sleep(pause_s)

    settled = await settle_once(store, now_us, pause_s=pause_s)
    out.blocks_settled, out.settled_all = settled.blocks, settled.done
    if len(set(days.values())) == 1:  # one horizon: the store's own sweep over every raw table
        out.raw_deleted = await drain(store.delete_raw_before, now_us - round(days["rtt"] * DAY_US))
    else:
        for kind, d in days.items():
            n = await drain(
                lambda cutoff, limit, kind=kind: store.delete_kind_before(kind, cutoff, limit),
                now_us - round(d * DAY_US),
            )
            out.by_kind[kind] = n
            out.raw_deleted += n
    floor = ru.block_of(min(now_us - round(minutes * DAY_US), settled.settled_us))
    if floor > 0:
        floor = await asyncio.to_thread(store.raise_mark, tiers.MINUTES_FLOOR, floor)
        out.rollups_deleted = await drain(store.delete_rollups_before, floor)
    out.blocks_deleted = await drain(store.delete_blocks_before, now_us - round(rollup_days * DAY_US))
    return out


async def retention_loop(
    store,
    raw_days: float | Mapping[str, float] = DEFAULT_RAW_DAYS,
    rollup_days: float = DEFAULT_ROLLUP_DAYS,
    interval_s: float = 3600.0,
    overrides: Callable[[], tuple[Mapping[str, float], float | None, float | None]] | None = None,
    minute_days: float | None = None,
    catch_up_s: float = 60.0,
) -> None:
    """Enforce retention now and then every ``interval_s`` (``catch_up_s`` while settling has
    blocks left: a store upgraded with months of minute rollups) until cancelled.

    ``overrides`` (the central config's ``[retention]``) is asked before each run: (kinds, rollup
    days, minute rollup days), what it names replaces the flags'. Bad horizons fail at once
    (start-up); a failed run afterwards (or a bad override) is logged and retried at the next
    interval, never fatal.
    """
    _check(raw_days, rollup_days, minute_days)
    while True:
        wait = interval_s
        try:
            raw, rollups, minutes = raw_horizons(raw_days), rollup_days, minute_days
            if overrides is not None:
                kinds, rollup_override, minute_override = overrides()
                raw.update(kinds)
                rollups = rollup_override or rollups
                minutes = minute_override or minutes
            r = await enforce_once(store, raw, rollups, minute_days=minutes)
            if not r.settled_all:
                wait = min(interval_s, catch_up_s)
            if r.raw_deleted or r.rollups_deleted or r.blocks_deleted:
                log.info(
                    "retention: deleted %d raw rows (%s), %d minute rollups (past %g days), %d 15-minute "
                    "rollups (past %g days)",
                    r.raw_deleted,
                    ", ".join(f"{k} {n} past {raw[k]:g} d" for k, n in r.by_kind.items() if n)
                    or f"older than {raw['rtt']:g} days",
                    r.rollups_deleted,
                    minute_horizon(rollups, minutes),
                    r.blocks_deleted,
                    rollups,
                )
        except Exception:  # never crash after start-up
            log.exception("retention run failed; retrying in %.0f s", wait)
        await asyncio.sleep(wait)
