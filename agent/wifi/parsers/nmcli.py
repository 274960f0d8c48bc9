"""NetworkManager's ``nmcli``, in the forms a helpdesk gets pasted and the agent may run (never a rescan).
Fields are told apart by their shape; SIGNAL is reported as ``signal_percent``.
Design notes: docs/agent-internals.md, "agent/wifi/parsers/nmcli.py".
"""

from __future__ import annotations

import re

from ._model import MAC_RE, WifiReading, complete, integer, norm_mac, number

SOURCE = "nmcli"
# A terse row: the IN-USE field ("*", " " or empty) first, then an escaped BSSID somewhere in the row.
_TERSE = re.compile(r"^[ *]?:(?:(?:[^:\\\n]|\\.)*:)?(?:[0-9A-Fa-f]{2}\\:){5}[0-9A-Fa-f]{2}(?::|$)", re.M)
_TABLE = re.compile(r"^\s*(IN-USE\s+BSSID\s+SSID|SSID\s+BSSID)\s.*SIGNAL", re.M)
_SHOW = re.compile(r"^\s*GENERAL\.TYPE:\s*wifi\s*$", re.M)
_RATE = re.compile(r"^\d+(?:\.\d+)?\s*Mbit/s$")


def detect(text: str) -> bool:
    return bool(_TERSE.search(text) or _TABLE.search(text) or _SHOW.search(text))


def parse(text: str) -> WifiReading:
    if _TERSE.search(text):
        return _terse(text)
    if _TABLE.search(text):
        return _table(text)
    return _show(text)


def _split(line: str) -> list[str]:
    out, cur, i = [], [], 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            cur.append(line[i + 1])
            i += 2
            continue
        if ch == ":":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


_BSSID = re.compile(r"(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}")
_FREQ = re.compile(r"\d{4}\s*MHz")
_MODE = {"Infra", "Ad-Hoc", "Mesh"}


def _terse(text: str) -> WifiReading:
    """The row marked ``*`` of a terse listing; no marked row means no link.

    The SSID is the one field next to the BSSID that has no other field's shape: after it in
    nmcli's default order (``IN-USE:BSSID:SSID:...``), before it in ``-f IN-USE,SSID,BSSID,...``.
    """
    rows = [_split(line) for line in text.splitlines() if _TERSE.match(line)]
    active = [r for r in rows if r[0].strip() == "*"]
    if not active:
        return WifiReading(connected=False, source=SOURCE)
    f = active[0]
    mac_at = next(i for i, v in enumerate(f) if i > 0 and _BSSID.fullmatch(v))
    rate_at = next((i for i, v in enumerate(f) if i > 0 and _RATE.match(v.strip())), None)
    if mac_at >= 2 and (rate_at is None or mac_at - 1 != rate_at):
        ssid_at = mac_at - 1  # IN-USE,SSID,BSSID,...
    else:
        ssid_at = mac_at + 1  # IN-USE,BSSID,SSID,... (nmcli's own order)
    ssid = f[ssid_at] if ssid_at < len(f) else None
    taken = {0, mac_at, ssid_at}
    rest = [(i, v.strip()) for i, v in enumerate(f) if i not in taken]
    freq = next((integer(v) for _, v in rest if _FREQ.fullmatch(v)), None)
    chan = signal = None
    if rate_at is not None:
        # CHAN is the last plain integer before RATE (MODE, FREQ sit between), SIGNAL the first after it.
        chan = next((int(v) for i, v in reversed(rest) if i < rate_at and v.isdigit()), None)
        signal = next((int(v) for i, v in rest if i > rate_at and v.isdigit()), None)
    return complete(
        WifiReading(
            connected=True,
            source=SOURCE,
            ssid=ssid or None,
            bssid=norm_mac(f[mac_at]),
            channel=chan,
            frequency_mhz=freq,
            tx_rate_mbps=number(f[rate_at]) if rate_at is not None else None,
            signal_percent=signal,
        )
    )


_ROW_TAIL = re.compile(
    r"\s(?P<mode>Infra|Ad-Hoc|Mesh)\s+(?P<chan>\d+)\s+(?:(?P<freq>\d{4}) MHz\s+)?"
    r"(?P<rate>[\d.]+) Mbit/s\s+(?P<signal>\d+)\s"
)


def _table(text: str) -> WifiReading:
    lines = text.splitlines()
    h = next(i for i, line in enumerate(lines) if _TABLE.match(line))
    header = lines[h]
    new_style = header.lstrip().startswith("IN-USE")
    for row in lines[h + 1 :]:
        m = _ROW_TAIL.search(" " + row + " ")
        if not m:
            continue
        prefix = (" " + row)[: m.start()]
        if new_style:
            if not row.lstrip().startswith("*"):
                continue
            body = prefix.strip()[1:].strip()
            mac = MAC_RE.match(body)
            bssid = mac.group(1) if mac else None
            ssid = body[mac.end() :].strip() if mac else body
        else:
            if not re.search(r"\byes\b\s*\*?\s*$", row):
                continue
            col = header.index("BSSID")
            ssid, bssid = row[:col].strip(), prefix[col + 1 :].strip()
        return complete(
            WifiReading(
                connected=True,
                source=SOURCE,
                ssid=ssid or None,
                bssid=norm_mac(bssid),
                channel=int(m.group("chan")),
                frequency_mhz=integer(m.group("freq")),
                tx_rate_mbps=float(m.group("rate")),
                signal_percent=int(m.group("signal")),
            )
        )
    return WifiReading(connected=False, source=SOURCE)


def _show(text: str) -> WifiReading:
    blocks = re.split(r"\n\s*\n", text)
    for block in blocks:
        if not _SHOW.search(block):
            continue
        kv = {}
        for line in block.splitlines():
            key, sep, value = line.strip().partition(":")
            if sep:
                kv[key.strip()] = value.strip()
        state = integer(kv.get("GENERAL.STATE"))
        connected = state == 100 if state is not None else None
        speed = kv.get("CAPABILITIES.SPEED", "")
        return complete(
            WifiReading(
                connected=connected,
                source=SOURCE,
                interface=kv.get("GENERAL.DEVICE"),
                tx_rate_mbps=number(speed) if connected and "b/s" in speed else None,
            )
        )
    return WifiReading(connected=False, source=SOURCE, note="no Wi-Fi device")
