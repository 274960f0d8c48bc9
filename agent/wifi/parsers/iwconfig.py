"""``iwconfig`` (Linux wireless-tools, deprecated but still on many desks and in forum pastes).
``ESSID:off/any`` or a placeholder access point means no link.
Design notes: docs/agent-internals.md, "agent/wifi/parsers/iwconfig.py".
"""

from __future__ import annotations

import re

from ._model import NO_WIFI_INTERFACE, WifiReading, complete, integer, norm_mac, number

SOURCE = "iwconfig"
_DETECT = re.compile(r"IEEE 802\.11\S*\s+ESSID:|no wireless extensions\.")
_KEY = re.compile(r"([A-Za-z][\w.\-/]*(?: [A-Za-z][\w.\-/]*)*) ?([:=])")
_GAP = re.compile(r"\s{2,}|\s*$")
_NO_AP = ("Not-Associated", "Invalid", "None")


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


def _close_quote(line: str, start: int) -> int:
    """Index of the quote ending a value opened at ``start``: the first quote followed by the end of
    the line, an ESSID index (``"x" [2]``) or a field gap and the next ``Key:``, so that quotes and
    double spaces inside an SSID do not end it."""
    i = start
    while True:
        i = line.find('"', i + 1)
        if i < 0:
            return len(line)
        rest = line[i + 1 :]
        if not rest.strip() or rest.startswith(" ["):
            return i
        gap = re.match(r"\s{2,}", rest)
        if gap and _KEY.match(rest, gap.end()):
            return i


def pairs(line: str) -> list[tuple[str, str]]:
    """The ``(key, value)`` fields of one iwconfig line, in order; text that is not a field is skipped.

    ``ESSID:"Office: 5G"  Nickname:"x"`` gives ``[("ESSID", '"Office: 5G"'), ("Nickname", '"x"')]``:
    quoted values keep their quotes so that ``off/any`` and an SSID named "off/any" stay apart.
    """
    out: list[tuple[str, str]] = []
    pos, n = 0, len(line)
    while pos < n:
        while pos < n and line[pos].isspace():
            pos += 1
        if pos >= n:
            break
        m = _KEY.match(line, pos)
        if not m:
            gap = _GAP.search(line, pos)
            assert gap is not None  # _GAP matches at the end of any line
            pos = gap.end() if gap.end() > pos else n
            continue
        key, pos = m.group(1), m.end()
        if pos < n and line[pos] == " " and line[pos + 1 : pos + 2] != " ":
            pos += 1  # "Access Point: 00:11:..." has one space after the colon
        if pos < n and line[pos] == '"':
            end = _close_quote(line, pos)
            value = line[pos : end + 1]
            gap = _GAP.search(line, end + 1)
            pos = gap.end() if gap else n
        else:
            gap = _GAP.search(line, pos)
            assert gap is not None  # _GAP matches at the end of any line
            value = line[pos : gap.start()]
            pos = gap.end() if gap.end() > pos else n
        out.append((key, value.strip()))
    return out


def _unquote(value: str | None) -> str | None:
    if value is None or len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
        return None
    inner = value[1:-1]
    if "\\x" in inner:  # iwconfig escapes non-printable SSID bytes as \xNN
        raw = re.sub(
            rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), inner.encode("latin-1", "replace")
        )
        inner = raw.decode("utf-8", "replace")
    return inner


def _fields(block: list[str]) -> tuple[str, dict[str, str]]:
    name, _, rest = block[0].partition("IEEE 802.11")
    kv: dict[str, str] = {}
    for line in [rest, *block[1:]]:
        for key, value in pairs(line):
            kv.setdefault(key, value)
    return name.strip(), kv


def _associated(kv: dict[str, str]) -> bool:
    ap = kv.get("Access Point", kv.get("Cell"))
    if kv.get("ESSID") == "off/any":
        return False
    if ap is not None and (ap.startswith(_NO_AP) or (norm_mac(ap) is None and re.fullmatch(r"[0:]+", ap))):
        return False
    return True


def _mbps(value: str | None) -> float | None:
    m = re.match(r"([\d.]+)\s*([GMk])b/s", value or "")
    return float(m.group(1)) * {"G": 1000.0, "M": 1.0, "k": 0.001}[m.group(2)] if m else None


def _dbm(value: str | None) -> int | None:
    m = re.match(r"(-\d+)\s*dBm", value or "")
    return int(m.group(1)) if m else None


def parse(text: str) -> WifiReading:
    radios = [_fields(b) for b in _blocks(text) if "IEEE 802.11" in b[0]]
    if not radios:
        return WifiReading(connected=False, source=SOURCE, note=NO_WIFI_INTERFACE)
    iface, kv = next(((n, f) for n, f in radios if _associated(f)), radios[0])
    if not _associated(kv):
        return WifiReading(connected=False, source=SOURCE, interface=iface)
    freq = kv.get("Frequency")
    ghz = number(freq) if freq and "GHz" in freq else None
    channel = integer(kv.get("Channel"))
    return complete(
        WifiReading(
            connected=True,
            source=SOURCE,
            interface=iface,
            ssid=_unquote(kv.get("ESSID")) or None,
            bssid=norm_mac(kv.get("Access Point", kv.get("Cell"))),
            frequency_mhz=round(ghz * 1000) if ghz else None,
            channel=channel,
            tx_rate_mbps=_mbps(kv.get("Bit Rate")),
            rssi_dbm=_dbm(kv.get("Signal level")),
            noise_dbm=_dbm(kv.get("Noise level")),
        )
    )
