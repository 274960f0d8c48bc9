"""TelemetryService.Stream: validate each batch, commit it, ack only after the commit.

A bad batch is answered with a REJECTED ack carrying a gRPC status code and a
reason, and the stream carries on; only a broken protocol (no Hello first, a
message larger than the transport limit) ends the stream with a status.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from dataclasses import dataclass, field

import grpc

from cxpulse.v1 import payload as wire_payload
from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc

from ..store import AgentInfo, PendingBatch, Store
from .writer import StoreWriter

log = logging.getLogger("cxpulse.collector.ingest")

# Codes from google.rpc.Code, carried in Ack.code.
OK, INVALID_ARGUMENT, ALREADY_EXISTS, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, UNAVAILABLE = 0, 3, 6, 8, 9, 14

MAX_PAYLOAD_BYTES = 1 << 20
# Above the payload limit, so that an oversized payload gets a per-batch
# rejection and the stream goes on; beyond this the transport ends the stream.
MAX_MESSAGE_BYTES = 4 << 20
MAX_FIELD_LEN = 256
MAX_IN_FLIGHT_PER_STREAM = 64
_stream_ids = itertools.count(1)


@dataclass
class IngestConfig:
    """What agents are told to run. Targets are (name, host, port); apps (name, url, apdex_t_ms)."""

    probe_interval_ms: int = 0
    batch_interval_ms: int = 0
    targets: list[tuple[str, str, int]] = field(default_factory=list)
    apps: list[tuple[str, str, int]] = field(default_factory=list)
    app_interval_ms: int = 0
    voice_interval_ms: int = 0
    # Where agents send voice-cadence probes (HOST:PORT as agents reach it); empty: no voice probe.
    reflector: str = ""
    # Master secret from which each agent's reflector key is derived (never sent as is).
    reflector_master: bytes = b""

    @property
    def version(self) -> int:
        key = (self.probe_interval_ms, self.batch_interval_ms, tuple(self.targets), tuple(self.apps),
               self.app_interval_ms, self.voice_interval_ms, self.reflector)
        return int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:6], "big")

    def to_proto(self, committed_seq: int, agent_id: str = "") -> pb.AgentConfig:
        cfg = pb.AgentConfig(
            version=self.version,
            probe_interval_ms=self.probe_interval_ms,
            batch_interval_ms=self.batch_interval_ms,
            targets=[pb.Target(name=n, host=h, port=p) for n, h, p in self.targets],
            committed_seq=committed_seq,
            apps=[pb.App(name=n, url=u, apdex_t_ms=t) for n, u, t in self.apps],
            app_interval_ms=self.app_interval_ms,
            voice_interval_ms=self.voice_interval_ms,
        )
        if self.reflector and self.reflector_master and agent_id:
            from ..reflector import derive_agent_key

            cfg.reflector = self.reflector
            cfg.reflector_key = derive_agent_key(self.reflector_master, agent_id)
        return cfg


@dataclass
class IngestStats:
    streams_open: int = 0
    batches_stored: int = 0
    batches_duplicate: int = 0
    batches_rejected: int = 0
    samples_stored: int = 0


class TelemetryService(pb_grpc.TelemetryServiceServicer):
    def __init__(self, store: Store, writer: StoreWriter, config: IngestConfig | None = None):
        self.store = store
        self.writer = writer
        self.config = config or IngestConfig()
        self.stats = IngestStats()
        # Agents that said Hello on a stream: the reflector answers only these.
        self.known_agents: set[str] = set()

    async def Stream(self, request_iterator, context: grpc.aio.ServicerContext) -> None:
        peer = context.peer()
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        if first.WhichOneof("kind") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message of a stream must be a Hello")
        hello = first.hello
        problem = _check_hello(hello)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad Hello: {problem}")
        info = AgentInfo(hello.agent_id, hello.host, hello.os_user, hello.os, hello.agent_version, hello.site)
        now_us = time.time_ns() // 1000
        agent_key = await self.writer.call(lambda: self.store.upsert_agent(info, now_us))
        epoch = hello.seq_epoch
        committed = await self.writer.call(lambda: self.store.committed_seq(agent_key, epoch))
        log.info("agent %s (%s@%s) connected from %s, committed seq %d", info.agent_id, info.os_user, info.host, peer, committed)
        self.known_agents.add(info.agent_id)
        await context.write(pb.StreamResponse(config=self.config.to_proto(committed, info.agent_id)))

        self.stats.streams_open += 1
        # Acks leave in batch order; the bounded queue is this stream's backpressure.
        pending: asyncio.Queue = asyncio.Queue(maxsize=MAX_IN_FLIGHT_PER_STREAM)
        state = {"committed": committed, "stream": next(_stream_ids)}

        async def read() -> None:
            try:
                async for req in request_iterator:
                    if req.WhichOneof("kind") != "batch":
                        await pending.put(_done(_reject(0, INVALID_ARGUMENT, "only Batch messages may follow the Hello", state)))
                        continue
                    await pending.put(asyncio.ensure_future(self._handle(agent_key, epoch, req.batch, state)))
            finally:
                await pending.put(None)

        reader = asyncio.ensure_future(read())
        try:
            while True:
                item = await pending.get()
                if item is None:
                    break
                try:
                    ack = await item
                except Exception:
                    # Nothing after this batch can be acked in order; the agent resends from its spool.
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "storage is unavailable; retry later")
                if ack.status == pb.ACK_STATUS_REJECTED:
                    self.stats.batches_rejected += 1
                await context.write(pb.StreamResponse(ack=ack))
            await reader  # surfaces a transport error from the reader
        finally:
            self.stats.streams_open -= 1
            if not reader.done():
                reader.cancel()
            log.info("agent %s stream closed", info.agent_id)

    async def _handle(self, agent_key: int, epoch: int, batch: pb.Batch, state: dict) -> pb.Ack:
        seq = batch.seq
        if seq == 0:
            return _reject(seq, INVALID_ARGUMENT, "seq must start at 1", state)
        if len(batch.payload) > MAX_PAYLOAD_BYTES:
            return _reject(
                seq, RESOURCE_EXHAUSTED, f"payload of {len(batch.payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit", state
            )
        try:
            decoded = wire_payload.decode(batch.payload)
        except wire_payload.PayloadError as exc:
            code = FAILED_PRECONDITION if exc.version_mismatch else INVALID_ARGUMENT
            return _reject(seq, code, str(exc), state)
        if decoded.sample_count != batch.sample_count:
            return _reject(
                seq, INVALID_ARGUMENT, f"sample_count says {batch.sample_count} but the payload holds {decoded.sample_count}", state
            )
        if seq <= state["committed"]:
            self.stats.batches_duplicate += 1
            return pb.Ack(
                seq=seq, status=pb.ACK_STATUS_DUPLICATE, committed_seq=state["committed"], code=ALREADY_EXISTS,
                detail=f"seq {seq} is already held (committed up to {state['committed']}); nothing written",
            )
        try:
            done = await self.writer.commit(PendingBatch(agent_key, epoch, seq, decoded, stream=state["stream"]))
        except Exception as exc:
            # Not committed: the agent keeps the batch and sends it again after it reconnects.
            log.error("storage failed for seq %d: %s", seq, exc)
            raise
        state["committed"] = max(state["committed"], done.committed_seq)
        if done.stored:
            self.stats.batches_stored += 1
            self.stats.samples_stored += decoded.sample_count
            return pb.Ack(seq=seq, status=pb.ACK_STATUS_STORED, committed_seq=done.committed_seq, code=OK)
        self.stats.batches_duplicate += 1
        return pb.Ack(
            seq=seq, status=pb.ACK_STATUS_DUPLICATE, committed_seq=done.committed_seq, code=ALREADY_EXISTS,
            detail=f"seq {seq} is already held; nothing written",
        )


def _reject(seq: int, code: int, detail: str, state: dict) -> pb.Ack:
    log.warning("rejected batch seq %d: %s", seq, detail)
    return pb.Ack(seq=seq, status=pb.ACK_STATUS_REJECTED, committed_seq=state["committed"], code=code, detail=detail)


def _done(value) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


def _check_hello(h: pb.Hello) -> str | None:
    if not h.agent_id:
        return "agent_id is empty"
    for name in ("agent_id", "host", "os_user", "os", "agent_version", "site"):
        if len(getattr(h, name)) > MAX_FIELD_LEN:
            return f"{name} is longer than {MAX_FIELD_LEN} characters"
    return None
