"""ICMP echo on Windows without admin rights (iphlpapi ``IcmpSendEcho2Ex``/``Icmp6SendEcho2``), samples as icmp_dgram.
Blocking calls in a small bounded thread pool, timed with perf_counter and bounded by the kernel's ms figure.
Design notes: docs/agent-probes.md, "agent/probes/icmp_windows.py".
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cxpulse.v1.payload import METHOD_ICMP_DGRAM

__all__ = [
    "ERROR_ACCESS_DENIED",
    "IP_BUF_TOO_SMALL",
    "IP_DEST_HOST_UNREACHABLE",
    "IP_DEST_NET_UNREACHABLE",
    "IP_DEST_PORT_UNREACHABLE",
    "IP_DEST_PROT_UNREACHABLE",
    "IP_GENERAL_FAILURE",
    "IP_REQ_TIMED_OUT",
    "IP_SUCCESS",
    "IP_TTL_EXPIRED_TRANSIT",
    "MAX_WORKERS",
    "EchoResult",
    "IcmpEchoPinger",
    "reply_buffer_size",
    "status_name",
]

# IP_STATUS codes (ipexport.h) and the Win32 errors GetLastError gives for a zero return.
IP_SUCCESS = 0
IP_BUF_TOO_SMALL = 11001
IP_DEST_NET_UNREACHABLE = 11002
IP_DEST_HOST_UNREACHABLE = 11003
IP_DEST_PROT_UNREACHABLE = 11004
IP_DEST_PORT_UNREACHABLE = 11005
IP_NO_RESOURCES = 11006
IP_HW_ERROR = 11008
IP_REQ_TIMED_OUT = 11010
IP_BAD_ROUTE = 11012
IP_TTL_EXPIRED_TRANSIT = 11013
IP_TTL_EXPIRED_REASSEM = 11014
IP_PARAM_PROBLEM = 11015
IP_BAD_DESTINATION = 11018
IP_GENERAL_FAILURE = 11050
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_INVALID_PARAMETER = 87
ERROR_INSUFFICIENT_BUFFER = 122

_NAMES = {
    IP_SUCCESS: "success",
    IP_BUF_TOO_SMALL: "reply buffer too small",
    IP_DEST_NET_UNREACHABLE: "network unreachable",
    IP_DEST_HOST_UNREACHABLE: "host unreachable",
    IP_DEST_PROT_UNREACHABLE: "protocol unreachable",
    IP_DEST_PORT_UNREACHABLE: "port unreachable",
    IP_NO_RESOURCES: "no IP resources",
    IP_HW_ERROR: "hardware error",
    IP_REQ_TIMED_OUT: "timed out",
    IP_BAD_ROUTE: "bad route",
    IP_TTL_EXPIRED_TRANSIT: "TTL expired in transit",
    IP_TTL_EXPIRED_REASSEM: "TTL expired in reassembly",
    IP_PARAM_PROBLEM: "parameter problem",
    IP_BAD_DESTINATION: "bad destination",
    IP_GENERAL_FAILURE: "general failure",
    ERROR_ACCESS_DENIED: "access denied",
    ERROR_INVALID_HANDLE: "pinger closed",
    ERROR_INVALID_PARAMETER: "invalid parameter",
    ERROR_INSUFFICIENT_BUFFER: "insufficient buffer",
}

# Statuses that carry a reply from some host (its address is in the reply): the target's echo
# reply, a router's "TTL exceeded", an "unreachable" from a router or the target itself.
ANSWERS = frozenset(
    {
        IP_SUCCESS,
        IP_DEST_NET_UNREACHABLE,
        IP_DEST_HOST_UNREACHABLE,
        IP_DEST_PROT_UNREACHABLE,
        IP_DEST_PORT_UNREACHABLE,
        IP_TTL_EXPIRED_TRANSIT,
        IP_TTL_EXPIRED_REASSEM,
        IP_PARAM_PROBLEM,
    }
)

MAX_WORKERS = 8
_AF_INET6_WINDOWS = 23  # AF_INET6 in ws2def.h; Linux's socket.AF_INET6 is 10, so never use that here
_PAYLOAD = b"cxpulse\0" + bytes(24)  # 32 bytes, what ping.exe sends by default
_IP_OPTIONS_MAX = 40  # an IPv4 header carries at most 40 bytes of options, copied into the reply buffer
_UINT8, _UINT16, _UINT32, _PTR = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_void_p


# Structures with fixed-width fields: ULONG is 4 bytes on Windows (LLP64) but c_ulong is 8 on
# Linux, so ctypes.wintypes.ULONG would give the tests a layout Windows never uses.
class IP_OPTION_INFORMATION(ctypes.Structure):
    """ipexport.h; x64: 16 bytes (four UCHARs, then the pointer aligned at 8)."""

    _fields_ = [("Ttl", _UINT8), ("Tos", _UINT8), ("Flags", _UINT8), ("OptionsSize", _UINT8), ("OptionsData", _PTR)]


class ICMP_ECHO_REPLY(ctypes.Structure):
    """ipexport.h; x64: 40 bytes. The native layout: a 64-bit process receives 64-bit pointers.

    The page's remark about ICMP_ECHO_REPLY32 concerns the 32-bit pointer layout; the fields read
    here (Address, Status, RoundTripTime, DataSize) sit at the same offsets in both.
    """

    _fields_ = [
        ("Address", _UINT32),
        ("Status", _UINT32),
        ("RoundTripTime", _UINT32),
        ("DataSize", _UINT16),
        ("Reserved", _UINT16),
        ("Data", _PTR),
        ("Options", IP_OPTION_INFORMATION),
    ]


class IPV6_ADDRESS_EX(ctypes.Structure):
    """ipexport.h declares it inside ``#include <pshpack1.h>``: packed, 26 bytes, no padding."""

    _pack_ = 1
    _fields_ = [
        ("sin6_port", _UINT16),
        ("sin6_flowinfo", _UINT32),
        ("sin6_addr", _UINT16 * 8),
        ("sin6_scope_id", _UINT32),
    ]


class ICMPV6_ECHO_REPLY(ctypes.Structure):
    """ipexport.h (ICMPV6_ECHO_REPLY_LH): not packed, so Status is aligned to 28; 36 bytes."""

    _fields_ = [("Address", IPV6_ADDRESS_EX), ("Status", _UINT32), ("RoundTripTime", _UINT32)]


class SOCKADDR_IN6(ctypes.Structure):
    """ws2ipdef.h; 28 bytes. ``sin6_family`` is Windows' AF_INET6 (23)."""

    _fields_ = [
        ("sin6_family", _UINT16),
        ("sin6_port", _UINT16),
        ("sin6_flowinfo", _UINT32),
        ("sin6_addr", _UINT8 * 16),
        ("sin6_scope_id", _UINT32),
    ]


class IO_STATUS_BLOCK(ctypes.Structure):
    """wdm.h: a union {NTSTATUS Status; PVOID Pointer} then ULONG_PTR Information; x64: 16 bytes."""

    _fields_ = [("Status", _PTR), ("Information", _PTR)]


def reply_buffer_size(family: socket.AddressFamily, request_size: int) -> int:
    """Reply buffer as the IcmpSendEcho2Ex page asks: one reply structure, the request's data,
    8 bytes for an ICMP error message and an IO_STATUS_BLOCK; plus room for the largest IPv4
    options a reply may carry, which the function copies after the structure too."""
    head = ctypes.sizeof(ICMP_ECHO_REPLY if family == socket.AF_INET else ICMPV6_ECHO_REPLY)
    return head + request_size + 8 + ctypes.sizeof(IO_STATUS_BLOCK) + _IP_OPTIONS_MAX


def status_name(status: int) -> str:
    return f"{_NAMES.get(status, 'error')} ({status})"


@dataclass(frozen=True)
class EchoResult:
    """One echo request. ``address`` is who answered (target or router), None when nobody did;
    ``rtt_us`` is set exactly when ``address`` is."""

    status: int
    address: str | None
    rtt_us: int | None


class _Iphlpapi:
    """The real iphlpapi.dll with its prototypes declared: without argtypes, ctypes would pass
    handles and pointers as 32-bit ints on x64."""

    def __init__(self) -> None:
        dll = ctypes.WinDLL("iphlpapi", use_last_error=True)  # type: ignore[attr-defined]
        opts = ctypes.POINTER(IP_OPTION_INFORMATION)
        sin6 = ctypes.POINTER(SOCKADDR_IN6)
        self.IcmpCreateFile = _proto(dll.IcmpCreateFile, _PTR, [])
        self.Icmp6CreateFile = _proto(dll.Icmp6CreateFile, _PTR, [])
        self.IcmpCloseHandle = _proto(dll.IcmpCloseHandle, ctypes.c_int, [_PTR])
        self.IcmpSendEcho2Ex = _proto(
            dll.IcmpSendEcho2Ex,
            _UINT32,
            [_PTR, _PTR, _PTR, _PTR, _UINT32, _UINT32, _PTR, _UINT16, opts, _PTR, _UINT32, _UINT32],
        )
        self.Icmp6SendEcho2 = _proto(
            dll.Icmp6SendEcho2,
            _UINT32,
            [_PTR, _PTR, _PTR, _PTR, sin6, sin6, _PTR, _UINT16, opts, _PTR, _UINT32, _UINT32],
        )

    @staticmethod
    def last_error() -> int:
        return ctypes.get_last_error()  # type: ignore[attr-defined]


def _proto(fn: Any, restype: Any, argtypes: list) -> Any:
    fn.restype, fn.argtypes = restype, argtypes
    return fn


_dll_lock = threading.Lock()
_dll: Any = None


def _load_iphlpapi() -> Any:
    """iphlpapi.dll, loaded once; OSError where there is none (not Windows, a stripped image)."""
    global _dll
    with _dll_lock:
        if _dll is None:
            if sys.platform != "win32":
                raise OSError(f"iphlpapi ICMP needs Windows, this is {sys.platform}")
            try:
                _dll = _Iphlpapi()
            except AttributeError as exc:  # a function missing from this Windows build
                raise OSError(f"iphlpapi lacks an ICMP function: {exc}") from exc
        return _dll


_INVALID_HANDLE = ctypes.c_void_p(-1).value


class IcmpEchoPinger:
    """Echo requests through iphlpapi for one address family; ``ping`` and ``echo`` may be awaited
    concurrently for many targets, at most ``max_workers`` calls running at once.

    Same public shape as ``icmp.IcmpPinger``. Construction opens one ICMP handle, so a host where
    the API is unavailable or refused says so at once (OSError) instead of on the first sample.
    """

    def __init__(
        self,
        family: socket.AddressFamily,
        method: str = METHOD_ICMP_DGRAM,
        *,
        dll: Any = None,
        max_workers: int = MAX_WORKERS,
        payload: bytes = _PAYLOAD,
    ) -> None:
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"unsupported address family {family!r}")
        if method != METHOD_ICMP_DGRAM:
            raise ValueError(f"iphlpapi echo is unprivileged ICMP ({METHOD_ICMP_DGRAM}), not {method!r}")
        if not 1 <= max_workers <= 64:
            raise ValueError("max_workers must be 1..64")
        self.family = family
        self.method = method
        self.max_workers = max_workers
        self._api = dll if dll is not None else _load_iphlpapi()
        self._v4 = family == socket.AF_INET
        self._payload = (ctypes.c_char * len(payload)).from_buffer_copy(payload)
        self._payload_size = len(payload)
        self._reply_size = reply_buffer_size(family, len(payload))
        self._lock = threading.Lock()
        self._free: list[int] = [self._open_handle()]  # at most one handle per worker ever exists
        self._closed = False
        self._executor: ThreadPoolExecutor | None = None

    async def ping(self, sockaddr: tuple, timeout_s: float) -> int | None:
        """Round-trip time in microseconds, or None when no echo reply came in time."""
        result = await self.echo(sockaddr, None, timeout_s)
        return result.rtt_us if result.status == IP_SUCCESS else None

    async def echo(self, dst: str | tuple, ttl: int | None = None, timeout_s: float = 1.0) -> EchoResult:
        """One echo request to ``dst`` (an address or a sockaddr tuple) with ``ttl`` (None: the
        system's default), answered by whoever answers: the target, or the router where the TTL ran out."""
        if ttl is not None and not 1 <= ttl <= 255:
            raise ValueError("ttl must be 1..255")
        if self._closed:
            return EchoResult(ERROR_INVALID_HANDLE, None, None)
        sockaddr = (dst,) if isinstance(dst, str) else tuple(dst)
        deadline_ns = time.perf_counter_ns() + int(timeout_s * 1e9)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool(), self._echo_blocking, sockaddr, ttl, deadline_ns)
        except RuntimeError:  # the pool was shut down by close() while this request waited
            return EchoResult(ERROR_INVALID_HANDLE, None, None)

    def close(self) -> None:
        """Stop taking requests and close the handles; calls in flight end within their timeout."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            free, self._free = self._free, []
            executor, self._executor = self._executor, None
        for handle in free:
            self._api.IcmpCloseHandle(handle)
        if executor is not None:
            # Queued requests still run, find the pinger closed and answer at once: their callers
            # get a loss, not a CancelledError they did not ask for.
            executor.shutdown(wait=False)

    # -- worker side ---------------------------------------------------------------------------

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("pinger closed")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.max_workers, thread_name_prefix=f"cxpulse-icmp{4 if self._v4 else 6}"
                )
            return self._executor

    def _open_handle(self) -> int:
        handle = self._api.IcmpCreateFile() if self._v4 else self._api.Icmp6CreateFile()
        if handle is None or handle == _INVALID_HANDLE:
            err = self._api.last_error()
            raise OSError(err, f"{'IcmpCreateFile' if self._v4 else 'Icmp6CreateFile'} failed: {status_name(err)}")
        return handle

    def _take_handle(self) -> int | None:
        with self._lock:
            if self._closed:
                return None
            if self._free:
                return self._free.pop()
        return self._open_handle()  # every handle is held by a worker: this one needs its own

    def _give_handle(self, handle: int) -> None:
        with self._lock:
            if not self._closed:
                self._free.append(handle)
                return
        self._api.IcmpCloseHandle(handle)

    def _echo_blocking(self, sockaddr: tuple, ttl: int | None, deadline_ns: int) -> EchoResult:
        """Runs in a pool thread: one synchronous IcmpSendEcho2Ex/Icmp6SendEcho2 and its reply."""
        timeout_ms = (deadline_ns - time.perf_counter_ns()) // 1_000_000
        if timeout_ms < 1:  # waited in the pool's queue past the caller's deadline: never sent
            return EchoResult(IP_REQ_TIMED_OUT, None, None)
        try:
            handle = self._take_handle()
        except OSError as exc:
            return EchoResult(exc.errno or IP_GENERAL_FAILURE, None, None)
        if handle is None:
            return EchoResult(ERROR_INVALID_HANDLE, None, None)
        reply = ctypes.create_string_buffer(self._reply_size)
        options = None
        if ttl is not None:
            options = IP_OPTION_INFORMATION(Ttl=ttl)
        try:
            if self._v4:
                dst = int.from_bytes(socket.inet_aton(sockaddr[0]), sys.byteorder)  # IPAddr: network order in memory
                started = time.perf_counter_ns()
                count = self._api.IcmpSendEcho2Ex(
                    handle,
                    None,
                    None,
                    None,
                    0,
                    dst,
                    self._payload,
                    self._payload_size,
                    options,
                    reply,
                    self._reply_size,
                    timeout_ms,
                )
                ended = time.perf_counter_ns()
            else:
                src, dst6 = _sockaddr_in6("::", 0), _sockaddr_in6(sockaddr[0], sockaddr[3] if len(sockaddr) > 3 else 0)
                started = time.perf_counter_ns()
                count = self._api.Icmp6SendEcho2(
                    handle,
                    None,
                    None,
                    None,
                    src,
                    dst6,
                    self._payload,
                    self._payload_size,
                    options,
                    reply,
                    self._reply_size,
                    timeout_ms,
                )
                ended = time.perf_counter_ns()
            error = 0 if count else self._api.last_error()  # read before any other call on this thread
        finally:
            self._give_handle(handle)
        return _parse(reply, self._v4, count, error, ended - started)


def _sockaddr_in6(address: str, scope_id: int) -> SOCKADDR_IN6:
    sa = SOCKADDR_IN6()
    sa.sin6_family = _AF_INET6_WINDOWS
    ctypes.memmove(sa.sin6_addr, socket.inet_pton(socket.AF_INET6, address.split("%", 1)[0]), 16)
    sa.sin6_scope_id = scope_id
    return sa


def _parse(buf: Any, v4: bool, count: int, error: int, elapsed_ns: int) -> EchoResult:
    """The first reply in ``buf``. A zero return carries its status in ``error`` (GetLastError);
    the reply structure is still read then, since a router's "TTL expired" may arrive that way,
    and its address is kept only when the structure holds that same status."""
    if v4:
        reply: Any = ICMP_ECHO_REPLY.from_buffer(buf)
        raw = bytes(buf[0:4])
        address = socket.inet_ntoa(raw) if raw != bytes(4) else None
    else:
        reply = ICMPV6_ECHO_REPLY.from_buffer(buf)
        raw = bytes(reply.Address.sin6_addr)
        address = socket.inet_ntop(socket.AF_INET6, raw) if raw != bytes(16) else None
    status = reply.Status if count else error
    if (not count and reply.Status != error) or status not in ANSWERS:
        return EchoResult(status, None, None)
    if address is None:
        return EchoResult(status, None, None)
    return EchoResult(status, address, _bounded_rtt_us(elapsed_ns, reply.RoundTripTime))


def _bounded_rtt_us(elapsed_ns: int, reply_ms: int) -> int:
    """Our microsecond measurement, never above what the kernel's own millisecond figure allows.

    The kernel counted ``reply_ms`` whole milliseconds, so the round trip was below
    ``reply_ms + 1`` ms; anything above that is this process waking late (see the module doc).
    """
    return max(0, min(elapsed_ns // 1000, (reply_ms + 1) * 1000 - 1))
