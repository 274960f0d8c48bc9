"""The public surface, the payload mapping, and the readers this machine can run for real."""

from __future__ import annotations

import dataclasses
import importlib
import os
import struct
from pathlib import Path

import cxpulse.agent.wifi as wifi
from cxpulse.agent.wifi import HIDDEN, WifiReading, hash_identity, linux, parse_text, read_wifi, to_columns
from cxpulse.v1.kinds import INT, KINDS, MAX_STR, STR
from cxpulse.v1.payload import SampleBatch, Series, decode, encode
from tests.requirements import require

FIXTURES = Path(__file__).parent / "fixtures"


def test_public_api_is_pinned() -> None:
    assert wifi.__all__ == [
        "HIDDEN",
        "UnrecognizedOutput",
        "WatcherConfig",
        "WifiReading",
        "WifiWatcher",
        "hash_identity",
        "parse_text",
        "read_wifi",
        "to_columns",
    ]
    assert [f.name for f in dataclasses.fields(WifiReading)] == [
        "connected",
        "source",
        "interface",
        "ssid",
        "bssid",
        "rssi_dbm",
        "noise_dbm",
        "channel",
        "frequency_mhz",
        "band",
        "width_mhz",
        "phy",
        "tx_rate_mbps",
        "rx_rate_mbps",
        "signal_percent",
        "hidden_by_os",
        "note",
    ]


def test_every_backend_imports_on_any_os() -> None:
    """Windows and macOS readers cannot run here, but must import (psutil's contract tests)."""
    for name in ("windows", "macos", "linux"):
        mod = importlib.import_module(f"cxpulse.agent.wifi.{name}")
        assert callable(mod.read_wifi)


def test_read_wifi_without_a_radio_is_a_clean_reading() -> None:
    require(os.uname().sysname == "Linux", "the Linux reader")
    require(not linux.wireless_interfaces(), "this machine has a Wi-Fi interface")
    r = read_wifi()
    assert (r.connected, r.note, r.ssid, r.rssi_dbm) == (False, "no Wi-Fi interface", None, None)


def test_linux_reader_on_a_recorded_tree(tmp_path: Path) -> None:
    """A sysfs tree with a wlan interface and a recorded /proc/net/wireless; nl80211 and iw turned off."""
    for name in ("eth0", "wlan0", "wlan1"):
        (tmp_path / "sys" / "class" / "net" / name).mkdir(parents=True)
    (tmp_path / "sys" / "class" / "net" / "wlan0" / "wireless").mkdir()
    (tmp_path / "sys" / "class" / "net" / "wlan1" / "phy80211").mkdir()
    (tmp_path / "proc" / "net").mkdir(parents=True)
    (tmp_path / "proc" / "net" / "wireless").write_text((FIXTURES / "proc" / "two-interfaces-telegraf.txt").read_text())
    reader = linux.LinuxReader(
        sys_root=str(tmp_path / "sys"), proc_root=str(tmp_path / "proc"), iw_every_s=0, use_netlink=False
    )
    assert linux.wireless_interfaces(str(tmp_path / "sys")) == ["wlan0", "wlan1"]
    r = reader.read()
    assert (r.connected, r.interface, r.rssi_dbm, r.source) == (True, "wlan0", -50, "proc")


def test_nl80211_station_attributes_decode() -> None:
    """The netlink attribute walker and rate decoding, on bytes laid out as the kernel sends them."""
    rate = linux._attr(5, struct.pack("=I", 12009)) + linux._attr(13, b"\x0b")
    attrs = linux._attrs(linux._attr(7, struct.pack("=b", -61)) + linux._attr(8, rate))
    assert struct.unpack("=b", attrs[7][:1])[0] == -61
    assert linux._rate(attrs[8]) == (1200.9, "802.11ax")


def test_nl80211_family_lookup_fails_cleanly_here() -> None:
    """Generic netlink answers ENOENT for nl80211 without cfg80211; the reader must fall back, not raise."""
    reader = linux.LinuxReader(iw_every_s=0)
    assert reader._netlink("wlan0") is None and reader._nl_failed


def test_to_columns_fits_the_payload_schema() -> None:
    cols = KINDS["wifi"]
    for path in sorted(FIXTURES.glob("*/*")):
        if path.name.endswith(".expected.json") or path.suffix == ".md":
            continue
        row = to_columns(parse_text(path.read_text(encoding="utf-8")))
        assert list(row) == list(cols), path
        for name, value in row.items():
            if value is None:
                continue
            if cols[name] == INT:
                assert isinstance(value, int) and not isinstance(value, bool), (path, name, value)
            if cols[name] == STR:
                assert isinstance(value, str) and len(value) <= MAX_STR, (path, name, value)


def test_to_columns_values_and_round_trip_through_the_payload() -> None:
    r = parse_text((FIXTURES / "wdutil" / "macos15-5ghz-redacted.txt").read_text(encoding="utf-8"))
    row = to_columns(r)
    assert row == {
        "conn": 1,
        "ssid": HIDDEN,
        "bssid": HIDDEN,
        "rssi": -79,
        "noise": -91,
        "snr": 12,
        "ch": 44,
        "mhz": 5220,
        "band": "5",
        "phy": "802.11ax",
        "tx": 103000,
        "rx": None,
        "q": None,
    }
    s = Series(target="wifi", address="en0", method=r.source, kind="wifi")
    s.add(1_760_000_000_000_000, **row)
    back = decode(encode(SampleBatch(series=[s])))
    assert back.series[0].cols["rssi"] == [-79] and back.series[0].method == "wdutil"


def test_hashing_hides_identity_but_keeps_it_stable() -> None:
    r = parse_text((FIXTURES / "iw" / "link-lede-minstrel.txt").read_text(encoding="utf-8"))
    a, b = to_columns(r, salt="site-1"), to_columns(r, salt="site-1")
    assert a == b and a["ssid"] != "LEDE-tp1043" and a["bssid"] != r.bssid and a["ssid"].startswith("h:")
    assert to_columns(r, salt="site-2")["ssid"] != a["ssid"]
    assert hash_identity(HIDDEN, "s") == HIDDEN and hash_identity(None, "s") is None
