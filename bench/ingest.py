"""Collector ingest end to end: samples/s acked, ack latency and peak RSS, per store and agent count.

"End to end" is everything between an agent's write and its ack: gRPC receive, payload decode
and validation, dedup against the committed sequence, the durable group commit (SQLite WAL +
synchronous=FULL, or PostgreSQL synchronous_commit=on) with its rollups, and the ack. The
collector is the real ``cxpulse collector serve`` process on loopback with a fresh database; the
simulated agents (``bench.loadgen``) run in separate processes. The rate counts only samples
whose STORED ack arrived inside the measured window, after a warm-up; the store's row count is
checked afterwards so that an ack without rows would show.

Two loads. Bulk: large RTT-only batches (a spool draining), batch size and window per agent count
chosen so that in-flight samples stay within a few hundred thousand. Desk (issue 19): 2,000 streams,
each sending a desk's real 30 s batches at the agent's defaults (~194 samples, schema 2), one in
flight, closed loop. Ack latency at saturation is mostly queueing (in flight / rate), printed beside it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import ceiling
from .procstat import Tracker, peak_rss_bytes
from .report import Figure, load_now

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
SQLITE_BUDGET = 500_000.0
RATIO_GOAL = 0.5
DESK_SQLITE_BUDGET = 1_000_000.0  # issue 19: realistic batches, 2,000 streams, SQLite
DESK_SAMPLES = 194  # a desk's 30 s batch at the agent's defaults (bench.chunks.desk)
DESK_PRE_ENCODED_MAX = 400  # batches pre-encoded per desk personality (a run that outpaces them says so)
DESK_MIN_WARMUP_S = 10.0  # 2,000 x 194 samples in flight: the first round of acks takes seconds

# agents -> (samples per batch, batches in flight per agent, generator processes)
SHAPES = {1: (10_000, 32, 1), 100: (5_000, 1, 2), 2000: (1_000, 1, 2)}
# 2,000 agents put 2 million samples in flight: the first rounds of acks take ~10 s at these rates,
# and a window opening before the pipeline is full would measure the start, not the steady state.
MIN_WARMUP_S = {2000: 15.0}


@dataclass(frozen=True)
class IngestPlan:
    agent_counts: tuple[int, ...]
    stores: tuple[str, ...]
    warmup_s: float
    duration_s: float
    ceiling_rows: int
    desks: tuple[int, ...] = ()  # stream counts for the realistic-batch (desk) runs
    desk_stores: tuple[str, ...] = ("sqlite", "postgres")  # where desk runs happen (of ``stores``)


PLANS = {
    "full": IngestPlan((1, 100, 2000), ("sqlite", "postgres"), 3, 30, 1_000_000, (2000,)),
    # Quick: the desk run on SQLite only (each desk run is ~40 s: connecting 2,000 streams, warm-up, drain).
    "quick": IngestPlan((1, 100), ("sqlite", "postgres"), 2, 6, 100_000, (2000,), ("sqlite",)),
    "smoke": IngestPlan((1,), ("sqlite",), 1, 2, 20_000),
}


def _shape(agents: int, desk: bool = False) -> tuple[int, int, int]:
    if desk:
        return (DESK_SAMPLES, 1, 1 if agents == 1 else 2)
    if agents in SHAPES:
        return SHAPES[agents]
    return (5_000, 1, 2) if agents <= 500 else (1_000, 1, 2)


def _pctl(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1)


class _Collector:
    """``cxpulse collector serve`` on 127.0.0.1, any free port, until stopped."""

    def __init__(self, db: str, tmp: Path, name: str) -> None:
        ready = tmp / f"{name}.ready"
        ready.unlink(missing_ok=True)
        self.log_path = tmp / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                PY,
                "-m",
                "cxpulse",
                "collector",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--db",
                db,
                "--ready-file",
                str(ready),
                # Plain text: the figure is ingest, not TLS (a handshake is once per
                # connection); agents still authenticate, with credentials
                # provisioned in the database beforehand (_provision).
                "--insecure",
                # Simulated agents replay a fixed 2026 day as fast as acks come:
                # lift the per-agent rate and sample-age limits (ingest/limits.py).
                "--max-sample-age",
                "0",
                "--max-batches-per-s",
                "1e9",
                "--batch-burst",
                "1000000000",
                "--max-streams-per-peer",
                "1000000",
            ],
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"collector did not start:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        self.port = int(ready.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def _children_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of the collector's live child processes (its decode workers)."""
    import psutil

    total = 0.0
    try:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                t = child.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def _write_bytes(pid: int) -> int:
    try:
        import psutil

        return int(psutil.Process(pid).io_counters().write_bytes)
    except Exception:  # no /proc/PID/io here
        return -1


def _landing_commits(store: str, db: str, schema: str) -> tuple[int, int] | None:
    """(group commits, landing rows) of the run: each commit stamps its rows with one committed_us."""
    sql = "SELECT count(DISTINCT committed_us), count(*) FROM {}batches"
    try:
        if store == "sqlite":
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
            try:
                got = con.execute(sql.format("")).fetchone()
            finally:
                con.close()
        else:
            import psycopg

            with psycopg.connect(_pg_base(), autocommit=True) as c:
                got = c.execute(sql.format(f'"{schema}".')).fetchone()
    except Exception:  # no landing table (row-per-sample stores)
        return None
    return (int(got[0]), int(got[1])) if got else None


def _stored_samples(store: str, db: str, schema: str) -> int:
    """Samples the store holds: rows of every samples_<kind> table plus the landing and chunk rows' counts."""
    from cxpulse.v1.kinds import KINDS

    tables = [f"samples_{k}" for k in KINDS]
    if store == "sqlite":
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            have = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            total = sum(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables if t in have)
            for t in ("batches", "chunks"):
                if t in have:
                    total += con.execute(f"SELECT coalesce(sum(n), 0) FROM {t}").fetchone()[0]
            return int(total)
        finally:
            con.close()
    import psycopg

    with psycopg.connect(_pg_base(), autocommit=True) as c:
        have = {
            r[0]
            for r in c.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))
        }
        total = sum(c.execute(f'SELECT count(*) FROM "{schema}".{t}').fetchone()[0] for t in tables if t in have)
        for t in ("batches", "chunks"):
            if t in have:
                total += c.execute(f'SELECT coalesce(sum(n), 0) FROM "{schema}".{t}').fetchone()[0]
        return int(total)


def _provision(db: str, agent_ids: list[str], path: Path) -> None:
    """Credentials for every simulated agent, in one transaction, for the generators to read (0600)."""
    from cxpulse.collector.security.registry import Registry

    reg = Registry.open(db)
    try:
        creds = reg.provision_agents(agent_ids)
    finally:
        reg.close()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f)


def _run_name(store: str, agents: int, desk: bool) -> str:
    """One name per run (its database file and collector log): ``sqlite-2000-desk``."""
    return f"{store}-{agents}{'-desk' if desk else ''}"


def _pg_base() -> str:
    return os.environ.get("CXPULSE_TEST_POSTGRES") or "postgresql://postgres@127.0.0.1:5432/test"


def one_run(
    store: str,
    agents: int,
    plan: IngestPlan,
    tmp: Path,
    on_window: Callable[[int, float], Any] | None = None,
    desk: bool = False,
) -> dict[str, Any]:
    """One collector, one fresh database, ``agents`` simulated agents (``desk``: realistic 30 s
    batches, else bulk RTT batches); returns the run's figures."""
    batch, window, procs = _shape(agents, desk)
    procs = min(procs, agents)
    warmup = max(plan.warmup_s, DESK_MIN_WARMUP_S if desk else MIN_WARMUP_S.get(agents, 0.0))
    # Enough pre-encoded batches for every stream to reach the 1,000,000 samples/s goal, bounded.
    desk_batches = 0
    if desk:
        per_stream_s = DESK_SQLITE_BUDGET / DESK_SAMPLES / agents
        desk_batches = min(DESK_PRE_ENCODED_MAX, int((warmup + plan.duration_s + 5) * per_stream_s) + 5)
    schema = ""
    run_name = _run_name(store, agents, desk)
    if store == "sqlite":
        db = str(tmp / f"ingest-{run_name}.sqlite")  # fresh: the bulk and desk runs of 2,000 are two files
    else:
        schema = f"cxpulse_bench_{uuid.uuid4().hex[:10]}"
        base = _pg_base()
        db = f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"
    collector = _Collector(db, tmp, f"collector-{run_name}")
    gens: list[subprocess.Popen] = []
    outs: list[Path] = []
    err_files = []
    profiler = None
    try:
        go = tmp / f"go-{store}-{agents}"
        go.unlink(missing_ok=True)
        readies = []
        per = [agents // procs + (1 if k < agents % procs else 0) for k in range(procs)]
        first = 0
        run_id = uuid.uuid4().hex[:8]
        creds = tmp / f"credentials-{store}-{agents}.json"
        _provision(db, [f"bench-{run_id}-{i}" for i in range(agents)], creds)
        for k, n in enumerate(per):
            ready, out = tmp / f"gen{k}.ready", tmp / f"gen{k}.json"
            for f in (ready, out):
                f.unlink(missing_ok=True)
            err_files.append(open(tmp / f"gen{k}.err", "wb"))
            gens.append(
                subprocess.Popen(
                    [
                        PY,
                        "-m",
                        "bench.loadgen",
                        "--target",
                        f"127.0.0.1:{collector.port}",
                        "--agents",
                        str(n),
                        "--first",
                        str(first),
                        "--batch-samples",
                        str(batch),
                        "--window",
                        str(window),
                        "--ready",
                        str(ready),
                        "--go",
                        str(go),
                        "--warmup",
                        str(warmup),
                        "--duration",
                        str(plan.duration_s),
                        "--run-id",
                        run_id,
                        "--out",
                        str(out),
                        "--credentials",
                        str(creds),
                        "--desk-batches",
                        str(desk_batches),
                        # Desk runs measure long-connected desks: each stream's first batch (which
                        # creates its 13 series) is committed before the window; connect_s includes it.
                        *(["--prime", "--connect-timeout", "300"] if desk else []),
                    ],
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=err_files[-1],
                )
            )
            readies.append(ready)
            outs.append(out)
            first += n
        t_conn = time.monotonic()
        deadline = t_conn + (330 if desk else 180)
        while not all(r.exists() and r.read_text().strip() for r in readies):
            dead = [g for g in gens if g.poll() is not None]
            if dead or time.monotonic() > deadline:
                msg = (
                    outs[gens.index(dead[0])].read_text() if dead and outs[gens.index(dead[0])].exists() else "timeout"
                )
                raise RuntimeError(f"load generator failed while connecting: {msg}")
            time.sleep(0.05)
        connect_s = time.monotonic() - t_conn
        col = Tracker("collector", [collector.proc.pid])
        gen = Tracker("generators", [g.pid for g in gens])
        t0 = time.time() + 0.3
        go.write_text(f"{t0}\n")
        time.sleep(max(0.0, t0 + warmup - time.time()))
        col.mark_start()
        io0 = _write_bytes(collector.proc.pid)
        workers0 = _children_cpu_s(collector.proc.pid)
        gen.mark_start()
        load0 = load_now()
        if on_window is not None:
            profiler = on_window(collector.proc.pid, plan.duration_s)
        end = t0 + warmup + plan.duration_s
        while time.time() < end:
            col.sample()
            time.sleep(min(0.5, max(0.0, end - time.time())))
        col.sample()
        col.mark_end()
        io1 = _write_bytes(collector.proc.pid)
        workers1 = _children_cpu_s(collector.proc.pid)
        workers_rss = _children_peak_rss(collector.proc.pid)
        gen.mark_end()
        load1 = load_now()
        for g in gens:
            try:
                g.wait(90)  # each waits up to loadgen.DRAIN_S for its last acks
            except subprocess.TimeoutExpired:
                g.kill()
                g.wait(5)
        if profiler is not None:
            profiler.wait(60)
        results = [json.loads(o.read_text()) if o.exists() else {"fatal": "no output"} for o in outs]
        fatal = [r["fatal"] for r in results if "fatal" in r]
        if fatal:
            raise RuntimeError(f"load generator failed: {fatal[0]}")
        col_summary = col.summary(plan.duration_s)
        gen_summary = gen.summary(plan.duration_s)
    finally:
        for g in gens:
            if g.poll() is None:
                g.kill()
                g.wait(5)
        for f in err_files:
            f.close()
        collector.stop()
    stored = _stored_samples(store, db, schema)
    commits = _landing_commits(store, db, schema)
    if store == "postgres":
        import psycopg

        with psycopg.connect(_pg_base(), autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    acked = sum(r["acked_samples"] for r in results)
    lat = [x for r in results for x in r["latencies_ms"]]
    rate = acked / plan.duration_s
    gen_cpu_s = sum(r.get("cpu_s", 0.0) for r in results)
    return {
        "store": store,
        "agents": agents,
        "load": "desk" if desk else "bulk",
        "desk_batches_pre_encoded": desk_batches,
        "exhausted_agents": sum(r.get("exhausted_agents", 0) for r in results),
        "payload_build_cpu_s": sum(r.get("payload_build_cpu_s", 0.0) for r in results),
        "batch_samples": results[0].get("batch_samples", batch),
        "in_flight_per_agent": window,
        "in_flight_samples": agents * window * batch,
        "generator_processes": procs,
        "samples_per_s": round(rate),
        "acked_batches": sum(r["acked_batches"] for r in results),
        "batches_per_s": round(sum(r["acked_batches"] for r in results) / plan.duration_s),
        "acked_samples": acked,
        # From go to the last ack (warm-up + window + drain): per acked batch, what one simulated stream cost.
        "generator_cpu_s": round(gen_cpu_s, 2),
        "ack_ms_p50": _pctl(lat, 0.50),
        "ack_ms_p99": _pctl(lat, 0.99),
        "collector_peak_rss_mb": col_summary["peak_rss_mb"],
        "decode_workers_peak_rss_mb": workers_rss,
        # Payloads from decode_pool.OFFLOAD_MIN_BYTES on are decoded in worker processes: their CPU, apart.
        "decode_workers_cpu_pct_of_core": round(max(0.0, workers1 - workers0) / plan.duration_s * 100, 1),
        "collector_cpu_pct_of_core": col_summary["cpu_pct_of_core"],
        "generator_cpu_pct_of_core": gen_summary["cpu_pct_of_core"],
        "connect_s": round(connect_s, 1),
        "samples_stored_total": stored,
        "rejected": sum(r["rejected"] for r in results),
        "duplicates": sum(r["duplicates"] for r in results),
        "errors": [e for r in results for e in r["errors"]][:10],
        "payload_bytes": results[0].get("payload_bytes"),
        "connect_retries": sum(r.get("connect_retries", 0) for r in results),
        "connect_retry_kinds": _merge_counts(r.get("connect_retry_kinds", {}) for r in results),
        # Landing rows carry their commit's time: distinct values are the group commits (None: no landing table).
        "commits_total": commits[0] if commits else None,
        "batches_per_commit": round(commits[1] / commits[0], 1) if commits and commits[0] else None,
        # What the collector process wrote to disk in the window (SQLite: WAL and database; PostgreSQL: ~0).
        "collector_write_mb_per_s": round((io1 - io0) / 2**20 / plan.duration_s, 2) if io0 >= 0 <= io1 else None,
        "load_start": load0,
        "load_end": load1,
        "window_s": plan.duration_s,
        "warmup_s": warmup,
    }


def run(
    plan: IngestPlan, log: Any = print, on_window: Callable[[int, float], Any] | None = None, where: str | None = None
) -> tuple[list[Figure], dict[str, Any]]:
    stores = [s for s in plan.stores if s == "sqlite" or _postgres_ok()]
    details: dict[str, Any] = {"plan": plan.__dict__, "runs": [], "ceilings": [], "skipped": []}
    if len(stores) < len(plan.stores):
        details["skipped"].append("postgres: cannot connect or psycopg missing")
    figures: list[Figure] = []
    # SQLite files go to the temporary directory (a real disk here, not a tmpfs: check with df).
    with tempfile.TemporaryDirectory(prefix="cxpulse-bench-ingest-", dir=where) as tmp_s:
        tmp = Path(tmp_s)
        for store in stores:
            # The disk's flush time moves with what else runs on the machine: the ceiling is taken
            # before and after this store's runs, and the better of the two is the ceiling.
            ceils = _ceilings(store, plan, tmp, log)
            store_figures: list[Figure] = []
            desks = plan.desks if store in plan.desk_stores else ()
            runs = [(n, False) for n in plan.agent_counts] + [(n, True) for n in desks]
            for agents, desk in runs:
                what = f"{agents} desk streams (30 s batches)" if desk else f"{agents} agent(s)"
                log(f"  ingest: {store}, {what}, {plan.duration_s:.0f} s (load {load_now()[0]:.2f})")
                try:
                    r = one_run(store, agents, plan, tmp, on_window, desk=desk)
                except Exception as exc:  # the other runs' figures still count; the error is reported
                    details.setdefault("errors", []).append(f"{store}/{what}: {type(exc).__name__}: {exc}")
                    log(f"  ingest: {store}, {what} FAILED: {exc}")
                    col_log = tmp / f"collector-{_run_name(store, agents, desk)}.log"
                    if col_log.exists():  # what the collector said, for the one who reads the report
                        tail = col_log.read_text(errors="replace")[-3000:]
                        details.setdefault("failed_collector_logs", {})[f"{store}/{what}"] = tail
                        log("  collector log, last lines:\n" + tail)
                    continue
                details["runs"].append(r)
                store_figures += _desk_figures(store, r) if desk else _bulk_figures(store, r)
            ceils += _ceilings(store, plan, tmp, log)
            details["ceilings"].extend(ceils)
            if desks and "decode" not in details:
                fig, details["decode"] = _decode_figure(log)
                figures.append(fig)
            figures += _ceiling_figures(store, ceils) + _with_ceiling(store_figures, ceils)
    return figures, details


def _bulk_figures(store: str, r: dict[str, Any]) -> list[Figure]:
    agents = r["agents"]
    load = (r["load_end"][0], r["load_end"][1], r["load_end"][2])
    budget = SQLITE_BUDGET if store == "sqlite" else None
    out = [
        Figure(
            "ingest",
            f"{store}, {agents} agents: samples/s acked",
            "samples/s",
            r["samples_per_s"],
            budget,
            ">=",
            load=load,
            note=f"ratio goal >= {RATIO_GOAL}; generator used {r['generator_cpu_pct_of_core']}% of a "
            f"core, collector {r['collector_cpu_pct_of_core']}%",
        )
    ]
    return out + _latency_rss_figures(f"{store}, {agents} agents", r, load)


def _desk_figures(store: str, r: dict[str, Any]) -> list[Figure]:
    """Issue 19's figure: realistic 30 s desk batches, many streams, acked after the durable commit."""
    name = f"{store}, {r['agents']} desk streams"
    load = (r["load_end"][0], r["load_end"][1], r["load_end"][2])
    gen = r["generator_cpu_pct_of_core"]
    starved = " (pool of pre-encoded batches ran out: the rate is a floor)" if r["exhausted_agents"] else ""
    note = (
        f"30 s batches of ~{r['batch_samples']} samples ({r['payload_bytes']} B, schema 2), 1 in flight per stream, "
        f"{r['generator_processes']} generator processes; collector {r['collector_cpu_pct_of_core']}% of a core, "
        f"generator {gen}%{starved}"
    )
    return [
        Figure(
            "ingest",
            f"{name}: samples/s acked",
            "samples/s",
            r["samples_per_s"],
            DESK_SQLITE_BUDGET if store == "sqlite" else None,
            ">=",
            load=load,
            note=note,
        ),
        Figure("ingest", f"{name}: batches/s acked", "batches/s", r["batches_per_s"], load=load, note=note),
    ] + _latency_rss_figures(name, r, load)


def _latency_rss_figures(name: str, r: dict[str, Any], load: tuple[float, float, float]) -> list[Figure]:
    queueing = r["in_flight_samples"] / r["samples_per_s"] * 1000 if r["samples_per_s"] else None
    note = f"{r['in_flight_samples']:,} samples in flight: queueing alone ~{queueing or 0:.0f} ms"
    out = [
        Figure("ingest", f"{name}: ack latency {q}", "ms", r[f"ack_ms_{q}"], load=load, note=note)
        for q in ("p50", "p99")
    ]
    out.append(
        Figure(
            "ingest",
            f"{name}: collector peak RSS",
            "MiB",
            r["collector_peak_rss_mb"],
            load=load,
            note=f"main process; its decode workers: {r['decode_workers_peak_rss_mb']} MiB",
        )
    )
    return out


def _children_peak_rss(pid: int) -> float:
    """Peak RSS (MiB) of the collector's child processes (its payload decode workers), summed."""
    import psutil

    total = 0
    try:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                total += peak_rss_bytes(child.pid)
            except OSError:
                pass  # exited between the listing and the read
    except psutil.NoSuchProcess:
        pass
    return round(total / 2**20, 2)


def _merge_counts(dicts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _ceilings(store: str, plan: IngestPlan, tmp: Path, log: Any) -> list[dict]:
    load = load_now()
    rows = plan.ceiling_rows if store == "sqlite" else plan.ceiling_rows // 2  # PostgreSQL's executemany is slow
    log(f"  ingest: {store} bare-insert ceiling, {rows:,} rows (load {load[0]:.2f})")
    if store == "sqlite":
        ceils = [ceiling.sqlite_ceiling(rows, where=str(tmp))]
        if plan.desks and store in plan.desk_stores:  # what landing rows allow, with no decoding
            ceils.append(ceiling.sqlite_landing_ceiling(max(2_000, plan.ceiling_rows // 50), where=str(tmp)))
    else:
        ceils = ceiling.postgres_ceiling(_pg_base(), rows)
    for c in ceils:
        c["load"] = load
    return ceils


def _best(ceils: list[dict], method: str) -> dict | None:
    return max((c for c in ceils if c["method"] == method), key=lambda c: c["rows_per_s"], default=None)


def _ceiling_figures(store: str, ceils: list[dict]) -> list[Figure]:
    out = []
    land = _best(ceils, "landing")
    if land is not None:
        runs = ", ".join(f"{c['samples_per_s']:,}" for c in ceils if c["method"] == "landing")
        out.append(
            Figure(
                "ingest",
                f"{store} bare landing-row insert ceiling",
                "samples/s",
                land["samples_per_s"],
                load=land["load"],
                note=f"one row per 30 s desk batch (payload as sent), {land['rows_per_commit']} rows/commit, "
                f"{land['commits_per_s']} commits/s, synchronous={land['synchronous']}; runs before/after: {runs}",
            )
        )
    for method in ("executemany", "copy"):
        b = _best(ceils, method)
        if b is not None:
            runs = ", ".join(f"{c['rows_per_s']:,}" for c in ceils if c["method"] == method)
            out.append(
                Figure(
                    "ingest",
                    f"{store} bare {method} ceiling",
                    "rows/s",
                    b["rows_per_s"],
                    load=b["load"],
                    note=f"1,000 rows/commit, synchronous={b['synchronous']}; runs before/after: {runs}",
                )
            )
    return out


def _with_ceiling(figures: list[Figure], ceils: list[dict]) -> list[Figure]:
    """Rate figures get the ceiling as their peer: executemany as the issue asks (COPY, landing in the note)."""
    exe, copy, land = _best(ceils, "executemany"), _best(ceils, "copy"), _best(ceils, "landing")
    for f in figures:
        if f.unit == "samples/s" and exe is not None:
            f.peer, f.peer_value = "bare executemany", exe["rows_per_s"]
            f.ratio = f.value / exe["rows_per_s"] if f.value is not None else None
            if copy is not None and f.value is not None:
                f.note += f"; vs bare COPY {f.value / copy['rows_per_s']:.2f}"
            if land is not None and f.value is not None and "desk streams" in f.name:
                f.note += f"; vs bare landing-row insert {f.value / land['samples_per_s']:.3f}"
    return figures


def _decode_figure(log: Any) -> tuple[Figure, dict]:
    """The Python work per desk batch before its commit (decode + validation, rollups), one core."""
    load = load_now()
    log(f"  ingest: decode + rollups of desk batches on one core (load {load[0]:.2f})")
    d = ceiling.decode_rate()
    d["load"] = load
    note = (
        f"payload.decode {d['decode_us_per_sample']} us/sample + rollup.rolled {d['rollup_us_per_sample']} "
        f"us/sample, in-process, CPU time of {d['batches']} batches"
    )
    return Figure(
        "ingest",
        "desk batches: decode + rollups, one core",
        "samples/CPU-s",
        d["samples_per_cpu_s"],
        load=load,
        note=note,
    ), d


def _postgres_ok() -> bool:
    try:
        import psycopg

        with psycopg.connect(_pg_base(), connect_timeout=5) as c:
            c.execute("SELECT 1")
        return True
    except Exception:
        return False


def latency_note(runs: list[dict]) -> str:
    """Little's law check: in-flight / rate is what the ack latency should be at saturation."""
    parts = []
    for r in runs:
        if r["samples_per_s"]:
            parts.append(
                f"{r['store']}/{r['agents']}: expected ~{r['in_flight_samples'] / r['samples_per_s'] * 1000:.0f} ms"
            )
    return "; ".join(parts)
