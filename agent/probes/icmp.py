"""ICMP echo on the event loop, one socket per (family, method) shared by every target: no ping process.
Raw sockets need root; the unprivileged ping socket differs between Linux and macOS.
Design notes: docs/agent-probes.md, "agent/probes/icmp.py".
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import time

from cxpulse.v1.payload import METHOD_ICMP_DGRAM, METHOD_ICMP_RAW

__all__ = ["ICMP6_FILTER_XNU", "IcmpPinger", "checksum", "icmp6_filter_xnu"]

_ECHO_REQUEST = {socket.AF_INET: 8, socket.AF_INET6: 128}
_ECHO_REPLY = {socket.AF_INET: 0, socket.AF_INET6: 129}
_PROTO = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}
_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_MAGIC = b"cxpulse\0"
_SOL_RAW = 255  # Linux: level of the ICMP_FILTER option on raw IPv4 sockets
_ICMP_FILTER = 1  # same value for ICMP_FILTER (IPv4) and ICMP6_FILTER (IPv6) on Linux
ICMP6_FILTER_XNU = 18  # ICMP6_FILTER in xnu's netinet6/in6.h (level IPPROTO_ICMPV6)
_MAX_DRAIN = 64


def checksum(data: bytes) -> int:
    """RFC 1071 internet checksum. Only raw IPv4 needs it; the kernel fills it in everywhere else."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class IcmpPinger:
    """Echo requests over one socket; ``ping`` may be awaited concurrently for many targets.

    Construction opens the socket, so a caller learns immediately whether this host allows the
    method (PermissionError/OSError) rather than on the first sample. The pinger is bound to the
    running event loop it was created on.
    """

    def __init__(self, family: socket.AddressFamily, method: str, *, payload_size: int = 24) -> None:
        if family not in _PROTO:
            raise ValueError(f"unsupported address family {family!r}")
        if method not in (METHOD_ICMP_RAW, METHOD_ICMP_DGRAM):
            raise ValueError(f"unsupported ICMP method {method!r}")
        self.family = family
        self.method = method
        self._loop = asyncio.get_running_loop()
        kind = socket.SOCK_RAW if method == METHOD_ICMP_RAW else socket.SOCK_DGRAM
        # Only a Linux ping socket puts its own identifier on our requests (and filters replies by it).
        self._ident_is_ours = method == METHOD_ICMP_RAW or not sys.platform.startswith("linux")
        sock = socket.socket(family, kind, _PROTO[family])
        try:
            sock.setblocking(False)
            if self._ident_is_ours:
                _install_reply_filter(sock, family)
            self._loop.add_reader(sock.fileno(), self._on_readable)
        except BaseException:
            sock.close()
            raise
        self._sock: socket.socket | None = sock
        # A random identifier makes collisions with another raw pinger on this host unlikely; the
        # random token in the payload makes a collision harmless.
        rnd = os.urandom(10)
        self._ident = int.from_bytes(rnd[:2], "big")
        self._token = _MAGIC + rnd[2:]
        self._pad = bytes(max(0, payload_size - len(self._token)))
        self._seq = int.from_bytes(os.urandom(2), "big")
        self._pending: dict[int, tuple[asyncio.Future[int | None], str]] = {}

    async def ping(self, sockaddr: tuple, timeout_s: float) -> int | None:
        """Round-trip time in microseconds, or None when no reply came in time or sending failed."""
        sock = self._sock
        if sock is None:
            return None
        seq = self._next_seq()
        if seq is None:  # 65536 requests in flight: report loss rather than confuse replies
            return None
        fut: asyncio.Future[int | None] = self._loop.create_future()
        self._pending[seq] = (fut, _strip_scope(sockaddr[0]))
        try:
            packet = self._packet(seq)
            sent_ns = time.perf_counter_ns()
            try:
                sock.sendto(packet, sockaddr)
            except OSError:  # no route, interface down, send buffer full: this sample is lost
                return None
            # A timer that resolves the future as lost, rather than asyncio.wait_for: that adds a
            # second future and a loop turn per reply, and at 1 Hz per hop loop turns are the cost.
            expiry = self._loop.call_later(timeout_s, _expire, fut)
            try:
                recv_ns = await fut
            finally:
                expiry.cancel()
            if recv_ns is None:  # timed out, or closed while waiting
                return None
            return max(0, (recv_ns - sent_ns) // 1000)
        finally:
            self._pending.pop(seq, None)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            self._loop.remove_reader(sock.fileno())
        except (RuntimeError, ValueError):  # loop already closed: nothing left to unregister
            pass
        sock.close()
        # Waiters get "lost", not CancelledError: their callers were not cancelled.
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_result(None)
        self._pending.clear()

    def _next_seq(self) -> int | None:
        for _ in range(0x10000):
            self._seq = (self._seq + 1) & 0xFFFF
            if self._seq not in self._pending:
                return self._seq
        return None

    def _packet(self, seq: int) -> bytes:
        body = self._token + self._pad
        csum = 0
        if self.family == socket.AF_INET:  # filled in by the kernel for ICMPv6 and Linux ping sockets only
            csum = checksum(_HEADER.pack(_ECHO_REQUEST[self.family], 0, 0, self._ident, seq) + body)
        return _HEADER.pack(_ECHO_REQUEST[self.family], 0, csum, self._ident, seq) + body

    def _on_readable(self) -> None:
        """Drain what is queued: one wake-up may carry several replies.

        Bounded, so that a flood of foreign ICMP on a raw socket cannot starve the event loop;
        whatever is left makes the socket readable again on the next turn.
        """
        sock = self._sock
        for _ in range(_MAX_DRAIN):
            if sock is None:
                return
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued on the socket; the sample times out instead
                continue
            recv_ns = time.perf_counter_ns()
            self._match(data, addr, recv_ns)

    def _match(self, data: bytes, addr: tuple, recv_ns: int) -> None:
        if self.family == socket.AF_INET and data and data[0] >> 4 == 4:
            # Raw IPv4 sockets (and macOS ping sockets) hand us the IP header too. An ICMP message
            # never starts with 0x4_: echo reply is type 0. (xnu leaves ip_len in host byte order:
            # only the header length is read.)
            data = data[(data[0] & 0x0F) * 4 :]
        if len(data) < _HEADER.size + len(self._token):
            return
        icmp_type, code, _, ident, seq = _HEADER.unpack_from(data)
        if icmp_type != _ECHO_REPLY[self.family] or code != 0:
            return
        if self._ident_is_ours and ident != self._ident:
            return  # someone else's ping (raw sockets, and macOS ping sockets, see them all)
        if data[_HEADER.size : _HEADER.size + len(self._token)] != self._token:
            return
        entry = self._pending.get(seq)
        if entry is None:
            return  # a reply that arrived after its timeout
        fut, expected = entry
        if _strip_scope(addr[0]) != expected and not _is_any(expected):
            return
        if not fut.done():
            fut.set_result(recv_ns)


def icmp6_filter_xnu(pass_types: tuple[int, ...]) -> bytes:
    """xnu's ``struct icmp6_filter`` (8 x u_int32) letting only ``pass_types`` through.

    BSD semantics, the reverse of Linux's: a SET bit means pass (``ICMP6_FILTER_SETPASS`` ORs it
    in; ``SETBLOCKALL`` zeroes the struct), words in host byte order.
    """
    words = [0] * 8
    for kind in pass_types:
        words[kind >> 5] |= 1 << (kind & 31)
    return struct.pack("=8I", *words)


def _install_reply_filter(sock: socket.socket, family: socket.AddressFamily, platform: str | None = None) -> None:
    """Ask the kernel to drop every ICMP type but echo reply before it wakes us.

    A raw socket (and a macOS ping socket) otherwise receives all ICMP on the host (neighbour
    discovery, other pingers' traffic), each costing a wake-up. Best effort: matching in
    ``_match`` stays the authority. Linux: ICMP_FILTER / ICMP6_FILTER. macOS: ICMP6_FILTER,
    allowed on ping sockets too (``icmp6_dgram_ctloutput``); xnu has no IPv4 filter.
    """
    platform = platform or sys.platform
    if platform == "darwin":
        if family == socket.AF_INET6:
            try:
                sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER_XNU, icmp6_filter_xnu((_ECHO_REPLY[family],)))
            except OSError:
                pass
        return
    if not platform.startswith("linux"):
        return
    try:
        if family == socket.AF_INET:
            # Bit set = type blocked; only types < 32 are covered, which includes echo reply (0).
            blocked = 0xFFFFFFFF & ~(1 << _ECHO_REPLY[family])
            sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("=I", blocked))
        else:
            words = [0xFFFFFFFF] * 8
            reply = _ECHO_REPLY[family]
            words[reply >> 5] &= ~(1 << (reply & 31)) & 0xFFFFFFFF
            sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP_FILTER, struct.pack("=8I", *words))
    except OSError:
        pass


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _strip_scope(address: str) -> str:
    return address.split("%", 1)[0]


def _is_any(address: str) -> bool:
    # Pinging 0.0.0.0 / :: reaches the host itself, and the reply comes from a real address.
    return address in ("0.0.0.0", "::")
