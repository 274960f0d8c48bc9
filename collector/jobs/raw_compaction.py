"""Raw compaction: settled landing batches and the old ``samples_*`` rows folded into hour chunks.
Each step is one short ``store.compact_raw`` transaction: ``collector serve`` and ``migrate-storage`` resume anywhere.
Design notes: docs/storage-chunks.md, "Compaction"; the operator's page is docs/storage-migration.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

if TYPE_CHECKING:
    from ..store.raw import CompactStep

__all__ = [
    "MAX_ROWS",
    "SERVE_ROWS",
    "CompactResult",
    "compact_once",
    "format_progress",
    "migrate",
    "open_existing",
    "raw_compaction_loop",
    "step_in_thread",
]

log = logging.getLogger("cxpulse.collector.compaction")
T = TypeVar("T")

MAX_ROWS = 20_000  # rows per migrate-storage step: ~220 ms of write lock (SQLite, 2 cores at load 8)
# Rows per step in serve, beside ingest: ~85 ms of lock at load 8 (the bound is 100 ms) for
# 10% less speed than MAX_ROWS; a step takes whole series-hours (3,600 rows for a 1 s series).
SERVE_ROWS = 5_000
INTERVAL_S = 60.0  # between runs once nothing settled is left
PAUSE_S = 0.05  # between steps in serve: lets queued ingest commits through
MIGRATE_PAUSE_S = 0.005  # between steps of migrate-storage: ingest of a running serve still gets the lock
MAX_STEPS = 250  # steps per serve run (~1.5 M legacy rows) before it logs and goes on
LOG_EVERY_S = 10.0  # a progress line this often when stderr is not a terminal
TTY_EVERY_S = 0.2  # the \r line's refresh on a terminal


@dataclass
class CompactResult:
    legacy_rows: int = 0  # samples_* rows folded into chunks
    landing_rows: int = 0  # landing batches folded into chunks
    chunks_written: int = 0
    steps: int = 0
    seconds: float = 0.0
    done: bool = False  # True: nothing settled was left to fold
    stopped: bool = False  # True: Ctrl-C (or max_steps) ended it first

    def add(self, step: CompactStep) -> None:
        self.legacy_rows += step.legacy_rows
        self.landing_rows += step.landing_rows
        self.chunks_written += step.chunks_written
        self.steps += 1
        self.done = step.done


def _now_us() -> int:
    return time.time_ns() // 1000


async def step_in_thread(fn: Callable[..., T], *args) -> T:
    """One store step in a worker thread; on cancellation the step's transaction still ends before
    the caller goes on (serve closes the store right after cancelling its loops)."""
    fut = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        await asyncio.wait([fut])
        raise


async def compact_once(
    store,
    now_us: int | None = None,
    max_rows: int = SERVE_ROWS,
    max_steps: int = MAX_STEPS,
    pause_s: float = PAUSE_S,
) -> CompactResult:
    """Steps until nothing settled is left or ``max_steps`` ran; each its own transaction."""
    out = CompactResult()
    t0 = time.perf_counter()
    while out.steps < max_steps:
        out.add(await step_in_thread(store.compact_raw, now_us if now_us is not None else _now_us(), max_rows))
        if out.done:
            break
        if pause_s:
            await asyncio.sleep(pause_s)
    out.stopped = not out.done
    out.seconds = time.perf_counter() - t0
    return out


async def raw_compaction_loop(store, interval_s: float = INTERVAL_S, now_us: Callable[[], int] | None = None) -> None:
    """Compact now, then every ``interval_s`` (at once again while a run stopped at its bound: a
    store upgraded with legacy rows migrates in the background). A failed run is logged, never fatal."""
    while True:
        wait = interval_s
        try:
            r = await compact_once(store, now_us() if now_us is not None else None)
            if r.stopped:
                wait = 0.0
            if r.legacy_rows or r.landing_rows:
                log.log(
                    logging.INFO if r.legacy_rows else logging.DEBUG,
                    "raw compaction: %d legacy rows and %d landing batches into %d hour chunks in %.1f s%s",
                    r.legacy_rows,
                    r.landing_rows,
                    r.chunks_written,
                    r.seconds,
                    "" if r.done else " (more to do)",
                )
        except Exception:  # never crash after start-up
            log.exception("raw compaction failed; retrying in %.0f s", interval_s)
            wait = interval_s
        await asyncio.sleep(wait)


# -- migrate-storage: the same steps in the foreground, with a progress line --


def _left(seconds: float) -> str:
    if seconds < 120:
        return f"~{seconds:.0f} s left"
    if seconds < 2 * 3600:
        return f"~{seconds / 60:.0f} min left"
    return f"~{seconds / 3600:.1f} h left"


def format_progress(done: int, total: int, seconds: float) -> str:
    """'samples: 41% (512,000 of 1,240,000 rows), 80,000 rows/s, ~12 s left'. The total is an
    estimate (the store's cheap count): the line never claims 100% before the store says done."""
    total = max(total, done, 1)
    pct = min(99, done * 100 // total)
    rate = done / seconds if seconds > 0 else 0.0
    line = f"samples: {pct}% ({done:,} of {total:,} rows), {rate:,.0f} rows/s"
    if rate > 0:
        line += ", " + _left((total - done) / rate)
    return line


class _Progress:
    """One line on a terminal rewritten with \\r, else a line every ``LOG_EVERY_S``."""

    def __init__(self, out: TextIO | None):
        self.out = out
        self.tty = bool(out is not None and getattr(out, "isatty", lambda: False)())
        self.every = TTY_EVERY_S if self.tty else LOG_EVERY_S
        self.last = time.monotonic()
        self.width = 0

    def show(self, line: str, final: bool = False) -> None:
        if self.out is None:
            return
        now = time.monotonic()
        if not final and now - self.last < self.every:
            return
        self.last = now
        if self.tty:
            pad = " " * max(0, self.width - len(line))
            self.width = 0 if final else len(line)
            self.out.write("\r" + line + pad + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()


class _StopOnInterrupt:
    """Ctrl-C asks the loop to stop after the running step (a second Ctrl-C interrupts at once);
    installed only in the main thread, where Python delivers signals."""

    def __init__(self) -> None:
        self.asked = False
        self._old: Callable | int | None = None
        self._installed = False

    def __enter__(self) -> _StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, signum, frame) -> None:
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._old if self._old is not None else signal.SIG_DFL)


def migrate(
    store,
    *,
    now_us: int | None = None,
    max_rows: int = MAX_ROWS,
    progress: TextIO | None = sys.stderr,
    max_steps: int | None = None,
    pause_s: float = MIGRATE_PAUSE_S,
) -> CompactResult:
    """Fold every settled ``samples_*`` row (then settled landing batches) into hour chunks, step by
    step, printing progress to ``progress``. Ctrl-C or ``max_steps`` stops between steps; the store
    keeps its position, so the next call resumes."""
    total = store.raw_progress().legacy_rows_left
    out = CompactResult()
    bar = _Progress(progress)
    t0 = time.perf_counter()
    with _StopOnInterrupt() as interrupt:
        while not out.done:
            if interrupt.asked or (max_steps is not None and out.steps >= max_steps):
                out.stopped = True
                break
            out.add(store.compact_raw(now_us if now_us is not None else _now_us(), max_rows))
            out.seconds = time.perf_counter() - t0
            bar.show(format_progress(out.legacy_rows, total, out.seconds))
            if pause_s and not out.done:
                time.sleep(pause_s)
    out.seconds = time.perf_counter() - t0
    bar.show(_summary(store, out, total), final=True)
    return out


def _summary(store, r: CompactResult, total: int) -> str:
    rate = f"{r.legacy_rows / r.seconds:,.0f} rows/s" if r.seconds > 0 and r.legacy_rows else "no rows"
    landing = f"; {r.landing_rows:,} landing batches compacted" if r.landing_rows else ""
    if r.stopped:
        return (
            f"samples: stopped after {r.legacy_rows:,} of ~{max(total, r.legacy_rows):,} rows in {r.seconds:.1f} s "
            f"({rate}){landing}; run the command again to resume where it stopped"
        )
    line = (
        f"samples: done: {r.legacy_rows:,} rows into {r.chunks_written:,} hour chunks in {r.seconds:.1f} s ({rate})"
        f"{landing}"
    )
    if store.raw_progress().legacy_rows_left:
        line += "; rows of hours not yet settled (the last ~70 min) stay until `collector serve` folds them"
    return line


def _first_line(exc: BaseException) -> str:
    return next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)


def open_existing(url: str):
    """The store at ``url``, or ValueError with a one-line reason: opening creates a store's tables,
    so a mistyped path or schema must be refused here, not migrated as an empty new store."""
    from ..paths import redact
    from ..store import open_store
    from ..store.db import connect_postgres, parse_url

    if "://" in url and not url.startswith(("sqlite://", "postgresql://", "postgres://")):
        raise ValueError(f"{redact(url)!r} is not a store: give a SQLite path, sqlite:///abs/path or postgresql://...")
    target = parse_url(url)
    try:
        if target.postgres:
            with connect_postgres(url, "migrate") as db:
                found = db.execute("SELECT to_regclass(%s)", (f'"{target.schema}".series',)).fetchone()[0]
            if found is None:
                raise ValueError(f"no collector store in schema {target.schema!r} of {redact(url)}")
        else:
            path = target.path
            if not os.path.isfile(path):
                raise ValueError(f"no collector database at {path}")
            with sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True) as db:
                found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'series'").fetchone()
            if found is None:
                raise ValueError(f"{path} is not a collector database (no series table)")
        return open_store(url)
    except ValueError:
        raise
    except Exception as exc:  # unreachable server, wrong credentials, not a SQLite file, a newer schema
        raise ValueError(f"cannot open {redact(url)}: {_first_line(exc)}") from None
