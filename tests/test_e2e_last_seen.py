"""A real collector and a real streaming agent: last_seen follows the stream, not the Hello (issue 17)."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import start_agent, wait_for

pytestmark = pytest.mark.slow


def seen(db, agent_id: str) -> tuple[int, int] | None:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT first_seen_us, last_seen_us FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
    finally:
        con.close()


def test_last_seen_advances_while_the_agent_streams(tmp_path, procs, collector):
    start_agent(tmp_path, procs, collector.address, "--agent-id", "desk-streaming")  # a batch a second
    first = wait_for(lambda: seen(collector.db, "desk-streaming"), 30, 0.2, "the agent's Hello")[0]
    # Connected once, then only batches: last_seen must move past the Hello by several batch intervals.
    wait_for(
        lambda: seen(collector.db, "desk-streaming")[1] >= first + 4_000_000,
        30,
        0.5,
        "last_seen 4 s past the Hello while the agent streams",
    )
