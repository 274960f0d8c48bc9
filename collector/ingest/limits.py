"""Per-agent and per-address limits of ingest: what one misbehaving sender may cost the collector.
Batch rate and strikes per agent, streams per agent and per peer address; bounded state per collector.
Design notes: docs/collector-internals.md, "collector/ingest/limits.py".
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["AgentLimiter", "IngestLimits", "Tarpit", "TokenBucket"]


@dataclass(frozen=True)
class IngestLimits:
    """Tunables (``collector serve`` flags and the central config's ``[ingest]`` table)."""

    max_samples_per_batch: int = 50_000
    batches_per_s: float = 20.0
    batch_burst: int = 600
    max_rejects: int = 20  # rejected batches within reject_window_s before the stream is cut
    reject_window_s: float = 60.0
    penalty_s: float = 60.0  # how long a cut agent waits before its next stream is taken
    streams_per_agent: int = 2
    streams_per_peer: int = 2_000
    # Samples stamped further ahead than this are a broken clock: the batch is refused.
    max_future_s: float = 600.0
    # Older than the agent's spool keeps (7 days) plus a day of margin; 0 turns the check off.
    max_age_s: float = 8 * 86_400.0
    max_agents_tracked: int = 200_000
    # Seconds a new stream may take to send its Hello; until then it holds a slot of its address's
    # limit (a real agent sends the Hello at once; a silent stream is cut, not kept).
    hello_timeout_s: float = 5.0

    def check(self) -> None:
        for name in (
            "max_samples_per_batch",
            "batches_per_s",
            "batch_burst",
            "max_rejects",
            "streams_per_agent",
            "streams_per_peer",
            "max_future_s",
            "hello_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"ingest limit {name} must be positive, got {getattr(self, name)!r}")
        if self.max_age_s < 0 or self.penalty_s < 0 or self.reject_window_s <= 0:
            raise ValueError("ingest limits max_age_s and penalty_s must be >= 0, reject_window_s > 0")


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take`` never waits, it says how long to wait."""

    def __init__(self, rate: float, burst: float, now: float | None = None):
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = time.monotonic() if now is None else now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float | None = None) -> bool:
        self._refill(time.monotonic() if now is None else now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def seconds_until(self, tokens: float, now: float | None = None) -> float:
        """Time until the bucket holds ``tokens`` (capped at the burst)."""
        self._refill(time.monotonic() if now is None else now)
        need = min(tokens, self.burst) - self.tokens
        return max(0.0, need / self.rate)


class Tarpit:
    """Holds a refusal back for about a second before it is sent.

    A refusal is cheap for the attacker and not for us: every gRPC call costs the collector's one
    Python thread a few hundred microseconds, so a client that loops on refused calls (a throttled
    Enroll, a stream beyond its allowance) takes CPU from honest desks' ingest at a thousand calls a
    second. Answered a second later, a client with a few calls in flight makes a few a second. Held
    refusals are bounded per address and in total (each holds a slot of maximum_concurrent_rpcs);
    beyond that they are sent at once.
    """

    def __init__(self, per_address: int = 256, total: int = 2_000, delay_s: tuple[float, float] = (0.5, 1.5)):
        self.per_address, self.total, self.delay_s = per_address, total, delay_s
        self._held: dict[str, int] = {}
        self._total = 0
        self.held = 0  # refusals held back so far (for tests and /metrics)

    async def hold(self, peer: str) -> None:
        import asyncio
        import random

        addr = peer_address(peer)
        n = self._held.get(addr, 0)
        if n >= self.per_address or self._total >= self.total:
            return
        self._held[addr] = n + 1
        self._total += 1
        self.held += 1
        try:
            await asyncio.sleep(random.uniform(*self.delay_s))
        finally:
            self._total -= 1
            left = self._held.get(addr, 0) - 1
            if left > 0:
                self._held[addr] = left
            else:
                self._held.pop(addr, None)


@dataclass
class _AgentState:
    bucket: TokenBucket
    rejects: list[float]
    banned_until: float = 0.0


class AgentLimiter:
    """The limits' bookkeeping; the service asks it before taking a stream and each batch."""

    def __init__(self, limits: IngestLimits | None = None):
        self.limits = limits or IngestLimits()
        self.limits.check()
        self._agents: OrderedDict[str, _AgentState] = OrderedDict()
        self._peers: dict[str, int] = {}
        self.cut = 0  # streams ended by a limit (for /metrics and tests)
        self.throttled = 0

    def _state(self, agent_id: str, now: float) -> _AgentState:
        st = self._agents.get(agent_id)
        if st is None:
            st = _AgentState(TokenBucket(self.limits.batches_per_s, self.limits.batch_burst, now), [])
            self._agents[agent_id] = st
            while len(self._agents) > self.limits.max_agents_tracked:
                self._agents.popitem(last=False)
        else:
            self._agents.move_to_end(agent_id)
        return st

    def banned_for(self, agent_id: str, now: float | None = None) -> float:
        """Seconds this agent must still wait before a new stream (0: none)."""
        st = self._agents.get(agent_id)
        if st is None:
            return 0.0
        return max(0.0, st.banned_until - (time.monotonic() if now is None else now))

    def take_batch(self, agent_id: str, now: float | None = None) -> float:
        """0.0 if the batch may be read; otherwise the retry hint (s) and the agent is penalised."""
        now = time.monotonic() if now is None else now
        st = self._state(agent_id, now)
        if st.bucket.take(now):
            return 0.0
        self.throttled += 1
        # Come back once a tenth of the burst has refilled: long enough to matter, short enough
        # that an agent replaying its spool after an outage still catches up at the set rate.
        wait = max(1.0, st.bucket.seconds_until(max(1.0, self.limits.batch_burst / 10), now))
        st.banned_until = max(st.banned_until, now + wait)
        return wait

    def strike(self, agent_id: str, now: float | None = None) -> float:
        """Count a rejected batch; the penalty (s) if that was one too many, else 0.0."""
        now = time.monotonic() if now is None else now
        st = self._state(agent_id, now)
        horizon = now - self.limits.reject_window_s
        st.rejects = [t for t in st.rejects if t > horizon]
        st.rejects.append(now)
        if len(st.rejects) < self.limits.max_rejects:
            return 0.0
        st.rejects.clear()
        st.banned_until = max(st.banned_until, now + self.limits.penalty_s)
        return max(1.0, self.limits.penalty_s)

    # -- streams per peer address --

    def open_peer(self, peer: str) -> bool:
        """Count a stream from ``peer``'s address; False (and nothing counted) if it is at its cap."""
        addr = peer_address(peer)
        n = self._peers.get(addr, 0)
        if n >= self.limits.streams_per_peer:
            return False
        self._peers[addr] = n + 1
        return True

    def close_peer(self, peer: str) -> None:
        addr = peer_address(peer)
        n = self._peers.get(addr, 0) - 1
        if n > 0:
            self._peers[addr] = n
        else:
            self._peers.pop(addr, None)


def peer_address(peer: str) -> str:
    """The address part of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``, ``unix:...``)."""
    scheme, _, rest = peer.partition(":")
    if scheme in ("ipv4", "ipv6"):
        host = rest.rpartition(":")[0]
        return host.strip("[]") or rest
    return peer


def add_arguments(parser) -> None:
    """``collector serve`` flags for the limits (kept here so the CLI needs one hook line)."""
    d = IngestLimits()
    g = parser.add_argument_group("ingest limits (per agent unless said otherwise)")
    g.add_argument(
        "--max-batches-per-s",
        type=float,
        default=d.batches_per_s,
        help=f"sustained batch rate (default {d.batches_per_s:g})",
    )
    g.add_argument(
        "--batch-burst",
        type=int,
        default=d.batch_burst,
        help=f"batches allowed at once, e.g. a spool replay (default {d.batch_burst})",
    )
    g.add_argument(
        "--max-samples-per-batch", type=int, default=d.max_samples_per_batch, help=f"default {d.max_samples_per_batch}"
    )
    g.add_argument(
        "--max-rejects",
        type=int,
        default=d.max_rejects,
        help=f"rejected batches within {d.reject_window_s:g} s before the stream is cut (default {d.max_rejects})",
    )
    g.add_argument(
        "--reject-penalty", type=float, default=d.penalty_s, help=f"seconds a cut agent waits (default {d.penalty_s:g})"
    )
    g.add_argument(
        "--max-streams-per-peer",
        type=int,
        default=d.streams_per_peer,
        help=f"concurrent streams from one address, all agents behind it (default {d.streams_per_peer})",
    )
    g.add_argument(
        "--max-clock-skew",
        type=float,
        default=d.max_future_s,
        help=f"seconds a sample may lie in the future (default {d.max_future_s:g})",
    )
    g.add_argument(
        "--max-sample-age",
        type=float,
        default=d.max_age_s / 86_400,
        help=f"days a sample may lie in the past; 0: no limit (default {d.max_age_s / 86_400:g})",
    )


def from_arguments(args) -> IngestLimits:
    limits = IngestLimits(
        max_samples_per_batch=args.max_samples_per_batch,
        batches_per_s=args.max_batches_per_s,
        batch_burst=args.batch_burst,
        max_rejects=args.max_rejects,
        penalty_s=args.reject_penalty,
        streams_per_peer=args.max_streams_per_peer,
        max_future_s=args.max_clock_skew,
        max_age_s=args.max_sample_age * 86_400,
    )
    limits.check()
    return limits
