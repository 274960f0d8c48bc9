"""The fleet right now: every agent seen in a window, scored and ranked, by site, by app, incidents.
From kept minute scores and facts, rollups decoded only where needed; ``LookupService.fleet`` caches it.
Design notes: docs/collector-internals.md, "collector/lookup/fleet.py".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from ..score import fleet_facts
from ..score.journeys import Journey
from ..score.kept import KeptScores
from ..score.timeline import AVAILABILITY_LOOKBACK_MIN, ScoreConfig, timeline_of
from ..score.triage import degraded_windows
from ..store import AgentRecord, Store
from ..store import rollup as ru
from ..store.capabilities import AllAgents, Incidents
from .chart import score_points
from .report import _merge_window, _sections_from_rollups, _view, score_section
from .stats import _q_ms
from .ticket import headline, incident_scope

__all__ = ["agent_brief", "every_agent", "fleet", "kept_views", "public_fleet"]

log = logging.getLogger("cxpulse.collector.lookup.fleet")

S = 1_000_000


def agent_brief(a: AgentRecord) -> dict:
    """An agent as a search result: who, which desk, which site, when first and last seen."""
    i = a.info
    return {
        "agent_id": i.agent_id,
        "user": i.os_user,
        "display_name": i.display_name,
        "host": i.host,
        "site": i.site,
        "os": i.os,
        "agent_version": i.agent_version,
        "first_seen_us": a.first_seen_us,
        "last_seen_us": a.last_seen_us,
    }


def every_agent(store: Store) -> list[AgentRecord]:
    """Every agent the store (or its site scope) holds, by ``all_agents`` or else an unbounded search."""
    return store.all_agents() if isinstance(store, AllAgents) else store.find_agents("", 100_000)


def _badness(a: dict, window_s: int) -> float:
    """Without a score: seconds inside events, weighted by severity, plus loss; only to rank."""
    ev = sum((e.get("severity") or 1) * min(window_s, e.get("duration_s") or window_s) for e in a.get("events") or [])
    loss = max((t.get("loss_pct") or 0 for t in a.get("targets") or []), default=0)
    failed = sum(x.get("failed") or 0 for x in a.get("apps") or [])
    return ev + 10 * loss + 5 * failed


def _median(xs: list[float]) -> float | None:
    xs = sorted(xs)
    return None if not xs else xs[(len(xs) - 1) // 2]


def kept_views(
    store: Store,
    records: list[AgentRecord],
    since: int,
    until: int,
    journeys: list[Journey] | None = None,
    score_cfg: ScoreConfig | None = None,
) -> Iterator[tuple[AgentRecord, dict]]:
    """(record, view) per agent, the fleet row's fields as ``report.fleet_views`` has them: targets and
    apps merged from each minute's kept facts (decoding was ~60 % of the fleet); an agent with a
    degraded minute gets the whole view (triage merges its minutes), as ``fleet_views`` builds it."""
    first = ru.minute_of(since)
    kept = KeptScores(store, first, until, None, score_cfg, trust=True)  # before any rollup is read
    by_agent: dict[int, list[ru.Rollup]] = {}
    history_since = first - (AVAILABILITY_LOOKBACK_MIN - 1) * ru.MINUTE_US
    for r in store.rollups(history_since, first, kinds=("http",)) + store.rollups(first, until):
        by_agent.setdefault(r.agent, []).append(r)
    incidents = store.incidents(since, until)
    events_of = store.events_of([a.key for a in records], since, until)  # one query, not one per agent
    try:
        for a in records:
            rollups = by_agent.get(a.key, [])
            events = events_of.get(a.key, [])
            tl = timeline_of(a.key, rollups, first, until, score_cfg, kept)
            mine = [i for i in incidents if a.key in (i.agents or {})]
            if degraded_windows(tl.minutes):  # triage merges the good minutes; the sections as fleet_views
                good, window = _merge_window(tl, rollups, since, until)
                sections = _sections_from_rollups(
                    store, a.key, since, until, rollups, events, raw=False, merged_window=window
                )
            else:
                good, sections = None, None
            score = score_section(
                store, a.key, since, until, journeys, score_cfg, incidents=mine, tl=tl, good=good, kept=kept
            )
            if sections is None:
                sections = _sections_from_facts(a.key, rollups, first, until, kept)
            yield a, _view(a, sections, events, [], score, window=(since, until))
    finally:
        kept.flush()


def _sections_from_facts(agent: int, rollups: list[ru.Rollup], first: int, until: int, kept: KeptScores) -> dict:
    """The fleet's fields of the targets and apps sections (``stats.targets_from_rollups`` and
    ``apps_from_rollups``) from each window minute's facts: kept, or else of its rollups."""
    minutes: dict[int, list[ru.Rollup]] = {}
    for r in rollups:
        if first <= r.minute_us < until:
            minutes.setdefault(r.minute_us, []).append(r)
    facts = []
    for m, rs in minutes.items():
        f = kept.facts.get((agent, m))
        facts.append(fleet_facts.of_minute(rs) if f is None else fleet_facts.unpacked(f))
    merged = fleet_facts.merge_window(facts)
    targets = [
        {"target": t, "loss_pct": round(100.0 * lost / n, 2), "rtt_p95_ms": _q_ms(sk, 0.95)}
        for (kind, t), (n, lost, sk) in merged.items()
        if kind == "rtt" and n
    ]
    apps = [
        {"app": t, "checks": n, "failed": failed, "total_median_ms": _q_ms(sk, 0.5)}
        for (kind, t), (n, failed, sk) in sorted(merged.items())
        if kind == "http" and n
    ]
    return {"targets": targets, "apps": apps, "voice": None, "device": None, "wifi": None}


ViewSource = Callable[[Store, list[AgentRecord], int, int], Iterator[tuple[AgentRecord, dict]]]


def fleet(store: Store, window_s: int, now: int, views: ViewSource = kept_views) -> dict:
    """The snapshot over [now - window_s, now); keys starting with ``_`` are internal (``public_fleet``).
    ``views``: where each agent's view comes from (``report.fleet_views`` builds the whole view)."""
    since = now - window_s * S
    records = every_agent(store)
    records.sort(key=lambda r: -r.last_seen_us)
    by_key = {r.key: r.info.agent_id for r in records}
    active = [r for r in records if r.last_seen_us >= since]
    rows: list[dict] = []
    minutes: dict[str, list[dict]] = {}
    incidents: dict[str, dict] = {}
    app_rows: dict[str, list[dict]] = {}
    for r, a in views(store, active, since, now):  # kept facts of every agent, rollups in one read
        h = headline(a)
        minutes[r.info.agent_id] = score_points(a)
        for inc in h["incidents"]:
            incidents.setdefault(str(inc.get("id")), inc)
        for app in a.get("apps") or []:
            app_rows.setdefault(app["app"], []).append(dict(app, agent_id=r.info.agent_id, site=r.info.site))
        rows.append(
            {
                **agent_brief(r),
                "score": h["score"],
                "label": h["label"] or "n/a",
                "limiting": h["limiting"],
                "fault_domain": h["domain"],
                "fault_label": h.get("domain_label"),
                "sentence": h["sentence"],
                "next_step": h["next_step"],
                "events": len(a.get("events") or []),
                "loss_pct_max": max((t.get("loss_pct") or 0 for t in a.get("targets") or []), default=None),
                "rtt_p95_ms_max": max(
                    (t["rtt_p95_ms"] for t in a.get("targets") or [] if t.get("rtt_p95_ms") is not None), default=None
                ),
                "_badness": _badness(a, window_s),
            }
        )
    if isinstance(store, Incidents):  # the store keeps incidents across agents (issue 4)
        try:
            for inc in store.incidents(since, now):
                incidents[str(inc.id)] = _incident_dict(inc, by_key)
        except Exception as exc:
            log.warning("reading incidents from the store failed: %s", exc)
    rows.sort(key=lambda x: (x["score"] is None, x["score"] if x["score"] is not None else 0, -x["_badness"]))
    sites: dict[str, list[dict]] = {}
    for x in rows:
        sites.setdefault(x["site"] or "(no site)", []).append(x)
    site_rows = []
    for site, xs in sites.items():
        scores = [x["score"] for x in xs if x["score"] is not None]
        labels = {lab: sum(1 for x in xs if x["label"] == lab) for lab in ("good", "fair", "poor", "n/a")}
        site_rows.append(
            {
                "site": site,
                "agents": len(xs),
                "labels": labels,
                "score_median": _median(scores),
                "score_min": min(scores) if scores else None,
                "worst_agent": xs[0]["agent_id"],
                "events": sum(x["events"] for x in xs),
            }
        )
    site_rows.sort(key=lambda s: (s["score_median"] is None, s["score_median"] or 0, -s["events"]))
    apps = []
    for name, xs in sorted(app_rows.items()):
        checks = sum(x["checks"] for x in xs)
        failed = sum(x["failed"] for x in xs)
        totals = [x["total_median_ms"] for x in xs if x.get("total_median_ms") is not None]
        apps.append(
            {
                "app": name,
                "agents": len(xs),
                "checks": checks,
                "availability_pct": round(100.0 * (checks - failed) / checks, 2) if checks else None,
                "total_median_ms": _median(totals),
                "agents_failing": sorted({x["agent_id"] for x in xs if x["failed"]}),
                "sites": sorted({x["site"] for x in xs if x["site"]}),
            }
        )
    apps.sort(
        key=lambda a: (
            a["availability_pct"] if a["availability_pct"] is not None else 101,
            -(a["total_median_ms"] or 0),
        )
    )
    inc_list = sorted(incidents.values(), key=lambda i: -(i.get("start_us") or 0))
    for inc in inc_list:
        inc["scope_text"] = incident_scope(inc)
    return {
        "generated_us": now,
        "window": {"since_us": since, "until_us": now, "seconds": window_s},
        "agents_total": len(records),
        "agents_active": len(rows),
        "score_available": any(x["score"] is not None for x in rows),
        "worst": rows,
        "sites": site_rows,
        "apps": apps,
        "incidents": {
            "open": [i for i in inc_list if i.get("end_us") is None],
            "recent": [i for i in inc_list if i.get("end_us") is not None],
        },
        "silent": [agent_brief(r) for r in records if since - 86_400 * S <= r.last_seen_us < since][:50],
        "_minutes": minutes,
    }


def _incident_dict(inc, agent_ids: dict[int, str]) -> dict:
    """An IncidentRecord as JSON: the affected agents by id, not by the store's internal key."""
    agents = sorted(agent_ids.get(k, str(k)) for k in (inc.agents or {}))
    return {
        "id": inc.id,
        "kind": inc.kind,
        "scope": inc.scope,
        "start_us": inc.start_us,
        "last_us": inc.last_us,
        "end_us": inc.end_us,
        "detected_us": inc.detected_us,
        "agents": len(agents),
        "agent_ids": agents[:200],
        "evidence": inc.evidence,
    }


def public_fleet(snap: dict, limit: int) -> dict:
    """The snapshot as the API shows it: internal keys dropped, the worst list cut to ``limit``."""
    out = {k: v for k, v in snap.items() if not k.startswith("_")}
    out["worst"] = [{k: v for k, v in x.items() if not k.startswith("_")} for x in snap["worst"][:limit]]
    return out
