"""Network partition between agent and collector, then healed: all delivered in order, then live again.

The agent runs in its own namespace ("desk"), the collector in another ("dc"); the link between
them goes through the impairment bridge (tests/impair.py), which drops every frame for 45 s: a
silent partition (no RST, no ICMP), as when a VPN or Wi-Fi goes away. That is longer than the
agent's keepalive needs to notice (30 s + 10 s), so its stream breaks and it has to reconnect
through a link that only comes back later. The agent measures its own loopback, so it keeps
measuring all along. Afterwards:

- every sample measured is stored exactly once and the series has no hole;
- in order: the store inserted the samples in time order (SQLite rowids follow timestamps), so
  the spooled backlog went in before the live data that followed it;
- live data resumes: within seconds of the heal the newest stored sample is seconds old.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, register_collector, wait_for
from tests.faults.conftest import NO_HOLE_US, agent_toml, assert_exactly_once, max_gap_us, rtt_rows
from tests.impair import Episode, splice
from tests.netns import Lab, require_netns
from tests.stored import rtt_in_store_order

pytestmark = [pytest.mark.slow, pytest.mark.root]

OUTAGE_S = 45.0
PY = sys.executable


def rows_in_insert_order(db) -> list[int]:
    return [ts for key, ts, _ in rtt_in_store_order(db, "partitioned") if key[0] == "t1"]


def test_partition_then_heal_delivers_everything_in_order_then_live(tmp_path):
    require_netns()
    db = tmp_path / "collector.sqlite"
    state = tmp_path / "agent"
    with Lab() as lab:
        desk, dc = lab.host("desk"), lab.host("dc")
        link = lab.link(desk, dc)
        bridge = splice(lab, link, tmp_path)
        addr = f"{link.b_addr}:50051"
        logs = {n: open(tmp_path / f"{n}.log", "wb") for n in ("collector", "agent")}
        try:
            register_collector(addr, db, insecure=True)  # in the lab's own namespaces; agents still enroll
            dc.spawn(
                PY,
                "-m",
                "cxpulse",
                "-v",
                "collector",
                "serve",
                "--listen",
                addr,
                "--db",
                str(db),
                "--insecure",
                stdout=logs["collector"],
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            wait_for(lambda: b"listening on" in (tmp_path / "collector.log").read_bytes(), 20, what="collector")
            cfg = agent_toml(
                tmp_path / "agent.toml",
                addr,
                state,
                targets=1,
                probe_s=0.2,
                batch_s=1.0,
                trace_enabled=False,
                reconnect_max_s=2,
            )
            agent = desk.spawn(
                PY,
                "-m",
                "cxpulse",
                "-v",
                "agent",
                "run",
                "--config",
                str(cfg),
                "--agent-id",
                "partitioned",
                stdout=logs["agent"],
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            wait_for(lambda: len(rtt_rows(db, "partitioned")) >= 20, 20, 0.3, "samples before the partition")

            bridge.schedule(Episode.outage("partition", bridge.now() + 0.1, OUTAGE_S))
            time.sleep(3.0)
            stored_at_cut = len(rtt_rows(db, "partitioned"))
            (cut,) = bridge.wait_episodes("partition", timeout=OUTAGE_S + 10)
            healed = time.time()
            assert len(rtt_rows(db, "partitioned")) == stored_at_cut, "data got through the partition"
            # Live again: the newest stored sample is at most a few seconds old.
            wait_for(
                lambda: max((t for _, t in rtt_rows(db, "partitioned")), default=0) > (time.time() - 3) * 1e6,
                40,
                0.5,
                "live data after the heal",
            )
            caught_up = time.time()
            time.sleep(2.0)
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(15) == 0
        finally:
            for f in logs.values():
                f.close()

    agent_log = (tmp_path / "agent.log").read_text()
    summary, rows = assert_exactly_once(db, state, "partitioned")
    assert summary["connects"] >= 2, "the stream survived the partition: it was too short to test a reconnect"
    assert max_gap_us(rows) < NO_HOLE_US, "a hole in the stored series"
    order = rows_in_insert_order(db)
    assert order == sorted(order), "samples were stored out of order"
    outage_rows = [t for _, t in rows if cut.start_wall_us <= t <= cut.end_wall_us]
    assert len(outage_rows) >= OUTAGE_S / 0.2 * 0.9, "the samples measured during the partition are missing"
    print(
        f"\npartition {OUTAGE_S:.0f} s: {len(rows)} samples stored once, in order ({len(outage_rows)} from the "
        f"partition); live again {caught_up - healed:.1f} s after the heal; agent: "
        f"{agent_log.count('unreachable')} failed attempts, {summary['connects']} connects; "
        f"the bridge's outage lasted {(cut.end_wall_us - cut.start_wall_us) / 1e6:.1f} s"
    )
