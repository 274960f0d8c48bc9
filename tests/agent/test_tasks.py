"""The collection-task registry and the one way a push is applied (agent/tasks, agent/config.apply).

Every kind the agent writes has a task, every task keeps the CollectionTask shape, and the columns
each task writes are its kind's in cxpulse/v1/kinds.py (checked on real rows from a fake Output).
"""

from __future__ import annotations

import asyncio
import inspect

from cxpulse.agent.config import AgentConfig, Running, apply
from cxpulse.agent.detector import Detector, DetectorConfig
from cxpulse.agent.probes.base import Target
from cxpulse.agent.tasks import REGISTRY, AgentStats, Shared
from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1.kinds import KIND_METHODS, KINDS


def _shared(tmp_path, **kw) -> Shared:
    cfg = AgentConfig(state_dir=str(tmp_path), **kw)
    return Shared(Running(cfg), "agent-1", Detector(), AgentStats())


def test_every_kind_has_a_task_with_the_one_shape(tmp_path):
    shared = _shared(tmp_path)
    assert set(KINDS) <= set(REGISTRY)
    assert [k for k, make in REGISTRY.items() if make(shared).pace == "tick"] == ["rtt"]  # one clock
    for kind, make in REGISTRY.items():
        task = make(shared)
        assert task.kind == kind
        assert task.pace in ("tick", "every", "after", "before")
        assert isinstance(task.wake, asyncio.Event) and isinstance(task.enabled, bool)
        assert task.interval_s() > 0
        for name in ("start", "collect", "close"):
            assert inspect.iscoroutinefunction(getattr(task, name)), (kind, name)
        assert callable(task.reconfigured)


class _Out:
    def __init__(self):
        self.rows, self.got_events, self.paths = [], [], []

    def row(self, target, address, kind, method, ts_us, values, hop=None):
        self.rows.append((kind, method, values))

    def path(self, snapshot):
        self.paths.append(snapshot)

    def events(self, events):
        self.got_events += events

    def desk_user(self, desk):
        pass


def test_device_task_writes_the_device_kinds_columns(tmp_path):
    shared = _shared(tmp_path)
    task = REGISTRY["device"](shared)
    out = _Out()

    async def main():
        await task.start()
        await task.collect(out)
        await task.close()

    asyncio.run(main())
    [(kind, method, values)] = out.rows
    assert kind == "device" and method in KIND_METHODS["device"] and set(values) == set(KINDS["device"])


def test_apply_takes_what_the_push_sets_and_keeps_the_file_for_the_rest(tmp_path):
    base = AgentConfig(state_dir=str(tmp_path), targets=(Target("local", "127.0.0.1", 9),), probe_interval_s=0.25)
    pushed = pb.AgentConfig(
        version=3,
        targets=[pb.Target(name="central", host="10.0.0.1")],
        probe_interval_ms=2000,
        wifi_weak_rssi_dbm=-75,
        detector={"spike_abs_us": 50_000.0, "cpu_pct": 80.0},
        reflector="[::1]:4433",
        reflector_key=b"k",
    )
    r = apply(base, pushed)
    assert r.cfg.targets == (Target("central", "10.0.0.1", 443),) and r.cfg.probe_interval_s == 2.0
    assert r.cfg.batch_interval_s == base.batch_interval_s and r.cfg.wifi_weak_rssi_dbm == -75
    assert r.detector == DetectorConfig(spike_abs_us=50_000, cpu_pct=80.0) and isinstance(r.detector.spike_abs_us, int)
    assert r.reflector == ("::1", 4433) and r.reflector_key == b"k"
    # The file keeps what IT lets it keep, only where the file set it.
    kept = apply(
        base,
        pb.AgentConfig(
            version=4,
            targets=pushed.targets,
            probe_interval_ms=2000,
            batch_interval_ms=5000,
            local_overrides=["targets", "probe_interval", "batch_interval"],
        ),
    )
    assert kept.cfg.targets == base.targets and kept.cfg.probe_interval_s == 0.25 and kept.cfg.batch_interval_s == 5.0
    # A push is applied to the file, not to the previous push: what it no longer sets is the file's again.
    assert apply(base, pb.AgentConfig(version=5)) == Running(base)
