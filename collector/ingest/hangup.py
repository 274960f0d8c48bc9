"""After a drain, wait until the drained agents have read their UNAVAILABLE status and hung up.

A stream handler that has returned has only queued its status. If the server then closes the
connection while the agent's batches are still arriving, the kernel answers them with a reset,
and a reset throws away what the agent had not read yet: the agent sees INTERNAL or "Socket
closed" instead of the retry hint (a fixed 0.3 s pause was not enough on a loaded CI machine). An
agent that got the status closes its channel, so the wait ends when no drained peer still holds an
established connection to this process, or after ``timeout``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time

import psutil

log = logging.getLogger("cxpulse.collector")

HANGUP_TIMEOUT_S = 3.0
_POLL_S = 0.05
_FALLBACK_S = 0.3  # when the sockets cannot be listed (a unix socket peer, no permission)


def peer_address(peer: str) -> tuple[str, int] | None:
    """gRPC's peer string ("ipv4:10.0.0.5:51234", "ipv6:[::1]:51234") as (address, port); None otherwise."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6") or ":" not in rest:
        return None
    host, _, port = rest.rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return _normal(host.strip("[]")), int(port)
    except ValueError:
        return None


def _normal(ip: str) -> str:
    """One spelling for both sides: no zone index, an IPv4-mapped address (a dual-stack listener) as IPv4."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def still_connected(peers: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """Those of ``peers`` with an established TCP connection to this process."""
    live = {
        (_normal(c.raddr.ip), c.raddr.port)
        for c in psutil.Process().net_connections("tcp")
        if c.raddr and c.status == psutil.CONN_ESTABLISHED
    }
    return peers & live


async def wait_hung_up(peers: list[str], timeout: float = HANGUP_TIMEOUT_S) -> int:
    """Wait until every drained peer has closed its connection; how many had not when time ran out."""
    wanted = {a for a in map(peer_address, peers) if a is not None}
    if len(wanted) < len(set(peers)):
        await asyncio.sleep(_FALLBACK_S)
    if not wanted:
        return 0
    deadline = time.monotonic() + timeout
    while True:
        try:
            left = await asyncio.to_thread(still_connected, wanted)
        except (psutil.Error, OSError) as exc:
            log.debug("cannot list this process's sockets (%s): pausing %.1fs instead", exc, _FALLBACK_S)
            await asyncio.sleep(_FALLBACK_S)
            return 0
        if not left or time.monotonic() >= deadline:
            return len(left)
        await asyncio.sleep(_POLL_S)
