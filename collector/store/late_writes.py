"""Late writes: a commit that changes minutes that have settled leaves a mark (agent, first and last
minute) in its own transaction, on both stores. The foundation for trusting a kept minute score
without re-reading its rollups (docs/scale-out.md, "The fleet view at 10,000 agents").

Why a mark and not deleting the kept rows: a reader that read the rollups just before a late
commit writes its stale row just after it. A mark is forgotten only by id, by a reader that saw
it before reading the rollups, so one it did not see survives its write (ids are never reused).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import rollup as ru

__all__ = ["LATE_AFTER_US", "TRUST_AFTER_US", "LateWrite", "late_ranges"]

# A write into a minute that ended at least this long before the commit's clock is late: the kept
# loop's settle time (jobs/kept.py). Agents send every 30 s and a commit can queue for seconds under
# load, so a live batch reaches its oldest minute well within it; a spool replayed after an outage not.
LATE_AFTER_US = 60_000_000
# A reader trusts a kept minute only when it ended at least this long before it read the rollups:
# twice the late threshold, so that a commit landing between its read and its write is always a
# late one unless a minute passed between its clock reading and its commit.
TRUST_AFTER_US = 2 * LATE_AFTER_US


@dataclass(frozen=True)
class LateWrite:
    id: int
    agent: int
    lo_us: int  # the first minute written late
    hi_us: int  # the last one (inclusive)


def late_ranges(written: Iterable[Sequence], now_us: int) -> list[tuple[int, int, int, int]]:
    """(agent, first late minute, last late minute, now) per agent among the ``written`` rows
    (``(agent, minute_us, ...)``, as a commit upserts or deletes rollups) with a minute that ended
    ``LATE_AFTER_US`` or more before ``now_us`` (the commit's clock)."""
    late: dict[int, list[int]] = {}
    for agent, minute_us, *_ in written:
        if minute_us + ru.MINUTE_US + LATE_AFTER_US <= now_us:
            late.setdefault(agent, []).append(minute_us)
    return [(agent, min(ms), max(ms), now_us) for agent, ms in sorted(late.items())]
