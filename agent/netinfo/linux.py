"""Linux backend: routes from procfs, interface kinds and VPN state from sysfs, the proxy from the environment.
No netlink, no subprocess; readers take their root (``proc_root``, ``sys_root``) so tests feed recorded trees.
Design notes: docs/agent-internals.md, "agent/netinfo/linux.py".
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Mapping

import psutil

from ._model import CELLULAR_PREFIXES, VPN_PREFIXES, WIFI_PREFIXES, DefaultRoute, kind_by_name, proxy_from_environ

__all__ = [
    "DefaultRoute",
    "default_routes",
    "interface_kind",
    "interface_kinds",
    "ipv4_default_routes",
    "ipv6_default_routes",
    "system_proxy",
    "vpn_interfaces",
]

SYS_CLASS_NET = "/sys/class/net"

# From include/uapi/linux/route.h and ipv6_route.h.
_RTF_UP = 0x0001
_RTF_GATEWAY = 0x0002
_RTF_REJECT = 0x0200

# ARPHRD_* values from include/uapi/linux/if_arp.h, as printed in /sys/class/net/IF/type.
_ARPHRD_ETHER, _ARPHRD_PPP, _ARPHRD_NONE, _ARPHRD_LOOPBACK = 1, 512, 65534, 772
_ARPHRD_TUNNELS = {768, 769, 776, 778, 823}  # ipip, ip6 tunnel, sit, gre, ip6gre
_IFF_UP = 0x1

# (sys_root, sorted names) -> kinds: kinds change when interfaces come and go, not between looks.
_kinds_memo: tuple[tuple[str, tuple[str, ...]], dict[str, str]] | None = None


def default_routes(proc_root: str | os.PathLike[str] = "/proc") -> list[DefaultRoute]:
    """IPv4 then IPv6 default routes via a gateway, each family in file order (see the two readers)."""
    return ipv4_default_routes(proc_root) + ipv6_default_routes(proc_root)


def ipv4_default_routes(proc_root: str | os.PathLike[str] = "/proc") -> list[DefaultRoute]:
    """Usable IPv4 default routes via a gateway, in file order.

    The file prints each ``__be32`` address with ``%08X`` of its in-memory value, so the text is
    byte-swapped on little-endian machines; unpacking in native order undoes that on any machine.
    Default routes without a gateway (``default dev wg0``) are skipped: there is no first hop to
    measure behind them.
    """
    lines = _read_lines(os.path.join(proc_root, "net", "route"))
    if not lines:
        return []
    header = lines[0].split()
    try:
        col = {name: header.index(name) for name in ("Iface", "Destination", "Gateway", "Flags", "Metric", "Mask")}
    except ValueError:  # not the format we know; better no answer than a wrong one
        return []
    routes = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < len(header):
            continue
        try:
            dest, gateway, mask = (int(fields[col[k]], 16) for k in ("Destination", "Gateway", "Mask"))
            flags, metric = int(fields[col["Flags"]], 16), int(fields[col["Metric"]])
        except ValueError:
            continue
        if dest or mask or not _usable(flags):
            continue
        routes.append(DefaultRoute(socket.inet_ntoa(struct.pack("=I", gateway)), fields[col["Iface"]], metric))
    return routes


def ipv6_default_routes(proc_root: str | os.PathLike[str] = "/proc") -> list[DefaultRoute]:
    """Usable IPv6 default routes (``::/0`` via a gateway), in file order.

    Lines are: destination, prefix length, source, source prefix length, next hop, metric,
    refcount, use, flags, device; all hex except the device. Link-local next hops (the usual case)
    are returned as ``fe80::1%eth0`` so that the address can be probed as it stands.
    """
    routes = []
    for line in _read_lines(os.path.join(proc_root, "net", "ipv6_route")):
        fields = line.split()
        if len(fields) != 10:
            continue
        dest, dest_len, _, _, nexthop, metric_hex, _, _, flags_hex, iface = fields
        try:
            if int(dest, 16) or int(dest_len, 16) or not _usable(int(flags_hex, 16)):
                continue
            gateway = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(nexthop))
            metric = int(metric_hex, 16)
        except ValueError:
            continue
        if gateway.startswith("fe80:"):
            gateway = f"{gateway}%{iface}"
        routes.append(DefaultRoute(gateway, iface, metric))
    return routes


def _usable(flags: int) -> bool:
    return bool(flags & _RTF_UP) and bool(flags & _RTF_GATEWAY) and not flags & _RTF_REJECT


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return [line for line in f.read().splitlines() if line.strip()]
    except OSError:  # no procfs (container without /proc/net, IPv6 disabled): no route known
        return []


def interface_kind(name: str, *, sys_root: str | os.PathLike[str] = SYS_CLASS_NET) -> str:
    """wifi / ethernet / cellular / vpn / loopback / other, for one interface name.

    sysfs facts first: ``wireless`` or ``phy80211`` present -> wifi; ARPHRD type loopback ->
    loopback; PPP, "none" (tun, WireGuard) or an IP tunnel type -> vpn; a ``wwan`` device type ->
    cellular; an Ethernet type with a ``device`` link (a real NIC, virtio included) -> ethernet.
    Virtual Ethernet (veth, bridges, docker0, macvlan) has no ``device`` link and is "other": it is
    not the cable the user plugged in. When sysfs says nothing, the name decides.
    """
    lower = name.lower()
    if lower in ("lo", "lo0") or lower.startswith("loopback"):
        return "loopback"
    base = os.path.join(sys_root, name)
    if os.path.isdir(base):
        if os.path.exists(os.path.join(base, "wireless")) or os.path.exists(os.path.join(base, "phy80211")):
            return "wifi"
        devtype = _read_sysfs(os.path.join(base, "uevent"))
        if "DEVTYPE=wwan" in devtype:
            return "cellular"
        try:
            arphrd = int(_read_sysfs(os.path.join(base, "type")) or -1)
        except ValueError:
            arphrd = -1
        if arphrd == _ARPHRD_LOOPBACK:
            return "loopback"
        if arphrd in (_ARPHRD_PPP, _ARPHRD_NONE) or arphrd in _ARPHRD_TUNNELS:
            return "vpn"
        if arphrd == _ARPHRD_ETHER and not lower.startswith(VPN_PREFIXES + CELLULAR_PREFIXES + WIFI_PREFIXES):
            return "ethernet" if os.path.exists(os.path.join(base, "device")) else "other"
    return kind_by_name(name)


def interface_kinds(sys_root: str | os.PathLike[str] = SYS_CLASS_NET) -> dict[str, str]:
    """Every interface of this namespace -> its kind; re-classified only when the set of names changes.

    The names are the entries of ``sys_root`` (one directory read), the same names psutil reports;
    without sysfs (odd containers) psutil's names, classified by name.
    """
    global _kinds_memo
    try:
        names = tuple(sorted(os.listdir(sys_root)))
    except OSError:
        try:
            names = tuple(sorted(psutil.net_if_stats()))
        except OSError:
            return {}
    key = (os.fspath(sys_root), names)
    memo = _kinds_memo
    if memo is not None and memo[0] == key:
        return dict(memo[1])
    kinds = {name: interface_kind(name, sys_root=sys_root) for name in names}
    _kinds_memo = (key, kinds)
    return dict(kinds)


def vpn_interfaces(sys_root: str | os.PathLike[str] = SYS_CLASS_NET) -> list[str]:
    """VPN/tunnel interfaces that are up and running (carrier: a client holds the tun), sorted.

    Two sysfs files answer per candidate: ``flags`` (administratively up; it never shows
    IFF_RUNNING) and ``carrier`` (unreadable while down). Without them, one ``net_if_stats()``
    call, made only when some interface looks like a VPN at all.
    """
    candidates = sorted(name for name, kind in interface_kinds(sys_root).items() if kind == "vpn")
    up = []
    stats = None
    for name in candidates:
        flags = _read_sysfs(os.path.join(sys_root, name, "flags"))
        if flags:
            try:
                admin_up = bool(int(flags, 16) & _IFF_UP)
            except ValueError:
                admin_up = False
            if admin_up and _read_sysfs(os.path.join(sys_root, name, "carrier")) == "1":
                up.append(name)
            continue
        if stats is None:
            try:
                stats = psutil.net_if_stats()
            except OSError:
                stats = {}
        if name in stats and stats[name].isup:
            up.append(name)
    return up


def system_proxy(environ: Mapping[str, str] | None = None) -> str | None:
    """The HTTPS proxy from the environment (``https_proxy``, then ``HTTPS_PROXY``), without credentials.

    On Linux there is no other system-wide setting worth reading (desktop environments keep theirs
    in per-user dconf, which a system service cannot see).
    """
    return proxy_from_environ(os.environ if environ is None else environ)


def _read_sysfs(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""
