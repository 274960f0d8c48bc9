"""Turns a stream of Wi-Fi readings into the events a helpdesk acts on, at the reading they are seen.
Disconnect, roam, band change, weak signal, rate drop, each with its own debounce.
Design notes: docs/agent-internals.md, "agent/wifi/watcher.py".
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

from cxpulse.v1.payload import Event

from .parsers._model import HIDDEN, WifiReading

__all__ = ["WatcherConfig", "WifiWatcher"]


@dataclass(frozen=True)
class WatcherConfig:
    weak_dbm: int = -70
    weak_k: int = 3
    weak_n: int = 5
    weak_clean: int = 3
    rate_drop_ratio: float = 0.3
    rate_history: int = 12
    rate_min_history: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.weak_k <= self.weak_n:
            raise ValueError("weak_k must be between 1 and weak_n")
        if not 0 < self.rate_drop_ratio < 1:
            raise ValueError("rate_drop_ratio must be between 0 and 1")


def _eid(kind: str, target: str, start_us: int) -> str:
    return f"{kind}:{target}:{start_us}"


def _ap(r: WifiReading) -> str:
    name = r.ssid if r.ssid and r.ssid != HIDDEN else "(hidden SSID)"
    return f"{name} {r.bssid}" if r.bssid else name


def _dbm(v: int | None) -> str:
    return "?" if v is None else f"{v} dBm"


class WifiWatcher:
    """Feed it readings in time order; ``observe`` returns the events to send now.

    An event that opens is returned with ``end_us`` None and returned again, same id, when it
    closes, as the detector does for every other event kind.
    """

    def __init__(self, cfg: WatcherConfig | None = None, target: str = "wifi"):
        self.cfg = cfg or WatcherConfig()
        self.target = target
        self._last: WifiReading | None = None  # last reading with a known link state
        self._down: Event | None = None
        self._down_from: WifiReading | None = None
        self._rssi: deque[tuple[int, int]] = deque(maxlen=self.cfg.weak_n)
        self._weak: Event | None = None
        self._weak_worst = 0
        self._clean_run = 0
        self._rates: deque[float] = deque(maxlen=self.cfg.rate_history)
        self._recent_low: deque[bool] = deque(maxlen=3)
        self._drop: Event | None = None
        self._drop_low = 0.0
        self._rate_ok_run = 0

    def observe(self, ts_us: int, reading: WifiReading) -> list[Event]:
        if reading.connected is None:
            return []
        out: list[Event] = []
        prev, self._last = self._last, reading
        if not reading.connected:
            if prev is not None and prev.connected and self._down is None:
                self._down_from = prev
                self._down = Event(
                    _eid("wifi_disconnect", self.target, ts_us),
                    "wifi_disconnect",
                    self.target,
                    ts_us,
                    None,
                    2,
                    f"Wi-Fi link lost (was {_ap(prev)}, {_dbm(prev.rssi_dbm)})",
                )
                out.append(self._down)
            out += self._close_weak(ts_us, reason="link lost")
            out += self._close_drop(ts_us)
            self._rssi.clear()
            self._rates.clear()
            self._recent_low.clear()
            return out
        if self._down is not None:
            out.append(self._reconnect(ts_us, reading, self._down))
        elif prev is not None and prev.connected:
            out += self._changes(ts_us, prev, reading)
        out += self._weak_signal(ts_us, reading)
        out += self._rate(ts_us, reading)
        return out

    # -- link up/down --

    def _reconnect(self, ts_us: int, r: WifiReading, ev: Event) -> Event:
        was = self._down_from
        self._down = self._down_from = None
        secs = (ts_us - ev.start_us) / 1e6
        same = was is not None and was.bssid and was.bssid == r.bssid
        evidence = f"Wi-Fi down for {secs:.1f} s, reconnected to {_ap(r)} ({_dbm(r.rssi_dbm)})" + (
            "" if same or was is None else f"; was {_ap(was)}"
        )
        return Event(ev.id, ev.kind, ev.target, ev.start_us, ts_us, 3 if secs >= 30 else 2, evidence[:512])

    # -- roam and channel/band --

    def _changes(self, ts_us: int, a: WifiReading, b: WifiReading) -> list[Event]:
        out = []
        known = a.bssid and b.bssid and HIDDEN not in (a.bssid, b.bssid)
        roamed = bool(known and a.bssid != b.bssid)
        if roamed:
            ch = "" if a.channel == b.channel else f", channel {a.channel} -> {b.channel}"
            out.append(
                Event(
                    _eid("wifi_roam", self.target, ts_us),
                    "wifi_roam",
                    self.target,
                    ts_us,
                    ts_us,
                    1,
                    f"roamed from {a.bssid} to {b.bssid} ({a.ssid if a.ssid != HIDDEN else 'hidden SSID'}); "
                    f"RSSI {_dbm(a.rssi_dbm)} -> {_dbm(b.rssi_dbm)}{ch}"[:512],
                )
            )
        band_changed = a.band and b.band and a.band != b.band
        channel_moved = not roamed and a.channel and b.channel and a.channel != b.channel
        if band_changed or channel_moved:
            down = band_changed and b.band == "2.4"
            out.append(
                Event(
                    _eid("wifi_band_change", self.target, ts_us),
                    "wifi_band_change",
                    self.target,
                    ts_us,
                    ts_us,
                    2 if down else 1,
                    f"band {a.band} GHz -> {b.band} GHz, channel {a.channel} -> {b.channel} "
                    f"({_ap(b)}, {_dbm(b.rssi_dbm)})",
                )
            )
        if roamed or band_changed or channel_moved:
            # A new AP or band has its own rates: judge the rate against the new link only.
            out += self._close_drop(ts_us)
            self._rates.clear()
            self._recent_low.clear()
        return out

    # -- weak signal --

    def _weak_signal(self, ts_us: int, r: WifiReading) -> list[Event]:
        if r.rssi_dbm is None:
            return []
        weak = r.rssi_dbm < self.cfg.weak_dbm
        self._rssi.append((ts_us, r.rssi_dbm))
        if self._weak is None:
            below = [(t, v) for t, v in self._rssi if v < self.cfg.weak_dbm]
            if weak and len(below) >= self.cfg.weak_k:
                self._weak_worst = min(v for _, v in below)
                self._clean_run = 0
                self._weak = Event(
                    _eid("wifi_weak_signal", self.target, below[0][0]),
                    "wifi_weak_signal",
                    self.target,
                    below[0][0],
                    None,
                    self._weak_severity(),
                    f"RSSI below {self.cfg.weak_dbm} dBm in {len(below)} of the last "
                    f"{len(self._rssi)} readings (worst {self._weak_worst} dBm, {_ap(r)})",
                )
                return [self._weak]
            return []
        if weak:
            self._weak_worst = min(self._weak_worst, r.rssi_dbm)
            self._clean_run = 0
            return []
        self._clean_run += 1
        return (
            self._close_weak(ts_us, reason=f"back to {r.rssi_dbm} dBm")
            if self._clean_run >= self.cfg.weak_clean
            else []
        )

    def _weak_severity(self) -> int:
        return 1 if self._weak_worst >= -75 else 2 if self._weak_worst >= -80 else 3

    def _close_weak(self, ts_us: int, reason: str) -> list[Event]:
        if self._weak is None:
            return []
        ev, self._weak = self._weak, None
        self._rssi.clear()
        return [
            Event(
                ev.id,
                ev.kind,
                ev.target,
                ev.start_us,
                ts_us,
                self._weak_severity(),
                f"RSSI below {self.cfg.weak_dbm} dBm for {(ts_us - ev.start_us) / 1e6:.0f} s "
                f"(worst {self._weak_worst} dBm); {reason}",
            )
        ]

    # -- transmit rate collapse --

    def _rate(self, ts_us: int, r: WifiReading) -> list[Event]:
        if r.tx_rate_mbps is None:
            return []
        rate = r.tx_rate_mbps
        if len(self._rates) < self.cfg.rate_min_history:
            if self._drop is None:
                self._rates.append(rate)
            return []
        base = statistics.median(self._rates)
        low = rate < self.cfg.rate_drop_ratio * base
        if self._drop is None:
            self._recent_low.append(low)
            if low and sum(self._recent_low) >= 2:
                self._drop_low, self._rate_ok_run = rate, 0
                self._drop = Event(
                    _eid("wifi_rate_drop", self.target, ts_us),
                    "wifi_rate_drop",
                    self.target,
                    ts_us,
                    None,
                    2 if rate < 0.1 * base else 1,
                    f"transmit rate {rate:g} Mbit/s vs recent median {base:g} Mbit/s ({_ap(r)}, {_dbm(r.rssi_dbm)})",
                )
                return [self._drop]
            if not low:
                self._rates.append(rate)
            return []
        self._drop_low = min(self._drop_low, rate)
        self._rate_ok_run = self._rate_ok_run + 1 if rate >= 0.5 * base else 0
        return self._close_drop(ts_us, base) if self._rate_ok_run >= 2 else []

    def _close_drop(self, ts_us: int, base: float | None = None) -> list[Event]:
        if self._drop is None:
            return []
        ev, self._drop = self._drop, None
        self._recent_low.clear()
        tail = f" vs median {base:g} Mbit/s" if base else ""
        return [
            Event(
                ev.id,
                ev.kind,
                ev.target,
                ev.start_us,
                ts_us,
                ev.severity,
                f"transmit rate fell to {self._drop_low:g} Mbit/s{tail} for {(ts_us - ev.start_us) / 1e6:.0f} s",
            )
        ]
