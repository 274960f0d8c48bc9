"""Disk spool of closed batches: the exact payload bytes, kept until the collector acks them.

One file per batch, named by sequence number, written to a temporary name,
fsynced and renamed, so a crash leaves either the whole batch or nothing. The
spool is bounded by size and age; what it must drop is counted, oldest first.
If the directory cannot be written (full disk, read-only), batches stay in
memory with a warning instead of stopping the agent.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass

log = logging.getLogger("cxpulse.agent.spool")

_SUFFIX = ".mpk"
_MAX_QUARANTINED = 100
_MAX_MEMORY_BYTES = 8 * 1024 * 1024


@dataclass
class Entry:
    seq: int
    sample_count: int
    size: int
    created: float
    path: str | None = None  # None: held in memory only
    data: bytes | None = None


class Spool:
    def __init__(self, directory: str, max_bytes: int = 64 << 20, max_age_s: float = 7 * 86400):
        self.dir = directory
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.dropped_batches = 0
        self.dropped_samples = 0
        self.rejected_batches = 0
        self._entries: dict[int, Entry] = {}
        self._disk_ok = True
        os.makedirs(os.path.join(self.dir, "rejected"), exist_ok=True)
        self._state_path = os.path.join(self.dir, "state.json")
        state = self._read_state()
        self._scan()
        highest = max(self._entries, default=0)
        if state is None:
            # New spool (or its state was lost): a new epoch keeps new seqs from colliding with old ones.
            self.epoch = random.getrandbits(63) or 1
            self.next_seq = highest + 1
        else:
            self.epoch = int(state["epoch"])
            self.next_seq = max(int(state["next_seq"]), highest + 1)
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

    def _scan(self) -> None:
        for name in os.listdir(self.dir):
            if name.endswith(".tmp"):
                _unlink(os.path.join(self.dir, name))  # a write that a crash interrupted
                continue
            if not name.endswith(_SUFFIX):
                continue
            try:
                seq_s, count_s = name[: -len(_SUFFIX)].split("-")
                seq, count = int(seq_s), int(count_s)
            except ValueError:
                log.warning("ignoring unexpected file in spool: %s", name)
                continue
            path = os.path.join(self.dir, name)
            st = os.stat(path)
            self._entries[seq] = Entry(seq, count, st.st_size, st.st_mtime, path)

    # -- writing --

    def append(self, payload: bytes, sample_count: int) -> Entry:
        """Give the batch the next seq and make it durable before returning."""
        seq = self.next_seq
        self.next_seq += 1
        entry = Entry(seq, sample_count, len(payload), time.time())
        if self._disk_ok:
            path = os.path.join(self.dir, f"{seq:020d}-{sample_count}{_SUFFIX}")
            try:
                _atomic_write(path, payload)
                entry.path = path
            except OSError as exc:
                self._disk_failed(exc)
        if entry.path is None:
            entry.data = payload
        self._entries[seq] = entry
        self._write_state()
        self.enforce_bounds()
        return entry

    def _disk_failed(self, exc: OSError) -> None:
        if self._disk_ok:
            log.warning("spool directory %s is not writable (%s); holding batches in memory until restart", self.dir, exc)
        self._disk_ok = False

    def enforce_bounds(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        total = sum(e.size for e in self._entries.values())
        mem = sum(e.size for e in self._entries.values() if e.path is None)
        for seq in sorted(self._entries):
            e = self._entries[seq]
            too_old = now - e.created > self.max_age_s
            too_big = total > self.max_bytes or mem > _MAX_MEMORY_BYTES
            if not (too_old or too_big):
                break
            self._drop(e, "older than %ds" % self.max_age_s if too_old else "spool full")
            total -= e.size
            if e.path is None:
                mem -= e.size

    def _drop(self, e: Entry, why: str) -> None:
        self._remove(e)
        self.dropped_batches += 1
        self.dropped_samples += e.sample_count
        log.warning("dropped unsent batch seq %d (%d samples): %s", e.seq, e.sample_count, why)

    # -- reading and acks --

    def pending(self, after_seq: int = 0) -> list[Entry]:
        return [self._entries[s] for s in sorted(self._entries) if s > after_seq]

    def read(self, e: Entry) -> bytes | None:
        if e.data is not None:
            return e.data
        try:
            with open(e.path, "rb") as f:
                return f.read()
        except OSError as exc:
            log.warning("spooled batch seq %d is unreadable (%s); dropping it", e.seq, exc)
            self._drop(e, "unreadable")
            return None

    def ack_upto(self, seq: int) -> int:
        done = [e for s, e in self._entries.items() if s <= seq]
        for e in done:
            self._remove(e)
        return len(done)

    def quarantine(self, seq: int, reason: str) -> None:
        """The collector will never take this batch: keep it aside for inspection, out of the queue."""
        e = self._entries.get(seq)
        if e is None:
            return
        self.rejected_batches += 1
        log.error("collector rejected batch seq %d (%d samples): %s", seq, e.sample_count, reason)
        rejected_dir = os.path.join(self.dir, "rejected")
        if e.path is not None:
            try:
                os.replace(e.path, os.path.join(rejected_dir, os.path.basename(e.path)))
                with open(os.path.join(rejected_dir, f"{seq:020d}.reason.txt"), "w") as f:
                    f.write(reason + "\n")
                _trim_dir(rejected_dir, _MAX_QUARANTINED * 2)
            except OSError:
                _unlink(e.path)
        del self._entries[seq]

    def _remove(self, e: Entry) -> None:
        if e.path is not None:
            _unlink(e.path)
        self._entries.pop(e.seq, None)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self._entries.values())


def _atomic_write(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


def _fsync_dir(d: str) -> None:
    if os.name == "nt":
        return
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _trim_dir(d: str, keep: int) -> None:
    names = sorted(os.listdir(d))
    for name in names[: max(0, len(names) - keep)]:
        _unlink(os.path.join(d, name))
