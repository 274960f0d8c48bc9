"""TelemetryService.Stream: validate each batch, commit it, ack only after the commit.
A bad batch gets a REJECTED ack and the stream goes on; bounded memory makes a slow store slow the agents down.
Design notes: docs/collector-internals.md, "collector/ingest/service.py".
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field

import grpc

from cxpulse.v1 import payload as wire_payload
from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc

from ..logsafe import safe
from ..store import AgentInfo, PendingBatch, Store
from . import decode_pool
from .limits import AgentLimiter, IngestLimits, Tarpit
from .validate import check_batch, check_hello, check_seq
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
# Decoded samples cost about 120 bytes each in Python (measured: 65-sample RTT batches, ~490
# payload bytes, ~7.7 kB decoded); the budget counts payload bytes plus this per sample.
BYTES_PER_SAMPLE = 128
DEFAULT_BUDGET_BYTES = 64 << 20
# What one stream may hold of it (a normal agent holds well under 1 MB: 32 batches of a few kB).
STREAM_BUDGET_BYTES = 8 << 20
# The budget must have been exhausted this long before new streams are turned away.
OVERLOAD_AFTER_S = 2.0
RETRY_HINT_KEY = "retry-after-ms"
DRAIN_RETRY_MS = (500, 1500)
OVERLOAD_RETRY_MS = (5_000, 15_000)
STORAGE_RETRY_MS = (2_000, 8_000)
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
    # Set by the central config (collector/config): 0 / empty keeps the agent's own.
    wifi_interval_ms: int = 0
    wifi_weak_rssi_dbm: int = 0
    hash_wifi_identity: bool = False
    detector: dict[str, float] = field(default_factory=dict)
    local_overrides: list[str] = field(default_factory=list)
    # The stored central config version this was built from; 0: flags only (version is a hash).
    central_version: int = 0

    @property
    def version(self) -> int:
        if self.central_version:
            return self.central_version
        key = (
            self.probe_interval_ms,
            self.batch_interval_ms,
            tuple(self.targets),
            tuple(self.apps),
            self.app_interval_ms,
            self.voice_interval_ms,
            self.reflector,
        )
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
            wifi_interval_ms=self.wifi_interval_ms,
            wifi_weak_rssi_dbm=self.wifi_weak_rssi_dbm,
            hash_wifi_identity=self.hash_wifi_identity,
            detector=self.detector,
            local_overrides=self.local_overrides,
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
    streams_refused: int = 0
    streams_drained: int = 0
    acks_while_draining: int = 0


class Budget:
    """Bytes of batches taken off the wire and not yet answered, shared by all streams; FIFO waiters.

    A single batch larger than the whole budget is let through alone rather than never
    (``acquire`` and ``release`` both count it as the whole capacity).
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self.peak = 0
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()
        self._saturated_since: float | None = None

    async def acquire(self, n: int) -> None:
        n = min(n, self.capacity)
        if not self._waiters and self.used + n <= self.capacity:
            self._take(n)
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        if self._saturated_since is None:
            self._saturated_since = time.monotonic()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(n)  # granted just as the stream went away
            else:
                self._waiters = deque(w for w in self._waiters if w[1] is not fut)
                self._grant()
            raise

    def release(self, n: int) -> None:
        self.used -= min(n, self.capacity)
        self._grant()

    def _take(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)

    def _grant(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.capacity:
            n, fut = self._waiters.popleft()
            if fut.done():  # its stream went away while waiting
                continue
            self._take(n)
            fut.set_result(None)
        if not self._waiters:
            self._saturated_since = None

    def would_wait(self, n: int) -> bool:
        return bool(self._waiters) or self.used + min(n, self.capacity) > self.capacity

    def saturated_for(self) -> float:
        """Seconds that readers have been waiting for budget without a break (0: not saturated)."""
        return 0.0 if self._saturated_since is None else time.monotonic() - self._saturated_since


@dataclass
class _Stream:
    """One open agent stream: what its reader and acker share."""

    id: int
    agent_id: str
    agent_key: int
    epoch: int
    committed: int
    acks: asyncio.Queue = field(default_factory=asyncio.Queue)
    # Set when a limit ends this stream: (gRPC status, detail, retry hint in seconds).
    cut: tuple | None = None
    cut_event: asyncio.Event = field(default_factory=asyncio.Event)
    window: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_IN_FLIGHT_PER_STREAM))
    share: Budget = field(default_factory=lambda: Budget(STREAM_BUDGET_BYTES))


@dataclass
class _Push:
    """A config to send on the stream between acks (a change of the central config)."""

    config: IngestConfig


@dataclass
class _Answer:
    """An ack to send once ``commit`` (if any) resolves; ``weight`` is budget to give back."""

    seq: int
    weight: int
    sample_count: int = 0
    ack: pb.Ack | None = None
    commit: asyncio.Future | None = None


class TelemetryService(pb_grpc.TelemetryServiceServicer):
    def __init__(
        self,
        store: Store,
        writer: StoreWriter,
        config: IngestConfig | None = None,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        limits: IngestLimits | None = None,
    ):
        self.store = store
        self.limiter = AgentLimiter(limits)
        self.tarpit = Tarpit()
        self.limits = self.limiter.limits
        self._agent_streams: dict[str, list[_Stream]] = {}
        self.writer = writer
        self.config = config or IngestConfig()
        self.stats = IngestStats()
        self.budget = Budget(budget_bytes)
        # Agents that said Hello on a stream: the reflector answers only these.
        self.known_agents: set[str] = set()
        self._draining = asyncio.Event()
        # Streams ended by the drain (or refused during it): the server waits for them to hang up.
        self.drained_peers: list[str] = []
        self._handlers = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_saturated_log = -1e9

    # -- lifecycle --

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def begin_drain(self) -> None:
        """Stop taking batches and new streams; open streams commit, ack and close."""
        self._draining.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True once no stream is open any more, False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def overloaded(self) -> str | None:
        """Why new streams should go elsewhere for now, or None."""
        if self.writer.failing:
            return "storage is failing"
        if max(self.budget.saturated_for(), self.writer.full_for()) > OVERLOAD_AFTER_S:
            return "storage is behind"
        return None

    # -- the stream --

    async def Stream(self, request_iterator, context: grpc.aio.ServicerContext) -> None:
        self._handlers += 1
        self._idle.clear()
        try:
            await self._stream(request_iterator, context)
        finally:
            self._handlers -= 1
            if self._handlers == 0:
                self._idle.set()

    async def _stream(self, request_iterator, context: grpc.aio.ServicerContext) -> None:
        if self.draining:
            self.stats.streams_refused += 1
            self.drained_peers.append(context.peer())
            await _unavailable(context, "collector is shutting down; reconnect", DRAIN_RETRY_MS)
        busy = self.overloaded()
        if busy:
            self.stats.streams_refused += 1
            await _unavailable(context, f"collector is overloaded ({busy}); retry later", OVERLOAD_RETRY_MS)
        peer = context.peer()
        if not self.limiter.open_peer(peer):
            self.stats.streams_refused += 1
            await self.tarpit.hold(peer)
            await _exhausted(
                context, f"too many streams from this address (limit {self.limits.streams_per_peer})", 30.0
            )
        try:
            await self._stream_from(peer, request_iterator, context)
        finally:
            self.limiter.close_peer(peer)

    async def _stream_from(self, peer: str, request_iterator, context: grpc.aio.ServicerContext) -> None:
        # A stream that says nothing holds a slot of maximum_concurrent_rpcs and of its address's
        # limit: it gets a few seconds for its Hello (a real agent sends it at once).
        try:
            async with asyncio.timeout(self.limits.hello_timeout_s):  # in this task: an abort inside reaches the client
                first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            self.stats.streams_refused += 1
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no Hello within {self.limits.hello_timeout_s:g} s of opening the stream",
            )
        if first.WhichOneof("kind") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message of a stream must be a Hello")
        hello = first.hello
        problem = _check_hello(hello) or check_hello(hello.seq_epoch, hello.payload_schema)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad Hello: {problem}")
        info = AgentInfo(
            hello.agent_id, hello.host, hello.os_user, hello.os, hello.agent_version, hello.site, hello.display_name
        )
        penalty = self.limiter.banned_for(info.agent_id)
        if penalty:
            self.stats.streams_refused += 1
            await self.tarpit.hold(peer)
            await _exhausted(context, f"agent {info.agent_id} is throttled; retry later", penalty)
        now_us = time.time_ns() // 1000
        try:
            agent_key = await self.writer.call(lambda: self.store.upsert_agent(info, now_us))
            committed = await self.writer.call(lambda: self.store.committed_seq(agent_key, hello.seq_epoch))
        except Exception as exc:
            log.error("storage failed at the Hello of agent %s: %s", safe(info.agent_id), exc)
            await _unavailable(context, "storage is unavailable; retry later", STORAGE_RETRY_MS)
        log.info(
            "agent %s (%s@%s) connected from %s, committed seq %d",
            safe(info.agent_id),
            safe(info.os_user),
            safe(info.host),
            safe(peer),
            committed,
        )
        self.known_agents.add(info.agent_id)
        await context.write(pb.StreamResponse(config=self.config.to_proto(committed, info.agent_id)))

        st = _Stream(next(_stream_ids), info.agent_id, agent_key, hello.seq_epoch, committed)
        self._open_agent_stream(st)
        self.stats.streams_open += 1
        reader = asyncio.ensure_future(self._read(request_iterator, st))
        try:
            await self._answer(st, context)
            ended = await reader
            if ended == "drain":
                self.stats.streams_drained += 1
                self.drained_peers.append(peer)
                log.info("agent %s: stream drained (committed seq %d)", safe(info.agent_id), st.committed)
                await _unavailable(context, "collector is shutting down; reconnect", DRAIN_RETRY_MS)
            if ended == "cut" and st.cut is not None:
                code, detail, retry_s = st.cut
                self.limiter.cut += 1
                log.warning("agent %s: stream ended: %s", safe(info.agent_id), safe(detail, 400))
                if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    await _exhausted(context, detail, retry_s)
                await context.abort(code, detail)
        finally:
            self.stats.streams_open -= 1
            self._close_agent_stream(st)
            if not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            while not st.acks.empty():  # the stream broke: give back what its unanswered batches held
                item = st.acks.get_nowait()
                if isinstance(item, _Answer):
                    self._give_back(item.weight, st)
            log.info("agent %s stream closed", safe(info.agent_id))

    def set_config(self, config: IngestConfig) -> int:
        """Make ``config`` what agents get, and send it on every open stream now; returns streams told."""
        self.config = config
        told = 0
        for streams in list(self._agent_streams.values()):
            for st in streams:
                if st.cut is None:
                    st.acks.put_nowait(_Push(config))
                    told += 1
        return told

    def _open_agent_stream(self, st: _Stream) -> None:
        """Register ``st``; beyond the per-agent limit the agent's oldest stream is ended (superseded)."""
        streams = self._agent_streams.setdefault(st.agent_id, [])
        streams.append(st)
        while len(streams) > self.limits.streams_per_agent:
            old = streams.pop(0)
            self._cut(old, grpc.StatusCode.ABORTED, f"superseded by a newer stream of agent {st.agent_id}", 0.0)

    def _close_agent_stream(self, st: _Stream) -> None:
        streams = self._agent_streams.get(st.agent_id)
        if streams and st in streams:
            streams.remove(st)
        if not streams:
            self._agent_streams.pop(st.agent_id, None)

    @staticmethod
    def _cut(st: _Stream, code: grpc.StatusCode, detail: str, retry_s: float) -> None:
        if st.cut is None:
            st.cut = (code, detail, retry_s)
        st.cut_event.set()

    async def _read(self, request_iterator, st: _Stream) -> str:
        """Take batches off the wire until the agent closes ("eof"), the collector drains ("drain")
        or a limit ends the stream ("cut": ``st.cut`` says why)."""
        requests = aiter(request_iterator)
        try:
            while True:
                req = await self._unless_draining(anext(requests, None), st)
                if req is _DRAINING:
                    return "cut" if st.cut else "drain"
                if req is None:
                    return "eof"
                if req.WhichOneof("kind") != "batch":
                    await st.window.acquire()
                    st.acks.put_nowait(
                        _Answer(0, 0, ack=_reject(0, INVALID_ARGUMENT, "only Batch messages may follow the Hello", st))
                    )
                    continue
                batch = req.batch
                retry_s = self.limiter.take_batch(st.agent_id)
                if retry_s:
                    # Not read, not acked: it stays in the agent's spool for after the pause.
                    self._cut(
                        st,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"agent {st.agent_id} sends more than {self.limits.batches_per_s:g} batches/s "
                        f"(burst {self.limits.batch_burst}); retry in {retry_s:.0f} s",
                        retry_s,
                    )
                    return "cut"
                weight = len(batch.payload) + BYTES_PER_SAMPLE * max(batch.sample_count, len(batch.payload) // 8)
                # Waiting here is the backpressure: nothing more is read from this agent meanwhile.
                if await self._unless_draining(st.window.acquire(), st) is _DRAINING:
                    return "cut" if st.cut else "drain"
                if await self._unless_draining(st.share.acquire(weight), st) is _DRAINING:
                    st.window.release()
                    return "cut" if st.cut else "drain"
                if self.budget.would_wait(weight):
                    self._note_saturated()
                if await self._unless_draining(self.budget.acquire(weight), st) is _DRAINING:
                    st.share.release(weight)
                    st.window.release()
                    return "cut" if st.cut else "drain"  # read but not admitted: not acked, the agent sends it again
                try:
                    answer = await self._admit(batch, st, weight)
                except BaseException:
                    self._give_back(weight, st)
                    raise
                st.acks.put_nowait(answer)
                if answer.ack is not None and answer.ack.status == pb.ACK_STATUS_REJECTED:
                    penalty = self.limiter.strike(st.agent_id)
                    if penalty:
                        self._cut(
                            st,
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"agent {st.agent_id} sent {self.limits.max_rejects} rejected batches within "
                            f"{self.limits.reject_window_s:g} s; retry in {penalty:.0f} s",
                            penalty,
                        )
                        return "cut"
        finally:
            st.acks.put_nowait(None)

    async def _unless_draining(self, aw, st: _Stream | None = None):
        """Await ``aw`` unless draining starts (or ``st`` is cut) first: then cancel it and return _DRAINING."""
        if self.draining or (st is not None and st.cut_event.is_set()):
            if asyncio.iscoroutine(aw):
                aw.close()
            return _DRAINING
        task = asyncio.ensure_future(aw)
        drain = asyncio.ensure_future(self._draining.wait())
        cut = asyncio.ensure_future(st.cut_event.wait()) if st is not None else None
        try:
            await asyncio.wait([f for f in (task, drain, cut) if f is not None], return_when=asyncio.FIRST_COMPLETED)
        finally:  # no return in here: a cancelled caller must stay cancelled
            drain.cancel()
            if cut is not None:
                cut.cancel()
            abandoned = not task.done()
            if abandoned:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        return _DRAINING if abandoned else task.result()

    def _give_back(self, weight: int, st: _Stream) -> None:
        self.budget.release(weight)
        st.share.release(weight)
        st.window.release()

    def _note_saturated(self) -> None:
        now = time.monotonic()
        if now - self._last_saturated_log >= 10.0:
            self._last_saturated_log = now
            log.warning(
                "ingest is waiting for storage (budget %.0f of %d MB, %d of %d writes queued): streams "
                "read nothing more until commits catch up",
                self.budget.used / (1 << 20),
                self.budget.capacity >> 20,
                self.writer.outstanding,
                self.writer.max_queue,
            )

    async def _admit(self, batch: pb.Batch, st: _Stream, weight: int) -> _Answer:
        """Validate and queue one batch for commit; an _Answer carries either the ack or the commit."""
        seq = batch.seq
        problem = check_seq(seq)
        if problem:
            return _Answer(seq, weight, ack=_reject(seq, INVALID_ARGUMENT, problem, st))
        if len(batch.payload) > MAX_PAYLOAD_BYTES:
            return _Answer(
                seq,
                weight,
                ack=_reject(
                    seq,
                    RESOURCE_EXHAUSTED,
                    f"payload of {len(batch.payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit",
                    st,
                ),
            )
        max_samples = self.limits.max_samples_per_batch
        if batch.sample_count > max_samples:
            return _Answer(
                seq,
                weight,
                ack=_reject(
                    seq,
                    RESOURCE_EXHAUSTED,
                    f"batch of {batch.sample_count} samples exceeds the {max_samples}-sample limit",
                    st,
                ),
            )
        try:
            decoded = await decode_pool.decode(batch.payload, max_samples)  # large ones off the GIL
        except wire_payload.PayloadError as exc:
            code = FAILED_PRECONDITION if exc.version_mismatch else INVALID_ARGUMENT
            return _Answer(seq, weight, ack=_reject(seq, code, str(exc), st))
        except Exception:  # a decoder bug must cost one batch, never the stream (fuzzed: tests/fuzz)
            log.exception("payload decoder failed on seq %d of agent %s", seq, safe(st.agent_id))
            return _Answer(seq, weight, ack=_reject(seq, INVALID_ARGUMENT, "payload could not be decoded", st))
        if decoded.sample_count != batch.sample_count:
            return _Answer(
                seq,
                weight,
                ack=_reject(
                    seq,
                    INVALID_ARGUMENT,
                    f"sample_count says {batch.sample_count} but the payload holds {decoded.sample_count}",
                    st,
                ),
            )
        problem = check_batch(decoded, time.time_ns() // 1000, self.limits.max_future_s, self.limits.max_age_s)
        if problem:
            return _Answer(
                seq, weight, ack=_reject(seq, INVALID_ARGUMENT, f"batch refused, nothing stored: {problem}", st)
            )
        if seq <= st.committed:
            self.stats.batches_duplicate += 1
            return _Answer(
                seq,
                weight,
                ack=pb.Ack(
                    seq=seq,
                    status=pb.ACK_STATUS_DUPLICATE,
                    committed_seq=st.committed,
                    code=ALREADY_EXISTS,
                    detail=f"seq {seq} is already held (committed up to {st.committed}); nothing written",
                ),
            )
        if self.writer.outstanding >= self.writer.max_queue:
            self._note_saturated()
        # The bytes as received are the landing row (store/raw.py): check_batch read the batch, never changed it.
        pending = PendingBatch(st.agent_key, st.epoch, seq, decoded, stream=st.id, payload=bytes(batch.payload))
        commit = await self.writer.submit(pending)
        return _Answer(seq, weight, decoded.sample_count, commit=commit)

    async def _answer(self, st: _Stream, context: grpc.aio.ServicerContext) -> None:
        """Send acks in batch order as their commits land; a failed commit ends the stream (retryable)."""
        while True:
            item = await st.acks.get()
            if item is None:
                return
            if isinstance(item, _Push):
                await context.write(pb.StreamResponse(config=item.config.to_proto(st.committed, st.agent_id)))
                continue
            try:
                ack = item.ack if item.commit is None else self._committed(await item.commit, item, st)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Not committed: nothing after it can be acked in order; the agent resends from its spool.
                log.error("storage failed for agent %s seq %d: %s", safe(st.agent_id), item.seq, exc)
                await _unavailable(context, "storage is unavailable; retry later", STORAGE_RETRY_MS)
            finally:
                self._give_back(item.weight, st)
            if ack.status == pb.ACK_STATUS_REJECTED:
                self.stats.batches_rejected += 1
            if self.draining:
                self.stats.acks_while_draining += 1
            await context.write(pb.StreamResponse(ack=ack))

    def _committed(self, done: PendingBatch, item: _Answer, st: _Stream) -> pb.Ack:
        st.committed = max(st.committed, done.committed_seq)
        if done.stored:
            self.stats.batches_stored += 1
            self.stats.samples_stored += item.sample_count
            return pb.Ack(seq=item.seq, status=pb.ACK_STATUS_STORED, committed_seq=done.committed_seq, code=OK)
        self.stats.batches_duplicate += 1
        return pb.Ack(
            seq=item.seq,
            status=pb.ACK_STATUS_DUPLICATE,
            committed_seq=done.committed_seq,
            code=ALREADY_EXISTS,
            detail=f"seq {item.seq} is already held; nothing written",
        )


_DRAINING = object()


async def _unavailable(context: grpc.aio.ServicerContext, detail: str, retry_ms: tuple[int, int]) -> None:
    """End the stream with a retryable status and a jittered hint of when to come back."""
    hint = random.randint(*retry_ms)
    await context.abort(grpc.StatusCode.UNAVAILABLE, detail, trailing_metadata=((RETRY_HINT_KEY, str(hint)),))


async def _exhausted(context: grpc.aio.ServicerContext, detail: str, retry_s: float) -> None:
    """End the stream as throttled, with the hint the agent's uplink honours before reconnecting."""
    await context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        detail,
        trailing_metadata=((RETRY_HINT_KEY, str(max(1000, int(retry_s * 1000)))),),
    )


def _reject(seq: int, code: int, detail: str, st: _Stream) -> pb.Ack:
    log.warning("rejected batch seq %d of agent %s: %s", seq, safe(st.agent_id), safe(detail, 400))
    return pb.Ack(seq=seq, status=pb.ACK_STATUS_REJECTED, committed_seq=st.committed, code=code, detail=detail)


def _check_hello(h: pb.Hello) -> str | None:
    if not h.agent_id:
        return "agent_id is empty"
    for name in ("agent_id", "host", "os_user", "os", "agent_version", "site", "display_name"):
        if len(getattr(h, name)) > MAX_FIELD_LEN:
            return f"{name} is longer than {MAX_FIELD_LEN} characters"
    return None
