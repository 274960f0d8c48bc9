"""Voice-cadence probe: a short UDP stream shaped like a call (20 ms frames) through the collector's reflector.
Reports the figures Teams' network requirements use: jitter, loss, 200 ms burst loss, RTT, reordering.
Design notes: docs/agent-probes.md, "agent/probes/voice.py".
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cxpulse.v1 import voice_wire

__all__ = ["BURST_WINDOW_MS", "Reply", "VoiceResult", "run_voice_probe", "summarize"]

BURST_WINDOW_MS = 200
_DEFAULT_PAYLOAD = 160  # one G.711 frame of 20 ms


@dataclass
class VoiceResult:
    """One voice-cadence run. Times in microseconds; ``None`` where no reply made a figure.

    ``sent == 0`` with ``error`` set means no packet could leave (name did not resolve, no
    route): ``loss_pct`` is then 100 because, for the user, everything is lost.
    """

    ts_us: int
    address: str
    sent: int = 0
    received: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    rtt_median_us: int | None = None
    rtt_p95_us: int | None = None
    jitter_us: int | None = None
    loss_pct: float = 0.0
    burst_loss_max_pct: float = 0.0
    max_loss_run: int = 0
    error: str | None = None
    jitter_up_us: int | None = None
    jitter_down_us: int | None = None


@dataclass(frozen=True)
class Reply:
    """The first reply to packet ``seq``: when it arrived here (``perf_counter_ns``), and when the
    reflector got it (its wall clock, ns)."""

    seq: int
    rx_mono_ns: int
    reflector_ns: int


def _rfc3550_jitter_us(transits_ns: Sequence[int]) -> int | None:
    """Interarrival jitter over transit times given in order of arrival (RFC 3550 A.8)."""
    if len(transits_ns) < 2:
        return None
    jitter = 0.0
    for prev, cur in itertools.pairwise(transits_ns):
        jitter += (abs(cur - prev) - jitter) / 16
    return round(jitter / 1000)


def _p95(sorted_values: Sequence[int]) -> int:
    return sorted_values[math.ceil(0.95 * len(sorted_values)) - 1]  # nearest rank


def _median(sorted_values: Sequence[int]) -> int:
    k = len(sorted_values)
    mid = k // 2
    return sorted_values[mid] if k % 2 else round((sorted_values[mid - 1] + sorted_values[mid]) / 2)


def summarize(
    ts_us: int,
    address: str,
    send_mono_ns: Sequence[int],
    send_wall_ns: Sequence[int],
    replies: Sequence[Reply],
    *,
    duplicates: int = 0,
    interval_ms: int = 20,
    timeout_s: float = 1.0,
    error: str | None = None,
) -> VoiceResult:
    """The figures of a run from what was sent and the first replies in order of arrival.

    Pure (no clock, no socket), so every figure can be checked against a made-up run.
    """
    sent = len(send_mono_ns)
    timeout_ns = int(timeout_s * 1e9)
    wall_offset = (send_wall_ns[0] - send_mono_ns[0]) if sent else 0
    got = [r for r in replies if r.rx_mono_ns - send_mono_ns[r.seq] <= timeout_ns]
    received = len(got)
    lost = sent - received
    if sent == 0:
        return VoiceResult(ts_us, address, loss_pct=100.0, burst_loss_max_pct=100.0, error=error or "nothing was sent")

    reordered, highest = 0, -1
    for r in got:
        if r.seq < highest:
            reordered += 1
        highest = max(highest, r.seq)

    rtts = sorted(r.rx_mono_ns - send_mono_ns[r.seq] for r in got)
    by_reflector = sorted(got, key=lambda r: r.reflector_ns)

    lost_flags = [1] * sent
    for r in got:
        lost_flags[r.seq] = 0
    window = min(sent, max(1, round(BURST_WINDOW_MS / interval_ms)))
    in_window = sum(lost_flags[:window])
    worst = in_window
    for i in range(window, sent):
        in_window += lost_flags[i] - lost_flags[i - window]
        worst = max(worst, in_window)
    run = longest = 0
    for flag in lost_flags:
        run = run + 1 if flag else 0
        longest = max(longest, run)

    if received == 0 and error is None:
        error = "no reply from the reflector"
    return VoiceResult(
        ts_us=ts_us,
        address=address,
        sent=sent,
        received=received,
        lost=lost,
        duplicates=duplicates,
        reordered=reordered,
        rtt_median_us=round(_median(rtts) / 1000) if rtts else None,
        rtt_p95_us=round(_p95(rtts) / 1000) if rtts else None,
        jitter_us=_rfc3550_jitter_us([r.rx_mono_ns - send_mono_ns[r.seq] for r in got]),
        loss_pct=round(100 * lost / sent, 2),
        burst_loss_max_pct=round(100 * worst / window, 2),
        max_loss_run=longest,
        error=error,
        jitter_up_us=_rfc3550_jitter_us([r.reflector_ns - send_wall_ns[r.seq] for r in by_reflector]),
        jitter_down_us=_rfc3550_jitter_us([r.rx_mono_ns + wall_offset - r.reflector_ns for r in got]),
    )


class _Stream(asyncio.DatagramProtocol):
    """Receives replies of one run: keeps the first reply per seq of this stream, counts the rest."""

    def __init__(self, agent_id: str, stream_id: int, send_mono_ns: list[int], timeout_ns: int) -> None:
        self.agent_id = agent_id
        self.stream_id = stream_id
        self.send_mono_ns = send_mono_ns  # shared with the sender, grows as packets leave
        self.timeout_ns = timeout_ns
        self.replies: list[Reply] = []
        self.answered: set[int] = set()
        self.duplicates = 0
        self.error: str | None = None
        self.all_answered = asyncio.Event()
        self.sending_done = False

    def datagram_received(self, data: bytes, addr: object) -> None:
        rx = time.perf_counter_ns()
        try:
            p = voice_wire.decode(data)
        except voice_wire.WireError:
            return
        if (
            p.stream_id != self.stream_id
            or p.agent_id != self.agent_id
            or p.reflected_ns == 0
            or p.seq >= len(self.send_mono_ns)
        ):
            return
        if p.seq in self.answered:
            self.duplicates += 1
            return
        if rx - self.send_mono_ns[p.seq] > self.timeout_ns:
            return  # too late to count; summarize() would drop it anyway
        self.answered.add(p.seq)
        self.replies.append(Reply(p.seq, rx, p.reflected_ns))
        self._check_done()

    def error_received(self, exc: Exception) -> None:
        # ICMP port/host unreachable on the connected socket: the reflector is not there.
        if self.error is None:
            self.error = f"{type(exc).__name__}: {exc}"

    def _check_done(self) -> None:
        if self.sending_done and len(self.answered) == len(self.send_mono_ns):
            self.all_answered.set()

    def finish_sending(self) -> None:
        self.sending_done = True
        self._check_done()


async def _resolve(host: str, port: int, timeout_s: float) -> tuple[socket.AddressFamily, tuple]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM), timeout_s)
    if not infos:
        raise OSError(f"{host} has no address")
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


async def _open(family: socket.AddressFamily, sockaddr: tuple, stream: _Stream) -> asyncio.DatagramTransport:
    """A socket connected to the reflector: the kernel drops datagrams from anyone else, and
    reports ICMP unreachable back to us. Opened here, so IPv6 scope ids survive."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect(sockaddr)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: stream, sock=sock)
    except BaseException:
        sock.close()
        raise
    return transport


async def run_voice_probe(
    reflector: tuple[str, int],
    agent_id: str,
    key: bytes,
    *,
    duration_s: float = 5.0,
    interval_ms: int = 20,
    payload_bytes: int = _DEFAULT_PAYLOAD,
    timeout_s: float = 1.0,
) -> VoiceResult:
    """Send ``duration_s / interval_ms`` signed packets to ``reflector`` and measure the replies.

    ``payload_bytes`` is the UDP payload size; it is raised to the header size when smaller (a
    very long agent id). Returns after the last reply or ``timeout_s`` after the last send.
    Never raises (only cancellation propagates): failures are a result with ``error`` set.
    """
    ts_us = time.time_ns() // 1000
    host, port = reflector
    address = host
    count = round(duration_s * 1000 / interval_ms) if interval_ms > 0 else 0
    try:
        id_bytes = len(agent_id.encode())
        size = max(payload_bytes, voice_wire.header_size(agent_id))
        if (
            count < 1
            or timeout_s <= 0
            or size > voice_wire.MAX_PACKET_BYTES
            or not 1 <= id_bytes <= voice_wire.MAX_AGENT_ID_BYTES
        ):
            raise ValueError(
                f"invalid run: {count} packets, timeout {timeout_s} s, {size} bytes, agent id of {id_bytes} bytes"
            )
        family, sockaddr = await _resolve(host, port, timeout_s)
        address = sockaddr[0]
        send_mono: list[int] = []
        send_wall: list[int] = []
        stream = _Stream(agent_id, secrets.randbits(32), send_mono, int(timeout_s * 1e9))
        transport = await _open(family, sockaddr, stream)
    except (TimeoutError, OSError, ValueError, UnicodeError) as exc:
        return VoiceResult(
            ts_us, address, loss_pct=100.0, burst_loss_max_pct=100.0, error=f"{type(exc).__name__}: {exc}"
        )

    try:
        mono0, wall0 = time.perf_counter_ns(), time.time_ns()  # wall times derived: immune to clock steps
        interval_ns = interval_ms * 1_000_000
        for seq in range(count):
            # Due times on the high-resolution clock; the sleep itself is the loop's, and a late
            # wake-up is seen (and measured) as such instead of hidden by a 15.6 ms clock.
            delay_ns = mono0 + seq * interval_ns - time.perf_counter_ns()
            if delay_ns > 0:
                await asyncio.sleep(delay_ns / 1e9)
            now = time.perf_counter_ns()
            wall = wall0 + (now - mono0)
            send_mono.append(now)
            send_wall.append(wall)
            transport.sendto(voice_wire.encode_request(key, agent_id, stream.stream_id, seq, wall, size))
        stream.finish_sending()
        try:
            await asyncio.wait_for(stream.all_answered.wait(), timeout_s)
        except TimeoutError:
            pass
    finally:
        transport.close()
    return summarize(
        ts_us,
        address,
        send_mono,
        send_wall,
        stream.replies,
        duplicates=stream.duplicates,
        interval_ms=interval_ms,
        timeout_s=timeout_s,
        error=stream.error,
    )
