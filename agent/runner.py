"""The agent's main loop: probe every tick -> batcher -> spool every batch interval -> uplink.

Everything runs in one asyncio loop in one process (DESIGN.md decision 5). On
SIGTERM/SIGINT the open batch is closed into the spool before exit, and the
uplink gets a short grace period to deliver it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from dataclasses import dataclass

from cxpulse.v1 import payload
from cxpulse.v1 import telemetry_pb2 as pb

from . import identity, netinfo
from .batcher import Batcher
from .detector import Detector
from .config import AgentConfig
from .probes import REGISTRY
from .probes.base import Target
from .spool import Spool
from .uplink import Uplink

log = logging.getLogger("cxpulse.agent")

GATEWAY_REFRESH_S = 10.0
SHUTDOWN_DRAIN_S = 3.0


@dataclass
class AgentStats:
    samples: int = 0
    lost: int = 0
    batches_spooled: int = 0
    events: int = 0
    method: str = ""
    gateway: str = ""


class Agent:
    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        self.stats = AgentStats()
        self.probe_interval_s = cfg.probe_interval_s
        self.batch_interval_s = cfg.batch_interval_s
        self.targets: tuple[Target, ...] = cfg.targets
        self._collector_targets: tuple[Target, ...] | None = None
        os.makedirs(cfg.state_dir, exist_ok=True)
        self.agent_id = identity.agent_id(cfg.state_dir, cfg.agent_id)
        self.spool = Spool(os.path.join(cfg.state_dir, "spool"), cfg.spool_max_bytes, cfg.spool_max_age_s)
        self.batcher = Batcher()
        self.detector = Detector()
        self.probe = REGISTRY["rtt"](methods=list(cfg.rtt_methods) or None)
        self.hello = pb.Hello(
            agent_id=self.agent_id,
            host=identity.host_name(),
            os_user=identity.desk_user(cfg.user),
            os=identity.os_label(),
            agent_version=identity.agent_version(),
            site=cfg.site,
            seq_epoch=self.spool.epoch,
            payload_schema=payload.SCHEMA_VERSION,
        )
        self.uplink = Uplink(self.spool, cfg.collector, self.hello, self._apply_config, cfg.reconnect_max_s)
        self._gateway: Target | None = None
        self._probing: set[asyncio.Task] = set()

    def _apply_config(self, c: pb.AgentConfig) -> None:
        """Collector's config wins where it sets a value; invalid values are logged and ignored."""
        if c.probe_interval_ms:
            if 50 <= c.probe_interval_ms <= 3_600_000:
                self.probe_interval_s = c.probe_interval_ms / 1000
            else:
                log.warning("ignoring collector probe interval %d ms (outside 50..3600000)", c.probe_interval_ms)
        if c.batch_interval_ms:
            if 100 <= c.batch_interval_ms <= 3_600_000:
                self.batch_interval_s = c.batch_interval_ms / 1000
            else:
                log.warning("ignoring collector batch interval %d ms", c.batch_interval_ms)
        if c.targets:
            targets = tuple(Target(t.name, t.host, t.port or 443) for t in c.targets if t.name and t.host and t.name != "gateway")
            self.targets = targets
            log.info("collector config %d: %d targets, probe every %.2fs", c.version, len(targets), self.probe_interval_s)

    def _refresh_gateway(self) -> None:
        if not self.cfg.measure_gateway:
            return
        gw = netinfo.default_gateway()
        new = Target("gateway", gw.address, 53) if gw else None
        if new != self._gateway:
            log.info("default gateway: %s", f"{gw.address} via {gw.interface}" if gw else "none")
            self._gateway = new
            self.stats.gateway = gw.address if gw else ""

    async def run(self, stop: asyncio.Event) -> None:
        await self.probe.start()
        self.stats.method = getattr(self.probe, "method", "")
        uplink_stop = asyncio.Event()
        uplink = asyncio.ensure_future(self.uplink.run(uplink_stop))
        batcher = asyncio.ensure_future(self._batch_loop(stop))
        try:
            await self._probe_loop(stop)
        finally:
            # Let in-flight probes finish (bounded by their timeout), then spool the open batch.
            if self._probing:
                await asyncio.wait(self._probing, timeout=self.cfg.probe_timeout_s + 1)
            batcher.cancel()
            await asyncio.gather(batcher, return_exceptions=True)
            self._close_batch()
            drained = await self.uplink.drain(SHUTDOWN_DRAIN_S)
            if not drained:
                log.info("%d batches stay spooled for the next start", len(self.spool))
            uplink_stop.set()
            self.uplink.notify()
            uplink.cancel()
            await asyncio.gather(uplink, return_exceptions=True)
            await self.probe.close()
            self._write_run_summary()

    def _write_run_summary(self) -> None:
        """What this run produced and what is still unsent: for support, and for delivery tests."""
        u = self.uplink.stats
        summary = {
            "agent_id": self.agent_id,
            "seq_epoch": self.spool.epoch,
            "samples_measured": self.stats.samples,
            "samples_lost": self.stats.lost,
            "events": self.stats.events,
            "batches_spooled": self.stats.batches_spooled,
            "batches_still_spooled": len(self.spool),
            "batches_acked": u.batches_acked,
            "batches_rejected": u.batches_rejected,
            "batches_dropped": self.spool.dropped_batches,
            "committed_seq": u.committed_seq,
            "connects": u.connects,
        }
        log.info("run summary: %s", summary)
        try:
            with open(os.path.join(self.cfg.state_dir, "last_run.json"), "w") as f:
                json.dump(summary, f, indent=2)
        except OSError as exc:
            log.warning("cannot write run summary: %s", exc)

    async def _probe_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        next_gateway = next_tick
        while not stop.is_set():
            now = loop.time()
            if now >= next_gateway:
                self._refresh_gateway()
                next_gateway = now + GATEWAY_REFRESH_S
            targets = ([self._gateway] if self._gateway else []) + list(self.targets)
            for t in targets:
                task = asyncio.ensure_future(self._measure(t))
                self._probing.add(task)
                task.add_done_callback(self._probing.discard)
            next_tick += self.probe_interval_s
            if next_tick < loop.time():  # fell behind (suspend, overload): skip, do not burst
                next_tick = loop.time() + self.probe_interval_s
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, next_tick - loop.time()))
            except asyncio.TimeoutError:
                pass

    async def _measure(self, t: Target) -> None:
        m = await self.probe.measure(t, self.cfg.probe_timeout_s)
        self.batcher.add(m)
        self.stats.samples += 1
        if m.rtt_us is None:
            self.stats.lost += 1
        self._events(self.detector.observe_rtt(m.target, m.ts_us, m.rtt_us))

    def _events(self, events: list) -> None:
        """An event flushes the batch at once: the helpdesk sees a disruption while it happens."""
        if not events:
            return
        for e in events:
            self.batcher.add_event(e)
            self.stats.events += 1
            log.info("event %s %s at %s: %s", e.kind, "opened" if e.end_us is None else "closed", e.target, e.evidence)
        self._close_batch()

    async def _batch_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_close = loop.time() + self.batch_interval_s
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_close - loop.time()))
            next_close += self.batch_interval_s
            if next_close < loop.time():
                next_close = loop.time() + self.batch_interval_s
            self._close_batch()

    def _close_batch(self) -> None:
        closed = self.batcher.close()
        if closed is None:
            return
        data, n = closed
        entry = self.spool.append(data, n)
        self.stats.batches_spooled += 1
        log.debug("spooled batch seq %d: %d samples, %d bytes", entry.seq, n, len(data))
        self.uplink.notify()


async def run_until_signalled(cfg: AgentConfig) -> None:
    agent = Agent(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("agent %s starting; collector %s; state %s", agent.agent_id, cfg.collector, cfg.state_dir)
    await agent.run(stop)
    log.info("agent stopped")
