"""Functions run inside a test namespace (Host.call): the agent's own RTT probe on a fixed schedule."""

from __future__ import annotations


def probe_series(address: str, count: int, interval_s: float, timeout_s: float = 1.0) -> list[int | None]:
    """``count`` RTTs (us, None = lost) by the agent's RttProbe, sent every ``interval_s`` without waiting."""
    import asyncio

    from cxpulse.agent.probes.base import Target
    from cxpulse.agent.probes.rtt import RttProbe

    async def run() -> list[int | None]:
        probe = RttProbe(["icmp_raw"])
        await probe.start()
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        try:
            for i in range(count):
                await asyncio.sleep(max(0.0, start + i * interval_s - loop.time()))
                tasks.append(asyncio.ensure_future(probe.measure(Target("app", address), timeout_s)))
            return [m.rtt_us for m in await asyncio.gather(*tasks)]
        finally:
            await probe.close()

    return asyncio.run(run())
