"""The impairment bridge program: forwards Ethernet frames between two ports, late or not at all.

Started by ``tests.impair.splice`` inside a namespace of its own (``python -m tests.impair_bridge``);
read that module for the config and the log. Why a program of our own: this kernel has no
``netem``, and a test that checks what the agent measured needs a ground truth it can trust, down
to the microsecond an outage began.

One thread, one ``select`` loop, one heap of frames ordered by departure time. Precision comes
from three things, each measured on the 2-vCPU VMs this project runs on: a frame's arrival time is
the kernel's receive timestamp, so a late wake-up does not lengthen its delay; the loop sleeps
in stages before a departure, because there waking from a 20 ms sleep takes ~150 us at the median
and milliseconds at the tail while short sleeps wake fast: one sleep until 2 ms before, sleeps of
at most 0.5 ms until ``--spin-us`` before, then polling (~5 us late); and it runs SCHED_FIFO when
allowed, so the agent and collector under test do not push it aside. What remains is the
hypervisor taking the vCPU away now and then (steal time): about 1% of frames leave 0.3-5 ms late.

Signals: SIGHUP reloads the control file, SIGUSR1 logs stats, SIGTERM/SIGINT log final stats and
exit. The bridge also exits when its parent (the test process) is gone or ``--max-seconds`` have
passed, so a killed test run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import ctypes
import heapq
import itertools
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, TextIO

from tests.impair import DIRECTIONS, Config, Episode, Impairment

ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
SOL_PACKET = 263
PACKET_OUTGOING = 4
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PR_SET_TIMERSLACK = 29
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("qq")
# The kernel hands frames over with a virtio-net header: checksum-offload and GSO state travel
# with the frame, so TCP from a veth with offloads on (no ethtool here to turn them off) reaches
# the other side intact, and a 64 KiB GSO frame is one read.
VNET_HDR_LEN = 10
ETHERTYPE_AT = VNET_HDR_LEN + 12
FRAME_BUF = VNET_HDR_LEN + 65536 + 4096
MAX_QUEUED = 20_000  # frames in flight; more are dropped and counted as overflow
DRAIN_BATCH = 256  # frames read from one port before the loop looks at due frames again
LATENESS_KEPT = 100_000
HOUSEKEEPING_NS = 1_000_000_000  # the parent and lifetime checks run at least this often
APPROACH_NS = 2_000_000  # from this long before a departure, sleep in short hops
HOP_NS = 500_000
SPIN_BUDGET_NS = 100_000_000  # at most 10% of a core per housekeeping second goes to polling
REALTIME_PRIORITY = 10  # SCHED_FIFO, low among real-time tasks: above every normal process

MATCHERS = {
    "ipv4": lambda ethertype: ethertype == ETH_P_IP,
    "ip": lambda ethertype: ethertype in (ETH_P_IP, ETH_P_IPV6),
    "all": lambda ethertype: True,
}


def mono_ns() -> int:
    return time.monotonic_ns()


def wall_of(mono: int) -> int:
    """The Unix time (ns) of a monotonic instant, via the clocks' current offset."""
    return mono + (time.time_ns() - time.monotonic_ns())


class EventLog:
    """JSON lines, flushed per line: the test reads them while the bridge runs."""

    def __init__(self, path: str) -> None:
        self._file: TextIO = open(path, "a", buffering=1)

    def write(self, event: str, at_ns: int | None = None, **fields: Any) -> None:
        fired = mono_ns()
        at = fired if at_ns is None else at_ns
        record = {
            "event": event,
            "mono_us": at // 1000,
            "wall_us": wall_of(at) // 1000,
            "fired_mono_us": fired // 1000,
            **fields,
        }
        self._file.write(json.dumps(record) + "\n")


@dataclass
class Scheduled:
    spec: Episode
    start_ns: int
    end_ns: int
    started: bool = False
    ended: bool = False


class Schedule:
    """Episodes by name, with the windows frames are judged by and the log of their boundaries.

    A frame is inside an episode if it reached the bridge in [start, end) of the planned window;
    the log line for a boundary is written when the loop gets there, and carries both the planned
    instant (the truth) and the instant of writing.
    """

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.episodes: dict[str, Scheduled] = {}

    def load(self, specs: tuple[Episode, ...], t0_ns: int, now: int) -> None:
        """Pending episodes may be redefined or dropped; a running one dropped ends now."""
        wanted = {spec.name: spec for spec in specs}
        for name, ep in list(self.episodes.items()):
            if name in wanted:
                continue
            if ep.started and not ep.ended:
                ep.end_ns = now
                self._end(ep, cancelled=True)
            elif not ep.started:
                del self.episodes[name]
        for name, spec in wanted.items():
            current = self.episodes.get(name)
            if current is not None and current.started:
                continue  # fixed once started: the log already tells about it
            start = t0_ns + int(spec.start_s * 1e9)
            end = start + int(spec.duration_s * 1e9)
            if end <= now:
                self.log.write("episode_skipped", name=name, reason="ends before it was loaded")
                self.episodes.pop(name, None)
                continue
            self.episodes[name] = Scheduled(spec, max(start, now), end)

    def fire_due(self, now: int) -> None:
        for ep in sorted(self.episodes.values(), key=lambda e: e.start_ns):
            if not ep.started and ep.start_ns <= now:
                ep.started = True
                self.log.write("episode_start", at_ns=ep.start_ns, **self._describe(ep))
            if ep.started and not ep.ended and ep.end_ns <= now:
                self._end(ep, cancelled=False)

    def next_boundary(self) -> int | None:
        times = [ep.end_ns if ep.started else ep.start_ns for ep in self.episodes.values() if not ep.ended]
        return min(times, default=None)

    def effect(self, direction: str, at: int) -> tuple[int, float]:
        """(extra delay ns, probability to keep) from the episodes covering ``at`` in ``direction``."""
        extra, keep = 0, 1.0
        for ep in self.episodes.values():
            if ep.start_ns <= at < ep.end_ns and direction in ep.spec.directions():
                extra += int(ep.spec.extra_delay_ms * 1e6)
                keep *= 1.0 - ep.spec.loss
        return extra, keep

    def _end(self, ep: Scheduled, *, cancelled: bool) -> None:
        ep.ended = True
        self.log.write("episode_end", at_ns=ep.end_ns, cancelled=cancelled, **self._describe(ep))

    @staticmethod
    def _describe(ep: Scheduled) -> dict[str, Any]:
        return {
            "name": ep.spec.name,
            "direction": ep.spec.direction,
            "extra_delay_ms": ep.spec.extra_delay_ms,
            "loss": ep.spec.loss,
            "planned_start_s": ep.spec.start_s,
            "planned_duration_s": ep.spec.duration_s,
        }


class Lane:
    """One direction: its steady impairment, random streams, counters and delay errors."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.impairment = Impairment()
        self.loss_rng = random.Random()
        self.jitter_rng = random.Random()
        self.last_due = 0
        self.counts = dict.fromkeys(
            ("received", "forwarded", "lost", "lost_in_episode", "passed", "overflow", "send_errors"), 0
        )
        self.lateness_ns: deque[int] = deque(maxlen=LATENESS_KEPT)

    def load(self, impairment: Impairment, seed: int) -> None:
        """String seeds hash the same in every run (unlike ``hash()``): reproducible streams."""
        self.impairment = impairment
        self.loss_rng.seed(f"{seed}/{self.name}/loss")
        self.jitter_rng.seed(f"{seed}/{self.name}/jitter")
        self.lateness_ns.clear()

    def admit(self, arrival: int, extra_ns: int, episode_keep: float) -> int | None:
        """The departure time of a frame that arrived at ``arrival``, or None if it is lost."""
        imp = self.impairment
        if self.loss_rng.random() >= (1.0 - imp.loss) * episode_keep:
            self.counts["lost"] += 1
            if episode_keep < 1.0:
                self.counts["lost_in_episode"] += 1
            return None
        delay = imp.delay_ms * 1e6 + extra_ns
        if imp.jitter_ms:
            spread = imp.jitter_ms * 1e6
            delay += (
                self.jitter_rng.uniform(-spread, spread)
                if imp.jitter == "uniform"
                else self.jitter_rng.gauss(0.0, spread)
            )
        due = arrival + max(0, int(delay))
        if not imp.reorder:
            due = max(due, self.last_due)  # a FIFO link: nobody overtakes
        self.last_due = max(self.last_due, due)
        return due

    def stats(self) -> dict[str, Any]:
        late = sorted(self.lateness_ns)

        def pick(q: float) -> float | None:
            return round(late[min(len(late) - 1, int(q * len(late)))] / 1000, 1) if late else None

        return {
            **self.counts,
            "lateness_us": {
                "n": len(late),
                "p50": pick(0.5),
                "p99": pick(0.99),
                "max": round(late[-1] / 1000, 1) if late else None,
            },
        }


def open_port(ifname: str) -> socket.socket:
    """A packet socket on one port; protocol 0 until bind, so no frame of another port slips in."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    try:
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass  # older kernels: the pkttype check below does the same
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((ifname, ETH_P_ALL))
    sock.setblocking(False)
    return sock


def cut_timer_slack() -> None:
    """The default 50 us slack would be a sixth of the precision budget; ask for 1 ns."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def go_realtime() -> str:
    """SCHED_FIFO if this process may (root, RT budget left); the policy in effect, for the log."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    except (OSError, AttributeError):
        return "other"
    return "fifo"


def kernel_arrival(ancdata: list[tuple[int, int, bytes]], clock_offset: int) -> int | None:
    """The monotonic time the kernel received a frame, from its SO_TIMESTAMPNS (realtime) stamp."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(data)
            return sec * 1_000_000_000 + nsec - clock_offset
    return None


class ImpairBridge:
    def __init__(
        self, port_a: str, port_b: str, control: str, log: EventLog, max_seconds: float, spin_us: float
    ) -> None:
        self.ports = (open_port(port_a), open_port(port_b))
        self.lanes = (Lane(DIRECTIONS[0]), Lane(DIRECTIONS[1]))
        self.control = control
        self.log = log
        self.schedule = Schedule(log)
        self.heap: list[tuple[int, int, int, bytes]] = []
        self._order = itertools.count()
        self._buf = bytearray(FRAME_BUF)
        self._anc_size = socket.CMSG_SPACE(TIMESPEC.size)
        self.spin_ns = int(spin_us * 1000)
        self.matches = MATCHERS["ipv4"]
        self.t0 = mono_ns()
        self.deadline = self.t0 + int(max_seconds * 1e9)
        self.parent = os.getppid()
        self.running = True
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # -- control ----------------------------------------------------------------------------
    def install_signals(self) -> None:
        """Handlers do nothing: the wakeup fd carries the signal numbers into the loop."""
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)

    def reload(self, *, first: bool = False) -> None:
        """Load the control file; a bad one is logged and the running config kept (never crash)."""
        generation = None
        try:
            with open(self.control) as f:
                doc = json.load(f)
            generation = doc.get("generation")
            config = Config.from_dict(doc["config"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.log.write("config_error", generation=generation, error=f"{type(exc).__name__}: {exc}")
            if first:
                raise SystemExit(f"impair_bridge: bad initial config: {exc}") from exc
            return
        now = mono_ns()
        for lane, impairment in zip(self.lanes, (config.a_to_b, config.b_to_a)):
            lane.load(impairment, config.seed)
        self.matches = MATCHERS[config.match]
        self.schedule.load(config.episodes, self.t0, now)
        self.log.write("config", generation=generation, config=config.to_dict())

    def on_signals(self) -> None:
        try:
            signums = self._wake_r.recv(256)
        except BlockingIOError:
            return
        for signum in signums:
            if signum == signal.SIGHUP:
                self.reload()
            elif signum == signal.SIGUSR1:
                self.log_stats(final=False)
            elif signum in (signal.SIGTERM, signal.SIGINT):
                self.running = False

    def log_stats(self, *, final: bool) -> None:
        self.log.write("stats", final=final, queued=len(self.heap), **{lane.name: lane.stats() for lane in self.lanes})

    # -- frames -----------------------------------------------------------------------------
    def drain(self, side: int) -> None:
        sock, lane, out = self.ports[side], self.lanes[side], self.ports[1 - side]
        clock_offset = time.time_ns() - time.monotonic_ns()
        for _ in range(DRAIN_BATCH):
            try:
                size, ancdata, _, address = sock.recvmsg_into([self._buf], self._anc_size)
            except BlockingIOError:
                return
            if address[2] == PACKET_OUTGOING or size <= ETHERTYPE_AT + 2:
                continue
            now = mono_ns()
            stamped = kernel_arrival(ancdata, clock_offset)
            # A stamp from the future is a clock step between the two readings: trust our own.
            arrival = stamped if stamped is not None and stamped <= now else now
            frame = bytes(self._buf[:size])
            lane.counts["received"] += 1
            if not self.matches(int.from_bytes(frame[ETHERTYPE_AT : ETHERTYPE_AT + 2], "big")):
                lane.counts["passed"] += 1
                self._send(out, lane, frame)
                continue
            due = lane.admit(arrival, *self.schedule.effect(lane.name, arrival))
            if due is None:
                continue
            if len(self.heap) >= MAX_QUEUED:
                lane.counts["overflow"] += 1
                continue
            heapq.heappush(self.heap, (due, next(self._order), side, frame))

    def send_due(self) -> None:
        while self.heap and self.heap[0][0] <= mono_ns():
            due, _, side, frame = heapq.heappop(self.heap)
            lane = self.lanes[side]
            # Taken before send(): on a veth, send() also runs the receiver's stack inline.
            leaving = mono_ns()
            if self._send(self.ports[1 - side], lane, frame):
                lane.counts["forwarded"] += 1
                lane.lateness_ns.append(leaving - due)

    @staticmethod
    def _send(out: socket.socket, lane: Lane, frame: bytes) -> bool:
        try:
            out.send(frame)
        except OSError:
            lane.counts["send_errors"] += 1
            return False
        return True

    # -- loop -------------------------------------------------------------------------------
    def _approach(self, due: int, now: int, may_poll: bool) -> int:
        """When to look again before a departure at ``due`` (``now`` or earlier means poll).

        The polling budget exists for busy queues: departures closer together than ``spin_ns``
        would otherwise poll all the time, at real-time priority.
        """
        if not may_poll:
            return due
        until = due - now
        if until <= self.spin_ns:
            return now
        if until <= APPROACH_NS:
            return now + min(until - self.spin_ns, HOP_NS)
        return due - APPROACH_NS

    def run(self) -> None:
        readers = [self.ports[0], self.ports[1], self._wake_r]
        next_housekeeping = mono_ns() + HOUSEKEEPING_NS
        spun, spinning, last = 0, False, mono_ns()
        while self.running:
            now = mono_ns()
            if spinning:
                spun += now - last
            last = now
            self.schedule.fire_due(now)
            self.send_due()
            if now >= next_housekeeping:
                next_housekeeping, spun = now + HOUSEKEEPING_NS, 0
                if os.getppid() != self.parent or now >= self.deadline:
                    self.log.write("exit", reason="parent gone" if os.getppid() != self.parent else "max-seconds")
                    break
            boundary = self.schedule.next_boundary()
            wake = min(next_housekeeping, boundary if boundary is not None else next_housekeeping)
            spinning = False
            if self.heap:
                wake = min(wake, self._approach(self.heap[0][0], now, spun < SPIN_BUDGET_NS))
                spinning = wake <= now
            ready, _, _ = select.select(readers, [], [], max(0.0, (wake - mono_ns()) / 1e9))
            for sock in ready:
                if sock is self._wake_r:
                    self.on_signals()
                else:
                    self.drain(self.ports.index(sock))
        self.log_stats(final=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-a", required=True)
    parser.add_argument("--port-b", required=True)
    parser.add_argument("--control", required=True, help="JSON {generation, config}; reread on SIGHUP")
    parser.add_argument("--log", required=True, help="JSON lines: start, config, episodes, stats")
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    parser.add_argument(
        "--spin-us", type=float, default=300.0, help="poll instead of sleeping this long before a departure (0: never)"
    )
    parser.add_argument("--no-realtime", action="store_true", help="stay SCHED_OTHER")
    args = parser.parse_args(argv)

    log = EventLog(args.log)
    bridge = ImpairBridge(args.port_a, args.port_b, args.control, log, args.max_seconds, args.spin_us)
    bridge.install_signals()
    cut_timer_slack()
    policy = "other" if args.no_realtime else go_realtime()
    log.write(
        "start",
        at_ns=bridge.t0,
        t0_mono_ns=bridge.t0,
        pid=os.getpid(),
        ports=[args.port_a, args.port_b],
        sched=policy,
        spin_us=args.spin_us,
    )
    bridge.reload(first=True)
    bridge.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
