"""The lookup's score section: score now and per minute, components, limiting factor, fault domain
with confidence and evidence, incidents the agent belongs to, journeys; text and JSON."""

from __future__ import annotations

import json

from cxpulse.collector.lookup.report import build, render_json, render_text
from cxpulse.collector.score import scenarios as scn
from cxpulse.collector.score.incidents import detect_incidents
from cxpulse.collector.store import open_store
from tests.test_lookup import NOW, filled_store

S = 1_000_000


def test_existing_lookup_data_gets_a_score_section(tmp_path):
    store = filled_store(tmp_path)
    try:
        view = build(store, "maria", 3600, now_us=NOW)
    finally:
        store.close()
    sc = view["agents"][0]["score"]
    assert sc["window"]["score"] is not None and sc["limiting"] in ("voice", "apps", "wifi", "stability")
    assert {c["name"] for c in sc["components"]} == {"voice", "apps", "wifi", "stability"}
    assert sc["now"]["minute_us"] + 60 * S <= NOW and sc["timeline"]
    assert sc["fault"] is not None and 0 < sc["fault"]["confidence"] <= 1 and sc["fault"]["evidence"]
    assert next(j["name"] for j in sc["journeys"]) == "Voice call connects and stays clear"
    json.loads(render_json(view))
    text = render_text(view)
    for needle in ("score:", "components: voice", "limiting factor:", "per minute:", "fault domain:", "journey "):
        assert needle in text, needle


def test_a_desk_in_a_salesforce_outage_reads_app_platform_and_its_incident(tmp_path):
    sc = scn.Scenario(
        "outage",
        [a for a in scn.world() if a.site != "Porto"],
        scn.SCENARIOS["salesforce_outage"](__import__("random").Random(1)),
        minutes=18,
    )
    store = open_store(str(tmp_path / "c.sqlite"))
    try:
        nxt = [sc.t0_us + 30 * S]

        def tick(now: int) -> None:
            while now >= nxt[0]:
                detect_incidents(store, nxt[0])
                nxt[0] += 60 * S

        scn.load(store, sc, tick)
        view = build(store, "ana.lis1", 1800, now_us=sc.end_us)
    finally:
        store.close()
    (a,) = view["agents"]
    score = a["score"]
    assert score["fault"]["domain"] == "app" and score["fault"]["confidence"] >= 0.8
    assert "salesforce" in score["fault"]["evidence"] and "part of incident 1" in score["fault"]["evidence"]
    (inc,) = score["incidents"]
    assert inc["kind"] == "platform" and inc["scope"] == "salesforce" and inc["agents"] >= 3
    text = render_text(view)
    assert "fault domain: the Salesforce platform (confidence" in text and "incident 1: platform salesforce" in text
    assert "limited by apps" in text


def test_a_long_window_merges_its_good_minutes_once_for_triage_and_its_sections(tmp_path):
    """A long window's sections merge the whole window and triage its good minutes; the lookup
    derives the first from the second (``_merge_window``). It must equal both merges done apart,
    key order included (the first voice, device and Wi-Fi rollup is the one shown)."""
    from cxpulse.collector.lookup.report import _merge_window
    from cxpulse.collector.score.timeline import app_history, merged, timeline_of
    from cxpulse.collector.score.triage import good_minutes
    from cxpulse.collector.store import rollup as ru

    sc = scn.Scenario(
        "outage",
        [a for a in scn.world() if a.site != "Porto"],
        scn.SCENARIOS["salesforce_outage"](__import__("random").Random(1)),
        minutes=18,
    )
    store = open_store(str(tmp_path / "c.sqlite"))
    try:
        scn.load(store, sc)
        until = sc.end_us
        since = until - 7200 * S
        (agent,) = store.find_agents("ana.lis1")
        rollups = app_history(store, agent.key, ru.minute_of(since)) + store.rollups(
            ru.minute_of(since), until, agent.key
        )
    finally:
        store.close()
    tl = timeline_of(agent.key, rollups, ru.minute_of(since), until)
    usual = good_minutes(tl)
    assert usual and len(usual) < len(tl.minutes)  # some minutes degraded, some good
    good, window = _merge_window(tl, rollups, since, until)
    want_good = merged(r for m in usual for r in m.rollups)
    want_window = merged(r for r in rollups if r.minute_us >= ru.minute_of(since))
    for got, want in ((good, want_good), (window, want_window)):
        assert list(got) == list(want)
        for k, r in got.items():
            assert (r.hop, ru.encode(r.kind, r.data)) == (want[k].hop, ru.encode(r.kind, want[k].data)), k
