"""``netsh wlan show interfaces`` in any Windows display language.
Labels are translated, so never matched: fields are told by the shape of their values and their order.
Design notes: docs/agent-internals.md, "agent/wifi/parsers/netsh.py".
"""

from __future__ import annotations

import re

from ._model import HIDDEN, NO_WIFI_INTERFACE, WifiReading, complete, integer, norm_mac, number, phy_name

SOURCE = "netsh"
_KV = re.compile(r"^\s*([^:\r\n]{1,80}?)\s*:\s?(.*?)\s*$")
_GUID = re.compile(r"^[0-9a-fA-Fx]{8}-[0-9a-fA-Fx]{4}-[0-9a-fA-Fx]{4}-[0-9a-fA-Fx]{4}-[0-9a-fA-Fx]{12,13}$")
_MACLIKE = re.compile(r"^(?:[0-9A-Fa-fx]{1,2}[:-]){5}[0-9A-Fa-fx]{1,2}$")
_PCT = re.compile(r"^(\d{1,3})\s*%$")
_NUM = re.compile(r"^\d{1,3}(?:[ \u00a0\u202f]?\d{3})*(?:[.,]\d+)?$")
_INT = re.compile(r"^\d{1,3}$")
_BAND = re.compile(r"^(2[.,]4|5|6)\s*(?:GHz|ГГц|GHZ)$", re.I)
_RADIO = re.compile(r"^802\.11[a-z]{1,2}$", re.I)
_RSSI = re.compile(r"^-\d{2,3}$")
_PRIVACY = "ms-settings:privacy-location"
_SERVICE_STOPPED = re.compile(r"\(wlansvc\)", re.I)
# netsh's "There is no wireless interface on the system." as Windows words it per display language
# (the words that carry the meaning; punctuation and the rest of the sentence vary).
_NO_INTERFACE = re.compile(
    r"no wireless interface"  # en
    r"|keine Drahtlosschnittstelle|keine WLAN-Schnittstelle"  # de
    r"|aucune interface sans fil"  # fr
    r"|ninguna interfaz inal[aá]mbrica"  # es
    r"|nenhuma interface (?:sem fio|wireless)"  # pt
    r"|nessuna interfaccia (?:wireless|senza fili)"  # it
    r"|ワイヤレス\s*インターフェイスがありません"  # ja
    r"|没有无线接口|沒有無線介面",  # zh-CN, zh-TW
    re.I,
)


def _not_a_report(text: str) -> WifiReading | None:
    """The one-sentence answers netsh gives instead of a report; None when ``text`` is a report."""
    if any(_GUID.match(m.group(2)) for m in map(_KV.match, text.splitlines()) if m):
        return None
    if _SERVICE_STOPPED.search(text):
        # Without the service no Wi-Fi can be used; desktops without a radio usually have it stopped, so
        # this is "no Wi-Fi here" (nothing recorded) rather than a disconnect to report every look.
        return WifiReading(connected=False, source=SOURCE, note=NO_WIFI_INTERFACE)
    if _NO_INTERFACE.search(text):
        return WifiReading(connected=False, source=SOURCE, note=NO_WIFI_INTERFACE)
    return None


def detect(text: str) -> bool:
    if _PRIVACY in text or _not_a_report(text) is not None:
        return True
    values = [m.group(2) for m in map(_KV.match, text.splitlines()) if m]
    shapes = sum(1 for v in values if _GUID.match(v) or _RADIO.match(v) or _PCT.match(v))
    return shapes >= 2 or (shapes >= 1 and sum(1 for v in values if _MACLIKE.match(v)) >= 1)


def _blocks(pairs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Split at each GUID line; the Name and Description lines before it belong to its block."""
    starts = [i for i, (_, v) in enumerate(pairs) if _GUID.match(v)]
    if not starts:
        return [pairs]
    cuts = [max(0, s - 2) for s in starts]
    return [pairs[a:b] for a, b in zip(cuts, [*cuts[1:], len(pairs)])]


def _parse_block(pairs: list[tuple[str, str]]) -> WifiReading:
    values = [v for _, v in pairs]
    guid_at = next((i for i, v in enumerate(values) if _GUID.match(v)), None)
    macs = [i for i, v in enumerate(values) if _MACLIKE.match(v)]
    own = next((i for i in macs if guid_at is not None and i > guid_at), None)
    if own is None and len(macs) == 1 and "BSSID" not in pairs[macs[0]][0].upper():
        own = macs[0]
    bssid_at = next((i for i in macs if i != own and (own is None or i > own)), None)
    pct_at = next((i for i, v in enumerate(values) if _PCT.match(v)), None)
    if bssid_at is None and pct_at is None:
        name = values[guid_at - 2] if guid_at is not None and guid_at >= 2 else None
        return WifiReading(connected=False, source=SOURCE, interface=name)

    ssid = None
    if bssid_at is not None and bssid_at > 0 and not _MACLIKE.match(values[bssid_at - 1]):
        ssid = values[bssid_at - 1]
    elif bssid_at is None:
        ssid = next((v for k, v in pairs if k.strip().upper() == "SSID"), None)

    rx = tx = None
    rates_from = pct_at if pct_at is not None else len(values)
    if pct_at is not None and pct_at >= 2 and _NUM.match(values[pct_at - 1]) and _NUM.match(values[pct_at - 2]):
        rx, tx = number(values[pct_at - 2]), number(values[pct_at - 1])
        rates_from = pct_at - 2
    start = bssid_at + 1 if bssid_at is not None else 0
    channel = next((int(v) for v in values[start:rates_from] if _INT.match(v) and 1 <= int(v) <= 233), None)
    band = next((m.group(1).replace(",", ".") for v in values if (m := _BAND.match(v))), None)
    phy = next((phy_name(v) for v in values if _RADIO.match(v)), None)
    rssi = next((int(v) for v in values[start:] if _RSSI.match(v)), None)
    name = values[guid_at - 2] if guid_at is not None and guid_at >= 2 else None
    hidden = ssid in ("", None) and bssid_at is None
    return complete(
        WifiReading(
            connected=True,
            source=SOURCE,
            interface=name,
            ssid=ssid if ssid else HIDDEN if hidden else None,
            bssid=norm_mac(values[bssid_at]) if bssid_at is not None else None,
            channel=channel,
            band=band,
            phy=phy,
            rx_rate_mbps=rx,
            tx_rate_mbps=tx,
            signal_percent=integer(values[pct_at]) if pct_at is not None else None,
            rssi_dbm=rssi,
            hidden_by_os=hidden,
        )
    )


def parse(text: str) -> WifiReading:
    short = _not_a_report(text)
    if short is not None:
        return short
    pairs = [(m.group(1), m.group(2)) for m in map(_KV.match, text.splitlines()) if m]
    if _PRIVACY in text and not any(_GUID.match(v) for _, v in pairs):
        return WifiReading(
            connected=None,
            source=SOURCE,
            ssid=HIDDEN,
            hidden_by_os=True,
            note="Windows withholds Wi-Fi details: turn on location access for desktop apps "
            "(Settings > Privacy & security > Location)",
        )
    readings = [_parse_block(b) for b in _blocks(pairs)]
    return next(
        (r for r in readings if r.connected), readings[0] if readings else WifiReading(connected=None, source=SOURCE)
    )
