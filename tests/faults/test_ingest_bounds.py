"""The collector's bounds, in process: a stalled store holds the writer queue and the budget at their caps.

The store here is the real SQLite store behind a gate (the one fake: a store that waits for the
test before each commit, so that "storage is behind" happens on cue). Checked: the writer never
has more than ``max_queue`` writes outstanding, waiters are served in order (a stream's batches
reach the store in seq order even while it waits), and the byte budget hands out no more than
its capacity, first come first served, and lets one oversized batch through alone.
"""

from __future__ import annotations

import asyncio
import threading

from cxpulse.collector.ingest.service import Budget
from cxpulse.collector.ingest.writer import StoreWriter
from cxpulse.collector.store import AgentInfo, PendingBatch, open_store
from cxpulse.v1 import payload as p

T0 = 1_790_000_000_000_000


class GatedStore:
    """The SQLite store, but each commit waits until the test opens the gate."""

    def __init__(self, store):
        self._store = store
        self.gate = threading.Event()
        self.committed_seqs: list[int] = []

    def commit_batches(self, batches, now_us=None):
        self.gate.wait(10)
        self._store.commit_batches(batches, now_us)
        self.committed_seqs += [b.seq for b in batches]

    def __getattr__(self, name):
        return getattr(self._store, name)


def one_batch(i: int) -> p.SampleBatch:
    s = p.Series(target="gw", address="10.0.0.1", method=p.METHOD_ICMP_RAW)
    s.add(T0 + i * 1_000_000, 1000)
    return p.SampleBatch([s])


def test_stalled_store_caps_outstanding_writes_and_keeps_seq_order(tmp_path):
    real = open_store(str(tmp_path / "c.sqlite"))
    store = GatedStore(real)
    writer = StoreWriter(store, max_queue=8)
    writer.start()
    key = real.upsert_agent(AgentInfo("a"), 1)

    async def run():
        commits = []
        peak = 0
        for seq in range(1, 41):  # one stream submitting in order, as the ingest reader does
            submit = asyncio.ensure_future(writer.submit(PendingBatch(key, 1, seq, one_batch(seq), stream=1)))
            while not submit.done():
                peak = max(peak, writer.outstanding)
                if seq > 8 and not store.gate.is_set():
                    await asyncio.sleep(0.05)
                    assert not submit.done(), "a write was queued beyond the cap while the store stalled"
                    assert writer.outstanding == 8
                    store.gate.set()  # the store catches up
                await asyncio.sleep(0.001)
            commits.append(submit.result())
        done = await asyncio.gather(*commits)
        return peak, done

    try:
        peak, done = asyncio.run(run())
        assert peak <= 8
        assert all(b.stored for b in done)
        assert store.committed_seqs == list(range(1, 41)), "batches reached the store out of order"
        assert real.committed_seq(key, 1) == 40
    finally:
        store.gate.set()
        writer.stop()
        real.close()


def test_budget_never_exceeds_capacity_serves_in_order_and_lets_a_giant_through_alone():
    async def run():
        b = Budget(100)
        order = []

        async def take(name: str, n: int, hold: float):
            await b.acquire(n)
            order.append(name)
            assert b.used <= b.capacity
            await asyncio.sleep(hold)
            b.release(n)

        first = asyncio.ensure_future(take("first", 60, 0.05))
        await asyncio.sleep(0)
        waiters = [asyncio.ensure_future(take(n, 50, 0.01)) for n in ("second", "third")]
        giant = asyncio.ensure_future(take("giant", 10_000, 0.01))  # larger than the whole budget
        small = asyncio.ensure_future(take("small", 1, 0))  # must not overtake the ones before it
        await asyncio.sleep(0.01)
        assert b.saturated_for() > 0
        await asyncio.gather(first, *waiters, giant, small)
        return b, order

    b, order = asyncio.run(run())
    assert order == ["first", "second", "third", "giant", "small"]
    assert b.used == 0 and b.peak <= 100 and b.saturated_for() == 0


def test_a_waiter_that_goes_away_gives_its_turn_to_the_next():
    async def run():
        b = Budget(10)
        await b.acquire(10)
        gone = asyncio.ensure_future(b.acquire(5))
        next_ = asyncio.ensure_future(b.acquire(5))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        b.release(10)
        await asyncio.wait_for(next_, 1)
        return b

    b = asyncio.run(run())
    assert b.used == 5
