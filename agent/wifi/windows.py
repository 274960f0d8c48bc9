"""Windows backend: the Native Wifi API (wlanapi.dll) through ctypes, netsh only where it is missing.
No process and no scan per look; the DLL is loaded on first use or injected (tests drive a fake).
Design notes: docs/agent-internals.md, "agent/wifi/windows.py".
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .parsers import netsh
from .parsers._model import HIDDEN, NO_WIFI_INTERFACE, NOT_DUE, WifiReading, complete, norm_mac

__all__ = ["NOT_DUE", "WindowsReader", "read_wifi"]

log = logging.getLogger(__name__)

# wlanapi.h: WLAN_INTF_OPCODE
OPCODE_RADIO_STATE, OPCODE_CURRENT_CONNECTION, OPCODE_CHANNEL_NUMBER, OPCODE_RSSI = 4, 7, 8, 0x10000102
STATE_CONNECTED = 1  # WLAN_INTERFACE_STATE: wlan_interface_state_connected
DOT11_RADIO_STATE_OFF = 2
DOT11_BSS_TYPE_INFRASTRUCTURE = 1
ERROR_INVALID_HANDLE, ERROR_ACCESS_DENIED = 6, 5
ERROR_SERVICE_NOT_ACTIVE, ERROR_INVALID_STATE = 1062, 5023
# DOT11_PHY_TYPE: 1 fhss, 2 dsss, 3 irbaseband, 4 ofdm (a), 5 hrdsss (b), 6 erp (g), 7 ht (n), 8 vht (ac),
# 9 dmg (ad), 10 he (ax), 11 eht (be)
_PHY = {
    4: "802.11a",
    5: "802.11b",
    6: "802.11g",
    7: "802.11n",
    8: "802.11ac",
    9: "802.11ad",
    10: "802.11ax",
    11: "802.11be",
}

_WCHAR = ctypes.c_uint16  # WCHAR is 2 bytes on Windows; ctypes.c_wchar is 4 on Linux
_ULONG = ctypes.c_uint32  # ULONG/DWORD are 4 bytes on Windows; ctypes.c_ulong is 8 on Linux
_LONG = ctypes.c_int32


class GUID(ctypes.Structure):
    _fields_ = [
        ("Data1", ctypes.c_uint32),
        ("Data2", ctypes.c_uint16),
        ("Data3", ctypes.c_uint16),
        ("Data4", ctypes.c_ubyte * 8),
    ]


class WLAN_INTERFACE_INFO(ctypes.Structure):
    _fields_ = [("InterfaceGuid", GUID), ("strInterfaceDescription", _WCHAR * 256), ("isState", _ULONG)]


class WLAN_INTERFACE_INFO_LIST(ctypes.Structure):
    _fields_ = [("dwNumberOfItems", _ULONG), ("dwIndex", _ULONG), ("InterfaceInfo", WLAN_INTERFACE_INFO * 1)]


class DOT11_SSID(ctypes.Structure):
    _fields_ = [("uSSIDLength", _ULONG), ("ucSSID", ctypes.c_ubyte * 32)]


class WLAN_ASSOCIATION_ATTRIBUTES(ctypes.Structure):
    _fields_ = [
        ("dot11Ssid", DOT11_SSID),
        ("dot11BssType", _ULONG),
        ("dot11Bssid", ctypes.c_ubyte * 6),
        ("dot11PhyType", _ULONG),
        ("uDot11PhyIndex", _ULONG),
        ("wlanSignalQuality", _ULONG),
        ("ulRxRate", _ULONG),
        ("ulTxRate", _ULONG),
    ]


class WLAN_SECURITY_ATTRIBUTES(ctypes.Structure):
    _fields_ = [
        ("bSecurityEnabled", ctypes.c_int32),
        ("bOneXEnabled", ctypes.c_int32),
        ("dot11AuthAlgorithm", _ULONG),
        ("dot11CipherAlgorithm", _ULONG),
    ]


class WLAN_CONNECTION_ATTRIBUTES(ctypes.Structure):
    _fields_ = [
        ("isState", _ULONG),
        ("wlanConnectionMode", _ULONG),
        ("strProfileName", _WCHAR * 256),
        ("wlanAssociationAttributes", WLAN_ASSOCIATION_ATTRIBUTES),
        ("wlanSecurityAttributes", WLAN_SECURITY_ATTRIBUTES),
    ]


class WLAN_PHY_RADIO_STATE(ctypes.Structure):
    _fields_ = [("dwPhyIndex", _ULONG), ("dot11SoftwareRadioState", _ULONG), ("dot11HardwareRadioState", _ULONG)]


class WLAN_RADIO_STATE(ctypes.Structure):
    _fields_ = [("dwNumberOfPhys", _ULONG), ("PhyRadioState", WLAN_PHY_RADIO_STATE * 64)]  # WLAN_MAX_PHY_INDEX


class WLAN_RATE_SET(ctypes.Structure):
    _fields_ = [("uRateSetLength", _ULONG), ("usRateSet", ctypes.c_uint16 * 126)]  # DOT11_RATE_SET_MAX_LENGTH


class WLAN_BSS_ENTRY(ctypes.Structure):
    _fields_ = [
        ("dot11Ssid", DOT11_SSID),
        ("uPhyId", _ULONG),
        ("dot11Bssid", ctypes.c_ubyte * 6),
        ("dot11BssType", _ULONG),
        ("dot11BssPhyType", _ULONG),
        ("lRssi", _LONG),
        ("uLinkQuality", _ULONG),
        ("bInRegDomain", ctypes.c_ubyte),
        ("usBeaconPeriod", ctypes.c_uint16),
        ("ullTimestamp", ctypes.c_uint64),
        ("ullHostTimestamp", ctypes.c_uint64),
        ("usCapabilityInformation", ctypes.c_uint16),
        ("ulChCenterFrequency", _ULONG),
        ("wlanRateSet", WLAN_RATE_SET),
        ("ulIeOffset", _ULONG),
        ("ulIeSize", _ULONG),
    ]


class WLAN_BSS_LIST(ctypes.Structure):
    _fields_ = [("dwTotalSize", _ULONG), ("dwNumberOfItems", _ULONG), ("wlanBssEntries", WLAN_BSS_ENTRY * 1)]


_LIST_HEADER = WLAN_INTERFACE_INFO_LIST.InterfaceInfo.offset
_BSS_HEADER = WLAN_BSS_LIST.wlanBssEntries.offset


class WlanUnavailable(OSError):
    """wlanapi.dll cannot be loaded here: netsh is the only way left."""


def _load_wlanapi():
    try:
        return ctypes.WinDLL("wlanapi.dll", use_last_error=True)  # type: ignore[attr-defined]
    except (AttributeError, OSError) as exc:  # AttributeError: not Windows
        raise WlanUnavailable(f"wlanapi.dll: {exc}") from None


def _wstr(chars) -> str:
    return bytes(chars).decode("utf-16-le", "replace").split("\0", 1)[0]


def _mac(raw) -> str | None:
    return norm_mac(":".join(f"{b:02x}" for b in bytes(raw)))


@dataclass(frozen=True)
class _Interface:
    guid: GUID
    description: str
    state: int


class WindowsReader:
    """One reader per process. ``dll`` is wlanapi.dll or a stand-in; ``run`` runs netsh (tests)."""

    def __init__(
        self,
        netsh_every_s: float = 30.0,
        dll: object | None = None,
        run: Callable[[list[str]], bytes | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.netsh_every_s = netsh_every_s
        self._dll: Any = dll  # wlanapi.dll (ctypes: attributes by name) or a stand-in
        self._run = run or _run
        self._clock = clock
        self._handle: ctypes.c_void_p | None = None
        self._api_failed = False
        self._warned = False
        self._said_service = False
        self._freq_key: tuple | None = None
        self._freq: int | None = None
        self._netsh_at: float | None = None

    def read(self) -> WifiReading:
        if not self._api_failed:
            try:
                return self._read_api()
            except WlanUnavailable as exc:
                log.info(
                    "Native Wifi API unavailable (%s); falling back to netsh every %.0f s", exc, self.netsh_every_s
                )
                self._api_failed = True
        return self._read_netsh()

    # -- Native Wifi ---------------------------------------------------------------------------

    def _open(self) -> int:
        if self._dll is None:
            self._dll = _load_wlanapi()
        version, handle = ctypes.c_uint32(), ctypes.c_void_p()
        rc = self._dll.WlanOpenHandle(2, None, ctypes.byref(version), ctypes.byref(handle))
        if rc == 0:
            self._handle = handle
        return rc

    def close(self) -> None:
        if self._handle is not None and self._dll is not None:
            self._dll.WlanCloseHandle(self._handle, None)
        self._handle = None

    def _interfaces(self) -> tuple[int, list[_Interface]]:
        lst = ctypes.c_void_p()
        rc = self._dll.WlanEnumInterfaces(self._handle, None, ctypes.byref(lst))
        if rc:
            return rc, []
        try:
            assert lst.value is not None  # rc 0: the list was allocated
            count = WLAN_INTERFACE_INFO_LIST.from_address(lst.value).dwNumberOfItems
            items = (WLAN_INTERFACE_INFO * count).from_address(lst.value + _LIST_HEADER)
            return 0, [
                _Interface(GUID.from_buffer_copy(i.InterfaceGuid), _wstr(i.strInterfaceDescription), i.isState)
                for i in items
            ]
        finally:
            self._dll.WlanFreeMemory(lst)

    def _read_api(self) -> WifiReading:
        rc = 0 if self._handle is not None else self._open()
        if rc == 0:
            rc, interfaces = self._interfaces()
            if rc == ERROR_INVALID_HANDLE:  # the service restarted under us: one new handle
                self._handle = None
                rc = self._open()
                if rc == 0:
                    rc, interfaces = self._interfaces()
        if rc == ERROR_SERVICE_NOT_ACTIVE:
            self.close()
            if not self._said_service:
                self._said_service = True
                log.info("the WLAN AutoConfig service (wlansvc) is not running: no Wi-Fi on this desk until it is")
            return WifiReading(connected=False, source="wlanapi", note=NO_WIFI_INTERFACE)
        if rc:
            self.close()
            raise OSError(rc, f"Native Wifi API call failed with error {rc}")
        self._said_service = False
        if not interfaces:
            return WifiReading(connected=False, source="wlanapi", note=NO_WIFI_INTERFACE)
        chosen = next((i for i in interfaces if i.state == STATE_CONNECTED), interfaces[0])
        return self._reading(chosen)

    def _query(self, guid: GUID, opcode: int) -> tuple[int, ctypes.c_void_p, int]:
        size, data, kind = ctypes.c_uint32(), ctypes.c_void_p(), ctypes.c_uint32()
        rc = self._dll.WlanQueryInterface(
            self._handle, ctypes.byref(guid), opcode, None, ctypes.byref(size), ctypes.byref(data), ctypes.byref(kind)
        )
        return rc, data, size.value

    def _value(self, guid: GUID, opcode: int, ctype) -> int | None:
        """A LONG or ULONG answer (RSSI, channel); None when the driver does not give it."""
        rc, data, size = self._query(guid, opcode)
        if rc or not data.value:
            return None
        try:
            return ctype.from_address(data.value).value if size >= ctypes.sizeof(ctype) else None
        finally:
            self._dll.WlanFreeMemory(data)

    def _radio_off(self, guid: GUID) -> bool:
        rc, data, _ = self._query(guid, OPCODE_RADIO_STATE)
        if rc or not data.value:
            return False
        try:
            state = WLAN_RADIO_STATE.from_address(data.value)
            phys = list(state.PhyRadioState)[: min(state.dwNumberOfPhys, 64)]
            # A PHY is off when either switch is off (documented); the radio when every PHY is.
            return bool(phys) and all(
                DOT11_RADIO_STATE_OFF in (p.dot11SoftwareRadioState, p.dot11HardwareRadioState) for p in phys
            )
        finally:
            self._dll.WlanFreeMemory(data)

    def _reading(self, info: _Interface) -> WifiReading:
        name = info.description or str(uuid.UUID(bytes_le=bytes(info.guid)))
        if info.state != STATE_CONNECTED:
            return self._not_connected(info.guid, name)
        rc, data, size = self._query(info.guid, OPCODE_CURRENT_CONNECTION)
        if rc == ERROR_ACCESS_DENIED:
            self._warn_location()
            return complete(
                WifiReading(
                    connected=True,
                    source="wlanapi",
                    interface=name,
                    ssid=HIDDEN,
                    hidden_by_os=True,
                    rssi_dbm=self._value(info.guid, OPCODE_RSSI, _LONG),
                    channel=self._value(info.guid, OPCODE_CHANNEL_NUMBER, _ULONG),
                )
            )
        if rc == ERROR_INVALID_STATE:  # disconnected between the enumeration and the query
            return self._not_connected(info.guid, name)
        if rc:
            raise OSError(rc, f"WlanQueryInterface(current_connection) failed with error {rc}")
        try:
            if size < ctypes.sizeof(WLAN_CONNECTION_ATTRIBUTES):
                raise OSError(ERROR_INVALID_STATE, f"current_connection answered {size} bytes")
            assert data.value is not None  # rc 0 and a size: the answer was allocated
            conn = WLAN_CONNECTION_ATTRIBUTES.from_address(data.value)
            if conn.isState != STATE_CONNECTED:
                return self._not_connected(info.guid, name)
            a = conn.wlanAssociationAttributes
            ssid_struct = DOT11_SSID.from_buffer_copy(a.dot11Ssid)
            ssid = bytes(a.dot11Ssid.ucSSID[: min(a.dot11Ssid.uSSIDLength, 32)]).decode("utf-8", "replace")
            bssid = _mac(a.dot11Bssid)
            phy, quality, rx, tx = _PHY.get(a.dot11PhyType), int(a.wlanSignalQuality), a.ulRxRate, a.ulTxRate
            secure = bool(conn.wlanSecurityAttributes.bSecurityEnabled)
        finally:
            self._dll.WlanFreeMemory(data)
        channel = self._value(info.guid, OPCODE_CHANNEL_NUMBER, _ULONG)
        freq = self._frequency(info.guid, ssid_struct, secure, bssid, channel)
        band = None
        if (
            freq is None
            and channel is not None
            and phy in ("802.11ax", "802.11be")
            and channel % 4 == 1
            and channel < 149
        ):
            band = "6"  # 5 GHz primaries below 149 are multiples of 4; 6 GHz ones are 1 mod 4
        return complete(
            WifiReading(
                connected=True,
                source="wlanapi",
                interface=name,
                ssid=ssid,
                bssid=bssid,
                rssi_dbm=self._value(info.guid, OPCODE_RSSI, _LONG),
                channel=channel,
                frequency_mhz=freq,
                band=band,
                phy=phy,
                signal_percent=quality,
                tx_rate_mbps=tx / 1000 or None,
                rx_rate_mbps=rx / 1000 or None,
            )
        )

    def _not_connected(self, guid: GUID, name: str) -> WifiReading:
        note = "Wi-Fi is off" if self._radio_off(guid) else None
        return WifiReading(connected=False, source="wlanapi", interface=name, note=note)

    def _frequency(
        self, guid: GUID, ssid: DOT11_SSID, secure: bool, bssid: str | None, channel: int | None
    ) -> int | None:
        """The current AP's centre frequency from the BSS list Windows holds; asked once per AP and channel."""
        key = (bytes(guid), bssid, channel)
        if key == self._freq_key:
            return self._freq
        self._freq_key, self._freq = key, None
        lst = ctypes.c_void_p()
        rc = self._dll.WlanGetNetworkBssList(
            self._handle,
            ctypes.byref(guid),
            ctypes.byref(ssid),
            DOT11_BSS_TYPE_INFRASTRUCTURE,
            int(secure),
            None,
            ctypes.byref(lst),
        )
        if rc or not lst.value:
            return None
        try:
            count = WLAN_BSS_LIST.from_address(lst.value).dwNumberOfItems
            for entry in (WLAN_BSS_ENTRY * count).from_address(lst.value + _BSS_HEADER):
                if _mac(entry.dot11Bssid) == bssid and entry.ulChCenterFrequency:
                    self._freq = entry.ulChCenterFrequency // 1000  # kHz
                    break
        finally:
            self._dll.WlanFreeMemory(lst)
        return self._freq

    def _warn_location(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "Windows hides the Wi-Fi SSID/BSSID from this agent: turn on Settings > Privacy & security > "
                "Location > 'Let desktop apps access your location' (or allow it by policy); "
                "signal, channel and rates are still reported"
            )

    # -- netsh, where wlanapi.dll is missing ---------------------------------------------------

    def _read_netsh(self) -> WifiReading:
        now = self._clock()
        if self._netsh_at is not None and now - self._netsh_at < self.netsh_every_s:
            return WifiReading(connected=None, source="netsh", note=NOT_DUE)
        self._netsh_at = now
        out = self._run(["netsh", "wlan", "show", "interfaces"])
        if out is None:
            return WifiReading(connected=None, source="netsh", note="neither wlanapi.dll nor netsh is available")
        text = out.decode("utf-8", "replace") if _utf8(out) else out.decode(_oem_codepage(), "replace")
        reading = (
            netsh.parse(text)
            if netsh.detect(text)
            else WifiReading(connected=None, source="netsh", note="netsh output not recognised")
        )
        if reading.hidden_by_os:
            self._warn_location()
        return reading


def _run(cmd: list[str]) -> bytes | None:
    exe = shutil.which(cmd[0])
    if exe is None:
        return None
    try:
        return subprocess.run([exe, *cmd[1:]], capture_output=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None


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
