"""The ticket summary: the right fault domain, figures and next step for each scenario of issue 4.

The scenarios (collector/score/scenarios.py) carry their truth: which agent had which fault, when.
Each is loaded through a real store, with incident detection every minute as the collector runs
it, and the ticket is read for the first faulted agent over the scenario's window.
"""

from __future__ import annotations

import re

import pytest

from cxpulse.collector.lookup.report import build
from cxpulse.collector.lookup.ticket import headline, next_step, ticket_summary
from cxpulse.collector.store import open_store

S = 1_000_000

# scenario -> (domain label the ticket names, words of the next step, a figure the evidence carries)
EXPECT = {
    "weak_wifi": ("this desk's Wi-Fi", "Use a wired connection or move closer to the access point", r"RSSI -\d+ dBm"),
    "congested_uplink": ("the ISP (beyond the router)", "beyond the home router", r"p95 \d+ ms"),
    "isp_loss": (
        "the ISP (beyond the router)",
        "Contact the ISP: loss starts beyond the home router",
        r"\d+% vs 0% at the gateway",
    ),
    "vpn_hairpin": ("the VPN / secure web gateway", "Check the VPN", r"p95 \d+ ms"),
    "salesforce_outage": (
        "the Salesforce platform",
        "Salesforce-wide incident (now closed)",
        r"\d+ of \d+ checks failed",
    ),
    "site_wan_down": (
        "the ISP (beyond the router)",
        "Porto site-wide incident (now closed)",
        r"\d+% vs 0% at the gateway",
    ),
    "busy_cpu": ("this desk (the PC)", "Close or restart the busy program", r"CPU above 90% in \d+% of readings"),
    "dns_failing": ("DNS", "Check the DNS resolver", r"\d+ of \d+ checks failed \(dns"),
}


def _load(tmp_path, name: str):
    from cxpulse.collector.score import scenarios
    from cxpulse.collector.score.incidents import detect_incidents

    store = open_store(str(tmp_path / f"{name}.sqlite"))
    sc = scenarios.build(name)
    last = [0]

    def tick(now_us: int) -> None:  # incident detection once a minute, as the collector runs it
        if now_us - last[0] >= 60 * S:
            detect_incidents(store, now_us)
            last[0] = now_us

    scenarios.load(store, sc, tick)
    return store, sc


@pytest.mark.slow  # a scenario day each
@pytest.mark.parametrize("name", sorted(EXPECT))
def test_ticket_names_the_fault_domain_figures_and_next_step(tmp_path, name):
    store, sc = _load(tmp_path, name)
    try:
        agent_id = sc.faults[0].agents[0]
        view = build(store, agent_id, sc.minutes * 60, sc.end_us)
        a = next(x for x in view["agents"] if x["agent_id"] == agent_id)
        text = ticket_summary(a, view["window"])
    finally:
        store.close()
    where, step, figure = EXPECT[name]
    lines = text.splitlines()
    assert lines[0].startswith(f"cxpulse: {a['user']} on {a['host']} (site {a['site']}, agent {agent_id})"), text
    assert re.search(r"^Score: \d+/100 (poor|fair)", text, re.M), text
    assert any(line.startswith(f"Where: {where}, ") for line in lines), text
    assert re.search(figure, text), (figure, text)
    assert f"Next step: {step}" in text or step in text.split("Next step: ")[1], text
    # The fault window named in "Where" overlaps the injected fault.
    f = sc.faults[0]
    hl = headline(a)
    assert hl["fault_start_us"] < f.end_us and hl["fault_end_us"] > f.start_us, (hl, f)
    if name in ("salesforce_outage", "site_wan_down"):
        assert re.search(r"^Incident: \S+ .* since \d\d:\d\d", text, re.M), text
    assert len(lines) <= 16, "a ticket summary stays short"


@pytest.mark.slow
def test_clean_day_says_nothing_was_wrong(tmp_path):
    store, sc = _load(tmp_path, "clean_day")
    try:
        view = build(store, "lis-1", sc.minutes * 60, sc.end_us)
        text = ticket_summary(view["agents"][0], view["window"])
    finally:
        store.close()
    assert re.search(r"^Score: \d+/100 good", text, re.M), text
    assert "What was wrong: nothing abnormal measured" in text
    assert "Where:" not in text and "Incident:" not in text
    assert "ask the user for the exact time" in text


def _agent(**extra) -> dict:
    a = {
        "agent_id": "a-1",
        "user": "maria.silva",
        "host": "DESK-042",
        "site": "Lisbon",
        "os": "Windows 11",
        "targets": [
            {"target": "gateway", "hop": 1, "loss_pct": 0.0, "max_loss_run": 0},
            {"target": "isp", "hop": 2, "loss_pct": 7.5, "max_loss_run": 4},
        ],
        "apps": [],
        "wifi": None,
        "device": None,
        "events": [],
        "paths": [],
    }
    a.update(extra)
    return a


WINDOW = {"since_us": 1_790_000_000 * S, "until_us": 1_790_003_600 * S, "seconds": 3600}


def test_without_a_score_section_it_reports_only_what_was_measured():
    text = ticket_summary(_agent(), WINDOW)
    assert "Score: not computed for this window" in text
    assert "loss 7.5% at isp (hop 2), gateway 0.0%, longest run 4 samples" in text
    assert "Where: isp" in text and "No fault domain computed" in text
    empty = ticket_summary(_agent(targets=[]), WINDOW)
    assert "no samples in this window" in empty


def test_time_zone_is_named_and_applied():
    utc = ticket_summary(_agent(), WINDOW)
    assert "When: 2026-09-21 14:13 .. 15:13 UTC (1 h)" in utc
    lis = ticket_summary(_agent(), WINDOW, tz="Europe/Lisbon")
    assert "When: 2026-09-21 15:13 .. 16:13 WEST (1 h)" in lis


def test_a_platform_incident_is_the_next_step_whatever_the_domain():
    inc = {
        "id": 7,
        "kind": "platform",
        "scope": "Salesforce",
        "start_us": 1_790_000_520 * S,
        "end_us": None,
        "agents": 40,
    }
    score = {
        "window": {"score": 12.0, "label": "poor", "reason": "worst minute: apps"},
        "limiting": "apps",
        "faults": [
            {
                "domain": "app",
                "label": "app platform",
                "confidence": 0.9,
                "evidence": "Salesforce failing",
                "start_us": 1_790_000_520 * S,
                "end_us": 1_790_001_000 * S,
                "minutes": 8,
                "worst_score": 5.0,
                "incident": {"id": 7, "kind": "platform", "scope": "Salesforce"},
            }
        ],
        "incidents": [inc],
        "components": [],
        "timeline": [],
    }
    text = ticket_summary(_agent(score=score), WINDOW)
    assert "Next step: Salesforce-wide incident (ongoing), not this user's network" in text
    assert "Incident: 7 Salesforce since 14:22 UTC (open, 40 agents)" in text
    assert "Score: 12/100 poor, limited by app responsiveness (apps)" in text, "the component in plain words (glossary)"
    # One zone throughout, every clock time labelled: a Lisbon ticket has no bare or UTC time.
    lis = ticket_summary(_agent(score=score), WINDOW, tz="Europe/Lisbon")
    assert "Incident: 7 Salesforce since 15:22 WEST (open, 40 agents)" in lis
    times = re.findall(r"\d\d:\d\d(?::\d\d)?(?: \.\. \d\d:\d\d)?( [A-Z]{3,4}\b)?", lis)
    assert times and all(label == " WEST" for label in times), (times, lis)


@pytest.mark.parametrize(
    "domain,site,sentence,words",
    [
        ("wifi", "Lisbon", "weak Wi-Fi", "Use a wired connection or move closer to the access point"),
        ("network", "home", "loss starts at hop 2", "Contact the ISP: loss starts beyond the home router"),
        ("network", "Lisbon floor 3", "loss starts at hop 2", "Contact the site's network team or its ISP: the loss"),
        ("network", "home", "latency starts at hop 2", "check for big uploads"),
        ("device", "home", "CPU above 90%", "restart the PC"),
        ("vpn", "home", "VPN", "split tunnelling"),
        ("dns", "home", "DNS failing", "DNS resolver"),
        ("app", "home", "genesys failing", "status page"),
        ("unknown", "home", "no domain stands out", "No clear fault domain"),
    ],
)
def test_next_step_per_fault_domain(domain, site, sentence, words):
    r = {"domain": domain, "sentence": sentence, "incidents": [], "incident": None, "label": "poor", "source": "score"}
    assert words in next_step(r, {"site": site})


def test_ticket_links_back_to_the_view():
    """The ticket's last line is the page's address for this person, window and zone (issue 17):
    absolute with the collector's public URL, relative without one."""
    from cxpulse.collector.lookup.links import view_url

    since, until = WINDOW["since_us"], WINDOW["until_us"]
    link = view_url("https://cxpulse.example/", "agent 7/x", since, until, "Europe/Lisbon")
    assert link == (
        f"https://cxpulse.example/#/agent/agent%207%2Fx?since={since // 1_000_000}"
        f"&until={until // 1_000_000}&tz=Europe%2FLisbon"
    )
    assert view_url("", "a1", since, until).startswith("/#/agent/a1?since=")
    text = ticket_summary(_agent(), WINDOW, tz="Europe/Lisbon", link=link)
    assert text.splitlines()[-1] == f"View: {link}"
    assert "View:" not in ticket_summary(_agent(), WINDOW)
