""" "Is it just me?", events grouped and ranked by impact, and ``cxpulse lookup``'s short output:
computed once in the view (report), read alike by the JSON, the ticket and the CLI."""

from __future__ import annotations

import json

from cxpulse.collector.lookup.event_groups import group_events
from cxpulse.collector.lookup.others import others_line
from cxpulse.collector.lookup.report import build, render_compact, render_text
from cxpulse.collector.lookup.scope import scoped_store
from cxpulse.collector.lookup.ticket import ticket_summary
from cxpulse.collector.lookup.words import EVENT_EXPLAINED, EVENT_WORDS, event_place, event_words
from cxpulse.collector.store import AgentInfo, PendingBatch, open_store
from cxpulse.v1 import payload as p
from cxpulse.v1.kinds import EVENT_KINDS
from tests.conftest import run_cli

S = 1_000_000
NOW = 1_790_000_640 * S  # a minute boundary
T0 = NOW - 300 * S  # five minutes before: minute T0 is the bad one


def desk(store, n: int, site: str, isp: str, app: str, bad: bool, events=()):
    """One desk reporting minute T0: gateway and ISP hop at 1 Hz, two app checks; ``bad``: 40 % loss
    beyond the gateway (a degraded minute); ``events``: the desk's events of that minute."""
    k = store.upsert_agent(AgentInfo(f"agent-{n}", f"DESK-{n}", f"user{n}", "Windows 11", "0.1.0", site), T0)
    gw = p.Series(target="gateway", address="192.168.1.1", method="icmp_raw")
    hop = p.Series(target="isp", address=isp, method="icmp_raw", hop=2)
    web = p.Series(target=app, address="10.9.9.9", method="https", kind="http")
    for i in range(60):
        gw.add(T0 + i * S, 1500)
        hop.add(T0 + i * S, None if bad and i % 5 < 2 else 9000)
    for i in (0, 30):
        web.add(
            T0 + i * S, dns=2000, tcp=9000, tls=20000, ttfb=100000, total=130000, status=200, ver="HTTP/1.1", cert=90
        )
    store.commit_batches([PendingBatch(k, 1, 1, p.SampleBatch([gw, hop, web], list(events), []))])
    return k


def ev(kind, target, start_s, secs, sev, eid=None):
    return p.Event(
        eid or f"{kind}:{target}:{start_s}", kind, target, T0 + start_s * S, T0 + (start_s + secs) * S, sev, "seen"
    )


def lab(tmp_path):
    """Maria (Lisbon, ISP hop A, Genesys) degraded; in Lisbon 2 more degraded of 4 others; on ISP A
    one more desk elsewhere, degraded; Porto desks on another ISP checking Genesys, one degraded."""
    store = open_store(str(tmp_path / "c.sqlite"))
    maria_events = [
        ev("loss_burst", "isp", 10, 4, 2),
        ev("loss_burst", "isp", 30, 3, 2),
        ev("outage", "isp", 40, 6, 3),
        ev("wifi_roam", "wlan0", 50, 0, 1),
        ev("latency_spike", "gateway", 20, 2, 1),
        ev("app_failure", "genesys-login", 5, 2, 2),
    ]
    desk(store, 1, "Lisbon", "100.64.0.1", "genesys-login", True, maria_events)
    desk(store, 2, "Lisbon", "100.64.0.1", "genesys-login", True)
    desk(store, 3, "Lisbon", "100.64.0.1", "genesys-login", True)
    desk(store, 4, "Lisbon", "100.64.0.1", "genesys-login", False)
    desk(store, 5, "Lisbon", "100.64.9.9", "salesforce-login", False)
    desk(store, 6, "Braga", "100.64.0.1", "salesforce-login", True)
    desk(store, 7, "Porto", "100.70.0.1", "genesys-login", True)
    desk(store, 8, "Porto", "100.70.0.1", "genesys-login", False)
    return store


def maria(store, **kw):
    (a,) = build(store, "user1", 600, now_us=NOW, **kw)["agents"]
    return a


def test_others_counts_site_isp_and_platform_over_the_degraded_minutes(tmp_path):
    store = lab(tmp_path)
    try:
        a = maria(store)
    finally:
        store.close()
    o = a["score"]["verdict"]["others"]
    assert o["basis"] == "degraded" and o["minutes"] == 1 and o["since_us"] == T0 and o["until_us"] == T0 + 60 * S
    # Lisbon: desks 2-5 reported, 2 and 3 degraded; ISP hop 100.64.0.1: desks 2, 3, 4, 6; Genesys: 2, 3, 4, 7, 8.
    assert o["site"] == {"name": "Lisbon", "affected": 2, "of": 4}
    assert o["isp"]["address"] == "100.64.0.1" and (o["isp"]["affected"], o["isp"]["of"]) == (3, 4)
    assert o["platform"] == {"name": "Genesys Cloud", "affected": 3, "of": 5}
    assert others_line(o) == ("2 of 4 desks in Lisbon, 3 of 4 on the same ISP (100.64.0.1), 3 of 5 on Genesys Cloud")


def test_others_only_counts_desks_the_caller_may_see(tmp_path):
    """A key scoped to Lisbon learns nothing of Braga or Porto: through the scoped store (issue 18)
    and through ``visible_sites`` alike."""
    store = lab(tmp_path)
    try:
        via_param = maria(store, visible_sites={"Lisbon"})["score"]["verdict"]["others"]
        (a,) = build(scoped_store(store, frozenset({"Lisbon"})), "user1", 600, now_us=NOW)["agents"]
        via_store = a["score"]["verdict"]["others"]
    finally:
        store.close()
    for o in (via_param, via_store):
        assert o["site"] == {"name": "Lisbon", "affected": 2, "of": 4}
        assert (o["isp"]["affected"], o["isp"]["of"]) == (2, 3)  # desk 6 (Braga) left out
        assert (o["platform"]["affected"], o["platform"]["of"]) == (2, 3)  # desks 7, 8 (Porto) left out
        assert "Braga" not in json.dumps(o) and "Porto" not in json.dumps(o)


def test_nothing_degraded_compares_the_window(tmp_path):
    store = open_store(str(tmp_path / "c.sqlite"))
    try:
        desk(store, 1, "Lisbon", "100.64.0.1", "genesys-login", False)
        desk(store, 2, "Lisbon", "100.64.0.1", "genesys-login", True)
        o = maria(store)["score"]["verdict"]["others"]
    finally:
        store.close()
    assert o["basis"] == "window" and o["minutes"] == 10 and o["until_us"] == NOW
    assert o["site"] == {"name": "Lisbon", "affected": 1, "of": 1}


def test_alone_on_a_site_says_no_other_desk(tmp_path):
    store = open_store(str(tmp_path / "c.sqlite"))
    try:
        desk(store, 1, "Faro", "100.64.0.1", "genesys-login", True)
        o = maria(store)["score"]["verdict"]["others"]
    finally:
        store.close()
    assert o["site"] == {"name": "Faro", "affected": 0, "of": 0}
    assert others_line(o).startswith("no other desk in Faro reporting")


# --- events grouped and ranked by impact ----------------------------------------------------------


def test_events_grouped_by_place_and_ranked_by_felt_seconds_times_severity(tmp_path):
    store = lab(tmp_path)
    try:
        a = maria(store)
    finally:
        store.close()
    groups = a["event_groups"]
    # ISP: 4 s x2 + 3 s x2 + 6 s x3 = 32; the platform: 2 s x2 = 4; home network: 2 s x1; Wi-Fi: an instant roam = 1 s.
    assert [(g["place"], g["impact"]) for g in groups] == [
        ("ISP", 32.0),
        ("Genesys Cloud", 4.0),
        ("home/office network", 2.0),
        ("Wi-Fi", 1.0),
    ]
    isp = groups[0]
    assert isp["events"] == 3 and isp["seconds"] == 13.0 and isp["worst"] == "critical"
    assert isp["event_ids"] == ["outage:isp:40", "loss_burst:isp:10", "loss_burst:isp:30"]
    assert isp["what"] == {"packets lost": 2, "connection lost": 1}
    by_id = {e["id"]: e for e in a["events"]}
    assert by_id["outage:isp:40"]["what"] == "connection lost" and by_id["outage:isp:40"]["impact"] == 18.0


def test_an_open_event_is_felt_until_the_window_ends():
    e = {"id": "x", "kind": "outage", "target": "isp", "start_us": 100 * S, "end_us": None, "severity": 3}
    (g,) = group_events([e], 0, 160 * S)
    assert g["seconds"] == 60.0 and g["impact"] == 180.0


def test_every_event_kind_has_words_and_a_sentence():
    for kind in EVENT_KINDS:
        assert kind in EVENT_WORDS and "_" not in event_words(kind), kind
        assert EVENT_EXPLAINED[kind].endswith("."), kind
    assert event_place("latency_spike", "genesys-edge") == ("platform:Genesys Cloud", "Genesys Cloud")
    assert event_place("dns_failure", "genesys-login")[1] == "DNS"
    assert event_place("device_pressure", "device")[1] == "this PC"


# --- the same order and words in the ticket, the text and the short CLI output ---------------------


def test_ticket_and_text_show_others_and_groups_in_the_views_order(tmp_path):
    store = lab(tmp_path)
    try:
        view = build(store, "user1", 600, now_us=NOW)
    finally:
        store.close()
    a = view["agents"][0]
    ticket = ticket_summary(a, view["window"])
    assert (
        "Others at the same time: 2 of 4 desks in Lisbon, 3 of 4 on the same ISP (100.64.0.1), 3 of 5 on Genesys Cloud"
        in ticket
    )
    events = next(line for line in ticket.splitlines() if line.startswith("Events:"))
    assert events.index("ISP 3") < events.index("Genesys Cloud 1") < events.index("home/office network 1")
    assert "1 more place" in events and "latency_spike" not in ticket and "loss_burst" not in ticket
    text = render_text(view)
    places = [
        line.strip().split(":")[0]
        for line in text.splitlines()
        if line.startswith("    ") and " event" in line and " in all, worst " in line
    ]
    assert places == ["ISP", "Genesys Cloud", "home/office network", "Wi-Fi"]
    assert "connection lost [outage] at isp" in text  # --full keeps the key after the words


def test_compact_output_leads_with_start_and_place(tmp_path):
    store = lab(tmp_path)
    try:
        view = build(store, "user1", 600, now_us=NOW)
    finally:
        store.close()
    out = render_compact(view, "Europe/Lisbon").splitlines()
    assert out[0] == "user1 on DESK-1 (site Lisbon), agent agent-1"
    assert out[1].startswith("Started 2026-09-21 ") and " WEST" in out[1], out[1]  # Lisbon summer time, labelled
    assert out[2].startswith("Verdict: ") and out[3].startswith("Next step: ")
    assert out[4].startswith("Others at the same time (in the degraded time, ")
    assert "2 of 4 desks in Lisbon" in out[4]
    assert out[5].startswith("Events by place, the most felt first (6 in all):")
    assert [x.split(":")[0].strip() for x in out[6:9]] == ["ISP", "Genesys Cloud", "home/office network"]
    assert out[9] == "  ... 1 more place (--full)"
    assert "hop target" not in "\n".join(out) and "loss%" not in "\n".join(out)


def test_cli_lookup_short_by_default_full_on_request(tmp_path):
    store = lab(tmp_path)
    store.close()
    db = str(tmp_path / "c.sqlite")
    short = run_cli("lookup", "user1", "--db", db, "--window", "100000d")
    assert short.returncode == 0, short.stderr
    assert short.stdout.startswith("user1 on DESK-1 (site Lisbon)") and "Started " in short.stdout
    assert "Others at the same time" in short.stdout and "loss%" not in short.stdout
    full = run_cli("lookup", "user1", "--db", db, "--window", "100000d", "--full")
    assert full.returncode == 0, full.stderr
    assert "loss%" in full.stdout and "Next step:" in full.stdout and "[outage]" in full.stdout
    helptext = run_cli("lookup", "--help").stdout
    assert "--full" in helptext and "--tz" in helptext
    bad = run_cli("lookup", "user1", "--db", db, "--tz", "Mars/Olympus")
    assert bad.returncode == 2 and "unknown time zone" in bad.stderr and not bad.stdout


def test_others_and_groups_alike_on_postgresql(tmp_path, monkeypatch):
    """The same counts and groups from PostgreSQL's rollups and kept scores, scoped or not."""
    from tests.stores import fresh_schema, postgres_url

    (tmp_path / "sqlite").mkdir()
    sqlite = lab(tmp_path / "sqlite")
    try:
        want, want_scoped = maria(sqlite), maria(sqlite, visible_sites={"Lisbon"})
    finally:
        sqlite.close()
    with fresh_schema(postgres_url()) as (_, url):
        real = open_store
        monkeypatch.setitem(globals(), "open_store", lambda _path: real(url))
        store = lab(tmp_path)
        try:
            got, got_scoped = maria(store), maria(store, visible_sites={"Lisbon"})
        finally:
            store.close()
    assert got["score"]["verdict"]["others"] == want["score"]["verdict"]["others"]
    assert got_scoped["score"]["verdict"]["others"] == want_scoped["score"]["verdict"]["others"]
    assert got["event_groups"] == want["event_groups"]
