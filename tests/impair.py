"""Delay, jitter, loss and outages on one link of a test lab, with ground truth to check against.

This kernel has no ``netem``, yet the agent's whole point is to notice latency, jitter, loss and
short outages and to say which hop they came from. So a test splices an impairment bridge (the
program in ``tests/impair_bridge.py``) into one veth link of a ``tests.netns.Lab``: the bridge sits
in a namespace of its own, forwards Ethernet frames between its two ports (it is no IP hop, a
traceroute does not see it) and delays or drops them as configured. It can be reconfigured while
it runs, and it logs the exact planned and actual times at which each scheduled episode began and
ended, so a test can compare what the agent detected against what really happened.

    bridge = splice(lab, link, tmp_path, Config(a_to_b=Impairment(delay_ms=20)))
    bridge.update(both=Impairment(delay_ms=20, jitter_ms=3))            # while running
    bridge.schedule(Episode.outage("cut", bridge.now() + 1, 2.0))        # 2 s outage in 1 s
    (cut,) = bridge.wait_episodes()                                      # EpisodeRecord, times in us
    samples = desk.call(echo_train, app_addr, 100, 0.02)                 # ground-truth pings

Everything in this module that a child python in a namespace runs (``echo_train``, ``trace``, the
config classes used by the bridge) needs the standard library only: ``Host.call`` loads this file
by its path, where the ``tests`` package may not be importable; it also leaves the module out of
``sys.modules``, where dataclasses look up string annotations, so this module does without
``from __future__ import annotations`` and quotes its forward references instead.
"""

import json
import math
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.netns import Host, Lab, Link

__all__ = [
    "DIRECTIONS",
    "Bridge",
    "BridgeError",
    "Config",
    "Episode",
    "EpisodeRecord",
    "Impairment",
    "echo_train",
    "splice",
    "trace",
]

DIRECTIONS = ("a_to_b", "b_to_a")
EPISODE_DIRECTIONS = (*DIRECTIONS, "both")
JITTER_KINDS = ("uniform", "normal")
MATCH_KINDS = ("ipv4", "ip", "all")
REPO = FsPath(__file__).resolve().parent.parent

# The bridge's two ports inside its namespace; side_a faces link.a, side_b faces link.b.
PORT_A, PORT_B = "side_a", "side_b"


class BridgeError(RuntimeError):
    """The bridge did not start, refused a config, or died; the message carries its stderr."""


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass(frozen=True)
class Impairment:
    """The steady state of one direction; episodes add to it for a while.

    ``jitter_ms`` is the half-width of a uniform spread around ``delay_ms`` (or the standard
    deviation of a normal one). Frames keep their order unless ``reorder`` is set, as on a real
    queue: a frame that drew a short delay waits behind an earlier one that drew a long delay, so
    at frame spacings below the jitter the spread you see is smaller than the one configured.
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    jitter: str = "uniform"
    loss: float = 0.0
    reorder: bool = False

    def validate(self) -> None:
        _check(self.delay_ms >= 0 and math.isfinite(self.delay_ms), f"delay_ms must be >= 0: {self.delay_ms}")
        _check(self.jitter_ms >= 0 and math.isfinite(self.jitter_ms), f"jitter_ms must be >= 0: {self.jitter_ms}")
        _check(self.jitter in JITTER_KINDS, f"jitter must be one of {JITTER_KINDS}: {self.jitter!r}")
        _check(0.0 <= self.loss <= 1.0, f"loss is a probability in [0, 1]: {self.loss}")


@dataclass(frozen=True)
class Episode:
    """A scheduled disruption: from ``start_s`` on the bridge clock, for ``duration_s``.

    The bridge clock is seconds since the bridge started (``Bridge.now()``). Frames that reach the
    bridge inside the window get ``extra_delay_ms`` more delay and are lost with probability
    ``loss`` on top of the steady state; ``loss=1`` is an outage. Names identify episodes in the
    log and across reconfigurations, so they must be unique. An episode whose start has passed
    when it is loaded begins at load time; one that has started can no longer be changed.
    """

    name: str
    start_s: float
    duration_s: float
    direction: str = "both"
    extra_delay_ms: float = 0.0
    loss: float = 0.0

    @classmethod
    def outage(cls, name: str, start_s: float, duration_s: float, direction: str = "both") -> "Episode":
        return cls(name, start_s, duration_s, direction, loss=1.0)

    @classmethod
    def spike(
        cls, name: str, start_s: float, duration_s: float, extra_delay_ms: float, direction: str = "both"
    ) -> "Episode":
        return cls(name, start_s, duration_s, direction, extra_delay_ms=extra_delay_ms)

    def directions(self) -> tuple[str, ...]:
        return DIRECTIONS if self.direction == "both" else (self.direction,)

    def validate(self) -> None:
        _check(bool(self.name) and isinstance(self.name, str), "an episode needs a name")
        _check(self.start_s >= 0 and math.isfinite(self.start_s), f"{self.name}: start_s must be >= 0")
        _check(self.duration_s > 0 and math.isfinite(self.duration_s), f"{self.name}: duration_s must be > 0")
        _check(self.direction in EPISODE_DIRECTIONS, f"{self.name}: direction must be one of {EPISODE_DIRECTIONS}")
        _check(
            self.extra_delay_ms >= 0 and math.isfinite(self.extra_delay_ms), f"{self.name}: extra_delay_ms must be >= 0"
        )
        _check(0.0 <= self.loss <= 1.0, f"{self.name}: loss is a probability in [0, 1]")


@dataclass(frozen=True)
class Config:
    """Everything the bridge does; each load replaces the previous one whole.

    ``seed`` seeds one random stream per direction and purpose (loss, jitter) at every load, so
    the same config facing the same frames drops the same frames. ``match`` says which frames
    are impaired: ``ipv4`` (default; the lab paths are IPv4), ``ip`` or ``all``. Frames outside it,
    ARP above all, pass at once: neighbour caches then never fail during an outage, and chatter
    such as IPv6 router solicitations does not shift the random stream of the measured traffic.
    """

    a_to_b: Impairment = field(default_factory=Impairment)
    b_to_a: Impairment = field(default_factory=Impairment)
    episodes: tuple[Episode, ...] = ()
    seed: int = 0
    match: str = "ipv4"

    @classmethod
    def symmetric(cls, impairment: Impairment, **kwargs: Any) -> "Config":
        return cls(a_to_b=impairment, b_to_a=impairment, **kwargs)

    def validate(self) -> None:
        self.a_to_b.validate()
        self.b_to_a.validate()
        for episode in self.episodes:
            episode.validate()
        names = [e.name for e in self.episodes]
        _check(len(names) == len(set(names)), f"episode names must be unique: {names}")
        _check(self.match in MATCH_KINDS, f"match must be one of {MATCH_KINDS}: {self.match!r}")
        _check(isinstance(self.seed, int), "seed must be an int")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """Strict: an unknown key is a typo in a test, and a silent typo is a wrong ground truth."""
        data = dict(data)
        config = cls(
            a_to_b=Impairment(**data.pop("a_to_b", {})),
            b_to_a=Impairment(**data.pop("b_to_a", {})),
            episodes=tuple(Episode(**e) for e in data.pop("episodes", ())),
            **data,
        )
        config.validate()
        return config


@dataclass(frozen=True)
class EpisodeRecord:
    """What the bridge logged for one episode; times in microseconds.

    ``start_mono_us``/``end_mono_us`` are the boundaries frames were judged by (CLOCK_MONOTONIC,
    the same clock in every namespace and in ``time.monotonic()``); the ``wall`` fields are the
    same instants in Unix time. ``fired_*`` is when the bridge noticed the boundary and wrote the
    line: a check on the bridge's own timeliness, not the ground truth. ``cancelled`` means a new
    config dropped the episode while it ran, so it ended early.
    """

    name: str
    direction: str
    extra_delay_ms: float
    loss: float
    start_mono_us: int
    start_wall_us: int
    start_fired_mono_us: int
    end_mono_us: int | None = None
    end_wall_us: int | None = None
    end_fired_mono_us: int | None = None
    cancelled: bool = False

    @property
    def ended(self) -> bool:
        return self.end_mono_us is not None

    def contains(self, mono_s: float) -> bool:
        """Whether a ``time.monotonic()`` reading falls inside the episode (half-open window)."""
        end = math.inf if self.end_mono_us is None else self.end_mono_us
        return self.start_mono_us <= mono_s * 1e6 < end


class Bridge:
    """A running impairment bridge: reconfigure it, schedule episodes, read its log.

    Made by ``splice``. The lab owns the process, so closing the lab stops the bridge even when a
    test fails before calling ``stop``.
    """

    def __init__(self, host: "Host", link: "Link", workdir: FsPath, config: Config) -> None:
        self.host = host
        self.link = link
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir = workdir
        self.control_path = workdir / "control.json"
        self.log_path = workdir / "events.jsonl"
        self.stderr_path = workdir / "bridge.stderr"
        self.config = config
        self._generation = 0
        self.t0_mono_ns = 0

    # -- clock ------------------------------------------------------------------------------
    def now(self) -> float:
        """Seconds on the bridge clock, the one ``Episode.start_s`` is given in."""
        return (time.monotonic_ns() - self.t0_mono_ns) / 1e9

    def to_monotonic(self, bridge_s: float) -> float:
        """A bridge-clock time as a ``time.monotonic()`` reading."""
        return (self.t0_mono_ns + bridge_s * 1e9) / 1e9

    # -- control ----------------------------------------------------------------------------
    def configure(self, config: Config, *, timeout: float = 5.0) -> None:
        """Replace the whole config and wait until the bridge runs it (or refused it)."""
        generation = self._write_control(config)
        self._signal(signal.SIGHUP)
        self._wait_config(generation, timeout)
        self.config = config

    def update(
        self,
        *,
        a_to_b: Impairment | None = None,
        b_to_a: Impairment | None = None,
        both: Impairment | None = None,
        seed: int | None = None,
    ) -> None:
        """Change the steady state of one or both directions; scheduled episodes stay."""
        config = self.config
        if both is not None:
            config = replace(config, a_to_b=both, b_to_a=both)
        if a_to_b is not None:
            config = replace(config, a_to_b=a_to_b)
        if b_to_a is not None:
            config = replace(config, b_to_a=b_to_a)
        if seed is not None:
            config = replace(config, seed=seed)
        self.configure(config)

    def schedule(self, *episodes: Episode) -> None:
        """Add episodes to those already scheduled (past ones stay in the log)."""
        self.configure(replace(self.config, episodes=self.config.episodes + tuple(episodes)))

    # -- ground truth -----------------------------------------------------------------------
    def events(self) -> list[dict[str, Any]]:
        """Every line the bridge logged so far, oldest first."""
        try:
            text = self.log_path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def episodes(self) -> list[EpisodeRecord]:
        """Episodes that have started, in start order, with their end once it has happened."""
        records: dict[str, EpisodeRecord] = {}
        for e in self.events():
            if e["event"] == "episode_start":
                records[e["name"]] = EpisodeRecord(
                    name=e["name"],
                    direction=e["direction"],
                    extra_delay_ms=e["extra_delay_ms"],
                    loss=e["loss"],
                    start_mono_us=e["mono_us"],
                    start_wall_us=e["wall_us"],
                    start_fired_mono_us=e["fired_mono_us"],
                )
            elif e["event"] == "episode_end" and e["name"] in records:
                records[e["name"]] = replace(
                    records[e["name"]],
                    end_mono_us=e["mono_us"],
                    end_wall_us=e["wall_us"],
                    end_fired_mono_us=e["fired_mono_us"],
                    cancelled=e.get("cancelled", False),
                )
        return sorted(records.values(), key=lambda r: r.start_mono_us)

    def wait_episodes(self, *names: str, timeout: float | None = None) -> list[EpisodeRecord]:
        """Wait until the named episodes (default: all configured) have ended; return their records.

        The default timeout is until the last of them should end, plus 5 s.
        """
        wanted = set(names) or {e.name for e in self.config.episodes}
        if timeout is None:
            ends = [e.start_s + e.duration_s for e in self.config.episodes if e.name in wanted]
            timeout = max([0.0, *ends]) - self.now() + 5.0
        deadline = time.monotonic() + max(timeout, 0.5)
        while True:
            done = [r for r in self.episodes() if r.name in wanted and r.ended]
            if {r.name for r in done} == wanted:
                return done
            self._assert_alive()
            if time.monotonic() > deadline:
                raise BridgeError(f"episodes {sorted(wanted)} not all ended in {timeout:.1f}s; log: {self.events()}")
            time.sleep(0.02)

    def stats(self, *, timeout: float = 5.0) -> dict[str, Any]:
        """Counters per direction and how late frames left (``lateness_us``: n/p50/p99/max).

        Lateness is when a frame left minus when it was due (kernel arrival time plus its delay):
        the bridge's delay error. Counters run since start; lateness since the last config load,
        so a test measures the precision of the setting it just made.
        """
        before = self._stats_events()
        self._signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while len(after := self._stats_events()) <= len(before):
            self._assert_alive()
            if time.monotonic() > deadline:
                raise BridgeError(f"no stats from the bridge in {timeout}s\nstderr: {self._stderr()}")
            time.sleep(0.005)
        return after[-1]

    def stop(self, *, timeout: float = 5.0) -> dict[str, Any] | None:
        """Stop the bridge; returns its final stats (None if it had already died)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        finals = [e for e in self.events() if e["event"] == "stats" and e.get("final")]
        return finals[-1] if finals else None

    # -- internals --------------------------------------------------------------------------
    def _signal(self, sig: int) -> None:
        self._assert_alive()
        assert self.proc is not None
        self.proc.send_signal(sig)

    def _assert_alive(self) -> None:
        if self.proc is None:
            raise BridgeError("bridge was never launched")
        if self.proc.poll() is not None:
            raise BridgeError(f"bridge exited {self.proc.returncode}\nstderr: {self._stderr()}\nlog: {self.events()}")

    def _stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _write_control(self, config: Config) -> int:
        config.validate()
        self._generation += 1
        tmp = self.control_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"generation": self._generation, "config": config.to_dict()}))
        os.replace(tmp, self.control_path)  # the bridge never reads half a file
        return self._generation

    def _wait_config(self, generation: int, timeout: float) -> None:
        event = self._wait_event(
            lambda e: e.get("generation") == generation and e["event"] in ("config", "config_error"),
            timeout,
            "config ack",
        )
        if event["event"] == "config_error":
            raise BridgeError(f"bridge refused config {generation}: {event.get('error')}")

    def _launch(self) -> None:
        """Start the program in the bridge namespace; the lab kills it on close."""
        self._write_control(self.config)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        with open(self.stderr_path, "wb") as stderr:
            self.proc = self.host.spawn(
                sys.executable,
                "-m",
                "tests.impair_bridge",
                "--port-a",
                PORT_A,
                "--port-b",
                PORT_B,
                "--control",
                str(self.control_path),
                "--log",
                str(self.log_path),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                cwd=str(REPO),
                env=env,
            )

    def _started(self, timeout: float) -> None:
        """Wait for the first config to run; from then on frames flow."""
        start = self._wait_event(lambda e: e["event"] == "start", timeout, "start")
        self.t0_mono_ns = start["t0_mono_ns"]
        self._wait_config(1, timeout)

    def _stats_events(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == "stats"]

    def _wait_event(self, match: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events():
                if match(event):
                    return event
            self._assert_alive()
            if time.monotonic() > deadline:
                raise BridgeError(f"no {what} from the bridge in {timeout}s\nstderr: {self._stderr()}")
            time.sleep(0.005)


def splice(
    lab: "Lab",
    link: "Link",
    workdir: str | os.PathLike[str],
    config: Config | None = None,
    *,
    label: str = "impair",
    timeout: float = 10.0,
) -> "Bridge":
    """Put an impairment bridge into ``link``, between its two hosts, and start it.

    ``link.b``'s end of the veth pair moves into a new namespace and becomes the bridge's port
    ``side_a``; a new veth pair joins the bridge's ``side_b`` to ``link.b`` under the old interface
    name and address. So ``link`` still describes both hosts correctly, and ``a_to_b`` in the
    config means frames from ``link.a`` to ``link.b``. Splice before adding routes over the link:
    moving the interface drops routes that used it. The bridge namespace has no addresses and IPv6
    off, so nothing in it talks on its own.
    """
    config = config or Config()
    config.validate()
    bridge_host = lab.host(label)
    run_dir = FsPath(workdir) / bridge_host.name
    run_dir.mkdir(parents=True, exist_ok=True)
    bridge_host.sysctl("net.ipv6.conf.all.disable_ipv6", 1)
    bridge_host.sysctl("net.ipv6.conf.default.disable_ipv6", 1)

    b, prefix = link.b, link.network.prefixlen
    b.ip("link", "set", "dev", link.b_if, "down")
    b.ip("link", "set", "dev", link.b_if, "name", PORT_A)  # names are per namespace: free again at once
    b.ip("link", "set", "dev", PORT_A, "netns", bridge_host.name)
    bridge_host.ip("link", "add", PORT_B, "type", "veth", "peer", "name", link.b_if, "netns", b.name)
    b.ip("addr", "add", f"{link.b_addr}/{prefix}", "dev", link.b_if)
    b.ip("link", "set", "dev", link.b_if, "up")
    for port in (PORT_A, PORT_B):
        bridge_host.ip("link", "set", "dev", port, "promisc", "on", "up")

    bridge = Bridge(bridge_host, link, run_dir, config)
    bridge._launch()
    bridge._started(timeout)
    return bridge


# -- ground truth from the sending side ------------------------------------------------------

ICMP_ECHO_REPLY, ICMP_TIME_EXCEEDED, ICMP_ECHO = 0, 11, 8
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_request(ident: int, seq: int, size: int) -> bytes:
    payload = bytes(i & 0xFF for i in range(size))
    header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, _icmp_checksum(header + payload), ident, seq) + payload


def _parse_icmp(packet: bytes) -> tuple[int, int, int] | None:
    """(type, ident, seq) of an echo reply, or of the echo request quoted in a time-exceeded."""
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if len(icmp) < 8:
        return None
    kind = icmp[0]
    if kind == ICMP_ECHO_REPLY:
        _, _, _, ident, seq = struct.unpack("!BBHHH", icmp[:8])
        return kind, ident, seq
    if kind == ICMP_TIME_EXCEEDED and len(icmp) >= 8 + 20 + 8:
        inner = icmp[8:]
        inner_icmp = inner[(inner[0] & 0x0F) * 4 :]
        if len(inner_icmp) >= 8 and inner_icmp[0] == ICMP_ECHO:
            _, _, _, ident, seq = struct.unpack("!BBHHH", inner_icmp[:8])
            return kind, ident, seq
    return None


def _stamp(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The kernel's receive time (Unix ns) from an SO_TIMESTAMPNS control message."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack_from("qq", data)
            return sec * 1_000_000_000 + nsec
    return None


def echo_train(
    dest: str, count: int, interval_s: float, timeout_s: float = 1.0, ttl: int = 64, size: int = 56
) -> list[dict[str, Any]]:
    """Send ``count`` ICMP echoes ``interval_s`` apart; time each answer. Run it inside a host.

    Ping only says which replies came back; this also says when each request left, on the
    monotonic clock the bridge logs episodes on, so a test can place every loss against an
    episode. Sends follow a fixed schedule (no drift). An answer later than ``timeout_s`` counts as
    lost, like ``ping -W``. RTTs end at the kernel's receive timestamp, as ping's do: waking this
    process up can take milliseconds on a busy VM. Needs a raw socket (root). Per request: ``seq``,
    ``sent_mono_ns``, ``rtt_us`` (None if lost), ``reply_from`` and ``icmp_type`` (0 echo reply,
    11 TTL exceeded).
    """
    ident = os.getpid() & 0xFFFF
    sent_wall_ns: list[int] = [0] * count
    interval_ns, timeout_ns = int(interval_s * 1e9), int(timeout_s * 1e9)
    results: list[dict[str, Any]] = [
        {"seq": i, "sent_mono_ns": None, "rtt_us": None, "reply_from": None, "icmp_type": None} for i in range(count)
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        start = time.monotonic_ns()
        next_seq = 0
        while True:
            now = time.monotonic_ns()
            if next_seq < count and now >= start + next_seq * interval_ns:
                results[next_seq]["sent_mono_ns"] = time.monotonic_ns()
                sent_wall_ns[next_seq] = time.time_ns()
                sock.sendto(_echo_request(ident, next_seq, size), (dest, 0))
                next_seq += 1
                continue
            if next_seq < count:
                wake = start + next_seq * interval_ns
            else:
                wake = results[-1]["sent_mono_ns"] + timeout_ns
                if now >= wake:
                    break
            ready, _, _ = select.select([sock], [], [], max(0.0, (wake - now) / 1e9))
            while ready:
                try:
                    packet, ancdata, _, (source, _) = sock.recvmsg(65535, socket.CMSG_SPACE(16))
                except BlockingIOError:
                    break
                received = _stamp(ancdata) or time.time_ns()
                parsed = _parse_icmp(packet)
                if parsed is None or parsed[1] != ident or parsed[2] >= next_seq:
                    continue
                sample = results[parsed[2]]
                rtt_ns = received - sent_wall_ns[parsed[2]]
                if sample["rtt_us"] is None and rtt_ns <= timeout_ns:
                    sample.update(rtt_us=rtt_ns / 1000, reply_from=source, icmp_type=parsed[0])
    return results


def trace(dest: str, max_hops: int = 8, timeout_s: float = 1.0) -> list[str | None]:
    """The routers on the way to ``dest``, one echo per TTL, as a traceroute shows them.

    Ends at the first echo reply; a hop that did not answer is None.
    """
    hops: list[str | None] = []
    for ttl in range(1, max_hops + 1):
        (sample,) = echo_train(dest, 1, 0.0, timeout_s, ttl=ttl)
        hops.append(sample["reply_from"])
        if sample["icmp_type"] == ICMP_ECHO_REPLY:
            break
    return hops
