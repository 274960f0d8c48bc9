"""The one shape every Wi-Fi reader and parser returns (``WifiReading``), and the radio arithmetic they share.
``complete`` derives the missing one of channel, frequency and band from the others.
Design notes: docs/agent-internals.md, "agent/wifi/parsers/_model.py".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

__all__ = [
    "HIDDEN",
    "MAC_RE",
    "WifiReading",
    "band_of_freq",
    "channel_of_freq",
    "complete",
    "freq_of_channel",
    "norm_mac",
    "phy_name",
]

HIDDEN = "<hidden-by-os>"  # SSID/BSSID withheld by the OS (no location permission), not "disconnected"

# Two hex digits per byte is the norm, but macOS airport and some drivers drop leading zeros
# ("0:1b:2c:..."), and Windows shows dashes in places; accept 1-2 digits and either separator.
MAC_RE = re.compile(r"(?<![0-9A-Fa-f:-])([0-9A-Fa-f]{1,2}(?:[:-][0-9A-Fa-f]{1,2}){5})(?![0-9A-Fa-f:-])")


# The note of a reading from a machine without a radio: nothing to record (a wired desk).
NO_WIFI_INTERFACE = "no Wi-Fi interface"
# The note of a look between two runs of a slow tool: state unknown, nothing to record.
NOT_DUE = "not due"


@dataclass(frozen=True)
class WifiReading:
    """The Wi-Fi link as the desk sees it at one moment; None wherever the source does not say.

    ``connected`` is None when the source cannot tell (for example netsh refusing to answer
    without location permission). ``ssid`` is ``HIDDEN`` when the OS withholds it; ``hidden_by_os``
    is set when the SSID or the BSSID was withheld. ``source`` names the tool or API that produced
    the reading, from the payload's method list ("netsh", "iw", "nl80211", ...). ``note`` explains
    a reading that carries no link ("no Wi-Fi interface", "airport removed in macOS 14.4").
    """

    connected: bool | None
    source: str | None = None
    interface: str | None = None
    ssid: str | None = None
    bssid: str | None = None
    rssi_dbm: int | None = None
    noise_dbm: int | None = None
    channel: int | None = None
    frequency_mhz: int | None = None
    band: str | None = None
    width_mhz: int | None = None
    phy: str | None = None
    tx_rate_mbps: float | None = None
    rx_rate_mbps: float | None = None
    signal_percent: int | None = None
    hidden_by_os: bool = False
    note: str | None = None

    @property
    def snr_db(self) -> int | None:
        """Signal over noise, when the source gives both (macOS, some Linux drivers)."""
        if self.rssi_dbm is None or self.noise_dbm is None:
            return None
        return self.rssi_dbm - self.noise_dbm


def norm_mac(text: str | None) -> str | None:
    """``aa:bb:cc:dd:ee:ff`` from any MAC spelling; None for blanks, placeholders and all-zero."""
    if not text:
        return None
    m = MAC_RE.search(text.strip())
    if not m or m.group(1) != text.strip():
        return None
    parts = re.split(r"[:-]", m.group(1))
    mac = ":".join(p.lower().zfill(2) for p in parts)
    return None if mac in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff") else mac


def freq_of_channel(channel: int | None, band: str | None) -> int | None:
    """Centre frequency of a 20 MHz channel (IEEE 802.11 channel numbering per band)."""
    if channel is None:
        return None
    if band is None:
        band = "2.4" if 1 <= channel <= 14 else "5" if 32 <= channel <= 177 else None
    if band == "2.4":
        return 2484 if channel == 14 else 2407 + 5 * channel if 1 <= channel <= 13 else None
    if band == "5":
        return 5000 + 5 * channel if 7 <= channel <= 196 else None
    if band == "6":
        return 5935 if channel == 2 else 5950 + 5 * channel if 1 <= channel <= 233 else None
    return None


def channel_of_freq(mhz: int | None) -> int | None:
    if mhz is None:
        return None
    if mhz == 2484:
        return 14
    if 2412 <= mhz <= 2472:
        return (mhz - 2407) // 5
    if mhz == 5935:
        return 2
    if 5955 <= mhz <= 7115:
        return (mhz - 5950) // 5
    if 5035 <= mhz <= 5980:
        return (mhz - 5000) // 5
    return None


def band_of_freq(mhz: int | None) -> str | None:
    if mhz is None:
        return None
    if 2400 <= mhz < 2500:
        return "2.4"
    if 4900 <= mhz < 5930:
        return "5"
    if 5930 <= mhz <= 7125:
        return "6"
    return None


def phy_name(text: str | None) -> str | None:
    """ "802.11ax" from "11ax", "802.11ax" or "802.11 ax"; None for None/"None"."""
    if not text:
        return None
    m = re.search(r"(?:802\.?)?11\s?(be|ax|ac|ad|ah|n|g|b|a)\b", text.strip(), re.I)
    return f"802.11{m.group(1).lower()}" if m else None


def complete(r: WifiReading) -> WifiReading:
    """Fill channel / frequency / band from whichever of them the source gave.

    A disconnected reading keeps its radio fields empty: a tool that shows the last channel after
    the link dropped would otherwise report a link that is not there.
    """
    if r.connected is False:
        return replace(
            r,
            rssi_dbm=None,
            noise_dbm=None,
            channel=None,
            frequency_mhz=None,
            band=None,
            width_mhz=None,
            tx_rate_mbps=None,
            rx_rate_mbps=None,
            signal_percent=None,
            bssid=None,
            ssid=None,
        )
    band, ch, mhz = r.band, r.channel, r.frequency_mhz
    if mhz is not None:
        band = band or band_of_freq(mhz)
        ch = ch if ch is not None else channel_of_freq(mhz)
    elif ch is not None:
        mhz = freq_of_channel(ch, band)
        band = band or band_of_freq(mhz)
    return replace(r, band=band, channel=ch, frequency_mhz=mhz)


def number(text: str | None) -> float | None:
    """The first decimal number in ``text`` ("1 201,5" and "866,7" are Windows spellings)."""
    if text is None:
        return None
    m = re.search(r"-?\d+(?:[.,]\d+)?", text.replace("\u00a0", "").replace(" ", ""))
    return float(m.group(0).replace(",", ".")) if m else None


def integer(text: str | None) -> int | None:
    n = number(text)
    return None if n is None else round(n)
