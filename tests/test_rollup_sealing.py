"""Sealed minute rollups (issue 19): an agent-hour's rows moved into one deflated row, bytes
unchanged, so every read answers as before; a late batch unseals its agent-hour first; sealing
resumes anywhere; retention drops whole sealed hours. Both stores (PostgreSQL with
CXPULSE_TEST_POSTGRES, skipped otherwise).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cxpulse.collector.jobs.rollup_sealing import seal_once
from cxpulse.collector.jobs.rollup_tiers import settle_once
from cxpulse.collector.store import AgentInfo, PendingBatch, open_store, sealed, tiers
from cxpulse.collector.store import rollup as ru
from tests.stores import fresh_schema, postgres_url
from tests.test_storage_migration import _batch

S = 1_000_000
MIN = 60 * S
HOUR = 3600 * S
DAY = 24 * HOUR
H0 = 1_790_006_400 * S  # an hour boundary
FAR = 2**62


@contextmanager
def twin(store_url: str, tmp_path) -> Iterator[str]:
    """A second empty store on the same backend: the reference that is never sealed."""
    if "://" not in store_url:
        yield str(tmp_path / "twin.sqlite")
        return
    with fresh_schema(postgres_url()) as (_, url):
        yield url


def read(store, since: int = 0, until: int = FAR, **kw) -> list[tuple]:
    """What a reader gets, stored bytes included."""
    return [
        (r.agent, r.minute_us, r.kind, r.target, r.hop, r.span_us, bytes(r.raw))
        for r in store.rollups(since, until, **kw)
    ]


def fill(store) -> tuple[int, int]:
    """Two desks: A over three hours (H0..H3), B over the first two, in 20-minute batches."""
    rng = random.Random(5)
    a = store.upsert_agent(AgentInfo("desk-a"), H0)
    b = store.upsert_agent(AgentInfo("desk-b"), H0)
    for key, hours in ((a, 3), (b, 2)):
        for seq, t in enumerate(range(H0, H0 + hours * HOUR, 20 * MIN), start=1):
            store.commit_batches([PendingBatch(key, 1, seq, _batch(rng, t, t + 20 * MIN, 10 * S))])
    return a, b


def late_batch() -> PendingBatch:
    """Desk A's spool replaying a batch of minute H0+5 a day later (a new seq): merges into a sealed hour."""
    return _batch(random.Random(8), H0 + 5 * MIN, H0 + 6 * MIN, 5 * S)


def test_pack_keeps_every_row_and_refuses_what_it_cannot_read():
    rows = [(H0 + 2 * MIN, "rtt", "isp", 2, 6, b"\x01\x02"), (H0, "http", "crm", 0, 1, b"\x00" * 40)]
    blob = sealed.MINUTE_HOURS.pack(H0, rows)
    assert sealed.unpack(H0, blob) == sorted(rows)
    with pytest.raises(ValueError, match="format"):
        sealed.unpack(H0, b"\x09" + blob[1:])
    with pytest.raises(ValueError, match="damaged"):
        sealed.unpack(H0, blob[:-3])
    with pytest.raises(ValueError, match="not in the span"):
        sealed.MINUTE_HOURS.pack(H0, [(H0 + HOUR, "rtt", "isp", 0, 1, b"")])
    assert sealed.merge_rows(rows[:1], [(H0 + 2 * MIN, "rtt", "isp", 2, 7, b"new")]) == [
        (H0 + 2 * MIN, "rtt", "isp", 2, 7, b"new")
    ]
    assert sealed.MINUTE_HOURS.touched(H0 + 5 * MIN, H0 + HOUR + MIN, H0 + HOUR) == [H0]
    assert sealed.MINUTE_HOURS.touched(H0 + 5 * MIN, H0 + HOUR + MIN, H0) == []
    d0 = H0 - H0 % DAY
    assert sealed.BLOCK_DAYS.touched(H0 + 5 * MIN, H0 + 3 * DAY, d0 + 2 * DAY) == [d0, d0 + DAY]


def test_sealing_changes_no_read_resumes_and_a_late_batch_unseals(store, store_url, tmp_path):
    a, _ = fill(store)
    windows = [(0, FAR), (H0 + 10 * MIN, H0 + HOUR + 20 * MIN), (H0 + 59 * MIN, H0 + 61 * MIN)]
    before = {w: read(store, *w) for w in windows}
    before_a_rtt = read(store, agent_key=a, kinds=("rtt", "events"))
    assert before[(0, FAR)] and {r[1] for r in before[(0, FAR)]} >= {H0, H0 + 2 * HOUR + 59 * MIN}
    first_minutes = [store.next_rollup_minute(t) for t in (0, H0 + 30 * MIN + 1)]

    # Hours ending by H0+2h+10min: the first two; small steps, so it takes several (and one agent's
    # hour may be sealed across two steps on SQLite).
    moved, steps = 0, 0
    while n := store.seal_rollups(H0 + 2 * HOUR + 10 * MIN, max_rows=70):
        moved, steps = moved + n, steps + 1
        assert steps < 100
    want = sum(1 for r in before[(0, FAR)] if r[1] < H0 + 2 * HOUR)
    assert moved == want and steps >= 3
    assert store.rollup_mark(sealed.MINUTE_HOURS.mark) == H0 + 2 * HOUR
    for w in windows:
        assert read(store, *w) == before[w], w
    assert read(store, agent_key=a, kinds=("rtt", "events")) == before_a_rtt
    assert [store.next_rollup_minute(t) for t in (0, H0 + 30 * MIN + 1)] == first_minutes
    store.close()
    store = open_store(store_url)  # reopened: the sealed rows are the store's
    assert read(store) == before[(0, FAR)]
    assert store.seal_rollups(H0 + 2 * HOUR + 10 * MIN) == 0  # nothing left below the hour

    # The same batches and the late one into a store never sealed: the same bytes afterwards.
    with twin(store_url, tmp_path) as ref_url:
        ref = open_store(ref_url)
        try:
            fill(ref)
            ref.commit_batches([PendingBatch(a, 1, 100, late_batch())])
            store.commit_batches([PendingBatch(a, 1, 100, late_batch())])
            assert read(store) == read(ref)
            assert read(store) != before[(0, FAR)]  # the late minute did change
        finally:
            ref.close()
    # Only desk A's first hour came back: sealing again moves just those rows.
    a_h0 = sum(1 for r in read(store, H0, H0 + HOUR, agent_key=a))
    assert store.seal_rollups(H0 + 2 * HOUR + 10 * MIN) == a_h0
    assert store.seal_rollups(H0 + 2 * HOUR + 10 * MIN) == 0
    store.close()


def test_retention_drops_whole_sealed_hours_only(store):
    fill(store)
    everything = read(store)
    while store.seal_rollups(H0 + 2 * HOUR):
        pass
    deleted = 0
    while n := store.delete_rollups_before(H0 + HOUR + 30 * MIN, 500):  # the floor lies inside the second hour
        deleted += n
    # The first sealed hour went; the second (straddling the cut) stays whole until it is all expired.
    assert read(store, 0, H0 + HOUR) == []
    assert read(store, H0 + HOUR) == [r for r in everything if r[1] >= H0 + HOUR]
    assert deleted >= 2  # the two desks' sealed first hours


def test_the_job_seals_hours_a_day_old_and_says_when_it_is_done(store):
    a, _ = fill(store)
    r = asyncio.run(seal_once(store, now_us=H0 + 2 * HOUR + sealed.SEAL_AFTER_US, max_rows=100, pause_s=0))
    assert r.done and r.rows == sum(1 for x in read(store, 0, H0 + 2 * HOUR)) and r.steps > 1
    again = asyncio.run(seal_once(store, now_us=H0 + 2 * HOUR + sealed.SEAL_AFTER_US, pause_s=0))
    assert (again.rows, again.blocks, again.done, again.steps) == (0, 0, True, 2)  # one look at each tier
    # Bounded: one step per call when asked, the rest left for the next run.
    fresh = asyncio.run(seal_once(store, now_us=H0 + 3 * HOUR + DAY, max_rows=10, max_steps=1, pause_s=0))
    assert not fresh.done and fresh.steps == 1 and fresh.rows > 0
    assert read(store, agent_key=a)[-1][1] == H0 + 2 * HOUR + 59 * MIN  # reads see sealed and unsealed alike


def test_a_live_batch_leaves_sealed_hours_sealed(store):
    """Live batches lie above the mark: their commits unseal nothing."""
    _, b = fill(store)
    while store.seal_rollups(H0 + HOUR):
        pass
    assert store.rollup_mark(sealed.MINUTE_HOURS.mark) == H0 + HOUR
    store.commit_batches([PendingBatch(b, 1, 50, _batch(random.Random(2), H0 + 3 * HOUR, H0 + 3 * HOUR + MIN, S))])
    assert store.seal_rollups(H0 + HOUR) == 0  # nothing came back to the minute table


@pytest.mark.slow  # ~20 s of lookups on 2 cores
def test_lookup_answers_are_byte_identical_after_sealing(store_url):
    """The lookup API's bodies (1 h, 24 h, 7 d; chart summed in the store and row by row) and every
    raw row, before and after every hour older than a day is sealed: the same bytes."""
    from tests.test_storage_migration import NOW, _fill, answers

    key, _ = _fill(store_url)
    store = open_store(store_url)
    try:
        before = answers(store, key)
        r = asyncio.run(seal_once(store, now_us=NOW, pause_s=0))
        assert r.done and r.rows > 1000 and r.kept > 500  # the minute scores the lookups kept, too
        after = answers(store, key)
        for name in before:
            assert after[name] == before[name], name
    finally:
        store.close()


def test_settled_days_of_fifteen_minute_rollups_seal_and_read_the_same(store):
    """15-minute rollups of days below the settled mark are sealed per agent-day; old windows read
    the same bytes; settling again unseals the day first; retention drops whole expired days."""
    from tests.test_rollup_tiers import B0, blocks_batch

    k = store.upsert_agent(AgentInfo("blocks"), 1)
    store.commit_batches([PendingBatch(k, 1, 1, blocks_batch(1, 3))])
    assert asyncio.run(settle_once(store, now_us=B0 + 9 * DAY, pause_s=0)).done
    settled = store.rollup_mark(tiers.BLOCKS_SETTLED)
    store.raise_mark(tiers.MINUTES_FLOOR, settled)  # the minutes expired: old windows read the blocks
    before = read(store)
    assert {r[5] for r in before} == {ru.BLOCK_US} and len(before) > 10
    r = asyncio.run(seal_once(store, now_us=B0 + 9 * DAY, pause_s=0))
    assert r.done and r.blocks == len(before)  # (and the minutes, below the floor, sealed too)
    assert store.rollup_mark(sealed.BLOCK_DAYS.mark) == B0 - B0 % DAY + DAY
    assert read(store) == before and read(store, B0 + ru.BLOCK_US, B0 + 2 * ru.BLOCK_US, kinds=("rtt",)) == [
        x for x in before if x[1] == B0 + ru.BLOCK_US and x[2] == "rtt"
    ]
    store.write_blocks(ru.block_rollups(store.rollups(B0, B0 + 3 * ru.BLOCK_US, k)))  # settled again
    assert read(store) == before
    assert store.seal_rollups(settled, 10_000, tiers.BLOCKS) == len(before)  # it had come back whole
    deleted = 0
    while n := store.delete_blocks_before(B0 - B0 % DAY + DAY, 500):
        deleted += n
    assert deleted == 1 and read(store) == []


def test_two_collectors_one_sealing_one_taking_late_batches_keep_each_key_once(store_url, tmp_path):
    """Sealing in one collector while another commits late batches into the same agent-hours (a
    spool replaying): every key ends in one place, and reads equal a store that never sealed."""
    import threading
    import time

    sealer, writer = open_store(store_url), open_store(store_url)
    try:
        a, _ = fill(sealer)
        first = sum(1 for r in read(sealer) if r[1] < H0 + 2 * HOUR)
        late = [
            _batch(random.Random(100 + i), H0 + (7 * i % 110) * MIN, H0 + (7 * i % 110) * MIN + MIN, 5 * S)
            for i in range(12)
        ]
        sealed_once, written = threading.Event(), threading.Event()
        moved: list[int] = []
        errors: list[BaseException] = []

        def seal() -> None:
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:  # bounded in time; until the writer is done
                    n = sealer.seal_rollups(H0 + 2 * HOUR + 10 * MIN, max_rows=40)
                    moved.append(n)
                    if not n:
                        sealed_once.set()
                        if written.is_set():
                            return
            except BaseException as exc:  # reported below
                errors.append(exc)
                sealed_once.set()

        t = threading.Thread(target=seal)
        t.start()
        try:
            assert sealed_once.wait(60)
            for i, b in enumerate(late):  # each lands in an hour sealed (or being sealed) meanwhile
                writer.commit_batches([PendingBatch(a, 1, 1000 + i, b)])
        finally:
            written.set()
            t.join(90)
        assert not errors and not t.is_alive()
        while n := sealer.seal_rollups(H0 + 2 * HOUR + 10 * MIN):
            moved.append(n)
        assert sum(moved) > first  # late commits unsealed hours, sealed again
        with twin(store_url, tmp_path) as ref_url:
            ref = open_store(ref_url)
            try:
                fill(ref)
                for i, b in enumerate(late):
                    ref.commit_batches([PendingBatch(a, 1, 1000 + i, b)])
                want = read(ref)
            finally:
                ref.close()
        got = read(writer)
        assert len({r[:4] for r in got}) == len(got)  # no key both sealed and a row
        assert got == want
    finally:
        sealer.close()
        writer.close()


def test_kept_scores_and_merges_seal_per_agent_span_and_a_newer_row_wins(store):
    """score/kept.py's caches: minute scores sealed per agent-hour, block and hour merges per
    agent-day, read back as the same (digest, data); a row kept after sealing wins; retention drops
    whole spans."""
    from cxpulse.collector.score.kept import BLOCK_US, keep_blocks, keep_recent

    a, _ = fill(store)
    assert keep_recent(store, H0, H0 + 3 * HOUR)[0] > 250
    for blk in range(H0, H0 + 3 * HOUR, BLOCK_US):
        keep_blocks(store, blk)
    scores, merges, hours = store.kept_scores(0, FAR), store.kept_merges(0, FAR), store.kept_hour_merges(0, FAR)
    assert len(scores) >= 300 and len(merges) >= 12 and len(hours) >= 3  # the loop keeps each hour it ends
    mine = store.kept_scores(H0 + 30 * MIN, H0 + 90 * MIN, a)
    r = asyncio.run(seal_once(store, now_us=H0 + 2 * HOUR + DAY, max_rows=50, pause_s=0))
    # the hours ending by H0+2h (all desks), and the merges of whole days before that: none yet
    assert r.done and r.kept == sum(1 for (_, m) in scores if m < H0 + 2 * HOUR)
    assert store.kept_scores(0, FAR) == scores and store.kept_merges(0, FAR) == merges
    assert store.kept_hour_merges(0, FAR) == hours
    assert store.kept_scores(H0 + 30 * MIN, H0 + 90 * MIN, a) == mine
    # A collector keeps a minute again (new inputs) after it was sealed: the row is what reads see.
    newer = (a, H0 + 10 * MIN, b"\x01" * 16, b"newer")
    store.keep_scores([newer])
    assert store.kept_scores(H0, H0 + HOUR, a)[(a, H0 + 10 * MIN)] == (b"\x01" * 16, b"newer")
    assert store.seal_kept("minute_scores", a, H0 + 2 * HOUR, 100) == 1  # merged into the sealed hour
    assert store.kept_scores(H0, H0 + HOUR, a)[(a, H0 + 10 * MIN)] == (b"\x01" * 16, b"newer")
    assert store.kept_scores(0, FAR) == {**scores, (a, H0 + 10 * MIN): (b"\x01" * 16, b"newer")}
    # Whole days of merges, then retention of whole spans.
    r = asyncio.run(seal_once(store, now_us=H0 + 3 * DAY, pause_s=0))
    assert r.kept == len(merges) + len(hours) + sum(1 for (_, m) in scores if m >= H0 + 2 * HOUR)
    assert store.kept_merges(0, FAR) == merges and store.kept_hour_merges(0, FAR) == hours
    while store.delete_rollups_before(H0 + HOUR + 30 * MIN, 500):
        pass
    left = store.kept_scores(0, FAR)
    assert left and min(m for (_, m) in left) == H0 + HOUR  # the first hour went whole, the second stays
