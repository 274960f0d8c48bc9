"""Wi-Fi at the desk: one reading of the current link, on Windows, macOS and Linux, never a scan.
``read_wifi()`` from the OS's backend, ``parse_text()`` for pasted output, ``WifiWatcher`` for events.
Design notes: docs/agent-internals.md, "agent/wifi/__init__.py".
"""

from __future__ import annotations

import hashlib
import hmac
import sys

from .parsers import UnrecognizedOutput, parse_text
from .parsers._model import HIDDEN, WifiReading
from .watcher import WatcherConfig, WifiWatcher

__all__ = [
    "HIDDEN",
    "UnrecognizedOutput",
    "WatcherConfig",
    "WifiReading",
    "WifiWatcher",
    "hash_identity",
    "parse_text",
    "read_wifi",
    "to_columns",
]

if sys.platform == "win32":
    from . import windows as _backend
elif sys.platform == "darwin":
    from . import macos as _backend
elif sys.platform.startswith("linux"):
    from . import linux as _backend
else:
    _backend = None


def read_wifi() -> WifiReading:
    """The current link through this OS's backend; never raises for a missing radio or API."""
    if _backend is None:
        return WifiReading(connected=None, note=f"no Wi-Fi reader for {sys.platform}")
    try:
        return _backend.read_wifi()
    except OSError as exc:
        return WifiReading(connected=None, note=f"Wi-Fi could not be read: {exc}")


def hash_identity(value: str | None, salt: str | bytes) -> str | None:
    """A stable pseudonym for an SSID or BSSID: same input and salt, same output; not reversible.

    HMAC-SHA256 keyed with the site's salt, so a table of hashed well-known SSIDs built without
    the salt does not match. The hidden-by-OS marker and None pass through unchanged.
    """
    if value is None or value == HIDDEN:
        return value
    key = salt.encode() if isinstance(salt, str) else salt
    return "h:" + hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def _kbps(mbps: float | None) -> int | None:
    return None if mbps is None else round(mbps * 1000)


def to_columns(reading: WifiReading, salt: str | bytes | None = None) -> dict[str, int | str | None]:
    """The payload's "wifi" columns (cxpulse.v1.kinds) for one reading; integers only, rates in kbit/s.

    With ``salt``, SSID and BSSID are replaced by ``hash_identity`` pseudonyms before they leave the
    desk. A BSSID the OS withheld is sent as the hidden marker, like the SSID.
    """
    ssid, bssid = reading.ssid, reading.bssid
    if bssid is None and reading.hidden_by_os and reading.connected:
        bssid = HIDDEN
    if salt is not None:
        ssid, bssid = hash_identity(ssid, salt), hash_identity(bssid, salt)
    conn = None if reading.connected is None else int(reading.connected)
    return {
        "conn": conn,
        "ssid": ssid[:128] if ssid else ssid,
        "bssid": bssid,
        "rssi": reading.rssi_dbm,
        "noise": reading.noise_dbm,
        "snr": reading.snr_db,
        "ch": reading.channel,
        "mhz": reading.frequency_mhz,
        "band": reading.band,
        "phy": reading.phy,
        "tx": _kbps(reading.tx_rate_mbps),
        "rx": _kbps(reading.rx_rate_mbps),
        "q": reading.signal_percent,
    }
