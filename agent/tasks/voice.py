"""A short 20 ms UDP stream through the collector's reflector every voice_interval_s (loss, jitter, bursts).
Owns the ``voice`` columns; waits for the reflector and key the collector pushes.
Notes: docs/agent-tasks.md, "Notes per task module".
"""

from __future__ import annotations

import asyncio

from ..config import Running
from .base import Output, Pace, Shared


class VoiceTask:
    kind = "voice"
    pace: Pace = "after"

    def __init__(self, shared: Shared):
        self.s = shared
        self.enabled = True
        self.wake = asyncio.Event()

    def interval_s(self) -> float:
        return self.s.cfg.voice_interval_s

    async def start(self) -> None:
        pass

    def reconfigured(self, old: Running, new: Running) -> None:
        if old.reflector is None and new.reflector is not None:
            self.wake.set()  # first run at once, then on the cadence

    async def close(self) -> None:
        pass

    async def collect(self, out: Output) -> None:
        from ..probes.voice import run_voice_probe

        reflector = self.s.running.reflector
        if reflector is None:
            return
        r = await run_voice_probe(
            reflector, self.s.agent_id, self.s.running.reflector_key, duration_s=self.s.cfg.voice_duration_s
        )
        values = {
            "sent": r.sent,
            "recv": r.received,
            "dup": r.duplicates,
            "reord": r.reordered,
            "rtt": r.rtt_median_us,
            "rtt95": r.rtt_p95_us,
            "jit": r.jitter_us,
            "loss": round(r.loss_pct * 10) if r.loss_pct is not None else None,
            "burst": round(r.burst_loss_max_pct * 10) if r.burst_loss_max_pct is not None else None,
            "run": r.max_loss_run,
            "err": (r.error or None) and r.error[:128],
        }
        out.row("reflector", r.address or reflector[0], "voice", "udp_reflect", r.ts_us, values)
        self.s.stats.voice_runs += 1
