"""``system_profiler SPAirPortDataType`` in its text form and its ``-json`` form.
Only the "Current Network Information" block is read; without it, not connected.
Design notes: docs/agent-internals.md, "agent/wifi/parsers/system_profiler.py".
"""

from __future__ import annotations

import json
import re

from ._model import HIDDEN, WifiReading, complete, integer, norm_mac, number, phy_name

SOURCE = "system_profiler"
_TEXT = re.compile(r"^\s*(Current Network Information|Supported PHY Modes|Card Type):", re.M)


def detect(text: str) -> bool:
    if text.lstrip().startswith("{"):
        return "spairport_" in text or "SPAirPortDataType" in text
    return bool(_TEXT.search(text))


def parse(text: str) -> WifiReading:
    if text.lstrip().startswith("{"):
        return _parse_json(json.loads(text))
    return _parse_text(text)


def _channel(value: object) -> tuple[int | None, str | None, int | None]:
    """(channel, band, width) from ``6 (2GHz, 20MHz)``, ``149,+1`` or ``6``."""
    if value is None:
        return None, None, None
    text = str(value)
    channel = integer(re.split(r"[ ,(]", text.strip())[0])
    b = re.search(r"\((2|5|6)\s*GHz", text)
    band = {"2": "2.4", "5": "5", "6": "6"}[b.group(1)] if b else None
    w = re.search(r"(\d+)\s*MHz", text)
    width = int(w.group(1)) if w else 40 if re.search(r",\s*[+-]1\b", text) else None
    return channel, band, width


def _signal_noise(value: str | None) -> tuple[int | None, int | None]:
    if not value:
        return None, None
    parts = [integer(p) for p in value.split("/")]
    rssi = parts[0] if parts and parts[0] else None
    noise = parts[1] if len(parts) > 1 and parts[1] else None
    return rssi, noise


def _status(value: str | None) -> bool | None:
    if not value:
        return None
    v = value.lower().replace("spairport_status_", "").replace("_", " ").strip()
    return v == "connected"


def _reading(iface: str | None, status: bool | None, ssid: str | None, fields: dict) -> WifiReading:
    if status is None:
        status = ssid is not None
    channel, band, width = _channel(fields.get("channel"))
    rssi, noise = _signal_noise(fields.get("signal_noise"))
    hidden = ssid == "<redacted>"
    rate = fields.get("rate")
    return complete(
        WifiReading(
            connected=status,
            source=SOURCE,
            interface=iface,
            ssid=HIDDEN if hidden else ssid,
            bssid=norm_mac(fields.get("bssid")),
            rssi_dbm=rssi,
            noise_dbm=noise,
            channel=channel,
            band=band,
            width_mhz=width,
            phy=phy_name(fields.get("phy")),
            tx_rate_mbps=number(str(rate)) if rate is not None else None,
            hidden_by_os=hidden,
        )
    )


def _parse_json(data: dict) -> WifiReading:
    interfaces = [i for item in data.get("SPAirPortDataType", []) for i in item.get("spairport_airport_interfaces", [])]
    # awdl0 and llw0 are Apple's peer-to-peer links; the station interface carries a status.
    candidates = [i for i in interfaces if "spairport_status_information" in i] or interfaces
    if not candidates:
        return WifiReading(connected=False, source=SOURCE, note="no Wi-Fi interface")
    iface = next((i for i in candidates if _status(i.get("spairport_status_information"))), candidates[0])
    cur = iface.get("spairport_current_network_information") or {}
    fields = {
        "channel": cur.get("spairport_network_channel"),
        "signal_noise": cur.get("spairport_signal_noise"),
        "rate": cur.get("spairport_network_rate"),
        "phy": cur.get("spairport_network_phymode"),
        "bssid": cur.get("spairport_network_bssid"),
    }
    return _reading(iface.get("_name"), _status(iface.get("spairport_status_information")), cur.get("_name"), fields)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _parse_text(text: str) -> WifiReading:
    lines = text.splitlines()
    iface = None
    seen: list[tuple[str | None, bool | None]] = []  # (interface, status) of each station interface
    for i, line in enumerate(lines):
        s = line.strip()
        if re.fullmatch(r"[a-z]+\d+:", s):
            iface = s[:-1]
        elif s.startswith("Status:") and not _peer_to_peer(iface):
            seen.append((iface, _status(s.partition(":")[2])))
        elif s == "Current Network Information:" and not _peer_to_peer(iface):
            return _current_block(lines, i, iface, seen[-1][1] if seen and seen[-1][0] == iface else None)
    # No current network: the radio is off ("Status: Off") or on but not associated.
    name, _ = seen[0] if seen else (None, None)
    return WifiReading(connected=False, source=SOURCE, interface=name)


def _peer_to_peer(iface: str | None) -> bool:
    """awdl0 (AirDrop) and llw0 (low-latency WLAN) are Apple's peer-to-peer links, not the station."""
    return iface is not None and iface.startswith(("awdl", "llw"))


def _current_block(lines: list[str], at: int, iface: str | None, status: bool | None) -> WifiReading:
    base = _indent(lines[at])
    ssid = None
    name_indent = None
    fields: dict[str, str] = {}
    keys = {
        "Channel": "channel",
        "Signal / Noise": "signal_noise",
        "Transmit Rate": "rate",
        "PHY Mode": "phy",
        "BSSID": "bssid",
    }
    for line in lines[at + 1 :]:
        if not line.strip():
            continue
        ind = _indent(line)
        if ind <= base:
            break
        s = line.strip()
        if name_indent is None:
            if not s.endswith(":"):
                break
            ssid, name_indent = s[:-1], ind
            continue
        if ind <= name_indent:
            break
        key, _, value = s.partition(": ")
        if key in keys:
            fields[keys[key]] = value.strip()
    return _reading(iface, status, ssid, fields)
