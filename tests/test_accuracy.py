"""The agent measures what the path does: against iputils ping and the impairment configured.

A desk -> gw -> isp -> app path in namespaces with the project's impairment bridge on gw-isp.
Done-when figures of issue 3: median RTT within 1 ms or 2% of ping's; jitter within 15% of what
the configured delay distribution gives; loss within the binomial error of the configured rate.
"""

from __future__ import annotations

import itertools
import random
import re
import shutil
import statistics

import pytest

from tests import _accuracy_children as child
from tests.impair import Config, Impairment
from tests.netns import require_netns
from tests.paths import NetPath
from tests.requirements import require

pytestmark = [pytest.mark.slow, pytest.mark.root]


def ping_rtts(host, address: str, count: int, interval_s: float) -> tuple[list[float], int]:
    """iputils ping's per-reply RTTs (ms) and its transmitted count."""
    out = host.exec(
        "ping",
        "-n",
        "-c",
        str(count),
        "-i",
        str(interval_s),
        "-W",
        "1",
        address,
        check=False,
        timeout=count * interval_s + 15,
    ).stdout
    rtts = [float(m) for m in re.findall(r"time=([\d.]+) ms", out)]
    sent = int(re.search(r"(\d+) packets transmitted", out).group(1))
    return rtts, sent


def expected_mean_abs_diff_ms(jitter_ms: float, n: int = 200_000) -> float:
    """E|RTT(i) - RTT(i-1)| when each direction adds an independent U(-j, +j) delay."""
    rnd = random.Random(1)

    def rtt() -> float:
        return rnd.uniform(-jitter_ms, jitter_ms) + rnd.uniform(-jitter_ms, jitter_ms)

    return sum(abs(rtt() - rtt()) for _ in range(n)) / n


def rfc3550_mean(rtts: list[int]) -> float:
    """The RFC 3550 estimator averaged over the run (after 16 samples of warm-up)."""
    j, values = 0.0, []
    for i, (a, b) in enumerate(itertools.pairwise(rtts)):
        j += (abs(b - a) - j) / 16
        if i >= 16:
            values.append(j)
    return statistics.mean(values)


@pytest.fixture
def path(tmp_path):
    require_netns()
    require(shutil.which("ping") is not None, "iputils ping is not installed (apt-get install iputils-ping)")
    with NetPath(tmp_path, impair_at="gw-isp", config=Config(seed=11)) as p:
        yield p


def test_rtt_and_jitter_agree_with_ping_and_the_impairment(path):
    jitter_ms = 4.0
    path.bridge.update(both=Impairment(delay_ms=10.0, jitter_ms=jitter_ms, jitter="uniform"))
    n, interval = 300, 0.05
    agent = path.desk.call(child.probe_series, path.hops.app, n, interval, timeout=n * interval + 30)
    ping, sent = ping_rtts(path.desk, path.hops.app, n, interval)
    answered = [r for r in agent if r is not None]
    assert len(answered) == n and len(ping) == sent == n

    med_agent, med_ping = statistics.median(answered) / 1000, statistics.median(ping)
    print(f"median RTT: agent {med_agent:.3f} ms, ping {med_ping:.3f} ms")
    assert abs(med_agent - med_ping) <= max(1.0, 0.02 * med_ping)
    assert 19.0 <= med_agent <= 22.0  # 2 x 10 ms plus the path itself

    truth = expected_mean_abs_diff_ms(jitter_ms)
    mad = statistics.mean(abs(b - a) for a, b in itertools.pairwise(answered)) / 1000
    j = rfc3550_mean(answered) / 1000
    print(f"jitter: configured E|dRTT| {truth:.2f} ms; agent mean |dRTT| {mad:.2f} ms, RFC 3550 {j:.2f} ms")
    assert abs(mad - truth) <= 0.15 * truth
    assert abs(j - truth) <= 0.15 * truth


def test_loss_within_the_binomial_error_of_the_configured_rate(path):
    per_direction = 0.05
    path.bridge.update(both=Impairment(delay_ms=2.0, loss=per_direction))
    n, interval = 400, 0.03
    p_rtt = 1 - (1 - per_direction) ** 2  # the echo or its reply
    sigma = (n * p_rtt * (1 - p_rtt)) ** 0.5
    before = path.bridge.stats()
    agent = path.desk.call(child.probe_series, path.hops.app, n, interval, 0.5, timeout=n * interval + 30)
    after = path.bridge.stats()
    lost = sum(1 for r in agent if r is None)
    # Ground truth: every echo or reply the bridge dropped is exactly one lost sample.
    dropped = sum(after[d]["lost"] - before[d]["lost"] for d in ("a_to_b", "b_to_a"))
    assert lost == dropped, (lost, dropped)
    ping, sent = ping_rtts(path.desk, path.hops.app, n, interval)
    ping_lost = sent - len(ping)
    print(f"loss: expected {n * p_rtt:.1f} +- {sigma:.1f}; agent {lost}, ping {ping_lost}")
    assert abs(lost - n * p_rtt) <= 3.5 * sigma
    assert abs(ping_lost - n * p_rtt) <= 3.5 * sigma
