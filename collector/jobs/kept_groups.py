"""The kept "is it just me?" rows: kept as a minute settles, rebuilt when a late batch changed them, old ones deleted.
Called once per run of ``jobs.kept.kept_scores_loop``, after the minute scores it reads; a row is ``score.kept_groups``.
Refresh bounds: docs/collector-internals.md, "collector/lookup/others.py".
"""

from __future__ import annotations

import logging
import time
import weakref

from ..score import kept_groups as kg
from ..store import rollup as ru
from ..store import tiers
from ..store.kept_groups import table_for

__all__ = ["RECENT_MINUTES", "RECHECK_HOURS", "RECHECK_PER_RUN", "keep_groups", "keep_groups_step"]

log = logging.getLogger("cxpulse.collector.score")

RECENT_MINUTES = 5  # the newest settled minutes: kept, and checked again every run
RECHECK_HOURS = 24  # older kept minutes checked again, RECHECK_PER_RUN per run, back to this far
RECHECK_PER_RUN = 10  # a full pass over the 24 h: 144 runs (2.4 h at one run a minute)
DELETE_PER_RUN = 60  # kept minutes deleted per run once the minute rollups below them are gone

_cursor: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # store -> next minute (exclusive) to recheck


def keep_groups(store, since_us: int, until_us: int, chunk_minutes: int = 60) -> int:
    """Keep the group rows of [since, until) not kept with their current inputs (as the loop
    does for each minute that settles), ``chunk_minutes`` read at a time; how many were written."""
    table = table_for(store)
    if table is None:
        return 0
    wrote = 0
    lo = ru.minute_of(since_us)
    while lo < until_us:
        hi = min(until_us, lo + chunk_minutes * ru.MINUTE_US)
        wrote += _keep(table, store, lo, hi, fill=True)
        lo = hi
    return wrote


def _keep(table, store, lo: int, hi: int, fill: bool) -> int:
    known = {m: d for m, (_, d) in table.digests(lo, hi).items()}
    built = kg.build_minutes(store, lo, hi, known=known, fill=fill)
    rows = [
        (m, kg.base_digest(), d, {k: kg.pack(v) for k, v in g.items()}) for m, (d, g) in built.items() if g is not None
    ]
    return table.write(rows)


def keep_groups_step(store, until_us: int) -> tuple[int, int, int]:
    """Keep the group rows of the settled minutes before ``until_us`` (a minute boundary): the
    newest ``RECENT_MINUTES`` kept or rebuilt, ``RECHECK_PER_RUN`` older ones rebuilt if changed,
    rows below the minute rollups' floor deleted. (kept, rechecked-and-rebuilt, deleted); a
    failure is logged, never raised (the next run tries again)."""
    try:
        table = table_for(store)
        if table is None:
            return 0, 0, 0
        t0 = time.perf_counter()
        recent = until_us - RECENT_MINUTES * ru.MINUTE_US
        kept = _keep(table, store, recent, until_us, fill=True)
        oldest = until_us - RECHECK_HOURS * 60 * ru.MINUTE_US
        hi = _cursor.get(store, recent)
        if hi <= oldest or hi > recent:
            hi = recent
        lo = max(oldest, hi - RECHECK_PER_RUN * ru.MINUTE_US)
        rebuilt = _keep(table, store, lo, hi, fill=False)
        _cursor[store] = lo
        floor = store.rollup_mark(tiers.MINUTES_FLOOR)
        deleted = table.delete_before(floor, DELETE_PER_RUN) if floor > 0 else 0
        log.debug(
            "kept %d minute(s) of groups, rebuilt %d changed, deleted %d, in %.2f s",
            kept,
            rebuilt,
            deleted,
            time.perf_counter() - t0,
        )
        return kept, rebuilt, deleted
    except Exception:
        log.exception("keeping the minutes' groups failed")
        return 0, 0, 0
