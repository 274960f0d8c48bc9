"""Simulated agents for the ingest benchmark: real payloads over real gRPC streams, in their own process.

Each simulated agent opens its own channel (its own TCP connection, as a desk would), says Hello,
and then keeps ``window`` batches in flight, sending the next one when an ack frees a slot, the
way the agent's uplink drains a spool after an outage. The generator runs in processes of its
own so that its CPU is accounted apart from the collector's; on a 2-core machine it still
competes with the collector for the cores, and the report gives its CPU beside the figures.

Two kinds of batch. Bulk (``--batch-samples``): one template, 10 RTT series at 1 s, each batch the
template with its ``t0`` (an 8-byte msgpack uint64) rewritten in place, checked by decoding.
Desk (``--desk-batches N``): what a desk at the agent's defaults sends, 30 s batches of ~194
samples (``bench.chunks.desk``) encoded as the agent does (schema 2, deflated, so no patching):
N consecutive batches of a few desk personalities are encoded before the start, and agent i
sends personality i mod P's batch seq (rollups are per agent: agents may share the bytes).

    python -m bench.loadgen --target 127.0.0.1:PORT --agents 50 --first 0 --batch-samples 5000 \\
        --window 2 --ready R --go G --warmup 2 --duration 20 --out OUT.json
    python -m bench.loadgen ... --desk-batches 120 --window 1 ...   # realistic 30 s desk batches
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import struct
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cxpulse.v1 import payload as p
from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc

SERIES = 10
T_BASE_US = 1_780_000_000_000_000  # a fixed day in 2026: runs are comparable, far from "now"


class Template:
    """One encoded batch and where its t0 lives, to stamp each sequence number with its own time."""

    def __init__(self, samples: int) -> None:
        per = max(1, samples // SERIES)
        self.samples = per * SERIES
        self.span_us = per * 1_000_000
        series = []
        for t in range(SERIES):
            s = p.Series(target=f"target-{t}", address=f"198.51.100.{t + 1}", method=p.METHOD_ICMP_RAW)
            for i in range(per):
                jitter = (i * 7919 + t * 31) % 400
                s.add(
                    T_BASE_US + i * 1_000_000 + t * 1000 + jitter,
                    None if (i + t) % 97 == 0 else 800 + (i * 37 + t) % 9000,
                )
            series.append(s)
        self.data = p.encode(p.SampleBatch(series))
        mark = b"\xa2t0\xcf"
        self.offset = self.data.index(mark) + len(mark)
        if struct.unpack_from(">Q", self.data, self.offset)[0] != T_BASE_US:
            raise RuntimeError("payload layout changed: t0 is not where the generator expects it")
        check = p.decode(self.for_seq(3))
        if check.sample_count != self.samples or min(check.series[0].ts_us) != T_BASE_US + 2 * self.span_us:
            raise RuntimeError("patched payload does not decode to the shifted batch")

    def for_seq(self, seq: int) -> bytes:
        buf = bytearray(self.data)
        struct.pack_into(">Q", buf, self.offset, T_BASE_US + (seq - 1) * self.span_us)
        return bytes(buf)

    def batch(self, agent: int, seq: int) -> tuple[bytes, int] | None:
        return self.for_seq(seq), self.samples


class DeskPool:
    """Consecutive 30 s batches of a few simulated desks, encoded as the agent sends them (schema 2)."""

    def __init__(self, batches: int, personalities: int = 4) -> None:
        from .chunks import _batches, desk

        self.pool: list[list[tuple[bytes, int]]] = []
        for k in range(personalities):
            cut = _batches(desk(batches * 30, seed=101 + k))[:batches]
            self.pool.append([(p.encode(b, version=p.SCHEMA_VERSION), b.sample_count) for b in cut])
        first = self.pool[0][0]
        if p.decode(first[0]).sample_count != first[1]:
            raise RuntimeError("a desk batch does not decode to its own sample count")
        every = [n for desk_ in self.pool for _, n in desk_]
        self.samples = round(sum(every) / len(every))  # mean samples per batch (for the report)
        self.data = first[0]

    def batch(self, agent: int, seq: int) -> tuple[bytes, int] | None:
        """Agent ``agent``'s batch ``seq`` (from 1); None when the pool has no more (the run outpaced it)."""
        desk_ = self.pool[agent % len(self.pool)]
        return desk_[seq - 1] if seq <= len(desk_) else None


@dataclass
class Totals:
    acked_samples: int = 0
    acked_batches: int = 0
    rejected: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    connected: int = 0
    reconnects: int = 0
    retry_kinds: dict[str, int] = field(default_factory=dict)
    exhausted: int = 0  # agents that sent every pre-encoded desk batch before the end


CONNECT_ATTEMPTS = 4
# agent id -> credential, provisioned by the driver in the collector's database (--credentials).
CREDENTIALS: dict[str, str] = {}
CONNECTS_AT_ONCE = 50
# How long after the end a stream waits for its last acks: 2,000 desk streams keep ~390,000 samples
# in flight, 10-15 s of queueing at the rates seen here.
DRAIN_S = 45.0


async def _connect(i: int, run_id: str, target: str, totals: Totals) -> tuple[grpc.aio.Channel, object]:
    """Channel, stream and Hello; retried like the agent's uplink does, since 2,000 simultaneous
    connects on a loaded machine sometimes lose one (grpc core reports an internal error)."""
    for attempt in range(CONNECT_ATTEMPTS):
        ch = grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", 8 << 20)])
        try:
            agent_id = f"bench-{run_id}-{i}"
            md = (("authorization", f"Bearer {CREDENTIALS[agent_id]}"),) if agent_id in CREDENTIALS else ()
            call = pb_grpc.TelemetryServiceStub(ch).Stream(metadata=md)
            await call.write(
                pb.StreamRequest(
                    hello=pb.Hello(
                        agent_id=agent_id,
                        host=f"bench-desk-{i:05}",
                        os_user=f"bench{i}",
                        os="linux",
                        agent_version="bench",
                        site="bench",
                        seq_epoch=1 + i,
                        payload_schema=p.SCHEMA_VERSION,
                    )
                )
            )
            first = await call.read()
            if first is grpc.aio.EOF or first.WhichOneof("kind") != "config":
                raise ConnectionError("no config after Hello")
            return ch, call
        except (grpc.aio.AioRpcError, ConnectionError) as exc:
            await ch.close()
            if attempt == CONNECT_ATTEMPTS - 1:
                raise
            totals.reconnects += 1
            kind = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
            detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            why = f"attempt {attempt + 1}: {kind}: {(detail or '')[:80]}"
            totals.retry_kinds[why] = totals.retry_kinds.get(why, 0) + 1
            await asyncio.sleep(random.uniform(0.1, 0.5 * 2**attempt))
    raise AssertionError("unreachable")


async def _agent(
    i: int,
    run_id: str,
    target: str,
    tpl: Template | DeskPool,
    window: int,
    go: asyncio.Event,
    times: dict[str, float],
    totals: Totals,
    connecting: asyncio.Semaphore,
    prime: bool = False,
) -> None:
    async with connecting:  # a fleet does not connect in one millisecond, and grpc copes badly if it does
        ch, call = await _connect(i, run_id, target, totals)
    async with ch:
        seq = 0
        if prime:  # the first batch creates the agent's series: a steady-state window starts after it
            seq = 1
            data, samples = tpl.batch(i, seq) or (b"", 0)
            await call.write(pb.StreamRequest(batch=pb.Batch(seq=seq, payload=data, sample_count=samples)))
            while True:
                r = await call.read()
                if r is grpc.aio.EOF:
                    raise ConnectionError(f"agent {i}: stream ended before the first batch's ack")
                if r.WhichOneof("kind") == "ack":
                    if r.ack.status != pb.ACK_STATUS_STORED:
                        raise ConnectionError(f"agent {i}: first batch not stored: {r.ack.detail}")
                    break
        totals.connected += 1
        await go.wait()
        slots = asyncio.Semaphore(window)
        sent: dict[int, tuple[float, int]] = {}  # seq -> (when sent, samples)
        drained = asyncio.Event()
        stopped = [False]  # sending is over (the end, or no pre-encoded batch left)

        async def receive() -> None:
            while True:
                r = await call.read()
                if r is grpc.aio.EOF:
                    return
                if r.WhichOneof("kind") != "ack":
                    continue
                now = time.time()
                ack = r.ack
                t_sent, samples = sent.pop(ack.seq, (None, 0))
                if ack.status == pb.ACK_STATUS_STORED and times["start"] <= now < times["end"]:
                    totals.acked_samples += samples
                    totals.acked_batches += 1
                    if t_sent is not None:
                        totals.latencies_ms.append((now - t_sent) * 1000)
                elif ack.status == pb.ACK_STATUS_REJECTED:
                    totals.rejected += 1
                    if len(totals.errors) < 5:
                        totals.errors.append(f"rejected seq {ack.seq}: {ack.detail}")
                elif ack.status == pb.ACK_STATUS_DUPLICATE:
                    totals.duplicates += 1
                slots.release()
                if not sent and (stopped[0] or time.time() >= times["end"]):
                    drained.set()

        reader = asyncio.ensure_future(receive())
        try:
            while True:
                try:  # a stream that broke frees no slot: never wait past the end for one
                    await asyncio.wait_for(slots.acquire(), max(1.0, times["end"] - time.time() + DRAIN_S))
                except TimeoutError:
                    totals.errors.append(f"agent {i}: no ack freed a slot")
                    break
                if time.time() >= times["end"] or reader.done():
                    break
                seq += 1
                got = tpl.batch(i, seq)
                if got is None:
                    totals.exhausted += 1
                    break
                data, samples = got
                sent[seq] = (time.time(), samples)
                await call.write(pb.StreamRequest(batch=pb.Batch(seq=seq, payload=data, sample_count=samples)))
            stopped[0] = True
            if sent:
                try:
                    await asyncio.wait_for(drained.wait(), DRAIN_S)
                except TimeoutError:
                    totals.errors.append(f"agent {i}: {len(sent)} batches unacked {DRAIN_S:.0f} s after the end")
            await call.done_writing()
            await asyncio.wait_for(reader, 30)  # 2,000 streams ending at once on a busy machine
        finally:
            reader.cancel()


async def _main(args: argparse.Namespace) -> dict:
    t_build = time.process_time()
    tpl: Template | DeskPool
    if args.desk_batches:
        tpl = DeskPool(args.desk_batches, max(1, min(4, args.agents)))
    else:
        tpl = Template(args.batch_samples)
    build_cpu_s = time.process_time() - t_build
    totals = Totals()
    go = asyncio.Event()
    times = {"start": float("inf"), "end": float("inf")}
    run_id = args.run_id or uuid.uuid4().hex[:8]
    t_connect = time.monotonic()
    connecting = asyncio.Semaphore(CONNECTS_AT_ONCE)
    agents = [
        asyncio.ensure_future(
            _agent(args.first + k, run_id, args.target, tpl, args.window, go, times, totals, connecting, args.prime)
        )
        for k in range(args.agents)
    ]
    deadline = time.monotonic() + args.connect_timeout
    while totals.connected < args.agents:
        failed = [a for a in agents if a.done() and a.exception() is not None]
        if failed or time.monotonic() > deadline:
            err = failed[0].exception() if failed else TimeoutError(f"{totals.connected}/{args.agents} connected")
            raise RuntimeError(f"agents failed to connect: {err!r}")
        await asyncio.sleep(0.05)
    connect_s = time.monotonic() - t_connect
    args.ready.write_text(f"{totals.connected}\n")
    while not (args.go.exists() and args.go.read_text().strip()):
        if time.monotonic() > deadline + 120:
            raise RuntimeError("no go signal")
        await asyncio.sleep(0.02)
    t0 = float(args.go.read_text())
    times["start"], times["end"] = t0 + args.warmup, t0 + args.warmup + args.duration
    await asyncio.sleep(max(0.0, t0 - time.time()))
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    go.set()
    results = await asyncio.gather(*agents, return_exceptions=True)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    for r in results:
        if isinstance(r, BaseException) and len(totals.errors) < 10:
            totals.errors.append(f"{type(r).__name__}: {r}")
    return {
        "agents": args.agents,
        "batch_samples": tpl.samples,
        "window": args.window,
        "payload_bytes": len(tpl.data),
        "payload_build_cpu_s": round(build_cpu_s, 2),
        "exhausted_agents": totals.exhausted,
        "connect_s": round(connect_s, 2),
        "acked_samples": totals.acked_samples,
        "acked_batches": totals.acked_batches,
        "rejected": totals.rejected,
        "duplicates": totals.duplicates,
        "errors": totals.errors,
        "connect_retries": totals.reconnects,
        "connect_retry_kinds": totals.retry_kinds,
        "latencies_ms": [round(x, 2) for x in totals.latencies_ms],
        "cpu_s": round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 2),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--agents", type=int, required=True)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--batch-samples", type=int, default=5000)
    ap.add_argument(
        "--desk-batches", type=int, default=0, help="realistic 30 s desk batches: how many to pre-encode per desk"
    )
    ap.add_argument("--prime", action="store_true", help="each agent's first batch acked before it reports ready")
    ap.add_argument("--window", type=int, default=2, help="batches in flight per agent")
    ap.add_argument("--ready", type=Path, required=True)
    ap.add_argument("--go", type=Path, required=True)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--connect-timeout", type=float, default=120.0)
    ap.add_argument("--run-id", default="")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--credentials", type=Path, default=None, help="JSON agent id -> credential")
    args = ap.parse_args(argv)
    if args.credentials:
        CREDENTIALS.update(json.loads(args.credentials.read_text()))
    args.duration = min(args.duration, 600.0)  # bounded
    try:
        result = asyncio.run(_main(args))
    except Exception as exc:  # reported to the parent through the output file
        result = {"fatal": f"{type(exc).__name__}: {exc}", "pid": os.getpid()}
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
