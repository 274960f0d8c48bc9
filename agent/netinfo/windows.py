"""Windows backend: routes and adapters from iphlpapi, the proxy from WinHTTP, through ctypes.
No subprocess and no WMI; import-safe on every OS, tests drive a fake DLL through ``api``.
Design notes: docs/agent-internals.md, "agent/netinfo/windows.py".
"""

from __future__ import annotations

import ctypes
import logging
import re
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from ._model import DefaultRoute, kind_by_words, strip_credentials

__all__ = [
    "Adapter",
    "adapter_kind",
    "default_routes",
    "https_proxy",
    "interface_kinds",
    "system_proxy",
    "vpn_interfaces",
]

log = logging.getLogger(__name__)

_U8, _U16, _U32, _U64, _PTR = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_void_p

# ws2def.h: Windows' AF_INET6 is 23, not the 10 of Linux's socket module.
AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 23

NO_ERROR = 0
ERROR_FILE_NOT_FOUND = 2  # WinHttpGetIEProxyConfigForCurrentUser: no Internet settings at all
ERROR_BUFFER_OVERFLOW = 111
ERROR_NO_DATA = 232
ERROR_NOT_FOUND = 1168

# ipifcons.h IfType values.
IF_TYPE_ETHERNET_CSMACD = 6
IF_TYPE_PPP = 23
IF_TYPE_SOFTWARE_LOOPBACK = 24
IF_TYPE_IEEE80211 = 71
IF_TYPE_TUNNEL = 131
IF_TYPE_WWANPP = 243
IF_TYPE_WWANPP2 = 244
# ifdef.h TUNNEL_TYPE: the IPv6 transition tunnels Windows sets up by itself, not a VPN.
# IP-HTTPS (15) is DirectAccess, the corporate network: it stays a VPN like every other tunnel.
TUNNEL_TYPE_6TO4, TUNNEL_TYPE_ISATAP, TUNNEL_TYPE_TEREDO = 11, 13, 14
_TRANSITION_TUNNELS = (TUNNEL_TYPE_6TO4, TUNNEL_TYPE_ISATAP, TUNNEL_TYPE_TEREDO)
IF_OPER_STATUS_UP = 1

# iptypes.h: the address lists are not needed, and skipping them makes the call cheaper.
GAA_FLAG_SKIP_UNICAST, GAA_FLAG_SKIP_ANYCAST, GAA_FLAG_SKIP_MULTICAST, GAA_FLAG_SKIP_DNS_SERVER = 0x1, 0x2, 0x4, 0x8
_GAA_FLAGS = GAA_FLAG_SKIP_UNICAST | GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_MULTICAST | GAA_FLAG_SKIP_DNS_SERVER
_GAA_FIRST_SIZE = 15 * 1024  # Microsoft's advice: start at 15 KB, which fits most machines in one call
_GAA_MAX_SIZE = 1 << 20
_GAA_TRIES = 3  # adapters can appear between the size query and the call; then give up this look

# winhttp.h dwAccessType.
WINHTTP_ACCESS_TYPE_NO_PROXY, WINHTTP_ACCESS_TYPE_NAMED_PROXY = 1, 3
# wininet.h PROXY_TYPE_* flags, as stored in the 9th byte of the DefaultConnectionSettings value.
PROXY_TYPE_PROXY, PROXY_TYPE_AUTO_PROXY_URL, PROXY_TYPE_AUTO_DETECT = 0x2, 0x4, 0x8
_CONNECTION_FLAGS_OFFSET = 8  # after the structure version and the change counter (two DWORDs)
INTERNET_SETTINGS = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings"
INTERNET_SETTINGS_POLICY = r"SOFTWARE\Policies\Microsoft\Windows\CurrentVersion\Internet Settings"
NO_CONSOLE_SESSION = 0xFFFFFFFF  # WTSGetActiveConsoleSessionId between sessions
TOKEN_USER_CLASS = 1  # TOKEN_INFORMATION_CLASS TokenUser

NDIS_IF_MAX_STRING_SIZE = 256
_MAX_ROUTES = 65536  # bounds for what the OS hands back: a corrupt count must not mean a huge read
_MAX_ADAPTERS = 1024
_MAX_CHARS = 32768


class SOCKADDR_IN(ctypes.Structure):
    _fields_ = [("sin_family", _U16), ("sin_port", _U16), ("sin_addr", _U8 * 4), ("sin_zero", _U8 * 8)]


class SOCKADDR_IN6(ctypes.Structure):
    _fields_ = [
        ("sin6_family", _U16),
        ("sin6_port", _U16),
        ("sin6_flowinfo", _U32),
        ("sin6_addr", _U8 * 16),
        ("sin6_scope_id", _U32),
    ]


class SOCKADDR_INET(ctypes.Union):
    _fields_ = [("Ipv4", SOCKADDR_IN), ("Ipv6", SOCKADDR_IN6), ("si_family", _U16)]


class IP_ADDRESS_PREFIX(ctypes.Structure):
    _fields_ = [("Prefix", SOCKADDR_INET), ("PrefixLength", _U8)]


class MIB_IPFORWARD_ROW2(ctypes.Structure):
    _fields_ = [
        ("InterfaceLuid", _U64),
        ("InterfaceIndex", _U32),
        ("DestinationPrefix", IP_ADDRESS_PREFIX),
        ("NextHop", SOCKADDR_INET),
        ("SitePrefixLength", _U8),
        ("ValidLifetime", _U32),
        ("PreferredLifetime", _U32),
        ("Metric", _U32),
        ("Protocol", _U32),
        ("Loopback", _U8),
        ("AutoconfigureAddress", _U8),
        ("Publish", _U8),
        ("Immortal", _U8),
        ("Age", _U32),
        ("Origin", _U32),
    ]


class MIB_IPFORWARD_TABLE2(ctypes.Structure):
    """The header; ``Table`` is ANY_SIZE rows, read at its offset (padding included, as documented)."""

    _fields_ = [("NumEntries", _U32), ("Table", MIB_IPFORWARD_ROW2 * 1)]


class MIB_IPINTERFACE_ROW(ctypes.Structure):
    _fields_ = [
        ("Family", _U16),
        ("InterfaceLuid", _U64),
        ("InterfaceIndex", _U32),
        ("MaxReassemblySize", _U32),
        ("InterfaceIdentifier", _U64),
        ("MinRouterAdvertisementInterval", _U32),
        ("MaxRouterAdvertisementInterval", _U32),
        ("AdvertisingEnabled", _U8),
        ("ForwardingEnabled", _U8),
        ("WeakHostSend", _U8),
        ("WeakHostReceive", _U8),
        ("UseAutomaticMetric", _U8),
        ("UseNeighborUnreachabilityDetection", _U8),
        ("ManagedAddressConfigurationSupported", _U8),
        ("OtherStatefulConfigurationSupported", _U8),
        ("AdvertiseDefaultRoute", _U8),
        ("RouterDiscoveryBehavior", _U32),
        ("DadTransmits", _U32),
        ("BaseReachableTime", _U32),
        ("RetransmitTime", _U32),
        ("PathMtuDiscoveryTimeout", _U32),
        ("LinkLocalAddressBehavior", _U32),
        ("LinkLocalAddressTimeout", _U32),
        ("ZoneIndices", _U32 * 16),
        ("SitePrefixLength", _U32),
        ("Metric", _U32),
        ("NlMtu", _U32),
        ("Connected", _U8),
        ("SupportsWakeUpPatterns", _U8),
        ("SupportsNeighborDiscovery", _U8),
        ("SupportsRouterDiscovery", _U8),
        ("ReachableTime", _U32),
        ("TransmitOffload", _U8),
        ("ReceiveOffload", _U8),
        ("DisableDefaultRoutes", _U8),
    ]


class SOCKET_ADDRESS(ctypes.Structure):
    _fields_ = [("lpSockaddr", _PTR), ("iSockaddrLength", ctypes.c_int32)]


class IP_ADAPTER_ADDRESSES_LH(ctypes.Structure):
    _fields_ = [
        ("Length", _U32),
        ("IfIndex", _U32),
        ("Next", _PTR),
        ("AdapterName", _PTR),
        ("FirstUnicastAddress", _PTR),
        ("FirstAnycastAddress", _PTR),
        ("FirstMulticastAddress", _PTR),
        ("FirstDnsServerAddress", _PTR),
        ("DnsSuffix", _PTR),
        ("Description", _PTR),
        ("FriendlyName", _PTR),
        ("PhysicalAddress", _U8 * 8),
        ("PhysicalAddressLength", _U32),
        ("Flags", _U32),
        ("Mtu", _U32),
        ("IfType", _U32),
        ("OperStatus", _U32),
        ("Ipv6IfIndex", _U32),
        ("ZoneIndices", _U32 * 16),
        ("FirstPrefix", _PTR),
        ("TransmitLinkSpeed", _U64),
        ("ReceiveLinkSpeed", _U64),
        ("FirstWinsServerAddress", _PTR),
        ("FirstGatewayAddress", _PTR),
        ("Ipv4Metric", _U32),
        ("Ipv6Metric", _U32),
        ("Luid", _U64),
        ("Dhcpv4Server", SOCKET_ADDRESS),
        ("CompartmentId", _U32),
        ("NetworkGuid", _U8 * 16),  # a GUID; as bytes at the same offset (it follows a ULONG)
        ("ConnectionType", _U32),
        ("TunnelType", _U32),
        ("Dhcpv6Server", SOCKET_ADDRESS),
        ("Dhcpv6ClientDuid", _U8 * 130),
        ("Dhcpv6ClientDuidLength", _U32),
        ("Dhcpv6Iaid", _U32),
        ("FirstDnsSuffix", _PTR),
    ]


class TOKEN_USER(ctypes.Structure):
    """winnt.h: one SID_AND_ATTRIBUTES (PSID, DWORD); the SID itself follows in the same buffer."""

    _fields_ = [("Sid", _PTR), ("Attributes", _U32)]


class WINHTTP_PROXY_INFO(ctypes.Structure):
    _fields_ = [("dwAccessType", _U32), ("lpszProxy", _PTR), ("lpszProxyBypass", _PTR)]


class WINHTTP_CURRENT_USER_IE_PROXY_CONFIG(ctypes.Structure):
    _fields_ = [
        ("fAutoDetect", ctypes.c_int32),
        ("lpszAutoConfigUrl", _PTR),
        ("lpszProxy", _PTR),
        ("lpszProxyBypass", _PTR),
    ]


_ROWS_OFFSET = MIB_IPFORWARD_TABLE2.Table.offset
_PREFIX_LENGTH_OFFSET = MIB_IPFORWARD_ROW2.DestinationPrefix.offset + IP_ADDRESS_PREFIX.PrefixLength.offset
_TUNNEL_TYPE_END = IP_ADAPTER_ADDRESSES_LH.TunnelType.offset + 4  # the last field read here


class Adapter(NamedTuple):
    """What GetAdaptersAddresses says about one adapter, as far as this module reads it."""

    name: str  # FriendlyName, the name psutil uses
    description: str  # the driver's description, e.g. "PANGP Virtual Ethernet Adapter"
    if_type: int
    tunnel_type: int
    oper_status: int


class _WinApi:
    """iphlpapi, winhttp and kernel32 with their prototypes declared: without argtypes, ctypes would
    pass pointers as 32-bit ints on x64."""

    def __init__(self) -> None:
        iphlpapi = ctypes.WinDLL("iphlpapi", use_last_error=True)  # type: ignore[attr-defined]
        winhttp = ctypes.WinDLL("winhttp", use_last_error=True)  # type: ignore[attr-defined]
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        wtsapi32 = ctypes.WinDLL("wtsapi32", use_last_error=True)  # type: ignore[attr-defined]
        advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined]
        self.GetIpForwardTable2 = _proto(iphlpapi.GetIpForwardTable2, _U32, [_U16, ctypes.POINTER(_PTR)])
        self.FreeMibTable = _proto(iphlpapi.FreeMibTable, None, [_PTR])
        row = ctypes.POINTER(MIB_IPINTERFACE_ROW)
        self.InitializeIpInterfaceEntry = _proto(iphlpapi.InitializeIpInterfaceEntry, None, [row])
        self.GetIpInterfaceEntry = _proto(iphlpapi.GetIpInterfaceEntry, _U32, [row])
        self.ConvertInterfaceLuidToAlias = _proto(
            iphlpapi.ConvertInterfaceLuidToAlias, _U32, [ctypes.POINTER(_U64), ctypes.POINTER(_U16), ctypes.c_size_t]
        )
        self.GetAdaptersAddresses = _proto(
            iphlpapi.GetAdaptersAddresses, _U32, [_U32, _U32, _PTR, _PTR, ctypes.POINTER(_U32)]
        )
        self.WinHttpGetDefaultProxyConfiguration = _proto(
            winhttp.WinHttpGetDefaultProxyConfiguration, ctypes.c_int32, [ctypes.POINTER(WINHTTP_PROXY_INFO)]
        )
        self.WinHttpGetIEProxyConfigForCurrentUser = _proto(
            winhttp.WinHttpGetIEProxyConfigForCurrentUser,
            ctypes.c_int32,
            [ctypes.POINTER(WINHTTP_CURRENT_USER_IE_PROXY_CONFIG)],
        )
        self.GlobalFree = _proto(kernel32.GlobalFree, _PTR, [_PTR])
        self.WTSGetActiveConsoleSessionId = _proto(kernel32.WTSGetActiveConsoleSessionId, _U32, [])
        self.WTSQueryUserToken = _proto(wtsapi32.WTSQueryUserToken, ctypes.c_int32, [_U32, ctypes.POINTER(_PTR)])
        self.GetTokenInformation = _proto(
            advapi32.GetTokenInformation, ctypes.c_int32, [_PTR, _U32, _PTR, _U32, ctypes.POINTER(_U32)]
        )
        self.ConvertSidToStringSidW = _proto(
            advapi32.ConvertSidToStringSidW, ctypes.c_int32, [_PTR, ctypes.POINTER(_PTR)]
        )
        self.LocalFree = _proto(kernel32.LocalFree, _PTR, [_PTR])
        self.CloseHandle = _proto(kernel32.CloseHandle, ctypes.c_int32, [_PTR])

    @staticmethod
    def last_error() -> int:
        return ctypes.get_last_error()  # type: ignore[attr-defined]

    @staticmethod
    def registry(root: str, subkey: str, name: str) -> Any:
        """A value under HKLM or HKEY_USERS ("HKLM"/"HKU"); None if the key or value is missing."""
        if sys.platform != "win32":  # winreg exists on Windows only (and so do its stubs)
            return None
        import winreg

        hive = winreg.HKEY_LOCAL_MACHINE if root == "HKLM" else winreg.HKEY_USERS
        try:
            with winreg.OpenKey(hive, subkey, 0, winreg.KEY_READ) as key:
                return winreg.QueryValueEx(key, name)[0]
        except OSError:
            return None


def _proto(fn: Any, restype: Any, argtypes: list) -> Any:
    fn.restype, fn.argtypes = restype, argtypes
    return fn


_api_lock = threading.Lock()
_api_loaded: _WinApi | None = None


def _load_api() -> _WinApi:
    """The DLLs, loaded once; OSError/AttributeError where there are none (not Windows)."""
    global _api_loaded
    with _api_lock:
        if _api_loaded is None:
            _api_loaded = _WinApi()
        return _api_loaded


def _quiet(empty: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A public reader that answers ``empty`` instead of raising: no DLL, a layout surprise, a bad pointer.

    Known API errors are handled where they occur; this is for what nobody foresaw, logged once.
    """

    def wrap(read: Callable[..., Any]) -> Callable[..., Any]:
        failed = False

        def guarded(api: Any = None) -> Any:
            nonlocal failed
            try:
                return read(api if api is not None else _load_api())
            except Exception:  # the OS boundary: a look at the network never stops the agent
                if not failed:
                    failed = True
                    log.warning("netinfo.windows.%s failed; reporting nothing known", read.__name__, exc_info=True)
                return empty() if callable(empty) else empty

        guarded.__name__, guarded.__doc__ = read.__name__, read.__doc__
        return guarded

    return wrap


# -- default routes ----------------------------------------------------------------------------------


@_quiet(list)
def default_routes(api: Any) -> list[DefaultRoute]:
    """Default routes via a gateway, both families, in table order; metric = route + interface metric."""
    routes = []
    for row in _default_rows(api):
        family = row.DestinationPrefix.Prefix.si_family
        gateway = _next_hop(row)
        if not gateway:
            continue  # on-link default (a PPP or tunnel interface): no first hop to measure
        interface = _interface_metric(api, row.InterfaceLuid, family)
        if interface is None:
            continue
        if_metric, connected = interface
        if not connected:
            continue
        routes.append(DefaultRoute(gateway, _alias(api, row.InterfaceLuid), row.Metric + if_metric))
    return routes


def _default_rows(api: Any) -> list[MIB_IPFORWARD_ROW2]:
    """The rows with a 0-length destination prefix, copied out of the table the OS allocated (freed here).

    The prefix length is checked in the raw bytes first: a VPN can push thousands of routes, and
    only a few defaults are worth a structure each.
    """
    table = _PTR()
    err = api.GetIpForwardTable2(AF_UNSPEC, ctypes.byref(table))
    if err != NO_ERROR:
        log.debug("GetIpForwardTable2 failed: error %d", err)
        return []
    if not table.value:
        return []
    try:
        count = min(_U32.from_address(table.value).value, _MAX_ROUTES)
        raw = ctypes.string_at(table.value + _ROWS_OFFSET, count * ctypes.sizeof(MIB_IPFORWARD_ROW2))
    finally:
        api.FreeMibTable(table)
    size = ctypes.sizeof(MIB_IPFORWARD_ROW2)
    return [
        MIB_IPFORWARD_ROW2.from_buffer_copy(raw, off)
        for off in range(0, count * size, size)
        if raw[off + _PREFIX_LENGTH_OFFSET] == 0
    ]


def _next_hop(row: MIB_IPFORWARD_ROW2) -> str:
    """The gateway as text, "" when unspecified (all zeros) or of an unknown family."""
    hop = row.NextHop
    if hop.si_family == AF_INET:
        addr = bytes(hop.Ipv4.sin_addr)
        return socket.inet_ntoa(addr) if any(addr) else ""
    if hop.si_family == AF_INET6:
        addr = bytes(hop.Ipv6.sin6_addr)
        if not any(addr):
            return ""
        text = socket.inet_ntop(socket.AF_INET6, addr)
        if addr[0] == 0xFE and addr[1] & 0xC0 == 0x80:  # fe80::/10: only meaningful with its zone
            text = f"{text}%{hop.Ipv6.sin6_scope_id or row.InterfaceIndex}"
        return text
    return ""


def _interface_metric(api: Any, luid: int, family: int) -> tuple[int, bool] | None:
    """(interface metric, connected) for one family of one interface; None when the interface is gone.

    Any other failure ranks the route by its own metric rather than losing the gateway.
    """
    row = MIB_IPINTERFACE_ROW()
    api.InitializeIpInterfaceEntry(ctypes.byref(row))
    row.Family, row.InterfaceLuid = family, luid
    err = api.GetIpInterfaceEntry(ctypes.byref(row))
    if err == ERROR_NOT_FOUND:
        return None
    if err != NO_ERROR:
        log.debug("GetIpInterfaceEntry failed: error %d", err)
        return 0, True
    return row.Metric, bool(row.Connected)


def _alias(api: Any, luid: int) -> str:
    """The interface alias ("Wi-Fi", "Ethernet 2"); "" if Windows cannot name it."""
    buf = (_U16 * (NDIS_IF_MAX_STRING_SIZE + 1))()
    err = api.ConvertInterfaceLuidToAlias(ctypes.byref(_U64(luid)), buf, len(buf))
    if err != NO_ERROR:
        log.debug("ConvertInterfaceLuidToAlias failed: error %d", err)
        return ""
    units = list(buf)
    end = units.index(0) if 0 in units else len(units)
    return _utf16(units[:end])


# -- adapters ----------------------------------------------------------------------------------------


def adapter_kind(adapter: Adapter) -> str:
    """One of KINDS for an adapter: IfType where it is unambiguous, then the words, then IfType again."""
    if adapter.if_type == IF_TYPE_SOFTWARE_LOOPBACK:
        return "loopback"
    if adapter.if_type == IF_TYPE_TUNNEL:
        return "other" if adapter.tunnel_type in _TRANSITION_TUNNELS else "vpn"
    if adapter.if_type == IF_TYPE_PPP:
        return "vpn"  # RAS: the built-in IKEv2/SSTP/L2TP VPN client
    if adapter.if_type in (IF_TYPE_WWANPP, IF_TYPE_WWANPP2):
        return "cellular"
    text = f"{adapter.name} {adapter.description}"
    virtual = kind_by_words(text, ("other", "vpn"))
    if virtual:
        return virtual
    if adapter.if_type == IF_TYPE_IEEE80211:
        return "wifi"
    if adapter.if_type == IF_TYPE_ETHERNET_CSMACD:
        return "ethernet"
    return kind_by_words(text) or "other"


@_quiet(dict)
def interface_kinds(api: Any) -> dict[str, str]:
    """Adapter FriendlyName -> kind, for every adapter GetAdaptersAddresses lists."""
    return {a.name: adapter_kind(a) for a in _adapters(api) if a.name}


@_quiet(list)
def vpn_interfaces(api: Any) -> list[str]:
    """VPN adapters whose OperStatus is up: a VPN client's adapter is "media disconnected" until it connects."""
    return sorted(
        a.name for a in _adapters(api) if a.name and a.oper_status == IF_OPER_STATUS_UP and adapter_kind(a) == "vpn"
    )


def _adapters(api: Any) -> list[Adapter]:
    """GetAdaptersAddresses with the documented grow-and-retry on ERROR_BUFFER_OVERFLOW."""
    size = _U32(_GAA_FIRST_SIZE)
    for _ in range(_GAA_TRIES):
        want = min(max(size.value, 1), _GAA_MAX_SIZE)
        buf = (_U8 * want)()
        size.value = want
        err = api.GetAdaptersAddresses(AF_UNSPEC, _GAA_FLAGS, None, ctypes.addressof(buf), ctypes.byref(size))
        if err == NO_ERROR:
            return parse_adapters(bytes(buf), ctypes.addressof(buf))
        if err == ERROR_NO_DATA:
            return []
        if err != ERROR_BUFFER_OVERFLOW:
            log.debug("GetAdaptersAddresses failed: error %d", err)
            return []
        if size.value <= want:  # the API asked for no more than we gave: grow anyway, bounded
            size.value = want * 2
    log.debug("GetAdaptersAddresses: buffer still too small after %d tries", _GAA_TRIES)
    return []


def parse_adapters(raw: bytes, base: int) -> list[Adapter]:
    """The adapter list in ``raw``, a copy of the buffer GetAdaptersAddresses filled at address ``base``.

    The list is linked by absolute pointers into that buffer, strings included; a pointer outside
    it ends the walk (a corrupt list gives what was read so far, never a read of foreign memory).
    """
    adapters: list[Adapter] = []
    size = ctypes.sizeof(IP_ADAPTER_ADDRESSES_LH)
    addr = base if raw else 0
    seen: set[int] = set()
    while addr and len(adapters) < _MAX_ADAPTERS and addr not in seen:
        seen.add(addr)
        off = addr - base
        if off < 0 or off + _TUNNEL_TYPE_END > len(raw):
            break
        chunk = raw[off : off + size]
        entry = IP_ADAPTER_ADDRESSES_LH.from_buffer_copy(chunk.ljust(size, b"\0"))
        if entry.Length < _TUNNEL_TYPE_END:  # an older, shorter layout than the one read here
            break
        adapters.append(
            Adapter(
                _utf16_in(raw, base, entry.FriendlyName),
                _utf16_in(raw, base, entry.Description),
                entry.IfType,
                entry.TunnelType,
                entry.OperStatus,
            )
        )
        addr = entry.Next or 0
    return adapters


def _utf16_in(raw: bytes, base: int, ptr: int | None) -> str:
    """The NUL-terminated UTF-16 string at ``ptr`` inside ``raw`` (which sits at ``base``); "" if outside."""
    if not ptr:
        return ""
    off = ptr - base
    if off < 0 or off >= len(raw):
        return ""
    end = raw.find(b"\0\0", off)
    while end != -1 and (end - off) % 2:
        end = raw.find(b"\0\0", end + 1)
    if end == -1:
        end = len(raw) - (len(raw) - off) % 2
    return raw[off:end].decode("utf-16-le", "replace")


def _utf16(units: list[int]) -> str:
    return b"".join(u.to_bytes(2, "little") for u in units).decode("utf-16-le", "replace")


def _utf16z(ptr: int | None) -> str:
    """A NUL-terminated UTF-16 string the OS allocated (wchar_t is 4 bytes off Windows, so no wstring_at)."""
    if not ptr:
        return ""
    units = ctypes.cast(ptr, ctypes.POINTER(_U16))
    out = []
    for i in range(_MAX_CHARS):
        unit = units[i]
        if unit == 0:
            break
        out.append(unit)
    return _utf16(out)


# -- proxy -------------------------------------------------------------------------------------------


class IeProxyConfig(NamedTuple):
    auto_detect: bool
    auto_config_url: str
    proxy: str
    bypass: str


class WinHttpProxy(NamedTuple):
    access_type: int
    proxy: str
    bypass: str


@_quiet(None)
def system_proxy(api: Any) -> str | None:
    """The HTTPS proxy the desk's apps are told to use: the desk user's settings (or the current
    user's), then the machine's WinHTTP proxy; see ``choose_proxy`` for the order."""
    per_machine = api.registry("HKLM", INTERNET_SETTINGS_POLICY, "ProxySettingsPerUser") == 0
    user = None if per_machine else _desk_user_settings(api)
    return choose_proxy(user if user is not None else _ie_config(api), _winhttp_default(api))


def choose_proxy(ie: IeProxyConfig | None, machine: WinHttpProxy | None) -> str | None:
    """One answer from the user's settings and the machine's.

    A PAC URL first (WinINet tries it before the manual proxy, and it is how enterprises deploy
    proxies), then the user's manual proxy, then the machine's WinHTTP proxy, then auto-detect.
    Auto-detect comes last although WinINet tries it first: it is on by default in every profile
    and usually finds nothing, so an explicit setting says more about where HTTPS really goes.
    """
    if ie is not None:
        if ie.auto_config_url:
            return "pac:" + strip_credentials(ie.auto_config_url)
        manual = https_proxy(ie.proxy, ie.bypass)
        if manual:
            return manual
    if machine is not None and machine.access_type == WINHTTP_ACCESS_TYPE_NAMED_PROXY:
        named = https_proxy(machine.proxy, machine.bypass)
        if named:
            return named
    if ie is not None and ie.auto_detect:
        return "auto-detect"
    return None


def https_proxy(proxy: str, bypass: str = "") -> str | None:
    """The proxy HTTPS goes through, from a WinINet/WinHTTP proxy list, as ``scheme://host:port``.

    The list holds entries separated by ``;`` or spaces: ``host:port`` (every protocol) or
    ``scheme=host:port`` (``http=a:1;https=b:2;socks=c:3``). HTTPS uses its own entry, else the
    one for every protocol, else SOCKS; a list with only ``http=``/``ftp=`` entries sends HTTPS
    direct. A bypass list of ``*`` bypasses every host: direct too. Credentials are removed.
    """
    if not proxy or not proxy.strip():
        return None
    if "*" in _split_list(bypass):
        return None
    by_scheme: dict[str, str] = {}
    every: str | None = None
    for entry in _split_list(proxy):
        scheme, sep, target = entry.partition("=")
        if sep and "://" not in scheme and "@" not in scheme:
            by_scheme.setdefault(scheme.lower(), target)
        elif every is None:
            every = entry
    chosen, scheme = by_scheme.get("https") or every, "http"
    if not chosen and by_scheme.get("socks"):
        chosen, scheme = by_scheme["socks"], "socks"
    if not chosen:
        return None
    return strip_credentials(chosen if "://" in chosen else f"{scheme}://{chosen}")


def _split_list(text: str) -> list[str]:
    return [item for item in re.split(r"[;\s]+", text or "") if item]


def _desk_user_settings(api: Any) -> IeProxyConfig | None:
    """The console user's WinINet settings from their hive; None when nobody is logged on at the
    console, this process may not ask (not LocalSystem), or the hive holds no settings.

    Which settings are on is the flags byte of ``Connections\\DefaultConnectionSettings`` (the
    PROXY_TYPE_* values WinINet documents; the blob around them is not documented, only that byte
    is read). Without the blob, ``ProxyEnable`` and the presence of ``AutoConfigURL`` say it.
    """
    sid = _console_user_sid(api)
    if not sid:
        return None
    key = f"{sid}\\{INTERNET_SETTINGS}"
    blob = api.registry("HKU", key + "\\Connections", "DefaultConnectionSettings")
    enable, server = api.registry("HKU", key, "ProxyEnable"), api.registry("HKU", key, "ProxyServer")
    pac, bypass = api.registry("HKU", key, "AutoConfigURL"), api.registry("HKU", key, "ProxyOverride")
    if isinstance(blob, bytes) and len(blob) > _CONNECTION_FLAGS_OFFSET:
        flags = blob[_CONNECTION_FLAGS_OFFSET]
    elif blob is None and enable is None and pac is None:
        return None  # no settings at all (hive not loaded): let the next source answer
    else:
        flags = (PROXY_TYPE_PROXY if enable == 1 else 0) | (PROXY_TYPE_AUTO_PROXY_URL if pac else 0)
    return IeProxyConfig(
        bool(flags & PROXY_TYPE_AUTO_DETECT),
        pac.strip() if flags & PROXY_TYPE_AUTO_PROXY_URL and isinstance(pac, str) else "",
        server.strip() if flags & PROXY_TYPE_PROXY and isinstance(server, str) else "",
        bypass.strip() if isinstance(bypass, str) else "",
    )


def _console_user_sid(api: Any) -> str | None:
    """The SID (``S-1-5-21-...``) of the user at the console, or None; every handle and string freed."""
    session = api.WTSGetActiveConsoleSessionId()
    if session == NO_CONSOLE_SESSION:
        return None
    token = _PTR()
    if not api.WTSQueryUserToken(session, ctypes.byref(token)):
        log.debug("WTSQueryUserToken failed: error %d", api.last_error())  # 1314 unless LocalSystem
        return None
    try:
        buf = (_U64 * 64)()  # TOKEN_USER + the SID (at most 68 bytes), 8-byte aligned
        needed = _U32()
        if not api.GetTokenInformation(
            token, TOKEN_USER_CLASS, ctypes.addressof(buf), ctypes.sizeof(buf), ctypes.byref(needed)
        ):
            log.debug("GetTokenInformation failed: error %d", api.last_error())
            return None
        text = _PTR()
        if not api.ConvertSidToStringSidW(TOKEN_USER.from_buffer(buf).Sid, ctypes.byref(text)):
            return None
        try:
            return _utf16z(text.value) or None
        finally:
            api.LocalFree(text)
    finally:
        api.CloseHandle(token)


def _ie_config(api: Any) -> IeProxyConfig | None:
    """The current user's Internet settings; None when there are none (ERROR_FILE_NOT_FOUND) or on error."""
    cfg = WINHTTP_CURRENT_USER_IE_PROXY_CONFIG()
    if not api.WinHttpGetIEProxyConfigForCurrentUser(ctypes.byref(cfg)):
        err = api.last_error()
        if err != ERROR_FILE_NOT_FOUND:
            log.debug("WinHttpGetIEProxyConfigForCurrentUser failed: error %d", err)
        return None
    try:
        return IeProxyConfig(
            bool(cfg.fAutoDetect),
            _utf16z(cfg.lpszAutoConfigUrl).strip(),
            _utf16z(cfg.lpszProxy).strip(),
            _utf16z(cfg.lpszProxyBypass).strip(),
        )
    finally:
        _free(api, cfg.lpszAutoConfigUrl, cfg.lpszProxy, cfg.lpszProxyBypass)


def _winhttp_default(api: Any) -> WinHttpProxy | None:
    """The machine's WinHTTP proxy (what a SYSTEM service itself goes through); None on error."""
    info = WINHTTP_PROXY_INFO()
    if not api.WinHttpGetDefaultProxyConfiguration(ctypes.byref(info)):
        log.debug("WinHttpGetDefaultProxyConfiguration failed: error %d", api.last_error())
        return None
    try:
        return WinHttpProxy(info.dwAccessType, _utf16z(info.lpszProxy).strip(), _utf16z(info.lpszProxyBypass).strip())
    finally:
        _free(api, info.lpszProxy, info.lpszProxyBypass)


def _free(api: Any, *pointers: int | None) -> None:
    """The strings WinHTTP allocated are the caller's to free, each with GlobalFree."""
    for ptr in pointers:
        if ptr:
            api.GlobalFree(ptr)
