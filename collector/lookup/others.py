""" "Is it just me?": how many other desks of the person's site, ISP and platform were degraded too.
Counted from the kept group rows (``score.kept_groups``); only counts leave it; ``visible_sites`` bounds scoped keys.
Design notes: docs/collector-internals.md, "collector/lookup/others.py".
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Collection, Mapping

from ..score import isp_name
from ..score import kept_groups as kg
from ..score.timeline import AVAILABILITY_LOOKBACK_MIN, ScoreConfig
from ..score.triage import PLATFORMS, platform_name
from ..store import AgentRecord, Store
from ..store import rollup as ru
from ..store.kept_groups import table_for
from .scope import ScopedStore

__all__ = ["FALLBACK_MINUTES", "others_affected", "others_line", "person_minutes"]

FALLBACK_MINUTES = 60  # nothing degraded: compare the last hour of the window (a day of every desk is the fleet's work)
_KNOWN = {name for _, name in PLATFORMS}
SETTLE_US = 60 * 1_000_000  # a minute is compared from kept rows once this long past its end (agents send every 30 s)

log = logging.getLogger("cxpulse.collector.lookup")


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
    """The person's ISP: its name when the process names ISP hops (score/isp_name.py, as triage
    does: the ISP hop, else the first public hop), and its ISP hop addresses. Another desk shares
    it when both are named and the names match, else when an ISP hop address does."""

    def __init__(self, rollups):
        self.addresses = _isp_addresses(rollups)
        namer = isp_name.current()
        self.name = None
        if namer is not None and self.addresses:
            self.name = namer.isp([*sorted(self.addresses), *sorted(_isp_addresses(rollups, "public"))])


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
    now_us: int | None = None,
    rollups: list[ru.Rollup] | None = None,
) -> dict:
    """The counts of the person's site, ISP and platform (each None when the person has none).

    Read from the kept group rows of the minutes (score/kept_groups.py); a minute without one is
    computed here (and kept once settled); unsettled minutes wait while settled ones are compared.
    ``rollups``: the person's rollups of the window when the caller has read them (a long view:
    a week's degraded minutes can span all of it, and reading them again was ~10 % of the view)."""
    basis, minutes = person_minutes(score, since_us, until_us)
    wanted = set(minutes)
    if rollups is None:
        rollups = store.rollups(minutes[0], minutes[-1] + ru.MINUTE_US, me.key, kinds=("rtt", "http"))
    mine = [r for r in rollups if r.minute_us in wanted and r.kind in ("rtt", "http")]
    site = me.info.site or None
    isp = _Isp(mine)
    platform = _platform_of(score.get("verdict"), _platforms(mine))
    allowed = set(visible_sites) if visible_sites is not None else None
    scoped = isinstance(store, ScopedStore)
    if isinstance(store, ScopedStore):
        allowed = set(store.sites) if allowed is None else allowed & store.sites
    groups: list[tuple[str, str]] = [(kg.REPORTED, ""), (kg.DEGRADED, "")]
    if site:
        groups.append((kg.SITE, site))
    groups += [(kg.ADDRESS, a) for a in sorted(isp.addresses)]
    if isp.name:
        groups += [(kg.NAME, isp.name), (kg.UNNAMED, "")]
    if platform:
        groups.append((kg.PLATFORM, platform))
    groups += [(kg.SITE, s) for s in sorted(allowed or ()) if s]
    got = _kept_groups(store, minutes, groups, cfg, now_us, write=not scoped)
    compared = sorted(got)

    def union(group: tuple[str, str]) -> int:
        bits = 0
        for m in compared:
            bits |= got[m].get(group, 0)
        return bits

    reported = union((kg.REPORTED, "")) & ~(1 << me.key)
    if allowed is not None:
        visible = 0
        for s in allowed:
            if s:
                visible |= union((kg.SITE, s))
        reported &= visible
    degraded = union((kg.DEGRADED, ""))
    near = 0
    for a in isp.addresses:
        near |= union((kg.ADDRESS, a))
    if isp.name:  # named: the same name, or an unnamed desk sharing an ISP hop address
        near = union((kg.NAME, isp.name)) | (union((kg.UNNAMED, "")) & near)
    members = {
        "site": union((kg.SITE, site)) & reported if site else 0,
        "isp": near & reported,
        "platform": union((kg.PLATFORM, platform)) & reported if platform else 0,
    }
    spans = _spans(compared or minutes)
    out: dict = {
        "basis": basis,
        "since_us": spans[0][0],
        "until_us": spans[-1][1],
        "minutes": len(compared),
        "site": None,
        "isp": None,
        "platform": None,
    }
    if len(compared) < len(minutes):  # the newest minutes have not settled yet
        out["as_of_us"] = compared[-1] + ru.MINUTE_US if compared else None
        out["left_out"] = len(minutes) - len(compared)
    if site:
        g = members["site"]
        out["site"] = {"name": site, "affected": (g & degraded).bit_count(), "of": g.bit_count()}
    if isp.addresses:
        address = sorted(isp.addresses)[0]
        g = members["isp"]
        out["isp"] = {
            "name": isp.name or address,
            "address": address,
            "affected": (g & degraded).bit_count(),
            "of": g.bit_count(),
        }
    if platform:
        g = members["platform"]
        out["platform"] = {"name": platform, "affected": (g & degraded).bit_count(), "of": g.bit_count()}
    out["text"] = others_line(out)  # the words every view shows (page, ticket, CLI)
    return out


def _kept_groups(
    store: Store,
    minutes: list[int],
    groups: list[tuple[str, str]],
    cfg: ScoreConfig | None,
    now_us: int | None,
    write: bool,
) -> dict[int, dict[tuple[str, str], int]]:
    """minute -> group -> keys (a bitmap) of the compared minutes: the kept rows (one query), the
    settled minutes without one computed and kept, the unsettled ones computed only when no other
    minute is there to compare."""
    base = kg.base_digest(cfg)
    table = table_for(store._store if isinstance(store, ScopedStore) else store)
    present: set[int] = set()
    rows: dict[tuple[str, str], dict[int, bytes]] = {}
    if table is not None:
        try:
            present, rows = table.read(minutes[0], minutes[-1] + ru.MINUTE_US, base, groups)
        except Exception as exc:  # a broken side table: compute, as without one
            log.warning("could not read kept groups: %s", exc)
    out = {m: {g: kg.unpack(rows[g][m]) for g in groups if m in rows.get(g, {})} for m in minutes if m in present}
    now = now_us if now_us is not None else time.time_ns() // 1000
    settled = ru.minute_of(now - SETTLE_US)  # minutes before it have settled (jobs/kept_groups.py)
    missing = [m for m in minutes if m not in present]
    todo = [m for m in missing if m < settled]
    if not todo and not out:
        todo = missing  # nothing settled to compare: the newest minutes, computed and not kept
    keep: list = []
    for a, b in _runs(todo):
        for m, (digest, g) in kg.build_minutes(store, a, b, cfg).items():
            assert g is not None
            out[m] = g
            if m < settled:
                keep.append((m, base, digest, {k: kg.pack(v) for k, v in g.items()}))
    if keep and write and table is not None:
        try:
            table.write(keep)
        except Exception as exc:  # a read-only or busy store: the answer is right either way
            log.warning("could not keep %d minute(s) of groups: %s", len(keep), exc)
    return out


def _runs(minutes: list[int]) -> list[tuple[int, int]]:
    """Sorted minutes as [first, end) runs of consecutive minutes."""
    out: list[list[int]] = []
    for m in minutes:
        if out and m == out[-1][1]:
            out[-1][1] = m + ru.MINUTE_US
        else:
            out.append([m, m + ru.MINUTE_US])
    return [(a, b) for a, b in out]


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
    if parts and o.get("left_out") and o.get("as_of_us"):  # the newest minutes not settled yet
        parts[-1] += f" (as of {dt.datetime.fromtimestamp(o['as_of_us'] / 1e6, tz=dt.UTC):%H:%M} UTC)"
    return ", ".join(parts) or None
