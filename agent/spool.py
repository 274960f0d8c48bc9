"""Disk spool of closed batches: the exact payload bytes, kept until the collector acks them.
One checked file per batch, bounded by size and age, oldest dropped first and remembered as a gap.
Design notes: docs/agent-internals.md, "agent/spool.py".
"""

from __future__ import annotations

import json
import logging
import os
import random
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from cxpulse.atomicfile import write_atomic as _atomic_write
from cxpulse.v1 import payload as wire

log = logging.getLogger("cxpulse.agent.spool")

_SUFFIX = ".mpk"
_MAX_QUARANTINED = 100
_MAX_MEMORY_BYTES = 8 * 1024 * 1024
_MAX_GAPS = 64  # distinct open gaps kept; beyond that the oldest ones are merged
DISK_RETRY_S = 60.0  # after a write failed, try the disk again this often (space may have been freed)

# magic, format version, seq, sample count, first sample us, last sample us, payload length, crc32
_HEADER = struct.Struct("<4sB3xQIqqII")
_MAGIC = b"CXSP"
_VERSION = 1
HEADER_SIZE = _HEADER.size

GAP_KIND = "data_gap"
GAP_SEVERITY = 2

SPOOL_FULL = "spool full"
MEMORY_FULL = "spool full (disk unwritable, memory bound)"
CORRUPT = "corrupt on disk"
UNREADABLE = "unreadable"


class CorruptFile(ValueError):
    """A spool file whose header or checksum does not hold."""


@dataclass
class Entry:
    seq: int
    sample_count: int
    size: int  # payload bytes: what the size bound counts
    created: float
    path: str | None = None  # None: held in memory only
    data: bytes | None = None
    first_us: int = 0
    last_us: int = 0


@dataclass
class Gap:
    """Batches dropped for one reason, with nothing delivered in between: one data_gap event."""

    id: str
    reason: str
    first_us: int
    last_us: int
    batches: int = 0
    samples: int = 0
    # Dropped seqs as [lo, hi] runs: a restart finishes a drop that a crash interrupted.
    seqs: list[list[int]] = field(default_factory=list)
    version: int = 0
    carried_seq: int | None = None  # batch that carries this version; None: still to be sent

    @property
    def last_seq(self) -> int:
        return self.seqs[-1][1] if self.seqs else 0

    def holds(self, seq: int) -> bool:
        return any(lo <= seq <= hi for lo, hi in self.seqs)

    def event(self) -> wire.Event:
        plural = "batch" if self.batches == 1 else "batches"
        return wire.Event(
            id=self.id,
            kind=GAP_KIND,
            target="agent",
            start_us=self.first_us,
            end_us=max(self.last_us, self.first_us),
            severity=GAP_SEVERITY,
            evidence=f"{self.reason}: {self.batches} {plural}, {self.samples} samples dropped",
        )


@dataclass(frozen=True)
class GapReport:
    """A gap's state as put into a batch; ``Spool.append(carries=...)`` records which batch took it."""

    id: str
    version: int
    event: wire.Event


class Spool:
    def __init__(self, directory: str, max_bytes: int = 64 << 20, max_age_s: float = 7 * 86400):
        self.dir = directory
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.dropped_batches = 0
        self.dropped_samples = 0
        self.rejected_batches = 0
        self._entries: dict[int, Entry] = {}  # insertion order is seq order
        self._bytes = 0
        self._mem_bytes = 0
        self._acked_upto = 0
        self._disk_ok = True
        self._disk_retrying = False
        self._disk_retry_at = 0.0
        self.disk_retry_s = DISK_RETRY_S
        self._gaps: list[Gap] = []
        self._in_flight: set[int] = set()
        try:
            os.makedirs(os.path.join(self.dir, "rejected"), exist_ok=True)
        except OSError as exc:
            self._disk_failed(exc)
        self._state_path = os.path.join(self.dir, "state.json")
        self._gaps_path = os.path.join(self.dir, "gaps.json")
        state = self._read_state()
        if state is None:
            # New spool (or its state was lost): a new epoch keeps new seqs from colliding with old ones.
            self.epoch = random.getrandbits(63) or 1
        else:
            self.epoch = int(state["epoch"])
        self._gaps = self._read_gaps()
        self._scan()
        highest = max(self._entries, default=0)
        self.next_seq = highest + 1 if state is None else max(int(state["next_seq"]), highest + 1)
        # Seqs from here on are this run's; see reconcile().
        self._first_own_seq: int | None = self.next_seq
        self._write_state()
        self.enforce_bounds()

    # -- state --

    def _read_state(self) -> dict | None:
        try:
            with open(self._state_path) as f:
                state = json.load(f)
            int(state["epoch"]), int(state["next_seq"])
            return state
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("spool state %s is unreadable (%s); starting a new sequence epoch", self._state_path, exc)
            return None

    def _write_state(self) -> None:
        try:
            _atomic_write(self._state_path, json.dumps({"epoch": self.epoch, "next_seq": self.next_seq}).encode())
        except OSError as exc:
            self._disk_failed(exc)

    def _read_gaps(self) -> list[Gap]:
        try:
            with open(self._gaps_path) as f:
                saved = json.load(f)
            gaps = [Gap(**g) for g in saved["gaps"]]
            if saved.get("epoch") != self.epoch:
                for g in gaps:  # still to be reported, but their seqs name batches of another epoch
                    g.seqs, g.carried_seq = [], None
            return gaps
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError) as exc:
            log.warning(
                "spool gap record %s is unreadable (%s); earlier drops stay in the agent log only", self._gaps_path, exc
            )
            return []

    def _write_gaps(self) -> None:
        if not self._disk_ok:
            return
        try:
            if self._gaps:
                _atomic_write(
                    self._gaps_path, json.dumps({"epoch": self.epoch, "gaps": [asdict(g) for g in self._gaps]}).encode()
                )
            elif os.path.exists(self._gaps_path):
                os.unlink(self._gaps_path)
        except OSError as exc:
            self._disk_failed(exc)

    def _scan(self) -> None:
        found: list[Entry] = []
        try:
            names = os.listdir(self.dir)
        except OSError as exc:
            self._disk_failed(exc)
            names = []
        for name in names:
            path = os.path.join(self.dir, name)
            if name.endswith(".tmp"):
                _unlink(path)  # a write that a crash interrupted: never renamed, never queued
                continue
            if not name.endswith(_SUFFIX):
                continue
            try:
                seq_s, count_s = name[: -len(_SUFFIX)].split("-")
                seq, count = int(seq_s), int(count_s)
            except ValueError:
                log.warning("ignoring unexpected file in spool: %s", name)
                continue
            if any(g.holds(seq) for g in self._gaps):
                _unlink(path)  # dropped and recorded before a crash, but not yet deleted
                continue
            try:
                st = os.stat(path)
                with open(path, "rb") as f:
                    head = f.read(HEADER_SIZE)
                _, _, h_seq, h_count, first, last, length, _ = _unpack_header(head)
                if (h_seq, h_count) != (seq, count) or st.st_size != HEADER_SIZE + length:
                    raise CorruptFile(
                        f"header says seq {h_seq}, {h_count} samples, {length} bytes; "
                        f"file is {name}, {st.st_size} bytes"
                    )
            except (OSError, CorruptFile) as exc:
                mtime_us = _mtime_us(path)
                bad = Entry(seq, count, 0, time.time(), path, first_us=mtime_us, last_us=mtime_us)
                self._set_aside(bad, CORRUPT, str(exc))
                continue
            found.append(Entry(seq, count, length, st.st_mtime, path, first_us=first, last_us=last))
        for e in sorted(found, key=lambda e: e.seq):
            self._add(e)

    # -- writing --

    def append(self, payload: bytes, sample_count: int, *, carries: Sequence[GapReport] = ()) -> Entry:
        """Give the batch the next seq and make it durable before returning.

        ``carries``: the gap reports (from ``unreported_gaps``) that went into this batch.
        """
        seq = self.next_seq
        self.next_seq += 1
        first, last = sample_range(payload)
        # Room first, then write. Batches in flight do not count against the bound: they are not
        # droppable (the collector may hold them), and counting them would make the first new batch
        # after a reconnect push out a batch newer than them, a second hole in the data. They are
        # bounded on their own by the uplink's in-flight window, and leave with their acks.
        while self._bytes - self._in_flight_bytes() + len(payload) > self.max_bytes:
            victim = self._oldest_droppable()
            if victim is None:
                break  # everything left is in flight: over the bound until acks come
            self._drop(victim, SPOOL_FULL)
        entry = Entry(seq, sample_count, len(payload), time.time(), first_us=first, last_us=last)
        if not self._disk_ok and entry.created >= self._disk_retry_at:
            self._disk_ok = True  # try again: space may have been freed, the mount fixed
            self._disk_retrying = True
        if self._disk_ok:
            path = os.path.join(self.dir, f"{seq:020d}-{sample_count}{_SUFFIX}")
            try:
                _atomic_write(path, pack(seq, sample_count, first, last, payload))
                entry.path = path
                if self._disk_retrying:
                    log.warning("spool directory %s is writable again; new batches go to disk", self.dir)
            except OSError as exc:
                self._disk_failed(exc)
            self._disk_retrying = False
        if entry.path is None:
            entry.data = payload
        self._add(entry)
        self._write_state()
        # Only now that the batch is durable may a gap count as carried (a crash before this
        # point sends the gap again in the next batch; the collector keeps one state per id).
        changed = False
        for r in carries:
            g = self._gap(r.id)
            if g is not None and g.version == r.version:
                g.carried_seq = seq
                changed = True
        if changed:
            self._write_gaps()
        self.enforce_bounds()
        return entry

    def _add(self, e: Entry) -> None:
        self._entries[e.seq] = e
        self._bytes += e.size
        if e.path is None:
            self._mem_bytes += e.size

    def _disk_failed(self, exc: OSError) -> None:
        self._disk_retry_at = time.time() + self.disk_retry_s
        if self._disk_ok and not self._disk_retrying:
            log.warning(
                "spool directory %s is not writable (%s); holding batches in memory (at most %d MB) until it is",
                self.dir,
                exc,
                _MAX_MEMORY_BYTES >> 20,
            )
        self._disk_ok = False

    def enforce_bounds(self, now: float | None = None) -> None:
        """Drop oldest first while over the size bound, the memory bound, or older than the age bound."""
        now = time.time() if now is None else now
        while True:
            e = self._oldest_droppable()
            if e is None:
                break
            if now - e.created > self.max_age_s:
                self._drop(e, f"older than {_duration(self.max_age_s)}")
            elif self._bytes - self._in_flight_bytes() > self.max_bytes:
                self._drop(e, SPOOL_FULL)
            elif self._mem_bytes > _MAX_MEMORY_BYTES:
                self._drop(e, MEMORY_FULL)
            else:
                break

    def _in_flight_bytes(self) -> int:
        return sum(self._entries[s].size for s in self._in_flight if s in self._entries)

    def _oldest_droppable(self) -> Entry | None:
        return next((e for s, e in self._entries.items() if s not in self._in_flight), None)

    # -- in flight --

    def mark_in_flight(self, seq: int) -> None:
        """The uplink is writing this batch to a stream: from now on the collector may hold it."""
        if seq in self._entries:
            self._in_flight.add(seq)

    def release_in_flight(self) -> None:
        """A new session's handshake said what the collector holds (acked before this call):
        the rest of what the last stream carried is not stored, and may be dropped again."""
        self._in_flight.clear()

    @property
    def in_flight(self) -> frozenset[int]:
        return frozenset(self._in_flight)

    def _drop(self, e: Entry, why: str) -> None:
        self._record_gap(e, why)  # first: a crash after this finishes the drop at the next start
        self._remove(e)
        self.dropped_batches += 1
        self.dropped_samples += e.sample_count
        log.warning("dropped unsent batch seq %d (%d samples): %s", e.seq, e.sample_count, why)

    # -- gaps --

    def _gap(self, gap_id: str) -> Gap | None:
        return next((g for g in self._gaps if g.id == gap_id), None)

    def _record_gap(self, e: Entry, reason: str) -> None:
        for old in self._gaps:
            if old.carried_seq == e.seq:
                old.carried_seq = None  # the batch that carried this gap is gone: send it again
        g = next((g for g in reversed(self._gaps) if g.reason == reason and self._contiguous(g, e.seq)), None)
        if g is None:
            if len(self._gaps) >= _MAX_GAPS:
                self._merge_oldest_gaps()
            g = Gap(id=f"gap-{self.epoch:x}-{e.seq}", reason=reason, first_us=e.first_us, last_us=e.last_us)
            self._gaps.append(g)
        g.first_us = min(g.first_us, e.first_us)
        g.last_us = max(g.last_us, e.last_us)
        g.batches += 1
        g.samples += e.sample_count
        if g.seqs and g.seqs[-1][1] == e.seq - 1:
            g.seqs[-1][1] = e.seq
        else:
            g.seqs.append([e.seq, e.seq])
        g.version += 1
        g.carried_seq = None
        self._write_gaps()

    def _contiguous(self, g: Gap, seq: int) -> bool:
        """Dropping ``seq`` extends ``g`` only if nothing between them was delivered or is still kept."""
        if not g.seqs or seq <= g.last_seq or self._acked_upto > g.last_seq:
            return False  # (no seqs: a gap of an earlier epoch, reported as it stands)
        for s in self._entries:
            if s >= seq:
                break
            if s > g.last_seq:
                return False
        return True

    def _merge_oldest_gaps(self) -> None:
        a, b = self._gaps[0], self._gaps[1]
        b.first_us, b.last_us = min(a.first_us, b.first_us), max(a.last_us, b.last_us)
        b.batches += a.batches
        b.samples += a.samples
        b.seqs = sorted(a.seqs + b.seqs)
        if a.reason != b.reason:
            b.reason = f"{a.reason}; {b.reason}"
        b.version += 1
        b.carried_seq = None
        del self._gaps[0]

    def unreported_gaps(self) -> list[GapReport]:
        """Gaps whose latest state no spooled batch carries yet: put these events into the next batch."""
        return [GapReport(g.id, g.version, g.event()) for g in self._gaps if g.carried_seq is None]

    @property
    def open_gaps(self) -> list[Gap]:
        return list(self._gaps)

    # -- reading and acks --

    def pending(self, after_seq: int = 0) -> list[Entry]:
        return [e for s, e in self._entries.items() if s > after_seq]

    def read(self, e: Entry) -> bytes | None:
        """The payload, checked; a damaged file is set aside and reported as a gap (None)."""
        if e.seq not in self._entries:
            return None  # acked or dropped since the caller listed it
        if e.data is not None or e.path is None:  # held in memory (a path-less entry always has its data)
            return e.data
        try:
            with open(e.path, "rb") as f:
                raw = f.read()
            return unpack(raw, expect_seq=e.seq)
        except FileNotFoundError as exc:
            log.warning("spooled batch seq %d vanished (%s); dropping it", e.seq, exc)
            self._drop(e, UNREADABLE)
        except OSError as exc:
            log.warning("spooled batch seq %d is unreadable (%s); dropping it", e.seq, exc)
            self._drop(e, UNREADABLE)
        except CorruptFile as exc:
            self._set_aside(e, CORRUPT, str(exc))
        return None

    def _set_aside(self, e: Entry, why: str, detail: str) -> None:
        """A damaged file: counted and reported like a drop, kept in rejected/ for inspection."""
        log.error("spooled batch seq %d is %s (%s); set aside, not sent", e.seq, why, detail)
        self._record_gap(e, why)
        if e.seq in self._entries:
            self._remove(e, keep_file=True)
        self.dropped_batches += 1
        self.dropped_samples += e.sample_count
        self._move_to_rejected(e, f"{why}: {detail}")

    def reconcile(self, committed_seq: int) -> int:
        """Check this run's numbering against the collector's, once, at the first handshake.

        The collector holding a seq this spool never recorded means an earlier run used seqs it
        could not save (its state write failed: full or read-only disk), or the state directory
        was restored from an older copy. Batches numbered since this start would then look like
        duplicates and be dropped by the collector, so they are renumbered after its committed
        seq. Returns how many were renumbered.
        """
        first, self._first_own_seq = self._first_own_seq, None
        if first is None or committed_seq < first:
            return 0
        mine = [e for s, e in self._entries.items() if s >= first]
        log.warning(
            "the collector holds seqs up to %d, but this spool's saved state ended at %d (a run that could "
            "not save its state, or a restored state directory): renumbering %d batches after %d",
            committed_seq,
            first - 1,
            len(mine),
            committed_seq,
        )
        self.next_seq = committed_seq + 1
        for e in mine:
            old_seq = e.seq
            self._remove(e, keep_file=True)
            e.seq = self.next_seq
            self.next_seq += 1
            if e.path is not None:
                new_path = os.path.join(self.dir, f"{e.seq:020d}-{e.sample_count}{_SUFFIX}")
                try:
                    with open(e.path, "rb") as f:
                        payload = unpack(f.read(), expect_seq=old_seq)
                    _atomic_write(new_path, pack(e.seq, e.sample_count, e.first_us, e.last_us, payload))
                    _unlink(e.path)
                    e.path = new_path
                except (OSError, CorruptFile) as exc:
                    log.error("cannot renumber spooled batch seq %d (%s); dropping it", old_seq, exc)
                    self._record_gap(e, UNREADABLE)
                    self.dropped_batches += 1
                    self.dropped_samples += e.sample_count
                    _unlink(e.path)
                    continue
            for g in self._gaps:
                if g.carried_seq == old_seq:
                    g.carried_seq = e.seq
            self._add(e)
        self._write_state()
        self._write_gaps()
        return len(mine)

    def samples_upto(self, seq: int) -> int:
        """Samples in the batches an ack up to ``seq`` will delete (cheap: the oldest come first)."""
        n = 0
        for s, e in self._entries.items():
            if s > seq:
                break
            n += e.sample_count
        return n

    def ack_upto(self, seq: int) -> int:
        done = []
        for s, e in self._entries.items():
            if s > seq:
                break
            done.append(e)
        for e in done:
            self._remove(e)
        self._acked_upto = max(self._acked_upto, seq)
        reported = [g for g in self._gaps if g.carried_seq is not None and g.carried_seq <= seq]
        if reported:
            for g in reported:
                log.info("collector holds the report of %s (%s)", g.id, g.event().evidence)
            self._gaps = [g for g in self._gaps if g not in reported]
            self._write_gaps()
        return len(done)

    def quarantine(self, seq: int, reason: str) -> None:
        """The collector will never take this batch: keep it aside for inspection, out of the queue."""
        e = self._entries.get(seq)
        if e is None:
            return
        self.rejected_batches += 1
        log.error("collector rejected batch seq %d (%d samples): %s", seq, e.sample_count, reason)
        carried = [g for g in self._gaps if g.carried_seq == seq]
        if carried:
            # Do not send these reports again: a collector that refuses them (an older one that does
            # not know data_gap) would otherwise refuse every batch that carries them.
            for g in carried:
                log.error(
                    "gap report %s was refused with the batch; it stays in this log only: %s", g.id, g.event().evidence
                )
            self._gaps = [g for g in self._gaps if g not in carried]
            self._write_gaps()
        self._remove(e, keep_file=True)
        self._move_to_rejected(e, reason)

    def _move_to_rejected(self, e: Entry, reason: str) -> None:
        if e.path is None:
            return
        rejected_dir = os.path.join(self.dir, "rejected")
        try:
            os.replace(e.path, os.path.join(rejected_dir, os.path.basename(e.path)))
            with open(os.path.join(rejected_dir, f"{e.seq:020d}.reason.txt"), "w") as f:
                f.write(reason + "\n")
            _trim_dir(rejected_dir, _MAX_QUARANTINED * 2)
        except OSError:
            _unlink(e.path)

    def _remove(self, e: Entry, keep_file: bool = False) -> None:
        if e.path is not None and not keep_file:
            _unlink(e.path)
        self._in_flight.discard(e.seq)
        if self._entries.pop(e.seq, None) is not None:
            self._bytes -= e.size
            if e.path is None:
                self._mem_bytes -= e.size

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes


# -- file format --


def pack(seq: int, sample_count: int, first_us: int, last_us: int, payload: bytes) -> bytes:
    """Header + payload; the CRC32 covers both, so a damaged length or seq is caught as well."""
    head = _HEADER.pack(_MAGIC, _VERSION, seq, sample_count, first_us, last_us, len(payload), 0)[:-4]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", crc) + payload


def unpack(raw: bytes, expect_seq: int | None = None) -> bytes:
    """The payload of a spool file; CorruptFile if anything does not hold."""
    _, _, seq, _, _, _, length, crc = _unpack_header(raw)
    if expect_seq is not None and seq != expect_seq:
        raise CorruptFile(f"header says seq {seq}, expected {expect_seq}")
    body = raw[HEADER_SIZE:]
    if len(body) != length:
        raise CorruptFile(f"payload is {len(body)} bytes, header says {length}")
    if zlib.crc32(body, zlib.crc32(raw[: HEADER_SIZE - 4])) != crc:
        raise CorruptFile("checksum mismatch")
    return body


def _unpack_header(raw: bytes) -> tuple:
    if len(raw) < HEADER_SIZE:
        raise CorruptFile(f"{len(raw)} bytes, shorter than the {HEADER_SIZE}-byte header")
    fields = _HEADER.unpack_from(raw)
    if fields[0] != _MAGIC or fields[1] != _VERSION:
        raise CorruptFile(f"not a spool file of format {_VERSION} (starts with {raw[:5]!r})")
    return fields


def check_file(path: str) -> tuple[int, int, int, int]:
    """(seq, samples, first_us, last_us) of a whole, valid spool file; CorruptFile otherwise. For tools and tests."""
    with open(path, "rb") as f:
        raw = f.read()
    unpack(raw)
    _, _, seq, count, first, last, _, _ = _unpack_header(raw)
    return seq, count, first, last


def sample_range(data: bytes) -> tuple[int, int]:
    """First and last sample time in a payload (series and paths; events only if there is nothing else).

    This is the time a dropped batch covered, which is what the gap report must say.
    """
    try:
        b = wire.decode(data)
    except wire.PayloadError:
        now = time.time_ns() // 1000
        return now, now
    times: Iterable[int] = [t for s in b.series for t in s.ts_us] + [p.ts_us for p in b.paths]
    times = list(times)
    if not times:
        times = [e.start_us for e in b.events] + [e.end_us for e in b.events if e.end_us is not None]
    if not times:
        now = time.time_ns() // 1000
        return now, now
    return min(times), max(times)


# -- helpers --


def _duration(s: float) -> str:
    if s >= 86400 and s % 86400 == 0:
        return f"{int(s // 86400)} days"
    if s >= 3600 and s % 3600 == 0:
        return f"{int(s // 3600)} h"
    return f"{int(s)} s"


def _mtime_us(path: str) -> int:
    try:
        return int(os.stat(path).st_mtime * 1_000_000)
    except OSError:
        return time.time_ns() // 1000


def _unlink(path: str) -> None:
    """Delete if possible: a file left behind (read-only disk) is at worst sent again, and deduplicated."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.debug("cannot delete %s: %s", path, exc)


def _trim_dir(d: str, keep: int) -> None:
    names = sorted(os.listdir(d))
    for name in names[: max(0, len(names) - keep)]:
        _unlink(os.path.join(d, name))
