"""Stopping a console run: Ctrl-C/Ctrl-Break on Windows, SIGINT/SIGTERM on POSIX, with real signals.

Windows is emulated where it differs: its default asyncio loop (Proactor) raises
NotImplementedError from ``add_signal_handler``; the loop below does the same. The signals are
real ones delivered to this process (Ctrl-Break's SIGBREAK does not exist on Linux: SIGUSR1
stands in for it), and the handlers that were there before must be back afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import types

import pytest

from cxpulse.agent import runner, stop_signals, stop_signals_posix, stop_signals_windows

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="delivers POSIX signals with os.kill")


class ProactorLikeLoop(asyncio.SelectorEventLoop):
    """What a Windows desk's default loop offers for signals: nothing."""

    def add_signal_handler(self, sig, callback, *args):
        raise NotImplementedError

    def remove_signal_handler(self, sig):
        raise NotImplementedError


def run_windows_like(coro):
    with asyncio.Runner(loop_factory=ProactorLikeLoop) as r:
        return r.run(coro)


def test_one_part_is_chosen_at_import_with_one_api() -> None:
    assert stop_signals.stop_on_signals is stop_signals_posix.stop_on_signals  # this is Linux
    assert stop_signals_windows.STOP_SIGNALS == ("SIGINT", "SIGBREAK")
    assert stop_signals_posix.STOP_SIGNALS == ("SIGINT", "SIGTERM")


@pytest.mark.parametrize("name", ["SIGINT", "SIGBREAK"], ids=["ctrl-c", "ctrl-break"])
def test_windows_part_stops_on_a_real_signal_and_restores_the_handler(name: str, monkeypatch) -> None:
    monkeypatch.setattr(signal, "SIGBREAK", signal.SIGUSR1, raising=False)
    sig = getattr(signal, name)

    async def main() -> tuple[bool, object, object, object]:
        loop = asyncio.get_running_loop()
        with pytest.raises(NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, lambda: None)  # why the Windows part exists
        stop = asyncio.Event()
        before = signal.getsignal(sig)
        with stop_signals_windows.stop_on_signals(stop):
            during = signal.getsignal(sig)
            os.kill(os.getpid(), sig)
            await asyncio.wait_for(stop.wait(), 30)
        return stop.is_set(), before, during, signal.getsignal(sig)

    stopped, before, during, after = run_windows_like(main())
    assert stopped
    assert during is not before and callable(during)
    assert after is before  # asyncio.Runner's own SIGINT handler, or SIGUSR1's default, is back


def test_windows_part_restores_handlers_when_the_run_fails() -> None:
    async def main() -> tuple[object, object]:
        before = signal.getsignal(signal.SIGINT)
        with pytest.raises(RuntimeError), stop_signals_windows.stop_on_signals(asyncio.Event()):
            raise RuntimeError("agent crashed")
        return before, signal.getsignal(signal.SIGINT)

    before, after = run_windows_like(main())
    assert after is before


def test_run_until_signalled_on_a_windows_like_loop_stops_on_ctrl_c(monkeypatch) -> None:
    """The real entry point of ``cxpulse agent run``: before, add_signal_handler raised at once."""
    monkeypatch.setattr(stop_signals, "stop_on_signals", stop_signals_windows.stop_on_signals)
    seen = {}

    class FakeAgent:
        agent_id = "desk-1"

        def __init__(self, cfg) -> None:
            pass

        async def run(self, stop: asyncio.Event) -> None:
            seen["handler"] = signal.getsignal(signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C at the console
            await asyncio.wait_for(stop.wait(), 30)
            seen["flushed"] = True  # the agent's own shutdown runs: nothing cancelled it

    monkeypatch.setattr(runner, "Agent", FakeAgent)
    cfg = types.SimpleNamespace(collector="127.0.0.1:4317", state_dir="/nonexistent")

    async def main() -> tuple[object, object]:
        before = signal.getsignal(signal.SIGINT)
        await runner.run_until_signalled(cfg)
        return before, signal.getsignal(signal.SIGINT)

    before, after = run_windows_like(main())
    assert seen["flushed"] and seen["handler"] is not before
    assert after is before


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_posix_part_stops_on_a_real_signal_and_removes_its_handlers(name: str) -> None:
    sig = getattr(signal, name)

    async def main() -> tuple[bool, object]:
        stop = asyncio.Event()
        with stop_signals_posix.stop_on_signals(stop):
            os.kill(os.getpid(), sig)
            await asyncio.wait_for(stop.wait(), 30)
        return stop.is_set(), signal.getsignal(sig)

    stopped, after = asyncio.run(main())
    assert stopped
    assert after in (signal.default_int_handler, signal.SIG_DFL)  # the loop's handler is gone
