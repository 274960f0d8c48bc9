"""The raw tier through the Store interface: batches land as sent, compaction folds settled hours into
one chunk per series and hour, legacy sample rows are read and migrated, retention cuts them all,
and every read answers the same before and after (docs/storage-chunks.md).

Written against the Store interface only: another backend reuses these tests by importing them and
overriding the ``store`` and ``write_legacy`` fixtures.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest

from cxpulse.collector.store import AgentInfo, PendingBatch, Row, Store, open_store, raw
from cxpulse.collector.store.capabilities import Buckets
from cxpulse.v1 import payload as p
from cxpulse.v1.kinds import KINDS

S = 1_000_000
HOUR = raw.HOUR_US
H0 = 1_790_002_800 * S  # an hour's start (UTC)
FAR = 2**62
SETTLED = raw.SETTLE_US  # an hour is folded once it ended this long ago

LegacyWriter = Callable[[Store, int, p.SampleBatch], None]


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    st = open_store(str(tmp_path / "raw.sqlite"))
    yield st
    st.close()


@pytest.fixture
def write_legacy() -> LegacyWriter:
    """Write a batch's samples as the previous collector did: one samples_<kind> row per sample."""
    from cxpulse.collector.store.sqlite import _insert_sql

    def write(store, agent_key: int, batch: p.SampleBatch) -> None:
        with store._lock:
            db = store._db
            db.execute("BEGIN IMMEDIATE")
            for s in batch.series:
                sid = store._series_id(agent_key, s.target, s.address, s.kind, s.method, s.hop or 0)
                db.executemany(_insert_sql(s.kind), zip([sid] * len(s), s.ts_us, *s.cols.values()))
            db.execute("COMMIT")

    return write


def desk_batch(rng: random.Random, start: int, seconds: int) -> p.SampleBatch:
    """``seconds`` of a small desk from ``start``: two RTT series at 1 s (losses, a hop that often
    stays silent), Wi-Fi every 5 s and an app check every 30 s, with timer jitter."""
    gw = p.Series("gateway", "10.0.0.1", p.METHOD_ICMP_RAW)
    hop = p.Series("isp", "100.64.0.1", p.METHOD_ICMP_RAW, hop=2)
    wifi = p.Series("wlan0", "wlan0", "nl80211", kind="wifi")
    app = p.Series("crm", "203.0.113.20", "https", kind="http")
    for i in range(seconds):
        t = start + i * S + rng.randrange(2_000)
        gw.add(t, None if rng.random() < 0.05 else 2_000 + rng.randrange(800))
        hop.add(t + 40, None if rng.random() < 0.3 else 9_000 + rng.randrange(3_000))
        if i % 5 == 0:
            conn = 0 if rng.random() < 0.1 else 1
            wifi.add(t + 90, conn=conn, ssid="corp" if conn else None, rssi=-55 - rng.randrange(20) if conn else None)
        if i % 30 == 0:
            app.add(t + 300, dns=1_000, tcp=9_000, total=200_000 + rng.randrange(50_000), status=200, ver="HTTP/2")
    return p.SampleBatch([gw, hop, wifi, app])


def expected_rows(batches: list[p.SampleBatch], kind: str, since: int = 0, until: int = FAR) -> list[Row]:
    """What rows() must answer for batches with distinct timestamps per series: by target, then time."""
    out = [
        Row(s.target, s.address, s.method, s.hop, t, {c: s.cols[c][i] for c in KINDS[kind]})
        for b in batches
        for s in b.series
        if s.kind == kind
        for i, t in enumerate(s.ts_us)
        if since <= t < until
    ]
    return sorted(out, key=lambda r: (r.target, r.ts_us))


WINDOWS = [(0, FAR), (H0 + 17 * S, H0 + HOUR + 100 * S), (H0 + HOUR, H0 + 2 * HOUR), (H0 + 2 * HOUR - 1, FAR)]


def answers(store: Store, k: int) -> list:
    """Everything a reader sees of the agent's raw samples, over windows that cut hours and batches."""
    out: list = [store.sample_count(k), store.sample_count()]
    for since, until in WINDOWS:
        out.append(store.rtt_rows(k, since, until))
        out.extend(store.rows(k, kind, since, until) for kind in KINDS)
        if isinstance(store, Buckets):
            out.append(store.buckets(k, since, until, since - 7 * S, 60 * S))
    return out


def commit_desk(store: Store, k: int, start: int, count: int, seq: int = 1, seed: int = 1) -> list[p.SampleBatch]:
    rng = random.Random(seed)
    batches = [desk_batch(rng, start + i * 30 * S, 30) for i in range(count)]
    # The clock of the commit: settling counts from it (and from the hour's end).
    store.commit_batches([PendingBatch(k, 1, seq + i, b) for i, b in enumerate(batches)], start + count * 30 * S)
    return batches


def compact_all(store: Store, now_us: int, max_rows: int = 20_000) -> list[raw.CompactStep]:
    steps = []
    for _ in range(1_000):
        steps.append(store.compact_raw(now_us, max_rows))
        if steps[-1].done:
            return steps
    raise AssertionError("compaction never said done")


def test_commit_stores_what_was_sent(store):
    k = store.upsert_agent(AgentInfo("desk"), 1)
    batches = commit_desk(store, k, H0 + 5 * S, 3)
    for kind in KINDS:
        assert store.rows(k, kind, 0, FAR) == expected_rows(batches, kind)
    since, until = H0 + 20 * S, H0 + 50 * S
    assert store.rows(k, "rtt", since, until) == expected_rows(batches, "rtt", since, until)
    assert [(r.target, r.ts_us, r.rtt_us, r.hop) for r in store.rtt_rows(k, 0, FAR)] == [
        (r.target, r.ts_us, r.values["rtt"], r.hop) for r in expected_rows(batches, "rtt")
    ]
    sent = sum(len(s) for b in batches for s in b.series)
    assert store.sample_count(k) == sent == store.sample_count()
    progress = store.raw_progress()
    assert (progress.landing_rows, progress.chunks, progress.legacy_rows_left) == (3, 0, 0)


def test_the_payload_as_received_is_what_is_read(store):
    k = store.upsert_agent(AgentInfo("desk"), 1)
    batch = desk_batch(random.Random(3), H0, 30)
    data = p.encode(batch, version=2)
    store.commit_batches([PendingBatch(k, 1, 1, p.decode(data), payload=data)])
    assert store.rows(k, "wifi", 0, FAR) == expected_rows([batch], "wifi")
    assert store.sample_count(k) == sum(len(s) for s in batch.series)


def test_a_replayed_seq_stores_nothing_new(store):
    k = store.upsert_agent(AgentInfo("desk"), 1)
    commit_desk(store, k, H0, 2)
    before = answers(store, k)
    again = [PendingBatch(k, 1, 2, desk_batch(random.Random(9), H0 + 60 * S, 30))]
    store.commit_batches(again)
    assert again[0].stored is False and again[0].committed_seq == 2
    assert answers(store, k) == before and store.raw_progress().landing_rows == 2
    compact_all(store, H0 + 5 * HOUR)
    store.commit_batches([PendingBatch(k, 1, 1, desk_batch(random.Random(9), H0, 30))])  # after compaction too
    assert answers(store, k) == before


def test_compaction_folds_settled_hours_and_answers_the_same(store):
    k = store.upsert_agent(AgentInfo("desk"), 1)
    other = store.upsert_agent(AgentInfo("other"), 1)
    commit_desk(store, other, H0, 4, seed=5)
    commit_desk(store, k, H0 + HOUR - 600 * S, 60)  # 10 min of hour 0, 20 of hour 1 (one batch straddles)
    commit_desk(store, k, H0 + 2 * HOUR + 30 * S, 4, seq=100)  # hour 2: not settled below
    before = answers(store, k)

    early = compact_all(store, H0 + 2 * HOUR + SETTLED - 1)  # hour 1 ended, but not SETTLE_US ago
    assert sum(s.landing_rows for s in early) == 20 + 4  # hour 0's batches of both agents
    assert store.raw_progress().chunks == 2 * 4 and answers(store, k) == before
    steps = compact_all(store, H0 + 2 * HOUR + SETTLED)
    assert sum(s.landing_rows for s in steps) == 40  # hour 1's
    progress = store.raw_progress()
    assert progress.landing_rows == 4  # hour 2's batches wait
    assert progress.chunks == 4 * 3  # four series, hours 0 and 1 of the desk and hour 0 of the other
    assert answers(store, k) == before
    again = store.compact_raw(H0 + 2 * HOUR + SETTLED)
    assert again == raw.CompactStep(0, 0, 0, True)  # idempotent

    compact_all(store, H0 + 3 * HOUR + SETTLED)
    assert store.raw_progress().landing_rows == 0 and store.raw_progress().chunks == 4 * 4
    assert answers(store, k) == before


def test_a_late_batch_wins_over_the_chunk_and_joins_it(store):
    k = store.upsert_agent(AgentInfo("desk"), 1)
    commit_desk(store, k, H0, 4)
    compact_all(store, H0 + 2 * HOUR)
    late = p.Series("gateway", "10.0.0.1", p.METHOD_ICMP_RAW)
    first = store.rows(k, "rtt", 0, FAR)[0]
    late.add(first.ts_us, 77_777)  # the same timestamp, sent again (an agent that replays with a new seq)
    late.add(H0 + 30 * 60 * S, 1)
    store.commit_batches([PendingBatch(k, 2, 1, p.SampleBatch([late]))], H0 + HOUR)
    got = store.rows(k, "rtt", first.ts_us, first.ts_us + 1)
    assert [r.values["rtt"] for r in got] == [77_777]
    before = answers(store, k)
    chunks_before = store.raw_progress().chunks
    compact_all(store, H0 + 2 * HOUR)
    assert answers(store, k)[2:] == before[2:] and store.raw_progress().chunks == chunks_before  # rewritten
    assert store.sample_count(k) == before[0] - 1  # a landing row counts the sample it replaces until folded


def test_legacy_rows_are_read_then_migrated_resumably(store, write_legacy):
    k = store.upsert_agent(AgentInfo("desk"), 1)
    rng = random.Random(7)
    old = [desk_batch(rng, H0 + i * 120 * S, 120) for i in range(60)]  # hours 0 and 1 as rows
    for b in old:
        write_legacy(store, k, b)
    new = commit_desk(store, k, H0 + 2 * HOUR - 300 * S, 12, seed=8)  # 5 min of hour 1, 1 min of hour 2
    for kind in KINDS:
        assert store.rows(k, kind, 0, FAR) == expected_rows(old + new, kind)
    before = answers(store, k)
    left = store.raw_progress().legacy_rows_left
    assert left > 0

    steps = compact_all(store, H0 + 3 * HOUR + SETTLED, max_rows=500)
    legacy = sum(s.legacy_rows for s in steps)
    assert legacy == sum(len(s) for b in old for s in b.series)
    assert sum(1 for s in steps if s.legacy_rows) > 4  # small steps: the walk resumed several times
    assert all(s.legacy_rows < 500 + 3_700 for s in steps)  # bounded: ~max_rows plus one series-hour
    progress = store.raw_progress()
    assert progress.legacy_rows_left == 0 and progress.landing_rows == 0
    assert progress.chunks == 4 * 3  # four series, three hours: one chunk per series-hour
    assert answers(store, k) == before
    assert compact_all(store, H0 + 3 * HOUR + SETTLED)[-1] == raw.CompactStep(0, 0, 0, True)


def test_legacy_rows_lose_to_landing_and_chunks_at_equal_times(store, write_legacy):
    k = store.upsert_agent(AgentInfo("desk"), 1)
    old = p.Series("gateway", "10.0.0.1", p.METHOD_ICMP_RAW)
    for i in range(5):
        old.add(H0 + i * S, 100 + i)
    write_legacy(store, k, p.SampleBatch([old]))
    new = p.Series("gateway", "10.0.0.1", p.METHOD_ICMP_RAW)
    new.add(H0 + 2 * S, 9)
    store.commit_batches([PendingBatch(k, 1, 1, p.SampleBatch([new]))], H0 + 10 * S)
    want = [100, 101, 9, 103, 104]
    assert [r.rtt_us for r in store.rtt_rows(k, 0, FAR)] == want
    step = store.compact_raw(H0 + HOUR + SETTLED, max_rows=1)  # legacy first: the chunk is written before
    assert step.legacy_rows == 5 and [r.rtt_us for r in store.rtt_rows(k, 0, FAR)] == want
    compact_all(store, H0 + HOUR + SETTLED)
    assert [r.rtt_us for r in store.rtt_rows(k, 0, FAR)] == want and store.raw_progress().chunks == 1


def test_only_settled_legacy_hours_are_folded(store, write_legacy):
    k = store.upsert_agent(AgentInfo("desk"), 1)
    write_legacy(store, k, desk_batch(random.Random(1), H0 + HOUR - 60 * S, 120))
    before = answers(store, k)
    steps = compact_all(store, H0 + 2 * HOUR + SETTLED - 1)  # hour 1 not settled: its rows stay rows
    assert steps[-1].done and store.raw_progress().legacy_rows_left > 0
    assert store.raw_progress().chunks == 4 and answers(store, k) == before
    compact_all(store, H0 + 2 * HOUR + SETTLED)
    assert store.raw_progress().legacy_rows_left == 0 and answers(store, k) == before


def test_retention_deletes_chunks_and_landing_rows(store, write_legacy):
    k = store.upsert_agent(AgentInfo("desk"), 1)
    commit_desk(store, k, H0, 4)  # hour 0
    commit_desk(store, k, H0 + 3 * HOUR, 2, seq=10)  # hour 3
    compact_all(store, H0 + 2 * HOUR)  # hour 0 in chunks, hour 3 still landing
    write_legacy(store, k, desk_batch(random.Random(2), H0 + HOUR, 10))  # hour 1 as rows
    assert store.raw_progress().chunks == 4

    cutoff = H0 + 2 * HOUR
    while store.delete_kind_before("rtt", cutoff, 3):
        pass
    assert store.rows(k, "rtt", 0, cutoff) == [] and store.rows(k, "rtt", cutoff, FAR) != []
    assert store.rows(k, "wifi", 0, cutoff) != []  # other kinds keep their own horizon
    while store.delete_raw_before(cutoff, 3):
        pass
    assert all(store.rows(k, kind, 0, cutoff) == [] for kind in KINDS)
    assert store.raw_progress().chunks == 0 and store.raw_progress().landing_rows == 2
    kept = store.sample_count(k)
    assert kept == sum(len(r) for r in [store.rows(k, kind, 0, FAR) for kind in KINDS]) > 0

    while store.delete_raw_before(H0 + 4 * HOUR, 1_000):  # landing rows that were never compacted go too
        pass
    assert store.sample_count(k) == 0 and store.raw_progress().landing_rows == 0
