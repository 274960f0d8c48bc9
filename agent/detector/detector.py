"""Rules per event kind (latency spike, loss burst, outage, jitter, app/DNS failure, device pressure).
All on top of the shared debounce, fed 1 Hz samples and follow-ups in send order.
Design notes: docs/agent-probes.md, "agent/detector/detector.py".
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

from cxpulse.v1.payload import Event

from .debounce import Debounce, DebounceConfig, Episode


@dataclass(frozen=True)
class DetectorConfig:
    debounce: DebounceConfig = field(default_factory=DebounceConfig)
    app_debounce: DebounceConfig = field(
        default_factory=lambda: DebounceConfig(window=3, breaches_to_open=2, clean_to_close=2)
    )
    baseline_samples: int = 60
    baseline_min_samples: int = 10
    spike_abs_us: int = 20_000
    spike_rel: float = 0.5
    spike_mad_k: float = 4.0
    jitter_us: int = 30_000
    cpu_pct: float = 90.0
    mem_pct: float = 95.0


class _Baseline:
    def __init__(self, size: int):
        self.values: deque[int] = deque(maxlen=size)
        # Two medians over 60 values are the detector's biggest cost per sample, and the runner asks
        # for the threshold before every probe too: computed once per change of the values.
        self._cached: tuple[DetectorConfig, tuple[float, float]] | None = None

    def add(self, rtt_us: int) -> None:
        self.values.append(rtt_us)
        self._cached = None

    def threshold(self, cfg: DetectorConfig) -> tuple[float, float] | None:
        """(baseline, breach threshold) or None while warming up."""
        if len(self.values) < cfg.baseline_min_samples:
            return None
        if self._cached is not None and self._cached[0] is cfg:
            return self._cached[1]
        med = statistics.median(self.values)
        mad = statistics.median(abs(v - med) for v in self.values)
        out = med, med + max(cfg.spike_abs_us, cfg.spike_rel * med, cfg.spike_mad_k * mad)
        self._cached = (cfg, out)
        return out


@dataclass
class _TargetState:
    spike: Debounce
    loss: Debounce
    jitter: Debounce
    baseline: _Baseline
    prev_rtt: int | None = None
    interval_us: int = 1_000_000
    last_ts: int | None = None
    open_ids: dict[str, str] = field(default_factory=dict)


class Detector:
    """Feed it samples in time order per target; it returns the events to send now (opened or closed)."""

    def __init__(self, cfg: DetectorConfig | None = None):
        self.cfg = cfg or DetectorConfig()
        self._targets: dict[str, _TargetState] = {}
        self._apps: dict[str, Debounce] = {}
        self._device = Debounce(self.cfg.debounce)
        self._open: dict[tuple[str, str], Event] = {}

    # -- RTT --

    def observe_rtt(self, target: str, ts_us: int, rtt_us: int | None) -> list[Event]:
        st = self._targets.get(target)
        if st is None:
            st = self._targets[target] = _TargetState(
                Debounce(self.cfg.debounce),
                Debounce(self.cfg.debounce),
                Debounce(self.cfg.debounce),
                _Baseline(self.cfg.baseline_samples),
            )
        if st.last_ts is not None and ts_us > st.last_ts:
            # The typical step, to give an episode its true end (the last breach lasted one step).
            st.interval_us = int(0.8 * st.interval_us + 0.2 * (ts_us - st.last_ts))
        st.last_ts = ts_us
        out: list[Event] = []

        lost = rtt_us is None
        out += self._step(st.loss, target, ts_us, lost, rtt_us, st, self._loss_event)

        base = st.baseline.threshold(self.cfg)
        spike = rtt_us is not None and base is not None and rtt_us > base[1]
        out += self._step(st.spike, target, ts_us, spike, (rtt_us, base[0] if base else None), st, self._spike_event)
        if rtt_us is not None and not spike and st.spike.episode is None:
            st.baseline.add(rtt_us)

        jitter = False
        if rtt_us is not None:
            jitter = st.prev_rtt is not None and abs(rtt_us - st.prev_rtt) > self.cfg.jitter_us
            st.prev_rtt = rtt_us
        # While a spike is open its edges look like jitter: one event per disruption, not two.
        jitter = jitter and st.spike.episode is None and not spike
        out += self._step(st.jitter, target, ts_us, jitter, rtt_us, st, self._jitter_event)
        return out

    def _step(
        self, deb: Debounce, target: str, ts_us: int, breached: bool, value, st: _TargetState, make
    ) -> list[Event]:
        what = deb.feed(ts_us, breached, value)
        if what == "open":
            return [self._remember(make(target, deb.episode, st, closed=False))]
        if what == "close":
            return [self._forget(make(target, deb.closed, st, closed=True))]
        return []

    def _remember(self, e: Event) -> Event:
        self._open[(e.kind if e.kind != "outage" else "loss_burst", e.target)] = e
        return e

    def _forget(self, e: Event) -> Event:
        key = (e.kind if e.kind != "outage" else "loss_burst", e.target)
        opened = self._open.pop(key, None)
        if opened is not None:
            e.id = opened.id  # the close updates the event the collector got at open
        return e

    def late_after_us(self, target: str) -> int | None:
        """RTT above which a sample to ``target`` breaches (None while the baseline warms up).

        The runner uses it to start confirming a breach while the probe is still unanswered,
        without waiting for the full timeout."""
        st = self._targets.get(target)
        if st is None:
            return None
        base = st.baseline.threshold(self.cfg)
        return None if base is None else int(base[1])

    @staticmethod
    def _end(ep: Episode, st: _TargetState, closed: bool) -> int | None:
        if not closed:
            return None
        return ep.clear_us if ep.clear_us is not None else ep.last_breach_us + st.interval_us

    def _loss_event(self, target: str, ep: Episode, st: _TargetState, closed: bool) -> Event:
        span = max(ep.span_samples, ep.breaches)
        outage = ep.breaches == span
        kind = "outage" if outage else "loss_burst"
        pct = 100.0 * ep.breaches / span
        secs = (ep.last_breach_us - ep.start_us) / 1e6
        sev = 3 if outage and secs >= 5 else 2 if outage or pct >= 50 else 1
        evidence = (
            f"no answer for {ep.breaches} samples in a row"
            if outage
            else f"{ep.breaches} of {span} samples lost ({pct:.0f}%)"
        )
        if closed and ep.clear_us is not None:
            evidence += f", answered again {(ep.clear_us - ep.start_us) / 1e6:.1f} s after the first loss"
        return Event(
            _eid(kind, target, ep.start_us), kind, target, ep.start_us, self._end(ep, st, closed), sev, evidence
        )

    def _spike_event(self, target: str, ep: Episode, st: _TargetState, closed: bool) -> Event:
        rtts = [v[0] for v in ep.values]
        base = next((v[1] for v in ep.values if v[1] is not None), None) or 0
        worst = max(rtts)
        extra = worst - base
        sev = 1 if extra < 100_000 else 2 if extra < 300_000 else 3
        evidence = (
            f"RTT up to {worst / 1000:.1f} ms vs baseline {base / 1000:.1f} ms "
            f"({ep.breaches} of {max(ep.span_samples, ep.breaches)} samples high)"
        )
        return Event(
            _eid("latency_spike", target, ep.start_us),
            "latency_spike",
            target,
            ep.start_us,
            self._end(ep, st, closed),
            sev,
            evidence,
        )

    def _jitter_event(self, target: str, ep: Episode, st: _TargetState, closed: bool) -> Event:
        evidence = f"RTT swinging by more than {self.cfg.jitter_us / 1000:.0f} ms between samples ({ep.breaches} times)"
        return Event(
            _eid("jitter_episode", target, ep.start_us),
            "jitter_episode",
            target,
            ep.start_us,
            self._end(ep, st, closed),
            1 if ep.breaches < 5 else 2,
            evidence,
        )

    # -- apps --

    def observe_app(self, name: str, ts_us: int, error: str | None, detail: str | None = None) -> list[Event]:
        deb = self._apps.get(name)
        if deb is None:
            deb = self._apps[name] = Debounce(self.cfg.app_debounce)
        kind = "dns_failure" if error == "dns" else "app_failure"
        what = deb.feed(ts_us, error is not None, (error, detail))
        if what not in ("open", "close"):
            return []
        ep = deb.episode_of(what)
        errors = [v[0] for v in ep.values]
        if what == "open":
            kind = "dns_failure" if all(e == "dns" for e in errors) else "app_failure"
        else:
            kind = self._open[("app", name)].kind if ("app", name) in self._open else kind
        last = ep.values[-1]
        evidence = f"{ep.breaches} failed checks: {last[0]}" + (f" ({last[1]})" if last[1] else "")
        end = None if what == "open" else ts_us
        e = Event(_eid(kind, name, ep.start_us), kind, name, ep.start_us, end, 2, evidence)
        if what == "open":
            self._open[("app", name)] = e
        else:
            opened = self._open.pop(("app", name), None)
            if opened is not None:
                e.id, e.kind = opened.id, opened.kind
        return [e]

    # -- device --

    def observe_device(self, ts_us: int, cpu_pct: float, mem_pct: float, top: str = "") -> list[Event]:
        breached = cpu_pct > self.cfg.cpu_pct or mem_pct > self.cfg.mem_pct
        what = self._device.feed(ts_us, breached, (cpu_pct, mem_pct, top))
        if what not in ("open", "close"):
            return []
        ep = self._device.episode_of(what)
        cpu = max(v[0] for v in ep.values)
        mem = max(v[1] for v in ep.values)
        tops = next((v[2] for v in reversed(ep.values) if v[2]), "")
        evidence = f"CPU up to {cpu:.0f}%, memory up to {mem:.0f}%" + (f"; busiest: {tops}" if tops else "")
        e = Event(
            _eid("device_pressure", "device", ep.start_us),
            "device_pressure",
            "device",
            ep.start_us,
            None if what == "open" else ts_us,
            2 if cpu > 97 or mem > 98 else 1,
            evidence,
        )
        return [self._remember(e) if what == "open" else self._forget(e)]

    # -- path --

    @staticmethod
    def path_change(target: str, ts_us: int, evidence: str) -> Event:
        return Event(_eid("path_change", target, ts_us), "path_change", target, ts_us, ts_us, 1, evidence)

    def open_events(self) -> list[Event]:
        return list(self._open.values())


def _eid(kind: str, target: str, start_us: int) -> str:
    return f"{kind}:{target}:{start_us}"[:128]
