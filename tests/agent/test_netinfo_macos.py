"""macOS netinfo backend, proven on Linux: layouts against xnu's headers, a routing dump laid out byte
by byte as xnu's sysctl_dumpentry writes it (through a fake sysctl), getifaddrs lists built in memory,
and a fake CoreFoundation/SystemConfiguration that checks every Copy/Create result is released.
"""

from __future__ import annotations

import ctypes
import itertools
import socket
import struct
import sys
import types
from typing import Any

import pytest

from cxpulse.agent import corefoundation_macos as cfm
from cxpulse.agent.corefoundation_macos import CF
from cxpulse.agent.netinfo import macos
from cxpulse.agent.netinfo._model import DefaultRoute
from cxpulse.agent.netinfo.macos import MacApi
from tests.agent.fake_corefoundation import FakeFrameworks

pytestmark = pytest.mark.timeout(20)

AF_INET, AF_LINK, AF_INET6 = 2, 18, 30  # Darwin sys/socket.h
RTF_UP, RTF_GATEWAY, RTF_HOST, RTF_STATIC, RTF_REJECT = 0x1, 0x2, 0x4, 0x800, 0x8
RTF_PRCLONING, RTF_IFSCOPE, RTF_GLOBAL = 0x10000, 0x1000000, 0x40000000
RTA_DST, RTA_GATEWAY, RTA_NETMASK, RTA_IFA = 0x1, 0x2, 0x4, 0x20
ENOMEM, EPERM = 12, 1
INDEXES = {1: "lo0", 4: "en0", 9: "en7", 10: "en8", 17: "utun4"}


# -- layouts ---------------------------------------------------------------------------------------
# xnu bsd/net/route.h: struct rt_metrics is 14 u_int32_t (56 bytes); struct rt_msghdr is
# u_short msglen, u_char version, u_char type, u_short index (2 bytes padding), 7 x int/u_int32
# (flags, addrs, pid, seq, errno, use, inits), then rt_metrics: 92 bytes, 4-aligned, the same on
# x86_64 and arm64 since rt_metrics switched from u_long to u_int32_t.


def _offsets(struct_type: type[ctypes.Structure]) -> dict[str, int]:
    return {name: getattr(struct_type, name).offset for name, *_ in struct_type._fields_}


def test_rt_metrics_is_56_bytes() -> None:
    assert ctypes.sizeof(macos.RtMetrics) == 56
    assert _offsets(macos.RtMetrics)["rmx_filler"] == 40


def test_rt_msghdr_is_92_bytes_with_the_documented_offsets() -> None:
    assert ctypes.sizeof(macos.RtMsghdr) == 92
    assert _offsets(macos.RtMsghdr) == {
        "rtm_msglen": 0,
        "rtm_version": 2,
        "rtm_type": 3,
        "rtm_index": 4,
        "rtm_flags": 8,
        "rtm_addrs": 12,
        "rtm_pid": 16,
        "rtm_seq": 20,
        "rtm_errno": 24,
        "rtm_use": 28,
        "rtm_inits": 32,
        "rtm_rmx": 36,
    }


def test_sockaddr_layouts_are_the_bsd_ones() -> None:
    # netinet/in.h sockaddr_in: sin_len, sin_family (u_int8 each), port, addr, 8 zero bytes = 16.
    assert ctypes.sizeof(macos.SockaddrIn) == 16
    assert _offsets(macos.SockaddrIn)["sin_addr"] == 4
    # netinet6/in6.h sockaddr_in6: len, family, port, flowinfo, 16-byte addr, scope_id = 28.
    assert ctypes.sizeof(macos.SockaddrIn6) == 28
    assert _offsets(macos.SockaddrIn6)["sin6_addr"] == 8
    assert _offsets(macos.SockaddrIn6)["sin6_scope_id"] == 24
    # net/if_dl.h sockaddr_dl: len, family, u_short index, type, nlen, alen, slen, sdl_data[12] = 20.
    assert ctypes.sizeof(macos.SockaddrDl) == 20
    assert _offsets(macos.SockaddrDl)["sdl_data"] == 8


def test_ifaddrs_layout_is_darwin_64_bit() -> None:
    # ifaddrs.h: next, name, unsigned int flags (+4 padding), addr, netmask, dstaddr, data = 56.
    assert ctypes.sizeof(ctypes.c_void_p) == 8, "the documented layout is the 64-bit one"
    assert ctypes.sizeof(macos.IfAddrs) == 56
    assert _offsets(macos.IfAddrs) == {
        "ifa_next": 0,
        "ifa_name": 8,
        "ifa_flags": 16,
        "ifa_addr": 24,
        "ifa_netmask": 32,
        "ifa_dstaddr": 40,
        "ifa_data": 48,
    }


# -- a routing dump, byte by byte --------------------------------------------------------------------


def sin(addr: str) -> bytes:
    return struct.pack("<BBH4s8x", 16, AF_INET, 0, socket.inet_aton(addr))


def sin6(addr: str, embedded_scope: int = 0) -> bytes:
    packed = bytearray(socket.inet_pton(socket.AF_INET6, addr))
    if embedded_scope:  # the KAME convention: the interface index in bytes 2-3 of a link-local address
        packed[2:4] = embedded_scope.to_bytes(2, "big")
    return struct.pack("<BBHI16sI", 28, AF_INET6, 0, 0, bytes(packed), 0)


def compact_mask(*mask_bytes: int, family: int = AF_INET) -> bytes:
    """A radix-tree netmask: sa_len counts only up to the last non-zero byte (0 for /0)."""
    if not mask_bytes:
        return b"\x00"
    return bytes([4 + len(mask_bytes), family, 0, 0, *mask_bytes])


def sdl(index: int) -> bytes:
    return struct.pack("<BBHBBBB12x", 20, AF_LINK, index, 6, 0, 0, 0)


def record(index: int, flags: int, sockaddrs: dict[int, bytes], version: int = 5, rtm_type: int = 4) -> bytes:
    """One rt_msghdr + its sockaddrs in RTA order, each padded to 4 bytes as ROUNDUP32 (0 -> 4)."""
    body = b""
    for bit in sorted(sockaddrs):
        sa = sockaddrs[bit]
        padded = (len(sa) + 3) & ~3 if sa[0] else 4
        body += sa[: sa[0]] + bytes(padded - min(sa[0], len(sa)))
    addrs = sum(sockaddrs)
    msglen = 92 + len(body)
    header = struct.pack("<HBBH2xiiiiiiI", msglen, version, rtm_type, index, flags, addrs, 0, 0, 0, 7, 0)
    return header + bytes(56) + body  # rtm_rmx: all zero, as for a route without locked metrics


UG = RTF_UP | RTF_GATEWAY | RTF_STATIC | RTF_PRCLONING | RTF_GLOBAL


def ipv4_dump() -> bytes:
    return (
        b"".join(
            [
                # default via 192.168.1.1 on en0, unscoped: the route the kernel uses ("UGScg en0").
                record(
                    4,
                    UG,
                    {
                        RTA_DST: sin("0.0.0.0"),
                        RTA_GATEWAY: sin("192.168.1.1"),
                        RTA_NETMASK: compact_mask(),
                        RTA_IFA: sin("192.168.1.20"),
                    },
                ),
                # interface-scoped defaults ("UGScIg"): en7 (a cable), en8 (iPhone tethering), en0's twin.
                record(
                    9,
                    UG | RTF_IFSCOPE,
                    {
                        RTA_DST: sin("0.0.0.0"),
                        RTA_GATEWAY: sin("10.0.0.1"),
                        RTA_NETMASK: compact_mask(),
                        RTA_IFA: sin("10.0.0.5"),
                    },
                ),
                record(
                    10,
                    UG | RTF_IFSCOPE,
                    {
                        RTA_DST: sin("0.0.0.0"),
                        RTA_GATEWAY: sin("172.20.10.1"),
                        RTA_NETMASK: compact_mask(),
                        RTA_IFA: sin("172.20.10.2"),
                    },
                ),
                record(
                    4,
                    UG | RTF_IFSCOPE,
                    {
                        RTA_DST: sin("0.0.0.0"),
                        RTA_GATEWAY: sin("192.168.1.1"),
                        RTA_NETMASK: compact_mask(),
                        RTA_IFA: sin("192.168.1.20"),
                    },
                ),
                # a host route via the same gateway ("UGHS"): not a default.
                record(
                    4,
                    RTF_UP | RTF_GATEWAY | RTF_HOST | RTF_STATIC,
                    {RTA_DST: sin("203.0.113.5"), RTA_GATEWAY: sin("192.168.1.1"), RTA_IFA: sin("192.168.1.20")},
                ),
                # a /24 via a gateway: the netmask makes it not a default.
                record(
                    4,
                    UG,
                    {
                        RTA_DST: sin("10.8.0.0"),
                        RTA_GATEWAY: sin("192.168.1.1"),
                        RTA_NETMASK: compact_mask(255, 255, 255),
                    },
                ),
                # OpenVPN's "def1" half of the address space, 0.0.0.0/1: destination 0.0.0.0 but not a default.
                record(
                    17, UG, {RTA_DST: sin("0.0.0.0"), RTA_GATEWAY: sin("100.64.0.1"), RTA_NETMASK: compact_mask(128)}
                ),
                # a rejecting default (a "blocked" route some VPN kill switches add).
                record(
                    17,
                    UG | RTF_REJECT | RTF_IFSCOPE,
                    {RTA_DST: sin("0.0.0.0"), RTA_GATEWAY: sin("100.64.0.1"), RTA_NETMASK: compact_mask()},
                ),
                # a record from another RTM_VERSION: skipped by its length, however default it looks.
                record(
                    4,
                    UG,
                    {RTA_DST: sin("0.0.0.0"), RTA_GATEWAY: sin("6.6.6.6"), RTA_NETMASK: compact_mask()},
                    version=4,
                ),
                # a default on an interface that has gone (index unknown to if_indextoname).
                record(
                    33,
                    UG | RTF_IFSCOPE,
                    {RTA_DST: sin("0.0.0.0"), RTA_GATEWAY: sin("192.0.2.1"), RTA_NETMASK: compact_mask()},
                ),
            ]
        )
        + record(9, UG, {RTA_DST: sin("0.0.0.0"), RTA_GATEWAY: sin("7.7.7.7"), RTA_NETMASK: compact_mask()})[:100]
    )
    # ^ the last record is cut short: its msglen runs past the buffer, so the walk ends there.


def ipv6_dump() -> bytes:
    return b"".join(
        [
            # default via the router's link-local address, scope embedded (fe80:4::1), on en0.
            record(
                4,
                UG,
                {
                    RTA_DST: sin6("::"),
                    RTA_GATEWAY: sin6("fe80::1", embedded_scope=4),
                    RTA_NETMASK: compact_mask(family=AF_INET6),
                    RTA_IFA: sin6("2001:db8:1::20"),
                },
            ),
            # a scoped default on en7 via a global address.
            record(
                9,
                UG | RTF_IFSCOPE,
                {RTA_DST: sin6("::"), RTA_GATEWAY: sin6("2001:db8:7::1"), RTA_NETMASK: compact_mask(family=AF_INET6)},
            ),
            # an on-link default through a tunnel has a link-layer gateway: no hop to measure.
            record(17, UG, {RTA_DST: sin6("::"), RTA_GATEWAY: sdl(17), RTA_NETMASK: compact_mask(family=AF_INET6)}),
        ]
    )


class FakeLibc:
    """sysctl and getifaddrs as libSystem answers them."""

    def __init__(
        self,
        tables: dict[int, bytes],
        grow: list[bytes] | None = None,
        size_error: int = 0,
        ifaddrs: list[tuple[str, int, bytes | None]] | None = None,
    ) -> None:
        self.tables = dict(tables)
        self.grow = list(grow or [])  # IPv4 tables that replace the current one after each size query
        self.size_error = size_error
        self.calls: list[tuple[int, str]] = []
        self.ifaddrs = ifaddrs or []
        self.freed: list[int] = []
        self._keep: list[Any] = []

    def sysctl(self, mib: Any, namelen: int, oldp: Any, oldlenp: Any, newp: Any, newlen: int) -> int:
        assert namelen == 6 and list(mib) in ([4, 17, 0, AF_INET, 2, RTF_GATEWAY], [4, 17, 0, AF_INET6, 2, RTF_GATEWAY])
        assert newp is None and newlen == 0
        family = mib[3]
        table = self.tables.get(family, b"")
        if oldp is None:
            self.calls.append((family, "size"))
            if self.size_error:
                ctypes.set_errno(self.size_error)
                return -1
            oldlenp[0] = len(table)
            if family == AF_INET and self.grow:
                self.tables[family] = self.grow.pop(0)  # routes added between the two calls
            return 0
        self.calls.append((family, "data"))
        if len(table) > oldlenp[0]:
            ctypes.set_errno(ENOMEM)
            return -1
        ctypes.memmove(oldp, table, len(table))
        oldlenp[0] = len(table)
        return 0

    def getifaddrs(self, out: Any) -> int:
        nodes = []
        for name, flags, sockaddr in self.ifaddrs:
            node = macos.IfAddrs()
            node.ifa_name = name.encode()
            node.ifa_flags = flags
            if sockaddr is not None:
                buf = ctypes.create_string_buffer(sockaddr, len(sockaddr))
                self._keep.append(buf)
                node.ifa_addr = ctypes.addressof(buf)
            nodes.append(node)
        for a, b in itertools.pairwise(nodes):
            a.ifa_next = ctypes.pointer(b)
        self._keep.append(nodes)
        out[0] = ctypes.pointer(nodes[0]) if nodes else ctypes.POINTER(macos.IfAddrs)()
        return 0

    def freeifaddrs(self, head: Any) -> None:
        self.freed.append(ctypes.addressof(head.contents) if head else 0)


def _ifname(index: int) -> str:
    if index not in INDEXES:
        raise OSError(6, "Device not configured")
    return INDEXES[index]


SERVICES = {  # what configd holds on a Mac with Wi-Fi (en0), a cable (en7) and a tethered iPhone (en8)
    "Setup:/Network/Global/IPv4": {"ServiceOrder": ["S-WIFI", "S-IPHONE", "S-CABLE"]},
    "State:/Network/Global/IPv4": {"PrimaryInterface": "en0", "PrimaryService": "S-WIFI", "Router": "192.168.1.1"},
    "State:/Network/Service/S-WIFI/IPv4": {"InterfaceName": "en0", "Addresses": ["192.168.1.20"]},
    "State:/Network/Service/S-CABLE/IPv4": {"InterfaceName": "en7", "Addresses": ["10.0.0.5"]},
    "State:/Network/Service/S-IPHONE/IPv4": {"InterfaceName": "en8", "Addresses": ["172.20.10.2"]},
}


def _api(fake: FakeFrameworks | None, libc: FakeLibc | None, names: list[str] | None = None) -> MacApi:
    cf = CF(fake, fake) if fake is not None else None
    listed = list(INDEXES.items()) if names is None else list(enumerate(names, 1))
    return MacApi(cf, libc, if_indextoname=_ifname, if_nameindex=lambda: listed)


def test_default_routes_from_a_dump_laid_out_as_xnu_writes_it() -> None:
    fake = FakeFrameworks(store=SERVICES)
    libc = FakeLibc({AF_INET: ipv4_dump(), AF_INET6: ipv6_dump()})
    routes = macos.default_routes(_api(fake, libc))
    assert routes == [
        DefaultRoute("192.168.1.1", "en0", 0),  # unscoped first; its scoped twin is gone
        DefaultRoute("172.20.10.1", "en8", 1),  # then the service order (iPhone before the cable),
        DefaultRoute("10.0.0.1", "en7", 2),  # not the table order
        DefaultRoute("fe80::1%en0", "en0", 0),  # the embedded scope cleared, the zone is the interface
        DefaultRoute("2001:db8:7::1", "en7", 1),
    ]
    assert libc.calls == [(AF_INET, "size"), (AF_INET, "data"), (AF_INET6, "size"), (AF_INET6, "data")]
    assert fake.leaks() == [] and fake.errors == []


def test_scoped_defaults_keep_table_order_when_configd_says_nothing() -> None:
    libc = FakeLibc({AF_INET: ipv4_dump()})
    routes = macos.default_routes(_api(None, libc))
    assert [r.interface for r in routes] == ["en0", "en7", "en8"]
    assert [r.metric for r in routes] == [0, 1, 2]


def test_the_dump_walk_stops_at_a_truncated_record_and_skips_other_versions() -> None:
    parsed = list(macos.parse_route_dump(ipv4_dump()))
    assert len(parsed) == 9  # ten whole records, one of another version; the cut one is not read
    assert all(r.gateway != bytes([AF_INET]) + socket.inet_aton("6.6.6.6") for r in parsed)
    assert all(r.gateway != bytes([AF_INET]) + socket.inet_aton("7.7.7.7") for r in parsed)
    assert [r.default for r in parsed] == [True, True, True, True, False, False, False, False, True]


def test_a_zero_length_sockaddr_takes_four_bytes() -> None:
    # /0 netmask with sa_len 0 followed by an IFA: if the walk took 0 bytes for it, the IFA would
    # be read at the wrong place and the gateway would still be right, so check the IFA position too.
    rec = record(
        4,
        UG,
        {
            RTA_DST: sin("0.0.0.0"),
            RTA_GATEWAY: sin("192.168.1.1"),
            RTA_NETMASK: compact_mask(),
            RTA_IFA: sin("192.168.1.20"),
        },
    )
    assert len(rec) == 92 + 16 + 16 + 4 + 16
    addrs = macos._sockaddrs(rec, RTA_DST | RTA_GATEWAY | RTA_NETMASK | RTA_IFA)
    assert addrs is not None and addrs[RTA_NETMASK] == b""
    assert addrs[RTA_IFA][4:8] == socket.inet_aton("192.168.1.20")


def test_a_table_that_grows_between_the_two_calls_is_read_again() -> None:
    small = record(4, UG, {RTA_DST: sin("0.0.0.0"), RTA_GATEWAY: sin("192.168.1.1"), RTA_NETMASK: compact_mask()})
    grown = small + b"".join(
        record(4, RTF_UP | RTF_GATEWAY | RTF_HOST, {RTA_DST: sin(f"198.51.100.{i}"), RTA_GATEWAY: sin("192.168.1.1")})
        for i in range(20)
    )
    libc = FakeLibc({AF_INET: small}, grow=[grown])
    assert macos.default_routes(_api(None, libc)) == [DefaultRoute("192.168.1.1", "en0", 0)]
    assert libc.calls[:4] == [(AF_INET, "size"), (AF_INET, "data"), (AF_INET, "size"), (AF_INET, "data")]


def test_a_table_that_keeps_growing_gives_up_after_three_tries() -> None:
    small = record(4, UG, {RTA_DST: sin("0.0.0.0"), RTA_GATEWAY: sin("192.168.1.1"), RTA_NETMASK: compact_mask()})
    big = small * 40
    libc = FakeLibc({AF_INET: small}, grow=[big, big * 2, big * 4, big * 8])
    assert macos.default_routes(_api(None, libc)) == []
    assert [c for c in libc.calls if c[0] == AF_INET] == [(AF_INET, "size"), (AF_INET, "data")] * 3


def test_a_failing_sysctl_or_no_libc_is_no_gateway() -> None:
    assert macos.default_routes(_api(None, FakeLibc({AF_INET: ipv4_dump()}, size_error=EPERM))) == []
    assert macos.default_routes(_api(None, None)) == []


def test_garbage_in_the_dump_never_raises() -> None:
    for data in (b"\xff" * 7, bytes(200), b"\x5c\x00\x05\x04" + b"\xff" * 200, ipv4_dump()[:95]):
        libc = FakeLibc({AF_INET: data, AF_INET6: data})
        assert macos.default_routes(_api(None, libc)) == []


# -- interface kinds --------------------------------------------------------------------------------

INTERFACES = [
    ("en0", "IEEE80211"),
    ("en7", "Ethernet"),
    ("en8", "Ethernet"),
    ("bridge0", "Bridge"),
    ("en1", "Ethernet"),
    ("pdp_ip0", "WWAN"),
    ("ppp0", "PPP"),
    ("ipsec0", "IPSec"),
    (None, "PPP"),
]


def test_interface_kinds_from_systemconfiguration_then_names() -> None:
    fake = FakeFrameworks(interfaces=INTERFACES)
    names = [
        "lo0",
        "gif0",
        "stf0",
        "en0",
        "en7",
        "en8",
        "en1",
        "bridge0",
        "awdl0",
        "llw0",
        "utun0",
        "utun4",
        "pdp_ip0",
        "ipsec0",
        "anpi0",
    ]
    kinds = macos.interface_kinds(_api(fake, None, names))
    assert kinds == {
        "lo0": "loopback",
        "gif0": "other",
        "stf0": "other",
        "en0": "wifi",
        "en7": "ethernet",
        "en8": "ethernet",
        "en1": "ethernet",
        "bridge0": "other",
        "awdl0": "other",
        "llw0": "other",
        "utun0": "vpn",
        "utun4": "vpn",
        "pdp_ip0": "cellular",
        "ipsec0": "vpn",
        "anpi0": "other",
        "ppp0": "vpn",
    }
    assert fake.leaks() == [] and fake.errors == []


def test_interface_types_are_asked_again_only_when_the_interfaces_change() -> None:
    fake = FakeFrameworks(interfaces=[("en0", "IEEE80211")])
    names = ["lo0", "en0"]
    api = MacApi(CF(fake, fake), None, if_indextoname=_ifname, if_nameindex=lambda: list(enumerate(names, 1)))
    for _ in range(3):
        assert macos.interface_kinds(api) == {"lo0": "loopback", "en0": "wifi"}
    assert fake.calls.count("SCNetworkInterfaceCopyAll") == 1
    names.append("en8")  # an iPhone plugged in for tethering
    fake.interfaces.append(("en8", "Ethernet"))
    assert macos.interface_kinds(api)["en8"] == "ethernet"
    assert fake.calls.count("SCNetworkInterfaceCopyAll") == 2
    assert fake.leaks() == [] and fake.errors == []


def test_interface_kinds_without_systemconfiguration_fall_back_to_names() -> None:
    kinds = macos.interface_kinds(_api(None, None, ["lo0", "en0", "utun3"]))
    assert kinds == {"lo0": "loopback", "en0": "other", "utun3": "vpn"}


# -- VPN --------------------------------------------------------------------------------------------

IFF_UP, IFF_RUNNING = 0x1, 0x40


def ifaddrs_of_a_mac() -> list[tuple[str, int, bytes | None]]:
    up = IFF_UP | IFF_RUNNING
    return [
        ("lo0", up, sin("127.0.0.1")),
        ("en0", up, sdl(4)),
        ("en0", up, sin("192.168.1.20")),
        ("en0", up, sin6("fe80::1c2d:3e4f:5a6b:7c8d")),
        # the system's utuns: up, link-local only, no service: Private Relay, Continuity, ...
        ("utun0", up, sin6("fe80::a")),
        ("utun1", up, sin6("fe80::b")),
        ("utun2", up, sin6("fe80::c")),
        ("utun3", up, None),
        ("utun4", up, sin("100.101.102.103")),  # a WireGuard/Tailscale tunnel with its own address
        ("utun5", up, sin6("fe80::e")),  # a Network Extension VPN: only link-local, but a service uses it
        ("utun6", up, sin6("fe80::f")),  # the primary interface (full-tunnel VPN)
        ("utun7", IFF_RUNNING, sin("10.9.9.9")),  # down: not counted, whatever its address
        ("ipsec0", up, sin("10.20.30.40")),
    ]


VPN_STORE = {
    "State:/Network/Global/IPv4": {"PrimaryInterface": "utun6"},
    "State:/Network/Service/S-WIFI/IPv4": {"InterfaceName": "en0"},
    "State:/Network/Service/0A1B2C3D-VPN/IPv4": {"InterfaceName": "utun5", "Addresses": ["fe80::e"]},
}


def test_vpn_interfaces_are_the_tunnels_the_os_shows_in_use() -> None:
    fake = FakeFrameworks(store=VPN_STORE, interfaces=[("en0", "IEEE80211")])
    libc = FakeLibc({}, ifaddrs=ifaddrs_of_a_mac())
    names = sorted({n for n, _, _ in ifaddrs_of_a_mac()})
    assert macos.vpn_interfaces(_api(fake, libc, names)) == ["ipsec0", "utun4", "utun5", "utun6"]
    assert fake.calls.count("SCDynamicStoreCreate") == 1  # one configd session per look
    assert len(libc.freed) == 1 and libc.freed[0] != 0  # the getifaddrs list is freed
    assert fake.leaks() == [] and fake.errors == []


def test_system_utuns_alone_are_no_vpn() -> None:
    only_system = [e for e in ifaddrs_of_a_mac() if e[0] in ("lo0", "en0", "utun0", "utun1", "utun2", "utun3")]
    fake = FakeFrameworks(
        store={
            "State:/Network/Global/IPv4": {"PrimaryInterface": "en0"},
            "State:/Network/Service/S-WIFI/IPv4": {"InterfaceName": "en0"},
        }
    )
    libc = FakeLibc({}, ifaddrs=only_system)
    assert macos.vpn_interfaces(_api(fake, libc, ["lo0", "en0", "utun0", "utun1", "utun2", "utun3"])) == []
    assert fake.leaks() == [] and fake.errors == []


def test_getifaddrs_call_sequence_against_a_real_libc() -> None:
    """The pointer-to-pointer out-parameter, the list walk and the free, through this host's libc.

    glibc's struct ifaddrs has the same offsets for the fields read (next, name, flags, addr), so
    names and flags come out right here; its sockaddrs are Linux ones (a 16-bit family, no sa_len),
    which the Darwin decoder rightly does not read as addresses.
    """
    libc = macos.declare_ifaddrs(ctypes.CDLL(None))
    found = macos._interface_addresses(libc)
    assert "lo" in found and found["lo"][0] & IFF_UP
    assert set(found) <= {name for _, name in socket.if_nameindex()}


def test_vpn_without_configd_counts_addressed_tunnels_only() -> None:
    libc = FakeLibc({}, ifaddrs=ifaddrs_of_a_mac())
    assert macos.vpn_interfaces(_api(None, libc, [])) == ["ipsec0", "utun4"]


# -- proxy ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "expected"),
    [
        (
            {
                "HTTPSEnable": 1,
                "HTTPSProxy": "proxy.corp.example",
                "HTTPSPort": 8080,
                "HTTPEnable": 1,
                "HTTPProxy": "proxy.corp.example",
                "HTTPPort": 8080,
                "ExceptionsList": ["*.local", "169.254/16"],
                "FTPPassive": 1,
                "__SCOPED__": {"en0": {"HTTPSEnable": 1}},
            },
            "http://proxy.corp.example:8080",
        ),
        (
            {"HTTPSEnable": 1, "HTTPSProxy": "bob:hunter2@proxy.corp.example", "HTTPSPort": 3128},
            "http://proxy.corp.example:3128",
        ),
        ({"HTTPSEnable": 1, "HTTPSProxy": "2001:db8::8", "HTTPSPort": 3128}, "http://[2001:db8::8]:3128"),
        (
            {
                "HTTPSEnable": 0,
                "HTTPSProxy": "old.example",
                "HTTPSPort": 80,
                "ProxyAutoConfigEnable": 1,
                "ProxyAutoConfigURLString": "http://user:pw@wpad.corp.example/proxy.pac",
            },
            "pac:http://wpad.corp.example/proxy.pac",
        ),
        (
            {
                "ProxyAutoConfigEnable": 0,
                "ProxyAutoConfigURLString": "http://wpad/x.pac",
                "ProxyAutoDiscoveryEnable": 1,
            },
            "auto-detect",
        ),
        ({"HTTPEnable": 1, "HTTPProxy": "http-only.example", "HTTPPort": 80}, None),  # HTTPS goes direct
        ({"ExceptionsList": ["*.local"], "FTPPassive": 1}, None),
        ({}, None),
        (None, None),  # SCDynamicStoreCopyProxies returned NULL
    ],
)
def test_system_proxy_from_copy_proxies(proxies: dict[str, Any] | None, expected: str | None) -> None:
    fake = FakeFrameworks(proxies=proxies)
    assert macos.system_proxy(_api(fake, None)) == expected
    assert "SCDynamicStoreCopyProxies" in fake.calls
    assert fake.leaks() == [] and fake.errors == []


def test_public_functions_never_raise() -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise OSError(f"{name}: symbol not found")

    api = MacApi(CF(Broken(), Broken()), Broken(), if_indextoname=_ifname, if_nameindex=lambda: [(1, "lo0")])
    assert macos.default_routes(api) == []
    assert macos.interface_kinds(api) == {}
    assert macos.vpn_interfaces(api) == []
    assert macos.system_proxy(api) is None


def test_on_linux_the_backend_loads_nothing_and_answers_nothing() -> None:
    if sys.platform == "darwin":
        pytest.skip("on macOS the real frameworks load")
    assert cfm.load() is None
    assert macos.default_routes() == [] and macos.system_proxy() is None


# -- the CoreFoundation bridge ------------------------------------------------------------------------


def test_every_cf_function_is_declared_with_pointer_sized_references() -> None:
    cf_lib = types.SimpleNamespace(**{n: types.SimpleNamespace() for n in cfm._CF_SIGNATURES})
    sc_lib = types.SimpleNamespace(**{n: types.SimpleNamespace() for n in cfm._SC_SIGNATURES})
    cfm.declare(cf_lib, sc_lib)
    ref_returning = [
        "CFStringCreateWithCString",
        "CFArrayGetValueAtIndex",
        "SCDynamicStoreCreate",
        "SCDynamicStoreCopyValue",
        "SCDynamicStoreCopyKeyList",
        "SCDynamicStoreCopyProxies",
        "SCDynamicStoreCopyConsoleUser",
        "SCNetworkInterfaceCopyAll",
        "SCNetworkInterfaceGetBSDName",
        "SCNetworkInterfaceGetInterfaceType",
    ]
    for name in ref_returning:
        fn = getattr(cf_lib, name, None) or getattr(sc_lib, name)
        assert fn.restype is ctypes.c_void_p, name
    for name in (
        "CFRelease",
        "CFGetTypeID",
        "CFStringGetLength",
        "CFArrayGetCount",
        "CFDictionaryGetCount",
        "CFBooleanGetValue",
        "CFNumberGetValue",
    ):
        assert getattr(cf_lib, name).argtypes[0] is ctypes.c_void_p, name
    assert ctypes.sizeof(cf_lib.CFArrayGetCount.restype) == 8  # CFIndex is a signed long


def test_cf_values_convert_to_python_bounded_and_released() -> None:
    fake = FakeFrameworks()
    cf = CF(fake, fake)
    value = {
        "name": "São Paulo – Centro ✓",  # noqa: RUF001 - non-ASCII on purpose
        "n": 42,
        "big": 2**40,
        "ratio": 0.25,
        "on": True,
        "list": [1, "two", False],
        "nested": {"a": {"b": [{"c": 1}]}},
    }
    ref = fake.make(value)
    with cf.owned(ref) as r:
        assert cf.to_python(r) == value
    deep: Any = "bottom"
    for _ in range(cfm.MAX_DEPTH + 3):
        deep = [deep]
    with cf.owned(fake.make(deep)) as r:
        got, depth = cf.to_python(r), 0
        while isinstance(got, list):
            got, depth = got[0], depth + 1
        assert got is None and depth == cfm.MAX_DEPTH + 1
    with cf.owned(fake.make(list(range(cfm.MAX_ITEMS + 100)))) as r:
        assert cf.to_python(r) == list(range(cfm.MAX_ITEMS))
    with cf.owned(cf.string("utun4")) as s:
        assert cf.read_string(s) == "utun4"
    assert cf.to_python(None) is None and cf.read_string(None) is None
    cf.release(None)  # CFRelease(NULL) would crash: never called
    assert fake.leaks() == [] and fake.errors == []


def test_the_fake_catches_leaks_and_over_releases() -> None:
    """The release checks above can fail: a leak and a double release are both seen."""
    fake = FakeFrameworks()
    cf = CF(fake, fake)
    leaked = cf.string("kept")
    assert fake.leaks() == [leaked]
    borrowed = fake.make({"k": "v"})
    child = fake.CFArrayGetValueAtIndex(fake.make(["x"], owned=False), 0)
    cf.release(child)
    cf.release(borrowed)
    cf.release(borrowed)
    assert any("borrowed" in e for e in fake.errors) and any("over-release" in e for e in fake.errors)
