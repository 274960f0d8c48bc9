"""Components and their combination: scores worked by hand from the documented anchors."""

from __future__ import annotations

import itertools

import pytest

import cxpulse.collector.score as score
from cxpulse.collector.score.components import (
    DISCONNECT_CAP,
    MOS_ANCHORS,
    AppCheck,
    Component,
    Overall,
    WifiReading,
    apps_component,
    label_for,
    overall,
    piecewise,
    stability_component,
    voice_component,
    voice_score_from_mos,
    wifi_component,
    window_score,
)
from cxpulse.collector.score.emodel import one_way_delay, rate_path
from cxpulse.v1.payload import Event

S = 1_000_000
T0 = 1_790_000_000 * S


def test_labels_are_the_issue_bands():
    assert [label_for(x) for x in (100, 70, 69.9, 30, 29.9, 0, None)] == [
        "good",
        "good",
        "fair",
        "fair",
        "poor",
        "poor",
        "n/a",
    ]


def test_piecewise_interpolates_and_is_flat_beyond_the_ends():
    pts = ((0.0, 0.0), (10.0, 100.0))
    assert [piecewise(x, pts) for x in (-5, 0, 2.5, 10, 50)] == [0, 0, 25, 100, 100]


# --- voice ---


def test_voice_score_anchors_follow_the_g109_boundaries():
    assert voice_score_from_mos(1.0) == 0
    assert voice_score_from_mos(4.5) == 100
    assert voice_score_from_mos(3.6) == 70  # the journey's MOS 3.6 is the good line
    assert voice_score_from_mos(3.1) == pytest.approx(30)
    xs = [1 + i / 100 for i in range(351)]
    ys = [voice_score_from_mos(x) for x in xs]
    assert all(b >= a for a, b in itertools.pairwise(ys))
    assert [a for a, _ in MOS_ANCHORS] == sorted(a for a, _ in MOS_ANCHORS)


def test_voice_clean_path_is_good_and_says_clear():
    c = voice_component(rtt_to_edge_ms=20, jitter_ms=2, loss_pct=0)
    assert c.name == "voice" and c.label == "good" and c.score == 100
    assert "clear" in c.reason
    # one-way: 10 ms network + 40 ms jitter buffer (floor) + 20 ms G.711 packet
    assert c.evidence["one_way_ms"] == 70 and c.evidence["codec"] == "g711-plc"


def test_voice_score_is_the_e_model_mos_mapped():
    c = voice_component(rtt_to_edge_ms=120, jitter_ms=25, loss_pct=6, burst_r=3, codec="g711-plc")
    d = one_way_delay(120, 25, "g711-plc")
    r = rate_path(d.total_ms, 6, codec="g711-plc", burst_r=3)
    assert c.score == round(voice_score_from_mos(r.mos), 1)
    assert c.evidence["mos"] == round(r.mos, 2) and c.evidence["r"] == round(r.r, 1)
    assert c.label != "good"
    assert c.reason.startswith(f"MOS {r.mos:.1f}") and "loss 6.0% in bursts" in c.reason


def test_voice_delay_dominated_reason_names_the_delay():
    c = voice_component(rtt_to_edge_ms=600, jitter_ms=5, loss_pct=0.1)
    assert "one-way delay" in c.reason and "RTT 600 ms" in c.reason
    assert "loss" not in c.reason.split(":", 1)[1].split(";")[0]


def test_voice_codec_matters():
    assert voice_component(20, 2, 0, codec="g729a").score < voice_component(20, 2, 0, codec="g711-plc").score
    with pytest.raises(ValueError, match="unknown codec"):
        voice_component(20, 2, 0, codec="amr")


# --- apps ---


def test_apdex_by_hand():
    durations = [100, 200, 300, 700, 900, 2500]  # 3 satisfied, 2 tolerating, 1 frustrated at T 500
    c = apps_component([AppCheck("crm", d) for d in durations])
    a = c.evidence["apps"]["crm"]
    assert (a["satisfied"], a["tolerating"], a["frustrated"], a["failed"]) == (3, 2, 1, 0)
    assert a["apdex"] == round((3 + 2 / 2) / 6, 3)
    assert c.score == round(30 + (0.667 - 0.5) / 0.35 * 40, 1)  # between the 0.5 and 0.85 anchors
    assert c.label == "fair" and "crm: Apdex 0.67" in c.reason


def test_failures_cap_by_availability():
    checks = [AppCheck("crm", 100)] * 5 + [AppCheck("crm", None, ok=False)]
    c = apps_component(checks)
    a = c.evidence["apps"]["crm"]
    assert a["availability_pct"] == pytest.approx(83.33)
    # Apdex 5/6 alone would say fair 68.1; availability 83% says 30 + 3.33/15 * 40 = 38.9
    assert c.score == pytest.approx(38.9, abs=0.1)
    assert "1 of 6 checks failed" in c.reason


def test_thresholds_per_app_and_the_worst_app_is_the_component():
    checks = [AppCheck("crm", 800)] * 4 + [AppCheck("wfm", 800)] * 4
    c = apps_component(checks, thresholds={"wfm": 1000})
    assert c.evidence["apps"]["wfm"]["apdex"] == 1.0 and c.evidence["apps"]["crm"]["apdex"] == 0.5
    assert c.evidence["worst"] == "crm" and c.score == 30.0
    assert c.reason.startswith("crm:")


def test_no_checks_is_not_measured():
    c = apps_component([])
    assert c.score is None and c.label == "n/a"


# --- wifi ---


def readings(n=60, **kw):
    base = {"connected": True, "rssi_dbm": -58, "snr_db": 35, "tx_kbps": 400_000, "bssid": "aa:aa"}
    out = []
    for i in range(n):
        fields = {k: (v(i) if callable(v) else v) for k, v in {**base, **kw}.items()}
        out.append(WifiReading(T0 + i * S, **fields))
    return out


def test_wifi_strong_link_is_good():
    c = wifi_component(readings())
    assert c.score == 100 and c.label == "good" and "healthy" in c.reason


def test_wifi_weak_moments_count_not_the_median():
    # Median -62 dBm (fine), but 10% of the minute at -78 dBm: the 10th percentile is -78.
    c = wifi_component(readings(rssi_dbm=lambda i: -78 if i % 10 == 0 else -62))
    assert c.evidence["rssi_p10_dbm"] == -78 and c.evidence["rssi_median_dbm"] == -62
    assert c.score == pytest.approx(piecewise(-78, ((-85, 0), (-75, 30))), abs=0.1)
    assert c.label == "poor" and "RSSI -78 dBm" in c.reason


def test_wifi_at_the_voice_design_target_is_good_and_below_minus_75_poor():
    assert wifi_component(readings(rssi_dbm=-67)).label == "good"
    assert wifi_component(readings(rssi_dbm=-71)).label == "fair"
    assert wifi_component(readings(rssi_dbm=-76)).label == "poor"


def test_wifi_low_snr():
    c = wifi_component(readings(snr_db=14))
    assert c.label == "poor" and "SNR 14 dB" in c.reason


def test_wifi_disconnect_caps_and_says_so():
    c = wifi_component(readings(connected=lambda i: i not in (20, 21)))
    assert c.evidence["disconnects"] == 1
    assert c.score <= DISCONNECT_CAP and "link dropped 1 time" in c.reason
    assert wifi_component(readings(connected=False)).score == 0


def test_wifi_roams_counted_hidden_bssids_ignored():
    ping_pong = wifi_component(readings(bssid=lambda i: "aa" if (i // 10) % 2 else "bb"))
    assert ping_pong.evidence["roams"] == 5 and ping_pong.label == "poor"
    one = wifi_component(readings(bssid=lambda i: "aa" if i < 30 else "bb"))
    assert one.evidence["roams"] == 1 and one.label == "good"
    hidden = wifi_component(readings(bssid=lambda i: "<hidden-by-os>" if i % 2 else "aa"))
    assert hidden.evidence["roams"] == 0


def test_wifi_rate_collapse():
    c = wifi_component(readings(tx_kbps=lambda i: 6_000 if 30 <= i < 33 else 300_000))
    assert c.evidence["rate_collapses"] == 1 and c.score == 60
    fast_still = wifi_component(readings(tx_kbps=lambda i: 100_000 if 30 <= i < 33 else 866_000))
    assert fast_still.evidence["rate_collapses"] == 0  # 100 Mbit/s is no collapse


def test_no_wifi_readings_is_not_measured():
    c = wifi_component([])
    assert c.score is None and c.label == "n/a"


# --- stability ---


def ev(kind, start_s, end_s, sev, eid="e"):
    return Event(eid, kind, "gw", T0 + int(start_s * S), None if end_s is None else T0 + int(end_s * S), sev)


def test_no_events_is_perfect():
    c = stability_component([], 60, window_start_us=T0)
    assert c.score == 100 and c.label == "good"


def test_overlaps_count_once_at_the_highest_severity():
    events = [ev("loss_burst", 10, 13, 3, "a"), ev("latency_spike", 12, 20, 1, "b")]
    c = stability_component(events, 60, window_start_us=T0)
    # 10-13 s critical (3 s x 1.0) + 13-20 s minor (7 s x 0.25) = 4.75 s
    assert c.evidence["weighted_s"] == 4.75
    assert c.evidence["worst_event"]["kind"] == "loss_burst" and c.evidence["worst_event"]["id"] == "a"
    assert c.score == round(piecewise(4.75 / 60, ((0.02, 70), (0.10, 30))), 1)


def test_events_are_clipped_to_the_window_and_open_ones_run_to_its_end():
    events = [ev("outage", -30, 5, 3), ev("loss_burst", 50, None, 2)]
    c = stability_component(events, 60, window_start_us=T0)
    assert c.evidence["weighted_s"] == 5 + 10 * 0.5
    assert c.label == "poor"


def test_instant_events_count_one_second():
    c = stability_component([ev("path_change", 30, 30, 1)], 60, window_start_us=T0)
    assert c.evidence["weighted_s"] == 0.25


def test_good_line_is_two_percent_at_critical():
    c = stability_component([ev("outage", 0, 1.2, 3)], 60, window_start_us=T0)
    assert c.score == 70 and c.label == "good"


def test_without_window_start_events_are_taken_as_clipped():
    c = stability_component([ev("loss_burst", 0, 6, 3), ev("loss_burst", 100, None, 3)], 60)
    assert c.evidence["weighted_s"] == 7  # 6 s + the open one as an instant
    with pytest.raises(ValueError):
        stability_component([], 0)


# --- combining ---


def comp(name, score):
    return Component(name, score, label_for(score), f"{name} reason", {})


def test_one_bad_component_is_not_averaged_away():
    o = overall([comp("voice", 95), comp("apps", 98), comp("wifi", 20), comp("stability", 100)])
    assert o.score == 20 and o.label == "poor" and o.limiting == "wifi"
    assert o.reason == "wifi: wifi reason"


def test_unmeasured_components_do_not_count_and_ties_go_to_the_first():
    o = overall([comp("voice", 60), comp("apps", None), comp("wifi", 60)])
    assert o.score == 60 and o.limiting == "voice" and len(o.components) == 3
    none = overall([comp("apps", None)])
    assert none.score is None and none.label == "n/a" and none.limiting is None


def minute(score, limiting="voice"):
    return Overall(score, label_for(score), limiting, f"{limiting}: bad", ())


def test_window_is_the_mean_of_its_worst_minutes_not_the_mean():
    minutes = [(m, minute(95, "apps")) for m in range(15)]
    minutes[7] = (7, minute(10, "voice"))
    w = window_score(minutes)
    # 15 minutes: the worst ceil(1.5) = 2 count: (10 + 95) / 2
    assert w.score == 52.5 and w.label == "fair"
    assert w.mean == pytest.approx((14 * 95 + 10) / 15)  # what a plain mean would have said: good
    assert w.worst[0] == (7, 10, "voice") and len(w.worst) == 2
    assert w.reason.startswith("worst minute 7: voice: bad")
    assert w.limiting == "voice"  # a tie of votes goes to the worst minute's component


def test_window_limiting_is_the_component_of_most_worst_minutes():
    minutes = [(m, minute(95)) for m in range(60)]
    for m in (3, 4, 5, 6):
        minutes[m] = (m, minute(40, "wifi"))
    minutes[9] = (9, minute(5, "apps"))
    w = window_score(minutes)
    assert len(w.worst) == 6 and w.limiting == "wifi"
    assert w.score == pytest.approx((5 + 4 * 40 + 95) / 6)


def test_window_of_nothing_and_bad_fraction():
    assert window_score([]).label == "n/a"
    assert window_score([(0, Overall(None, "n/a", None, "", ()))]).score is None
    with pytest.raises(ValueError):
        window_score([(0, minute(50))], worst_fraction=0)


def test_components_serialize():
    o = overall(
        [
            voice_component(20, 2, 0),
            apps_component([AppCheck("crm", 100)]),
            wifi_component([]),
            stability_component([], 60),
        ]
    )
    d = o.to_dict()
    assert d["limiting"] in {"voice", "apps", "stability"} and [c["name"] for c in d["components"]] == [
        "voice",
        "apps",
        "wifi",
        "stability",
    ]
    assert window_score([(0, o)]).to_dict()["score"] == d["score"]


def test_public_api_is_deliberate():
    assert sorted(score.__all__) == sorted(
        [
            "CODECS",
            "AppCheck",
            "Codec",
            "Component",
            "DelayBudget",
            "LatencySketch",
            "Overall",
            "Params",
            "Rating",
            "WifiReading",
            "WindowScore",
            "apps_component",
            "burst_r_from_runs",
            "codec_by_name",
            "label_for",
            "mos_from_r",
            "one_way_delay",
            "overall",
            "rate",
            "rate_path",
            "stability_component",
            "voice_component",
            "wifi_component",
            "window_score",
        ]
    )
    assert all(hasattr(score, name) for name in score.__all__)
