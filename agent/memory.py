"""Keeps the long-running agent inside its memory budget (40 MB RSS on a desk).
``prepare()`` first thing in ``agent run``, ``settle()`` once started.
Design notes: docs/agent-internals.md, "agent/memory.py".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys

log = logging.getLogger("cxpulse.agent.memory")

MALLOC_ARENAS = 2
# Optional imports of our libraries that the agent never uses; each library falls back when missing.
_NEVER_IMPORTED = ("httpx._main", "trio")
_M_ARENA_MAX = -8  # glibc malloc.h


def prepare() -> None:
    """Before the agent's imports: leave out what it never runs, cap malloc arenas."""
    for name in _NEVER_IMPORTED:
        # None in sys.modules makes the import fail -> the library's fallback (typeshed allows modules only).
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    limit_malloc_arenas(MALLOC_ARENAS)


def limit_malloc_arenas(n: int) -> bool:
    """mallopt(M_ARENA_MAX, n) on glibc; MALLOC_ARENA_MAX in the environment wins. True if applied."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no arenas to cap
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_ARENA_MAX, n) == 1


def settle() -> None:
    """After start-up: collect once, keep the survivors out of later collections, drop start-up's pages."""
    gc.collect()
    gc.freeze()
    kb = drop_clean_file_pages()
    if kb:
        log.debug("unmapped %d kB of clean library pages touched at start-up", kb)


_MADV_DONTNEED = 4


def drop_clean_file_pages(smaps: str = "/proc/self/smaps") -> int:
    """Unmap resident pages of read-only file mappings that hold no private copy; kB dropped.

    Only mappings that are not writable (``r-xp``, ``r--p``), back a file, and have no anonymous
    (copy-on-write) pages: every page there is identical to the page cache, so the next access
    faults the same bytes back. A relocated read-only segment (RELRO) has private copies and is
    left alone, so is anything writable.
    """
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        madvise = libc.madvise
        madvise.argtypes, madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
        with open(smaps) as f:
            text = f.read()
    except (OSError, AttributeError):
        return 0
    dropped = 0
    for start, end, rss_kb in _clean_file_mappings(text):
        if madvise(start, end - start, _MADV_DONTNEED) == 0:
            dropped += rss_kb
    return dropped


def _clean_file_mappings(text: str) -> list[tuple[int, int, int]]:
    """(start, end, Rss kB) of each droppable mapping in a /proc/PID/smaps text."""
    out: list[tuple[int, int, int]] = []
    current: tuple[int, int] | None = None
    fields: dict[str, int] = {}

    def close() -> None:
        if current is not None and fields.get("Anonymous", 1) == 0 and fields.get("Rss", 0) > 0:
            out.append((current[0], current[1], fields["Rss"]))

    for line in text.splitlines():
        head = line.split(None, 5)
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            close()
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            perms, path = head[1], head[5] if len(head) > 5 else ""
            current = (lo, hi) if perms in ("r-xp", "r--p") and path.startswith("/") else None
            fields = {}
        elif current is not None and len(head) == 3 and head[2] == "kB":
            fields[head[0].rstrip(":")] = int(head[1])
    close()
    return out
