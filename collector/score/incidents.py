"""Incidents across agents: a platform (an app) or a site degrading for many agents in the same minutes.
Opened once across collectors, grown per minute and agent, closed after a quiet lookback.
Design notes: docs/collector-internals.md, "collector/score/incidents.py"; rules: docs/scoring.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..store import IncidentRecord
from ..store import rollup as ru
from .timeline import BEYOND_GATEWAY, GATEWAY, Figures, figures_of

__all__ = ["IncidentConfig", "Observation", "detect_incidents", "observe", "reconcile"]

log = logging.getLogger("cxpulse.collector.incidents")
MINUTE_US = ru.MINUTE_US


@dataclass(frozen=True)
class IncidentConfig:
    lookback_minutes: int = 5
    min_agents: int = 3
    min_share: float = 0.5
    min_groups: int = 2
    site_min_agents: int = 2
    site_min_share: float = 0.6
    elsewhere_max_share: float = 0.3  # a site incident needs most other agents to be fine
    app_fail_share: float = 0.5  # an app is bad for an agent-minute when half its checks fail ...
    app_slow_ms: float = 2000.0  # ... or half of them take longer than this
    app_min_bad: int = 2  # ... and at least this many checks of the minute are bad (one is a blip)
    path_loss_pct: float = 5.0  # an agent's own path is clean below this loss ...
    path_p95_ms: float = 250.0  # ... and this p95 RTT to the media edge / public hop
    site_loss_pct: float = 20.0  # a site's upstream is bad from this loss beyond the gateway
    min_rtt_samples: int = 10  # loss figures need this many samples in the minute


@dataclass
class Observation:
    """One qualifying minute: what, where, which agents (key -> minute), and the figures behind it."""

    kind: str
    scope: str
    minute_us: int
    agents: set[int] = field(default_factory=set)
    detail: str = ""


@dataclass(frozen=True)
class _AgentMinute:
    agent: int
    group: str  # site and upstream, for "different sites or ISPs"
    site: str
    apps_checked: frozenset[str]
    apps_bad: dict[str, str]  # app -> what was wrong
    path_clean: bool
    upstream_bad: str | None  # why the path beyond the desk is bad, or None


def _classify(agent: int, site: str, f: Figures, cfg: IncidentConfig) -> _AgentMinute:
    gw = f.paths.get(GATEWAY)
    beyond = [p for n, p in f.paths.items() if n != GATEWAY]
    upstream = next((p.address for n in BEYOND_GATEWAY if (p := f.paths.get(n)) is not None and p.address), "")
    group = f"{site}|{upstream}" if site else f"|{upstream}"
    counted = [p for p in [gw, *beyond] if p is not None and p.samples >= cfg.min_rtt_samples]
    worst_loss = max((p.loss_pct for p in counted), default=0.0)
    far = [p for p in beyond if p.p95_ms is not None and p.samples >= cfg.min_rtt_samples]
    worst_p95 = max((p.p95_ms for p in far if p.p95_ms is not None), default=0.0)
    path_clean = worst_loss < cfg.path_loss_pct and worst_p95 < cfg.path_p95_ms
    if f.voice is not None and f.voice.runs and f.voice.failed == f.voice.runs:
        path_clean = False
    apps_bad: dict[str, str] = {}
    for a in f.apps.values():
        slow = sum(1 for d in a.durations_ms if d > cfg.app_slow_ms)
        # A desk counts only with several bad checks in the minute: one refused check on every
        # desk at once (an app server starting) is a blip, not a platform incident (issue 17).
        bad = a.failed + slow
        if bad < cfg.app_min_bad or bad < cfg.app_fail_share * a.checks:
            continue
        if a.failed >= slow:
            apps_bad[a.app] = ", ".join(f"{c} x{n}" for c, n in sorted(a.errors.items()))
        else:
            apps_bad[a.app] = f"{slow} slower than {cfg.app_slow_ms / 1000:g} s"
    upstream_bad = None
    g_loss = gw.loss_pct if gw is not None and gw.samples >= cfg.min_rtt_samples else 0.0
    for p in sorted((p for p in beyond if p.samples >= cfg.min_rtt_samples), key=lambda p: (p.hop or 99, p.target)):
        if p.loss_pct - g_loss >= cfg.site_loss_pct:
            upstream_bad = f"loss {p.loss_pct:.0f}% at {p.target} {p.address} (gateway {g_loss:.0f}%)"
            break
    if (
        upstream_bad is None
        and gw is not None
        and gw.samples >= cfg.min_rtt_samples
        and gw.loss_pct >= cfg.site_loss_pct
    ):
        upstream_bad = f"loss {gw.loss_pct:.0f}% at the gateway {gw.address}"
    return _AgentMinute(agent, group, site, frozenset(f.apps), apps_bad, path_clean, upstream_bad)


def observe(
    rollups: Iterable[ru.Rollup], sites: dict[int, str], cfg: IncidentConfig | None = None
) -> list[Observation]:
    """The qualifying minutes in these rollups (all agents), platform and site."""
    cfg = cfg or IncidentConfig()
    cells: dict[tuple[int, int], list[ru.Rollup]] = {}
    for r in rollups:
        if r.kind in ("rtt", "http", "voice"):
            cells.setdefault((r.minute_us, r.agent), []).append(r)
    by_minute: dict[int, list[_AgentMinute]] = {}
    for (m, agent), rs in sorted(cells.items()):
        by_minute.setdefault(m, []).append(
            _classify(agent, sites.get(agent, ""), figures_of(rs, m, m + MINUTE_US), cfg)
        )
    out: list[Observation] = []
    for m, ams in sorted(by_minute.items()):
        out += _platform(m, ams, cfg)
        out += _sites(m, ams, cfg)
    return out


def _platform(m: int, ams: list[_AgentMinute], cfg: IncidentConfig) -> list[Observation]:
    out = []
    for app in sorted({a for am in ams for a in am.apps_checked}):
        checking = [am for am in ams if app in am.apps_checked and am.path_clean]
        bad = [am for am in checking if app in am.apps_bad]
        groups = {am.group for am in bad}
        if len(bad) >= cfg.min_agents and len(bad) >= cfg.min_share * len(checking) and len(groups) >= cfg.min_groups:
            sites = sorted({am.site or "?" for am in bad})
            what = Counter(am.apps_bad[app] for am in bad).most_common(1)[0][0]
            out.append(
                Observation(
                    "platform",
                    app,
                    m,
                    {am.agent for am in bad},
                    f"{app} failing for {len(bad)} of {len(checking)} agents checking it with a clean path, "
                    f"behind {len(groups)} sites/ISPs ({', '.join(sites)}); typical: {what}",
                )
            )
    return out


def _sites(m: int, ams: list[_AgentMinute], cfg: IncidentConfig) -> list[Observation]:
    out = []
    by_group: dict[str, list[_AgentMinute]] = {}
    for am in ams:
        if am.site:
            by_group.setdefault(am.group, []).append(am)
    for group, members in sorted(by_group.items()):
        bad = [am for am in members if am.upstream_bad]
        others = [am for am in ams if am.group != group]
        others_bad = sum(1 for am in others if am.upstream_bad)
        if (
            len(bad) >= cfg.site_min_agents
            and len(bad) >= cfg.site_min_share * len(members)
            and (not others or others_bad <= cfg.elsewhere_max_share * len(others))
        ):
            site = members[0].site
            out.append(
                Observation(
                    "site",
                    site,
                    m,
                    {am.agent for am in bad},
                    f"{site}: {len(bad)} of {len(members)} agents lose the path beyond their desks together "
                    f"({bad[0].upstream_bad}); elsewhere {others_bad} of {len(others)}",
                )
            )
    return out


def reconcile(
    open_now: list[IncidentRecord], obs: list[Observation], now_us: int, cfg: IncidentConfig | None = None
) -> list[IncidentRecord]:
    """Open, grow and close incidents from this run's observations; returns the records to write."""
    cfg = cfg or IncidentConfig()
    changed: dict[int, IncidentRecord] = {}
    by_key = {(i.kind, i.scope): i for i in open_now}
    for o in sorted(obs, key=lambda o: o.minute_us):
        key = (o.kind, o.scope)
        inc = by_key.get(key)
        end = o.minute_us + MINUTE_US
        if inc is None:
            inc = by_key[key] = IncidentRecord(None, o.kind, o.scope, o.minute_us, end, None, now_us)
        inc.start_us, inc.last_us = min(inc.start_us, o.minute_us), max(inc.last_us, end)
        for a in o.agents:
            first, last = inc.agents.get(a, (o.minute_us, end))
            inc.agents[a] = (min(first, o.minute_us), max(last, end))
        inc.evidence = f"{o.detail}; {_hhmm(inc.start_us)}-{_hhmm(inc.last_us)} UTC, {len(inc.agents)} agents"
        changed[id(inc)] = inc
    horizon = ru.minute_of(now_us) - cfg.lookback_minutes * MINUTE_US
    for inc in by_key.values():
        if inc.id is not None and inc.end_us is None and inc.last_us <= horizon:
            inc.end_us = inc.last_us
            changed[id(inc)] = inc
    return list(changed.values())


def _hhmm(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%H:%M")


def detect_incidents(store, now_us: int | None = None, cfg: IncidentConfig | None = None) -> list[IncidentRecord]:
    """One detection run over the last minutes of rollups; returns the incidents it opened, grew or closed."""
    cfg = cfg or IncidentConfig()
    now_us = now_us if now_us is not None else time.time_ns() // 1000
    since = ru.minute_of(now_us) - cfg.lookback_minutes * MINUTE_US
    sites = {a.key: a.info.site for a in store.all_agents()}
    obs = observe(store.rollups(since, ru.minute_of(now_us) + MINUTE_US, kinds=("rtt", "http", "voice")), sites, cfg)
    return store.update_incidents(lambda open_now: reconcile(open_now, obs, now_us, cfg))
