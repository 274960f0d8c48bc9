"""Runs the collector: gRPC ingest in front of one store, shut down without losing acked data."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import grpc

from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc

from .ingest.service import MAX_MESSAGE_BYTES, IngestConfig, TelemetryService
from .ingest.writer import StoreWriter
from .store import Store, open_store

log = logging.getLogger("cxpulse.collector")


class Collector:
    """A started collector; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, db: str, listen: str = "127.0.0.1:50051", config: IngestConfig | None = None,
                 reflector_listen: str = "", reflector_key_file: str | None = None):
        self.db = db
        self.listen = listen
        self.config = config or IngestConfig()
        self.reflector_listen = reflector_listen
        self.reflector_key_file = reflector_key_file
        self.reflector = None
        self.store: Store | None = None
        self.writer: StoreWriter | None = None
        self.service: TelemetryService | None = None
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.store = open_store(self.db)
        self.writer = StoreWriter(self.store)
        self.writer.start()
        self.service = TelemetryService(self.store, self.writer, self.config)
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ]
        )
        pb_grpc.add_TelemetryServiceServicer_to_server(self.service, self.server)
        self.port = self.server.add_insecure_port(self.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.listen}")
        await self.server.start()
        if self.reflector_listen:
            await self._start_reflector()
        from .cli import redact

        log.warning("collector listening on %s WITHOUT TLS (plain-text gRPC); store %s", self._bound(), redact(self.db))

    async def _start_reflector(self) -> None:
        from .reflector import Reflector, derive_agent_key

        host, _, port = self.reflector_listen.rpartition(":")
        if not port.isdigit():
            raise ValueError(f"--reflector must be HOST:PORT, got {self.reflector_listen!r}")
        if not self.config.reflector and host.strip("[]") in ("", "0.0.0.0", "::"):
            raise ValueError("the reflector listens on all addresses: give --reflector-advertise HOST:PORT as agents reach it")
        key_file = self.reflector_key_file
        if key_file is None:
            if "://" in self.db:
                from .cli import default_db

                key_file = os.path.join(os.path.dirname(default_db()), "reflector.key")
            else:
                key_file = os.path.join(os.path.dirname(os.path.abspath(self.db)), "reflector.key")
        os.makedirs(os.path.dirname(os.path.abspath(key_file)), exist_ok=True)
        master = self.config.reflector_master or load_or_create_secret(key_file)
        self.config.reflector_master = master
        service = self.service

        def key_for(agent_id: str) -> bytes | None:
            return derive_agent_key(master, agent_id) if agent_id in service.known_agents else None

        self.reflector = Reflector(key_for)
        await self.reflector.start(host.strip("[]") or "0.0.0.0", int(port))
        if not self.config.reflector:
            # Agents on this machine reach it as given; on a network, set the advertised address.
            self.config.reflector = f"{host or '127.0.0.1'}:{self.reflector.port}"
        log.info("voice reflector on UDP %s:%d, advertised to agents as %s", host, self.reflector.port, self.config.reflector)

    def _bound(self) -> str:
        host = self.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking streams, let open ones finish their commits, then close the store."""
        if self.reflector is not None:
            await self.reflector.stop()
        if self.server is not None:
            await self.server.stop(grace)
        if self.writer is not None:
            await asyncio.to_thread(self.writer.stop)
        if self.store is not None:
            self.store.close()


def load_or_create_secret(path: str) -> bytes:
    """A 32-byte secret kept beside the database, readable by the collector's account only."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if len(data) == 32:
            return data
        log.warning("%s is not a 32-byte key; making a new one", path)
    except FileNotFoundError:
        pass
    data = os.urandom(32)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)
    return data


async def serve(db: str, listen: str, config: IngestConfig, ready_file: str | None = None, reflector_listen: str = "",
                reflector_key_file: str | None = None) -> None:
    collector = Collector(db, listen, config, reflector_listen, reflector_key_file)
    await collector.start()
    if ready_file:
        with open(ready_file, "w") as f:
            f.write(f"{collector.port}\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await collector.stop()
