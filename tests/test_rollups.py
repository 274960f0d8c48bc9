"""Rollups: written with their samples, and two collectors' parts of a minute add up exactly.

Runs on both stores (PostgreSQL with CXPULSE_TEST_POSTGRES, skipped otherwise), like test_store.
"""

from __future__ import annotations

import asyncio
import random
import threading
from itertools import pairwise

import pytest

from cxpulse.collector.jobs.retention import enforce_once
from cxpulse.collector.score.timeline import agent_timeline, merged
from cxpulse.collector.store import AgentInfo, PendingBatch, open_store
from cxpulse.collector.store import rollup as ru
from cxpulse.collector.store.sketch import LatencySketch
from cxpulse.v1 import payload as p

S = 1_000_000
T0 = 1_790_000_040 * S  # a minute boundary


def rich_batch(seed: int, minutes: int = 3) -> p.SampleBatch:
    """Every kind over several minutes: losses, jitter, failures, pressure, roams, an event."""
    rng = random.Random(seed)
    gw = p.Series("gateway", "10.0.0.1", "icmp_raw")
    isp = p.Series("isp", "100.64.0.1", "icmp_raw", hop=2)
    crm = p.Series("crm", "10.9.9.9", "https", kind="http")
    voice = p.Series("reflector", "10.9.9.1", "udp_reflect", kind="voice")
    dev = p.Series("device", "local", "os", kind="device")
    wifi = p.Series("wifi", "wlan0", "nl80211", kind="wifi")
    for i in range(minutes * 60):
        ts = T0 + i * S + rng.randrange(1000)
        gw.add(ts, rng.randrange(300, 5000))
        isp.add(ts, None if rng.random() < 0.1 else rng.randrange(8000, 90000))
        if i % 15 == 3:
            ok = rng.random() < 0.7
            crm.add(
                ts,
                dns=rng.randrange(500, 9000),
                tcp=20000,
                tls=40000,
                ttfb=rng.randrange(90000, 900000),
                total=rng.randrange(200000, 3000000) if ok else None,
                status=200 if ok else None,
                err=None if ok else rng.choice(("timeout", "dns")),
            )
        if i % 60 == 7:
            voice.add(
                ts,
                sent=250,
                recv=250 - rng.randrange(0, 20),
                dup=0,
                reord=1,
                rtt=rng.randrange(15000, 40000),
                rtt95=50000,
                jit=rng.randrange(1000, 9000),
                loss=10,
                burst=rng.randrange(0, 300),
                run=rng.randrange(0, 4),
            )
        if i % 10 == 1:
            dev.add(
                ts,
                cpu=rng.randrange(100, 1000),
                mem=rng.randrange(400, 990),
                top="chrome 50%",
                nicerr=rng.randrange(2),
                **{"if": "wlan0", "ifk": "wifi", "vpn": "tun0" if i > 90 else None, "proxy": None},
            )
        if i % 5 == 2:
            wifi.add(
                ts,
                conn=0 if i == 62 else 1,
                ssid="corp",
                bssid=f"02:00:00:00:00:0{1 + (i // 40) % 2}",
                rssi=rng.randrange(-85, -50),
                noise=-95,
                snr=rng.randrange(5, 40),
                tx=rng.choice((6500, 433000)),
            )
    return p.SampleBatch([gw, isp, crm, voice, dev, wifi])


def split(batch: p.SampleBatch, rng: random.Random, parts: int) -> list[p.SampleBatch]:
    """The same samples cut into ``parts`` batches at random points of each series (time order kept)."""
    out = [p.SampleBatch() for _ in range(parts)]
    for s in batch.series:
        cuts = sorted(rng.sample(range(1, len(s)), parts - 1)) if len(s) > parts else []
        bounds = [0, *cuts, len(s)]
        for k in range(len(bounds) - 1):
            a, b = bounds[k], bounds[k + 1]
            if a < b:
                piece = p.Series(
                    s.target, s.address, s.method, s.kind, s.hop, s.ts_us[a:b], {c: v[a:b] for c, v in s.cols.items()}
                )
                out[k].series.append(piece)
    return out


def encoded(rollups: dict) -> dict:
    """Rollups as they read (fragments of a split joined), as canonical bytes."""
    return {k: ru.canonical_bytes(r.kind, r.data) for k, r in rollups.items()}


@pytest.mark.parametrize("seed", range(8))
def test_merge_of_any_split_in_any_order_is_the_rollup_of_the_whole(seed):
    rng = random.Random(seed)
    whole = rich_batch(seed)
    want = encoded(ru.rollups_of_batches([(1, whole)]))
    parts = split(whole, rng, rng.randrange(2, 6))
    rng.shuffle(parts)
    got: dict = {}
    for part in parts:
        for key, r in ru.rollups_of_batches([(1, part)]).items():
            got[key] = r if key not in got else ru.merge(got[key], r)
    assert encoded(got) == want


@pytest.mark.parametrize("seed", range(6))
def test_a_day_merged_at_once_is_the_merge_of_its_minutes_in_any_order_and_grouping(seed):
    """``merged`` (a lookup's long window) merges all minutes at once with ``merge_all``; that
    must be what merging them one at a time gives, and what merging two merged halves gives."""
    rng = random.Random(seed)
    minutes = [
        r for part in split(rich_batch(seed, minutes=12), rng, 4) for r in ru.rollups_of_batches([(1, part)]).values()
    ]
    rng.shuffle(minutes)
    at_once = merged(minutes)

    def by_pairs(rs):
        out: dict = {}
        for r in rs:
            k = (r.kind, r.target)
            if k not in out:
                out[k] = ru.Rollup(r.agent, r.minute_us, r.kind, r.target, r.hop, ru.empty(r.kind))
            out[k].hop = max(out[k].hop, r.hop)
            ru.merge_data(r.kind, out[k].data, r.data)
        return out

    cut = rng.randrange(1, len(minutes))
    halves = [merged(minutes[:cut]), merged(minutes[cut:])]
    of_halves = by_pairs([h[k] for h in halves for k in h])
    for want in (by_pairs(minutes), of_halves):
        assert at_once.keys() == want.keys()
        for k, r in at_once.items():
            assert (r.hop, ru.encode(r.kind, r.data)) == (want[k].hop, ru.encode(r.kind, want[k].data)), k
            if r.kind == "rtt":
                assert ru.rtt_jitter(r.data) == ru.rtt_jitter(want[k].data)
                assert ru.rtt_loss_runs(r.data) == ru.rtt_loss_runs(want[k].data)


def test_fragments_sort_in_time_order_even_where_a_lost_end_ties_an_answered_one():
    frags = [[5, 9, 1000, 2000, 0, 0], [5, 9, None, None, 1, 1], [1, 4, None, 700, 1, 0], [5, 9, 0, 3, 0, 0]]
    key_order = sorted(
        frags, key=lambda f: (f[0], f[1], -1 if f[2] is None else f[2], -1 if f[3] is None else f[3], f[4], f[5])
    )
    assert ru.rtt_jitter({"frags": frags}) == ru.rtt_jitter({"frags": key_order})
    assert ru.merge_all("rtt", ru.empty("rtt"), [{"frags": frags[:2]}, {"frags": frags[2:]}])["frags"] == key_order


def test_fragments_keep_the_jitter_and_loss_runs_across_a_cut():
    s = p.Series("isp", "100.64.0.1", "icmp_raw")
    for i, v in enumerate([1000, 3000, None, None, 2000, 7000]):
        s.add(T0 + i * S, v)
    (r,) = ru.rollups_of_batches([(1, p.SampleBatch([s]))]).values()
    assert ru.rtt_jitter(r.data) == (2000 + 1000 + 5000, 3) and ru.rtt_loss_runs(r.data) == 1
    a, b = split(p.SampleBatch([s]), random.Random(0), 2)
    (ra,), (rb,) = ru.rollups_of_batches([(1, a)]).values(), ru.rollups_of_batches([(1, b)]).values()
    m = ru.merge(rb, ra)
    assert ru.rtt_jitter(m.data) == (8000, 3) and ru.rtt_loss_runs(m.data) == 1


def test_sketch_add_many_puts_every_value_where_add_does():
    """add_many (table + bisection) against add one value at a time, edges of the table included."""
    from cxpulse.collector.store.sketch import _TABLE_LIMIT, LatencySketch

    rng = random.Random(5)
    edges = [0, 1, 2, _TABLE_LIMIT - 1, _TABLE_LIMIT, _TABLE_LIMIT + 1, 599_999_999]
    for _ in range(200):
        vals = [
            rng.choice([rng.choice(edges), rng.randrange(1, 5000), rng.randrange(1, 2_000_000)])
            for _ in range(rng.randrange(0, 200))
        ]
        one, many = LatencySketch.of(vals), LatencySketch()
        many.add_many(vals[: len(vals) // 3])
        many.add_many(vals[len(vals) // 3 :])
        assert many == one and many.to_bytes() == one.to_bytes()
    every = list(range(_TABLE_LIMIT + 3000))
    many = LatencySketch()
    many.add_many(every)
    assert many == LatencySketch.of(every)
    import pickle

    back = pickle.loads(pickle.dumps(many))  # decode workers send sketches back pickled
    assert back == many and back.to_bytes() == many.to_bytes() and back.quantile(0.9) == many.quantile(0.9)
    with pytest.raises(ValueError):
        LatencySketch().add_many([5, -1])
    with pytest.raises(TypeError):
        LatencySketch().add_many([5, 2.5])


def _rtt_reference(ts: list[int], rtts: list) -> dict:
    """What an RTT rollup means, one sample at a time (the slow, obvious way) per minute."""
    out: dict = {}
    for t, v in sorted(zip(ts, rtts), key=lambda x: x[0]):
        out.setdefault(ru.minute_of(t), []).append((t, v))
    want = {}
    for m, pts in out.items():
        vals = [v for _, v in pts]
        answered = [v for v in vals if v is not None]
        runs = sum(1 for i, v in enumerate(vals) if v is None and (i == 0 or vals[i - 1] is not None))
        want[m] = {
            "n": len(vals),
            "lost": len(vals) - len(answered),
            "runs": runs,
            "jit_sum": sum(abs(b - a) for a, b in pairwise(answered)),
            "jit_n": max(0, len(answered) - 1),
            "rtt": LatencySketch.of(answered) if answered else None,
            "frags": [
                [
                    pts[0][0],
                    pts[-1][0],
                    answered[0] if answered else None,
                    answered[-1] if answered else None,
                    int(vals[0] is None),
                    int(vals[-1] is None),
                ]
            ],
        }
    return want


@pytest.mark.parametrize("seed", range(6))
def test_rtt_rollup_built_per_slice_means_what_it_means_per_sample(seed):
    rng = random.Random(seed)
    s = p.Series("isp", "100.64.0.1", "icmp_raw")
    for i in range(rng.randrange(1, 400)):
        lost = rng.random() < (0.6 if i % 50 < 10 else 0.05)  # runs of loss, some across minute edges
        s.add(
            T0 + i * S + rng.randrange(-400_000, 400_000), None if lost else rng.choice((0, rng.randrange(1, 900_000)))
        )
    if seed % 2:
        s.ts_us.reverse()  # out of order: the builder sorts
    got = {r.minute_us: r.data for r in ru.rollups_of_batches([(1, p.SampleBatch([s]))]).values()}
    want = _rtt_reference(s.ts_us, s.cols["rtt"])
    assert set(got) == set(want)
    for m, w in want.items():
        assert {k: got[m][k] for k in w} == w, m


def _stored(st, agent: int) -> dict:
    return {(r.minute_us, r.kind, r.target): ru.canonical_bytes(r.kind, r.data) for r in st.rollups(0, 2**62, agent)}


def test_commit_writes_rollups_with_the_samples(store):
    k = store.upsert_agent(AgentInfo("a1"), 1)
    store.commit_batches([PendingBatch(k, 1, 1, rich_batch(1))])
    want = {
        (r.minute_us, r.kind, r.target): ru.canonical_bytes(r.kind, r.data)
        for r in ru.rollups_of_batches([(k, rich_batch(1))]).values()
    }
    got = _stored(store, k)
    assert {key: v for key, v in got.items() if key[1] != ru.EVENTS} == want
    (row,) = [r for r in store.rollups(T0, T0 + 60 * S, k) if r.kind == "rtt" and r.target == "isp"]
    assert row.hop == 2 and row.data["n"] == 60 and row.data["addr"] == ["100.64.0.1"]
    # A replayed batch is a duplicate: the rollups do not count it twice.
    store.commit_batches([PendingBatch(k, 1, 1, rich_batch(1))])
    assert _stored(store, k) == got


def test_rollups_built_with_the_batch_store_as_those_built_in_the_commit(store):
    """A RolledBatch (rollups built in the decode worker) stores the same rollups; its rollups are
    used once, so a commit that runs again (PostgreSQL retries) rebuilds them from the samples."""
    k = store.upsert_agent(AgentInfo("plain"), 1)
    k2 = store.upsert_agent(AgentInfo("rolled"), 1)
    store.commit_batches([PendingBatch(k, 1, 1, rich_batch(4))])
    pre = ru.rolled(rich_batch(4))
    assert pre.rollups and all(r.agent == 0 for r in pre.rollups)
    store.commit_batches([PendingBatch(k2, 1, 1, pre)])
    assert pre.rollups is None
    assert _stored(store, k2) == _stored(store, k)
    again = ru.rolled(rich_batch(5))
    first = ru.rollups_of_batches([(k2, again)])
    assert ru.rollups_of_batches([(k2, again)]).keys() == first.keys()  # rebuilt, not taken twice
    assert encoded(ru.rollups_of_batches([(k2, again)])) == encoded(ru.rollups_of_batches([(k2, rich_batch(5))]))


def test_two_collectors_writing_parts_of_the_same_minutes_add_up_exactly(store_url):
    """Collector A gets the whole stream; collectors B and C (two store instances on one
    database) each get part of the same minutes, concurrently, over two agent epochs."""
    one = open_store(store_url)
    b, c = open_store(store_url), open_store(store_url)
    try:
        whole_key = one.upsert_agent(AgentInfo("whole"), 1)
        one.commit_batches([PendingBatch(whole_key, 1, 1, rich_batch(7))])
        want = _stored(one, whole_key)
        for attempt in range(3):
            agent = f"split-{attempt}"
            key = b.upsert_agent(AgentInfo(agent), 1)
            parts = split(rich_batch(7), random.Random(attempt), 4)
            errors: list[BaseException] = []

            def send(st, epoch: int, mine: list[p.SampleBatch], key=key, errors=errors) -> None:
                try:
                    for seq, part in enumerate(mine, start=1):
                        st.commit_batches([PendingBatch(key, epoch, seq, part)])
                except BaseException as exc:  # reported by the main thread
                    errors.append(exc)

            threads = [
                threading.Thread(target=send, args=(b, 1, parts[0::2])),
                threading.Thread(target=send, args=(c, 2, parts[1::2])),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors
            got = _stored(one, key)
            assert {k: v for k, v in got.items() if k[1] != ru.EVENTS} == {
                k: v for k, v in want.items() if k[1] != ru.EVENTS
            }
    finally:
        for st in (one, b, c):
            st.close()


def test_events_rollup_follows_the_event_from_open_to_close(store):
    k = store.upsert_agent(AgentInfo("a1"), 1)
    gw = p.Series("gateway", "10.0.0.1", "icmp_raw")
    for i in range(50):
        gw.add(T0 + 40 * S + i * S, 1000)
    opened = p.Event("e1", "outage", "isp", T0 + 50 * S, None, 3, "no answer")
    store.commit_batches([PendingBatch(k, 1, 1, p.SampleBatch([gw], [opened]))])
    spans = {r.minute_us: r.data["spans"] for r in store.rollups(T0, T0 + 10 * 60 * S, k, kinds=[ru.EVENTS])}
    # Open: counted up to the latest time the agent reported (T0 + 89 s).
    assert spans == {
        T0: [[T0 + 50 * S, T0 + 60 * S, 3, "outage", "isp", "e1", T0 + 50 * S]],
        T0 + 60 * S: [[T0 + 60 * S, T0 + 89 * S, 3, "outage", "isp", "e1", T0 + 50 * S]],
    }
    closed = p.Event("e1", "outage", "isp", T0 + 50 * S, T0 + 70 * S, 3, "20 s without answer")
    store.commit_batches([PendingBatch(k, 1, 2, p.SampleBatch(events=[closed]))])
    spans = {r.minute_us: r.data["spans"] for r in store.rollups(T0, T0 + 10 * 60 * S, k, kinds=[ru.EVENTS])}
    assert spans[T0 + 60 * S] == [[T0 + 60 * S, T0 + 70 * S, 3, "outage", "isp", "e1", T0 + 50 * S]]
    tl = agent_timeline(store, k, T0, T0 + 3 * 60 * S)
    stab = {m.minute_us: next(c for c in m.overall.components if c.name == "stability") for m in tl.minutes}
    assert stab[T0].evidence["weighted_s"] == 10.0 and stab[T0 + 60 * S].evidence["weighted_s"] == 10.0


def test_retention_deletes_in_chunks_and_keeps_the_scores(store):
    k = store.upsert_agent(AgentInfo("a1"), 1)
    old = rich_batch(3)
    old.events.append(p.Event("e1", "loss_burst", "isp", T0 + 5 * S, T0 + 9 * S, 2, "4 lost"))
    store.commit_batches([PendingBatch(k, 1, 1, old)])
    before = agent_timeline(store, k, T0, T0 + 3 * 60 * S).to_dict()
    samples = store.sample_count(k)
    assert samples > 300
    now = T0 + 8 * 86_400 * S  # eight days later: raw (7 days) goes, rollups (400 days) stay
    first = store.delete_raw_before(now - 7 * 86_400 * S, 100)  # one bounded step: some samples, not all
    assert 0 < first < samples
    r = asyncio.run(enforce_once(store, 7, 400, now_us=now, chunk=64, pause_s=0))
    assert r.raw_deleted == samples - first + 1 and r.rollups_deleted == 0  # + the event
    assert store.sample_count(k) == 0 and store.events(k, 0, 2**62) == []
    assert agent_timeline(store, k, T0, T0 + 3 * 60 * S).to_dict() == before
    r = asyncio.run(enforce_once(store, 7, 400, now_us=T0 + 401 * 86_400 * S, chunk=5, pause_s=0))
    assert r.rollups_deleted > 0 and store.rollups(0, 2**62, k) == []


def test_retention_refuses_nonsense():
    with pytest.raises(ValueError, match="at least as long"):
        asyncio.run(enforce_once(None, 30, 7))


def test_every_kind_has_a_minute_rollup_builder():
    """A kind the payload accepts but the store cannot roll up would fail every commit carrying it
    (docs/agent-tasks.md, adding a kind)."""
    from cxpulse.collector.store import rollup
    from cxpulse.v1.kinds import KINDS

    assert set(KINDS) <= set(rollup._BUILDERS)
