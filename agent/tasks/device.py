"""CPU, memory, NIC errors, interface kind, VPN and proxy, the desk's own traffic: what the PC adds.
Owns the ``device`` columns and device_pressure events; the readings are agent/device.py's.
Notes: docs/agent-tasks.md, "Notes per task module".
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from ..config import Running
from .base import Output, Pace, Shared

if TYPE_CHECKING:
    from ..device import DeviceCounters

log = logging.getLogger("cxpulse.agent")

BEST_SAVE_S = 600.0  # the link's best rates (device.save_best) written at most this often: a restart loses little


class DeviceTask:
    kind = "device"
    pace: Pace = "after"

    def __init__(self, shared: Shared):
        self.s = shared
        self.enabled = True
        self.wake = asyncio.Event()  # never set: nothing pushed changes what it reads
        self._counters: DeviceCounters | None = None
        self._best_path = os.path.join(shared.cfg.state_dir, "device_best.json")  # the link's best rates
        self._remembered: dict | None = None
        self._saved_at = 0.0

    def interval_s(self) -> float:
        return self.s.cfg.device_interval_s

    async def start(self) -> None:
        from ..device import load_best

        self._remembered, self._saved_at = load_best(self._best_path), time.monotonic()

    def reconfigured(self, old: Running, new: Running) -> None:
        pass

    async def close(self) -> None:
        pass

    async def collect(self, out: Output) -> None:
        from ..device import own_traffic_columns, read_device, save_best

        gateway = self.s.gateway
        try:
            snap, counters = read_device(
                self._counters,
                self.s.gateway_iface or None,
                gateway=gateway.host if gateway else "",
                remembered=self._remembered if self._counters is None else None,
            )
        except Exception:  # a reading that fails is skipped, the agent goes on
            log.debug("device reading failed", exc_info=True)
            return
        self._counters = counters
        if time.monotonic() - self._saved_at >= BEST_SAVE_S:
            self._saved_at = time.monotonic()
            try:
                save_best(self._best_path, counters)
            except OSError:
                log.debug("could not keep the link's best rates", exc_info=True)
        top = ", ".join(f"{n} {p:.0f}%" for n, p in snap.top_procs)[:128] or None
        values = {
            "cpu": round(snap.cpu_pct * 10),
            "mem": round(snap.mem_pct * 10),
            "top": top,
            "nicerr": snap.nic_errors,
            "if": snap.iface[:128] or None,
            "ifk": snap.iface_kind,
            "vpn": ",".join(snap.vpn)[:128] or None,
            "proxy": (snap.proxy or None) and snap.proxy[:128],
            **own_traffic_columns(snap),
        }
        out.row("device", "local", "device", "os", snap.ts_us, values)
        out.events(self.s.detector.observe_device(snap.ts_us, snap.cpu_pct, snap.mem_pct, top or ""))
