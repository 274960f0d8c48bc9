"""Windows backend: the Native Wifi API (wlanapi.dll) through ctypes, netsh as the fallback.

``WlanOpenHandle`` once, then per reading ``WlanEnumInterfaces`` and, for a connected interface,
``WlanQueryInterface`` with ``wlan_intf_opcode_current_connection`` (SSID, BSSID, PHY type,
signal quality %, rx/tx rate in kbit/s), ``wlan_intf_opcode_channel_number`` and
``wlan_intf_opcode_rssi``. None of these scans (``WlanScan`` is never called). On Windows 11
24H2 without location permission the connection query fails with ERROR_ACCESS_DENIED: the
interface state from the enumeration still says whether the link is up, and the SSID is then
reported as hidden by the OS, with a one-time log line saying how to grant access.

If wlanapi.dll cannot be loaded (Server Core without the WLAN service), ``netsh wlan show
interfaces`` is run at most every ``netsh_every_s`` seconds and parsed language-independently.
This module imports on any OS; the DLL is only touched when a reading is asked for on Windows.
Limitation: the channel number alone cannot tell 6 GHz from 2.4/5 GHz; 6 GHz is inferred only
from the PHY type (802.11be/ax) with a channel that is invalid in 5 GHz, otherwise band follows
the channel number.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import subprocess
import sys
import time
import uuid

from .parsers import netsh
from .parsers._model import HIDDEN, WifiReading, complete, norm_mac, NO_WIFI_INTERFACE

__all__ = ["WindowsReader", "read_wifi"]

log = logging.getLogger(__name__)

_OPCODE_CURRENT_CONNECTION, _OPCODE_CHANNEL_NUMBER, _OPCODE_RSSI = 7, 8, 0x10000102
_STATE_CONNECTED = 1
_ERROR_ACCESS_DENIED = 5
# DOT11_PHY_TYPE: 1 fhss, 2 dsss, 3 irbaseband, 4 ofdm (a), 5 hrdsss (b), 6 erp (g), 7 ht (n), 8 vht (ac),
# 9 dmg (ad), 10 he (ax), 11 eht (be)
_PHY = {4: "802.11a", 5: "802.11b", 6: "802.11g", 7: "802.11n", 8: "802.11ac", 9: "802.11ad", 10: "802.11ax",
        11: "802.11be"}


class _GUID(ctypes.Structure):
    _fields_ = [("data", ctypes.c_ubyte * 16)]


class _InterfaceInfo(ctypes.Structure):
    _fields_ = [("guid", _GUID), ("description", ctypes.c_wchar * 256), ("state", ctypes.c_uint32)]


class _InterfaceList(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint32), ("index", ctypes.c_uint32), ("items", _InterfaceInfo * 1)]


class _Ssid(ctypes.Structure):
    _fields_ = [("length", ctypes.c_ulong), ("ssid", ctypes.c_ubyte * 32)]


class _Association(ctypes.Structure):
    _fields_ = [("ssid", _Ssid), ("bss_type", ctypes.c_uint32), ("bssid", ctypes.c_ubyte * 6),
                ("phy_type", ctypes.c_uint32), ("phy_index", ctypes.c_ulong), ("quality", ctypes.c_ulong),
                ("rx_kbps", ctypes.c_ulong), ("tx_kbps", ctypes.c_ulong)]


class _Security(ctypes.Structure):
    _fields_ = [("enabled", ctypes.c_int), ("onex", ctypes.c_int), ("auth", ctypes.c_uint32),
                ("cipher", ctypes.c_uint32)]


class _Connection(ctypes.Structure):
    _fields_ = [("state", ctypes.c_uint32), ("mode", ctypes.c_uint32), ("profile", ctypes.c_wchar * 256),
                ("assoc", _Association), ("security", _Security)]


class WindowsReader:
    def __init__(self, netsh_every_s: float = 30.0):
        self.netsh_every_s = netsh_every_s
        self._api = None
        self._handle = None
        self._api_failed = False
        self._warned = False
        self._netsh_at = 0.0
        self._netsh_last: WifiReading | None = None

    def read(self) -> WifiReading:
        if not self._api_failed:
            try:
                return self._read_api()
            except OSError as exc:
                log.info("Native Wifi API unavailable (%s); falling back to netsh", exc)
                self._api_failed = True
        return self._read_netsh()

    def _open(self) -> None:
        if self._api is None:
            api = ctypes.WinDLL("wlanapi.dll")  # type: ignore[attr-defined]
            version, handle = ctypes.c_uint32(), ctypes.c_void_p()
            rc = api.WlanOpenHandle(2, None, ctypes.byref(version), ctypes.byref(handle))
            if rc:
                raise OSError(rc, "WlanOpenHandle failed")
            self._api, self._handle = api, handle

    def _query(self, guid: _GUID, opcode: int) -> tuple[int, ctypes.c_void_p, int]:
        size, data, kind = ctypes.c_uint32(), ctypes.c_void_p(), ctypes.c_uint32()
        rc = self._api.WlanQueryInterface(self._handle, ctypes.byref(guid), opcode, None, ctypes.byref(size),
                                          ctypes.byref(data), ctypes.byref(kind))
        return rc, data, size.value

    def _read_api(self) -> WifiReading:
        self._open()
        lst = ctypes.POINTER(_InterfaceList)()
        rc = self._api.WlanEnumInterfaces(self._handle, None, ctypes.byref(lst))
        if rc:
            raise OSError(rc, "WlanEnumInterfaces failed")
        try:
            count = lst.contents.count
            if count == 0:
                return WifiReading(connected=False, source="wlanapi", note=NO_WIFI_INTERFACE)
            items = ctypes.cast(ctypes.byref(lst.contents.items), ctypes.POINTER(_InterfaceInfo * count)).contents
            chosen = next((i for i in items if i.state == _STATE_CONNECTED), items[0])
            return self._reading(chosen)
        finally:
            self._api.WlanFreeMemory(lst)

    def _reading(self, info: _InterfaceInfo) -> WifiReading:
        name = str(uuid.UUID(bytes_le=bytes(info.guid.data)))
        if info.state != _STATE_CONNECTED:
            return WifiReading(connected=False, source="wlanapi", interface=info.description or name)
        rc, data, _ = self._query(info.guid, _OPCODE_CURRENT_CONNECTION)
        if rc == _ERROR_ACCESS_DENIED:
            self._warn_location()
            return WifiReading(connected=True, source="wlanapi", interface=info.description, ssid=HIDDEN,
                               hidden_by_os=True, rssi_dbm=self._long(info.guid, _OPCODE_RSSI),
                               channel=self._long(info.guid, _OPCODE_CHANNEL_NUMBER))
        if rc:
            raise OSError(rc, "WlanQueryInterface failed")
        try:
            conn = ctypes.cast(data, ctypes.POINTER(_Connection)).contents
            a = conn.assoc
            ssid = bytes(a.ssid.ssid[:a.ssid.length]).decode("utf-8", "replace")
            bssid = norm_mac(":".join(f"{b:02x}" for b in a.bssid))
            phy, quality, rx, tx = _PHY.get(a.phy_type), int(a.quality), a.rx_kbps, a.tx_kbps
        finally:
            self._api.WlanFreeMemory(data)
        channel = self._long(info.guid, _OPCODE_CHANNEL_NUMBER)
        band = None
        if channel is not None and phy in ("802.11ax", "802.11be") and channel % 4 == 1 and channel < 149:
            band = "6"  # 5 GHz primaries below 149 are multiples of 4; 6 GHz ones are 1 mod 4
        return complete(WifiReading(
            connected=True, source="wlanapi", interface=info.description, ssid=ssid, bssid=bssid,
            rssi_dbm=self._long(info.guid, _OPCODE_RSSI), channel=channel, band=band, phy=phy,
            signal_percent=quality, tx_rate_mbps=tx / 1000 or None, rx_rate_mbps=rx / 1000 or None,
        ))

    def _long(self, guid: _GUID, opcode: int) -> int | None:
        rc, data, size = self._query(guid, opcode)
        if rc or not data or size < 4:
            return None
        try:
            return ctypes.cast(data, ctypes.POINTER(ctypes.c_long)).contents.value
        finally:
            self._api.WlanFreeMemory(data)

    def _warn_location(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning("Windows hides the Wi-Fi SSID/BSSID from this agent: turn on Settings > Privacy & security > "
                        "Location > 'Let desktop apps access your location' (or allow it by policy); "
                        "signal, channel and rates are still reported")

    def _read_netsh(self) -> WifiReading:
        now = time.monotonic()
        if self._netsh_last is not None and now - self._netsh_at < self.netsh_every_s:
            return self._netsh_last
        self._netsh_at = now
        exe = shutil.which("netsh")
        if exe is None:
            return WifiReading(connected=None, source="netsh", note="neither wlanapi.dll nor netsh is available")
        try:
            out = subprocess.run([exe, "wlan", "show", "interfaces"], capture_output=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            return WifiReading(connected=None, source="netsh", note=f"netsh failed: {exc}")
        text = out.decode("utf-8", "replace") if _utf8(out) else out.decode(_oem_codepage(), "replace")
        reading = netsh.parse(text) if netsh.detect(text) else WifiReading(connected=False, source="netsh",
                                                                          note=NO_WIFI_INTERFACE)
        if reading.hidden_by_os:
            self._warn_location()
        self._netsh_last = reading
        return reading


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _oem_codepage() -> str:
    """netsh writes in the console's OEM code page (cp850, cp932, cp936...) when not UTF-8."""
    if sys.platform == "win32":
        return f"cp{ctypes.windll.kernel32.GetOEMCP()}"  # type: ignore[attr-defined]
    return "cp437"


_reader: WindowsReader | None = None


def read_wifi() -> WifiReading:
    global _reader
    if _reader is None:
        _reader = WindowsReader()
    return _reader.read()
