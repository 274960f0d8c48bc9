"""Triage and incident detection against scenarios with a known fault (collector/score/scenarios.py).

Each scenario (two branch sites and four home agents, 30 minutes at the agent's real rates;
the clean day 60) is committed through the real store, SQLite and (with CXPULSE_TEST_POSTGRES)
PostgreSQL, with incident detection once a minute while the data arrives. Then: every degraded
window that a fault explains gets that fault's domain (at least 95% of them: with a handful per
scenario, all of them), every injected fault degrades the score somewhere, every platform or
site incident is opened within 2 minutes of the fault beginning and holds the affected agents,
nothing else is opened, a clean day opens no incident at all, and the verdict of a desk inside
an incident names it. ``tests/bench/triage_confusion.py`` prints the confusion matrix.
"""

from __future__ import annotations

import functools
import os

import pytest

from cxpulse.collector.score import scenarios as scn
from cxpulse.collector.store import open_store
from tests.bench.triage_confusion import evaluate
from tests.stores import fresh_schema, postgres_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]  # every scenario day scored: minutes of CPU
CASES = [(name, backend) for name in scn.SCENARIOS for backend in ("sqlite", "postgres")]


@functools.lru_cache(maxsize=1)
def generated(name: str) -> tuple[scn.Scenario, list]:
    """Made once for both backends (the cases run in this order): generating is half the time."""
    sc = scn.build(name, seed=1)
    return sc, list(sc.ticks())


@pytest.mark.parametrize(("name", "backend"), CASES, ids=[f"{b}-{n}" for n, b in CASES])
def test_scenario(name, backend, tmp_path):
    if backend == "sqlite":
        st = open_store(os.path.join(tmp_path, "c.sqlite"))
        try:
            check(st, name)
        finally:
            st.close()
        return
    with fresh_schema(postgres_url()) as (_, url):
        st = open_store(url)
        try:
            check(st, name)
        finally:
            st.close()


def check(store, name: str) -> None:
    sc, ticks = generated(name)
    r = evaluate(store, sc, ticks=ticks)
    faulty = [w for w in r.windows if w.truth != "none"]
    wrong = [(w.agent, w.truth, w.domain, w.evidence) for w in faulty if w.truth != w.domain]
    assert len(faulty) - len(wrong) >= 0.95 * len(faulty), wrong
    assert not r.missed, f"faults that never degraded the score: {r.missed}"
    keys = {a.info.agent_id: a.key for a in store.all_agents()}
    for f in r.found:
        assert f.incident is not None, f"{f.expected.kind} incident {f.expected.scope} not detected"
        assert f.latency_s <= 120, f"{f.expected.scope} opened {f.latency_s:.0f} s after the fault began"
        assert {keys[a] for a in f.expected.agents} <= set(f.incident.agents)
        assert f.incident.end_us is not None, "the incident did not close after the fault ended"
    expected_ids = {f.incident.id for f in r.found}
    assert [i for i in r.incidents if i.id not in expected_ids] == [], "incidents opened without a cause"
    if name == "clean_day":
        assert r.incidents == [] and faulty == []
    in_incident = {a for f in r.found for a in f.expected.agents}
    for w in faulty:
        if w.agent in in_incident and w.truth == w.domain:
            assert "part of incident" in w.evidence and w.incident is not None, w.evidence


def test_scenario_table(tmp_path, capsys):
    """Every scenario through SQLite and the lookup service: the first faulted desk's verdict as a
    table (docs/triage.md keeps it). The place must be the injected fault's, the ticket's "Where"
    and "Next step" the verdict's. Run with ``-s`` to read the table."""
    from cxpulse.collector.lookup.service import LookupService

    rows = ["| scenario | desk | injected | verdict: where | confidence | next step |", "|---|---|---|---|---|---|"]
    for name in scn.SCENARIOS:
        sc, ticks = generated(name)
        st = open_store(os.path.join(tmp_path, f"{name}.sqlite"))
        try:
            evaluate(st, sc, ticks=ticks)
            desk = sc.faults[0].agents[0] if sc.faults else "lis-1"
            svc = LookupService(st, now_us=lambda: sc.end_us)  # noqa: B023 - used in this turn only
            page = svc.agent(desk, sc.t0_us, sc.end_us, 60, False, None)
        finally:
            st.close()
        hl, text = page["headline"], page["ticket"]
        truth = sc.faults[0].domain if sc.faults else None
        assert hl["domain"] == truth, (name, hl)
        assert f"Next step: {hl['next_step']}" in text and (truth is None or f"Where: {hl['domain_label']}" in text), (
            text
        )
        conf = "-" if hl["confidence"] is None else f"{hl['confidence']:.0%}"
        rows.append(
            f"| {name} | {desk} | {truth or 'none'} | {hl['domain_label'] or 'nothing wrong'} | {conf} | "
            f"{hl['next_step']} |"
        )
    with capsys.disabled():
        print("\n" + "\n".join(rows))
