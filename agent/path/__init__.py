"""Path discovery: which routers stand between the desk and each platform, and when that changes.

A call that sounds bad on one day and fine the next often rode a different path. The agent traces
the path to each target now and then (``PathWatcher`` decides when), names the hops that matter
to a helpdesk (gateway, ISP, the platform's edge: ``classify_hops``) and records path changes.

On Linux the trace itself needs scapy, which is far too heavy for the long-running agent
(DESIGN.md decision 5), so it runs in a short-lived child process (``trace_child``); the public
API (``tracer``) is stdlib-only and only parses that child's JSON. macOS (``trace_macos``: ICMP
datagram sockets) and Windows (``trace_windows``: ``IcmpSendEcho2Ex``) trace in-process without
privileges; ``tracer.trace`` picks the OS's tracer once, at import.

The names below are loaded on first use (PEP 562) rather than at import: ``python -m
cxpulse.agent.path.trace_child`` imports this package too, and the tracer's asyncio would add
about 45 ms of CPU to every trace child for nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Hop", "PathChange", "PathTrace", "PathWatcher", "TraceCost", "classify_hops", "path_signature", "trace"]

if TYPE_CHECKING:
    from .tracer import Hop, PathChange, PathTrace, PathWatcher, TraceCost, classify_hops, path_signature, trace


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import tracer

        return getattr(tracer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
