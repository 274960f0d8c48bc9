"""Minute scores kept in the store, so that a day's view reads 1,440 rows instead of scoring 1,440 minutes.

Why: an agent-minute's score depends only on that minute's rollups and on the app checks of the
14 minutes before it (``timeline.recent_availability``), never on the window it is shown in. A
day's view scored every minute afresh (figures, two E-model ratings, reasons) and evaluated the
journeys on them: about half of a view's time, and nearly all of the fleet's. Kept, a minute is
scored once and read back after.

A kept score is a cache, never a second truth: each row carries a digest of everything its score
was computed from (the minute's stored rollup bytes, the app rollups of the look-back, this
scoring code and the score config). A reader recomputes a minute whose digest differs, so a late
batch that changes a minute (or the app history after it), a new collector version, or a changed
config never serves an old score, and nothing in ingest has to invalidate anything. Journeys'
met/missed flags are kept alongside, under a digest of the journey definitions.

Rows are written by whoever computed them (a view, the fleet) and, for every agent, by
``kept_scores_loop`` shortly after each minute settles, so the helpdesk's first view of the day
finds them. Retention deletes them with the rollups.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import pathlib
import time
from collections.abc import Callable, Iterable, Sequence

import msgpack

from . import rollup as ru
from .components import Component, Overall
from .timeline import ScoreConfig

__all__ = ["KeptScores", "code_digest", "kept_scores_loop", "keep_recent"]

log = logging.getLogger("cxpulse.collector.score")

MINUTE_US = ru.MINUTE_US
LOOKBACK_MIN = 15  # timeline.AVAILABILITY_LOOKBACK_MIN: the minute itself and the 14 before it


def _digest(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p)
    return h.digest()


_CODE: bytes | None = None


def code_digest() -> bytes:
    """A digest of the scoring code itself (this folder's sources): a new version rescores."""
    global _CODE
    if _CODE is None:
        here = pathlib.Path(__file__).parent
        h = hashlib.blake2b(digest_size=16)
        try:  # installed without sources (a frozen build): the version stands in
            from importlib.metadata import version

            h.update(version("cxpulse").encode())
        except Exception:
            pass
        for p in sorted(here.glob("*.py")):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
        _CODE = h.digest()
    return _CODE


def _overall_out(o: Overall) -> list:
    return [o.score, o.label, o.limiting, o.reason,
            [[c.name, c.score, c.label, c.reason, c.evidence] for c in o.components]]


def _overall_in(v: list) -> Overall:
    return Overall(v[0], v[1], v[2], v[3], tuple(Component(*c) for c in v[4]))


class KeptScores:
    """The kept minute scores of one read (one agent, or all agents when ``agent`` is None).

    ``timeline.minute_scores`` asks ``lookup`` for each minute; the callers that evaluate
    journeys on the result hand the timeline to ``collect`` and write with ``flush``.
    """

    def __init__(self, store, since_us: int, until_us: int, agent: int | None = None, cfg=None):
        self.store = store
        self.base = _digest(code_digest(), repr(cfg or ScoreConfig()).encode())
        self.rows = store.kept_scores(ru.minute_of(since_us), until_us, agent)
        self.pending: list[tuple[int, int, bytes, bytes]] = []
        self.hits = self.misses = 0

    def digest(self, minute: Sequence[ru.Rollup], history: Sequence[bytes | None]) -> bytes | None:
        """What a minute's score is computed from: its rollups and ``history``, the ``own`` digests
        of the app rollups of the minutes before it (None when a rollup was not read from the store)."""
        own = self.own(minute)
        if own is None or None in history:
            return None
        return _digest(self.base, own, *history)

    @staticmethod
    def own(rollups: Sequence[ru.Rollup]) -> bytes | None:
        """A digest of these rollups' stored bytes (None when one was not read from the store)."""
        h = hashlib.blake2b(digest_size=16)
        for r in sorted(rollups, key=lambda r: (r.kind, r.target)):
            if r.raw is None:
                return None
            h.update(f"{r.minute_us}\0{r.kind}\0{r.target}\0{r.hop}\0{len(r.raw)}\0".encode())
            h.update(r.raw)
        return h.digest()

    def lookup(self, agent: int, minute_us: int, digest: bytes | None) -> tuple[Overall, dict] | None:
        """(overall, journeys flags by journeys digest) of a kept minute whose inputs are unchanged."""
        hit = self.rows.get((agent, minute_us)) if digest is not None else None
        if hit is None or hit[0] != digest:
            self.misses += 1
            return None
        self.hits += 1
        d = msgpack.unpackb(hit[1], raw=False, strict_map_key=False)
        return _overall_in(d["o"]), d.get("j") or {}

    def collect(self, agent: int, minutes) -> None:
        """Queue the minutes scored (or given journey flags) since they were read."""
        for m in minutes:
            if m.digest is None or m.kept:
                continue
            data = msgpack.packb({"o": _overall_out(m.overall), "j": m.journeys}, use_bin_type=True)
            self.pending.append((agent, m.minute_us, m.digest, data))
            self.rows[(agent, m.minute_us)] = (m.digest, data)
            m.kept = True

    def flush(self) -> int:
        """Write what ``collect`` queued. A failed write is logged, never the reader's failure:
        the scores are right either way, the next read computes them again."""
        rows, self.pending = self.pending, []
        if not rows:
            return 0
        try:
            self.store.keep_scores(rows)
        except Exception as exc:  # a read-only or busy store: the view is still right
            log.warning("could not keep %d minute score(s): %s", len(rows), exc)
            return 0
        return len(rows)


def keep_recent(store, since_us: int, until_us: int, cfg=None, journeys=None,
                agent: int | None = None) -> tuple[int, int]:
    """Score and keep every agent's (or one ``agent``'s) minutes in [since, until) that are not
    kept with their current inputs; returns (minutes written, minutes already kept)."""
    from .journeys import default_journeys, evaluate
    from .timeline import timeline_of

    since = ru.minute_of(since_us)
    kept = KeptScores(store, since, until_us, agent, cfg)
    by_agent: dict[int, list[ru.Rollup]] = {}
    history = store.rollups(since - (LOOKBACK_MIN - 1) * MINUTE_US, since, agent, kinds=("http",))
    for r in history + store.rollups(since, until_us, agent):
        by_agent.setdefault(r.agent, []).append(r)
    js = journeys if journeys is not None else default_journeys()
    for agent, rollups in by_agent.items():
        tl = timeline_of(agent, rollups, since, until_us, cfg, kept)
        evaluate(js, tl.minutes, cfg)
        kept.collect(agent, tl.minutes)
    return kept.flush(), kept.hits


async def kept_scores_loop(store, interval_s: float = 60.0, settle_s: float = 60.0, minutes: int = 2,
                           now_us: Callable[[], int] | None = None) -> None:
    """Every ``interval_s``, keep the scores of the last ``minutes`` settled minutes of every agent.

    A minute is taken as settled ``settle_s`` after it ends (agents send every 30 s); one that
    changes later is rescored by the next reader (its digest no longer matches). The work runs in
    a thread; a failed run is logged, never fatal.
    """
    while True:
        try:
            now = now_us() if now_us is not None else time.time_ns() // 1000
            until = ru.minute_of(now - int(settle_s * 1e6))
            t0 = time.perf_counter()
            wrote, hits = await asyncio.to_thread(keep_recent, store, until - minutes * MINUTE_US, until)
            log.debug("kept %d minute score(s) (%d already kept) in %.2f s", wrote, hits, time.perf_counter() - t0)
        except Exception:
            log.exception("keeping minute scores failed")
        await asyncio.sleep(interval_s)
