"""No link is an answer: a radio that is off or an interface that is not associated reads as
``connected: false`` in every tool and language, never as "not recognised"; and the multi-field
lines of iwconfig and nmcli's terse listing split where the tools put the boundaries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cxpulse.agent.wifi import parse_text
from cxpulse.agent.wifi.parsers import iwconfig, nmcli
from cxpulse.agent.wifi.parsers._model import NO_WIFI_INTERFACE

FIXTURES = Path(__file__).parent / "fixtures"
NO_LINK = re.compile(
    r"disconnected|not-associated|not-connected|radio-off|power-off|wifi-off|off-handmade"
    r"|no-interface|wlansvc|none-in-use|none-active|init-not"
)
CASES = sorted(p for p in FIXTURES.glob("*/*") if NO_LINK.search(p.name) and not p.name.endswith(".expected.json"))


def test_every_tool_has_a_no_link_fixture() -> None:
    tools = {p.parent.name for p in CASES}
    assert tools == {"netsh", "airport", "system_profiler", "wdutil", "iw", "iwconfig", "nmcli", "proc"}


def test_every_netsh_language_has_a_disconnected_fixture() -> None:
    langs = {p.name.split("-")[0] for p in CASES if p.parent.name == "netsh" and "disconnected" in p.name}
    assert {"en", "de", "fr", "es", "it", "ja", "zh", "pt"} <= langs


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_link_reads_as_not_connected(path: Path) -> None:
    r = parse_text(path.read_text(encoding="utf-8"))
    assert r.connected is False
    assert (r.ssid, r.bssid, r.rssi_dbm, r.channel, r.tx_rate_mbps) == (None, None, None, None, None)


@pytest.mark.parametrize(
    "text",
    [
        "There is no wireless interface on the system.\r\n",
        "Es ist keine Drahtlosschnittstelle auf dem System vorhanden.",
        "Il n'existe aucune interface sans fil sur le système.",
        "No hay ninguna interfaz inalámbrica en el sistema.",
        "Não há nenhuma interface sem fio no sistema.",
        "The Wireless AutoConfig Service (wlansvc) is not running.",
        "Le service de configuration automatique WLAN (wlansvc) n'est pas en cours d'exécution.",
    ],
)
def test_netsh_sentences_instead_of_a_report_mean_no_wifi(text: str) -> None:
    r = parse_text(text)
    assert (r.connected, r.source, r.note) == (False, "netsh", NO_WIFI_INTERFACE)


def test_netsh_report_that_mentions_wlansvc_is_still_a_report() -> None:
    text = (FIXTURES / "netsh" / "en-win11-ax201.txt").read_text(encoding="utf-8") + "\n(wlansvc) note\n"
    assert parse_text(text).connected is True


def test_wdutil_power_off_without_an_rssi_figure() -> None:
    text = (FIXTURES / "wdutil" / "macos-power-off-from-not-associated.txt").read_text(encoding="utf-8")
    text = re.sub(r"RSSI\s+: 0 dBm", "RSSI                 : None", text)
    assert parse_text(text).connected is False


def test_system_profiler_off_names_the_station_not_awdl() -> None:
    r = parse_text((FIXTURES / "system_profiler" / "text-wifi-off-handmade.txt").read_text(encoding="utf-8"))
    assert (r.connected, r.interface) == (False, "en0")


def test_iwconfig_line_with_several_quoted_pairs() -> None:
    assert iwconfig.pairs('  ESSID:"Office: 5G"  Nickname:"x"') == [("ESSID", '"Office: 5G"'), ("Nickname", '"x"')]
    assert iwconfig.pairs("          Mode:Managed  Frequency:5.18 GHz  Access Point: 00:11:22:33:44:55   ") == [
        ("Mode", "Managed"),
        ("Frequency", "5.18 GHz"),
        ("Access Point", "00:11:22:33:44:55"),
    ]
    assert iwconfig.pairs("  Link Quality=52/70  Signal level=-58 dBm  ") == [
        ("Link Quality", "52/70"),
        ("Signal level", "-58 dBm"),
    ]
    # A quote inside the SSID does not end it; two spaces inside a quoted SSID do not split it.
    assert iwconfig.pairs(' ESSID:"my "cool"  net"  Nickname:""') == [("ESSID", '"my "cool"  net"'), ("Nickname", '""')]
    assert iwconfig.pairs(' ESSID:"lab" [2]  Nickname:"n"') == [("ESSID", '"lab"'), ("Nickname", '"n"')]


def test_iwconfig_ssid_named_like_the_off_marker_is_a_link() -> None:
    text = (
        'wlan0     IEEE 802.11  ESSID:"off/any"  \n'
        "          Mode:Managed  Frequency:2.412 GHz  Access Point: 00:11:22:33:44:55   \n"
    )
    r = parse_text(text)
    assert (r.connected, r.ssid, r.channel) == (True, "off/any", 1)


def test_iwconfig_zero_access_point_is_no_link() -> None:
    text = 'wlan0     IEEE 802.11  ESSID:""  \n          Mode:Managed  Access Point: 00:00:00:00:00:00   \n'
    assert parse_text(text).connected is False


@pytest.mark.parametrize(
    "order",
    [
        "IN-USE,SSID,BSSID,CHAN,RATE,SIGNAL,SECURITY",
        "IN-USE,BSSID,SSID,MODE,CHAN,RATE,SIGNAL,BARS,SECURITY",
        "IN-USE,SSID,BSSID,MODE,CHAN,FREQ,RATE,SIGNAL",
    ],
)
def test_nmcli_terse_in_use_row_in_any_field_order(order: str) -> None:
    values = {
        "SSID": "Office\\: 5G",
        "BSSID": "AA\\:BB\\:CC\\:DD\\:EE\\:02",
        "MODE": "Infra",
        "CHAN": "36",
        "FREQ": "5180 MHz",
        "RATE": "540 Mbit/s",
        "SIGNAL": "78",
        "BARS": "▂▄▆_",
        "SECURITY": "WPA2",
    }
    fields = order.split(",")

    def row(mark: str, bssid_last: str, ssid: str) -> str:
        v = dict(values, BSSID=values["BSSID"][:-1] + bssid_last, SSID=ssid)
        return ":".join(mark if f == "IN-USE" else v[f] for f in fields)

    text = "\n".join([row(" ", "1", "Guest"), row("*", "2", "Office\\: 5G"), row(" ", "3", "")]) + "\n"
    assert nmcli.detect(text)
    r = parse_text(text)
    assert (r.connected, r.ssid, r.bssid, r.channel, r.tx_rate_mbps, r.signal_percent) == (
        True,
        "Office: 5G",
        "aa:bb:cc:dd:ee:02",
        36,
        540.0,
        78,
    )
    assert parse_text(text.replace("*:", " :")).connected is False
