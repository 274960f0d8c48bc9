"""Graceful drain: SIGTERM on the collector while agents stream; every acked batch is in the store.

Three agents stream batches every 200 ms. Just before the SIGTERM the test takes the SQLite write
lock for 3 s, so that at the moment the collector is told to stop it holds batches it has
received and not yet committed. The drain must commit those, ack them, and only then close the
streams (UNAVAILABLE with a retry hint), within its grace; the health service must say
NOT_SERVING from the start of the drain. Then a new collector starts on the same database and the
agents deliver the rest.

"No batch acked and lost": an acked batch is deleted from the agent's spool, so if the drained
collector had acked anything it had not committed, the final count (measured == stored) would
come up short.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import CollectorProc, client_channel, wait_for
from tests.faults.conftest import NO_HOLE_US, agent_proc, agent_toml, assert_exactly_once, max_gap_us, rtt_rows

pytestmark = pytest.mark.slow

LOCK_S = 3.0


class HealthWatch:
    """Follows grpc.health.v1 Watch for the ingest service in a thread: (time, status name) pairs."""

    def __init__(self, address: str, service: str = "cxpulse.v1.TelemetryService"):
        self.seen: list[tuple[float, str]] = []
        self._channel = client_channel(address)
        stub = health_pb2_grpc.HealthStub(self._channel)
        self._call = stub.Watch(health_pb2.HealthCheckRequest(service=service), timeout=60)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for r in self._call:
                self.seen.append((time.time(), health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)))
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self._call.cancel()
        self._channel.close()


def hold_write_lock(db, seconds: float, locked: threading.Event) -> None:
    con = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        con.execute("ROLLBACK")
    finally:
        con.close()


def test_sigterm_drains_streams_acks_only_what_is_committed(tmp_path, procs):
    db = tmp_path / "collector.sqlite"
    col = CollectorProc(tmp_path, db).start()
    procs.append(col)
    port = col.port
    ids = [f"drain-{i}" for i in range(3)]
    agents = []
    for agent_id in ids:
        cfg = agent_toml(
            tmp_path / f"{agent_id}.toml",
            col.address,
            tmp_path / agent_id,
            targets=2,
            probe_s=0.05,
            batch_s=0.2,
            trace_enabled=False,
            reconnect_max_s=1,
        )
        agents.append(agent_proc(tmp_path, procs, cfg, agent_id))
    wait_for(lambda: all(len(rtt_rows(db, a)) >= 20 for a in ids), 20, 0.3, "all agents streaming")
    watch = HealthWatch(col.address)
    wait_for(lambda: watch.seen, 5, 0.05, "health SERVING")

    locked = threading.Event()
    locker = threading.Thread(target=hold_write_lock, args=(str(db), LOCK_S, locked), daemon=True)
    locker.start()
    locked.wait(5)
    time.sleep(0.5)  # batches arrive and wait for the commit
    t_term = time.time()
    col.p.send_signal(signal.SIGTERM)
    code = col.p.wait(30)
    t_exit = time.time()
    col.stop()
    locker.join(10)
    watch.close()
    assert code == 0, col.output()[-2000:]

    log = col.output()
    m = re.search(r"drained (\d+) streams in ([\d.]+)s \((\d+) acks sent while draining\)", log)
    assert m, log[-2000:]
    drained, acks_while_draining = int(m.group(1)), int(m.group(3))
    assert drained == len(ids), log[-2000:]
    assert acks_while_draining > 0, "nothing was waiting for its commit at the SIGTERM: the test proves nothing"
    assert t_exit - t_term < LOCK_S + 5, "the drain took longer than the commits it waited for"
    statuses = [s for t, s in watch.seen]
    assert statuses[0] == "SERVING" and "NOT_SERVING" in statuses, watch.seen
    not_serving_at = next(t for t, s in watch.seen if s == "NOT_SERVING")
    assert not_serving_at - t_term < 1.0, "health did not turn NOT_SERVING before the streams were drained"
    for a in agents:
        assert "collector is shutting down" in a.output(), "the agent did not get the drain status"

    # A new collector on the same database: the agents send what was not acked; nothing twice.
    col = CollectorProc(tmp_path, db, port=port).start()
    procs.append(col)
    wait_for(
        lambda: all("connected to collector" in a.output().rsplit("unreachable", 1)[-1] for a in agents),
        30,
        0.2,
        "agents to reconnect",
    )
    time.sleep(1.5)
    for a in agents:
        assert a.stop(signal.SIGTERM) == 0
    total = 0
    for agent_id in ids:
        _, rows = assert_exactly_once(db, tmp_path / agent_id, agent_id)
        assert max_gap_us(rows) < NO_HOLE_US
        total += len(rows)
    print(
        f"\ndrain: {drained} streams, {acks_while_draining} acks for batches committed during the drain "
        f"(store locked {LOCK_S:.0f} s at the SIGTERM), exit {t_exit - t_term:.1f} s after SIGTERM, "
        f"NOT_SERVING after {not_serving_at - t_term:.2f} s; {total} samples stored exactly once"
    )
