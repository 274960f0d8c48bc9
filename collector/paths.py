"""Where the collector keeps its database by default, and how a database URL may be logged.
Apart from collector/cli.py so the server and admin commands need not import the command line.
Design notes: docs/collector-internals.md, "collector/paths.py".
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
