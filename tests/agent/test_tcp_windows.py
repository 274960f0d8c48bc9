"""Windows TCP connect timing proven on Linux: the ioctl's documented layout, a fake ws2_32, real loopback.

A fake ws2_32 checks what Windows would be handed (control code, input buffer bytes, no output
buffer, no overlapped); tcp.tcp_connect_rtt is then run against loopback with the Windows
preparation swapped in, so the refusal path is the real one.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from cxpulse.agent.probes import tcp
from cxpulse.agent.probes import tcp_windows as tw

pytestmark = pytest.mark.timeout(20)
NATIVE_WINDOWS = os.environ.get("CXPULSE_NATIVE_OS") == "1" and sys.platform == "win32"

# mstcpip.h / ws2def.h (learn.microsoft.com "TCP_INITIAL_RTO_PARAMETERS structure", "SIO_TCP_INITIAL_RTO"):
# SIO_TCP_INITIAL_RTO = _WSAIOW(IOC_VENDOR, 17), IOC_IN = 0x80000000, IOC_VENDOR = 0x18000000.
SIO_TCP_INITIAL_RTO = 0x80000000 | 0x18000000 | 17
PARAMETERS_SIZE = 4  # USHORT Rtt (0), UCHAR MaxSynRetransmissions (2), one byte of padding
NO_SYN_RETRANSMISSIONS = 0xFE  # ((UCHAR)-2)
UNSPECIFIED_RTT = 0xFFFF  # ((USHORT)-1)
WSAEINVAL = 10022


class FakeWs2:
    """ws2_32's WSAIoctl: records the call as Windows would receive it, answers ``rc``."""

    def __init__(self, rc: int = 0, error: int = 0) -> None:
        self.rc, self.error = rc, error
        self.calls: list[dict[str, Any]] = []

    def WSAIoctl(
        self,
        s: int,
        code: int,
        in_buf: int,
        in_len: int,
        out_buf: Any,
        out_len: int,
        returned: Any,
        overlapped: Any,
        completion: Any,
    ) -> int:
        with socket.fromfd(s, socket.AF_INET, socket.SOCK_STREAM) as dup:
            bound_port = dup.getsockname()[1]
        self.calls.append(
            {
                "socket": s,
                "code": code,
                "in": ctypes.string_at(in_buf, in_len),
                "out": out_buf,
                "out_len": out_len,
                "overlapped": overlapped,
                "completion": completion,
                "bound_port": bound_port,
            }
        )
        return self.rc

    def last_error(self) -> int:
        return self.error


def test_parameters_match_the_documented_layout() -> None:
    assert tw.SIO_TCP_INITIAL_RTO == SIO_TCP_INITIAL_RTO == 0x98000011
    assert ctypes.sizeof(tw.TCP_INITIAL_RTO_PARAMETERS) == PARAMETERS_SIZE
    assert tw.TCP_INITIAL_RTO_PARAMETERS.Rtt.offset == 0
    assert tw.TCP_INITIAL_RTO_PARAMETERS.MaxSynRetransmissions.offset == 2
    assert (tw.TCP_INITIAL_RTO_NO_SYN_RETRANSMISSIONS, tw.TCP_INITIAL_RTO_UNSPECIFIED_RTT) == (
        NO_SYN_RETRANSMISSIONS,
        UNSPECIFIED_RTT,
    )


def test_prepare_asks_for_no_syn_retransmission_on_a_bound_socket() -> None:
    ws2 = FakeWs2()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert tw.prepare(sock, ws2=ws2) is True
        fileno = sock.fileno()
    (call,) = ws2.calls
    assert call["socket"] == fileno
    assert call["code"] == SIO_TCP_INITIAL_RTO
    assert call["in"] == bytes([0xFF, 0xFF, NO_SYN_RETRANSMISSIONS, 0x00])  # Rtt LE, MaxSyn, padding
    assert (call["out"], call["out_len"], call["overlapped"], call["completion"]) == (None, 0, None, None)
    assert call["bound_port"] != 0, "bound before the ioctl, as the Proactor's ConnectEx path expects"


def test_prepare_reports_an_ioctl_this_windows_refuses() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert tw.prepare(sock, ws2=FakeWs2(rc=-1, error=WSAEINVAL)) is False


def test_without_windows_there_is_no_ws2_32() -> None:
    if sys.platform == "win32":
        pytest.skip("this is Windows")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert tw.prepare(sock) is False


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:  # bound, not listening: RST
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def _with_windows_prepare(monkeypatch: pytest.MonkeyPatch, ws2: FakeWs2) -> None:
    monkeypatch.setattr(tcp, "_prepare", lambda sock: tw.prepare(sock, ws2=ws2))


def test_a_refusal_is_an_answer_once_syn_retries_are_off(monkeypatch: pytest.MonkeyPatch, closed_port: int) -> None:
    """Here with the fake; on the Windows runner with the real ws2_32, where without the ioctl this
    refusal would take ~2 s and the 1 s timeout would report it lost."""
    ws2 = FakeWs2()
    if sys.platform == "win32":
        if not NATIVE_WINDOWS:  # the fake does not stop real Windows from retrying its SYN
            pytest.skip("on Windows this runs natively: the agent-tests job (CXPULSE_NATIVE_OS=1)")
    else:
        _with_windows_prepare(monkeypatch, ws2)
    rtt_us = asyncio.run(tcp.tcp_connect_rtt(socket.AF_INET, ("127.0.0.1", closed_port), 1.0))
    assert isinstance(rtt_us, int) and rtt_us >= 0
    assert len(ws2.calls) == (0 if sys.platform == "win32" else 1)


def test_a_refusal_is_lost_when_windows_would_have_retried(monkeypatch: pytest.MonkeyPatch, closed_port: int) -> None:
    """Without the ioctl the refusal's time would be Windows' ~2 s retry schedule: not a round trip."""
    _with_windows_prepare(monkeypatch, FakeWs2(rc=-1, error=WSAEINVAL))
    assert asyncio.run(tcp.tcp_connect_rtt(socket.AF_INET, ("127.0.0.1", closed_port), 1.0)) is None


def test_a_listener_is_timed_with_the_windows_preparation(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_windows_prepare(monkeypatch, FakeWs2(rc=-1, error=WSAEINVAL))  # even where the ioctl is refused
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        rtt_us = asyncio.run(tcp.tcp_connect_rtt(socket.AF_INET, server.getsockname(), 1.0))
    assert isinstance(rtt_us, int) and rtt_us >= 0


def test_the_windows_preparation_is_chosen_for_windows_only() -> None:
    assert tcp._preparer_for("win32") is tw.prepare
    assert tcp._preparer_for("linux") is tcp._preparer_for("darwin") is tcp._refusal_always_timed


def test_linux_and_macos_time_every_refusal() -> None:
    if sys.platform == "win32":
        pytest.skip("this is Windows")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert tcp._prepare(sock) is True
        assert sock.getsockname()[1] == 0, "nothing done to the socket off Windows"
