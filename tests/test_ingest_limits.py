"""Ingest limits and value checks in isolation (the real-collector tests are in test_bad_input.py)."""

from __future__ import annotations

import pytest

from cxpulse.collector.ingest.limits import AgentLimiter, IngestLimits, TokenBucket, peer_address
from cxpulse.collector.ingest.validate import check_batch
from cxpulse.v1 import payload

S = 1_000_000
NOW = 1_800_000_000 * S


def test_token_bucket_allows_the_burst_then_the_rate():
    b = TokenBucket(rate=2.0, burst=5, now=0.0)
    assert [b.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert b.seconds_until(1, 0.0) == pytest.approx(0.5)
    assert b.take(0.5) and not b.take(0.5)
    assert sum(b.take(10.0) for _ in range(10)) == 5  # refills up to the burst, not beyond


def test_flooding_agent_gets_a_hint_and_a_penalty_others_do_not():
    lim = AgentLimiter(IngestLimits(batches_per_s=1.0, batch_burst=10))
    assert all(lim.take_batch("a", 0.0) == 0.0 for _ in range(10))
    wait = lim.take_batch("a", 0.0)
    assert wait >= 1.0 and lim.banned_for("a", 0.0) == pytest.approx(wait)
    assert lim.take_batch("b", 0.0) == 0.0 and lim.banned_for("b", 0.0) == 0.0
    assert lim.banned_for("a", wait + 0.01) == 0.0


def test_strikes_within_the_window_cut_older_ones_expire():
    lim = AgentLimiter(IngestLimits(max_rejects=3, reject_window_s=10, penalty_s=60))
    assert lim.strike("a", 0.0) == 0.0 and lim.strike("a", 1.0) == 0.0
    assert lim.strike("a", 20.0) == 0.0  # the first two fell out of the window
    assert lim.strike("a", 21.0) == 0.0
    assert lim.strike("a", 22.0) == 60.0 and lim.banned_for("a", 22.0) == 60.0


def test_peer_cap_counts_addresses_not_ports():
    lim = AgentLimiter(IngestLimits(streams_per_peer=2))
    assert lim.open_peer("ipv4:10.0.0.1:5000") and lim.open_peer("ipv4:10.0.0.1:5001")
    assert not lim.open_peer("ipv4:10.0.0.1:5002") and lim.open_peer("ipv6:[::1]:5000")
    lim.close_peer("ipv4:10.0.0.1:5000")
    assert lim.open_peer("ipv4:10.0.0.1:5003")
    assert peer_address("ipv6:[2001:db8::1]:443") == "2001:db8::1" and peer_address("unix:/x") == "unix:/x"


def test_tracked_agents_are_bounded():
    lim = AgentLimiter(IngestLimits(max_agents_tracked=100))
    for i in range(1000):
        lim.take_batch(f"agent-{i}", 0.0)
    assert len(lim._agents) == 100


def test_nonsense_limits_fail_at_start():
    with pytest.raises(ValueError, match="batches_per_s"):
        AgentLimiter(IngestLimits(batches_per_s=0))


def one(kind: str, method: str, ts: int = NOW - 60 * S, **cols) -> payload.SampleBatch:
    s = payload.Series("t", "a", method, kind=kind)
    s.add(ts, **cols)
    return payload.SampleBatch([s])


@pytest.mark.parametrize(
    "batch, problem",
    [
        (one("rtt", "icmp_raw", rtt=60 * S), None),  # the edge is kept
        (one("rtt", "icmp_raw", rtt=60 * S + 1), "rtt = 60000001"),
        (one("wifi", "iw", rssi=-121), "rssi = -121"),
        (one("wifi", "iw", rssi=-40, q=100, conn=1), None),
        (one("wifi", "iw", conn=2), "conn = 2"),
        (one("voice", "udp_reflect", sent=250, recv=900), "received 900 of 250"),
        (one("device", "os", mem=1000, cpu=0), None),
        (one("http", "https", status=1000), "status = 1000"),
        (one("rtt", "icmp_raw", ts=NOW + 11 * 60 * S, rtt=1), "beyond the collector's clock"),
        (one("rtt", "icmp_raw", ts=NOW + 9 * 60 * S, rtt=1), None),
        (one("rtt", "icmp_raw", ts=NOW - 9 * 86_400 * S, rtt=1), "older than"),
        (payload.SampleBatch(events=[payload.Event("e", "outage", "t", NOW - 9 * 86_400 * S, NOW, 3)]), "older than"),
        (payload.SampleBatch(events=[payload.Event("e", "outage", "t", NOW - 86_400 * S, None, 3)]), None),
    ],
)
def test_ranges_and_clock(batch, problem):
    got = check_batch(batch, NOW)
    assert (got is None) if problem is None else (problem in (got or "")), got


def test_age_check_can_be_turned_off():
    assert check_batch(one("rtt", "icmp_raw", ts=NOW - 300 * 86_400 * S, rtt=1), NOW, max_age_s=0) is None
