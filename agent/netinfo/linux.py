"""Linux backend: default routes read from procfs, no netlink and no ``ip route`` subprocess.

``/proc/net/route`` and ``/proc/net/ipv6_route`` are plain text the kernel renders on read, cheap
enough to re-read whenever the agent wonders whether the user moved from Wi-Fi to a cable. Both
show the routes of the reader's network namespace, which is what lets tests run this for real.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import NamedTuple

__all__ = ["DefaultRoute", "ipv4_default_routes", "ipv6_default_routes"]

# From include/uapi/linux/route.h and ipv6_route.h.
_RTF_UP = 0x0001
_RTF_GATEWAY = 0x0002
_RTF_REJECT = 0x0200


class DefaultRoute(NamedTuple):
    gateway: str
    interface: str
    metric: int


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
