"""Group commit: one thread owns the store's write connection and commits whatever is waiting.

Acks wait for a commit that survives power loss (synchronous=FULL). Paying one
fsync per batch would cap ingest at the disk's flush rate, so the writer takes
every batch that queued up while the previous commit ran and commits them
together; each waiting stream is answered when its batch's transaction lands.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..store import PendingBatch, Store

log = logging.getLogger("cxpulse.collector.writer")

_STOP = object()


class StoreWriter:
    def __init__(self, store: Store, *, max_group: int = 512, max_queue: int = 4096):
        self.store = store
        self.max_group = max_group
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="cxpulse-store-writer", daemon=True)
        self.commits = 0
        self.batches_committed = 0
        self._failed_streams: set[int] = set()

    def start(self) -> None:
        self._thread.start()

    async def commit(self, batch: PendingBatch) -> PendingBatch:
        return await self._submit(("batch", batch))

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run another write (agent upsert) on the writer thread, in order with batches."""
        return await self._submit(("call", fn))

    async def _submit(self, item: tuple[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        entry = (item[0], item[1], loop, fut)
        # A full queue means storage is behind: wait off the event loop (backpressure on the stream).
        try:
            self._q.put_nowait(entry)
        except queue.Full:
            await asyncio.to_thread(self._q.put, entry)
        return await fut

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join(timeout)

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
                _resolve(e[2], e[3], None, RuntimeError("an earlier batch of this stream was not committed"))
            elif e[0] == "batch":
                batches.append(e)
        for kind, fn, loop, fut in group:
            if kind == "call":
                try:
                    result, error = fn(), None
                except Exception as exc:  # reported to the caller, the writer lives on
                    result, error = None, exc
                _resolve(loop, fut, result, error)
        if not batches:
            return
        try:
            self.store.commit_batches([e[1] for e in batches])
            self.commits += 1
            self.batches_committed += len(batches)
            for _, b, loop, fut in batches:
                _resolve(loop, fut, b, None)
        except Exception as exc:
            log.error("commit of %d batches failed: %s", len(batches), exc)
            if len(self._failed_streams) > 100_000:
                self._failed_streams.clear()  # streams of long ago; they are closed by now
            for _, b, loop, fut in batches:
                if b.stream:
                    self._failed_streams.add(b.stream)
                _resolve(loop, fut, None, exc)


def _resolve(loop: asyncio.AbstractEventLoop, fut: asyncio.Future, result: Any, error: BaseException | None) -> None:
    def set_it() -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    try:
        loop.call_soon_threadsafe(set_it)
    except RuntimeError:
        pass  # the loop is gone: the stream that waited is gone too
