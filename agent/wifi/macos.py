"""macOS backend: CoreWLAN through PyObjC when it is importable, else the command-line tools.

CoreWLAN's ``CWWiFiClient.sharedWiFiClient().interface()`` answers from the driver's current
state (RSSI, noise, tx rate, channel, PHY mode, SSID/BSSID when location permission is granted);
no scan method is ever called. Without PyObjC (a plain CPython install) the reader falls back to,
in order: ``wdutil info`` (needs root, which the agent service has), ``airport -I`` (gone since
macOS 14.4) and ``system_profiler SPAirPortDataType -json`` (no root needed, but about a second
of CPU, so it runs at most every ``tool_every_s`` seconds, 60 by default). On macOS 14+ the SSID
and BSSID come back redacted without location permission: the reading marks them hidden by the
OS, logs once how to grant access, and keeps the rest.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time

from .parsers import airport, system_profiler, wdutil
from .parsers._model import HIDDEN, WifiReading, complete, norm_mac, NO_WIFI_INTERFACE

__all__ = ["MacReader", "read_wifi"]

log = logging.getLogger(__name__)

_AIRPORT = "/System/Library/PrivateFrameworks/Apple80211.framework/Versions/Current/Resources/airport"
# CWChannelBand and CWPHYMode enums from CoreWLAN/CoreWLANTypes.h
_BAND = {1: "2.4", 2: "5", 3: "6"}
_WIDTH = {1: 20, 2: 40, 3: 80, 4: 160}
_PHY = {1: "802.11a", 2: "802.11b", 3: "802.11g", 4: "802.11n", 5: "802.11ac", 6: "802.11ax", 7: "802.11be"}


class MacReader:
    def __init__(self, tool_every_s: float = 60.0):
        self.tool_every_s = tool_every_s
        self._client = self._corewlan()
        self._warned = False
        self._tool_at = 0.0
        self._tool_last: WifiReading | None = None

    @staticmethod
    def _corewlan():
        try:
            from CoreWLAN import CWWiFiClient  # type: ignore[import-not-found]
        except ImportError:
            return None
        return CWWiFiClient.sharedWiFiClient()

    def read(self) -> WifiReading:
        reading = self._read_corewlan() if self._client is not None else self._read_tools()
        if reading.hidden_by_os and not self._warned:
            self._warned = True
            log.warning("macOS hides the Wi-Fi SSID/BSSID from this agent: allow it in System Settings > Privacy & "
                        "Security > Location Services (or by an MDM PPPC profile); signal, noise, channel and rate "
                        "are still reported")
        return reading

    def _read_corewlan(self) -> WifiReading:
        iface = self._client.interface()
        if iface is None:
            return WifiReading(connected=False, source="corewlan", note=NO_WIFI_INTERFACE)
        name = str(iface.interfaceName())
        if not iface.powerOn() or iface.wlanChannel() is None:
            return WifiReading(connected=False, source="corewlan", interface=name)
        ch = iface.wlanChannel()
        ssid, bssid = iface.ssid(), iface.bssid()
        hidden = ssid is None or bssid is None
        return complete(WifiReading(
            connected=True, source="corewlan", interface=name,
            ssid=str(ssid) if ssid is not None else HIDDEN, bssid=norm_mac(str(bssid)) if bssid else None,
            rssi_dbm=int(iface.rssiValue()) or None, noise_dbm=int(iface.noiseMeasurement()) or None,
            channel=int(ch.channelNumber()), band=_BAND.get(int(ch.channelBand())),
            width_mhz=_WIDTH.get(int(ch.channelWidth())), phy=_PHY.get(int(iface.activePHYMode())),
            tx_rate_mbps=float(iface.transmitRate()) or None, hidden_by_os=hidden,
        ))

    def _read_tools(self) -> WifiReading:
        now = time.monotonic()
        if self._tool_last is not None and now - self._tool_at < self.tool_every_s:
            return self._tool_last
        self._tool_at = now
        for cmd, parser in self._commands():
            out = _run(cmd)
            if out and parser.detect(out):
                reading = parser.parse(out)
                if reading.connected is not None:
                    self._tool_last = reading
                    return reading
        self._tool_last = WifiReading(connected=None, source="system_profiler", note="no Wi-Fi tool answered")
        return self._tool_last

    @staticmethod
    def _commands():
        if os.geteuid() == 0 and shutil.which("wdutil"):
            yield ["wdutil", "info"], wdutil
        if os.path.exists(_AIRPORT):
            yield [_AIRPORT, "-I"], airport
        yield ["system_profiler", "SPAirPortDataType", "-json"], system_profiler


def _run(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=15).stdout
    except (OSError, subprocess.SubprocessError):
        return None


_reader: MacReader | None = None


def read_wifi() -> WifiReading:
    global _reader
    if _reader is None:
        _reader = MacReader()
    return _reader.read()
