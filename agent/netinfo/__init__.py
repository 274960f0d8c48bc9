"""What the desk's network looks like from the inside: default gateway, interface kinds, VPN, proxy.

The gateway is the first hop to measure when a call sounds bad: if it is slow, the problem is the
Wi-Fi or the home/branch LAN, not the platform. Whether the desk is on Wi-Fi, a cable or a VPN,
and behind which proxy, tells the helpdesk where to look next. One backend per OS is picked at
import time (psutil style), so callers never branch on the platform, and every backend reads the OS
directly: no ``route``/``netstat``/``scutil`` subprocess, which would cost a fork+exec per look.

Backend contract: every module (``linux``, ``windows``, ``macos``) provides these four functions,
cheap enough to call every few seconds, never raising (a failed OS call is an empty answer, logged):

- ``default_routes() -> list[DefaultRoute]``: default routes (IPv4 and IPv6) via a gateway;
  ``metric`` ranks them as the OS itself does (lower wins); IPv6 link-local gateways carry their
  zone (``fe80::1%eth0`` on Linux/macOS, ``fe80::1%12`` on Windows, where the zone is the index).
  Routes without a gateway (on-link, ``default dev wg0``) are left out: there is no hop to measure.
- ``interface_kinds() -> dict[str, str]``: every interface, by the name psutil.net_if_stats() uses
  on that OS, -> one of ``KINDS``.
- ``vpn_interfaces() -> list[str]``: VPN/tunnel interfaces that are up and carry traffic, sorted.
- ``system_proxy() -> str | None``: the HTTPS proxy the desk's apps are told to use, credentials
  removed: ``"http://proxy:8080"``, ``"pac:http://wpad/wpad.dat"``, ``"auto-detect"``, None for direct.

The record type and the pure rules shared by backends (KINDS, name words, credential stripping) live
in ``_model``. Linux readers take ``proc_root``/``sys_root`` so tests feed recorded trees; the Windows
reader takes an ``api`` object so tests feed a fake DLL. Other Unixes get the Linux backend, whose
readers find no procfs and answer "nothing known".
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ._model import KINDS, DefaultRoute

__all__ = ["KINDS", "DefaultRoute", "Gateway", "default_gateway", "default_routes", "interface_kinds",
           "system_proxy", "vpn_interfaces"]

log = logging.getLogger(__name__)

_WINDOWS = sys.platform == "win32"
_MACOS = sys.platform == "darwin"

if _WINDOWS:
    from . import windows as _backend
elif _MACOS:
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
