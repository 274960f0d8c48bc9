"""Site scopes: a key that sees some sites reads the store through a view holding only their desks.
``scoped_store`` wraps the store once, so every view on it is in-scope only; incidents keep only in-scope desks.
Design notes: docs/collector-internals.md, "collector/lookup/scope.py".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable

__all__ = ["ScopedStore", "scope_key", "scoped_store"]

Sites = frozenset[str] | None

_TYPICAL = re.compile(r"; typical: ([^;]*)")
_ELSEWHERE = re.compile(r"; elsewhere \d+ of \d+")
_TRAILER = re.compile(r"; \d\d:\d\d-\d\d:\d\d(?: UTC)?, \d+ agents$")


def scope_key(sites: Sites) -> tuple[str, ...] | None:
    """A hashable, order-free key for caches: None (every site) or the sorted sites."""
    return None if sites is None else tuple(sorted(sites))


def scoped_store(store, sites: Sites):
    """The store itself for every site (None), else a ``ScopedStore`` over ``sites``."""
    return store if sites is None else ScopedStore(store, sites)


def _hhmm(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%H:%M")


class ScopedStore:
    """A read view of a store restricted to the desks of some sites.

    Reads by agent key answer nothing for a desk outside the scope (a key reaches these methods
    only through ``agent``/``find_agents``, which already hide such desks; this is the second
    lock). Methods not named here (writes of kept scores, ``close``) pass through unchanged.
    A desk without a site is outside every scope. One instance serves one request: the set of
    in-scope keys is read once, on first use.
    """

    def __init__(self, store, sites: Iterable[str]):
        self._store = store
        self.sites = frozenset(sites)
        self._keys: frozenset[int] | None = None

    def __getattr__(self, name):
        return getattr(self._store, name)

    # - which desks -

    def _visible(self, record) -> bool:
        return record is not None and (record.info.site or "") in self.sites

    def keys(self) -> frozenset[int]:
        if self._keys is None:
            self._keys = frozenset(r.key for r in self._store.all_agents() if self._visible(r))
        return self._keys

    def all_agents(self):
        return [r for r in self._store.all_agents() if self._visible(r)]

    def find_agents(self, query: str, limit: int = 50):
        # Filter before the limit: 50 matches elsewhere must not hide the one match here.
        found = [r for r in self._store.find_agents(query, 100_000) if self._visible(r)]
        return found[: max(0, limit)]

    def agent(self, agent_id: str):
        r = self._store.agent(agent_id)
        return r if self._visible(r) else None

    # - one desk's data -

    def _mine(self, agent_key) -> bool:
        return agent_key in self.keys()

    def rtt_rows(self, agent_key, since_us, until_us):
        return self._store.rtt_rows(agent_key, since_us, until_us) if self._mine(agent_key) else []

    def rows(self, agent_key, kind, since_us, until_us):
        return self._store.rows(agent_key, kind, since_us, until_us) if self._mine(agent_key) else []

    def events(self, agent_key, since_us, until_us):
        return self._store.events(agent_key, since_us, until_us) if self._mine(agent_key) else []

    def events_of(self, agent_keys, since_us, until_us):
        return self._store.events_of([k for k in agent_keys if self._mine(k)], since_us, until_us)

    def paths(self, agent_key, since_us, until_us):
        return self._store.paths(agent_key, since_us, until_us) if self._mine(agent_key) else []

    def user_changes(self, agent_key, since_us, until_us):
        return self._store.user_changes(agent_key, since_us, until_us) if self._mine(agent_key) else []

    def series_methods(self, agent_key, kind):
        return self._store.series_methods(agent_key, kind) if self._mine(agent_key) else {}

    def sample_count(self, agent_key=None):
        if agent_key is None:
            return sum(self._store.sample_count(k) for k in self.keys())
        return self._store.sample_count(agent_key) if self._mine(agent_key) else 0

    def buckets(self, agent_key, since_us, until_us, start_us, step_us):
        if not self._mine(agent_key):
            return [], []
        return self._store.buckets(agent_key, since_us, until_us, start_us, step_us)

    # - across desks -

    def rollups(self, since_us, until_us, agent_key=None, kinds=None):
        if agent_key is not None:
            return self._store.rollups(since_us, until_us, agent_key, kinds=kinds) if self._mine(agent_key) else []
        keys = self.keys()
        return [r for r in self._store.rollups(since_us, until_us, kinds=kinds) if r.agent in keys]

    def kept_scores(self, since_us, until_us, agent_key=None):
        if agent_key is not None and not self._mine(agent_key):
            return {}
        got = self._store.kept_scores(since_us, until_us, agent_key)
        return got if agent_key is not None else {k: v for k, v in got.items() if k[0] in self.keys()}

    def late_writes(self, since_us, until_us, agent_key=None):
        if agent_key is not None and not self._mine(agent_key):
            return []
        keys = self.keys()
        return [w for w in self._store.late_writes(since_us, until_us, agent_key) if w.agent in keys]

    def kept_merges(self, since_us, until_us, agent_key=None):
        if agent_key is not None and not self._mine(agent_key):
            return {}
        got = self._store.kept_merges(since_us, until_us, agent_key)
        return got if agent_key is not None else {k: v for k, v in got.items() if k[0] in self.keys()}

    def kept_hour_merges(self, since_us, until_us, agent_key=None):
        if agent_key is not None and not self._mine(agent_key):
            return {}
        got = self._store.kept_hour_merges(since_us, until_us, agent_key)
        return got if agent_key is not None else {k: v for k, v in got.items() if k[0] in self.keys()}

    def incidents(self, since_us, until_us, agent_key=None):
        if agent_key is not None and not self._mine(agent_key):
            return []
        out = []
        for inc in self._store.incidents(since_us, until_us, agent_key):
            scoped = self.scope_incident(inc)
            if scoped is not None:
                out.append(scoped)
        return out

    def scope_incident(self, inc):
        """The incident as this scope may see it, or None when none of its desks is in scope."""
        keys = self.keys()
        if inc.kind == "site" and inc.scope not in self.sites:
            return None
        agents = {k: v for k, v in (inc.agents or {}).items() if k in keys}
        if not agents:
            return None
        n = len(agents)
        trailer = f"; {_hhmm(inc.start_us)}-{_hhmm(inc.last_us)} UTC, {n} agents"
        if inc.kind == "site":
            # The site's own figures stay; how many desks elsewhere were bad is other clients' data.
            evidence = _TRAILER.sub("", _ELSEWHERE.sub("", inc.evidence or "")) + trailer
        else:
            mine = sorted({r.info.site for r in self.all_agents() if r.key in agents})
            typical = _TYPICAL.search(inc.evidence or "")
            evidence = (
                f"{inc.scope} failing for {n} agents of {', '.join(mine)} with a clean path"
                + (f"; typical: {typical.group(1)}" if typical else "")
                + trailer
            )
        return dataclasses.replace(inc, agents=agents, evidence=evidence)
