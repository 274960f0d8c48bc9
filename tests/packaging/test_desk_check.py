"""packaging/ci/desk_check.py and footprint.py: what the installers workflow runs on the Windows and
macOS runners, run here against a real desk: an agent in a namespace behind a routed gateway
streaming to a collector (with its JSON API) in another, for ~20 s, then the checks over the
store and over the API, passing and failing. Plus the checks' logic over hand-made views."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, agent_security_args, register_collector, wait_for
from tests.netns import Lab, require_netns, routed_desk

sys.path.insert(0, str(REPO / "packaging" / "ci"))
try:
    import desk_check
    import footprint
finally:
    sys.path.remove(str(REPO / "packaging" / "ci"))

PY = sys.executable
DESK_CHECK = str(REPO / "packaging" / "ci" / "desk_check.py")
FOOTPRINT = str(REPO / "packaging" / "ci" / "footprint.py")


def _row(target, addresses, methods, samples=10):
    return {
        "target": target,
        "addresses": addresses,
        "methods": methods,
        "samples": samples,
        "loss_pct": 0.0,
        "rtt_median_ms": 0.1,
    }


VIEW = {
    "agent_id": "a",
    "host": "desk",
    "os": "Windows 11",
    "user": "CORP\\maria.silva",
    "targets": [_row("gateway", ["192.168.1.1"], ["icmp_win"]), _row("loopback", ["127.0.0.1"], ["icmp_win"])],
    "paths": [
        {
            "target": "t",
            "address": "1.1.1.1",
            "method": "icmp_win",
            "reached": True,
            "hops": [{"ttl": 1, "address": "192.168.1.1", "rtt_ms": 1.2}, {"ttl": 2, "address": None}],
        }
    ],
}


def names(checks, ok=True):
    return [c.name for c in checks if c.ok is ok]


def test_checks_pass_on_a_complete_view_and_name_each_failure():
    assert names(desk_check.run_checks(VIEW, expect_user="maria.silva")) == ["gateway", "icmp", "path", "user"]
    bad = dict(
        VIEW,
        targets=[_row("loopback", ["127.0.0.1"], ["tcp_connect"])],
        paths=[{**VIEW["paths"][0], "hops": [{"ttl": 1, "address": None}]}],
        user="SYSTEM",
    )
    failed = desk_check.run_checks(bad, expect_user="maria.silva")
    assert names(failed, ok=False) == ["gateway", "icmp", "path", "user"]
    assert "tcp_connect" in failed[1].detail and "never answered" in failed[2].detail


def test_hop_one_must_be_the_gateway_and_a_missing_console_only_needs_the_field():
    other = dict(VIEW, paths=[{**VIEW["paths"][0], "hops": [{"ttl": 1, "address": "10.9.9.9", "rtt_ms": 1}]}])
    path = next(c for c in desk_check.run_checks(other) if c.name == "path")
    assert not path.ok and "not the gateway" in path.detail
    user = desk_check.run_checks(VIEW)[-1]
    assert user.ok and "no console session" in user.detail
    assert not desk_check.run_checks({k: v for k, v in VIEW.items() if k != "user"})[-1].ok


def test_console_user_on_windows_is_the_session_without_a_client_address(monkeypatch):
    """psutil lists WTS sessions on Windows with terminal None; an RDP session has the client's address."""
    import collections
    import types

    import psutil

    suser = collections.namedtuple("suser", "name terminal host started pid")  # psutil.users()' fields
    sessions = [suser("helpdesk.rdp", None, "10.20.30.40", 1.0, None), suser("maria.silva", None, "0.0.0.0", 2.0, None)]
    monkeypatch.setattr(desk_check, "sys", types.SimpleNamespace(platform="win32"))
    monkeypatch.setattr(psutil, "users", lambda: sessions)
    assert desk_check.console_user() == "maria.silva"
    monkeypatch.setattr(psutil, "users", lambda: sessions[:1])
    assert desk_check.console_user() is None
    assert desk_check._same_user("CORP\\Maria.Silva", "maria.silva")


def test_linux_record_is_read_from_the_benchmarks_doc():
    rec = footprint.linux_record()
    assert rec["rss_mib"] and rec["cpu_pct"] and "(the record)" in rec["source"]
    assert footprint.linux_record("### x (the record)\n| agent: steady-state RSS | 1,024.5 | MiB |\n") == {
        "rss_mib": 1024.5,
        "cpu_pct": None,
        "source": "docs/benchmarks.md, x (the record)",
    }


@pytest.mark.slow
@pytest.mark.root
def test_desk_check_and_footprint_on_a_real_desk_behind_a_gateway(tmp_path):
    require_netns()
    db = tmp_path / "collector.sqlite"
    state = tmp_path / "agent"
    with Lab() as lab:
        net = routed_desk(lab)
        desk, app, app_ip, gateway_ip = net.desk, net.app, net.app_ip, net.gateway_ip
        register_collector(f"{app_ip}:50051", db, insecure=True)
        from cxpulse.collector.security.registry import Registry

        reg = Registry.open(str(db))
        key = reg.create_api_key("helpdesk", "desk_check test")[0]
        reg.close()
        logs = {n: open(tmp_path / f"{n}.log", "wb") for n in ("collector", "agent")}
        try:
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
                "--http",
                f"{app_ip}:8081",
                stdout=logs["collector"],
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            wait_for(lambda: b"listening on" in (tmp_path / "collector.log").read_bytes(), 20, what="collector")
            # The trace goes to the first target (beyond the gateway); loopback is the ICMP row to 127.0.0.1.
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
                str(state),
                "--interval",
                "0.25",
                "--batch-interval",
                "1",
                "--target",
                f"app-edge={app_ip}:8080",
                "--target",
                "loopback=127.0.0.1",
                "--user",
                "desk.check",
                *agent_security_args(f"{app_ip}:50051"),
                stdout=logs["agent"],
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

            def ready():
                try:
                    v = desk_check.fetch_db(str(db), "desk.check")
                except Exception:
                    return None
                rows = {t["target"]: t["samples"] for t in v["targets"]}
                return v if v["paths"] and rows.get("gateway", 0) >= 10 and rows.get("loopback", 0) >= 10 else None

            wait_for(ready, 40, 0.5, "gateway, loopback and path in the store: " + str(tmp_path / "agent.log"))

            r = subprocess.run(
                [
                    PY,
                    DESK_CHECK,
                    "--db",
                    str(db),
                    "--query",
                    "desk.check",
                    "--state-dir",
                    str(state),
                    "--expect-user",
                    "desk.check",
                    "--json-out",
                    str(tmp_path / "check.json"),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=REPO,
            )
            assert r.returncode == 0, r.stdout + r.stderr
            for name in ("gateway", "icmp", "path", "spool", "user"):
                assert f"ok   {name}" in r.stdout, r.stdout
            assert f"gateway {gateway_ip}" in r.stdout and f"hop 1 {gateway_ip}" in r.stdout
            saved = json.loads((tmp_path / "check.json").read_text())
            assert saved["view"]["user"] == "desk.check" and all(ok for _, ok, _ in saved["checks"])

            # The same through the JSON API, from the collector's side of the network (as on a runner).
            r = app.exec(
                PY,
                DESK_CHECK,
                "--api",
                f"http://{app_ip}:8081",
                "--key",
                key,
                "--query",
                "desk.check",
                "--expect-user",
                "desk.check",
                check=False,
                timeout=60,
            )
            assert r.returncode == 0 and "ok   path" in r.stdout, r.stdout + r.stderr

            # Failures: a batch set aside by the spool, another desk user.
            (state / "spool" / "rejected").mkdir(parents=True, exist_ok=True)
            (state / "spool" / "rejected" / "00000000000000000007-3.mpk").write_bytes(b"CXSP")
            r = subprocess.run(
                [
                    PY,
                    DESK_CHECK,
                    "--db",
                    str(db),
                    "--query",
                    "desk.check",
                    "--state-dir",
                    str(state),
                    "--expect-user",
                    "maria.silva",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=REPO,
            )
            assert r.returncode == 1
            assert "FAIL spool" in r.stdout and "00000000000000000007-3.mpk" in r.stdout and "FAIL user" in r.stdout

            # The footprint of the running agent process (by pid: from source its name is python).
            r = subprocess.run(
                [
                    PY,
                    FOOTPRINT,
                    "--os",
                    "linux",
                    "--pid",
                    str(agent.pid),
                    "--seconds",
                    "3",
                    "--every",
                    "1",
                    "--out",
                    str(tmp_path / "fp.json"),
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert r.returncode == 0, r.stderr
            assert r.stdout.startswith("footprint linux rss_mib=") and "| linux (docs/benchmarks.md" in r.stdout
            fp = json.loads((tmp_path / "fp.json").read_text())
            assert fp["pid"] == agent.pid and fp["samples"] >= 3 and 10 < fp["rss_mib"] < 1000 and fp["cpu_s"] >= 0
            assert "agent run" in fp["cmdline"]
            agent.send_signal(2)
            agent.wait(15)
        finally:
            for f in logs.values():
                f.close()
