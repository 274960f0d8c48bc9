"""The person at a Mac's screen, from configd: ``SCDynamicStoreCopyConsoleUser``.
A local Mach call, no privilege and no subprocess; the display name is the account's full name.
Design notes: docs/agent-internals.md, "agent/desk_user_macos.py".
"""

from __future__ import annotations

import ctypes
import logging
import pwd
from collections.abc import Callable
from typing import Any

from . import corefoundation_macos
from .corefoundation_macos import CF

__all__ = ["console_user"]

log = logging.getLogger(__name__)

# What SCDynamicStoreCopyConsoleUser names the console when nobody is logged in (the login window
# owns it then); None means the same.
_NOBODY = frozenset({"", "loginwindow"})


def console_user(cf: CF | None = None, getpwnam: Callable[[str], Any] = pwd.getpwnam) -> tuple[str, str] | None:
    """(login, display name) of the console user, or None when nobody is logged in or it cannot be read.

    Never raises: a failed call reads as "nobody logged in", which the caller reports as unknown.
    """
    try:
        cf = cf if cf is not None else corefoundation_macos.load()
        if cf is None:
            return None
        uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
        with cf.owned(cf.sc.SCDynamicStoreCopyConsoleUser(None, ctypes.pointer(uid), ctypes.pointer(gid))) as ref:
            login = cf.read_string(ref)
    except Exception:  # the OS boundary: a broken framework must not stop the agent
        log.debug("SCDynamicStoreCopyConsoleUser failed", exc_info=True)
        return None
    if login is None or login.strip() in _NOBODY:
        return None
    login = login.strip()
    return login, _display_name(login, getpwnam)


def _display_name(login: str, getpwnam: Callable[[str], Any]) -> str:
    try:
        gecos = str(getpwnam(login).pw_gecos or "").strip()
    except (KeyError, OSError, UnicodeError):  # no such account in the local directory (a network account offline)
        return login
    return gecos or login
