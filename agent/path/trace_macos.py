"""Path traces on macOS without scapy, without root and without a child process.
Unprivileged ICMP datagram sockets with ``IP_TTL``, every probe in one burst.
Design notes: docs/agent-internals.md, "agent/path/trace_macos.py".
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple, Protocol

from ..probes.icmp import ICMP6_FILTER_XNU, checksum, icmp6_filter_xnu
from .hops import Hop, PathTrace, TraceCost

__all__ = [
    "ECHO_REPLY",
    "TIME_EXCEEDED",
    "UNREACHABLE",
    "IcmpMessage",
    "IcmpSocket",
    "echo_request",
    "open_icmp_socket",
    "parse_icmp4",
    "parse_icmp6",
    "trace",
]

ECHO_REPLY, TIME_EXCEEDED, UNREACHABLE = "echo-reply", "time-exceeded", "unreachable"
_KINDS4 = {0: ECHO_REPLY, 3: UNREACHABLE, 11: TIME_EXCEEDED}
_KINDS6 = {129: ECHO_REPLY, 1: UNREACHABLE, 3: TIME_EXCEEDED}
_ECHO_REQUEST4, _ECHO_REQUEST6 = 8, 128
_PROTO_ICMP, _PROTO_UDP, _PROTO_ICMP6 = 1, 17, 58
_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier (or ports), sequence
_UDP_BASE_PORT = 33434
_MAGIC = b"cxtr"
_RCVBUF = 1 << 16
_MAX_DRAIN = 64  # datagrams read per wake-up: a flood of foreign ICMP cannot starve the loop
_IPV6_UNICAST_HOPS = getattr(socket, "IPV6_UNICAST_HOPS", 16)  # 16 on Linux, 4 on macOS (netinet6/in6.h)


class IcmpMessage(NamedTuple):
    """What one received ICMP message says about a probe of ours, if it can be about one.

    ``router`` sent the message. For an echo reply, ``ident``/``seq`` are the echoed identifier
    and sequence and ``data`` the echoed payload; ``dest`` is None. For an error (time exceeded,
    unreachable), they come from the quoted probe: ``dest`` is where it was going and ``proto``
    its protocol; for a quoted UDP probe ``ident``/``seq`` are its source and destination ports.
    """

    kind: str
    code: int
    router: str
    ident: int
    seq: int
    dest: str | None
    proto: int
    data: bytes = b""


def parse_icmp4(data: bytes, sender: str) -> IcmpMessage | None:
    """One datagram from an IPv4 ICMP socket -> what it says, or None when it is nothing of ours.

    Accepts both shapes: with the IPv4 header (xnu datagram and raw sockets, Linux raw sockets)
    and without (Linux ping sockets). They cannot be confused: an IPv4 header starts with 0x4_,
    and the only ICMP types read here are 0, 3 and 11. ``sender`` (recvfrom's address) names the
    router when there is no header.
    """
    router = sender
    if data and data[0] >> 4 == 4:
        ihl = (data[0] & 0x0F) * 4
        if ihl < 20 or len(data) < ihl or data[9] != _PROTO_ICMP:
            return None
        router = socket.inet_ntoa(data[12:16])
        data = data[ihl:]
    if len(data) < _HEADER.size:
        return None
    icmp_type, code, _, ident, seq = _HEADER.unpack_from(data)
    kind = _KINDS4.get(icmp_type)
    if kind is None:
        return None
    if kind == ECHO_REPLY:
        return IcmpMessage(kind, code, router, ident, seq, None, _PROTO_ICMP, data[_HEADER.size :])
    quoted = data[8:]  # after type, code, checksum and 4 unused (or MTU) bytes
    if len(quoted) < 20 or quoted[0] >> 4 != 4:
        return None
    qihl = (quoted[0] & 0x0F) * 4
    if qihl < 20 or len(quoted) < qihl + 8:
        return None
    proto, dest = quoted[9], socket.inet_ntoa(quoted[16:20])
    inner = quoted[qihl : qihl + 8]
    if proto == _PROTO_ICMP:
        if inner[0] != _ECHO_REQUEST4:
            return None
        _, _, _, ident, seq = _HEADER.unpack(inner)
    elif proto == _PROTO_UDP:
        ident, seq = struct.unpack_from("!HH", inner)
    else:
        return None
    return IcmpMessage(kind, code, router, ident, seq, dest, proto)


def parse_icmp6(data: bytes, sender: str) -> IcmpMessage | None:
    """One datagram from an ICMPv6 socket (never with the IPv6 header, RFC 3542) -> what it says."""
    router = sender.split("%", 1)[0]
    if len(data) < _HEADER.size:
        return None
    icmp_type, code, _, ident, seq = _HEADER.unpack_from(data)
    kind = _KINDS6.get(icmp_type)
    if kind is None:
        return None
    if kind == ECHO_REPLY:
        return IcmpMessage(kind, code, router, ident, seq, None, _PROTO_ICMP6, data[_HEADER.size :])
    quoted = data[8:]  # the invoking packet: its IPv6 header, then (we send no extension headers) ours
    if len(quoted) < 48 or quoted[0] >> 4 != 6:
        return None
    proto, dest, inner = quoted[6], socket.inet_ntop(socket.AF_INET6, quoted[24:40]), quoted[40:48]
    if proto == _PROTO_ICMP6:
        if inner[0] != _ECHO_REQUEST6:
            return None
        _, _, _, ident, seq = _HEADER.unpack(inner)
    elif proto == _PROTO_UDP:
        ident, seq = struct.unpack_from("!HH", inner)
    else:
        return None
    return IcmpMessage(kind, code, router, ident, seq, dest, proto)


def echo_request(family: socket.AddressFamily, ident: int, seq: int, payload: bytes) -> bytes:
    """Our echo request; the IPv4 checksum is ours to compute (xnu's ``icmp_dgram_send`` does not)."""
    if family == socket.AF_INET6:  # the kernel computes ICMPv6 checksums (pseudo-header)
        return _HEADER.pack(_ECHO_REQUEST6, 0, 0, ident, seq) + payload
    csum = checksum(_HEADER.pack(_ECHO_REQUEST4, 0, 0, ident, seq) + payload)
    return _HEADER.pack(_ECHO_REQUEST4, 0, csum, ident, seq) + payload


class ProbeSocket(Protocol):
    """The socket layer the tracer needs; ``IcmpSocket`` on a real OS, a fake in tests."""

    family: socket.AddressFamily

    def fileno(self) -> int: ...
    def send(self, packet: bytes, address: str, hops: int) -> None: ...
    def receive(self) -> tuple[bytes, str] | None: ...
    def wire_ident(self, chosen: int) -> int: ...
    def close(self) -> None: ...


class IcmpSocket:
    """A non-blocking ICMP socket with a hop limit per send.

    ``rewrites_ident``: the kernel puts its own identifier on our echo requests (Linux ping
    sockets; it then reads back from ``getsockname()``). xnu never does.
    """

    def __init__(self, sock: socket.socket, *, rewrites_ident: bool = False) -> None:
        self.sock = sock
        self.family = socket.AddressFamily(sock.family)
        self.rewrites_ident = rewrites_ident
        sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, packet: bytes, address: str, hops: int) -> None:
        _set_hops(self.sock, self.family, hops)
        self.sock.sendto(packet, (address, 0))

    def receive(self) -> tuple[bytes, str] | None:
        try:
            data, addr = self.sock.recvfrom(2048)
        except (BlockingIOError, InterruptedError):
            return None
        return data, addr[0]

    def wire_ident(self, chosen: int) -> int:
        return self.sock.getsockname()[1] if self.rewrites_ident else chosen

    def close(self) -> None:
        self.sock.close()


def _set_hops(sock: socket.socket, family: socket.AddressFamily, hops: int) -> None:
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_UNICAST_HOPS, hops)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, hops)


def open_icmp_socket(family: socket.AddressFamily) -> IcmpSocket:
    """Raw when this process may (root: no quirks), else the unprivileged datagram socket.

    Raises OSError (PermissionError) when neither can be had.
    """
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    kinds = [socket.SOCK_DGRAM]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        kinds.insert(0, socket.SOCK_RAW)
    error: OSError | None = None
    for kind in kinds:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            error = exc
            continue
        linux_ping = kind == socket.SOCK_DGRAM and sys.platform.startswith("linux")
        try:
            # xnu reserves 8 KiB (RIPRCVQ) for a raw-list socket, shared with every other ICMP
            # message of the host; a burst of 40 answers quoting whole probes can come close.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        except OSError:
            pass
        if family == socket.AF_INET6 and sys.platform == "darwin":
            # Every ICMPv6 message of the host (neighbour discovery too) would wake us: keep ours.
            try:
                sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER_XNU, icmp6_filter_xnu((1, 3, 129)))
            except OSError:
                pass
        return IcmpSocket(sock, rewrites_ident=linux_ping)
    assert error is not None
    raise error


class _UdpProber:
    """UDP probes from an ordinary socket; their ICMP answers arrive on the ICMP socket."""

    def __init__(self, family: socket.AddressFamily) -> None:
        self.family = family
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        self.port = self.sock.getsockname()[1]

    def send(self, address: str, dport: int, hops: int) -> None:
        _set_hops(self.sock, self.family, hops)
        self.sock.sendto(b"cxpulse-trace", (address, dport))

    def close(self) -> None:
        self.sock.close()


async def trace(
    target_ip: str,
    *,
    port: int = 443,
    max_hops: int = 20,
    method: str = "icmp",
    timeout_s: float = 15.0,
    probes: int = 2,
    reply_timeout_s: float = 1.0,
    open_socket: Callable[[socket.AddressFamily], ProbeSocket] | None = None,
) -> PathTrace:
    """Trace the path to ``target_ip`` from this process; never raises for a failed trace.

    ``open_socket`` replaces ``open_icmp_socket`` (tests: a Linux raw or ping socket, a fake xnu).
    ``port`` is unused: it serves the ``tcp`` method, which macOS only allows with raw sockets.
    The cost reported is the wall time and the CPU time this trace spent in its own code on the
    event loop's thread (other coroutines' work in between is not counted); no separate memory.
    """
    ts_us = time.time_ns() // 1000
    started = time.monotonic()
    cpu = _CpuMeter()
    family = socket.AF_INET6 if ipaddress.ip_address(target_ip).version == 6 else socket.AF_INET
    target = str(ipaddress.ip_address(target_ip))

    def result(reached: bool, hops: list[Hop], error: str | None) -> PathTrace:
        return PathTrace(
            target_ip,
            method,
            reached,
            hops,
            ts_us,
            error,
            TraceCost(round(time.monotonic() - started, 4), round(cpu.total, 6), None),
        )

    if method not in ("icmp", "udp"):
        return result(False, [], f"method {method!r} needs raw sockets on macOS; use icmp or udp")
    with cpu:
        try:
            sock = (open_socket or open_icmp_socket)(family)
        except OSError as exc:
            return result(False, [], f"cannot open an ICMP socket: {exc}")
        udp: _UdpProber | None = None
        try:
            if method == "udp":
                udp = _UdpProber(family)
        except OSError as exc:
            sock.close()
            return result(False, [], f"cannot open a UDP socket: {exc}")
    run = _Run(target, family, method, max_hops, probes, sock, udp, cpu)
    loop = asyncio.get_running_loop()
    try:
        with cpu:
            try:
                loop.add_reader(sock.fileno(), run.on_readable)
            except NotImplementedError:  # a Proactor loop: this tracer needs a selector loop
                return result(False, [], "this event loop cannot watch sockets (no add_reader)")
            send_error = run.send_all()
        if send_error is not None and not run.sent:
            return result(False, [], f"cannot send probes: {send_error}")
        deadline = min(started + timeout_s, time.monotonic() + reply_timeout_s)
        while not run.done() and time.monotonic() < deadline:
            run.wake = loop.create_future()
            try:
                await asyncio.wait_for(run.wake, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                break
    finally:
        try:
            loop.remove_reader(sock.fileno())
        except (ValueError, RuntimeError, NotImplementedError):  # closed fd or loop, or never added
            pass
        sock.close()
        if udp is not None:
            udp.close()
    with cpu:
        reached, hops = run.hops()
    return result(reached, hops, None)


class _CpuMeter:
    """Thread CPU time spent inside ``with`` blocks, summed: our own work, not the loop's."""

    def __init__(self) -> None:
        self.total = 0.0
        self._t0 = 0.0

    def __enter__(self) -> None:
        self._t0 = time.thread_time()

    def __exit__(self, *exc: object) -> None:
        self.total += time.thread_time() - self._t0


class _Run:
    """One trace's probes and answers."""

    def __init__(
        self,
        target: str,
        family: socket.AddressFamily,
        method: str,
        max_hops: int,
        probes: int,
        sock: ProbeSocket,
        udp: _UdpProber | None,
        cpu: _CpuMeter,
    ) -> None:
        self.target, self.family, self.method = target, family, method
        self.max_hops, self.probes = max_hops, probes
        self.sock, self.udp, self.cpu = sock, udp, cpu
        rnd = os.urandom(6)
        self.ident = int.from_bytes(rnd[:2], "big")
        self.base = int.from_bytes(rnd[2:4], "big")
        self.payload = _MAGIC + rnd[4:] + os.urandom(10)  # 16 bytes: what our echo replies carry back
        self.wire_ident = self.ident
        self.sent: dict[int, tuple[int, int]] = {}  # key (sequence or UDP port) -> (ttl, sent_ns)
        self.answers: dict[int, tuple[str, int, bool, bool]] = {}  # key -> (router, rtt_us, final, by_target)
        self.wake: asyncio.Future[None] | None = None
        self._parse = parse_icmp6 if family == socket.AF_INET6 else parse_icmp4

    def send_all(self) -> OSError | None:
        """Every probe, round after round; the last send error, if any (the probes it hit are lost)."""
        error = None
        for rnd in range(self.probes):
            for ttl in range(1, self.max_hops + 1):
                index = rnd * self.max_hops + ttl - 1
                try:
                    if self.udp is not None:
                        key = _UDP_BASE_PORT + index
                        sent_ns = time.perf_counter_ns()
                        self.udp.send(self.target, key, ttl)
                    else:
                        key = (self.base + index) & 0xFFFF
                        packet = echo_request(self.family, self.ident, key, self.payload)
                        sent_ns = time.perf_counter_ns()
                        self.sock.send(packet, self.target, ttl)
                        if not self.sent:
                            self.wire_ident = self.sock.wire_ident(self.ident)
                except OSError as exc:
                    error = exc
                    continue
                self.sent[key] = (ttl, sent_ns)
        return error

    def on_readable(self) -> None:
        with self.cpu:
            for _ in range(_MAX_DRAIN):
                try:
                    got = self.sock.receive()
                except OSError:  # an error queued on the socket (Linux ping sockets); not an answer
                    continue
                if got is None:
                    break
                self.match(*got, time.perf_counter_ns())
            if self.wake is not None and not self.wake.done() and self.done():
                self.wake.set_result(None)

    def match(self, data: bytes, sender: str, recv_ns: int) -> None:
        msg = self._parse(data, sender)
        if msg is None:
            return
        if msg.kind == ECHO_REPLY:
            if (
                self.method != "icmp"
                or msg.ident != self.wire_ident
                or msg.router != self.target
                or not msg.data.startswith(self.payload)
            ):
                return  # another pinger's reply: xnu shows this socket every echo reply of the host
            key = msg.seq
        else:
            if msg.dest != self.target:
                return
            if self.method == "icmp":
                if msg.proto not in (_PROTO_ICMP, _PROTO_ICMP6) or msg.ident != self.wire_ident:
                    return
                key = msg.seq
            else:
                if msg.proto != _PROTO_UDP or self.udp is None or msg.ident != self.udp.port:
                    return
                key = msg.seq
        sent = self.sent.get(key)
        if sent is None or key in self.answers:
            return
        final = msg.kind != TIME_EXCEEDED
        by_target = final and msg.router == self.target
        self.answers[key] = (msg.router, max(0, (recv_ns - sent[1]) // 1000), final, by_target)

    def _end(self) -> tuple[int | None, bool]:
        """The first TTL with a final answer, and whether the target itself gave it."""
        end, reached = None, False
        for key, (_, _, final, by_target) in self.answers.items():
            ttl = self.sent[key][0]
            if final and (end is None or ttl < end or (ttl == end and by_target)):
                end, reached = ttl, by_target
        return end, reached

    def done(self) -> bool:
        """Every probe up to the end of the path has its answer: waiting longer tells nothing."""
        end, _ = self._end()
        if end is None:
            return len(self.answers) == len(self.sent) and bool(self.sent)
        return all(key in self.answers for key, (ttl, _) in self.sent.items() if ttl <= end)

    def hops(self) -> tuple[bool, list[Hop]]:
        end, reached = self._end()
        by_ttl: dict[int, list[tuple[str, int]]] = {}
        for key, (router, rtt_us, _, _) in self.answers.items():
            by_ttl.setdefault(self.sent[key][0], []).append((router, rtt_us))
        last = end if end is not None else max(by_ttl, default=0)
        hops = []
        for ttl in range(1, last + 1):
            answers = by_ttl.get(ttl, [])
            # Several routers at one TTL (load balancing): name the one most probes saw.
            address = Counter(a for a, _ in answers).most_common(1)[0][0] if answers else None
            rtts: list[int | None] = [rtt for _, rtt in answers]
            rtts += [None] * (self.probes - len(rtts))
            hops.append(Hop(ttl, address, rtts))
        return reached, hops
