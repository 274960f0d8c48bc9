"""Collector killed with SIGKILL under load (real agents plus simulated ones), restarted: every sample once.

Four agent processes batch every 0.25 s while 150 simulated agents (tests/bench/loadsim.py)
stream beside them, so that each kill lands with batches received and not yet committed, and
commits done but not yet acked. The collector is killed twice and restarted on the same port.
Afterwards each agent's own count (last_run.json) must equal what the store holds, with no sample
twice; every simulated agent's samples, likewise.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest

from tests.bench import loadsim
from tests.conftest import CollectorProc, wait_for
from tests.faults.conftest import NO_HOLE_US, agent_proc, agent_toml, assert_exactly_once, max_gap_us, rtt_rows

pytestmark = pytest.mark.slow

AGENTS = 4


def test_collector_sigkilled_twice_under_load_every_sample_stored_once(tmp_path, procs):
    db = tmp_path / "collector.sqlite"
    col = CollectorProc(tmp_path, db).start()
    procs.append(col)
    port = col.port
    ids = [f"kill9-{i}" for i in range(AGENTS)]
    agents = []
    for agent_id in ids:
        cfg = agent_toml(
            tmp_path / f"{agent_id}.toml",
            col.address,
            tmp_path / agent_id,
            targets=2,
            probe_s=0.1,
            batch_s=0.25,
            trace_enabled=False,
        )
        agents.append(agent_proc(tmp_path, procs, cfg, agent_id))

    sim_cfg = loadsim.SimConfig(
        agents=150,
        duration_s=16,
        batch_interval_s=0.5,
        samples=(30, 60),
        channels=4,
        connect_spread_s=1.0,
        drain_timeout_s=40,
    )
    sim = loadsim.SimResult()
    sim_thread = threading.Thread(target=lambda: asyncio.run(loadsim.simulate(col.address, sim_cfg, sim)), daemon=True)
    sim_thread.start()
    wait_for(lambda: all(len(rtt_rows(db, a)) >= 10 for a in ids), 30, 0.3, "every agent's first samples stored")

    for round_ in range(2):
        time.sleep(2.0)  # under load: batches in flight on every stream
        col.stop(signal.SIGKILL)
        time.sleep(1.5)  # agents keep measuring into their spools, simulated ones retry
        col = CollectorProc(tmp_path, db, port=port).start()
        procs.append(col)
        wait_for(
            lambda: all("connected to collector" in a.output().rsplit("unreachable", 1)[-1] for a in agents),
            30,
            0.3,
            f"agents to reconnect after kill {round_ + 1}",
        )

    sim_thread.join(60)
    assert not sim_thread.is_alive(), "simulated agents did not finish"
    time.sleep(1.0)
    for a in agents:
        assert a.stop(signal.SIGTERM) == 0

    total = 0
    for agent_id in ids:
        summary, rows = assert_exactly_once(db, tmp_path / agent_id, agent_id)
        assert summary["connects"] >= 3, summary
        assert max_gap_us(rows) < NO_HOLE_US, f"{agent_id}: a hole in the stored series"
        total += len(rows)

    loadsim.check_store(str(db), sim)
    assert sim.unacked_at_end == 0 and sim.reconnects >= sim_cfg.agents, (sim.unacked_at_end, sim.reconnects)
    assert not sim.stored_mismatches, sim.stored_mismatches[:5]
    assert sim.stored == sim.samples_sent
    print(
        f"\n2 SIGKILLs: {AGENTS} agents stored {total} samples exactly once; "
        f"{sim_cfg.agents} simulated agents {sim.stored} samples in {sim.batches_acked} batches exactly once "
        f"({sim.reconnects} reconnects: {dict(sorted(sim.refused.items()))})"
    )
