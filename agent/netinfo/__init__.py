"""What the desktop's network looks like from the inside: for now, the default gateway.

The gateway is the first hop to measure when a call sounds bad: if it is slow, the problem is the
Wi-Fi or the home/branch LAN, not the platform. One public function, one backend per OS picked at
import time (psutil style), so callers never branch on the platform.

Only Linux has a reader yet. The macOS (routing socket / sysctl) and Windows
(GetIpForwardTable2) readers come with the installers issue; until then those platforms report no
gateway rather than shelling out to ``route`` or ``netstat``, which would cost a fork+exec per look.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

__all__ = ["Gateway", "default_gateway"]

_LINUX = sys.platform.startswith("linux")

if _LINUX:
    from . import linux as _backend


@dataclass(frozen=True)
class Gateway:
    """The next hop of the preferred default route. ``address`` may carry a scope (``fe80::1%eth0``)."""

    address: str
    interface: str
    metric: int = 0


def default_gateway(proc_root: str | os.PathLike[str] = "/proc") -> Gateway | None:
    """The default gateway the kernel would use, or None when there is none or it cannot be read.

    IPv4 is preferred, as in the RTT probe's name resolution, so that the gateway and the targets
    are measured over the same family; IPv6 is the answer only on an IPv6-only network. Among several default routes (Wi-Fi and a cable at
    once) the lowest metric wins, as it does in the kernel. ``proc_root`` is read on Linux only,
    so tests can feed recorded files.
    """
    if not _LINUX:
        return None
    for read in (_backend.ipv4_default_routes, _backend.ipv6_default_routes):
        routes = read(proc_root)
        if routes:
            best = min(routes, key=lambda r: r.metric)  # on a tie, the first listed
            return Gateway(best.gateway, best.interface, best.metric)
    return None
