"""``iw dev IF link`` and ``iw dev IF station dump`` (Linux nl80211 userspace tool); neither scans.
The rate's modulation names the PHY (EHT, HE, VHT, MCS).
Design notes: docs/agent-internals.md, "agent/wifi/parsers/iw.py".
"""

from __future__ import annotations

import re

from ._model import WifiReading, complete, integer, norm_mac, number

SOURCE = "iw"
_LINK = re.compile(r"^(Connected to \S+|Not connected\.)", re.M)
_STATION = re.compile(r"^Station ([0-9a-fA-F:]{17}) \(on (\S+)\)", re.M)


def detect(text: str) -> bool:
    return bool(_LINK.search(text) or _STATION.search(text))


def _rate(value: str | None) -> tuple[float | None, str | None, int | None]:
    if not value or value.lstrip().startswith("("):
        return None, None, None
    phy = (
        "802.11be"
        if "EHT-MCS" in value
        else "802.11ax"
        if "HE-MCS" in value
        else "802.11ac"
        if "VHT-MCS" in value
        else "802.11n"
        if re.search(r"\bMCS\b", value)
        else None
    )
    w = re.search(r"(\d+)MHz", value)
    return number(value.split("MBit/s")[0]), phy, int(w.group(1)) if w else None


def _unescape(ssid: str) -> str:
    """iw prints SSID bytes outside printable ASCII as ``\\xNN``; put the UTF-8 back together."""
    if "\\x" not in ssid:
        return ssid
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), ssid.encode("latin-1", "replace"))
    return raw.decode("utf-8", "replace")


def _fields(lines: list[str]) -> dict[str, str]:
    kv: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.strip().partition(":")
        if sep:
            kv.setdefault(key.strip(), value[1:] if value.startswith((" ", "\t")) else value)
    return kv


def parse(text: str) -> WifiReading:
    m = _LINK.search(text)
    if m and m.group(1).startswith("Not connected"):
        return WifiReading(connected=False, source=SOURCE)
    if m:
        head = text[m.start() :].splitlines()
        c = re.match(r"Connected to (\S+)(?: \(on (\S+)\))?", head[0])
        assert c is not None  # _LINK matched "Connected to X" at this line
        kv = _fields(head[1:])
        tx, phy, width = _rate(kv.get("tx bitrate"))
        rx, rphy, rwidth = _rate(kv.get("rx bitrate"))
        ssid = kv.get("SSID")
        return complete(
            WifiReading(
                connected=True,
                source=SOURCE,
                interface=c.group(2),
                bssid=norm_mac(c.group(1)),
                ssid=_unescape(ssid.rstrip("\r\n")) if ssid is not None else None,
                frequency_mhz=integer(kv.get("freq")),
                rssi_dbm=integer(kv.get("signal")),
                tx_rate_mbps=tx,
                rx_rate_mbps=rx,
                phy=phy or rphy,
                width_mhz=width or rwidth,
            )
        )
    s = _STATION.search(text)
    assert s is not None, "parse() is for text that detect() recognised"
    block = text[s.end() :].split("\nStation ")[0].splitlines()
    kv = _fields(block)
    tx, phy, width = _rate(kv.get("tx bitrate"))
    rx, rphy, rwidth = _rate(kv.get("rx bitrate"))
    return complete(
        WifiReading(
            connected=True,
            source=SOURCE,
            interface=s.group(2),
            bssid=norm_mac(s.group(1)),
            rssi_dbm=integer(kv.get("signal")),
            tx_rate_mbps=tx,
            rx_rate_mbps=rx,
            phy=phy or rphy,
            width_mhz=width or rwidth,
        )
    )
