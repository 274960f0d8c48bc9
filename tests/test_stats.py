"""Lookup figures: percentiles, RFC 3550 jitter, loss seconds, on hand-checked series."""

from __future__ import annotations

from cxpulse.collector.lookup.stats import percentile, rfc3550_jitter, summarize
from cxpulse.collector.store import RttRow

S = 1_000_000


def rows(target, rtts, start=1_790_000_000 * S, step=S // 2):
    return [RttRow(target, "127.0.0.1", "icmp_raw", start + i * step, r) for i, r in enumerate(rtts)]


def test_percentile_nearest_rank():
    v = list(range(1, 101))
    assert percentile(v, 50) == 50 and percentile(v, 95) == 95 and percentile(v, 100) == 100
    assert percentile([7], 95) == 7


def test_rfc3550_jitter_by_hand():
    # |D| = 10, 10, 30 -> J: 0.625, 1.2109375, 3.0102539...
    j, mean_abs = rfc3550_jitter([100, 110, 100, 130])
    assert abs(j - (1.2109375 + (30 - 1.2109375) / 16)) < 1e-9
    assert mean_abs == 50 / 3
    assert rfc3550_jitter([5]) == (None, None)


def test_summary_counts_loss_and_loss_seconds():
    # Two samples per second; losses at 1.0 s and 1.5 s (same second) and at 3.0 s.
    data = rows("gw", [1000, 1100, None, None, 1200, 1300, None, 5000])
    (t,) = summarize(data)
    assert t.samples == 8 and t.lost == 3 and t.loss_pct == 37.5
    assert t.loss_seconds == 2 and t.max_loss_run == 2
    assert t.rtt_median_ms == 1.2 and t.rtt_p95_ms == 5.0 and t.rtt_max_ms == 5.0
    assert t.jitter_ms is not None and t.jitter_mean_abs_ms == round(((100 + 100 + 100 + 3700) / 4) / 1000, 3)


def test_all_lost_has_no_rtt_but_full_loss():
    (t,) = summarize(rows("app", [None, None, None]))
    assert t.loss_pct == 100.0 and t.rtt_median_ms is None and t.jitter_ms is None


def test_gateway_listed_first():
    out = summarize(rows("zeta", [1]) + rows("gateway", [1]) + rows("alpha", [1]))
    assert [t.target for t in out] == ["gateway", "alpha", "zeta"]
