"""The macOS path tracer: xnu-shaped bytes, an emulated xnu socket, and real Linux kernels.

No macOS machine exists here, so the tracer is proven three ways:

* its pure parsers are fed byte buffers laid out as xnu delivers them on a ``SOCK_DGRAM,
  IPPROTO_ICMP`` socket (checked in xnu's bsd/netinet/ip_icmp.c and raw_ip.c, and icmp(4)): the
  IPv4 header in front of every message, ``ip_len``/``ip_off`` in host byte order (so the
  builders below write them little-endian: the parser must not read them), ICMP errors quoting
  our probe's IPv4 header and its first 8 bytes; ICMPv6 sockets without the IPv6 header;
* the whole asyncio trace runs over ``FakeXnuSocket``, which queues what xnu would for each probe
  along a made-up path, including what an unconnected xnu socket also sees: other pingers'
  replies and other traceroutes' errors;
* the same code runs over this Linux kernel's sockets: a raw ICMP socket (which behaves like
  xnu's datagram one: header present, identifier untouched, errors delivered) on loopback and
  across the desk-gw-isp-app namespace lab, and a Linux ping socket (no header, identifier
  rewritten, no errors as data) that can only see the final hop.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
from collections import deque

import pytest

from cxpulse.agent.path import trace_macos, tracer
from cxpulse.agent.path.trace_macos import ECHO_REPLY, TIME_EXCEEDED, UNREACHABLE, IcmpMessage, parse_icmp4, parse_icmp6
from cxpulse.agent.path.tracer import PathTrace, classify_hops
from cxpulse.agent.probes.icmp import checksum
from tests.agent import _trace_macos_children as child
from tests.netns import NOBODY, Lab
from tests.paths import NetPath

pytestmark = pytest.mark.timeout(30)

# The emulation needs what macOS has and Windows lacks: a selector loop (add_reader) and AF_UNIX
# datagram socketpairs. The macOS tracer never runs on Windows; its parsers are tested there too.
posix_loop = pytest.mark.skipif(sys.platform == "win32", reason="xnu emulation needs add_reader and AF_UNIX")
native_macos = pytest.mark.skipif(
    os.environ.get("CXPULSE_NATIVE_OS") != "1" or sys.platform != "darwin",
    reason="the real xnu: the agent-tests job on macos-latest (CXPULSE_NATIVE_OS=1)",
)

DESK, GW, ISP, EDGE, APP = "192.168.1.23", "192.168.1.1", "100.64.0.1", "9.9.9.1", "9.9.9.9"
PING_GROUP_ALL = "0 2147483647"


# --- byte buffers as xnu hands them to the socket ------------------------------------------------


def ipv4_header(src: str, dst: str, payload_len: int, *, proto: int = 1, ttl: int = 64) -> bytes:
    """20 bytes, ``ip_len``/``ip_off`` little-endian as xnu leaves them after ip_input (host order)."""
    return (
        struct.pack("!BB", 0x45, 0)
        + struct.pack("<H", 20 + payload_len)
        + struct.pack("!H", 0x1234)
        + struct.pack("<H", 0)
        + struct.pack("!BBH", ttl, proto, 0)
        + socket.inet_aton(src)
        + socket.inet_aton(dst)
    )


def icmp(kind: int, code: int, rest: bytes, word: bytes = b"\0\0\0\0") -> bytes:
    body = struct.pack("!BBH", kind, code, 0) + word + rest
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def echo_request(ident: int, seq: int, payload: bytes = b"") -> bytes:
    return icmp(8, 0, payload, struct.pack("!HH", ident, seq))


def echo_reply_v4(src: str, dst: str, ident: int, seq: int, payload: bytes, *, header: bool = True) -> bytes:
    msg = icmp(0, 0, payload, struct.pack("!HH", ident, seq))
    return (ipv4_header(src, dst, len(msg)) if header else b"") + msg


def error_v4(
    kind: int, code: int, router: str, desk: str, target: str, probe: bytes, *, proto: int = 1, probe_ttl: int = 1
) -> bytes:
    """An ICMP error from ``router`` quoting the probe's header and its first 8 bytes (RFC 792)."""
    quoted = ipv4_header(desk, target, len(probe), proto=proto, ttl=probe_ttl) + probe[:8]
    msg = icmp(kind, code, quoted)
    return ipv4_header(router, desk, len(msg)) + msg


def ipv6_header(src: str, dst: str, payload_len: int, *, next_header: int = 58, hops: int = 1) -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, payload_len, next_header, hops)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
    )


def time_exceeded_v6(desk: str, target: str, ident: int, seq: int) -> bytes:
    """What an ICMPv6 socket delivers (no IPv6 header): type 3, 4 unused bytes, the invoking packet."""
    probe = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + b"x" * 16
    return struct.pack("!BBHI", 3, 0, 0, 0) + ipv6_header(desk, target, len(probe)) + probe


# --- parsers -------------------------------------------------------------------------------------


def test_time_exceeded_with_ip_header_names_the_router_and_our_probe() -> None:
    data = error_v4(11, 0, GW, DESK, APP, echo_request(0xBEEF, 7, b"cxtr" + bytes(12)))
    assert parse_icmp4(data, sender="203.0.113.99") == IcmpMessage(TIME_EXCEEDED, 0, GW, 0xBEEF, 7, APP, 1)


def test_echo_reply_with_ip_header_carries_its_payload() -> None:
    data = echo_reply_v4(APP, DESK, 0xBEEF, 9, b"cxtr-token")
    msg = parse_icmp4(data, sender=APP)
    assert msg == IcmpMessage(ECHO_REPLY, 0, APP, 0xBEEF, 9, None, 1, b"cxtr-token")


def test_echo_reply_without_header_as_linux_ping_sockets_deliver() -> None:
    data = echo_reply_v4(APP, DESK, 0x0042, 9, b"cxtr-token", header=False)
    assert data[0] == 0  # an ICMP message never starts with 0x4_: the shapes cannot be confused
    assert parse_icmp4(data, sender=APP) == IcmpMessage(ECHO_REPLY, 0, APP, 0x0042, 9, None, 1, b"cxtr-token")


def test_port_unreachable_quoting_udp_gives_the_probe_ports() -> None:
    udp = struct.pack("!HHHH", 40000, 33437, 21, 0)
    data = error_v4(3, 3, APP, DESK, APP, udp, proto=17)
    assert parse_icmp4(data, sender=APP) == IcmpMessage(UNREACHABLE, 3, APP, 40000, 33437, APP, 17)


def test_header_options_on_both_headers_are_skipped() -> None:
    probe = echo_request(1, 2)
    quoted = ipv4_header(DESK, APP, len(probe))
    quoted = bytes([0x46]) + quoted[1:] + b"\x01\x01\x01\x00"  # IHL 6: one word of options (NOPs)
    msg = icmp(11, 0, quoted + probe)
    outer = ipv4_header(ISP, DESK, len(msg))
    outer = bytes([0x47]) + outer[1:] + bytes(8)  # IHL 7
    assert parse_icmp4(outer + msg, sender=ISP) == IcmpMessage(TIME_EXCEEDED, 0, ISP, 1, 2, APP, 1)


def test_ipv6_time_exceeded_without_ip_header() -> None:
    data = time_exceeded_v6("2001:db8::23", "2001:db8:9::9", 0xBEEF, 5)
    assert parse_icmp6(data, sender="fe80::1%en0") == IcmpMessage(
        TIME_EXCEEDED, 0, "fe80::1", 0xBEEF, 5, "2001:db8:9::9", 58
    )
    reply = struct.pack("!BBHHH", 129, 0, 0, 0xBEEF, 6) + b"cxtr"
    assert parse_icmp6(reply, sender="2001:db8:9::9") == IcmpMessage(
        ECHO_REPLY, 0, "2001:db8:9::9", 0xBEEF, 6, None, 58, b"cxtr"
    )


@pytest.mark.parametrize(
    "data",
    [
        icmp(8, 0, b"", struct.pack("!HH", 1, 2)),  # our own request (raw sockets see it on lo)
        icmp(9, 0, bytes(8)),  # router advertisement: delivered to xnu's socket, nothing of ours
        error_v4(11, 0, GW, DESK, APP, struct.pack("!HHII", 1234, 443, 0, 0), proto=6),  # quotes TCP
        error_v4(11, 0, GW, DESK, APP, icmp(13, 0, bytes(12))),  # quotes a timestamp request
        ipv4_header(GW, DESK, 8, proto=17) + bytes(8),  # not ICMP at all
    ],
    ids=["echo-request", "router-advert", "quoted-tcp", "quoted-timestamp", "udp-datagram"],
)
def test_messages_that_cannot_be_ours_are_ignored(data: bytes) -> None:
    assert parse_icmp4(data, sender=GW) is None


def test_truncated_packets_are_ignored_never_raise() -> None:
    full = error_v4(11, 0, GW, DESK, APP, echo_request(0xBEEF, 7))
    assert len(full) == 20 + 8 + 20 + 8
    assert parse_icmp4(full, GW) is not None
    for cut in range(len(full)):
        assert parse_icmp4(full[:cut], GW) is None, cut
    v6 = time_exceeded_v6("2001:db8::23", "2001:db8:9::9", 1, 2)
    for cut in range(8 + 48):
        assert parse_icmp6(v6[:cut], "fe80::1") is None, cut
    reply = echo_reply_v4(APP, DESK, 1, 2, b"")
    for cut in range(len(reply)):
        assert parse_icmp4(reply[:cut], APP) is None, cut


def test_echo_request_checksum_is_ours_to_compute() -> None:
    """xnu's icmp_dgram_send passes the message to rip_send as is: a zero checksum would be dropped."""
    packet = trace_macos.echo_request(socket.AF_INET, 0xBEEF, 1, b"cxtr" + bytes(12))
    assert checksum(packet) == 0 and packet[2:4] != b"\0\0"
    v6 = trace_macos.echo_request(socket.AF_INET6, 0xBEEF, 1, b"cxtr")
    assert v6[:2] == bytes([128, 0]) and v6[2:4] == b"\0\0"  # the kernel fills in ICMPv6's


# --- the asyncio trace over an emulated xnu socket -----------------------------------------------


class FakeXnuSocket:
    """An unconnected ``SOCK_DGRAM, IPPROTO_ICMP`` socket on macOS, emulated on a socketpair.

    ``path`` are the routers at TTL 1, 2, ... (None: silent); beyond them the target answers,
    unless ``target_silent`` (it drops ICMP) or ``dead_end`` (the last router says "host
    unreachable"). With ``noise``, each answer comes after what xnu also queues on this socket:
    another pinger's reply from the same target and other traceroutes' errors. ``shape="linux"``
    emulates a Linux ping socket instead: no header, identifier rewritten, no errors.
    """

    family = socket.AF_INET

    def __init__(
        self,
        path: list[str | None],
        target: str = APP,
        *,
        target_silent: bool = False,
        dead_end: bool = False,
        noise: bool = True,
        shape: str = "xnu",
    ) -> None:
        self.path, self.target = path, target
        self.target_silent, self.dead_end, self.noise, self.shape = target_silent, dead_end, noise, shape
        self.rx, self.tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.rx.setblocking(False)
        self.senders: deque[str] = deque()
        self.sent_hops: list[int] = []
        self.closed = False

    def fileno(self) -> int:
        return self.rx.fileno()

    def wire_ident(self, chosen: int) -> int:
        return 0x4242 if self.shape == "linux" else chosen

    def send(self, packet: bytes, address: str, hops: int) -> None:
        assert address == self.target
        assert checksum(packet) == 0, "xnu sends what it is given: the checksum must be right"
        kind, _, _, ident, seq = struct.unpack_from("!BBHHH", packet)
        assert kind == 8
        self.sent_hops.append(hops)
        if self.shape == "linux":
            ident = 0x4242
            packet = packet[:4] + struct.pack("!H", ident) + packet[6:]
        if self.noise and self.shape == "xnu":
            self._queue(echo_reply_v4(self.target, DESK, ident ^ 0x8000, seq, packet[8:]), self.target)
            self._queue(echo_reply_v4(self.target, DESK, ident, seq, b"someone else's payload"), self.target)
            self._queue(error_v4(11, 0, GW, DESK, "198.51.100.7", echo_request(ident, seq)), GW)
            # another traceroute to the same platform (another app, another agent), same sequence
            self._queue(error_v4(11, 0, GW, DESK, self.target, echo_request(ident ^ 0x8000, seq)), GW)
        if hops <= len(self.path):
            router = self.path[hops - 1]
            if router is not None and self.shape == "xnu":
                self._queue(error_v4(11, 0, router, DESK, self.target, packet, probe_ttl=1), router)
        elif self.dead_end:
            if self.shape == "xnu":
                self._queue(error_v4(3, 1, self.path[-1], DESK, self.target, packet), self.path[-1])
        elif not self.target_silent:
            self._queue(
                echo_reply_v4(self.target, DESK, ident, seq, packet[8:], header=self.shape == "xnu"), self.target
            )

    def _queue(self, data: bytes, sender: str) -> None:
        self.tx.send(data)
        self.senders.append(sender)

    def receive(self) -> tuple[bytes, str] | None:
        try:
            data = self.rx.recv(4096)
        except BlockingIOError:
            return None
        return data, self.senders.popleft()

    def close(self) -> None:
        self.closed = True
        self.rx.close()
        self.tx.close()


def _run(fake: FakeXnuSocket, **kwargs: object) -> PathTrace:
    kwargs.setdefault("reply_timeout_s", 0.3)
    return asyncio.run(trace_macos.trace(fake.target, open_socket=lambda family: fake, **kwargs))


@posix_loop
def test_home_path_through_carrier_nat_with_a_silent_hop() -> None:
    fake = FakeXnuSocket([GW, ISP, None, EDGE])
    found = _run(fake, max_hops=8, reply_timeout_s=5.0)
    assert found.error is None and found.reached is True
    assert [h.address for h in found.hops] == [GW, ISP, None, EDGE, APP]  # stops at the target's TTL
    assert all(len(h.rtt_us) == 2 for h in found.hops)
    assert found.hops[2].rtt_us == [None, None]
    assert all(r is not None for h in found.hops if h.address for r in h.rtt_us)
    roles = {k: v.address for k, v in classify_hops(found, GW).items()}
    assert roles == {"gateway": GW, "isp": ISP, "public": EDGE, "app-edge": APP, "anchor": EDGE}
    assert sorted(fake.sent_hops) == sorted(list(range(1, 9)) * 2)  # every TTL, twice
    assert fake.closed
    assert found.cost is not None and found.cost.max_rss_kb is None and found.cost.cpu_s is not None


@posix_loop
def test_foreign_replies_do_not_count() -> None:
    """Only other hosts' answers would reach the target's TTL: a trace that never does stays unreached."""
    fake = FakeXnuSocket([GW, ISP], target_silent=True)
    found = _run(fake, max_hops=6)
    assert found.reached is False
    assert [h.address for h in found.hops] == [GW, ISP]


@posix_loop
def test_unreachable_from_a_router_ends_the_path() -> None:
    found = _run(FakeXnuSocket([GW, ISP], dead_end=True), max_hops=6)
    assert found.error is None and found.reached is False
    assert [h.address for h in found.hops] == [GW, ISP, ISP]


@posix_loop
def test_linux_ping_socket_shape_reaches_the_target_but_sees_no_router() -> None:
    found = _run(FakeXnuSocket([GW, ISP], shape="linux"), max_hops=5)
    assert found.reached is True
    assert [h.address for h in found.hops] == [None, None, APP]


@posix_loop
def test_socket_refused_is_a_failed_trace_not_an_exception() -> None:
    def refuse(family: socket.AddressFamily) -> FakeXnuSocket:
        raise PermissionError(1, "Operation not permitted")

    found = asyncio.run(trace_macos.trace(APP, open_socket=refuse))
    assert found.reached is False and found.hops == []
    assert found.error is not None and "ICMP socket" in found.error


@posix_loop
def test_a_loop_without_add_reader_fails_the_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows' Proactor loop, emulated: the tracer says so instead of raising."""
    fake = FakeXnuSocket([GW])

    async def run() -> PathTrace:
        loop = asyncio.get_running_loop()

        def no_add_reader(*args: object) -> None:
            raise NotImplementedError

        monkeypatch.setattr(loop, "add_reader", no_add_reader)
        monkeypatch.setattr(loop, "remove_reader", no_add_reader)
        return await trace_macos.trace(APP, open_socket=lambda family: fake)

    found = asyncio.run(run())
    assert found.reached is False and found.error is not None and "add_reader" in found.error
    assert fake.closed and fake.sent_hops == []


@posix_loop
def test_tcp_method_is_refused_with_a_reason() -> None:
    found = asyncio.run(trace_macos.trace(APP, method="tcp", open_socket=lambda f: FakeXnuSocket([])))
    assert found.error is not None and "raw sockets" in found.error


# --- dispatch in tracer --------------------------------------------------------------------------


def test_backend_is_chosen_by_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracer._select_backend("linux") is None  # the scapy child, as before
    calls: list[tuple[str, dict]] = []

    async def fake_macos(target_ip: str, **kwargs: object) -> PathTrace:
        calls.append((target_ip, kwargs))
        return PathTrace(target_ip, "icmp", True, [], 1)

    monkeypatch.setattr(trace_macos, "trace", fake_macos)
    darwin = tracer._select_backend("darwin")
    assert darwin is not None
    asyncio.run(darwin("10.0.0.9", max_hops=5))
    assert calls == [("10.0.0.9", {"max_hops": 5})]


def test_missing_native_tracer_fails_the_trace_not_the_import(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> object:
        raise ImportError("No module named 'cxpulse.agent.path.trace_plan9'")

    monkeypatch.setitem(tracer._NATIVE_LOADERS, "plan9", missing)
    found = asyncio.run(tracer._select_backend("plan9")("10.0.0.9", method="icmp"))
    assert found.reached is False and found.error is not None and "plan9" in found.error


def test_trace_validates_before_any_backend_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []

    async def native(target_ip: str, **kwargs: object) -> PathTrace:
        calls.append(kwargs)
        return PathTrace(target_ip, "icmp", True, [], 1)

    monkeypatch.setattr(tracer, "_native_trace", native)
    with pytest.raises(ValueError):
        asyncio.run(tracer.trace("::1"))
    with pytest.raises(ValueError):
        asyncio.run(tracer.trace("10.0.0.9", max_hops=0))
    assert calls == []
    asyncio.run(tracer.trace("10.0.0.9", port=8443))
    assert calls == [
        {"port": 8443, "max_hops": 20, "method": "icmp", "timeout_s": 15.0, "probes": 2, "reply_timeout_s": 1.0}
    ]


# --- the same code over this Linux kernel's sockets ----------------------------------------------


@posix_loop
@pytest.mark.parametrize("method", ["icmp", "udp"])
def test_loopback_over_a_raw_socket(raw_icmp: None, loopback: str, method: str) -> None:
    found = asyncio.run(trace_macos.trace(loopback, method=method, max_hops=4))
    assert found.error is None, found.error
    assert found.reached is True
    assert [h.address for h in found.hops] == [loopback]
    assert all(r is not None and 0 <= r < 1_000_000 for r in found.hops[0].rtt_us)


def _lab_path(lab: Lab, tmp_path: object) -> NetPath:
    path = NetPath(tmp_path, lab=lab)  # type: ignore[arg-type]
    path.__enter__()
    for host in path.hosts.values():
        host.sysctl("net.ipv4.icmp_ratelimit", 0)  # several traces a second: no rate-limited answers
    return path


@pytest.mark.parametrize("method", ["icmp", "udp"])
def test_desk_gw_isp_app_over_raw_sockets(lab: Lab, tmp_path: object, raw_icmp: None, method: str) -> None:
    """xnu's datagram semantics (header, our identifier, errors as data) are Linux raw's: same result."""
    path = _lab_path(lab, tmp_path)
    got = path.desk.call(child.trace, path.hops.app, method, "default", path.hops.gateway)
    found = got["trace"]
    assert found["error"] is None and found["reached"] is True
    assert [h["address"] for h in found["hops"]] == path.hops.as_list()
    assert got["roles"] == {"gateway": 1, "isp": 2, "app-edge": 3, "anchor": 2}


def test_desk_gw_isp_app_over_a_linux_ping_socket(lab: Lab, tmp_path: object) -> None:
    """Unprivileged on Linux: the target's reply (no header, rewritten identifier) is matched, but
    routers' errors never arrive as data on a ping socket, so the hops stay silent. On xnu they do."""
    path = _lab_path(lab, tmp_path)
    path.desk.sysctl("net.ipv4.ping_group_range", PING_GROUP_ALL)
    got = path.desk.call(child.trace, path.hops.app, "icmp", "ping", path.hops.gateway, 0.5, as_user=NOBODY)
    found = got["trace"]
    assert found["error"] is None and found["reached"] is True
    assert [h["address"] for h in found["hops"]] == [None, None, path.hops.app]


def test_no_route_is_reported_not_raised(lab: Lab, raw_icmp: None) -> None:
    desk = lab.host("desk")  # only lo: the kernel refuses to pick a route for every probe
    found = desk.call(child.trace, "10.253.99.1")["trace"]
    assert found["reached"] is False and found["hops"] == []
    assert found["error"] is not None and "unreachable" in found["error"].lower()


# --- on a real Mac (the workflow's macos-latest job, unprivileged) -------------------------------


@native_macos
@pytest.mark.parametrize("method", ["icmp", "udp"])
def test_real_xnu_traces_loopback_without_root(method: str) -> None:
    assert os.geteuid() != 0  # the point: a desk's agent without admin rights
    found = asyncio.run(tracer.trace("127.0.0.1", method=method, max_hops=4))
    assert found.error is None, found.error
    assert found.reached is True and [h.address for h in found.hops] == ["127.0.0.1"]
    assert found.cost is not None and found.cost.max_rss_kb is None  # the in-process tracer ran, not the child
