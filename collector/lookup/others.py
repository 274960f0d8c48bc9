""" "Is it just me?": how many other desks of the person's site, ISP and platform were degraded too.

Computed once per view from the rollups of the person's degraded minutes; only counts and the
person's own group names leave it, and ``visible_sites`` keeps scoped keys to their sites. Design
notes: docs/collector-internals.md.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from ..score import isp_name
from ..score.kept import KeptScores
from ..score.timeline import AVAILABILITY_LOOKBACK_MIN, ScoreConfig, timeline_of
from ..score.triage import PLATFORMS, platform_name
from ..store import AgentRecord, Store
from ..store import rollup as ru

__all__ = ["FALLBACK_MINUTES", "others_affected", "others_line", "person_minutes"]

FALLBACK_MINUTES = 60  # nothing degraded: compare the last hour of the window (a day of every desk is the fleet's work)
_KNOWN = {name for _, name in PLATFORMS}
NAMING_WAIT_S = 0.5  # the most a view waits for other desks' ISP names together; unnamed, addresses compare


def person_minutes(score: Mapping, since_us: int, until_us: int) -> tuple[str, list[int]]:
    """("degraded", the person's degraded minutes) or ("window", the minutes compared instead)."""
    bad = [m["minute_us"] for m in score.get("timeline") or () if m.get("label") in ("fair", "poor")]
    if bad:
        return "degraded", sorted(bad)
    hi = ru.minute_of(until_us - 1) + ru.MINUTE_US
    lo = max(ru.minute_of(since_us), hi - FALLBACK_MINUTES * ru.MINUTE_US)
    return "window", list(range(lo, hi, ru.MINUTE_US))


def _isp_addresses(rollups, role: str = "isp") -> set[str]:
    return {a for r in rollups if r.kind == "rtt" and r.target == role for a in (r.data.get("addr") or ())}


class _Isp:
    """A desk's ISP: its name when the process names ISP hops (score/isp_name.py, as triage does:
    the ISP hop, else the first public hop), and its ISP hop addresses. Two desks share an ISP when
    the names match, or, unnamed, when an ISP hop address does."""

    def __init__(self, rollups):
        self.addresses = _isp_addresses(rollups)
        namer = isp_name.current()
        self.name = None
        if namer is not None and self.addresses:
            self.name = namer.isp([*sorted(self.addresses), *sorted(_isp_addresses(rollups, "public"))])

    def same(self, other: _Isp) -> bool:
        if self.name and other.name:
            return self.name == other.name
        return bool(self.addresses & other.addresses)


def _platforms(rollups) -> set[str]:
    return {platform_name(r.target) for r in rollups if r.kind == "http"}


def _platform_of(verdict: Mapping | None, mine: set[str]) -> str | None:
    """The platform of the verdict when it names one, else the person's (a known one first)."""
    named = (verdict or {}).get("platform")
    if named:
        return str(named)
    known = sorted(p for p in mine if p in _KNOWN)
    return known[0] if known else min(mine, default=None)


def _spans(minutes: list[int]) -> list[tuple[int, int]]:
    """Sorted minutes as [first, end) spans, joined where the gap is within an app look-back (the
    later minutes' look-back reads the earlier span's checks anyway)."""
    out: list[list[int]] = []
    for m in minutes:
        if out and m - out[-1][1] < AVAILABILITY_LOOKBACK_MIN * ru.MINUTE_US:
            out[-1][1] = m + ru.MINUTE_US
        else:
            out.append([m, m + ru.MINUTE_US])
    return [(a, b) for a, b in out]


def others_affected(
    store: Store,
    me: AgentRecord,
    score: Mapping,
    since_us: int,
    until_us: int,
    *,
    visible_sites: Collection[str] | None = None,
    cfg: ScoreConfig | None = None,
) -> dict:
    """The counts of the person's site, ISP and platform (each None when the person has none)."""
    basis, minutes = person_minutes(score, since_us, until_us)
    wanted = set(minutes)
    spans = _spans(minutes)
    back = (AVAILABILITY_LOOKBACK_MIN - 1) * ru.MINUTE_US
    # Per span, every desk's rollups with the app checks of the look-back before it (scoring needs them).
    read: list[dict[int, list[ru.Rollup]]] = []
    for a, b in spans:
        per: dict[int, list[ru.Rollup]] = {}
        for r in store.rollups(a - back, a, kinds=("http",)) + store.rollups(a, b):
            per.setdefault(r.agent, []).append(r)
        read.append(per)
    seen: dict[int, list[ru.Rollup]] = {}  # each desk's rollups of the wanted minutes: who it is
    for per in read:
        for key, rs in per.items():
            seen.setdefault(key, []).extend(r for r in rs if r.minute_us in wanted)
    mine = seen.get(me.key, [])
    site = me.info.site or None
    isp = _Isp(mine)
    platform = _platform_of(score.get("verdict"), _platforms(mine))
    members: dict[int, tuple[bool, bool, bool]] = {}
    with isp_name.wait_budget(NAMING_WAIT_S):
        for rec in store.all_agents():
            theirs = seen.get(rec.key)
            if rec.key == me.key or not theirs:
                continue
            if visible_sites is not None and rec.info.site not in visible_sites:
                continue
            flags = (
                site is not None and rec.info.site == site,
                bool(isp.addresses) and isp.same(_Isp(theirs)),
                platform is not None and platform in _platforms(theirs),
            )
            if any(flags):
                members[rec.key] = flags
    counts = {"site": [0, 0], "isp": [0, 0], "platform": [0, 0]}  # affected, of
    hits: set[int] = set()
    for (a, b), per in zip(spans, read, strict=True):
        kept = KeptScores(store, a, b, None, cfg) if members.keys() & per.keys() else None
        for key in members.keys() & per.keys() - hits:
            tl = timeline_of(key, per[key], a, b, cfg, kept)
            if any(m.degraded for m in tl.minutes if m.minute_us in wanted):
                hits.add(key)
    for key, flags in members.items():
        hit = key in hits
        for name, inside in zip(("site", "isp", "platform"), flags, strict=True):
            if inside:
                counts[name][1] += 1
                counts[name][0] += hit
    out: dict = {
        "basis": basis,
        "since_us": spans[0][0],
        "until_us": spans[-1][1],
        "minutes": len(minutes),
        "site": None,
        "isp": None,
        "platform": None,
    }
    if site:
        out["site"] = {"name": site, "affected": counts["site"][0], "of": counts["site"][1]}
    if isp.addresses:
        address = sorted(isp.addresses)[0]
        out["isp"] = {
            "name": isp.name or address,
            "address": address,
            "affected": counts["isp"][0],
            "of": counts["isp"][1],
        }
    if platform:
        out["platform"] = {"name": platform, "affected": counts["platform"][0], "of": counts["platform"][1]}
    out["text"] = others_line(out)  # the words every view shows (page, ticket, CLI)
    return out


def others_line(o: Mapping | None) -> str | None:
    """'4 of 12 desks in Lisbon, 1 of 3 on the same ISP, 9 of 40 on Genesys Cloud' (None: no group)."""
    if not o:
        return None
    parts = []
    for key, where in (("site", "desks in {}"), ("isp", "on the same ISP ({})"), ("platform", "on {}")):
        g = o.get(key)
        if not g:
            continue
        place = where.format(g["name"])
        parts.append(
            f"{g['affected']} of {g['of']} {place}"
            if g["of"]
            else f"no other desk {place.removeprefix('desks ')} reporting"
        )
    return ", ".join(parts) or None
