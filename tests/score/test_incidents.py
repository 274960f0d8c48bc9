"""Incident bookkeeping: open at the first qualifying minute, grow, close after a quiet lookback."""

from __future__ import annotations

from cxpulse.collector.score.incidents import IncidentConfig, Observation, reconcile
from cxpulse.collector.store import IncidentRecord

M = 60_000_000
T0 = 1_790_000_040_000_000


def test_open_grow_and_close():
    cfg = IncidentConfig(lookback_minutes=5)
    first = reconcile([], [Observation("platform", "crm", T0, {1, 2, 3}, "crm failing")], T0 + 30_000_000, cfg)
    (inc,) = first
    assert inc.id is None and (inc.start_us, inc.last_us, inc.end_us) == (T0, T0 + M, None)
    assert inc.detected_us == T0 + 30_000_000 and set(inc.agents) == {1, 2, 3}
    inc.id = 7
    grown = reconcile([inc], [Observation("platform", "crm", T0 + M, {3, 4}, "crm failing")], T0 + 90_000_000, cfg)
    assert grown == [inc] and inc.last_us == T0 + 2 * M and inc.agents[4] == (T0 + M, T0 + 2 * M)
    assert inc.agents[1] == (T0, T0 + M)
    assert reconcile([inc], [], T0 + 5 * M, cfg) == []  # quiet, but still within the lookback
    (closed,) = reconcile([inc], [], T0 + 7 * M + 1, cfg)
    assert closed.end_us == T0 + 2 * M


def test_late_data_moves_the_start_back_and_kinds_stay_apart():
    cfg = IncidentConfig()
    inc = IncidentRecord(3, "site", "Porto", T0 + M, T0 + 2 * M, None, T0 + M, "", {5: (T0 + M, T0 + 2 * M)})
    out = reconcile(
        [inc],
        [Observation("site", "Porto", T0, {6}, "x"), Observation("platform", "Porto", T0, {6}, "y")],
        T0 + 2 * M,
        cfg,
    )
    assert inc.start_us == T0 and len(out) == 2 and {o.kind for o in out} == {"site", "platform"}
