"""End to end on real parts: collector process, agent process, gRPC on loopback, SQLite, lookup CLI."""

from __future__ import annotations

import itertools
import json
import signal
import time

import pytest

from cxpulse.v1.payload import METHODS
from tests.conftest import CollectorProc, run_cli, start_agent, wait_for
from tests.stored import rtt_samples

pytestmark = pytest.mark.slow


def stored_samples(db, agent_id: str) -> list[tuple]:
    return rtt_samples(db, agent_id)


def lookup_json(db, query: str) -> dict | None:
    r = run_cli("lookup", query, "--db", str(db), "--json")
    return json.loads(r.stdout) if r.returncode == 0 else None


def test_agent_streams_and_lookup_shows_figures(tmp_path, procs, collector):
    start_agent(tmp_path, procs, collector.address, "--user", "alice.e2e", "--site", "Lisbon-3")

    def enough():
        view = lookup_json(collector.db, "alice.e2e")
        if view and view["agents"][0]["targets"] and view["agents"][0]["targets"][0]["samples"] >= 10:
            return view
        return None

    view = wait_for(enough, 30, 0.5, "10 samples visible in the lookup")
    agent = view["agents"][0]
    assert agent["user"] == "alice.e2e" and agent["site"] == "Lisbon-3"
    t = agent["targets"][0]
    assert t["target"] == "loopback" and t["addresses"] == ["127.0.0.1"]
    assert set(t["methods"]) <= set(METHODS)
    assert t["loss_pct"] == 0.0 and t["lost"] == 0 and t["loss_seconds"] == 0
    assert 0 < t["rtt_median_ms"] <= t["rtt_p95_ms"] <= t["rtt_max_ms"] < 1000
    assert t["jitter_ms"] is not None and t["jitter_mean_abs_ms"] is not None

    # Partial, case-insensitive search by site finds the same agent; the text output names it.
    text = run_cli("lookup", "lisbon", "--db", str(collector.db), "--full")
    assert text.returncode == 0, text.stderr
    assert "alice.e2e" in text.stdout and "loopback" in text.stdout and "loss%" in text.stdout

    missing = run_cli("lookup", "nobody-here", "--db", str(collector.db))
    assert missing.returncode == 1 and "no agent matches" in missing.stderr


def _assert_exactly_once(db, state_dir, agent_id):
    summary = json.loads((state_dir / "last_run.json").read_text())
    rows = stored_samples(db, agent_id)
    keys = [(r[0], r[1], r[2]) for r in rows]
    assert len(keys) == len(set(keys)), "a sample was stored twice"
    return summary, rows


def test_collector_killed_and_restarted_every_sample_stored_once(tmp_path, procs):
    db = tmp_path / "collector.sqlite"
    col = CollectorProc(tmp_path, db).start()
    procs.append(col)
    agent = start_agent(tmp_path, procs, col.address, "--agent-id", "agent-restart")
    wait_for(lambda: len(stored_samples(db, "agent-restart")) >= 5, 20, 0.2, "first samples stored")

    col.stop(signal.SIGKILL)  # no goodbye: acks in flight are lost
    time.sleep(3)  # the agent keeps measuring and spooling
    assert agent.alive()
    col2 = CollectorProc(tmp_path, db, port=col.port).start()
    procs.append(col2)
    wait_for(lambda: "connected to collector" in agent.output().split("unreachable")[-1], 30, 0.2, "agent to reconnect")
    time.sleep(2)
    assert agent.stop(signal.SIGTERM) == 0

    summary, rows = _assert_exactly_once(db, tmp_path / "agent", "agent-restart")
    assert summary["batches_still_spooled"] == 0, summary
    assert summary["batches_dropped"] == 0 and summary["batches_rejected"] == 0
    assert summary["samples_measured"] == len(rows), (summary, len(rows))
    assert summary["connects"] >= 2
    # No gap: consecutive samples of the loopback series are about one interval apart (0.2 s).
    ts = [r[2] for r in rows if r[0] == "loopback"]
    gaps = [b - a for a, b in itertools.pairwise(ts)]
    assert max(gaps) < 1_000_000, f"gap of {max(gaps)} us in the stored series"


def test_agent_stopped_while_collector_down_delivers_after_restart(tmp_path, procs):
    db = tmp_path / "collector.sqlite"
    col = CollectorProc(tmp_path, db).start()
    procs.append(col)
    port = col.port
    col.stop(signal.SIGTERM)
    # The agent runs with no collector at all: everything goes to its spool.
    a1 = start_agent(tmp_path, procs, f"127.0.0.1:{port}", "--agent-id", "agent-offline")
    time.sleep(3)
    assert a1.stop(signal.SIGTERM) == 0
    first = json.loads((tmp_path / "agent" / "last_run.json").read_text())
    assert first["batches_still_spooled"] >= 2 and first["samples_measured"] > 0
    assert list((tmp_path / "agent" / "spool").glob("*.mpk")), "spool files expected on disk"

    col2 = CollectorProc(tmp_path, db, port=port).start()
    procs.append(col2)
    a2 = start_agent(tmp_path, procs, col2.address, "--agent-id", "agent-offline")
    time.sleep(3)
    assert a2.stop(signal.SIGTERM) == 0
    second, rows = _assert_exactly_once(db, tmp_path / "agent", "agent-offline")
    assert second["batches_still_spooled"] == 0
    assert second["seq_epoch"] == first["seq_epoch"]
    assert first["samples_measured"] + second["samples_measured"] == len(rows)
    assert not list((tmp_path / "agent" / "spool").glob("*.mpk"))


def test_three_separate_commands_as_in_readme(tmp_path, procs, collector):
    """collector serve, agent run, lookup: the README's 'run it for real' path."""
    start_agent(tmp_path, procs, collector.address, "--user", "readme.user")
    wait_for(lambda: lookup_json(collector.db, "readme.user"), 20, 0.5, "lookup to find the agent")
    out = run_cli("lookup", "readme.user", "--db", str(collector.db))
    assert out.returncode == 0 and "readme.user" in out.stdout


def test_bad_agent_config_fails_fast_with_a_clear_message(tmp_path):
    bad = tmp_path / "agent.toml"
    bad.write_text('collector = "no-port-here"\n')
    r = run_cli("agent", "run", "--config", str(bad))
    assert r.returncode == 2 and "collector must be HOST:PORT" in r.stderr


def test_collector_and_lookup_on_postgresql(tmp_path, procs):
    """The same commands with --db postgresql://... (a fresh schema, dropped afterwards)."""
    import os
    import uuid

    from tests.requirements import require

    url = os.environ.get("CXPULSE_TEST_POSTGRES")
    require(bool(url), "CXPULSE_TEST_POSTGRES is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    import psycopg

    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in url else "?"
    db = f"{url}{sep}options=-csearch_path%3D{schema}"
    try:
        col = CollectorProc(tmp_path, db).start()
        procs.append(col)
        start_agent(tmp_path, procs, col.address, "--user", "pg.user")
        view = wait_for(
            lambda: (
                (v := lookup_json(db, "pg.user"))
                and v["agents"][0]["targets"]
                and v["agents"][0]["targets"][0]["samples"] >= 5
                and v
            ),
            30,
            0.5,
            "samples in PostgreSQL",
        )
        assert view["agents"][0]["targets"][0]["loss_pct"] == 0.0
        bad = run_cli("lookup", "pg.user", "--db", "postgresql://nobody:secret@127.0.0.1:1/none")
        assert bad.returncode == 2 and "secret" not in bad.stderr
    finally:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_collector_serves_the_helpdesk_page_and_api(tmp_path, procs):
    """`collector serve --http` runs the page, the JSON API and /metrics beside gRPC, in one process."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        http_port = s.getsockname()[1]
    col = CollectorProc(tmp_path, tmp_path / "c.sqlite", extra=["--http", f"127.0.0.1:{http_port}"]).start()
    procs.append(col)
    start_agent(tmp_path, procs, col.address, "--user", "web.user")
    base = f"http://127.0.0.1:{http_port}"
    from cxpulse.collector.security.registry import Registry

    reg = Registry.open(str(tmp_path / "c.sqlite"))  # the API needs a key (issue 6)
    key = {"Authorization": f"Bearer {reg.create_api_key('helpdesk', 'e2e')[0]}"}
    reg.close()
    assert httpx.get(f"{base}/api/v1/agents", timeout=5).status_code == 401
    wait_for(
        lambda: (
            httpx.get(f"{base}/api/v1/agents", params={"q": "web.user"}, headers=key, timeout=5).json().get("agents")
        ),
        30,
        0.5,
        "the agent in the API",
    )
    assert "<html" in httpx.get(base + "/", timeout=5).text.lower()
    assert httpx.get(base + "/api/v1/openapi.json", timeout=5).json()["openapi"].startswith("3.")
    assert "cxpulse" in httpx.get(base + "/metrics", headers=key, timeout=5).text
    assert col.stop() == 0
