"""Windows ICMP echo (iphlpapi) proven on Linux: documented layouts, a fake DLL, a loop without add_reader.

No Windows machine exists here. So: every structure's size and offsets are asserted against the
documented x64 values (literals below, with the header they come from); a fake iphlpapi object
writes its replies into the caller's buffer at those documented byte offsets with ``struct``,
independently of the ctypes classes under test; and every test runs on an event loop whose
``add_reader`` raises NotImplementedError, as the Proactor loop (Windows' default) does.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from cxpulse.agent.probes import icmp_windows as iw
from cxpulse.agent.probes import rtt
from cxpulse.agent.probes.base import Target
from cxpulse.agent.probes.icmp import IcmpPinger
from cxpulse.agent.probes.rtt import RttProbe
from cxpulse.v1.payload import METHOD_ICMP_DGRAM, METHOD_ICMP_RAW

pytestmark = pytest.mark.timeout(20)
x64 = pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="documented sizes are the x64 ones")

T = TypeVar("T")

# Documented x64 values (ipexport.h / ws2ipdef.h / wdm.h; learn.microsoft.com "ICMP_ECHO_REPLY structure",
# "IP_OPTION_INFORMATION structure", "ICMPV6_ECHO_REPLY_LH structure", "IPV6_ADDRESS_EX structure").
# ICMP_ECHO_REPLY: Address 0, Status 4, RoundTripTime 8, DataSize 12, Reserved 14, Data 16, Options 24
ECHO_REPLY_SIZE = 40
OPTION_INFORMATION_SIZE = 16  # IP_OPTION_INFORMATION: Ttl 0, Tos 1, Flags 2, OptionsSize 3, OptionsData 8
IPV6_ADDRESS_EX_SIZE = 26  # declared between pshpack1.h and poppack.h: packed
ECHO6_REPLY_SIZE = 36  # ICMPV6_ECHO_REPLY_LH: Address 0 (26 bytes), Status 28, RoundTripTime 32
SOCKADDR_IN6_SIZE = 28  # family 0, port 2, flowinfo 4, addr 8, scope_id 24
IO_STATUS_BLOCK_SIZE = 16  # union { NTSTATUS; PVOID } + ULONG_PTR
AF_INET6_WINDOWS = 23


class ProactorLikeLoop(asyncio.SelectorEventLoop):
    """What matters of Windows' default loop here: no add_reader/remove_reader."""

    def add_reader(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("no add_reader on this loop (as on the Proactor)")

    def remove_reader(self, *args: Any, **kwargs: Any) -> bool:
        raise NotImplementedError("no remove_reader on this loop (as on the Proactor)")


def run(coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=ProactorLikeLoop) as runner:
        return runner.run(coro)


@dataclass(frozen=True)
class Reply:
    """What the fake's network answers: a reply structure with this status, from this address.
    ``zero_return`` writes the structure but returns 0 with GetLastError = status, a variant
    of how a router's "TTL expired" comes back."""

    status: int
    address: str
    rtt_ms: int = 0
    zero_return: bool = False


Responder = Callable[[str, "int | None", int], "Reply | int"]


class FakeIphlpapi:
    """iphlpapi.dll's ICMP functions, in Python. ``responder(dst, ttl, timeout_ms)`` gives a Reply,
    or an int: the call returns 0 and GetLastError gives that int (timeout, access denied...).

    It checks what the real DLL needs to see: synchronous calls (no event, no APC), source "any",
    a reply buffer of at least the documented size, the TTL byte at offset 0 of the options.
    """

    def __init__(
        self, responder: Responder, *, create_error: int | None = None, gate: threading.Event | None = None
    ) -> None:
        self.responder = responder
        self.create_error = create_error
        self.gate = gate
        self.lock = threading.Lock()
        self.open: set[int] = set()
        self.created = 0
        self.active = 0
        self.peak = 0
        self.calls: list[dict[str, Any]] = []
        self._next = 0x100
        self._tls = threading.local()

    # -- handles
    def _create(self) -> int:
        if self.create_error is not None:
            self._tls.error = self.create_error
            return ctypes.c_void_p(-1).value  # INVALID_HANDLE_VALUE
        with self.lock:
            self._next += 4
            self.open.add(self._next)
            self.created += 1
            return self._next

    def IcmpCreateFile(self) -> int:
        return self._create()

    def Icmp6CreateFile(self) -> int:
        return self._create()

    def IcmpCloseHandle(self, handle: int) -> int:
        with self.lock:
            assert handle in self.open, "closing a handle that is not open"
            self.open.remove(handle)
        return 1

    def last_error(self) -> int:
        return getattr(self._tls, "error", 0)

    # -- echo
    def IcmpSendEcho2Ex(
        self,
        handle: int,
        event: Any,
        apc: Any,
        ctx: Any,
        source: int,
        destination: int,
        data: Any,
        size: int,
        options: Any,
        reply: Any,
        reply_size: int,
        timeout_ms: int,
    ) -> int:
        assert source == 0, "source must be 0 (any)"
        dst = socket.inet_ntoa(destination.to_bytes(4, "little"))  # x64 is little-endian: memory order
        return self._echo(handle, event, apc, dst, data, size, options, reply, reply_size, timeout_ms, v4=True)

    def Icmp6SendEcho2(
        self,
        handle: int,
        event: Any,
        apc: Any,
        ctx: Any,
        source: Any,
        destination: Any,
        data: Any,
        size: int,
        options: Any,
        reply: Any,
        reply_size: int,
        timeout_ms: int,
    ) -> int:
        src, dst = bytes(source), bytes(destination)
        assert len(src) == len(dst) == SOCKADDR_IN6_SIZE
        assert struct.unpack_from("<H", src, 0)[0] == AF_INET6_WINDOWS == struct.unpack_from("<H", dst, 0)[0]
        assert src[8:24] == bytes(16), "source must be :: (any)"
        address = socket.inet_ntop(socket.AF_INET6, dst[8:24])
        return self._echo(handle, event, apc, address, data, size, options, reply, reply_size, timeout_ms, v4=False)

    def _echo(
        self,
        handle: int,
        event: Any,
        apc: Any,
        dst: str,
        data: Any,
        size: int,
        options: Any,
        reply: Any,
        reply_size: int,
        timeout_ms: int,
        *,
        v4: bool,
    ) -> int:
        assert handle in self.open
        assert event is None and apc is None, "the pinger relies on the synchronous form"
        assert bytes(data)[:size] and len(bytes(data)) == size
        ttl = None if options is None else bytes(options)[0]  # Ttl: offset 0
        if options is not None:
            assert len(bytes(options)) == OPTION_INFORMATION_SIZE
        head = ECHO_REPLY_SIZE if v4 else ECHO6_REPLY_SIZE
        with self.lock:
            self.calls.append({"dst": dst, "ttl": ttl, "timeout_ms": timeout_ms, "reply_size": reply_size})
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if self.gate is not None:
                assert self.gate.wait(10), "test never opened the gate"
            if reply_size < head + size + 8 + IO_STATUS_BLOCK_SIZE:
                self._tls.error = iw.IP_BUF_TOO_SMALL
                return 0
            outcome = self.responder(dst, ttl, timeout_ms)
            if isinstance(outcome, int):
                self._tls.error = outcome
                return 0
            if v4:
                struct.pack_into(
                    "<4sIIHH", reply, 0, socket.inet_aton(outcome.address), outcome.status, outcome.rtt_ms, size, 0
                )
                struct.pack_into("<BBBB", reply, 24, 64, 0, 0, 0)  # the reply's own options: Ttl 64
            else:
                struct.pack_into("<HI16sI", reply, 0, 0, 0, socket.inet_pton(socket.AF_INET6, outcome.address), 0)
                struct.pack_into("<II", reply, 28, outcome.status, outcome.rtt_ms)
            if outcome.zero_return:
                self._tls.error = outcome.status
                return 0
            return 1
        finally:
            with self.lock:
                self.active -= 1


def answer_all(dst: str, ttl: int | None, timeout_ms: int) -> Reply:
    return Reply(iw.IP_SUCCESS, dst, 0)


# -- layouts ------------------------------------------------------------------------------------


def _offsets(cls: type[ctypes.Structure]) -> dict[str, int]:
    return {name: getattr(cls, name).offset for name, *_ in cls._fields_}


@x64
def test_structures_match_the_documented_x64_layout() -> None:
    assert ctypes.sizeof(iw.ICMP_ECHO_REPLY) == ECHO_REPLY_SIZE
    assert _offsets(iw.ICMP_ECHO_REPLY) == {
        "Address": 0,
        "Status": 4,
        "RoundTripTime": 8,
        "DataSize": 12,
        "Reserved": 14,
        "Data": 16,
        "Options": 24,
    }
    assert ctypes.sizeof(iw.IP_OPTION_INFORMATION) == OPTION_INFORMATION_SIZE
    assert _offsets(iw.IP_OPTION_INFORMATION) == {"Ttl": 0, "Tos": 1, "Flags": 2, "OptionsSize": 3, "OptionsData": 8}
    assert ctypes.sizeof(iw.IPV6_ADDRESS_EX) == IPV6_ADDRESS_EX_SIZE
    assert _offsets(iw.IPV6_ADDRESS_EX) == {"sin6_port": 0, "sin6_flowinfo": 2, "sin6_addr": 6, "sin6_scope_id": 22}
    assert ctypes.sizeof(iw.ICMPV6_ECHO_REPLY) == ECHO6_REPLY_SIZE
    assert _offsets(iw.ICMPV6_ECHO_REPLY) == {"Address": 0, "Status": 28, "RoundTripTime": 32}
    assert ctypes.sizeof(iw.SOCKADDR_IN6) == SOCKADDR_IN6_SIZE
    assert _offsets(iw.SOCKADDR_IN6) == {
        "sin6_family": 0,
        "sin6_port": 2,
        "sin6_flowinfo": 4,
        "sin6_addr": 8,
        "sin6_scope_id": 24,
    }
    assert ctypes.sizeof(iw.IO_STATUS_BLOCK) == IO_STATUS_BLOCK_SIZE


@x64
def test_reply_buffer_is_at_least_the_documented_size() -> None:
    # IcmpSendEcho2Ex: one ICMP_ECHO_REPLY + RequestSize + 8 (an ICMP error) + an IO_STATUS_BLOCK.
    assert iw.reply_buffer_size(socket.AF_INET, 32) >= 40 + 32 + 8 + 16
    assert iw.reply_buffer_size(socket.AF_INET6, 32) >= 36 + 32 + 8 + 16


def test_the_round_trip_is_bounded_by_the_kernels_milliseconds() -> None:
    assert iw._bounded_rtt_us(312_000, 0) == 312  # sub-millisecond: ours, in microseconds
    assert iw._bounded_rtt_us(7_400_000, 0) == 999  # we woke 7 ms late; the kernel says < 1 ms
    assert iw._bounded_rtt_us(12_345_000, 12) == 12_345
    assert iw._bounded_rtt_us(20_000_000, 12) == 12_999


# -- the pinger on a loop without add_reader ---------------------------------------------------


def test_echo_reply_is_timed_and_sent_as_documented() -> None:
    dll = FakeIphlpapi(lambda dst, ttl, t: Reply(iw.IP_SUCCESS, dst, 3))

    async def go() -> tuple[int | None, iw.EchoResult]:
        pinger = iw.IcmpEchoPinger(socket.AF_INET, dll=dll)
        try:
            return await pinger.ping(("192.0.2.7", 0), 1.0), await pinger.echo("192.0.2.7")
        finally:
            pinger.close()

    rtt_us, result = run(go())
    assert isinstance(rtt_us, int) and 0 <= rtt_us <= 3_999
    assert result.status == iw.IP_SUCCESS and result.address == "192.0.2.7" and result.rtt_us is not None
    call = dll.calls[0]
    assert call["dst"] == "192.0.2.7" and call["ttl"] is None
    assert 0 < call["timeout_ms"] <= 1000
    assert not dll.open, "close() must close every handle"


def test_ttl_expired_names_the_router() -> None:
    def network(dst: str, ttl: int | None, timeout_ms: int) -> Reply:
        return Reply(iw.IP_TTL_EXPIRED_TRANSIT, "10.9.8.1", 2) if ttl == 3 else Reply(iw.IP_SUCCESS, dst)

    dll = FakeIphlpapi(network)

    async def go() -> tuple[iw.EchoResult, int | None]:
        pinger = iw.IcmpEchoPinger(socket.AF_INET, dll=dll)
        try:
            return await pinger.echo("203.0.113.5", 3, 1.0), await pinger.ping(("203.0.113.5",), 1.0)
        finally:
            pinger.close()

    hop, rtt_us = run(go())
    assert hop.status == iw.IP_TTL_EXPIRED_TRANSIT and hop.address == "10.9.8.1"
    assert hop.rtt_us is not None and hop.rtt_us <= 2_999
    assert dll.calls[0]["ttl"] == 3
    assert rtt_us is not None  # the later plain ping got its echo reply


def test_ttl_expired_through_a_zero_return_keeps_the_router() -> None:
    dll = FakeIphlpapi(lambda dst, ttl, t: Reply(iw.IP_TTL_EXPIRED_TRANSIT, "10.9.8.1", 0, zero_return=True))

    async def go() -> iw.EchoResult:
        pinger = iw.IcmpEchoPinger(socket.AF_INET, dll=dll)
        try:
            return await pinger.echo("203.0.113.5", 1, 1.0)
        finally:
            pinger.close()

    result = run(go())
    assert (result.status, result.address) == (iw.IP_TTL_EXPIRED_TRANSIT, "10.9.8.1")


@pytest.mark.parametrize(
    "error", [iw.IP_REQ_TIMED_OUT, iw.ERROR_ACCESS_DENIED, iw.IP_BUF_TOO_SMALL, iw.IP_GENERAL_FAILURE]
)
def test_a_zero_return_is_a_loss_with_the_last_error(error: int) -> None:
    dll = FakeIphlpapi(lambda dst, ttl, t: error)

    async def go() -> tuple[int | None, iw.EchoResult]:
        pinger = iw.IcmpEchoPinger(socket.AF_INET, dll=dll)
        try:
            return await pinger.ping(("192.0.2.9", 0), 0.5), await pinger.echo("192.0.2.9", 5, 0.5)
        finally:
            pinger.close()

    rtt_us, result = run(go())
    assert rtt_us is None
    assert result == iw.EchoResult(error, None, None)


def test_a_reply_buffer_below_the_documented_size_is_refused_by_the_fake() -> None:
    """The fake enforces the documented minimum, so the size the pinger passes is proven enough."""
    dll = FakeIphlpapi(answer_all)
    pinger = iw.IcmpEchoPinger(socket.AF_INET, dll=dll)
    pinger._reply_size = ECHO_REPLY_SIZE + 8  # pretend we forgot the request data and the IO_STATUS_BLOCK
    try:
        result = run(pinger.echo("192.0.2.9", None, 0.5))
    finally:
        pinger.close()
    assert result.status == iw.IP_BUF_TOO_SMALL and result.address is None


def test_access_denied_at_create_fails_construction() -> None:
    dll = FakeIphlpapi(answer_all, create_error=iw.ERROR_ACCESS_DENIED)
    with pytest.raises(OSError) as info:
        iw.IcmpEchoPinger(socket.AF_INET, dll=dll)
    assert info.value.errno == iw.ERROR_ACCESS_DENIED


def test_ipv6_echo_reply() -> None:
    dll = FakeIphlpapi(lambda dst, ttl, t: Reply(iw.IP_SUCCESS, dst, 1))

    async def go() -> tuple[int | None, iw.EchoResult]:
        pinger = iw.IcmpEchoPinger(socket.AF_INET6, dll=dll)
        try:
            return (await pinger.ping(("2001:db8::7", 0, 0, 0), 1.0), await pinger.echo(("fe80::1%3", 0, 0, 3), 2, 1.0))
        finally:
            pinger.close()

    rtt_us, result = run(go())
    assert rtt_us is not None and rtt_us <= 1_999
    assert result.address == "fe80::1" and result.status == iw.IP_SUCCESS
    assert [c["dst"] for c in dll.calls] == ["2001:db8::7", "fe80::1"]
    assert dll.calls[1]["ttl"] == 2


def test_concurrent_pings_never_exceed_the_pool() -> None:
    gate = threading.Event()
    dll = FakeIphlpapi(answer_all, gate=gate)
    workers, targets = 4, 30

    async def go() -> list[int | None]:
        pinger = iw.IcmpEchoPinger(socket.AF_INET, dll=dll, max_workers=workers)
        try:
            jobs = [asyncio.ensure_future(pinger.ping((f"192.0.2.{i + 1}", 0), 10.0)) for i in range(targets)]
            while dll.active < workers:  # the pool fills up...
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # ...and given time, nothing more gets in
            held = dll.active
            gate.set()
            results = await asyncio.gather(*jobs)
            assert held == workers
            return results
        finally:
            gate.set()
            pinger.close()

    results = run(go())
    assert all(r is not None for r in results)
    assert len(dll.calls) == targets
    assert dll.peak == workers
    assert dll.created <= workers, "one ICMP handle per worker at most"
    assert not dll.open


def test_close_turns_waiting_requests_into_losses() -> None:
    gate = threading.Event()
    dll = FakeIphlpapi(answer_all, gate=gate)

    async def go() -> list[Any]:
        pinger = iw.IcmpEchoPinger(socket.AF_INET, dll=dll, max_workers=1)
        jobs = [asyncio.ensure_future(pinger.ping(("192.0.2.1", 0), 5.0)) for _ in range(3)]
        while dll.active < 1:
            await asyncio.sleep(0.01)
        pinger.close()
        gate.set()
        results = await asyncio.gather(*jobs, return_exceptions=True)
        results.append(await pinger.ping(("192.0.2.1", 0), 1.0))
        return results

    first, *rest = run(go())
    assert isinstance(first, int)  # was already on the wire
    assert rest == [None, None, None]  # queued ones and one after close: lost, not CancelledError
    assert not dll.open


def test_without_windows_the_dll_is_not_there() -> None:
    if sys.platform == "win32":
        pytest.skip("this is Windows")
    with pytest.raises(OSError):
        iw.IcmpEchoPinger(socket.AF_INET)


# -- the RTT probe's chain on a Windows-like desk ----------------------------------------------


def test_rtt_chain_on_windows_takes_iphlpapi_for_unprivileged_echo() -> None:
    assert rtt._pingers_for("win32") == {METHOD_ICMP_RAW: IcmpPinger, METHOD_ICMP_DGRAM: iw.IcmpEchoPinger}
    assert rtt._pingers_for("linux") == {METHOD_ICMP_RAW: IcmpPinger, METHOD_ICMP_DGRAM: IcmpPinger}
    assert rtt._pingers_for("darwin") == rtt._pingers_for("linux")


def test_rtt_probe_falls_back_to_iphlpapi_on_a_loop_without_add_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Raw ICMP (root here) fails for want of add_reader, as on the Proactor; the chain then takes
    the iphlpapi pinger for icmp_dgram, as rtt.py's Windows backend table does."""
    dll = FakeIphlpapi(lambda dst, ttl, t: Reply(iw.IP_SUCCESS, dst, 0))
    monkeypatch.setitem(
        rtt._PINGERS, METHOD_ICMP_DGRAM, lambda family, method: iw.IcmpEchoPinger(family, method, dll=dll)
    )

    async def go() -> list[Any]:
        probe = RttProbe([METHOD_ICMP_RAW, METHOD_ICMP_DGRAM])
        await probe.start()
        try:
            return [probe.method, *[await probe.measure(Target("gw", "192.0.2.1"), 1.0) for _ in range(3)]]
        finally:
            await probe.close()

    method, *samples = run(go())
    assert method == METHOD_ICMP_DGRAM
    assert all(m.method == METHOD_ICMP_DGRAM and m.rtt_us is not None for m in samples)
    assert [c["dst"] for c in dll.calls] == ["192.0.2.1"] * 3
    assert not dll.open


# -- the real DLL, on a Windows runner only ----------------------------------------------------

windows_only = pytest.mark.skipif(
    os.environ.get("CXPULSE_NATIVE_OS") != "1" or sys.platform != "win32",
    reason="the real iphlpapi: the agent-tests job on windows-latest (CXPULSE_NATIVE_OS=1)",
)


@windows_only
def test_real_iphlpapi_echo_to_loopback() -> None:
    async def go() -> tuple[int | None, iw.EchoResult]:
        pinger = iw.IcmpEchoPinger(socket.AF_INET)
        try:
            return await pinger.ping(("127.0.0.1", 0), 2.0), await pinger.echo("127.0.0.1", 1, 2.0)
        finally:
            pinger.close()

    rtt_us, result = asyncio.run(go())  # the default loop: the Proactor
    assert rtt_us is not None and 0 <= rtt_us < 1_000_000
    assert result.status == iw.IP_SUCCESS and result.address == "127.0.0.1"


@windows_only
def test_real_rtt_probe_uses_iphlpapi_on_the_proactor() -> None:
    async def go() -> list[Any]:
        probe = RttProbe()
        await probe.start()
        try:
            return [probe.method, await probe.measure(Target("lo", "127.0.0.1"), 2.0)]
        finally:
            await probe.close()

    method, sample = asyncio.run(go())
    assert method == METHOD_ICMP_DGRAM and sample.rtt_us is not None
