"""Scores over time: per agent per minute from the rollups, and over any window by its worst minutes.
A minute's rollups are read once as ``Figures`` that scoring, journeys and triage all share.
Design notes: docs/collector-internals.md, "collector/score/timeline.py".
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..store import rollup as ru
from ..store.sketch import LatencySketch
from .components import (
    COLLAPSE_ANCHORS,
    DISCONNECT_ANCHORS,
    GOOD,
    ROAM_ANCHORS,
    RSSI_ANCHORS,
    SNR_ANCHORS,
    AppCheck,
    Component,
    Overall,
    WindowScore,
    apps_component,
    label_for,
    overall,
    piecewise,
    stability_component,
    voice_component,
    window_score,
)
from .emodel import DEFAULT_CODEC, burst_r_from_runs

__all__ = [
    "AppFig",
    "DeviceFig",
    "Figures",
    "MinuteScore",
    "PathFig",
    "ScoreConfig",
    "Span",
    "Timeline",
    "VoiceFig",
    "WifiFig",
    "agent_timeline",
    "app_history",
    "figures_from",
    "figures_of",
    "hist_percentile",
    "merged",
    "minute_scores",
    "recent_availability",
    "score_figures",
    "timeline_of",
]

MINUTE_US = ru.MINUTE_US
GATEWAY = "gateway"
# Hop roles the agent measures beyond the gateway (agent/path: classify_hops), nearest first.
BEYOND_GATEWAY = ("isp", "public", "anchor")


# --- figures -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathFig:
    """RTT to one hop or target: loss, RTT percentiles and mean |dRTT| (ms)."""

    target: str
    hop: int
    address: str
    samples: int
    lost: int
    loss_pct: float
    p50_ms: float | None
    p95_ms: float | None
    jitter_ms: float | None
    loss_runs: int

    @property
    def burst_r(self) -> float:
        if not self.lost or self.lost >= self.samples:
            return 1.0
        return burst_r_from_runs(self.lost, self.samples, max(1, min(self.loss_runs, self.lost)))


@dataclass(frozen=True)
class AppFig:
    app: str
    checks: int
    failed: int
    errors: dict[str, int]
    availability_pct: float
    durations_ms: tuple[float, ...]  # successful checks' totals (bucket resolution), for Apdex
    total_p95_ms: float | None
    dns_p95_ms: float | None
    tcp_p50_ms: float | None
    tls_p50_ms: float | None
    ttfb_p50_ms: float | None


@dataclass(frozen=True)
class VoiceFig:
    runs: int
    failed: int
    sent: int
    lost: int
    loss_pct: float | None
    rtt_ms: float | None
    jitter_ms: float | None
    burst_r: float
    burst_loss_max_pct: float | None


@dataclass(frozen=True)
class DeviceFig:
    readings: int
    cpu_mean_pct: float | None
    cpu_max_pct: float | None
    cpu_high_share: float
    mem_max_pct: float | None
    mem_high_share: float
    busiest: str | None
    interface_kinds: tuple[str, ...]
    vpn: tuple[str, ...]
    nic_errors: int
    # The desk's own traffic (issue 17), kbit/s: mean rate, share of readings near the best the
    # link carried (rollup.OWN_NEAR_BEST) and the mean rate in those, the best, per direction;
    # the link speed in Mbit/s. None / 0 when the agent does not report it.
    up_kbps: float | None = None
    dn_kbps: float | None = None
    up_near_share: float = 0.0
    dn_near_share: float = 0.0
    up_near_kbps: float | None = None
    dn_near_kbps: float | None = None
    up_best_kbps: float | None = None
    dn_best_kbps: float | None = None
    link_mbps: float | None = None


@dataclass(frozen=True)
class WifiFig:
    readings: int
    connected: int
    rssi_p10_dbm: float | None
    rssi_median_dbm: float | None
    snr_p10_db: float | None
    tx_p90_kbps: float | None
    tx_p10_kbps: float | None
    bssids: tuple[str, ...]


@dataclass(frozen=True)
class Span:
    """An event's part of the window (what stability reads; fits components.EventLike)."""

    start_us: int
    end_us: int
    severity: int
    kind: str
    target: str
    id: str
    event_start_us: int


@dataclass
class Figures:
    """Everything measured of one agent over the merged minutes (``minutes``: how many had data)."""

    start_us: int
    end_us: int
    minutes: int
    paths: dict[str, PathFig] = field(default_factory=dict)
    apps: dict[str, AppFig] = field(default_factory=dict)
    voice: VoiceFig | None = None
    device: DeviceFig | None = None
    wifi: WifiFig | None = None
    spans: list[Span] = field(default_factory=list)

    def event_starts(self, kind: str) -> int:
        """Events of this kind that began inside the window (a roam, a disconnect)."""
        return len({s.id for s in self.spans if s.kind == kind and self.start_us <= s.event_start_us < self.end_us})

    def event_seconds(self, kind: str, target: str | None = None) -> float:
        return sum(
            (s.end_us - s.start_us) / 1e6
            for s in self.spans
            if s.kind == kind and (target is None or s.target == target)
        )

    @property
    def gateway(self) -> PathFig | None:
        return self.paths.get(GATEWAY)

    def beyond_gateway(self) -> list[PathFig]:
        """Measured hops beyond the gateway, nearest first."""
        return sorted((p for n, p in self.paths.items() if n in BEYOND_GATEWAY), key=lambda p: (p.hop or 99, p.target))


def merged(rollups: Iterable[ru.Rollup]) -> dict[tuple[str, str], ru.Rollup]:
    """Rollups of several minutes merged per (kind, target); events spans concatenated.

    A key seen once is handed back as it is (read-only: one minute, the common case, costs no
    copy). Several are merged into a new rollup with ``merge_all``, all at once: merged a pair at
    a time, a day (1,440 minutes) re-sorted its RTT fragments at every step and took seconds.
    """
    groups: dict[tuple[str, str], list[ru.Rollup]] = {}
    for r in rollups:
        k = (r.kind, r.target)
        g = groups.get(k)
        if g is None:
            groups[k] = [r]
        else:
            g.append(r)
    out: dict[tuple[str, str], ru.Rollup] = {}
    for k, g in groups.items():
        first = g[0]
        if len(g) == 1:
            out[k] = first
            continue
        if first.kind == ru.EVENTS:
            out[k] = ru.Rollup(
                first.agent,
                first.minute_us,
                first.kind,
                first.target,
                first.hop,
                {"spans": [s for r in g for s in r.data["spans"]]},
            )
        else:
            out[k] = ru.Rollup(
                first.agent,
                first.minute_us,
                first.kind,
                first.target,
                max(r.hop for r in g),
                ru.merge_all(first.kind, ru.empty(first.kind), [r.data for r in g]),
            )
    return out


def figures_of(rollups: Iterable[ru.Rollup], start_us: int, end_us: int) -> Figures:
    rs = list(rollups)
    minutes = sum({r.minute_us: r.span_us for r in rs}.values()) // MINUTE_US  # a 15-minute rollup: 15
    return figures_from(merged(rs), minutes, start_us, end_us)


def figures_from(by_key: Mapping[tuple[str, str], ru.Rollup], minutes: int, start_us: int, end_us: int) -> Figures:
    """``figures_of`` from rollups already merged (``merged``) over ``minutes`` minutes with data."""
    f = Figures(start_us, end_us, minutes)
    for (kind, target), r in by_key.items():
        d = r.data
        if kind == "rtt":
            f.paths[target] = _path(target, r.hop, d)
        elif kind == "http":
            f.apps[target] = _app(target, d)
        elif kind == "voice":
            f.voice = _voice(d) if f.voice is None else f.voice
        elif kind == "device":
            f.device = _device(d)
        elif kind == "wifi":
            f.wifi = _wifi(d)
        elif kind == ru.EVENTS:
            f.spans = [Span(*s) for s in d["spans"]]
    return f


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000.0, 3)


def _q(s: LatencySketch | None, q: float) -> float | None:
    return None if s is None or not s.count else s.quantile(q)


def _path(target: str, hop: int, d: dict) -> PathFig:
    jit_sum, pairs = ru.rtt_jitter(d)
    n, lost = d["n"], d["lost"]
    return PathFig(
        target,
        hop,
        ",".join(d["addr"]),
        n,
        lost,
        round(100.0 * lost / n, 2) if n else 0.0,
        _ms(_q(d["rtt"], 0.5)),
        _ms(_q(d["rtt"], 0.95)),
        _ms(jit_sum / pairs) if pairs else None,
        ru.rtt_loss_runs(d),
    )


def _durations(s: LatencySketch | None) -> tuple[float, ...]:
    """Each successful check's total at bucket resolution (within 1%), to count Apdex bands."""
    if s is None or not s.count:
        return ()
    out: list[float] = [0.0] * s.zero
    lo, hi = s.min, s.max
    assert lo is not None and hi is not None  # a sketch that counted something has both
    for k in sorted(s.buckets):
        v = min(max(2 * s.gamma**k / (s.gamma + 1), lo), hi)
        out.extend([v / 1000.0] * s.buckets[k])
    return tuple(out)


def _app(app: str, d: dict) -> AppFig:
    n, failed = d["n"], d["failed"]
    return AppFig(
        app,
        n,
        failed,
        dict(d["errs"]),
        round(100.0 * (n - failed) / n, 2) if n else 0.0,
        _durations(d["total"]),
        _ms(_q(d["total"], 0.95)),
        _ms(_q(d["dns"], 0.95)),
        _ms(_q(d["tcp"], 0.5)),
        _ms(_q(d["tls"], 0.5)),
        _ms(_q(d["ttfb"], 0.5)),
    )


def _voice(d: dict) -> VoiceFig:
    sent, lost = d["sent"], max(0, d["sent"] - d["recv"])
    burst_r = 1.0
    if sent and 0 < lost < sent:
        burst_r = burst_r_from_runs(lost, sent, max(1, min(d["loss_runs"], lost)))
    return VoiceFig(
        d["runs"],
        d["failed"],
        sent,
        lost,
        round(100.0 * lost / sent, 2) if sent else None,
        _ms(_q(d["rtt"], 0.5)),
        _ms(_q(d["jit"], 0.5)),
        burst_r,
        None if d["burst_max"] is None else d["burst_max"] / 10.0,
    )


def _device(d: dict) -> DeviceFig:
    n = d["n"] or 1
    tr = d.get("tr_n") or 0
    own = {}
    if tr:
        for x in ("up", "dn"):
            hi = d[f"{x}_hi"]
            own.update(
                {
                    f"{x}_kbps": round(d[f"{x}_sum"] / tr, 1),
                    f"{x}_near_share": hi / tr,
                    f"{x}_near_kbps": round(d[f"{x}_hi_sum"] / hi, 1) if hi else None,
                    f"{x}_best_kbps": d[f"{x}_best"],
                }
            )
        own["link_mbps"] = d["spd"]
    return DeviceFig(
        d["n"],
        round(d["cpu_sum"] / n / 10, 1) if d["cpu_max"] is not None else None,
        None if d["cpu_max"] is None else d["cpu_max"] / 10,
        d["cpu_hi"] / n,
        None if d["mem_max"] is None else d["mem_max"] / 10,
        d["mem_hi"] / n,
        d["top"][1] if d["top"] else None,
        tuple(d["ifk"]),
        tuple(d["vpn"]),
        d["nicerr"],
        **own,
    )


def hist_percentile(h: dict, pct: float) -> float | None:
    """Nearest-rank percentile of an exact histogram (value -> count)."""
    total = sum(h.values())
    if not total:
        return None
    rank = max(1, math.ceil(pct / 100 * total))
    seen = 0
    for k in sorted(h):
        seen += h[k]
        if seen >= rank:
            return float(k)
    return None


def _wifi(d: dict) -> WifiFig:
    rssi, snr = d["rssi"], d["snr"]
    return WifiFig(
        d["n"],
        d["conn"],
        hist_percentile(rssi, 10),
        hist_percentile(rssi, 50),
        hist_percentile(snr, 10),
        _q(d["tx"], 0.9),
        _q(d["tx"], 0.1),
        tuple(d["bssid"]),
    )


# --- scoring ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreConfig:
    """What scoring needs to know of the deployment.

    ``media_targets``: RTT targets that are the CCaaS media edge (the first one measured is used
    for voice between voice-cadence runs). ``apdex_t_ms``: Apdex T per app name (default 500 ms,
    interactive CRM calls). ``codec``: the codec the voice estimate assumes.
    """

    media_targets: tuple[str, ...] = ("media", "media-edge", "media_edge", "turn", "media-relay")
    apdex_t_ms: Mapping[str, float] = field(default_factory=dict)
    default_apdex_t_ms: float = 500.0
    codec: str = DEFAULT_CODEC


def voice_of(f: Figures, cfg: ScoreConfig) -> Component:
    """Voice from the voice-cadence runs and from the RTT series to the media edge; the worse one.

    A voice-cadence run (a 20 ms UDP stream, a few seconds a minute) is the closest thing to a
    call; the 1/s RTT series to the media edge covers the whole minute and catches a burst the run
    missed. Without either, the farthest measured hop stands in (an estimate, said so). Runs that
    all failed (reflector unreachable) count as 100% loss: the call would not connect.
    """
    cands: list[tuple[Component, str]] = []
    v = f.voice
    if v is not None and v.runs:
        media = _media_path(f, cfg)
        if v.failed == v.runs or not v.sent:
            rtt = media.p50_ms if media and media.p50_ms is not None else 0.0
            cands.append((voice_component(rtt, 0.0, 100.0, 1.0, cfg.codec), f"{v.runs} voice-cadence run(s) failed"))
        else:
            cands.append(
                (
                    voice_component(v.rtt_ms or 0.0, v.jitter_ms or 0.0, v.loss_pct or 0.0, v.burst_r, cfg.codec),
                    f"voice-cadence: {v.runs} run(s), {v.sent} packets",
                )
            )
    path = _media_path(f, cfg)
    basis = "RTT to the media edge"
    if path is None:
        far = f.beyond_gateway() or ([f.gateway] if f.gateway else [])
        path = far[-1] if far else None
        basis = "estimated from RTT to the farthest measured hop"
    if path is not None and path.samples:
        if path.p50_ms is None:  # nothing answered
            cands.append((voice_component(0.0, 0.0, 100.0, 1.0, cfg.codec), f"{basis} ({path.target}): no answer"))
        else:
            cands.append(
                (
                    voice_component(path.p50_ms, path.jitter_ms or 0.0, path.loss_pct, path.burst_r, cfg.codec),
                    f"{basis} ({path.target}, {path.samples} samples)",
                )
            )
    if not cands:
        return Component("voice", None, "n/a", "no voice-cadence runs and no RTT to the media edge", {})
    c, why = min(cands, key=lambda cw: math.inf if cw[0].score is None else cw[0].score)
    return Component(c.name, c.score, c.label, f"{c.reason} [{why}]", {**c.evidence, "basis": why})


def _media_path(f: Figures, cfg: ScoreConfig) -> PathFig | None:
    return next((f.paths[t] for t in cfg.media_targets if t in f.paths and f.paths[t].samples), None)


def apps_of(f: Figures, cfg: ScoreConfig, isolated: Mapping[str, tuple[int, int]] | None = None) -> Component:
    """Apdex and availability per app, the worst app limiting.

    ``isolated``: app -> (failed, checks) over its recent checks, for apps whose failures in
    these figures are isolated blips (see ``recent_availability``): those failed checks are left
    out of the judgment and named in the reason instead.
    """
    isolated = isolated or {}
    checks: list[AppCheck] = []
    skipped: list[str] = []
    for a in f.apps.values():
        checks += [AppCheck(a.app, d) for d in a.durations_ms]
        if a.app in isolated and a.failed:
            failed, seen = isolated[a.app]
            skipped.append(
                f"{a.app}: {a.failed} isolated failed check(s) not counted ({failed} of its last {seen} failed)"
            )
            continue
        checks += [AppCheck(a.app, None, ok=False)] * a.failed
    c = apps_component(checks, cfg.apdex_t_ms, cfg.default_apdex_t_ms)
    if not skipped:
        return c
    return Component(
        c.name, c.score, c.label, "; ".join([c.reason, *skipped]), {**c.evidence, "isolated_failures": skipped}
    )


# A failed app check is a blip, not a degraded minute, while the app's availability over its
# last AVAILABILITY_CHECKS checks (looking back at most AVAILABILITY_LOOKBACK_MIN minutes) stays
# at or above AVAILABILITY_OK_PCT: with a check every 30 s, one failure in ten minutes. Judged
# per minute alone, one failure of a minute's two checks read as 50% availability (score 0).
# A minute whose failures are not isolated is judged on its own checks, as before, so an outage
# shows from its first minutes and the score recovers in the first minute without failures.
AVAILABILITY_CHECKS = 20
AVAILABILITY_LOOKBACK_MIN = 15
AVAILABILITY_OK_PCT = 95.0
BLIP_FAILURES = 1  # failed checks in the look-back that are a blip however few checks there were


def recent_availability(
    counts: Mapping[int, Mapping[str, tuple[int, int]]], minute_us: int, app: str
) -> tuple[int, int]:
    """(failed, checks) of ``app`` over its last AVAILABILITY_CHECKS checks up to this minute.

    ``counts``: minute -> app -> (checks, failed). Whole minutes are taken, newest first, until
    AVAILABILITY_CHECKS checks are reached or the look-back ends.
    """
    n = failed = 0
    for back in range(AVAILABILITY_LOOKBACK_MIN):
        c = counts.get(minute_us - back * MINUTE_US, {}).get(app)
        if c is not None:
            n += c[0]
            failed += c[1]
        if n >= AVAILABILITY_CHECKS:
            break
    return failed, n


def _isolated(
    counts: Mapping[int, Mapping[str, tuple[int, int]]], minute_us: int, f: Figures
) -> dict[str, tuple[int, int]]:
    out = {}
    for a in f.apps.values():
        if not a.failed:
            continue
        failed, n = recent_availability(counts, minute_us, a.app)
        # One failure is a blip whatever came before: an app whose checks have just begun (the
        # collector or the app server starting) had one refused check of its first two read as
        # 50% availability, and "0 poor, limited by apps" headlined a healthy desk (issue 17).
        if failed <= BLIP_FAILURES or (n >= AVAILABILITY_CHECKS and 100.0 * (n - failed) / n >= AVAILABILITY_OK_PCT):
            out[a.app] = (failed, n)
    return out


def wifi_of(f: Figures) -> Component:
    """Wi-Fi from the rollup: the anchors and rules of components.wifi_component, over merged minutes.

    RSSI and SNR at their 10th percentile, roams, rate collapses and disconnects per minute (from
    the Wi-Fi watcher's events), disconnected share of readings; the weakest sub-score limits.
    """
    w = f.wifi
    if w is None or not w.readings:
        return Component("wifi", None, "n/a", "no Wi-Fi readings (wired, or no Wi-Fi reader on this desk)", {})
    minutes = max(1, f.minutes)
    ev: dict = {"readings": w.readings, "connected_pct": round(100 * w.connected / w.readings, 1)}
    if not w.connected:
        return _comp("wifi", 0.0, "Wi-Fi disconnected for the whole window", ev)
    subs: list[tuple[float, str, str]] = []
    down = 1 - w.connected / w.readings
    drops = f.event_starts("wifi_disconnect") or (1 if down > 0 else 0)
    ev["disconnects"] = drops
    if drops:
        subs.append(
            (
                piecewise(down, DISCONNECT_ANCHORS),
                "disconnects",
                f"link dropped {drops} time(s), down {100 * down:.0f}% of readings",
            )
        )
    if w.rssi_p10_dbm is not None:
        ev["rssi_p10_dbm"], ev["rssi_median_dbm"] = w.rssi_p10_dbm, w.rssi_median_dbm
        subs.append(
            (
                piecewise(w.rssi_p10_dbm, RSSI_ANCHORS),
                "rssi",
                f"weak signal: RSSI {w.rssi_p10_dbm:.0f} dBm at its lowest 10% (median {w.rssi_median_dbm:.0f} dBm; "
                "voice wants -67 dBm or better)",
            )
        )
    if w.snr_p10_db is not None:
        ev["snr_p10_db"] = w.snr_p10_db
        subs.append(
            (
                piecewise(w.snr_p10_db, SNR_ANCHORS),
                "snr",
                f"noisy channel: SNR {w.snr_p10_db:.0f} dB at its lowest 10% (voice wants 25 dB)",
            )
        )
    roams = f.event_starts("wifi_roam")
    ev["roams"] = roams
    subs.append((piecewise(roams / minutes, ROAM_ANCHORS), "roams", f"{roams} roam(s) in {minutes} min"))
    drops_rate = f.event_starts("wifi_rate_drop")
    ev["rate_collapses"] = drops_rate
    subs.append(
        (
            piecewise(drops_rate / minutes, COLLAPSE_ANCHORS),
            "rate_collapses",
            f"{drops_rate} rate collapse(s) in {minutes} min"
            + (
                f" (tx rate p10 {w.tx_p10_kbps / 1000:.0f} Mbit/s, p90 {w.tx_p90_kbps / 1000:.0f})"
                if w.tx_p10_kbps is not None and w.tx_p90_kbps is not None
                else ""
            ),
        )
    )
    score, key, sentence = min(subs, key=lambda s: s[0])
    ev["limiting"] = key
    if label_for(score) == "good":
        reason = "healthy link" + (
            f" (RSSI {w.rssi_p10_dbm:.0f} dBm at its lowest 10%)" if w.rssi_p10_dbm is not None else ""
        )
    else:
        others = [s for sc, k, s in sorted(subs, key=lambda s: s[0]) if k != key and label_for(sc) != "good"]
        reason = "; ".join([sentence, *others])
    return _comp("wifi", score, reason, ev)


def _comp(name: str, score: float, reason: str, ev: dict) -> Component:
    score = round(min(100.0, max(0.0, score)), 1)
    return Component(name, score, label_for(score), reason, ev)


# Events that say something about the data, not about what the user felt: a spool's ``data_gap``
# (batches it had to drop) marks minutes we know nothing of, it is no disruption; nor is an agent's
# ``config_rejected`` (a pushed config it refused; the last good one kept measuring).
NOT_DISRUPTIONS = frozenset({"data_gap", "config_rejected"})


def stability_of(f: Figures) -> Component:
    return stability_component([s for s in f.spans if s.kind not in NOT_DISRUPTIONS], 60.0 * max(1, f.minutes))


def score_figures(
    f: Figures, cfg: ScoreConfig | None = None, isolated: Mapping[str, tuple[int, int]] | None = None
) -> Overall:
    """The four components of these figures and the weakest of them (voice, apps, Wi-Fi, stability)."""
    cfg = cfg or ScoreConfig()
    return overall([voice_of(f, cfg), apps_of(f, cfg, isolated), wifi_of(f), stability_of(f)])


@dataclass(eq=False)
class MinuteScore:
    """One minute's score. ``figures`` are computed on first use when the score was kept
    (score/kept.py): only journeys and a few sections ever read a minute's own figures.

    ``digest``: what the score was computed from (None: not to be kept); ``journeys``: journeys
    digest -> flags in journey order; ``kept``: whether the store holds it as it is now.
    """

    minute_us: int
    _figures: Figures | None
    overall: Overall
    rollups: tuple[ru.Rollup, ...] = ()
    digest: bytes | None = None
    journeys: dict = field(default_factory=dict)
    kept: bool = False

    @property
    def figures(self) -> Figures:
        if self._figures is None:
            self._figures = figures_of(self.rollups, self.minute_us, self.minute_us + _span(self.rollups))
        return self._figures

    @property
    def span_us(self) -> int:
        """A minute, or 15 for a 15-minute bucket (a window older than the minute rollups)."""
        return _span(self.rollups)

    @property
    def degraded(self) -> bool:
        return self.overall.score is not None and self.overall.score < GOOD


def minute_scores(
    rollups: Iterable[ru.Rollup], cfg: ScoreConfig | None = None, history: Iterable[ru.Rollup] = (), kept=None
) -> list[MinuteScore]:
    """One score per minute that has data (rollups of one agent).

    ``history``: the agent's ``http`` rollups of the minutes just before (not scored), so that
    an app's recent availability (``recent_availability``) is judged alike whatever the window.
    ``kept``: a ``kept.KeptScores``; minutes it holds with unchanged inputs are read, not scored.
    """
    cfg = cfg or ScoreConfig()
    by_minute: dict[int, list[ru.Rollup]] = {}
    for r in rollups:
        by_minute.setdefault(r.minute_us, []).append(r)
    http: dict[int, list[ru.Rollup]] = {}
    for r in [*history, *(r for rs in by_minute.values() for r in rs)]:
        if r.kind == "http":
            http.setdefault(r.minute_us, []).append(r)
    counts = _AppCounts(http)
    http_own: dict[int, bytes | None] = {}  # hashed on first need: a trusted kept minute needs none

    def own(mm: int) -> bytes | None:
        if mm not in http_own:
            hs = http.get(mm)
            http_own[mm] = b"-" if hs is None else ru.own_digest(hs)
        return http_own[mm]

    out = []
    for m in sorted(by_minute):
        rs = by_minute[m]
        digest = None
        if kept is not None:
            trusted = kept.trusted(rs[0].agent, m, rs)
            if trusted is not None:
                out.append(MinuteScore(m, None, trusted[0], tuple(rs), trusted[2], trusted[1], True))
                continue
            digest = kept.digest(rs, [own(m - b * MINUTE_US) for b in range(AVAILABILITY_LOOKBACK_MIN - 1, 0, -1)])
            hit = kept.lookup(rs[0].agent, m, digest, rs)
            if hit is not None:
                out.append(MinuteScore(m, None, hit[0], tuple(rs), digest, hit[1], True))
                continue
        f = figures_of(rs, m, m + _span(rs))
        o = score_figures(f, cfg, _isolated(counts, m, f))
        if o.score is not None or o.components:
            out.append(MinuteScore(m, f, o, tuple(rs), digest))
    return out


def _span(rs: Sequence[ru.Rollup]) -> int:
    """A minute, or 15 where the window is older than the minute rollups: such a rollup is scored
    as one 15-minute bucket (store/tiers.py)."""
    return rs[0].span_us if rs else MINUTE_US


class _AppCounts(dict):
    """minute -> app -> (checks, failed), each minute counted on first ask: only a minute with a
    failed check looks back (``_isolated``), and the rollups of the minutes before it then decode."""

    def __init__(self, http: Mapping[int, list[ru.Rollup]]):
        super().__init__()
        self.http = http

    def get(self, minute: int, default=None):
        got = dict.get(self, minute)
        if got is None:
            rs = self.http.get(minute)
            if rs is None:
                return default
            got = self[minute] = {}
            for r in rs:
                n, failed = got.get(r.target, (0, 0))
                got[r.target] = (n + r.data["n"], failed + r.data["failed"])
        return got


@dataclass
class Timeline:
    """An agent's scores over a window: per minute, the window's score, and per component."""

    agent: int
    since_us: int
    until_us: int
    minutes: list[MinuteScore]
    window: WindowScore
    components: dict[str, WindowScore]

    @property
    def now(self) -> MinuteScore | None:
        """The latest complete minute with a score (the current minute is still filling up)."""
        scored = [m for m in self.minutes if m.overall.score is not None]
        done = [m for m in scored if m.minute_us + MINUTE_US <= self.until_us]
        return done[-1] if done else scored[-1] if scored else None

    def to_dict(self) -> dict:
        now = self.now
        return {
            "now": None if now is None else {"minute_us": now.minute_us, **now.overall.to_dict()},
            "window": _readable(self.window.to_dict(), self.window),
            "limiting": self.window.limiting,
            "components": [
                {
                    "name": n,
                    **{k: v for k, v in _readable(w.to_dict(), w).items() if k in ("score", "label", "reason")},
                    "worst_minute_us": w.worst[0][0] if w.worst else None,
                }
                for n, w in self.components.items()
            ],
            "minutes": [
                {
                    "minute_us": m.minute_us,
                    "score": None if m.overall.score is None else round(m.overall.score, 1),
                    "label": m.overall.label,
                    "limiting": m.overall.limiting,
                }
                for m in self.minutes
            ],
        }


COMPONENTS = ("voice", "apps", "wifi", "stability")


def _readable(d: dict, w: WindowScore) -> dict:
    """``window_score`` names its worst minute in µs; people read it as HH:MM UTC."""
    if w.worst:
        m0 = w.worst[0][0]
        hhmm = dt.datetime.fromtimestamp(m0 / 1e6, tz=dt.UTC).strftime("%H:%M UTC")
        d["reason"] = d["reason"].replace(f"worst minute {m0}", f"worst minute {hhmm}")
    return d


def timeline_of(
    agent: int, rollups: Iterable[ru.Rollup], since_us: int, until_us: int, cfg: ScoreConfig | None = None, kept=None
) -> Timeline:
    """Score the minutes in [since, until); ``http`` rollups before ``since`` serve as app history.
    ``kept``: kept minute scores to read instead of scoring (``minute_scores``)."""
    rs = list(rollups)
    history = [r for r in rs if r.kind == "http" and r.minute_us < since_us]
    ms = minute_scores((r for r in rs if since_us <= r.minute_us < until_us), cfg, history, kept)
    win = window_score((m.minute_us, m.overall) for m in ms)
    per: dict[str, list[tuple[int, Overall]]] = {name: [] for name in COMPONENTS}
    for m in ms:  # one pass over the minutes, not one per component
        for c in m.overall.components:
            xs = per.get(c.name)
            if xs is not None:
                xs.append((m.minute_us, overall((c,))))
    comps = {name: window_score(xs) for name, xs in per.items()}
    return Timeline(agent, since_us, until_us, ms, win, comps)


def agent_timeline(
    store, agent_key: int, since_us: int, until_us: int, cfg: ScoreConfig | None = None, kept=None
) -> Timeline:
    """Read one agent's rollups for the window and score them (``store``: a cxpulse Store)."""
    since = ru.minute_of(since_us)
    return timeline_of(
        agent_key,
        app_history(store, agent_key, since) + store.rollups(since, until_us, agent_key),
        since,
        until_us,
        cfg,
        kept,
    )


def app_history(store, agent_key: int, since_minute: int) -> list[ru.Rollup]:
    """The ``http`` rollups of the look-back before a window (recent availability needs them)."""
    return store.rollups(
        since_minute - (AVAILABILITY_LOOKBACK_MIN - 1) * MINUTE_US, since_minute, agent_key, kinds=("http",)
    )
