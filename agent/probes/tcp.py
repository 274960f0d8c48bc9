"""TCP connect timing: the round trip of a SYN, for hosts where ICMP is not allowed or not answered.

The handshake's first round trip is measured: connect() start to SYN-ACK (connected) or to RST
(connection refused). A refusal is an answer from the host's TCP stack and times the path just as
well, so it counts as a valid RTT; only silence (timeout) or an unreachable network is loss.

No data is sent, and the socket is closed with an abortive close (SO_LINGER 0): the server sees
one RST instead of a FIN exchange, and the agent keeps no TIME_WAIT entry per sample.

Windows retries a SYN that was answered with a RST for about 2 s before it reports the refusal;
``tcp_windows.prepare`` turns that off per socket (chosen once at import, see that module). Where
it cannot, a refusal is reported lost: its time would be Windows' retry schedule, not the path.
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
