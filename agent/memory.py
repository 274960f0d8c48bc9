"""Keeps the long-running agent inside its memory budget (issue 9: 40 MB RSS on a desk).

Python never gives module memory back, so what the agent does not import it never pays for,
and what glibc reserves per thread it keeps. Measured on `cxpulse agent run` at the default
configuration (docs/benchmarks.md, "Agent: where the memory goes"):

- httpx imports its command-line tool (click, rich, pygments: ~150 modules, ~5 MiB) whenever
  those happen to be installed; the agent never runs it. Marking ``httpx._main`` as absent
  makes httpx take its own fallback (a stub ``main``), so nothing else changes.
- glibc gives every thread that allocates its own malloc arena (grpc runs ~10 threads); each
  arena keeps its freed pages. Two arenas are plenty for one event loop and grpc's pollers.
- After start-up the objects that live for the whole run (modules, config, the loop) are moved
  out of the cyclic collector's generations (``gc.freeze``), so full collections stop walking
  them and touching their pages.

Each is applied before the modules or threads it concerns exist: call ``prepare()`` first thing
in ``agent run``, ``settle()`` once the agent has started.
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
_M_ARENA_MAX = -8  # glibc malloc.h


def prepare() -> None:
    """Before the agent's imports: leave out what it never runs, cap malloc arenas."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]  # import fails -> httpx's stub
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
    """After start-up: collect once, then keep the survivors out of later collections."""
    gc.collect()
    gc.freeze()


def trim() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``); a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
