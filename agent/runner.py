"""The agent's main loop: the collection tasks on their paces -> batcher -> spool -> uplink.
One asyncio loop in one process; on SIGTERM/SIGINT the open batch is spooled.
Design notes: docs/agent-internals.md, "agent/runner.py"; the tasks: docs/agent-tasks.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

from cxpulse.v1 import payload
from cxpulse.v1 import telemetry_pb2 as pb

from . import identity
from .batcher import Batcher
from .config import AgentConfig, Running, apply
from .detector import Detector
from .identity import DeskUser
from .spool import Spool
from .tasks import REGISTRY, AgentStats, CollectionTask, Shared
from .uplink import Uplink

log = logging.getLogger("cxpulse.agent")

SHUTDOWN_DRAIN_S = 3.0

__all__ = ["Agent", "AgentStats", "run_until_signalled"]


class Agent:
    def __init__(self, cfg: AgentConfig):
        self.base = cfg  # the local file: the base of every push (config.apply)
        self.stats = AgentStats()
        os.makedirs(cfg.state_dir, exist_ok=True)
        self.agent_id = identity.agent_id(cfg.state_dir, cfg.agent_id)
        self.spool = Spool(os.path.join(cfg.state_dir, "spool"), cfg.spool_max_bytes, cfg.spool_max_age_s)
        self.batcher = Batcher()
        self.detector = Detector()
        self._base_detector = self.detector.cfg
        self.shared = Shared(
            Running(cfg, self.detector.cfg), self.agent_id, self.detector, self.stats, desk=identity.desk_user(cfg.user)
        )
        self.tasks: dict[str, CollectionTask] = {kind: make(self.shared) for kind, make in REGISTRY.items()}
        self.hello = pb.Hello(
            agent_id=self.agent_id,
            host=identity.host_name(),
            os_user=self.shared.desk.login,
            display_name=self.shared.desk.display_name,
            os=identity.os_label(),
            agent_version=identity.agent_version(),
            site=cfg.site,
            seq_epoch=self.spool.epoch,
            payload_schema=payload.SCHEMA_VERSION,
        )
        from .enrollment import ChannelSecurity, Credential  # TLS against the installed CA, and the credential

        self.uplink = Uplink(
            self.spool,
            cfg.collector,
            self.hello,
            self._apply_config,
            cfg.reconnect_max_s,
            ChannelSecurity.from_config(cfg),
            Credential(cfg.state_dir, self.agent_id, self.hello.host, cfg.enroll_token),
        )
        self._wake_batch = asyncio.Event()
        # The collector's last good config (agent/central.py): a restart without a collector runs it.
        from .central import load_saved

        if (kept := load_saved(cfg.state_dir)) is not None:
            self._apply_config(kept, persist=False)

    @property
    def cfg(self) -> AgentConfig:
        """What runs: the local file with the collector's last good push applied."""
        return self.shared.cfg

    def _apply_config(self, c: pb.AgentConfig, persist: bool = True) -> None:
        """The collector's config, checked whole (agent/central.py): run and kept, or refused and reported
        while the last good one keeps running. The local file keeps the settings IT lets it override."""
        from . import central

        problem = central.check(c)
        if problem:
            if getattr(self, "_refused_version", None) != c.version:  # once per version, not per reconnect
                self._refused_version = c.version
                log.warning("collector config %d refused, the last good one keeps running: %s", c.version, problem)
                now = time.time_ns() // 1000
                self.events(
                    [
                        payload.Event(
                            id=f"config-{c.version}-{now}",
                            kind="config_rejected",
                            target="config",
                            start_us=now,
                            end_us=now,
                            severity=1,
                            evidence=f"config version {c.version}: {problem}"[:512],
                        )
                    ]
                )
            return
        old, new = self.shared.running, apply(self.base, c, self._base_detector)
        self.shared.running = new
        self.detector.cfg = new.detector
        if new.cfg.batch_interval_s != old.cfg.batch_interval_s:
            self._wake_batch.set()
        for task in self.tasks.values():
            task.reconfigured(old, new)
        log.info(
            "collector config %d: %d targets, %d apps, probe every %.2fs",
            c.version,
            len(new.cfg.targets),
            len(new.cfg.apps),
            new.cfg.probe_interval_s,
        )
        if persist and c.version != getattr(self, "_kept_version", None):
            self._kept_version = c.version
            central.save(self.cfg.state_dir, c)

    def refresh_user(self) -> None:
        """Read the console user now (a logon, logoff or switch the OS announced); loop thread only."""
        self.tasks["desk_user"].wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        self.shared.stop = stop
        running = [t for t in self.tasks.values() if t.enabled]
        clock = next(t for t in running if t.pace == "tick")  # one task keeps the clock: RTT's tick
        side = [t for t in running if t is not clock]
        for task in running:
            await task.start()
        uplink_stop = asyncio.Event()
        uplink = asyncio.ensure_future(self.uplink.run(uplink_stop))
        batcher = asyncio.ensure_future(self._batch_loop(stop))
        loops = [asyncio.ensure_future(self._task_loop(task, stop)) for task in side]
        try:
            await self._tick_loop(clock, stop)
        finally:
            for loop_ in loops:
                loop_.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            for task in running:  # in-flight probes finish (bounded by their timeout) before the batch is spooled
                await task.close()
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
            self._write_run_summary()

    def _write_run_summary(self) -> None:
        """What this run produced and what is still unsent: for support, and for delivery tests."""
        u = self.uplink.stats
        confirm = getattr(self.tasks["rtt"], "confirm", None)
        summary = {
            "agent_id": self.agent_id,
            "seq_epoch": self.spool.epoch,
            "samples_measured": self.stats.samples,
            "samples_lost": self.stats.lost,
            "followup_probes": confirm.sent if confirm else 0,
            "followup_runs": confirm.runs if confirm else 0,
            "events": self.stats.events,
            "app_checks": self.stats.app_checks,
            "voice_runs": self.stats.voice_runs,
            "path_traces": self.stats.traces,
            "batches_spooled": self.stats.batches_spooled,
            "batches_still_spooled": len(self.spool),
            "batches_acked": u.batches_acked,
            "batches_rejected": u.batches_rejected,
            "batches_dropped": self.spool.dropped_batches,
            "samples_dropped": self.spool.dropped_samples,
            "gaps_open": [g.event().evidence for g in self.spool.open_gaps],
            "committed_seq": u.committed_seq,
            "connects": u.connects,
        }
        log.info("run summary: %s", summary)
        try:
            with open(os.path.join(self.cfg.state_dir, "last_run.json"), "w") as f:
                json.dump(summary, f, indent=2)
        except OSError as exc:
            log.warning("cannot write run summary: %s", exc)

    async def _tick_loop(self, task: CollectionTask, stop: asyncio.Event) -> None:
        """Pace "tick": a pass every interval on the clock; late passes are skipped, never bunched."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        # A tick costs one future and one timer: wait_for(stop.wait()) made and cancelled a task
        # every tick (four loop turns a second for nothing). One waiter for the whole run ends the
        # current tick's sleep when the agent stops.
        tick: list[asyncio.Future | None] = [None]

        def wake_on_stop(_: asyncio.Future) -> None:
            if tick[0] is not None and not tick[0].done():
                tick[0].set_result(None)

        stopped = asyncio.ensure_future(stop.wait())
        stopped.add_done_callback(wake_on_stop)
        try:
            while not stop.is_set():
                await task.collect(self)
                next_tick += task.interval_s()
                if next_tick < loop.time():  # fell behind (suspend, overload): skip, do not burst
                    next_tick = loop.time() + task.interval_s()
                fut = tick[0] = loop.create_future()
                timer = loop.call_at(next_tick, _resolve, fut)
                await fut
                timer.cancel()
        finally:
            stopped.cancel()

    async def _task_loop(self, task: CollectionTask, stop: asyncio.Event) -> None:
        """Paces "every", "after" and "before" (tasks/base.py); a wake starts the next pass at once."""
        while not stop.is_set():
            if task.pace == "before":
                await _wait_any(stop, task.wake, task.interval_s())
                if stop.is_set():
                    return
            task.wake.clear()
            if task.pace == "every":
                run = asyncio.ensure_future(task.collect(self))
                await _wait_any(stop, task.wake, task.interval_s())
                if not run.done():
                    run.cancel()
                await asyncio.gather(run, return_exceptions=True)
            else:
                await task.collect(self)
                if task.pace == "after":
                    await _wait_any(stop, task.wake, task.interval_s())

    # -- Output (tasks/base.py): where the tasks' results go --

    def row(
        self, target: str, address: str, kind: str, method: str, ts_us: int, values: dict, hop: int | None = None
    ) -> None:
        self.batcher.add_row(target, address, kind, method, ts_us, values, hop)

    def path(self, snapshot: payload.PathSnapshot) -> None:
        self.batcher.add_path(snapshot)

    def desk_user(self, desk: DeskUser) -> None:
        """A new user at the desk: the collector learns it from the Hello of a new stream.

        The spool is replayed from the collector's committed seq as on any reconnect, so no batch
        is lost or stored twice (docs/agent-tasks.md)."""
        self.shared.desk = desk
        self.hello.os_user = desk.login
        self.hello.display_name = desk.display_name
        self.uplink.reconnect()

    def events(self, events: list) -> None:
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
        interval = self.cfg.batch_interval_s
        next_close = loop.time() + interval
        while not stop.is_set():
            await _wait_any(stop, self._wake_batch, max(0.0, next_close - loop.time()))
            if self._wake_batch.is_set():
                # A pushed interval applies now, not after the old (default 30 s) one runs out.
                self._wake_batch.clear()
                interval = self.cfg.batch_interval_s
                next_close = min(next_close, loop.time() + interval)
            if stop.is_set() or loop.time() < next_close:
                continue
            next_close += interval
            if next_close < loop.time():
                next_close = loop.time() + interval
            self._close_batch()

    def _close_batch(self) -> None:
        # What the spool had to drop travels as data_gap events in the next batch (until acked).
        gaps = self.spool.unreported_gaps()
        for g in gaps:
            self.batcher.add_event(g.event)
        closed = self.batcher.close()
        if closed is None:
            return
        data, n = closed
        entry = self.spool.append(data, n, carries=gaps)
        self.stats.batches_spooled += 1
        log.debug("spooled batch seq %d: %d samples, %d bytes", entry.seq, n, len(data))
        self.uplink.notify()


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    """Sleep until timeout, or earlier when stopping or woken (new config)."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def run_until_signalled(cfg: AgentConfig) -> None:
    from . import stop_signals

    agent = Agent(cfg)
    stop = asyncio.Event()
    log.info("agent %s starting; collector %s; state %s", agent.agent_id, cfg.collector, cfg.state_dir)
    with stop_signals.stop_on_signals(stop):  # Ctrl-C/SIGTERM on POSIX, Ctrl-C/Ctrl-Break on Windows
        await agent.run(stop)
    log.info("agent stopped")
