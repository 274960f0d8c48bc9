"""Runs the collector: gRPC ingest in front of one store, shut down without losing acked data."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc

from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc

from .ingest.service import MAX_MESSAGE_BYTES, IngestConfig, TelemetryService
from .ingest.writer import StoreWriter
from .store import Store, open_store

log = logging.getLogger("cxpulse.collector")


class Collector:
    """A started collector; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, db: str, listen: str = "127.0.0.1:50051", config: IngestConfig | None = None):
        self.db = db
        self.listen = listen
        self.config = config or IngestConfig()
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
        log.warning("collector listening on %s WITHOUT TLS (plain-text gRPC); store %s", self._bound(), self.db)

    def _bound(self) -> str:
        host = self.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking streams, let open ones finish their commits, then close the store."""
        if self.server is not None:
            await self.server.stop(grace)
        if self.writer is not None:
            await asyncio.to_thread(self.writer.stop)
        if self.store is not None:
            self.store.close()


async def serve(db: str, listen: str, config: IngestConfig, ready_file: str | None = None) -> None:
    collector = Collector(db, listen, config)
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
