"""``sudo wdutil info`` (macOS 12+; the airport replacement Apple points to).
Only the WIFI section is read; radio off or not associated read as not connected.
Design notes: docs/agent-internals.md, "agent/wifi/parsers/wdutil.py".
"""

from __future__ import annotations

import re

from ._model import HIDDEN, WifiReading, complete, integer, norm_mac, number, phy_name

SOURCE = "wdutil"
_RULE = re.compile(r"^[\u2014\-=]{10,}\s*$")
_DETECT = re.compile(r"^\s*RSSI\s+:\s+-?\d+ dBm\s*$", re.M)


_POWER = re.compile(r"^\s*Power\s+:\s+(On|Off)\b", re.M)


def detect(text: str) -> bool:
    # A radio that is off may print no RSSI figure at all; its Power line still says what it is.
    shaped = _DETECT.search(text) or _POWER.search(text)
    return bool(shaped) and bool(re.search(r"^\s*(Tx Rate|Op Mode)\s+:", text, re.M))


def _wifi_section(text: str) -> list[str]:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "WIFI" and i > 0 and _RULE.match(lines[i - 1]):
            out = []
            for nxt in lines[i + 2 :]:
                if _RULE.match(nxt):
                    break
                out.append(nxt)
            return out
    return lines


def parse(text: str) -> WifiReading:
    kv: dict[str, str] = {}
    for line in _wifi_section(text):
        key, sep, value = line.partition(" : ")
        if sep and key.strip():
            kv.setdefault(key.strip(), value.strip())
    ssid, bssid = kv.get("SSID"), kv.get("BSSID")
    op, power = kv.get("Op Mode", ""), kv.get("Power", "")
    connected = not (op in ("", "None") or ssid == "None" or power.startswith("Off"))
    hidden = "<redacted>" in (ssid, bssid)
    band = channel = width = None
    ch_text = kv.get("Channel", "")
    m = re.match(r"(\d)g(\d+)/(\d+)", ch_text)
    if m:
        band = {"2": "2.4", "5": "5", "6": "6"}.get(m.group(1))
        channel, width = int(m.group(2)), int(m.group(3))
    else:
        channel = integer(ch_text.split("(")[0]) if ch_text else None
        w = re.search(r"(\d+)\s*MHz", ch_text)
        width = int(w.group(1)) if w else None
        b = re.search(r"(2\.4|5|6)\s*GHz", ch_text)
        band = b.group(1) if b else None
    return complete(
        WifiReading(
            connected=connected,
            source=SOURCE,
            interface=kv.get("Interface Name"),
            ssid=HIDDEN if ssid == "<redacted>" else (ssid if ssid not in (None, "", "None") else None),
            bssid=norm_mac(bssid),
            rssi_dbm=integer(kv.get("RSSI")),
            noise_dbm=integer(kv.get("Noise")) or None,
            channel=channel,
            band=band,
            width_mhz=width,
            phy=phy_name(kv.get("PHY Mode")),
            tx_rate_mbps=number(kv.get("Tx Rate")),
            hidden_by_os=hidden,
        )
    )
