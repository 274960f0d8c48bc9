"""The experience components (voice, apps, Wi-Fi, stability) and how they combine.
Pure functions from a window's figures to an explained 0-100 ``Component``; the weakest dominates.
Design notes: docs/collector-internals.md, "collector/score/components.py".
"""

from __future__ import annotations

import copy
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Protocol

from .emodel import DEFAULT_CODEC, codec_by_name, mos_from_r, one_way_delay, rate_path

__all__ = [
    "APDEX_ANCHORS",
    "AVAILABILITY_ANCHORS",
    "DEFAULT_APDEX_T_MS",
    "FAIR",
    "GOOD",
    "MOS_ANCHORS",
    "RSSI_ANCHORS",
    "SEVERITY_WEIGHT",
    "SNR_ANCHORS",
    "STABILITY_ANCHORS",
    "AppCheck",
    "Component",
    "EventLike",
    "Overall",
    "WifiReading",
    "WindowScore",
    "apps_component",
    "label_for",
    "overall",
    "piecewise",
    "stability_component",
    "voice_component",
    "voice_score_from_mos",
    "wifi_component",
    "window_score",
]

# Labels: the bands DEX tools use (issue 4): good >= 70, fair 30-69, poor < 30.
GOOD = 70.0
FAIR = 30.0


def label_for(score: float | None) -> str:
    """``good``, ``fair`` or ``poor``; ``n/a`` when nothing was measured."""
    if score is None:
        return "n/a"
    return "good" if score >= GOOD else "fair" if score >= FAIR else "poor"


def piecewise(x: float, anchors: Sequence[tuple[float, float]]) -> float:
    """Linear interpolation between (x, score) anchors sorted by x; flat beyond the ends."""
    if x <= anchors[0][0]:
        return anchors[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(anchors):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return anchors[-1][1]


@dataclass(frozen=True)
class Component:
    """One explained part of the experience. ``score`` None: not measured in this window."""

    name: str
    score: float | None
    label: str
    reason: str
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """As ``dataclasses.asdict`` (fields in order, evidence copied deep), without its generic walk:
        a week's view turns ~40,000 components into dicts."""
        return {
            "name": self.name,
            "score": None if self.score is None else round(self.score, 1),
            "label": self.label,
            "reason": self.reason,
            "evidence": _plain(self.evidence),
        }


def _plain(x):
    """A deep copy of JSON-like values (what evidence holds); anything else as ``asdict`` copies it."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if x is None or isinstance(x, (str, int, float)):
        return x
    if type(x) is tuple:  # a named tuple goes to deepcopy, as asdict keeps its type
        return tuple(_plain(v) for v in x)
    return asdict(x) if is_dataclass(x) and not isinstance(x, type) else copy.deepcopy(x)


def _component(name: str, score: float | None, reason: str, evidence: dict) -> Component:
    if score is not None:
        score = round(min(100.0, max(0.0, score)), 1)  # one decimal: the label matches what is shown
    return Component(name, score, label_for(score), reason, evidence)


def _pct_rank(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile, as everywhere else in cxpulse (docs/metrics.md)."""
    s = sorted(values)
    return s[max(0, math.ceil(pct / 100 * len(s)) - 1)]


# --- Voice ----------------------------------------------------------------------------------

# MOS -> score, anchored at the MOS of the G.109 category boundaries: R 90 (MOS 4.34, best
# category: 100), R 80 (4.02, users satisfied: 85), R 70 (MOS 3.60, taken as exactly 3.6, the
# journey threshold "voice MOS >= 3.6": 70, the good line), R 60 (3.10, many users dissatisfied:
# 30, the poor line), R 50 (2.58, nearly all users dissatisfied: 10), MOS 1: 0.
MOS_ANCHORS: tuple[tuple[float, float], ...] = (
    (1.0, 0),
    (mos_from_r(50), 10),
    (mos_from_r(60), 30),
    (3.6, 70),
    (mos_from_r(80), 85),
    (mos_from_r(90), 100),
)


def voice_score_from_mos(mos: float) -> float:
    return piecewise(mos, MOS_ANCHORS)


def voice_component(
    rtt_to_edge_ms: float, jitter_ms: float, loss_pct: float, burst_r: float = 1.0, codec: str = DEFAULT_CODEC
) -> Component:
    """Voice quality of the agent's call leg via the E-model, mapped to 0-100 (MOS_ANCHORS).

    The reason names what cost the most R: loss (with its burstiness), delay, or the codec.
    """
    c = codec_by_name(codec)
    budget = one_way_delay(rtt_to_edge_ms, jitter_ms, c)
    rating = rate_path(budget.total_ms, loss_pct, codec=c, burst_r=burst_r)
    score = voice_score_from_mos(rating.mos)
    loss_cost = rating.ie_eff - c.ie
    delay_cost = rating.id
    costs = [(loss_cost, "loss"), (delay_cost, "delay"), (c.ie, "codec")]
    head = f"MOS {rating.mos:.1f} (R {rating.r:.0f})"
    if label_for(score) == "good" and loss_cost < 5 and delay_cost < 5:
        reason = f"{head}: clear ({c.name}, one-way {budget.total_ms:.0f} ms, loss {loss_pct:.1f}%)"
    else:
        parts: list[str] = []
        for cost, what in sorted(costs, reverse=True):
            if cost < 3 and parts:
                break
            if what == "loss":
                bursty = " in bursts" if burst_r >= 1.5 else ""
                parts.append(f"loss {loss_pct:.1f}%{bursty} (-{cost:.0f} R)")
            elif what == "delay":
                parts.append(
                    f"one-way delay {budget.total_ms:.0f} ms: RTT {rtt_to_edge_ms:.0f} ms to the media edge, "
                    f"jitter buffer {budget.jitter_buffer_ms:.0f} ms (-{cost:.0f} R)"
                )
            else:
                parts.append(f"codec {c.name} (-{cost:.0f} R)")
        reason = f"{head}: " + "; ".join(parts)
    evidence = {
        "mos": round(rating.mos, 2),
        "r": round(rating.r, 1),
        "codec": c.name,
        "rtt_to_edge_ms": rtt_to_edge_ms,
        "jitter_ms": jitter_ms,
        "loss_pct": loss_pct,
        "burst_r": burst_r,
        "one_way_ms": round(budget.total_ms, 1),
        "network_ms": round(budget.network_ms, 1),
        "jitter_buffer_ms": round(budget.jitter_buffer_ms, 1),
        "codec_ms": round(budget.codec_ms, 1),
        "id": round(rating.id, 2),
        "ie_eff": round(rating.ie_eff, 2),
        "is": round(rating.is_, 2),
    }
    return _component("voice", score, reason, evidence)


# --- Apps -----------------------------------------------------------------------------------

DEFAULT_APDEX_T_MS = 500.0  # interactive CRM/CCaaS calls (issue 4)
# Apdex -> score: Apdex's own bands, 0.85 (its "good") is our good line, 0.5 (its
# "unacceptable") our poor line.
APDEX_ANCHORS: tuple[tuple[float, float], ...] = ((0.0, 0), (0.5, 30), (0.85, 70), (1.0, 100))
# Availability (% of checks that succeeded) -> score: a failure is worse than slowness (the user
# sees an error page), so availability caps the Apdex score. 95% is the good line, 80% the poor.
AVAILABILITY_ANCHORS: tuple[tuple[float, float], ...] = ((50.0, 0), (80.0, 30), (95.0, 70), (100.0, 100))


@dataclass(frozen=True)
class AppCheck:
    """One application check: total time in ms, or failed (``ok`` False or no duration)."""

    app: str
    duration_ms: float | None
    ok: bool = True


def apps_component(
    checks: Iterable[AppCheck], thresholds: Mapping[str, float] | None = None, default_t_ms: float = DEFAULT_APDEX_T_MS
) -> Component:
    """Apdex and availability per app; the component is the worst app.

    Apdex_T = (satisfied + tolerating / 2) / checks, satisfied: duration <= T, tolerating:
    <= 4T, frustrated: slower or failed. Per app, score = min(Apdex score, availability score).
    The worst app rather than a weighted mean: an agent whose CRM is down cannot work, however
    fast the other apps are.
    """
    thresholds = thresholds or {}
    per: dict[str, dict] = {}
    for chk in checks:
        t = float(thresholds.get(chk.app, default_t_ms))
        a = per.setdefault(
            chk.app, {"t_ms": t, "checks": 0, "satisfied": 0, "tolerating": 0, "frustrated": 0, "failed": 0}
        )
        a["checks"] += 1
        if not chk.ok or chk.duration_ms is None:
            a["failed"] += 1
        elif chk.duration_ms <= t:
            a["satisfied"] += 1
        elif chk.duration_ms <= 4 * t:
            a["tolerating"] += 1
        else:
            a["frustrated"] += 1
    if not per:
        return _component("apps", None, "no app checks in this window", {"apps": {}})
    for a in per.values():
        a["apdex"] = round((a["satisfied"] + a["tolerating"] / 2) / a["checks"], 3)
        a["availability_pct"] = round(100 * (a["checks"] - a["failed"]) / a["checks"], 2)
        a["score"] = round(
            min(piecewise(a["apdex"], APDEX_ANCHORS), piecewise(a["availability_pct"], AVAILABILITY_ANCHORS)), 1
        )
    worst_name = min(per, key=lambda n: (per[n]["score"], n))
    w = per[worst_name]
    if label_for(w["score"]) == "good" and not w["failed"]:
        reason = f"{len(per)} app(s) responsive (worst: {worst_name} Apdex {w['apdex']:.2f} at T {w['t_ms']:.0f} ms)"
    else:
        bits = []
        slow = w["tolerating"] + w["frustrated"]
        if w["failed"]:
            bits.append(f"{w['failed']} of {w['checks']} checks failed (availability {w['availability_pct']:.0f}%)")
        if w["frustrated"]:
            bits.append(f"{w['frustrated']} slower than {4 * w['t_ms'] / 1000:g} s")
        if w["tolerating"]:
            bits.append(f"{w['tolerating']} slower than {w['t_ms'] / 1000:g} s")
        if not slow and not w["failed"]:
            bits.append("all checks within T")
        reason = f"{worst_name}: Apdex {w['apdex']:.2f} (T {w['t_ms']:.0f} ms): " + ", ".join(bits)
    return _component("apps", w["score"], reason, {"worst": worst_name, "apps": per})


# --- Wi-Fi ----------------------------------------------------------------------------------

# RSSI (dBm) -> score: -67 dBm or better is the usual enterprise design target for voice (good
# line), below -75 dBm is poor (poor line), -85 dBm barely holds a link.
RSSI_ANCHORS: tuple[tuple[float, float], ...] = ((-85.0, 0), (-75.0, 30), (-67.0, 70), (-60.0, 100))
# SNR (dB) -> score: 25 dB is the usual minimum for voice over Wi-Fi (good line), 15 dB poor.
SNR_ANCHORS: tuple[tuple[float, float], ...] = ((5.0, 0), (15.0, 30), (25.0, 70), (35.0, 100))
# Roams per minute -> score: one roam a minute is still good (walking between APs); three or more
# is ping-pong between APs, each roam a short gap in the audio.
ROAM_ANCHORS: tuple[tuple[float, float], ...] = ((0.0, 100), (1.0, 70), (3.0, 30), (6.0, 0))
# Rate collapses per minute -> score: the PHY rate falling to a fraction of the link's normal rate
# means retries and low MCS (interference, a client at the cell edge).
COLLAPSE_ANCHORS: tuple[tuple[float, float], ...] = ((0.0, 100), (1.0, 60), (3.0, 30), (6.0, 0))
COLLAPSE_RATIO = 0.25  # below a quarter of the window's 90th-percentile tx rate ...
COLLAPSE_MAX_KBPS = 54_000  # ... and below 54 Mbit/s: a fast link slowing to 200 Mbit/s is no collapse
DISCONNECT_CAP = 40.0  # any disconnect: the link dropped, calls break; at best fair
DISCONNECT_ANCHORS: tuple[tuple[float, float], ...] = (
    (0.0, DISCONNECT_CAP),
    (0.1, 10),
    (0.25, 0),
)  # by share of time down
_HIDDEN = {"", "<hidden-by-os>"}


@dataclass(frozen=True)
class WifiReading:
    """One reading of the desk's Wi-Fi link (payload kind ``wifi``), in the units of the payload."""

    ts_us: int
    connected: bool = True
    rssi_dbm: float | None = None
    snr_db: float | None = None
    tx_kbps: float | None = None
    bssid: str | None = None


def wifi_component(readings: Iterable[WifiReading], window_s: float | None = None) -> Component:
    """RSSI and SNR at their weak moments (10th percentile), roams, disconnects, rate collapses.

    The component is the weakest of these sub-scores. ``window_s`` (default: the readings' span,
    at least 60 s) turns counts into rates per minute. No readings: not on Wi-Fi, score None.
    """
    rs = sorted(readings, key=lambda r: r.ts_us)
    if not rs:
        return _component("wifi", None, "no Wi-Fi readings (wired, or no Wi-Fi reader on this desk)", {})
    span_s = window_s if window_s else max(60.0, (rs[-1].ts_us - rs[0].ts_us) / 1e6)
    minutes = span_s / 60
    up = [r for r in rs if r.connected]
    ev: dict = {"readings": len(rs), "window_s": span_s}
    subs: list[tuple[float, str, str]] = []  # (score, key, sentence)

    down_share = 1 - len(up) / len(rs)
    drops = sum(1 for a, b in itertools.pairwise(rs) if a.connected and not b.connected) + (0 if rs[0].connected else 1)
    ev["disconnects"], ev["disconnected_pct"] = drops, round(100 * down_share, 1)
    if drops:
        subs.append(
            (
                piecewise(down_share, DISCONNECT_ANCHORS),
                "disconnects",
                f"link dropped {drops} time(s), down {100 * down_share:.0f}% of readings",
            )
        )
    if not up:
        return _component("wifi", 0.0, "Wi-Fi disconnected for the whole window", ev)

    rssi = [r.rssi_dbm for r in up if r.rssi_dbm is not None]
    if rssi:
        low = _pct_rank(rssi, 10)
        ev["rssi_p10_dbm"], ev["rssi_median_dbm"] = low, _pct_rank(rssi, 50)
        subs.append(
            (
                piecewise(low, RSSI_ANCHORS),
                "rssi",
                f"weak signal: RSSI {low:.0f} dBm at its lowest 10% "
                f"(median {ev['rssi_median_dbm']:.0f} dBm; voice wants -67 dBm or better)",
            )
        )
    snr = [r.snr_db for r in up if r.snr_db is not None]
    if snr:
        low = _pct_rank(snr, 10)
        ev["snr_p10_db"] = low
        subs.append(
            (
                piecewise(low, SNR_ANCHORS),
                "snr",
                f"noisy channel: SNR {low:.0f} dB at its lowest 10% (voice wants 25 dB)",
            )
        )

    named = [r for r in up if r.bssid is not None and r.bssid not in _HIDDEN]
    roams = sum(1 for a, b in itertools.pairwise(named) if a.bssid != b.bssid)
    ev["roams"] = roams
    subs.append((piecewise(roams / minutes, ROAM_ANCHORS), "roams", f"{roams} roam(s) in {span_s / 60:.0f} min"))

    rates = [r.tx_kbps for r in up if r.tx_kbps is not None]
    collapses = 0
    if rates:
        ref = _pct_rank(rates, 90)
        limit = min(ref * COLLAPSE_RATIO, COLLAPSE_MAX_KBPS)
        low_flags = [x < limit for x in rates]
        collapses = sum(1 for i, f in enumerate(low_flags) if f and (i == 0 or not low_flags[i - 1]))
        ev["tx_p90_kbps"], ev["rate_collapses"] = ref, collapses
        subs.append(
            (
                piecewise(collapses / minutes, COLLAPSE_ANCHORS),
                "rate_collapses",
                f"{collapses} rate collapse(s) below {limit / 1000:.0f} Mbit/s (normal {ref / 1000:.0f} Mbit/s)",
            )
        )

    score, key, sentence = min(subs, key=lambda s: s[0])
    ev["limiting"] = key
    if label_for(score) == "good":
        reason = "healthy link" + (
            f" (RSSI {ev['rssi_p10_dbm']:.0f} dBm at its lowest 10%)" if "rssi_p10_dbm" in ev else ""
        )
    else:
        others = [s for sc, k, s in sorted(subs, key=lambda s: s[0]) if k != key and label_for(sc) != "good"]
        reason = "; ".join([sentence, *others])
    return _component("wifi", score, reason, ev)


# --- Stability ------------------------------------------------------------------------------

SEVERITY_WEIGHT: dict[int, float] = {1: 0.25, 2: 0.5, 3: 1.0}  # minor, major, critical
INSTANT_EVENT_S = 1.0  # an event without duration (a path change) counts as one second
# Share of the window spent inside disruptions (severity-weighted) -> score: 2% (1.2 s of a
# minute at critical severity) is the good line, 10% (6 s) the poor line.
STABILITY_ANCHORS: tuple[tuple[float, float], ...] = ((0.0, 100), (0.02, 70), (0.10, 30), (0.40, 0))
_SEVERITY_WORD = {1: "minor", 2: "major", 3: "critical"}


class EventLike(Protocol):
    """What stability needs of an event, read only; ``cxpulse.v1.payload.Event`` fits."""

    @property
    def kind(self) -> str: ...
    @property
    def start_us(self) -> int: ...
    @property
    def end_us(self) -> int | None: ...
    @property
    def severity(self) -> int: ...


def stability_component(
    events: Iterable[EventLike], window_s: float, *, window_start_us: int | None = None
) -> Component:
    """Seconds spent inside micro-disruption events, weighted by severity, as a share of the window.

    Overlapping events count once, at the highest severity among them (a loss burst during a
    latency spike is one bad second, not two). With ``window_start_us`` events are clipped to the
    window and an open event lasts to its end; without it, events are taken as already clipped
    and an open event counts as an instant.
    """
    if not (window_s > 0):
        raise ValueError(f"window_s must be > 0, got {window_s!r}")
    lo = window_start_us
    hi = None if lo is None else lo + round(window_s * 1e6)
    spans: list[tuple[int, int, float, EventLike]] = []
    per_kind: Counter[str] = Counter()  # seconds (floats: Counter adds them as well)
    for e in events:
        start = e.start_us
        end = e.end_us if e.end_us is not None else (hi if hi is not None else start)
        if end <= start:  # an instant (path change), or open with no window end to run to
            end = start + round(INSTANT_EVENT_S * 1e6)
        if lo is not None and hi is not None:
            start, end = max(start, lo), min(end, hi)
        if end <= start:
            continue
        w = SEVERITY_WEIGHT.get(int(e.severity), 1.0)
        spans.append((start, end, w, e))
        per_kind[e.kind] += (end - start) / 1e6  # type: ignore[assignment]
    weighted_s = _weighted_union_s(spans)
    share = min(1.0, weighted_s / window_s)
    score = piecewise(share, STABILITY_ANCHORS)
    ev = {
        "window_s": window_s,
        "events": len(spans),
        "weighted_s": round(weighted_s, 2),
        "seconds_by_kind": {k: round(v, 1) for k, v in per_kind.most_common()},
    }
    if not spans:
        return _component("stability", score, f"no disruptions in {window_s:.0f} s", ev)
    worst = max(spans, key=lambda s: (s[2], s[1] - s[0]))[3]
    ev["worst_event"] = {
        "kind": worst.kind,
        "severity": worst.severity,
        "start_us": worst.start_us,
        "end_us": worst.end_us,
        **({"id": worst.id} if hasattr(worst, "id") else {}),
    }
    kinds = ", ".join(f"{k} {v:.0f} s" for k, v in per_kind.most_common(3))
    reason = (
        f"{weighted_s:.1f} severity-weighted s of {window_s:.0f} s inside disruptions ({kinds}; "
        f"worst: {worst.kind}, {_SEVERITY_WORD.get(worst.severity, 'severity ' + str(worst.severity))})"
    )
    return _component("stability", score, reason, ev)


def _weighted_union_s(spans: Sequence[tuple[int, int, float, object]]) -> float:
    """Integral over time of the highest weight among the spans covering each instant, in s."""
    cuts = sorted({t for s in spans for t in s[:2]})
    total = 0.0
    for a, b in itertools.pairwise(cuts):
        w = max((s[2] for s in spans if s[0] <= a and s[1] >= b), default=0.0)
        total += w * (b - a)
    return total / 1e6


# --- Combining ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overall:
    """One minute's (or one window's) score: the weakest component, named, with its reason."""

    score: float | None
    label: str
    limiting: str | None
    reason: str
    components: tuple[Component, ...]

    def to_dict(self) -> dict:
        return {
            "score": None if self.score is None else round(self.score, 1),
            "label": self.label,
            "limiting": self.limiting,
            "reason": self.reason,
            "components": [c.to_dict() for c in self.components],
        }


def overall(components: Iterable[Component]) -> Overall:
    """The lowest measured component is the score and the limiting factor.

    A plain minimum rather than a weighted mean: a call that breaks up is a bad minute however
    fast the CRM was. Ties go to the component given first (pass voice, apps, wifi, stability).
    Components not measured (score None) are shown but do not count.
    """
    comps = tuple(components)
    if len(comps) == 1:  # a component's own window (timeline_of): the same answer, without the min()
        c = comps[0]
        if c.score is None:
            return Overall(None, "n/a", None, "nothing measured in this window", comps)
        return Overall(c.score, label_for(c.score), c.name, f"{c.name}: {c.reason}", comps)
    measured = [(c.score, c) for c in comps if c.score is not None]
    if not measured:
        return Overall(None, "n/a", None, "nothing measured in this window", comps)
    _, lim = min(measured, key=lambda sc: sc[0])  # min() keeps the first of equals
    return Overall(lim.score, label_for(lim.score), lim.name, f"{lim.name}: {lim.reason}", comps)


@dataclass(frozen=True)
class WindowScore:
    """A window's score from its per-minute scores, with the minutes that made it."""

    score: float | None
    label: str
    limiting: str | None
    reason: str
    minutes: int  # minutes with a score
    mean: float | None  # plain mean, for context only: never the score
    worst: tuple[tuple[int, float, str | None], ...]  # (minute, score, limiting) of the minutes counted

    def to_dict(self) -> dict:
        return {
            "score": None if self.score is None else round(self.score, 1),
            "label": self.label,
            "limiting": self.limiting,
            "reason": self.reason,
            "minutes": self.minutes,
            "mean": None if self.mean is None else round(self.mean, 1),
            "worst": [{"minute": m, "score": round(s, 1), "limiting": lim} for m, s, lim in self.worst],
        }


WORST_FRACTION = 0.1


def window_score(minutes: Iterable[tuple[int, Overall]], worst_fraction: float = WORST_FRACTION) -> WindowScore:
    """Mean of the worst ``worst_fraction`` of the minutes (at least one minute), not the mean.

    15 minutes: the worst 2; 1 hour: the worst 6; 24 hours: the worst 144. A single broken
    minute in a quarter hour therefore pulls the window down by about half its shortfall, and the
    worst minutes are always listed. The limiting component is the one that limited most of the
    counted minutes (ties: the one of the worst minute); the reason is the worst minute's.
    """
    if not 0 < worst_fraction <= 1:
        raise ValueError(f"worst_fraction must be within (0, 1], got {worst_fraction}")
    scored = [(m, o, s) for m, o in minutes if (s := o.score) is not None]
    if not scored:
        return WindowScore(None, "n/a", None, "nothing measured in this window", 0, None, ())
    k = max(1, math.ceil(worst_fraction * len(scored)))
    worst = sorted(scored, key=lambda mos: (mos[2], mos[0]))[:k]
    score = sum(s for _, _, s in worst) / k
    mean = sum(s for _, _, s in scored) / len(scored)
    votes = Counter(o.limiting for _, o, _ in worst)
    top = max(votes.values())
    limiting = next(o.limiting for _, o, _ in worst if votes[o.limiting] == top)
    m0, o0, _ = worst[0]
    reason = f"worst minute {m0}: {o0.reason}" + (f" ({k} worst of {len(scored)} minutes counted)" if k > 1 else "")
    return WindowScore(
        score, label_for(score), limiting, reason, len(scored), mean, tuple((m, s, o.limiting) for m, o, s in worst)
    )
