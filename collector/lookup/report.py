"""The lookup a helpdesk analyst reads: who, which window, and per target what the desk measured."""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager

from cxpulse.v1.payload import Event, PathSnapshot

from ..score.journeys import Journey, default_journeys, evaluate, journey_summary
from ..score.kept import KeptMerges, KeptScores, minute_facts
from ..score.timeline import (
    AVAILABILITY_LOOKBACK_MIN,
    ScoreConfig,
    Timeline,
    agent_timeline,
    app_history,
    merged,
    timeline_of,
)
from ..score.triage import degraded_windows, good_minutes, triage_timeline
from ..store import AgentRecord, RttRow, Store, UserChange, fold
from ..store import rollup as ru
from .event_groups import group_events, group_line
from .others import others_affected, others_line
from .stats import (
    LOSSY_MINUTES_MAX,
    TargetStats,
    app_stats,
    apps_from_rollups,
    device_from_rollup,
    device_stats,
    summarize,
    targets_from_rollups,
    timeline_cells,
    voice_from_rollup,
    voice_stats,
    wifi_from_rollup,
    wifi_stats,
)
from .ticket import headline, next_step, person, verdict
from .timefmt import fmt_time
from .words import SEVERITY_WORDS

# Windows longer than this are summarized from the per-minute rollups (a day of raw rows is
# 260k Python objects, seconds of work); shorter ones from the raw rows, exact to the sample.
RAW_WINDOW_MAX_S = 3600
TAIL_S = 600  # raw rows read at the end of a long window: the figures that need the last samples


class NoMatch(LookupError):
    """Nothing matched the query; the message says what was searched."""


def _fmt_time(us: int) -> str:
    return fmt_time(us, seconds=True)  # the text report is in UTC throughout, labelled


def build(
    store: Store,
    query: str,
    window_s: int = 3600,
    now_us: int | None = None,
    journeys: list[Journey] | None = None,
    score_cfg: ScoreConfig | None = None,
    visible_sites: Collection[str] | None = None,
) -> dict:
    """The lookup as a dict (the --json output); raises NoMatch when nothing or too much matches.
    ``visible_sites``: the sites the caller may see (``others.others_affected``); None: all."""
    agents = store.find_agents(query)
    if not agents:
        raise NoMatch(f"no agent matches {query!r} (searched user, host, agent id and site)")
    exact = [
        a
        for a in agents
        if query.lower() in (a.info.os_user.lower(), a.info.host.lower(), a.info.agent_id.lower())
        or (a.info.display_name and fold(query) == fold(a.info.display_name))
    ]
    return build_for(store, exact if exact else agents, query, window_s, now_us, journeys, score_cfg, visible_sites)


def build_for(
    store: Store,
    chosen: list[AgentRecord],
    query: str,
    window_s: int = 3600,
    now_us: int | None = None,
    journeys: list[Journey] | None = None,
    score_cfg: ScoreConfig | None = None,
    visible_sites: Collection[str] | None = None,
) -> dict:
    """``build`` for agents already found (the API's agent pages know theirs by id)."""
    now_us = now_us if now_us is not None else time.time_ns() // 1000
    since = now_us - window_s * 1_000_000
    with cycle_collection_held():
        views = [_agent_view(store, a, since, now_us, journeys, score_cfg, visible_sites) for a in chosen]
    return {
        "query": query,
        "window": {"since_us": since, "until_us": now_us, "seconds": window_s},
        "agents": views,
    }


_held_lock = threading.Lock()
_held = 0  # builds running with the cycle collector held
_held_restore = False  # whether to enable it again when the last one ends


@contextmanager
def cycle_collection_held() -> Iterator[None]:
    """CPython's cycle collector paused while a view is built, running as usual again after.

    Why: a day's view holds some 130,000 container objects while it is built (the rollups, their
    sketches and fragment lists, each minute's figures and components). The collector counts them
    as new allocations and walks the whole heap three times per view: 250-350 ms of a 1.5 s view,
    measured. None of it needs the collector: reference counting frees it when the view is done.
    Builds in several threads share the pause (the last one out resumes collection); a program
    that had turned collection off keeps it off.
    """
    global _held, _held_restore
    with _held_lock:
        if _held == 0:
            _held_restore = gc.isenabled()
            gc.disable()
        _held += 1
    try:
        yield
    finally:
        with _held_lock:
            _held -= 1
            if _held == 0 and _held_restore:
                gc.enable()


def score_section(
    store: Store,
    agent_key: int,
    since: int,
    until: int,
    journeys: list[Journey] | None = None,
    cfg: ScoreConfig | None = None,
    rollups: list[ru.Rollup] | None = None,
    incidents: list | None = None,
    tl: Timeline | None = None,
    good: dict[tuple[str, str], ru.Rollup] | None = None,
    kept: KeptScores | None = None,
) -> dict:
    """Score now and per minute, components, limiting factor, fault domain per degraded window,
    incidents the agent is part of, journeys: all from the rollups, so any window works.
    ``rollups``: the agent's rollups of the window (and its app history), when the caller has them;
    ``tl`` and ``good``: their timeline and its good minutes merged (``_merge_window``).
    ``kept``: kept minute scores to read, and to queue what was scored into (the caller flushes)."""
    if tl is None:
        if rollups is None:
            tl = agent_timeline(store, agent_key, since, until, cfg, kept)
        else:
            tl = timeline_of(agent_key, rollups, ru.minute_of(since), until, cfg, kept)
    if incidents is None:
        incidents = store.incidents(since, until, agent_key)
    verdicts = triage_timeline(tl, incidents, good)
    out = tl.to_dict()
    out["timeline"] = out.pop("minutes")
    out["faults"] = [v.to_dict() for v in verdicts]
    out["fault"] = out["faults"][-1] if out["faults"] else None  # the latest degraded window
    out["incidents"] = [
        {
            "id": i.id,
            "kind": i.kind,
            "scope": i.scope,
            "start_us": i.start_us,
            "last_us": i.last_us,
            "end_us": i.end_us,
            "detected_us": i.detected_us,
            "agents": len(i.agents),
            "evidence": i.evidence,
        }
        for i in incidents
    ]
    out["journeys"] = journey_summary(
        evaluate(journeys if journeys is not None else default_journeys(), tl.minutes, cfg)
    )
    if kept is not None:
        kept.collect(agent_key, tl.minutes)
    return out


def _agent_view(
    store: Store,
    a: AgentRecord,
    since: int,
    until: int,
    journeys: list[Journey] | None = None,
    score_cfg: ScoreConfig | None = None,
    visible_sites: Collection[str] | None = None,
) -> dict:
    events = store.events(a.key, since, until)
    kept = KeptScores(store, since, until, a.key, score_cfg, trust=True)  # before any rollup is read
    rollups: list[ru.Rollup] | None = None  # a long window's, read once for all its parts
    if until - since > RAW_WINDOW_MAX_S * 1_000_000:
        rollups = app_history(store, a.key, ru.minute_of(since)) + store.rollups(ru.minute_of(since), until, a.key)
        tl = timeline_of(a.key, rollups, ru.minute_of(since), until, score_cfg, kept)
        merges = KeptMerges(store, a.key, _inside(rollups, since, until), ru.minute_of(since), until)
        good, window = _merge_window(tl, rollups, since, until, merges)
        sections = _sections_from_rollups(
            store, a.key, since, until, rollups, events, merged_window=window, merges=merges
        )
        score = score_section(store, a.key, since, until, journeys, score_cfg, tl=tl, good=good, kept=kept)
        merges.flush()
    else:
        sections = {
            "targets": [t.as_dict() for t in summarize(store.rtt_rows(a.key, since, until))],
            "apps": app_stats(store.rows(a.key, "http", since, until)),
            "voice": voice_stats(store.rows(a.key, "voice", since, until)),
            "device": device_stats(store.rows(a.key, "device", since, until)),
            "wifi": wifi_stats(
                store.rows(a.key, "wifi", since, until), [e for e in events if e.kind.startswith("wifi_")]
            ),
        }
        score = score_section(store, a.key, since, until, journeys, score_cfg, kept=kept)
    kept.flush()
    view = _view(
        a,
        sections,
        events,
        store.paths(a.key, since, until),
        score,
        store.user_changes(a.key, since, until),
        (since, until),
    )
    if isinstance(score, dict) and score.get("verdict") is not None:
        # "Is it just me?": part of the verdict, so every view that reads the verdict has it.
        score["verdict"]["others"] = others_affected(
            store, a, score, since, until, visible_sites=visible_sites, cfg=score_cfg, rollups=rollups
        )
    return view


def _view(
    a: AgentRecord,
    sections: dict,
    events: list[Event],
    paths: list[PathSnapshot],
    score: dict,
    users: list[UserChange] | None = None,
    window: tuple[int, int] | None = None,
) -> dict:
    latest_paths: dict[str, PathSnapshot] = {}
    for p in paths:
        latest_paths[p.target] = p
    view = {
        "agent_id": a.info.agent_id,
        "user": a.info.os_user,
        "display_name": a.info.display_name,
        # Who was at the desk in the window (hot desks): the user at its start, then each change;
        # an empty user is nobody logged on.
        "users": [{"since_us": u.since_us, "user": u.os_user, "display_name": u.display_name} for u in users or ()],
        "host": a.info.host,
        "os": a.info.os,
        "agent_version": a.info.agent_version,
        "site": a.info.site,
        "last_seen_us": a.last_seen_us,
        **sections,
        "events": [
            {
                "id": e.id,
                "kind": e.kind,
                "target": e.target,
                "start_us": e.start_us,
                "end_us": e.end_us,
                "duration_s": None if e.end_us is None else round((e.end_us - e.start_us) / 1e6, 1),
                "severity": e.severity,
                "evidence": e.evidence,
            }
            for e in events
        ],
        "paths": [
            {
                "target": p.target,
                "address": p.address,
                "ts_us": p.ts_us,
                "method": p.method,
                "reached": p.reached,
                "hops": [{"ttl": h.ttl, "address": h.address, "rtt_ms": _ms_or_none(h.rtt_us)} for h in p.hops],
                "changes_in_window": sum(1 for e in events if e.kind == "path_change" and e.target == p.target),
            }
            for p in latest_paths.values()
        ],
        "score": score,
    }
    # Events by place, ranked by what the person felt (event_groups); each event gains its words.
    since, until = (
        window
        if window is not None
        else (min((e.start_us for e in events), default=0), max((e.end_us or e.start_us for e in events), default=0))
    )
    view["event_groups"] = group_events(view["events"], since, until)
    # The one verdict of this view (score headline, where, next step), read by the page, the
    # ticket, the CLI and the fleet row alike (ticket.headline).
    if isinstance(score, dict) and score:
        score["verdict"] = verdict(view)
    return view


def _merge_window(
    tl: Timeline, rollups: list[ru.Rollup], since: int, until: int, merges: KeptMerges | None = None
) -> tuple[dict[tuple[str, str], ru.Rollup] | None, dict[tuple[str, str], ru.Rollup]]:
    """The window's rollups merged twice over: its good minutes (triage's baseline; None when no
    minute is degraded, as triage then reads none) and all its minutes (the sections).

    Why together: each is a merge of the whole day, and merging is exact, associative and
    commutative (rollup.py), so the whole window is the good minutes' merge plus the few degraded
    minutes: one day merge instead of two. Keys keep the order of the window's own merge.
    ``merges``: kept block merges to read whole blocks from (``kept.KeptMerges``).
    """
    inside = _inside(rollups, since, until)
    usual = good_minutes(tl) if degraded_windows(tl.minutes) else None
    if not usual:
        return None, merged(inside) if merges is None else merges.merged()
    if merges is None:
        good = merged(r for m in usual for r in m.rollups)
    else:
        good = merges.merged(m.minute_us for m in usual)
    done = {m.minute_us for m in usual}
    both = merged([*good.values(), *(r for r in inside if r.minute_us not in done)])
    return good, {k: both[k] for k in dict.fromkeys((r.kind, r.target) for r in inside)}


def _inside(rollups: list[ru.Rollup], since: int, until: int) -> list[ru.Rollup]:
    """The rollups of the window's minutes (not the app history before it)."""
    lo = ru.minute_of(since)
    return [r for r in rollups if lo <= r.minute_us < until]


def _sections_from_rollups(
    store: Store,
    key: int,
    since: int,
    until: int,
    rollups: list[ru.Rollup],
    events: list,
    raw: bool = True,
    merged_window: dict[tuple[str, str], ru.Rollup] | None = None,
    merges: KeptMerges | None = None,
) -> dict:
    """Targets, apps, voice, device and Wi-Fi of a long window from its rollups (stats.py says
    which figures still read raw rows, and which ones). ``raw`` False: none at all (the fleet's
    rows: no RFC 3550 jitter at the end, no last status, interface or methods; loss runs estimated).
    ``merged_window``: the window's rollups already merged (``_merge_window``); ``merges``: kept
    block merges, whose rows hold the per-minute facts read here."""
    inside = _inside(rollups, since, until)
    by_kind: dict[str, dict[str, ru.Rollup]] = {}
    for (kind, target), r in (merged(inside) if merged_window is None else merged_window).items():
        by_kind.setdefault(kind, {})[target] = r
    last_minute = max((r.minute_us for r in inside if r.kind != ru.EVENTS), default=None)
    tail_since = since if last_minute is None else max(since, last_minute + ru.MINUTE_US - TAIL_S * 1_000_000)
    tail = {k: store.rows(key, k, tail_since, until) if raw else [] for k in ("rtt", "http", "device", "wifi")}
    rtt_tail = [_rtt_row(r) for r in tail["rtt"]]
    lossy_facts, failed_facts = minute_facts(inside) if merges is None else merges.facts()
    # Minutes that lost samples: read raw, so loss seconds and the longest loss run stay exact.
    lossy = sorted({m for m, _, _, _ in lossy_facts})
    lossy_rows: list | None = None
    if raw and len(lossy) <= LOSSY_MINUTES_MAX:
        lossy_rows = []
        for lo, hi in _runs(lossy):
            lossy_rows += store.rtt_rows(key, max(since, lo), min(until, hi + ru.MINUTE_US))
    else:
        per: dict[str, list] = {}
        for _, target, lost, runs in lossy_facts:
            per.setdefault(target, []).append((lost, runs))
        for target, pairs in per.items():
            by_kind["rtt"][target].data["_minute_loss"] = pairs
    # The latest error class of each app: the raw checks of its last minute with a failure.
    last_failed: dict[str, str] = {}
    for app in by_kind.get("http", {}) if raw else ():
        m = max((m for m, a in failed_facts if a == app), default=None)
        if m is not None:
            errs = [x for x in store.rows(key, "http", m, m + ru.MINUTE_US) if x.target == app and x.values["err"]]
            if errs:
                last_failed[app] = max(errs, key=lambda x: x.ts_us).values["err"]
    wifi_events = [e for e in events if e.kind.startswith("wifi_")]
    targets = targets_from_rollups(
        by_kind.get("rtt", {}),
        rtt_tail,
        lossy_rows,
        store.series_methods(key, "rtt") if raw and by_kind.get("rtt") else {},
    )
    return {
        "targets": [t.as_dict() for t in targets],
        "apps": apps_from_rollups(by_kind.get("http", {}), tail["http"], last_failed),
        "voice": voice_from_rollup(next(iter(by_kind.get("voice", {}).values()), None)),
        "device": device_from_rollup(next(iter(by_kind.get("device", {}).values()), None), tail["device"]),
        "wifi": wifi_from_rollup(next(iter(by_kind.get("wifi", {}).values()), None), tail["wifi"], wifi_events),
    }


def _rtt_row(r) -> RttRow:
    return RttRow(r.target, r.address, r.method, r.ts_us, r.values["rtt"], r.hop)


def _runs(minutes: list[int]) -> list[tuple[int, int]]:
    """Sorted minutes as (first, last) runs of consecutive minutes."""
    out: list[list[int]] = []
    for m in minutes:
        if out and m - out[-1][1] <= ru.MINUTE_US:
            out[-1][1] = m
        else:
            out.append([m, m])
    return [(a, b) for a, b in out]


def _ms_or_none(us: int | None) -> float | None:
    return None if us is None else round(us / 1000, 3)


def render_json(view: dict) -> str:
    return json.dumps(view, indent=2)


def _num(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:.2f}{unit}" if v < 10 else f"{v:.1f}{unit}"


def render_text(view: dict) -> str:
    lines = []
    w = view["window"]
    for a in view["agents"]:
        lines.append(
            f"{person(a.get('display_name', ''), a['user'])} on {a['host'] or '?'}  (agent {a['agent_id']}, "
            f"{a['os']}, v{a['agent_version']}" + (f", site {a['site']}" if a["site"] else "") + ")"
        )
        if len(a.get("users") or ()) > 1:  # the desk changed hands in the window
            lines.append(
                "desk users: "
                + "; ".join(
                    f"{_fmt_time(u['since_us'])} {person(u['display_name'], u['user'], 'nobody')}" for u in a["users"]
                )
            )
        lines.append(
            f"window: {_fmt_time(w['since_us'])} .. {_fmt_time(w['until_us'])}; "
            f"last seen {_fmt_time(a['last_seen_us'])}"
        )
        if a.get("score"):
            _render_score(lines, a["score"])
        if not a["targets"]:
            lines.append("  no samples in this window")
            lines.append("")
            continue
        header = (
            f"  {'hop':>3} {'target':<16} {'address':<22} {'method':<12} {'samples':>7} {'loss%':>6} "
            f"{'median':>8} {'p95':>8} {'max':>8} {'jitter':>7} {'|dRTT|':>7} {'loss s':>6}"
        )
        lines.append(header)
        for t in a["targets"]:
            ts = TargetStats(**t)
            lines.append(
                f"  {ts.hop or '':>3} {ts.target:<16.16} {','.join(ts.addresses):<22.22} "
                f"{','.join(ts.methods):<12.12} {ts.samples:>7} "
                f"{ts.loss_pct:>6.1f} {_num(ts.rtt_median_ms):>8} {_num(ts.rtt_p95_ms):>8} {_num(ts.rtt_max_ms):>8} "
                f"{_num(ts.jitter_ms):>7} {_num(ts.jitter_mean_abs_ms):>7} {ts.loss_seconds:>6}"
            )
        lines.append(
            "  (RTT and jitter in ms; jitter = RFC 3550 estimate at window end, "
            "|dRTT| = mean change between consecutive RTTs)"
        )
        _render_apps(lines, a["apps"])
        _render_voice(lines, a["voice"])
        _render_device(lines, a["device"])
        _render_wifi(lines, a["wifi"])
        _render_paths(lines, a["paths"])
        _render_events(lines, a["events"], a.get("event_groups"))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _hhmm(us: int) -> str:
    return fmt_time(us, date=False)


def _score_txt(score: float | None, label: str) -> str:
    return "n/a" if score is None else f"{score:.0f} ({label})"


def _render_score(lines: list[str], sc: dict) -> None:
    win, now = sc["window"], sc["now"]
    if win["score"] is None:
        lines.append("  score: n/a (no rollups in this window)")
        return
    head = (
        f"  score: {_score_txt(win['score'], win['label'])} over the window "
        f"(worst {len(win['worst'])} of {win['minutes']} minutes), "
        f"limited by {sc['limiting']}"
    )
    if now is not None:
        head += (
            f"; now {_score_txt(now['score'], now['label'])} at {_hhmm(now['minute_us'])}, limited by {now['limiting']}"
        )
    lines.append(head)
    lines.append(
        "    components: " + " | ".join(f"{c['name']} {_score_txt(c['score'], c['label'])}" for c in sc["components"])
    )
    lines.append(f"    limiting factor: {win['reason']}")
    if now is not None and now["score"] is not None and now["score"] < 70:
        lines.append(f"    now: {now['reason']}")
    cells = timeline_cells(sc["timeline"])
    for i in range(0, len(cells), 10):
        lines.append(("    per minute: " if i == 0 else "                ") + "  ".join(cells[i : i + 10]))
    for f in sc["faults"][-5:]:
        lines.append(f"  fault domain: {f['label']} (confidence {f['confidence']:.2f}): {f['evidence']}")
    if len(sc["faults"]) > 5:
        lines.append(f"    ... {len(sc['faults']) - 5} earlier degraded windows (use --json for all)")
    if not sc["faults"]:
        lines.append("  fault domain: none (no degraded minute in this window)")
    for i in sc["incidents"]:
        state = "ongoing" if i["end_us"] is None else f"ended {_hhmm(i['end_us'])}"
        lines.append(
            f"  incident {i['id']}: {i['kind']} {i['scope']}, {_hhmm(i['start_us'])} .. {state}, "
            f"{i['agents']} agents: {i['evidence']}"
        )
    for j in sc["journeys"]:
        pct = "n/a" if j["met_pct"] is None else f"{j['met_pct']:.0f}%"
        lines.append(
            f"  journey {j['name']!r}: met {pct} of measured minutes ({j['met']} met, {j['missed']} missed, "
            f"{j['unknown']} not measured)"
        )


def _render_apps(lines: list[str], apps: list[dict]) -> None:
    if not apps:
        return
    lines.append("")
    lines.append(
        f"  {'app':<22} {'checks':>6} {'avail%':>7} {'dns':>7} {'tcp':>7} {'tls':>7} {'ttfb':>7} {'total':>8} "
        f"{'status':>6} {'cert d':>6}  errors"
    )
    for a in apps:
        errs = ", ".join(f"{k} x{v}" for k, v in sorted(a["errors"].items())) or "-"
        lines.append(
            f"  {a['app']:<22.22} {a['checks']:>6} {a['availability_pct']:>7.1f} {_num(a['dns_median_ms']):>7} "
            f"{_num(a['tcp_median_ms']):>7} {_num(a['tls_median_ms']):>7} {_num(a['ttfb_median_ms']):>7} "
            f"{_num(a['total_median_ms']):>8} {a['last_status'] if a['last_status'] is not None else '-':>6} "
            f"{a['cert_days_left'] if a['cert_days_left'] is not None else '-':>6}  {errs}"
        )
    lines.append("  (app phases: median ms over successful checks)")


def _render_voice(lines: list[str], v: dict | None) -> None:
    if not v:
        return
    lines.append("")
    lines.append(
        f"  voice-cadence: {v['runs']} runs, loss {_num(v['loss_pct'])}%, RTT median {_num(v['rtt_median_ms'])} ms, "
        f"jitter median {_num(v['jitter_median_ms'])} ms (max {_num(v['jitter_max_ms'])}), "
        f"worst 200 ms burst loss {_num(v['burst_loss_max_pct'])}%, reordered {v['reordered']}"
    )


def _render_device(lines: list[str], d: dict | None) -> None:
    if not d:
        return
    lines.append("")
    vpn = f", VPN {d['vpn']}" if d["vpn"] else ""
    proxy = f", proxy {d['proxy']}" if d["proxy"] else ""
    busiest = f"; busiest: {d['busiest']}" if d["busiest"] else ""
    lines.append(
        f"  device: CPU {_num(d['cpu_pct_now'])}% now (max {_num(d['cpu_pct_max'])}%), "
        f"memory {_num(d['mem_pct_now'])}% (max {_num(d['mem_pct_max'])}%), "
        f"interface {d['interface'] or '?'} ({d['interface_kind'] or '?'}){vpn}{proxy}, "
        f"NIC errors {d['nic_errors']}{busiest}"
    )


def _render_wifi(lines: list[str], w: dict | None) -> None:
    if not w:
        return
    lines.append("")
    where = f"{w['ssid'] or '?'} ({w['bssid'] or '?'}), {w['band'] or '?'} GHz ch {w['channel'] or '?'}"
    lines.append(
        f"  wifi: {where}; RSSI median {w['rssi_median_dbm'] if w['rssi_median_dbm'] is not None else '-'} dBm "
        f"(min {w['rssi_min_dbm'] if w['rssi_min_dbm'] is not None else '-'}), "
        f"SNR {w['snr_median_db'] if w['snr_median_db'] is not None else '-'} dB, "
        f"connected {w['connected_pct']}% of readings; roams {w['roams']}, disconnects {w['disconnects']}, "
        f"weak-signal episodes {w['weak_signal_events']}, rate drops {w['rate_drops']}"
    )


def _render_paths(lines: list[str], paths: list[dict]) -> None:
    for p in paths:
        hops = " > ".join(h["address"] or "*" for h in p["hops"])
        changed = f", {p['changes_in_window']} changes in window" if p["changes_in_window"] else ""
        lines.append(
            f"  path to {p['target']} ({p['address']}): {hops}{'' if p['reached'] else ' (not reached)'}{changed}"
        )


def _render_events(lines: list[str], events: list[dict], groups: list[dict] | None = None) -> None:
    """Every event, grouped by place and ranked by impact (event_groups); the kind's key in brackets
    after its words, for whoever searches the agent's log or the JSON."""
    lines.append("")
    if not events:
        lines.append("  events: none (no micro-disruptions in this window)")
        return
    by_id = {e["id"]: e for e in events}
    lines.append(f"  events ({len(events)}), by place, the most felt first:")
    for g in groups or ():
        lines.append(f"    {group_line(g)}")
        for i in g["event_ids"][:EVENTS_PER_GROUP]:
            e = by_id[i]
            dur = "ongoing" if e["end_us"] is None else f"{e['duration_s']:.1f} s"
            sev = SEVERITY_WORDS.get(e["severity"], "?")
            lines.append(
                f"      {_fmt_time(e['start_us'])}  {dur:>8}  {sev:<8} {e.get('what', e['kind'])} [{e['kind']}] "
                f"at {e['target']}: {e['evidence']}".rstrip(": ")
            )
        if len(g["event_ids"]) > EVENTS_PER_GROUP:
            lines.append(f"      ... {len(g['event_ids']) - EVENTS_PER_GROUP} more here (use --json for all)")


EVENTS_PER_GROUP = 10  # rows per place in the text report; the JSON has every event


def render_compact(view: dict, tz: str | None = None, groups_shown: int = 3) -> str:
    """``cxpulse lookup`` without ``--full``: per person, when the problem started and where, the
    verdict, the next step, whether others saw it too, and the places with the most felt events.
    Every clock time in ``tz`` (default UTC), labelled."""
    out: list[str] = []
    for a in view["agents"]:
        r = headline(a)
        out.append(
            f"{person(a.get('display_name', ''), a['user'])} on {a['host'] or '?'}"
            + (f" (site {a['site']})" if a.get("site") else "")
            + f", agent {a['agent_id']}"
        )
        start, end = r.get("fault_start_us"), r.get("fault_end_us")
        if r.get("domain") and start:
            conf = r.get("confidence")
            conf_s = f", confidence {conf:.0%}" if isinstance(conf, float) and conf <= 1 else ""
            until = f" (until {fmt_time(end, tz, date=False, label=False)})" if end else ""
            out.append(f"Started {fmt_time(start, tz)}{until}: {r.get('domain_label') or r['domain']}{conf_s}")
        else:
            w = view["window"]
            out.append(
                f"No degraded time from {fmt_time(w['since_us'], tz)} to {fmt_time(w['until_us'], tz, date=False)}"
            )
        if not a.get("targets") and not a.get("apps") and not a.get("wifi"):
            out.append("Verdict: no samples in this window (agent offline or not yet reporting)")
        else:
            score = f"score {r['score']:.0f}/100 {r['label']}" if r.get("score") is not None else "score not computed"
            if r.get("score_now") is not None and r["score_now"] != r.get("score"):
                score += f", now {r['score_now']:.0f} {r['label_now']}"
            out.append(f"Verdict: {r.get('sentence') or 'nothing abnormal measured'} ({score})")
        out.append(f"Next step: {r.get('next_step') or next_step(r, a)}")
        o = r.get("others")
        line = others_line(o)
        if o and line:
            when = "in the degraded time" if o["basis"] == "degraded" else "in the last minutes of the window"
            out.append(
                f"Others at the same time ({when}, {fmt_time(o['since_us'], tz, date=False, label=False)}-"
                f"{fmt_time(o['until_us'], tz, date=False)}): {line}"
            )
        groups = a.get("event_groups") or []
        if groups:
            out.append(f"Events by place, the most felt first ({len(a['events'])} in all):")
            out.extend(f"  {group_line(g)}" for g in groups[:groups_shown])
            if len(groups) > groups_shown:
                n = len(groups) - groups_shown
                out.append(f"  ... {n} more place{'s' if n != 1 else ''} (--full)")
        else:
            out.append("Events: none in this window")
        out.append("")
    out.append("(cxpulse lookup --full: every figure, the ticket text and each event)")
    return "\n".join(out) + "\n"


def fleet_views(
    store: Store,
    records: list[AgentRecord],
    since: int,
    until: int,
    journeys: list[Journey] | None = None,
    score_cfg: ScoreConfig | None = None,
):
    """(record, view) for each agent, as ``build`` makes them, for the fleet page: from the
    window's rollups of every agent, read in one query, and no raw samples at all.

    A fleet of thousands asked per agent read each agent's raw rows (900 per hop for 15 minutes)
    and its rollups one query at a time. Figures that need raw rows are left out or estimated
    (``_sections_from_rollups`` with ``raw=False``); the agent page has them.
    """
    first = ru.minute_of(since)
    by_agent: dict[int, list[ru.Rollup]] = {}
    history_since = first - (AVAILABILITY_LOOKBACK_MIN - 1) * ru.MINUTE_US
    for r in store.rollups(history_since, first, kinds=("http",)) + store.rollups(first, until):
        by_agent.setdefault(r.agent, []).append(r)
    incidents = store.incidents(since, until)
    kept = KeptScores(store, first, until, None, score_cfg)
    try:
        for a in records:
            rollups = by_agent.get(a.key, [])
            events = store.events(a.key, since, until)
            tl = timeline_of(a.key, rollups, first, until, score_cfg, kept)
            good, window = _merge_window(tl, rollups, since, until)
            sections = _sections_from_rollups(
                store, a.key, since, until, rollups, events, raw=False, merged_window=window
            )
            mine = [i for i in incidents if a.key in (i.agents or {})]
            score = score_section(
                store, a.key, since, until, journeys, score_cfg, incidents=mine, tl=tl, good=good, kept=kept
            )
            yield a, _view(a, sections, events, [], score, window=(since, until))
    finally:
        kept.flush()
