"""The Windows reader without Windows: structure layouts against the documented x64 values, and a
fake wlanapi.dll (same function names and argument order) that answers with byte buffers laid out
as wlanapi.h documents them, errors included."""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import sys
import uuid

import pytest

from cxpulse.agent.wifi import HIDDEN
from cxpulse.agent.wifi import windows as w
from cxpulse.agent.wifi.parsers._model import NO_WIFI_INTERFACE

# Sizes and offsets on x64, from the field lists in wlanapi.h / windot11.h (learn.microsoft.com,
# "WLAN_INTERFACE_INFO structure (wlanapi.h)" etc.) with the x64 alignment rules: WCHAR 2 bytes,
# ULONG/DWORD/BOOL/enums 4, ULONGLONG 8 (so 8-aligned), WLAN_MAX_NAME_LENGTH 256,
# DOT11_SSID_MAX_LENGTH 32, WLAN_MAX_PHY_INDEX 64, DOT11_RATE_SET_MAX_LENGTH 126.
LAYOUT = {
    # GUID 16 + WCHAR[256] 512 + WLAN_INTERFACE_STATE 4
    "WLAN_INTERFACE_INFO": (532, {"InterfaceGuid": 0, "strInterfaceDescription": 16, "isState": 528}),
    "WLAN_INTERFACE_INFO_LIST": (540, {"dwNumberOfItems": 0, "dwIndex": 4, "InterfaceInfo": 8}),
    "DOT11_SSID": (36, {"uSSIDLength": 0, "ucSSID": 4}),
    # BSSID (6 bytes) at 40 is followed by 2 bytes of padding before the 4-byte PHY type
    "WLAN_ASSOCIATION_ATTRIBUTES": (
        68,
        {
            "dot11Ssid": 0,
            "dot11BssType": 36,
            "dot11Bssid": 40,
            "dot11PhyType": 48,
            "uDot11PhyIndex": 52,
            "wlanSignalQuality": 56,
            "ulRxRate": 60,
            "ulTxRate": 64,
        },
    ),
    "WLAN_SECURITY_ATTRIBUTES": (
        16,
        {"bSecurityEnabled": 0, "bOneXEnabled": 4, "dot11AuthAlgorithm": 8, "dot11CipherAlgorithm": 12},
    ),
    "WLAN_CONNECTION_ATTRIBUTES": (
        604,
        {
            "isState": 0,
            "wlanConnectionMode": 4,
            "strProfileName": 8,
            "wlanAssociationAttributes": 520,
            "wlanSecurityAttributes": 588,
        },
    ),
    "WLAN_PHY_RADIO_STATE": (12, {"dwPhyIndex": 0, "dot11SoftwareRadioState": 4, "dot11HardwareRadioState": 8}),
    "WLAN_RADIO_STATE": (772, {"dwNumberOfPhys": 0, "PhyRadioState": 4}),
    "WLAN_RATE_SET": (256, {"uRateSetLength": 0, "usRateSet": 4}),
    # ullTimestamp is 8-aligned: 66 + 2 (usBeaconPeriod) = 68 -> 72
    "WLAN_BSS_ENTRY": (
        360,
        {
            "dot11Ssid": 0,
            "uPhyId": 36,
            "dot11Bssid": 40,
            "dot11BssType": 48,
            "dot11BssPhyType": 52,
            "lRssi": 56,
            "uLinkQuality": 60,
            "bInRegDomain": 64,
            "usBeaconPeriod": 66,
            "ullTimestamp": 72,
            "ullHostTimestamp": 80,
            "usCapabilityInformation": 88,
            "ulChCenterFrequency": 92,
            "wlanRateSet": 96,
            "ulIeOffset": 352,
            "ulIeSize": 356,
        },
    ),
    "WLAN_BSS_LIST": (368, {"dwTotalSize": 0, "dwNumberOfItems": 4, "wlanBssEntries": 8}),
}


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_structure_layout_matches_x64(name: str) -> None:
    cls = getattr(w, name)
    size, offsets = LAYOUT[name]
    assert ctypes.sizeof(cls) == size
    assert {f: getattr(cls, f).offset for f in offsets} == offsets


def test_opcodes_are_the_documented_enum_values() -> None:
    # WLAN_INTF_OPCODE: radio_state 4, current_connection 7, channel_number 8; wlan_intf_opcode_rssi is
    # wlan_intf_opcode_msm_start (0x10000100) + 2.
    assert (w.OPCODE_RADIO_STATE, w.OPCODE_CURRENT_CONNECTION, w.OPCODE_CHANNEL_NUMBER, w.OPCODE_RSSI) == (
        4,
        7,
        8,
        0x10000102,
    )


# -- the fake DLL -------------------------------------------------------------------------------

GUID_A = uuid.UUID("44bf0952-4755-46b5-9232-bc34aa2cf479")
GUID_B = uuid.UUID("7825d47a-5d59-4c93-8d91-2b0e1b5f6c4b")
BSSID = bytes.fromhex("fedcba098702")


def _wchars(text: str) -> bytes:
    return text.encode("utf-16-le").ljust(512, b"\0")


def interface_list(*items: tuple[uuid.UUID, str, int]) -> bytes:
    """WLAN_INTERFACE_INFO_LIST: count, index, then 532-byte entries."""
    out = struct.pack("<II", len(items), 0)
    for guid, desc, state in items:
        out += guid.bytes_le + _wchars(desc) + struct.pack("<I", state)
    return out


def connection(
    ssid: bytes = b"Office",
    bssid: bytes = BSSID,
    phy: int = 10,
    quality: int = 78,
    rx_kbps: int = 1_201_000,
    tx_kbps: int = 864_800,
    state: int = 1,
    secure: int = 1,
) -> bytes:
    """WLAN_CONNECTION_ATTRIBUTES, 604 bytes, each field packed at its documented offset."""
    buf = bytearray(604)
    struct.pack_into("<II", buf, 0, state, 0)
    buf[8 : 8 + 512] = _wchars("Office profile")
    struct.pack_into("<I32s", buf, 520, len(ssid), ssid)
    struct.pack_into("<I", buf, 556, 1)  # infrastructure
    buf[560:566] = bssid
    struct.pack_into("<IIIII", buf, 568, phy, 0, quality, rx_kbps, tx_kbps)
    struct.pack_into("<iiII", buf, 588, secure, 0, 7, 4)  # WPA2-PSK, CCMP
    return bytes(buf)


def radio_state(*phys: tuple[int, int]) -> bytes:
    buf = bytearray(772)
    struct.pack_into("<I", buf, 0, len(phys))
    for i, (sw, hw) in enumerate(phys):
        struct.pack_into("<III", buf, 4 + 12 * i, i, sw, hw)
    return bytes(buf)


def bss_list(*entries: tuple[bytes, int, int]) -> bytes:
    """WLAN_BSS_LIST with 360-byte entries: (bssid, rssi, centre frequency in kHz)."""
    out = bytearray(struct.pack("<II", 8 + 360 * len(entries), len(entries)))
    for bssid, rssi, khz in entries:
        e = bytearray(360)
        struct.pack_into("<I32s", e, 0, 6, b"Office")
        e[40:46] = bssid
        struct.pack_into("<IIiI", e, 48, 1, 10, rssi, 80)
        struct.pack_into("<I", e, 92, khz)
        out += e
    return bytes(out)


class FakeWlanApi:
    """wlanapi.dll's functions as the reader calls them; out-parameters arrive as ``byref`` objects."""

    def __init__(self, interfaces: bytes, answers: dict | None = None, rc: dict | None = None):
        self.interfaces = interfaces
        self.answers = answers or {}  # opcode -> bytes
        self.rc = dict(rc or {})  # function name or opcode -> error code (or list of codes)
        self.bss = bss_list((BSSID, -60, 5_975_000))
        self.live: dict[int, ctypes.Array] = {}
        self.calls: list[str] = []
        self.handles = 0
        self.closed = 0

    def _error(self, key) -> int:
        code = self.rc.get(key, 0)
        if isinstance(code, list):
            return code.pop(0) if code else 0
        return code

    def _give(self, ref, data: bytes) -> None:
        buf = ctypes.create_string_buffer(data, len(data))
        self.live[ctypes.addressof(buf)] = buf
        ref._obj.value = ctypes.addressof(buf)

    def WlanOpenHandle(self, version, reserved, negotiated, handle):
        self.calls.append("open")
        assert version == 2 and reserved is None
        if rc := self._error("WlanOpenHandle"):
            return rc
        self.handles += 1
        negotiated._obj.value, handle._obj.value = 2, 0x1000 + self.handles
        return 0

    def WlanCloseHandle(self, handle, reserved):
        self.closed += 1
        return 0

    def WlanEnumInterfaces(self, handle, reserved, out):
        self.calls.append("enum")
        assert handle.value == 0x1000 + self.handles
        if rc := self._error("WlanEnumInterfaces"):
            return rc
        self._give(out, self.interfaces)
        return 0

    def WlanQueryInterface(self, handle, guid, opcode, reserved, size, data, kind):
        self.calls.append(f"query:{opcode}")
        assert bytes(guid._obj) in (GUID_A.bytes_le, GUID_B.bytes_le)
        if rc := self._error(opcode):
            return rc
        if opcode not in self.answers:
            return 50  # ERROR_NOT_SUPPORTED
        size._obj.value = len(self.answers[opcode])
        self._give(data, self.answers[opcode])
        return 0

    def WlanGetNetworkBssList(self, handle, guid, ssid, bss_type, secure, reserved, out):
        self.calls.append("bsslist")
        assert bytes(ssid._obj.ucSSID[: ssid._obj.uSSIDLength]) == b"Office" and bss_type == 1 and secure == 1
        if rc := self._error("WlanGetNetworkBssList"):
            return rc
        self._give(out, self.bss)
        return 0

    def WlanFreeMemory(self, pointer):
        address = pointer.value if isinstance(pointer, ctypes.c_void_p) else pointer
        assert address in self.live, "freed twice or never given"
        del self.live[address]


def connected_api(**kw) -> FakeWlanApi:
    answers = {7: connection(**kw), 8: struct.pack("<I", 1), 0x10000102: struct.pack("<i", -61)}
    return FakeWlanApi(interface_list((GUID_A, "Intel(R) Wi-Fi 6E AX211 160MHz", 1)), answers)


def test_connected_link_and_every_buffer_freed() -> None:
    api = connected_api()
    r = w.WindowsReader(dll=api).read()
    assert (r.connected, r.source, r.interface, r.ssid, r.bssid) == (
        True,
        "wlanapi",
        "Intel(R) Wi-Fi 6E AX211 160MHz",
        "Office",
        "fe:dc:ba:09:87:02",
    )
    # 6 GHz channel 1 is told apart from 2.4 GHz channel 1 by the BSS entry's 5975 MHz.
    assert (r.rssi_dbm, r.channel, r.frequency_mhz, r.band, r.phy) == (-61, 1, 5975, "6", "802.11ax")
    assert (r.signal_percent, r.rx_rate_mbps, r.tx_rate_mbps) == (78, 1201.0, 864.8)
    assert api.live == {}


def test_steady_link_costs_no_bss_list_and_no_new_handle() -> None:
    api = connected_api()
    reader = w.WindowsReader(dll=api)
    for _ in range(5):
        reader.read()
    assert api.calls.count("open") == 1 and api.calls.count("bsslist") == 1
    assert api.calls.count("enum") == 5 and api.live == {}


def test_without_a_bss_entry_2_4_ghz_channel_1_stays_2_4() -> None:
    api = connected_api(phy=7)
    api.rc["WlanGetNetworkBssList"] = 5
    r = w.WindowsReader(dll=api).read()
    assert (r.channel, r.band, r.frequency_mhz) == (1, "2.4", 2412)


def test_location_denied_keeps_the_link_and_hides_identity(caplog) -> None:
    api = connected_api()
    api.rc[7] = w.ERROR_ACCESS_DENIED
    reader = w.WindowsReader(dll=api)
    with caplog.at_level(logging.WARNING):
        r, again = reader.read(), reader.read()
    assert (r.connected, r.ssid, r.bssid, r.hidden_by_os, r.rssi_dbm, r.channel) == (True, HIDDEN, None, True, -61, 1)
    assert again == r and sum("Location" in m for m in caplog.messages) == 1
    assert api.live == {}


@pytest.mark.parametrize(
    "phys, note", [([(1, 1)], None), ([(2, 1)], "Wi-Fi is off"), ([(1, 2)], "Wi-Fi is off"), ([(2, 1), (1, 1)], None)]
)
def test_disconnected_interface_and_radio_off(phys, note) -> None:
    api = FakeWlanApi(interface_list((GUID_A, "Wi-Fi", 4)), {4: radio_state(*phys)})
    r = w.WindowsReader(dll=api).read()
    assert (r.connected, r.interface, r.note, r.ssid, r.rssi_dbm) == (False, "Wi-Fi", note, None, None)
    assert "query:7" not in api.calls and api.live == {}


def test_the_connected_interface_of_two_is_reported() -> None:
    api = connected_api()
    api.interfaces = interface_list((GUID_B, "USB dongle", 4), (GUID_A, "Intel(R) Wi-Fi 6E AX211 160MHz", 1))
    r = w.WindowsReader(dll=api).read()
    assert (r.connected, r.interface) == (True, "Intel(R) Wi-Fi 6E AX211 160MHz")


def test_dropped_between_enumeration_and_query() -> None:
    api = connected_api()
    api.rc[7] = w.ERROR_INVALID_STATE
    r = w.WindowsReader(dll=api).read()
    assert r.connected is False and api.live == {}


def test_no_interface_is_no_wifi() -> None:
    r = w.WindowsReader(dll=FakeWlanApi(interface_list())).read()
    assert (r.connected, r.note) == (False, NO_WIFI_INTERFACE)


def test_service_stopped_is_no_wifi_and_retried_next_look() -> None:
    api = connected_api()
    api.rc["WlanOpenHandle"] = [w.ERROR_SERVICE_NOT_ACTIVE]
    reader = w.WindowsReader(dll=api, run=lambda cmd: pytest.fail("netsh must not run"))
    first = reader.read()
    assert (first.connected, first.source, first.note) == (False, "wlanapi", NO_WIFI_INTERFACE)
    assert reader.read().connected is True  # the service came up: a new handle, no netsh
    assert api.calls.count("open") == 2


def test_stale_handle_is_reopened_within_the_look() -> None:
    api = connected_api()
    reader = w.WindowsReader(dll=api)
    reader.read()
    api.rc["WlanEnumInterfaces"] = [w.ERROR_INVALID_HANDLE]
    assert reader.read().connected is True
    assert api.calls.count("open") == 2


def test_other_errors_raise_for_this_look_only() -> None:
    api = connected_api()
    api.rc["WlanEnumInterfaces"] = [87]  # ERROR_INVALID_PARAMETER
    reader = w.WindowsReader(dll=api)
    with pytest.raises(OSError):
        reader.read()
    assert reader.read().connected is True and not reader._api_failed


def test_missing_dll_falls_back_to_netsh_at_its_own_cadence(monkeypatch) -> None:
    """Server Core without the Wireless LAN feature: wlanapi.dll does not load (here: no ctypes.WinDLL)."""

    def no_dll():
        raise w.WlanUnavailable("wlanapi.dll: not found")

    monkeypatch.setattr(w, "_load_wlanapi", no_dll)
    runs: list[list[str]] = []
    text = (
        "There is 1 interface on the system:\n\n    Name : Wi-Fi\n"
        "    GUID : 44bf0952-4755-46b5-9232-bc34aa2cf479\n"
        "    Physical address : a4:6b:b6:33:78:d6\n    State : disconnected\n"
    )

    def run(cmd):
        runs.append(cmd)
        return text.encode("cp437")

    clock = [0.0]
    reader = w.WindowsReader(run=run, clock=lambda: clock[0])
    looks = []
    for _ in range(7):  # 30 s of 5 s looks
        looks.append(reader.read())
        clock[0] += 5
    assert reader._api_failed and len(runs) == 2  # at 0 and 30 s
    assert [r.connected for r in looks] == [False] + [None] * 5 + [False]
    assert {r.note for r in looks if r.connected is None} == {w.NOT_DUE}


@pytest.mark.skipif(
    os.environ.get("CXPULSE_NATIVE_OS") != "1" or sys.platform != "win32",
    reason="the real wlanapi.dll: Windows runner only",
)
def test_native_wlanapi_answers_without_netsh() -> None:
    """On a Windows runner (no radio, wlansvc usually stopped) the real DLL loads and answers in-process."""
    reader = w.WindowsReader(run=lambda cmd: pytest.fail("netsh must not run where wlanapi.dll loads"))
    r = reader.read()
    assert r.source == "wlanapi" and r.connected in (True, False) and not reader._api_failed
    reader.close()
