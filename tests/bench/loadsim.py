"""Many simulated agents against one collector on loopback: all stored, memory bounded, acks flowing.

A simulated agent is a coroutine, not a process: it says Hello, then every
``--batch-interval`` seconds (random phase) sends a real msgpack batch of
30-100 RTT samples at 1 s cadence over a few targets, keeps what is unacked and
resends it after a broken stream, exactly like the real uplink (at-least-once).
Thousands of them share a few ``grpc.aio`` channels (HTTP/2 connections).

By default the simulator starts its own collector process (SQLite in a temporary
directory), samples that process's RSS with psutil, and at the end checks the
store: every sample sent is stored, none twice.

    .venv/bin/python -m tests.bench.loadsim --quick           # 2,000 agents, under a minute
    .venv/bin/python -m tests.bench.loadsim                   # 2,000 agents, 120 s
    .venv/bin/python -m tests.bench.loadsim --agents 200 --batch-interval 0.5 --samples 100-100 \\
        --stall 15@5                                          # storage stalls 15 s, 5 s in
    .venv/bin/python -m tests.bench.loadsim --db postgresql://postgres@127.0.0.1:5432/test

``--stall S@T`` holds the SQLite write lock from another connection for S seconds
starting T seconds into the run: storage falls behind for real, and the output
shows what the collector's memory did meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil

from cxpulse.v1 import payload as p
from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[2]
TARGETS = [("gateway", "192.168.1.1"), ("isp", "100.64.0.1"), ("ccaas-edge", "203.0.113.10"), ("crm", "198.51.100.7")]


@dataclass
class SimConfig:
    agents: int = 2000
    duration_s: float = 120.0
    batch_interval_s: float = 10.0
    samples: tuple[int, int] = (30, 100)
    channels: int = 8
    connect_spread_s: float = 5.0
    drain_timeout_s: float = 60.0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])


@dataclass
class SimResult:
    agents: int = 0
    connected: int = 0
    batches_sent: int = 0
    batches_acked: int = 0
    samples_sent: int = 0
    samples_acked: int = 0
    unacked_at_end: int = 0
    reconnects: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    ack_latencies: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    per_agent_samples: dict[str, int] = field(default_factory=dict)
    stored: int | None = None
    stored_mismatches: list[str] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (t, MB) of the collector
    collector_cpu_s: float = 0.0  # CPU seconds (user + system) the collector used during the run
    sampled_s: float = 0.0

    def pct(self, q: float) -> float:
        if not self.ack_latencies:
            return float("nan")
        xs = sorted(self.ack_latencies)
        return xs[min(len(xs) - 1, int(q / 100 * len(xs)))]

    @property
    def peak_rss_mb(self) -> float:
        return max((m for _, m in self.rss_mb), default=0.0)


class SimAgent:
    """One simulated desk: sequence numbers, an unacked window kept for resending, ack latencies."""

    def __init__(self, index: int, cfg: SimConfig, result: SimResult):
        self.agent_id = f"sim-{cfg.run_id}-{index:05d}"
        self.cfg = cfg
        self.result = result
        self.epoch = random.getrandbits(62) or 1
        self.seq = 0
        self.unacked: dict[int, tuple[bytes, int, float]] = {}  # seq -> (payload, samples, first send time)
        self.samples_sent = 0
        self.next_ts_us = (int(time.time()) - 3600) * 1_000_000  # an hour back: clearly in the past
        self._acked = asyncio.Event()
        self.metadata: tuple = ()  # the credential (tests.conftest provisions one per simulated agent)

    def make_batch(self) -> tuple[bytes, int]:
        n = random.randint(*self.cfg.samples)
        targets = TARGETS[: random.randint(2, len(TARGETS))]
        series = {t: p.Series(target=t, address=a, method=p.METHOD_ICMP_RAW) for t, a in targets}
        per = max(1, n // len(targets))
        made = 0
        for i in range(per + 1):
            for t, _ in targets:
                if made == n:
                    break
                rtt = None if random.random() < 0.01 else random.randint(800, 90_000)
                series[t].add(self.next_ts_us + i * 1_000_000 + random.randint(0, 3000), rtt)
                made += 1
        self.next_ts_us += (per + 1) * 1_000_000
        batch = p.SampleBatch(list(series.values()))
        return p.encode(batch), batch.sample_count

    async def run(self, channel: grpc.aio.Channel, stop_producing: asyncio.Event, give_up: asyncio.Event) -> None:
        await asyncio.sleep(random.uniform(0, self.cfg.connect_spread_s))
        stub = pb_grpc.TelemetryServiceStub(channel)
        attempt = 0
        first = True
        while not give_up.is_set() and (not stop_producing.is_set() or self.unacked):
            try:
                await self._session(stub, stop_producing, give_up, first)
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any broken stream: back off and resend, like the real uplink
                if isinstance(exc, grpc.aio.AioRpcError):
                    key = f"{exc.code().name}: {(exc.details() or '')[:60]}"
                    md = exc.trailing_metadata() or ()
                    hint = next((int(v) / 1000 for k, v in md if k == "retry-after-ms"), None)
                else:
                    key, hint = f"{type(exc).__name__}: {str(exc)[:60]}", None
                self.result.refused[key] = self.result.refused.get(key, 0) + 1
                delay = random.uniform(hint, 2 * hint) if hint else random.uniform(0, min(10.0, 0.5 * 2**attempt))
                attempt += 1
                self.result.reconnects += 1
                try:
                    await asyncio.wait_for(give_up.wait(), delay)
                except TimeoutError:
                    pass
            first = False

    async def _session(self, stub, stop_producing: asyncio.Event, give_up: asyncio.Event, first: bool) -> None:
        call = stub.Stream(metadata=self.metadata)
        try:
            await call.write(
                pb.StreamRequest(
                    hello=pb.Hello(
                        agent_id=self.agent_id,
                        host=f"desk-{self.agent_id[-5:]}",
                        os_user=f"user{self.agent_id[-5:]}",
                        os="sim",
                        agent_version="loadsim",
                        site="bench",
                        seq_epoch=self.epoch,
                        payload_schema=1,
                    )
                )
            )
            hello = await call.read()
            if hello is grpc.aio.EOF:
                raise ConnectionError("no config")
            if first:
                self.result.connected += 1
            self._ack_upto(hello.config.committed_seq)
            for seq, (data, n, _) in sorted(self.unacked.items()):  # resend what a broken stream left
                await call.write(pb.StreamRequest(batch=pb.Batch(seq=seq, payload=data, sample_count=n)))
            receiver = asyncio.ensure_future(self._receive(call))
            try:
                await self._produce(call, stop_producing, give_up, receiver)
            finally:
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
        finally:
            call.cancel()

    async def _produce(
        self, call, stop_producing: asyncio.Event, give_up: asyncio.Event, receiver: asyncio.Future
    ) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + random.uniform(0, self.cfg.batch_interval_s)
        while not give_up.is_set():
            if receiver.done():
                receiver.result()  # raises the stream's error
                return
            if stop_producing.is_set():
                if not self.unacked:
                    await call.done_writing()
                    return
                waits = [asyncio.ensure_future(self._acked.wait()), asyncio.ensure_future(give_up.wait())]
                self._acked.clear()
                _done, _ = await asyncio.wait(waits + [receiver], timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
                continue
            delay = next_at - loop.time()
            if delay > 0:
                stopping = asyncio.ensure_future(stop_producing.wait())
                await asyncio.wait([stopping, receiver], timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                continue
            next_at += self.cfg.batch_interval_s
            data, n = self.make_batch()
            self.seq += 1
            self.unacked[self.seq] = (data, n, time.monotonic())
            self.samples_sent += n
            self.result.batches_sent += 1
            self.result.samples_sent += n
            await call.write(pb.StreamRequest(batch=pb.Batch(seq=self.seq, payload=data, sample_count=n)))

    async def _receive(self, call) -> None:
        while True:
            resp = await call.read()
            if resp is grpc.aio.EOF:
                return
            if resp.WhichOneof("kind") == "ack":
                if resp.ack.status == pb.ACK_STATUS_REJECTED:
                    raise RuntimeError(f"{self.agent_id}: batch {resp.ack.seq} rejected: {resp.ack.detail}")
                self._ack_upto(resp.ack.committed_seq)

    def _ack_upto(self, committed: int) -> None:
        now = time.monotonic()
        for seq in [s for s in self.unacked if s <= committed]:
            _, n, sent = self.unacked.pop(seq)
            self.result.batches_acked += 1
            self.result.samples_acked += n
            self.result.ack_latencies.append(now - sent)
        self._acked.set()


async def simulate(target: str, cfg: SimConfig, result: SimResult | None = None) -> SimResult:
    """Run the agents against ``target`` for ``cfg.duration_s``, then wait (bounded) for every ack."""
    result = result or SimResult()
    result.agents = cfg.agents
    options = [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000)]
    from tests.conftest import agent_metadata_many, client_channel

    channels = [
        client_channel(target, options + [("grpc.use_local_subchannel_pool", 1)], aio=True) for i in range(cfg.channels)
    ]
    agents = [SimAgent(i, cfg, result) for i in range(cfg.agents)]
    creds = await asyncio.to_thread(agent_metadata_many, target, [a.agent_id for a in agents])
    for a in agents:
        a.metadata = creds[a.agent_id]
    stop_producing, give_up = asyncio.Event(), asyncio.Event()
    t0 = time.monotonic()
    tasks = [
        asyncio.ensure_future(a.run(channels[i % len(channels)], stop_producing, give_up)) for i, a in enumerate(agents)
    ]
    await asyncio.sleep(cfg.duration_s)
    stop_producing.set()
    _, _pending = await asyncio.wait(tasks, timeout=cfg.drain_timeout_s)
    give_up.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    result.elapsed_s = time.monotonic() - t0
    result.unacked_at_end = sum(len(a.unacked) for a in agents)
    result.per_agent_samples = {a.agent_id: a.samples_sent for a in agents}
    for ch in channels:
        await ch.close()
    return result


def check_store(db: str, result: SimResult) -> None:
    """Every sample sent by a simulated agent is stored, exactly once (counted per agent)."""
    from cxpulse.collector.store import open_store

    store = open_store(db)
    try:
        prefix = next(iter(result.per_agent_samples), "sim-")[:12]
        found = {
            a.info.agent_id: a.key for a in store.find_agents(prefix, limit=10 * len(result.per_agent_samples) + 10)
        }
        total = 0
        for agent_id, sent in result.per_agent_samples.items():
            got = store.sample_count(found[agent_id]) if agent_id in found else 0
            total += got
            if got != sent:
                result.stored_mismatches.append(f"{agent_id}: sent {sent}, stored {got}")
        result.stored = total
    finally:
        store.close()


class RssSampler:
    """Samples a process's resident memory every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, result: SimResult, interval: float = 0.5):
        self.proc = psutil.Process(pid)
        self.result = result
        self.interval = interval
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._cpu0 = self._cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.result.collector_cpu_s = self._cpu() - self._cpu0
        self.result.sampled_s = time.monotonic() - self._t0

    def _cpu(self) -> float:
        try:
            t = self.proc.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.result.rss_mb.append((time.monotonic() - self._t0, self.proc.memory_info().rss / (1 << 20)))
            except psutil.Error:
                return
            self._stop.wait(self.interval)


class SqliteStall:
    """Holds the SQLite write lock from another connection: the collector's commits wait (a slow store)."""

    def __init__(self, db: str, start_s: float, hold_s: float):
        self.db, self.start_s, self.hold_s = db, start_s, hold_s
        self.held: tuple[float, float] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cancel = threading.Event()

    def start(self) -> SqliteStall:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._cancel.set()
        self._thread.join(self.hold_s + 5)

    def _run(self) -> None:
        if self._cancel.wait(self.start_s):
            return
        con = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            t = time.monotonic()
            self._cancel.wait(self.hold_s)
            con.execute("ROLLBACK")
            self.held = (t, time.monotonic())
        finally:
            con.close()


def start_collector(db: str, workdir: str, log_path: str) -> tuple[subprocess.Popen, str]:
    ready = os.path.join(workdir, "collector.ready")
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxpulse",
            "-v",
            "collector",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            db,
            "--ready-file",
            ready,
            "--insecure",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    log.close()
    deadline = time.monotonic() + 30
    while not (os.path.exists(ready) and open(ready).read().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"collector did not start; see {log_path}")
        time.sleep(0.05)
    address = f"127.0.0.1:{int(open(ready).read())}"
    from tests.conftest import register_collector

    register_collector(address, db, insecure=True)  # simulated agents get credentials in this database
    return proc, address


def stop_collector(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


def run(
    cfg: SimConfig,
    db: str | None = None,
    target: str | None = None,
    collector_pid: int | None = None,
    stall: tuple[float, float] | None = None,
    workdir: str | None = None,
) -> SimResult:
    """The whole benchmark; starts (and stops) its own collector unless ``target`` is given."""
    own_tmp = None
    if workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="cxpulse-loadsim-")
        workdir = own_tmp.name
    db = db or os.path.join(workdir, "collector.sqlite")
    proc = None
    result = SimResult()
    try:
        if target is None:
            proc, target = start_collector(db, workdir, os.path.join(workdir, "collector.log"))
            collector_pid = proc.pid
        stall_thread = SqliteStall(db, *stall).start() if stall else None
        sampler = RssSampler(collector_pid, result) if collector_pid else None
        try:
            if sampler:
                sampler.__enter__()
            asyncio.run(simulate(target, cfg, result))
        finally:
            if sampler:
                sampler.__exit__()
            if stall_thread:
                stall_thread.stop()
        check_store(db, result)
    finally:
        if proc is not None:
            stop_collector(proc)
        if own_tmp is not None:
            own_tmp.cleanup()
    return result


def report(cfg: SimConfig, r: SimResult) -> str:
    rate = r.samples_acked / r.elapsed_s if r.elapsed_s else 0
    lines = [
        f"agents {r.agents} ({r.connected} connected) over {cfg.channels} channels; "
        f"batch every {cfg.batch_interval_s:g} s with {cfg.samples[0]}-{cfg.samples[1]} samples; "
        f"produced for {cfg.duration_s:g} s, all acked after {r.elapsed_s:.1f} s",
        f"batches sent {r.batches_sent}, acked {r.batches_acked}, unacked at end {r.unacked_at_end}; "
        f"reconnects {r.reconnects}"
        + (f" ({', '.join(f'{k} x{v}' for k, v in r.refused.items())})" if r.refused else ""),
        f"ingest: {rate:,.0f} samples/s acked ({r.batches_acked / r.elapsed_s if r.elapsed_s else 0:,.1f} batches/s)",
        f"ack latency: p50 {r.pct(50) * 1000:.1f} ms, p99 {r.pct(99) * 1000:.1f} ms, "
        f"max {max(r.ack_latencies, default=0) * 1000:.0f} ms",
    ]
    if r.rss_mb:
        lines.append(
            f"collector RSS: start {r.rss_mb[0][1]:.0f} MB, peak {r.peak_rss_mb:.0f} MB, end {r.rss_mb[-1][1]:.0f} MB "
            f"({len(r.rss_mb)} samples); collector CPU {100 * r.collector_cpu_s / max(r.sampled_s, 1e-9):.0f}% "
            f"of one core on average"
        )
    if r.stored is not None:
        ok = not r.stored_mismatches and r.stored == r.samples_sent
        lines.append(
            f"store: {r.stored:,} of {r.samples_sent:,} samples sent -> "
            + ("all stored, none twice" if ok else f"MISMATCH: {r.stored_mismatches[:5]}")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=2000)
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of producing (then all acks are awaited)")
    ap.add_argument("--batch-interval", type=float, default=10.0)
    ap.add_argument("--samples", default="30-100", help="samples per batch, LO-HI")
    ap.add_argument("--channels", type=int, default=8, help="HTTP/2 connections the agents share")
    ap.add_argument("--quick", action="store_true", help="2,000 agents, 25 s of producing: under a minute in all")
    ap.add_argument("--target", help="an already running collector (HOST:PORT); default: start one")
    ap.add_argument("--collector-pid", type=int, help="with --target: sample this process's RSS")
    ap.add_argument("--db", help="store to check (and, without --target, to run the collector on)")
    ap.add_argument("--stall", help="S@T: hold the SQLite write lock S seconds from T seconds in")
    args = ap.parse_args(argv)
    lo, hi = (int(x) for x in args.samples.split("-"))
    cfg = SimConfig(
        agents=args.agents,
        duration_s=args.duration,
        batch_interval_s=args.batch_interval,
        samples=(lo, hi),
        channels=args.channels,
    )
    if args.quick:
        cfg.duration_s, cfg.connect_spread_s = 25.0, 5.0
    if args.target and not args.db:
        ap.error("--target needs --db (the store to check)")
    stall = None
    if args.stall:
        s, _, t = args.stall.partition("@")
        stall = (float(t or 0), float(s))
    r = run(cfg, db=args.db, target=args.target, collector_pid=args.collector_pid, stall=stall)
    print(report(cfg, r))
    return 0 if r.stored == r.samples_sent and not r.stored_mismatches and r.unacked_at_end == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
