"""Lookup latency with a fleet's rollups in the store (issue 9 part 3): the API and the agent page.

    .venv/bin/python -m bench.lookup --quick          # the figures alone; bench.run --only lookup does the same

What is in the store: ``agents`` agents, each with the last ``recent_minutes`` minutes of rollups,
and ``day_agents`` of them with a full 24 h. Generated directly into the rollups table, not
through ingest (ingest has its own benchmark), from real rollups: one minute per profile (clean,
weak Wi-Fi, ISP loss, slow app) made by ``rollup.rollups_of_batches`` from sample series at the
agent's default rates, cut in six 10 s batches as the agent sends them (so an RTT minute holds
six fragments, as in production), then copied to every agent-minute with its timestamps moved.
Every agent-minute has 7 rollups (3 RTT hops, 1 app, Wi-Fi, device, voice); no raw samples,
no events: the long view reads raw rows only for its last minutes, which are then empty.

What is measured, over real HTTP on loopback against ``start_http`` (uvicorn) in a child
process, with an API key from the security registry, one request at a time:

- agent API, 1 h (the default window) on random agents: p50/p99, budget p99 <= 50 ms;
- agent API, 24 h on the day agents (each asked once: no cache hit): p50/p99, budget 1 s
  (issue 5: a day of one agent's data loads in under a second), with their minute scores kept
  as a running collector keeps them (``keep``); and on as many other day agents with nothing
  kept (every minute scored in the request: a store filled while no collector ran);
- agent API, 7 d on ``week_agents`` agents with a week of rollups, kept and sealed as a running
  collector leaves them (minute rollups and kept scores older than a day sealed per agent-hour):
  each asked once, budget 1 s (issue 19: a week in under a second);
- agent page, 1 h: the HTML, then the view and the chart's timeline as app.js asks them;
- fleet (worst agents now, 15 min): the first request (computed), a repeat (cached), and a
  request after the cache expired (computed again, now with every minute score kept).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .report import Figure, load_now, table

S = 1_000_000
MINUTE_US = 60 * S
GROUP = "lookup"
API_P99_BUDGET_MS = 50.0
DAY_P99_BUDGET_MS = 1000.0
WEEK_P99_BUDGET_MS = 1000.0  # issue 19: a week of one agent in under a second
FLEET_TTL_S = 20  # LookupService's fleet cache
CLOCK_AFTER_US = 5 * S  # the server's clock starts this long after the data's last minute ends


@dataclass(frozen=True)
class LookupPlan:
    agents: int
    day_agents: int
    recent_minutes: int
    requests: int  # per 1 h figure
    day_requests: int  # 24 h views (each on its own day agent)
    fleet: bool
    week_agents: int = 0  # agents with 7 days of rollups, each asked for its week once


PLANS = {
    "full": LookupPlan(10_000, 300, 60, 300, 40, True, 5),
    "quick": LookupPlan(1_000, 20, 15, 60, 5, True, 2),
    "smoke": LookupPlan(40, 2, 15, 10, 2, False),
}
WEEK_MINUTES = 7 * 1440
SITES = 50


# --- the data --------------------------------------------------------------------------------------


def _minute_series(profile: str, m0: int, rnd: random.Random) -> list:
    """One minute of one desk at the agent's default rates, cut in six 10 s batches."""
    from cxpulse.v1 import payload as p

    batches = []
    for b in range(6):
        gw = p.Series(target="gateway", address="192.168.1.1", method="icmp_raw", hop=1)
        isp = p.Series(target="isp", address="100.64.0.1", method="icmp_raw", hop=2)
        media = p.Series(target="media", address="203.0.113.10", method="tcp_connect", hop=3)
        app = p.Series(target="salesforce", address="203.0.113.20", method="https", kind="http")
        wifi = p.Series(target="wlan0", address="local", method="nl80211", kind="wifi")
        dev = p.Series(target="device", address="local", method="os", kind="device")
        voice = p.Series(target="reflector", address="203.0.113.30", method="udp_reflect", kind="voice")
        for i in range(b * 10, b * 10 + 10):
            ts = m0 + i * S + rnd.randrange(0, 2000)
            extra = rnd.expovariate(1 / 20_000) if profile == "wifi" else rnd.expovariate(1 / 400)
            g = int(1800 + extra)
            gw.add(ts, g)
            lost = profile == "isp" and rnd.random() < 0.2
            isp.add(ts + 300, None if lost else g + 7000 + int(rnd.expovariate(1 / 500)))
            media.add(ts + 600, None if lost else g + 19000 + int(rnd.expovariate(1 / 800)))
            if i % 5 == 0:
                rssi = (-79 if profile == "wifi" else -55) + rnd.randrange(-2, 3)
                wifi.add(
                    ts,
                    conn=1,
                    ssid="corp",
                    bssid="aa:bb:cc:00:00:01",
                    rssi=rssi,
                    noise=-92,
                    snr=92 + rssi,
                    ch=36,
                    mhz=5180,
                    band="5",
                    phy="802.11ax",
                    tx=60_000 if profile == "wifi" else 866_000,
                    rx=400_000,
                    q=None,
                )
            if i % 10 == 0:
                dev.add(
                    ts,
                    cpu=200 + rnd.randrange(0, 100),
                    mem=600,
                    top=None,
                    nicerr=0,
                    **{"if": "wlan0", "ifk": "wifi", "vpn": "", "proxy": None},
                )
            if i % 30 == 0:
                slow = profile == "app"
                app.add(
                    ts,
                    dns=3000,
                    tcp=22000,
                    tls=45000,
                    ttfb=1_900_000 if slow else 140_000,
                    total=2_400_000 if slow else 210_000,
                    status=200,
                    ver="HTTP/2",
                    cert=80,
                    err=None,
                )
            if i == 40:
                voice.add(
                    ts,
                    sent=250,
                    recv=250 - (10 if profile == "isp" else 0),
                    dup=0,
                    reord=0,
                    rtt=30000,
                    rtt95=34000,
                    jit=1500,
                    loss=40 if profile == "isp" else 0,
                    burst=100 if profile == "isp" else 0,
                    run=3 if profile == "isp" else 0,
                )
        batches.append(p.SampleBatch([s for s in (gw, isp, media, app, wifi, dev, voice) if len(s)], [], []))
    return batches


@dataclass
class _Template:
    """A rollup's bytes and where its absolute timestamps sit (moved to another minute by patching)."""

    kind: str
    target: str
    hop: int
    n: int
    raw: bytes
    stamps: list[tuple[int, int]]  # (byte offset, timestamp - minute start)


def _templates(m0: int, seed: int = 5) -> dict[str, list[_Template]]:
    """Per profile, the 7 rollups of one agent-minute; timestamps found in the bytes as msgpack uint64."""
    from cxpulse.collector.store import rollup as ru

    rnd = random.Random(seed)
    out: dict[str, list[_Template]] = {}
    for profile in ("clean", "wifi", "isp", "app"):
        rolled = ru.rollups_of_batches((1, b) for b in _minute_series(profile, m0, rnd))
        ts: list[_Template] = []
        for r in rolled.values():
            raw = ru.encode(r.kind, r.data)
            stamps = []
            for f in r.data.get("frags") or ():
                for t in f[:2]:
                    needle = b"\xcf" + struct.pack(">Q", t)
                    at = raw.find(needle)
                    if at < 0:
                        raise RuntimeError("fragment timestamp not found in the encoded rollup")
                    stamps.append((at + 1, t - m0))
            ts.append(_Template(r.kind, r.target, r.hop, r.count, raw, stamps))
        out[profile] = ts
    return out


def _moved(t: _Template, minute: int) -> bytes:
    if not t.stamps:
        return t.raw
    b = bytearray(t.raw)
    for at, off in t.stamps:
        struct.pack_into(">Q", b, at, minute + off)
    return bytes(b)


def _profile(agent: int, minute_index: int, day: bool) -> str:
    """Mostly clean; the day agents have a weak-Wi-Fi spell, an ISP-loss spell and a slow-app spell."""
    if day:
        mi = (minute_index + agent * 37) % 1440
        if 600 <= mi < 620:
            return "wifi"
        if 840 <= mi < 845:
            return "isp"
        if 1000 <= mi < 1003:
            return "app"
    elif agent % 20 == 0 and minute_index % 7 == 0:
        return "isp"
    return "clean"


def fill(path: str, plan: LookupPlan, end_minute: int, log: Any = print) -> dict[str, Any]:
    """Create the store at ``path`` with the plan's agents and rollups up to ``end_minute`` (exclusive)."""
    from cxpulse.collector.store import open_store

    t0 = time.perf_counter()
    open_store(path).close()  # the schema, as the collector makes it
    tpl = _templates(end_minute - MINUTE_US)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")  # generated data: durability is not what is measured here
    db.execute("BEGIN")
    agents = []
    for k in range(1, plan.agents + 1):
        aid = f"agent-{k:05d}"
        agents.append(aid)
        db.execute(
            "INSERT INTO agents (key, agent_id, host, os_user, os, agent_version, site, first_seen_us, last_seen_us)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                k,
                aid,
                f"DESK-{k:05d}",
                f"user{k:05d}",
                "Windows 11",
                "0.1.0",
                f"site-{k % SITES:02d}",
                end_minute - 86_400 * S,
                end_minute - S,
            ),
        )
        for t in tpl["clean"]:
            if t.kind in ("rtt", "http", "wifi", "device", "voice"):
                db.execute(
                    "INSERT OR IGNORE INTO series (agent, target, address, kind, method, hop) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (k, t.target, "x", t.kind, "bench", t.hop),
                )
    db.execute("COMMIT")
    rows = 0
    day_keys = set(range(1, plan.day_agents + 1))
    week_keys = set(range(plan.day_agents + 1, plan.day_agents + plan.week_agents + 1))
    sql = "INSERT INTO rollups (agent, minute_us, kind, target, hop, n, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
    for k in range(1, plan.agents + 1):
        minutes = WEEK_MINUTES if k in week_keys else 1440 if k in day_keys else plan.recent_minutes
        batch = []
        for i in range(minutes):
            m = end_minute - (minutes - i) * MINUTE_US
            for t in tpl[_profile(k, i, k in day_keys or k in week_keys)]:
                batch.append((k, m, t.kind, t.target, t.hop, t.n, _moved(t, m)))
        db.execute("BEGIN")
        db.executemany(sql, batch)
        db.execute("COMMIT")
        rows += len(batch)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    took = time.perf_counter() - t0
    size = os.path.getsize(path)
    mb = size / 2**20
    log(
        f"   store: {plan.agents} agents ({plan.day_agents} with 24 h, {plan.week_agents} with 7 d), {rows} rollups, "
        f"{mb:.0f} MB in {took:.0f} s"
    )
    return {
        "agents": agents,
        "day_agents": agents[: plan.day_agents],
        "week_agents": agents[plan.day_agents : plan.day_agents + plan.week_agents],
        "rollups": rows,
        "db_mb": round(size / 2**20, 1),
        "fill_s": round(took, 1),
    }


def keep(
    path: str, spans: list[tuple[list[str], int, int]], log: Any = print, seal_us: int | None = None
) -> dict[str, Any]:
    """Keep minute scores and block merges as a running collector would have (score/kept.py: its
    loop keeps each minute and each 15-minute block of every agent as it settles), for the agents
    the figures ask: (agent ids, since, until) per span. Not for every agent: at 10,000 agents that
    is 600,000 minutes (the loop's work of an hour); the agents not asked stay unkept (the fleet's
    figure scores them). The "is it just me?" group rows are the fleet's, one per minute: kept for
    every minute of the spans, as the loop keeps each minute that settles (jobs/kept_groups.py).
    ``seal_us``: then seal what a collector running at that time has sealed (jobs/rollup_sealing.py)."""
    import asyncio

    from cxpulse.collector.jobs.kept_groups import keep_groups
    from cxpulse.collector.jobs.rollup_sealing import seal_once
    from cxpulse.collector.score.kept import BLOCK_US, keep_blocks, keep_recent
    from cxpulse.collector.store import open_store

    t0 = time.perf_counter()
    store = open_store(path)
    wrote = blocks = groups = 0
    try:
        for ids, since, until in spans:
            for aid in ids:
                rec = store.agent(aid)
                wrote += keep_recent(store, since, until, agent=rec.key)[0]
                for b in range(since - since % BLOCK_US, until - BLOCK_US + 1, BLOCK_US):
                    blocks += keep_blocks(store, b, rec.key)
        t1 = time.perf_counter()
        for _, since, until in sorted(spans, key=lambda s: s[1]):
            groups += keep_groups(store, since, until)  # minutes kept already are not written again
        groups_s = time.perf_counter() - t1
        sealed = asyncio.run(seal_once(store, now_us=seal_us, max_steps=10**6, pause_s=0)) if seal_us else None
    finally:
        store.close()
    took = time.perf_counter() - t0
    log(f"   kept: {wrote} minute scores, {blocks} block merges and {groups} minutes' groups in {took:.0f} s")
    if sealed is not None:
        log(f"   sealed: {sealed.rows} minute rollups and {sealed.kept} kept rows older than a day")
    return {
        "sealed_rollups": sealed.rows if sealed else 0,
        "sealed_kept": sealed.kept if sealed else 0,
        "minutes": wrote,
        "blocks": blocks,
        "group_minutes": groups,
        "groups_s": round(groups_s, 1),
        "keep_s": round(took, 1),
    }


# --- the server (child process) ------------------------------------------------------------------


def _serve(path: str, clock_us: int | None = None) -> None:
    """Child: the collector's HTTP server on the store; prints its URL, runs until stdin closes.
    ``clock_us``: its clock starts there and runs on (the store's data ends just before it, however
    long keeping the minutes took), so "the last hour" and the fleet's 15 minutes hold the data."""
    import asyncio

    from cxpulse.collector.lookup.http import start_http

    started_us = time.time_ns() // 1000

    def now_us() -> int:
        return time.time_ns() // 1000 - started_us + (clock_us if clock_us is not None else started_us)

    async def main() -> None:
        handle = await start_http(path, "127.0.0.1:0", now_us=now_us)
        print(handle.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await handle.stop()

    asyncio.run(main())


def _api_key(path: str) -> str | None:
    try:
        from cxpulse.collector.security.registry import Registry
    except ImportError:  # before the security helper's registry: the API has no keys
        return None
    reg = Registry.open(path)
    try:
        secret, _ = reg.create_api_key("helpdesk", "bench-lookup")
        return secret
    finally:
        reg.close()


# --- measuring -------------------------------------------------------------------------------------


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * len(xs) + 0.5) - 1))]


def run(plan: LookupPlan, log: Any = print, where: str | None = None) -> tuple[list[Figure], dict[str, Any]]:
    import httpx

    tmp = tempfile.mkdtemp(prefix="cxpulse-bench-lookup-", dir=where)
    path = os.path.join(tmp, "collector.sqlite")
    end_minute = (time.time_ns() // 1000) // MINUTE_US * MINUTE_US
    details: dict[str, Any] = {"plan": plan.__dict__, "errors": []}
    unkept: list[float] = []
    figures: list[Figure] = []
    child = None
    try:
        details["store"] = data = fill(path, plan, end_minute, log)
        day_ids = data["day_agents"][: plan.day_requests]
        cold_ids = data["day_agents"][plan.day_requests : 2 * plan.day_requests]
        rnd = random.Random(3)
        hour_ids = rnd.sample(data["agents"], min(plan.requests, len(data["agents"])))
        page_ids = rnd.sample(data["agents"], min(max(10, plan.requests // 4), len(data["agents"])))
        week_ids = data["week_agents"]
        details["kept"] = keep(
            path,
            [
                (hour_ids + page_ids, end_minute - plan.recent_minutes * MINUTE_US, end_minute),
                (day_ids, end_minute - 1440 * MINUTE_US, end_minute),
                (week_ids, end_minute - WEEK_MINUTES * MINUTE_US, end_minute),
            ],
            log,
            seal_us=end_minute,
        )
        key = _api_key(path)
        details["api_key"] = key is not None
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.lookup", "--serve", path, "--clock", str(end_minute + CLOCK_AFTER_US)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        url = child.stdout.readline().strip()
        clock_offset_s = (end_minute + CLOCK_AFTER_US) / S - time.time()  # the child's clock minus ours
        if not url.startswith("http"):
            raise RuntimeError(f"the HTTP server did not start (exit {child.poll()})")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as c:

            def get(u: str, timeout: float = 120) -> tuple[float, dict | str]:
                t = time.perf_counter()
                r = c.get(u, timeout=timeout)
                dt_ms = (time.perf_counter() - t) * 1000
                if r.status_code != 200:
                    raise RuntimeError(f"GET {u}: HTTP {r.status_code}: {r.text[:200]}")
                return dt_ms, (r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text)

            get(f"/api/v1/agents/{data['agents'][0]}?window=1h&timeline=false")  # warm: imports, first connection
            one_h, cpu0 = [], _child_cpu(child.pid)
            for aid in hour_ids:
                ms, body = get(f"/api/v1/agents/{urllib.parse.quote(aid)}?window=1h&timeline=false")
                if body["agent"]["score"]["window"]["score"] is None:
                    raise RuntimeError(f"{aid}: no score in the 1 h view")
                one_h.append(ms)
            cpu_1h = (_child_cpu(child.pid) - cpu0) / len(one_h) * 1000
            figures.append(_fig("agent API 1 h p50", _pct(one_h, 50), None, load_now(), f"{len(one_h)} agents"))
            figures.append(
                _fig(
                    "agent API 1 h p99",
                    _pct(one_h, 99),
                    API_P99_BUDGET_MS,
                    load_now(),
                    f"server CPU {cpu_1h:.1f} ms per request",
                )
            )
            page = []
            for aid in page_ids:
                now = time.time() + clock_offset_s
                since, until = int(now - 3600), int(now)
                a, _ = get("/")
                b, _ = get(f"/api/v1/agents/{aid}?since={since}&until={until}&timeline=false&tz=UTC")
                t, _ = get(f"/api/v1/agents/{aid}/timeline?since={since}&until={until}&points=800")
                page.append(a + b + t)
            figures.append(
                _fig("agent page 1 h p50", _pct(page, 50), None, load_now(), "HTML + view + timeline, in turn")
            )
            figures.append(_fig("agent page 1 h p99", _pct(page, 99), None, load_now(), f"{len(page)} agents"))

            def day_views(ids: list[str]) -> tuple[list[float], float]:
                took, cpu0 = [], _child_cpu(child.pid)
                for aid in ids:
                    ms, body = get(f"/api/v1/agents/{aid}?window=24h&timeline=false")
                    if body["agent"]["score"]["window"]["minutes"] < 1400:
                        raise RuntimeError(
                            f"{aid}: the 24 h view scored {body['agent']['score']['window']['minutes']} minutes"
                        )
                    took.append(ms)
                return took, (_child_cpu(child.pid) - cpu0) / max(1, len(took)) * 1000

            day, cpu_day = day_views(day_ids)
            if day:
                figures.append(
                    _fig(
                        "agent API 24 h p50",
                        _pct(day, 50),
                        None,
                        load_now(),
                        f"{len(day)} agents, each once, minute scores kept",
                    )
                )
                figures.append(
                    _fig(
                        "agent API 24 h p99",
                        _pct(day, 99),
                        DAY_P99_BUDGET_MS,
                        load_now(),
                        f"server CPU {cpu_day:.0f} ms per request",
                    )
                )
            week, cpu_week = [], 0.0
            if week_ids:
                cpu0 = _child_cpu(child.pid)
                for aid in week_ids:
                    ms, body = get(f"/api/v1/agents/{aid}?window=7d&timeline=false")
                    if body["agent"]["score"]["window"]["minutes"] < WEEK_MINUTES - 60:
                        raise RuntimeError(
                            f"{aid}: the 7 d view scored {body['agent']['score']['window']['minutes']} minutes"
                        )
                    week.append(ms)
                cpu_week = (_child_cpu(child.pid) - cpu0) / len(week) * 1000
                figures.append(
                    _fig(
                        "agent API 7 d p99",
                        _pct(week, 99),
                        WEEK_P99_BUDGET_MS,
                        load_now(),
                        f"{len(week)} agents, each once, older than a day sealed; server CPU {cpu_week:.0f} ms "
                        f"per request; p50 {_pct(week, 50):.0f} ms",
                    )
                )
            unkept, cpu_cold = day_views(cold_ids)
            if unkept:
                figures.append(
                    _fig(
                        "agent API 24 h p99, nothing kept",
                        _pct(unkept, 99),
                        None,
                        load_now(),
                        f"{len(unkept)} other agents: every minute scored; server CPU {cpu_cold:.0f} ms per request",
                    )
                )
            if plan.fleet:
                cold, body = get(
                    "/api/v1/fleet?window=15m&limit=25", timeout=900
                )  # scores every agent: minutes at 10,000
                if body["agents_active"] < plan.agents:
                    raise RuntimeError(f"the fleet saw {body['agents_active']} of {plan.agents} agents active")
                warm, _ = get("/api/v1/fleet?window=15m&limit=25")
                figures.append(
                    _fig(
                        "fleet 15 min, computed",
                        cold,
                        None,
                        load_now(),
                        f"{body['agents_active']} active agents, most minute scores not kept",
                    )
                )
                figures.append(
                    _fig("fleet 15 min, cached", warm, API_P99_BUDGET_MS, load_now(), "repeat within the cache TTL")
                )
                time.sleep(FLEET_TTL_S + 1)  # the computation kept every agent's minutes, as the collector's loop does
                again, _ = get("/api/v1/fleet?window=15m&limit=25", timeout=900)
                figures.append(
                    _fig(
                        "fleet 15 min, computed, minutes kept",
                        again,
                        None,
                        load_now(),
                        "after the cache expired; what the alert loop pays each minute",
                    )
                )
        details["samples_ms"] = {
            "api_1h": [round(x, 2) for x in one_h],
            "page_1h": [round(x, 2) for x in page],
            "api_24h": [round(x, 1) for x in day],
            "api_24h_unkept": [round(x, 1) for x in unkept],
            "api_7d": [round(x, 1) for x in week],
        }
    finally:
        if child is not None:
            try:
                child.stdin.close()
                child.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                child.kill()
                child.wait(5)
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)
    return figures, details


def _child_cpu(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _fig(name: str, value: float, budget: float | None, load, note: str) -> Figure:
    return Figure(GROUP, name, "ms", round(value, 2), budget, "<=", load=load, note=note)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.lookup", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--agents", type=int, help="agents in the store (default: the plan's)")
    ap.add_argument("--serve", metavar="DB", help=argparse.SUPPRESS)
    ap.add_argument("--clock", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.clock)
        return 0
    plan = PLANS["quick" if args.quick else "smoke" if args.smoke else "full"]
    if args.agents:
        plan = LookupPlan(
            args.agents,
            min(plan.day_agents, args.agents),
            plan.recent_minutes,
            plan.requests,
            plan.day_requests,
            plan.fleet,
        )
    figures, details = run(plan)
    print(table(figures))
    for f in figures:
        if f.note:
            print(f"  {f.name}: {f.note}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"figures": [f.__dict__ for f in figures], "details": details}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
