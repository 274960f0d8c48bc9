"""RTT probe against loopback, in this process: raw ICMP and TCP connect, and the probe contract."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from cxpulse.agent.probes import Measurement, Target
from cxpulse.agent.probes.rtt import RttProbe
from cxpulse.v1.payload import METHOD_ICMP_RAW, METHOD_TCP_CONNECT

pytestmark = pytest.mark.timeout(20)


async def _measure_all(probe: RttProbe, targets: list[Target], timeout_s: float = 1.0) -> list[Measurement]:
    await probe.start()
    try:
        return [await probe.measure(t, timeout_s) for t in targets]
    finally:
        await probe.close()


def test_the_rtt_task_runs_the_rtt_probe(tmp_path) -> None:
    from cxpulse.agent.config import AgentConfig, Running
    from cxpulse.agent.detector import Detector
    from cxpulse.agent.tasks import REGISTRY, AgentStats, Shared

    shared = Shared(Running(AgentConfig(state_dir=str(tmp_path))), "a", Detector(), AgentStats())
    assert isinstance(REGISTRY["rtt"](shared).probe, RttProbe)
    assert RttProbe.kind == "rtt"


def test_unknown_method_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="rtt methods"):
        RttProbe(["icmp_raw", "carrier_pigeon"])
    with pytest.raises(ValueError):
        RttProbe([])


def test_raw_icmp_to_loopback(raw_icmp: None, loopback: str) -> None:
    before_us = time.time_ns() // 1000
    samples = asyncio.run(_measure_all(RttProbe([METHOD_ICMP_RAW]), [Target("lo", loopback)] * 3))
    after_us = time.time_ns() // 1000
    for m in samples:
        assert m.method == METHOD_ICMP_RAW
        assert m.target == "lo" and m.address == loopback
        assert isinstance(m.rtt_us, int) and 0 <= m.rtt_us < 1_000_000
        assert before_us <= m.ts_us <= after_us


def test_two_raw_pingers_each_get_their_own_replies(raw_icmp: None) -> None:
    """A raw socket sees every echo reply on the host; the identifier keeps two probes apart."""

    async def run() -> list[Measurement]:
        probes = [RttProbe([METHOD_ICMP_RAW]) for _ in range(2)]
        for p in probes:
            await p.start()
        try:
            jobs = [p.measure(Target(f"t{i}", "127.0.0.1"), 1.0) for p in probes for i in range(5)]
            return await asyncio.gather(*jobs)
        finally:
            for p in probes:
                await p.close()

    assert all(m.rtt_us is not None and m.method == METHOD_ICMP_RAW for m in asyncio.run(run()))


def test_tcp_connect_to_listening_port_sends_no_data(loopback: str) -> None:
    family = socket.AF_INET6 if ":" in loopback else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.bind((loopback, 0))
        server.listen()
        port = server.getsockname()[1]
        (m,) = asyncio.run(_measure_all(RttProbe([METHOD_TCP_CONNECT]), [Target("svc", loopback, port)]))
        assert m.method == METHOD_TCP_CONNECT and m.address == loopback
        assert isinstance(m.rtt_us, int) and 0 <= m.rtt_us < 1_000_000
        server.settimeout(2)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(2)
            try:
                data = conn.recv(64)
            except ConnectionResetError:  # the probe's abortive close
                data = b""
            assert data == b""


def test_tcp_connect_refused_counts_as_answered(loopback: str) -> None:
    """A RST comes from the host's TCP stack: the path was measured even though no one listens."""
    family = socket.AF_INET6 if ":" in loopback else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as holder:  # bound, not listening: port stays closed
        holder.bind((loopback, 0))
        port = holder.getsockname()[1]
        (m,) = asyncio.run(_measure_all(RttProbe([METHOD_TCP_CONNECT]), [Target("closed", loopback, port)]))
    assert m.method == METHOD_TCP_CONNECT
    assert isinstance(m.rtt_us, int) and 0 <= m.rtt_us < 1_000_000


def test_measure_never_raises() -> None:
    """Garbage in a target becomes a lost sample, not an exception in the agent's loop."""
    bad_port, no_host = asyncio.run(
        _measure_all(RttProbe([METHOD_TCP_CONNECT]), [Target("bad", "127.0.0.1", 70000), Target("empty", "")])
    )
    assert bad_port.rtt_us is None and bad_port.method == METHOD_TCP_CONNECT and bad_port.address == "127.0.0.1"
    assert no_host.rtt_us is None and no_host.address == ""


def test_measure_before_start_starts_the_probe() -> None:
    async def run() -> Measurement:
        probe = RttProbe([METHOD_TCP_CONNECT])
        try:
            return await probe.measure(Target("lo", "127.0.0.1", 9), 1.0)
        finally:
            await probe.close()

    assert asyncio.run(run()).method == METHOD_TCP_CONNECT


def test_target_can_force_tcp_connect_on_its_port(raw_icmp: None) -> None:
    """An app target is timed on its port even where ICMP is available."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    try:
        probe = RttProbe()
        forced, default = asyncio.run(
            _measure_all(
                probe, [Target("app", "127.0.0.1", port, method=METHOD_TCP_CONNECT), Target("lo", "127.0.0.1", port)]
            )
        )
        assert forced.method == METHOD_TCP_CONNECT and forced.rtt_us is not None
        assert default.method == METHOD_ICMP_RAW
    finally:
        server.close()
