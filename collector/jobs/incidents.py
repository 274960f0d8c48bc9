"""The incident loop: ``score.incidents.detect_incidents`` every minute, in a worker thread.

A failed run is logged and the next one tries again: never fatal after start-up.
"""

from __future__ import annotations

import asyncio
import logging

from ..score.incidents import IncidentConfig, detect_incidents

__all__ = ["incident_loop"]

log = logging.getLogger("cxpulse.collector.incidents")


async def incident_loop(store, interval_s: float = 60.0, cfg: IncidentConfig | None = None) -> None:
    """Run ``detect_incidents`` every ``interval_s`` until cancelled; a failed run is logged, never fatal.

    The store work runs in a thread, so the event loop (ingest) is never blocked by it.
    """
    while True:
        try:
            changed = await asyncio.to_thread(detect_incidents, store, None, cfg)
            for inc in changed:
                state = "closed" if inc.end_us is not None else "open"
                log.info("incident %s (%s %s) %s: %s", inc.id, inc.kind, inc.scope, state, inc.evidence)
        except Exception:  # never crash after start-up: the next run tries again
            log.exception("incident detection failed")
        await asyncio.sleep(interval_s)
