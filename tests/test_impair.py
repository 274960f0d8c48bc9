"""The impairment lab tells the truth: the delay, jitter, loss and outages it is asked for are
what a real ping through the desk -> gw -> isp -> app path sees, and its episode log matches the
packets it dropped. Later tests trust this lab as ground truth for the agent's measurements.

All traffic stays inside namespaces made here (10.253.0.0/16).
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.impair import Config, Episode, EpisodeRecord, Impairment, echo_train, trace
from tests.netns import Host, require_netns
from tests.paths import LINKS, NetPath
from tests.requirements import require

pytestmark = [pytest.mark.root, pytest.mark.timeout(90)]

SEED = 7


# -- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PingRun:
    transmitted: int
    received: int
    rtts_ms: list[float]

    @property
    def lost(self) -> int:
        return self.transmitted - self.received


def require_ping() -> None:
    found = shutil.which("ping")
    version = subprocess.run([found, "-V"], capture_output=True, text=True).stdout if found else ""
    require("iputils" in version, "iputils ping is not installed (apt-get install iputils-ping)")


def ping(host: Host, dest: str, count: int, interval_s: float) -> PingRun:
    """iputils ping as a person would run it; -W 1 bounds the wait for the last replies."""
    proc = host.exec(
        "ping",
        "-n",
        "-c",
        str(count),
        "-i",
        str(interval_s),
        "-W",
        "1",
        dest,
        check=False,
        timeout=count * interval_s + 15,
    )
    summary = re.search(r"(\d+) packets transmitted, (\d+) received", proc.stdout)
    assert summary, f"unexpected ping output:\n{proc.stdout}\n{proc.stderr}"
    rtts = [float(m) for m in re.findall(r"time=([\d.]+) ms", proc.stdout)]
    return PingRun(int(summary.group(1)), int(summary.group(2)), rtts)


def rtts_ms(samples: list[dict]) -> list[float]:
    return [s["rtt_us"] / 1000 for s in samples if s["rtt_us"] is not None]


def iqr(values: list[float]) -> float:
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


def lost_in_lanes(stats: dict, key: str = "lost") -> int:
    return stats["a_to_b"][key] + stats["b_to_a"][key]


@pytest.fixture
def path(tmp_path: Path) -> Iterator[NetPath]:
    """desk -> gw -> [bridge] -> isp -> app; the bridge starts transparent."""
    require_netns()
    with NetPath(tmp_path, impair_at="gw-isp", config=Config(seed=SEED)) as p:
        yield p


# -- config ----------------------------------------------------------------------------------


def test_config_round_trips_and_refuses_nonsense() -> None:
    config = Config(
        a_to_b=Impairment(delay_ms=20, jitter_ms=2, jitter="normal", loss=0.1),
        episodes=(Episode.outage("cut", 1.0, 2.0), Episode.spike("slow", 4, 1, 30, "b_to_a")),
        seed=3,
        match="ip",
    )
    assert Config.from_dict(config.to_dict()) == config
    bad = [
        lambda: Impairment(delay_ms=-1).validate(),
        lambda: Impairment(loss=1.5).validate(),
        lambda: Impairment(jitter="pareto").validate(),
        lambda: Config(episodes=(Episode.outage("x", 1, 1), Episode.outage("x", 3, 1))).validate(),
        lambda: Episode("x", 1, 0).validate(),
        lambda: Episode("x", 1, 1, direction="up").validate(),
        lambda: Config(match="tcp").validate(),
        lambda: Config.from_dict({"a_to_b": {"delay": 20}}),  # a typo must not mean "no delay"
    ]
    for make in bad:
        with pytest.raises((ValueError, TypeError)):
            make()


# -- the path ---------------------------------------------------------------------------------


@pytest.mark.parametrize("impair_at", [None, *LINKS])
def test_routers_are_hops_and_the_bridge_is_not(tmp_path: Path, impair_at: str | None) -> None:
    require_netns()
    with NetPath(tmp_path, impair_at=impair_at) as p:
        assert p.desk.call(trace, p.hops.app) == p.hops.as_list() == [p.hops.gateway, p.hops.isp, p.hops.app]
        assert all(addr.startswith("10.253.") for addr in p.hops.as_list())
        assert (p.bridge is None) == (impair_at is None)


# -- (a) delay --------------------------------------------------------------------------------


def test_delay_adds_twice_per_direction_to_ping_rtt(path: NetPath) -> None:
    require_ping()
    baseline = statistics.median(ping(path.desk, path.hops.app, 100, 0.02).rtts_ms)
    path.bridge.update(both=Impairment(delay_ms=20))
    delayed = ping(path.desk, path.hops.app, 100, 0.02)
    gateway = ping(path.desk, path.hops.gateway, 50, 0.02)

    assert delayed.lost == 0
    assert abs(statistics.median(delayed.rtts_ms) - (2 * 20 + baseline)) <= 1.0, (baseline, delayed.rtts_ms)
    assert statistics.median(gateway.rtts_ms) < 5, "the hop before the impaired link must not be delayed"


# -- (b) jitter -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "jitter_ms", "expected_sd_ms"),
    [
        ("uniform", 5.0, 5.0 * (2 / 3) ** 0.5),  # sum of two U(-5, 5): sd = sqrt(2) * 5 / sqrt(3)
        ("normal", 3.0, 3.0 * 2**0.5),
    ],
)
def test_jitter_shows_up_as_rtt_spread(path: NetPath, kind: str, jitter_ms: float, expected_sd_ms: float) -> None:
    require_ping()
    path.bridge.update(both=Impairment(delay_ms=20))
    steady = ping(path.desk, path.hops.app, 100, 0.02).rtts_ms
    path.bridge.update(both=Impairment(delay_ms=20, jitter_ms=jitter_ms, jitter=kind))
    jittery = ping(path.desk, path.hops.app, 200, 0.02).rtts_ms

    # Robust spread (IQR) first: a VM's rare multi-ms wake-ups must not decide the test.
    assert iqr(steady) < 0.5, steady
    assert 0.7 * 1.349 * expected_sd_ms <= iqr(jittery) <= 1.3 * 1.349 * expected_sd_ms, jittery
    assert 0.75 * expected_sd_ms <= statistics.pstdev(jittery) <= 1.35 * expected_sd_ms, jittery
    assert abs(statistics.median(jittery) - statistics.median(steady)) <= 1.5


# -- (c) loss ---------------------------------------------------------------------------------


def test_loss_rate_gives_binomial_ping_loss(path: NetPath) -> None:
    require_ping()
    count, rate = 200, 0.2
    ping(path.desk, path.hops.app, 5, 0.02)  # ARP settled before counting
    before = path.bridge.stats()
    path.bridge.update(a_to_b=Impairment(loss=rate))
    run = ping(path.desk, path.hops.app, count, 0.01)
    after = path.bridge.stats()

    mean, sd = count * rate, (count * rate * (1 - rate)) ** 0.5
    assert run.transmitted == count
    assert mean - 4 * sd <= run.lost <= mean + 4 * sd, run.lost
    # Ground truth: every ping lost is a frame the bridge dropped, and nothing else was dropped.
    assert lost_in_lanes(after) - lost_in_lanes(before) == run.lost


def test_same_seed_drops_the_same_packets(path: NetPath) -> None:
    def lost_seqs(seed: int) -> list[int]:
        path.bridge.configure(Config(a_to_b=Impairment(loss=0.3), seed=seed))
        return [s["seq"] for s in path.desk.call(echo_train, path.hops.app, 60, 0.01, 0.5) if s["rtt_us"] is None]

    first, again, other = lost_seqs(SEED), lost_seqs(SEED), lost_seqs(SEED + 1)
    assert first == again
    assert first != other
    assert 5 <= len(first) <= 35


# -- (d), (e) episodes ------------------------------------------------------------------------


def test_outage_loses_exactly_the_echoes_in_its_window(path: NetPath) -> None:
    delay_ms, interval_s, margin_ns = 5.0, 0.02, 3_000_000
    path.bridge.update(both=Impairment(delay_ms=delay_ms))
    path.bridge.schedule(Episode.outage("cut", path.bridge.now() + 1.5, 2.0))
    samples = path.desk.call(echo_train, path.hops.app, 250, interval_s)
    (cut,) = path.bridge.wait_episodes("cut")
    stats = path.bridge.stats()

    start, end = cut.start_mono_us * 1000, cut.end_mono_us * 1000
    lost_seen, lost_expected, unsure = set(), set(), set()
    for s in samples:
        # The request reaches the bridge right after it is sent, the reply one delay later.
        crossings = (s["sent_mono_ns"], s["sent_mono_ns"] + int(delay_ms * 1e6))
        if any(abs(c - start) < margin_ns or abs(c - end) < margin_ns for c in crossings):
            unsure.add(s["seq"])
        if any(start <= c < end for c in crossings):
            lost_expected.add(s["seq"])
        if s["rtt_us"] is None:
            lost_seen.add(s["seq"])

    assert lost_seen - unsure == lost_expected - unsure
    assert 2.0 / interval_s - 2 <= len(lost_seen) <= 2.0 / interval_s + 2 + len(unsure)
    # Each lost echo is exactly one frame the outage dropped (a request, or the reply to one).
    assert lost_in_lanes(stats, "lost_in_episode") == len(lost_seen) == lost_in_lanes(stats)


def test_episode_log_has_exact_start_and_end(path: NetPath) -> None:
    bridge = path.bridge
    slow_at = bridge.now() + 1.0
    bridge.schedule(
        Episode.spike("slow", slow_at, 1.0, extra_delay_ms=30, direction="a_to_b"),
        Episode.outage("cut", slow_at + 1.5, 0.5),
    )
    samples = path.desk.call(echo_train, path.hops.app, 175, 0.02)
    slow, cut = bridge.wait_episodes()
    offset_us = (time.time() - time.monotonic()) * 1e6

    for record, episode in ((slow, bridge.config.episodes[0]), (cut, bridge.config.episodes[1])):
        assert isinstance(record, EpisodeRecord) and not record.cancelled
        planned_us = (bridge.t0_mono_ns + int(episode.start_s * 1e9)) // 1000
        assert record.start_mono_us == planned_us
        assert record.end_mono_us - record.start_mono_us == pytest.approx(episode.duration_s * 1e6, abs=1)
        assert abs(record.start_wall_us - record.start_mono_us - offset_us) < 50_000
        assert abs(record.end_wall_us - record.end_mono_us - offset_us) < 50_000
        # The bridge noticed each boundary promptly (its own timeliness, not the ground truth).
        assert 0 <= record.start_fired_mono_us - record.start_mono_us < 20_000
        assert 0 <= record.end_fired_mono_us - record.end_mono_us < 20_000
    assert (slow.name, slow.direction, slow.extra_delay_ms, cut.loss) == ("slow", "a_to_b", 30, 1.0)

    # The spike is visible exactly inside its window (margin: the sub-ms way from desk to bridge).
    quiet = [
        s["rtt_us"] / 1000
        for s in samples
        if s["rtt_us"] is not None and s["sent_mono_ns"] / 1e9 < slow.start_mono_us / 1e6 - 0.005
    ]
    inside = [
        s["rtt_us"] / 1000
        for s in samples
        if s["rtt_us"] is not None
        and slow.contains(s["sent_mono_ns"] / 1e9 + 0.002)
        and slow.contains(s["sent_mono_ns"] / 1e9 - 0.002)
    ]
    assert len(inside) >= 40
    assert abs(statistics.median(inside) - statistics.median(quiet) - 30) <= 1.0


def test_dropping_a_running_episode_ends_it_in_the_log(path: NetPath) -> None:
    bridge = path.bridge
    bridge.schedule(Episode.outage("long", bridge.now() + 0.2, 60.0))
    time.sleep(0.5)
    assert path.desk.call(echo_train, path.hops.app, 3, 0.02, 0.3)[0]["rtt_us"] is None
    bridge.configure(Config(seed=SEED))
    (record,) = bridge.wait_episodes("long", timeout=2)
    assert record.cancelled and record.end_mono_us - record.start_mono_us < 5_000_000
    assert all(s["rtt_us"] is not None for s in path.desk.call(echo_train, path.hops.app, 3, 0.02))


# -- precision, and traffic other than ICMP ---------------------------------------------------


def test_delay_precision_at_50_pps(path: NetPath) -> None:
    """Median delay error under 0.3 ms at 50 pps, seen by the bridge and end to end."""
    baseline = statistics.median(rtts_ms(path.desk.call(echo_train, path.hops.app, 100, 0.02)))
    path.bridge.update(both=Impairment(delay_ms=20))
    delayed = rtts_ms(path.desk.call(echo_train, path.hops.app, 150, 0.02))
    lateness = path.bridge.stats()

    for lane in ("a_to_b", "b_to_a"):
        assert lateness[lane]["lateness_us"]["n"] >= 150
        assert lateness[lane]["lateness_us"]["p50"] < 300, lateness
    # Zero delay costs one wake-up per direction (in the baseline); a set delay absorbs it.
    assert -0.6 <= statistics.median(delayed) - 40 - baseline <= 0.3, (baseline, statistics.median(delayed))


TCP_SERVER = """
import hashlib, socket, sys
srv = socket.create_server((sys.argv[1], 5001))
srv.settimeout(20)
conn, _ = srv.accept()
conn.settimeout(20)
digest, size = hashlib.sha256(), 0
while chunk := conn.recv(1 << 16):
    digest.update(chunk)
    size += len(chunk)
conn.sendall(f"{size} {digest.hexdigest()}".encode())
conn.close()
"""

TCP_CLIENT = """
import random, socket, sys, time
data = random.Random(1).randbytes(int(sys.argv[2]))
deadline = time.monotonic() + 10
while True:
    try:
        conn = socket.create_connection((sys.argv[1], 5001), timeout=5)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
conn.sendall(data)
conn.shutdown(socket.SHUT_WR)
print(conn.recv(1024).decode())
"""


def test_tcp_crosses_the_bridge_intact(path: NetPath) -> None:
    """Checksum offload and GSO travel with each frame (virtio-net header), so TCP works."""
    size = 4 << 20
    path.bridge.update(both=Impairment(delay_ms=5, jitter_ms=1))
    server = path.app.spawn(
        sys.executable, "-c", TCP_SERVER, path.hops.app, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    reply = path.desk.python(TCP_CLIENT, path.hops.app, str(size), timeout=30).stdout.split()
    server.wait(timeout=10)
    expected = hashlib.sha256(random.Random(1).randbytes(size)).hexdigest()
    assert reply == [str(size), expected]
