"""Group commit: one thread owns the store's write connection and commits whatever is waiting.
Acks wait for a durable commit; one fsync per group, not per batch, keeps ingest above the disk's flush rate.
Design notes: docs/collector-internals.md, "collector/ingest/writer.py".
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..store import PendingBatch, Store

log = logging.getLogger("cxpulse.collector.writer")

_STOP = object()


class StoreWriter:
    """Use from one event loop at a time (the collector's); the store is used from its own thread only."""

    def __init__(
        self, store: Store, *, max_group: int = 512, max_queue: int = 4096, clock: Callable[[], float] = time.time
    ):
        self.store = store
        # Wall clock (seconds) stamped as the agents' last_seen at each commit; a test may pass its own.
        self.clock = clock
        self.max_group = max_group
        self.max_queue = max_queue
        self._q: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="cxpulse-store-writer", daemon=True)
        self.commits = 0
        self.batches_committed = 0
        self.last_commit_s = 0.0
        # True from a failed commit until the next one that works: the health service says NOT_SERVING.
        self.failing = False
        self._failed_streams: set[int] = set()
        self._outstanding = 0
        self._room_waiters: deque[asyncio.Future] = deque()
        self._full_since: float | None = None
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    @property
    def outstanding(self) -> int:
        """Writes submitted and not yet answered."""
        return self._outstanding

    @property
    def waiting_for_room(self) -> int:
        return len(self._room_waiters)

    def full_for(self) -> float:
        """Seconds that submitters have been waiting for room without a break (0: not full)."""
        return 0.0 if self._full_since is None else time.monotonic() - self._full_since

    async def submit(self, batch: PendingBatch) -> asyncio.Future:
        """Queue the batch (waiting for room first) and return the future of its commit.

        Split from ``commit`` so that a stream can queue its next batch while the
        previous one is still being committed, and still keep them in order.
        """
        return await self._submit(("batch", batch))

    async def commit(self, batch: PendingBatch) -> PendingBatch:
        return await (await self.submit(batch))

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run another write (agent upsert) on the writer thread, in order with batches."""
        return await (await self._submit(("call", fn)))

    async def _submit(self, item: tuple[str, Any]) -> asyncio.Future:
        if self._stopped:
            raise RuntimeError("the store writer is stopped")
        loop = asyncio.get_running_loop()
        if self._outstanding >= self.max_queue or self._room_waiters:
            room = loop.create_future()
            if not self._room_waiters:
                self._full_since = time.monotonic()
            self._room_waiters.append(room)
            try:
                await room
            except asyncio.CancelledError:
                if room.done() and not room.cancelled():
                    self._release()  # the room was handed to us just as we were cancelled: pass it on
                else:
                    try:
                        self._room_waiters.remove(room)
                    except ValueError:
                        pass  # _release already skipped it
                    if not self._room_waiters:
                        self._full_since = None
                raise
        else:
            self._outstanding += 1
        if self._stopped:
            self._release()
            raise RuntimeError("the store writer is stopped")
        fut = loop.create_future()
        self._q.put((item[0], item[1], loop, fut))
        return fut

    def _release(self) -> None:
        """One outstanding write is answered (on the loop): hand its room to the first waiter, if any.

        Counted when the writer answers, not when the caller stops waiting: a write whose stream
        went away still sits in the queue until the writer reaches it.
        """
        while self._room_waiters:
            room = self._room_waiters.popleft()
            if not self._room_waiters:
                self._full_since = None
            if not room.done():
                room.set_result(None)  # the slot passes on; _outstanding is unchanged
                return
        self._full_since = None
        self._outstanding -= 1

    def stop(self, timeout: float = 30.0) -> None:
        """Commit everything queued so far, then stop; later submissions fail."""
        self._stopped = True
        if self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join(timeout)
        while True:  # anything that slipped in behind the stop is answered, never left hanging
            try:
                e = self._q.get_nowait()
            except queue.Empty:
                break
            if e is not _STOP:
                self._resolve(e[2], e[3], None, RuntimeError("the store writer stopped before this write"))

    def _run(self) -> None:
        while True:
            first = self._q.get()
            if first is _STOP:
                return
            group = [first]
            stop_after = False
            while len(group) < self.max_group:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop_after = True
                    break
                group.append(nxt)
            self._process(group)
            if stop_after:
                return

    def _process(self, group: list) -> None:
        batches = []
        for e in group:
            if e[0] == "batch" and e[1].stream and e[1].stream in self._failed_streams:
                # An earlier batch of this stream failed to commit: committing this one would move the
                # stream's committed seq past the failed batch. The agent resends both.
                self._resolve(e[2], e[3], None, RuntimeError("an earlier batch of this stream was not committed"))
            elif e[0] == "batch":
                batches.append(e)
        for kind, fn, loop, fut in group:
            if kind == "call":
                try:
                    result, error = fn(), None
                except Exception as exc:  # reported to the caller, the writer lives on
                    result, error = None, exc
                self._resolve(loop, fut, result, error)
        if not batches:
            return
        t = time.monotonic()
        try:
            self.store.commit_batches([e[1] for e in batches], now_us=int(self.clock() * 1_000_000))
            self.commits += 1
            self.batches_committed += len(batches)
            self.last_commit_s = time.monotonic() - t
            if self.failing:
                log.warning("storage commits work again")
            self.failing = False
            self._resolve_all([(loop, fut, b, None) for _, b, loop, fut in batches])
        except Exception as exc:
            log.error("commit of %d batches failed: %s", len(batches), exc)
            if _batch_fault(exc) and len(batches) > 1:
                # One batch's values, not the storage: commit each alone, so that batch's stream is the
                # only one to fail, and storage is not reported failing for everyone.
                for e in batches:
                    self._process([e])
                return
            if not _batch_fault(exc):
                self.failing = True
            if len(self._failed_streams) > 100_000:
                self._failed_streams.clear()  # streams of long ago; they are closed by now
            for _, b, _, _ in batches:
                if b.stream:
                    self._failed_streams.add(b.stream)
            self._resolve_all([(loop, fut, None, exc) for _, _, loop, fut in batches])

    def _resolve(
        self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future, result: Any, error: BaseException | None
    ) -> None:
        self._resolve_all([(loop, fut, result, error)])

    def _resolve_all(self, answers: list[tuple[asyncio.AbstractEventLoop, asyncio.Future, Any, Any]]) -> None:
        """Answer writes in order, with one wake-up per event loop rather than one per batch (a
        commit of 500 batches made 500 self-pipe writes and 500 loop callbacks)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any, Any]]] = {}
        for loop, fut, result, error in answers:
            by_loop.setdefault(loop, []).append((fut, result, error))

        def set_them(items: list[tuple[asyncio.Future, Any, Any]]) -> None:
            for fut, result, error in items:
                self._release()
                if fut.done():
                    continue
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(result)

        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(set_them, items)
            except RuntimeError:
                pass  # the loop is gone: the streams that waited are gone too


def _batch_fault(exc: BaseException) -> bool:
    """Whether a commit failed for the values of a batch (a number the database cannot hold, a
    constraint) rather than for the storage itself (disk full, database away)."""
    return isinstance(exc, OverflowError) or any(
        c.__name__ in ("DataError", "IntegrityError") for c in type(exc).__mro__
    )
