"""The Wi-Fi link as the desk sees it every wifi_interval_s (never a scan), and its events.
Owns the ``wifi`` columns and the watcher's events; CXPULSE_WIFI_REPLAY replays recorded readings.
Notes: docs/agent-tasks.md, "Notes per task module".
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..config import Running
from .base import Output, Pace, Shared

log = logging.getLogger("cxpulse.agent")


class WifiTask:
    kind = "wifi"
    pace: Pace = "after"

    def __init__(self, shared: Shared):
        self.s = shared
        self.enabled = True
        self.wake = asyncio.Event()  # never set: a pushed level or hashing applies at the next pass
        self._watcher: Any = None
        self._reader: Callable[[], Any] | None = None
        self._said_none = False

    def interval_s(self) -> float:
        return self.s.cfg.wifi_interval_s

    async def start(self) -> None:
        from ..wifi import WatcherConfig, WifiWatcher, read_wifi

        self._watcher = WifiWatcher(WatcherConfig(weak_dbm=self.s.cfg.wifi_weak_rssi_dbm))
        self._reader = read_wifi
        if os.environ.get("CXPULSE_WIFI_REPLAY"):
            from ..wifi.replay import ReplayReader

            self._reader = ReplayReader(os.environ["CXPULSE_WIFI_REPLAY"])
            log.warning(
                "Wi-Fi readings replayed from %s, not read from this machine", os.environ["CXPULSE_WIFI_REPLAY"]
            )

    def reconfigured(self, old: Running, new: Running) -> None:
        pass

    async def close(self) -> None:
        pass

    async def collect(self, out: Output) -> None:
        from cxpulse.v1.kinds import KIND_METHODS

        from ..wifi import to_columns
        from ..wifi.parsers._model import NO_WIFI_INTERFACE

        cfg, watcher = self.s.cfg, self._watcher
        assert watcher is not None and self._reader is not None, "start() first"
        # Read on every pass: a pushed config (hashing required, a new weak-signal level) applies at once.
        salt = (cfg.wifi_hash_salt or self.s.agent_id) if cfg.wifi_hash_identity else None
        if watcher.cfg.weak_dbm != cfg.wifi_weak_rssi_dbm:
            watcher.cfg = replace(watcher.cfg, weak_dbm=cfg.wifi_weak_rssi_dbm)
        try:
            reading = await asyncio.to_thread(self._reader)
        except Exception:  # never crash after start-up
            log.debug("Wi-Fi reading failed", exc_info=True)
            reading = None
        if reading is not None and reading.connected is not None and reading.note != NO_WIFI_INTERFACE:
            ts_us = time.time_ns() // 1000
            if reading.source in KIND_METHODS["wifi"]:
                out.row("wifi", reading.interface or "wifi", "wifi", reading.source, ts_us, to_columns(reading, salt))
                self.s.stats.wifi_readings += 1
            out.events(watcher.observe(ts_us, reading))
        elif reading is not None and not self._said_none:
            log.info("no Wi-Fi reading: %s", reading.note or "no Wi-Fi interface")
            self._said_none = True
