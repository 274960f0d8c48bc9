"""The raw tier on PostgreSQL: landing rows, hour chunks, the legacy rows' migration, retention, and
two collectors compacting one database at once (docs/storage-chunks.md).

Needs CXPULSE_TEST_POSTGRES (as tests/test_store.py); each test gets a schema of its own.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from itertools import pairwise

import pytest

from cxpulse.collector.store import AgentInfo, PendingBatch
from cxpulse.collector.store import raw as rawmod
from cxpulse.v1 import payload as p
from cxpulse.v1.kinds import KINDS
from tests.stores import fresh_schema, postgres_url
from tests.test_raw_tier import (  # noqa: F401  (the Store contract, collected here with the fixtures below)
    test_a_late_batch_wins_over_the_chunk_and_joins_it,
    test_a_replayed_seq_stores_nothing_new,
    test_commit_stores_what_was_sent,
    test_compaction_folds_settled_hours_and_answers_the_same,
    test_legacy_rows_are_read_then_migrated_resumably,
    test_legacy_rows_lose_to_landing_and_chunks_at_equal_times,
    test_only_settled_legacy_hours_are_folded,
    test_retention_deletes_chunks_and_landing_rows,
    test_the_payload_as_received_is_what_is_read,
)

psycopg = pytest.importorskip("psycopg")
from cxpulse.collector.store.postgres import PostgresStore  # noqa: E402  (needs psycopg)

S = 1_000_000
HOUR = rawmod.HOUR_US
H0 = 1_790_002_800 * S  # an hour's start (UTC)
LATER = H0 + 10 * HOUR  # a clock at which every hour below has settled
FAR = 2**62


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema(postgres_url()) as (_, got):
        yield got


@pytest.fixture
def store(url) -> Iterator[PostgresStore]:
    st = PostgresStore(url)
    yield st
    st.close()


@pytest.fixture
def write_legacy():
    """Write a batch's samples as the previous collector did: one samples_<kind> row per sample."""

    def write(store: PostgresStore, agent_key: int, batch: p.SampleBatch) -> None:
        with store._lock, store._db.transaction(), store._db.cursor() as cur:
            for s in batch.series:
                sid = store._series_id(cur, [], agent_key, s.target, s.address, s.kind, s.method, s.hop or 0)
                names = ", ".join(f'"{c}"' for c in KINDS[s.kind])
                cur.executemany(
                    f"INSERT INTO {store._s}.samples_{s.kind} (series, ts_us, {names})"
                    f" VALUES (%s, %s{', %s' * len(KINDS[s.kind])})",
                    list(zip([sid] * len(s), s.ts_us, *s.cols.values())),
                )

    return write


def desk_batch(rng: random.Random, start: int, seconds: int) -> p.SampleBatch:
    """``seconds`` of a small desk from ``start``: two RTT series at 1 s (losses, a hop), Wi-Fi every
    5 s and the device every 10 s, with timer jitter."""
    gw = p.Series("gateway", "10.0.0.1", "icmp_raw")
    hop = p.Series("isp", "100.64.0.1", "icmp_raw", hop=2)
    wifi = p.Series("wlan0", "wlan0", "nl80211", kind="wifi")
    dev = p.Series("device", "local", "os", kind="device")
    for i in range(seconds):
        t = start + i * S + rng.randrange(2000)
        gw.add(t, rng.randrange(300, 5000))
        hop.add(t + 40, None if rng.random() < 0.1 else rng.randrange(8000, 90000))
        if i % 5 == 0:
            wifi.add(t + 800, conn=1, ssid="corp", bssid=rng.choice(("aa:01", "aa:02")), rssi=-rng.randrange(40, 80))
        if i % 10 == 0:
            dev.add(t + 1500, cpu=rng.randrange(20, 990), mem=640, **{"if": "wlan0"})
    return p.SampleBatch([gw, hop, wifi, dev])


def fill(store: PostgresStore, agent: str, hours: int, seed: int = 1, batch_s: int = 300) -> int:
    """``hours`` of a desk from H0 committed in ``batch_s`` batches; returns the agent's key."""
    rng = random.Random(seed)
    key = store.upsert_agent(AgentInfo(agent), H0)
    for seq, t in enumerate(range(H0, H0 + hours * HOUR, batch_s * S), start=1):
        store.commit_batches([PendingBatch(key, 1, seq, desk_batch(rng, t, batch_s))], now_us=t + batch_s * S)
    return key


def everything(store: PostgresStore, key: int) -> dict[str, list]:
    return {kind: store.rows(key, kind, 0, FAR) for kind in KINDS}


def sql(url: str, query: str, args: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as db:
        return list(db.execute(query, args).fetchall()) if query.lstrip().upper().startswith("SELECT") else []


def run(url: str, statement: str, args: tuple = ()) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(statement, args)


def compact_all(store: PostgresStore, now_us: int = LATER, max_rows: int = 20_000) -> list[rawmod.CompactStep]:
    steps = []
    for _ in range(1000):
        steps.append(store.compact_raw(now_us, max_rows))
        if steps[-1].done:
            return steps
    raise AssertionError("compaction never finished")


def one_chunk_per_series_hour(url: str) -> None:
    got = sql(url, "SELECT series, start_us - start_us %% %s, count(*) FROM chunks GROUP BY 1, 2", (HOUR,))
    assert got and all(n == 1 for _, _, n in got), got


def test_a_commit_lands_one_row_per_batch_and_reads_as_rows(store, url):
    key = fill(store, "a1", 1, batch_s=600)
    landed = sql(url, "SELECT seq, start_us, end_us, n, length(payload) FROM batches ORDER BY id")
    assert [r[0] for r in landed] == list(range(1, 7)) and all(r[4] > 0 for r in landed)
    assert all(H0 <= r[1] <= r[2] < H0 + HOUR for r in landed)
    assert sum(r[3] for r in landed) == store.sample_count(key) == store.sample_count()
    assert not any(sql(url, f"SELECT 1 FROM samples_{kind} LIMIT 1") for kind in KINDS)  # no sample rows
    rtt = store.rtt_rows(key, H0, H0 + HOUR)
    assert len(rtt) == 2 * 3600 and [r.target for r in rtt] == sorted(r.target for r in rtt)
    assert {r.hop for r in rtt if r.target == "isp"} == {2} and {r.hop for r in rtt if r.target == "gateway"} == {None}
    assert all(a.ts_us < b.ts_us for a, b in pairwise(rtt) if a.target == b.target)


def test_compaction_folds_settled_hours_into_one_chunk_each_and_changes_no_answer(store, url):
    key = fill(store, "a1", 3)
    before, count = everything(store, key), store.sample_count(key)
    early = store.compact_raw(H0 + HOUR + rawmod.SETTLE_US - 1)  # the first hour has not settled yet
    assert (early.landing_rows, early.chunks_written, early.done) == (0, 0, True)
    steps = compact_all(store)
    assert sum(s.landing_rows for s in steps) == 36 and sum(s.legacy_rows for s in steps) == 0
    assert sum(s.chunks_written for s in steps) >= 3 * 4  # an hour split by a step is written twice
    assert sql(url, "SELECT count(*) FROM chunks") == [(3 * 4,)]  # four series, three hours
    assert not sql(url, "SELECT id FROM batches")
    one_chunk_per_series_hour(url)
    assert everything(store, key) == before and store.sample_count(key) == count
    assert store.rows(key, "rtt", H0 + HOUR - 5 * S, H0 + HOUR + 5 * S) == [
        r for r in before["rtt"] if H0 + HOUR - 5 * S <= r.ts_us < H0 + HOUR + 5 * S
    ]
    assert store.compact_raw(LATER) == rawmod.CompactStep(done=True)  # idempotent: nothing left


def test_compaction_is_bounded_and_a_late_batch_merges_into_its_hour(store, url):
    key = fill(store, "a1", 2)
    steps = compact_all(store, max_rows=3_000)
    assert len(steps) > 3 and all(s.landing_rows * 300 * 2 <= 3_000 + 300 * 2.6 for s in steps)
    # A late replay of the first hour's middle, with other values: the later write wins.
    late = desk_batch(random.Random(9), H0 + 1800 * S, 60)
    store.commit_batches([PendingBatch(key, 2, 1, late)], now_us=H0 + 5 * HOUR)
    mixed = store.rows(key, "rtt", 0, FAR)
    want = {(s.target, t): v for s in late.series if s.kind == "rtt" for t, v in zip(s.ts_us, s.cols["rtt"])}
    assert {(r.target, r.ts_us): r.values["rtt"] for r in mixed if (r.target, r.ts_us) in want} == want
    assert store.compact_raw(H0 + 5 * HOUR + rawmod.SETTLE_US - 1).landing_rows == 0  # committed too recently
    assert store.compact_raw(LATER).landing_rows == 1
    one_chunk_per_series_hour(url)
    assert store.rows(key, "rtt", 0, FAR) == mixed


def legacy_rows(url: str, key: int, start: int, seconds: int) -> list[tuple[int, int]]:
    """RTT rows of the gateway series as the previous version wrote them; returns (ts, rtt)."""
    (sid,) = sql(url, "SELECT id FROM series WHERE agent = %s AND target = 'gateway'", (key,))[0]
    rows = [(start + i * S + 7, 100 + i) for i in range(seconds)]
    with psycopg.connect(url, autocommit=True) as db:
        with db.cursor() as cur:
            cur.executemany(
                "INSERT INTO samples_rtt (series, ts_us, rtt) VALUES (%s, %s, %s)", [(sid, *r) for r in rows]
            )
    return rows


def test_legacy_rows_are_read_then_migrated_first_and_lose_to_landing_on_an_equal_timestamp(store, url):
    key = fill(store, "a1", 2)
    old = legacy_rows(url, key, H0 - 2 * HOUR, 7200)  # two hours before the landing data
    clash_ts = store.rtt_rows(key, H0, H0 + S)[0].ts_us
    run(
        url,
        "INSERT INTO samples_rtt (series, ts_us, rtt) SELECT id, %s, 1 FROM series WHERE target = 'gateway'",
        (clash_ts,),
    )  # a legacy row at a landing sample's timestamp: the landing sample wins, before and after
    before, count = everything(store, key), store.sample_count(key)
    assert count == 7200 + 1 + sum(n for (n,) in sql(url, "SELECT n FROM batches"))
    assert (
        [r.values["rtt"] for r in before["rtt"] if r.ts_us == clash_ts]
        == [store.rtt_rows(key, clash_ts, clash_ts + 1)[0].rtt_us]
        != [1]
    )
    assert [(r.ts_us, r.rtt_us) for r in store.rtt_rows(key, 0, H0) if r.target == "gateway"] == old
    progress = store.raw_progress()
    assert progress.legacy_rows_left > 0 and progress.landing_rows == 24 and progress.chunks == 0
    first = store.compact_raw(LATER, max_rows=3_000)
    assert first.legacy_rows == 3600 and first.landing_rows == 0 and not first.done  # one series-hour, then stop
    assert sql(url, "SELECT value FROM meta WHERE key = 'raw_migration'")[0][0].endswith(f":{H0 - HOUR}")
    steps = [first, *compact_all(store, max_rows=3_000)]
    assert sum(s.legacy_rows for s in steps) == 7201 and sum(s.landing_rows for s in steps) == 24
    assert store.raw_progress() == rawmod.RawProgress(0, 0, 4 * 2 + 2)
    one_chunk_per_series_hour(url)
    assert everything(store, key) == before and store.sample_count(key) == count - 1  # the clash is one sample


def test_legacy_rows_of_an_unsettled_hour_wait_and_are_found_again(store, url):
    key = store.upsert_agent(AgentInfo("a1"), H0)
    store.commit_batches([PendingBatch(key, 1, 1, desk_batch(random.Random(1), H0, 3))], now_us=H0)
    old = legacy_rows(url, key, H0 + 5 * HOUR, 10)
    assert store.compact_raw(H0 + 5 * HOUR).legacy_rows == 0  # the rows' hour is the current one
    assert store.compact_raw(LATER).legacy_rows == 10  # the walk starts over and finds them
    assert [(r.ts_us, r.rtt_us) for r in store.rtt_rows(key, H0 + HOUR, FAR)] == old


def test_retention_deletes_old_chunks_and_landing_by_kind_and_at_once(store, url):
    key = fill(store, "a1", 3)
    compact_all(store, now_us=H0 + 2 * HOUR + rawmod.SETTLE_US)  # hours 0 and 1 in chunks, hour 2 landing
    assert sql(url, "SELECT count(*) FROM batches")[0][0] == 12
    cutoff = H0 + HOUR + 30 * 60 * S
    while store.delete_kind_before("device", cutoff, 2):
        pass
    rows = everything(store, key)
    assert rows["device"] and min(r.ts_us for r in rows["device"]) >= H0 + HOUR  # its hour-0 chunk went
    assert min(r.ts_us for r in rows["rtt"]) < H0 + HOUR  # other kinds keep theirs
    while store.delete_kind_before("rtt", H0 + 3 * HOUR, 2):  # past the landing rows: folded, then gone
        pass
    assert not store.rows(key, "rtt", 0, FAR) and store.rows(key, "wifi", 0, FAR)
    assert not sql(url, "SELECT id FROM batches")
    store.commit_batches([PendingBatch(key, 1, 1000, desk_batch(random.Random(2), H0 + 5 * HOUR, 30))])
    while store.delete_raw_before(H0 + 6 * HOUR, 3):
        pass
    assert store.sample_count(key) == 0 and not sql(url, "SELECT id FROM chunks")


def test_two_collectors_compacting_at_once_never_lose_or_duplicate_a_sample(url):
    """Two stores (collectors) compact the same agents in threads while a third commits new batches;
    each step skips agents the other holds. Every sample is read once, before and after."""
    stores = [PostgresStore(url) for _ in range(3)]
    try:
        keys = [fill(stores[0], f"agent-{i}", 2, seed=i, batch_s=600) for i in range(6)]
        for key in keys[:3]:
            legacy_rows(url, key, H0 - HOUR, 1800)
        before = {key: everything(stores[0], key) for key in keys}
        counts = {key: stores[0].sample_count(key) for key in keys}
        barrier = threading.Barrier(3)
        errors: list[BaseException] = []
        folded = [[0, 0], [0, 0]]

        def compactor(i: int) -> None:
            try:
                barrier.wait(10)
                for _ in range(2000):
                    step = stores[i].compact_raw(LATER, 700)
                    folded[i][0] += step.legacy_rows
                    folded[i][1] += step.landing_rows
                    if step.done:
                        return
                raise AssertionError("never done")
            except BaseException as exc:
                errors.append(exc)

        def writer() -> None:
            try:
                barrier.wait(10)
                rng = random.Random(5)
                for seq in range(1, 11):
                    batches = [PendingBatch(k, 7, seq, desk_batch(rng, H0 + 3 * HOUR + seq * 60 * S, 60)) for k in keys]
                    stores[2].commit_batches(batches, now_us=LATER)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=compactor, args=(i,)) for i in (0, 1)] + [threading.Thread(target=writer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)
        assert folded[0][0] + folded[1][0] == 3 * 1800
        assert all(f[0] + f[1] > 0 for f in folded), folded  # both did work
        compact_all(stores[0], now_us=LATER + rawmod.SETTLE_US + HOUR)  # the writer's batches too
        assert not sql(url, "SELECT id FROM batches")
        one_chunk_per_series_hour(url)
        for key in keys:
            got = everything(stores[1], key)
            new = {kind: [r for r in got[kind] if r.ts_us >= H0 + 3 * HOUR] for kind in KINDS}
            assert {kind: [r for r in got[kind] if r.ts_us < H0 + 3 * HOUR] for kind in KINDS} == before[key]
            assert len(new["rtt"]) == 10 * 60 * 2
            assert stores[1].sample_count(key) == counts[key] + sum(map(len, new.values()))
    finally:
        for st in stores:
            st.close()
