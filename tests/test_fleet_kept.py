"""The fleet from kept per-minute facts answers what the whole views answer (issue 19).

``fleet.kept_views`` reads each minute's loss, RTT and app-time facts kept beside its score
instead of merging every agent's window; ``report.fleet_views`` builds each agent's whole view.
Both stores: the same snapshot with nothing kept, with every minute kept, after a late batch.
"""

from __future__ import annotations

import json
import random

import msgpack

from cxpulse.collector.lookup.fleet import fleet
from cxpulse.collector.lookup.report import fleet_views
from cxpulse.collector.score.kept import keep_recent
from cxpulse.collector.store import AgentInfo, PendingBatch
from cxpulse.collector.store import rollup as ru
from cxpulse.v1 import payload as p
from tests.web.scenario import fill_day, fill_fleet

S = 1_000_000
END = 1_790_000_040 * S // (60 * S) * (60 * S)  # a minute boundary
WINDOW_S = 900
APP_DOWN = AgentInfo("agent-0004", "DESK-104", "eva.lima", "Windows 11", "0.1.0", "Porto")


def _fill(store) -> None:
    """The scenario's fleet, an hour of one desk, and a desk whose app fails for two minutes."""
    fill_fleet(store, END, minutes=20)
    fill_day(store, start_us=END - 3600 * S, seconds=3600)
    rnd = random.Random(4)
    key = store.upsert_agent(APP_DOWN, END)
    gw = p.Series(target="gateway", address="10.1.0.1", method="icmp_raw", hop=1)
    app = p.Series(target="salesforce", address="203.0.113.20", method="https", kind="http")
    for i in range(20 * 60):
        ts = END - 20 * 60 * S + i * S
        gw.add(ts, 1500 + rnd.randrange(0, 3000))
        if i % 20 == 0:
            failing = 300 <= i < 420
            app.add(
                ts,
                dns=2000,
                tcp=20000,
                tls=40000,
                ttfb=None if failing else 150_000 + rnd.randrange(0, 90_000),
                total=None if failing else 200_000 + rnd.randrange(0, 90_000),
                status=None if failing else 200,
                ver="HTTP/2",
                cert=80,
                err="timeout" if failing else None,
            )
    store.commit_batches([PendingBatch(key, 1, 1, p.SampleBatch([gw, app], [], []))])


def _unpack(data: bytes) -> dict:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _same(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def test_kept_facts_give_the_whole_views_answer(store):
    _fill(store)
    cold = fleet(store, WINDOW_S, END)  # nothing kept: every minute's facts from its rollups
    reference = fleet(store, WINDOW_S, END, views=fleet_views)
    assert reference["agents_active"] == 5 and reference["apps"], "the scenario has agents and apps in the window"
    assert any(x["loss_pct_max"] for x in reference["worst"]), "and loss to carry through the facts"
    assert _same(cold, reference)
    rows = store.kept_scores(ru.minute_of(END - WINDOW_S * S), END, None)
    assert len(rows) >= 5 * 15, "the fleet kept every agent's minute scores"
    assert all(isinstance(_unpack(data)["f"], bytes) for _, data in rows.values())
    warm = fleet(store, WINDOW_S, END)  # every minute kept: its facts read, nothing merged
    assert _same(warm, reference)


def test_the_fleet_reads_the_kept_facts_and_a_late_batch_replaces_them(store):
    _fill(store)
    clean = store.agent("agent-0001")  # no degraded minute: its row comes from the facts alone
    key = clean.key
    since = ru.minute_of(END - WINDOW_S * S)
    keep_recent(store, since, END)  # as the collector's loop keeps them
    minute = END - 5 * 60 * S
    digest, data = store.kept_scores(since, END, key)[(key, minute)]
    d = _unpack(data)
    facts = msgpack.unpackb(d["f"], raw=False)
    gateway = next(f for f in facts if f[:2] == ["rtt", "gateway"])
    assert gateway[3] == 0, "the desk lost nothing in that minute"
    gateway[3] = gateway[2]  # a kept fact says every sample was lost: the fleet must show it
    d["f"] = msgpack.packb(facts, use_bin_type=True)
    store.keep_scores([(key, minute, digest, msgpack.packb(d, use_bin_type=True))])
    row = next(x for x in fleet(store, WINDOW_S, END)["worst"] if x["agent_id"] == clean.info.agent_id)
    assert row["loss_pct_max"] > 0, "the fleet read the kept facts, not the rollups"

    late = p.Series(target="gateway", address="10.1.0.1", method="icmp_raw", hop=1)
    for i in range(10):  # a late batch into that minute: its digest changes, the kept row is stale
        late.add(minute + i * S + 500_000, None)
    store.commit_batches([PendingBatch(key, 1, 2, p.SampleBatch([late], [], []))])
    reference = fleet(store, WINDOW_S, END, views=fleet_views)
    row = next(x for x in reference["worst"] if x["agent_id"] == clean.info.agent_id)
    assert 0 < row["loss_pct_max"] < 100
    assert _same(fleet(store, WINDOW_S, END), reference)
