"""Stop a console run of the agent cleanly on the OS's stop keys and signals; one API chosen at import.
``stop_on_signals`` puts back what it replaced on exit.
Design notes: docs/agent-internals.md, "agent/stop_signals.py".
"""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from .stop_signals_windows import STOP_SIGNALS, stop_on_signals
else:
    from .stop_signals_posix import STOP_SIGNALS, stop_on_signals

__all__ = ["STOP_SIGNALS", "stop_on_signals"]
