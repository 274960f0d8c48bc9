"""The Windows netinfo backend, proven where no Windows machine exists.

Three kinds of evidence: the ctypes structures against the documented x64 layouts (sizes and
offsets written here as literals, computed from the field lists on learn.microsoft.com under the
x64 alignment rules); byte buffers built here with ``struct`` at those documented offsets, never
with the module's own structures; and a fake DLL that plays iphlpapi, winhttp and kernel32, writes
those buffers where the real ones would, returns their errors, and checks that whatever Windows
allocates is freed exactly once.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import Any

import pytest

import cxpulse.agent.netinfo as netinfo
from cxpulse.agent.netinfo import DefaultRoute, Gateway
from cxpulse.agent.netinfo import windows as win
from cxpulse.agent.netinfo.windows import Adapter

pytestmark = pytest.mark.timeout(20)

X64 = ctypes.sizeof(ctypes.c_void_p) == 8

ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_NOT_FOUND = 5, 2, 1168
ERROR_INVALID_PARAMETER, ERROR_BUFFER_OVERFLOW, ERROR_NO_DATA = 87, 111, 232
AF_INET, AF_INET6 = 2, 23  # ws2def.h


# -- layouts -------------------------------------------------------------------------------------------


def _offsets(struct_type: Any, *names: str) -> dict[str, int]:
    return {name: getattr(struct_type, name).offset for name in names}


@pytest.mark.skipif(not X64, reason="the documented values below are the x64 layout")
def test_structure_sizes_match_the_documented_x64_layout() -> None:
    sizes = {
        win.SOCKADDR_IN: 16,  # ws2def.h SOCKADDR_IN: family, port, IN_ADDR, 8 zero bytes
        win.SOCKADDR_IN6: 28,  # ws2ipdef.h SOCKADDR_IN6: family, port, flowinfo, IN6_ADDR, scope id
        win.SOCKADDR_INET: 28,  # the union of both
        win.IP_ADDRESS_PREFIX: 32,  # SOCKADDR_INET + UINT8 PrefixLength, padded to 4
        win.MIB_IPFORWARD_ROW2: 104,  # netioapi.h
        win.SOCKET_ADDRESS: 16,  # ws2def.h: LPSOCKADDR + INT, padded to 8
        win.TOKEN_USER: 16,  # winnt.h: SID_AND_ATTRIBUTES, PSID + DWORD, padded to 8
        win.MIB_IPINTERFACE_ROW: 168,  # netioapi.h
        win.IP_ADAPTER_ADDRESSES_LH: 448,  # iptypes.h, the Vista+ layout
        win.WINHTTP_PROXY_INFO: 24,  # winhttp.h: DWORD + 2 LPWSTR
        win.WINHTTP_CURRENT_USER_IE_PROXY_CONFIG: 32,
    }  # winhttp.h: BOOL + 3 LPWSTR
    assert {t.__name__: ctypes.sizeof(t) for t in sizes} == {t.__name__: n for t, n in sizes.items()}


@pytest.mark.skipif(not X64, reason="the documented values below are the x64 layout")
def test_field_offsets_match_the_documented_x64_layout() -> None:
    # MIB_IPFORWARD_ROW2 (netioapi.h): NET_LUID, NET_IFINDEX, IP_ADDRESS_PREFIX, SOCKADDR_INET, UCHAR, 3 ULONG, ...
    assert _offsets(
        win.MIB_IPFORWARD_ROW2,
        "InterfaceLuid",
        "InterfaceIndex",
        "DestinationPrefix",
        "NextHop",
        "SitePrefixLength",
        "ValidLifetime",
        "PreferredLifetime",
        "Metric",
        "Protocol",
        "Loopback",
        "AutoconfigureAddress",
        "Publish",
        "Immortal",
        "Age",
        "Origin",
    ) == {
        "InterfaceLuid": 0,
        "InterfaceIndex": 8,
        "DestinationPrefix": 12,
        "NextHop": 44,
        "SitePrefixLength": 72,
        "ValidLifetime": 76,
        "PreferredLifetime": 80,
        "Metric": 84,
        "Protocol": 88,
        "Loopback": 92,
        "AutoconfigureAddress": 93,
        "Publish": 94,
        "Immortal": 95,
        "Age": 96,
        "Origin": 100,
    }
    assert _offsets(win.IP_ADDRESS_PREFIX, "Prefix", "PrefixLength") == {"Prefix": 0, "PrefixLength": 28}
    assert _offsets(win.SOCKADDR_IN6, "sin6_family", "sin6_port", "sin6_flowinfo", "sin6_addr", "sin6_scope_id") == {
        "sin6_family": 0,
        "sin6_port": 2,
        "sin6_flowinfo": 4,
        "sin6_addr": 8,
        "sin6_scope_id": 24,
    }
    assert _offsets(win.SOCKADDR_IN, "sin_family", "sin_port", "sin_addr") == {
        "sin_family": 0,
        "sin_port": 2,
        "sin_addr": 4,
    }
    assert _offsets(win.TOKEN_USER, "Sid", "Attributes") == {"Sid": 0, "Attributes": 8}
    assert _offsets(win.SOCKET_ADDRESS, "lpSockaddr", "iSockaddrLength") == {"lpSockaddr": 0, "iSockaddrLength": 8}
    # MIB_IPFORWARD_TABLE2: ULONG NumEntries, then rows aligned for their ULONG64 (the doc warns of padding).
    assert _offsets(win.MIB_IPFORWARD_TABLE2, "NumEntries", "Table") == {"NumEntries": 0, "Table": 8}
    # MIB_IPINTERFACE_ROW (netioapi.h): ADDRESS_FAMILY, NET_LUID, ..., ULONG ZoneIndices[ScopeLevelCount=16], ...
    assert _offsets(
        win.MIB_IPINTERFACE_ROW,
        "Family",
        "InterfaceLuid",
        "InterfaceIndex",
        "InterfaceIdentifier",
        "AdvertisingEnabled",
        "AdvertiseDefaultRoute",
        "RouterDiscoveryBehavior",
        "ZoneIndices",
        "SitePrefixLength",
        "Metric",
        "NlMtu",
        "Connected",
        "ReachableTime",
        "TransmitOffload",
        "DisableDefaultRoutes",
    ) == {
        "Family": 0,
        "InterfaceLuid": 8,
        "InterfaceIndex": 16,
        "InterfaceIdentifier": 24,
        "AdvertisingEnabled": 40,
        "AdvertiseDefaultRoute": 48,
        "RouterDiscoveryBehavior": 52,
        "ZoneIndices": 80,
        "SitePrefixLength": 144,
        "Metric": 148,
        "NlMtu": 152,
        "Connected": 156,
        "ReachableTime": 160,
        "TransmitOffload": 164,
        "DisableDefaultRoutes": 166,
    }
    # IP_ADAPTER_ADDRESSES_LH (iptypes.h): the fields up to TunnelType, which this backend reads, and the rest.
    assert _offsets(
        win.IP_ADAPTER_ADDRESSES_LH,
        "Length",
        "IfIndex",
        "Next",
        "AdapterName",
        "FirstUnicastAddress",
        "DnsSuffix",
        "Description",
        "FriendlyName",
        "PhysicalAddress",
        "PhysicalAddressLength",
        "Flags",
        "Mtu",
        "IfType",
        "OperStatus",
        "Ipv6IfIndex",
        "ZoneIndices",
        "FirstPrefix",
        "TransmitLinkSpeed",
        "FirstGatewayAddress",
        "Ipv4Metric",
        "Ipv6Metric",
        "Luid",
        "Dhcpv4Server",
        "CompartmentId",
        "NetworkGuid",
        "ConnectionType",
        "TunnelType",
        "Dhcpv6Server",
        "Dhcpv6ClientDuid",
        "Dhcpv6ClientDuidLength",
        "Dhcpv6Iaid",
        "FirstDnsSuffix",
    ) == {
        "Length": 0,
        "IfIndex": 4,
        "Next": 8,
        "AdapterName": 16,
        "FirstUnicastAddress": 24,
        "DnsSuffix": 56,
        "Description": 64,
        "FriendlyName": 72,
        "PhysicalAddress": 80,
        "PhysicalAddressLength": 88,
        "Flags": 92,
        "Mtu": 96,
        "IfType": 100,
        "OperStatus": 104,
        "Ipv6IfIndex": 108,
        "ZoneIndices": 112,
        "FirstPrefix": 176,
        "TransmitLinkSpeed": 184,
        "FirstGatewayAddress": 208,
        "Ipv4Metric": 216,
        "Ipv6Metric": 220,
        "Luid": 224,
        "Dhcpv4Server": 232,
        "CompartmentId": 248,
        "NetworkGuid": 252,
        "ConnectionType": 268,
        "TunnelType": 272,
        "Dhcpv6Server": 280,
        "Dhcpv6ClientDuid": 296,
        "Dhcpv6ClientDuidLength": 428,
        "Dhcpv6Iaid": 432,
        "FirstDnsSuffix": 440,
    }
    assert _offsets(win.WINHTTP_PROXY_INFO, "dwAccessType", "lpszProxy", "lpszProxyBypass") == {
        "dwAccessType": 0,
        "lpszProxy": 8,
        "lpszProxyBypass": 16,
    }
    assert _offsets(
        win.WINHTTP_CURRENT_USER_IE_PROXY_CONFIG, "fAutoDetect", "lpszAutoConfigUrl", "lpszProxy", "lpszProxyBypass"
    ) == {"fAutoDetect": 0, "lpszAutoConfigUrl": 8, "lpszProxy": 16, "lpszProxyBypass": 24}


# -- buffers as the documentation lays them out ---------------------------------------------------------


def _sockaddr_into(buf: bytearray, off: int, family: int, address: str, scope: int = 0) -> None:
    """SOCKADDR_IN: family @0, port @2, address @4. SOCKADDR_IN6: address @8, scope id @24."""
    struct.pack_into("<H", buf, off, family)
    if family == AF_INET:
        buf[off + 4 : off + 8] = socket.inet_aton(address)
    else:
        buf[off + 8 : off + 24] = socket.inet_pton(socket.AF_INET6, address)
        struct.pack_into("<I", buf, off + 24, scope)


def route_row(luid: int, index: int, dest: str, prefix: int, next_hop: str, metric: int, *, scope: int = 0) -> bytes:
    """One MIB_IPFORWARD_ROW2 (104 bytes): LUID @0, index @8, DestinationPrefix @12 (length @40),
    NextHop @44, Metric @84, Protocol @88, Origin @100."""
    family = AF_INET6 if ":" in dest else AF_INET
    row = bytearray(104)
    struct.pack_into("<QI", row, 0, luid, index)
    _sockaddr_into(row, 12, family, dest)
    row[40] = prefix
    _sockaddr_into(row, 44, family, next_hop, scope)
    struct.pack_into("<III", row, 84, metric, 3, 0)  # Protocol MIB_IPPROTO_NETMGMT
    return bytes(row)


def route_table(*rows: bytes) -> bytes:
    """MIB_IPFORWARD_TABLE2: NumEntries, 4 bytes of padding, the rows."""
    return struct.pack("<I4x", len(rows)) + b"".join(rows)


def adapter_list(base: int, adapters: list[dict[str, Any]], size: int) -> bytes:
    """GetAdaptersAddresses' output at address ``base``: 448-byte IP_ADAPTER_ADDRESSES_LH records
    linked by absolute Next pointers (@8), then the UTF-16 strings they point to (Description @64,
    FriendlyName @72); IfType @100, OperStatus @104, Luid @224, TunnelType @272."""
    buf = bytearray(size)
    strings = 448 * len(adapters)

    def put(text: str) -> int:
        nonlocal strings
        data = text.encode("utf-16-le") + b"\0\0"
        buf[strings : strings + len(data)] = data
        strings += len(data)
        return base + strings - len(data)

    for i, a in enumerate(adapters):
        off = 448 * i
        nxt = base + off + 448 if i + 1 < len(adapters) else 0
        struct.pack_into("<IIQ", buf, off, 448, a.get("index", i + 1), nxt)
        struct.pack_into("<QQ", buf, off + 64, put(a["description"]), put(a["name"]))
        struct.pack_into("<II", buf, off + 100, a["if_type"], a.get("oper", 1))
        struct.pack_into("<Q", buf, off + 224, a.get("luid", 1000 + i))
        struct.pack_into("<I", buf, off + 272, a.get("tunnel", 0))
    assert strings <= size
    return bytes(buf)


# -- the fake DLL ----------------------------------------------------------------------------------------


class FakeWindows:
    """iphlpapi + winhttp + kernel32 as the backend calls them; writes through the pointers it gets.

    ``interfaces`` maps (LUID, family) to (metric, connected) or to an error code; ``aliases`` maps
    LUID to alias; ``gaa_errors`` are returned by the first GetAdaptersAddresses calls, in order;
    ``gaa_size`` is how many bytes the adapter list needs; ``ie``/``machine`` are the proxy settings
    (a dict) or an error code; ``console_sid`` is the console user's SID (None: nobody at the console)
    or the error WTSQueryUserToken gives; ``registry`` maps (root, subkey, value name) to a value.
    """

    def __init__(
        self,
        *,
        routes: bytes | int = route_table(),
        interfaces: dict | None = None,
        aliases: dict | None = None,
        adapters: list | None = None,
        gaa_errors: tuple[int, ...] = (),
        gaa_size: int = 8192,
        ie: dict | int = ERROR_FILE_NOT_FOUND,
        machine: dict | int | None = None,
        console_sid: str | int | None = None,
        registry: dict | None = None,
    ):
        self.routes, self.interfaces, self.aliases = routes, interfaces or {}, aliases or {}
        self.adapters, self.gaa_errors, self.gaa_size = adapters or [], list(gaa_errors), gaa_size
        self.ie = ie
        self.machine = {"access": 1} if machine is None else machine
        self.calls: list[str] = []
        self.tables: dict[int, Any] = {}
        self.freed_tables: list[int] = []
        self.initialized: set[int] = set()
        self.strings: dict[int, Any] = {}
        self.freed_strings: list[int] = []
        self.error = 0
        self.console_sid, self.values = console_sid, registry or {}
        self.tokens: list[int] = []
        self.closed: list[int] = []
        self.sids: dict[int, Any] = {}
        self.local_strings: dict[int, Any] = {}
        self.local_freed: list[int] = []

    # iphlpapi
    def GetIpForwardTable2(self, family: int, table_ref: Any) -> int:
        self.calls.append("GetIpForwardTable2")
        assert family == 0  # AF_UNSPEC: both families in one call
        if isinstance(self.routes, int):
            return self.routes
        buf = ctypes.create_string_buffer(self.routes, len(self.routes))
        self.tables[ctypes.addressof(buf)] = buf
        table_ref._obj.value = ctypes.addressof(buf)
        return 0

    def FreeMibTable(self, table: Any) -> None:
        self.calls.append("FreeMibTable")
        addr = table.value if isinstance(table, ctypes.c_void_p) else table
        assert addr in self.tables and addr not in self.freed_tables
        self.freed_tables.append(addr)

    def InitializeIpInterfaceEntry(self, row_ref: Any) -> None:
        addr = ctypes.addressof(row_ref._obj)
        ctypes.memset(addr, 0, 168)
        self.initialized.add(addr)

    def GetIpInterfaceEntry(self, row_ref: Any) -> int:
        self.calls.append("GetIpInterfaceEntry")
        addr = ctypes.addressof(row_ref._obj)
        assert addr in self.initialized, "the row must be initialized first (InitializeIpInterfaceEntry)"
        family = ctypes.c_uint16.from_address(addr).value  # Family @0
        luid = ctypes.c_uint64.from_address(addr + 8).value  # InterfaceLuid @8
        found = self.interfaces.get((luid, family), ERROR_NOT_FOUND)
        if isinstance(found, int):
            return found
        metric, connected = found
        ctypes.c_uint32.from_address(addr + 148).value = metric  # Metric @148
        ctypes.c_uint8.from_address(addr + 156).value = connected  # Connected @156
        return 0

    def ConvertInterfaceLuidToAlias(self, luid_ref: Any, buf: Any, length: int) -> int:
        alias = self.aliases.get(luid_ref._obj.value)
        if alias is None:
            return ERROR_INVALID_PARAMETER
        data = alias.encode("utf-16-le") + b"\0\0"
        assert len(data) // 2 <= length
        ctypes.memmove(buf, data, len(data))
        return 0

    def GetAdaptersAddresses(self, family: int, flags: int, reserved: Any, buf: int, size_ref: Any) -> int:
        self.calls.append("GetAdaptersAddresses")
        assert family == 0 and flags & 0x1 and not flags & 0x20  # skip unicast, keep friendly names
        if self.gaa_errors:
            err = self.gaa_errors.pop(0)
            if err == ERROR_BUFFER_OVERFLOW:
                size_ref._obj.value = self.gaa_size
            return err
        if size_ref._obj.value < self.gaa_size:
            size_ref._obj.value = self.gaa_size
            return ERROR_BUFFER_OVERFLOW
        if not self.adapters:
            return ERROR_NO_DATA
        data = adapter_list(buf, self.adapters, self.gaa_size)
        ctypes.memmove(buf, data, len(data))
        return 0

    # winhttp
    def _string(self, text: str | None) -> int:
        if text is None:
            return 0
        buf = ctypes.create_string_buffer(text.encode("utf-16-le") + b"\0\0")
        self.strings[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def WinHttpGetIEProxyConfigForCurrentUser(self, cfg_ref: Any) -> int:
        self.calls.append("WinHttpGetIEProxyConfigForCurrentUser")
        if isinstance(self.ie, int):
            self.error = self.ie
            return 0
        addr = ctypes.addressof(cfg_ref._obj)
        struct.pack_into(
            "<i4xQQQ",
            (ctypes.c_char * 32).from_address(addr),
            0,
            int(self.ie.get("auto", False)),
            self._string(self.ie.get("pac")),
            self._string(self.ie.get("proxy")),
            self._string(self.ie.get("bypass")),
        )
        return 1

    def WinHttpGetDefaultProxyConfiguration(self, info_ref: Any) -> int:
        self.calls.append("WinHttpGetDefaultProxyConfiguration")
        if isinstance(self.machine, int):
            self.error = self.machine
            return 0
        addr = ctypes.addressof(info_ref._obj)
        struct.pack_into(
            "<I4xQQ",
            (ctypes.c_char * 24).from_address(addr),
            0,
            self.machine["access"],
            self._string(self.machine.get("proxy")),
            self._string(self.machine.get("bypass")),
        )
        return 1

    # kernel32
    def GlobalFree(self, ptr: int) -> int:
        assert ptr in self.strings and ptr not in self.freed_strings, "GlobalFree of a pointer WinHTTP did not give"
        self.freed_strings.append(ptr)
        return 0

    def last_error(self) -> int:
        return self.error

    # the console user: kernel32, wtsapi32, advapi32 and the registry
    def WTSGetActiveConsoleSessionId(self) -> int:
        return 0xFFFFFFFF if self.console_sid is None else 1

    def WTSQueryUserToken(self, session: int, token_ref: Any) -> int:
        self.calls.append("WTSQueryUserToken")
        assert session == 1
        if isinstance(self.console_sid, int):
            self.error = self.console_sid
            return 0
        token_ref._obj.value = 0x4242 + len(self.tokens)
        self.tokens.append(token_ref._obj.value)
        return 1

    def GetTokenInformation(self, token: Any, info_class: int, buf: int, length: int, needed_ref: Any) -> int:
        assert info_class == 1 and length >= 16  # TokenUser
        sid = ctypes.create_string_buffer(b"\x01\x05" + b"\0" * 26)  # the binary SID, opaque to the caller
        self.sids[ctypes.addressof(sid)] = sid
        struct.pack_into("<QI", (ctypes.c_char * 16).from_address(buf), 0, ctypes.addressof(sid), 0)  # Sid @0
        needed_ref._obj.value = 16 + 28
        return 1

    def ConvertSidToStringSidW(self, sid: int, text_ref: Any) -> int:
        assert sid in self.sids, "the SID pointer must come from TOKEN_USER.Sid"
        text = ctypes.create_string_buffer(str(self.console_sid).encode("utf-16-le") + b"\0\0")
        self.local_strings[ctypes.addressof(text)] = text
        text_ref._obj.value = ctypes.addressof(text)
        return 1

    def LocalFree(self, ptr: Any) -> int:
        addr = ptr.value if isinstance(ptr, ctypes.c_void_p) else ptr
        assert addr in self.local_strings and addr not in self.local_freed
        self.local_freed.append(addr)
        return 0

    def CloseHandle(self, handle: Any) -> int:
        self.closed.append(handle.value if isinstance(handle, ctypes.c_void_p) else handle)
        return 1

    def registry(self, root: str, subkey: str, name: str) -> Any:
        return self.values.get((root, subkey, name))

    def all_freed(self) -> bool:
        return (
            sorted(self.tables) == sorted(self.freed_tables)
            and sorted(self.strings) == sorted(self.freed_strings)
            and sorted(self.tokens) == sorted(self.closed)
            and sorted(self.local_strings) == sorted(self.local_freed)
        )


# -- default routes ----------------------------------------------------------------------------------------

WIFI, CABLE, DOCK, GONE, DENIED, NAMELESS = 0x4700000001, 0x0600000002, 0x0600000003, 0x99, 0x98, 0x97

DOCKED_LAPTOP = route_table(
    route_row(WIFI, 12, "0.0.0.0", 0, "192.168.1.1", 0),  # Wi-Fi's default route
    route_row(WIFI, 12, "192.168.1.0", 24, "0.0.0.0", 256),  # its subnet, on-link: not a default
    route_row(CABLE, 7, "0.0.0.0", 0, "10.20.0.1", 0),  # the cable at the desk
    route_row(WIFI, 12, "::", 0, "fe80::1", 256),  # IPv6 default via a link-local router
)


def docked_laptop(**overrides: Any) -> FakeWindows:
    args: dict[str, Any] = {
        "routes": DOCKED_LAPTOP,
        "interfaces": {(WIFI, AF_INET): (50, 1), (WIFI, AF_INET6): (50, 1), (CABLE, AF_INET): (25, 1)},
        "aliases": {WIFI: "Wi-Fi", CABLE: "Ethernet 2"},
    }
    return FakeWindows(**{**args, **overrides})


def test_default_routes_from_a_route_table_with_two_defaults() -> None:
    api = docked_laptop()
    routes = win.default_routes(api)
    # Windows ranks by route metric + interface metric: the cable (0 + 25) beats Wi-Fi (0 + 50).
    assert routes == [
        DefaultRoute("192.168.1.1", "Wi-Fi", 50),
        DefaultRoute("10.20.0.1", "Ethernet 2", 25),
        DefaultRoute("fe80::1%12", "Wi-Fi", 306),
    ]
    assert api.calls.count("GetIpForwardTable2") == 1 and api.calls.count("FreeMibTable") == 1
    assert api.all_freed()


def test_default_gateway_through_the_public_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """netinfo dispatching to the Windows backend: IPv4 first, the lowest summed metric wins."""
    api = docked_laptop()
    monkeypatch.setattr(netinfo, "_WINDOWS", True)
    monkeypatch.setattr(
        netinfo, "_backend", type("Bound", (), {"default_routes": staticmethod(lambda: win.default_routes(api))})
    )
    assert netinfo.default_gateway() == Gateway("10.20.0.1", "Ethernet 2", 25)
    api.routes = route_table(route_row(WIFI, 12, "::", 0, "fe80::1", 256, scope=12))  # an IPv6-only network
    assert netinfo.default_gateway() == Gateway("fe80::1%12", "Wi-Fi", 306)


def test_routes_windows_would_not_use_are_left_out() -> None:
    api = docked_laptop(
        routes=route_table(
            route_row(WIFI, 12, "0.0.0.0", 0, "192.168.1.1", 0),
            route_row(DOCK, 9, "0.0.0.0", 0, "172.16.0.1", 0),  # a static address on an unplugged cable
            route_row(GONE, 4, "0.0.0.0", 0, "10.1.1.1", 0),  # the interface vanished between the two calls
            route_row(CABLE, 7, "0.0.0.0", 0, "0.0.0.0", 1),  # on-link default (a PPP VPN): no first hop
            route_row(CABLE, 7, "::", 0, "::", 1),
        ),
        interfaces={(WIFI, AF_INET): (50, 1), (DOCK, AF_INET): (5, 0), (CABLE, AF_INET): (1, 1)},
    )
    assert win.default_routes(api) == [DefaultRoute("192.168.1.1", "Wi-Fi", 50)]
    assert api.all_freed()


def test_a_failed_interface_lookup_keeps_the_gateway() -> None:
    """Access denied on the interface: rank by the route metric alone; no alias: no interface name."""
    api = docked_laptop(
        routes=route_table(
            route_row(DENIED, 3, "0.0.0.0", 0, "192.168.8.1", 15),
            route_row(NAMELESS, 5, "0.0.0.0", 0, "192.168.9.1", 20),
        ),
        interfaces={(DENIED, AF_INET): ERROR_ACCESS_DENIED, (NAMELESS, AF_INET): (10, 1)},
    )
    assert win.default_routes(api) == [DefaultRoute("192.168.8.1", "", 15), DefaultRoute("192.168.9.1", "", 30)]


def test_a_split_tunnel_vpn_with_thousands_of_routes() -> None:
    pushed = [route_row(CABLE, 7, f"10.{i // 256}.{i % 256}.0", 24, "10.255.0.1", 1) for i in range(3000)]
    api = docked_laptop(
        routes=route_table(*pushed[:1500], route_row(WIFI, 12, "0.0.0.0", 0, "192.168.1.1", 0), *pushed[1500:])
    )
    assert win.default_routes(api) == [DefaultRoute("192.168.1.1", "Wi-Fi", 50)]
    assert api.calls.count("GetIpInterfaceEntry") == 1  # only the default row is looked at further


@pytest.mark.parametrize("error", [ERROR_ACCESS_DENIED, ERROR_NOT_FOUND, ERROR_INVALID_PARAMETER])
def test_a_failed_route_table_means_no_gateway(error: int) -> None:
    api = FakeWindows(routes=error)
    assert win.default_routes(api) == []
    assert "FreeMibTable" not in api.calls  # nothing was allocated


def test_an_empty_route_table_means_no_gateway() -> None:
    api = FakeWindows(routes=route_table())
    assert win.default_routes(api) == [] and api.all_freed()


# -- adapters -----------------------------------------------------------------------------------------------

DESK = [
    {"name": "Wi-Fi", "description": "Intel(R) Wi-Fi 6 AX201 160MHz", "if_type": 71},
    {"name": "Ethernet", "description": "Intel(R) Ethernet Connection (7) I219-LM", "if_type": 6, "oper": 2},
    {"name": "Ethernet 3", "description": "TAP-Windows Adapter V9", "if_type": 6},  # OpenVPN, connected
    {"name": "Loopback Pseudo-Interface 1", "description": "Software Loopback Interface 1", "if_type": 24},
]


def test_kinds_and_vpn_from_an_adapter_list() -> None:
    api = FakeWindows(adapters=DESK)
    assert win.interface_kinds(api) == {
        "Wi-Fi": "wifi",
        "Ethernet": "ethernet",
        "Ethernet 3": "vpn",
        "Loopback Pseudo-Interface 1": "loopback",
    }
    assert win.vpn_interfaces(api) == ["Ethernet 3"]
    down = [dict(a, oper=2) if a["name"] == "Ethernet 3" else a for a in DESK]  # OpenVPN disconnected
    assert win.vpn_interfaces(FakeWindows(adapters=down)) == []


def test_adapter_list_buffer_overflow_then_success() -> None:
    """The list needs more than the first 15 KB: the size the API asks for, then the list."""
    api = FakeWindows(adapters=DESK, gaa_size=40_000)
    assert win.interface_kinds(api)["Ethernet 3"] == "vpn"
    assert api.calls == ["GetAdaptersAddresses", "GetAdaptersAddresses"]
    api = FakeWindows(adapters=DESK, gaa_errors=(ERROR_BUFFER_OVERFLOW, ERROR_BUFFER_OVERFLOW))
    assert len(win.interface_kinds(api)) == 4  # grew twice (adapters appeared meanwhile), third call fits


@pytest.mark.parametrize("errors", [(ERROR_ACCESS_DENIED,), (ERROR_NOT_FOUND,), (ERROR_BUFFER_OVERFLOW,) * 5])
def test_adapter_list_errors_mean_nothing_known(errors: tuple[int, ...]) -> None:
    api = FakeWindows(adapters=DESK, gaa_errors=errors)
    assert win.interface_kinds(api) == {}
    assert api.calls.count("GetAdaptersAddresses") <= 3  # bounded, even if the list keeps growing
    api = FakeWindows(adapters=DESK, gaa_errors=errors)
    assert win.vpn_interfaces(api) == []


def test_no_adapters_at_all() -> None:
    assert win.interface_kinds(FakeWindows(adapters=[])) == {}


def test_a_corrupt_adapter_list_is_read_up_to_the_damage() -> None:
    base = 0x10000
    raw = bytearray(adapter_list(base, DESK[:2], 4096))
    struct.pack_into("<Q", raw, 8, base)  # Wi-Fi's Next points back to itself
    assert [a.name for a in win.parse_adapters(bytes(raw), base)] == ["Wi-Fi"]
    struct.pack_into("<Q", raw, 8, base + (1 << 30))  # ... or far outside the buffer
    assert [a.name for a in win.parse_adapters(bytes(raw), base)] == ["Wi-Fi"]
    struct.pack_into("<Q", raw, 72, base + 4095)  # a FriendlyName running into the end of the buffer
    assert win.parse_adapters(bytes(raw), base)[0].name == ""
    assert win.parse_adapters(b"", base) == []


@pytest.mark.parametrize(
    ("adapter", "kind"),
    [
        (Adapter("Wi-Fi 2", "Killer(R) Wi-Fi 6E AX1675i 160MHz Wireless Network Adapter", 71, 0, 1), "wifi"),
        (Adapter("Local Area Connection* 2", "Microsoft Wi-Fi Direct Virtual Adapter #2", 71, 0, 2), "other"),
        (Adapter("Ethernet 4", "Realtek USB GbE Family Controller", 6, 0, 1), "ethernet"),
        (Adapter("vEthernet (Default Switch)", "Hyper-V Virtual Ethernet Adapter", 6, 0, 1), "other"),
        (Adapter("Bluetooth Network Connection", "Bluetooth Device (Personal Area Network)", 6, 0, 2), "other"),
        (
            Adapter(
                "Ethernet 5",
                "Cisco AnyConnect Secure Mobility Client Virtual Miniport Adapter for Windows x64",
                6,
                0,
                1,
            ),
            "vpn",
        ),
        (Adapter("Ethernet 6", "PANGP Virtual Ethernet Adapter Secure", 6, 0, 1), "vpn"),
        (Adapter("Ethernet 7", "Fortinet SSL VPN Virtual Ethernet Adapter", 6, 0, 1), "vpn"),
        (Adapter("Zscaler", "Zscaler Network Adapter 1.0.2.0", 6, 0, 1), "vpn"),
        (Adapter("office", "WireGuard Tunnel", 53, 0, 1), "vpn"),
        (Adapter("Company VPN", "WAN Miniport (IKEv2)", 23, 0, 1), "vpn"),  # RAS connection: PPP
        (Adapter("iphttpsinterface", "IP-HTTPS Platform Interface", 131, 15, 1), "vpn"),  # DirectAccess
        (Adapter("Teredo Tunneling Pseudo-Interface", "Teredo Tunneling Pseudo-Interface", 131, 14, 1), "other"),
        (Adapter("isatap.corp", "Microsoft ISATAP Adapter #2", 131, 13, 2), "other"),
        (Adapter("Cellular", "Qualcomm Snapdragon X55 5G", 243, 0, 1), "cellular"),
        (Adapter("Loopback Pseudo-Interface 1", "Software Loopback Interface 1", 24, 0, 1), "loopback"),
    ],
)
def test_adapter_kinds(adapter: Adapter, kind: str) -> None:
    assert win.adapter_kind(adapter) == kind


# -- proxy ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxy", "bypass", "expected"),
    [
        ("proxy.corp:8080", "", "http://proxy.corp:8080"),
        ("http=a.corp:80;https=b.corp:8443", "<local>", "http://b.corp:8443"),
        ("http=a.corp:80 https=b.corp:8443", "", "http://b.corp:8443"),  # space-separated, as WinHTTP also writes
        ("HTTPS=bob:s3cret@b.corp:8443;ftp=f:21", "", "http://b.corp:8443"),  # credentials never leave the desk
        ("http=a.corp:80;ftp=f.corp:21", "", None),  # no entry for HTTPS: it goes direct
        ("http=a.corp:80;socks=s.corp:1080", "", "socks://s.corp:1080"),
        ("http://user:pw@proxy.corp:3128", "", "http://proxy.corp:3128"),
        ("proxy.corp:8080", "*.corp;*", None),  # everything bypasses it
        ("", "", None),
    ],
)
def test_https_proxy_from_a_proxy_list(proxy: str, bypass: str, expected: str | None) -> None:
    assert win.https_proxy(proxy, bypass) == expected


def test_proxy_from_the_user_settings() -> None:
    api = FakeWindows(
        ie={"auto": True, "proxy": "http=a.corp:80;https=alice:pw@b.corp:8443", "bypass": "<local>;*.corp.example"}
    )
    assert win.system_proxy(api) == "http://b.corp:8443"  # explicit beats auto-detect
    assert api.all_freed()  # every string WinHTTP allocated went back with GlobalFree
    api = FakeWindows(ie={"auto": True, "pac": "http://wpad.corp/wpad.dat", "proxy": "p:8080"})
    assert win.system_proxy(api) == "pac:http://wpad.corp/wpad.dat"
    assert api.all_freed() and len(api.freed_strings) == 2
    assert win.system_proxy(FakeWindows(ie={"auto": True})) == "auto-detect"
    assert win.system_proxy(FakeWindows(ie={"auto": False})) is None


def test_machine_proxy_when_the_user_has_none() -> None:
    api = FakeWindows(ie=ERROR_FILE_NOT_FOUND, machine={"access": 3, "proxy": "proxy.corp:8080", "bypass": "<local>"})
    assert win.system_proxy(api) == "http://proxy.corp:8080"
    assert api.all_freed()
    api = FakeWindows(ie={"auto": True}, machine={"access": 3, "proxy": "proxy.corp:8080"})
    assert win.system_proxy(api) == "http://proxy.corp:8080"  # a named proxy says more than auto-detect
    assert win.system_proxy(FakeWindows(ie={"auto": False}, machine={"access": 1})) is None  # direct


SID = "S-1-5-21-1004336348-1177238915-682003330-512"
USER_KEY = SID + r"\Software\Microsoft\Windows\CurrentVersion\Internet Settings"


def connection_settings(flags: int) -> bytes:
    """DefaultConnectionSettings as WinINet writes it: version, change counter, PROXY_TYPE_* flags, ..."""
    return struct.pack("<III", 0x46, 7, flags) + b"\0" * 44


def test_the_desk_users_own_settings_under_the_service() -> None:
    """LocalSystem reads the console user's hive: their PAC, although SYSTEM's own settings say auto-detect."""
    values = {
        ("HKU", USER_KEY + r"\Connections", "DefaultConnectionSettings"): connection_settings(0x1 | 0x4),
        ("HKU", USER_KEY, "AutoConfigURL"): "http://pac.corp.example/proxy.pac",
        ("HKU", USER_KEY, "ProxyEnable"): 1,  # stale: the flags byte says the manual proxy is off
        ("HKU", USER_KEY, "ProxyServer"): "old.corp:3128",
    }
    api = FakeWindows(console_sid=SID, registry=values, ie={"auto": True})
    assert win.system_proxy(api) == "pac:http://pac.corp.example/proxy.pac"
    assert "WinHttpGetIEProxyConfigForCurrentUser" not in api.calls  # SYSTEM's settings are not the desk's
    assert api.all_freed() and api.tokens  # the token closed, the SID string freed with LocalFree

    values[("HKU", USER_KEY + r"\Connections", "DefaultConnectionSettings")] = connection_settings(0x1 | 0x2 | 0x8)
    values[("HKU", USER_KEY, "ProxyServer")] = "http=h.corp:80;https=s.corp:8443"
    assert win.system_proxy(FakeWindows(console_sid=SID, registry=values)) == "http://s.corp:8443"
    values[("HKU", USER_KEY + r"\Connections", "DefaultConnectionSettings")] = connection_settings(0x1 | 0x8)
    assert win.system_proxy(FakeWindows(console_sid=SID, registry=values)) == "auto-detect"
    values[("HKU", USER_KEY + r"\Connections", "DefaultConnectionSettings")] = connection_settings(0x1)
    assert win.system_proxy(FakeWindows(console_sid=SID, registry=values)) is None  # direct


def test_the_desk_users_settings_without_the_connection_blob() -> None:
    values = {("HKU", USER_KEY, "ProxyEnable"): 1, ("HKU", USER_KEY, "ProxyServer"): "u:pw@proxy.corp:8080"}
    assert win.system_proxy(FakeWindows(console_sid=SID, registry=values)) == "http://proxy.corp:8080"
    values[("HKU", USER_KEY, "ProxyEnable")] = 0
    assert win.system_proxy(FakeWindows(console_sid=SID, registry=values)) is None


def test_per_machine_policy_and_no_desk_user_fall_back_to_winhttp() -> None:
    """Per-machine settings by policy are what WinHttpGetIEProxyConfigForCurrentUser gives SYSTEM;
    nobody at the console, an empty hive or a process that may not ask (not LocalSystem) likewise."""
    machine_wide = {
        ("HKLM", win.INTERNET_SETTINGS_POLICY, "ProxySettingsPerUser"): 0,
        ("HKU", USER_KEY, "ProxyEnable"): 1,
        ("HKU", USER_KEY, "ProxyServer"): "ignored.corp:1",
    }
    for api in (
        FakeWindows(console_sid=SID, registry=machine_wide, ie={"proxy": "machine.corp:8080"}),
        FakeWindows(console_sid=None, ie={"proxy": "machine.corp:8080"}),
        FakeWindows(console_sid=SID, registry={}, ie={"proxy": "machine.corp:8080"}),
        FakeWindows(console_sid=1314, ie={"proxy": "machine.corp:8080"}),
    ):  # ERROR_PRIVILEGE_NOT_HELD
        assert win.system_proxy(api) == "http://machine.corp:8080"
        assert api.all_freed()


@pytest.mark.parametrize(
    ("ie", "machine"), [(ERROR_ACCESS_DENIED, ERROR_ACCESS_DENIED), (ERROR_FILE_NOT_FOUND, ERROR_NOT_FOUND)]
)
def test_failed_proxy_calls_mean_no_proxy(ie: int, machine: int) -> None:
    api = FakeWindows(ie=ie, machine=machine)
    assert win.system_proxy(api) is None
    assert api.calls == ["WinHttpGetIEProxyConfigForCurrentUser", "WinHttpGetDefaultProxyConfiguration"]
    assert api.freed_strings == []  # nothing to free after a failed call


# -- on this machine -------------------------------------------------------------------------------------------


def test_imports_here_and_answers_nothing_without_the_dlls() -> None:
    """No WinDLL off Windows: every reader gives its empty answer instead of raising."""
    if hasattr(ctypes, "WinDLL"):
        pytest.skip("this is Windows: the real DLLs answer")
    assert win.default_routes() == [] and win.interface_kinds() == {} and win.vpn_interfaces() == []
    assert win.system_proxy() is None


def test_an_unforeseen_failure_is_an_empty_answer() -> None:
    class Broken(FakeWindows):
        def GetIpForwardTable2(self, family: int, table_ref: Any) -> int:
            raise ctypes.ArgumentError("simulated: a prototype mismatch")

        def GetAdaptersAddresses(self, *args: Any) -> int:
            raise OSError("simulated: access violation")

        def WinHttpGetIEProxyConfigForCurrentUser(self, cfg_ref: Any) -> int:
            raise OSError("simulated")

    api = Broken()
    assert win.default_routes(api) == [] and win.interface_kinds(api) == {} and win.vpn_interfaces(api) == []
    assert win.system_proxy(api) is None
