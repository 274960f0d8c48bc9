"""Retention by resolution: 15-minute rollups settled from the minute ones, exact, resumable,
outliving the minutes; lookups of old windows answer from them. Both stores.

PostgreSQL runs with CXPULSE_TEST_POSTGRES (as test_store), skipped otherwise.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from cxpulse.collector.jobs import rollup_tiers
from cxpulse.collector.jobs.retention import enforce_once, minute_horizon
from cxpulse.collector.jobs.rollup_tiers import settle_once
from cxpulse.collector.lookup.service import LookupService
from cxpulse.collector.score.kept import HOUR_US, KeptMerges, minute_facts
from cxpulse.collector.score.timeline import agent_timeline, figures_of, merged
from cxpulse.collector.store import AgentInfo, PendingBatch, open_store, tiers
from cxpulse.collector.store import rollup as ru
from cxpulse.collector.store.sketch import LatencySketch
from cxpulse.v1 import payload as p
from tests.test_rollups import T0, rich_batch

S = 1_000_000
DAY = 86_400 * S
B0 = ru.block_of(T0)
FAR = 2**62


def blocks_batch(seed: int, blocks: int = 3) -> p.SampleBatch:
    """``rich_batch`` over whole 15-minute blocks, from B0."""
    b = rich_batch(seed, minutes=15 * blocks)
    for s in b.series:
        s.ts_us[:] = [t - (T0 - B0) for t in s.ts_us]
    return b


def canonical(rs) -> dict:
    return {(r.agent, r.minute_us, r.kind, r.target): ru.canonical_bytes(r.kind, r.data) for r in rs}


@pytest.mark.parametrize("seed", range(5))
def test_fifteen_minute_rollups_merged_are_the_one_rollup_of_the_block(seed):
    rng = random.Random(seed)
    batch = blocks_batch(seed, 2)
    minutes = list(ru.rollups_of_batches([(1, batch)]).values())
    got = ru.block_rollups(minutes)
    assert {r.span_us for r in got} == {ru.BLOCK_US} and {r.minute_us for r in got} == {B0, B0 + ru.BLOCK_US}
    # The same minutes re-keyed to their block and merged one by one in any order: the same bytes.
    by_key: dict = {}
    for r in rng.sample(minutes, len(minutes)):
        one = ru.Rollup(
            r.agent, ru.block_of(r.minute_us), r.kind, r.target, r.hop, ru.decode(r.kind, ru.encode(r.kind, r.data))
        )
        by_key[one.key] = one if one.key not in by_key else ru.merge(by_key[one.key], one)
    assert canonical(got) == canonical(by_key.values())
    # And what the block means, sample by sample: every RTT and every lost one of the block.
    isp = next(s for s in batch.series if s.target == "isp")
    want = LatencySketch()
    for t, v in zip(isp.ts_us, isp.rtt_us):
        if ru.block_of(t) == B0 and v is not None:
            want.add(v)
    block = next(r for r in got if r.minute_us == B0 and r.target == "isp")
    assert block.data["rtt"].to_bytes() == want.to_bytes()
    assert block.data["n"] == sum(1 for t in isp.ts_us if ru.block_of(t) == B0) == 15 * 60
    assert len(block.data["frags"]) == 1  # settled: joined into one, jitter and loss runs folded in
    assert ru.rtt_jitter(block.data) == ru.rtt_jitter(
        ru.merge_all(
            "rtt", ru.empty("rtt"), [m.data for m in minutes if m.target == "isp" and m.minute_us < B0 + ru.BLOCK_US]
        )
    )


def test_events_of_a_block_join_the_pieces_of_one_event():
    m = ru.MINUTE_US
    ev = p.Event("e1", "outage", "isp", B0 + 30 * S, B0 + 3 * m + 10 * S, 3, "gone")
    short = p.Event("e2", "roam", "wifi", B0 + m + 5 * S, B0 + m + 5 * S, 1, "roamed")
    per_minute = ru.event_rollups(7, [ev, short], [B0 + i * m for i in range(5)], B0 + 5 * m)
    (block,) = ru.block_rollups(per_minute.values())
    assert block.data["spans"] == [
        [B0 + 30 * S, B0 + 3 * m + 10 * S, 3, "outage", "isp", "e1", B0 + 30 * S],
        [B0 + m + 5 * S, B0 + m + 6 * S, 1, "roam", "wifi", "e2", B0 + m + 5 * S],
    ]


def test_settling_is_bounded_resumable_and_idempotent(store, store_url, monkeypatch):
    monkeypatch.setattr(rollup_tiers, "WRITE_ROWS", 4)  # a block written in several transactions
    monkeypatch.setattr(rollup_tiers, "AGENTS_PER_STEP", 1)
    other = store.upsert_agent(AgentInfo("other"), 1)
    store.commit_batches([PendingBatch(other, 1, 1, blocks_batch(9, 1))])
    k = store.upsert_agent(AgentInfo("tiers"), 1)
    store.commit_batches([PendingBatch(k, 1, 1, blocks_batch(1, 3))])
    minutes = store.rollups(0, FAR, k)
    want = canonical(ru.block_rollups(minutes))
    want_other = canonical(ru.block_rollups(store.rollups(0, FAR, other)))
    assert asyncio.run(settle_once(store, now_us=B0 + 3 * 3600 * S, pause_s=0)).blocks == 0  # within the lag
    first = asyncio.run(settle_once(store, now_us=B0 + 9 * DAY, max_blocks=1, pause_s=0))
    assert (first.blocks, first.done, first.settled_us) == (1, False, B0 + ru.BLOCK_US)
    store.close()
    store = open_store(store_url)  # a restart (and the schema opened again: nothing to migrate twice)
    try:
        assert store.rollup_mark(tiers.BLOCKS_SETTLED) == B0 + ru.BLOCK_US
        rest = asyncio.run(settle_once(store, now_us=B0 + 9 * DAY, max_blocks=10, pause_s=0))
        assert (rest.blocks, rest.done) == (2, True) and rest.settled_us == ru.block_of(B0 + DAY)
        assert asyncio.run(settle_once(store, now_us=B0 + 9 * DAY, pause_s=0)).blocks == 0
        # Settled again (a second collector, a lost mark): the same rows.
        store.write_blocks(ru.block_rollups(store.rollups(B0, B0 + 3 * ru.BLOCK_US, k)))
        assert store.raise_mark(tiers.BLOCKS_SETTLED, B0) == ru.block_of(B0 + DAY)  # marks never go back
        assert store.raise_mark(tiers.MINUTES_FLOOR, B0 + 3 * ru.BLOCK_US) == B0 + 3 * ru.BLOCK_US
        assert store.raise_mark(tiers.MINUTES_FLOOR, B0) == B0 + 3 * ru.BLOCK_US
        got = store.rollups(0, FAR, k)
        assert {r.span_us for r in got} == {ru.BLOCK_US} and canonical(got) == want
        # A view this old merges the 15-minute rollups as they are: no span of them is kept again
        # (the three blocks fill one hour's data: kept, retention would delete it at once).
        merges = KeptMerges(store, k, got, B0 - B0 % HOUR_US, FAR)
        assert canonical(merges.merged().values()) == canonical(merged(got).values())
        assert merges.facts() == minute_facts(got) and not merges.pending and not merges.hour_pending
        assert canonical(store.rollups(0, FAR, other)) == want_other
    finally:
        store.close()


def test_retention_drops_minute_rollups_past_their_horizon_and_keeps_the_blocks(store):
    k = store.upsert_agent(AgentInfo("tiers"), 1)
    store.commit_batches([PendingBatch(k, 1, 1, blocks_batch(2, 3))])
    minutes = store.rollups(0, FAR, k)
    before = [
        figures_of([r for r in minutes if ru.block_of(r.minute_us) == b], b, b + ru.BLOCK_US)
        for b in (B0, B0 + ru.BLOCK_US)
    ]

    r = asyncio.run(enforce_once(store, 7, 400, now_us=B0 + 30 * DAY, chunk=50, pause_s=0, minute_days=35))
    assert r.blocks_settled == 3 and r.rollups_deleted == 0 and store.rollups(0, FAR, k) == minutes
    r = asyncio.run(enforce_once(store, 7, 400, now_us=B0 + 36 * DAY, chunk=50, pause_s=0, minute_days=35))
    assert r.rollups_deleted == len(minutes) and r.blocks_deleted == 0
    old = store.rollups(0, FAR, k)
    assert {x.span_us for x in old} == {ru.BLOCK_US} and {x.minute_us for x in old} == {
        B0 + i * ru.BLOCK_US for i in range(3)
    }

    # A lookup of the window, now older than the minute rollups: one 15-minute bucket per block,
    # with the figures the minutes gave (counts, loss, percentiles, per-minute rates).
    tl = agent_timeline(store, k, B0, B0 + 3 * ru.BLOCK_US)
    assert [m.minute_us for m in tl.minutes] == [B0, B0 + ru.BLOCK_US, B0 + 2 * ru.BLOCK_US]
    assert all(m.overall.score is not None for m in tl.minutes) and tl.window.score is not None
    assert [m.figures for m in tl.minutes[:2]] == before
    page = LookupService(store, now_us=lambda: B0 + 36 * DAY).agent("tiers", B0, B0 + 3 * ru.BLOCK_US, 60, False, None)
    assert [x["t_us"] for x in page["score_timeline"]] == [m.minute_us for m in tl.minutes]
    assert page["agent"]["score"]["window"]["score"] == tl.window.score is not None
    faults = page["agent"]["score"]["faults"]  # triage over 15-minute buckets: whole blocks, joined
    assert faults and all(f["end_us"] - f["start_us"] == f["minutes"] * 60 * S == 45 * 60 * S for f in faults)
    # A window ending inside the minute horizon reads minutes there and blocks before: none twice.
    k2 = store.upsert_agent(AgentInfo("recent"), 1)
    recent = rich_batch(3, minutes=2)
    for s in recent.series:
        s.ts_us[:] = [t + 30 * DAY for t in s.ts_us]  # above the floor and the settled mark
    store.commit_batches([PendingBatch(k2, 1, 1, recent)])
    both = store.rollups(B0, FAR)
    assert sorted(x.key for x in both) == [x.key for x in both]
    assert {(x.agent, x.span_us) for x in both} == {(k, ru.BLOCK_US), (k2, ru.MINUTE_US)}

    r = asyncio.run(enforce_once(store, 7, 400, now_us=B0 + 401 * DAY, chunk=5, pause_s=0, minute_days=35))
    assert r.blocks_deleted == len(old) and store.rollups(0, B0 + DAY, k) == []


def test_minute_rollups_stay_until_their_blocks_are_settled(store):
    """A store upgraded with months of minute rollups: they go only as fast as settling gets."""
    k = store.upsert_agent(AgentInfo("tiers"), 1)
    store.commit_batches([PendingBatch(k, 1, 1, blocks_batch(4, 2))])
    n = len(store.rollups(0, FAR, k))
    store.raise_mark(tiers.BLOCKS_SETTLED, B0)  # settled up to the first block only: the job has not run yet
    r = asyncio.run(enforce_once(store, 7, 400, now_us=B0 + 90 * DAY, chunk=50, pause_s=0, minute_days=35))
    assert r.blocks_settled == 2 and r.rollups_deleted == n  # settled first, then expired


def test_horizons_are_ordered():
    assert minute_horizon(400) == 35 and minute_horizon(30) == 30 and minute_horizon(400, 60) == 60
    with pytest.raises(ValueError, match=r"15-minute rollups .* at least as long as minute rollups"):
        asyncio.run(enforce_once(None, 7, 30, minute_days=35))
    with pytest.raises(ValueError, match=r"minute rollups .* at least as long as raw samples"):
        asyncio.run(enforce_once(None, 7, 400, minute_days=5))
    with pytest.raises(ValueError, match="positive"):
        asyncio.run(enforce_once(None, 7, 400, minute_days=0))


def test_central_config_names_the_minute_horizon_within_the_others():
    from cxpulse.collector.config.central import ConfigError, parse
    from cxpulse.collector.config.watch import ConfigWatcher

    watcher = ConfigWatcher(None, None, "unused")
    assert watcher.retention() == ({}, None, None)
    watcher.central = parse("[retention]\nrtt_days = 9\nminute_rollup_days = 60\nrollup_days = 400")
    assert watcher.retention() == ({"rtt": 9}, 400, 60)  # what retention_loop takes over the flags
    for bad in ("rtt_days = 9\nminute_rollup_days = 8", "minute_rollup_days = 90\nrollup_days = 60"):
        with pytest.raises(ConfigError, match="minute_rollup_days"):
            parse(f"[retention]\n{bad}")
