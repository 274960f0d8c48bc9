"""Group commit: batches wait for a durable commit; a failed commit never lets a later seq jump over it."""

from __future__ import annotations

import asyncio

import pytest

from cxpulse.collector.ingest.writer import StoreWriter
from cxpulse.collector.store import AgentInfo, PendingBatch, open_store
from cxpulse.v1 import payload as p

T0 = 1_790_000_000_000_000


def batch(n: int, start: int) -> p.SampleBatch:
    s = p.Series(target="gw", address="127.0.0.1", method=p.METHOD_ICMP_RAW)
    for i in range(n):
        s.add(start + i * 1_000_000, 100 + i)
    return p.SampleBatch([s])


def test_failed_commit_fails_the_streams_later_batches_but_not_other_streams(tmp_path):
    store = open_store(str(tmp_path / "c.sqlite"))
    writer = StoreWriter(store)
    writer.start()
    try:
        k = store.upsert_agent(AgentInfo("a1"), 1)
        k2 = store.upsert_agent(AgentInfo("a2"), 1)

        async def run():
            ok = await writer.commit(PendingBatch(k, 1, 1, batch(3, T0), stream=7))
            bad_batch = batch(3, T0 + 10**7)
            bad_batch.series[0].rtt_us[1] = object()  # cannot be bound: this commit fails
            bad = asyncio.ensure_future(writer.commit(PendingBatch(k, 1, 2, bad_batch, stream=7)))
            await asyncio.sleep(0.05)  # the bad group is done before the next one is queued
            later = asyncio.ensure_future(writer.commit(PendingBatch(k, 1, 3, batch(3, T0 + 2 * 10**7), stream=7)))
            other = asyncio.ensure_future(writer.commit(PendingBatch(k2, 1, 1, batch(3, T0), stream=8)))
            results = await asyncio.gather(bad, later, other, return_exceptions=True)
            return ok, results

        ok, (bad, later, other) = asyncio.run(run())
        assert ok.stored and isinstance(bad, Exception) and isinstance(later, RuntimeError)
        assert "earlier batch of this stream" in str(later)
        assert other.stored
        assert store.committed_seq(k, 1) == 1  # seq 2 was not stored, so seq 3 must not be either
        assert store.sample_count(k) == 3 and store.sample_count(k2) == 3
    finally:
        writer.stop()
        store.close()


def test_many_waiting_batches_share_commits(tmp_path):
    store = open_store(str(tmp_path / "c.sqlite"))
    writer = StoreWriter(store)
    writer.start()
    try:
        keys = [store.upsert_agent(AgentInfo(f"a{i}"), 1) for i in range(50)]

        async def run():
            return await asyncio.gather(*(writer.commit(PendingBatch(k, 1, 1, batch(10, T0), stream=i + 1))
                                          for i, k in enumerate(keys)))

        done = asyncio.run(run())
        assert all(b.stored for b in done)
        assert writer.batches_committed == 50 and writer.commits < 50  # grouped, not one fsync each
        print(f"50 batches in {writer.commits} commits")
    finally:
        writer.stop()
        store.close()
