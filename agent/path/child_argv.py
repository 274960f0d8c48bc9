"""How the agent starts a path-trace child: ``python -m`` from source, ``cxpulse-trace`` when frozen.
Stdlib only; its own module so that ``tracer`` and ``service`` need not import each other.
Design notes: docs/agent-internals.md, "agent/path/child_argv.py".
"""

from __future__ import annotations

import os
import sys

__all__ = ["trace_child_argv"]


def trace_child_argv() -> list[str]:
    """How to start a path-trace child: ``python -m`` from source, ``cxpulse-trace`` when frozen.

    A frozen ``sys.executable`` is the agent itself, which has no ``-m``; the build ships the
    trace child as a second executable beside it, so scapy never enters the agent's archive.
    """
    if getattr(sys, "frozen", False):
        name = "cxpulse-trace.exe" if sys.platform == "win32" else "cxpulse-trace"
        return [os.path.join(os.path.dirname(sys.executable), name)]
    return [sys.executable, "-m", "cxpulse.agent.path.trace_child"]
