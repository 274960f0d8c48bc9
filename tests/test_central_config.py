"""Central configuration: the example loads, bad texts are refused with a reason, versions agree across
collectors (SQLite and PostgreSQL), a push reaches a running agent within seconds, and an agent keeps
its last good config when a push is bad and across a restart without a collector."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cxpulse.agent.central import FILE_NAME, check, load_saved
from cxpulse.collector.config.central import ConfigError, apply, current, parse, update
from cxpulse.collector.config.versions import VersionStore
from cxpulse.collector.ingest.service import IngestConfig
from cxpulse.v1 import telemetry_pb2 as pb

EXAMPLE = Path(__file__).resolve().parent.parent / "collector" / "config" / "collector.example.toml"


def test_example_loads_and_what_it_pushes_passes_the_agents_check():
    cc = parse(EXAMPLE.read_text())
    assert [t[0] for t in cc.targets] == ["ccaas-edge", "crm"]
    assert any(a[0] == "salesforce-org" and "acme.my.salesforce.com" in a[1] for a in cc.apps)
    assert cc.hash_wifi_identity and cc.wifi_weak_rssi_dbm == -70 and cc.local_overrides == ["targets"]
    assert cc.raw_days["device"] == 3 and cc.rollup_days == 400
    base = IngestConfig(targets=[("from-flag", "h", 443)], voice_interval_ms=90_000, reflector="r:1")
    cfg = apply(base, cc, 7)
    msg = cfg.to_proto(0)
    assert msg.version == 7 and msg.probe_interval_ms == 1000 and msg.wifi_interval_ms == 5000
    assert [t.name for t in msg.targets] == ["ccaas-edge", "crm"]  # the file's targets replace the flags'
    assert msg.detector["spike_abs_us"] == 20000 and msg.hash_wifi_identity
    assert cfg.reflector == "r:1"  # what the file does not name stays the flags'
    assert check(msg) is None


def test_flags_alone_are_the_base():
    cfg = apply(IngestConfig(probe_interval_ms=500, targets=[("a", "h", 1)]), parse("[cadence]\nbatch = 2\n"), 3)
    assert (cfg.probe_interval_ms, cfg.batch_interval_ms, cfg.targets, cfg.version) == (500, 2000, [("a", "h", 1)], 3)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("[cadence]\nprobe = 0", "cadence.probe must be between"),
        ("[cadence]\nprobe = nan", "must be a number"),
        ("[cadence]\nprobe = '1'", "must be a number"),
        ("[cadence]\nfast = 1", "unknown key 'fast'"),
        ("[targetz]\nx = 1", "unknown key 'targetz'"),
        ("[[targets]]\nname = 'gateway'\nhost = 'h'", "reserved"),
        ("[[targets]]\nname = 'a'\nhost = 'h'\n[[targets]]\nname = 'a'\nhost = 'i'", "used twice"),
        ("[[targets]]\nname = 'a'\nhost = 'h'\nport = 0", "port must be 1..65535"),
        ("[[apps]]\nname = 'a'\nurl = 'ftp://x'", "url must be http"),
        ("[[presets]]\nname = 'no-such-vendor'", "unknown preset"),
        ("[detector]\nspike_abs_us = 5", "outside 1000"),
        ("[detector]\nbogus = 1", "unknown key 'bogus'"),
        ("[wifi]\nweak_rssi_dbm = 10", "-100..-30"),
        ("[privacy]\nhash_wifi_identity = 'yes'", "true or false"),
        ("[agents]\nlocal_overrides = ['everything']", "is not one of"),
        ("[retention]\nrtt_days = 0", "more than 0"),
        ("[retention]\nevents_days = 30\nrollup_days = 10", "at least the longest"),
        ("this is = not toml", "not valid TOML"),
    ],
)
def test_bad_texts_are_refused_with_the_reason(text, reason):
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert reason in err.value.reason


def _versions_agree(url: str) -> None:
    assert current(url) == (0, "")
    v1 = update(url, "[cadence]\nprobe = 2\n", "test")
    assert update(url, "[cadence]\nprobe = 2\n", "test") == v1  # the same text: no new version
    with pytest.raises(ConfigError):
        update(url, "[cadence]\nprobe = -1\n", "test")
    # A second collector on the same database sees and extends the same history.
    other = VersionStore(url)
    try:
        assert other.latest().version == v1
        v2, created = other.add("[cadence]\nprobe = 3\n", "collector-b")
        assert created and v2 == v1 + 1
    finally:
        other.close()
    assert current(url) == (v2, "[cadence]\nprobe = 3\n")


def test_versions_on_sqlite(tmp_path):
    _versions_agree(str(tmp_path / "c.sqlite"))


def test_versions_on_postgresql():
    from tests.stores import fresh_schema, postgres_url

    with fresh_schema(postgres_url()) as (_, url):
        _versions_agree(url)


# -- the agent's side --


def _agent(tmp_path: Path, **kw):
    from cxpulse.agent.config import AgentConfig
    from cxpulse.agent.probes.base import Target
    from cxpulse.agent.runner import Agent

    cfg = AgentConfig(
        collector="127.0.0.1:9",
        state_dir=str(tmp_path / "state"),
        measure_gateway=False,
        trace_enabled=False,
        targets=(Target("local", "127.0.0.1", 9),),
        **kw,
    ).validate()
    return Agent(cfg)


def _pushed(version: int, *targets: str, **kw) -> pb.AgentConfig:
    return pb.AgentConfig(version=version, targets=[pb.Target(name=t, host="127.0.0.1", port=9) for t in targets], **kw)


def test_agent_runs_a_good_push_refuses_a_bad_one_and_keeps_the_last_good_across_a_restart(tmp_path):
    a = _agent(tmp_path)
    a._apply_config(
        _pushed(5, "pushed", probe_interval_ms=500, detector={"spike_abs_us": 50_000}, wifi_interval_ms=2000)
    )
    assert [t.name for t in a.cfg.targets] == ["pushed"] and a.cfg.probe_interval_s == 0.5
    assert a.detector.cfg.spike_abs_us == 50_000 and a.cfg.wifi_interval_s == 2.0
    assert (tmp_path / "state" / FILE_NAME).exists()

    bad = _pushed(6, "other", probe_interval_ms=1, detector={"spike_abs_us": 50_000})
    a._apply_config(bad)
    assert [t.name for t in a.cfg.targets] == ["pushed"] and a.cfg.probe_interval_s == 0.5  # the last good one runs
    a._apply_config(bad)  # the same bad version again (a reconnect): reported once
    found = _rejections(a)
    assert len(found) == 1, found
    assert "probe_interval_ms 1 is outside" in found[0].evidence and "version 6" in found[0].evidence
    assert load_saved(str(tmp_path / "state")).version == 5

    # A restart without a collector runs the kept config, not the bootstrap file's targets.
    b = _agent(tmp_path)
    assert [t.name for t in b.cfg.targets] == ["pushed"] and b.cfg.probe_interval_s == 0.5


def _rejections(a) -> list:
    """config_rejected events the agent has spooled for upload (an event closes its batch at once)."""
    from cxpulse.v1 import payload

    found = []
    for e in a.spool.pending():
        found += [ev for ev in payload.decode(a.spool.read(e)).events if ev.kind == "config_rejected"]
    return found


def test_refusal_is_an_event_in_the_spooled_payload(tmp_path):
    a = _agent(tmp_path)
    a._apply_config(_pushed(9, "x", detector={"no_such_threshold": 1.0}))
    found = _rejections(a)
    assert len(found) == 1 and "unknown detector threshold" in found[0].evidence
    assert found[0].target == "config" and found[0].end_us is not None


def test_local_file_keeps_what_it_is_allowed_to(tmp_path):
    a = _agent(tmp_path, probe_interval_s=0.25)
    a._apply_config(_pushed(3, "central", probe_interval_ms=2000, local_overrides=["targets", "probe_interval"]))
    assert [t.name for t in a.cfg.targets] == ["local"] and a.cfg.probe_interval_s == 0.25
    a._apply_config(_pushed(4, "central", probe_interval_ms=2000))  # IT withdraws the permission
    assert [t.name for t in a.cfg.targets] == ["central"] and a.cfg.probe_interval_s == 2.0


@pytest.mark.parametrize(
    "msg, reason",
    [
        (pb.AgentConfig(batch_interval_ms=10), "batch_interval_ms 10"),
        (pb.AgentConfig(targets=[pb.Target(name="gateway", host="h")]), "reserved"),
        (pb.AgentConfig(apps=[pb.App(name="a", url="javascript:x")]), "url must be"),
        (pb.AgentConfig(detector={"cpu_pct": float("nan")}), "cpu_pct"),
        (pb.AgentConfig(local_overrides=["state_dir"]), "unknown local override"),
        (pb.AgentConfig(reflector="nope"), "HOST:PORT"),
    ],
)
def test_agent_check_reasons(msg, reason):
    assert reason in (check(msg) or "")


# -- end to end: real collector and agent processes --


@pytest.mark.slow
def test_push_to_a_running_agent_changes_what_it_measures_and_a_bad_edit_is_refused(tmp_path, procs):
    from tests.conftest import CollectorProc, run_cli, start_agent, wait_for
    from tests.faults.conftest import rtt_rows

    conf = tmp_path / "collector.toml"
    conf.write_text('[cadence]\nprobe = 0.2\nbatch = 1\n\n[[targets]]\nname = "first"\nhost = "127.0.0.1"\nport = 9\n')
    c = CollectorProc(tmp_path, tmp_path / "c.sqlite", extra=["--config", str(conf)]).start()
    procs.append(c)
    agent_id = "central-config-e2e"
    start_agent(tmp_path, procs, c.address, "--agent-id", agent_id)

    def targets_since(t0_us: int) -> set[str]:
        return {t for t, ts in rtt_rows(str(c.db), agent_id) if ts >= t0_us}

    wait_for(lambda: "first" in targets_since(0), 30, what="samples of the first pushed target")
    # Change the file: the collector stores version 2 and pushes it mid-stream.
    conf.write_text(conf.read_text().replace('"first"', '"second"'))
    t_change = time.time_ns() // 1000
    wait_for(lambda: "second" in targets_since(t_change), 20, what="the agent measuring the new target")
    t_switched = time.time_ns() // 1000 + 2_000_000
    time.sleep(3)
    assert "first" not in targets_since(t_switched)
    assert "version 2" in c.output()

    # A bad edit: refused at the collector, version 2 keeps running on the agent.
    conf.write_text("[cadence]\nprobe = -5\n")
    wait_for(lambda: "refused" in c.output(), 10, what="the collector to refuse the bad file")
    t_bad = time.time_ns() // 1000
    time.sleep(3)
    assert targets_since(t_bad) == {"second"}
    r = run_cli("collector", "config", "show", "--db", str(c.db))
    assert r.returncode == 0 and "# version 2" in r.stdout and '"second"' in r.stdout
    # config set: validated, stored, picked up by the running collector and pushed.
    good = tmp_path / "third.toml"
    good.write_text('[cadence]\nprobe = 0.2\nbatch = 1\n\n[[targets]]\nname = "third"\nhost = "127.0.0.1"\nport = 9\n')
    bad = tmp_path / "bad.toml"
    bad.write_text("[detector]\ncpu_pct = 500\n")
    r = run_cli("collector", "config", "set", str(bad), "--db", str(c.db))
    assert r.returncode == 1 and "cpu_pct" in r.stderr and "nothing stored" in r.stderr
    r = run_cli("collector", "config", "set", str(good), "--db", str(c.db))
    assert r.returncode == 0 and "version 3" in r.stdout, r.stdout + r.stderr
    t_set = time.time_ns() // 1000
    wait_for(lambda: "third" in targets_since(t_set), 20, what="the agent measuring the target set by the CLI")
    assert (tmp_path / "agent" / FILE_NAME).exists()


def test_sighup_rereads_the_file_and_pushes_a_bad_edit_is_logged_and_ignored(tmp_path, caplog):
    """In-process watcher with a recording service: SIGHUP makes the change immediate (the poll is an hour)."""
    import asyncio
    import signal

    from cxpulse.collector.config.watch import ConfigWatcher

    class Service:
        def __init__(self):
            self.pushed = []

        def set_config(self, cfg):
            self.pushed.append(cfg)
            return 0

    conf = tmp_path / "c.toml"
    conf.write_text("[cadence]\nprobe = 2\n")
    db = str(tmp_path / "v.sqlite")

    async def main():
        svc = Service()
        w = ConfigWatcher(svc, IngestConfig(batch_interval_ms=3000), db, str(conf), poll_s=3600)
        await w.start()
        try:
            assert [c.probe_interval_ms for c in svc.pushed] == [2000] and svc.pushed[0].batch_interval_ms == 3000
            conf.write_text("[cadence]\nprobe = 4\n")
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):
                if len(svc.pushed) == 2:
                    break
                await asyncio.sleep(0.05)
            assert [c.version for c in svc.pushed] == [1, 2] and svc.pushed[1].probe_interval_ms == 4000
            conf.write_text("[cadence]\nprobe = 'fast'\n")
            os.kill(os.getpid(), signal.SIGHUP)
            await asyncio.sleep(0.5)
            assert len(svc.pushed) == 2 and w.version == 2
        finally:
            await w.stop()
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    with caplog.at_level("ERROR", logger="cxpulse.collector.config"):
        asyncio.run(main())
    assert any("refused, version 2 keeps running" in r.getMessage() for r in caplog.records)
    assert current(db) == (2, "[cadence]\nprobe = 4\n")


@pytest.mark.slow
def test_collector_refuses_to_start_with_a_bad_config_file(tmp_path):
    from tests.conftest import CollectorProc

    conf = tmp_path / "bad.toml"
    conf.write_text("[detector]\nspike_abs_us = 1\n")
    c = CollectorProc(tmp_path, tmp_path / "c.sqlite", extra=["--insecure", "--config", str(conf)])
    try:
        with pytest.raises(AssertionError) as err:
            c.start()
        assert "spike_abs_us" in str(err.value)
    finally:
        if c.alive():
            c.stop()


@pytest.mark.slow
def test_two_collectors_on_one_postgresql_push_the_same_version(tmp_path, procs):
    """`config set` against the shared database: both collectors pick it up; an agent on either runs it."""
    from tests.conftest import CollectorProc, run_cli, start_agent, wait_for
    from tests.faults.conftest import rtt_rows
    from tests.stores import fresh_schema, postgres_url

    with fresh_schema(postgres_url()) as (_, url):
        cols = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            c = CollectorProc(tmp_path / name, url).start()
            procs.append(c)
            cols.append(c)
        conf = tmp_path / "shared.toml"
        conf.write_text(
            '[cadence]\nprobe = 0.2\nbatch = 1\n\n[[targets]]\nname = "shared"\nhost = "127.0.0.1"\nport = 9\n'
        )
        r = run_cli("collector", "config", "set", str(conf), "--db", url)
        assert r.returncode == 0 and "version 1" in r.stdout, r.stdout + r.stderr
        for c in cols:
            wait_for(lambda c=c: "central config version 1" in c.output(), 15, 0.2, "both collectors to take version 1")
        start_agent(tmp_path, procs, cols[1].address, "--agent-id", "on-b")
        wait_for(lambda: any(t == "shared" for t, _ in rtt_rows(url, "on-b")), 30, 0.3, "the agent on B to measure it")
        for c in cols:
            c.stop()


def test_one_contract_for_agent_and_collector():
    """The agent and the collector check pushes with one function and one table (cxpulse/v1/contract.py)."""
    from dataclasses import fields

    from cxpulse.agent import central as agent_central
    from cxpulse.agent.detector import DetectorConfig
    from cxpulse.collector.config import central as collector_central
    from cxpulse.v1 import contract

    assert agent_central.check is contract.check and collector_central.check is contract.check
    assert set(contract.DETECTOR_BOUNDS) <= {f.name for f in fields(DetectorConfig)}
    for name, (lo, hi) in contract.DETECTOR_BOUNDS.items():  # the detector's own defaults are pushable values
        assert lo <= getattr(DetectorConfig(), name) <= hi, name
    assert {f"{k}_interval_ms" for k in collector_central._CADENCE} == set(contract.INTERVALS_MS)
    assert all(name in pb.AgentConfig.DESCRIPTOR.fields_by_name for name in contract.INTERVALS_MS)
