"""The agent's side of path traces: run this OS's tracer (chosen once at import), judge what it found.
Stdlib only, so scapy never lands in the agent; a failed trace never raises (``PathTrace.error``).
Design notes: docs/agent-internals.md, "agent/path/tracer.py".
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .child_argv import trace_child_argv
from .hops import METHODS, Hop, PathTrace, TraceCost, validate

__all__ = [
    "CHILD_MODULE",
    "METHODS",
    "UNKNOWN",
    "Hop",
    "PathChange",
    "PathTrace",
    "PathWatcher",
    "TraceCost",
    "classify_hops",
    "path_signature",
    "trace",
]

CHILD_MODULE = "cxpulse.agent.path.trace_child"
UNKNOWN = "*"  # a hop that did not answer, in signatures (traceroute's own notation)
_MAX_OUTPUT = 1 << 20  # the child prints a few kB; anything near this is not our child talking


@dataclass(frozen=True)
class PathChange:
    """A path that differs from the last one seen for the same target.

    ``first_ttl`` is where they part: the hop a helpdesk should look at first (the ISP re-routed at
    TTL 3, the VPN came up at TTL 1).
    """

    target: str
    ts_us: int
    first_ttl: int
    old_hops: list[Hop]
    new_hops: list[Hop]
    old_signature: tuple[str, ...]
    new_signature: tuple[str, ...]


async def trace(
    target_ip: str,
    *,
    port: int = 443,
    max_hops: int = 20,
    method: str = "icmp",
    timeout_s: float = 15.0,
    probes: int = 2,
    reply_timeout_s: float = 1.0,
) -> PathTrace:
    """Trace the path to ``target_ip`` with this OS's tracer; at most ``timeout_s`` seconds.

    Linux: the scapy child (``_trace_child``). macOS: ICMP datagram sockets in this process
    (``trace_macos``). Windows: ``IcmpSendEcho2Ex`` with a TTL (``trace_windows``). Bad arguments
    raise ``ValueError`` here, before any of them runs, on every OS.
    """
    validate(target_ip, port, max_hops, method, timeout_s, probes, reply_timeout_s)
    kwargs = {
        "port": port,
        "max_hops": max_hops,
        "method": method,
        "timeout_s": timeout_s,
        "probes": probes,
        "reply_timeout_s": reply_timeout_s,
    }
    if _native_trace is None:
        return await _trace_child(target_ip, **kwargs)  # type: ignore[arg-type]
    return await _native_trace(target_ip, **kwargs)


async def _trace_child(
    target_ip: str, *, port: int, max_hops: int, method: str, timeout_s: float, probes: int, reply_timeout_s: float
) -> PathTrace:
    """Trace the path to ``target_ip`` in a child process; at most ``timeout_s`` seconds.

    The child is killed when the time is up (or when this coroutine is cancelled), so a stuck
    trace can never pile up processes. ``reply_timeout_s`` is how long the child waits for answers
    after its last probe; it must leave room for the child's start-up (about 0.4 s of imports).
    Run traces one after another rather than gathered: each child peaks at about 45 MiB.
    """
    argv = [
        *trace_child_argv(),
        "--target",
        target_ip,
        "--port",
        str(port),
        "--max-hops",
        str(max_hops),
        "--probes",
        str(probes),
        "--timeout",
        str(reply_timeout_s),
        "--method",
        method,
    ]
    ts_us = time.time_ns() // 1000
    started = time.monotonic()

    def failed(error: str, cost: TraceCost | None = None) -> PathTrace:
        return PathTrace(target_ip, method, False, [], ts_us, error, cost)

    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        return failed(f"cannot start the trace child: {exc}")
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        return failed(
            f"trace child killed after {timeout_s:g} s", TraceCost(round(time.monotonic() - started, 4), None, None)
        )
    finally:
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
            await proc.wait()  # reap it: no zombie, and its rusage lands in RUSAGE_CHILDREN
    wall_s = round(time.monotonic() - started, 4)

    try:
        doc = _last_json_object(out)
    except ValueError as exc:
        tail = err.decode(errors="replace").strip()[-300:]
        return failed(
            f"trace child exited {proc.returncode} without a result ({exc}); stderr: {tail}",
            TraceCost(wall_s, None, None),
        )
    cost = _cost(doc.get("cost"), wall_s)
    try:
        result = _to_trace(doc, ts_us, cost)
    except (TypeError, ValueError, KeyError) as exc:
        return failed(f"trace child gave an invalid result: {exc}", cost)
    if result.target != target_ip or result.method != method:
        return failed(f"trace child answered for {result.target}/{result.method}", cost)
    if proc.returncode != 0 and result.error is None:
        return failed(f"trace child exited {proc.returncode}", cost)
    return result


def _last_json_object(out: bytes) -> dict[str, Any]:
    """The child prints one JSON line; take the last one that parses, in case a library chatted."""
    if len(out) > _MAX_OUTPUT:
        raise ValueError(f"{len(out)} bytes of output")
    for line in reversed(out.decode(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                return doc
    raise ValueError("no JSON object on stdout")


def _cost(raw: Any, wall_s: float) -> TraceCost:
    if not isinstance(raw, dict):
        return TraceCost(wall_s, None, None)
    cpu, rss = raw.get("cpu_s"), raw.get("max_rss_kb")
    return TraceCost(
        wall_s, float(cpu) if isinstance(cpu, (int, float)) else None, int(rss) if isinstance(rss, int) else None
    )


def _to_trace(doc: dict[str, Any], ts_us: int, cost: TraceCost) -> PathTrace:
    """Check every field's type and range: the child is ours, but its output crosses a process."""
    target, method, reached, error = doc["target"], doc["method"], doc["reached"], doc.get("error")
    if not isinstance(target, str) or not isinstance(method, str) or not isinstance(reached, bool):
        raise TypeError("target, method must be strings and reached a boolean")
    if error is not None and not isinstance(error, str):
        raise TypeError("error must be a string or null")
    if not isinstance(doc["hops"], list):
        raise TypeError("hops must be a list")
    hops = []
    for expected_ttl, raw in enumerate(doc["hops"], start=1):
        ttl, address, rtts = raw["ttl"], raw["address"], raw["rtt_us"]
        if ttl != expected_ttl or type(ttl) is not int:
            raise ValueError(f"hop {expected_ttl} has ttl {ttl!r}")
        if address is not None:
            address = str(ipaddress.ip_address(address))
        if not isinstance(rtts, list) or not all(r is None or (type(r) is int and r >= 0) for r in rtts):
            raise ValueError(f"hop {ttl}: rtt_us must be a list of non-negative ints or nulls")
        hops.append(Hop(ttl, address, list(rtts)))
    return PathTrace(target, method, reached, hops, ts_us, error, cost)


def path_signature(trace: PathTrace) -> tuple[str, ...]:
    """The ordered answering addresses, ``UNKNOWN`` ("*") for a hop that stayed silent.

    Silent hops keep their place, so the TTL of every known hop is its index + 1. Trailing silent
    hops are dropped: "we stopped hearing at TTL 5" is a loss, not a different path.
    """
    sig = [hop.address or UNKNOWN for hop in trace.hops]
    while sig and sig[-1] == UNKNOWN:
        sig.pop()
    return tuple(sig)


def _first_changed_ttl(old: PathTrace, new: PathTrace) -> int | None:
    """The first TTL where the two traces cannot be the same path, or None.

    A silent hop matches anything: routers drop probes under load, and that is not a new path.
    Two traces that both reached the target at different TTLs differ even if every answering hop
    agrees (a silent router appeared or left), at the shorter one's last TTL.
    """
    a, b = path_signature(old), path_signature(new)
    for i, (x, y) in enumerate(zip(a, b)):
        if UNKNOWN not in (x, y) and x != y:
            return i + 1
    if old.reached and new.reached and len(old.hops) != len(new.hops):
        return min(len(old.hops), len(new.hops))
    return None


def classify_hops(trace: PathTrace, gateway_ip: str | None) -> dict[str, Hop]:
    """Name the hops a helpdesk talks about. Roles (each absent when no hop fits):

    * ``gateway``: the hop answering from ``gateway_ip`` (the desk's default gateway; normally TTL 1).
    * ``isp``: the first answering hop after the gateway (after TTL 1 when the gateway stayed
      silent or is unknown) that is not the target: the first router of the access network.
    * ``public``: the first answering hop, not the target, with a public (globally routable)
      address: where the path enters the internet. Home and branch paths often cross private or
      carrier-grade NAT (100.64/10) addresses before it.
    * ``app-edge``: the target itself, when the trace reached it.
    * ``anchor``: the farthest answering hop that is not the target. When the platform drops
      probes, this is the nearest point to it that can still be measured; when the trace did not
      reach the target, it is where the path went dark.
    """
    roles: dict[str, Hop] = {}
    gateway = _plain_address(gateway_ip)
    answering = [h for h in trace.hops if h.address is not None]
    for hop in answering:
        if gateway is not None and hop.address == gateway:
            roles["gateway"] = hop
            break
    after_ttl = roles["gateway"].ttl if "gateway" in roles else 1
    routers = [h for h in answering if not (trace.reached and h.address == trace.target)]
    for hop in routers:
        if hop.ttl > after_ttl:
            roles["isp"] = hop
            break
    for hop in routers:
        if hop.address is not None and ipaddress.ip_address(hop.address).is_global and hop.address != gateway:
            roles["public"] = hop
            break
    if trace.reached and trace.hops and trace.hops[-1].address == trace.target:
        roles["app-edge"] = trace.hops[-1]
    if routers and routers[-1].address != gateway:
        roles["anchor"] = routers[-1]
    return roles


def _plain_address(address: str | None) -> str | None:
    """``fe80::1%eth0`` -> ``fe80::1``; None for anything that is not an address."""
    if not address:
        return None
    try:
        return str(ipaddress.ip_address(address.split("%", 1)[0]))
    except ValueError:
        return None


@dataclass
class PathWatcher:
    """Decides when to re-trace, and notices when a path changed.

    Traces are not free (see ``TraceCost``; measured: about 0.4 s of CPU and a 45 MiB child for
    half a second, per target), so they run every ``interval_s`` (5 minutes by default) and,
    sooner, when something that moves paths changed: the default gateway, the interface (Wi-Fi
    to cable, VPN up) or the public address. At the default cadence one target costs about
    0.13 % of a core, close to the agent's whole budget: trace few targets (one per platform) or
    raise ``interval_s``. A trace for a change comes no sooner than ``min_gap_s`` after the
    previous one, so a flapping interface cannot turn the agent into a trace loop. ``reason`` tells
    why the last True was given, for the event log ("path re-traced: gateway changed").

    Times are ``time.monotonic()`` seconds, passed in so that tests need no clock.
    """

    interval_s: float = 300.0
    min_gap_s: float = 30.0
    reason: str = field(default="", init=False)
    _last_trace: float | None = field(default=None, init=False, repr=False)
    _context: tuple[str | None, str | None] | None = field(default=None, init=False, repr=False)
    _public_ip: str | None = field(default=None, init=False, repr=False)
    _pending: str = field(default="", init=False, repr=False)
    _last: dict[str, PathTrace] = field(default_factory=dict, init=False, repr=False)

    def should_trace(
        self, now: float, gateway: str | None, interface: str | None, public_ip: str | None = None
    ) -> bool:
        """True when a trace is due now; a True counts as the trace being started at ``now``.

        ``public_ip`` None means "not known" (not "gone"), so it never triggers a trace by itself.
        """
        context = (gateway, interface)
        if self._context is not None and context != self._context:
            self._pending = "gateway changed" if gateway != self._context[0] else "interface changed"
        self._context = context
        if public_ip is not None:
            if self._public_ip is not None and public_ip != self._public_ip and not self._pending:
                self._pending = "public address changed"
            self._public_ip = public_ip

        if self._last_trace is None:
            reason = "first trace"
        elif self._pending and now - self._last_trace >= self.min_gap_s:
            reason = self._pending
        elif now - self._last_trace >= self.interval_s:
            reason = "interval"
        else:
            return False
        self._last_trace, self._pending, self.reason = now, "", reason
        return True

    def observe(self, trace: PathTrace) -> PathChange | None:
        """Remember this trace; return the change when it differs from the last one for its target.

        Failed traces, and traces where nothing answered, carry no evidence about the path: they
        are ignored and do not replace the last good one.
        """
        if trace.error is not None or not any(h.address for h in trace.hops):
            return None
        old = self._last.get(trace.target)
        self._last[trace.target] = trace
        if old is None:
            return None
        first = _first_changed_ttl(old, trace)
        if first is None:
            return None
        return PathChange(
            trace.target, trace.ts_us, first, old.hops, trace.hops, path_signature(old), path_signature(trace)
        )


# --- the tracer of this OS, chosen once (psutil style) ---------------------------------------------


def _load_macos() -> Callable[..., Awaitable[PathTrace]]:
    from . import trace_macos  # static imports: a frozen build's analysis must find these modules

    return trace_macos.trace


def _load_windows() -> Callable[..., Awaitable[PathTrace]]:
    from . import trace_windows

    return trace_windows.trace


_NATIVE_LOADERS: dict[str, Callable[[], Callable[..., Awaitable[PathTrace]]]] = {
    "darwin": _load_macos,
    "win32": _load_windows,
}


def _select_backend(platform: str) -> Callable[..., Awaitable[PathTrace]] | None:
    """None for the scapy child (Linux, and any OS without a native tracer), else its ``trace``.

    The module is imported on the first trace: it imports this module (for ``PathTrace``), and a
    tracer whose module is missing or broken must fail that trace (a ``PathTrace`` with
    ``error``), not the agent's start.
    """
    loader = _NATIVE_LOADERS.get(platform)
    if loader is None:
        return None

    async def native(target_ip: str, **kwargs: Any) -> PathTrace:
        try:
            backend = loader()
        except (ImportError, AttributeError) as exc:
            return PathTrace(
                target_ip,
                kwargs.get("method", "icmp"),
                False,
                [],
                time.time_ns() // 1000,
                f"no path tracer for {platform}: {exc}",
            )
        return await backend(target_ip, **kwargs)

    native.__qualname__ = f"native[{platform}]"
    return native


_native_trace = _select_backend(sys.platform)
