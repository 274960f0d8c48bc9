"""The self-contained agent build: what it carries, what it runs, how big and how fast it is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.requirements import require

from .conftest import REPO, du_bytes

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the packaging tests build on Linux"),
    # The first test here builds the agent (PyInstaller, 40 s on an idle machine, more on a busy one).
    pytest.mark.timeout(900),
]


def run(exe: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout)


def pyz_modules(exe: Path) -> set[str]:
    from PyInstaller.archive.readers import CArchiveReader

    return set(CArchiveReader(str(exe)).open_embedded_archive("PYZ.pyz").toc)


def test_agent_archive_carries_the_agent_and_nothing_of_the_collector(frozen_agent):
    agent = pyz_modules(frozen_agent / "cxpulse")
    for needed in (
        "cxpulse.agent.runner",
        "cxpulse.agent.service",
        "cxpulse.agent.wifi.linux",
        "cxpulse.v1.payload",
        "grpc",
        "google.protobuf",
        "msgpack",
        "psutil",
        "httpx",
    ):
        assert needed in agent, f"{needed} missing from the agent build"
    unwanted = sorted(
        m
        for m in agent
        if m.split(".")[0] in ("scapy", "fastapi", "uvicorn", "psycopg", "grpc_tools")
        or m.startswith(("cxpulse.collector", "cxpulse.cli"))
    )
    assert unwanted == []
    # The trace child carries scapy and none of the agent's network stack.
    trace = pyz_modules(frozen_agent / "cxpulse-trace")
    assert "scapy.layers.inet" in trace and "cxpulse.agent.path.trace_child" in trace
    assert not any(m.split(".")[0] in ("grpc", "httpx", "psutil") for m in trace)


def test_version_and_help(frozen_agent):
    r = run(frozen_agent / "cxpulse", "--version")
    assert r.returncode == 0 and r.stdout.startswith("cxpulse 0.") and "frozen" in r.stdout, r
    r = run(frozen_agent / "cxpulse", "agent", "--help")
    for action in ("run", "once", "wifi", "configure", "service"):
        assert action in r.stdout
    r = run(frozen_agent / "cxpulse", "agent", "once", "--help")
    assert r.returncode == 0 and "--count" in r.stdout
    # The collector's commands are not in this build.
    assert run(frozen_agent / "cxpulse", "collector", "serve").returncode == 2


def test_once_against_a_local_collector(frozen_agent, collector):
    r = run(
        frozen_agent / "cxpulse",
        "agent",
        "once",
        "--json",
        "--no-gateway",
        "--count",
        "2",
        "--collector",
        collector.address,
        "--target",
        "loopback=127.0.0.1",
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["collector"]["reachable"] is True
    [lo] = report["targets"]
    assert lo["name"] == "loopback" and lo["lost"] == 0 and lo["median_us"] is not None
    assert report["wifi"] is not None and report["device"]["mem_pct"] > 0
    text = run(
        frozen_agent / "cxpulse",
        "agent",
        "once",
        "--no-gateway",
        "--count",
        "1",
        "--no-wifi",
        "--collector",
        collector.address,
        "--target",
        "loopback=127.0.0.1",
    ).stdout
    assert "reachable" in text and "loopback" in text


def test_wifi_parses_recorded_outputs(frozen_agent):
    """The helpdesk's `agent wifi --parse` in the frozen build, on the parser tests' recorded outputs."""
    fixtures = REPO / "tests" / "agent" / "wifi" / "fixtures"
    for name in ("iw/link-2412-heatmapper", "proc/one-interface-grideye", "netsh/" + _first("netsh")):
        r = run(frozen_agent / "cxpulse", "agent", "wifi", "--parse", str(fixtures / f"{name}.txt"))
        assert r.returncode == 0, (name, r.stderr)
        assert json.loads(r.stdout) == json.loads((fixtures / f"{name}.expected.json").read_text()), name
    r = run(frozen_agent / "cxpulse", "agent", "wifi")
    assert r.returncode == 0 and "connected" in json.loads(r.stdout)


def _first(kind: str) -> str:
    folder = REPO / "tests" / "agent" / "wifi" / "fixtures" / kind
    return sorted(p.name[: -len(".txt")] for p in folder.glob("*.txt") if p.with_suffix(".expected.json").exists())[0]


def test_trace_child_runs_from_its_own_executable(frozen_agent):
    r = run(frozen_agent / "cxpulse-trace", "--target", "127.0.0.1", "--max-hops", "2", "--timeout", "0.3")
    out = json.loads(r.stdout)
    if os.geteuid() != 0:
        assert r.returncode == 3 and "CAP_NET_RAW" in out["error"]
        return
    assert r.returncode == 0 and out["reached"] is True, out


def test_run_streams_and_stops_on_sigterm(frozen_agent, collector, tmp_path):
    """`agent run` as the services start it; prints startup RSS and cold-start time for the record."""
    state = tmp_path / "state"
    started = time.monotonic()
    cold = run(frozen_agent / "cxpulse", "--version")
    cold_s = time.monotonic() - started
    p = subprocess.Popen(
        [
            str(frozen_agent / "cxpulse"),
            "agent",
            "run",
            "--collector",
            collector.address,
            "--state-dir",
            str(state),
            "--no-gateway",
            "--interval",
            "0.2",
            "--batch-interval",
            "1",
            "--target",
            "loopback=127.0.0.1:9",
            *collector.agent_args(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: (state / "identity.json").exists(), 20, what="the agent to start")
        time.sleep(3)
        status = Path(f"/proc/{p.pid}/status").read_text()
        rss_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    summary = json.loads((state / "last_run.json").read_text())
    assert summary["samples_measured"] > 0 and summary["batches_acked"] > 0, summary
    assert cold.returncode == 0
    print(
        f"\nfrozen agent: folder {du_bytes(frozen_agent) / 1e6:.1f} MB, `--version` cold start {cold_s:.2f} s, "
        f"`agent run` RSS after 3 s {rss_kb / 1024:.1f} MiB"
    )


def test_frozen_agent_runs_path_traces_through_cxpulse_trace(frozen_agent, collector, tmp_path):
    require(os.geteuid() == 0, "path traces need raw sockets")
    state = tmp_path / "state"
    p = subprocess.Popen(
        [
            str(frozen_agent / "cxpulse"),
            "agent",
            "run",
            "--collector",
            collector.address,
            "--state-dir",
            str(state),
            "--no-gateway",
            "--interval",
            "0.5",
            "--batch-interval",
            "1",
            "--target",
            "loopback=127.0.0.1:9",
            *collector.agent_args(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (state / "identity.json").exists(), 20, what="the agent to start")
        time.sleep(4)
        p.send_signal(signal.SIGTERM)
        p.wait(20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert json.loads((state / "last_run.json").read_text())["path_traces"] >= 1
