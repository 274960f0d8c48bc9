"""What the fault-injection tests share: agent configs, agent processes, and what the store holds.

Every test here runs real processes (collector, agents) and checks the store against what each
agent says it produced (``last_run.json``): zero lost and zero duplicated samples, or exactly the
gap the agent reported.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

from cxpulse.collector.store import open_store
from tests.conftest import Proc, agent_security_keys

FAR_FUTURE_US = 4_102_444_800_000_000
# "No hole in the series": a busy machine may delay a probe tick by a second; a lost batch is caught
# by the exact counts (measured == stored), which every test checks as well.
NO_HOLE_US = 2_000_000


def agent_toml(
    path: Path,
    collector: str,
    state_dir: Path,
    *,
    targets: int = 1,
    probe_s: float = 0.2,
    batch_s: float = 1.0,
    **extra: object,
) -> Path:
    """A bootstrap file for a loopback-only agent; ``extra`` keys are written as they are (TOML literals)."""
    keys: dict[str, object] = {
        "collector": collector,
        "state_dir": str(state_dir),
        "probe_interval_s": probe_s,
        "batch_interval_s": batch_s,
        "measure_gateway": False,
        "reconnect_max_s": 2,
    }
    keys.update(agent_security_keys(collector))  # the test CA (or insecure) and an enrollment token
    keys.update(extra)
    lines = [
        f"{k} = {json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else v}"
        for k, v in keys.items()
    ]
    lines.append(
        "targets = ["
        + ", ".join(f'{{name = "t{i}", host = "127.0.0.{i}", port = 9}}' for i in range(1, targets + 1))
        + "]"
    )
    path.write_text("\n".join(lines) + "\n")
    return path


def agent_proc(
    tmp_path: Path, procs: list, config: Path, agent_id: str, *, name: str | None = None, verbosity: str = "-v"
) -> Proc:
    name = name or agent_id
    p = Proc(
        [verbosity, "agent", "run", "--config", str(config), "--agent-id", agent_id], tmp_path / f"{name}.log"
    ).start()
    procs.append(p)
    return p


def last_run(state_dir: Path) -> dict:
    return json.loads((state_dir / "last_run.json").read_text())


def rtt_rows(db: str, agent_id: str) -> list[tuple[str, int]]:
    """(target, ts_us) of every stored RTT sample of one agent, in the store's order (target, time)."""
    store = open_store(str(db))
    try:
        agents = [a for a in store.find_agents(agent_id) if a.info.agent_id == agent_id]
        if not agents:
            return []
        return [(r.target, r.ts_us) for r in store.rows(agents[0].key, "rtt", 0, FAR_FUTURE_US)]
    finally:
        store.close()


def events(db: str, agent_id: str, kind: str | None = None) -> list:
    store = open_store(str(db))
    try:
        agents = [a for a in store.find_agents(agent_id) if a.info.agent_id == agent_id]
        if not agents:
            return []
        return [e for e in store.events(agents[0].key, 0, FAR_FUTURE_US) if kind is None or e.kind == kind]
    finally:
        store.close()


def assert_exactly_once(db: str, state_dir: Path, agent_id: str) -> tuple[dict, list]:
    """Every sample the agent measured is stored, once; the agent has nothing left to send."""
    summary = last_run(state_dir)
    rows = rtt_rows(db, agent_id)
    assert len(rows) == len(set(rows)), f"{agent_id}: {len(rows) - len(set(rows))} samples stored twice"
    assert summary["batches_still_spooled"] == 0, summary
    assert summary["batches_dropped"] == 0 and summary["batches_rejected"] == 0, summary
    assert summary["samples_measured"] == len(rows), (agent_id, summary["samples_measured"], len(rows))
    return summary, rows


def max_gap_us(rows: list[tuple[str, int]]) -> int:
    """Largest step between consecutive stored samples of any one target."""
    worst = 0
    by_target: dict[str, list[int]] = {}
    for t, ts in rows:
        by_target.setdefault(t, []).append(ts)
    for ts in by_target.values():
        ts.sort()
        worst = max([worst] + [b - a for a, b in itertools.pairwise(ts)])
    return worst


_DROP_LINE = re.compile(r"dropped unsent batch seq (\d+) \((\d+) samples\): (.+)$")


def logged_drops(log_text: str) -> list[tuple[int, int, str]]:
    """(seq, samples, reason) of every drop the agent's spool logged."""
    out = []
    for line in log_text.splitlines():
        m = _DROP_LINE.search(line)
        if m:
            out.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return out
