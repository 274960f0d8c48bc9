"""Spool bound reached during a long outage: oldest dropped, and the gap reported exactly.

An agent with the smallest spool the config allows (64 kB) measures ten loopback targets every
50 ms and closes a batch every 200 ms, which fills the spool in about 35 s (schema-2 payloads are
deflated: about 370 B per batch). The collector goes away for 50 s, so the agent must drop. After the collector is back:

- the data_gap event in the store says exactly what the spool dropped (batches and samples, as
  the spool logged each drop and as the run summary counts them), and its time range is exactly
  the hole in the stored series: nothing stored inside it, stored samples right before and after;
- the policy held: the dropped batches are one run of the oldest seqs, and everything newer was
  delivered without a hole; the spool never held more than its bound plus the batches in flight
  when the collector went away (spool.py exempts those);
- every measured sample is either stored once or counted in the gap: measured - stored == dropped.
"""

from __future__ import annotations

import itertools
import signal
import time

import pytest

from cxpulse.agent.spool import HEADER_SIZE
from cxpulse.agent.uplink import MAX_IN_FLIGHT
from tests.conftest import CollectorProc, run_cli, wait_for
from tests.faults.conftest import agent_proc, agent_toml, events, last_run, logged_drops, rtt_rows

pytestmark = pytest.mark.slow

SPOOL_BYTES = 65536
OUTAGE_S = 50
PROBE_S = 0.05


def spool_files(spool_dir) -> dict[str, int]:
    """Batch file -> payload bytes, for the files that still exist when asked."""
    out = {}
    for p in spool_dir.glob("*.mpk"):
        try:
            out[p.name] = p.stat().st_size - HEADER_SIZE
        except FileNotFoundError:
            pass  # acked or dropped between the listing and the stat
    return out


def spool_payload_bytes(spool_dir) -> int:
    return sum(spool_files(spool_dir).values())


def test_spool_full_drops_oldest_and_reports_the_exact_gap(tmp_path, procs):
    db = tmp_path / "collector.sqlite"
    col = CollectorProc(tmp_path, db).start()
    procs.append(col)
    port = col.port
    state = tmp_path / "agent"
    cfg = agent_toml(
        tmp_path / "agent.toml",
        col.address,
        state,
        targets=10,
        probe_s=PROBE_S,
        batch_s=0.2,
        spool_max_bytes=SPOOL_BYTES,
        trace_enabled=False,
        device_interval_s=3600,
        reconnect_max_s=1,
    )
    agent = agent_proc(tmp_path, procs, cfg, "spool-bound")
    wait_for(lambda: len(rtt_rows(db, "spool-bound")) >= 200, 20, 0.3, "first samples stored")

    col.stop(signal.SIGTERM)
    outage_start = time.time()
    before = spool_files(state / "spool")
    peak = 0
    while time.time() - outage_start < OUTAGE_S:
        peak = max(peak, spool_payload_bytes(state / "spool"))
        time.sleep(0.5)
    assert logged_drops(agent.output()), "the outage was too short to fill the spool"
    # Batches in flight when the collector went away are exempt from the bound (spool.py: the
    # collector may hold them; the next handshake says): the ones from before the outage that
    # outlived a full spool, where everything else old was dropped oldest first.
    exempt = {n: b for n, b in before.items() if n in spool_files(state / "spool")}
    assert len(exempt) <= MAX_IN_FLIGHT, sorted(exempt)

    col = CollectorProc(tmp_path, db, port=port).start()
    procs.append(col)
    wait_for(lambda: events(db, "spool-bound", "data_gap"), 30, 0.3, "the data_gap event to be stored")
    time.sleep(2.0)  # live data again
    assert agent.stop(signal.SIGTERM) == 0
    summary = last_run(state)
    drops = logged_drops(agent.output())

    # The gap as reported and as the spool counted it: one event, same numbers as the log and the summary.
    (gap,) = events(db, "spool-bound", "data_gap")
    n_batches, n_samples = len(drops), sum(n for _, n, _ in drops)
    assert {why for _, _, why in drops} == {"spool full"}
    assert (summary["batches_dropped"], summary["samples_dropped"]) == (n_batches, n_samples)
    assert gap.evidence == f"spool full: {n_batches} batches, {n_samples} samples dropped", gap.evidence
    assert gap.target == "agent" and gap.severity == 2 and summary["gaps_open"] == []
    assert summary["batches_still_spooled"] == 0

    # Oldest first: the dropped seqs are one unbroken run.
    seqs = [s for s, _, _ in drops]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    assert peak <= SPOOL_BYTES + sum(exempt.values()), (
        f"spool held {peak} payload bytes, bound {SPOOL_BYTES} + {sum(exempt.values())} in flight "
        f"({len(exempt)} batches)"
    )

    rows = rtt_rows(db, "spool-bound")
    assert len(rows) == len(set(rows)), "a sample was stored twice"
    ts = sorted(t for _, t in rows)
    inside = [t for t in ts if gap.start_us <= t <= gap.end_us]
    assert not inside, f"{len(inside)} stored samples inside the reported gap"
    before = max(t for t in ts if t < gap.start_us)
    after = min(t for t in ts if t > gap.end_us)
    # The hole in the store is the reported range: the neighbours are the next probe ticks (50 ms;
    # the bound allows for a busy machine delaying a tick, not for a batch: that is what the counts
    # below pin down exactly).
    assert gap.start_us - before < 1_000_000, gap.start_us - before
    assert after - gap.end_us < 1_000_000, after - gap.end_us
    # Newest kept: after the gap the series runs to the end with no second hole.
    tail = [t for t in ts if t > gap.end_us]
    assert max(b - a for a, b in itertools.pairwise(tail)) < 1_000_000
    # Nothing else missing: every sample measured is stored or counted in the gap (no event was
    # detected on loopback, so every dropped sample was an RTT sample).
    assert summary["events"] == 0
    assert summary["samples_measured"] - len(rows) == n_samples, (summary["samples_measured"], len(rows), n_samples)

    # The lookup shows it among the events.
    text = run_cli("lookup", "spool-bound", "--db", str(db), "--window", "1h", "--full").stdout
    assert "data_gap" in text and f"spool full: {n_batches} batches" in text, text[-2000:]
    print(
        f"\noutage {OUTAGE_S}s: {n_batches} batches / {n_samples} samples dropped "
        f"({(gap.end_us - gap.start_us) / 1e6:.1f} s of data), {len(rows)} stored, spool peak {peak} B; "
        f"store hole {(after - before) / 1e6:.2f} s around a reported gap of {(gap.end_us - gap.start_us) / 1e6:.2f} s"
    )
