"""Every injected spike or outage becomes one event at the right hop; a clean path gives none.

desk -> gw -> [impairment bridge] -> isp -> app. The collector runs on the app host, the agent on
the desk at its DEFAULT cadence (1 Hz, 1 s timeout): a probe that is lost or late makes the agent
confirm with follow-up probes every 0.1 s (agent/detector/confirm.py), so a 1 s disruption is
several breaching samples. Episodes on the gw-isp link must show at the ISP hop and beyond (the
app edge), never at the gateway, each as exactly one event that starts at the first 1 Hz probe
that met it (so at most one interval after the bridge's start) and ends within a few tenths of a
second of the bridge's end.

Clean path: the choice is 10 minutes at 1 Hz, for real, in this one slow test (about 12 minutes
in all, CI runs it once, with nothing else of the agent's in parallel). A shorter run at a faster
cadence would not exercise what can raise a false alarm now: follow-ups fired by a probe that a
loaded machine answered late. ``CXPULSE_EVENTS_CLEAN_S`` shortens it for development only.

The one miss the design allows (confirm.py): a 1 s episode whose only 1 Hz probe came in its last
~0.1 s leaves a single breaching sample, which is what a random lost ping looks like. The test
accepts a missing event only there, read from the samples the collector stored.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, agent_security_args, register_collector, run_cli, wait_for
from tests.impair import Config, Episode
from tests.netns import require_netns
from tests.paths import NetPath

PY = sys.executable
CLEAN_S = float(os.environ.get("CXPULSE_EVENTS_CLEAN_S", "600"))
pytestmark = [pytest.mark.slow, pytest.mark.timeout(CLEAN_S + 300)]
BLIND_S = 0.2  # a probe this close to the end of an episode cannot be confirmed (confirm.py)


def _lookup(db, query):
    r = run_cli("lookup", query, "--db", str(db), "--json", "--window", "1h")
    return json.loads(r.stdout) if r.returncode == 0 else None


def test_each_injected_disruption_is_one_event_at_the_right_hop(tmp_path):
    require_netns()
    db = tmp_path / "collector.sqlite"
    logs = {n: open(tmp_path / f"{n}.log", "wb") for n in ("collector", "agent")}
    try:
        with NetPath(tmp_path, impair_at="gw-isp", config=Config(seed=5)) as path:
            app_ip = path.hops.app
            register_collector(f"{app_ip}:50051", db, insecure=True)  # the lab's own namespaces; agents still enroll
            path.app.spawn(PY, "-m", "cxpulse", "-v", "collector", "serve", "--listen", f"{app_ip}:50051",
                           "--db", str(db), "--insecure", stdout=logs["collector"], stderr=subprocess.STDOUT, cwd=REPO)
            wait_for(lambda: b"listening on" in (tmp_path / "collector.log").read_bytes(), 20, what="collector")
            agent = path.desk.spawn(PY, "-m", "cxpulse", "-v", "agent", "run", "--collector", f"{app_ip}:50051",
                                    "--state-dir", str(tmp_path / "agent"), "--batch-interval", "2", "--target", f"app-edge={app_ip}:9", "--user", "hop.user", *agent_security_args(f"{app_ip}:50051"),
                                    stdout=logs["agent"], stderr=subprocess.STDOUT, cwd=REPO)

            def hops_measured():
                v = _lookup(db, "hop.user")
                return v and {t["target"] for t in v["agents"][0]["targets"]} >= {"gateway", "isp", "app-edge"}

            wait_for(hops_measured, 30, 0.5, "gateway, isp and app-edge all measured (path traced)")
            time.sleep(CLEAN_S)
            clean = _lookup(db, "hop.user")["agents"][0]
            # device_pressure is this shared machine's CPU (other test suites), not a path event
            on_path = [e for e in clean["events"] if e["target"] in ("gateway", "isp", "app-edge")]
            assert on_path == [], on_path
            assert min(t["samples"] for t in clean["targets"]) >= 0.9 * CLEAN_S

            b = path.bridge
            t = b.now() + 1.0
            plan = []
            for name, kind, dur, extra in [("o1", "outage", 1, 0), ("s1", "latency_spike", 1, 80),
                                           ("o3", "outage", 3, 0), ("s5", "latency_spike", 5, 150),
                                           ("o10", "outage", 10, 0)]:
                ep = Episode.outage(name, t, dur) if kind == "outage" else Episode.spike(name, t, dur, extra)
                plan.append((name, kind, ep))
                t += dur + 5.0
            b.schedule(*(ep for _, _, ep in plan))
            records = {r.name: r for r in b.wait_episodes(timeout=t - b.now() + 10)}
            time.sleep(8)  # reconnect after the long outage, deliver the spool, close the last event
            agent.send_signal(2)
            agent.wait(20)
    finally:
        for f in logs.values():
            f.close()

    a = _lookup(db, "hop.user")["agents"][0]
    events = a["events"]
    summary = json.loads((tmp_path / "agent" / "last_run.json").read_text())
    # ~10 follow-ups per second of disruption per impaired hop, a few more to confirm the end
    assert 150 <= summary["followup_probes"] <= 1500, summary
    assert not [e for e in events if e["target"] == "gateway"], "the gateway link was never impaired"
    for hop in ("isp", "app-edge"):
        at_hop = [e for e in events if e["target"] == hop]
        sent = _sample_times(db, hop)
        missed = []
        for name, kind, _ in plan:
            rec = records[name]
            start, end = rec.start_wall_us / 1e6, rec.end_wall_us / 1e6
            overlapping = [e for e in at_hop if e["start_us"] / 1e6 < end + 0.5 and (e["end_us"] or 1e18) / 1e6 > start - 0.5]
            if not overlapping:
                inside = [t for t in sent if start <= t < end]
                assert end - start < 1.5 and inside and end - inside[-1] < BLIND_S, (hop, name, inside, end, at_hop)
                missed.append(name)
                continue
            assert len(overlapping) == 1, (hop, name, overlapping, at_hop)
            e = overlapping[0]
            assert e["kind"] == kind, (hop, name, e)
            assert e["end_us"] is not None, (hop, name, e)
            # starts at the first 1 Hz probe the episode met (one sent just before may lose its reply)
            assert -0.35 <= e["start_us"] / 1e6 - start <= 1.1, (hop, name, e["start_us"] / 1e6 - start)
            assert abs(e["end_us"] / 1e6 - end) <= 0.4, (hop, name, e["end_us"] / 1e6 - end)
        assert len(at_hop) == len(plan) - len(missed), (hop, at_hop)
    text = run_cli("lookup", "hop.user", "--db", str(db)).stdout
    assert "isp" in text and "outage" in text and "latency_spike" in text


def _sample_times(db, target):
    """Send times (s) of the 1 Hz samples the collector stored for ``target``."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT s.ts_us FROM samples_rtt s JOIN series r ON r.id = s.series "
                           "WHERE r.target = ? ORDER BY s.ts_us", (target,)).fetchall()
    finally:
        con.close()
    return [r[0] / 1e6 for r in rows]
