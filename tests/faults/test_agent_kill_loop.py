"""Agent killed with SIGKILL mid-write, again and again: the spool recovers, no garbage, no duplicates.

The agent closes a batch every 100 ms (each one a tmp write, fsync, rename, directory fsync, then
the state file the same way) and is killed at a random moment, 20 times, then restarted. For the
first half the collector is up (batches are acked and deleted while the agent writes); for the
second half it is down, so the spool grows across crashes and each restart must pick it up. After
every kill the spool on disk is inspected as the crash left it: torn writes may exist only as
``.tmp`` files, and every ``.mpk`` file must pass its header and checksum. At the end:

- no sample is stored twice, and no batch was rejected (nothing torn was ever sent);
- nothing that reached the spool was lost: every batch the agent logged as spooled is stored
  (stored >= the logged total), and before each kill the stored series reaches up to the last
  ~0.5 s (only the open batch, never written, dies with the process);
- sequence numbers never repeat across restarts and the epoch never changes.
"""

from __future__ import annotations

import random
import re
import signal
import time

import pytest

from cxpulse.agent.spool import CorruptFile, check_file
from tests.conftest import CollectorProc, Proc, wait_for
from tests.faults.conftest import agent_toml, last_run, rtt_rows

pytestmark = pytest.mark.slow

KILLS = 20
PROBE_S = 0.05
_SPOOLED = re.compile(r"spooled batch seq (\d+): (\d+) samples")


def test_agent_sigkilled_mid_write_many_times_spool_recovers(tmp_path, procs):
    collector = CollectorProc(tmp_path, tmp_path / "collector.sqlite").start()
    procs.append(collector)
    port = collector.port
    state = tmp_path / "agent"
    spool = state / "spool"
    cfg = agent_toml(
        tmp_path / "agent.toml",
        collector.address,
        state,
        targets=2,
        probe_s=PROBE_S,
        batch_s=0.1,
        trace_enabled=False,
        device_interval_s=3600,
        reconnect_max_s=1,
    )
    rng = random.Random(20)
    kills: list[float] = []
    torn = checked = 0
    epochs = set()
    log = tmp_path / "agent.log"
    deadline = time.monotonic() + 75
    most_spooled = 0
    while len(kills) < KILLS and time.monotonic() < deadline:
        if len(kills) == KILLS // 2:
            collector.stop(signal.SIGKILL)
        a = Proc(["-vv", "agent", "run", "--config", str(cfg), "--agent-id", "kill-loop"], log).start()
        procs.append(a)
        mark = log.read_text().count("spooled batch seq")
        wait_for(
            lambda: log.read_text().count("spooled batch seq") > mark or not a.alive(),  # noqa: B023 - called here
            20,
            0.05,
            "agent to spool its first batch",
        )
        time.sleep(rng.uniform(0.1, 1.0))
        a.p.send_signal(signal.SIGKILL)
        kills.append(time.time())
        a.p.wait(5)
        a.stop()
        # The spool exactly as the crash left it.
        torn += len(list(spool.glob("*.tmp")))
        for f in spool.glob("*.mpk"):
            try:
                check_file(str(f))
            except (CorruptFile, FileNotFoundError) as exc:
                pytest.fail(f"{f.name} is damaged after a kill: {exc}")
            checked += 1
        most_spooled = max(most_spooled, len(list(spool.glob("*.mpk"))))
        epochs.add((state / "spool" / "state.json").read_text())
    assert len(kills) == KILLS, f"only {len(kills)} kills in time"

    # The collector is back; a last, clean run delivers what is left.
    collector = CollectorProc(tmp_path, tmp_path / "collector.sqlite", port=port).start()
    procs.append(collector)
    mark = log.read_text().count("connected to collector")
    a = Proc(["-vv", "agent", "run", "--config", str(cfg), "--agent-id", "kill-loop"], log).start()
    procs.append(a)
    wait_for(lambda: log.read_text().count("connected to collector") > mark, 20, 0.1, "last run to connect")
    time.sleep(1.5)
    assert a.stop(signal.SIGTERM) == 0
    summary = last_run(state)
    assert summary["batches_still_spooled"] == 0 and summary["batches_rejected"] == 0
    assert summary["batches_dropped"] == 0, summary
    assert not list(spool.glob("*.tmp")) and not list(spool.glob("*.mpk"))
    assert not list((spool / "rejected").iterdir()), "a batch was quarantined"
    assert "rejected batch" not in collector.output()

    spooled = [(int(m.group(1)), int(m.group(2))) for m in _SPOOLED.finditer(log.read_text())]
    seqs = [s for s, _ in spooled]
    assert seqs == sorted(set(seqs)), "a sequence number was used twice"
    assert summary["committed_seq"] >= seqs[-1]
    assert len({json_epoch(e) for e in epochs}) == 1, "the epoch changed"

    rows = rtt_rows(collector.db, "kill-loop")
    assert len(rows) == len(set(rows)), f"{len(rows) - len(set(rows))} samples stored twice"
    # Each logged batch holds RTT samples plus one device reading per run (the first batch of a run).
    runs = KILLS + 1
    logged_rtt = sum(n for _, n in spooled) - runs
    assert len(rows) >= logged_rtt, (len(rows), logged_rtt)
    ts = sorted(t for _, t in rows)
    for k in kills:
        before = [t for t in ts if t < k * 1e6]
        assert before and k * 1e6 - before[-1] < 0.5e6, f"spooled data before the kill at {k} was lost"
    print(
        f"\n{KILLS} SIGKILLs: {torn} torn .tmp writes found and discarded, {checked} spool files checked whole "
        f"(up to {most_spooled} at once); "
        f"{len(rows)} samples stored once ({len(rows) - logged_rtt} more than logged: spooled just before a kill)"
    )


def json_epoch(state_text: str) -> int:
    import json

    return json.loads(state_text)["epoch"]
