"""The one duration grammar (collector/durations.py): what it accepts, what it refuses and says."""

from __future__ import annotations

import argparse

import pytest

from collector.durations import MAX_CLI_DURATION_S, parse_duration, parse_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("900", 900),
        ("90s", 90),
        ("15m", 900),
        ("15min", 900),
        ("15 min", 900),
        ("1h", 3600),
        ("1.5h", 5400),
        ("2d", 172_800),
        ("7d", 604_800),
        ("2w", 1_209_600),
        ("15M", 900),
        ("1H", 3600),
        ("15MIN", 900),
        (" 15m ", 900),
        ("1.9", 1),  # fractions of a second dropped
        ("100000d", 100_000 * 86_400),  # 'everything' on the command line
    ],
)
def test_accepted(text, seconds):
    assert parse_seconds(text) == seconds
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "15x", "1.5.5h", "-5m", "1e3", "m", ".5h", "15 m s", "inf", "nan"])
def test_not_a_duration_names_the_parameter(text):
    with pytest.raises(ValueError, match=r"^window must be a duration such as 900, 15m, 1h or 7d; got "):
        parse_seconds(text, "window")


@pytest.mark.parametrize("text", ["0", "0s", "0.5", "0.0001h"])
def test_under_a_second_refused(text):
    with pytest.raises(ValueError, match=r"^window must be at least 1 s; got "):
        parse_seconds(text, "window")


def test_upper_bound_default_and_given():
    assert parse_seconds(f"{MAX_CLI_DURATION_S}") == MAX_CLI_DURATION_S
    with pytest.raises(ValueError, match="at most 365000 days"):
        parse_seconds(f"{MAX_CLI_DURATION_S + 1}")
    with pytest.raises(ValueError, match=r"^window must be at most 3650 days; got '3651d'$"):
        parse_seconds("3651d", "window", max_s=3650 * 86_400)
    huge = "1" + "0" * 400 + "w"  # a float of inf, not an OverflowError
    with pytest.raises(ValueError, match="at most"):
        parse_seconds(huge, "window")


def test_argparse_type_says_why():
    ap = argparse.ArgumentParser(prog="x", exit_on_error=False)
    ap.add_argument("--ttl", type=parse_duration)
    assert ap.parse_args(["--ttl", "1.5h"]).ttl == 5400
    with pytest.raises(argparse.ArgumentError, match="must be a duration such as"):
        ap.parse_args(["--ttl", "soon"])
    with pytest.raises(argparse.ArgumentTypeError, match="at least 1 s"):
        parse_duration("0")
