"""Windows part of agent/stop_signals.py: Ctrl-C (SIGINT) and Ctrl-Break (SIGBREAK) stop a console run.
Through ``signal.signal`` handlers, since the Proactor loop has none; imports on every OS.
Design notes: docs/agent-internals.md, "agent/stop_signals_windows.py".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "stop_on_signals"]

log = logging.getLogger("cxpulse.agent.stop_signals")

STOP_SIGNALS = ("SIGINT", "SIGBREAK")


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event, loop: asyncio.AbstractEventLoop | None = None) -> Iterator[None]:
    """While inside, Ctrl-C or Ctrl-Break sets ``stop``; the previous handlers come back on exit."""
    loop = loop or asyncio.get_running_loop()

    def in_loop(signum: int) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    def handler(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(in_loop, signum)  # nothing else here: it runs between any two bytecodes

    previous: list[tuple[int, Callable[[int, FrameType | None], Any] | int]] = []
    try:
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            before = signal.signal(sig, handler)
            # None: a handler set from C, which Python cannot name nor put back; the default it is.
            previous.append((sig, signal.SIG_DFL if before is None else before))
        yield
    finally:
        for sig, before in reversed(previous):
            signal.signal(sig, before)
