"""Wi-Fi end to end: a scripted sequence of recorded iw outputs through a real agent and collector.

The machine has no radio, so the agent replays recorded `iw dev IF link` outputs
(CXPULSE_WIFI_REPLAY) through the same watcher, batch, spool and uplink as live readings. The
sequence holds a roam, a weak-signal stretch and a disconnect; the lookup must show each once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import Proc, run_cli, wait_for

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "agent" / "wifi" / "fixtures" / "iw"


def _link(bssid: str, signal: int, rate: float = 26.0) -> str:
    """The recorded iw output (link-2412-heatmapper.txt) with BSSID, signal and rate set per step."""
    text = (FIXTURES / "link-2412-heatmapper.txt").read_text()
    text = text.replace("fe:dc:ba:98:76:02", bssid).replace("signal: -51 dBm", f"signal: {signal} dBm")
    return text.replace("tx bitrate: 26.0 MBit/s", f"tx bitrate: {rate} MBit/s")


def test_roam_weak_signal_and_disconnect_reach_the_lookup(tmp_path, procs, collector):
    not_connected = (FIXTURES / "link-not-connected.txt").read_text()
    steps = (
        [_link("fe:dc:ba:98:76:02", -52)] * 6  # on AP 1
        + [_link("fe:dc:ba:98:76:03", -58)] * 6  # roam to AP 2
        + [_link("fe:dc:ba:98:76:03", -79)] * 6  # weak signal
        + [_link("fe:dc:ba:98:76:03", -60)] * 6  # recovered
        + [not_connected] * 5  # disconnect
        + [_link("fe:dc:ba:98:76:03", -55)] * 8
    )  # reconnected
    replay = tmp_path / "wifi.jsonl"
    replay.write_text("".join(json.dumps({"text": t}) + "\n" for t in steps))
    cfg = tmp_path / "agent.toml"
    cfg.write_text("wifi_interval_s = 0.2\ntrace_enabled = false\n")
    p = Proc(
        [
            "-v",
            "agent",
            "run",
            "--config",
            str(cfg),
            "--collector",
            collector.address,
            "--state-dir",
            str(tmp_path / "agent"),
            "--no-gateway",
            "--interval",
            "0.5",
            "--batch-interval",
            "1",
            "--target",
            "loopback=127.0.0.1:9",
            "--user",
            "wifi.user",
            *collector.agent_args(),
        ],
        tmp_path / "agent.log",
    )
    os.environ["CXPULSE_WIFI_REPLAY"] = str(replay)
    try:
        p.start()
    finally:
        del os.environ["CXPULSE_WIFI_REPLAY"]
    procs.append(p)

    def done():
        r = run_cli("lookup", "wifi.user", "--db", str(collector.db), "--json")
        if r.returncode:
            return None
        a = json.loads(r.stdout)["agents"][0]
        w = a["wifi"]
        return a if w and w["readings"] >= len(steps) and w["disconnects"] == 1 else None

    a = wait_for(done, 40, 0.5, "every replayed reading and the disconnect in the lookup")
    kinds = [e["kind"] for e in a["events"] if e["kind"].startswith("wifi_")]
    assert kinds.count("wifi_roam") == 1 and kinds.count("wifi_disconnect") == 1, kinds
    assert kinds.count("wifi_weak_signal") == 1, kinds
    roam = next(e for e in a["events"] if e["kind"] == "wifi_roam")
    assert "fe:dc:ba:98:76:02" in roam["evidence"] and "fe:dc:ba:98:76:03" in roam["evidence"]
    disc = next(e for e in a["events"] if e["kind"] == "wifi_disconnect")
    assert disc["end_us"] is not None and 0.6 <= disc["duration_s"] <= 2.0, disc
    w = a["wifi"]
    assert w["rssi_min_dbm"] == -79 and w["bssids"] == 2 and w["band"] == "2.4"
    text = run_cli("lookup", "wifi.user", "--db", str(collector.db), "--full").stdout
    assert "wifi: SSID-1" in text and "roams 1" in text and "disconnects 1" in text


def test_pushed_hashing_applies_to_the_next_readings_without_a_restart(tmp_path, procs):
    """Central config turns SSID/BSSID hashing on for a running agent: later rows carry no plain SSID."""
    import time

    from cxpulse.collector.store import open_store
    from tests.conftest import CollectorProc

    conf = tmp_path / "collector.toml"
    conf.write_text("[cadence]\nbatch = 1\nwifi = 0.2\n")
    col = CollectorProc(tmp_path, tmp_path / "c.sqlite", extra=["--config", str(conf)]).start()
    procs.append(col)
    replay = tmp_path / "wifi.jsonl"
    replay.write_text(json.dumps({"text": _link("fe:dc:ba:98:76:02", -52)}) + "\n")  # replayed over and over
    cfg = tmp_path / "agent.toml"
    cfg.write_text("trace_enabled = false\n")
    p = Proc(
        [
            "-v",
            "agent",
            "run",
            "--config",
            str(cfg),
            "--collector",
            col.address,
            "--state-dir",
            str(tmp_path / "agent"),
            "--no-gateway",
            "--target",
            "loopback=127.0.0.1:9",
            "--user",
            "hash.user",
            *col.agent_args(),
        ],
        tmp_path / "agent.log",
    )
    os.environ["CXPULSE_WIFI_REPLAY"] = str(replay)
    try:
        p.start()
    finally:
        del os.environ["CXPULSE_WIFI_REPLAY"]
    procs.append(p)

    def ssids(since_us: int) -> set:
        store = open_store(str(col.db))
        try:
            agents = store.find_agents("hash.user")
            rows = store.rows(agents[0].key, "wifi", since_us, time.time_ns() // 1000 + 60_000_000) if agents else []
        finally:
            store.close()
        return {r.values.get("ssid") for r in rows}

    wait_for(lambda: "SSID-1" in ssids(0), 30, 0.5, "plain SSID readings before the push")
    conf.write_text("[cadence]\nbatch = 1\nwifi = 0.2\n\n[privacy]\nhash_wifi_identity = true\n")
    wait_for(lambda: "version 2" in col.output(), 15, 0.2, "the collector to take the new version")
    time.sleep(3)  # the push reaches the agent; readings taken after this must be hashed
    t_after = time.time_ns() // 1000
    wait_for(lambda: ssids(t_after), 20, 0.5, "readings after the push")
    after = ssids(t_after)
    assert all(s and s != "SSID-1" for s in after), after
