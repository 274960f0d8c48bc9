"""macOS backend: the routing table from sysctl, the rest from SystemConfiguration, through ctypes.
No subprocess and no PyObjC; import-safe on every OS, tests drive the call sequence through ``api``.
Design notes: docs/agent-internals.md, "agent/netinfo/macos.py".
"""

from __future__ import annotations

import ctypes
import functools
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from .. import corefoundation_macos
from ..corefoundation_macos import CF
from ._model import DefaultRoute, kind_by_name, strip_credentials

__all__ = ["MacApi", "default_routes", "interface_kinds", "parse_route_dump", "system_proxy", "vpn_interfaces"]

log = logging.getLogger(__name__)

_U8, _U16, _U32, _I32 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_int32

# sys/sysctl.h, sys/socket.h (Darwin values: AF_INET6 is 30 there, 10 on Linux).
CTL_NET = 4
PF_ROUTE = 17
NET_RT_FLAGS = 2
AF_INET, AF_LINK, AF_INET6 = 2, 18, 30
ENOMEM = 12
# net/route.h
RTM_VERSION = 5
RTM_GET = 0x4
RTF_UP, RTF_GATEWAY, RTF_HOST, RTF_REJECT = 0x1, 0x2, 0x4, 0x8
RTF_BLACKHOLE = 0x1000
RTF_IFSCOPE = 0x1000000
RTA_DST, RTA_GATEWAY, RTA_NETMASK = 0x1, 0x2, 0x4
RTAX_MAX = 8
# net/if.h
IFF_UP = 0x1

_MAX_TABLE_BYTES = 8 * 1024 * 1024  # a desk's table is a few KiB; a router's full table is not our case
_FETCH_ATTEMPTS = 3
_MAX_RECORDS = 20_000
_MAX_SERVICES = 64
_MAX_IFADDRS = 4096
_SC_TYPES_MAX_AGE_S = 600.0


class RtMetrics(ctypes.Structure):
    """struct rt_metrics (net/route.h): 14 x u_int32_t, 56 bytes."""

    _fields_ = [
        ("rmx_locks", _U32),
        ("rmx_mtu", _U32),
        ("rmx_hopcount", _U32),
        ("rmx_expire", _I32),
        ("rmx_recvpipe", _U32),
        ("rmx_sendpipe", _U32),
        ("rmx_ssthresh", _U32),
        ("rmx_rtt", _U32),
        ("rmx_rttvar", _U32),
        ("rmx_pksent", _U32),
        ("rmx_filler", _U32 * 4),
    ]


class RtMsghdr(ctypes.Structure):
    """struct rt_msghdr (net/route.h): 92 bytes, what NET_RT_DUMP/NET_RT_FLAGS write per route."""

    _fields_ = [
        ("rtm_msglen", _U16),
        ("rtm_version", _U8),
        ("rtm_type", _U8),
        ("rtm_index", _U16),
        ("rtm_flags", ctypes.c_int),
        ("rtm_addrs", ctypes.c_int),
        ("rtm_pid", _I32),
        ("rtm_seq", ctypes.c_int),
        ("rtm_errno", ctypes.c_int),
        ("rtm_use", ctypes.c_int),
        ("rtm_inits", _U32),
        ("rtm_rmx", RtMetrics),
    ]


class SockaddrIn(ctypes.Structure):
    """struct sockaddr_in (netinet/in.h), BSD layout with sin_len first: 16 bytes."""

    _fields_ = [("sin_len", _U8), ("sin_family", _U8), ("sin_port", _U16), ("sin_addr", _U8 * 4), ("sin_zero", _U8 * 8)]


class SockaddrIn6(ctypes.Structure):
    """struct sockaddr_in6 (netinet6/in6.h): 28 bytes."""

    _fields_ = [
        ("sin6_len", _U8),
        ("sin6_family", _U8),
        ("sin6_port", _U16),
        ("sin6_flowinfo", _U32),
        ("sin6_addr", _U8 * 16),
        ("sin6_scope_id", _U32),
    ]


class SockaddrDl(ctypes.Structure):
    """struct sockaddr_dl (net/if_dl.h): 20 bytes minimum (sdl_data grows past 12 when needed)."""

    _fields_ = [
        ("sdl_len", _U8),
        ("sdl_family", _U8),
        ("sdl_index", _U16),
        ("sdl_type", _U8),
        ("sdl_nlen", _U8),
        ("sdl_alen", _U8),
        ("sdl_slen", _U8),
        ("sdl_data", ctypes.c_char * 12),
    ]


class IfAddrs(ctypes.Structure):
    """struct ifaddrs (ifaddrs.h): 56 bytes on 64-bit Darwin; ifa_flags is an unsigned int."""


IfAddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(IfAddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.c_void_p),
    ("ifa_netmask", ctypes.c_void_p),
    ("ifa_dstaddr", ctypes.c_void_p),
    ("ifa_data", ctypes.c_void_p),
]

_HDR = ctypes.sizeof(RtMsghdr)


class Route(NamedTuple):
    """One gateway route of the dump, decoded; ``gateway`` is None when it is not an IP address."""

    family: int
    index: int  # type: ignore[assignment]  # the interface index (a field over tuple.index, as in the C struct)
    flags: int
    default: bool
    gateway: bytes | None


class MacApi:
    """What the backend calls: CoreFoundation/SystemConfiguration, libc, and the if-name helpers."""

    def __init__(
        self,
        cf: CF | None,
        libc: Any,
        if_indextoname: Callable[[int], str] = socket.if_indextoname,
        if_nameindex: Callable[[], list[tuple[int, str]]] = socket.if_nameindex,
    ) -> None:
        self.cf = cf
        self.libc = libc
        self.if_indextoname = if_indextoname
        self.if_nameindex = if_nameindex
        # SC's interface types, kept while the set of interfaces stays the same (see interface_kinds).
        self.sc_types: tuple[frozenset[str], float, list[tuple[str, str]]] | None = None


_lock = threading.Lock()
_api_cache: MacApi | None = None


def _default_api() -> MacApi:
    global _api_cache
    with _lock:
        if _api_cache is None:
            _api_cache = MacApi(corefoundation_macos.load(), _load_libc())
        return _api_cache


def _load_libc() -> Any:
    try:
        return declare_libc(ctypes.CDLL("/usr/lib/libSystem.B.dylib", use_errno=True))
    except (OSError, AttributeError):
        return None


def declare_libc(libc: Any) -> Any:
    """Declare the libc functions used (sysctl, getifaddrs, freeifaddrs) on a loaded library."""
    libc.sysctl.restype = ctypes.c_int
    libc.sysctl.argtypes = [
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_void_p,
        ctypes.c_size_t,
    ]
    return declare_ifaddrs(libc)


def declare_ifaddrs(libc: Any) -> Any:
    """getifaddrs/freeifaddrs: the same prototypes on every Unix (the tests call glibc's for real)."""
    libc.getifaddrs.restype = ctypes.c_int
    libc.getifaddrs.argtypes = [ctypes.POINTER(ctypes.POINTER(IfAddrs))]
    libc.freeifaddrs.restype = None
    libc.freeifaddrs.argtypes = [ctypes.POINTER(IfAddrs)]
    return libc


def _never_raises(empty: Callable[[], Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A public reader answers "nothing known" (logged at debug) instead of raising: an OS call that
    fails on some macOS build must not stop the agent, nor leave the others unread."""

    def wrap(read: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(read)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return read(*args, **kwargs)
            except Exception:  # the OS boundary; see the docstring
                log.debug("netinfo.macos.%s failed", read.__name__, exc_info=True)
                return empty()

        return guarded

    return wrap


# -- default routes -------------------------------------------------------------------------------


@_never_raises(list)
def default_routes(api: MacApi | None = None) -> list[DefaultRoute]:
    """IPv4 then IPv6 default routes via a gateway; ``metric`` is a rank within the family.

    0 is the unscoped default (the one the kernel uses); interface-scoped defaults follow in the
    network service order (1, 2, ...), their scoped twin of the unscoped route left out. macOS has
    no route metric to report instead. configd is asked for the order only when there is a
    second interface with a router.
    """
    api = api or _default_api()
    routes: list[DefaultRoute] = []
    order: list[str] | None = None
    for family in (AF_INET, AF_INET6):
        data = _fetch_table(api.libc, family)
        if not data:
            continue
        unscoped: list[DefaultRoute] = []
        scoped: list[DefaultRoute] = []
        for route in parse_route_dump(data):
            if route.family != family or not route.default or route.gateway is None:
                continue
            try:
                iface = api.if_indextoname(route.index)
            except (OSError, ValueError, OverflowError):
                continue  # the interface went away between the dump and now
            gateway = _gateway_text(route.family, route.gateway, iface)
            if gateway is None:
                continue
            (scoped if route.flags & RTF_IFSCOPE else unscoped).append(DefaultRoute(gateway, iface, 0))
        seen = {(r.gateway, r.interface) for r in unscoped}
        distinct = []
        for r in scoped:  # the scoped twin of the unscoped default, or a repeat, adds nothing
            if (r.gateway, r.interface) not in seen:
                seen.add((r.gateway, r.interface))
                distinct.append(r)
        scoped = distinct
        if scoped and order is None:
            order = _service_order(api.cf)
        rank = {name: i for i, name in enumerate(order or [])}
        scoped.sort(key=lambda r: rank.get(r.interface, len(rank)))  # stable: table order among unknowns
        routes += [r._replace(metric=i) for i, r in enumerate(unscoped + scoped)]
    return routes


def _fetch_table(libc: Any, family: int) -> bytes | None:
    """The NET_RT_FLAGS/RTF_GATEWAY dump for one family: size, then data; again if the table grew."""
    if libc is None:
        return None
    mib = (ctypes.c_int * 6)(CTL_NET, PF_ROUTE, 0, family, NET_RT_FLAGS, RTF_GATEWAY)
    for _ in range(_FETCH_ATTEMPTS):
        size = ctypes.c_size_t(0)
        if libc.sysctl(mib, 6, None, ctypes.pointer(size), None, 0) != 0:
            return None
        if size.value == 0:
            return b""
        if size.value > _MAX_TABLE_BYTES:
            log.debug("routing table of %d bytes is past the bound; not read", size.value)
            return None
        capacity = size.value + size.value // 4 + 512  # room for a few routes added in between
        buf = ctypes.create_string_buffer(capacity)
        size.value = capacity
        if libc.sysctl(mib, 6, ctypes.cast(buf, ctypes.c_void_p), ctypes.pointer(size), None, 0) == 0:
            return buf.raw[: min(size.value, capacity)]
        if ctypes.get_errno() != ENOMEM:
            return None
    return None  # grew faster than we read it, three times: try again at the next look


def parse_route_dump(data: bytes) -> Iterator[Route]:
    """Decode a NET_RT_DUMP/NET_RT_FLAGS buffer record by record.

    A record whose ``rtm_version`` is not 5 or whose type is not RTM_GET is skipped by its
    ``rtm_msglen``; a record running past the end of the buffer (truncated) ends the walk, as does
    a length too short to advance.
    """
    off, count = 0, 0
    while off + 4 <= len(data) and count < _MAX_RECORDS:
        count += 1
        msglen = int.from_bytes(data[off : off + 2], "little")
        if msglen < 4 or off + msglen > len(data):
            return
        record = data[off : off + msglen]
        off += msglen
        if record[2] != RTM_VERSION or msglen < _HDR:
            continue
        hdr = RtMsghdr.from_buffer_copy(record)
        if hdr.rtm_type != RTM_GET:
            continue
        addrs = _sockaddrs(record, hdr.rtm_addrs)
        if addrs is None:
            continue
        flags = hdr.rtm_flags & 0xFFFFFFFF
        dst, gw, mask = addrs.get(RTA_DST), addrs.get(RTA_GATEWAY), addrs.get(RTA_NETMASK)
        family = dst[1] if dst and len(dst) >= 2 else 0
        start = 4 if family == AF_INET else 8  # sin_addr after len/family/port; sin6_addr after flowinfo too
        default = (
            family in (AF_INET, AF_INET6)
            and dst is not None
            and not any(dst[start : start + (4 if family == AF_INET else 16)])
            and (mask is None or not any(mask[2:]))
            and flags & (RTF_UP | RTF_GATEWAY) == (RTF_UP | RTF_GATEWAY)
            and not flags & (RTF_HOST | RTF_REJECT | RTF_BLACKHOLE)
        )
        yield Route(family, hdr.rtm_index, flags, default, _ip_bytes(gw))


def _sockaddrs(record: bytes, rtm_addrs: int) -> dict[int, bytes] | None:
    """The sockaddrs after the header, by RTA bit; each takes ROUNDUP32(sa_len), 4 when sa_len is 0."""
    pos, out = _HDR, {}
    for i in range(RTAX_MAX):
        bit = 1 << i
        if not rtm_addrs & bit:
            continue
        if pos >= len(record):
            return None
        sa_len = record[pos]
        if pos + sa_len > len(record):
            return None
        out[bit] = record[pos : pos + sa_len]
        pos += ((sa_len + 3) & ~3) if sa_len else 4
    return out


def _ip_bytes(sa: bytes | None) -> bytes | None:
    """The gateway's address bytes with the family as first byte, or None for a link-layer gateway."""
    if not sa or len(sa) < 2:
        return None
    if sa[1] == AF_INET and len(sa) >= 8:
        return bytes([AF_INET]) + sa[4:8]
    if sa[1] == AF_INET6 and len(sa) >= 24:
        return bytes([AF_INET6]) + sa[8:24]
    return None


def _gateway_text(family: int, packed: bytes, iface: str) -> str | None:
    """``192.168.1.1``, ``2001:db8::1`` or ``fe80::1%en0`` (the zone is the route's interface).

    The kernel keeps a link-local address's scope inside the address (the KAME convention, bytes
    2-3 of fe80::) and the dump may show it so (``fe80:4::1``); it is cleared before printing.
    """
    if packed[0] != family:
        return None
    addr = packed[1:]
    if family == AF_INET:
        return socket.inet_ntop(socket.AF_INET, addr)
    if addr[0] == 0xFE and addr[1] & 0xC0 == 0x80:  # fe80::/10
        unscoped = addr[:2] + bytes(2) + addr[4:]
        return f"{socket.inet_ntop(socket.AF_INET6, unscoped)}%{iface}"
    return socket.inet_ntop(socket.AF_INET6, addr)


# -- interface kinds ------------------------------------------------------------------------------

# SCNetworkInterface.h kSCNetworkInterfaceType* values.
_SC_KINDS = {
    "IEEE80211": "wifi",
    "Ethernet": "ethernet",
    "WWAN": "cellular",
    "PPP": "vpn",
    "IPSec": "vpn",
    "L2TP": "vpn",
    "PPTP": "vpn",
    "VPN": "vpn",
    "Bond": "ethernet",
    "VLAN": "ethernet",
    "Bridge": "other",
    "Bluetooth": "other",
    "FireWire": "other",
    "Modem": "other",
    "Serial": "other",
    "IrDA": "other",
    "6to4": "other",
    "IPv4": "other",
}


@_never_raises(dict)
def interface_kinds(api: MacApi | None = None) -> dict[str, str]:
    """Every interface (``if_nameindex``) and every one SystemConfiguration lists -> one of KINDS."""
    api = api or _default_api()
    kinds: dict[str, str] = {}
    try:
        kinds = {name: kind_by_name(name) for _, name in api.if_nameindex()}
    except OSError:
        pass
    for name, sc_type in _sc_types(api, frozenset(kinds)):
        kinds[name] = "loopback" if name.startswith("lo") else _SC_KINDS.get(sc_type, "other")
    return kinds


def _sc_types(api: MacApi, names: frozenset[str]) -> list[tuple[str, str]]:
    """SCNetworkInterfaceCopyAll's answer, asked again only when the interfaces change or it is old.

    The copy walks IOKit and the network preferences: too much for every device look (twice per
    look, with vpn_interfaces). A BSD name keeps its hardware type while it exists; a plugged-in
    adapter or a new tunnel changes the set of names, which refreshes the answer.
    """
    now = time.monotonic()
    cached = api.sc_types
    if cached is not None and cached[0] == names and now - cached[1] < _SC_TYPES_MAX_AGE_S:
        return cached[2]
    found = _sc_interfaces(api.cf)
    api.sc_types = (names, now, found)
    return found


def _sc_interfaces(cf: CF | None) -> list[tuple[str, str]]:
    """(BSD name, SC type) for every interface SystemConfiguration knows; none when it cannot say."""
    if cf is None:
        return []
    out = []
    with cf.owned(cf.sc.SCNetworkInterfaceCopyAll()) as array:
        if not array:
            return []
        count = min(max(int(cf.cf.CFArrayGetCount(array)), 0), corefoundation_macos.MAX_ITEMS)
        for i in range(count):
            iface = cf.cf.CFArrayGetValueAtIndex(array, i)  # Get rule: the array owns it
            if not iface:
                continue
            name = cf.read_string(cf.sc.SCNetworkInterfaceGetBSDName(iface))
            sc_type = cf.read_string(cf.sc.SCNetworkInterfaceGetInterfaceType(iface))
            if name:  # interfaces without a BSD name (a PPP over a modem not yet dialled) are no device
                out.append((name, sc_type or ""))
    return out


# -- VPN ------------------------------------------------------------------------------------------


@_never_raises(list)
def vpn_interfaces(api: MacApi | None = None) -> list[str]:
    """VPN-kind interfaces that are up (IFF_UP) and in use, sorted.

    In use means any of: it holds an address that is not link-local (getifaddrs); it is the
    primary interface (``State:/Network/Global/IPv4`` or ``IPv6`` PrimaryInterface); a network
    service names it (``State:/Network/Service/<id>/IPv4`` or ``IPv6`` InterfaceName). The system
    utuns (utun0-3: iCloud Private Relay, Continuity) are up with fe80:: addresses only and no
    service, so they do not count; configd is asked only when such an undecided tunnel exists.
    """
    api = api or _default_api()
    ifaces = _interface_addresses(api.libc)
    kinds = interface_kinds(api)
    candidates = {
        name: addrs
        for name, (flags, addrs) in ifaces.items()
        if flags & IFF_UP and kinds.get(name, kind_by_name(name)) == "vpn"
    }
    in_use = {name for name, addrs in candidates.items() if any(_routable(a) for a in addrs)}
    undecided = set(candidates) - in_use
    if undecided and api.cf is not None:
        in_use |= undecided & _interfaces_in_use(api.cf)
    return sorted(in_use)


def _routable(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (addr.is_link_local or addr.is_loopback or addr.is_unspecified)


def _interface_addresses(libc: Any) -> dict[str, tuple[int, list[Any]]]:
    """name -> (flags, IP addresses) from getifaddrs; the list is freed before returning."""
    out: dict[str, tuple[int, list[Any]]] = {}
    if libc is None:
        return out
    head = ctypes.POINTER(IfAddrs)()
    if libc.getifaddrs(ctypes.pointer(head)) != 0:
        return out
    try:
        node, n = head, 0
        while node and n < _MAX_IFADDRS:
            n += 1
            entry = node.contents
            name = (entry.ifa_name or b"").decode("utf-8", "replace")
            _, addrs = out.setdefault(name, (entry.ifa_flags, []))
            addr = _sockaddr_ip(entry.ifa_addr)
            if addr is not None:
                addrs.append(addr)
            node = entry.ifa_next
    finally:
        libc.freeifaddrs(head)
    return out


def _sockaddr_ip(ptr: int | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address in a Darwin sockaddr (sa_len, sa_family bytes first), None for other families."""
    if not ptr:
        return None
    sa_len, family = ctypes.string_at(ptr, 2)
    if family == AF_INET and sa_len >= 8:
        return ipaddress.IPv4Address(ctypes.string_at(ptr + 4, 4))
    if family == AF_INET6 and sa_len >= 24:
        return ipaddress.IPv6Address(ctypes.string_at(ptr + 8, 16))
    return None


def _interfaces_in_use(cf: CF) -> set[str]:
    """The primary interfaces (IPv4, IPv6) and those a network service uses, in one configd session."""
    with cf.store() as store:
        if not store:
            return set()
        out = set(_service_interfaces(cf, store).values())
        for family in ("IPv4", "IPv6"):
            value = cf.copy_store_value(store, f"State:/Network/Global/{family}")
            name = value.get("PrimaryInterface") if isinstance(value, dict) else None
            if isinstance(name, str) and name:
                out.add(name)
        return out


def _service_order(cf: CF | None) -> list[str]:
    """Interfaces of the active services in the user's service order (System Settings > Network)."""
    if cf is None:
        return []
    with cf.store() as store:
        if not store:
            return []
        by_service = _service_interfaces(cf, store)
        setup = cf.copy_store_value(store, "Setup:/Network/Global/IPv4")
    order = setup.get("ServiceOrder") if isinstance(setup, dict) else None
    names = [by_service[s] for s in (order if isinstance(order, list) else []) if s in by_service]
    return list(dict.fromkeys(names + sorted(set(by_service.values()) - set(names))))


def _service_interfaces(cf: CF, store: int) -> dict[str, str]:
    """Service id -> the interface its IPv4 (else IPv6) state names, for the active services."""
    by_service: dict[str, str] = {}
    for key in sorted(cf.copy_store_keys(store, "State:/Network/Service/[^/]+/IPv[46]"))[:_MAX_SERVICES]:
        value = cf.copy_store_value(store, key)
        name = value.get("InterfaceName") if isinstance(value, dict) else None
        if isinstance(name, str) and name:
            by_service.setdefault(key.split("/")[3], name)
    return by_service


# -- proxy ----------------------------------------------------------------------------------------


@_never_raises(lambda: None)
def system_proxy(api: MacApi | None = None) -> str | None:
    """The proxy CFNetwork hands to apps: HTTPS proxy, else PAC, else WPAD; None for direct."""
    api = api or _default_api()
    cf = api.cf
    if cf is None:
        return None
    with cf.owned(cf.sc.SCDynamicStoreCopyProxies(None)) as ref:
        proxies = cf.to_python(ref)
    if not isinstance(proxies, dict):
        return None
    host = proxies.get("HTTPSProxy")
    if _enabled(proxies.get("HTTPSEnable")) and isinstance(host, str) and host.strip():
        return _proxy_url(host.strip(), proxies.get("HTTPSPort"))
    pac = proxies.get("ProxyAutoConfigURLString")
    if _enabled(proxies.get("ProxyAutoConfigEnable")) and isinstance(pac, str) and pac.strip():
        return "pac:" + strip_credentials(pac.strip())
    if _enabled(proxies.get("ProxyAutoDiscoveryEnable")):
        return "auto-detect"
    return None


def _enabled(value: Any) -> bool:
    """configd stores these flags as CFNumber 0/1 (sometimes CFBoolean)."""
    return isinstance(value, (int, float)) and bool(value)


def _proxy_url(host: str, port: Any) -> str:
    host = host.rsplit("@", 1)[-1]  # a host field holding "user:pass@host" loses the credentials
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        return f"http://{host}:{port}"
    return f"http://{host}"
