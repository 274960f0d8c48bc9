"""The benchmark suite still runs: its tiniest mode end to end, and the shape of what it reports.

Budgets are not checked here (a timed assertion on a shared 2-core machine fails at random);
the figures are checked for presence, type and sanity only. The end-to-end test builds a
namespace path and runs real processes, so it needs root and ``ip netns`` like the e2e tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.loadgen import Template
from bench.profile import summarize
from bench.report import Figure, Report, table
from cxpulse.v1 import payload
from tests.conftest import REPO
from tests.netns import require_netns
from tests.requirements import require

FIGURE_KEYS = {
    "group",
    "name",
    "unit",
    "value",
    "budget",
    "budget_op",
    "peer",
    "peer_value",
    "load",
    "note",
    "ratio",
    "passed",
}


def test_figure_verdict_follows_the_budget_direction():
    assert Figure("g", "rss", "MiB", 30, 40, "<=").passed is True
    assert Figure("g", "rss", "MiB", 50, 40, "<=").passed is False
    assert Figure("g", "rate", "samples/s", 600_000, 500_000, ">=").passed is True
    assert Figure("g", "rate", "samples/s", 100, None).passed is None
    assert Figure("g", "cpu", "%", 0.3, 0.15, "<=", "peer", 0.6).ratio == pytest.approx(0.5)


def test_table_has_one_row_per_figure_and_the_verdict():
    text = table([Figure("agent", "steady-state RSS", "MiB", 50.5, 40, "<=", "blackbox_exporter", 20.0)])
    lines = text.splitlines()
    assert len(lines) == 3 and "FAIL" in lines[2] and "blackbox_exporter" in lines[2]


def test_report_json_shape(tmp_path):
    r = Report(mode="smoke")
    r.add([Figure("ingest", "x", "rows/s", 1.0)], "ingest", {"runs": []})
    r.finish()
    r.write_json(str(tmp_path / "r.json"))
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["schema"] == "cxpulse-bench/1" and set(doc["figures"][0]) == FIGURE_KEYS


def test_loadgen_payload_patch_gives_each_batch_its_own_time():
    tpl = Template(1000)
    a, b = payload.decode(tpl.for_seq(1)), payload.decode(tpl.for_seq(2))
    assert a.sample_count == b.sample_count == 1000
    assert min(b.series[0].ts_us) - min(a.series[0].ts_us) == tpl.span_us


def test_profile_summary_charges_library_time_to_our_caller(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "cmd_run (agent/cli.py:1);work (agent/x.py:5);helper (collector/h.py:7);unpackb (msgpack/c.py:9) 30\n"
        "cmd_run (agent/cli.py:1);work (agent/x.py:6) 10\n"
    )
    s = summarize(raw)
    assert s["samples"] == 40
    assert s["self"][0] == {"function": "unpackb (msgpack/c.py)", "pct": 75.0, "samples": 30}
    assert s["project"][0] == {"function": "helper (collector/h.py)", "pct": 75.0, "samples": 30}
    # Inclusive: our own functions only, without those every sample passes through (entry points).
    assert s["total"] == [{"function": "helper (collector/h.py)", "pct": 75.0, "samples": 30}]


@pytest.mark.slow
@pytest.mark.root
def test_smoke_run_reports_every_figure(tmp_path):
    require_netns()
    from bench.blackbox import find_binary

    require(find_binary() is not None, "prometheus-blackbox-exporter is not installed (Debian package)")
    out = tmp_path / "bench.json"
    stores = "sqlite,postgres" if os.environ.get("CXPULSE_TEST_POSTGRES") else "sqlite"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--stores", stores, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["mode"] == "smoke" and not doc["errors"]
    assert {"cpus", "cpu_model", "load_at_start", "load_at_end"} <= set(doc["machine"])
    for f in doc["figures"]:
        assert set(f) == FIGURE_KEYS, f
        assert len(f["load"]) == 3
    by_name = {f["name"]: f for f in doc["figures"]}

    rss = by_name["steady-state RSS"]
    assert rss["budget"] == 40 and 10 < rss["value"] < 500 and rss["peer_value"] > 0
    upload = by_name["upload, IP bytes (TLS gRPC)"]  # the stream as deployed: TLS + enrollment
    assert upload["value"] > 0  # the agent reached the collector, and the counter saw it
    fp = doc["details"]["footprint"]
    assert fp["stored"]["series"]["rtt:gateway"] > 0 and fp["stored"]["series"]["rtt:isp"] > 0
    assert fp["agent_run_summary"]["batches_acked"] >= 1

    for store in stores.split(","):
        rate = by_name[f"{store}, 1 agents: samples/s acked"]
        assert rate["value"] > 0 and rate["peer_value"] > 0 and rate["ratio"] > 0
        assert by_name[f"{store}, 1 agents: collector peak RSS"]["value"] > 0
    for run in doc["details"]["ingest"]["runs"]:
        assert run["rejected"] == 0 and not run["errors"], run
        assert run["samples_stored_total"] >= run["acked_batches"] * run["batch_samples"]
    acc = doc["details"]["accuracy"]
    assert len(acc["episodes"]) == 1 and acc["steady"]["agent"]["samples"] > 0 and acc["steady"]["ping"]["samples"] > 0
    assert by_name["median RTT (calm)"]["value"] > 0 and by_name["episodes caught"]["value"] is not None
    commit = by_name["longest ingest commit while 1 desk-day(s) expire"]  # retention beside ingest
    assert commit["budget"] == 100 and commit["value"] > 0 and doc["details"]["retention"]["samples"] > 0
    assert "samples/s" in proc.stdout and ("PASS" in proc.stdout or "FAIL" in proc.stdout)


def test_the_kept_scores_loop_benchmark_runs_and_reports_its_cpu():
    from bench.kept import run

    lines: list[str] = []
    out = run(5, log=lines.append)
    assert out["cpu_s_per_minute"] > 0 and out["block_cpu_s"] >= 0 and out["hour_cpu_s"] >= 0
    assert any("keep_recent: 5 scored, 5 found kept" in x for x in lines), lines
    assert any("keep_blocks, one block: 5 rows" in x for x in lines), lines
    assert any("keep_blocks, the hour's last block: 10 rows" in x for x in lines), lines  # its block and hour
