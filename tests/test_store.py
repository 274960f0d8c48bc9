"""The store: exactly-once by (agent, epoch, seq), search, reads beside writes, atomic batches.

Every test runs against both stores (docs/architecture.md, decision 4). The PostgreSQL variant needs
``CXPULSE_TEST_POSTGRES`` (e.g. ``postgresql://postgres@127.0.0.1:5432/test``) and gets a
fresh schema per test, dropped afterwards; without the variable it is skipped.
"""

from __future__ import annotations

import sys

import pytest

from cxpulse.collector.store import AgentInfo, PendingBatch, open_store
from cxpulse.v1 import payload as p

T0 = 1_790_000_000_000_000


def sample_batch(n: int, start: int = T0, target: str = "gw") -> p.SampleBatch:
    s = p.Series(target=target, address="127.0.0.1", method=p.METHOD_ICMP_RAW)
    for i in range(n):
        s.add(start + i * 1_000_000, None if i == 2 else 1000 + i)
    return p.SampleBatch([s])


def test_seq_already_held_is_not_written_again(store):
    k = store.upsert_agent(AgentInfo("a1", "host1", "alice"), 1)
    batches = [PendingBatch(k, 5, 1, sample_batch(4)), PendingBatch(k, 5, 2, sample_batch(4, T0 + 10**7))]
    store.commit_batches(batches)
    assert [b.stored for b in batches] == [True, True] and batches[-1].committed_seq == 2
    replay = [
        PendingBatch(k, 5, 1, sample_batch(4)),
        PendingBatch(k, 5, 2, sample_batch(4, T0 + 10**7)),
        PendingBatch(k, 5, 3, sample_batch(4, T0 + 2 * 10**7)),
    ]
    store.commit_batches(replay)
    assert [b.stored for b in replay] == [False, False, True]
    assert store.sample_count(k) == 12 and store.committed_seq(k, 5) == 3


def test_epochs_are_independent_and_uint64_epochs_fit(store):
    k = store.upsert_agent(AgentInfo("a1"), 1)
    big = (1 << 64) - 3
    store.commit_batches([PendingBatch(k, big, 1, sample_batch(2))])
    store.commit_batches([PendingBatch(k, 9, 1, sample_batch(2, T0 + 10**8))])
    assert store.committed_seq(k, big) == 1 and store.committed_seq(k, 9) == 1
    assert store.sample_count(k) == 4


def test_find_agents_partial_case_insensitive_on_user_host_id_site(store):
    store.upsert_agent(AgentInfo("id-ABC", "DESK-042", "Maria.Silva", "Windows 11", "0.1.0", "Lisbon"), 10)
    store.upsert_agent(AgentInfo("id-XYZ", "mac-17", "j.doe", "macOS 14", "0.1.0", "Home"), 20)
    for q, want in [
        ("maria", "id-ABC"),
        ("desk-04", "id-ABC"),
        ("xyz", "id-XYZ"),
        ("LISB", "id-ABC"),
        ("home", "id-XYZ"),
    ]:
        assert [a.info.agent_id for a in store.find_agents(q)] == [want], q
    assert store.find_agents("%") == [] and store.find_agents("_") == []  # LIKE wildcards are literal
    assert len(store.find_agents("0")) == 1  # "DESK-042" only; "0.1.0" is the version, not searched


def test_agent_by_exact_id_only(store):
    k = store.upsert_agent(AgentInfo("agent-7", "DESK-7", "ana", "Linux", "0.1.0", "Lisbon"), T0)
    store.upsert_agent(AgentInfo("agent-77", "DESK-77", "rui", "Linux", "0.1.0", "Lisbon"), T0)
    a = store.agent("agent-7")
    assert a is not None and a.key == k and a.info.host == "DESK-7" and a.last_seen_us == T0
    assert store.agent("AGENT-7") is None and store.agent("agent-") is None and store.agent("%") is None


def test_find_agents_takes_backslashes_literally(store):
    store.upsert_agent(AgentInfo("id-1", "CORP\\desk-7", "ana"), 1)
    store.upsert_agent(AgentInfo("id-2", "corpdesk-8", "bo"), 2)
    assert [a.info.agent_id for a in store.find_agents("p\\D")] == ["id-1"]
    assert store.find_agents("\\%") == [] and store.find_agents("\\_") == []


def test_upsert_refreshes_identity_fields(store):
    k1 = store.upsert_agent(AgentInfo("a1", "old-host", "bob"), 1)
    k2 = store.upsert_agent(AgentInfo("a1", "new-host", "bob", site="HQ"), 2)
    assert k1 == k2
    (rec,) = store.find_agents("a1")
    assert rec.info.host == "new-host" and rec.info.site == "HQ" and rec.first_seen_us == 1 and rec.last_seen_us == 2


def test_rtt_rows_window_and_order(store):
    k = store.upsert_agent(AgentInfo("a1"), 1)
    store.commit_batches(
        [PendingBatch(k, 1, 1, sample_batch(5, target="b")), PendingBatch(k, 1, 2, sample_batch(5, target="a"))]
    )
    rows = store.rtt_rows(k, T0 + 1_000_000, T0 + 4_000_000)
    assert [(r.target, r.ts_us) for r in rows] == [(t, T0 + i * 1_000_000) for t in "ab" for i in (1, 2, 3)]
    assert [r.rtt_us for r in rows if r.target == "a"] == [1001, None, 1003]


def test_failed_commit_writes_nothing_and_can_be_retried(store, monkeypatch):
    k = store.upsert_agent(AgentInfo("a1"), 1)
    good = PendingBatch(k, 1, 1, sample_batch(3))
    bad = PendingBatch(k, 1, 2, sample_batch(3, T0 + 10**7))
    bad.batch.series[0].rtt_us[0] = object()  # cannot be bound: the INSERT fails mid-transaction
    with pytest.raises(Exception):  # noqa: B017 (sqlite3 and psycopg raise different types here)
        store.commit_batches([good, bad])
    assert store.sample_count(k) == 0 and store.committed_seq(k, 1) == 0
    again = PendingBatch(k, 1, 1, sample_batch(3))
    store.commit_batches([again])
    assert again.stored and store.sample_count(k) == 3


def test_durability_settings(tmp_path):
    store = open_store(str(tmp_path / "c.sqlite"))
    try:
        db = store._db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()


def test_newer_schema_is_refused(tmp_path):  # PostgreSQL: test_store_postgres.py
    path = str(tmp_path / "c.sqlite")
    open_store(path).close()
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(RuntimeError, match="newer than this collector"):
        open_store(path)


def test_postgres_url_without_psycopg_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(ValueError, match=r"pip install 'cxpulse\[postgres\]'"):
        open_store("postgresql://127.0.0.1/test")


def test_reopen_keeps_data(store_url):
    st = open_store(store_url)
    k = st.upsert_agent(AgentInfo("a1"), 1)
    st.commit_batches([PendingBatch(k, 7, 1, sample_batch(3))])
    st.close()
    st = open_store(store_url)
    try:
        assert st.committed_seq(k, 7) == 1 and st.sample_count(k) == 3
        replay = PendingBatch(k, 7, 1, sample_batch(3))
        st.commit_batches([replay])
        assert replay.stored is False and st.sample_count() == 3
    finally:
        st.close()


def test_events_keep_latest_state_and_paths_are_kept(store):
    k = store.upsert_agent(AgentInfo("a1"), 1)
    opened = p.Event("ev1", "outage", "gateway", T0, None, 2, "5/5 lost")
    closed = p.Event("ev1", "outage", "gateway", T0, T0 + 4_000_000, 3, "12 lost in 4.0 s")
    path = p.PathSnapshot(
        "crm", "10.0.0.9", T0, "icmp", True, [p.PathHop(1, "10.0.0.1", 400), p.PathHop(2, None, None)]
    )
    store.commit_batches([PendingBatch(k, 1, 1, p.SampleBatch(events=[opened], paths=[path]))])
    assert store.events(k, T0 - 1, T0 + 1) == [opened]
    store.commit_batches([PendingBatch(k, 1, 2, p.SampleBatch(events=[closed]))])
    assert store.events(k, T0 - 10**9, T0 + 10**9) == [closed]
    assert store.events(k, T0 + 5_000_000, T0 + 10**9) == []  # ended before the window
    assert store.paths(k, T0 - 1, T0 + 1) == [path]


def test_events_of_many_agents_in_one_read_equal_each_agents_own(store):
    """``events_of`` (the fleet's one query) answers what ``events`` answers agent by agent; an
    agent without events is left out; a scoped store answers only its sites' desks."""
    from cxpulse.collector.lookup.scope import scoped_store

    a = store.upsert_agent(AgentInfo("a1", site="north"), 1)
    b = store.upsert_agent(AgentInfo("a2", site="south"), 1)
    c = store.upsert_agent(AgentInfo("a3", site="north"), 1)
    store.commit_batches(
        [
            PendingBatch(a, 1, 1, p.SampleBatch(events=[p.Event("e1", "outage", "gw", T0, T0 + 10**6, 2, "x")])),
            PendingBatch(
                a, 1, 2, p.SampleBatch(events=[p.Event("e2", "loss_burst", "isp", T0 + 5 * 10**6, None, 1, "y")])
            ),
            PendingBatch(
                b, 1, 1, p.SampleBatch(events=[p.Event("e3", "outage", "gw", T0 - 10**9, T0 - 10**8, 3, "z")])
            ),
            PendingBatch(
                b, 1, 2, p.SampleBatch(events=[p.Event("e4", "outage", "gw", T0 + 2 * 10**6, T0 + 3 * 10**6, 3, "w")])
            ),
        ]
    )
    for since, until in ((T0 - 1, T0 + 10**8), (T0 + 2 * 10**6, T0 + 10**8), (T0 - 10**10, T0 + 10**10)):
        got = store.events_of([a, b, c], since, until)
        want = {k: ev for k in (a, b, c) if (ev := store.events(k, since, until))}
        assert got == want
    assert set(store.events_of([a, b, c], T0 - 1, T0 + 10**8)) == {a, b}
    north = scoped_store(store, {"north"})
    assert set(north.events_of([a, b, c], T0 - 1, T0 + 10**8)) == {a}


def test_rows_of_other_kinds(store):
    k = store.upsert_agent(AgentInfo("a1"), 1)
    s = p.Series(target="crm", address="127.0.0.1", method="https", kind="http")
    s.add(T0, dns=100, tcp=200, tls=300, ttfb=400, total=500, status=200, ver="HTTP/2", cert=10)
    store.commit_batches([PendingBatch(k, 1, 1, p.SampleBatch([s]))])
    (row,) = store.rows(k, "http", T0, T0 + 1)
    assert row.values["ver"] == "HTTP/2" and row.values["err"] is None and row.values["total"] == 500
    assert store.sample_count(k) == 1


def _device_series(**own) -> p.Series:
    s = p.Series(target="device", address="local", method="os", kind="device")
    s.add(T0, cpu=120, mem=480, nicerr=0, **{"if": "eth0"}, ifk="ethernet", **own)
    return s


def test_device_own_traffic_round_trip(store):
    """The desk's own traffic (issue 17) is stored with the device context and read back as sent."""
    k = store.upsert_agent(AgentInfo("a1"), 1)
    own = {"up": 9_600, "dn": 850, "upb": 10_000, "dnb": 48_000, "spd": 1000}
    store.commit_batches([PendingBatch(k, 1, 1, p.SampleBatch([_device_series(**own)]))])
    (row,) = store.rows(k, "device", T0, T0 + 1)
    assert {c: row.values[c] for c in own} == own
    assert row.values["cpu"] == 120 and row.values["if"] == "eth0"


def test_an_older_database_gains_the_own_traffic_columns(store_url):
    """A database written before the device sample had own-traffic columns: they are added at
    open (SQLite: ALTER TABLE in _add_kind_columns; PostgreSQL: _reconcile_kinds), its old rows
    read them as null, and new rows keep them."""
    st = open_store(store_url)
    k = st.upsert_agent(AgentInfo("a1"), 1)
    st.commit_batches([PendingBatch(k, 1, 1, p.SampleBatch([_device_series()]))])
    schema = getattr(st, "schema", None)
    st.close()
    table = f'"{schema}".samples_device' if schema else "samples_device"
    drops = [f'ALTER TABLE {table} DROP COLUMN "{c}"' for c in ("up", "dn", "upb", "dnb", "spd")]  # before issue 17
    if schema is None:
        import sqlite3

        db = sqlite3.connect(store_url)
        for sql in drops:
            db.execute(sql)
        db.commit()
        db.close()
    else:
        import psycopg

        with psycopg.connect(store_url) as db:
            for sql in drops:
                db.execute(sql)
    st = open_store(store_url)
    try:
        s = _device_series(up=300, dn=2_000, upb=5_000, dnb=40_000, spd=None)
        s.ts_us[0] += 1_000_000
        st.commit_batches([PendingBatch(k, 1, 2, p.SampleBatch([s]))])
        old, new = st.rows(k, "device", T0, T0 + 2_000_000)
        assert old.values["up"] is None and old.values["cpu"] == 120
        assert (new.values["up"], new.values["dnb"], new.values["spd"]) == (300, 40_000, None)
    finally:
        st.close()
