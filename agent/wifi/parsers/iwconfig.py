"""``iwconfig`` (Linux wireless-tools, deprecated but still on many desks and in forum pastes).

One block per interface, starting at column 0. ``ESSID:off/any`` and
``Access Point: Not-Associated`` mean no link. Frequencies are in GHz ("2.437 GHz"); the
``IEEE 802.11abgn`` header is what the card supports, not the current PHY, so it is not reported.
"""

from __future__ import annotations

import re

from ._model import WifiReading, complete, integer, norm_mac

SOURCE = "iwconfig"
_DETECT = re.compile(r"IEEE 802\.11\S*\s+ESSID:|no wireless extensions\.")


def detect(text: str) -> bool:
    return bool(_DETECT.search(text))


def _blocks(text: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if line and not line[0].isspace():
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
    return blocks


def parse(text: str) -> WifiReading:
    radios = [b for b in _blocks(text) if "IEEE 802.11" in b[0]]
    if not radios:
        return WifiReading(connected=False, source=SOURCE, note="no Wi-Fi interface")
    joined = ["\n".join(b) for b in radios]
    body = next((j for j in joined if "Not-Associated" not in j and "ESSID:off" not in j), joined[0])
    iface = body.split("IEEE 802.11", 1)[0].strip()
    essid = re.search(r'ESSID:(?:"(.*)"|(off/any))', body)
    ap = re.search(r"Access Point:\s*(.+?)\s{2,}|Access Point:\s*(\S+)\s*$", body, re.M)
    ap_text = (ap.group(1) or ap.group(2)).strip() if ap else None
    connected = not ((essid and essid.group(2)) or (ap_text and ap_text.startswith("Not-Associated")))
    freq = re.search(r"Frequency[:=]\s*([\d.]+)\s*GHz", body)
    rate = re.search(r"Bit Rate[:=]\s*([\d.]+)\s*([GMk])b/s", body)
    level = re.search(r"Signal level[:=]\s*(-\d+)\s*dBm", body)
    noise = re.search(r"Noise level[:=]\s*(-\d+)\s*dBm", body)
    tx = None
    if rate:
        tx = float(rate.group(1)) * {"G": 1000.0, "M": 1.0, "k": 0.001}[rate.group(2)]
    return complete(WifiReading(
        connected=connected, source=SOURCE, interface=iface,
        ssid=essid.group(1) if essid and essid.group(1) is not None else None,
        bssid=norm_mac(ap_text),
        frequency_mhz=int(round(float(freq.group(1)) * 1000)) if freq else None,
        tx_rate_mbps=tx, rssi_dbm=integer(level.group(1)) if level else None,
        noise_dbm=integer(noise.group(1)) if noise else None,
    ))
