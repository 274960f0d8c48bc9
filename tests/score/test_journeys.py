"""Journeys: the config format (shipped default, errors that name the problem) and per-minute met/missed."""

from __future__ import annotations

import pytest

from cxpulse.collector.score.journeys import (
    DEFAULT_JOURNEYS_TOML,
    default_journeys,
    evaluate,
    journey_summary,
    parse_journeys,
)
from cxpulse.collector.score.timeline import minute_scores
from cxpulse.collector.store import rollup as ru
from cxpulse.v1 import payload as p

S = 1_000_000
T0 = 1_790_000_040 * S


def minutes(crm_totals_ms: list[float | None], loss_every: int = 0):
    """One minute per entry: an app check of crm (None: failed), RTT to the gateway and media."""
    gw = p.Series("gateway", "10.0.0.1", "icmp_raw")
    media = p.Series("media", "192.0.2.50", "icmp_raw")
    crm = p.Series("crm", "192.0.2.9", "https", kind="http")
    for m, total in enumerate(crm_totals_ms):
        for i in range(60):
            ts = T0 + m * 60 * S + i * S
            gw.add(ts, 1000)
            media.add(ts, None if loss_every and i % loss_every == 0 else 20000)
        crm.add(
            T0 + m * 60 * S + 5 * S,
            total=None if total is None else round(total * 1000),
            err="timeout" if total is None else None,
        )
    return minute_scores(ru.rollups_of_batches([(1, p.SampleBatch([gw, media, crm]))]).values())


def test_default_set_parses_and_is_three_to_five_journeys():
    js = default_journeys()
    assert 3 <= len(js) <= 5
    assert [c.text for c in js[0].conditions][-1] == "mos >= 3.6"


def test_met_missed_unknown_per_minute():
    js = parse_journeys("""
[[journey]]
name = "CRM loads"
when = ["p95(crm) < 2000", "availability(crm) >= 99"]
[[journey]]
name = "call clear"
when = ["reachable(media)", "mos >= 3.6"]
[[journey]]
name = "chat"
when = ["p95(chat) < 1000"]
""")
    ms = minutes([300, 2500, None, 400], loss_every=0)
    got = evaluate(js, ms)
    assert list(got["CRM loads"].values()) == ["met", "missed", "missed", "met"]
    assert set(got["call clear"].values()) == {"met"}
    assert set(got["chat"].values()) == {"unknown"}  # never measured: not counted as met
    (crm, _call, chat) = journey_summary(got)
    assert crm["met_pct"] == 50.0 and crm["missed_minutes"] == [T0 + 60 * S, T0 + 120 * S]
    assert chat["met_pct"] is None and chat["unknown"] == 4


def test_heavy_loss_misses_the_call_journey():
    js = parse_journeys('[[journey]]\nname = "call"\nwhen = ["reachable(media*|reflector)", "mos >= 3.6"]\n')
    (only,) = evaluate(js, minutes([300], loss_every=5)).values()  # 20% loss to the media edge
    assert list(only.values()) == ["missed"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[journey]]\nname = "x"\nwhen = ["p95 < 3"]', "p95 needs targets"),
        ('[[journey]]\nname = "x"\nwhen = ["speed(crm) > 3"]', "unknown metric 'speed'"),
        ('[[journey]]\nname = "x"\nwhen = ["mos"]', "needs a comparison"),
        ('[[journey]]\nname = "x"\nwhen = ["reachable(a) > 1"]', "takes no comparison"),
        ('[[journey]]\nname = "x"\nwhen = []', "non-empty list"),
        ('[[journey]]\nname = "x"\nwhen = ["mos >= 3"]\n[[journey]]\nname = "x"\nwhen = ["mos >= 3"]', "named twice"),
        ('[[journey]]\nname = "x"\nwhen = ["mos >= 3"]\ncolour = 1', "unknown key"),
        ("journey = 3", "1 to 10"),
        ("[[journey]\n", "not valid TOML"),
    ],
)
def test_config_errors_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_journeys(text)


def test_default_toml_is_the_documented_example():
    assert parse_journeys(DEFAULT_JOURNEYS_TOML) == default_journeys()
