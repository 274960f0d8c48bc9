"""Migrating a store of the row layout to hour chunks changes no answer, stops and resumes; both stores.

The old layout is made the way the previous version wrote it: batches committed through the store,
then every landing row's samples moved into ``samples_<kind>`` rows (series id, ts_us, the kind's
columns) and the landing rows deleted. PostgreSQL runs with CXPULSE_TEST_POSTGRES, skipped otherwise.
"""

from __future__ import annotations

import asyncio
import io
import random
import signal
import sqlite3
import subprocess

import pytest
from starlette.responses import JSONResponse

from cxpulse.collector.jobs import raw_compaction
from cxpulse.collector.jobs.raw_compaction import migrate, raw_compaction_loop
from cxpulse.collector.lookup.service import LookupService
from cxpulse.collector.store import AgentInfo, PendingBatch, open_store
from cxpulse.v1 import payload as p
from cxpulse.v1.kinds import KINDS
from tests.conftest import CXPULSE
from tests.stores import postgres_url

S = 1_000_000
MIN = 60 * S
HOUR = 3600 * S
NOW = 1_790_006_400 * S + 25 * MIN  # lookups end here: 25 minutes into an hour
LATER = NOW + 2 * HOUR  # the migration's clock: every hour of the fixture has settled
FAR = 2**62
WINDOWS = {"1h": HOUR, "24h": 24 * HOUR, "7d": 7 * 24 * HOUR}
AGENT = "agent-mig"


def _batch(rng: random.Random, start: int, end: int, step: int) -> p.SampleBatch:
    """Every kind over [start, end): RTT to the gateway and a hop (with losses) every ``step``, the
    slower kinds at their own cadence, an event and a path now and then."""
    gw = p.Series("gateway", "10.0.0.1", "icmp_raw")
    isp = p.Series("isp", "100.64.0.1", "icmp_raw", hop=2)
    crm = p.Series("crm", "10.9.9.9", "https", kind="http")
    voice = p.Series("reflector", "10.9.9.1", "udp_reflect", kind="voice")
    dev = p.Series("device", "local", "os", kind="device")
    wifi = p.Series("wifi", "wlan0", "nl80211", kind="wifi")
    events, paths = [], []
    for ts in range(start, end, step):
        t = ts + rng.randrange(2000)  # timer jitter: microsecond stamps, as the desk sends them
        gw.add(t, rng.randrange(300, 5000))
        isp.add(t, None if rng.random() < 0.08 else rng.randrange(8000, 90000))
        if ts % (5 * MIN) < step:
            ok = rng.random() < 0.8
            crm.add(
                t,
                dns=rng.randrange(500, 9000),
                tcp=20000,
                tls=40000,
                ttfb=rng.randrange(90000, 900000),
                total=rng.randrange(200000, 3000000) if ok else None,
                status=200 if ok else None,
                err=None if ok else rng.choice(("timeout", "dns")),
                ver="HTTP/1.1",
            )
        if ts % (10 * MIN) < step:
            voice.add(t, sent=250, recv=250 - rng.randrange(20), dup=0, reord=1, rtt=rng.randrange(15000, 40000))
            dev.add(t, cpu=rng.randrange(50, 990), mem=rng.randrange(300, 900), top="chrome 80%", nicerr=0)
        if ts % MIN < step:
            wifi.add(t, rssi=-rng.randrange(40, 80), ssid="corp", bssid=rng.choice(("aa:01", "aa:02")), ch=36)
    if rng.random() < 0.3:
        lo = start + rng.randrange(end - start - 20 * S)
        events.append(p.Event(f"loss:{start}", "loss_burst", "isp", lo, lo + 12 * S, 2, "6 lost in 12 s"))
        paths.append(p.PathSnapshot("crm", "10.9.9.9", lo, "icmp", True, [p.PathHop(1, "10.0.0.1", 900)]))
    return p.SampleBatch([s for s in (gw, isp, crm, voice, dev, wifi) if s.ts_us], events, paths)


def _samples(batch: p.SampleBatch) -> int:
    return sum(len(s) for s in batch.series)  # the batch's sample_count counts events and paths too


def _fill(url: str) -> tuple[int, int]:
    """Eight days of one desk, an hour in six sparse, then dense for the last three hours,
    committed through the store in 5 min .. 1 h batches; returns (agent key, samples)."""
    rng = random.Random(19)
    store = open_store(url)
    try:
        k = store.upsert_agent(
            AgentInfo(AGENT, "DESK-7", "ana.lima", "Windows 11", "0.9", "Porto"), NOW - 9 * 86400 * S
        )
        spans = [(t, t + HOUR, 2 * MIN) for t in range(NOW - 8 * 24 * HOUR, NOW - 3 * HOUR, 6 * HOUR)]
        spans += [(t, t + 5 * MIN, S) for t in range(NOW - 3 * HOUR, NOW - 10 * MIN, 5 * MIN)]
        n = 0
        for seq, (a, b, step) in enumerate(spans, start=1):
            batch = _batch(rng, a, b, step)
            n += _samples(batch)
            store.commit_batches([PendingBatch(k, 1, seq, batch)])
        assert store.sample_count() == n
        return k, n
    finally:
        store.close()


class _Sql:
    """A plain connection to the store's database, outside the store: the old code's writes."""

    def __init__(self, url: str):
        if url.startswith("postgresql://"):
            import psycopg

            self.db = psycopg.connect(url, autocommit=False)
            self.mark = "%s"
        else:
            self.db = sqlite3.connect(url)
            self.mark = "?"

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        return list(self.db.execute(sql.replace("?", self.mark), args).fetchall())

    def run(self, sql: str, args: tuple = ()) -> None:
        self.db.execute(sql.replace("?", self.mark), args)

    def many(self, sql: str, args: list[tuple]) -> None:
        cur = self.db.cursor()
        cur.executemany(sql.replace("?", self.mark), args)

    def close(self) -> None:
        self.db.commit()
        self.db.close()


def _to_row_layout(url: str, key: int) -> int:
    """Every landing row's samples as the previous version stored them (a ``samples_<kind>`` row per
    sample, commit order), the landing rows deleted: the layout a store has before migrating."""
    sql = _Sql(url)
    try:
        ids = {
            (t, a, kind, m, hop): sid
            for sid, t, a, kind, m, hop in sql.rows(
                "SELECT id, target, address, kind, method, hop FROM series WHERE agent = ?", (key,)
            )
        }
        moved = 0
        for bid, payload in sql.rows("SELECT id, payload FROM batches ORDER BY id"):
            for s in p.decode(bytes(payload)).series:
                sid = ids[(s.target, s.address, s.kind, s.method, s.hop or 0)]
                names = list(KINDS[s.kind])
                cols = ", ".join(f'"{c}"' for c in names)
                sql.many(
                    f"INSERT INTO samples_{s.kind} (series, ts_us, {cols}) VALUES (?, ?{', ?' * len(names)})",
                    list(zip([sid] * len(s.ts_us), s.ts_us, *(s.cols[c] for c in names), strict=True)),
                )
                moved += len(s.ts_us)
            sql.run("DELETE FROM batches WHERE id = ?", (bid,))
        assert not sql.rows("SELECT id FROM chunks")  # nothing compacted yet: the old layout only
        return moved
    finally:
        sql.close()


def _legacy_rows(url: str) -> int:
    sql = _Sql(url)
    try:
        return sum(sql.rows(f"SELECT count(*) FROM samples_{kind}")[0][0] for kind in KINDS)
    finally:
        sql.close()


def _chunks(url: str) -> int:
    sql = _Sql(url)
    try:
        return sql.rows("SELECT count(*) FROM chunks")[0][0]
    finally:
        sql.close()


def answers(store, key: int, windows: tuple[str, ...] = tuple(WINDOWS)) -> dict[str, bytes]:
    """The lookup API's body for the desk over each window (``LookupService.agent`` with the
    timeline, serialized as the API does), chart buckets summed in the store and row by row, plus
    every raw row of every kind. Nothing is stripped: the clock is given (two stores reopened answer
    byte for byte alike), and the one wall-clock figure of the API's answer, its Server-Timing
    header, is not in the body."""
    out: dict[str, bytes] = {}
    service = LookupService(store, now_us=lambda: NOW)  # a new one: no view cached from another call
    for fast in (True, False):
        service.bucket_sums = fast  # the second pass reuses the view and draws the chart row by row
        for name in windows:
            span = WINDOWS[name]
            body = service.agent(AGENT, NOW - span, NOW, 120, True, "UTC")
            out[f"{name} fast={fast}"] = JSONResponse(body).body
    for kind in KINDS:
        out[f"rows {kind}"] = repr(store.rows(key, kind, 0, FAR)).encode()
    out["rtt_rows"] = repr(store.rtt_rows(key, 0, FAR)).encode()
    return out


@pytest.mark.slow  # ~20 s of lookups on 2 cores
def test_migration_changes_no_answer_and_resumes_after_a_stop(store_url):  # conftest: each backend
    key, n = _fill(store_url)
    assert _to_row_layout(store_url, key) == n
    store = open_store(store_url)
    try:
        # A batch the new version landed after the upgrade, beside the rows (its own last minutes).
        late = _batch(random.Random(7), NOW - 10 * MIN, NOW, S)
        store.commit_batches([PendingBatch(key, 1, 10_000, late)])
        n += _samples(late)
        assert store.sample_count() == n
        before = answers(store, key)
        assert b'"samples"' in before["1h fast=True"] and b'"hops"' in before["7d fast=True"]

        lines = io.StringIO()
        first = migrate(store, now_us=LATER, max_rows=2_000, progress=lines, max_steps=3)
        assert first.stopped and not first.done and first.steps == 3
        assert 0 < first.legacy_rows < n and _legacy_rows(store_url) == n - _samples(late) - first.legacy_rows
        assert _chunks(store_url) > 0
        assert "run the command again to resume" in lines.getvalue().splitlines()[-1]
        half = answers(store, key, ("1h",))  # half migrated: rows, chunks and landing read as one
        assert half == {name: before[name] for name in half}
    finally:
        store.close()

    store = open_store(store_url)  # resumed by a new process: the position is the store's
    try:
        lines = io.StringIO()
        rest = migrate(store, now_us=LATER, max_rows=2_000, progress=lines)
        assert rest.done and not rest.stopped
        assert first.legacy_rows + rest.legacy_rows == n - _samples(late)  # no row folded twice
        assert _legacy_rows(store_url) == 0
        assert store.sample_count() == n
        assert store.raw_progress().legacy_rows_left == 0
        after = answers(store, key)
        for name in before:
            assert after[name] == before[name], name
        assert lines.getvalue().splitlines()[-1].startswith(f"samples: done: {rest.legacy_rows:,} rows into ")
        assert migrate(store, now_us=LATER, progress=None).legacy_rows == 0  # once more: nothing left
    finally:
        store.close()


def test_serve_loop_compacts_in_the_background_and_a_cancel_waits_for_the_step(tmp_path):
    path = str(tmp_path / "legacy.sqlite")
    n = legacy_sqlite(path, 14_400, desks=2)
    store = open_store(path)

    async def cancelled_at_once() -> None:
        task = asyncio.ensure_future(raw_compaction_loop(store, now_us=lambda: LATER))
        await asyncio.sleep(0)  # the first step is running in its thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _legacy_rows(path) < n  # cancelled, yet the running step committed before the loop ended

    async def until_done() -> None:
        task = asyncio.ensure_future(raw_compaction_loop(store, now_us=lambda: LATER))
        for _ in range(600):
            if not _legacy_rows(path):
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(cancelled_at_once())
        asyncio.run(until_done())
        assert _legacy_rows(path) == 0 and _chunks(path) > 0 and store.sample_count() == n
    finally:
        store.close()


def test_ctrl_c_stops_the_migration_between_steps(tmp_path, monkeypatch):
    path = str(tmp_path / "legacy.sqlite")
    n = legacy_sqlite(path, 28_800, desks=2)

    class Terminal(io.StringIO):
        """A terminal whose user presses Ctrl-C when the first progress line shows."""

        def isatty(self) -> bool:
            return True

        def write(self, text: str) -> int:
            if not self.getvalue():
                signal.raise_signal(signal.SIGINT)
            return super().write(text)

    monkeypatch.setattr(raw_compaction, "TTY_EVERY_S", 0.0)
    store = open_store(path)
    try:
        term = Terminal()
        r = migrate(store, now_us=LATER, max_rows=1_000, progress=term)
        assert r.stopped and r.steps == 1 and _legacy_rows(path) == n - r.legacy_rows
        assert term.getvalue().startswith("\rsamples: ") and term.getvalue().endswith("resume where it stopped\n")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
        assert migrate(store, now_us=LATER, progress=None).done and _legacy_rows(path) == 0
        assert store.sample_count() == n
    finally:
        store.close()


def test_progress_line_reads_as_documented():
    from cxpulse.collector.jobs.raw_compaction import format_progress

    assert (
        format_progress(512_000, 1_240_000, 6.4) == "samples: 41% (512,000 of 1,240,000 rows), 80,000 rows/s, ~9 s left"
    )
    assert format_progress(0, 0, 0.0) == "samples: 0% (0 of 1 rows), 0 rows/s"
    assert format_progress(2_000, 1_000, 1.0).startswith("samples: 99% (2,000 of 2,000 rows)")  # an estimate's total


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CXPULSE, "collector", "migrate-storage", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow  # starts cxpulse processes
def test_cli_migrates_a_sqlite_store_and_refuses_what_is_not_one(tmp_path):
    url = str(tmp_path / "old.sqlite")
    key, n = _fill(url)
    _to_row_layout(url, key)
    run = _cli("--store", url)
    assert run.returncode == 0, run.stderr
    out = run.stderr.splitlines()
    assert out[-1].startswith(f"samples: done: {n:,} rows into ") and "rows/s" in out[-1], run.stderr
    assert _legacy_rows(url) == 0 and _chunks(url) > 0
    store = open_store(url)
    try:
        assert store.sample_count() == n
    finally:
        store.close()

    missing = _cli("--store", str(tmp_path / "nope.sqlite"))
    assert missing.returncode == 2 and not (tmp_path / "nope.sqlite").exists()
    assert missing.stderr.strip().splitlines() == [
        f"cxpulse collector migrate-storage: no collector database at {tmp_path / 'nope.sqlite'}"
    ]
    (tmp_path / "text.sqlite").write_text("not a database")
    for bad in (str(tmp_path / "text.sqlite"), "mysql://db/x"):
        run = _cli("--store", bad)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr


@pytest.mark.slow  # starts cxpulse processes
def test_cli_refuses_a_postgres_schema_that_holds_no_store():
    import psycopg

    url = postgres_url()
    schema = "cxpulse_test_nowhere"
    run = _cli("--store", f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"cxpulse collector migrate-storage: no collector store in schema {schema!r} of ")
    with psycopg.connect(url) as db:  # refused before anything was created
        assert db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None


def legacy_sqlite(path: str, rows: int, desks: int = 4, start_us: int = NOW) -> int:
    """A SQLite store holding ``rows`` RTT samples in ``samples_rtt`` as the previous version wrote
    them (per desk six series at 1 s, a 30 s batch of every series at a time, 0.3% lost), written
    by SQL: the store to measure the migration on (docs/storage-migration.md). Returns the rows."""
    rng = random.Random(1)
    store = open_store(path)
    keys = [store.upsert_agent(AgentInfo(f"desk-{d}"), start_us) for d in range(desks)]
    store.close()
    targets = [("gateway", None), ("hop", 2), ("hop", 3), ("hop", 4), ("isp", 5), ("media", None)]
    db = sqlite3.connect(path)
    with db:
        series = []
        for d, key in enumerate(keys):
            for i, (target, hop) in enumerate(targets):
                series.append(
                    db.execute(
                        "INSERT INTO series (agent, target, address, kind, method, hop) VALUES (?, ?, ?, 'rtt', ?, ?)",
                        (key, f"{target}{hop or ''}", f"10.0.{d}.{i}", "icmp_raw", hop or 0),
                    ).lastrowid
                )
        seconds = -(-rows // len(series))
        for t in range(0, seconds, 30):
            db.executemany(
                "INSERT INTO samples_rtt (series, ts_us, rtt) VALUES (?, ?, ?)",
                (
                    (
                        sid,
                        start_us + (t + i) * S + rng.randrange(2000),
                        None if rng.random() < 0.003 else rng.randrange(300, 90000),
                    )
                    for sid in series
                    for i in range(min(30, seconds - t))
                ),
            )
    db.close()
    return seconds * len(series)


def test_rows_written_by_sql_as_the_old_code_did_migrate_unchanged(tmp_path):
    path = str(tmp_path / "legacy.sqlite")
    n = legacy_sqlite(path, 7_200, desks=2)
    store = open_store(path)
    try:
        keys = [a.key for a in store.all_agents()]
        before = [store.rtt_rows(k, 0, FAR) for k in keys]
        assert sum(map(len, before)) == n == store.sample_count()
        r = migrate(store, now_us=LATER, max_rows=1_000, progress=None)
        assert r.done and r.legacy_rows == n and _legacy_rows(path) == 0
        assert [store.rtt_rows(k, 0, FAR) for k in keys] == before
    finally:
        store.close()


if __name__ == "__main__":  # python -m tests.test_storage_migration FILE ROWS: a legacy store to measure on
    import sys
    import time

    t0 = time.perf_counter()
    made = legacy_sqlite(sys.argv[1], int(sys.argv[2]), start_us=(time.time_ns() // 1000 // HOUR - 72) * HOUR)
    print(f"{made:,} legacy rows in {sys.argv[1]} ({time.perf_counter() - t0:.1f} s)")
