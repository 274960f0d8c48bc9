"""Where the collector keeps its database by default, and how a database URL may be logged.

Shared by the CLI, the server and the admin commands; kept apart from collector/cli.py so that
those modules need not import the command line that imports them (no import cycle, issue 20).
"""

from __future__ import annotations

import os
import re

__all__ = ["default_db", "redact"]


def default_db() -> str:
    if os.name != "nt" and os.geteuid() == 0:
        return "/var/lib/cxpulse/collector.sqlite"
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "cxpulse", "collector.sqlite")


def redact(url: str) -> str:
    """A database URL as it may appear in logs: without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
