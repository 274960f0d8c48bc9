"""Replays recorded tool outputs as Wi-Fi readings, one per reading interval (``CXPULSE_WIFI_REPLAY=FILE``).
For machines without a radio and for pasted outputs, through the same watcher, batch and spool.
Design notes: docs/agent-internals.md, "agent/wifi/replay.py".
"""

from __future__ import annotations

import json

from .parsers import parse_text
from .parsers._model import WifiReading


class ReplayReader:
    def __init__(self, path: str):
        self.readings: list[WifiReading] = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)["text"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{path}:{n}: each line must be a JSON object with a 'text' key ({exc})") from None
                self.readings.append(parse_text(text))
        if not self.readings:
            raise ValueError(f"{path}: no readings")
        self._i = 0

    def __call__(self) -> WifiReading:
        r = self.readings[min(self._i, len(self.readings) - 1)]
        self._i += 1
        return r
