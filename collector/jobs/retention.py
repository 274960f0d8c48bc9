"""Retention: raw samples for days (a horizon per data kind), rollups for a year, deleted in small steps.

Each step is one store call deleting at most ``chunk`` rows in its own short transaction, so
ingest commits interleave with the cleanup (docs/storage.md, "Retention").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..store.types import RAW_TABLES

__all__ = [
    "DEFAULT_RAW_DAYS",
    "DEFAULT_ROLLUP_DAYS",
    "RAW_KINDS",
    "RetentionResult",
    "enforce_once",
    "raw_horizons",
    "retention_loop",
]

log = logging.getLogger("cxpulse.collector.retention")  # the name operators already filter on

DEFAULT_RAW_DAYS = 7.0
DEFAULT_ROLLUP_DAYS = 400.0
CHUNK = 5_000  # rows per delete transaction: a few milliseconds of lock on SQLite
PAUSE_S = 0.05  # between chunks: lets queued ingest commits through
DAY_US = 86_400 * 1_000_000
# Raw data kinds with a horizon each: the sample kinds of the payload, then events and path snapshots.
RAW_KINDS = tuple(RAW_TABLES)


@dataclass
class RetentionResult:
    raw_deleted: int = 0
    rollups_deleted: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def raw_horizons(raw_days: float | Mapping[str, float]) -> dict[str, float]:
    """Days per kind: one number for all, or a mapping (kinds it leaves out get the default)."""
    if isinstance(raw_days, Mapping):
        unknown = sorted(set(raw_days) - set(RAW_KINDS))
        if unknown:
            raise ValueError(f"retention: unknown data kind {unknown[0]!r} (kinds: {', '.join(RAW_KINDS)})")
        return {k: float(raw_days.get(k, DEFAULT_RAW_DAYS)) for k in RAW_KINDS}
    return {k: float(raw_days) for k in RAW_KINDS}


def _check(raw_days: float | Mapping[str, float], rollup_days: float) -> dict[str, float]:
    days = raw_horizons(raw_days)
    if not all(d > 0 for d in days.values()) or not rollup_days > 0:
        raise ValueError(f"retention must be positive: raw {days} days, rollups {rollup_days} days")
    longest = max(days.values())
    if rollup_days < longest:
        raise ValueError(f"rollups ({rollup_days} days) must be kept at least as long as raw samples ({longest} days)")
    return days


async def enforce_once(
    store,
    raw_days: float | Mapping[str, float] = DEFAULT_RAW_DAYS,
    rollup_days: float = DEFAULT_ROLLUP_DAYS,
    now_us: int | None = None,
    chunk: int = CHUNK,
    pause_s: float = PAUSE_S,
) -> RetentionResult:
    """Delete everything past its horizon, kind by kind and chunk by chunk, each chunk in a worker thread."""
    days = _check(raw_days, rollup_days)
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
    out.rollups_deleted = await drain(store.delete_rollups_before, now_us - round(rollup_days * DAY_US))
    return out


async def retention_loop(
    store,
    raw_days: float | Mapping[str, float] = DEFAULT_RAW_DAYS,
    rollup_days: float = DEFAULT_ROLLUP_DAYS,
    interval_s: float = 3600.0,
    overrides: Callable[[], tuple[Mapping[str, float], float | None]] | None = None,
) -> None:
    """Enforce retention now and then every ``interval_s`` until cancelled.

    ``overrides`` (the central config's ``[retention]``) is asked before each run: the kinds and
    the rollup horizon it names replace the flags'. Bad horizons fail at once (start-up); a failed
    run afterwards (or a bad override) is logged and retried at the next interval, never fatal.
    """
    _check(raw_days, rollup_days)
    while True:
        try:
            raw, rollups = raw_horizons(raw_days), rollup_days
            if overrides is not None:
                kinds, rollup_override = overrides()
                raw.update(kinds)
                rollups = rollup_override or rollups
            r = await enforce_once(store, raw, rollups)
            if r.raw_deleted or r.rollups_deleted:
                log.info(
                    "retention: deleted %d raw rows (%s) and %d rollup rows (older than %g days)",
                    r.raw_deleted,
                    ", ".join(f"{k} {n} past {raw[k]:g} d" for k, n in r.by_kind.items() if n)
                    or f"older than {raw['rtt']:g} days",
                    r.rollups_deleted,
                    rollups,
                )
        except Exception:  # never crash after start-up
            log.exception("retention run failed; retrying in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
