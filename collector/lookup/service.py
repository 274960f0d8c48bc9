"""What the lookup routes call: synchronous, thread-safe reads over one store, briefly cached.
Each view, timeline, ticket and fleet is computed once per few seconds and site scope.
Design notes: docs/collector-internals.md, "collector/lookup/service.py".
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ..store import AgentRecord, Store
from .chart import chart, event_dict, score_points
from .fleet import agent_brief, fleet
from .links import view_url
from .params import ApiError
from .report import build_for
from .scope import scope_key, scoped_store
from .ticket import headline, ticket_summary

__all__ = ["LookupService"]

S = 1_000_000


class TtlCache:
    """A small LRU with expiry."""

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
    """Reads for the routes, the alerts and /metrics.

    ``stats`` is the ingest service's IngestStats (for /metrics), ``alerts`` an
    ``cxpulse.collector.alerts.Alerter`` (deliveries, test-send), ``now_us`` a clock for tests.

    Every read takes ``sites``: the caller's site scope (``Access.visible_sites``), None for
    every site. It goes to ``scope.scoped_store`` and nowhere else: what is out of scope is never
    read, so no answer can carry it (issue 18).
    """

    def __init__(
        self,
        store: Store,
        *,
        stats=None,
        alerts=None,
        now_us: Callable[[], int] | None = None,
        view_ttl_s: float = 30.0,
        fleet_ttl_s: float = 20.0,
        public_url: str = "",
    ):
        self.store = store
        self.stats = stats
        self.alerts = alerts
        self.now_us = now_us or (lambda: time.time_ns() // 1000)
        self.public_url = public_url
        self._views = TtlCache(view_ttl_s, 64)
        self._fleets = TtlCache(fleet_ttl_s, 32)  # (window, site scope)
        self._fleet_lock = threading.Lock()
        self.fleet_seconds = 0.0
        # The chart from the store's own bucket sums where it has them (tests turn it off to compare).
        self.bucket_sums = True

    # - agents -

    def search(self, q: str, limit: int, sites=None) -> list[dict]:
        return [agent_brief(a) for a in scoped_store(self.store, sites).find_agents(q, limit)]

    def record(self, agent_id: str, sites=None) -> AgentRecord:
        """The agent, or 404; a desk outside ``sites`` gets the very same 404 as one that does not exist."""
        a = scoped_store(self.store, sites).agent(agent_id)
        if a is not None:
            return a
        raise ApiError(404, f"no agent with id {agent_id!r} (search with /api/v1/agents?q=...)")

    def brief(self, agent_id: str) -> dict | None:
        """The agent as a search result, or None when there is none (the audit log's subject)."""
        try:
            return agent_brief(self.record(agent_id))
        except ApiError:
            return None

    def view(self, agent_id: str, since: int, until: int, sites=None) -> dict:
        """One agent's section of the lookup view (``report.build``) over [since, until)."""
        key = (agent_id, since, until, scope_key(sites))
        hit = self._views.get(key)
        if hit is not None:
            return hit
        v = build_for(
            scoped_store(self.store, sites),
            [self.record(agent_id, sites)],
            agent_id,
            (until - since) // S,
            until,
            visible_sites=sites,
        )
        out = {"window": v["window"], "agent": v["agents"][0]}
        self._views.put(key, out)
        return out

    def timeline(self, agent_id: str, since: int, until: int, points: int, sites=None) -> dict:
        """Per-bucket RTT (avg/min/max), loss and jitter per hop, Wi-Fi RSSI, and the events."""
        rec = self.record(agent_id, sites)
        series = chart(self.store, rec.key, since, until, points, aggregate=self.bucket_sums)
        cached = self._views.get((agent_id, since, until, scope_key(sites)))
        return {
            "agent_id": agent_id,
            "since_us": since,
            "until_us": until,
            **series,
            "score": score_points(cached["agent"]) if cached else [],
            "events": [event_dict(e) for e in self.store.events(rec.key, since, until)],
        }

    def agent(
        self, agent_id: str, since: int, until: int, points: int, with_timeline: bool, tz: str | None, sites=None
    ) -> dict:
        v = self.view(agent_id, since, until, sites)
        a = v["agent"]
        out = {
            "window": v["window"],
            "agent": a,
            "headline": headline(a),
            "ticket": ticket_summary(a, v["window"], tz=tz, link=self.view_link(agent_id, since, until, tz)),
            "score_timeline": score_points(a),
        }
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
            snap = fleet(scoped_store(self.store, sites), window_s, now)
            took = time.perf_counter() - t0
            if sites is None:
                self.fleet_seconds = took
            snap["took_ms"] = round(took * 1000, 1)
            self._fleets.put(key, snap)
            return snap
