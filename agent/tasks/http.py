"""Each application every app_interval_s on a fresh connection (DNS, TCP, TLS, first byte), re-checked once on failure.
Owns the ``http`` columns; httpx is imported only with the first app to check.
Notes: docs/agent-tasks.md, "Notes per task module".
"""

from __future__ import annotations

import asyncio

from ..config import Running
from ..presets import App
from .base import Output, Pace, Shared

RETRY_AFTER_S = 5.0
MAX_PARALLEL = 4  # a desk does not open dozens of TLS handshakes at once


class HttpTask:
    kind = "http"
    pace: Pace = "every"  # a check still running when the next pass starts is cancelled

    def __init__(self, shared: Shared):
        self.s = shared
        self.enabled = True
        self.wake = asyncio.Event()
        self._sem = asyncio.Semaphore(MAX_PARALLEL)

    def interval_s(self) -> float:
        return self.s.cfg.app_interval_s

    async def start(self) -> None:
        pass

    def reconfigured(self, old: Running, new: Running) -> None:
        if (new.cfg.apps, new.cfg.app_interval_s) != (old.cfg.apps, old.cfg.app_interval_s):
            self.wake.set()

    async def close(self) -> None:
        pass

    async def collect(self, out: Output) -> None:
        await asyncio.gather(*(self._check(out, a, retry=True) for a in self.s.cfg.apps), return_exceptions=True)

    async def _check(self, out: Output, app: App, retry: bool) -> None:
        from ..probes.http import check_app

        cfg = self.s.cfg
        async with self._sem:
            r = await check_app(app.name, app.url, cfg.app_timeout_s, ca_file=cfg.app_ca_file or None)
        values = {
            "dns": r.dns_us,
            "tcp": r.connect_us,
            "tls": r.tls_us,
            "ttfb": r.ttfb_us,
            "total": r.total_us,
            "status": r.status,
            "ver": r.http_version,
            "cert": r.cert_days,
            "err": r.error,
        }
        method = "https" if app.url.startswith("https://") else "http"
        host = app.url.split("//", 1)[1].split("/", 1)[0]
        out.row(app.name, (r.address or host)[:256], "http", method, r.ts_us, values)
        self.s.stats.app_checks += 1
        out.events(self.s.detector.observe_app(app.name, r.ts_us, r.error, (r.detail or "")[:200]))
        if r.error and retry and not self.s.stop.is_set():
            await asyncio.sleep(RETRY_AFTER_S)
            await self._check(out, app, retry=False)
