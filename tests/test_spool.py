"""The spool: durable order, acks, restarts, epochs, bounds with counted drops, quarantine."""

from __future__ import annotations

import json
import os

from cxpulse.agent.spool import Spool


def test_append_ack_and_restart_keep_order_and_seq(tmp_path):
    s = Spool(str(tmp_path))
    for i in range(5):
        assert s.append(b"batch%d" % i, i + 1).seq == i + 1
    assert s.ack_upto(2) == 2
    epoch = s.epoch
    s2 = Spool(str(tmp_path))  # a restart, or a crash after the last append
    assert s2.epoch == epoch
    assert [(e.seq, e.sample_count) for e in s2.pending()] == [(3, 3), (4, 4), (5, 5)]
    assert s2.read(s2.pending()[0]) == b"batch2"
    assert s2.append(b"next", 1).seq == 6


def test_lost_state_file_starts_a_new_epoch_without_reusing_seqs(tmp_path):
    s = Spool(str(tmp_path))
    s.append(b"a", 1)
    s.append(b"b", 1)
    os.unlink(tmp_path / "state.json")
    s2 = Spool(str(tmp_path))
    assert s2.epoch != s.epoch
    assert s2.append(b"c", 1).seq == 3


def test_corrupt_state_file_is_survived(tmp_path):
    Spool(str(tmp_path)).append(b"a", 1)
    (tmp_path / "state.json").write_text("{not json")
    s = Spool(str(tmp_path))
    assert len(s) == 1 and s.append(b"b", 1).seq == 2


def test_interrupted_write_leaves_no_garbage(tmp_path):
    s = Spool(str(tmp_path))
    s.append(b"whole", 2)
    (tmp_path / f"{2:020d}-9.mpk.tmp").write_bytes(b"half a bat")  # a crash mid-write
    s2 = Spool(str(tmp_path))
    assert [e.seq for e in s2.pending()] == [1]
    assert not list(tmp_path.glob("*.tmp"))


def test_size_bound_drops_oldest_and_counts_it(tmp_path):
    s = Spool(str(tmp_path), max_bytes=100 * 1024)
    for _ in range(12):
        s.append(b"x" * 10 * 1024, 7)
    assert s.bytes <= 100 * 1024
    assert s.dropped_batches == 2 and s.dropped_samples == 14
    assert next(e.seq for e in s.pending()) == 3


def test_age_bound(tmp_path):
    s = Spool(str(tmp_path), max_age_s=60)
    e = s.append(b"old", 3)
    s.append(b"new", 4)
    e.created -= 120  # as if written two minutes ago
    s.enforce_bounds()
    assert [x.seq for x in s.pending()] == [2] and s.dropped_samples == 3


def test_quarantine_keeps_rejected_batch_aside_with_reason(tmp_path):
    s = Spool(str(tmp_path))
    s.append(b"garbage?", 1)
    s.append(b"fine", 1)
    s.quarantine(1, "code 3: payload is not valid msgpack")
    assert [e.seq for e in s.pending()] == [2] and s.rejected_batches == 1
    rejected = sorted(p.name for p in (tmp_path / "rejected").iterdir())
    assert rejected == [f"{1:020d}-1.mpk", f"{1:020d}.reason.txt"]


def test_unwritable_directory_degrades_to_memory(tmp_path):
    if os.geteuid() == 0:
        # root ignores permissions; a file where the directory's files should go does the same job.
        s = Spool(str(tmp_path))
        os.chmod(tmp_path, 0o500)
        s._disk_ok = True
        s.dir = str(tmp_path / "not-a-dir")
        (tmp_path / "not-a-dir").write_text("")
    else:
        s = Spool(str(tmp_path))
        os.chmod(tmp_path, 0o500)
    try:
        e = s.append(b"kept in memory", 2)
        assert e.path is None and s.read(e) == b"kept in memory"
        assert s.pending()[-1].seq == e.seq
    finally:
        os.chmod(tmp_path, 0o700)


def test_state_is_json_with_epoch_and_next_seq(tmp_path):
    s = Spool(str(tmp_path))
    s.append(b"a", 1)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state == {"epoch": s.epoch, "next_seq": 2}
