"""Measured intervals under Windows' coarse monotonic clock, emulated on Linux.

Before Python 3.13, ``time.monotonic`` on Windows (and so the asyncio loop's clock) advances in
steps of the system timer, 15.625 ms by default; ``time.perf_counter`` does not. Here both
``time.monotonic`` and ``time.monotonic_ns`` are made to tick like that, and the voice and app
probes run against real loopback servers: a duration read from the coarse clock comes out as a
whole number of ticks (0 or 15.625 ms on loopback), one read from perf_counter does not.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from cxpulse.agent.probes.http import check_app
from cxpulse.agent.probes.voice import run_voice_probe
from cxpulse.collector.reflector import Reflector, derive_agent_key
from tests.agent.https_lab import AppServer

pytestmark = pytest.mark.timeout(30)

TICK_NS = 15_625_000  # 64 Hz: Windows' default timer resolution
TICK_US = TICK_NS // 1000
AGENT = "3f1c2a9e-desk-0001"
MASTER = bytes(range(32))


@pytest.fixture
def windows_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    real_ns = time.monotonic_ns

    def coarse_ns() -> int:
        return real_ns() // TICK_NS * TICK_NS

    monkeypatch.setattr(time, "monotonic_ns", coarse_ns)
    monkeypatch.setattr(time, "monotonic", lambda: coarse_ns() / 1e9)


def test_the_emulated_clock_is_coarse(windows_clock: None) -> None:
    assert all(time.monotonic_ns() % TICK_NS == 0 for _ in range(100))


def test_voice_rtt_is_not_quantised_to_the_timer_tick(windows_clock: None) -> None:
    key = derive_agent_key(MASTER, AGENT)

    async def main():
        refl = Reflector({AGENT: key}.get)
        await refl.start("127.0.0.1", 0)
        try:
            return await run_voice_probe(("127.0.0.1", refl.port), AGENT, key, duration_s=1.0)
        finally:
            await refl.stop()

    r = asyncio.run(main())
    assert (r.sent, r.received) == (50, 50), r
    # From the coarse clock every RTT would be 0 or one tick: a multiple of 15625 us.
    assert r.rtt_median_us % TICK_US != 0 and r.rtt_p95_us % TICK_US != 0, r


def test_app_check_phases_are_not_quantised_to_the_timer_tick(windows_clock: None) -> None:
    with AppServer(None) as server:
        r = asyncio.run(check_app("app", server.url("/"), 5.0))
    assert r.error is None, r
    for phase in ("dns_us", "connect_us", "ttfb_us", "total_us"):
        assert getattr(r, phase) % TICK_US != 0, (phase, r)
