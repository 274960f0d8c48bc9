"""TCP connect timing: the round trip of a SYN, for hosts where ICMP is not allowed or not answered.
A RST is an answer (a valid RTT); only silence is loss; closed with SO_LINGER 0, no data sent.
Design notes: docs/agent-probes.md, "agent/probes/tcp.py".
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time
from collections.abc import Callable

__all__ = ["tcp_connect_rtt"]

_LINGER_ABORT = struct.pack("ii", 1, 0)


def _refusal_always_timed(sock: socket.socket) -> bool:
    """Linux and macOS report the first RST: nothing to prepare, a refusal is always timed."""
    return True


def _preparer_for(platform: str) -> Callable[[socket.socket], bool]:
    """What to do to a socket before connect on ``platform``; True when a refusal will be timed."""
    if platform == "win32":
        from .tcp_windows import prepare

        return prepare
    return _refusal_always_timed


_prepare = _preparer_for(sys.platform)  # chosen once, at import


async def tcp_connect_rtt(family: socket.AddressFamily, sockaddr: tuple, timeout_s: float) -> int | None:
    """Microseconds from connect() to the host's first answer, or None for no answer in time.

    ``sockaddr`` must carry the port (``(host, port)`` or the four-tuple for IPv6).
    """
    loop = asyncio.get_running_loop()
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        sock.setblocking(False)
        refusal_timed = _prepare(sock)
        started = time.perf_counter_ns()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, sockaddr), timeout_s)
        except ConnectionRefusedError:
            if not refusal_timed:
                return None
        except (TimeoutError, OSError):  # silence, or no route to the host
            return None
        return (time.perf_counter_ns() - started) // 1000
    finally:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
        except OSError:
            pass
        sock.close()
