"""POSIX part of agent/stop_signals.py: the event loop's own signal handlers for SIGINT and SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

__all__ = ["STOP_SIGNALS", "stop_on_signals"]

STOP_SIGNALS = ("SIGINT", "SIGTERM")


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event, loop: asyncio.AbstractEventLoop | None = None) -> Iterator[None]:
    """While inside, SIGINT or SIGTERM sets ``stop`` (in the loop, between callbacks: safe)."""
    loop = loop or asyncio.get_running_loop()
    sigs = [getattr(signal, name) for name in STOP_SIGNALS]
    installed = []
    try:
        for sig in sigs:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)  # back to the default disposition (Ctrl-C: KeyboardInterrupt)
