"""Kept minute scores trusted without hashing their rollups (score/kept.py, store/late_writes.py).

A kept row is read without re-hashing its minute's rollups only when it was scored from rollups
read two minutes after the minute ended, and no late write has marked the minute since. Each test
compares the timeline read that way with the one computed from the rollups alone (byte-identical
JSON), on both stores, including the race the marks exist for: a reader that read the rollups just
before a late commit and kept its (stale) score just after it.
"""

from __future__ import annotations

import json
import random

import msgpack

from cxpulse.collector.score.kept import KeptScores, keep_recent
from cxpulse.collector.score.timeline import agent_timeline, app_history, timeline_of
from cxpulse.collector.store import AgentInfo, PendingBatch, tiers
from cxpulse.collector.store import rollup as ru
from cxpulse.v1 import payload as p

S = 1_000_000
M = ru.MINUTE_US
T0 = 1_790_000_000 * S // M * M
MINUTES = 30
END = T0 + MINUTES * M
DESK = AgentInfo("agent-trust", "DESK-7", "ana", "Windows 11", "0.1.0", "Lisbon")


def _batch(t0: int, t1: int, rnd: random.Random, loss: bool = False) -> p.SampleBatch:
    gw = p.Series(target="gateway", address="10.0.0.1", method="icmp_raw", hop=1)
    app = p.Series(target="salesforce", address="203.0.113.20", method="https", kind="http")
    for ts in range(t0, t1, S):
        gw.add(ts, None if loss and ts % 3 else 2_000 + rnd.randrange(0, 4_000))
        if ts % (20 * S) == 0:
            app.add(ts, dns=2000, tcp=20000, tls=40000, ttfb=150_000, total=200_000, status=200, ver="HTTP/2", cert=80)
    return p.SampleBatch([gw, app], [], [])


def _live(store) -> int:
    """Half an hour of a desk sent live: 30 s batches, each committed a second after it ends."""
    key = store.upsert_agent(DESK, T0)
    rnd = random.Random(7)
    for i in range(MINUTES * 2):
        t0 = T0 + i * 30 * S
        store.commit_batches([PendingBatch(key, 1, i + 1, _batch(t0, t0 + 30 * S, rnd))], t0 + 31 * S)
    assert store.late_writes(0, 2**62) == [], "a live desk leaves no mark"
    return key


def _late(store, key: int, seq: int) -> None:
    """A spool replayed after an outage: minute 10 again, with loss, committed at the window's end."""
    t0 = T0 + 10 * M
    store.commit_batches([PendingBatch(key, 2, seq, _batch(t0, t0 + 30 * S, random.Random(3), loss=True))], END + S)


def _json(tl) -> str:
    return json.dumps(tl.to_dict(), sort_keys=True)


def _scratch(store, key: int, until: int = END) -> str:
    return _json(agent_timeline(store, key, T0, until))  # nothing kept read, nothing written


def _trusting(store, key: int, until: int = END):
    kept = KeptScores(store, T0, until, key, trust=True)
    tl = agent_timeline(store, key, T0, until, kept=kept)
    kept.collect(key, tl.minutes)
    kept.flush()
    return tl


def _hashes(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = ru.own_digest

    def counting(rollups):
        calls.append(1)
        return real(rollups)

    monkeypatch.setattr(ru, "own_digest", counting)
    return calls


def _row(store, key: int, minute: int) -> dict:
    return msgpack.unpackb(store.kept_scores(minute, minute + M, key)[(key, minute)][1], raw=False)


def test_a_settled_kept_minute_is_read_without_hashing(store, monkeypatch):
    key = _live(store)
    keep_recent(store, T0, END, agent=key)
    assert "v" in _row(store, key, END - 3 * M), "ended 2 minutes before the read: trusted"
    assert "v" not in _row(store, key, END - 2 * M), "ended under 2 minutes before: not yet"
    calls = _hashes(monkeypatch)
    assert _json(_trusting(store, key)) == _scratch(store, key)
    trusting = len(calls)
    agent_timeline(store, key, T0, END, kept=KeptScores(store, T0, END, key))  # validates every minute by digest
    hashing = len(calls) - trusting
    assert hashing >= MINUTES, "each minute (and its app look-back) hashed"
    assert 0 < trusting <= 2 + 15, "only the last 2 minutes and the app look-back before them"


def test_a_late_write_is_rescored_and_its_mark_forgotten(store, monkeypatch):
    key = _live(store)
    keep_recent(store, T0, END, agent=key)
    before = _scratch(store, key)
    _late(store, key, 1)
    [mark] = store.late_writes(0, 2**62)
    assert (mark.lo_us, mark.hi_us) == (T0 + 10 * M, T0 + 10 * M)
    after = _scratch(store, key)
    assert after != before, "the late batch changed the minute's score"
    assert _json(_trusting(store, key)) == after
    assert store.late_writes(0, 2**62) == [], "the reader kept every minute the mark touched"
    calls = _hashes(monkeypatch)
    assert _json(_trusting(store, key)) == after and len(calls) <= 2 + 15


def test_a_mark_past_the_window_is_trimmed_not_forgotten(store):
    key = _live(store)
    _late(store, key, 1)
    until = T0 + 15 * M  # the mark's minute plus its app look-back (14 minutes) ends past it
    _trusting(store, key, until)
    [mark] = store.late_writes(0, 2**62)
    assert mark.lo_us == until, "what the reader kept no longer counts; the look-back past it still does"
    assert _json(_trusting(store, key)) == _scratch(store, key)
    assert store.late_writes(0, 2**62) == []


def test_a_stale_score_kept_across_a_late_commit_is_not_trusted(store):
    """The race: the reader reads the rollups, a late commit lands, the reader keeps its score."""
    key = _live(store)
    keep_recent(store, T0, END, agent=key)
    m10 = T0 + 10 * M
    store.keep_scores([(key, m10, b"\0" * 16, b"\x80")])  # so that the reader scores minute 10 itself
    kept = KeptScores(store, T0, END, key, trust=True)  # reads the marks: none yet
    rollups = app_history(store, key, T0) + store.rollups(T0, END, key)
    _late(store, key, 1)  # lands after the reader's read
    tl = timeline_of(key, rollups, T0, END, None, kept)
    kept.collect(key, tl.minutes)
    kept.flush()
    assert "v" not in _row(store, key, m10), "kept from what it read, as untrusted: a mark id was taken since"
    assert len(store.late_writes(0, 2**62)) == 1, "a mark the reader did not see survives it"
    assert _json(_trusting(store, key)) == _scratch(store, key)


def test_a_kept_row_is_marked_trusted_once_its_minute_settled(store):
    key = _live(store)
    last = END - M
    _trusting(store, key)
    assert "v" not in _row(store, key, last)
    _trusting(store, key, END + 2 * M)  # the same rollups, read two minutes later: a digest hit
    assert "v" in _row(store, key, last)
    assert _json(_trusting(store, key, END + 2 * M)) == _scratch(store, key, END + 2 * M)


def test_a_reader_forgets_only_the_marks_of_the_desks_it_scored(store):
    key = _live(store)
    other = store.upsert_agent(AgentInfo("agent-other", "DESK-8", "rui", "Windows 11", "0.1.0", "Porto"), T0)
    _late(store, key, 1)
    t0 = T0 + 10 * M
    store.commit_batches([PendingBatch(other, 1, 1, _batch(t0, t0 + 30 * S, random.Random(5)))], END + S)
    kept = KeptScores(store, T0, END, None, trust=True)  # every desk's marks, as the fleet reads them
    tl = agent_timeline(store, key, T0, END, kept=kept)
    kept.collect(key, tl.minutes)
    kept.flush()
    assert [w.agent for w in store.late_writes(0, 2**62)] == [other]


def test_a_minute_whose_look_back_retention_took_is_not_trusted(store):
    """Retention raises the minutes' floor, then deletes below it: a minute whose app look-back
    reached below is scored without that history now, and its kept row (scored with it) is not read."""
    key = _live(store)
    for seq, minute in enumerate((3, 8), start=1):  # a failed app check: minute 8's look-back holds minute 3's
        app = p.Series(target="salesforce", address="203.0.113.20", method="https", kind="http")
        app.add(T0 + minute * M + 10 * S, dns=2000, tcp=20000, tls=40000, err="timeout")
        store.commit_batches([PendingBatch(key, 3, seq, p.SampleBatch([app], [], []))], T0 + minute * M + 11 * S)
    keep_recent(store, T0, END, agent=key)
    floor = T0 + 5 * M
    store.raise_mark(tiers.MINUTES_FLOOR, floor)
    while store.delete_rollups_before(floor, 10_000):
        pass
    since = floor
    kept = KeptScores(store, since, END, key, trust=True)
    tl = agent_timeline(store, key, since, END, kept=kept)
    assert _json(tl) == _json(agent_timeline(store, key, since, END))
    kept_then = _overall(store, key, T0 + 8 * M)
    assert kept_then["score"] != next(m for m in tl.minutes if m.minute_us == T0 + 8 * M).overall.score, (
        "minute 8 was kept scored with minute 3's failure in its look-back; without it, it scores otherwise"
    )


def _overall(store, key: int, minute: int) -> dict:
    """The kept overall of a minute (the reader above wrote nothing: no ``flush``)."""
    return {"score": _row(store, key, minute)["o"][0]}


def test_the_kept_loop_keeps_a_settled_minute_trusted_by_its_clock(store):
    """The loop keeps the last 2 minutes settled 60 s ago: by its clock the older one is trusted
    at once (the window's end alone would say it ended too recently)."""
    key = _live(store)
    now = END + 60 * S
    keep_recent(store, END - 2 * M, END, agent=key, now_us=now)
    assert "v" in _row(store, key, END - 2 * M)
    assert "v" not in _row(store, key, END - M)
    keep_recent(store, END - M, END + M, agent=key, now_us=now + M)  # the next run: a digest hit, upgraded
    assert "v" in _row(store, key, END - M)


def test_a_stale_score_kept_after_another_reader_forgot_the_mark_is_not_trusted(store):
    """Two readers across a late commit: the slow one read before it, the quick one after; the quick
    one keeps the new scores and forgets the mark, then the slow one keeps its stale ones."""
    key = _live(store)
    keep_recent(store, T0, END, agent=key)
    m10 = T0 + 10 * M
    store.keep_scores([(key, m10, b"\0" * 16, b"\x80")])  # so that the slow reader scores minute 10 itself
    slow = KeptScores(store, T0, END, key, trust=True)
    rollups = app_history(store, key, T0) + store.rollups(T0, END, key)
    _late(store, key, 1)
    _trusting(store, key)  # the quick reader: sees the mark, keeps minute 10 anew, forgets the mark
    assert store.late_writes(0, 2**62) == []
    tl = timeline_of(key, rollups, T0, END, None, slow)
    slow.collect(key, tl.minutes)
    slow.flush()
    assert "v" not in _row(store, key, m10), "a mark id was taken since the slow reader began: not trusted"
    assert _json(_trusting(store, key)) == _scratch(store, key)
