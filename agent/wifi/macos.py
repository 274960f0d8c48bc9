"""macOS backend: CoreWLAN through PyObjC when it is installed, else the command-line tools.
The tools run at their own slower cadence; looks between two runs record nothing ("not due").
Design notes: docs/agent-internals.md, "agent/wifi/macos.py".
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from .parsers import airport, system_profiler, wdutil
from .parsers._model import HIDDEN, NO_WIFI_INTERFACE, NOT_DUE, WifiReading, complete, norm_mac

__all__ = ["NOT_DUE", "MacReader", "read_wifi"]

log = logging.getLogger(__name__)

_AIRPORT = "/System/Library/PrivateFrameworks/Apple80211.framework/Versions/Current/Resources/airport"
# CoreWLAN/CoreWLANTypes.h: CWChannelBand, CWChannelWidth, CWPHYMode, CWInterfaceMode
_BAND = {1: "2.4", 2: "5", 3: "6"}
_WIDTH = {1: 20, 2: 40, 3: 80, 4: 160}
_PHY = {1: "802.11a", 2: "802.11b", 3: "802.11g", 4: "802.11n", 5: "802.11ac", 6: "802.11ax", 7: "802.11be"}
_MODE_NONE = 0  # kCWInterfaceModeNone: "not participating in a network"
_AUTO = object()


def _load_corewlan():
    """``CWWiFiClient.sharedWiFiClient()``, or None off macOS or without PyObjC's CoreWLAN."""
    if sys.platform != "darwin":
        return None
    try:
        from CoreWLAN import CWWiFiClient  # type: ignore[import-not-found]
    except ImportError:
        return None
    return CWWiFiClient.sharedWiFiClient()


class MacReader:
    """One reader per process; ``client`` and ``run`` are injectable (a fake CoreWLAN, recorded tools)."""

    def __init__(
        self,
        wdutil_every_s: float = 10.0,
        airport_every_s: float = 10.0,
        system_profiler_every_s: float = 60.0,
        client: object | None = _AUTO,
        run: Callable[[list[str]], str | None] | None = None,
        is_root: bool | None = None,
        have: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.every = {"wdutil": wdutil_every_s, "airport": airport_every_s, "system_profiler": system_profiler_every_s}
        # CoreWLAN's CWWiFiClient (pyobjc: attributes by name) or a stand-in; None: tools only.
        self._client: Any = _load_corewlan() if client is _AUTO else client
        self._run = run or _run
        self._is_root = (os.geteuid() == 0) if is_root is None else is_root
        self._have = have or (lambda tool: shutil.which(tool) is not None or os.path.exists(tool))
        self._clock = clock
        self._warned = False
        self._source: tuple[list[str], ModuleType] | None = None  # the tool that answered last
        self._tool_at: float | None = None

    @property
    def source(self) -> str:
        """Where readings come from now: "corewlan" or the tool's name."""
        if self._client is not None:
            return "corewlan"
        return self._source[1].SOURCE if self._source else "none yet"

    def read(self) -> WifiReading:
        reading = self._read_corewlan() if self._client is not None else self._read_tools()
        if reading.hidden_by_os and not self._warned:
            self._warned = True
            log.warning(
                "macOS hides the Wi-Fi SSID/BSSID from this agent: allow it Location Services (System "
                "Settings > Privacy & Security > Location Services, or an MDM PPPC profile); signal, "
                "noise, channel and rate are still reported"
            )
        return reading

    def _read_corewlan(self) -> WifiReading:
        iface = self._client.interface()
        if iface is None:
            return WifiReading(connected=False, source="corewlan", note=NO_WIFI_INTERFACE)
        name = str(iface.interfaceName())
        if not iface.powerOn():
            return WifiReading(connected=False, source="corewlan", interface=name, note="Wi-Fi is off")
        ch = iface.wlanChannel()
        if int(iface.interfaceMode()) == _MODE_NONE or ch is None:
            return WifiReading(connected=False, source="corewlan", interface=name)
        ssid, bssid = iface.ssid(), iface.bssid()
        hidden = ssid is None or bssid is None  # nil without Location Services permission (macOS 14+)
        return complete(
            WifiReading(
                connected=True,
                source="corewlan",
                interface=name,
                ssid=str(ssid) if ssid is not None else HIDDEN,
                bssid=norm_mac(str(bssid)) if bssid else None,
                rssi_dbm=int(iface.rssiValue()) or None,
                noise_dbm=int(iface.noiseMeasurement()) or None,
                channel=int(ch.channelNumber()),
                band=_BAND.get(int(ch.channelBand())),
                width_mhz=_WIDTH.get(int(ch.channelWidth())),
                phy=_PHY.get(int(iface.activePHYMode())),
                tx_rate_mbps=float(iface.transmitRate()) or None,
                hidden_by_os=hidden,
            )
        )

    def _read_tools(self) -> WifiReading:
        now = self._clock()
        if self._source is not None and self._tool_at is not None:
            tool = self._source[1].SOURCE
            if now - self._tool_at < self.every[tool]:
                return WifiReading(connected=None, source=tool, note=NOT_DUE)
        self._tool_at = now
        chain = ([self._source] if self._source else []) + [c for c in self._commands() if c != self._source]
        for cmd, parser in chain:
            out = self._run(cmd)
            if out and parser.detect(out):
                reading = parser.parse(out)
                if reading.connected is not None:
                    self._source = (cmd, parser)
                    return reading
        self._source = None
        return WifiReading(connected=None, source="system_profiler", note="no Wi-Fi tool answered")

    def _commands(self) -> Iterator[tuple[list[str], ModuleType]]:
        if self._is_root and self._have("wdutil"):
            yield ["wdutil", "info"], wdutil
        if self._have(_AIRPORT):
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
