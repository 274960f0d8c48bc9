"""Stored bytes per sample as compressed chunks, beside the wire payload and today's rows; codec speed.

A desk at the agent's defaults (about 6.5 samples/s: 6 RTT series at 1 s, 4 apps every 30 s, voice
every 60 s, device every 10 s, Wi-Fi every 5 s), with timing jitter and noise like a real desk's,
is cut into chunks as the store would (30 s batches, compacted into 10 min and 1 h) and into a
scratch SQLite file; the per-week projection is what docs/storage-chunks.md plans against.

    .venv/bin/python -m bench.run --only chunks
"""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cxpulse.collector.store import chunks
from cxpulse.v1 import payload as p

from .ingest import _postgres_ok
from .report import Figure, load_now

S = 1_000_000
T_BASE_US = 1_780_000_000_000_000  # a fixed day in 2026 (as bench.loadgen)
BATCH_S = 30
ROW_BYTES = 42.0  # today's samples_rtt row plus its index, per sample (issue 19, 1.2 M rows, vacuumed)
WEEK_S = 7 * 86_400
WEEK_BUDGET_MB = 10.0
# (target, address, hop, base RTT us, share of probes a hop leaves unanswered: ICMP rate limits)
RTT_TARGETS = (
    ("gateway", "192.168.1.1", 1, 2_400, 0.0),
    ("hop-2", "100.64.0.1", 2, 6_500, 0.0),
    ("hop-3", "198.51.100.9", 3, 9_800, 0.3),
    ("hop-4", "198.51.100.77", 4, 14_000, 0.0),
    ("isp", "203.0.113.1", 0, 15_500, 0.0),
    ("media", "203.0.113.10", 0, 24_000, 0.0),
)
APPS = (
    ("salesforce", "203.0.113.20", 210_000),
    ("genesys", "203.0.113.21", 160_000),
    ("okta", "203.0.113.22", 300_000),
    ("teams", "203.0.113.23", 120_000),
)


@dataclass(frozen=True)
class ChunksPlan:
    desks: int  # desk-hours written to the scratch SQLite file (each its own random desk)
    codec_rounds: int  # encode/decode repetitions for the speed figures
    postgres: bool = True  # also measure the tables on PostgreSQL (CXPULSE_TEST_POSTGRES), when it answers
    tier_desks: int = 2  # desk-days through the store for the rollup tiers as built (bench.rollup_tiers)


PLANS = {
    "full": ChunksPlan(24, 5),
    "quick": ChunksPlan(4, 2, tier_desks=1),
    "smoke": ChunksPlan(1, 1, postgres=False, tier_desks=1),
}


def _late(rnd: random.Random) -> int:
    """How late a timer fires, us: the event loop's millisecond timeout, sometimes a stall.

    Measured here with asyncio at a fixed cadence (time.time_ns stamps): |delta-of-delta| p50 ~1 ms,
    p90 ~2 ms, p99 ~7 ms on the shared 2-core machine.
    """
    late = rnd.randint(50, 1_050)
    return late + int(rnd.expovariate(1 / 3_000)) if rnd.random() < 0.02 else late


def desk(seconds: int, seed: int = 1, start_us: int = T_BASE_US) -> list[p.Series]:
    """``seconds`` of one desk at the agent's defaults, as series with realistic noise, loss and strings."""
    rnd = random.Random(seed)
    rtt = [p.Series(target=t, address=a, method="icmp_raw", hop=h or None) for t, a, h, _, _ in RTT_TARGETS]
    http = [p.Series(target=n, address=a, method="https", kind="http") for n, a, _ in APPS]
    voice = p.Series(target="reflector", address="203.0.113.30", method="udp_reflect", kind="voice")
    dev = p.Series(target="device", address="local", method="os", kind="device")
    wifi = p.Series(target="wlan0", address="wlan0", method="nl80211", kind="wifi")
    burst_at = rnd.randrange(0, max(1, seconds))  # one short outage per stretch: every series loses a few seconds
    cpu, mem, up, dn, upb, dnb, rssi, bssid = 180, 640, 300, 1_200, 9_000, 48_000, -56, 1
    for i in range(seconds):
        tick = start_us + i * S + _late(rnd)
        outage = burst_at <= i < burst_at + 4
        for j, (s, (_, _, _, base, drop)) in enumerate(zip(rtt, RTT_TARGETS)):
            half = S // 2 if j % 2 else 0  # the agent launches every other target half a period later
            ts = tick + half + 40 * (j // 2) + rnd.randint(0, 60)
            lost = outage or rnd.random() < drop or rnd.random() < 0.003
            s.add(ts, None if lost else int(base * (0.92 + 0.12 * rnd.lognormvariate(0, 0.7))))
        if i % 5 == 0:
            if rnd.random() < 0.002:
                bssid = 3 - bssid  # a roam between two access points
            rssi = max(-85, min(-40, rssi + rnd.choice((-1, 0, 0, 0, 1))))
            tx = rnd.choice((648_500, 720_600, 864_800, 864_800, 960_700))
            wifi.add(
                tick + 800,
                conn=1,
                ssid="CorpNet",
                bssid=f"a4:5e:60:c1:2e:0{bssid}",
                rssi=rssi,
                noise=-92,
                snr=92 + rssi,
                ch=36,
                mhz=5180,
                band="5",
                phy="802.11ax",
                tx=tx,
                rx=tx - rnd.choice((0, 72_100)),
                q=None,
            )
        if i % 10 == 0:
            cpu = max(20, min(1000, cpu + rnd.randint(-60, 60)))
            mem = max(400, min(990, mem + rnd.randint(-4, 4)))
            up, dn = rnd.randint(40, 900), rnd.randint(100, 6_000)
            upb, dnb = max(upb * 999 // 1000, up), max(dnb * 999 // 1000, dn)
            dev.add(
                tick + 1_500,
                cpu=cpu,
                mem=mem,
                top="chrome.exe" if cpu > 900 else None,
                nicerr=0,
                **{"if": "wlan0", "ifk": "wifi", "vpn": "GlobalProtect", "proxy": None},
                up=up,
                dn=dn,
                upb=upb,
                dnb=dnb,
                spd=866,
            )
        if i % 30 == 0:
            for s, (_, _, total) in zip(http, APPS):
                if outage:
                    s.add(
                        tick + 2_000,
                        dns=None,
                        tcp=None,
                        tls=None,
                        ttfb=None,
                        total=None,
                        status=None,
                        ver=None,
                        cert=None,
                        err="timeout",
                    )
                    continue
                dns = (
                    rnd.choice((400, 600, 900)) + rnd.randint(0, 400)
                    if rnd.random() < 0.9
                    else rnd.randint(8_000, 40_000)
                )
                tcp = int(22_000 * rnd.lognormvariate(0, 0.2))
                tls = int(2.1 * tcp) + rnd.randint(0, 5_000)
                ttfb = int(total * 0.6 * rnd.lognormvariate(0, 0.3))
                s.add(
                    tick + 2_000 + rnd.randint(0, 3_000),
                    dns=dns,
                    tcp=tcp,
                    tls=tls,
                    ttfb=ttfb,
                    total=dns + tcp + tls + ttfb + rnd.randint(1_000, 30_000),
                    status=200,
                    ver="HTTP/2",
                    cert=63,
                    err=None,
                )
        if i % 60 == 0:
            recv = 250 if rnd.random() < 0.8 else 250 - rnd.randint(1, 3)
            r = int(26_000 * rnd.lognormvariate(0, 0.1))
            voice.add(
                tick + 5_000_000,
                sent=250,
                recv=recv,
                dup=0,
                reord=rnd.choice((0, 0, 0, 1)),
                rtt=r,
                rtt95=r + rnd.randint(1_000, 6_000),
                jit=rnd.randint(300, 3_000),
                loss=(250 - recv) * 4,
                burst=(250 - recv) * 40,
                run=1 if recv < 250 else 0,
                err=None,
            )
    return [*rtt, *http, voice, dev, wifi]


def _cut(series: list[p.Series], span_s: int) -> list[list[tuple[str, list[int], dict[str, list]]]]:
    """The series cut at ``span_s`` boundaries: per span, (kind, ts, cols) of each series that has samples."""
    out: dict[int, list] = defaultdict(list)
    for s in series:
        start = 0
        while start < len(s):
            block = (s.ts_us[start] - T_BASE_US) // (span_s * S)
            end = start
            while end < len(s) and (s.ts_us[end] - T_BASE_US) // (span_s * S) == block:
                end += 1
            out[block].append((s.kind, s.ts_us[start:end], {k: v[start:end] for k, v in s.cols.items()}))
            start = end
    return [out[k] for k in sorted(out)]


def _chunk_bytes(series: list[p.Series], span_s: int) -> dict[str, tuple[int, int]]:
    """kind -> (chunk bytes, samples) when each series is kept in chunks of ``span_s``."""
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for block in _cut(series, span_s):
        for kind, ts, cols in block:
            acc[kind][0] += len(chunks.encode(kind, ts, cols))
            acc[kind][1] += len(ts)
    return {k: (b, n) for k, (b, n) in acc.items()}


def _wire_bytes(batches: list[p.SampleBatch]) -> dict[str, tuple[int, int]]:
    """kind -> (payload bytes, samples): each kind's series of a 30 s batch encoded alone as schema 2."""
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for b in batches:
        for kind in {s.kind for s in b.series}:
            one = p.SampleBatch([s for s in b.series if s.kind == kind])
            acc[kind][0] += len(p.encode(one, version=p.SCHEMA_VERSION))
            acc[kind][1] += one.sample_count
    return {k: (b, n) for k, (b, n) in acc.items()}


def _batches(series: list[p.Series]) -> list[p.SampleBatch]:
    """The desk as the agent sends it: every series cut into 30 s batches."""
    out: dict[int, p.SampleBatch] = defaultdict(p.SampleBatch)
    for s in series:
        parts: dict[int, p.Series] = {}
        for i, t in enumerate(s.ts_us):
            block = (t - T_BASE_US) // (BATCH_S * S)
            if block not in parts:
                parts[block] = p.Series(target=s.target, address=s.address, method=s.method, kind=s.kind, hop=s.hop)
                out[block].series.append(parts[block])
            parts[block].add(t, **{k: v[i] for k, v in s.cols.items()})
    return [out[k] for k in sorted(out)]


_CHUNK_TABLE = """CREATE TABLE chunks (id INTEGER PRIMARY KEY, series INTEGER NOT NULL, start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX chunks_by_series_time ON chunks (series, start_us);
CREATE INDEX chunks_by_end ON chunks (end_us);"""
_ROLLUP_TABLE = """CREATE TABLE rollups (agent INTEGER NOT NULL, minute_us INTEGER NOT NULL, kind TEXT NOT NULL,
    target TEXT NOT NULL, hop INTEGER NOT NULL DEFAULT 0, n INTEGER NOT NULL DEFAULT 0, data BLOB NOT NULL,
    PRIMARY KEY (agent, minute_us, kind, target)) WITHOUT ROWID;
CREATE INDEX rollups_by_minute ON rollups (minute_us);"""
# The landing table: each batch's payload as the desk sent it, until compaction cuts it into chunks.
_BATCH_TABLE = """CREATE TABLE batches (id INTEGER PRIMARY KEY, agent INTEGER NOT NULL, epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL, start_us INTEGER NOT NULL, end_us INTEGER NOT NULL, n INTEGER NOT NULL, payload BLOB NOT NULL,
    UNIQUE (agent, epoch, seq));
CREATE INDEX batches_by_end ON batches (end_us);"""
# Per-minute rollups kept as one deflated row per agent and hour (a chunk of rollups).
_ROLLUP_HOUR_TABLE = """CREATE TABLE rollup_hours (agent INTEGER NOT NULL, hour_us INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (agent, hour_us));"""
_PG_TABLES = {
    "batches": "agent bigint, epoch bigint, seq bigint, start_us bigint, end_us bigint, n int, payload bytea",
    "chunks": "series bigint, start_us bigint, end_us bigint, n int, data bytea",
    "rollups": "agent bigint, minute_us bigint, kind text, target text, hop int, n int, data bytea",
    "rollup_hours": "agent bigint, hour_us bigint, data bytea",
}
_PG_INDEXES = {
    "batches": "(agent, epoch, seq)",
    "chunks": "(series, start_us)",
    "rollups": "(agent, minute_us, kind, target)",
    "rollup_hours": "(agent, hour_us)",
}


def _file_bytes(path: str, schema: str, table: str, rows: list[tuple]) -> int:
    """Bytes of a vacuumed SQLite file holding only ``rows`` (the empty file's pages subtracted)."""
    db = sqlite3.connect(path)
    try:
        db.executescript(schema)
        db.execute("VACUUM")
        empty = db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0]
        marks = ", ".join("?" * len(rows[0]))
        with db:
            db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        db.execute("VACUUM")
        return db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0] - empty
    finally:
        db.close()


def _chunk_rows(desks: list[list[p.Series]], span_s: int) -> list[tuple]:
    rows = []
    sid = 0
    for series in desks:
        for s in series:
            sid += 1
            for ((kind, ts, cols),) in _cut([s], span_s):
                rows.append((None, sid, ts[0], ts[-1], len(ts), chunks.encode(kind, ts, cols)))
    return rows


def _batch_rows(desks: list[list[p.Series]]) -> list[tuple]:
    rows = []
    for agent, series in enumerate(desks):
        for seq, b in enumerate(_batches(series), 1):
            ts = [t for x in b.series for t in x.ts_us]
            rows.append((None, agent, 1, seq, min(ts), max(ts), b.sample_count, p.encode(b, version=p.SCHEMA_VERSION)))
    return rows


def _rollup_hour_rows(minute_rows: list[tuple]) -> list[tuple]:
    """The per-minute rollup rows of each agent-hour as one deflated msgpack list."""
    import msgpack

    hours: dict[tuple[int, int], list] = defaultdict(list)
    for agent, minute_us, kind, target, hop, n, data in minute_rows:
        hours[(agent, minute_us - (minute_us - T_BASE_US) % (3_600 * S))].append(
            [minute_us, kind, target, hop, n, data]
        )
    return [(a, h, zlib.compress(msgpack.packb(sorted(v), use_bin_type=True), 6)) for (a, h), v in hours.items()]


def _postgres_bytes(tables: dict[str, tuple[str, list[tuple]]]) -> dict[str, int]:
    """Bytes of each table with its index and TOAST on PostgreSQL (COPY, then VACUUM FULL)."""
    import psycopg

    from .ingest import _pg_base

    schema = f"cxpulse_bench_chunks_{os.getpid()}"
    out: dict[str, int] = {}
    with psycopg.connect(_pg_base(), autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
        try:
            for label, (name, rows) in tables.items():
                table = f"{schema}.t_{len(out)}"
                c.execute(f"CREATE TABLE {table} ({_PG_TABLES[name]})")
                blob = _PG_TABLES[name].split(", ")[-1].split()[0]  # stored as sent: already compressed
                c.execute(f"ALTER TABLE {table} ALTER COLUMN {blob} SET STORAGE EXTERNAL")
                c.execute(f"CREATE INDEX ON {table} {_PG_INDEXES[name]}")
                with c.cursor().copy(f"COPY {table} FROM STDIN") as cp:
                    for r in rows:
                        cp.write_row(r[1:] if r[0] is None else r)
                c.execute(f"VACUUM FULL {table}")
                size = c.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()
                out[label] = int(size[0]) if size else 0
        finally:
            c.execute(f"DROP SCHEMA {schema} CASCADE")
    return out


def _rollup_rows(desks: list[list[p.Series]], minutes: int) -> list[tuple]:
    """Each desk's per-minute rollups (as the store builds them), merged into ``minutes``-long rollups.
    The rollup tiers as the store keeps them (rows and sealed) are measured by ``_tier_figures``."""
    from cxpulse.collector.store import rollup as ru

    rows = []
    for agent, series in enumerate(desks):
        merged: dict[tuple, Any] = {}
        for r in ru.rollups_of_batches((agent, b) for b in _batches(series)).values():
            r.minute_us -= (r.minute_us - T_BASE_US) % (minutes * 60 * S)
            have = merged.get(r.key)
            merged[r.key] = r if have is None else ru.merge(have, r)
        rows += [
            (
                r.agent,
                r.minute_us,
                r.kind,
                r.target,
                r.hop,
                r.count,
                ru.encode(r.kind, r.data),
            )
            for r in merged.values()
        ]
    return rows


def _rate(samples: int, fn: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return samples / best


def _tier_figures(plan: ChunksPlan, raw_day: float, rate: float, details: dict, log) -> list[Figure]:
    """Disk per desk as built: raw hour chunks (above) for the raw horizon, and the rollup tiers
    measured through the store itself, rows and sealed (``bench.rollup_tiers``), on SQLite and,
    when it answers, PostgreSQL."""
    from cxpulse.collector.jobs.retention import DEFAULT_MINUTE_DAYS, DEFAULT_RAW_DAYS, DEFAULT_ROLLUP_DAYS
    from cxpulse.collector.store.sealed import SEAL_AFTER_US

    from . import rollup_tiers

    stores = ["sqlite"] + (["postgres"] if plan.postgres and _postgres_ok() else [])
    raw_b = {"sqlite": raw_day}
    pg_chunks = details.get("postgres", {}).get("chunks 1 h")
    if pg_chunks:
        raw_b["postgres"] = pg_chunks["bytes"] * 24 / plan.desks
    out = []
    after = SEAL_AFTER_US / 86_400e6
    for store in stores:
        log(f"   rollup tiers through the store ({store}, {plan.tier_desks} desk-days)")
        got = rollup_tiers.main(plan.tier_desks, postgres=store == "postgres")
        rows = got["minute rollups, bytes per desk-day"]
        sealed_min = got["minute rollups sealed per agent-hour, bytes per desk-day"]
        sealed_blk = got["15-minute rollups sealed per agent-day, bytes per desk-day"]
        kept = got["kept minute scores and block merges, bytes per desk-day"]
        sealed_kept = got["kept minute scores and block merges sealed, bytes per desk-day"]
        raw = raw_b.get(store, raw_day)
        minutes = after * (rows + kept) + (DEFAULT_MINUTE_DAYS - after) * (sealed_min + sealed_kept)
        steady = DEFAULT_RAW_DAYS * raw + minutes + DEFAULT_ROLLUP_DAYS * sealed_blk
        # a week: its 15-minute rollups come at 8 days
        week = 7 * raw + after * (rows + kept) + (7 - after) * (sealed_min + sealed_kept)
        details.setdefault("tiers", {})[store] = {k: round(v, 1) for k, v in got.items()}
        name = "SQLite" if store == "sqlite" else "PostgreSQL"
        out += [
            Figure(
                "chunks",
                f"disk per desk-week at defaults, raw + rollups ({name})",
                "MB",
                round(week / 1e6, 2),
                WEEK_BUDGET_MB,
                "<=",
                peer="rows (raw, minute rollup and kept score rows)",
                peer_value=round((ROW_BYTES * rate * 86_400 + rows + kept) * 7 / 1e6, 1),
                load=load_now(),
                note=f"raw {7 * raw / 1e6:.1f} MB (7 d of 1 h chunks) + minute rollups and kept scores {after:g} d "
                f"as rows {after * (rows + kept) / 1e6:.1f} MB + {7 - after:g} d sealed "
                f"{(7 - after) * (sealed_min + sealed_kept) / 1e6:.1f} MB",
            ),
            Figure(
                "chunks",
                f"disk per desk at the retention defaults ({name})",
                "MB",
                round(steady / 1e6, 1),
                load=load_now(),
                note=f"raw {DEFAULT_RAW_DAYS:g} d {DEFAULT_RAW_DAYS * raw / 1e6:.1f} + minute rollups and kept scores "
                f"{DEFAULT_MINUTE_DAYS:g} d {minutes / 1e6:.1f} + 15-minute {DEFAULT_ROLLUP_DAYS:g} d "
                f"{DEFAULT_ROLLUP_DAYS * sealed_blk / 1e6:.1f} MB (sealed after {after:g} d)",
            ),
        ]
    return out


def run(plan: ChunksPlan, log: Any = print, where: str | None = None) -> tuple[list[Figure], dict[str, Any]]:
    """The figures: bytes per sample per kind and span, SQLite bytes per desk-week, codec speed."""
    hour = 3_600
    log(f"   generating {plan.desks} desk-hour(s)")
    desks = [desk(hour, seed=1 + d) for d in range(plan.desks)]
    one = desks[0]
    samples = sum(len(s) for s in one)
    rate = samples / hour
    batches = _batches(one)
    wire = _wire_bytes(batches)
    wire_all = sum(len(p.encode(b, version=p.SCHEMA_VERSION)) for b in batches) / samples
    details: dict[str, Any] = {
        "plan": plan.__dict__,
        "errors": [],
        "samples_per_s": round(rate, 2),
        "wire_B_per_sample": {k: round(b / n, 2) for k, (b, n) in wire.items()},
        "chunk_B_per_sample": {},
    }
    load = load_now()
    figures: list[Figure] = []
    per_span: dict[int, float] = {}
    for label, span in (("30 s", BATCH_S), ("1 min", 60), ("10 min", 600), ("1 h", hour)):
        got = _chunk_bytes(one, span)
        details["chunk_B_per_sample"][label] = {k: round(b / n, 2) for k, (b, n) in sorted(got.items())}
        per_span[span] = sum(b for b, _ in got.values()) / samples
        log(
            f"   {label} chunks: {per_span[span]:.2f} B/sample "
            + ", ".join(f"{k} {b / n:.2f}" for k, (b, n) in sorted(got.items()))
        )
    for label, span in (("30 s (as committed)", BATCH_S), ("10 min", 600), ("1 h", hour)):
        figures.append(
            Figure(
                "chunks",
                f"desk at defaults, {label} chunks: bytes/sample",
                "B",
                round(per_span[span], 2),
                peer="wire payload (schema 2, 30 s batches)",
                peer_value=round(wire_all, 2),
                load=load,
                note=f"{rate:.2f} samples/s per desk; rows today: {ROW_BYTES:g} B/sample",
            )
        )
    for kind, (b, n) in sorted(_chunk_bytes(one, hour).items()):
        wb, wn = wire[kind]
        figures.append(
            Figure(
                "chunks",
                f"{kind}, 1 h chunks: bytes/sample",
                "B",
                round(b / n, 2),
                peer="wire payload",
                peer_value=round(wb / wn, 2),
                load=load,
            )
        )

    tmp = tempfile.mkdtemp(prefix="cxpulse-bench-chunks-", dir=where)
    try:
        total = sum(len(s) for d in desks for s in d)
        files = {}
        minute_rows = _rollup_rows(desks, 1)
        tables = (
            ("batches 30 s (payload as sent)", _BATCH_TABLE, "batches", _batch_rows(desks)),
            ("chunks 30 s", _CHUNK_TABLE, "chunks", _chunk_rows(desks, BATCH_S)),
            ("chunks 10 min", _CHUNK_TABLE, "chunks", _chunk_rows(desks, 600)),
            ("chunks 1 h", _CHUNK_TABLE, "chunks", _chunk_rows(desks, hour)),
            ("rollups 1 min", _ROLLUP_TABLE, "rollups", minute_rows),
            (
                "rollups 1 min, one row per agent-hour",
                _ROLLUP_HOUR_TABLE,
                "rollup_hours",
                _rollup_hour_rows(minute_rows),
            ),
            ("rollups 15 min", _ROLLUP_TABLE, "rollups", _rollup_rows(desks, 15)),
        )
        for label, schema, table, rows in tables:
            size = _file_bytes(os.path.join(tmp, label.replace(" ", "-") + ".sqlite"), schema, table, rows)
            files[label] = {
                "rows": len(rows),
                "bytes": size,
                "per_desk_hour": round(size / plan.desks),
                "B_per_sample": round(size / total, 2),
            }
            log(
                f"   SQLite {label}: {len(rows)} rows, {size / plan.desks / 1e3:.1f} kB per desk-hour, "
                f"{size / total:.2f} B/sample"
            )
        details["sqlite"] = files
        if plan.postgres and _postgres_ok():
            pg = _postgres_bytes({label: (name, rows) for label, _, name, rows in tables})
            details["postgres"] = {
                k: {"bytes": v, "per_desk_hour": round(v / plan.desks), "B_per_sample": round(v / total, 2)}
                for k, v in pg.items()
            }
            for k, v in pg.items():
                log(f"   PostgreSQL {k}: {v / plan.desks / 1e3:.1f} kB per desk-hour, {v / total:.2f} B/sample")
    finally:
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    day = 24 / plan.desks
    raw_day = files["chunks 1 h"]["bytes"] * day
    minute_day = files["rollups 1 min, one row per agent-hour"]["bytes"] * day
    today_minute_day = files["rollups 1 min"]["bytes"] * day
    details["per_desk_MB_per_day"] = {
        "raw_1h_chunks": round(raw_day / 1e6, 3),
        "rollups_1min_agent_hour_rows": round(minute_day / 1e6, 3),
        "rollups_1min_rows_today": round(today_minute_day / 1e6, 3),
        "raw_rows_today": round(ROW_BYTES * rate * 86_400 / 1e6, 3),
    }
    figures += [
        Figure(
            "chunks",
            "SQLite, 1 h chunks: bytes/sample on disk",
            "B",
            files["chunks 1 h"]["B_per_sample"],
            peer="rows today",
            peer_value=ROW_BYTES,
            load=load,
        ),
        Figure(
            "chunks",
            "SQLite, 30 s chunks (before compaction): bytes/sample on disk",
            "B",
            files["chunks 30 s"]["B_per_sample"],
            peer="rows today",
            peer_value=ROW_BYTES,
            load=load,
        ),
    ]
    if plan.tier_desks > 0:
        figures += _tier_figures(plan, raw_day, rate, details, log)
    # Speed: the commit's work (30 s chunks), compaction (30 s -> 1 h) and a lookup's decode (1 h chunks).
    small = [c for block in _cut(one, BATCH_S) for c in block]
    big = [c for block in _cut(one, hour) for c in block]
    encoded_small = [(k, chunks.encode(k, t, c)) for k, t, c in small]
    encoded_big = [(k, chunks.encode(k, t, c)) for k, t, c in big]
    by_series: dict[tuple[str, int], list[bytes]] = defaultdict(list)
    for block in _cut(one, BATCH_S):
        for j, (k, t, c) in enumerate(block):
            by_series[(k, j)].append(chunks.encode(k, t, c))
    speeds = {
        "encode 30 s chunks": _rate(samples, lambda: [chunks.encode(k, t, c) for k, t, c in small], plan.codec_rounds),
        "encode 1 h chunks": _rate(samples, lambda: [chunks.encode(k, t, c) for k, t, c in big], plan.codec_rounds),
        "decode 1 h chunks": _rate(samples, lambda: [chunks.decode(k, d) for k, d in encoded_big], plan.codec_rounds),
        "decode 30 s chunks": _rate(
            samples, lambda: [chunks.decode(k, d) for k, d in encoded_small], plan.codec_rounds
        ),
        "merge 30 s -> 1 h": _rate(
            samples, lambda: [chunks.merge(k, ds) for (k, _), ds in by_series.items()], plan.codec_rounds
        ),
    }
    details["speed_samples_per_s"] = {k: round(v) for k, v in speeds.items()}
    for what, per_s in speeds.items():
        log(f"   {what}: {per_s:,.0f} samples/s")
        figures.append(Figure("chunks", f"{what}: samples/s (one core)", "samples/s", round(per_s), load=load_now()))
    return figures, details


if __name__ == "__main__":
    import json

    figs, det = run(PLANS["quick"])
    print(json.dumps(det, indent=1))
