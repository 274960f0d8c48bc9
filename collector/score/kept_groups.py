"""The fleet's "is it just me?" facts of one minute, kept so a view unions a few sets instead of scoring other desks:
who reported, who was degraded, who is in which site, ISP (name, hop address, unnamed) and platform, as agent-key sets.
Design notes: docs/collector-internals.md, "collector/lookup/others.py".
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping

from ..store import rollup as ru
from . import isp_name
from .kept import KeptScores, code_digest
from .timeline import AVAILABILITY_LOOKBACK_MIN, ScoreConfig, minute_scores
from .triage import platform_name

__all__ = [
    "ADDRESS",
    "DEGRADED",
    "NAME",
    "PLATFORM",
    "REPORTED",
    "SITE",
    "UNNAMED",
    "Groups",
    "base_digest",
    "build_minutes",
    "isp_of",
    "pack",
    "unpack",
]

# Group kinds; a group is (kind, name) -> the keys of its desks in the minute, as a bitmap (an int).
REPORTED, DEGRADED, UNNAMED = "r", "d", "u"  # name "": the whole fleet
SITE, NAME, ADDRESS, PLATFORM = "s", "n", "a", "p"  # name: the site, ISP name, ISP hop address, platform

Groups = dict[tuple[str, str], int]

NAMING_WAIT_S = 0.5  # the most one build waits for ISP names together; unnamed, addresses compare
_BACK_US = (AVAILABILITY_LOOKBACK_MIN - 1) * ru.MINUTE_US


def base_digest(cfg: ScoreConfig | None = None) -> bytes:
    """What every kept row was computed with (this scoring code and the score config)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(code_digest())
    h.update(repr(cfg or ScoreConfig()).encode())
    return h.digest()


def pack(bits: int) -> bytes:
    """A key set as stored: a bitmap, or the keys themselves when that is smaller (a small group)."""
    dense = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    n = bits.bit_count()
    if 4 * n >= len(dense):
        return b"B" + dense
    keys, k = [], 0
    while bits:
        low = bits & -bits
        k = low.bit_length() - 1
        keys.append(k)
        bits ^= low
    return b"L" + struct.pack(f"<{n}I", *keys)


def unpack(data: bytes) -> int:
    if data[:1] == b"B":
        return int.from_bytes(data[1:], "little")
    bits = 0
    for (k,) in struct.iter_unpack("<I", data[1:]):
        bits |= 1 << k
    return bits


def isp_of(rollups: Iterable[ru.Rollup], namer=None) -> tuple[set[str], str | None]:
    """(ISP hop addresses, ISP name) of a desk's rollups: the name as ``lookup.others`` gives it
    (the ISP hop, else the first public hop), None unnamed or without a namer."""
    rs = [r for r in rollups if r.kind == "rtt" and r.target in ("isp", "public")]
    isp = {a for r in rs if r.target == "isp" for a in (r.data.get("addr") or ())}
    name = None
    if namer is not None and isp:
        public = {a for r in rs if r.target == "public" for a in (r.data.get("addr") or ())}
        name = namer.isp([*sorted(isp), *sorted(public)])
    return isp, name


def build_minutes(
    store,
    lo: int,
    hi: int,
    cfg: ScoreConfig | None = None,
    known: Mapping[int, bytes] | None = None,
    fill: bool = True,
) -> dict[int, tuple[bytes, Groups | None]]:
    """minute -> (digest of its inputs, its groups) for every minute in [lo, hi).

    The digest covers every desk's rollups of the minute and the app checks of its look-back,
    its site and its ISP name: a minute whose digest equals ``known[minute]`` is not scored
    again (groups None), nor one not in ``known`` unless ``fill``. Minute scores come from the
    kept ones where their inputs are unchanged.
    """
    lo = ru.minute_of(lo)
    minutes = list(range(lo, hi, ru.MINUTE_US))
    if not minutes:
        return {}
    base = base_digest(cfg)
    cur = store.rollups(lo, hi)
    sites = {a.key: a.info.site for a in store.all_agents()} if cur else {}
    by_agent: dict[int, list[ru.Rollup]] = {}
    history = store.rollups(lo - _BACK_US, lo, kinds=("http",)) if cur else []
    for r in history + cur:
        by_agent.setdefault(r.agent, []).append(r)
    namer = isp_name.current()
    # agent -> minute -> (rollups of the minute, ISP hop addresses, ISP name)
    facts: dict[int, dict[int, tuple[list[ru.Rollup], set[str], str | None]]] = {}
    digests = {m: hashlib.blake2b(base, digest_size=16) for m in minutes}
    with isp_name.wait_budget(NAMING_WAIT_S):
        for agent in sorted(by_agent):
            rs = by_agent[agent]
            apps = [r for r in rs if r.kind == "http"]
            per: dict[int, list[ru.Rollup]] = {}
            for r in rs:
                if r.minute_us >= lo:
                    per.setdefault(r.minute_us, []).append(r)
            mine = facts[agent] = {}
            for m, mrs in per.items():
                addresses, name = isp_of(mrs, namer)
                own = ru.own_digest(mrs + [r for r in apps if m - _BACK_US <= r.minute_us < m])
                mine[m] = (mrs, addresses, name)
                digests[m].update(f"{agent}\0{sites.get(agent) or ''}\0{name or ''}\0".encode())
                digests[m].update(own or b"?")
    out: dict[int, tuple[bytes, Groups | None]] = {}
    todo = []
    for m in minutes:
        d = digests[m].digest()
        if known is not None and (known.get(m) == d or (not fill and m not in known)):
            out[m] = (d, None)
        else:
            out[m] = (d, {(REPORTED, ""): 0})
            todo.append(m)
    if not todo:
        return out
    redo = set(todo)
    kept = KeptScores(store, todo[0], todo[-1] + ru.MINUTE_US, None, cfg)
    for agent, mine in facts.items():
        if not redo & mine.keys():
            continue
        rs = by_agent[agent]
        history = [r for r in rs if r.kind == "http" and r.minute_us < lo]
        scored = minute_scores([r for r in rs if r.minute_us >= lo], cfg, history, kept)
        degraded = {s.minute_us for s in scored if s.degraded}
        b = 1 << agent
        site = sites.get(agent)
        for m in redo & mine.keys():
            g = out[m][1]
            assert g is not None
            mrs, addresses, name = mine[m]
            keys: list[tuple[str, str]] = [(REPORTED, "")]
            if m in degraded:
                keys.append((DEGRADED, ""))
            if site:
                keys.append((SITE, site))
            keys += [(ADDRESS, a) for a in addresses]
            if addresses:
                keys.append((NAME, name) if name else (UNNAMED, ""))
            keys += [(PLATFORM, p) for p in {platform_name(r.target) for r in mrs if r.kind == "http"}]
            for k in keys:
                g[k] = g.get(k, 0) | b
    return out
