"""The spool against damaged files and failing disks, on real filesystems (tmpfs mounts where allowed).

- a file damaged after it was written (a flipped bit, a truncation, a garbage header) is caught by
  its header or CRC32, moved to rejected/ and reported as a gap; it is never sent;
- a full disk (a 64 kB tmpfs, really full) and a read-only one (the same tmpfs remounted ro)
  degrade to memory with a warning, and go back to disk when space returns;
- the gap bookkeeping: drops in a row make one gap; a gap is forgotten only when the batch that
  carries its latest state is acked; a crash between recording a drop and deleting the file is
  finished at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from cxpulse.agent import spool as spool_mod
from cxpulse.agent.spool import HEADER_SIZE, Spool
from cxpulse.agent.uplink import MAX_IN_FLIGHT, Uplink
from cxpulse.v1 import payload as p
from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc
from tests.requirements import require

T0 = 1_790_000_000_000_000


def batch(n: int, start_us: int, step_us: int = 1_000_000) -> tuple[bytes, int]:
    s = p.Series(target="gw", address="10.0.0.1", method=p.METHOD_ICMP_RAW)
    for i in range(n):
        s.add(start_us + i * step_us, 1000 + i)
    b = p.SampleBatch([s])
    return p.encode(b), b.sample_count


def spool_file(d: Path, seq: int) -> Path:
    (f,) = d.glob(f"{seq:020d}-*.mpk")
    return f


def test_flipped_bit_is_caught_by_the_checksum_set_aside_and_reported(tmp_path):
    s = Spool(str(tmp_path))
    for i in range(3):
        s.append(*batch(10, T0 + i * 10_000_000))
    f = spool_file(tmp_path, 2)
    raw = bytearray(f.read_bytes())
    raw[HEADER_SIZE + 7] ^= 0x01
    f.write_bytes(bytes(raw))

    sent = [(e.seq, s.read(e)) for e in s.pending()]
    assert [seq for seq, data in sent if data is not None] == [1, 3]
    assert (tmp_path / "rejected" / f.name).exists()
    assert "checksum mismatch" in (tmp_path / "rejected" / f"{2:020d}.reason.txt").read_text()
    (gap,) = s.unreported_gaps()
    assert gap.event.kind == "data_gap" and gap.event.evidence == "corrupt on disk: 1 batch, 10 samples dropped"
    assert (gap.event.start_us, gap.event.end_us) == (T0 + 10_000_000, T0 + 19_000_000)


@pytest.mark.parametrize("damage", ["truncated", "garbage header", "empty"])
def test_damaged_file_found_at_start_is_set_aside_not_queued(tmp_path, damage):
    s = Spool(str(tmp_path))
    for i in range(3):
        s.append(*batch(5, T0 + i * 5_000_000))
    f = spool_file(tmp_path, 2)
    raw = f.read_bytes()
    f.write_bytes({"truncated": raw[: len(raw) - 3], "garbage header": b"\x93\x01\x02" + raw[3:], "empty": b""}[damage])

    s2 = Spool(str(tmp_path))
    assert [e.seq for e in s2.pending()] == [1, 3]
    assert all(s2.read(e) is not None for e in s2.pending())
    assert s2.dropped_batches == 1 and s2.dropped_samples == 5
    (gap,) = s2.unreported_gaps()
    assert gap.event.evidence == "corrupt on disk: 1 batch, 5 samples dropped"
    assert (tmp_path / "rejected" / f.name).exists()


def test_drops_in_a_row_are_one_gap_forgotten_only_when_its_latest_state_is_acked(tmp_path):
    payloads = [batch(10, T0 + i * 10_000_000) for i in range(8)]
    size = len(payloads[0][0])
    s = Spool(str(tmp_path), max_bytes=3 * size + 10)
    for data, n in payloads[:3]:
        s.append(data, n)
    s.append(*payloads[3])  # drops seq 1
    (r1,) = s.unreported_gaps()
    s.append(*payloads[4], carries=[r1])  # drops seq 2 before writing: r1 is stale, not carried
    (r2,) = s.unreported_gaps()
    assert r2.id == r1.id and r2.version > r1.version
    assert r2.event.evidence == "spool full: 2 batches, 20 samples dropped"
    assert (r2.event.start_us, r2.event.end_us) == (T0, T0 + 19_000_000)

    # Room now (as if acks had freed it): the report is carried by seq 6, acked up to 5 -> still open.
    s.max_bytes = 1 << 20
    e6 = s.append(*payloads[5], carries=[r2])
    assert s.unreported_gaps() == [] and len(s.open_gaps) == 1
    s.ack_upto(e6.seq - 1)
    assert len(s.open_gaps) == 1
    s.ack_upto(e6.seq)
    assert s.open_gaps == []
    assert not (tmp_path / "gaps.json").exists()


def test_gap_survives_a_restart_and_a_drop_interrupted_by_a_crash_is_finished(tmp_path):
    payloads = [batch(4, T0 + i * 4_000_000) for i in range(3)]
    s = Spool(str(tmp_path), max_bytes=2 * len(payloads[0][0]) + 10)
    for data, n in payloads:
        s.append(data, n)  # the third drops seq 1
    assert s.dropped_batches == 1
    # A crash right after the drop was recorded, before its file was deleted: put the file back.
    (tmp_path / f"{1:020d}-4.mpk").write_bytes(spool_mod.pack(1, 4, T0, T0 + 3_000_000, payloads[0][0]))

    s2 = Spool(str(tmp_path), max_bytes=s.max_bytes)
    assert [e.seq for e in s2.pending()] == [2, 3], "a dropped batch came back"
    assert not (tmp_path / f"{1:020d}-4.mpk").exists()
    (gap,) = s2.unreported_gaps()
    assert gap.event.evidence == "spool full: 1 batch, 4 samples dropped"


def test_a_refused_gap_report_is_not_sent_again(tmp_path):
    """An older collector that does not know data_gap rejects the batch; the agent must not loop on it."""
    payloads = [batch(4, T0 + i * 4_000_000) for i in range(4)]
    s = Spool(str(tmp_path), max_bytes=2 * len(payloads[0][0]) + 10)
    for data, n in payloads[:3]:
        s.append(data, n)
    (r,) = s.unreported_gaps()
    s.max_bytes = 1 << 20  # no further drop: this batch carries the report
    e = s.append(*payloads[3], carries=[r])
    assert s.unreported_gaps() == []
    s.ack_upto(e.seq - 1)
    s.quarantine(e.seq, "code 3: unknown event kind 'data_gap'")
    assert s.unreported_gaps() == [] and s.open_gaps == []


# -- real full and read-only filesystems --


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str = "64k"):
    require(os.geteuid() == 0 and shutil.which("mount") is not None, "mounting a tmpfs needs root and mount(8)")
    where.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
    )
    require(r.returncode == 0, f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> None:
    """Write zeros until the filesystem says it is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_full_disk_degrades_to_memory_with_a_warning_and_recovers(tmp_path, caplog):
    with tiny_tmpfs(tmp_path / "fs") as fs:
        s = Spool(str(fs / "spool"))
        s.disk_retry_s = 0.0  # try the disk at every batch (60 s in the agent)
        filler = fs / "filler"
        fill(filler)
        caplog.set_level(logging.WARNING, "cxpulse.agent.spool")
        data, n = batch(50, T0)
        e = s.append(data, n)
        assert e.path is None and s.read(e) == data, "the batch should be held in memory"
        assert "not writable" in caplog.text and "No space left" in caplog.text
        assert not list((fs / "spool").glob("*.tmp")), "a partial write was left behind"

        filler.unlink()  # space is back
        e2 = s.append(*batch(50, T0 + 50_000_000))
        assert e2.path is not None and "writable again" in caplog.text
        assert [x.seq for x in s.pending()] == [e.seq, e2.seq]
        s.ack_upto(e2.seq)
        assert len(s) == 0


def test_read_only_directory_degrades_to_memory_and_acks_still_work(tmp_path, caplog):
    with tiny_tmpfs(tmp_path / "fs", "1m") as fs:
        s = Spool(str(fs / "spool"))
        e1 = s.append(*batch(20, T0))
        r = subprocess.run(["mount", "-o", "remount,ro", str(fs)], capture_output=True, text=True)
        require(r.returncode == 0, f"cannot remount read-only: {r.stderr.strip()}")
        caplog.set_level(logging.WARNING, "cxpulse.agent.spool")
        data, n = batch(20, T0 + 20_000_000)
        e2 = s.append(data, n)
        assert e2.path is None and s.read(e2) == data
        assert "not writable" in caplog.text and "Read-only" in caplog.text
        assert s.read(e1) is not None  # what was on disk is still sent
        s.ack_upto(e2.seq)  # the file cannot be deleted: at worst sent again and deduplicated
        assert len(s) == 0
        subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)
        # A restart: seq 2 was used in memory but never saved, so the new run numbers from 2 again.
        s2 = Spool(str(fs / "spool"))
        assert [e.seq for e in s2.pending()] == [e1.seq]  # the undeletable file comes back
        e3 = s2.append(*batch(20, T0 + 40_000_000))
        assert e3.seq == e2.seq
        # The collector says it holds seq 2 already: the new batch is renumbered, not taken for a duplicate.
        assert s2.reconcile(committed_seq=e2.seq) == 1
        s2.ack_upto(e2.seq)
        (left,) = s2.pending()
        assert left.seq == e2.seq + 1 and s2.read(left) == batch(20, T0 + 40_000_000)[0]
        assert s2.reconcile(committed_seq=99) == 0  # once per run only


def test_restored_state_directory_does_not_reuse_seqs_the_collector_holds(tmp_path):
    s = Spool(str(tmp_path))
    s.append(*batch(3, T0))
    backup = (tmp_path / "state.json").read_text()
    for i in range(1, 4):
        s.ack_upto(s.append(*batch(3, T0 + i * 3_000_000)).seq)  # seqs 2-4 delivered and acked
    (tmp_path / "state.json").write_text(backup)  # the directory is restored from an older copy
    s2 = Spool(str(tmp_path))
    e = s2.append(*batch(3, T0 + 20_000_000))
    assert e.seq <= 4
    s2.reconcile(committed_seq=4)
    s2.ack_upto(4)
    assert [x.seq for x in s2.pending()] == [5]


# -- batches in flight are not the drop policy's to take --


class HoldingCollector(pb_grpc.TelemetryServiceServicer):
    """A real gRPC collector that stores what arrives but acks only when the test says so.

    The window between "written to the stream" and "acked" is where the lost issue-7 bug lived:
    a batch in that window may already be committed, so dropping it for room reported as lost
    a batch that was in fact stored.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.release = asyncio.Event()
        self._acked = 0

    async def Stream(self, request_iterator, context):
        hello = await context.read()
        assert hello.WhichOneof("kind") == "hello"
        await context.write(pb.StreamResponse(config=pb.AgentConfig(version=1, committed_seq=0)))
        # The agent sends at most MAX_IN_FLIGHT unacked batches, so reading that many and then
        # waiting holds its window full; after that, each batch is acked as it comes.
        while (req := await context.read()) is not grpc.aio.EOF:
            self.received.append(req.batch.seq)
            if len(self.received) < MAX_IN_FLIGHT:
                continue
            await self.release.wait()
            for seq in self.received[self._acked :]:
                await context.write(
                    pb.StreamResponse(ack=pb.Ack(seq=seq, status=pb.ACK_STATUS_STORED, committed_seq=seq))
                )
            self._acked = len(self.received)


async def _until(cond, timeout_s: float, what) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        assert loop.time() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        await asyncio.sleep(0.02)


def test_a_full_spool_drops_the_oldest_batch_not_in_flight_never_one_the_collector_may_hold(tmp_path):
    """Reconnected with a full spool: the in-flight window does not count against the bound (one
    outage, one hole), and when new batches do overflow it, the oldest batch NOT in flight goes."""
    total = MAX_IN_FLIGHT + 8
    new = MAX_IN_FLIGHT + 1  # after the first new batch, enough to overflow the bound without the window
    payloads = [batch(10, T0 + i * 10_000_000) for i in range(total + new)]
    size = len(payloads[0][0])
    s = Spool(str(tmp_path), max_bytes=total * size)  # full after `total` batches

    async def scenario() -> HoldingCollector:
        col = HoldingCollector()
        server = grpc.aio.server()
        pb_grpc.add_TelemetryServiceServicer_to_server(col, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stop = asyncio.Event()
        up = Uplink(s, f"127.0.0.1:{port}", pb.Hello(agent_id="inflight-test", seq_epoch=s.epoch), reconnect_max_s=1)
        task = asyncio.ensure_future(up.run(stop))
        try:
            for data, n in payloads[:total]:
                s.append(data, n)
            up.notify()
            # The agent reconnected with a full spool: the first MAX_IN_FLIGHT batches are on the wire.
            await _until(lambda: len(col.received) >= MAX_IN_FLIGHT, 10, "the in-flight window to fill")
            assert s.dropped_batches == 0
            s.append(*payloads[total])  # a new batch: room, because the window does not count
            assert s.dropped_batches == 0, "a batch newer than those in flight was pushed out: a second hole"
            for data, n in payloads[total + 1 :]:
                s.append(data, n)  # now the batches not in flight alone overflow the bound
            assert s.dropped_batches == 1
            up.notify()
            col.release.set()
            await _until(
                lambda: len(s) == 0,
                10,
                lambda: f"every kept batch to be acked: {[e.seq for e in s.pending()]} left, {up.stats}",
            )
        finally:
            stop.set()
            task.cancel()  # as the runner ends it
            await asyncio.gather(task, return_exceptions=True)
            await server.stop(None)
        return col

    col = asyncio.run(scenario())
    (gap,) = s.open_gaps
    dropped = {seq for lo, hi in gap.seqs for seq in range(lo, hi + 1)}
    assert dropped == {MAX_IN_FLIGHT + 1}, "the oldest batch not in flight is the one to drop"
    assert not dropped & set(col.received), "a batch was stored AND reported dropped"
    assert set(col.received) | dropped == set(range(1, total + new + 1))
    assert gap.event().evidence == "spool full: 1 batch, 10 samples dropped"
