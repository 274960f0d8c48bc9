"""Minute scores kept in the store, so that a day's view reads 1,440 rows instead of scoring 1,440 minutes.
A cache under a digest of its inputs, never a second truth; ``KeptMerges`` keeps 15-minute merges the same way.
Design notes: docs/collector-internals.md, "collector/score/kept.py"; docs/scoring.md, "Kept minute scores".
"""

from __future__ import annotations

import hashlib
import logging
import pathlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import groupby

import msgpack

from ..store import rollup as ru
from ..store import tiers
from ..store.late_writes import TRUST_AFTER_US
from . import fleet_facts
from .components import Component, Overall
from .journeys import default_journeys, evaluate
from .timeline import AVAILABILITY_LOOKBACK_MIN, ScoreConfig, merged, timeline_of

__all__ = [
    "BLOCK_US",
    "HOUR_US",
    "KeptMerges",
    "KeptScores",
    "code_digest",
    "keep_blocks",
    "keep_recent",
    "minute_facts",
]

log = logging.getLogger("cxpulse.collector.score")

MINUTE_US = ru.MINUTE_US
_LOOKBACK_US = (AVAILABILITY_LOOKBACK_MIN - 1) * MINUTE_US  # a minute's score reads the app checks before it


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
    return [
        o.score,
        o.label,
        o.limiting,
        o.reason,
        [[c.name, c.score, c.label, c.reason, c.evidence] for c in o.components],
    ]


def _overall_in(v: list) -> Overall:
    return Overall(v[0], v[1], v[2], v[3], tuple(Component(*c) for c in v[4]))


def _write(keep: Callable[[list], None], rows: list, what: str) -> int:
    """Write kept rows; how many. A failed write is logged, never the reader's failure: what it
    read is right either way, and the next reader computes it again."""
    if not rows:
        return 0
    try:
        keep(rows)
    except Exception as exc:  # a read-only or busy store: the view is still right
        log.warning("could not keep %d %s: %s", len(rows), what, exc)
        return 0
    return len(rows)


class KeptScores:
    """The kept minute scores of one read (one agent, or all agents when ``agent`` is None).

    ``timeline.minute_scores`` asks ``trusted``, then ``lookup``, for each minute; callers that
    evaluate journeys hand the timeline to ``collect`` and write with ``flush``. ``facts``: each
    minute's packed ``fleet_facts``.

    ``trust``: made before the caller reads the rollups, so the late-write marks it reads here are
    older than those rollups (store/late_writes.py). A kept row is then read without hashing its
    rollups when it says it was scored from rollups read ``TRUST_AFTER_US`` after its minute ended,
    with today's scoring code and configuration, and no mark covers the minute or its app look-back.
    Such a reader also forgets the marks it saw once it has kept every minute they touch.
    """

    def __init__(
        self,
        store,
        since_us: int,
        until_us: int,
        agent: int | None = None,
        cfg=None,
        trust: bool = False,
        now_us: int | None = None,
    ):
        self.store = store
        self.base = _digest(code_digest(), repr(cfg or ScoreConfig()).encode())
        self.since, self.until = ru.minute_of(since_us), until_us
        # a lower bound of when the rollups are read: the caller's clock (``now_us``), or else the
        # window's end or the clock, whichever is earlier (a view's window ends at its clock)
        self.read_us = now_us if now_us is not None else min(until_us, time.time_ns() // 1000)
        # noted before the marks are read: a mark taken after (a late commit racing this read) makes
        # ``flush`` keep the rows as untrusted, whoever has forgotten that mark by then
        self.seq = store.late_write_seq() if trust else 0
        self.marks = store.late_writes(self.since - _LOOKBACK_US, until_us, agent) if trust else None
        # retention deletes minute rollups below this floor: a minute whose app look-back reaches below
        # it is scored without that history now, so a row scored with it is not the answer any more
        self.floor = store.rollup_mark(tiers.MINUTES_FLOOR) if trust else 0
        self.marked: dict[int, set[int]] = {}  # agent -> the window's minutes a mark covers (a replayed
        for w in self.marks or ():  # spool leaves one mark per batch: a set, not a scan per minute)
            lo, hi = max(w.lo_us, self.since), min(w.hi_us + _LOOKBACK_US, until_us - 1)
            self.marked.setdefault(w.agent, set()).update(range(ru.minute_of(lo), hi + 1, MINUTE_US))
        self.rows = store.kept_scores(self.since, until_us, agent)
        self.pending: list[tuple[int, int, bytes, bytes]] = []
        self.trusted_data: dict[tuple[int, int], bytes] = {}  # the pending rows' data with "v", when settled
        self.hits = 0
        self.facts: dict[tuple[int, int], bytes | None] = {}
        self.collected: set[int] = set()  # the agents whose window minutes were all handed to ``collect``

    def _settled(self, minute_us: int, rollups: Sequence[ru.Rollup]) -> bool:
        """Whether a score of this minute computed from the rollups this reader reads may be trusted
        later: they were read after the marks, and long enough after the minute ended."""
        if self.marks is None or minute_us + MINUTE_US + TRUST_AFTER_US > self.read_us:
            return False
        if minute_us - _LOOKBACK_US < self.floor:
            return False
        return bool(rollups) and rollups[0].span_us == MINUTE_US  # a 15-minute bucket shares its first minute's key

    def trusted(self, agent: int, minute_us: int, rollups: Sequence[ru.Rollup]) -> tuple[Overall, dict, bytes] | None:
        """(overall, journeys flags, digest) of a kept minute read without hashing its rollups."""
        hit = self.rows.get((agent, minute_us))
        if hit is None or not self._settled(minute_us, rollups):
            return None
        if minute_us in self.marked.get(agent, ()):
            return None  # written late since: its kept row may predate that write
        d = msgpack.unpackb(hit[1], raw=False, strict_map_key=False)
        if d.get("v") != self.base:
            return None
        self.hits += 1
        self.facts[(agent, minute_us)] = d.get("f")
        return _overall_in(d["o"]), d.get("j") or {}, hit[0]

    def digest(self, minute: Sequence[ru.Rollup], history: Sequence[bytes | None]) -> bytes | None:
        """What a minute's score is computed from: its rollups and ``history``, the ``own_digest``
        of the app rollups of each minute before it (None when a rollup was not read from the store)."""
        own = ru.own_digest(minute)
        known = [h for h in history if h is not None]
        if own is None or len(known) < len(history):
            return None
        return _digest(self.base, own, *known)

    def lookup(
        self, agent: int, minute_us: int, digest: bytes | None, rollups: Sequence[ru.Rollup] = ()
    ) -> tuple[Overall, dict] | None:
        """(overall, journeys flags by journeys digest) of a kept minute whose inputs are unchanged.
        A row that may now be trusted (``rollups``: the minute's) but does not say so is kept again."""
        hit = self.rows.get((agent, minute_us)) if digest is not None else None
        if hit is None or hit[0] != digest:
            return None
        self.hits += 1
        d = msgpack.unpackb(hit[1], raw=False, strict_map_key=False)
        self.facts[(agent, minute_us)] = d.get("f")
        if d.get("v") != self.base and self._settled(minute_us, rollups):
            d.pop("v", None)
            self.pending.append((agent, minute_us, hit[0], msgpack.packb(d, use_bin_type=True)))
            d["v"] = self.base
            self.trusted_data[(agent, minute_us)] = data = msgpack.packb(d, use_bin_type=True)
            self.rows[(agent, minute_us)] = (hit[0], data)
        return _overall_in(d["o"]), d.get("j") or {}

    def collect(self, agent: int, minutes) -> None:
        """Queue the minutes scored (or given journey flags) since they were read."""
        self.collected.add(agent)
        for m in minutes:
            if m.digest is None or m.kept:
                continue
            facts = self.facts[(agent, m.minute_us)] = fleet_facts.packed(m.rollups)
            row = {"o": _overall_out(m.overall), "j": m.journeys, "f": facts}
            data = msgpack.packb(row, use_bin_type=True)
            self.pending.append((agent, m.minute_us, m.digest, data))
            if self._settled(m.minute_us, m.rollups):
                row["v"] = self.base
                self.trusted_data[(agent, m.minute_us)] = data = msgpack.packb(row, use_bin_type=True)
            self.rows[(agent, m.minute_us)] = (m.digest, data)
            m.kept = True

    def flush(self) -> int:
        """Write what ``collect`` queued (``_write``), then forget the marks this read saw that begin
        inside its window (every minute of theirs in it is now kept as it is): a mark whose minutes
        and app look-back end inside it is deleted, any other starts again at the window's end."""
        rows, self.pending = self.pending, []
        trusted, self.trusted_data = self.trusted_data, {}
        if trusted:  # the rows as trusted only if no late write took a mark id since this read began
            both = [(a, m, g, trusted.get((a, m), d)) for a, m, g, d in rows]
            wrote = _write(lambda _: self.store.keep_trusted_scores(rows, both, self.seq), rows, "minute score(s)")
        else:
            wrote = _write(self.store.keep_scores, rows, "minute score(s)")
        seen = [w for w in self.marks or () if w.lo_us >= self.since and w.agent in self.collected]
        if seen and wrote == len(rows):
            done = [w.id for w in seen if w.hi_us + _LOOKBACK_US < self.until]
            trim = [w.id for w in seen if w.hi_us + _LOOKBACK_US >= self.until]
            self.marks = [w for w in self.marks or () if w not in seen]
            _write(
                lambda _: self.store.forget_late_writes(done, trim, self.until), seen, "late-write mark(s) forgotten"
            )
        return wrote


BLOCK_US = 15 * MINUTE_US
HOUR_US = 60 * MINUTE_US


class KeptMerges:
    """One agent's rollups merged per whole 15-minute block and per whole hour, kept like the scores.

    Why: a day's view merges the day's rollups (its sections, and triage's baseline of good
    minutes): 10,080 minute rollups to decode and merge. Merging is exact, associative and
    commutative (rollup.py), so the merge of 96 kept blocks is the merge of their minutes, and a
    week merges 168 kept hours instead of 672 blocks. A span (hour, else block) is taken whole
    only when all of its minutes with data are wanted and it lies inside the minutes read
    ([lo, hi)); the rest (the window's edges, a span with degraded minutes left out) is taken block
    by block, then minute by minute. Each row also keeps the facts the sections read per minute
    (minutes that lost RTT samples, minutes with failed app checks), so a whole span needs no
    decoding at all. Keyed by a digest of the span's stored rollups; an hour is built from its
    blocks' merges.

    ``rollups``: the agent's rollups of [lo, hi), as read from the store; ``rows`` and
    ``hour_rows``: the kept block and hour rows when the caller read them already (``keep_blocks``,
    for every agent at once).
    """

    def __init__(
        self,
        store,
        agent: int,
        rollups: Iterable[ru.Rollup],
        lo: int,
        hi: int,
        rows: Mapping[tuple[int, int], tuple[bytes, bytes]] | None = None,
        hour_rows: Mapping[tuple[int, int], tuple[bytes, bytes]] | None = None,
    ):
        self.store, self.agent, self.lo, self.hi = store, agent, lo, hi
        self.by_minute: dict[int, list[ru.Rollup]] = {}
        for r in rollups:
            self.by_minute.setdefault(r.minute_us, []).append(r)
        self.rows = dict(rows) if rows is not None else store.kept_merges(lo - lo % BLOCK_US, hi, agent)
        self.hour_rows = (
            dict(hour_rows) if hour_rows is not None else store.kept_hour_merges(lo - lo % HOUR_US, hi, agent)
        )
        self.pending: list[tuple[int, int, bytes, bytes]] = []
        self.hour_pending: list[tuple[int, int, bytes, bytes]] = []
        self._spans: dict[tuple[int, int], tuple[list[ru.Rollup], list, list] | None] = {}

    def _parts(self, minutes: Iterable[int] | None):
        """(rollups, the span's kept (merged, lossy, failed) or None) in minute order: each whole
        hour of the chosen minutes (all by default), else each whole block, and each run of others."""
        chosen = sorted(self.by_minute if minutes is None else minutes)
        for h, hms in _runs(chosen, HOUR_US):
            hour = self._whole(h, HOUR_US, hms)
            if hour is not None:
                yield hour
                continue
            for b, bms in _runs(hms, BLOCK_US):
                yield self._whole(b, BLOCK_US, bms) or (self._rollups(bms), None)

    def _rollups(self, minutes: list[int]) -> list[ru.Rollup]:
        return [r for m in minutes for r in self.by_minute[m]]

    def _whole(self, start: int, span: int, minutes: list[int]) -> tuple[list[ru.Rollup], tuple] | None:
        """(rollups, merged) of the span when it is whole and keepable, else None. Spans of 15-minute
        rollups (a window older than the minutes' floor) are merged as they are: retention would
        delete kept rows that old as soon as they were written."""
        if not (
            self.by_minute[minutes[0]][0].span_us == MINUTE_US
            and start >= self.lo
            and start + span <= self.hi
            and len(minutes) > 1
            and len(minutes) == sum(1 for m in range(start, start + span, MINUTE_US) if m in self.by_minute)
        ):
            return None
        rs = self._rollups(minutes)
        got = self._span(start, span, rs, minutes)
        return None if got is None else (rs, got)

    def _span(
        self, start: int, span: int, rollups: list[ru.Rollup], minutes: list[int]
    ) -> tuple[list[ru.Rollup], list, list] | None:
        """(merged rollups, lossy facts, failed facts) of a whole span; None when not keepable."""
        if (start, span) in self._spans:
            return self._spans[(start, span)]
        rows, pending = (self.hour_rows, self.hour_pending) if span == HOUR_US else (self.rows, self.pending)
        own = ru.own_digest(rollups)
        got = None
        if own is not None:
            hit = rows.get((self.agent, start))
            if hit is not None and hit[0] == own:
                d = msgpack.unpackb(hit[1], raw=False, strict_map_key=False)
                got = (
                    [ru.Rollup(self.agent, m, k, t, h, None, raw) for k, t, h, m, raw in d["r"]],
                    [tuple(x) for x in d["lossy"]],
                    [tuple(x) for x in d["failed"]],
                )
            else:
                if span == HOUR_US:  # from its blocks: most are kept already (the loop keeps each block)
                    parts = [
                        self._whole(b, BLOCK_US, bms) or (self._rollups(bms), None)
                        for b, bms in _runs(minutes, BLOCK_US)
                    ]
                    rs = _joined(merged(r for p, blk in parts for r in (p if blk is None else blk[0])))
                    facts = [minute_facts(p) if blk is None else blk[1:] for p, blk in parts]
                    lossy = [x for lo, _ in facts for x in lo]
                    failed = [x for _, fa in facts for x in fa]
                else:
                    rs = _joined(merged(rollups))
                    lossy, failed = minute_facts(rollups)
                data = msgpack.packb(
                    {
                        "r": [[r.kind, r.target, r.hop, r.minute_us, ru.encode(r.kind, r.data)] for r in rs],
                        "lossy": lossy,
                        "failed": failed,
                    },
                    use_bin_type=True,
                )
                pending.append((self.agent, start, own, data))
                rows[(self.agent, start)] = (own, data)
                got = (rs, lossy, failed)
        self._spans[(start, span)] = got
        return got

    def merged(self, minutes: Iterable[int] | None = None) -> dict:
        """``timeline.merged`` of these minutes' rollups (all by default), whole spans read merged."""
        parts: list[ru.Rollup] = []
        for rs, span in self._parts(minutes):
            parts += rs if span is None else span[0]
        return merged(parts)

    def facts(self) -> tuple[list, list]:
        """``minute_facts`` of all the minutes, whole spans from their rows."""
        lossy: list = []
        failed: list = []
        for rs, span in self._parts(None):
            lo, fa = minute_facts(rs) if span is None else span[1:]
            lossy += lo
            failed += fa
        return lossy, failed

    def flush(self) -> int:
        """Write the blocks and hours merged since they were read (``_write``)."""
        rows, self.pending = self.pending, []
        hours, self.hour_pending = self.hour_pending, []
        return _write(self.store.keep_merges, rows, "block merge(s)") + _write(
            self.store.keep_hour_merges, hours, "hour merge(s)"
        )


def _joined(by_key: Mapping[tuple[str, str], ru.Rollup]) -> list[ru.Rollup]:
    """A span's merged rollups with their RTT fragments joined (``rollup.normalized``: exact, the same
    jitter, loss runs, first and last sample): a week then merges 168 fragments per target, not 60,000."""
    out = []
    for r in by_key.values():
        if r.kind == "rtt" and len(r.data.get("frags") or ()) > 1:
            r = ru.Rollup(r.agent, r.minute_us, r.kind, r.target, r.hop, ru.normalized(r.kind, r.data))
        out.append(r)
    return out


def _runs(minutes: list[int], span: int) -> list[tuple[int, list[int]]]:
    """(span start, its minutes) for each span of ``span`` the sorted ``minutes`` touch."""
    return [(start, list(ms)) for start, ms in groupby(minutes, key=lambda m: m - m % span)]


def minute_facts(rollups: Iterable[ru.Rollup]) -> tuple[list, list]:
    """What the sections read minute by minute: (minute, target, lost, loss runs) of each RTT
    rollup that lost samples, and (minute, app) of each app rollup with a failed check."""
    lossy, failed = [], []
    for r in rollups:
        if r.kind == "rtt" and r.data["lost"]:
            lossy.append((r.minute_us, r.target, r.data["lost"], max(1, ru.rtt_loss_runs(r.data))))
        elif r.kind == "http" and r.data["failed"]:
            failed.append((r.minute_us, r.target))
    return lossy, failed


def keep_recent(
    store,
    since_us: int,
    until_us: int,
    cfg=None,
    journeys=None,
    agent: int | None = None,
    now_us: int | None = None,
) -> tuple[int, int]:
    """Score and keep every agent's (or one ``agent``'s) minutes in [since, until) that are not
    kept with their current inputs; returns (minutes written, minutes already kept). ``now_us``:
    the clock (the kept loop's), so that a settled minute is kept as trusted (``KeptScores``)."""
    since = ru.minute_of(since_us)
    kept = KeptScores(store, since, until_us, agent, cfg, trust=True, now_us=now_us)  # before any rollup is read
    by_agent: dict[int, list[ru.Rollup]] = {}
    history = store.rollups(since - (AVAILABILITY_LOOKBACK_MIN - 1) * MINUTE_US, since, agent, kinds=("http",))
    for r in history + store.rollups(since, until_us, agent):
        by_agent.setdefault(r.agent, []).append(r)
    js = journeys if journeys is not None else default_journeys()
    for agent, rollups in by_agent.items():
        tl = timeline_of(agent, rollups, since, until_us, cfg, kept)
        evaluate(js, tl.minutes, cfg)
        kept.collect(agent, tl.minutes)
    return kept.flush(), kept.hits


def keep_blocks(store, block_us: int, agent: int | None = None) -> int:
    """Keep the merge of the 15-minute block starting at ``block_us`` for every agent (or one), and
    of its hour when the block ends one; returns how many rows were written (a span kept with
    unchanged rollups is not)."""
    end = block_us + BLOCK_US
    lo = end - HOUR_US if end % HOUR_US == 0 else block_us
    by_agent: dict[int, list[ru.Rollup]] = {}
    for r in store.rollups(lo, end, agent):
        by_agent.setdefault(r.agent, []).append(r)
    rows = store.kept_merges(lo, end, agent)
    hour_rows = store.kept_hour_merges(lo, end, agent) if lo < block_us else {}
    pending: list[tuple[int, int, bytes, bytes]] = []
    hours: list[tuple[int, int, bytes, bytes]] = []
    for a, rollups in by_agent.items():
        merges = KeptMerges(store, a, rollups, lo, end, rows, hour_rows)
        for _ in merges._parts(None):  # keeps the hour (and its blocks) or the block when whole
            pass
        pending += merges.pending
        hours += merges.hour_pending
    if pending:
        store.keep_merges(pending)
    if hours:
        store.keep_hour_merges(hours)
    return len(pending) + len(hours)
