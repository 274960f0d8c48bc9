"""Durations on the collector's command line: '90', '90s', '15m', '1h', '2d' -> seconds.

An argparse ``type=``, shared by ``collector`` and ``security`` commands; its own module so that
those need not import collector/cli.py, which imports them (no import cycle, issue 20).
"""

from __future__ import annotations

import argparse
import re

__all__ = ["parse_duration"]


def parse_duration(s: str) -> int:
    """Seconds from '90', '90s', '15m', '1h', '2d'."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", s)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {s!r} (use e.g. 90s, 15m, 1h, 2d)")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
