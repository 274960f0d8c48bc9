"""Sends spooled batches to the collector in order and deletes each only when acked.
At-least-once: after a break the unacked spool goes again; reconnects back off with jitter and retry hints.
Design notes: docs/agent-internals.md, "agent/uplink.py".
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc

from .enrollment import ChannelSecurity, Credential, NotEnrolled
from .spool import Spool

log = logging.getLogger("cxpulse.agent.uplink")

MAX_IN_FLIGHT = 32
RETRY_HINT_KEY = "retry-after-ms"


@dataclass
class UplinkStats:
    connected: bool = False
    connects: int = 0
    batches_sent: int = 0
    batches_acked: int = 0
    batches_rejected: int = 0
    samples_acked: int = 0
    committed_seq: int = 0
    last_error: str = ""


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * (2 ** min(attempt, 30))))


def retry_hint_s(exc: grpc.aio.AioRpcError) -> float | None:
    """The collector's retry hint (seconds) on a retryable status, if it gave one."""
    if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return None
    for key, value in exc.trailing_metadata() or ():
        if key == RETRY_HINT_KEY:
            try:
                return max(0.0, int(value) / 1000)
            except ValueError:
                return None
    return None


class Uplink:
    def __init__(
        self,
        spool: Spool,
        collector: str,
        hello: pb.Hello,
        on_config: Callable[[pb.AgentConfig], None] | None = None,
        reconnect_max_s: float = 30.0,
        security: ChannelSecurity | None = None,
        credential: Credential | None = None,
    ):
        # No security given: plain text without a credential (tests with a collector of their own);
        # the agent itself always passes both, from its configuration.
        self.security = security or ChannelSecurity(insecure=True)
        self.credential = credential
        self.spool = spool
        self.collector = collector
        self.hello = hello
        self.on_config = on_config
        self.reconnect_max_s = reconnect_max_s
        self.stats = UplinkStats()
        self._wake = asyncio.Event()
        self._acked = asyncio.Event()
        self._restart = asyncio.Event()

    def reconnect(self) -> None:
        """End the stream and open a new one at once with the (updated) Hello: the desk user changed.

        The collector reads who the agent is only from a stream's Hello. Batches in flight are
        re-sent from the spool after the new Hello's committed seq, as on any reconnect (exactly-once
        holds: the collector drops a seq it already holds). No backoff: nothing failed.
        """
        self._restart.set()

    def notify(self) -> None:
        """A batch was spooled."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            hint = None
            try:
                self._restart.clear()  # the Hello about to be sent is the newest
                await self._session(stop)
                attempt = 0
            except asyncio.CancelledError:
                raise
            except NotEnrolled as exc:
                self.stats.last_error = str(exc)
                log.error("%s", exc)
            except grpc.aio.AioRpcError as exc:
                self.stats.last_error = f"{exc.code().name}: {exc.details()}"
                hint = retry_hint_s(exc)
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED and self.credential is not None:
                    log.error("the collector rejected this agent's credential (%s)", exc.details())
                    self.credential.rejected()
                elif exc.code() == grpc.StatusCode.UNAVAILABLE and "handshake" in (exc.details() or "").lower():
                    log.error(
                        "TLS handshake with %s failed: is ca_file the collector's CA? (%s)",
                        self.collector,
                        exc.details(),
                    )
            except Exception as exc:  # never crash after start-up
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("uplink session failed")
            if self.stats.connected:
                attempt = 0  # the session got going before it broke: start backoff afresh
            self.stats.connected = False
            if stop.is_set():
                break
            if self._restart.is_set():
                log.info("new stream to %s with the updated Hello", self.collector)
                continue
            delay = backoff_delay(attempt, cap=self.reconnect_max_s)
            if hint is not None:
                delay = min(self.reconnect_max_s, random.uniform(hint, 2 * hint))
            attempt += 1
            log.warning(
                "collector %s unreachable (%s); retrying in %.1fs", self.collector, self.stats.last_error, delay
            )
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass

    async def drain(self, timeout: float) -> bool:
        """Wait until the spool is empty (all acked) or timeout; True if empty."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.spool):
            left = deadline - loop.time()
            if left <= 0 or not self.stats.connected:
                return False
            self._acked.clear()
            try:
                await asyncio.wait_for(self._acked.wait(), min(left, 0.2))
            except TimeoutError:
                pass
        return True

    async def _session(self, stop: asyncio.Event) -> None:
        async with self.security.channel(self.collector) as channel:
            metadata: tuple[tuple[str, str], ...] = ()
            if self.credential is not None:
                await self.credential.ensure(channel)
                metadata = self.credential.metadata()
            stub = pb_grpc.TelemetryServiceStub(channel)
            call = stub.Stream(metadata=metadata)
            await call.write(pb.StreamRequest(hello=self.hello))
            first = await call.read()
            if first is grpc.aio.EOF or first.WhichOneof("kind") != "config":
                raise ConnectionError("collector did not answer the Hello with a config")
            self.stats.connected = True
            self.stats.connects += 1
            self.stats.last_error = ""
            cfg = first.config
            self.spool.reconcile(cfg.committed_seq)
            if cfg.committed_seq:
                # Acks lost in a crash: the collector already holds these.
                self.spool.ack_upto(cfg.committed_seq)
                self.stats.committed_seq = max(self.stats.committed_seq, cfg.committed_seq)
            self.spool.release_in_flight()  # what the last stream carried beyond committed_seq is not stored
            if self.on_config:
                self.on_config(cfg)
            log.info(
                "connected to collector %s (committed seq %d, %d batches to send)",
                self.collector,
                cfg.committed_seq,
                len(self.spool),
            )
            sender = asyncio.ensure_future(self._send(call, stop))
            receiver = asyncio.ensure_future(self._receive(call))
            restart = asyncio.ensure_future(self._restart.wait())
            try:
                await asyncio.wait([receiver, restart], return_when=asyncio.FIRST_COMPLETED)
                if receiver.done():
                    receiver.result()  # the stream broke: raise why
                else:
                    call.cancel()  # reconnect(): end this stream, the next session says Hello again
            finally:
                for task in (sender, receiver, restart):
                    task.cancel()
                    try:
                        await task
                    except (asyncio.CancelledError, Exception):
                        pass

    async def _send(self, call, stop: asyncio.Event) -> None:
        last_sent = 0
        self._inflight: set[int] = set()
        while not stop.is_set() or len(self.spool):
            self._wake.clear()
            for e in self.spool.pending(after_seq=last_sent):
                while len(self._inflight) >= MAX_IN_FLIGHT:
                    self._acked.clear()
                    await self._acked.wait()
                data = self.spool.read(e)
                last_sent = e.seq
                if data is None:
                    continue
                self._inflight.add(e.seq)
                self.spool.mark_in_flight(e.seq)  # before the write: it may arrive even if the await fails
                await call.write(pb.StreamRequest(batch=pb.Batch(seq=e.seq, payload=data, sample_count=e.sample_count)))
                self.stats.batches_sent += 1
            await self._wake.wait()

    async def _receive(self, call) -> None:
        while True:
            resp = await call.read()
            if resp is grpc.aio.EOF:
                raise ConnectionError("collector closed the stream")
            kind = resp.WhichOneof("kind")
            if kind == "config":
                if self.on_config:
                    self.on_config(resp.config)
                continue
            ack = resp.ack
            if ack.status == pb.ACK_STATUS_REJECTED:
                self.stats.batches_rejected += 1
                self.spool.quarantine(ack.seq, f"code {ack.code}: {ack.detail}")
            elif ack.status in (pb.ACK_STATUS_STORED, pb.ACK_STATUS_DUPLICATE):
                self.stats.batches_acked += 1
                self.stats.samples_acked += self.spool.samples_upto(ack.committed_seq)
            self.spool.ack_upto(ack.committed_seq)
            self.stats.committed_seq = max(self.stats.committed_seq, ack.committed_seq)
            self._inflight = {s for s in self._inflight if s > ack.committed_seq and s != ack.seq}
            self._acked.set()
