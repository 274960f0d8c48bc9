"""Untrusted strings made safe for a log line, and a budget for log lines an attacker can cause.
``safe`` escapes and bounds one value to one line; ``LogBudget`` caps lines per window.
Design notes: docs/collector-internals.md, "collector/logsafe.py".
"""

from __future__ import annotations

import threading
import time
import unicodedata

__all__ = ["MAX_LOGGED", "LogBudget", "safe"]

MAX_LOGGED = 200  # characters of one untrusted value in a log line


def safe(value: object, limit: int = MAX_LOGGED) -> str:
    """``value`` as one printable line of at most about ``limit`` characters: controls escaped, long ones cut."""
    s = value if isinstance(value, str) else str(value)
    extra = len(s) - limit
    s = s[:limit]
    if not s.isprintable() or "\\" in s:
        s = "".join(_escape(c) for c in s)
    return f"{s}...(+{extra} chars)" if extra > 0 else s


def _escape(c: str) -> str:
    if c == "\\":
        return "\\\\"
    if c.isprintable() and unicodedata.category(c) not in ("Cf", "Zl", "Zp"):
        return c
    o = ord(c)
    if c in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[c]
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


class LogBudget:
    """At most ``lines`` log lines per ``window_s``; ``allow`` says whether to log this one.

    The caller logs when ``allow()`` is true; when a window had lines left out, the first line of the
    next window is told how many (``suppressed``) so the log still says a flood happened.
    """

    def __init__(self, lines: int = 20, window_s: float = 10.0, clock=time.monotonic):
        self.lines, self.window_s, self.clock = lines, window_s, clock
        self._start = -1e18
        self._used = 0
        self._left_out = 0
        self.suppressed = 0  # left out in the window before the current line (read after allow() is true)
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = self.clock()
            if now - self._start >= self.window_s:
                self._start, self._used = now, 0
                self.suppressed, self._left_out = self._left_out, 0
            else:
                self.suppressed = 0
            if self._used < self.lines:
                self._used += 1
                return True
            self._left_out += 1
            return False
