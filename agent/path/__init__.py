"""Path discovery: which routers stand between the desk and each platform, and when that changes.
Each OS traces its own way (Linux: scapy in a child process); hop roles and path changes are judged once.
Design notes: docs/agent-internals.md, "agent/path/__init__.py".
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
