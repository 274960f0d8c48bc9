"""RTT every tick to the gateway, the hops the path task found and the targets, confirmed by follow-ups.
Owns the ``rtt`` column, the gateway refresh and the two-phase tick.
Notes: docs/agent-tasks.md, "Notes per task module".
"""

from __future__ import annotations

import asyncio
import logging

from cxpulse.v1 import payload

from .. import netinfo
from ..config import Running
from ..detector.confirm import Confirmations
from ..probes.base import Measurement, Target
from ..probes.rtt import RttProbe
from .base import Output, Pace, Shared

log = logging.getLogger("cxpulse.agent")

GATEWAY_REFRESH_S = 10.0


class RttTask:
    kind = "rtt"
    pace: Pace = "tick"

    def __init__(self, shared: Shared):
        self.s = shared
        self.enabled = True
        self.wake = asyncio.Event()
        self.probe = RttProbe(methods=list(shared.cfg.rtt_methods) or None)
        self.confirm = Confirmations()
        self._probing: set[asyncio.Task] = set()
        self._in_order: dict[str, list[list]] = {}
        self._tick_targets: list[tuple[Target, int | None]] = []  # the last tick's, in probing order
        self._next_gateway = float("-inf")
        self._out: Output | None = None

    def interval_s(self) -> float:
        return self.s.cfg.probe_interval_s

    async def start(self) -> None:
        await self.probe.start()
        self.s.stats.method = getattr(self.probe, "method", "")

    def reconfigured(self, old: Running, new: Running) -> None:
        pass  # the next tick reads the targets and the interval

    async def close(self) -> None:
        # Let in-flight probes finish (bounded by their timeout) before the runner spools the open batch.
        if self._probing:
            await asyncio.wait(self._probing, timeout=self.s.cfg.probe_timeout_s + 1)
        await self.probe.close()

    def _refresh_gateway(self) -> None:
        if not self.s.cfg.measure_gateway:
            return
        gw = netinfo.default_gateway()
        self.s.gateway_iface = gw.interface if gw else ""
        new = Target("gateway", gw.address, 53) if gw else None
        if new != self.s.gateway:
            log.info("default gateway: %s", f"{gw.address} via {gw.interface}" if gw else "none")
            self.s.gateway = new
            self.s.stats.gateway = gw.address if gw else ""

    async def collect(self, out: Output) -> None:
        """This tick's probes: launched, not awaited (each reports when it is answered or lost)."""
        self._out = out
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self._next_gateway:
            self._refresh_gateway()
            self._next_gateway = now + GATEWAY_REFRESH_S
        gateway = self.s.gateway
        targets: list[tuple[Target, int | None]] = [(gateway, None)] if gateway else []
        targets += [(t, ttl) for t, ttl in self.s.hop_targets.values()] + [(t, None) for t in self.s.cfg.targets]
        self._tick_targets = targets
        # Every other target half an interval later, in path order (gateway, hops, apps):
        # a disruption on a link that two neighbours share then meets one of their probes
        # at least half a second before it ends, early enough for follow-ups to confirm
        # it for both (confirm.py). Two phases, not one per target: the spread costs loop
        # wake-ups (three targets on loopback, 180 s: 0.32 % of a core before, 0.43 % with
        # two phases, 0.46 % with one per target), and two already give every pair of
        # neighbours half a second between their probes.
        for t, hop in targets[0::2]:
            self._launch(t, hop)
        if len(targets) > 1:
            loop.call_at(loop.time() + self.interval_s() / 2, self._launch_later, targets[1::2])

    def _launch(self, t: Target, hop: int | None, followup: bool = False) -> None:
        task = asyncio.ensure_future(self._measure(t, hop, followup))
        self._probing.add(task)
        task.add_done_callback(self._probing.discard)

    def _launch_later(self, targets: list[tuple[Target, int | None]]) -> None:
        if not self.s.stop.is_set():
            for t, hop in targets:
                self._launch(t, hop)

    async def _measure(self, t: Target, hop: int | None = None, followup: bool = False) -> None:
        # A lost probe finishes a timeout after the ones sent after it: release results in send
        # order, so that the batch and the detector see each target's samples as they happened.
        pending = self._in_order.setdefault(t.name, [])
        slot: list = [None]
        pending.append(slot)
        detector = self.s.detector
        late_us = detector.late_after_us(t.name)
        timeout_s = self.s.cfg.probe_timeout_s
        timer = None
        if not followup and late_us is not None and late_us / 1e6 < timeout_s:
            # Still unanswered past the spike threshold: lost or late either way, confirm now.
            timer = asyncio.get_running_loop().call_later(late_us / 1e6, self._confirm, t, hop)
        try:
            m = await self.probe.measure(t, timeout_s)
        finally:
            if timer is not None:
                timer.cancel()
        clean = m.rtt_us is not None and (late_us is None or m.rtt_us <= late_us)
        if followup:
            self.confirm.result(t.name, clean)
        elif not clean and timer is None:  # warming up (no threshold yet) or a threshold past the timeout
            self._confirm(t, hop)
        slot[0] = (m, hop, followup)
        out = self._out
        assert out is not None  # set by the tick that launched this probe
        while pending and pending[0][0] is not None:
            m, h, extra = pending.pop(0)[0]
            if not extra:  # loss and RTT figures come from the schedule only (see detector/confirm.py)
                out.row(*row(m), h)
                self.s.stats.samples += 1
                if m.rtt_us is None:
                    self.s.stats.lost += 1
            out.events(detector.observe_rtt(m.target, m.ts_us, m.rtt_us))

    def _confirm(self, t: Target, hop: int | None) -> None:
        """A scheduled probe breached: follow-ups to this hop and to every other target of the tick.

        What breaks on one link breaks for every target beyond it, and the targets' probes fall at
        different phases of the second: the probe that met a 1 s disruption early confirms it for
        the hops whose own probe came too late in it (their 1 Hz sample alone looks like a random
        lost ping). Follow-ups to a target that answers clean stop after ``clean_to_stop``.
        """
        if self.s.stop.is_set():
            return
        now = asyncio.get_running_loop().time()
        others = [(o, h) for o, h in self._tick_targets if o.name != t.name]
        for target, h in [(t, hop), *others]:
            if self.confirm.begin(target.name, now):
                task = asyncio.ensure_future(self._confirm_run(target, h))
                self._probing.add(task)
                task.add_done_callback(self._probing.discard)

    async def _confirm_run(self, t: Target, hop: int | None) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self.s.stop.is_set() and self.confirm.take(t.name, loop.time()):
                self._launch(t, hop, followup=True)
                await asyncio.sleep(self.confirm.gap_s(t.name))
        finally:
            self.confirm.end(t.name)


def row(m: Measurement) -> tuple[str, str, str, str, int, dict]:
    """The ``rtt`` kind's row for one measurement: (target, address, kind, method, ts_us, values)."""
    return m.target, m.address, payload.KIND_RTT, m.method, m.ts_us, {"rtt": m.rtt_us}
