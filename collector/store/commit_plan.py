"""Exactly-once, decided once: which batches of a commit are new and where each seq mark moves.
Both stores run ``plan_commit`` in their write transaction, on marks read (and locked) there, then write what it says.
Design notes: docs/storage.md, "Exactly-once".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cxpulse.v1.payload import SampleBatch

from .types import PendingBatch

MarkKey = tuple[int, int]  # (agent key, epoch as stored: signed 64-bit)


def to_signed64(v: int) -> int:
    """Database integers are signed 64-bit; the wire's uint64 epoch is stored reinterpreted."""
    return v - (1 << 64) if v >= (1 << 63) else v


def mark_key(b: PendingBatch) -> MarkKey:
    return b.agent_key, to_signed64(b.epoch)


def mark_keys(batches: Sequence[PendingBatch]) -> list[MarkKey]:
    """The (agent, epoch) marks a commit of these batches reads, sorted: the order PostgreSQL locks them in."""
    return sorted({mark_key(b) for b in batches})


@dataclass
class CommitPlan:
    """What one commit writes: the new batches in order, the marks that moved, the senders.

    ``stored`` and ``committed_seq`` are per input batch; ``apply`` copies them onto the batches.
    """

    written: list[PendingBatch] = field(default_factory=list)
    marks: dict[MarkKey, int] = field(default_factory=dict)
    stored: list[bool] = field(default_factory=list)
    committed_seq: list[int] = field(default_factory=list)
    agents: list[int] = field(default_factory=list)

    def rollup_input(self) -> list[tuple[int, SampleBatch]]:
        """(agent, batch) of every written batch, as the rollups of the commit are built from."""
        return [(b.agent_key, b.batch) for b in self.written]

    def event_rows(self) -> list[tuple]:
        """(agent, id, kind, target, start_us, end_us, severity, evidence) of the written batches' events."""
        return [
            (b.agent_key, e.id, e.kind, e.target, e.start_us, e.end_us, e.severity, e.evidence)
            for b in self.written
            for e in b.batch.events
        ]

    def apply(self, batches: Sequence[PendingBatch]) -> None:
        for b, stored, seq in zip(batches, self.stored, self.committed_seq, strict=True):
            b.stored = stored
            b.committed_seq = seq


def plan_commit(batches: Sequence[PendingBatch], marks: Mapping[MarkKey, int]) -> CommitPlan:
    """Decide each batch against its (agent, epoch) high-water mark (absent: 0), in order.

    A seq at or below the mark is a duplicate (already held, or earlier in this very commit);
    anything above is written and raises the mark. The mark is a high-water mark: it relies on a
    stream's batches arriving in seq order, which is why a stream stops after a failed commit.
    Pure: the batches are not changed (``CommitPlan.apply`` does that).
    """
    plan = CommitPlan(agents=sorted({b.agent_key for b in batches}))
    current = dict(marks)
    for b in batches:
        k = mark_key(b)
        mark = current.get(k, 0)
        if b.seq <= mark:
            plan.stored.append(False)
        else:
            mark = current[k] = b.seq
            plan.stored.append(True)
            plan.written.append(b)
        plan.committed_seq.append(mark)
    plan.marks = {k: v for k, v in current.items() if v != marks.get(k, 0)}
    return plan
