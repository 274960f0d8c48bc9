"""The one duration grammar: '900', '90s', '15m', '15min', '1.5h', '7d', '2w' -> whole seconds.
``parse_seconds`` for the API (its ValueError a 400), ``parse_duration`` for argparse.
Design notes: docs/collector-internals.md, "collector/durations.py".
"""

from __future__ import annotations

import argparse
import re

__all__ = ["MAX_CLI_DURATION_S", "parse_duration", "parse_seconds"]

# No unit means seconds; units are case-insensitive ('15M' is 15 minutes: nobody means months).
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|min|h|d|w)?\s*", re.IGNORECASE)
_UNIT_S = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86_400, "w": 604_800}
# A thousand years: any window a person types ('100000d' for "everything") and still far from
# overflowing a 64-bit count of microseconds, which '1' followed by 400 zeros would.
MAX_CLI_DURATION_S = 365_000 * 86_400


def parse_seconds(text: str, name: str = "duration", max_s: int = MAX_CLI_DURATION_S) -> int:
    """Whole seconds (fractions dropped) in [1, max_s]; ValueError naming ``name`` otherwise."""
    m = _DURATION.fullmatch(text or "")
    if not m:
        raise ValueError(f"{name} must be a duration such as 900, 15m, 1h or 7d; got {(text or '')[:40]!r}")
    secs = float(m.group(1)) * _UNIT_S[(m.group(2) or "").lower()]
    if secs < 1:
        raise ValueError(f"{name} must be at least 1 s; got {text!r}")
    if secs > max_s:  # also inf: a 400-digit number of weeks
        raise ValueError(f"{name} must be at most {max_s // 86_400} days; got {text[:40]!r}")
    return int(secs)


def parse_duration(text: str) -> int:
    """``parse_seconds`` as an argparse ``type=``: its message, not 'invalid value', on a typo."""
    try:
        return parse_seconds(text, "the value")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
