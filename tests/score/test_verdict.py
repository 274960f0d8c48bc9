"""One verdict per view: the page's headline, the ticket and the fleet row read the same one.

Issue 17: on a 1-hour view "Where" said the home network or ISP while "Next step" followed a
platform incident that had closed an hour before and was about something else; a ticket would
have been closed wrongly. Here every scenario of collector/score/scenarios.py is loaded through
a real SQLite store (incident detection once a minute, as the collector runs it) and read through
the lookup service the web API serves: the page JSON's headline, the ticket text and the fleet
row must name the same place and the same next step, for a faulted desk and a clean one.
"""

from __future__ import annotations

import functools
import re

import pytest

from cxpulse.collector.lookup.service import LookupService
from cxpulse.collector.score import scenarios as scn
from cxpulse.collector.score.incidents import detect_incidents
from cxpulse.collector.store import IncidentRecord, open_store
from cxpulse.v1.payload import SampleBatch, Series

S = 1_000_000
pytestmark = pytest.mark.timeout(300)


@functools.lru_cache(maxsize=1)
def _ticks(name: str):
    sc = scn.build(name, seed=1)
    return sc, list(sc.ticks())


def _load(tmp_path, name: str, extra=None):
    """The scenario through a real store; ``extra(now_us, items)`` may add batches to a tick."""
    sc, ticks = _ticks(name)
    if extra is not None:
        ticks = [(now, extra(now, list(items))) for now, items in ticks]
    store = open_store(str(tmp_path / f"{name}.sqlite"))
    nxt = [sc.t0_us + 37 * S]

    def tick(now_us: int) -> None:  # incident detection once a minute, as the collector runs it
        while now_us >= nxt[0]:
            detect_incidents(store, nxt[0])
            nxt[0] += 60 * S

    scn.load(store, sc, tick, ticks)
    return store, sc


def _line(text: str, head: str) -> str | None:
    return next((ln[len(head) :] for ln in text.splitlines() if ln.startswith(head)), None)


@pytest.mark.slow  # a scenario day each: 10-30 s
@pytest.mark.parametrize("name", sorted(scn.SCENARIOS))
def test_headline_ticket_and_fleet_agree(tmp_path, name):
    store, sc = _load(tmp_path, name)
    try:
        svc = LookupService(store, now_us=lambda: sc.end_us)
        faulted = sc.faults[0].agents[0] if sc.faults else "lis-1"
        clean = next((a.agent_id for a in scn.world() if all(a.agent_id not in f.agents for f in sc.faults)), faulted)
        fleet = {r["agent_id"]: r for r in svc.fleet(sc.minutes * 60)["worst"]}
        for agent_id in dict.fromkeys((faulted, clean)):
            page = svc.agent(agent_id, sc.t0_us, sc.end_us, 60, False, None)
            hl, text = page["headline"], page["ticket"]
            assert hl == page["agent"]["score"]["verdict"], "the page reads the view's one verdict"
            assert _line(text, "Next step: ") == hl["next_step"], (hl, text)
            where = _line(text, "Where: ")
            if hl["domain"]:
                assert where is not None and where.startswith(hl["domain_label"]), (hl, text)
            else:
                assert where is None, text
            if hl["incident"] is None:
                assert "incident" not in hl["next_step"], hl["next_step"]
            if agent_id == faulted and sc.faults:
                assert hl["domain"] == sc.faults[0].domain, (hl, text)
            row = fleet[agent_id]
            if sc.minutes * 60 == page["window"]["seconds"]:
                assert (row["fault_domain"], row["next_step"]) == (hl["domain"], hl["next_step"]), (row, hl)
    finally:
        store.close()


def _incident(store, kind: str, scope: str, agents: dict[int, tuple[int, int]], end_us: int | None) -> None:
    start = min(a for a, _ in agents.values())
    last = max(b for _, b in agents.values())
    inc = IncidentRecord(None, kind, scope, start, last, end_us, start + 30 * S, "injected", dict(agents))
    store.update_incidents(lambda open_now: [inc])


@pytest.mark.slow
def test_a_closed_incident_of_other_trouble_does_not_set_the_next_step(tmp_path):
    """The story of issue 17: a platform incident made of one refused check per desk, closed within
    a minute, early in the view; the person's own trouble later is loss at the ISP. "Where" said
    ISP, "Next step" said "ccaas-wide incident ... tell the user it is known"."""
    store, sc = _load(tmp_path, "isp_loss")
    try:
        f = sc.faults[0]
        keys = {a.info.agent_id: a.key for a in store.all_agents()}
        blip = sc.t0_us + 60 * S
        _incident(store, "platform", "genesys", dict.fromkeys(keys.values(), (blip, blip + 60 * S)), blip + 60 * S)
        svc = LookupService(store, now_us=lambda: sc.end_us)
        page = svc.agent(f.agents[0], sc.t0_us, sc.end_us, 60, False, None)
        hl, text = page["headline"], page["ticket"]
        assert hl["domain"] == "network" and hl["incident"] is None, hl
        assert "incident" not in hl["next_step"] and "ISP" in hl["next_step"], hl["next_step"]
        assert _line(text, "Next step: ") == hl["next_step"] and "Incident:" not in text, text
    finally:
        store.close()


def test_an_incident_overlapping_in_time_but_about_another_thing_is_not_the_verdict(tmp_path):
    """An open platform incident listing the desk during its ISP loss does not explain the loss:
    the window's verdict stays the ISP's, and names no incident."""
    store, sc = _load(tmp_path, "isp_loss")
    try:
        f = sc.faults[0]
        key = next(a.key for a in store.all_agents() if a.info.agent_id == f.agents[0])
        _incident(store, "platform", "salesforce", {key: (f.start_us, f.end_us)}, None)
        svc = LookupService(store, now_us=lambda: sc.end_us)
        hl = svc.agent(f.agents[0], sc.t0_us, sc.end_us, 60, False, None)["headline"]
        assert hl["domain"] == "network" and hl["incident"] is None, hl
        assert "incident" not in hl["next_step"], hl["next_step"]
    finally:
        store.close()


@pytest.mark.slow
def test_one_refused_check_on_every_desk_at_once_is_a_blip(tmp_path):
    """Issue 17: the app server was starting and every desk got one refused check in the same
    second. That opened a "ccaas-wide" platform incident and headlined "0 poor, limited by apps"
    for a desk whose real state was good. It must open no incident and headline no score."""
    sc0, _ = _ticks("clean_day")
    first, second = sc0.t0_us + 15 * S, sc0.t0_us + 45 * S  # the app's first two checks: one refused
    done = set()

    def refused(now_us: int, items: list) -> list:
        if now_us >= second + S and not done:
            done.add(now_us)
            for a in sc0.agents:
                s = Series("ccaas", "192.0.2.99", "https", kind="http")
                s.add(first, dns=1500, err="refused")
                s.add(
                    second,
                    dns=1500,
                    tcp=20_000,
                    tls=40_000,
                    ttfb=90_000,
                    total=160_000,
                    status=200,
                    ver="HTTP/2",
                    cert=60,
                )
                items.append((a, 10_000_000, SampleBatch([s], [])))
        return items

    store, sc = _load(tmp_path, "clean_day", refused)
    try:
        assert done, "the refused checks were sent"
        for k in range(7):  # the loop goes on after the data stops, and would close what it opened
            detect_incidents(store, sc.end_us + (37 + 60 * k) * S)
        assert store.incidents(sc.t0_us, sc.end_us + 3600 * S) == [], "one check per desk opened an incident"
        svc = LookupService(store, now_us=lambda: sc.end_us)
        for agent_id in ("lis-1", "hom-1"):
            page = svc.agent(agent_id, sc.t0_us, sc.end_us, 60, False, None)
            hl = page["headline"]
            assert hl["label"] == "good" and hl["domain"] is None, (hl, page["ticket"])
            assert page["agent"]["score"]["faults"] == [], page["agent"]["score"]["faults"]
            assert any("refused" in str(x["errors"]) for x in page["agent"]["apps"]), "the blip is still shown"
    finally:
        store.close()


@pytest.mark.slow
def test_loss_between_desk_and_router_is_the_lan_not_dns_nor_the_isp(tmp_path):
    """Issue 17's second lab: 5% loss on the desk -> home-router link was called "DNS" (lost DNS
    packets make lookups slow) or got "Contact the ISP: loss starts beyond the home router". Here
    one home desk on healthy Wi-Fi and one wired branch desk lose 5% to their gateway."""
    store, sc = _load(tmp_path, "lan_loss")
    try:
        svc = LookupService(store, now_us=lambda: sc.end_us)
        for f in sc.faults:
            (agent_id,) = f.agents
            page = svc.agent(agent_id, sc.t0_us, sc.end_us, 60, False, None)
            hl, text = page["headline"], page["ticket"]
            assert hl["domain"] == "lan" and hl["domain_label"] == "the home/branch router or LAN", (hl, text)
            step = hl["next_step"]
            assert "beyond the home router" not in step and "DNS" not in step and "Contact the ISP" not in step, step
            assert "router" in step and "the path is clean" not in text, text
            assert re.search(r"gateway \(\S+\) p95 [\d.]+ m?s with [1-9]\d*% loss", hl["sentence"]), hl["sentence"]
            if agent_id.startswith("lis-"):  # the wired branch desk: the site's team, the cable
                assert "site's network team" in step and "cable" in step, step
    finally:
        store.close()


def test_a_slow_platform_is_named_in_the_next_step():
    """The slow-platform next step said "Check apps's status page": the limiting component's name."""
    from cxpulse.collector.lookup.ticket import headline

    fault = {
        "domain": "app",
        "label": "the Genesys Cloud platform",
        "platform": "Genesys Cloud",
        "confidence": 0.9,
        "evidence": "genesys-api: 9 of 20 checks slower than 2 s",
        "start_us": 1,
        "end_us": 2,
        "minutes": 3,
        "worst_score": 20.0,
        "incident": None,
    }
    hl = headline(
        {
            "site": "home",
            "score": {
                "window": {"score": 20.0, "label": "poor", "reason": "apps"},
                "limiting": "apps",
                "faults": [fault],
                "incidents": [],
            },
        }
    )
    assert hl["next_step"].startswith("Check Genesys Cloud's status page"), hl["next_step"]
    assert "apps's" not in hl["next_step"]


def test_fisher_test_matches_the_hypergeometric_sum():
    from math import comb

    from cxpulse.collector.score.triage import more_lost_p

    for k1, n1, k2, n2 in ((4, 60, 0, 60), (3, 60, 0, 60), (5, 60, 1, 60), (27, 600, 2, 600), (1, 10, 0, 10)):
        n, k = n1 + n2, k1 + k2
        exact = sum(comb(n1, i) * comb(n2, k - i) for i in range(k1, min(k, n1) + 1)) / comb(n, k)
        assert abs(more_lost_p(k1, n1, k2, n2) - exact) < 1e-9 * max(1.0, exact), (k1, n1, k2, n2)
    assert more_lost_p(3, 60, 0, 60) > 0.05 and more_lost_p(27, 600, 0, 600) < 1e-6
    assert more_lost_p(0, 60, 5, 60) == 1.0


def test_a_few_lost_probes_at_a_hop_do_not_pick_the_isp_by_chance():
    """3 of 60 probes lost at the ISP hop vs 0 of 60 at the gateway ("5% vs 0%") during a minute
    when the CRM fails every check: chance explains the loss (p 0.12), the CRM does not."""
    from cxpulse.collector.score.timeline import timeline_of
    from cxpulse.collector.score.triage import triage_timeline
    from cxpulse.collector.store import rollup as ru
    from cxpulse.v1 import payload as p

    t0 = scn.T0_US
    gw = p.Series("gateway", "192.168.1.1", "icmp_raw", hop=1)
    isp = p.Series("isp", "100.64.1.1", "icmp_raw", hop=2)
    crm = p.Series("crm", "192.0.2.9", "https", kind="http")
    for i in range(600):
        gw.add(t0 + i * S, 1000 + (i * 37) % 300)
        isp.add(t0 + i * S, None if i in (300, 310, 320) else 9000 + (i * 53) % 900)
    for i in range(60):
        ts = t0 + i * 10 * S + 5 * S
        if 30 <= i < 36:
            crm.add(ts, dns=2000, tcp=9000, tls=20000, status=503, err="http")
        else:
            crm.add(ts, dns=2000, tcp=9000, tls=20000, ttfb=150000, total=180000, status=200)
    rs = list(ru.rollups_of_batches([(1, p.SampleBatch([gw, isp, crm]))]).values())
    (v,) = triage_timeline(timeline_of(1, rs, t0, t0 + 600 * S))
    assert v.domain == "app" and v.strengths["network"] == 0.0, v


def _desk_minutes(*, rise_ms: float, up_kbps: int, dn_kbps: int = 900, crm_fails: bool = False, lose_every: int = 0):
    """A wired home desk over 20 minutes; from minute 10 the ISP hop's RTT rises by ``rise_ms``,
    the desk's own traffic is ``up_kbps``/``dn_kbps`` (its line carried 10/100 Mbit/s at best) and,
    with ``crm_fails``, the CRM fails its checks; with ``lose_every``, every so many ISP-hop probes
    are lost (a line that drops instead of queueing). Gateway RTT stays flat throughout."""
    from cxpulse.collector.score.timeline import timeline_of
    from cxpulse.collector.store import rollup as ru
    from cxpulse.v1 import payload as p

    t0 = scn.T0_US
    gw = p.Series("gateway", "192.168.1.1", "icmp_raw", hop=1)
    isp = p.Series("isp", "100.64.1.1", "icmp_raw", hop=2)
    crm = p.Series("crm", "192.0.2.9", "https", kind="http")
    dev = p.Series("device", "local", "os", kind="device")
    for i in range(1200):
        late = i >= 600
        gw.add(t0 + i * S, 500 + (i * 37) % 300)
        extra = rise_ms * 1000 * (0.6 + 0.4 * ((i * 53) % 100) / 100) if late else 0
        lost = late and lose_every and i % lose_every == 0
        isp.add(t0 + i * S, None if lost else round(9000 + (i * 53) % 900 + extra))
        if i % 10 == 5:
            rtt = 9000 + extra
            if late and crm_fails:
                crm.add(t0 + i * S, dns=2000, tcp=round(rtt), tls=round(2 * rtt), status=503, err="http")
            else:
                crm.add(
                    t0 + i * S,
                    dns=2000,
                    tcp=round(rtt),
                    tls=round(2 * rtt),
                    ttfb=round(150_000 + 6 * rtt),
                    total=round(170_000 + 9 * rtt),
                    status=200,
                )
        if i % 10 == 7:
            up, dn = (up_kbps, dn_kbps) if late else (150, 900)
            dev.add(
                t0 + i * S,
                cpu=150,
                mem=500,
                nicerr=0,
                ifk="ethernet",
                up=up + (i * 7) % 100,
                dn=dn,
                upb=10_000,
                dnb=100_000,
                spd=1000,
                **{"if": "eth0"},
            )
    rs = list(ru.rollups_of_batches([(1, p.SampleBatch([gw, isp, crm, dev]))]).values())
    return timeline_of(1, rs, t0, t0 + 1200 * S)


def test_own_upload_filling_the_line_is_this_pcs_own_traffic_not_the_isp():
    """Issue 17: 'the screen freezes because the link is saturated'. The ISP hop's RTT rises by
    ~200 ms while this desk uploads 9.6 of its best 10 Mbit/s: its own traffic, not the ISP."""
    from cxpulse.collector.lookup.ticket import next_step
    from cxpulse.collector.score.triage import triage_timeline

    (v,) = triage_timeline(_desk_minutes(rise_ms=200, up_kbps=9_550))
    assert v.domain == "own_traffic", v
    assert v.label == "your connection, saturated by this PC's own traffic (upload 9.6 of 10 Mbit/s)", v.label
    assert v.confidence >= 0.9 and v.strengths["network"] < 0.1, v.strengths
    assert "upload at 9.6 of 10 Mbit/s" in v.evidence and "hop 2 (isp 100.64.1.1)" in v.evidence, v.evidence
    assert "normally 10 ms" in v.evidence, v.evidence
    step = next_step(v.to_dict())
    assert step.startswith("Pause or reschedule the big upload/download on this PC"), step


def test_the_same_delay_with_someone_elses_traffic_stays_the_isp():
    """The same rise while this desk sends little (another device at home, or the ISP): not this PC."""
    from cxpulse.collector.score.triage import triage_timeline

    (v,) = triage_timeline(_desk_minutes(rise_ms=200, up_kbps=300))
    assert v.domain == "network" and v.strengths["own_traffic"] == 0.0, v


def test_a_big_download_on_a_flat_rtt_is_no_fault():
    """95 of its best 100 Mbit/s down while the RTT stays flat (a fat line coping): the CRM failing
    at the same time is the platform's fault, and own traffic has no strength at all."""
    from cxpulse.collector.score.triage import triage_timeline

    (v,) = triage_timeline(_desk_minutes(rise_ms=0, up_kbps=150, dn_kbps=95_000, crm_fails=True))
    assert v.domain == "app" and v.strengths["own_traffic"] == 0.0, v


def test_own_upload_on_a_line_that_drops_instead_of_queueing_is_still_own_traffic():
    """A policed line: the RTT stays flat but 10% of the ISP hop's probes are lost while this desk
    uploads at its best. The loss alone would read as the ISP; the desk's own upload explains it."""
    from cxpulse.collector.score.triage import triage_timeline

    (v,) = triage_timeline(_desk_minutes(rise_ms=0, up_kbps=9_550, lose_every=10))
    assert v.domain == "own_traffic" and v.strengths["network"] < 0.1, v
    assert "loss starts at hop 2 (isp 100.64.1.1): 10% vs 0%" in v.evidence, v.evidence
    (isp,) = triage_timeline(_desk_minutes(rise_ms=0, up_kbps=300, lose_every=10))
    assert isp.domain == "network", isp


def _voice_run(voice, ts: int, recv: int) -> None:
    """One voice-cadence run of 250 packets, ``recv`` of them back, the losses in one burst."""
    voice.add(
        ts,
        sent=250,
        recv=recv,
        dup=0,
        reord=0,
        rtt=1500,
        rtt95=2500,
        jit=1000,
        loss=round(1000 * (250 - recv) / 250),
        burst=100 if recv < 250 else 0,
        run=int(recv < 250),
    )


def test_lan_loss_in_the_good_minutes_too_is_still_the_lan():
    """The namespace lab (tests/test_triage_lab.py): 3% loss each way on the desk -> router link
    lost 4 of 60 gateway probes a minute, yet real voice runs kept three minutes above "degraded";
    only the last (4 of 37) fell below. Those three were the agent's "good minutes", so the same
    loss there made the window's loss no worse than usual (Fisher p 0.11) and the verdict read
    "unknown" with every strength 0. Good minutes that lose probes to the gateway themselves are
    no healthy baseline for its loss."""
    from cxpulse.collector.score.timeline import timeline_of
    from cxpulse.collector.score.triage import triage_timeline
    from cxpulse.collector.store import rollup as ru
    from cxpulse.v1 import payload as p

    t0 = scn.T0_US
    gw = p.Series("gateway", "10.0.0.1", "icmp_raw", hop=1)
    isp = p.Series("isp", "10.0.1.2", "icmp_raw", hop=2)
    voice = p.Series("reflector", "10.0.9.1", "udp_reflect", kind="voice")
    lost = {m * 60 + 5 + 14 * j for m in (2, 3, 4) for j in range(4)} | {302, 311, 320, 329}
    for i in range(337):  # 5 minutes and 37 s: the view ends inside the last minute
        rtt = None if i in lost else 700 + (i * 37) % 300
        gw.add(t0 + i * S, rtt)
        isp.add(t0 + i * S, None if rtt is None else rtt + 400)  # behind the same link
        if i % 20 == 10:
            recv = 250 if i < 120 else (246 if i < 300 else 222)
            _voice_run(voice, t0 + i * S, recv)
    rs = list(ru.rollups_of_batches([(1, p.SampleBatch([gw, isp, voice]))]).values())
    tl = timeline_of(1, rs, t0, t0 + 337 * S)
    assert [m.degraded for m in tl.minutes] == [False] * 5 + [True]  # the lab's shape
    (v,) = triage_timeline(tl)
    assert v.domain == "lan", v
    assert v.strengths["network"] == 0.0 and "11% loss" in v.evidence, v


def _lossy_minute_after_clean_ones(gw_lost: set[int]):
    """Five clean minutes, then one where the voice runs lose 11.2% and the ISP hop 6 of 60
    probes, the gateway ``gw_lost``, and one CRM lookup waits out the resolver's 5 s retry (a lost
    query) without failing: the namespace lab's lan_loss window that was called "DNS"."""
    from cxpulse.collector.score.timeline import timeline_of
    from cxpulse.collector.store import rollup as ru
    from cxpulse.v1 import payload as p

    t0 = scn.T0_US
    gw = p.Series("gateway", "10.0.0.1", "icmp_raw", hop=1)
    isp = p.Series("isp", "10.0.1.2", "icmp_raw", hop=2)
    voice = p.Series("reflector", "10.0.9.1", "udp_reflect", kind="voice")
    crm = p.Series("crm", "192.0.2.9", "https", kind="http")
    isp_lost = {302, 311, 320, 329, 338, 347}
    for i in range(360):
        gw.add(t0 + i * S, None if i in gw_lost else 700 + (i * 37) % 300)
        isp.add(t0 + i * S, None if i in isp_lost else 1100 + (i * 53) % 300)
        if i % 20 == 10:
            recv = 250 if i < 300 else 222
            _voice_run(voice, t0 + i * S, recv)
        if i % 10 == 5:
            dns = 5_002_000 if i == 335 else 2000
            crm.add(t0 + i * S, dns=dns, tcp=9000, tls=20000, ttfb=150000, total=dns + 180000, status=200)
    rs = list(ru.rollups_of_batches([(1, p.SampleBatch([gw, isp, voice, crm]))]).values())
    tl = timeline_of(1, rs, t0, t0 + 360 * S)
    assert [m.degraded for m in tl.minutes] == [False] * 5 + [True]
    return tl


def test_a_lookup_slow_by_one_retry_while_voice_loses_is_not_dns():
    """CI's lab once called 5% loss on the desk -> router link "DNS": "DNS p95 5.0 s; the path is
    clean" while the voice runs lost 11.2%. The gateway had lost 1 of 60 probes (chance, at 10%
    round-trip loss) and the ISP hop 6 (not beyond chance more, Fisher p 0.057). A lookup slow by a
    retry is a loss symptom; the voice stream's loss confirms the gateway's, and nothing beyond the
    gateway loses more beyond chance: the LAN."""
    from cxpulse.collector.score.triage import triage_timeline

    (v,) = triage_timeline(_lossy_minute_after_clean_ones({317}))
    assert v.domain == "lan", v
    assert v.strengths["dns"] < 0.35, v
    assert "the path is clean" not in v.evidence, v


def test_with_a_clean_gateway_the_same_loss_is_not_the_lan_nor_dns():
    """The same minute with no gateway probe lost: the loss starts beyond the gateway (6 of 60 vs
    0 of 60, p 0.014), the ISP; the slow lookup is still no DNS fault."""
    from cxpulse.collector.score.triage import triage_timeline

    (v,) = triage_timeline(_lossy_minute_after_clean_ones(set()))
    assert v.domain == "network", v
    assert v.strengths["dns"] < 0.35 and v.strengths["lan"] == 0.0, v


def test_a_lucky_gateway_beside_lossy_hops_is_not_called_the_lan():
    """The corroboration has a limit: when the hops beyond the gateway, pooled, lose more than it
    beyond chance (18 of 180 vs 1 of 60, p 0.026), one lost gateway probe is no sign that the loss
    starts there; with no hop alone beyond chance either, the place is not named (nor DNS)."""
    from cxpulse.collector.score.timeline import timeline_of
    from cxpulse.collector.score.triage import triage_timeline
    from cxpulse.collector.store import rollup as ru
    from cxpulse.v1 import payload as p

    tl = _lossy_minute_after_clean_ones({317})
    t0 = scn.T0_US
    extra = []
    for name, addr, hop in (("public", "203.0.113.7", 3), ("anchor", "198.51.100.4", 4)):
        s = p.Series(name, addr, "icmp_raw", hop=hop)
        for i in range(360):
            s.add(t0 + i * S, None if i in {303, 312, 321, 330, 339, 348} else 1500 + (i * 29) % 300)
        extra.append(s)
    rs = [r for m in tl.minutes for r in m.rollups]
    rs += list(ru.rollups_of_batches([(1, p.SampleBatch(extra))]).values())
    (v,) = triage_timeline(timeline_of(1, rs, t0, t0 + 360 * S))
    assert v.domain == "unknown", v
    assert v.strengths["lan"] < 0.35 and v.strengths["dns"] < 0.35, v
