"""PostgreSQL-only behaviour: several collectors on one database (docs/architecture.md, decisions 3 and 4).

The shared contract is in test_store.py (run against both stores); here is what
only a shared server has: two collectors racing for the same agent's batches,
two collectors migrating one schema at once, and COPY carrying real volumes.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from cxpulse.collector.store import AgentInfo, PendingBatch, open_store
from cxpulse.v1 import payload as p
from tests.stores import fresh_schema, postgres_url
from tests.test_store import T0, sample_batch

psycopg = pytest.importorskip("psycopg")
from cxpulse.collector.store.postgres import SCHEMA_VERSION, PostgresStore  # noqa: E402  (needs psycopg)


@pytest.fixture
def pg() -> Iterator[tuple[str, str]]:
    """(schema, url) of a fresh schema, dropped after the test."""
    with fresh_schema(postgres_url()) as got:
        yield got


def run_threads(n: int, fn) -> list:
    """Run fn(i) in n threads released together; re-raise the first failure."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(10)
            results[i] = fn(i)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


def test_open_store_selects_postgres_and_the_url_schema(pg):
    schema, url = pg
    st = open_store(url)
    try:
        assert isinstance(st, PostgresStore) and st.schema == schema
    finally:
        st.close()


def test_two_collectors_replaying_the_same_agents_store_every_batch_once(pg):
    """Agents moved between collectors replay overlapping ranges; both commit at the same time."""
    _schema, url = pg
    stores = [PostgresStore(url), PostgresStore(url)]
    try:
        keys = [stores[0].upsert_agent(AgentInfo(f"agent-{i}"), 1) for i in range(3)]
        n_seq, per_batch = 60, 5

        def batch(agent: int, seq: int) -> PendingBatch:
            return PendingBatch(keys[agent], 42, seq, sample_batch(per_batch, T0 + seq * 10**8, target=f"t{seq % 4}"))

        def collector(i: int) -> list[PendingBatch]:
            """Replays in seq order per agent (as a stream does), grouped like the writer's group commit."""
            rng = random.Random(i)
            start = 1 if i == 0 else n_seq // 3  # the second collector got the agents mid-way, then replayed
            work = [batch(a, s) for s in range(start, n_seq + 1) for a in range(len(keys))]
            if i == 1:
                work = [batch(a, s) for s in range(1, n_seq + 1) for a in range(len(keys))] + work  # and again
            done: list[PendingBatch] = []
            while work:
                size = rng.randint(1, 12)
                group, work = work[:size], work[size:]
                stores[i].commit_batches(group)
                done.extend(group)
            return done

        results = run_threads(2, collector)
        stored: dict[tuple[int, int], int] = {}
        for done in results:
            for b in done:
                assert b.stored in (True, False) and b.committed_seq >= b.seq
                stored[(b.agent_key, b.seq)] = stored.get((b.agent_key, b.seq), 0) + int(b.stored)
        assert set(stored.values()) == {1}, "a batch was stored twice or never"
        assert len(stored) == len(keys) * n_seq
        for k in keys:
            assert stores[1].committed_seq(k, 42) == n_seq
            assert stores[1].sample_count(k) == n_seq * per_batch
            rows = stores[0].rtt_rows(k, 0, 1 << 62)
            assert len({(r.target, r.ts_us) for r in rows}) == len(rows) == n_seq * per_batch
    finally:
        for st in stores:
            st.close()


def test_a_collector_waits_for_the_agents_seq_row_and_then_drops_what_is_held(pg):
    """Another collector mid-commit holds the agent's seq row: we wait, then see its mark. Reads never wait."""
    schema, url = pg
    st = PostgresStore(url)
    try:
        k = st.upsert_agent(AgentInfo("a1"), 1)
        st.commit_batches([PendingBatch(k, 1, 1, sample_batch(3))])
        other = psycopg.connect(url)  # the other collector, inside its transaction
        other.execute(f'SELECT committed_seq FROM "{schema}".seqs WHERE agent = %s AND epoch = 1 FOR UPDATE', (k,))
        mine = [
            PendingBatch(k, 1, 2, sample_batch(3, T0 + 10**8)),
            PendingBatch(k, 1, 3, sample_batch(3, T0 + 2 * 10**8)),
        ]
        worker = threading.Thread(target=st.commit_batches, args=(mine,))
        worker.start()
        time.sleep(0.5)
        assert worker.is_alive(), "commit did not wait for the row lock"
        assert st.sample_count(k) == 3 and st.find_agents("a1")  # lookups are not blocked by the writer
        other.execute(f'UPDATE "{schema}".seqs SET committed_seq = 2 WHERE agent = %s AND epoch = 1', (k,))
        other.commit()  # (its samples for seq 2 would commit here too)
        other.close()
        worker.join(10)
        assert [b.stored for b in mine] == [False, True] and mine[1].committed_seq == 3
        assert st.committed_seq(k, 1) == 3 and st.sample_count(k) == 6
    finally:
        st.close()


def test_migrations_run_once_when_collectors_start_together(pg):
    schema, url = pg
    stores = run_threads(6, lambda i: PostgresStore(url))
    try:
        with psycopg.connect(url) as db:
            versions = [r[0] for r in db.execute(f'SELECT version FROM "{schema}".schema_migrations ORDER BY version')]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        k = stores[3].upsert_agent(AgentInfo("a1"), 1)
        stores[5].commit_batches([PendingBatch(k, 1, 1, sample_batch(4))])
        assert stores[0].sample_count() == 4
    finally:
        for st in stores:
            st.close()


def test_newer_schema_is_refused(pg):
    schema, url = pg
    PostgresStore(url).close()
    with psycopg.connect(url) as db:
        db.execute(f'INSERT INTO "{schema}".schema_migrations (version) VALUES (99)')
    with pytest.raises(RuntimeError, match="newer than this collector"):
        PostgresStore(url)


def test_a_kind_column_added_in_kinds_py_is_added_at_open(pg):
    """kinds.py grows additively; an existing schema gets the new nullable column on the next start."""
    schema, url = pg
    PostgresStore(url).close()
    with psycopg.connect(url) as db:
        db.execute(f'ALTER TABLE "{schema}".samples_wifi DROP COLUMN "q"')  # as if "q" were new in kinds.py
    st = PostgresStore(url)
    try:
        k = st.upsert_agent(AgentInfo("a1"), 1)
        s = p.Series(target="wlan0", address="aa:bb", method="nl80211", kind="wifi")
        s.add(T0, conn=1, rssi=-60, q=70)
        st.commit_batches([PendingBatch(k, 1, 1, p.SampleBatch([s]))])
        assert st.rows(k, "wifi", T0, T0 + 1)[0].values["q"] == 70
    finally:
        st.close()


def test_copy_carries_thousands_of_rows_and_awkward_strings(pg):
    _, url = pg
    st = PostgresStore(url)
    try:
        k = st.upsert_agent(AgentInfo("a1"), 1)
        rtt = p.Series(target="gw", address="127.0.0.1", method=p.METHOD_ICMP_RAW)
        for i in range(5000):
            rtt.add(T0 + i * 1000, None if i % 7 == 0 else i)
        http = p.Series(target="crm", address="127.0.0.1", method="https", kind="http")
        odd = ["tab\there", "new\nline", "back\\slash", "\\N", "", "ünï", None]
        for i in range(700):
            http.add(T0 + i * 1000, dns=i, status=200, ver="HTTP/2", err=odd[i % len(odd)])
        batch = PendingBatch(k, 1, 1, p.SampleBatch([rtt, http]))
        st.commit_batches([batch])
        assert batch.stored and st.sample_count(k) == 5700
        got = st.rtt_rows(k, 0, 1 << 62)
        assert [r.rtt_us for r in got] == rtt.rtt_us and [r.ts_us for r in got] == rtt.ts_us
        assert [r.values["err"] for r in st.rows(k, "http", 0, 1 << 62)] == http.cols["err"]
    finally:
        st.close()


def test_acks_wait_for_a_durable_commit_even_if_the_role_says_otherwise(pg):
    schema, url = pg
    st = PostgresStore(url.replace("options=", "options=-csynchronous_commit%3Doff%20"))
    try:
        assert st.schema == schema
        assert st._db.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    finally:
        st.close()


def test_a_dropped_connection_is_reopened_and_the_commit_retried(pg):
    """PostgreSQL restarted or a proxy cut the link: the writer reconnects instead of failing every commit."""
    _, url = pg
    st = PostgresStore(url)
    try:
        k = st.upsert_agent(AgentInfo("a1"), 1)
        st.commit_batches([PendingBatch(k, 1, 1, sample_batch(3))])
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (st._db.info.backend_pid,))
        again = [PendingBatch(k, 1, 1, sample_batch(3)), PendingBatch(k, 1, 2, sample_batch(3, T0 + 10**8))]
        st.commit_batches(again)
        assert [b.stored for b in again] == [False, True] and st.sample_count(k) == 6
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (st._db.info.backend_pid,))
        assert st.committed_seq(k, 1) == 2 and st.upsert_agent(AgentInfo("a1", "h"), 2) == k
        pooled = st._readers.queue[0].info.backend_pid  # lookups: the idle read connection goes too
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pooled,))
        assert st.sample_count(k) == 6 and st.find_agents("a1")[0].info.host == "h"
    finally:
        st.close()
