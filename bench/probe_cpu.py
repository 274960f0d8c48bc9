"""CPU per RTT sample of the agent's probe path, in this process, to loopback.

Why beside ``bench/footprint.py``: the whole-agent figure on this shared 2-core machine moves by
tens of percent with the neighbours' load, which hides a change of a few microseconds per sample.
Here the agent's own tick loop (``Agent._probe_loop`` -> ``_measure`` -> ``RttProbe`` -> raw ICMP
socket -> detector -> batcher) runs against three loopback addresses at a fast cadence for a fixed
number of ticks, and the process's CPU time (user + system, /proc via ``time.process_time``) is
divided by the samples taken. CPU-s per hour at 1 Hz and 3 targets follows by multiplication; the
loop's idle wake-ups between ticks are part of the figure (they are what the tick costs).

    .venv/bin/python -m bench.probe_cpu --ticks 2000 --interval 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time

TARGETS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


async def _run(ticks: int, interval_s: float) -> dict:
    from cxpulse.agent.config import AgentConfig
    from cxpulse.agent.probes.base import Target
    from cxpulse.agent.runner import Agent

    with tempfile.TemporaryDirectory() as state:
        cfg = AgentConfig(
            state_dir=state,
            collector="127.0.0.1:9",
            measure_gateway=False,
            trace_enabled=False,
            probe_interval_s=interval_s,
            targets=tuple(Target(f"t{i}", h) for i, h in enumerate(TARGETS)),
        )
        agent = Agent(cfg)
        agent.probe_interval_s = interval_s
        await agent.probe.start()
        stop = asyncio.Event()
        agent._stop = stop
        # warm the detector's baselines, then measure a fixed number of ticks
        loop = asyncio.get_running_loop()
        warm = asyncio.ensure_future(agent._probe_loop(stop))
        await asyncio.sleep(interval_s * 50)
        stop.set()
        await warm
        await asyncio.sleep(cfg.probe_timeout_s)
        stop = asyncio.Event()
        agent._stop = stop
        n0 = agent.stats.samples
        cpu0, wall0 = time.process_time(), loop.time()
        task = asyncio.ensure_future(agent._probe_loop(stop))
        while agent.stats.samples - n0 < ticks * len(TARGETS) and loop.time() - wall0 < ticks * interval_s * 5 + 10:
            await asyncio.sleep(interval_s)
        stop.set()
        await task
        if agent._probing:
            await asyncio.wait(agent._probing, timeout=cfg.probe_timeout_s + 1)
        cpu1, wall1 = time.process_time(), loop.time()
        samples = agent.stats.samples - n0
        method = agent.probe.method
        await agent.probe.close()
    per_sample_us = (cpu1 - cpu0) / max(1, samples) * 1e6
    return {
        "samples": samples,
        "lost": agent.stats.lost,
        "cpu_s": round(cpu1 - cpu0, 3),
        "wall_s": round(wall1 - wall0, 2),
        "cpu_us_per_sample": round(per_sample_us, 1),
        "cpu_s_per_hour_at_1hz_3_targets": round(per_sample_us * 3 * 3600 / 1e6, 3),
        "load": os.getloadavg()[0],
        "method": method,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=0.01)
    args = ap.parse_args(argv)
    print(json.dumps(asyncio.run(_run(args.ticks, args.interval))))


if __name__ == "__main__":
    main()
