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
            return await asyncio.gather(
                *(writer.commit(PendingBatch(k, 1, 1, batch(10, T0), stream=i + 1)) for i, k in enumerate(keys))
            )

        done = asyncio.run(run())
        assert all(b.stored for b in done)
        assert writer.batches_committed == 50 and writer.commits < 50  # grouped, not one fsync each
        print(f"50 batches in {writer.commits} commits")
    finally:
        writer.stop()
        store.close()


def test_large_payloads_decode_in_a_worker_with_the_inline_results_and_errors():
    """Offloaded decode (collector/ingest/decode_pool.py) answers exactly as payload.decode does,
    errors included, and a killed worker costs no batch: that one is decoded inline."""
    import msgpack

    from cxpulse.collector.ingest import decode_pool

    big = p.encode(batch(2000, T0))
    assert len(big) >= decode_pool.OFFLOAD_MIN_BYTES
    bad_value = bytearray(big)
    bad_value[bad_value.index(b"\xa1v\x01") + 2] = 9  # schema version 9: a version mismatch
    too_many = big
    future = msgpack.packb({"v": 1, "t0": T0, "s": "x" * 5000})

    async def main() -> None:
        got = await decode_pool.decode(big, 100_000)
        want = p.decode(big, max_samples=100_000)
        assert (got.series, got.events, got.paths) == (want.series, want.events, want.paths)
        assert got.rollups, "the worker builds the batch's rollups too"
        for raw, limit in ((bytes(bad_value), 100_000), (too_many, 10), (future, 100_000)):
            with pytest.raises(p.PayloadError) as inline:
                p.decode(raw, max_samples=limit)
            with pytest.raises(p.PayloadError) as offloaded:
                await decode_pool.decode(raw, limit)
            assert (str(offloaded.value), offloaded.value.version_mismatch) == (
                str(inline.value),
                inline.value.version_mismatch,
            )
        pool = decode_pool._get_pool()
        assert pool is not None and pool._processes, "the large payload did not go to a worker"
        for proc in list(pool._processes.values()):
            proc.kill()
            proc.join(10)
        for _ in range(2):  # inline the first time, then the pool restarts
            again = await decode_pool.decode(big, 100_000)
            assert (again.series, again.events, again.paths) == (want.series, want.events, want.paths)

    try:
        asyncio.run(main())
    finally:
        decode_pool.shutdown()
