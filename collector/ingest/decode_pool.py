"""Payload decode for large batches in worker processes, off the collector's GIL.
Decoding and rollups of large payloads leave the GIL the writer waits on; small payloads are decoded inline.
Design notes: docs/collector-internals.md, "collector/ingest/decode_pool.py".
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from cxpulse.v1 import payload as wire_payload

from ..store import rollup

log = logging.getLogger("cxpulse.collector.ingest")

# Payloads from this size on go to a worker (about 500 RTT samples); smaller ones stay inline.
OFFLOAD_MIN_BYTES = 4096
WORKERS = max(1, min(2, os.cpu_count() or 1))
# CXPULSE_DECODE_WORKERS=0 keeps every decode inline (for comparison, or where processes are scarce).
_ENV = "CXPULSE_DECODE_WORKERS"
# CXPULSE_DECODE_OFFLOAD_BYTES sets the size from which payloads go to a worker (benchmarks compare).
_OFFLOAD_ENV = "CXPULSE_DECODE_OFFLOAD_BYTES"

_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def _decode_in_worker(payload: bytes, max_samples: int) -> tuple:
    """Runs in a worker: the batch, or the error as plain values (exceptions with keyword-only
    arguments do not survive pickling)."""
    try:
        batch = wire_payload.decode(payload, max_samples=max_samples)
    except wire_payload.PayloadError as exc:
        return ("payload", str(exc), exc.version_mismatch)
    except Exception as exc:  # a decoder bug: reported as one in the collector, the batch is refused
        return ("bug", f"{type(exc).__name__}: {exc}")
    try:
        return ("ok", rollup.rolled(batch))  # its rollups too: per-sample work the writer thread is spared
    except Exception:  # the store builds them itself then (and meets the same problem there, if any)
        return ("ok", batch)


def _offload_min_bytes() -> int:
    try:
        return max(0, int(os.environ.get(_OFFLOAD_ENV, OFFLOAD_MIN_BYTES)))
    except ValueError:
        return OFFLOAD_MIN_BYTES


def _workers() -> int:
    try:
        return max(0, int(os.environ.get(_ENV, WORKERS)))
    except ValueError:
        return WORKERS


def _get_pool() -> ProcessPoolExecutor | None:
    global _pool
    with _lock:
        if _pool is None and _workers():
            _pool = ProcessPoolExecutor(_workers(), mp_context=multiprocessing.get_context("spawn"))
        return _pool


def _drop_pool(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


def shutdown() -> None:
    """Stop the workers (at exit; also for tests)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown)


async def decode(payload: bytes, max_samples: int) -> wire_payload.SampleBatch:
    """``payload.decode`` with the same results and errors, large payloads in a worker process."""
    pool = _get_pool() if len(payload) >= _offload_min_bytes() else None
    if pool is None:
        return wire_payload.decode(payload, max_samples=max_samples)
    try:
        got = await asyncio.get_running_loop().run_in_executor(pool, _decode_in_worker, payload, max_samples)
    except (BrokenProcessPool, RuntimeError) as exc:  # a worker died, or the pool is shut down
        log.warning("decode worker unavailable (%s): decoding inline, restarting the pool", exc)
        _drop_pool(pool)
        return wire_payload.decode(payload, max_samples=max_samples)
    if got[0] == "ok":
        return got[1]
    if got[0] == "payload":
        raise wire_payload.PayloadError(got[1], version_mismatch=got[2])
    raise RuntimeError(f"payload decoder failed in a worker: {got[1]}")
