"""The console user's backend for this OS, chosen once at import (psutil style).

Each backend has ``console_user() -> (login, display name) | None``: the person logged on at the
desk's own screen, None when nobody is. A service runs as SYSTEM/root, so "who am I" is never it.
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
