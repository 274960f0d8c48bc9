"""Fault-domain triage: for a degraded window, where the fault lies, how sure we are, and why.
Each place gets a strength from its signature in the figures; the strongest wins, with evidence.
Design notes: docs/collector-internals.md, "collector/score/triage.py".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..store.rollup import Rollup
from . import isp_name
from .components import piecewise
from .timeline import Figures, MinuteScore, PathFig, Timeline, figures_from, figures_of, merged

__all__ = [
    "DOMAINS",
    "LABELS",
    "Verdict",
    "degraded_windows",
    "good_minutes",
    "more_lost_p",
    "platform_name",
    "triage_timeline",
    "triage_window",
]

DOMAINS = ("wifi", "device", "own_traffic", "lan", "network", "vpn", "app", "dns", "unknown")
# The place of the fault in the words of whoever fixes it. "network" is the key of the ISP (the
# fault starts beyond the desk's router); "lan" the router or LAN itself (desk -> gateway), wired
# or over a Wi-Fi link whose radio figures look healthy.
LABELS = {
    "wifi": "this desk's Wi-Fi",
    "device": "this desk (the PC)",
    "own_traffic": "your connection, saturated by this PC's own traffic",
    "lan": "the home/branch router or LAN",
    "network": "the ISP (beyond the router)",
    "vpn": "the VPN / secure web gateway",
    "app": "the platform",
    "dns": "DNS",
    "unknown": "unknown",
}
# Platform names from the app names the presets give (agent/presets.py): the first match wins.
PLATFORMS = (
    ("salesforce", "Salesforce"),
    ("genesys", "Genesys Cloud"),
    ("connect", "Amazon Connect"),
    ("five9", "Five9"),
    ("cxone", "NICE CXone"),
    ("nice", "NICE CXone"),
    ("twilio", "Twilio"),
    ("flex", "Twilio Flex"),
    ("dynamics", "Dynamics 365"),
    ("servicenow", "ServiceNow"),
    ("zendesk", "Zendesk"),
    ("teams", "Microsoft Teams"),
    ("entra", "Microsoft Entra ID"),
    ("okta", "Okta"),
)
SIGNIFICANCE = 0.05  # a hop or window is worse than another only when chance explains it less often


def platform_name(app: str) -> str:
    """'salesforce-login' -> 'Salesforce': the platform a helpdesk person knows, else the app's own name."""
    low = app.lower()
    return next((name for key, name in PLATFORMS if key in low), app)


def more_lost_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided Fisher exact test: the chance of seeing ``k1`` or more lost of ``n1`` here when
    losses were spread evenly over both samples (``k2`` of ``n2`` elsewhere).

    Why: loss counts in a degraded window are small (a 30 s blip is 2 of 60 probes), and "6% vs
    0%" read as a real difference picked a hop by chance. Log-space, so a day's counts are cheap.
    """
    if n1 <= 0 or n2 <= 0 or k1 <= 0:
        return 1.0
    n, k = n1 + n2, k1 + k2

    def logc(a: int, b: int) -> float:
        return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)

    base = logc(n, k)
    p = sum(math.exp(logc(n1, i) + logc(n2, k - i) - base) for i in range(k1, min(k, n1) + 1) if k - i <= n2)
    return min(1.0, p)


GAP_MINUTES = 2  # good minutes between two degraded ones that still make one window
MIN_STRENGTH = 0.35  # below this for every domain: unknown


@dataclass(frozen=True)
class Verdict:
    domain: str
    confidence: float
    evidence: str
    start_us: int
    end_us: int
    minutes: int  # degraded minutes in the window
    worst_score: float | None
    strengths: dict[str, float] = field(default_factory=dict)
    incident: dict | None = None
    apps: tuple[str, ...] = ()  # the apps failing or slow in the window (what a platform incident must be about)
    isp: str | None = None  # the ISP by name (isp_name.py: 'AS3209 Vodafone GmbH', 'vodafone.de'), network verdicts
    detail: str = ""  # own_traffic: the figures the place is named with ("upload 9.6 of 10 Mbit/s")

    @property
    def label(self) -> str:
        if self.domain == "app" and self.apps:
            return f"the {platform_name(self.apps[0])} platform"
        if self.domain == "network" and self.isp:
            return f"the ISP ({self.isp})"
        if self.domain == "own_traffic" and self.detail:
            return f"{LABELS[self.domain]} ({self.detail})"
        return LABELS[self.domain]

    def to_dict(self) -> dict:
        return {
            "domain": self.domain,
            "label": self.label,
            "confidence": self.confidence,
            "evidence": self.evidence,
            "start_us": self.start_us,
            "end_us": self.end_us,
            "minutes": self.minutes,
            "worst_score": self.worst_score,
            "strengths": self.strengths,
            "incident": self.incident,
            "apps": list(self.apps),
            "isp": self.isp,
            "platform": platform_name(self.apps[0]) if self.domain == "app" and self.apps else None,
        }


def degraded_windows(minutes: Sequence[MinuteScore], gap_minutes: int = GAP_MINUTES) -> list[list[MinuteScore]]:
    """Runs of degraded minutes (score below good), joined across gaps of up to ``gap_minutes``."""
    out: list[list[MinuteScore]] = []
    for m in minutes:
        if not m.degraded:
            continue
        last = out[-1][-1] if out else None  # a 15-minute bucket (an old window) ends 15 minutes on
        if last is not None and m.minute_us - (last.minute_us + last.span_us) <= gap_minutes * 60_000_000:
            out[-1].append(m)
        else:
            out.append([m])
    return out


def good_minutes(tl: Timeline) -> list[MinuteScore]:
    """The timeline's minutes outside its degraded windows (triage's baseline: the agent's usual)."""
    bad = {m.minute_us for w in degraded_windows(tl.minutes) for m in w}
    return [m for m in tl.minutes if m.minute_us not in bad]


def triage_timeline(
    tl: Timeline, incidents: Iterable = (), good: Mapping[tuple[str, str], Rollup] | None = None
) -> list[Verdict]:
    """A verdict per degraded window of the timeline, naming the incidents the agent is part of.

    ``good``: the rollups of ``good_minutes`` already merged (``merged``), when the caller has
    them (a day's lookup merges them once for this and for its sections).
    """
    incs = list(incidents)
    windows = degraded_windows(tl.minutes)
    baseline = None  # only a degraded window reads it
    if windows:
        usual = good_minutes(tl)
        if usual:
            if good is None:
                good = merged(r for m in usual for r in m.rollups)
            baseline = figures_from(good, len({m.minute_us for m in usual}), tl.since_us, tl.until_us)
    out = []
    for w in windows:
        v = triage_window(w, baseline)
        inc = _incident_of(tl.agent, v, incs)
        if inc is not None:
            v = Verdict(
                v.domain,
                v.confidence,
                f"{v.evidence}; part of incident {inc['id']} ({inc['summary']})",
                v.start_us,
                v.end_us,
                v.minutes,
                v.worst_score,
                v.strengths,
                inc,
                v.apps,
                v.isp,
            )
        out.append(v)
    return out


def _incident_of(agent: int, v: Verdict, incidents: list) -> dict | None:
    """The incident that explains this degraded window, if any.

    Why so strict: the next step of a ticket follows the incident ("known, tell the user"), so an
    incident the person merely brushed against sends the helpdesk the wrong way. An incident
    explains a window only when this agent's own span in it overlaps the window (not the
    incident's span, which may have closed long before) and it is about the same thing: a
    platform incident explains an app window about that app, a site incident a network window.
    """
    for inc in incidents:
        span = inc.agents.get(agent)
        if span is None:
            continue
        first, last = span
        if not (first < v.end_us and last > v.start_us):
            continue
        if inc.kind == "platform" and not (v.domain == "app" and inc.scope in v.apps):
            continue
        if inc.kind == "site" and v.domain != "network":
            continue
        what = "platform: " if inc.kind == "platform" else "site: "
        return {
            "id": inc.id,
            "kind": inc.kind,
            "scope": inc.scope,
            "summary": f"{what}{inc.scope}, {len(inc.agents)} agents",
        }
    return None


def triage_window(window: Sequence[MinuteScore], baseline: Figures | None = None) -> Verdict:
    """The fault domain of one degraded window, from its merged figures (and the agent's good minutes)."""
    start, end = window[0].minute_us, window[-1].minute_us + window[-1].span_us
    f = figures_of([r for m in window for r in m.rollups], start, end)
    ev = _Evidence(f, baseline)
    strengths = {
        "device": ev.device(),
        "own_traffic": ev.own_traffic(),
        "wifi": ev.wifi(),
        "vpn": ev.vpn(),
        "lan": ev.lan(),
        "network": ev.network(),
        "dns": ev.dns(),
        "app": ev.app(),
    }
    # The desk's own traffic fills the queue that the LAN and ISP figures measure: as sure as
    # that is, theirs are not the fault.
    for k in ("lan", "network"):
        strengths[k] *= 1.0 - strengths["own_traffic"]
    ranked = sorted(strengths.items(), key=lambda kv: (-kv[1], DOMAINS.index(kv[0])))
    (best, s1), (_, s2) = ranked[0], ranked[1]
    # No clock time in the text: it is zone-free; each view prints start/end in its own zone.
    worst = min((m.overall.score for m in window if m.overall.score is not None), default=None)
    # The apps failing or slow, the worst first (the platform a verdict of "app" names).
    bad_share = {
        a.app: (a.failed + sum(1 for d in a.durations_ms if d > 2000)) / max(1, a.checks) for a in f.apps.values()
    }
    apps = tuple(sorted((a for a, x in bad_share.items() if x > 0), key=lambda a: (-bad_share[a], a)))
    if s1 < MIN_STRENGTH:
        lim = window[0].overall.limiting
        text = (
            f"no domain stands out (strongest: {LABELS[best]} {s1:.2f}); score limited by {lim}: "
            f"{_first_reason(window)}"
        )
        # Confidence of "unknown" is that of the best guess it turned down: low, by definition.
        return Verdict(
            "unknown",
            round(s1, 2),
            text,
            start,
            end,
            sum(m.span_us for m in window) // 60_000_000,
            worst,
            {k: round(v, 2) for k, v in strengths.items()},
            None,
            apps,
        )
    confidence = round(min(0.99, max(0.05, s1 - 0.5 * s2)), 2)
    return Verdict(
        best,
        confidence,
        ev.sentence(best),
        start,
        end,
        sum(m.span_us for m in window) // 60_000_000,
        worst,
        {k: round(v, 2) for k, v in strengths.items()},
        None,
        apps,
        ev.isp_name() if best == "network" else None,
        detail=ev.own_detail() if best == "own_traffic" else "",
    )


def _count(n: int) -> float:
    """Weight of evidence from ``n`` bad checks: 0.4 for one, full from three."""
    return piecewise(float(n), ((0.0, 0.0), (1.0, 0.4), (3.0, 1.0)))


def _first_reason(window: Sequence[MinuteScore]) -> str:
    worst = min(window, key=lambda m: m.overall.score if m.overall.score is not None else 101)
    return worst.overall.reason


def _own_ref(best_kbps: float | None, link_mbps: float | None) -> float | None:
    """What the link carried at best: the agent's decaying maximum, capped by the link speed."""
    if link_mbps:
        return min(best_kbps, link_mbps * 1000.0) if best_kbps else link_mbps * 1000.0
    return best_kbps


def _rate(kbps: float | None, ref_kbps: float | None) -> str:
    """'9.6 of 10 Mbit/s', '480 of 512 kbit/s': a rate and the best, in one unit."""
    top = max(kbps or 0.0, ref_kbps or 0.0)
    if top >= 1000:

        def fmt(v: float) -> str:
            return f"{v / 1000:.0f}" if v >= 10_000 and v % 1000 < 50 else f"{v / 1000:.1f}"

        unit, a, b = "Mbit/s", fmt(kbps or 0.0), fmt(ref_kbps) if ref_kbps else None
    else:
        unit, a, b = "kbit/s", f"{kbps or 0:.0f}", f"{ref_kbps:.0f}" if ref_kbps else None
    return f"{a} of {b} {unit}" if b else f"{a} {unit}"


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1000:.1f} s" if v >= 1000 else f"{v:.0f} ms"


class _Evidence:
    """The signatures of each domain in one window's figures, and the sentence for each."""

    def __init__(self, f: Figures, base: Figures | None):
        self.f, self.base = f, base
        self.gw = f.gateway
        self.hops = f.beyond_gateway()
        self.media = next((p for n, p in f.paths.items() if n not in ("gateway", "isp", "public", "anchor")), None)
        self._voice_l = self._voice_loss()
        self._gw_s = self._gateway_suffers()
        self._beyond = self._beyond_gateway()

    # -- path --

    def _base_path(self, name: str) -> PathFig | None:
        return None if self.base is None else self.base.paths.get(name)

    def _excess_ms(self, p: PathFig | None) -> float:
        """How far this hop's p95 RTT rose above its usual (the agent's good minutes), in ms."""
        if p is None or p.p95_ms is None:
            return 0.0
        b = self._base_path(p.target)
        usual = (
            b.p95_ms if b is not None and b.p95_ms is not None else (5.0 if p.target == "gateway" else p.p50_ms or 0.0)
        )
        return max(0.0, p.p95_ms - usual)

    def _gateway_suffers(self) -> float:
        g = self.gw
        if g is None or not g.samples:
            return 0.0
        loss_curve = ((0.5, 0.0), (2.0, 0.5), (5.0, 1.0))
        loss_s = piecewise(g.loss_pct, loss_curve)
        b = self._base_path("gateway")
        # Good minutes that lose gateway probes themselves are no healthy usual: a lossy LAN whose
        # calls held up for a few minutes (the namespace lab) would otherwise excuse its own loss.
        if (
            b is not None
            and b.samples
            and piecewise(b.loss_pct, loss_curve) == 0.0
            and more_lost_p(g.lost, g.samples, b.lost, b.samples) >= SIGNIFICANCE
        ):
            loss_s = 0.0  # no more loss than in the agent's good minutes, beyond chance
        # The voice stream losing clearly says the path loses; a gateway that lost some probes too,
        # while the hops beyond it (pooled) lose no more beyond chance, is where that loss starts, even
        # when the gateway's own count is small by chance (1 of 60 at 10% loss: the lab's lan_loss window).
        if g.lost and self._voice_l and not self._lossier_beyond():
            loss_s = max(loss_s, 0.75 * self._voice_l)
        lat_s = piecewise(self._excess_ms(g), ((8.0, 0.0), (25.0, 0.5), (60.0, 1.0)))
        return max(loss_s, lat_s)

    def _lossier_beyond(self) -> bool:
        """The hops beyond the gateway (and the media edge), pooled, lose more than the gateway beyond
        chance. Pooled, not hop by hop: more probes tell a chance gateway loss (1 of 60 while the
        ISP drops 10%) from a shared one, so a lucky gateway leaves the place unknown, not the LAN."""
        g = self.gw
        beyond = self.hops + ([self.media] if self.media else [])
        lost, samples = sum(p.lost for p in beyond), sum(p.samples for p in beyond)
        return g is not None and more_lost_p(lost, samples, g.lost, g.samples) < SIGNIFICANCE

    def _voice_loss(self) -> float:
        """How clearly the voice-cadence stream loses packets (0..1), above its usual beyond chance.
        Every packet crosses the LAN and the ISP, so it says that the path loses, not where."""
        v = self.f.voice
        if v is None or not v.sent or not v.lost:
            return 0.0
        b = self.base.voice if self.base is not None else None
        if b is not None and b.sent and more_lost_p(v.lost, v.sent, b.lost, b.sent) >= SIGNIFICANCE:
            return 0.0
        return piecewise(v.loss_pct or 0.0, ((1.0, 0.0), (3.0, 0.6), (8.0, 1.0)))

    def _beyond_gateway(self, named: bool = False) -> tuple[float, str]:
        """Strength of a fault that starts beyond the gateway, and where it starts (sentence);
        ``named``: the hop named too (isp_name.py), only for the sentence of a network verdict."""
        g = self.gw
        g_loss = g.loss_pct if g else 0.0
        g_exc = self._excess_ms(g)
        prev_name = "the gateway" + (f" ({g.address})" if g and g.address else "")
        best, text = 0.0, ""
        for p in self.hops + ([self.media] if self.media else []):
            loss_d = p.loss_pct - g_loss
            if g is not None and g.samples and more_lost_p(p.lost, p.samples, g.lost, g.samples) >= SIGNIFICANCE:
                loss_d = 0.0  # "6% vs 0%" from a blip: chance explains it, so not sure it starts here
            lat_d = self._excess_ms(p) - g_exc
            s = max(
                piecewise(loss_d, ((1.0, 0.0), (3.0, 0.6), (8.0, 1.0))),
                piecewise(lat_d, ((15.0, 0.0), (40.0, 0.6), (100.0, 1.0))),
            )
            if s > best + 0.05:
                name = self._hop_name(p.address) if named else None
                addr = f"{p.address}, {name}" if name else p.address
                where = f"hop {p.hop} ({p.target} {addr})" if p.hop else f"{p.target} ({addr})"
                if piecewise(loss_d, ((1.0, 0.0), (3.0, 0.6), (8.0, 1.0))) >= piecewise(
                    lat_d, ((15.0, 0.0), (40.0, 0.6), (100.0, 1.0))
                ):
                    text = f"loss starts at {where}: {p.loss_pct:.0f}% vs {g_loss:.0f}% at {prev_name}"
                else:
                    usual = self._base_path(p.target)
                    normally = f", normally {_ms(usual.p95_ms)}" if usual and usual.p95_ms is not None else ""
                    text = (
                        f"latency starts at {where}: p95 {_ms(p.p95_ms)}{normally}, vs {_ms(g.p95_ms if g else None)} "
                        f"at {prev_name}"
                    )
                best = s
                if s >= 0.99:
                    break
        return best, text

    def _hop_name(self, address: str | None) -> str | None:
        """A hop's name for people (isp_name.py), only when the process has a namer installed."""
        namer = isp_name.current()
        return namer.name(address) if namer is not None and address else None

    def isp_name(self) -> str | None:
        """The ISP by name: its first hop after the gateway, else the first public hop (the ISP
        hop is often private or carrier-grade NAT, with no database row and no PTR)."""
        namer = isp_name.current()
        if namer is None:
            return None
        return namer.isp([p.address for n in ("isp", "public") if (p := self.f.paths.get(n)) is not None])

    def _apps_bad(
        self, classes: tuple[str, ...] | None = None, exclude: tuple[str, ...] = (), slow: bool = True
    ) -> tuple[float, str]:
        """Worst app's badness (failures of the given classes, or slowness if ``slow``) and its sentence."""
        best, text = 0.0, ""
        for a in self.f.apps.values():
            if not a.checks:
                continue
            failed = sum(n for c, n in a.errors.items() if (classes is None or c in classes) and c not in exclude)
            # One failed check of two is a blip, not a verdict: full strength needs three.
            fail_s = piecewise(100.0 * failed / a.checks, ((5.0, 0.0), (20.0, 0.6), (50.0, 1.0))) * _count(failed)
            n_slow = sum(1 for d in a.durations_ms if d > 2000) if slow else 0
            slow_s = piecewise(100.0 * n_slow / a.checks, ((10.0, 0.0), (30.0, 0.6), (60.0, 1.0))) * _count(n_slow)
            b = self.base.apps.get(a.app) if self.base else None
            s = max(fail_s, slow_s)
            if s > best:
                best = s
                if fail_s >= slow_s:
                    errs = ", ".join(f"{c} x{n}" for c, n in sorted(a.errors.items()))
                    text = f"{a.app}: {failed} of {a.checks} checks failed ({errs})"
                else:
                    usual = f" (normally {_ms(b.total_p95_ms)})" if b and b.total_p95_ms else ""
                    text = (
                        f"{a.app}: {n_slow} of {a.checks} checks slower than 2 s, p95 {_ms(a.total_p95_ms)}{usual}, "
                        f"time to first byte {_ms(a.ttfb_p50_ms)}"
                    )
        return best, text

    def _path_clean(self) -> float:
        """1 when nothing on the path suffers, 0 when it clearly does."""
        return 1.0 - max(self._gw_s, self._beyond[0])

    # -- domains --

    def device(self) -> float:
        d = self.f.device
        if d is None:
            return 0.0
        share = max(d.cpu_high_share, d.mem_high_share)
        return piecewise(share, ((0.2, 0.0), (0.4, 0.6), (0.7, 1.0)))

    def _own_direction(self) -> tuple[str, float, float | None, float | None]:
        """The direction of the desk's own traffic nearest its best: (upload/download, share of
        readings near the best, mean rate in those and the best the link carried, kbit/s)."""
        d = self.f.device
        if d is None:
            return "upload", 0.0, None, None
        up = ("upload", d.up_near_share, d.up_near_kbps, _own_ref(d.up_best_kbps, d.link_mbps))
        dn = ("download", d.dn_near_share, d.dn_near_kbps, _own_ref(d.dn_best_kbps, d.link_mbps))
        return up if up[1] >= dn[1] else dn

    def _rtt_rise(self) -> tuple[float, PathFig | None]:
        """How much the RTT to the gateway or a hop beyond it rose above the usual (0..1), and where most."""
        best, where = 0.0, None
        if self.gw is not None:
            best, where = piecewise(self._excess_ms(self.gw), ((8.0, 0.0), (25.0, 0.5), (60.0, 1.0))), self.gw
        for p in self.hops + ([self.media] if self.media else []):  # the media edge: a desk without hop probes
            s = piecewise(self._excess_ms(p), ((15.0, 0.0), (40.0, 0.6), (100.0, 1.0)))
            if s > best:
                best, where = s, p
        return best, where

    def own_traffic(self) -> float:
        """This desk's own upload or download near its best while the RTT rises (or, on a line that
        drops instead of queueing, probes get lost): the desk fills its own link. A high rate on a
        clean path is no fault, so the two multiply."""
        _, share, _, _ = self._own_direction()
        near = piecewise(share, ((0.15, 0.0), (0.4, 0.7), (0.6, 1.0)))
        return near * max(self._rtt_rise()[0], self._gw_s, self._beyond[0]) if near else 0.0

    def own_detail(self) -> str:
        """'upload 9.6 of 10 Mbit/s': what the place of an own_traffic verdict is named with."""
        what, _, rate, ref = self._own_direction()
        return f"{what} {_rate(rate, ref)}" if rate is not None else ""

    def _wifi_signal(self) -> float:
        w = self.f.wifi
        if w is None or not w.readings:
            return 0.0
        minutes = max(1, self.f.minutes)
        s = 0.0
        if w.connected < w.readings or self.f.event_starts("wifi_disconnect"):
            s = 1.0
        if w.rssi_p10_dbm is not None:
            s = max(s, piecewise(w.rssi_p10_dbm, ((-80.0, 1.0), (-75.0, 0.7), (-70.0, 0.0))))
        if w.snr_p10_db is not None:
            s = max(s, piecewise(w.snr_p10_db, ((12.0, 1.0), (17.0, 0.6), (22.0, 0.0))))
        s = max(s, piecewise(self.f.event_starts("wifi_roam") / minutes, ((0.5, 0.0), (1.5, 0.6), (3.0, 1.0))))
        s = max(s, piecewise(self.f.event_starts("wifi_rate_drop") / minutes, ((0.3, 0.0), (1.0, 0.6), (2.0, 0.8))))
        return s

    def wifi(self) -> float:
        return self._wifi_signal() * (0.3 + 0.7 * self._gw_s)

    def _full_tunnel(self) -> bool:
        d = self.f.device
        return d is not None and "vpn" in d.interface_kinds

    def vpn(self) -> float:
        if not self._full_tunnel():
            return 0.0
        slow, _ = self._apps_bad(classes=("timeout", "tls", "refused", "error"))
        return max(self._gw_s, self._beyond[0], 0.8 * slow) * (1.0 - 0.5 * self._wifi_signal())

    def lan(self) -> float:
        """The router or LAN itself (desk -> gateway), wired or over a Wi-Fi link whose radio looks
        healthy (a weak radio is "wifi"; a busy CPU delays the probes too, so it is discounted)."""
        if self._full_tunnel():
            return 0.0
        return self._gw_s * (1.0 - self._wifi_signal()) * (1.0 - self.device()) * 0.8

    def network(self) -> float:
        """The ISP: the fault starts beyond a gateway that is itself clean."""
        beyond, _ = self._beyond
        return 0.0 if self._full_tunnel() else beyond * (1.0 - 0.6 * self._gw_s)

    def dns(self) -> float:
        """Lookups failing or slow while the whole path is clean: a lossy link anywhere, the
        desk -> gateway link included, loses DNS packets too and makes every lookup slow (one lost
        query is the resolver's 5 s retry), so slowness alone also yields to the voice stream's loss."""
        fail, _ = self._apps_bad(classes=("dns",), slow=False)
        slow = max(
            (
                piecewise(a.dns_p95_ms or 0.0, ((300.0, 0.0), (1000.0, 0.6), (2500.0, 1.0)))
                for a in self.f.apps.values()
            ),
            default=0.0,
        )
        path = max(self._gw_s, self._beyond[0])
        return max(fail * (1.0 - 0.8 * path), slow * (1.0 - 0.8 * max(path, self._voice_l)))

    def app(self) -> float:
        bad, _ = self._apps_bad(exclude=("dns",))
        return bad * self._path_clean() * (1.0 - self.dns())

    # -- sentences --

    def sentence(self, domain: str) -> str:
        f, g = self.f, self.gw
        gw_txt = (
            (
                f"the gateway ({g.address}) p95 {_ms(g.p95_ms)} with {g.loss_pct:.0f}% loss"
                + (f" (normally {_ms(gb.p95_ms)})" if (gb := self._base_path("gateway")) else "")
            )
            if g
            else "no gateway RTT"
        )
        if domain == "device":
            d = f.device
            assert d is not None  # the device place is named from its readings
            return (
                f"CPU above 90% in {100 * d.cpu_high_share:.0f}% of readings (max {d.cpu_max_pct:.0f}%), memory max "
                f"{d.mem_max_pct:.0f}%" + (f"; busiest: {d.busiest}" if d.busiest else "")
            )
        if domain == "own_traffic":
            what, share, rate, ref = self._own_direction()
            rise, p = self._rtt_rise()
            own = (
                f"this PC's own {what} at {_rate(rate, ref)} (the most its link carried) "
                f"in {100 * share:.0f}% of readings"
            )
            if rise < max(self._gw_s, self._beyond[0]):  # the line drops rather than queues
                return f"{own}, while {self._beyond[1] if self._beyond[0] >= self._gw_s else gw_txt}"
            b = self._base_path(p.target) if p is not None else None
            addr = f" {p.address}" if p is not None and p.address else ""
            at = (
                (
                    f"the gateway ({p.address})"
                    if p is self.gw
                    else f"hop {p.hop} ({p.target}{addr})"
                    if p.hop
                    else f"{p.target} ({p.address})"
                )
                if p is not None
                else "the path"
            )
            usual = f" (normally {_ms(b.p95_ms)})" if b is not None and b.p95_ms is not None else ""
            return f"{own}, while {at} p95 rose to {_ms(p.p95_ms if p else None)}{usual}"
        if domain == "wifi":
            w = f.wifi
            assert w is not None  # the Wi-Fi place is named from its readings
            bits = []
            if w.rssi_p10_dbm is not None:
                bits.append(f"RSSI {w.rssi_p10_dbm:.0f} dBm at its lowest 10%")
            if w.snr_p10_db is not None:
                bits.append(f"SNR {w.snr_p10_db:.0f} dB")
            roams = f.event_starts("wifi_roam")
            if roams:
                bits.append(f"{roams} roam(s)")
            if w.connected < w.readings:
                bits.append(f"disconnected in {w.readings - w.connected} of {w.readings} readings")
            return f"weak Wi-Fi: {', '.join(bits)}, while {gw_txt}"
        if domain == "vpn":
            d = f.device
            assert d is not None  # the VPN place is named from the device's readings
            tunnel = ",".join(d.vpn) or "a tunnel"
            _, app_txt = self._apps_bad(classes=("timeout", "tls", "refused", "error"))
            return f"all traffic goes through the VPN ({tunnel}): its first hop is the tunnel, {gw_txt}" + (
                f"; {app_txt}" if app_txt else ""
            )
        if domain == "network":
            s, text = self._beyond_gateway(named=True) if isp_name.current() is not None else self._beyond
            _, app_txt = self._apps_bad()
            return (text or "loss or delay beyond the gateway") + (f"; {app_txt}" if app_txt and s >= 0.99 else "")
        if domain == "lan":
            link = "over Wi-Fi whose signal looks healthy" if f.wifi is not None and f.wifi.readings else "on the wire"
            return f"between this desk and its router ({link}): {gw_txt}"
        if domain == "dns":
            _, text = self._apps_bad(classes=("dns",), slow=False)
            dns = max((a.dns_p95_ms or 0.0 for a in f.apps.values()), default=0.0)
            v = f.voice
            lossy = f", voice packets lost {v.loss_pct:.0f}%" if v is not None and self._voice_l >= 0.2 else ""
            clean = (
                "the path is clean"
                if self._path_clean() >= 0.8 and not lossy
                else f"the path suffers too ({gw_txt}{lossy})"
            )
            return f"DNS resolution failing or slow: {text or 'no DNS failures'}; DNS p95 {_ms(dns)}; {clean}"
        if domain == "app":
            _, text = self._apps_bad(exclude=("dns",))
            m = self.media
            path = f"{m.target} {m.loss_pct:.0f}% loss, p95 {_ms(m.p95_ms)}" if m else gw_txt
            return f"{text} while the path is clean ({path})"
        return "no evidence"
