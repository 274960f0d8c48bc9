""" "Is it just me?" from the kept group rows (score/kept_groups.py) answers what scoring every other
desk answered (issue 20): sites, the ISP name/address rule, scoped keys, and a late batch once the
loop has refreshed the minute; SQLite and PostgreSQL (``store_url``)."""

from __future__ import annotations

import pytest

from cxpulse.collector.jobs.kept_groups import keep_groups, keep_groups_step
from cxpulse.collector.lookup import others as others_mod
from cxpulse.collector.lookup.others import (
    _platform_of,
    _platforms,
    _spans,
    others_affected,
    others_line,
    person_minutes,
)
from cxpulse.collector.lookup.report import build
from cxpulse.collector.lookup.scope import scoped_store
from cxpulse.collector.score import isp_name
from cxpulse.collector.score import kept_groups as kg
from cxpulse.collector.score.isp_name import IspNamer, NamingConfig
from cxpulse.collector.score.kept import KeptScores
from cxpulse.collector.score.timeline import AVAILABILITY_LOOKBACK_MIN, timeline_of
from cxpulse.collector.store import AgentInfo, PendingBatch, open_store
from cxpulse.collector.store import rollup as ru
from cxpulse.collector.store.kept_groups import table_for
from cxpulse.v1 import payload as p
from tests.score.test_isp_name import asn_db  # noqa: F401 - fixture

S = 1_000_000
NOW = 1_790_000_640 * S  # a minute boundary, long settled
T0 = NOW - 300 * S  # the degraded minute

VODAFONE, VODAFONE_2, BT = "145.254.1.1", "145.254.2.2", "62.6.1.1"  # the test ASN file's networks


# --- today's answer: every other desk's rollups read and scored (the code before the kept rows) ---


def _isp(rollups):
    def addresses(role):
        return {a for r in rollups if r.kind == "rtt" and r.target == role for a in (r.data.get("addr") or ())}

    isp, namer = addresses("isp"), isp_name.current()
    name = namer.isp([*sorted(isp), *sorted(addresses("public"))]) if namer is not None and isp else None
    return isp, name


def reference(store, me, score, since_us, until_us, visible_sites=None, cfg=None) -> dict:
    """``others_affected`` as it was before the kept rows (issue 17's on-demand computation)."""
    basis, minutes = person_minutes(score, since_us, until_us)
    wanted, spans = set(minutes), _spans(minutes)
    back = (AVAILABILITY_LOOKBACK_MIN - 1) * ru.MINUTE_US
    read = []
    for a, b in spans:
        per: dict = {}
        for r in store.rollups(a - back, a, kinds=("http",)) + store.rollups(a, b):
            per.setdefault(r.agent, []).append(r)
        read.append(per)
    seen: dict = {}
    for per in read:
        for key, rs in per.items():
            seen.setdefault(key, []).extend(r for r in rs if r.minute_us in wanted)
    mine = seen.get(me.key, [])
    site = me.info.site or None
    addresses, name = _isp(mine)
    platform = _platform_of(score.get("verdict"), _platforms(mine))
    members = {}
    for rec in store.all_agents():
        theirs = seen.get(rec.key)
        if rec.key == me.key or not theirs or (visible_sites is not None and rec.info.site not in visible_sites):
            continue
        their_addresses, their_name = _isp(theirs)
        same_isp = their_name == name if name and their_name else bool(addresses & their_addresses)
        flags = (
            site is not None and rec.info.site == site,
            bool(addresses) and same_isp,
            platform is not None and platform in _platforms(theirs),
        )
        if any(flags):
            members[rec.key] = flags
    hits = set()
    for (a, b), per in zip(spans, read, strict=True):
        kept = KeptScores(store, a, b, None, cfg)
        for key in members.keys() & per.keys() - hits:
            if any(m.degraded for m in timeline_of(key, per[key], a, b, cfg, kept).minutes if m.minute_us in wanted):
                hits.add(key)
    counts = {g: [0, 0] for g in ("site", "isp", "platform")}
    for key, flags in members.items():
        for g, inside in zip(("site", "isp", "platform"), flags, strict=True):
            if inside:
                counts[g][1] += 1
                counts[g][0] += key in hits
    out: dict = {"basis": basis, "since_us": spans[0][0], "until_us": spans[-1][1], "minutes": len(minutes)}
    out["site"] = {"name": site, "affected": counts["site"][0], "of": counts["site"][1]} if site else None
    out["isp"] = None
    if addresses:
        address = sorted(addresses)[0]
        out["isp"] = {"name": name or address, "address": address, "affected": counts["isp"][0], "of": counts["isp"][1]}
    out["platform"] = (
        {"name": platform, "affected": counts["platform"][0], "of": counts["platform"][1]} if platform else None
    )
    out["text"] = others_line(out)
    return out


# --- the scenario ---------------------------------------------------------------------------------


def desk(store, n, site, isp, app, bad, public=None, seq=1, at=T0):
    """Desk ``n`` reporting the minute ``at``: gateway, ISP hop (and a public hop) at 1 Hz, two app
    checks; ``bad``: 40 % loss beyond the gateway (a degraded minute)."""
    k = store.upsert_agent(AgentInfo(f"agent-{n}", f"DESK-{n}", f"user{n}", "Windows 11", "0.1.0", site), at)
    gw = p.Series(target="gateway", address="192.168.1.1", method="icmp_raw")
    hop = p.Series(target="isp", address=isp, method="icmp_raw", hop=2)
    pub = p.Series(target="public", address=public or "", method="icmp_raw", hop=3)
    web = p.Series(target=app, address="10.9.9.9", method="https", kind="http")
    for i in range(60):
        gw.add(at + i * S, 1500)
        hop.add(at + i * S, None if bad and i % 5 < 2 else 9000)
        pub.add(at + i * S, None if bad and i % 5 < 2 else 11000)
    for i in (0, 30):
        web.add(
            at + i * S, dns=2000, tcp=9000, tls=20000, ttfb=100000, total=130000, status=200, ver="HTTP/1.1", cert=90
        )
    series = [gw, hop, web] + ([pub] if public else [])
    store.commit_batches([PendingBatch(k, 1, seq, p.SampleBatch(series, [], []))])
    return k


def lab(store):
    """Maria (desk 1: Lisbon, ISP hop 100.64.0.1 behind Vodafone's public hop, Genesys) degraded.
    Named by the ASN file, Vodafone: desks 2 and 6 by name (other addresses); unnamed desks share
    the ISP when they share the hop address (3, 4); desk 7 shares it but is named BT, so it does not."""
    desk(store, 1, "Lisbon", "100.64.0.1", "genesys-login", True, public=VODAFONE)
    desk(store, 2, "Lisbon", VODAFONE_2, "genesys-login", True)
    desk(store, 3, "Lisbon", "100.64.0.1", "genesys-login", True)
    desk(store, 4, "Lisbon", "100.64.0.1", "genesys-login", False)
    desk(store, 5, "Lisbon", "100.64.9.9", "salesforce-login", False)
    desk(store, 6, "Braga", "145.254.7.7", "salesforce-login", True)
    desk(store, 7, "Porto", "100.64.0.1", "genesys-login", True, public=BT)
    desk(store, 8, "Porto", "100.70.0.1", "genesys-login", False)


@pytest.fixture
def named(asn_db):  # noqa: F811 - the fixture imported above
    prev = isp_name.install(IspNamer(NamingConfig(asn_db=asn_db, reverse_dns=False)))
    yield
    isp_name.install(prev).close()


def maria(store):
    (a,) = build(store, "user1", 600, now_us=NOW)["agents"]
    return store.agent("agent-1"), a["score"]


def both(store, scope=None):
    """(kept answer, today's answer) for Maria, over ``scope`` sites (None: all)."""
    me, score = maria(store)
    args = (me, score, NOW - 600 * S, NOW)
    kept = others_affected(scoped_store(store, scope), *args)
    via_param = others_affected(store, *args, visible_sites=scope)
    assert via_param == kept  # a scoped store and ``visible_sites`` alike
    return kept, reference(store, *args, visible_sites=scope)


def test_kept_rows_answer_as_scoring_every_desk(store_url, named):
    store = open_store(store_url)
    try:
        lab(store)
        table = table_for(store)
        assert table is not None and not table.digests(T0, NOW)
        first, want = both(store)  # the minute has no row: computed, and kept (it has settled)
        assert first == want
        assert T0 in table.digests(T0, NOW)
        again, _ = both(store)  # from the row
        assert again == want
        assert want["site"] == {"name": "Lisbon", "affected": 2, "of": 4}
        # Vodafone: 2 and 6 by name, 3 and 4 unnamed on the hop address; 7 (BT) and 8, 5 not.
        assert want["isp"]["name"] == "AS3209 Vodafone GmbH" and (want["isp"]["affected"], want["isp"]["of"]) == (3, 4)
        assert want["platform"] == {"name": "Genesys Cloud", "affected": 3, "of": 5}
        lisbon, want_lisbon = both(store, frozenset({"Lisbon"}))
        assert lisbon == want_lisbon and (lisbon["isp"]["affected"], lisbon["isp"]["of"]) == (2, 3)  # 6 (Braga) out
        assert (lisbon["platform"]["affected"], lisbon["platform"]["of"]) == (2, 3)  # 7, 8 (Porto) out
    finally:
        store.close()


def test_without_a_namer_addresses_compare(store_url):
    store = open_store(store_url)
    try:
        lab(store)
        keep_groups(store, T0 - 10 * 60 * S, NOW)  # as the loop keeps them
        got, want = both(store)
        assert got == want and want["isp"]["name"] == "100.64.0.1"
        assert (want["isp"]["affected"], want["isp"]["of"]) == (2, 3)  # 3, 4 and 7 share the hop address
    finally:
        store.close()


@pytest.mark.parametrize("late_by_min", [2, 12])
def test_a_late_batch_counts_once_the_loop_refreshed_the_minute(store_url, named, late_by_min):
    """Desk 4 (Lisbon) sends its loss late. The kept row is stale until the loop's next run checks
    the minute again: within the newest minutes every run, further back in its rotating recheck."""
    store = open_store(store_url)
    try:
        lab(store)
        keep_groups(store, T0 - 20 * 60 * S, NOW)
        first, _ = both(store)
        assert first["site"] == {"name": "Lisbon", "affected": 2, "of": 4}
        desk(store, 4, "Lisbon", "100.64.0.1", "genesys-login", True, seq=2)  # the same minute, now degraded
        stale, want = both(store)
        assert want["site"] == {"name": "Lisbon", "affected": 3, "of": 4}
        assert stale == first  # a cache until refreshed (docs/collector-internals.md bounds how long)
        until = T0 + (late_by_min + 1) * 60 * S
        kept, rebuilt, _ = keep_groups_step(store, until)
        assert kept + rebuilt >= 1
        got, want = both(store)
        assert got == want and want["site"]["affected"] == 3
    finally:
        store.close()


def test_unsettled_minutes_wait_while_settled_ones_compare(tmp_path):
    """A view of the last minutes: the newest, not settled yet, is left out (and not kept) when an
    older minute can be compared; alone, it is computed and still not kept."""
    store = open_store(str(tmp_path / "c.sqlite"))
    try:
        desk(store, 1, "Lisbon", "100.64.0.1", "genesys-login", False)
        desk(store, 2, "Lisbon", "100.64.0.1", "genesys-login", True)
        desk(store, 2, "Lisbon", "100.64.0.1", "genesys-login", False, seq=2, at=T0 + 60 * S)
        me = store.agent("agent-1")
        score = {"timeline": [{"minute_us": T0, "label": "poor"}, {"minute_us": T0 + 60 * S, "label": "poor"}]}
        now = T0 + 2 * 60 * S + 30 * S  # T0 settled, T0 + 1 min not yet
        o = others_affected(store, me, score, T0, T0 + 120 * S, now_us=now)
        assert o["minutes"] == 1 and o["left_out"] == 1 and o["as_of_us"] == T0 + 60 * S
        assert o["site"] == {"name": "Lisbon", "affected": 1, "of": 1}
        assert o["text"].endswith(" (as of 14:20 UTC)")  # T0 + 1 min = 2026-09-21 14:20 UTC
        assert sorted(table_for(store).digests(T0, NOW)) == [T0]
        score = {"timeline": [{"minute_us": T0 + 60 * S, "label": "poor"}]}
        o = others_affected(store, me, score, T0, T0 + 120 * S, now_us=now)
        assert o["minutes"] == 1 and "left_out" not in o and o["site"] == {"name": "Lisbon", "affected": 0, "of": 1}
        assert sorted(table_for(store).digests(T0, NOW)) == [T0]
    finally:
        store.close()


def test_group_keys_pack_small_and_large_sets():
    for keys in ([], [1], [5, 9_999], list(range(1, 2_000)), [k for k in range(1, 10_000) if k % 3]):
        bits = sum(1 << k for k in keys)
        packed = kg.pack(bits)
        assert kg.unpack(packed) == bits
        assert len(packed) <= 1 + max(4 * len(keys), (bits.bit_length() + 7) // 8)


def test_settle_line_is_the_loops():
    """A view keeps a minute the loop would have kept by then, never an earlier one."""
    import inspect

    from cxpulse.collector.jobs.kept import kept_scores_loop

    settle_s = inspect.signature(kept_scores_loop).parameters["settle_s"].default
    assert others_mod.SETTLE_US >= settle_s * S
