"""Round-trip time to a target by the best method this host allows: raw ICMP, unprivileged ICMP, TCP.
Every sample says which method produced it (decision 6 in docs/architecture.md).
Design notes: docs/agent-probes.md, "agent/probes/rtt.py".
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import Callable
from typing import Protocol

from cxpulse.v1.payload import METHOD_ICMP_DGRAM, METHOD_ICMP_RAW, METHOD_TCP_CONNECT, METHODS

from .base import Measurement, Target
from .icmp import IcmpPinger
from .tcp import tcp_connect_rtt

__all__ = ["DEFAULT_METHODS", "RttProbe"]

DEFAULT_METHODS: tuple[str, ...] = (METHOD_ICMP_RAW, METHOD_ICMP_DGRAM, METHOD_TCP_CONNECT)

log = logging.getLogger(__name__)


class _Pinger(Protocol):
    async def ping(self, sockaddr: tuple, timeout_s: float) -> int | None: ...

    def close(self) -> None: ...


def _pingers_for(platform: str) -> dict[str, Callable[[socket.AddressFamily, str], _Pinger]]:
    """The pinger behind each ICMP method on ``platform``. Windows has no ping socket, and its
    default event loop (Proactor) has no add_reader, so a raw socket works there only for an
    administrator on a Selector loop; its unprivileged echo is iphlpapi's IcmpSendEcho2Ex."""
    if platform == "win32":
        from .icmp_windows import IcmpEchoPinger

        return {METHOD_ICMP_RAW: IcmpPinger, METHOD_ICMP_DGRAM: IcmpEchoPinger}
    return {METHOD_ICMP_RAW: IcmpPinger, METHOD_ICMP_DGRAM: IcmpPinger}


_PINGERS = _pingers_for(sys.platform)  # chosen once, at import

# ICMP is blocked or rate-limited at many corporate edges and SaaS front doors: a target whose
# ICMP goes unanswered while its TCP port answers is timed by TCP connect instead of being
# reported as lost. A target that never answered ICMP is checked at its first loss; one that did,
# after this many losses in a row (a real outage also fails the TCP check and stays lost).
ICMP_BLOCKED_AFTER = 5
ICMP_RECHECK_S = 300.0  # then ICMP is tried again
_NEGATIVE_TTL_S = 10.0  # a name that does not resolve is retried soon, but not on every sample
_CACHE_MAX = 1024

_Resolved = tuple[socket.AddressFamily, tuple]


class RttProbe:
    """Probe kind ``rtt``: one ICMP socket per address family shared by all targets.

    ``methods`` restricts or reorders the fallback chain (configuration, tests); a chain without
    ``tcp_connect`` may end up with no usable method, and then every sample is reported lost under
    the first method of the chain rather than the probe failing.
    """

    kind = "rtt"

    def __init__(self, methods: list[str] | None = None, *, resolve_ttl_s: float = 60.0) -> None:
        chain = tuple(methods) if methods is not None else DEFAULT_METHODS
        unknown = [m for m in chain if m not in METHODS]
        if unknown or not chain:
            raise ValueError(f"rtt methods must be a non-empty list from {list(METHODS)}, got {list(chain)}")
        self._chain = chain
        self._resolve_ttl_s = resolve_ttl_s
        self._family_method: dict[socket.AddressFamily, str | None] = {}
        self._pingers: dict[socket.AddressFamily, _Pinger] = {}
        self._cache: dict[str, tuple[float, _Resolved | None]] = {}
        self._literals: dict[str, _Resolved] = {}
        self._started = False
        self._icmp_answered: set[str] = set()
        self._icmp_losses: dict[str, int] = {}
        self._tcp_until: dict[str, float] = {}
        self._checking: set[str] = set()

    @property
    def method(self) -> str | None:
        """The method IPv4 targets use (None before start, or when no method in the chain works)."""
        return self._family_method.get(socket.AF_INET)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._select(socket.AF_INET)

    async def measure(self, target: Target, timeout_s: float) -> Measurement:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        ts_us = time.time_ns() // 1000
        method = self.method or self._chain[0]
        address = target.host
        try:
            await self.start()
            method = self.method or self._chain[0]
            resolved = await self._resolve(target.host, timeout_s)
            if resolved is None:
                return Measurement(target.name, address, method, ts_us, None)
            family, sockaddr = resolved
            address = sockaddr[0]
            method = self._method_for(family) or self._chain[0]
            if target.method == METHOD_TCP_CONNECT:
                # An app's port: TCP connect time is what the app sees, whatever ICMP would say.
                method = METHOD_TCP_CONNECT
            elif method != METHOD_TCP_CONNECT and loop.time() < self._tcp_until.get(target.name, 0.0):
                method = METHOD_TCP_CONNECT
            remaining = deadline - loop.time()
            ts_us = time.time_ns() // 1000
            rtt_us: int | None = None
            if remaining > 0:
                rtt_us = await self._measure_with(method, family, sockaddr, target.port, remaining)
            if (
                method in (METHOD_ICMP_RAW, METHOD_ICMP_DGRAM)
                and METHOD_TCP_CONNECT in self._chain
                and not target.method
            ):
                await self._icmp_blocked_check(target, family, sockaddr, rtt_us, timeout_s)
            return Measurement(target.name, address, method, ts_us, rtt_us)
        except Exception:  # a probe must never take the agent down; a lost sample is the honest answer
            log.debug("rtt measurement of %s failed", target.host, exc_info=True)
            return Measurement(target.name, address, method, ts_us, None)

    async def _icmp_blocked_check(
        self, target: Target, family: socket.AddressFamily, sockaddr: tuple, icmp_rtt: int | None, timeout_s: float
    ) -> None:
        """After ICMP loss, ask both ways at the same moment: TCP answering while ICMP does not means
        ICMP is filtered, and the target is timed by TCP connect for a while. Asking both at once
        keeps an outage that ends during the check from passing for a filter. The sample that
        raised the question stays lost: it was."""
        name = target.name
        if icmp_rtt is not None:
            self._icmp_answered.add(name)
            self._icmp_losses[name] = 0
            return
        losses = self._icmp_losses[name] = self._icmp_losses.get(name, 0) + 1
        if (name in self._icmp_answered and losses < ICMP_BLOCKED_AFTER) or name in self._checking:
            return
        pinger = self._pingers.get(family)
        if pinger is None:
            return
        self._checking.add(name)
        try:
            icmp, tcp = await asyncio.gather(
                pinger.ping(sockaddr, timeout_s),
                tcp_connect_rtt(family, (sockaddr[0], target.port, *sockaddr[2:]), timeout_s),
            )
        finally:
            self._checking.discard(name)
        if icmp is None and tcp is not None:
            self._tcp_until[name] = asyncio.get_running_loop().time() + ICMP_RECHECK_S
            self._icmp_answered.discard(name)
            self._icmp_losses[name] = 0
            log.info(
                "rtt probe: ICMP to %s (%s) goes unanswered but TCP port %d answers; timing TCP connect for %.0f s",
                name,
                sockaddr[0],
                target.port,
                ICMP_RECHECK_S,
            )
        elif icmp is not None:
            self._icmp_answered.add(name)
            self._icmp_losses[name] = 0

    async def close(self) -> None:
        for pinger in self._pingers.values():
            pinger.close()
        self._pingers.clear()
        self._family_method.clear()
        self._started = False

    async def _measure_with(
        self, method: str, family: socket.AddressFamily, sockaddr: tuple, port: int, timeout_s: float
    ) -> int | None:
        if method == METHOD_TCP_CONNECT:
            return await tcp_connect_rtt(family, (sockaddr[0], port, *sockaddr[2:]), timeout_s)
        pinger = self._pingers.get(family)
        if pinger is None:  # the chain had no working method for this family
            return None
        return await pinger.ping(sockaddr, timeout_s)

    def _method_for(self, family: socket.AddressFamily) -> str | None:
        if family not in self._family_method:
            self._select(family)
        return self._family_method[family]

    def _select(self, family: socket.AddressFamily) -> None:
        """Walk the chain once per family; opening the socket is the only reliable permission test."""
        name = "IPv4" if family == socket.AF_INET else "IPv6"
        skipped: list[str] = []
        for method in self._chain:
            if method == METHOD_TCP_CONNECT:
                chosen = method
                break
            try:
                self._pingers[family] = _PINGERS[method](family, method)
            except (OSError, NotImplementedError) as exc:  # no privilege, no IPv6, no add_reader, no iphlpapi
                skipped.append(f"{method}: {exc or type(exc).__name__}")  # Proactor: a bare NotImplementedError
                continue
            chosen = method
            break
        else:
            chosen = None
        self._family_method[family] = chosen
        if chosen is None:
            log.warning(
                "rtt probe: no usable method for %s (%s); samples will be reported lost", name, "; ".join(skipped)
            )
        elif skipped:
            log.info("rtt probe: using %s for %s (unavailable: %s)", chosen, name, "; ".join(skipped))
        else:
            log.info("rtt probe: using %s for %s", chosen, name)

    async def _resolve(self, host: str, timeout_s: float) -> _Resolved | None:
        """Address of ``host``, IPv4 preferred, cached so a sample costs no DNS round trip."""
        literal = self._literals.get(host)
        if literal is not None:
            return literal
        if not host.strip():  # the resolver would read "" as "this machine"
            return None
        try:  # a literal needs no executor thread; kept, since getaddrinfo costs system calls each time
            resolved = _pick(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST))
        except (socket.gaierror, UnicodeError):
            pass
        else:
            if resolved is not None and len(self._literals) < _CACHE_MAX:
                self._literals[host] = resolved
            return resolved
        now = time.monotonic()
        hit = self._cache.get(host)
        if hit is not None and hit[0] > now:
            return hit[1]
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout_s)
            resolved, ttl = _pick(infos), self._resolve_ttl_s
        except (TimeoutError, OSError, UnicodeError):
            resolved, ttl = None, _NEGATIVE_TTL_S
        if len(self._cache) >= _CACHE_MAX:
            self._cache = {h: v for h, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
        self._cache[host] = (now + ttl, resolved)
        return resolved


def _pick(infos: list) -> _Resolved | None:
    for wanted in (socket.AF_INET, socket.AF_INET6):
        for family, _, _, _, sockaddr in infos:
            if family == wanted:
                return family, sockaddr
    return None
