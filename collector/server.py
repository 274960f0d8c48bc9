"""Runs the collector: gRPC ingest in front of one store, shut down without losing acked data.
Health goes NOT_SERVING when storage fails or a shutdown begins; SIGTERM drains open streams within a grace.
Design notes: docs/collector-internals.md, "collector/server.py".
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cxpulse.atomicfile import write_atomic
from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc

from .ingest.hangup import HANGUP_TIMEOUT_S, wait_hung_up
from .ingest.service import MAX_MESSAGE_BYTES, IngestConfig, TelemetryService
from .ingest.writer import StoreWriter
from .store import Store, open_store

if TYPE_CHECKING:
    from .config.watch import ConfigWatcher
    from .lookup.http import HttpHandle
    from .reflector import Reflector
    from .security.registry import Registry
    from .security.streams import AuthenticatedTelemetry

log = logging.getLogger("cxpulse.collector")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TelemetryService"].full_name
DRAIN_GRACE_S = 15.0
DRAIN_DELAY_S = 1.0
# A hard cap on concurrent streams; beyond it gRPC answers RESOURCE_EXHAUSTED and agents retry.
MAX_STREAMS = 20_000
_HEALTH_POLL_S = 1.0


class Collector:
    """A started collector; ``port`` is the bound port (useful with port 0)."""

    def __init__(
        self,
        db: str,
        listen: str = "127.0.0.1:50051",
        config: IngestConfig | None = None,
        reflector_listen: str = "",
        reflector_key_file: str | None = None,
        *,
        http_listen: str = "",
        http_public_url: str = "",
        alerts_config=None,
        raw_days: float = 7.0,
        rollup_days: float = 400.0,
        minute_rollup_days: float | None = None,
        background: bool = True,
        limits=None,
        central_config: str | None = None,
        tls=None,
        insecure: bool = False,
        http_options: dict | None = None,
    ):
        # TLS (a security.tls.ServerTls) or an explicit insecure=True: never plain text by default.
        self.tls, self.insecure = tls, insecure
        self.registry: Registry | None = None
        self.auth: AuthenticatedTelemetry | None = None
        self.limits = limits  # cxpulse.collector.ingest.limits.IngestLimits; None: the defaults
        self.central_config = central_config
        self.config_watcher: ConfigWatcher | None = None  # collector/config/watch.py
        self.http_listen, self.http_public_url, self.alerts_config = http_listen, http_public_url, alerts_config
        self.http: HttpHandle | None = None
        self.http_options = http_options or {}  # start_http's access options: pseudonymize, trusted_proxies, ...
        self.raw_days, self.rollup_days = raw_days, rollup_days
        self.minute_rollup_days = minute_rollup_days  # None: jobs/retention.py's default
        # Retention and cross-agent incident detection; off for short-lived embedded collectors.
        self.background = background
        self._loops: list[asyncio.Task] = []
        self.db = db
        self.listen = listen
        self.config = config or IngestConfig()
        self.reflector_listen = reflector_listen
        self.reflector_key_file = reflector_key_file
        self.reflector: Reflector | None = None
        self.store: Store | None = None
        self.writer: StoreWriter | None = None
        self.service: TelemetryService | None = None
        self.server: grpc.aio.Server | None = None
        self.health: health.aio.HealthServicer | None = None
        self._health_task: asyncio.Task | None = None
        self._revocations: asyncio.Task | None = None
        self.port = 0

    async def start(self) -> None:
        from .security.registry import Registry
        from .security.streams import AuthenticatedTelemetry

        if self.tls is None and not self.insecure:
            raise ValueError(
                "no TLS material: run `cxpulse collector init --name HOST` and serve with --tls-dir DIR "
                "(or --tls-cert/--tls-key); plain-text gRPC only with --insecure, on a trusted network"
            )
        store = self.store = open_store(self.db)
        registry = self.registry = Registry.open(self.db)
        writer = self.writer = StoreWriter(store)
        writer.start()
        service = self.service = TelemetryService(store, writer, self.config, limits=self.limits)
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
            maximum_concurrent_rpcs=MAX_STREAMS,
        )
        # Every stream is bound to an enrolled agent's credential, with or without TLS.
        auth = self.auth = AuthenticatedTelemetry(service, registry)
        pb_grpc.add_TelemetryServiceServicer_to_server(self.auth, self.server)
        checks = self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(checks, self.server)
        if self.tls is not None:
            self.port = self.server.add_secure_port(self.listen, self.tls.credentials())
        else:
            self.port = self.server.add_insecure_port(self.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.listen}")
        await self.server.start()
        await self._set_health(checks, health_pb2.HealthCheckResponse.SERVING)
        self._health_task = asyncio.ensure_future(self._watch_storage(writer, checks))
        self._revocations = asyncio.ensure_future(auth.watch_revocations())
        if self.reflector_listen:
            await self._start_reflector(service)
        if self.central_config or self.background:
            from .config.watch import ConfigWatcher

            watcher = self.config_watcher = ConfigWatcher(service, self.config, self.db, self.central_config)
            await watcher.start()
        if self.http_listen:
            from .lookup.http import start_http

            self.http = await start_http(
                self.store,
                self.http_listen,
                stats=service.stats,
                alerts_config=self.alerts_config,
                public_url=self.http_public_url,
                registry=self.registry,
                **self.http_options,
            )
        if self.background:
            from .jobs.incidents import incident_loop
            from .jobs.kept import kept_scores_loop
            from .jobs.raw_compaction import raw_compaction_loop
            from .jobs.retention import retention_loop
            from .jobs.rollup_sealing import rollup_sealing_loop

            self._loops = [
                asyncio.ensure_future(
                    retention_loop(
                        self.store,
                        self.raw_days,
                        self.rollup_days,
                        overrides=self.config_watcher.retention if self.config_watcher else None,
                        minute_days=self.minute_rollup_days,
                    )
                ),
                asyncio.ensure_future(incident_loop(self.store)),
                asyncio.ensure_future(kept_scores_loop(self.store)),
                asyncio.ensure_future(raw_compaction_loop(self.store)),
                asyncio.ensure_future(rollup_sealing_loop(self.store)),
            ]
        from .paths import redact

        if self.tls is None:
            log.warning(
                "INSECURE: collector listening on %s WITHOUT TLS (plain-text gRPC, --insecure): agent "
                "credentials and measurements cross the network readable by anyone on the path; "
                "development only; store %s",
                self._bound(),
                redact(self.db),
            )
        else:
            log.warning(
                "collector listening on %s with TLS (%s%s); store %s",
                self._bound(),
                self.tls.source,
                ", mutual TLS: client certificates required" if self.tls.client_ca else "",
                redact(self.db),
            )

    async def _start_reflector(self, service: TelemetryService) -> None:
        from .reflector import Reflector, derive_agent_key

        host, _, port = self.reflector_listen.rpartition(":")
        if not port.isdigit():
            raise ValueError(f"--reflector must be HOST:PORT, got {self.reflector_listen!r}")
        if not self.config.reflector and host.strip("[]") in ("", "0.0.0.0", "::"):
            raise ValueError(
                "the reflector listens on all addresses: give --reflector-advertise HOST:PORT as agents reach it"
            )
        key_file = self.reflector_key_file
        if key_file is None:
            if "://" in self.db:
                from .paths import default_db

                key_file = os.path.join(os.path.dirname(default_db()), "reflector.key")
            else:
                key_file = os.path.join(os.path.dirname(os.path.abspath(self.db)), "reflector.key")
        os.makedirs(os.path.dirname(os.path.abspath(key_file)), exist_ok=True)
        master = self.config.reflector_master or load_or_create_secret(key_file)
        self.config.reflector_master = master

        def key_for(agent_id: str) -> bytes | None:
            return derive_agent_key(master, agent_id) if agent_id in service.known_agents else None

        reflector = self.reflector = Reflector(key_for)
        await reflector.start(host.strip("[]") or "0.0.0.0", int(port))
        if not self.config.reflector:
            # Agents on this machine reach it as given; on a network, set the advertised address.
            self.config.reflector = f"{host or '127.0.0.1'}:{reflector.port}"
        log.info(
            "voice reflector on UDP %s:%d, advertised to agents as %s", host, reflector.port, self.config.reflector
        )

    def _bound(self) -> str:
        host = self.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    @staticmethod
    async def _set_health(checks: health.aio.HealthServicer, status: int) -> None:
        for name in ("", SERVICE_NAME):
            await checks.set(name, status)

    async def _watch_storage(self, writer: StoreWriter, checks: health.aio.HealthServicer) -> None:
        """NOT_SERVING while commits fail, SERVING again once one works (the writer says which)."""
        serving = True
        while True:
            await asyncio.sleep(_HEALTH_POLL_S)
            ok = not writer.failing
            if ok != serving:
                serving = ok
                log.warning(
                    "health: %s", "SERVING (storage works again)" if ok else "NOT_SERVING (storage commits fail)"
                )
                await self._set_health(
                    checks, health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
                )

    async def stop(self, grace: float = DRAIN_GRACE_S, drain_delay: float = 0.0) -> None:
        """Drain: NOT_SERVING, wait ``drain_delay``, end open streams after their acks, close the store.

        ``grace`` bounds the whole drain; streams still open then are cut (what they had not
        had acked stays in the agents' spools).
        """
        t0 = time.monotonic()
        if self.config_watcher is not None:
            await self.config_watcher.stop()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self.http is not None:
            await self.http.stop()
        if self._health_task is not None:
            self._health_task.cancel()
        if self._revocations is not None:
            self._revocations.cancel()
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        if self.reflector is not None:
            await self.reflector.stop()
        if self.service is not None:
            open_streams = self.service.stats.streams_open
            if drain_delay > 0:
                log.info(
                    "draining: NOT_SERVING; %d streams carry on for %.1fs while load balancers notice",
                    open_streams,
                    drain_delay,
                )
                await asyncio.sleep(min(drain_delay, grace))
            self.service.begin_drain()
            left = max(0.0, grace - (time.monotonic() - t0))
            drained = await self.service.wait_idle(left)
            st = self.service.stats
            log.warning(
                "drained %d streams in %.2fs (%d acks sent while draining)%s",
                st.streams_drained,
                time.monotonic() - t0,
                st.acks_while_draining,
                "" if drained else f"; grace of {grace:.0f}s over, cutting {st.streams_open} streams",
            )
            log.info(
                "ingest totals: %d batches stored, %d duplicate, %d rejected; %d samples; peak in-flight "
                "budget %.1f of %d MB",
                st.batches_stored,
                st.batches_duplicate,
                st.batches_rejected,
                st.samples_stored,
                self.service.budget.peak / (1 << 20),
                self.service.budget.capacity >> 20,
            )
        if self.server is not None:
            if self.service is not None and self.service.drained_peers:
                # A returned handler has only queued its UNAVAILABLE status: stopping now can reset
                # the connection before the agent reads it (hangup.py).
                wait_s = max(0.3, min(HANGUP_TIMEOUT_S, grace - (time.monotonic() - t0)))
                left = await wait_hung_up(self.service.drained_peers, wait_s)
                if left:
                    log.warning("%d drained agents had not hung up after %.1fs; stopping anyway", left, wait_s)
            # Ingest streams are done (or out of grace); what is left are health watches and quick
            # unary calls: a second is plenty, and a watch would otherwise hold the exit for the whole grace.
            await self.server.stop(min(1.0, max(0.1, grace - (time.monotonic() - t0))))
        if self.writer is not None:
            await asyncio.to_thread(self.writer.stop)
        if self.store is not None:
            self.store.close()
        if self.registry is not None:
            self.registry.close()


def load_or_create_secret(path: str) -> bytes:
    """A 32-byte secret kept beside the database, readable by the collector's account only."""
    try:
        with open(path, "rb") as f:
            data = f.read()
            if os.name == "posix" and os.fstat(f.fileno()).st_mode & 0o077:  # an older version's 0644
                os.chmod(path, 0o600)
        if len(data) == 32:
            return data
        log.warning("%s is not a 32-byte key; making a new one", path)
    except FileNotFoundError:
        pass
    data = os.urandom(32)
    write_atomic(path, data, mode=0o600)
    return data


async def serve(
    db: str,
    listen: str,
    config: IngestConfig,
    ready_file: str | None = None,
    reflector_listen: str = "",
    reflector_key_file: str | None = None,
    **options,
) -> None:
    collector = Collector(db, listen, config, reflector_listen, reflector_key_file, **options)
    await collector.start()
    if ready_file:
        with open(ready_file, "w") as f:
            f.write(f"{collector.port}\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows: no signal handlers on its loop; Ctrl-C ends asyncio.run
            break
    await stop.wait()
    log.info("shutting down")
    await collector.stop(DRAIN_GRACE_S, DRAIN_DELAY_S)
