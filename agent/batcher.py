"""Collects measurements into per-series columns and closes them as one encoded payload."""

from __future__ import annotations

from cxpulse.v1 import payload

from .probes.base import Measurement


class Batcher:
    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str, str], payload.Series] = {}
        self.count = 0

    def add(self, m: Measurement, kind: str = payload.KIND_RTT) -> None:
        key = (m.target, m.address, kind, m.method)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = payload.Series(target=m.target, address=m.address, method=m.method, kind=kind)
        s.add(m.ts_us, m.rtt_us)
        self.count += 1

    def close(self) -> tuple[bytes, int] | None:
        """Encode and reset; None when nothing was measured since the last close."""
        if not self.count:
            return None
        batch = payload.SampleBatch(series=list(self._series.values()))
        data, n = payload.encode(batch), batch.sample_count
        self._series.clear()
        self.count = 0
        return data, n
