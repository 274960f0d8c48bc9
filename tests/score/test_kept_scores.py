"""Kept minute scores (collector/score/kept.py): a cache keyed by what each score is computed
from, so a view reads rows instead of scoring every minute, and never serves a stale score.

Each test compares the view read from kept rows with the view computed from the rollups alone
(rows deleted first): byte-identical JSON is the contract.
"""

from __future__ import annotations

import json
import random

import pytest

from cxpulse.collector.jobs.kept import kept_scores_loop
from cxpulse.collector.lookup.report import build
from cxpulse.collector.score import kept as kept_mod
from cxpulse.collector.score import scenarios as scn
from cxpulse.collector.score import timeline as tl_mod
from cxpulse.collector.score.incidents import detect_incidents
from cxpulse.collector.score.journeys import parse_journeys
from cxpulse.collector.score.timeline import ScoreConfig
from cxpulse.collector.store import PendingBatch, open_store
from cxpulse.collector.store import rollup as ru
from cxpulse.v1 import payload as p
from tests.stores import BACKENDS, fresh_schema, postgres_url

S = 1_000_000
MINUTE = 60 * S
USER = "ana.lis1"


@pytest.fixture(params=BACKENDS)
def outage_store(request, tmp_path):
    """A store holding the Salesforce-outage scenario (18 minutes, 10 desks), incidents detected."""
    sc = scn.Scenario(
        "outage",
        [a for a in scn.world() if a.site != "Porto"],
        scn.SCENARIOS["salesforce_outage"](random.Random(1)),
        minutes=18,
    )
    if request.param == "sqlite":
        yield from _loaded(str(tmp_path / "c.sqlite"), sc)
        return
    with fresh_schema(postgres_url()) as (_, url):
        yield from _loaded(url, sc)


def _loaded(url: str, sc: scn.Scenario):
    store = open_store(url)
    try:
        keys = scn.load(store, sc)
        detect_incidents(store, sc.end_us)
        yield store, sc, keys
    finally:
        store.close()


def _view(store, until: int, window_s: int = 1800, **kw) -> str:
    return json.dumps(build(store, USER, window_s, now_us=until, **kw), sort_keys=True)


def _cold(store, until: int, window_s: int = 1800, **kw) -> str:
    """The view computed from the rollups alone: no kept row to read."""
    # Rewrite each kept row with a digest nothing matches: read as absent, written again after.
    store.keep_scores([(a, m, b"\0" * 16, b"\x80") for a, m in store.kept_scores(0, 2**62)])
    store.keep_merges([(a, m, b"\0" * 16, b"\x80") for a, m in store.kept_merges(0, 2**62)])
    store.keep_hour_merges([(a, m, b"\0" * 16, b"\x80") for a, m in store.kept_hour_merges(0, 2**62)])
    return _view(store, until, window_s, **kw)


@pytest.fixture(autouse=True)
def _person_only(monkeypatch):
    """These tests count the minutes the person's own timeline scores; "is it just me?"
    (lookup/others.py) scores other desks' minutes through the same function and has its own tests."""
    from cxpulse.collector.lookup import report as report_mod

    monkeypatch.setattr(report_mod, "others_affected", lambda *a, **kw: None)


def _count_scored(monkeypatch) -> list[int]:
    scored = []
    real = tl_mod.score_figures

    def counting(f, *a, **kw):
        scored.append(f.start_us)
        return real(f, *a, **kw)

    monkeypatch.setattr(tl_mod, "score_figures", counting)
    return scored


def test_a_second_view_reads_every_minute_from_the_store_and_says_the_same(outage_store, monkeypatch):
    store, sc, keys = outage_store
    scored = _count_scored(monkeypatch)
    first = _view(store, sc.end_us)
    kept = store.kept_scores(0, 2**62, keys["lis-1"])
    assert len(scored) == len(kept) >= 17, "the first view scores each minute once and keeps it"
    scored.clear()
    again = _view(store, sc.end_us)
    assert scored == [], "a view of unchanged minutes scores nothing"
    assert again == first
    assert _cold(store, sc.end_us) == first


def test_a_late_batch_rescores_its_minute_and_the_app_history_after_it(outage_store, monkeypatch):
    """A spool replay brings failed Genesys checks into a minute already kept: that minute and the
    14 after it (whose app availability looks back over it) are scored again, no other."""
    store, sc, keys = outage_store
    scored = _count_scored(monkeypatch)
    before = _view(store, sc.end_us)
    old = store.kept_scores(0, 2**62, keys["lis-1"])
    minutes = sorted(m for _, m in old)
    late = minutes[1]
    s = p.Series("genesys", "192.0.2.11", "https", kind="http")
    for i in range(6):
        s.add(late + (5 + i * 9) * S, err="timeout", dns=1000)
    store.commit_batches([PendingBatch(keys["lis-1"], 2, 1, p.SampleBatch([s]))])

    scored.clear()
    after = _view(store, sc.end_us)
    assert after != before, "the late failures changed what the view says"
    expect = [m for m in minutes if late <= m < late + 15 * MINUTE]
    assert sorted(set(scored)) == expect
    new = store.kept_scores(0, 2**62, keys["lis-1"])
    assert {m for (_, m), v in new.items() if v[0] != old[(keys["lis-1"], m)][0]} == set(expect)
    assert _cold(store, sc.end_us) == after


def test_another_score_config_or_other_journeys_never_read_the_kept_flags(outage_store, monkeypatch):
    store, sc, _keys = outage_store
    _view(store, sc.end_us)
    scored = _count_scored(monkeypatch)
    codec = ScoreConfig(codec="g729a")
    other = _view(store, sc.end_us, score_cfg=codec)
    assert len(scored) >= 17, "a different score config scores every minute again"
    assert _cold(store, sc.end_us, score_cfg=codec) == other

    js = parse_journeys('[[journey]]\nname = "CRM fast"\nwhen = ["p95(salesforce) < 1"]\n')
    _view(store, sc.end_us)  # the rows hold the default config's scores again
    scored.clear()
    with_js = json.loads(_view(store, sc.end_us, journeys=js))
    assert scored == [], "journeys change no score"
    (j,) = with_js["agents"][0]["score"]["journeys"]
    assert j["name"] == "CRM fast" and j["missed"] > 0
    assert json.loads(_cold(store, sc.end_us, journeys=js)) == with_js


def test_keep_recent_keeps_every_agents_minutes_once(outage_store):
    store, sc, keys = outage_store
    since, until = sc.end_us - 10 * MINUTE, ru.minute_of(sc.end_us)
    wrote, hits = kept_mod.keep_recent(store, since, until)
    assert wrote == 10 * len(keys) and hits == 0
    assert kept_mod.keep_recent(store, since, until) == (0, 10 * len(keys))
    (agent,) = store.find_agents(USER)
    rows = store.kept_scores(since, until, agent.key)
    assert sorted(m for _, m in rows) == [until - (10 - i) * MINUTE for i in range(10)]


def test_the_collector_loop_keeps_the_last_settled_minutes_of_every_agent(outage_store):
    import asyncio

    store, sc, keys = outage_store
    now = ru.minute_of(sc.end_us) + 30 * S

    async def one_run() -> None:
        task = asyncio.ensure_future(kept_scores_loop(store, interval_s=3600, now_us=lambda: now))
        try:
            for _ in range(600):  # up to 30 s
                if len(store.kept_scores(0, 2**62)) >= 2 * len(keys):
                    return
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(one_run())
    settled = ru.minute_of(now - 60 * S)
    assert sorted(store.kept_scores(0, 2**62)) == sorted(
        (k, settled - i * MINUTE) for k in keys.values() for i in (1, 2)
    )


def test_scoring_code_is_part_of_the_digest(outage_store, monkeypatch):
    store, sc, _ = outage_store
    first = _view(store, sc.end_us)
    monkeypatch.setattr(kept_mod, "_CODE", b"another version of the scoring code")
    scored = _count_scored(monkeypatch)
    assert _view(store, sc.end_us) == first
    assert len(scored) >= 17


def test_a_long_view_reads_whole_blocks_merged_and_a_late_batch_remerges_its_block(outage_store):
    """Views longer than an hour merge their rollups; whole 15-minute blocks are read merged."""
    store, sc, keys = outage_store
    me = keys["lis-1"]
    first = _view(store, sc.end_us, 7200)
    blocks = store.kept_merges(0, 2**62, me)
    whole = [
        b
        for b in range(sc.t0_us - sc.t0_us % kept_mod.BLOCK_US, sc.end_us, kept_mod.BLOCK_US)
        if b >= sc.t0_us and b + kept_mod.BLOCK_US <= sc.end_us
    ]
    assert [b for _, b in blocks] == whole and whole, "each block wholly inside the data is kept"
    assert _view(store, sc.end_us, 7200) == first
    assert _cold(store, sc.end_us, 7200) == first

    s = p.Series("gateway", "10.10.0.1", "icmp_raw", hop=1)
    for i in range(20):
        s.add(whole[0] + 7 * MINUTE + (i * 2 + 1) * S, None)
    store.commit_batches([PendingBatch(me, 2, 1, p.SampleBatch([s]))])
    old = blocks[(me, whole[0])][0]
    after = _view(store, sc.end_us, 7200)
    assert after != first and store.kept_merges(0, 2**62, me)[(me, whole[0])][0] != old
    assert _cold(store, sc.end_us, 7200) == after


@pytest.fixture(params=BACKENDS)
def hours_store(request, tmp_path):
    """Two desks for 170 minutes (two whole clock hours); the LAN loses packets of one of them for
    8 minutes inside the first whole hour, so that hour is not among the good minutes' spans."""
    t0 = scn.T0_US
    first_hour = t0 - t0 % kept_mod.HOUR_US + kept_mod.HOUR_US
    lossy = scn.Fault("lan_loss", ("lis-1",), first_hour + 20 * MINUTE, first_hour + 28 * MINUTE)
    sc = scn.Scenario("hours", [a for a in scn.world() if a.agent_id in ("lis-1", "hom-2")], [lossy], minutes=170)
    if request.param == "sqlite":
        yield from _loaded(str(tmp_path / "c.sqlite"), sc)
        return
    with fresh_schema(postgres_url()) as (_, url):
        yield from _loaded(url, sc)


def _minute_by_minute(store, until: int, window_s: int, monkeypatch) -> str:
    """The view with no span taken whole: every minute's rollups merged, nothing kept read."""
    from cxpulse.collector.lookup import report as report_mod

    class MinutesOnly(kept_mod.KeptMerges):
        def _whole(self, start, span, minutes):
            return None

    with monkeypatch.context() as m:
        m.setattr(report_mod, "KeptMerges", MinutesOnly)
        return _view(store, until, window_s)


def test_a_long_view_reads_whole_hours_merged_and_a_late_batch_remerges_its_hour(hours_store, monkeypatch):
    """A whole hour is read as one kept merge (built from its blocks): the same answer as every
    minute merged, and a late batch into it changes its digest, so it is merged again."""
    store, sc, keys = hours_store
    me = keys["lis-1"]
    b0 = sc.t0_us - sc.t0_us % kept_mod.BLOCK_US
    for b in range(b0, sc.end_us - kept_mod.BLOCK_US + 1, kept_mod.BLOCK_US):
        kept_mod.keep_blocks(store, b)  # as the collector's loop keeps them: the hour with its last block
    h1 = sc.t0_us - sc.t0_us % kept_mod.HOUR_US + kept_mod.HOUR_US
    hours = store.kept_hour_merges(0, 2**62, me)
    # each hour the loop saw end, the first too: it holds every minute of data the desk has in it
    assert sorted(h for _, h in hours) == [h1 - kept_mod.HOUR_US, h1, h1 + kept_mod.HOUR_US]
    first = _view(store, sc.end_us, 4 * 3600)
    assert '"score": {' in first and "fault" in first
    assert _view(store, sc.end_us, 4 * 3600) == first
    assert _cold(store, sc.end_us, 4 * 3600) == first, "the same answer with every span merged again"
    assert _minute_by_minute(store, sc.end_us, 4 * 3600, monkeypatch) == first, "and with no span at all"
    assert store.kept_hour_merges(0, 2**62, me) == hours, "merged again from the minutes: the same bytes"

    s = p.Series("gateway", "10.10.0.1", "icmp_raw", hop=1)
    for i in range(20):
        s.add(h1 + kept_mod.HOUR_US + 7 * MINUTE + (i * 2 + 1) * S, None)
    store.commit_batches([PendingBatch(me, 2, 1, p.SampleBatch([s]))])
    after = _view(store, sc.end_us, 4 * 3600)
    now = store.kept_hour_merges(0, 2**62, me)
    assert after != first and now[(me, h1 + kept_mod.HOUR_US)][0] != hours[(me, h1 + kept_mod.HOUR_US)][0]
    assert now[(me, h1)] == hours[(me, h1)], "the other hour is untouched"
    assert _cold(store, sc.end_us, 4 * 3600) == after
    assert _minute_by_minute(store, sc.end_us, 4 * 3600, monkeypatch) == after


def test_an_hour_merge_joins_its_rtt_fragments_and_reads_the_same(hours_store):
    """A kept span's RTT rollups hold one joined fragment (rollup.normalized), not one per batch: the
    jitter, loss runs and first and last sample read the same as from the minutes' fragments."""
    store, sc, keys = hours_store
    me = keys["lis-1"]
    h1 = sc.t0_us - sc.t0_us % kept_mod.HOUR_US + kept_mod.HOUR_US
    rollups = store.rollups(h1, h1 + kept_mod.HOUR_US, me)
    merges = kept_mod.KeptMerges(store, me, rollups, h1, h1 + kept_mod.HOUR_US)
    got = merges.merged()
    want = tl_mod.merged(rollups)
    assert list(got) == list(want)
    for key, r in want.items():
        if r.kind != "rtt":
            continue
        assert len(r.data["frags"]) > 60 and len(got[key].data["frags"]) == 1
        for fn in (ru.rtt_jitter, ru.rtt_loss_runs):
            assert fn(got[key].data) == fn(r.data)
        assert ru.canonical_bytes("rtt", got[key].data) == ru.canonical_bytes("rtt", r.data)
    assert merges.facts() == kept_mod.minute_facts(rollups)
    assert merges.hour_pending and merges.flush() > 0
    again = kept_mod.KeptMerges(store, me, rollups, h1, h1 + kept_mod.HOUR_US)
    assert {k: ru.canonical_bytes(r.kind, r.data) for k, r in again.merged().items()} == {
        k: ru.canonical_bytes(r.kind, r.data) for k, r in want.items()
    }
    assert not again.hour_pending, "read kept"
    assert again.facts() == kept_mod.minute_facts(rollups)


def test_keep_blocks_keeps_each_agents_block_once(outage_store):
    store, sc, keys = outage_store
    b = sc.t0_us - sc.t0_us % kept_mod.BLOCK_US + kept_mod.BLOCK_US
    assert kept_mod.keep_blocks(store, b) == len(keys)
    assert kept_mod.keep_blocks(store, b) == 0
    assert sorted(store.kept_merges(0, 2**62)) == sorted((k, b) for k in keys.values())


def test_retention_deletes_kept_scores_with_the_rollups(tmp_path):
    store = open_store(str(tmp_path / "c.sqlite"))
    try:
        rows = [(1, 0, b"d" * 16, b"\x80"), (1, MINUTE, b"d" * 16, b"\x80"), (1, 9 * MINUTE, b"d" * 16, b"\x80")]
        store.keep_scores(rows)
        store.keep_merges(rows)
        while store.delete_rollups_before(5 * MINUTE, 1000):
            pass
        assert list(store.kept_scores(0, 2**62)) == [(1, 9 * MINUTE)] == list(store.kept_merges(0, 2**62))
    finally:
        store.close()
