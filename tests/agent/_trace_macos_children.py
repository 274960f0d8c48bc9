"""Functions test_trace_macos runs inside namespaces (``Host.call``): stdlib and cxpulse only.

Everything is imported at module load, before ``Host.call`` drops privileges.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket

from cxpulse.agent.path import trace_macos
from cxpulse.agent.path.tracer import classify_hops


def _linux_ping_socket(family: socket.AddressFamily) -> trace_macos.IcmpSocket:
    """A Linux ping socket: no IP header on receive, identifier rewritten, no ICMP errors as data."""
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    return trace_macos.IcmpSocket(socket.socket(family, socket.SOCK_DGRAM, proto), rewrites_ident=True)


def trace(
    target: str,
    method: str = "icmp",
    sockets: str = "default",
    gateway: str | None = None,
    reply_timeout_s: float = 1.0,
) -> dict:
    """One trace with the macOS tracer's logic over this kernel's sockets; the trace and its roles."""
    opener = _linux_ping_socket if sockets == "ping" else None
    found = asyncio.run(
        trace_macos.trace(target, method=method, max_hops=8, reply_timeout_s=reply_timeout_s, open_socket=opener)
    )
    roles = {name: hop.ttl for name, hop in classify_hops(found, gateway).items()}
    return {"trace": dataclasses.asdict(found), "roles": roles}
