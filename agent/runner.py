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
import time
from dataclasses import dataclass, replace

from cxpulse.v1 import payload
from cxpulse.v1 import telemetry_pb2 as pb

from . import identity, netinfo
from .batcher import Batcher
from .detector import Detector
from .detector.confirm import Confirmations
from .config import AgentConfig
from .presets import App
from .probes import REGISTRY
from .probes.base import Target
from .spool import Spool
from .uplink import Uplink

log = logging.getLogger("cxpulse.agent")

GATEWAY_REFRESH_S = 10.0
USER_REFRESH_S = 30.0  # console user re-read: a hot desk changes hands within half a minute
SHUTDOWN_DRAIN_S = 3.0
BEST_SAVE_S = 600.0  # the link's best rates (device.save_best) written at most this often: a restart loses little


@dataclass
class AgentStats:
    samples: int = 0
    lost: int = 0
    batches_spooled: int = 0
    events: int = 0
    app_checks: int = 0
    voice_runs: int = 0
    traces: int = 0
    wifi_readings: int = 0
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
        self.confirm = Confirmations()
        self._stop = asyncio.Event()  # replaced by run()'s; follow-ups stop with it
        self.probe = REGISTRY["rtt"](methods=list(cfg.rtt_methods) or None)
        self.desk = identity.desk_user(cfg.user)
        self._wake_user = asyncio.Event()  # a session change the OS told us about (service_windows)
        self.hello = pb.Hello(
            agent_id=self.agent_id,
            host=identity.host_name(),
            os_user=self.desk.login,
            display_name=self.desk.display_name,
            os=identity.os_label(),
            agent_version=identity.agent_version(),
            site=cfg.site,
            seq_epoch=self.spool.epoch,
            payload_schema=payload.SCHEMA_VERSION,
        )
        from .enrollment import ChannelSecurity, Credential  # TLS against the installed CA, and the credential

        self.uplink = Uplink(self.spool, cfg.collector, self.hello, self._apply_config, cfg.reconnect_max_s,
                             ChannelSecurity.from_config(cfg),
                             Credential(cfg.state_dir, self.agent_id, self.hello.host, cfg.enroll_token))
        self._gateway: Target | None = None
        self._probing: set[asyncio.Task] = set()
        self._in_order: dict[str, list[list]] = {}
        self._tick_targets: list[tuple[Target, int | None]] = []  # the last tick's, in probing order
        self.apps: tuple[App, ...] = cfg.apps
        self.app_interval_s = cfg.app_interval_s
        self.voice_interval_s = cfg.voice_interval_s
        self.reflector: tuple[str, int] | None = None
        self.reflector_key = b""
        self._wake_voice = asyncio.Event()
        self._wake_apps = asyncio.Event()
        self._wake_batch = asyncio.Event()
        self._gateway_iface = ""
        # Hops found by the last path trace, measured like targets: role name -> (target, ttl).
        self.hop_targets: dict[str, tuple[Target, int]] = {}
        # The collector's last good config (agent/central.py): a restart without a collector runs it.
        from .central import load_saved

        if (kept := load_saved(cfg.state_dir)) is not None:
            self._apply_config(kept, persist=False)

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
                self._events([payload.Event(id=f"config-{c.version}-{now}", kind="config_rejected", target="config",
                                            start_us=now, end_us=now, severity=1,
                                            evidence=f"config version {c.version}: {problem}"[:512])])
            return
        boot = getattr(self, "_boot", None)
        if boot is None:  # what the local file said, before any push: the base of every push
            boot = self._boot = (self.cfg, self.detector.cfg)
        local_cfg, local_detector = boot
        default = AgentConfig(state_dir=local_cfg.state_dir)
        keep = set(c.local_overrides)

        def central_sets(setting: str, attr: str) -> bool:
            return not (setting in keep and getattr(local_cfg, attr) != getattr(default, attr))

        if c.probe_interval_ms and central_sets("probe_interval", "probe_interval_s"):
            self.probe_interval_s = c.probe_interval_ms / 1000
        if c.batch_interval_ms and central_sets("batch_interval", "batch_interval_s"):
            if self.batch_interval_s != c.batch_interval_ms / 1000:
                self.batch_interval_s = c.batch_interval_ms / 1000
                self._wake_batch.set()
        if c.apps and central_sets("apps", "apps"):
            apps = tuple(App(a.name, a.url, a.apdex_t_ms or 500) for a in c.apps)
            if apps != self.apps:
                self.apps = apps
                self._wake_apps.set()
        if c.app_interval_ms and central_sets("app_interval", "app_interval_s"):
            if self.app_interval_s != c.app_interval_ms / 1000:
                self.app_interval_s = c.app_interval_ms / 1000
                self._wake_apps.set()
        if c.voice_interval_ms and central_sets("voice_interval", "voice_interval_s"):
            self.voice_interval_s = c.voice_interval_ms / 1000
        if c.reflector:
            host, _, port = c.reflector.rpartition(":")
            first = self.reflector is None
            self.reflector, self.reflector_key = (host.strip("[]"), int(port)), bytes(c.reflector_key)
            if first:
                self._wake_voice.set()  # first run at once, then on the cadence
        if c.targets and central_sets("targets", "targets"):
            self.targets = tuple(Target(t.name, t.host, t.port or 443) for t in c.targets)
        wifi = {}
        if c.wifi_interval_ms and central_sets("wifi_interval", "wifi_interval_s"):
            wifi["wifi_interval_s"] = c.wifi_interval_ms / 1000
        if c.wifi_weak_rssi_dbm and central_sets("wifi_weak_rssi_dbm", "wifi_weak_rssi_dbm"):
            wifi["wifi_weak_rssi_dbm"] = c.wifi_weak_rssi_dbm
        if c.hash_wifi_identity and central_sets("hash_wifi_identity", "wifi_hash_identity"):
            wifi["wifi_hash_identity"] = True  # central can require hashing; false leaves the local choice
        self.cfg = replace(local_cfg, **wifi)
        thresholds = {k: int(v) if k.endswith("_us") else v for k, v in c.detector.items()}
        if "detector" in keep and local_detector != type(local_detector)():
            thresholds = {}
        self.detector.cfg = replace(local_detector, **thresholds)
        log.info("collector config %d: %d targets, %d apps, probe every %.2fs", c.version, len(self.targets),
                 len(self.apps), self.probe_interval_s)
        if persist and c.version != getattr(self, "_kept_version", None):
            self._kept_version = c.version
            central.save(self.cfg.state_dir, c)

    def _refresh_gateway(self) -> None:
        if not self.cfg.measure_gateway:
            return
        gw = netinfo.default_gateway()
        self._gateway_iface = gw.interface if gw else ""
        new = Target("gateway", gw.address, 53) if gw else None
        if new != self._gateway:
            log.info("default gateway: %s", f"{gw.address} via {gw.interface}" if gw else "none")
            self._gateway = new
            self.stats.gateway = gw.address if gw else ""

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        await self.probe.start()
        self.stats.method = getattr(self.probe, "method", "")
        uplink_stop = asyncio.Event()
        uplink = asyncio.ensure_future(self.uplink.run(uplink_stop))
        batcher = asyncio.ensure_future(self._batch_loop(stop))
        side = [asyncio.ensure_future(self._app_loop(stop)), asyncio.ensure_future(self._voice_loop(stop)),
                asyncio.ensure_future(self._device_loop(stop)), asyncio.ensure_future(self._wifi_loop(stop))]
        if not self.cfg.user:  # a configured user never changes
            side.append(asyncio.ensure_future(self._user_loop(stop)))
        if self.cfg.trace_enabled:
            side.append(asyncio.ensure_future(self._path_loop(stop)))
        try:
            await self._probe_loop(stop)
        finally:
            for t in side:
                t.cancel()
            await asyncio.gather(*side, return_exceptions=True)
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
            "followup_probes": self.confirm.sent,
            "followup_runs": self.confirm.runs,
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

    async def _probe_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        next_gateway = next_tick
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
                now = loop.time()
                if now >= next_gateway:
                    self._refresh_gateway()
                    next_gateway = now + GATEWAY_REFRESH_S
                targets = [(self._gateway, None)] if self._gateway else []
                targets += [(t, ttl) for t, ttl in self.hop_targets.values()] + [(t, None) for t in self.targets]
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
                    loop.call_at(loop.time() + self.probe_interval_s / 2, self._launch_later, targets[1::2])
                next_tick += self.probe_interval_s
                if next_tick < loop.time():  # fell behind (suspend, overload): skip, do not burst
                    next_tick = loop.time() + self.probe_interval_s
                tick[0] = loop.create_future()
                timer = loop.call_at(next_tick, _resolve, tick[0])
                await tick[0]
                timer.cancel()
        finally:
            stopped.cancel()

    def _launch(self, t: Target, hop: int | None, followup: bool = False) -> None:
        task = asyncio.ensure_future(self._measure(t, hop, followup))
        self._probing.add(task)
        task.add_done_callback(self._probing.discard)

    def _launch_later(self, targets: list[tuple[Target, int | None]]) -> None:
        if not self._stop.is_set():
            for t, hop in targets:
                self._launch(t, hop)

    async def _measure(self, t: Target, hop: int | None = None, followup: bool = False) -> None:
        # A lost probe finishes a timeout after the ones sent after it: release results in send
        # order, so that the batch and the detector see each target's samples as they happened.
        pending = self._in_order.setdefault(t.name, [])
        slot: list = [None]
        pending.append(slot)
        late_us = self.detector.late_after_us(t.name)
        timer = None
        if not followup and late_us is not None and late_us / 1e6 < self.cfg.probe_timeout_s:
            # Still unanswered past the spike threshold: lost or late either way, confirm now.
            timer = asyncio.get_running_loop().call_later(late_us / 1e6, self._confirm, t, hop)
        try:
            m = await self.probe.measure(t, self.cfg.probe_timeout_s)
        finally:
            if timer is not None:
                timer.cancel()
        clean = m.rtt_us is not None and (late_us is None or m.rtt_us <= late_us)
        if followup:
            self.confirm.result(t.name, clean)
        elif not clean and timer is None:  # warming up (no threshold yet) or a threshold past the timeout
            self._confirm(t, hop)
        slot[0] = (m, hop, followup)
        while pending and pending[0][0] is not None:
            m, h, extra = pending.pop(0)[0]
            if not extra:  # loss and RTT figures come from the schedule only (see detector/confirm.py)
                self.batcher.add(m, h)
                self.stats.samples += 1
                if m.rtt_us is None:
                    self.stats.lost += 1
            self._events(self.detector.observe_rtt(m.target, m.ts_us, m.rtt_us))

    def _confirm(self, t: Target, hop: int | None) -> None:
        """A scheduled probe breached: follow-ups to this hop and to every other target of the tick.

        What breaks on one link breaks for every target beyond it, and the targets' probes fall at
        different phases of the second: the probe that met a 1 s disruption early confirms it for
        the hops whose own probe came too late in it (their 1 Hz sample alone looks like a random
        lost ping). Follow-ups to a target that answers clean stop after ``clean_to_stop``.
        """
        if self._stop.is_set():
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
            while not self._stop.is_set() and self.confirm.take(t.name, loop.time()):
                self._launch(t, hop, followup=True)
                await asyncio.sleep(self.confirm.gap_s(t.name))
        finally:
            self.confirm.end(t.name)

    async def _app_loop(self, stop: asyncio.Event) -> None:
        """Each app every app_interval_s, on a fresh connection; a failure is re-checked after 5 s.

        httpx is imported with the first app to check (apps may also arrive later, pushed by the
        collector): a desk without app checks never carries it (tests/test_agent_imports.py).
        """
        sem = asyncio.Semaphore(4)  # a desk does not open dozens of TLS handshakes at once

        async def one(app: App, retry: bool) -> None:
            from .probes.http import check_app

            async with sem:
                r = await check_app(app.name, app.url, self.cfg.app_timeout_s, ca_file=self.cfg.app_ca_file or None)
            values = {"dns": r.dns_us, "tcp": r.connect_us, "tls": r.tls_us, "ttfb": r.ttfb_us, "total": r.total_us,
                      "status": r.status, "ver": r.http_version, "cert": r.cert_days, "err": r.error}
            method = "https" if app.url.startswith("https://") else "http"
            host = app.url.split("//", 1)[1].split("/", 1)[0]
            self.batcher.add_row(app.name, (r.address or host)[:256], "http", method, r.ts_us, values)
            self.stats.app_checks += 1
            self._events(self.detector.observe_app(app.name, r.ts_us, r.error, (r.detail or "")[:200]))
            if r.error and retry and not stop.is_set():
                await asyncio.sleep(5)
                await one(app, retry=False)

        while not stop.is_set():
            self._wake_apps.clear()
            tasks = [asyncio.ensure_future(one(a, retry=True)) for a in self.apps]
            await _wait_any(stop, self._wake_apps, timeout=self.app_interval_s)
            for t in tasks:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _voice_loop(self, stop: asyncio.Event) -> None:
        """A short 20 ms UDP stream through the collector's reflector, every voice_interval_s."""
        from .probes.voice import run_voice_probe

        while not stop.is_set():
            if self.reflector is not None:
                r = await run_voice_probe(self.reflector, self.agent_id, self.reflector_key,
                                          duration_s=self.cfg.voice_duration_s)
                values = {"sent": r.sent, "recv": r.received, "dup": r.duplicates, "reord": r.reordered,
                          "rtt": r.rtt_median_us, "rtt95": r.rtt_p95_us, "jit": r.jitter_us,
                          "loss": round(r.loss_pct * 10) if r.loss_pct is not None else None,
                          "burst": round(r.burst_loss_max_pct * 10) if r.burst_loss_max_pct is not None else None,
                          "run": r.max_loss_run, "err": (r.error or None) and r.error[:128]}
                self.batcher.add_row("reflector", r.address or self.reflector[0], "voice", "udp_reflect", r.ts_us, values)
                self.stats.voice_runs += 1
            self._wake_voice.clear()
            await _wait_any(stop, self._wake_voice, timeout=self.voice_interval_s)

    def refresh_user(self) -> None:
        """Read the console user now (a logon, logoff or switch the OS announced); loop thread only."""
        self._wake_user.set()

    async def _user_loop(self, stop: asyncio.Event) -> None:
        """Who sits at the desk, read again every USER_REFRESH_S (or at once on refresh_user()).

        Hot desks change hands and a service may start before anyone logs on, so the user read at
        start goes stale. On a change the Hello is updated and the uplink starts a new stream: the
        collector learns the user from that Hello (it records the change), and the spool is replayed
        from the collector's committed seq as on any reconnect, so no batch is lost or stored twice.
        Carrying the user in every batch instead would cost bytes on every upload for an event that
        happens a few times a day. The read runs in a thread: on Windows a domain name lookup can
        wait on a domain controller.
        """
        while not stop.is_set():
            await _wait_any(stop, self._wake_user, USER_REFRESH_S)
            if stop.is_set():
                return
            self._wake_user.clear()
            desk = await asyncio.to_thread(identity.desk_user, self.cfg.user)
            if desk == self.desk:
                continue
            log.info("desk user changed: %r -> %r", self.desk.login or "(nobody)", desk.login or "(nobody)")
            self.desk = desk
            self.hello.os_user = desk.login
            self.hello.display_name = desk.display_name
            self.uplink.reconnect()

    async def _device_loop(self, stop: asyncio.Event) -> None:
        """CPU, memory, NIC errors, interface kind, VPN and proxy, the desk's own traffic: what the PC adds to the picture."""
        from .device import load_best, own_traffic_columns, read_device, save_best

        counters = None
        best_path = os.path.join(self.cfg.state_dir, "device_best.json")  # the link's best rates, across restarts
        remembered, saved_at = load_best(best_path), time.monotonic()
        while not stop.is_set():
            try:
                snap, counters = read_device(counters, self._gateway_iface or None,
                                             gateway=self._gateway.host if self._gateway else "",
                                             remembered=remembered if counters is None else None)
            except Exception:  # a reading that fails is skipped, the agent goes on
                log.debug("device reading failed", exc_info=True)
            else:
                if time.monotonic() - saved_at >= BEST_SAVE_S:
                    saved_at = time.monotonic()
                    try:
                        save_best(best_path, counters)
                    except OSError:
                        log.debug("could not keep the link's best rates", exc_info=True)
                top = ", ".join(f"{n} {p:.0f}%" for n, p in snap.top_procs)[:128] or None
                values = {"cpu": round(snap.cpu_pct * 10), "mem": round(snap.mem_pct * 10), "top": top,
                          "nicerr": snap.nic_errors, "if": snap.iface[:128] or None, "ifk": snap.iface_kind,
                          "vpn": ",".join(snap.vpn)[:128] or None, "proxy": (snap.proxy or None) and snap.proxy[:128],
                          **own_traffic_columns(snap)}
                self.batcher.add_row("device", "local", "device", "os", snap.ts_us, values)
                self._events(self.detector.observe_device(snap.ts_us, snap.cpu_pct, snap.mem_pct, top or ""))
            try:
                await asyncio.wait_for(stop.wait(), self.cfg.device_interval_s)
            except asyncio.TimeoutError:
                pass

    async def _wifi_loop(self, stop: asyncio.Event) -> None:
        """The Wi-Fi link as the desk sees it, and its events (roam, disconnect, weak signal, rate drop)."""
        from cxpulse.v1.kinds import KIND_METHODS

        from .wifi import WatcherConfig, WifiWatcher, read_wifi, to_columns
        from .wifi.parsers._model import NO_WIFI_INTERFACE

        watcher = WifiWatcher(WatcherConfig(weak_dbm=self.cfg.wifi_weak_rssi_dbm))
        reader = read_wifi
        if os.environ.get("CXPULSE_WIFI_REPLAY"):
            from .wifi.replay import ReplayReader

            reader = ReplayReader(os.environ["CXPULSE_WIFI_REPLAY"])
            log.warning("Wi-Fi readings replayed from %s, not read from this machine", os.environ["CXPULSE_WIFI_REPLAY"])
        said_none = False
        while not stop.is_set():
            # Read on every pass: a pushed config (hashing required, a new weak-signal level) applies at once.
            salt = (self.cfg.wifi_hash_salt or self.agent_id) if self.cfg.wifi_hash_identity else None
            if watcher.cfg.weak_dbm != self.cfg.wifi_weak_rssi_dbm:
                watcher.cfg = replace(watcher.cfg, weak_dbm=self.cfg.wifi_weak_rssi_dbm)
            try:
                reading = await asyncio.to_thread(reader)
            except Exception:  # never crash after start-up
                log.debug("Wi-Fi reading failed", exc_info=True)
                reading = None
            if reading is not None and reading.connected is not None and reading.note != NO_WIFI_INTERFACE:
                ts_us = time.time_ns() // 1000
                if reading.source in KIND_METHODS["wifi"]:
                    self.batcher.add_row("wifi", reading.interface or "wifi", "wifi", reading.source, ts_us,
                                         to_columns(reading, salt))
                    self.stats.wifi_readings += 1
                self._events(watcher.observe(ts_us, reading))
            elif reading is not None and not said_none:
                log.info("no Wi-Fi reading: %s", reading.note or "no Wi-Fi interface")
                said_none = True
            try:
                await asyncio.wait_for(stop.wait(), self.cfg.wifi_interval_s)
            except asyncio.TimeoutError:
                pass

    async def _path_loop(self, stop: asyncio.Event) -> None:
        """Trace the path on a slow cadence and when the network changes (per OS: tracer.trace; never scapy in here)."""
        from cxpulse.v1.payload import PathHop, PathSnapshot

        from .path import PathWatcher, classify_hops, trace

        watcher = PathWatcher(interval_s=self.cfg.trace_interval_s)
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            dest = await self._trace_destination()
            gw = self._gateway.host if self._gateway else None
            if dest is not None and watcher.should_trace(loop.time(), gw, self._gateway_iface or None):
                name, ip, port = dest
                result = await trace(ip, port=port)
                if result.error:
                    log.info("path trace to %s failed: %s", ip, result.error)
                else:
                    self.stats.traces += 1
                    hops = [PathHop(h.ttl, h.address, min((r for r in h.rtt_us if r is not None), default=None))
                            for h in result.hops]
                    self.batcher.add_path(PathSnapshot(name, ip, result.ts_us, result.method, result.reached, hops))
                    change = watcher.observe(result)
                    if change is not None:
                        old = change.old_signature[change.first_ttl - 1] if len(change.old_signature) >= change.first_ttl else "-"
                        new = change.new_signature[change.first_ttl - 1] if len(change.new_signature) >= change.first_ttl else "-"
                        self._events([self.detector.path_change(
                            name, result.ts_us, f"path changed at hop {change.first_ttl}: {old} -> {new} ({watcher.reason})")])
                    if self.cfg.hop_probing:
                        self._set_hop_targets(classify_hops(result, gw), ip)
            try:
                await asyncio.wait_for(stop.wait(), 10.0)
            except asyncio.TimeoutError:
                pass

    async def _trace_destination(self) -> tuple[str, str, int] | None:
        """One destination stands for the path out: the desk-to-ISP part is shared by every app."""
        import ipaddress
        import socket

        candidates = [(t.name, t.host, t.port) for t in self.targets]
        for a in self.apps:
            host = a.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
            candidates.append((a.name, host, 443 if a.url.startswith("https://") else 80))
        for name, host, port in candidates:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                try:
                    infos = await asyncio.get_running_loop().getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM)
                except OSError:
                    continue
                ip = ipaddress.ip_address(infos[0][4][0])
            if ip.version == 4:
                return name, str(ip), port
        return None

    def _set_hop_targets(self, roles: dict, dest_ip: str) -> None:
        """ISP and first public hop get continuous RTT, so loss can be placed beyond the home router."""
        gw = self._gateway.host if self._gateway else None
        chosen: dict[str, tuple[Target, int]] = {}
        seen = {gw, dest_ip}
        for role in ("isp", "public"):
            hop = roles.get(role)
            if hop is None or hop.address is None or hop.address in seen:
                continue
            seen.add(hop.address)
            chosen[role] = (Target(role, hop.address, 443), hop.ttl)
        if chosen.keys() != self.hop_targets.keys() or any(chosen[k][0] != self.hop_targets[k][0] for k in chosen):
            log.info("hops measured every probe: %s", ", ".join(f"{k}={v[0].host} (hop {v[1]})" for k, v in chosen.items()) or "none")
        self.hop_targets = chosen

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
        interval = self.batch_interval_s
        next_close = loop.time() + interval
        while not stop.is_set():
            await _wait_any(stop, self._wake_batch, max(0.0, next_close - loop.time()))
            if self._wake_batch.is_set():
                # A pushed interval applies now, not after the old (default 30 s) one runs out.
                self._wake_batch.clear()
                interval = self.batch_interval_s
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
