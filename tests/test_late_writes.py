"""Late writes leave a mark in their commit (store/late_writes.py), on both stores (issue 19).

A kept minute score can only be trusted without re-reading its rollups if every write into a
settled minute says so: a live commit leaves no mark, a late one marks exactly its late minutes,
a mark is forgotten by id only (ids never come back), retention removes marks of minutes gone, and
a site scope sees only its own desks' marks.
"""

from __future__ import annotations

import pytest

from cxpulse.collector.lookup.scope import scoped_store
from cxpulse.collector.store import AgentInfo, PendingBatch
from cxpulse.collector.store import rollup as ru
from cxpulse.collector.store.late_writes import LATE_AFTER_US, TRUST_AFTER_US, late_ranges
from cxpulse.v1 import payload as p

S = 1_000_000
M = ru.MINUTE_US
T0 = 1_790_000_000 * S // M * M  # a minute boundary
LISBON = AgentInfo("agent-lx", "DESK-1", "ana", "Windows 11", "0.1.0", "Lisbon")
PORTO = AgentInfo("agent-po", "DESK-2", "rui", "Windows 11", "0.1.0", "Porto")


def _commit(store, key: int, seq: int, stamps: list[int], now_us: int) -> None:
    gw = p.Series(target="gateway", address="10.0.0.1", method="icmp_raw", hop=1)
    for ts in stamps:
        gw.add(ts, 2_000)
    store.commit_batches([PendingBatch(key, 1, seq, p.SampleBatch([gw], [], []))], now_us)


def _marks(store, agent=None) -> list[tuple[int, int, int]]:
    return [(w.agent, w.lo_us, w.hi_us) for w in store.late_writes(0, 2**62, agent)]


def test_late_ranges_threshold():
    """Late: the minute ended LATE_AFTER_US or more before the commit's clock; only late minutes."""
    end = T0 + M  # minute T0 ends here
    assert late_ranges([(7, T0, "rtt")], end + LATE_AFTER_US) == [(7, T0, T0, end + LATE_AFTER_US)]
    assert late_ranges([(7, T0, "rtt")], end + LATE_AFTER_US - 1) == []
    rows = [(7, T0 - 2 * M, "rtt"), (7, T0, "http"), (7, T0 + M, "rtt"), (8, T0 + M, "rtt")]
    assert late_ranges(rows, end + LATE_AFTER_US) == [(7, T0 - 2 * M, T0, end + LATE_AFTER_US)]
    assert late_ranges([], end) == []
    assert TRUST_AFTER_US > LATE_AFTER_US  # a commit between a reader's read and its write is always late


def test_a_live_commit_leaves_no_mark(store):
    key = store.upsert_agent(LISBON, T0)
    # a 30 s batch that queued: its first minute ended 59 s before the commit
    _commit(store, key, 1, [T0 + i * S for i in range(50, 80, 5)], T0 + 119 * S)
    assert _marks(store) == []
    assert store.rollups(T0, T0 + 2 * M, key), "the commit wrote its rollups"


def test_a_late_commit_marks_its_late_minutes(store):
    key = store.upsert_agent(LISBON, T0)
    now = T0 + 30 * M
    # a spool replayed after an outage: minutes 0-2 late, and minute 29 (now's minute - 1, 0 s old) live
    _commit(store, key, 1, [T0 + 5 * S, T0 + M + 5 * S, T0 + 2 * M + 5 * S, T0 + 29 * M + 50 * S], now)
    assert _marks(store) == [(key, T0, T0 + 2 * M)]
    # a mark is found by any window that overlaps it, and not outside
    assert _marks(store, key) == [(key, T0, T0 + 2 * M)]
    assert store.late_writes(T0 + 2 * M, T0 + 3 * M) and not store.late_writes(T0 + 3 * M, T0 + 9 * M)
    assert not store.late_writes(T0 - 5 * M, T0)


def test_marks_are_forgotten_by_id_and_ids_never_come_back(store):
    key = store.upsert_agent(LISBON, T0)
    _commit(store, key, 1, [T0 + 5 * S], T0 + 10 * M)
    _commit(store, key, 2, [T0 + M + 5 * S], T0 + 10 * M)
    first, second = store.late_writes(0, 2**62)
    assert second.id > first.id
    store.forget_late_writes([second.id])  # the newest: an id a rowid table would hand out again
    assert [w.id for w in store.late_writes(0, 2**62)] == [first.id]
    _commit(store, key, 3, [T0 + 2 * M + 5 * S], T0 + 10 * M)
    ids = [w.id for w in store.late_writes(0, 2**62)]
    assert ids[0] == first.id and ids[1] > second.id
    store.forget_late_writes([])  # nothing to forget: no write at all
    assert len(store.late_writes(0, 2**62)) == 2


def test_retention_removes_marks_of_minutes_gone(store):
    key = store.upsert_agent(LISBON, T0)
    _commit(store, key, 1, [T0 + 5 * S], T0 + 300 * M)
    _commit(store, key, 2, [T0 + 200 * M + 5 * S], T0 + 300 * M)
    cutoff = T0 + 100 * M  # the first mark ended more than an hour before it, the second did not
    for _ in range(100):
        if not store.delete_rollups_before(cutoff, 1_000):
            break
    else:
        pytest.fail("retention did not finish within 100 steps")
    assert _marks(store) == [(key, T0 + 200 * M, T0 + 200 * M)]


def test_a_site_scope_sees_its_own_desks_marks_only(store):
    lx, po = store.upsert_agent(LISBON, T0), store.upsert_agent(PORTO, T0)
    _commit(store, lx, 1, [T0 + 5 * S], T0 + 10 * M)
    _commit(store, po, 1, [T0 + 5 * S], T0 + 10 * M)
    porto = scoped_store(store, ["Porto"])
    assert [w.agent for w in porto.late_writes(0, 2**62)] == [po]
    assert porto.late_writes(0, 2**62, lx) == []
    assert len(store.late_writes(0, 2**62)) == 2
