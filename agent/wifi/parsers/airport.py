"""``airport -I`` (macOS up to 14.3; a stub that only prints a deprecation warning since 14.4).
An empty BSSID is the OS hiding it, not a disconnect.
Design notes: docs/agent-internals.md, "agent/wifi/parsers/airport.py".
"""

from __future__ import annotations

import re

from ._model import HIDDEN, WifiReading, complete, integer, norm_mac

SOURCE = "airport"
_DETECT = re.compile(r"^\s*agrCtlRSSI:\s*-?\d+|airport command line tool is deprecated|^\s*AirPort:\s*Off\s*$", re.M)
_OFF = re.compile(r"^\s*AirPort:\s*Off\s*$", re.M)


def detect(text: str) -> bool:
    return bool(_DETECT.search(text))


def parse(text: str) -> WifiReading:
    if _OFF.search(text):
        return WifiReading(connected=False, source=SOURCE, note="Wi-Fi is off")
    if not re.search(r"^\s*agrCtlRSSI:", text, re.M):
        return WifiReading(
            connected=None, source=SOURCE, note="airport is a stub since macOS 14.4; use wdutil info or system_profiler"
        )
    kv: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            kv.setdefault(key.strip(), value.strip())
    state = kv.get("state", "").lower()
    bssid_text, ssid = kv.get("BSSID"), kv.get("SSID")
    rssi = integer(kv.get("agrCtlRSSI"))
    connected = state == "running" if state else bool(bssid_text or ssid or rssi)
    hidden = connected and (not bssid_text or not ssid)
    channel = width = None
    if kv.get("channel"):
        first, _, second = kv["channel"].partition(",")
        channel = integer(first)
        extra = integer(second)
        # "48,80" gives the width; older releases print the secondary channel offset ("157,1", "11,-1").
        width = extra if extra in (20, 40, 80, 160, 320) else 40 if extra in (1, -1) else None
    return complete(
        WifiReading(
            connected=connected,
            source=SOURCE,
            ssid=ssid or (HIDDEN if connected else None),
            bssid=norm_mac(bssid_text),
            rssi_dbm=rssi or None,
            noise_dbm=integer(kv.get("agrCtlNoise")) or None,
            channel=channel,
            width_mhz=width,
            tx_rate_mbps=float(tx) if (tx := integer(kv.get("lastTxRate"))) is not None else None,
            hidden_by_os=hidden,
        )
    )
