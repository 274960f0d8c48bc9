"""End to end across a real routed path: desk -> gateway -> app/IT server, all in namespaces.

The collector (with its voice reflector) and a web app run in the "app" namespace, the agent on
the "desk". An outage is injected on the gateway (a blackhole route for the app's address) and
must come back from the lookup as one outage event at the app's hop, not at the gateway, with
the app, voice, device and path sections filled in.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, agent_security_args, register_collector, run_cli, wait_for
from tests.netns import Lab, require_netns, routed_desk

pytestmark = [pytest.mark.slow, pytest.mark.root]

PY = sys.executable


def _lookup(db, query):
    r = run_cli("lookup", query, "--db", str(db), "--json")
    return json.loads(r.stdout) if r.returncode == 0 else None


def test_outage_beyond_the_gateway_is_one_event_at_the_right_hop(tmp_path):
    require_netns()
    db = tmp_path / "collector.sqlite"
    with Lab() as lab:
        net = routed_desk(lab)
        desk, gw, app, app_ip, gateway_ip = net.desk, net.gw, net.app, net.app_ip, net.gateway_ip
        logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("collector", "web", "agent")}
        try:
            app.spawn(
                PY,
                "-m",
                "http.server",
                "8080",
                "--bind",
                app_ip,
                "--directory",
                str(tmp_path),
                stdout=logs["web"],
                stderr=subprocess.STDOUT,
            )
            register_collector(f"{app_ip}:50051", db, insecure=True)  # the lab's own namespaces; agents still enroll
            app.spawn(
                PY,
                "-m",
                "cxpulse",
                "-v",
                "collector",
                "serve",
                "--listen",
                f"{app_ip}:50051",
                "--db",
                str(db),
                "--insecure",
                "--reflector",
                f"{app_ip}:50052",
                "--app",
                f"web=http://{app_ip}:8080/",
                "--app-interval",
                "5",
                "--voice-interval",
                "10",
                stdout=logs["collector"],
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            wait_for(lambda: b"listening on" in (tmp_path / "collector.log").read_bytes(), 20, what="collector")
            agent = desk.spawn(
                PY,
                "-m",
                "cxpulse",
                "-v",
                "agent",
                "run",
                "--collector",
                f"{app_ip}:50051",
                "--state-dir",
                str(tmp_path / "agent"),
                "--interval",
                "0.25",
                "--batch-interval",
                "1",
                "--target",
                f"app-edge={app_ip}:8080",
                "--user",
                "netns.user",
                *agent_security_args(f"{app_ip}:50051"),
                stdout=logs["agent"],
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            wait_for(
                lambda: (
                    (v := _lookup(db, "netns.user"))
                    and len(v["agents"][0]["targets"]) >= 2
                    and v["agents"][0]["targets"][0]["samples"] >= 30
                ),
                30,
                0.5,
                "baseline samples",
            )

            t_down = time.time()
            gw.ip("route", "add", "blackhole", f"{app_ip}/32")
            time.sleep(3.0)
            gw.ip("route", "del", "blackhole", f"{app_ip}/32")
            t_up = time.time()
            time.sleep(4.0)  # reconnect, deliver the spooled batches, close the event
            agent.send_signal(2)
            agent.wait(15)
        finally:
            for f in logs.values():
                f.close()

    view = _lookup(db, "netns.user")
    assert view, (tmp_path / "agent.log").read_text()[-3000:]
    a = view["agents"][0]
    by_target = {t["target"]: t for t in a["targets"]}
    assert by_target["gateway"]["addresses"] == [gateway_ip] and by_target["gateway"]["lost"] == 0
    assert by_target["app-edge"]["lost"] >= 8
    outages = [e for e in a["events"] if e["kind"] in ("outage", "loss_burst")]
    assert len(outages) == 1, a["events"]
    (e,) = outages
    assert e["target"] == "app-edge" and e["kind"] == "outage" and e["end_us"] is not None
    assert abs(e["start_us"] / 1e6 - t_down) < 1.0, (e, t_down)
    assert abs(e["end_us"] / 1e6 - t_up) < 1.5, (e, t_up)
    assert not [x for x in a["events"] if x["target"] == "gateway"]

    (web,) = a["apps"]
    assert web["app"] == "web" and web["last_status"] == 200 and web["checks"] >= 2
    assert a["voice"] and a["voice"]["runs"] >= 1 and a["voice"]["packets_sent"] >= 200
    assert a["device"] and a["device"]["readings"] >= 1
    assert a["paths"] and a["paths"][0]["hops"][0]["address"] == gateway_ip

    text = run_cli("lookup", "netns.user", "--db", str(db), "--full").stdout
    assert "outage" in text and "app-edge" in text and "voice-cadence" in text
