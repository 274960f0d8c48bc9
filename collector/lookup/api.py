"""The lookup over HTTP: search, one agent's experience and timeline, the fleet, the ticket text.

The helpdesk page (``web/``) and any ITSM integration read the same JSON. Routes are plain
Starlette; the OpenAPI document is written here by hand next to the routes it describes (a test
checks that every route is in it and that it is valid OpenAPI 3.1), so the contract is read in one
place instead of being inferred from type hints.

Everything that touches the store runs in a worker thread: the collector's event loop also serves
gRPC ingest, and a day of one agent's samples takes a store read of a second or more.

Times in and out are microseconds since the Unix epoch (``*_us``), as everywhere in cxpulse;
query parameters also take ISO 8601, epoch seconds, ``now`` and ``-1h``-style offsets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..store import AgentRecord, Store, fold
from .report import build_for, fleet_views
from .scope import scope_key, scoped_store
from .links import view_url
from .ticket import headline, incident_scope, ticket_summary

__all__ = ["ApiError", "LookupService", "create_app", "openapi_document", "parse_duration_s", "parse_time_us"]

log = logging.getLogger("cxpulse.collector.lookup.api")

API_VERSION = "1"
S = 1_000_000
MAX_RANGE_S = 31 * 86_400
# Every time a request names lies in [2000-01-01, 2100-01-01) UTC and every duration is at most ten
# years: anything outside is a typo or an attack (``until=1e400``), answered 400 with the reason
# instead of overflowing a conversion or a 64-bit database integer (issue 18, finding 9).
MIN_TIME_S = 946_684_800
MAX_TIME_S = 4_102_444_800
MAX_DURATION_S = 3650 * 86_400
MAX_POINTS = 5000
DEFAULT_POINTS = 720
# Bucket widths a person reads easily on a time axis; the timeline picks the smallest that fits.
NICE_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
WEB_DIR = Path(__file__).with_name("web")


class ApiError(Exception):
    """A request the API cannot answer as asked; becomes a JSON error with this status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --- parameters -------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNIT_S = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration_s(text: str, name: str = "window") -> int:
    """``900``, ``15m``, ``1h``, ``7d`` -> whole seconds (at least 1)."""
    m = _DURATION.match(text or "")
    if not m:
        raise ApiError(400, f"{name} must be a duration such as 900, 15m, 1h or 7d; got {text!r}")
    secs = float(m.group(1)) * _UNIT_S[(m.group(2) or "").lower() or None]
    if secs < 1:
        raise ApiError(400, f"{name} must be at least 1 s; got {text!r}")
    if not secs <= MAX_DURATION_S:  # also inf: a 400-digit number of weeks
        raise ApiError(400, f"{name} must be at most {MAX_DURATION_S // 86_400} days; got {text[:40]!r}")
    return int(secs)


def parse_time_us(text: str, now_us: int, name: str) -> int:
    """ISO 8601 (UTC if no zone), epoch seconds, ``now`` or ``-15m`` (before now) -> microseconds.

    The result lies within [MIN_TIME_S, MAX_TIME_S) or the answer is 400 saying so.
    """
    us = _parse_time_us(text, now_us, name)
    if not MIN_TIME_S * S <= us < MAX_TIME_S * S:
        raise ApiError(400, f"{name} must lie between 2000-01-01 and 2100-01-01 (UTC); got {(text or '')[:40]!r}")
    return us


def _parse_time_us(text: str, now_us: int, name: str) -> int:
    t = (text or "").strip()
    if t.lower() == "now":
        return now_us
    if t.startswith("-"):
        return now_us - parse_duration_s(t[1:], name) * S
    try:
        secs = float(t)
    except ValueError:
        pass
    else:
        if not math.isfinite(secs):  # inf, 1e400, nan: a number, but no time
            raise ApiError(400, f"{name} must be a finite number of epoch seconds; got {text[:40]!r}")
        return int(round(secs * S))  # a big int at worst; the caller checks the range
    try:
        d = dt.datetime.fromisoformat(t.replace("Z", "+00:00") if t.endswith("Z") else t)
    except ValueError:
        raise ApiError(400, f"{name} must be ISO 8601 (2026-09-21T14:00:00Z), epoch seconds, 'now' or '-1h'; got {text!r}") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    try:
        return int(d.timestamp() * S)
    except (OverflowError, ValueError):  # 0001-01-01 with a +23:59 zone
        raise ApiError(400, f"{name} is outside the range of dates this API accepts; got {text[:40]!r}") from None


def time_range(q: dict, now_us: int, default_window_s: int = 3600) -> tuple[int, int]:
    """[since, until) from ``since``/``until``/``window`` query values; whole seconds, bounded."""
    until = parse_time_us(q["until"], now_us, "until") if q.get("until") else now_us
    if q.get("since"):
        since = parse_time_us(q["since"], now_us, "since")
    else:
        since = until - parse_duration_s(q.get("window") or str(default_window_s)) * S
    until = (until // S) * S
    since = (since // S) * S
    if since >= until:
        raise ApiError(400, f"since must be before until (got since {since} us, until {until} us)")
    if until - since > MAX_RANGE_S * S:
        raise ApiError(400, f"the time range is longer than {MAX_RANGE_S // 86400} days; ask for a shorter one")
    return since, until


def _int_param(q: dict, name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer between {lo} and {hi}; got {raw!r}") from None
    if not lo <= v <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}; got {v}")
    return v


def _bool_param(q: dict, name: str, default: bool) -> bool:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, f"{name} must be true or false; got {raw!r}")


# --- the timeline -----------------------------------------------------------------------------


def pick_step_s(span_s: int, points: int) -> int:
    """The smallest readable bucket width that keeps the series at or under ``points`` buckets."""
    want = max(1, math.ceil(span_s / max(1, points)))
    return next((s for s in NICE_STEPS_S if s >= want), math.ceil(want / 86400) * 86400)


@dataclass
class _Acc:
    """Per-bucket sums for one RTT target; turned into ms/percent series at the end."""

    hop: int | None
    n: list[int]
    ok: list[int]
    total: list[float]
    lo: list[float | None]
    hi: list[float | None]
    jsum: list[float]
    jn: list[int]
    addresses: set[str] = field(default_factory=set)

    @classmethod
    def empty(cls, size: int, hop: int | None) -> _Acc:
        return cls(hop, [0] * size, [0] * size, [0.0] * size, [None] * size, [None] * size, [0.0] * size, [0] * size)


def _rtt_python(store: Store, key: int, since: int, until: int, start: int, step: int, size: int) -> dict[str, _Acc]:
    """Buckets from the store's rows: works on every Store, costs about 1.5 s per 250k samples.

    Jitter here is the mean |change of RTT| between consecutive samples of one series that were
    both answered (a lost sample breaks the pair), per bucket of the later sample.
    """
    accs: dict[str, _Acc] = {}
    prev: dict[tuple, int | None] = {}
    for r in store.rows(key, "rtt", since, until):
        a = accs.get(r.target)
        if a is None:
            a = accs[r.target] = _Acc.empty(size, r.hop)
        if r.hop and not a.hop:
            a.hop = r.hop
        a.addresses.add(r.address)
        b = (r.ts_us - start) // step
        a.n[b] += 1
        v = r.values["rtt"]
        series = (r.target, r.address, r.method, r.hop)
        p = prev.get(series)
        prev[series] = v
        if v is None:
            continue
        a.ok[b] += 1
        a.total[b] += v
        a.lo[b] = v if a.lo[b] is None or v < a.lo[b] else a.lo[b]
        a.hi[b] = v if a.hi[b] is None or v > a.hi[b] else a.hi[b]
        if p is not None:
            a.jsum[b] += abs(v - p)
            a.jn[b] += 1
    return accs


def _wifi_python(store: Store, key: int, since: int, until: int, start: int, step: int, size: int) -> list[tuple]:
    """Per bucket: (b, readings, connected, rssi sum, rssi count, rssi min) from the store's rows."""
    acc: dict[int, list] = {}
    for r in store.rows(key, "wifi", since, until):
        b = (r.ts_us - start) // step
        x = acc.setdefault(b, [b, 0, 0, 0.0, 0, None])
        x[1] += 1
        v = r.values
        if v["conn"]:
            x[2] += 1
            if v["rssi"] is not None:
                x[3] += v["rssi"]
                x[4] += 1
                x[5] = v["rssi"] if x[5] is None or v["rssi"] < x[5] else x[5]
    return [tuple(x) for x in acc.values()]


def _store_buckets(store: Store, key: int, since: int, until: int, start: int, step: int,
                   size: int) -> tuple[dict[str, _Acc], list[tuple]] | None:
    """The same buckets as the Python path, aggregated by the store itself (``buckets()``; SQLite:
    a day of three hops in ~0.3 s); None when the store has no such method.

    The Store protocol hands out one Python object per sample, which for a day at 1 Hz (260k
    samples) takes 1.5 s, more than the page's budget. A test pins both paths to the same
    series (tests/web/test_api.py).
    """
    buckets = getattr(store, "buckets", None)
    if not callable(buckets):
        return None
    per_series, wifi = buckets(key, since, until, start, step)
    accs: dict[str, _Acc] = {}
    for target, addr, hop, rows in per_series:
        if not rows:
            continue
        a = accs.get(target)
        if a is None:
            a = accs[target] = _Acc.empty(size, None)
        if hop:
            a.hop = a.hop or hop
        a.addresses.add(addr)
        for b, n, ok, total, lo, hi, dsum, dn in rows:
            a.n[b] += n
            a.ok[b] += ok
            a.total[b] += total
            a.jsum[b] += dsum
            a.jn[b] += dn
            if lo is not None:
                a.lo[b] = lo if a.lo[b] is None or lo < a.lo[b] else a.lo[b]
                a.hi[b] = hi if a.hi[b] is None or hi > a.hi[b] else a.hi[b]
    return accs, wifi


def _ms(us: float | None, digits: int = 2) -> float | None:
    return None if us is None else round(us / 1000.0, digits)


def _hop_series(target: str, a: _Acc) -> dict:
    return {
        "target": target,
        "hop": a.hop,
        "addresses": sorted(x for x in a.addresses if x),
        "samples": a.n,
        "rtt_avg_ms": [_ms(t / k) if k else None for t, k in zip(a.total, a.ok)],
        "rtt_min_ms": [_ms(v) for v in a.lo],
        "rtt_max_ms": [_ms(v) for v in a.hi],
        "loss_pct": [round(100.0 * (n - k) / n, 1) if n else None for n, k in zip(a.n, a.ok)],
        "jitter_ms": [_ms(s / k) if k else None for s, k in zip(a.jsum, a.jn)],
    }


def _wifi_series(buckets: list[tuple], size: int) -> dict | None:
    """RSSI per bucket (mean and lowest of connected readings) and the share of readings connected."""
    if not buckets:
        return None
    avg: list[float | None] = [None] * size
    lo: list[int | None] = [None] * size
    conn: list[float | None] = [None] * size
    for b, n, c, rsum, rn, rmin in buckets:
        avg[b] = round(rsum / rn, 1) if rn else None
        lo[b] = rmin
        conn[b] = round(100.0 * c / n, 1) if n else None
    return {"rssi_avg_dbm": avg, "rssi_min_dbm": lo, "connected_pct": conn}


def _event_dict(e) -> dict:
    return {"id": e.id, "kind": e.kind, "target": e.target, "start_us": e.start_us, "end_us": e.end_us,
            "duration_s": None if e.end_us is None else round((e.end_us - e.start_us) / 1e6, 1),
            "severity": e.severity, "evidence": e.evidence}


def score_points(view_agent: dict | None) -> list[dict]:
    """The per-minute score timeline from the view's score section, as [{t_us, score, label, limiting}]."""
    score = (view_agent or {}).get("score")
    if not isinstance(score, dict):
        return []
    tl = None
    for k in ("timeline", "minutes", "per_minute"):
        if isinstance(score.get(k), list):
            tl = score[k]
            break
    out = []
    for m in tl or []:
        if not isinstance(m, dict):
            continue
        t = next((m[k] for k in ("start_us", "minute_us", "ts_us", "t_us") if isinstance(m.get(k), int)), None)
        s = m.get("score")
        if t is None or not isinstance(s, (int, float)):
            continue
        lim = m.get("limiting") or m.get("limiting_component")
        out.append({"t_us": t, "score": round(float(s), 1), "label": m.get("label"),
                    "limiting": lim.get("name") if isinstance(lim, dict) else lim})
    out.sort(key=lambda p: p["t_us"])
    return out


# --- the service --------------------------------------------------------------------------------


class _TtlCache:
    """A small LRU with expiry: a page asks for the same view, timeline and ticket within seconds."""

    def __init__(self, ttl_s: float, size: int):
        self.ttl_s, self.size = ttl_s, size
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            hit = self._d.get(key)
            if hit is None or hit[0] < time.monotonic():
                return None
            self._d.move_to_end(key)
            return hit[1]

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = (time.monotonic() + self.ttl_s, value)
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)


class LookupService:
    """What the routes call: synchronous, thread-safe reads over one store.

    ``stats`` is the ingest service's IngestStats (for /metrics), ``alerts`` an
    ``cxpulse.collector.alerts.Alerter`` (deliveries, test-send), ``now_us`` a clock for tests.

    Every read takes ``sites``: the caller's site scope (``Access.visible_sites``), None for
    every site. It goes to ``scope.scoped_store`` and nowhere else: what is out of scope is never
    read, so no answer can carry it (issue 18).
    """

    def __init__(self, store: Store, *, stats=None, alerts=None, now_us: Callable[[], int] | None = None,
                 view_ttl_s: float = 30.0, fleet_ttl_s: float = 20.0, public_url: str = ""):
        self.store = store
        self.stats = stats
        self.alerts = alerts
        self.now_us = now_us or (lambda: time.time_ns() // 1000)
        self.public_url = public_url
        self._views = _TtlCache(view_ttl_s, 64)
        self._fleets = _TtlCache(fleet_ttl_s, 32)  # (window, site scope)
        self._fleet_lock = threading.Lock()
        self.fleet_seconds = 0.0
        # Aggregate timelines inside SQLite when the store is SQLite (tests turn it off to compare).
        self.fast_sqlite = True

    # - agents -

    def search(self, q: str, limit: int, sites=None) -> list[dict]:
        return [_agent_brief(a) for a in scoped_store(self.store, sites).find_agents(q, limit)]

    def record(self, agent_id: str, sites=None) -> AgentRecord:
        """The agent, or 404; a desk outside ``sites`` gets the very same 404 as one that does not exist."""
        a = scoped_store(self.store, sites).agent(agent_id)
        if a is not None:
            return a
        raise ApiError(404, f"no agent with id {agent_id!r} (search with /api/v1/agents?q=...)")

    def view(self, agent_id: str, since: int, until: int, sites=None) -> dict:
        """One agent's section of the lookup view (``report.build``) over [since, until)."""
        key = (agent_id, since, until, scope_key(sites))
        hit = self._views.get(key)
        if hit is not None:
            return hit
        v = build_for(scoped_store(self.store, sites), [self.record(agent_id, sites)], agent_id, (until - since) // S,
                      until, visible_sites=sites)
        out = {"window": v["window"], "agent": v["agents"][0]}
        self._views.put(key, out)
        return out

    def timeline(self, agent_id: str, since: int, until: int, points: int, sites=None) -> dict:
        """Per-bucket RTT (avg/min/max), loss and jitter per hop, Wi-Fi RSSI, and the events."""
        rec = self.record(agent_id, sites)
        step_s = pick_step_s((until - since) // S, points)
        step = step_s * S
        start = (since // step) * step  # buckets on round times: 10:00, 10:02, ... not 10:00:37
        size = max(1, -(-(until - start) // step))
        got = _store_buckets(self.store, rec.key, since, until, start, step, size) if self.fast_sqlite else None
        if got is not None:
            accs, wifi = got
        else:
            accs = _rtt_python(self.store, rec.key, since, until, start, step, size)
            wifi = _wifi_python(self.store, rec.key, since, until, start, step, size)
        order = sorted(accs.items(), key=lambda kv: (kv[0] != "gateway", kv[1].hop is None, kv[1].hop or 0, kv[0]))
        cached = self._views.get((agent_id, since, until, scope_key(sites)))
        return {
            "agent_id": agent_id,
            "since_us": since,
            "until_us": until,
            "start_us": start,
            "step_s": step_s,
            "buckets": size,
            "hops": [_hop_series(t, a) for t, a in order],
            "wifi": _wifi_series(wifi, size),
            "score": score_points(cached["agent"]) if cached else [],
            "events": [_event_dict(e) for e in self.store.events(rec.key, since, until)],
        }

    def agent(self, agent_id: str, since: int, until: int, points: int, with_timeline: bool, tz: str | None,
              sites=None) -> dict:
        v = self.view(agent_id, since, until, sites)
        a = v["agent"]
        out = {"window": v["window"], "agent": a, "headline": headline(a),
               "ticket": ticket_summary(a, v["window"], tz=tz, link=self.view_link(agent_id, since, until, tz)),
               "score_timeline": score_points(a)}
        if with_timeline:
            tl = self.timeline(agent_id, since, until, points, sites)
            tl["score"] = score_points(a)
            out["timeline"] = tl
        return out

    def ticket(self, agent_id: str, since: int, until: int, tz: str | None, sites=None) -> str:
        v = self.view(agent_id, since, until, sites)
        return ticket_summary(v["agent"], v["window"], tz=tz, link=self.view_link(agent_id, since, until, tz))

    def view_link(self, agent_id: str, since: int, until: int, tz: str | None) -> str:
        """The page's address for this view (the ticket's "View:" line); relative without a public URL."""
        return view_url(self.public_url, agent_id, since, until, tz)

    # - fleet -

    def fleet(self, window_s: int, sites=None) -> dict:
        """Every agent seen in the window, scored and ranked; cached for a few seconds.

        One computation at a time: the page, /metrics and the alert loop ask together. A site
        scope gets its own snapshot, computed over its desks only (counts, medians, incidents).
        """
        now = (self.now_us() // (60 * S)) * 60 * S if window_s >= 300 else (self.now_us() // S) * S
        key = (window_s, scope_key(sites))
        hit = self._fleets.get(key)
        if hit is not None:
            return hit
        with self._fleet_lock:
            hit = self._fleets.get(key)
            if hit is not None:
                return hit
            t0 = time.perf_counter()
            snap = _fleet(scoped_store(self.store, sites), window_s, now)
            took = time.perf_counter() - t0
            if sites is None:
                self.fleet_seconds = took
            snap["took_ms"] = round(took * 1000, 1)
            self._fleets.put(key, snap)
            return snap


def _agent_brief(a: AgentRecord) -> dict:
    i = a.info
    return {"agent_id": i.agent_id, "user": i.os_user, "display_name": i.display_name, "host": i.host, "site": i.site,
            "os": i.os,
            "agent_version": i.agent_version, "first_seen_us": a.first_seen_us, "last_seen_us": a.last_seen_us}


def _badness(a: dict, window_s: int) -> float:
    """Without a score: seconds inside events, weighted by severity, plus loss; only to rank."""
    ev = sum((e.get("severity") or 1) * min(window_s, e.get("duration_s") or window_s) for e in a.get("events") or [])
    loss = max((t.get("loss_pct") or 0 for t in a.get("targets") or []), default=0)
    failed = sum(x.get("failed") or 0 for x in a.get("apps") or [])
    return ev + 10 * loss + 5 * failed


def _median(xs: list[float]) -> float | None:
    xs = sorted(xs)
    return None if not xs else xs[(len(xs) - 1) // 2]


def _fleet(store: Store, window_s: int, now: int) -> dict:
    since = now - window_s * S
    every = getattr(store, "all_agents", None)
    records = every() if callable(every) else store.find_agents("", 100_000)
    records.sort(key=lambda r: -r.last_seen_us)
    by_key = {r.key: r.info.agent_id for r in records}
    active = [r for r in records if r.last_seen_us >= since]
    rows, minutes, incidents = [], {}, {}
    app_rows: dict[str, list[dict]] = {}
    for r, a in fleet_views(store, active, since, now):  # rollups of every agent in one read, no raw rows
        h = headline(a)
        minutes[r.info.agent_id] = score_points(a)
        for inc in h["incidents"]:
            incidents.setdefault(str(inc.get("id")), inc)
        for app in a.get("apps") or []:
            app_rows.setdefault(app["app"], []).append(dict(app, agent_id=r.info.agent_id, site=r.info.site))
        rows.append({
            **_agent_brief(r),
            "score": h["score"], "label": h["label"] or "n/a", "limiting": h["limiting"],
            "fault_domain": h["domain"], "fault_label": h.get("domain_label"), "sentence": h["sentence"],
            "next_step": h["next_step"], "events": len(a.get("events") or []),
            "loss_pct_max": max((t.get("loss_pct") or 0 for t in a.get("targets") or []), default=None),
            "rtt_p95_ms_max": max((t["rtt_p95_ms"] for t in a.get("targets") or [] if t.get("rtt_p95_ms") is not None), default=None),
            "_badness": _badness(a, window_s),
        })
    get = getattr(store, "incidents", None)  # the store keeps incidents across agents (issue 4)
    if callable(get):
        try:
            for inc in get(since, now):
                incidents[str(inc.id)] = _incident_dict(inc, by_key)
        except Exception as exc:  # noqa: BLE001 - the fleet page must not fail on it
            log.warning("reading incidents from the store failed: %s", exc)
    rows.sort(key=lambda x: (x["score"] is None, x["score"] if x["score"] is not None else 0, -x["_badness"]))
    sites: dict[str, list[dict]] = {}
    for x in rows:
        sites.setdefault(x["site"] or "(no site)", []).append(x)
    site_rows = []
    for site, xs in sites.items():
        scores = [x["score"] for x in xs if x["score"] is not None]
        labels = {lab: sum(1 for x in xs if x["label"] == lab) for lab in ("good", "fair", "poor", "n/a")}
        site_rows.append({"site": site, "agents": len(xs), "labels": labels, "score_median": _median(scores),
                          "score_min": min(scores) if scores else None, "worst_agent": xs[0]["agent_id"],
                          "events": sum(x["events"] for x in xs)})
    site_rows.sort(key=lambda s: (s["score_median"] is None, s["score_median"] or 0, -s["events"]))
    apps = []
    for name, xs in sorted(app_rows.items()):
        checks = sum(x["checks"] for x in xs)
        failed = sum(x["failed"] for x in xs)
        totals = [x["total_median_ms"] for x in xs if x.get("total_median_ms") is not None]
        apps.append({"app": name, "agents": len(xs), "checks": checks,
                     "availability_pct": round(100.0 * (checks - failed) / checks, 2) if checks else None,
                     "total_median_ms": _median(totals), "agents_failing": sorted({x["agent_id"] for x in xs if x["failed"]}),
                     "sites": sorted({x["site"] for x in xs if x["site"]})})
    apps.sort(key=lambda a: (a["availability_pct"] if a["availability_pct"] is not None else 101, -(a["total_median_ms"] or 0)))
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
        "incidents": {"open": [i for i in inc_list if i.get("end_us") is None],
                      "recent": [i for i in inc_list if i.get("end_us") is not None]},
        "silent": [_agent_brief(r) for r in records if since - 86_400 * S <= r.last_seen_us < since][:50],
        "_minutes": minutes,
    }


def _incident_dict(inc, agent_ids: dict[int, str]) -> dict:
    """An IncidentRecord as JSON: the affected agents by id, not by the store's internal key."""
    agents = sorted(agent_ids.get(k, str(k)) for k in (inc.agents or {}))
    return {"id": inc.id, "kind": inc.kind, "scope": inc.scope, "start_us": inc.start_us, "last_us": inc.last_us,
            "end_us": inc.end_us, "detected_us": inc.detected_us, "agents": len(agents), "agent_ids": agents[:200],
            "evidence": inc.evidence}


def public_fleet(snap: dict, limit: int) -> dict:
    """The snapshot as the API shows it: internal keys dropped, the worst list cut to ``limit``."""
    out = {k: v for k, v in snap.items() if not k.startswith("_")}
    out["worst"] = [{k: v for k, v in x.items() if not k.startswith("_")} for x in snap["worst"][:limit]]
    return out


# --- routes -----------------------------------------------------------------------------------


def _json(data, status: int = 200, started: float | None = None) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if started is not None:
        headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    return JSONResponse(data, status_code=status, headers=headers)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status,
                        headers={"Cache-Control": "no-store"})


async def _run(fn, *args):
    """Store reads leave the event loop: it also serves gRPC ingest."""
    return await asyncio.to_thread(fn, *args)


def create_app(service: LookupService, access, *, metrics: Callable[[], bytes] | None = None) -> Starlette:
    """The ASGI app: JSON API under /api/v1, the page at /, /metrics when ``metrics`` is given.

    ``access`` (``access.Access``) checks keys and roles, writes the audit log and pseudonymizes;
    there is deliberately no way to build the app without it.
    """

    async def search(request: Request) -> Response:
        t0 = time.perf_counter()
        q = request.query_params
        text = q.get("q", "")
        if len(text) > 256:
            raise ApiError(400, "q is longer than 256 characters")
        limit = _int_param(q, "limit", 50, 1, 500)
        return _json({"query": text, "agents": await _run(service.search, text, limit, access.visible_sites(request))},
                     started=t0)

    async def agent(request: Request) -> Response:
        t0 = time.perf_counter()
        q = dict(request.query_params)
        since, until = time_range(q, service.now_us())
        points = _int_param(q, "points", DEFAULT_POINTS, 10, MAX_POINTS)
        tz = _tz_param(q)
        body = await _run(service.agent, request.path_params["agent_id"], since, until, points,
                          _bool_param(q, "timeline", True), tz, access.visible_sites(request))
        return _json(body, started=t0)

    async def timeline(request: Request) -> Response:
        t0 = time.perf_counter()
        q = dict(request.query_params)
        since, until = time_range(q, service.now_us())
        points = _int_param(q, "points", DEFAULT_POINTS, 10, MAX_POINTS)
        return _json(await _run(service.timeline, request.path_params["agent_id"], since, until, points,
                                access.visible_sites(request)), started=t0)

    async def ticket(request: Request) -> Response:
        t0 = time.perf_counter()
        q = dict(request.query_params)
        since, until = time_range(q, service.now_us())
        text = await _run(service.ticket, request.path_params["agent_id"], since, until, _tz_param(q),
                          access.visible_sites(request))
        if q.get("format", "text") == "json":
            return _json({"text": text}, started=t0)
        if q.get("format", "text") != "text":
            raise ApiError(400, f"format must be text or json; got {q['format']!r}")
        return PlainTextResponse(text, headers={"Cache-Control": "no-store"})

    async def fleet(request: Request) -> Response:
        t0 = time.perf_counter()
        q = dict(request.query_params)
        window_s = parse_duration_s(q.get("window", "15m"))
        if window_s > 86_400:
            raise ApiError(400, "window for the fleet view is at most 24h")
        limit = _int_param(q, "limit", 20, 1, 1000)
        snap = await _run(service.fleet, window_s, access.visible_sites(request))
        return _json(public_fleet(snap, limit), started=t0)

    async def incidents(request: Request) -> Response:
        t0 = time.perf_counter()
        q = dict(request.query_params)
        state = q.get("state", "open")
        if state not in ("open", "all"):
            raise ApiError(400, f"state must be open or all; got {state!r}")
        window_s = parse_duration_s(q.get("window", "15m"))
        if window_s > 86_400:
            raise ApiError(400, "window is at most 24h")
        snap = await _run(service.fleet, window_s, access.visible_sites(request))
        inc = snap["incidents"]
        return _json({"incidents": inc["open"] + (inc["recent"] if state == "all" else [])}, started=t0)

    async def deliveries(request: Request) -> Response:
        if service.alerts is None:
            return _json({"configured": False, "targets": [], "deliveries": []})
        return _json({"configured": True, **service.alerts.describe()})

    async def test_send(request: Request) -> Response:
        if service.alerts is None:
            raise ApiError(409, "no alert webhooks are configured on this collector")
        target = request.query_params.get("target")
        try:
            sent = service.alerts.test_send(target)
        except KeyError:
            raise ApiError(404, f"no webhook named {target!r}") from None
        except RuntimeError as exc:  # rate limited
            raise ApiError(429, str(exc)) from None
        return _json({"queued": sent}, status=202)

    async def glossary(request: Request) -> Response:
        # The words behind the page's tooltips (docs/glossary.md is the same list).
        from .glossary import glossary as terms
        return _json(terms())

    async def health(request: Request) -> Response:
        return _json({"status": "ok", "api_version": API_VERSION})

    async def openapi(request: Request) -> Response:
        return _json(openapi_document())

    async def prometheus(request: Request) -> Response:
        if access.visible_sites(request) is not None:
            # Ingest and webhook counters span every client; a scrape is the operator's, not a client team's.
            raise ApiError(403, "/metrics spans every site: it needs a key without a site scope")
        body = await _run(metrics)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def page(request: Request) -> Response:
        return _static("index.html")

    async def static(request: Request) -> Response:
        return _static(request.path_params["name"])

    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.message)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            msg = exc.detail if exc.status_code != 404 else f"no such API route: {request.method} {request.url.path}"
            return _error(exc.status_code, msg)
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)

    async def server_error(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after this, and uvicorn logs the traceback once.
        return _error(500, f"internal error: {type(exc).__name__} (see the collector's log)")

    from .access import AccessMiddleware
    from .admin_api import admin_routes

    def who(agent_id: str) -> dict | None:
        try:
            return _agent_brief(service.record(agent_id))
        except ApiError:
            return None

    def search_named(request: Request, person: dict) -> bool:
        """The analyst typed this person's name, host or id, so showing it reveals nothing new.

        Whole words or the whole value only: a search for ``a`` or ``desk`` matches many people
        and names none of them (issue 18, finding 5), so under pseudonymization they stay codes.
        """
        text = request.query_params.get("q", "").strip().casefold()
        words = fold(text).split()
        name = f" {fold(person.get('user') or '')} {fold(person.get('display_name') or '')} "
        return bool(text) and (any(text == (person.get(k) or "").casefold() for k in ("user", "host", "agent_id"))
                               or bool(words) and all(len(w) >= 2 and f" {w} " in name for w in words))

    def resolve(pseudo: str, sites=None) -> str | None:
        store = scoped_store(service.store, sites)
        every = getattr(store, "all_agents", None)
        records = every() if callable(every) else store.find_agents("", 100_000)
        return next((r.info.agent_id for r in records if access.desk_pseudonym(r.info.agent_id) == pseudo), None)

    helpdesk, admin = (lambda ep: access.guard("helpdesk", ep)), (lambda ep: access.guard("admin", ep))
    routes = [
        Route("/api/v1/agents", helpdesk(access.audited_list("agents.search", search, lambda b: b["agents"], search_named)),
              methods=["GET"]),
        Route("/api/v1/agents/{agent_id}", helpdesk(access.audited_lookup("agent.view", agent, who, resolve)), methods=["GET"]),
        Route("/api/v1/agents/{agent_id}/timeline", helpdesk(access.audited_lookup("agent.timeline", timeline, who, resolve)),
              methods=["GET"]),
        Route("/api/v1/agents/{agent_id}/ticket", helpdesk(access.audited_lookup("agent.ticket", ticket, who, resolve)),
              methods=["GET"]),
        Route("/api/v1/fleet", helpdesk(access.audited_list("fleet", fleet, lambda b: b["worst"] + b["silent"],
                                                             lambda r, p: False)), methods=["GET"]),
        Route("/api/v1/incidents", helpdesk(access.audited_list("incidents", incidents, lambda b: [])), methods=["GET"]),
        Route("/api/v1/alerts/deliveries", admin(deliveries), methods=["GET"]),
        Route("/api/v1/alerts/test", admin(test_send), methods=["POST"]),
        *admin_routes(access, service.now_us),
        Route("/api/v1/glossary", helpdesk(glossary), methods=["GET"]),
        Route("/api/v1/health", health, methods=["GET"]),
        Route("/api/v1/openapi.json", openapi, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
        Route("/", page, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
    ]
    if metrics is not None:
        routes.append(Route("/metrics", prometheus if access.metrics_open else helpdesk(prometheus), methods=["GET"]))
    return Starlette(routes=routes, middleware=[Middleware(AccessMiddleware, access=access)],
                     exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: server_error})


def _tz_param(q: dict) -> str | None:
    tz = q.get("tz") or None
    if tz is None:
        return None
    import zoneinfo

    try:
        if len(tz) > 64:
            raise ValueError(tz)
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ApiError(400, f"tz must be an IANA time zone such as Europe/Lisbon; got {tz!r}") from None
    return tz


_STATIC_TYPES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                 "app.css": "text/css; charset=utf-8"}
# Nothing on the page may come from elsewhere: the collector runs on closed networks, and a
# helpdesk page that loads a third-party script would leak who looked up whom.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def _static(name: str) -> Response:
    if name not in _STATIC_TYPES:
        return PlainTextResponse("not found", status_code=404)
    body = (WEB_DIR / name).read_bytes()
    return Response(body, media_type=_STATIC_TYPES[name],
                    headers={"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
                             "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"})


# --- OpenAPI ------------------------------------------------------------------------------------


def _param(name: str, where: str, desc: str, schema: dict | None = None, required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required or where == "path", "description": desc,
            "schema": schema or {"type": "string"}}


_P_AGENT = {**_param("agent_id", "path", "The agent's id, exactly (search first to find it)."), "example": "agent-7f3a"}
_P_RANGE = [
    _param("since", "query", "Start: ISO 8601 (UTC if no zone), epoch seconds, 'now' or an offset like '-24h'."),
    _param("until", "query", "End (exclusive), same forms; default now."),
    _param("window", "query", "Length when since is not given: 900, 15m, 1h, 24h, 7d; default 1h."),
]
_P_POINTS = _param("points", "query", "At most this many buckets per series (the server picks a readable bucket width).",
                   {"type": "integer", "minimum": 10, "maximum": MAX_POINTS, "default": DEFAULT_POINTS})
_P_TZ = _param("tz", "query", "IANA time zone for times in the ticket text (default UTC).")


def _ok(desc: str, schema: dict, media: str = "application/json") -> dict:
    return {"200": {"description": desc, "content": {media: {"schema": schema}}},
            "400": {"$ref": "#/components/responses/BadRequest"}}


def openapi_document() -> dict:
    """OpenAPI 3.1 for /api/v1 (valid per openapi-spec-validator; routes checked by a test)."""
    nullable_num = {"type": ["number", "null"]}
    series = {"type": "array", "items": nullable_num}
    schemas = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["status", "message"],
            "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}}},
        "AgentBrief": {"type": "object", "required": ["agent_id", "user", "host", "site", "last_seen_us"], "properties": {
            "agent_id": {"type": "string"}, "user": {"type": "string"},
            "display_name": {"type": "string", "description": "the user's full name from the desk's directory"},
            "host": {"type": "string"}, "site": {"type": "string"}, "os": {"type": "string"},
            "agent_version": {"type": "string"},
            "first_seen_us": {"type": "integer"}, "last_seen_us": {"type": "integer"}}},
        "Window": {"type": "object", "required": ["since_us", "until_us"], "properties": {
            "since_us": {"type": "integer"}, "until_us": {"type": "integer"}, "seconds": {"type": "integer"}}},
        "Event": {"type": "object", "required": ["kind", "target", "start_us", "severity"], "properties": {
            "id": {"type": "string"}, "kind": {"type": "string"}, "target": {"type": "string"},
            "start_us": {"type": "integer"}, "end_us": {"type": ["integer", "null"]},
            "duration_s": nullable_num, "severity": {"type": "integer", "enum": [1, 2, 3]},
            "evidence": {"type": "string"}}},
        "Headline": {"type": "object", "description": "Score, what was wrong, where and the next step, as one reading "
                     "of the view (score section when present, else the raw figures: source says which).",
                     "properties": {
                         "score": nullable_num, "label": {"type": ["string", "null"]},
                         "score_now": nullable_num, "label_now": {"type": ["string", "null"]},
                         "limiting": {"type": ["string", "null"]}, "domain": {"type": ["string", "null"]},
                         "confidence": {}, "where": {}, "sentence": {"type": ["string", "null"]},
                         "evidence": {"type": "array", "items": {"type": "string"}},
                         "incidents": {"type": "array", "items": {"type": "object"}},
                         "next_step": {"type": "string"}, "source": {"type": "string", "enum": ["score", "figures"]}}},
        "AgentView": {"type": "object", "description": "One agent of the lookup view (cxpulse lookup --json): targets "
                      "(per hop RTT, loss, jitter), apps, voice, device, wifi, paths, events, and score when scored.",
                      "required": ["agent_id", "targets", "events"],
                      "properties": {"agent_id": {"type": "string"}, "targets": {"type": "array"},
                                     "apps": {"type": "array"}, "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                                     "score": {"type": "object"}}, "additionalProperties": True},
        "HopSeries": {"type": "object", "required": ["target", "rtt_avg_ms", "loss_pct", "jitter_ms"], "properties": {
            "target": {"type": "string"}, "hop": {"type": ["integer", "null"]},
            "addresses": {"type": "array", "items": {"type": "string"}},
            "samples": {"type": "array", "items": {"type": "integer"}},
            "rtt_avg_ms": series, "rtt_min_ms": series, "rtt_max_ms": series, "loss_pct": series,
            "jitter_ms": {**series, "description": "mean |change of RTT| between consecutive answered samples"}}},
        "Timeline": {"type": "object", "required": ["start_us", "step_s", "buckets", "hops", "events"],
                     "description": "Bucket i covers [start_us + i*step_s, start_us + (i+1)*step_s); step_s 1 is the raw second.",
                     "properties": {
                         "agent_id": {"type": "string"}, "since_us": {"type": "integer"}, "until_us": {"type": "integer"},
                         "start_us": {"type": "integer"}, "step_s": {"type": "integer"}, "buckets": {"type": "integer"},
                         "hops": {"type": "array", "items": {"$ref": "#/components/schemas/HopSeries"}},
                         "wifi": {"type": ["object", "null"], "properties": {
                             "rssi_avg_dbm": series, "rssi_min_dbm": series, "connected_pct": series}},
                         "score": {"type": "array", "items": {"type": "object", "properties": {
                             "t_us": {"type": "integer"}, "score": {"type": "number"}, "label": {},
                             "limiting": {}}}},
                         "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}},
        "AgentExperience": {"type": "object", "required": ["window", "agent", "headline", "ticket"], "properties": {
            "window": {"$ref": "#/components/schemas/Window"}, "agent": {"$ref": "#/components/schemas/AgentView"},
            "headline": {"$ref": "#/components/schemas/Headline"}, "ticket": {"type": "string"},
            "score_timeline": {"type": "array", "description": "Per-minute scores (empty until scored).",
                               "items": {"type": "object"}},
            "timeline": {"$ref": "#/components/schemas/Timeline"}}},
        "FleetAgent": {"allOf": [{"$ref": "#/components/schemas/AgentBrief"}, {"type": "object", "properties": {
            "score": nullable_num, "label": {"type": "string"}, "limiting": {}, "fault_domain": {}, "fault_label": {}, "sentence": {},
            "next_step": {"type": "string"}, "events": {"type": "integer"}, "loss_pct_max": nullable_num,
            "rtt_p95_ms_max": nullable_num}}]},
        "Fleet": {"type": "object", "required": ["window", "worst", "sites", "apps", "incidents"], "properties": {
            "generated_us": {"type": "integer"}, "took_ms": {"type": "number"},
            "window": {"$ref": "#/components/schemas/Window"},
            "agents_total": {"type": "integer"}, "agents_active": {"type": "integer"},
            "score_available": {"type": "boolean"},
            "worst": {"type": "array", "items": {"$ref": "#/components/schemas/FleetAgent"}},
            "sites": {"type": "array", "items": {"type": "object"}},
            "apps": {"type": "array", "items": {"type": "object"}},
            "incidents": {"type": "object", "properties": {"open": {"type": "array", "items": {"type": "object"}},
                                                            "recent": {"type": "array", "items": {"type": "object"}}}},
            "silent": {"type": "array", "items": {"$ref": "#/components/schemas/AgentBrief"}}}},
    }
    errors = {"BadRequest": {"description": "Bad input; the message says which parameter and what it accepts.",
                             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
              "NotFound": {"description": "No such agent.",
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}

    def with_404(r: dict) -> dict:
        return {**r, "404": {"$ref": "#/components/responses/NotFound"}}

    paths = {
        "/api/v1/agents": {"get": {
            "operationId": "searchAgents", "summary": "Search agents by user, host, agent id or site",
            "description": "Partial and case-insensitive; most recently seen first.",
            "parameters": [_param("q", "query", "Text to look for (empty: all agents).", {"type": "string", "maxLength": 256}),
                           _param("limit", "query", "At most this many.", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50})],
            "responses": _ok("Matching agents", {"type": "object", "required": ["agents"], "properties": {
                "query": {"type": "string"}, "agents": {"type": "array", "items": {"$ref": "#/components/schemas/AgentBrief"}}}})}},
        "/api/v1/agents/{agent_id}": {"get": {
            "operationId": "getAgentExperience", "summary": "One agent's experience over a time range",
            "description": "The lookup view (per hop, apps, voice, device, Wi-Fi, paths, events, score section when "
                           "scored), its headline, the ticket text and the timeline.",
            "parameters": [_P_AGENT, *_P_RANGE, _P_POINTS, _P_TZ,
                           _param("timeline", "query", "Include the timeline (default true).", {"type": "boolean", "default": True})],
            "responses": with_404(_ok("The agent's experience", {"$ref": "#/components/schemas/AgentExperience"}))}},
        "/api/v1/agents/{agent_id}/timeline": {"get": {
            "operationId": "getAgentTimeline", "summary": "Downsampled series for a chart, zoomable to the second",
            "parameters": [_P_AGENT, *_P_RANGE, _P_POINTS],
            "responses": with_404(_ok("Series per bucket", {"$ref": "#/components/schemas/Timeline"}))}},
        "/api/v1/agents/{agent_id}/ticket": {"get": {
            "operationId": "getTicketSummary", "summary": "The ticket summary as plain text",
            "description": "Same text as the page's copy button and `cxpulse lookup`.",
            "parameters": [_P_AGENT, *_P_RANGE, _P_TZ,
                           _param("format", "query", "text (default) or json ({\"text\": ...}).", {"type": "string", "enum": ["text", "json"]})],
            "responses": with_404({"200": {"description": "Ticket text", "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object", "properties": {"text": {"type": "string"}}}}}},
                "400": {"$ref": "#/components/responses/BadRequest"}})}},
        "/api/v1/glossary": {"get": {
            "operationId": "getGlossary", "summary": "Every term the page, ticket and CLI show, in plain words with its unit",
            "description": "The page's tooltips; docs/glossary.md is rendered from the same list.",
            "responses": _ok("Terms, event kinds, places and severities", {"type": "object", "properties": {
                "terms": {"type": "array", "items": {"type": "object"}}, "events": {"type": "array", "items": {"type": "object"}},
                "places": {"type": "array", "items": {"type": "object"}}, "severities": {"type": "array", "items": {"type": "object"}}}})}},
        "/api/v1/fleet": {"get": {
            "operationId": "getFleet", "summary": "Worst agents now, by site, by app, open incidents",
            "parameters": [_param("window", "query", "How far back 'now' looks (default 15m, at most 24h)."),
                           _param("limit", "query", "Worst agents listed.", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20})],
            "responses": _ok("The fleet", {"$ref": "#/components/schemas/Fleet"})}},
        "/api/v1/incidents": {"get": {
            "operationId": "listIncidents", "summary": "Platform and site incidents",
            "parameters": [_param("state", "query", "open (default) or all.", {"type": "string", "enum": ["open", "all"]}),
                           _param("window", "query", "How far back (default 15m, at most 24h).")],
            "responses": _ok("Incidents", {"type": "object", "properties": {"incidents": {"type": "array", "items": {"type": "object"}}}})}},
        "/api/v1/alerts/deliveries": {"get": {
            "operationId": "listAlertDeliveries", "summary": "Webhook targets and the recent delivery log",
            "responses": {"200": {"description": "Delivery log, newest last", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"configured": {"type": "boolean"}, "targets": {"type": "array"},
                                                 "deliveries": {"type": "array"}}}}}}}}},
        "/api/v1/alerts/test": {"post": {
            "operationId": "sendTestAlert", "summary": "Queue a test alert to every webhook (or one)",
            "parameters": [_param("target", "query", "Webhook name (default: all).")],
            "responses": {"202": {"description": "Queued", "content": {"application/json": {"schema": {"type": "object"}}}},
                          "404": {"$ref": "#/components/responses/NotFound"},
                          "409": {"description": "No webhooks configured", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                          "429": {"description": "Test sends are rate limited", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}},
        "/api/v1/health": {"get": {"operationId": "health", "summary": "Liveness",
                                   "responses": {"200": {"description": "Up", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/api/v1/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                         "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics (text exposition format)",
                             "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    }
    # Links: which answer feeds which request (a search's first agent opens its view), for clients and
    # for the stateful fuzz run (tests/web/test_fuzz_api.py) that follows them.
    person_ops = {"OpenView": "getAgentExperience", "OpenTimeline": "getAgentTimeline", "OpenTicket": "getTicketSummary"}
    for path, pointer in (("/api/v1/agents", "/agents/0/agent_id"), ("/api/v1/fleet", "/worst/0/agent_id")):
        paths[path]["get"]["responses"]["200"]["links"] = {
            name: {"operationId": op, "parameters": {"agent_id": f"$response.body#{pointer}"}}
            for name, op in person_ops.items()}
    from .access import OPEN_PATHS
    from .admin_api import admin_openapi_paths

    paths.update(admin_openapi_paths())
    errors["Unauthorized"] = {"description": "No API key, or an unknown or revoked one.",
                              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    errors["Forbidden"] = {"description": "The key's role may not use this route (helpdesk on an admin route).",
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    errors["AuditUnavailable"] = {"description": "The audit log or the key registry cannot be reached: no data.",
                                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path, ops in paths.items():
        for op in ops.values():
            if path in OPEN_PATHS:
                op["security"] = []
                continue
            admin = path.startswith("/api/v1/admin/") or path.startswith("/api/v1/alerts/")
            op["description"] = (op.get("description", "") + "\n\nRole: " + ("admin." if admin else "helpdesk or admin.")).strip()
            op["responses"] = {**op["responses"], "401": {"$ref": "#/components/responses/Unauthorized"},
                               "403": {"$ref": "#/components/responses/Forbidden"},
                               "503": {"$ref": "#/components/responses/AuditUnavailable"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "cxpulse lookup API", "version": API_VERSION,
                 "description": "What a contact-center agent felt on the network, when, and where the fault lies. "
                                "Times are microseconds since the Unix epoch (UTC). Every route but health and this "
                                "document needs an API key (roles helpdesk and admin); every lookup of a person is "
                                "written to the audit log. See docs/api.md."},
        "paths": paths,
        "security": [{"bearerKey": []}, {"headerKey": []}],
        "components": {"schemas": schemas, "responses": errors, "securitySchemes": {
            "bearerKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
            "headerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
    }


def dumps(obj) -> str:
    """JSON as the API writes it (used by tests and the CLI)."""
    return json.dumps(obj, separators=(",", ":"))
