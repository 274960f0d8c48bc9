"""The console user's backend for this OS, chosen once at import (psutil style).
``console_user() -> (login, display name) | None``: the person at the desk's own screen, never the service.
Design notes: docs/agent-internals.md, "agent/desk_user.py".
"""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from . import desk_user_windows as _backend
elif sys.platform == "darwin":
    from . import desk_user_macos as _backend
else:
    from . import desk_user_linux as _backend

__all__ = ["console_user"]

console_user = _backend.console_user
