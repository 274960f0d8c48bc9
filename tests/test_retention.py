"""Per-kind retention: each raw data kind is cut at its own age, rollups stay; both stores.

PostgreSQL runs with CXPULSE_TEST_POSTGRES (as test_store), skipped otherwise.
"""

from __future__ import annotations

import asyncio

import pytest

from cxpulse.collector.jobs.retention import RAW_KINDS, enforce_once, raw_horizons
from cxpulse.collector.store import AgentInfo, PendingBatch
from cxpulse.v1 import payload as p
from tests.test_rollups import T0, rich_batch

S = 1_000_000
DAY = 86_400 * S
FAR = 2**62
HORIZONS = {"device": 1, "rtt": 2, "wifi": 3, "http": 4, "events": 5, "voice": 6, "paths": 7}


def counts(store, k: int) -> dict[str, int]:
    out = {kind: len(store.rows(k, kind, 0, FAR)) for kind in ("rtt", "http", "voice", "device", "wifi")}
    out["events"] = len(store.events(k, 0, FAR))
    out["paths"] = len(store.paths(k, 0, FAR))
    return out


def test_each_kind_is_cut_at_its_own_age(store):
    k = store.upsert_agent(AgentInfo("retained"), 1)
    b = rich_batch(5)
    b.events.append(p.Event("e1", "loss_burst", "isp", T0 + 5 * S, T0 + 9 * S, 2, "4 lost"))
    b.paths.append(p.PathSnapshot("crm", "10.9.9.9", T0 + 2 * S, "icmp", True, [p.PathHop(1, "10.0.0.1", 900)]))
    store.commit_batches([PendingBatch(k, 1, 1, b)])
    start = counts(store, k)
    assert all(start[kind] > 0 for kind in RAW_KINDS), start
    rollups = len(store.rollups(0, FAR, k))
    assert rollups > 0

    def run(days_after: float) -> dict[str, int]:
        r = asyncio.run(enforce_once(store, HORIZONS, 400, now_us=T0 + round(days_after * DAY), chunk=50, pause_s=0))
        now = counts(store, k)
        assert r.raw_deleted == sum(r.by_kind.values())
        return now

    seen = run(0.5)
    assert seen == start  # nothing is old enough yet
    for after in (1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5):
        seen = run(after)
        for kind, days in HORIZONS.items():
            assert (seen[kind] == 0) == (days < after), (after, kind, seen)
            if days > after:
                assert seen[kind] == start[kind], (after, kind)
    assert len(store.rollups(0, FAR, k)) == rollups  # the scores over any window stay


def test_horizons_default_per_kind_and_refuse_nonsense():
    assert raw_horizons({"device": 2})["device"] == 2 and raw_horizons({"device": 2})["rtt"] == 7
    assert set(raw_horizons(3).values()) == {3}
    with pytest.raises(ValueError, match="unknown data kind"):
        raw_horizons({"cookies": 1})
    with pytest.raises(ValueError, match="at least as long"):
        asyncio.run(enforce_once(None, {"events": 500}, 400))
    with pytest.raises(ValueError, match="positive"):
        asyncio.run(enforce_once(None, {"wifi": 0}, 400))
