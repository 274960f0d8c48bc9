"""The desk's network from the inside: default gateway, interface kinds, VPN, proxy.
One backend per OS picked at import, each with the same four functions, cheap and never raising.
Design notes: docs/agent-internals.md, "agent/netinfo/__init__.py".
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ._model import KINDS, DefaultRoute

__all__ = [
    "KINDS",
    "DefaultRoute",
    "Gateway",
    "default_gateway",
    "default_routes",
    "interface_kinds",
    "system_proxy",
    "vpn_interfaces",
]

log = logging.getLogger(__name__)

_WINDOWS = sys.platform == "win32"
_MACOS = sys.platform == "darwin"

if sys.platform == "win32":  # spelled out (not _WINDOWS) so that type checkers pick one backend
    from . import windows as _backend
elif sys.platform == "darwin":
    from . import macos as _backend
else:
    from . import linux as _backend

_T = TypeVar("_T")
_failed: set[str] = set()


@dataclass(frozen=True)
class Gateway:
    """The next hop of the preferred default route. ``address`` may carry a scope (``fe80::1%eth0``)."""

    address: str
    interface: str
    metric: int = 0


def default_routes(proc_root: str | os.PathLike[str] = "/proc") -> list[DefaultRoute]:
    """Default routes via a gateway, IPv4 and IPv6. ``proc_root`` is read by the Linux backend only."""
    if _WINDOWS or _MACOS:
        return _guard("default_routes", _backend.default_routes, [])
    return _guard("default_routes", lambda: _backend.default_routes(proc_root), [])


def default_gateway(proc_root: str | os.PathLike[str] = "/proc") -> Gateway | None:
    """The default gateway the OS would use, or None when there is none or it cannot be read.

    IPv4 is preferred, as in the RTT probe's name resolution, so that the gateway and the targets
    are measured over the same family; IPv6 is the answer only on an IPv6-only network. Among
    several default routes (Wi-Fi and a cable at once) the lowest metric wins, as it does in the OS.
    ``proc_root`` is read on Linux only, so tests can feed recorded files.
    """
    routes = default_routes(proc_root)
    for family in ([r for r in routes if ":" not in r.gateway], [r for r in routes if ":" in r.gateway]):
        if family:
            best = min(family, key=lambda r: r.metric)  # on a tie, the first listed
            return Gateway(best.gateway, best.interface, best.metric)
    return None


def interface_kinds() -> dict[str, str]:
    """Interface name (as psutil names it here) -> one of KINDS."""
    return _guard("interface_kinds", _backend.interface_kinds, {})


def vpn_interfaces() -> list[str]:
    """VPN/tunnel interfaces that are up and carry traffic, sorted."""
    return _guard("vpn_interfaces", _backend.vpn_interfaces, [])


def system_proxy() -> str | None:
    """The HTTPS proxy the desk's apps are told to use, without credentials; None when direct."""
    return _guard("system_proxy", _backend.system_proxy, None)


def _guard(name: str, read: Callable[[], _T], empty: _T) -> _T:
    """The backend's answer, or ``empty`` if it raised: a look at the network never stops the agent.

    Backends handle the failures they know; this catches the ones nobody foresaw (an OS build
    with a different layout), logged once per function so a broken reader does not flood the log.
    """
    try:
        return read()
    except Exception:  # the OS boundary; see the docstring
        if name not in _failed:
            _failed.add(name)
            log.warning("netinfo.%s failed; reporting nothing known", name, exc_info=True)
        return empty
