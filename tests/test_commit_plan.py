"""plan_commit: the exactly-once decision both stores make inside their commit, checked alone."""

from __future__ import annotations

from cxpulse.collector.store.commit_plan import mark_keys, plan_commit, to_signed64
from cxpulse.collector.store.types import PendingBatch
from cxpulse.v1.payload import Event, SampleBatch


def batch(agent: int, epoch: int, seq: int, events: int = 0) -> PendingBatch:
    evs = [Event(f"e{seq}-{i}", "loss", "gw", 1_000 * seq, None, 1, "") for i in range(events)]
    return PendingBatch(agent, epoch, seq, SampleBatch(series=[], events=evs, paths=[]))


def test_new_seqs_are_written_and_raise_the_mark():
    bs = [batch(1, 7, 1), batch(1, 7, 2), batch(2, 7, 5)]
    plan = plan_commit(bs, {})
    assert plan.stored == [True, True, True]
    assert plan.committed_seq == [1, 2, 5]
    assert plan.written == bs
    assert plan.marks == {(1, 7): 2, (2, 7): 5}
    assert plan.agents == [1, 2]


def test_seqs_at_or_below_the_mark_are_duplicates():
    bs = [batch(1, 7, 3), batch(1, 7, 4), batch(1, 7, 5)]
    plan = plan_commit(bs, {(1, 7): 4})
    assert plan.stored == [False, False, True]
    assert plan.committed_seq == [4, 4, 5]
    assert [b.seq for b in plan.written] == [5]
    assert plan.marks == {(1, 7): 5}


def test_a_replay_inside_one_commit_is_written_once():
    bs = [batch(1, 7, 1, events=1), batch(1, 7, 1, events=1), batch(1, 7, 2)]
    plan = plan_commit(bs, {(1, 7): 0})
    assert plan.stored == [True, False, True]
    assert len(plan.event_rows()) == 1
    assert [a for a, _ in plan.rollup_input()] == [1, 1]


def test_unmoved_marks_are_not_rewritten_and_epochs_are_separate():
    bs = [batch(1, 7, 2), batch(1, 8, 1)]
    plan = plan_commit(bs, {(1, 7): 9, (1, 8): 0})
    assert plan.stored == [False, True]
    assert plan.marks == {(1, 8): 1}


def test_pure_until_applied():
    bs = [batch(1, 7, 1), batch(1, 7, 1)]
    plan = plan_commit(bs, {})
    assert [b.stored for b in bs] == [None, None]
    plan.apply(bs)
    assert [(b.stored, b.committed_seq) for b in bs] == [(True, 1), (False, 1)]


def test_uint64_epochs_are_keyed_as_stored():
    big = (1 << 64) - 1
    bs = [batch(3, big, 1), batch(2, 1, 1)]
    assert to_signed64(big) == -1
    assert mark_keys(bs) == [(2, 1), (3, -1)]
    assert plan_commit(bs, {(3, -1): 1}).stored == [False, True]
