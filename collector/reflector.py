"""UDP reflector for the agents' voice-cadence probe (packet format: ``cxpulse.v1.voice_wire``).
Answers only signed packets of enrolled agents, never larger than the request, within rate limits.
Design notes: docs/voice.md, "collector/reflector.py".
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from cxpulse.v1 import voice_wire

__all__ = ["DROP_REASONS", "Reflector", "TokenBucket", "derive_agent_key"]

log = logging.getLogger("cxpulse.collector.reflector")

DROP_REASONS = (
    "malformed",
    "reflected",
    "unknown_agent",
    "bad_mac",
    "stale",
    "replay",
    "agent_rate",
    "global_rate",
    "send_buffer",
    "internal",
)

_KEY_LABEL = b"cxpulse voice reflector key v1\x00"
_REPLAY_WINDOW = 1024  # seqs remembered behind the highest one per stream (20 s at 20 ms)
_STREAMS_PER_AGENT = 4  # one run at a time is normal; a few more cover runs that overlap a restart
_RCVBUF_BYTES = 1 << 20


def derive_agent_key(master: bytes, agent_id: str) -> bytes:
    """The agent's reflector key: HMAC-SHA256(master, label || agent id).

    The collector hands it to the agent in AgentConfig.reflector_key and recomputes it for every
    packet, so no per-agent key is ever stored; rotating ``master`` re-keys every agent at once.
    """
    if not master:
        raise ValueError("the reflector master key must not be empty")
    return hmac.digest(master, _KEY_LABEL + agent_id.encode(), hashlib.sha256)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now

    def take(self, now: float) -> bool:
        if now > self.stamp:  # a clock that steps back must not drain the bucket
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class _AgentState:
    """Per enrolled agent seen lately: its bucket and, per recent stream, [highest seq, seen-bits]."""

    bucket: TokenBucket
    last_seen: float
    streams: OrderedDict[int, list[int]] = field(default_factory=OrderedDict)

    def seen_before(self, stream_id: int, seq: int) -> bool:
        """Record (stream, seq); True if it was recorded already or is too far behind to tell."""
        window = self.streams.get(stream_id)
        if window is None:
            self.streams[stream_id] = [seq, 1]
            if len(self.streams) > _STREAMS_PER_AGENT:
                self.streams.popitem(last=False)
            return False
        self.streams.move_to_end(stream_id)
        highest, bits = window
        if seq > highest:
            shift = seq - highest
            window[0] = seq
            window[1] = 1 if shift >= _REPLAY_WINDOW else ((bits << shift) | 1) & ((1 << _REPLAY_WINDOW) - 1)
            return False
        behind = highest - seq
        if behind >= _REPLAY_WINDOW or bits >> behind & 1:
            return True
        window[1] = bits | 1 << behind
        return False


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, reflector: Reflector) -> None:
        self.reflector = reflector
        self.paused = False

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.reflector._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for replies to spoofed or vanished sources: nothing to do

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False


class Reflector:
    """Answers voice probe packets of enrolled agents. ``answered`` and ``dropped`` count everything.

    ``key_for`` is called for every well-formed packet, so it must be cheap (a dict lookup, or
    ``derive_agent_key`` for ids known to be enrolled). It is asked again for every packet, never
    cached here, so that a revocation counts from the next packet: the collector's ``key_for``
    answers agents in the ingest's ``known_agents``, from which the revocation poll
    (security/streams.py) removes a revoked agent within a second or two.
    """

    def __init__(
        self,
        key_for: Callable[[str], bytes | None],
        *,
        agent_rate: float = 100.0,
        agent_burst: float = 100.0,
        global_rate: float = 20_000.0,
        global_burst: float = 20_000.0,
        max_age_s: float = 30.0,
    ) -> None:
        if min(agent_rate, agent_burst, global_rate, global_burst, max_age_s) <= 0:
            raise ValueError("reflector rates, bursts and max age must be positive")
        self.key_for = key_for
        self.agent_rate, self.agent_burst = agent_rate, agent_burst
        self.max_age_ns = int(max_age_s * 1e9)
        self.answered = 0
        self.dropped: Counter[str] = Counter()
        self._global = TokenBucket(global_rate, global_burst, time.monotonic())
        self._agents: dict[str, _AgentState] = {}
        # An agent idle this long has a full bucket and only stale packets left to replay.
        self._state_ttl_s = 2 * max_age_s + 60
        self._next_prune = 0.0
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Protocol | None = None
        self._warned = False

    async def start(self, host: str = "0.0.0.0", port: int = 0) -> None:
        """Listen on ``host:port`` (port 0 picks one; see ``port``). Fails fast if it cannot bind."""
        loop = asyncio.get_running_loop()
        self._transport, self._protocol = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(host, port)
        )
        sock = self._transport.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_BYTES)
        except OSError:
            pass
        log.info("voice reflector listening on %s port %d", host, self.port)

    @property
    def port(self) -> int:
        if self._transport is None:
            return 0
        return self._transport.get_extra_info("sockname")[1]

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def stats(self) -> dict[str, int]:
        """A flat snapshot for metrics and logs: ``answered`` and ``dropped_<reason>``."""
        return {"answered": self.answered, **{f"dropped_{r}": self.dropped[r] for r in DROP_REASONS}}

    def check(self, data: bytes, now_ns: int | None = None, now: float | None = None) -> bytes | None:
        """The reply to ``data``, or None after counting why it is dropped. Sends nothing."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        now = time.monotonic() if now is None else now
        try:
            packet = voice_wire.decode(data)
        except voice_wire.WireError:
            self._drop("malformed")
            return None
        if packet.reflected_ns:
            self._drop("reflected")
            return None
        key = self.key_for(packet.agent_id)
        if key is None:
            self._drop("unknown_agent")
            return None
        if not voice_wire.verify(packet, key):
            self._drop("bad_mac")
            return None
        if abs(now_ns - packet.send_ns) > self.max_age_ns:
            self._drop("stale")
            return None
        state = self._agent(packet.agent_id, now)
        if state.seen_before(packet.stream_id, packet.seq):
            self._drop("replay")
            return None
        if not state.bucket.take(now):
            self._drop("agent_rate")
            return None
        if not self._global.take(now):
            self._drop("global_rate")
            return None
        return voice_wire.make_reply(data, packet, now_ns)

    def send_reply(self, reply: bytes, addr: tuple) -> None:
        """Send one answer. The single place a reply leaves; tests override it to impair the path."""
        if self._transport is None or self._protocol is None or self._protocol.paused:
            self._drop("send_buffer")
            return
        self._transport.sendto(reply, addr)
        self.answered += 1

    def _on_datagram(self, data: bytes, addr: tuple) -> None:
        try:
            reply = self.check(data)
        except Exception:  # a failing key_for must not stop the reflector
            self._drop("internal")
            if not self._warned:
                self._warned = True
                log.exception("voice reflector: checking a packet failed (logged once)")
            return
        if reply is not None:
            self.send_reply(reply, addr)

    def _drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        return None

    def _agent(self, agent_id: str, now: float) -> _AgentState:
        if now >= self._next_prune:
            self._next_prune = now + 10.0
            idle = [a for a, s in self._agents.items() if now - s.last_seen > self._state_ttl_s]
            for a in idle:
                del self._agents[a]
        state = self._agents.get(agent_id)
        if state is None:
            state = self._agents[agent_id] = _AgentState(TokenBucket(self.agent_rate, self.agent_burst, now), now)
        state.last_seen = now
        return state
