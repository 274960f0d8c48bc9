"""``/proc/net/wireless``: the kernel's per-interface signal table (Linux wireless extensions).
The only signal source without nl80211 (no SSID, BSSID or frequency).
Design notes: docs/agent-internals.md, "agent/wifi/parsers/proc_wireless.py".
"""

from __future__ import annotations

import re

from ._model import WifiReading

SOURCE = "proc"
_HEADER = re.compile(r"Inter-\|\s*sta-\|")
_ROW = re.compile(r"^\s*([^\s:]+):\s+([0-9a-fA-F]{4})\s+(-?\d+)\.?\s+(-?\d+)\.?\s+(-?\d+)\.?", re.M)


def detect(text: str) -> bool:
    return bool(_HEADER.search(text))


def rows(text: str) -> list[tuple[str, int, int, int]]:
    """(interface, link quality, level, noise) per row, in file order."""
    return [(m.group(1), int(m.group(3)), int(m.group(4)), int(m.group(5))) for m in _ROW.finditer(text)]


def _real_dbm(value: int) -> bool:
    return -200 < value < 0


def reading_of(name: str, quality: int, level: int, noise: int) -> WifiReading:
    associated = quality > 0 or _real_dbm(level)
    return WifiReading(
        connected=associated,
        source=SOURCE,
        interface=name,
        rssi_dbm=level if _real_dbm(level) else None,
        noise_dbm=noise if _real_dbm(noise) else None,
    )


def parse(text: str) -> WifiReading:
    table = rows(text)
    if not table:
        return WifiReading(connected=False, source=SOURCE, note="no Wi-Fi interface")
    # Several radios (a USB dongle next to the built-in card): the first associated one carries the link.
    best = next((r for r in table if r[1] > 0 or _real_dbm(r[2])), table[0])
    return reading_of(*best)
