"""E-model (ITU-T G.107) against published reference values, the G.113 codec table, and its shape.

Reference values and where they come from (docs/scoring.md, "Reference values"):

- G.107 clause 7.7: all parameters at their defaults give R = 93.2 (Ro 94.77, Is 1.41, Id 0.15).
- Total noise No = -61.18 dBm0p and Is = 1.4136 for the default set, as given by flent's
  E-model (util.py), whose authors checked it against ITU-T's online E-model calculator.
- G.107 Annex B / G.109: MOS 4.34, 4.03, 3.60, 3.10, 2.58 at R 90, 80, 70, 60, 50.
- Cole & Rosenbluth (ACM CCR 31(2), 2001) fitted this very curve (defaults, Ta = T, Tr = 2T) as
  Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3); their fit and G.107 agree within about 1 R up
  to 300 ms, which is what the fit claims.
- G.113 Appendix I: the Ie and Bpl of each codec, and Ie,eff = Ie + (95 - Ie) Ppl / (Ppl/BurstR + Bpl)
  worked by hand.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest

from cxpulse.collector.score.emodel import (
    CODECS,
    JITTER_BUFFER_MIN_MS,
    Params,
    burst_r_from_runs,
    codec_by_name,
    mos_from_r,
    one_way_delay,
    rate,
    rate_path,
)


def test_default_parameter_set_gives_r_93_2():
    r = rate(Params())
    assert round(r.r, 1) == 93.2
    assert round(r.ro, 2) == 94.77
    assert round(r.is_, 2) == 1.41
    assert round(r.id, 2) == 0.15  # listener echo only: Tr = 0, T = 0, Ta = 0
    assert r.ie_eff == 0 and r.idte == 0 and r.idd == 0
    assert round(r.mos, 2) == 4.41


def test_default_noise_and_is_match_the_itu_calculator_checked_figures():
    r = rate(Params())
    assert r.no == pytest.approx(-61.17921438624169, abs=1e-9)
    assert r.is_ == pytest.approx(1.4135680813438616, abs=1e-6)


def test_default_parameters_are_g107_table_3():
    p = Params()
    assert (p.SLR, p.RLR, p.STMR, p.LSTR, p.Ds, p.Dr, p.TELR, p.WEPL) == (8, 2, 15, 18, 3, 3, 65, 110)
    assert (p.T, p.Tr, p.Ta, p.qdu, p.Ie, p.Bpl, p.Ppl, p.BurstR) == (0, 0, 0, 1, 0, 4.3, 0, 1)
    assert (p.Nc, p.Nfor, p.Ps, p.Pr, p.A, p.mT, p.sT) == (-70, -64, 35, 35, 0, 100, 1)


@pytest.mark.parametrize(("r", "mos"), [(90, 4.34), (80, 4.03), (70, 3.60), (60, 3.10), (50, 2.58)])
def test_mos_at_the_g109_category_boundaries(r, mos):
    # The tables print 4.03 at R 80 where (B-4) gives 4.024: within 0.01 of every printed value.
    assert mos_from_r(r) == pytest.approx(mos, abs=0.01)


def test_mos_ends_and_monotone():
    assert mos_from_r(-5) == 1.0 and mos_from_r(0) == 1.0
    assert mos_from_r(100) == 4.5 and mos_from_r(130) == 4.5
    grid = [x / 10 for x in range(-100, 1101)]
    mos = [mos_from_r(x) for x in grid]
    assert all(b >= a for a, b in itertools.pairwise(mos))
    assert min(mos) == 1.0


def test_r_below_zero_gives_mos_1():
    r = rate_path(600, 60, codec="g711")
    assert r.r < 0 and r.mos == 1.0


@pytest.mark.parametrize("one_way_ms", [0, 25, 50, 100, 150, 177.3, 200, 250, 300])
def test_delay_curve_agrees_with_cole_rosenbluth(one_way_ms):
    fit = 0.024 * one_way_ms + 0.11 * max(0.0, one_way_ms - 177.3)
    drop = rate_path(0, 0).r - rate_path(one_way_ms, 0).r
    assert drop == pytest.approx(fit, abs=1.0)


# Golden values of this implementation (R to 0.01), pinned so a change to any formula shows up.
# Each is consistent with the anchors above; the issue's acceptance is 0.5 R.
GOLDEN = [
    (0, 0, None, 93.21),
    (50, 0, None, 91.76),
    (100, 0, None, 90.66),
    (150, 0, None, 89.54),
    (200, 0, None, 85.80),
    (300, 0, None, 72.67),
    (400, 0, None, 62.25),
    (0, 1, "g711", 75.28),
    (0, 2, "g711-plc", 86.20),
    (100, 1, "g711-plc", 87.02),
    (150, 2, "g729a", 70.54),
    (150, 3, "opus", 79.40),
    (250, 5, "g711-plc", 63.40),
]


@pytest.mark.parametrize(("one_way_ms", "loss_pct", "codec", "r"), GOLDEN)
def test_golden_values(one_way_ms, loss_pct, codec, r):
    assert rate_path(one_way_ms, loss_pct, codec=codec).r == pytest.approx(r, abs=0.01)


def test_issue_convention_t_ta_and_tr_2t():
    r = rate_path(120, 0)
    assert (r.params.T, r.params.Ta, r.params.Tr) == (120, 120, 240)
    assert r.params == replace(Params(), T=120, Ta=120, Tr=240)


def test_codec_table_is_g113_appendix_i():
    assert (CODECS["g711"].ie, CODECS["g711"].bpl) == (0, 4.3)
    assert (CODECS["g711-plc"].ie, CODECS["g711-plc"].bpl) == (0, 25.1)
    assert (CODECS["g729a"].ie, CODECS["g729a"].bpl) == (11, 19.0)
    assert "ASSUMPTION" in CODECS["opus"].source  # no G.113 entry: said so, not hidden
    assert codec_by_name("G.729A") is CODECS["g729a"] and codec_by_name("G711_PLC") is CODECS["g711-plc"]


@pytest.mark.parametrize(
    ("codec", "loss", "burst", "expected"),
    [
        ("g711", 1, 1, 95 * 1 / (1 + 4.3)),
        ("g711-plc", 2, 1, 95 * 2 / (2 + 25.1)),
        ("g711-plc", 2, 2, 95 * 2 / (2 / 2 + 25.1)),
        ("g729a", 1, 1, 11 + 84 * 1 / (1 + 19.0)),
        ("g729a", 0, 1, 11),
    ],
)
def test_ie_eff_by_hand(codec, loss, burst, expected):
    assert rate_path(0, loss, codec=codec, burst_r=burst).ie_eff == pytest.approx(expected, abs=1e-9)


def test_ie_bpl_given_directly_equal_the_codec():
    assert rate_path(80, 2, ie=11, bpl=19).r == pytest.approx(rate_path(80, 2, codec="g729a").r)


def test_r_falls_with_delay_and_loss_and_burstiness():
    delays = [rate_path(d, 0).r for d in range(0, 801, 5)]
    assert all(b < a for a, b in itertools.pairwise(delays[1:]))  # strictly from 5 ms on
    losses = [rate_path(50, x / 10, codec="g711-plc").r for x in range(0, 301)]
    assert all(b < a for a, b in itertools.pairwise(losses))
    bursts = [rate_path(50, 3, codec="g711-plc", burst_r=b).r for b in (1, 1.5, 2, 4, 8)]
    assert all(b < a for a, b in itertools.pairwise(bursts))
    bpls = [rate_path(50, 3, ie=0, bpl=b).r for b in (1, 4.3, 10, 25.1, 40)]
    assert all(b > a for a, b in itertools.pairwise(bpls))


def test_idd_starts_above_100_ms():
    assert rate_path(100, 0).idd == 0
    assert rate_path(101, 0).idd > 0
    # X = log2(Ta/100); at Ta = 800 ms, X = 3
    x = 3.0
    assert rate_path(800, 0).idd == pytest.approx(25 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2))


def test_sidetone_branches_run():
    base = rate(replace(Params(), T=100, Ta=100, Tr=200))
    low = rate(replace(Params(), STMR=8, T=100, Ta=100, Tr=200))
    high = rate(replace(Params(), STMR=22, LSTR=25, T=100, Ta=100, Tr=200))
    assert all(math.isfinite(x.r) for x in (base, low, high))
    assert low.idte != base.idte and high.idte != base.idte
    assert rate(replace(Params(), STMR=22, LSTR=25)).idte == 0  # T < 1 ms: no talker echo term


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"one_way_ms": -1, "loss_pct": 0}, "must be >= 0"),
        ({"one_way_ms": 10, "loss_pct": 101}, "0..100"),
        ({"one_way_ms": 10, "loss_pct": -1}, "0..100"),
        ({"one_way_ms": math.nan, "loss_pct": 0}, "finite"),
        ({"one_way_ms": 10, "loss_pct": 1, "burst_r": 0.5}, "BurstR"),
        ({"one_way_ms": 10, "loss_pct": 1, "codec": "g711", "ie": 1, "bpl": 1}, "not both"),
        ({"one_way_ms": 10, "loss_pct": 1, "ie": 1}, "go together"),
        ({"one_way_ms": 10, "loss_pct": 1, "codec": "speex"}, "unknown codec"),
        ({"one_way_ms": 10, "loss_pct": 1, "ie": 95, "bpl": 1}, "Ie must be"),
        ({"one_way_ms": 10, "loss_pct": 1, "ie": 0, "bpl": 0}, "Bpl must be"),
    ],
)
def test_bad_inputs_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rate_path(**kwargs)


def test_one_way_delay_from_rtt_jitter_and_codec():
    d = one_way_delay(60, 5, "g711-plc")
    assert (d.network_ms, d.jitter_buffer_ms, d.codec_ms, d.total_ms) == (30, JITTER_BUFFER_MIN_MS, 20, 90)
    d = one_way_delay(60, 30, "g711-plc")
    assert d.jitter_buffer_ms == 60 and d.total_ms == 110
    assert one_way_delay(0, 0, "g729a").codec_ms == 25
    assert one_way_delay(0, 0, "opus").codec_ms == 26.5
    with pytest.raises(ValueError):
        one_way_delay(-1, 0)


def test_burst_r_from_a_trace():
    assert burst_r_from_runs(0, 500, 0) == 1.0
    assert burst_r_from_runs(2, 100, 2) == 1.0  # runs of 1: as random (0.98 floored to 1)
    assert burst_r_from_runs(10, 100, 1) == pytest.approx(10 * 0.9)  # one 10-packet hole
    assert burst_r_from_runs(20, 200, 4) == pytest.approx(5 * 0.9)
    with pytest.raises(ValueError):
        burst_r_from_runs(5, 100, 0)
    with pytest.raises(ValueError):
        burst_r_from_runs(5, 100, 6)


def test_loudness_and_noise_terms_are_computed_per_parameter_set():
    """rate() computes Ro, Iolr, Iq once per loudness/noise/qdu set (a path changes only delay and
    loss); another set must get its own terms, and the same answer whatever was rated before."""
    from cxpulse.collector.score.emodel import _fixed_terms

    noisy = replace(Params(), Ps=55.0, Nc=-55.0, SLR=4.0, qdu=2.0, T=80, Ta=80, Tr=160)
    _fixed_terms.cache_clear()
    first = rate(noisy)
    rate(Params())
    assert rate(noisy) == first and first.ro != rate(Params()).ro and first.iq != rate(Params()).iq
    with pytest.raises(ValueError, match="Nc must be a finite number"):
        rate(replace(Params(), Nc=math.inf))
