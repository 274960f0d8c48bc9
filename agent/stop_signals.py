"""Stop a console run of the agent cleanly on the OS's stop keys and signals; one API, chosen once at import.

POSIX: SIGINT (Ctrl-C) and SIGTERM (service managers, ``kill``) through the event loop's own
signal handling. Windows: the default asyncio loop there (Proactor) has no
``add_signal_handler`` (NotImplementedError), and a console sends Ctrl-C as SIGINT and
Ctrl-Break as SIGBREAK, so plain ``signal.signal`` handlers set the stop event through
``call_soon_threadsafe``. Either way ``stop_on_signals`` puts back what it replaced on exit.
(The Windows service has no signals at all: agent/service.py stops it from the service thread.)
"""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from .stop_signals_windows import STOP_SIGNALS, stop_on_signals
else:
    from .stop_signals_posix import STOP_SIGNALS, stop_on_signals

__all__ = ["STOP_SIGNALS", "stop_on_signals"]
