"""last_seen advances while an agent streams, not only when it connects (issue 17).

A desk that says Hello once and then streams for a quarter of an hour must count as reporting
on the fleet, not as silent: the writer's group commit stamps last_seen for every agent of the
group, in the commit's own transaction. Both stores; the clock is the test's, so "15 minutes
of batches" takes no 15 minutes.
"""

from __future__ import annotations

import asyncio

from cxpulse.collector.ingest.writer import StoreWriter
from cxpulse.collector.lookup.fleet import fleet as _fleet
from cxpulse.collector.store import AgentInfo, PendingBatch, open_store
from cxpulse.v1 import payload as p

S = 1_000_000
T0 = 1_790_000_000_000_000
MINUTES = 15


def one_minute(agent: int, start_us: int) -> p.SampleBatch:
    """A minute of one-per-second gateway RTT from this desk."""
    s = p.Series(target="gateway", address="192.0.2.1", method=p.METHOD_ICMP_RAW)
    for i in range(60):
        s.add(start_us + i * S, 2000 + agent * 10 + i % 7)
    return p.SampleBatch([s])


def test_streaming_agents_stay_reporting_and_a_quiet_one_goes_silent(store_url):
    store = open_store(store_url)
    clock = [T0 / S]  # seconds, as time.time gives them
    writer = StoreWriter(store, clock=lambda: clock[0])
    writer.start()
    try:
        streaming = [store.upsert_agent(AgentInfo(f"desk-{i}", host=f"desk-{i}", site="Lisbon"), T0) for i in range(3)]
        store.upsert_agent(AgentInfo("desk-quiet", host="desk-quiet", site="Lisbon"), T0)

        async def stream() -> int:
            commits = 0
            for minute in range(MINUTES):  # bounded: MINUTES rounds of one batch per streaming desk
                clock[0] = (T0 + (minute + 1) * 60 * S) / S
                done = await asyncio.gather(
                    *(
                        writer.commit(PendingBatch(k, 1, minute + 1, one_minute(n, T0 + minute * 60 * S), stream=n + 1))
                        for n, k in enumerate(streaming)
                    )
                )
                assert all(b.stored for b in done)
                commits += 1
            return commits

        assert asyncio.run(asyncio.wait_for(stream(), 60)) == MINUTES
        now = T0 + MINUTES * 60 * S
        seen = {a.info.agent_id: a.last_seen_us for a in store.all_agents()}
        for i in range(3):
            assert seen[f"desk-{i}"] == now, "last_seen must move with every commit, not stay at the Hello"
        assert seen["desk-quiet"] == T0

        fleet = _fleet(store, 5 * 60, now)  # the fleet page's 5-minute view at the end of the stream
        assert fleet["agents_total"] == 4
        assert fleet["agents_active"] == 3, "the three streaming desks are reporting"
        assert sorted(x["agent_id"] for x in fleet["worst"]) == ["desk-0", "desk-1", "desk-2"]
        assert [x["agent_id"] for x in fleet["silent"]] == ["desk-quiet"]
    finally:
        writer.stop()
        store.close()


def test_last_seen_never_moves_back_and_counts_a_replayed_batch(store_url):
    """A commit stamped earlier than a Hello (two collectors, skewed clocks) keeps the later time;
    a batch already held (the agent resends after a lost ack) still shows the agent is alive."""
    store = open_store(store_url)
    try:
        k = store.upsert_agent(AgentInfo("a1"), T0 + 100 * S)
        store.commit_batches([PendingBatch(k, 1, 1, one_minute(0, T0))], now_us=T0 + 50 * S)
        assert store.agent("a1").last_seen_us == T0 + 100 * S
        again = PendingBatch(k, 1, 1, one_minute(0, T0))
        store.commit_batches([again], now_us=T0 + 200 * S)
        assert again.stored is False and store.agent("a1").last_seen_us == T0 + 200 * S
        store.commit_batches([PendingBatch(k, 1, 2, one_minute(0, T0 + 60 * S))])  # no clock: left alone
        assert store.agent("a1").last_seen_us == T0 + 200 * S
    finally:
        store.close()
