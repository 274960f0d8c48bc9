"""The ingest service's wait-unless-draining step in isolation (streams end to end: test_bad_input.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cxpulse.collector.ingest.service import _DRAINING, TelemetryService


def _service() -> TelemetryService:
    none: Any = None  # the step under test touches neither the store nor the writer
    return TelemetryService(store=none, writer=none)


def test_wait_returns_the_result_or_draining():
    async def main() -> None:
        svc = _service()
        assert await svc._unless_draining(asyncio.sleep(0, result=7)) == 7
        never = asyncio.get_running_loop().create_future()
        waiting = asyncio.ensure_future(svc._unless_draining(never))
        await asyncio.sleep(0)
        svc.begin_drain()
        assert await waiting is _DRAINING and never.cancelled()

    asyncio.run(main())


def test_a_cancelled_caller_stays_cancelled():
    """A return inside the step's finally once turned the caller's cancellation into 'draining'."""

    async def main() -> None:
        svc = _service()
        never = asyncio.get_running_loop().create_future()
        caller = asyncio.ensure_future(svc._unless_draining(never))
        await asyncio.sleep(0)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert never.cancelled() and not svc.draining

    asyncio.run(main())
