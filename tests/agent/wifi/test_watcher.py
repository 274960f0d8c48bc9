"""A scripted day at the desk: each kind of Wi-Fi event appears exactly once, at the reading that shows it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cxpulse.agent.wifi import HIDDEN, WatcherConfig, WifiReading, WifiWatcher
from cxpulse.v1.kinds import EVENT_KINDS
from cxpulse.v1.payload import Event

S = 1_000_000
T0 = 1_760_000_000 * S
AP1, AP2 = "aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02"
GOOD = WifiReading(
    connected=True,
    source="nl80211",
    ssid="Office",
    bssid=AP1,
    rssi_dbm=-55,
    channel=36,
    frequency_mhz=5180,
    band="5",
    tx_rate_mbps=400.0,
)
DOWN = WifiReading(connected=False, source="nl80211")


def script() -> list[WifiReading]:
    seq = [GOOD] * 6  # 0-5 settle, rate history
    seq += [replace(GOOD, rssi_dbm=v) for v in (-72, -60, -74, -76)]  # 6-9 weak opens at 9 (3 of 5)
    seq += [replace(GOOD, rssi_dbm=-58)] * 3  # 10-12 weak closes at 12
    seq += [DOWN] * 4  # 13-16 disconnect at 13
    seq += [GOOD] * 2  # 17-18 reconnect at 17 (4 s)
    seq += [replace(GOOD, bssid=AP2, rssi_dbm=-50, channel=44, frequency_mhz=5220)] * 6  # 19 roam
    seq += [replace(seq[-1], tx_rate_mbps=60.0)] * 2  # 25-26 rate drop opens at 26
    seq += [replace(seq[-1], tx_rate_mbps=400.0)] * 2  # 27-28 rate drop closes at 28
    seq += [replace(seq[-1], channel=6, frequency_mhz=2437, band="2.4")] * 2  # 29 band change
    return seq


def run(readings: list[WifiReading], watcher: WifiWatcher | None = None) -> list[tuple[int, Event]]:
    w = watcher or WifiWatcher()
    out = []
    for i, r in enumerate(readings):
        for e in w.observe(T0 + i * S, r):
            out.append((i, e))
    return out


def by_kind(events, kind):
    return [(i, e) for i, e in events if e.kind == kind]


def test_each_event_exactly_once_at_the_reading_that_shows_it() -> None:
    events = run(script())
    for _, e in events:
        assert e.kind in EVENT_KINDS and 1 <= e.severity <= 3 and len(e.evidence) <= 512
        assert e.id == f"{e.kind}:wifi:{e.start_us}"
    ids = {}
    for _, e in events:
        ids.setdefault(e.kind, set()).add(e.id)
    assert {k: len(v) for k, v in ids.items()} == {
        "wifi_weak_signal": 1,
        "wifi_disconnect": 1,
        "wifi_roam": 1,
        "wifi_rate_drop": 1,
        "wifi_band_change": 1,
    }

    weak = by_kind(events, "wifi_weak_signal")
    assert [(i, e.end_us is None) for i, e in weak] == [(9, True), (12, False)]
    assert weak[0][1].start_us == T0 + 6 * S  # the episode starts at its first weak reading
    assert "worst -76 dBm" in weak[1][1].evidence

    down = by_kind(events, "wifi_disconnect")
    assert [(i, e.end_us is None) for i, e in down] == [(13, True), (17, False)]
    assert down[1][1].end_us - down[1][1].start_us == 4 * S
    assert "down for 4.0 s" in down[1][1].evidence

    ((i, roam),) = by_kind(events, "wifi_roam")
    assert i == 19 and AP1 in roam.evidence and AP2 in roam.evidence
    assert "-55 dBm -> -50 dBm" in roam.evidence and "channel 36 -> 44" in roam.evidence

    drop = by_kind(events, "wifi_rate_drop")
    assert [(i, e.end_us is None) for i, e in drop] == [(26, True), (28, False)]
    assert "60 Mbit/s" in drop[0][1].evidence and "400" in drop[0][1].evidence

    ((i, band),) = by_kind(events, "wifi_band_change")
    assert i == 29 and "5 GHz -> 2.4 GHz" in band.evidence and band.severity == 2


def test_unknown_state_changes_nothing() -> None:
    unknown = WifiReading(connected=None, ssid=HIDDEN, hidden_by_os=True)
    assert run([GOOD, unknown, unknown, GOOD]) == []


def test_hidden_bssid_is_no_roam_and_sustained_weak_needs_k_of_n() -> None:
    hidden = replace(GOOD, bssid=None, ssid=HIDDEN, hidden_by_os=True)
    flicker = [GOOD, hidden, replace(GOOD, rssi_dbm=-75), GOOD, GOOD, replace(GOOD, rssi_dbm=-75), GOOD]
    assert run(flicker) == []


def test_roam_on_another_channel_is_one_event_and_rate_history_restarts() -> None:
    moved = replace(GOOD, bssid=AP2, channel=44, frequency_mhz=5220, tx_rate_mbps=90.0)
    events = run([GOOD] * 6 + [moved] * 8)
    assert [e.kind for _, e in events] == ["wifi_roam"]


def test_channel_change_on_the_same_ap_is_a_band_change_event() -> None:
    events = run([GOOD, GOOD, replace(GOOD, channel=52, frequency_mhz=5260)])
    assert [(i, e.kind, e.severity) for i, e in events] == [(2, "wifi_band_change", 1)]


def test_starting_disconnected_reports_nothing_until_the_link_was_seen() -> None:
    assert run([DOWN, DOWN, GOOD]) == []


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        WatcherConfig(weak_k=6, weak_n=5)
    with pytest.raises(ValueError):
        WatcherConfig(rate_drop_ratio=1.5)
