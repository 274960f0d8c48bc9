"""collector/lookup/timefmt.py: every time in the view's zone, with the zone's label (issue 17)."""

from __future__ import annotations

import zoneinfo

import pytest

from cxpulse.collector.lookup.timefmt import fmt_time, zone

SUMMER = 1_790_000_000_000_000  # 2026-09-21 14:13:20 UTC
WINTER = 1_800_000_000_000_000  # 2027-01-15 08:00:00 UTC


def test_default_is_utc_and_labelled():
    assert fmt_time(SUMMER) == "2026-09-21 14:13 UTC"
    assert fmt_time(SUMMER, "UTC", date=False, seconds=True) == "14:13:20 UTC"


def test_the_views_zone_with_its_label_across_dst():
    assert fmt_time(SUMMER, "Europe/Lisbon") == "2026-09-21 15:13 WEST"
    assert fmt_time(WINTER, "Europe/Lisbon", date=False) == "08:00 WET"
    assert fmt_time(SUMMER, zone("America/Sao_Paulo"), date=False, label=False) == "11:13"


def test_no_time_and_unknown_zone():
    assert fmt_time(None) == "?" and fmt_time(0, "Europe/Lisbon") == "?"
    with pytest.raises(zoneinfo.ZoneInfoNotFoundError):
        fmt_time(SUMMER, "Mars/Olympus")


def test_the_text_reports_clock_times_are_labelled():
    """`cxpulse lookup` printed incident times as a bare "14:13" beside labelled UTC dates."""
    from cxpulse.collector.lookup import report

    assert report._hhmm(SUMMER) == "14:13 UTC"
    assert report._fmt_time(SUMMER) == "2026-09-21 14:13:20 UTC"
