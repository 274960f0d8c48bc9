"""What a path trace found (hops, its cost, the trace) and the argument rules all tracers share.
Apart from ``tracer`` so the per-OS tracers need not import it; stdlib only.
Design notes: docs/agent-internals.md, "agent/path/hops.py".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["METHODS", "Hop", "PathTrace", "TraceCost", "validate"]

METHODS = ("icmp", "udp", "tcp")


@dataclass(frozen=True)
class Hop:
    """One TTL. ``address`` is None when no probe got an answer; ``rtt_us`` has one entry per probe."""

    ttl: int
    address: str | None
    rtt_us: list[int | None]


@dataclass(frozen=True)
class TraceCost:
    """What one trace cost this machine: wall time, CPU time and peak memory.

    From the scapy child (Linux), ``cpu_s`` and ``max_rss_kb`` are the child's own figures
    (``getrusage(RUSAGE_SELF)`` just before it prints), so they stay right when other children run
    at the same time. The in-process tracers (macOS, Windows) report the CPU time of their own
    work (thread time) or None, and ``max_rss_kb`` None: they add no process to measure.
    """

    wall_s: float
    cpu_s: float | None
    max_rss_kb: int | None


@dataclass(frozen=True)
class PathTrace:
    """The result of one trace. ``ts_us`` is when it started (Unix epoch, microseconds)."""

    target: str
    method: str
    reached: bool
    hops: list[Hop]
    ts_us: int
    error: str | None = None
    cost: TraceCost | None = None


def validate(
    target_ip: str, port: int, max_hops: int, method: str, timeout_s: float, probes: int, reply_timeout_s: float
) -> None:
    """Bad trace arguments are a caller's bug: ValueError at once, the same rules for every OS's tracer."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if ipaddress.ip_address(target_ip).version != 4:  # raises ValueError for a name
        raise ValueError("path traces are IPv4 only for now")
    if not 1 <= port <= 65535 or not 1 <= max_hops <= 64 or not 1 <= probes <= 5:
        raise ValueError("port must be 1..65535, max_hops 1..64, probes 1..5")
    if not 0.05 <= reply_timeout_s <= 10 or timeout_s <= 0:
        raise ValueError("reply_timeout_s must be 0.05..10 s and timeout_s positive")
