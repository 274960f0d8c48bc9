"""Collects measurements into per-series columns and closes them as one encoded payload."""

from __future__ import annotations

from cxpulse.v1 import payload

from .probes.base import Measurement


class Batcher:
    def __init__(self) -> None:
        self._series: dict[tuple, payload.Series] = {}
        self._events: list[payload.Event] = []
        self._paths: list[payload.PathSnapshot] = []
        self.count = 0

    def add(self, m: Measurement, hop: int | None = None) -> None:
        """An RTT measurement."""
        self.add_row(m.target, m.address, payload.KIND_RTT, m.method, m.ts_us, {"rtt": m.rtt_us}, hop)

    def add_row(
        self, target: str, address: str, kind: str, method: str, ts_us: int, values: dict, hop: int | None = None
    ) -> None:
        key = (target, address, kind, method, hop)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = payload.Series(target=target, address=address, method=method, kind=kind, hop=hop)
        s.add(ts_us, **values)
        self.count += 1

    def add_event(self, e: payload.Event) -> None:
        # An event that opened and closed inside one batch is sent once, closed.
        self._events = [x for x in self._events if x.id != e.id]
        self._events.append(e)
        self.count += 1

    def add_path(self, p: payload.PathSnapshot) -> None:
        self._paths.append(p)
        self.count += 1

    def close(self) -> tuple[bytes, int] | None:
        """Encode and reset; None when nothing was measured since the last close."""
        if not self.count:
            return None
        batch = payload.SampleBatch(series=list(self._series.values()), events=self._events, paths=self._paths)
        data, n = payload.encode(batch, version=payload.SCHEMA_VERSION), batch.sample_count
        self._series.clear()
        self._events = []
        self._paths = []
        self.count = 0
        return data, n
