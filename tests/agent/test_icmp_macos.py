"""ICMP echo on macOS's unprivileged ping socket, emulated: ``IcmpPinger`` with ``icmp_dgram``.

What xnu does with ``socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`` (bsd/netinet/ip_icmp.c:
``icmp_dgram_attach``/``icmp_dgram_send``; raw_ip.c: ``rip_input``), unlike Linux's ping socket:

* the request goes out as we wrote it: our identifier, our checksum (none is computed for us);
* every echo reply the host receives is queued on every unconnected ICMP socket, other pingers'
  included, WITH its IPv4 header (``ip_len`` in host byte order), and ICMP errors too.

``FakeXnuPingSocket`` does that on a socketpair, so the pinger's real asyncio path runs; it is
handed to ``IcmpPinger`` in place of ``socket.socket`` for the ``icmp`` module only. The Linux
shape (header stripped, identifier rewritten) is checked beside it: Linux must not change.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import types
from collections import deque

import pytest

from cxpulse.agent.probes import icmp
from cxpulse.agent.probes.icmp import IcmpPinger, checksum, icmp6_filter_xnu
from cxpulse.v1.payload import METHOD_ICMP_DGRAM, METHOD_ICMP_RAW

pytestmark = pytest.mark.timeout(20)

# IcmpPinger needs add_reader (not on Windows' Proactor loop), the fake an AF_UNIX datagram pair.
posix_loop = pytest.mark.skipif(sys.platform == "win32", reason="IcmpPinger needs add_reader, the fake AF_UNIX")
native_macos = pytest.mark.skipif(
    os.environ.get("CXPULSE_NATIVE_OS") != "1" or sys.platform != "darwin",
    reason="the real xnu: the agent-tests job on macos-latest (CXPULSE_NATIVE_OS=1)",
)

DESK, TARGET, OTHER = "192.168.1.23", "10.20.30.40", "10.99.99.99"


def ipv4_header(src: str, dst: str, payload_len: int) -> bytes:
    """As xnu queues it on a raw-list socket: ``ip_len``/``ip_off`` left in host byte order."""
    return (
        struct.pack("!BB", 0x45, 0)
        + struct.pack("<H", 20 + payload_len)
        + struct.pack("!H", 7)
        + struct.pack("<H", 0)
        + struct.pack("!BBH", 57, 1, 0)
        + socket.inet_aton(src)
        + socket.inet_aton(dst)
    )


def reply_to(request: bytes, *, ident: int | None = None, payload: bytes | None = None) -> bytes:
    """The echo reply for ``request``: type 0, the same identifier, sequence and payload (RFC 792)."""
    _, _, _, req_ident, seq = struct.unpack_from("!BBHHH", request)
    body = request[8:] if payload is None else payload
    msg = struct.pack("!BBHHH", 0, 0, 0, req_ident if ident is None else ident, seq) + body
    return msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]


class FakeXnuPingSocket:
    """An xnu ``SOCK_DGRAM, IPPROTO_ICMP`` socket to a target that answers, among other traffic."""

    def __init__(self, family: int, kind: int, proto: int, *, answer: bool = True) -> None:
        assert (family, kind, proto) == (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        self.family = family
        self.answer = answer
        self._rx, self._tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._from: deque[str] = deque()
        self.sent: list[bytes] = []
        self.options: list[tuple[int, int, object]] = []

    def setblocking(self, flag: bool) -> None:
        self._rx.setblocking(flag)

    def setsockopt(self, level: int, name: int, value: object) -> None:
        self.options.append((level, name, value))

    def fileno(self) -> int:
        return self._rx.fileno()

    def sendto(self, packet: bytes, address: tuple) -> int:
        assert checksum(packet) == 0, "xnu does not fill in the checksum of a ping socket's request"
        self.sent.append(packet)
        _, _, _, ident, _ = struct.unpack_from("!BBHHH", packet)
        # What else this socket sees on a busy Mac, before our answer:
        self._queue(reply_to(packet, ident=ident ^ 0xFFFF, payload=b"ping from another app" + bytes(8)), address[0])
        self._queue(reply_to(packet, payload=b"same identifier, not our token"), address[0])
        unreach = struct.pack("!BBHI", 3, 1, 0, 0) + ipv4_header(DESK, OTHER, 8) + packet[:8]
        self._queue(unreach, "10.0.0.1")
        if self.answer:
            self._queue(reply_to(packet), address[0])
        return len(packet)

    def _queue(self, msg: bytes, src: str) -> None:
        self._tx.send(ipv4_header(src, DESK, len(msg)) + msg)
        self._from.append(src)

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
        data = self._rx.recv(size)  # BlockingIOError when empty, like the real socket
        return data, (self._from.popleft(), 0)

    def close(self) -> None:
        self._rx.close()
        self._tx.close()


def _with_socket(monkeypatch: pytest.MonkeyPatch, factory: object, platform: str) -> None:
    """``icmp`` sees ``factory`` as ``socket.socket`` and ``platform`` as ``sys.platform``; nothing else does."""
    fake_socket = types.SimpleNamespace(**{k: getattr(socket, k) for k in dir(socket) if not k.startswith("__")})
    fake_socket.socket = factory
    monkeypatch.setattr(icmp, "socket", fake_socket)
    monkeypatch.setattr(icmp, "sys", types.SimpleNamespace(platform=platform))


@posix_loop
def test_ping_over_xnu_dgram_socket_finds_its_reply_among_others(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[FakeXnuPingSocket] = []

    def factory(*args: int) -> FakeXnuPingSocket:
        made.append(FakeXnuPingSocket(*args))
        return made[-1]

    _with_socket(monkeypatch, factory, "darwin")

    async def run() -> list[int | None]:
        pinger = IcmpPinger(socket.AF_INET, METHOD_ICMP_DGRAM)
        try:
            return [await pinger.ping((TARGET, 0), 1.0) for _ in range(3)]
        finally:
            pinger.close()

    rtts = asyncio.run(run())
    assert all(r is not None and 0 <= r < 1_000_000 for r in rtts)
    sock = made[0]
    idents = {struct.unpack_from("!H", p, 4)[0] for p in sock.sent}
    assert len(idents) == 1  # one identifier of ours for the socket's life
    assert sock.options == []  # xnu has no IPv4 ICMP filter: nothing to ask for


@posix_loop
def test_no_answer_is_loss_even_when_others_replies_arrive(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_socket(monkeypatch, lambda *a: FakeXnuPingSocket(*a, answer=False), "darwin")

    async def run() -> int | None:
        pinger = IcmpPinger(socket.AF_INET, METHOD_ICMP_DGRAM)
        try:
            return await pinger.ping((TARGET, 0), 0.3)
        finally:
            pinger.close()

    assert asyncio.run(run()) is None


def _pinger_for_match(monkeypatch: pytest.MonkeyPatch, platform: str, method: str) -> IcmpPinger:
    _with_socket(monkeypatch, lambda *a: _AnySocket(), platform)

    async def make() -> IcmpPinger:
        return IcmpPinger(socket.AF_INET, method)

    loop = asyncio.new_event_loop()
    pinger = loop.run_until_complete(make())
    pinger._loop = loop  # futures below are made on it
    return pinger


class _AnySocket:
    """Just enough socket for the constructor; ``_match`` is fed by hand."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self.options: list[tuple] = []

    def setblocking(self, flag: bool) -> None: ...

    def setsockopt(self, *args: object) -> None:
        self.options.append(args)

    def fileno(self) -> int:
        return self._r.fileno()

    def close(self) -> None:
        self._r.close()
        self._w.close()


@posix_loop
@pytest.mark.parametrize(
    "platform, method, rewritten_ident_accepted",
    [
        ("darwin", METHOD_ICMP_DGRAM, False),  # xnu keeps our identifier: another one is another pinger
        ("linux", METHOD_ICMP_DGRAM, True),  # Linux rewrote it: the identifier says nothing (unchanged)
        ("linux", METHOD_ICMP_RAW, False),
        ("darwin", METHOD_ICMP_RAW, False),
    ],
)
def test_identifier_check_follows_the_kernel(
    monkeypatch: pytest.MonkeyPatch, platform: str, method: str, rewritten_ident_accepted: bool
) -> None:
    pinger = _pinger_for_match(monkeypatch, platform, method)
    loop = pinger._loop
    try:
        seq = 77
        request = pinger._packet(seq)
        for ident, header, expected in [
            (pinger._ident, True, True),
            (pinger._ident ^ 0x5A5A, True, rewritten_ident_accepted),
            (pinger._ident, False, True),
        ]:
            fut = loop.create_future()
            pinger._pending[seq] = (fut, TARGET)
            msg = reply_to(request, ident=ident)
            data = ipv4_header(TARGET, DESK, len(msg)) + msg if header else msg
            pinger._match(data, (TARGET, 0), 12345)
            assert fut.done() is expected, (ident, header)
            del pinger._pending[seq]
        # Whatever the platform: a reply without our token, or from another host, is not ours.
        fut = loop.create_future()
        pinger._pending[seq] = (fut, TARGET)
        pinger._match(reply_to(request, payload=b"x" * 24), (TARGET, 0), 1)
        pinger._match(reply_to(request), (OTHER, 0), 1)
        assert not fut.done()
    finally:
        pinger.close()
        loop.close()


@posix_loop
def test_truncated_and_error_messages_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    pinger = _pinger_for_match(monkeypatch, "darwin", METHOD_ICMP_DGRAM)
    loop = pinger._loop
    try:
        fut = loop.create_future()
        pinger._pending[5] = (fut, TARGET)
        msg = reply_to(pinger._packet(5))
        full = ipv4_header(TARGET, DESK, len(msg)) + msg
        for cut in range(len(full)):
            if cut >= 20 + 8 + len(pinger._token):
                break  # long enough to hold the token: the rest is padding
            pinger._match(full[:cut], (TARGET, 0), 1)
        time_exceeded = struct.pack("!BBHI", 11, 0, 0, 0) + ipv4_header(DESK, TARGET, len(msg)) + pinger._packet(5)[:8]
        pinger._match(ipv4_header("10.0.0.1", DESK, len(time_exceeded)) + time_exceeded, ("10.0.0.1", 0), 1)
        assert not fut.done()
        pinger._match(full, (TARGET, 0), 1)
        assert fut.done()
    finally:
        pinger.close()
        loop.close()


def test_icmp6_filter_uses_bsd_pass_bits_on_macos() -> None:
    """xnu netinet/icmp6.h: ICMP6_FILTER_SETPASS ORs the type's bit in; ICMP6_FILTER is 18 (in6.h)."""
    assert icmp6_filter_xnu((129,)) == struct.pack("=8I", 0, 0, 0, 0, 1 << 1, 0, 0, 0)
    assert len(icmp6_filter_xnu(())) == 32  # struct icmp6_filter: u_int32_t icmp6_filt[8]

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def setsockopt(self, *args: object) -> None:
            self.calls.append(args)

    mac6, mac4, linux4 = Recorder(), Recorder(), Recorder()
    icmp._install_reply_filter(mac6, socket.AF_INET6, "darwin")  # type: ignore[arg-type]
    icmp._install_reply_filter(mac4, socket.AF_INET, "darwin")  # type: ignore[arg-type]
    icmp._install_reply_filter(linux4, socket.AF_INET, "linux")  # type: ignore[arg-type]
    assert mac6.calls == [(socket.IPPROTO_ICMPV6, 18, icmp6_filter_xnu((129,)))]
    assert mac4.calls == []
    assert linux4.calls == [(255, 1, struct.pack("=I", 0xFFFFFFFE))]  # Linux: set bit = blocked (unchanged)


@native_macos
def test_real_xnu_ping_socket_to_loopback_without_root() -> None:
    assert os.geteuid() != 0

    async def run() -> list[int | None]:
        pinger = IcmpPinger(socket.AF_INET, METHOD_ICMP_DGRAM)
        try:
            return [await pinger.ping(("127.0.0.1", 0), 1.0) for _ in range(3)]
        finally:
            pinger.close()

    assert all(r is not None and 0 <= r < 1_000_000 for r in asyncio.run(run()))
