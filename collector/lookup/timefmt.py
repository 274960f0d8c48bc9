"""One way to print a time for a helpdesk reader: in the view's zone, always with its label.
A pasted ticket outlives its screen, and a bare "08:42" is read in the reader's own zone, maybe an hour off. So every
time goes through ``fmt_time`` with the view's zone: a view, ticket or CLI never mixes zones nor leaves one unnamed.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

__all__ = ["fmt_time", "zone"]


def zone(tz: str | dt.tzinfo | None) -> dt.tzinfo:
    """The view's zone: UTC when none is chosen; an IANA name (``Europe/Lisbon``) otherwise.

    An unknown name raises ``zoneinfo.ZoneInfoNotFoundError`` (a KeyError): the caller answers 400.
    """
    if tz is None or tz == "" or tz == "UTC":
        return dt.UTC
    if isinstance(tz, dt.tzinfo):
        return tz
    return zoneinfo.ZoneInfo(tz)


def fmt_time(
    us: int | None, tz: str | dt.tzinfo | None = None, *, date: bool = True, seconds: bool = False, label: bool = True
) -> str:
    """``2026-12-05 08:42 WET`` (or ``08:42:10 UTC`` without the date, with seconds); "?" for no time.

    The label is the zone's abbreviation at that instant (WET/WEST across a DST change), as the
    ticket's header already prints it; ``label=False`` only where the same line names the zone once.
    """
    if not us:
        return "?"
    z = zone(tz)
    t = dt.datetime.fromtimestamp(us / 1e6, tz=z)
    text = t.strftime(("%Y-%m-%d " if date else "") + ("%H:%M:%S" if seconds else "%H:%M"))
    return f"{text} {t.tzname() or 'UTC'}" if label else text
