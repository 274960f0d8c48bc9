"""Windows path traces (IcmpSendEcho2Ex with a TTL) proven on Linux with the fake iphlpapi.

The fake (tests/agent/test_icmp_windows.py) writes each reply at the documented offsets of
ICMP_ECHO_REPLY; here it plays a network: which address answers a given TTL, with which status.
Every trace runs on a loop without add_reader, as Windows' Proactor loop is.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading

import pytest

from cxpulse.agent.path import trace_windows as tw
from cxpulse.agent.path.tracer import Hop, PathWatcher, classify_hops, path_signature
from cxpulse.agent.probes import icmp_windows as iw
from tests.agent.test_icmp_windows import FakeIphlpapi, Reply, run

pytestmark = pytest.mark.timeout(20)

GATEWAY, ISP, TARGET = "192.168.1.1", "100.64.0.1", "203.0.113.10"


def network(routers: list[str | None], target_at: int | None):
    """TTL n < target_at: routers[n-1] says "TTL expired" (None: silent); from target_at on, the target replies."""

    def answer(dst: str, ttl: int | None, timeout_ms: int) -> Reply | int:
        assert dst == TARGET and ttl is not None
        if target_at is not None and ttl >= target_at:
            return Reply(iw.IP_SUCCESS, dst, 9)
        router = routers[ttl - 1] if ttl <= len(routers) else None
        if router is None:
            return iw.IP_REQ_TIMED_OUT
        return Reply(iw.IP_TTL_EXPIRED_TRANSIT, router, ttl)

    return answer


def opener(dll: FakeIphlpapi, workers: int = tw.TRACE_WORKERS):
    return lambda: iw.IcmpEchoPinger(socket.AF_INET, dll=dll, max_workers=workers)


def test_four_hop_path_with_a_silent_hop() -> None:
    dll = FakeIphlpapi(network([GATEWAY, ISP, None], target_at=4))
    result = run(tw.trace(TARGET, open_pinger=opener(dll)))
    assert result.error is None and result.reached and result.method == "icmp"
    assert [(h.ttl, h.address) for h in result.hops] == [(1, GATEWAY), (2, ISP), (3, None), (4, TARGET)]
    assert result.hops[2] == Hop(3, None, [None, None])
    for hop in (result.hops[0], result.hops[1], result.hops[3]):
        assert len(hop.rtt_us) == 2 and all(r is not None and r >= 0 for r in hop.rtt_us)
    assert result.hops[1].rtt_us[0] <= 2_999  # the kernel said 2 ms: the bound holds
    assert path_signature(result) == (GATEWAY, ISP, "*", TARGET)
    roles = classify_hops(result, GATEWAY)
    assert roles["gateway"].ttl == 1 and roles["isp"].ttl == 2 and roles["app-edge"].ttl == 4
    assert "public" not in roles  # 100.64/10 is carrier-grade NAT, not the internet
    # Every TTL up to the target got both probes; sending stopped soon after the target answered.
    ttls = [c["ttl"] for c in dll.calls]
    assert sorted(t for t in ttls if t <= 4) == [1, 1, 2, 2, 3, 3, 4, 4]
    assert len(ttls) < 2 * 20 and max(ttls) < 20
    assert all(c["timeout_ms"] <= 1000 for c in dll.calls)
    assert result.cost is not None and result.cost.cpu_s is None
    assert not dll.open


def test_a_target_that_never_answers() -> None:
    dll = FakeIphlpapi(network([GATEWAY, ISP], target_at=None))
    result = run(tw.trace(TARGET, max_hops=10, open_pinger=opener(dll)))
    assert result.error is None and not result.reached
    assert [h.address for h in result.hops] == [GATEWAY, ISP]  # trailing silence is where the path went dark
    assert len(dll.calls) == 2 * 10  # every TTL, both rounds: no end was found
    assert classify_hops(result, GATEWAY)["anchor"].address == ISP


def test_an_unreachable_from_a_router_ends_the_path_unreached() -> None:
    def answer(dst: str, ttl: int | None, timeout_ms: int) -> Reply:
        if ttl == 1:
            return Reply(iw.IP_TTL_EXPIRED_TRANSIT, GATEWAY)
        return Reply(iw.IP_DEST_NET_UNREACHABLE, ISP)

    result = run(tw.trace(TARGET, open_pinger=opener(FakeIphlpapi(answer))))
    assert not result.reached and result.error is None
    assert [h.address for h in result.hops] == [GATEWAY, ISP]


@pytest.mark.parametrize("create", [False, True], ids=["at-send", "at-create"])
def test_access_denied_is_an_error_not_an_exception(create: bool) -> None:
    dll = FakeIphlpapi(
        lambda dst, ttl, t: iw.ERROR_ACCESS_DENIED, create_error=iw.ERROR_ACCESS_DENIED if create else None
    )
    result = run(tw.trace(TARGET, open_pinger=opener(dll)))
    assert not result.reached and result.hops == []
    assert result.error is not None and "access denied (5)" in result.error
    assert len(dll.calls) <= tw.TRACE_WORKERS  # stopped at the first answer, not after every TTL


def test_no_network_at_all_is_an_error() -> None:
    dll = FakeIphlpapi(lambda dst, ttl, t: iw.IP_GENERAL_FAILURE)
    result = run(tw.trace(TARGET, max_hops=5, open_pinger=opener(dll)))
    assert result.hops == [] and result.error is not None and "general failure" in result.error


def test_the_whole_trace_is_bounded_by_timeout_s() -> None:
    gate = threading.Event()
    dll = FakeIphlpapi(network([GATEWAY], target_at=None), gate=gate)
    try:
        result = run(tw.trace(TARGET, timeout_s=0.3, reply_timeout_s=0.2, open_pinger=opener(dll, 2)))
    finally:
        gate.set()
    assert result.error == "trace stopped after 0.3 s"
    assert len(dll.calls) <= 2  # the two workers were stuck: nothing else was sent


def test_tcp_and_udp_need_raw_sockets_on_windows() -> None:
    dll = FakeIphlpapi(network([GATEWAY], target_at=2))
    result = run(tw.trace(TARGET, method="tcp", open_pinger=opener(dll)))
    assert result.method == "tcp" and not result.reached and "ICMP echo only" in (result.error or "")
    assert dll.calls == [] and dll.created == 0


def test_bad_arguments_raise_at_once() -> None:
    with pytest.raises(ValueError):
        run(tw.trace(TARGET, method="carrier-pigeon"))
    with pytest.raises(ValueError):
        run(tw.trace("2001:db8::1"))
    with pytest.raises(ValueError):
        run(tw.trace(TARGET, max_hops=0))


def test_an_isp_reroute_is_a_path_change_at_hop_two() -> None:
    watcher = PathWatcher()
    first = run(tw.trace(TARGET, open_pinger=opener(FakeIphlpapi(network([GATEWAY, ISP, "198.51.100.1"], 4)))))
    rerouted = FakeIphlpapi(network([GATEWAY, "100.64.0.9", "198.51.100.1"], 4))
    second = run(tw.trace(TARGET, open_pinger=opener(rerouted)))
    assert watcher.observe(first) is None
    change = watcher.observe(second)
    assert change is not None and change.first_ttl == 2
    assert change.old_signature[1] == ISP and change.new_signature[1] == "100.64.0.9"


@pytest.mark.skipif(
    os.environ.get("CXPULSE_NATIVE_OS") != "1" or sys.platform != "win32",
    reason="the real iphlpapi: the agent-tests job on windows-latest (CXPULSE_NATIVE_OS=1)",
)
def test_real_trace_to_loopback_on_windows() -> None:
    result = asyncio.run(tw.trace("127.0.0.1", max_hops=3, reply_timeout_s=1.0))  # the Proactor loop
    assert result.error is None and result.reached
    assert result.hops[0].address == "127.0.0.1"
