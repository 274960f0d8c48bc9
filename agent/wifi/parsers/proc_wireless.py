"""``/proc/net/wireless``: the kernel's per-interface signal table (Linux wireless extensions).

Cheap to read every few seconds (no process, no netlink), and the only signal source when
nl80211 is unavailable. It has no SSID, BSSID or frequency. ``level`` is dBm when negative; a
noise of -256 is the kernel's way of printing "no noise figure" (0 with the dBm flag set). A
row of zeros means the interface exists but is not associated.
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


def reading_of(name: str, quality: int, level: int, noise: int) -> WifiReading:
    associated = level < 0 or quality > 0
    return WifiReading(
        connected=associated, source=SOURCE, interface=name,
        rssi_dbm=level if -200 < level < 0 else None,
        noise_dbm=noise if -200 < noise < 0 else None,
    )


def parse(text: str) -> WifiReading:
    table = rows(text)
    if not table:
        return WifiReading(connected=False, source=SOURCE, note="no Wi-Fi interface")
    # Several radios (a USB dongle next to the built-in card): the first associated one carries the link.
    best = next((r for r in table if r[2] < 0 or r[1] > 0), table[0])
    return reading_of(*best)
