"""Windows part of TCP connect timing: a refused connect must come back at once, not after ~2 s of SYN retries.
``SIO_TCP_INITIAL_RTO`` through ctypes ``WSAIoctl`` turns the retries off per socket; import-safe on every OS.
Design notes: docs/agent-probes.md, "agent/probes/tcp_windows.py".
"""

from __future__ import annotations

import ctypes
import logging
import socket
import sys
import threading
from typing import Any

__all__ = [
    "SIO_TCP_INITIAL_RTO",
    "TCP_INITIAL_RTO_NO_SYN_RETRANSMISSIONS",
    "TCP_INITIAL_RTO_PARAMETERS",
    "TCP_INITIAL_RTO_UNSPECIFIED_RTT",
    "prepare",
]

log = logging.getLogger(__name__)

SIO_TCP_INITIAL_RTO = 0x98000011  # _WSAIOW(IOC_VENDOR, 17): IOC_IN 0x80000000 | IOC_VENDOR 0x18000000 | 17
TCP_INITIAL_RTO_UNSPECIFIED_RTT = 0xFFFF  # ((USHORT) -1)
TCP_INITIAL_RTO_NO_SYN_RETRANSMISSIONS = 0xFE  # ((UCHAR) -2)
SOCKET_ERROR = -1


class TCP_INITIAL_RTO_PARAMETERS(ctypes.Structure):
    """mstcpip.h: USHORT Rtt, UCHAR MaxSynRetransmissions; 4 bytes with the trailing padding byte."""

    _fields_ = [("Rtt", ctypes.c_uint16), ("MaxSynRetransmissions", ctypes.c_uint8)]


class _Ws2_32:
    """The real ws2_32.dll's WSAIoctl, prototype declared (SOCKET is pointer-sized on x64)."""

    def __init__(self) -> None:
        dll = ctypes.WinDLL("ws2_32", use_last_error=True)  # type: ignore[attr-defined]
        fn = dll.WSAIoctl
        fn.restype = ctypes.c_int
        fn.argtypes = [
            ctypes.c_size_t,
            ctypes.c_uint32,
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.POINTER(ctypes.c_uint32),
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self.WSAIoctl = fn

    @staticmethod
    def last_error() -> int:
        return ctypes.get_last_error()  # type: ignore[attr-defined]


_lock = threading.Lock()
_ws2: Any = None
_unsupported = False  # set after the first refusal: this Windows build will not change its mind
_said = False


def _load() -> Any:
    global _ws2
    with _lock:
        if _ws2 is None:
            if sys.platform != "win32":
                raise OSError(f"ws2_32 needs Windows, this is {sys.platform}")
            _ws2 = _Ws2_32()
        return _ws2


def prepare(sock: socket.socket, *, ws2: Any = None) -> bool:
    """Ask for no SYN retransmission on ``sock`` (before connect); True when a refusal on this
    socket will be reported at the first RST, so that its time is a round trip."""
    global _unsupported
    if _unsupported and ws2 is None:
        return False
    try:
        api = ws2 if ws2 is not None else _load()
    except OSError as exc:
        _unsupported = True
        _say_unsupported(f"ws2_32 unavailable: {exc}")
        return False
    # Bound first, as Go's and libuv's connect paths do before this ioctl: the Proactor's own
    # BindLocal (before ConnectEx) accepts a socket that is already bound.
    try:
        sock.bind(("::", 0) if sock.family == socket.AF_INET6 else ("0.0.0.0", 0))
    except OSError:
        pass
    params = TCP_INITIAL_RTO_PARAMETERS(TCP_INITIAL_RTO_UNSPECIFIED_RTT, TCP_INITIAL_RTO_NO_SYN_RETRANSMISSIONS)
    returned = ctypes.c_uint32(0)
    rc = api.WSAIoctl(
        sock.fileno(),
        SIO_TCP_INITIAL_RTO,
        ctypes.addressof(params),
        ctypes.sizeof(params),
        None,
        0,
        ctypes.byref(returned),
        None,
        None,
    )
    if rc == SOCKET_ERROR:
        error = api.last_error()
        if ws2 is None:
            _unsupported = True
        _say_unsupported(f"WSAIoctl(SIO_TCP_INITIAL_RTO) failed with error {error}")
        return False
    return True


def _say_unsupported(why: str) -> None:
    global _said
    with _lock:
        said, _said = _said, True
    if not said:
        log.warning(
            "TCP connect timing: %s; this Windows retries a refused SYN for about 2 s, so refusals "
            "are reported lost instead of timed (Windows 10 1709 or later needed)",
            why,
        )
