"""Path traces on Windows without scapy, Npcap, admin rights or a child process: what tracert does.
``IcmpSendEcho2Ex`` with a TTL, from the pinger's bounded thread pool; a failed trace never raises.
Design notes: docs/agent-internals.md, "agent/path/trace_windows.py".
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator

from ..probes.icmp_windows import (
    ANSWERS,
    ERROR_ACCESS_DENIED,
    ERROR_INSUFFICIENT_BUFFER,
    ERROR_INVALID_HANDLE,
    ERROR_INVALID_PARAMETER,
    IP_BUF_TOO_SMALL,
    IP_REQ_TIMED_OUT,
    IP_TTL_EXPIRED_REASSEM,
    IP_TTL_EXPIRED_TRANSIT,
    EchoResult,
    IcmpEchoPinger,
    status_name,
)
from .hops import Hop, PathTrace, TraceCost, validate

__all__ = ["TRACE_WORKERS", "trace"]

TRACE_WORKERS = 8  # echoes in flight at once: a trace of silent hops takes ~probes*max_hops/8 timeouts
# Statuses after which no other probe of this trace can do better: stop and say why.
_FATAL = frozenset(
    {ERROR_ACCESS_DENIED, IP_BUF_TOO_SMALL, ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_PARAMETER, ERROR_INVALID_HANDLE}
)
_NOT_FINAL = frozenset({IP_TTL_EXPIRED_TRANSIT, IP_TTL_EXPIRED_REASSEM})

PingerFactory = Callable[[], IcmpEchoPinger]


async def trace(
    target_ip: str,
    *,
    port: int = 443,
    max_hops: int = 20,
    method: str = "icmp",
    timeout_s: float = 15.0,
    probes: int = 2,
    reply_timeout_s: float = 1.0,
    open_pinger: PingerFactory | None = None,
) -> PathTrace:
    """Trace the path to ``target_ip`` from this process; at most ``timeout_s`` seconds.

    Same arguments and result as ``tracer.trace``. ``port`` is unused (it serves the ``tcp``
    method, which needs raw sockets on Windows). ``open_pinger`` replaces the iphlpapi pinger
    (tests: a fake DLL). The cost carries the wall time only: the work is spread over pool
    threads blocked in the kernel, and no child process exists to measure.
    """
    validate(target_ip, port, max_hops, method, timeout_s, probes, reply_timeout_s)
    ts_us = time.time_ns() // 1000
    started = time.monotonic()

    def result(reached: bool, hops: list[Hop], error: str | None) -> PathTrace:
        return PathTrace(
            target_ip, method, reached, hops, ts_us, error, TraceCost(round(time.monotonic() - started, 4), None, None)
        )

    if method != "icmp":
        return result(
            False,
            [],
            f"method {method!r} needs raw sockets (admin or Npcap) on Windows; "
            "IcmpSendEcho2Ex sends ICMP echo only: use icmp",
        )
    try:
        pinger = (open_pinger or _open_pinger)()
    except OSError as exc:
        return result(False, [], f"cannot open an ICMP handle: {exc}")
    run = _Run(str(ipaddress.ip_address(target_ip)), max_hops, probes, reply_timeout_s, pinger)
    try:
        error = await run.go(started + timeout_s, timeout_s)
    finally:
        pinger.close()
    reached, hops = run.hops()
    if error is None and not any(h.address for h in hops) and run.failure is not None:
        error = f"no answer to any probe: {status_name(run.failure)}"
    return result(reached, hops, error)


def _open_pinger() -> IcmpEchoPinger:
    return IcmpEchoPinger(socket.AF_INET, max_workers=TRACE_WORKERS)


class _Run:
    """One trace's probes, answers and where the path ends."""

    def __init__(self, target: str, max_hops: int, probes: int, reply_timeout_s: float, pinger: IcmpEchoPinger) -> None:
        self.target, self.max_hops, self.probes = target, max_hops, probes
        self.reply_timeout_s, self.pinger = reply_timeout_s, pinger
        self.window = max(1, pinger.max_workers)
        self.answers: dict[tuple[int, int], EchoResult] = {}  # (round, ttl) -> result
        self.end_ttl: int | None = None
        self.reached = False
        self.failure: int | None = None  # first status that was neither an answer nor a timeout

    async def go(self, deadline: float, timeout_s: float) -> str | None:
        """Send every probe up to the end of the path; the error that stopped it, if one did."""
        order = iter([(rnd, ttl) for rnd in range(self.probes) for ttl in range(1, self.max_hops + 1)])
        running: dict[asyncio.Task[EchoResult], tuple[int, int]] = {}
        try:
            while True:
                while len(running) < self.window:
                    key = self._next(order)
                    remaining = deadline - time.monotonic()
                    if key is None or remaining <= 0:
                        break
                    task = asyncio.ensure_future(
                        self.pinger.echo(self.target, key[1], min(self.reply_timeout_s, remaining))
                    )
                    running[task] = key
                if not running:
                    return None
                remaining = deadline - time.monotonic()
                done, _ = await asyncio.wait(running, timeout=max(0.0, remaining), return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    return f"trace stopped after {timeout_s:g} s"
                for task in done:
                    key = running.pop(task)
                    try:
                        answer = task.result()
                    except Exception as exc:  # a bug, not the network: say so rather than raise
                        return f"ICMP echo failed: {exc!r}"
                    if answer.status in _FATAL:
                        return f"ICMP echo failed: {status_name(answer.status)}"
                    self._record(key, answer)
        finally:
            for task in running:
                task.cancel()
            if running:  # cancelled while waiting for a pool thread; a call already running ends by its timeout
                await asyncio.gather(*running, return_exceptions=True)

    def _next(self, order: Iterator[tuple[int, int]]) -> tuple[int, int] | None:
        for rnd, ttl in order:
            if self.end_ttl is None or ttl <= self.end_ttl:
                return rnd, ttl
        return None

    def _record(self, key: tuple[int, int], answer: EchoResult) -> None:
        ttl = key[1]
        if answer.address is None:
            if answer.status != IP_REQ_TIMED_OUT and self.failure is None:
                self.failure = answer.status
            return
        self.answers[key] = answer
        if answer.status in ANSWERS and answer.status not in _NOT_FINAL:
            # The target's echo reply, or an "unreachable": nothing lies beyond this TTL.
            by_target = answer.address == self.target
            if self.end_ttl is None or ttl < self.end_ttl or (ttl == self.end_ttl and by_target):
                self.end_ttl, self.reached = ttl, by_target

    def hops(self) -> tuple[bool, list[Hop]]:
        """Hops 1..end of path (or ..the last TTL that answered); silent hops keep their place."""
        answered_ttls = [ttl for _, ttl in self.answers]
        last = self.end_ttl if self.end_ttl is not None else max(answered_ttls, default=0)
        hops = []
        for ttl in range(1, last + 1):
            per_probe = [self.answers.get((rnd, ttl)) for rnd in range(self.probes)]
            addresses = [a.address for a in per_probe if a is not None]
            # Several routers at one TTL (load balancing): name the one most probes saw.
            address = Counter(addresses).most_common(1)[0][0] if addresses else None
            hops.append(Hop(ttl, address, [a.rtt_us if a is not None else None for a in per_probe]))
        return self.reached, hops
