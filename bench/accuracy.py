"""Accuracy and detection: what the agent reports against the configured truth, ping and blackbox.

The path is desk -> gw -> isp -> app with the project's impairment bridge on gw-isp
(``tests/impair.py``): steady delay, jitter and loss, then spikes and outages of 1-10 s at known
times (the bridge logs when each really began and ended). Three observers watch the app host
for the same minutes:

* the agent at its default cadence (1 Hz, detector on), streaming to a collector on the app
  host; its samples and events are read back from the collector's database;
* iputils ``ping -i 1 -D -O`` (every reply with its time, every missing reply reported);
* blackbox_exporter's ICMP probe asked every 15 s, as a Prometheus scrape interval would: what
  its ``probe_success`` and RTT series would show.

Steady figures (median RTT, mean |dRTT|, loss) use calm time only (away from every episode).
Detection: an episode is caught by the agent when an RTT event (spike, loss burst, outage) on a
target beyond the bridge overlaps it; by blackbox when a scrape inside it failed or saw the
extra delay; ping "shows" it when a reply inside it was missing or late (ping raises no alarm:
this is what a person reading its output could have seen). False alarms are events, or failed
scrapes, in calm time.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import blackbox
from .footprint import REPO, _wait_file, require_ping
from .report import Figure, load_now


def enroll_token(db: Path) -> str:
    """A one-use enrollment token in the collector's database: the agent enrolls as a desk does."""
    from cxpulse.collector.security.registry import Registry

    reg = Registry.open(str(db))
    try:
        return reg.create_token(uses=1, ttl_s=3600, note="bench")[0]
    finally:
        reg.close()


PY = sys.executable
COLLECTOR_PORT = 50051
SPIKE_EXTRA_MS = 150.0
RTT_EVENTS = ("latency_spike", "loss_burst", "outage", "jitter_episode")


@dataclass(frozen=True)
class AccuracyPlan:
    warmup_s: float
    gap_s: float
    episodes: tuple[tuple[str, float], ...]  # (kind "spike"|"outage", seconds)
    delay_ms: float = 10.0
    jitter_ms: float = 2.0
    loss: float = 0.01  # per direction
    scrape_s: float = 15.0


PLANS = {
    "full": AccuracyPlan(45, 30, tuple((k, d) for d in (1, 2, 3, 5, 10) for k in ("spike", "outage"))),
    "quick": AccuracyPlan(30, 20, (("spike", 5), ("outage", 5))),
    "smoke": AccuracyPlan(20, 8, (("outage", 4),)),
}


def expected_mean_abs_diff_ms(jitter_ms: float, n: int = 100_000) -> float:
    """E|RTT(i) - RTT(i-1)| when each direction adds its own uniform(-j, +j) delay (Monte Carlo)."""
    rnd = random.Random(3)
    rtt = [rnd.uniform(-jitter_ms, jitter_ms) + rnd.uniform(-jitter_ms, jitter_ms) for _ in range(n + 1)]
    return statistics.fmean(abs(b - a) for a, b in itertools.pairwise(rtt))


def _parse_ping(text: str) -> list[tuple[float, float | None]]:
    """``ping -D -O`` lines -> (unix time, RTT ms or None for a reply that never came), by seq."""
    by_seq: dict[int, tuple[float, float | None]] = {}
    for line in text.splitlines():
        m = re.match(r"\[(\d+\.\d+)\] .*icmp_seq=(\d+)", line)
        if not m:
            continue
        ts, seq = float(m.group(1)), int(m.group(2))
        rtt = re.search(r"time=([\d.]+) ms", line)
        if rtt:
            by_seq[seq] = (ts, float(rtt.group(1)))
        elif "no answer yet" in line:
            by_seq.setdefault(seq, (ts - 1.0, None))  # reported a timeout after sending
    return [by_seq[s] for s in sorted(by_seq)]


def _steady(samples: list[tuple[float, float | None]], calm: Any) -> dict[str, float | int | None]:
    """Median RTT, mean |dRTT| over consecutive answered samples, loss %: calm time only."""
    kept = [(t, r) for t, r in samples if calm(t)]
    answered = [r for _, r in kept if r is not None]
    diffs = [abs(b - a) for (ta, a), (tb, b) in itertools.pairwise(kept) if a is not None and b is not None]
    return {
        "samples": len(kept),
        "rtt_median_ms": round(statistics.median(answered), 3) if answered else None,
        "mean_abs_drtt_ms": round(statistics.fmean(diffs), 3) if diffs else None,
        "loss_pct": round(100 * (len(kept) - len(answered)) / len(kept), 2) if kept else None,
    }


def _agent_data(db: Path) -> tuple[dict[str, list[tuple[float, float | None]]], list[dict]]:
    from tests import stored

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        series: dict[str, list[tuple[float, float | None]]] = {}
        for target, _method, ts, rtt in sorted(stored.rtt_samples(db), key=lambda r: r[2]):
            series.setdefault(target, []).append((ts / 1e6, None if rtt is None else rtt / 1000))
        events = [
            {"kind": k, "target": tg, "start": s / 1e6, "end": (e / 1e6) if e is not None else None}
            for k, tg, s, e in con.execute("SELECT kind, target, start_us, end_us FROM events")
        ]
        return series, events
    finally:
        con.close()


def run(plan: AccuracyPlan, log: Any = print) -> tuple[list[Figure], dict[str, Any]]:
    from tests.impair import Config, Episode, Impairment
    from tests.netns import netns_available
    from tests.paths import NetPath

    ok, why = netns_available()
    if not ok:
        raise RuntimeError(f"accuracy needs network namespaces: {why}")
    bb_binary = blackbox.find_binary()
    require_ping()
    with (
        tempfile.TemporaryDirectory(prefix="cxpulse-bench-acc-") as tmp_s,
        NetPath(tmp_s, impair_at="gw-isp", config=Config(seed=5), prefix=24) as path,
    ):
        tmp = Path(tmp_s)
        app_ip = path.hops.app
        isp_app = path.links["isp-app"]
        collector_ip = str(isp_app.network.network_address + 3)
        path.app.ip("addr", "add", f"{collector_ip}/24", "dev", isp_app.b_if)
        steady = Impairment(delay_ms=plan.delay_ms, jitter_ms=plan.jitter_ms, loss=plan.loss)
        path.bridge.update(both=steady)
        logs = {n: open(tmp / f"{n}.log", "wb") for n in ("collector", "agent", "blackbox", "driver", "ping")}
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            db, ready = tmp / "collector.sqlite", tmp / "collector.ready"
            collector = path.app.spawn(
                PY,
                "-m",
                "cxpulse",
                "collector",
                "serve",
                "--listen",
                f"{collector_ip}:{COLLECTOR_PORT}",
                "--db",
                str(db),
                "--ready-file",
                str(ready),
                "--insecure",
                cwd=REPO,
                env=env,
                stdout=logs["collector"],
                stderr=subprocess.STDOUT,
            )
            _wait_file(ready, 30, collector)
            toml = tmp / "agent.toml"
            toml.write_text(
                f'collector = "{collector_ip}:{COLLECTOR_PORT}"\nstate_dir = "{tmp / "agent-state"}"\n'
                f'insecure = true\nenroll_token = "{enroll_token(db)}"\n'  # namespaces of our own
                f'user = "bench.accuracy"\n[[targets]]\nname = "app"\nhost = "{app_ip}"\nport = 443\n'
            )
            agent = path.desk.spawn(
                PY,
                "-m",
                "cxpulse",
                "agent",
                "run",
                "--config",
                str(toml),
                cwd=REPO,
                env=env,
                stdout=logs["agent"],
                stderr=subprocess.STDOUT,
            )
            ping = path.desk.spawn(
                "ping", "-D", "-O", "-n", "-i", "1", "-W", "1", app_ip, stdout=logs["ping"], stderr=subprocess.STDOUT
            )
            total = plan.warmup_s + sum(d + plan.gap_s + 1 for _, d in plan.episodes) + 10
            driver = None
            if bb_binary:
                cfg = blackbox.write_config(tmp / "blackbox.yml", "/dev/null")
                path.desk.spawn(
                    bb_binary,
                    f"--config.file={cfg}",
                    f"--web.listen-address={blackbox.LISTEN}",
                    "--log.level=warn",
                    stdout=logs["blackbox"],
                    stderr=subprocess.STDOUT,
                )
                time.sleep(1.0)
                driver_out = tmp / "driver.json"
                driver = path.desk.spawn(
                    PY,
                    "-m",
                    "bench.blackbox",
                    "drive",
                    "--probe",
                    f"icmp,{app_ip},{plan.scrape_s}",
                    "--series",
                    "--duration",
                    str(total + 30),
                    "--out",
                    str(driver_out),
                    cwd=REPO,
                    env=env,
                    stdout=logs["driver"],
                    stderr=subprocess.STDOUT,
                )
            log(
                f"  accuracy: warm-up {plan.warmup_s:.0f} s, then {len(plan.episodes)} episodes "
                f"({plan.gap_s:.0f} s apart) on gw-isp: delay {plan.delay_ms} ms, jitter +-{plan.jitter_ms} ms, "
                f"loss {plan.loss:.0%} each way (load {load_now()[0]:.2f})"
            )
            # Calm time starts 15 s into the warm-up: by then the agent has its first trace and a
            # baseline (10 samples), and every observer has been running for a while.
            t_begin = time.time() + min(15.0, plan.warmup_s)
            time.sleep(plan.warmup_s)
            at = path.bridge.now() + 1.0
            episodes = []
            for n, (kind, secs) in enumerate(plan.episodes):
                name = f"{kind}-{secs:g}s-{n}"
                episodes.append(
                    Episode.spike(name, at, secs, SPIKE_EXTRA_MS) if kind == "spike" else Episode.outage(name, at, secs)
                )
                # Whole-second spacing put every episode at the same phase of the agent's 1 Hz probes
                # (0.88 s late in each, one run): a golden-ratio step spreads them over the second.
                at += secs + plan.gap_s + ((n + 1) * 0.618) % 1.0
            path.bridge.schedule(*episodes)
            records = path.bridge.wait_episodes(timeout=at - path.bridge.now() + 30)
            time.sleep(min(plan.gap_s, 10))  # events close, batches reach the collector
            t_end = time.time()
            load_end = load_now()
            bb = None
            if driver is not None:
                driver.send_signal(signal.SIGTERM)
                try:
                    driver.wait(20)
                    bb = json.loads(driver_out.read_text())["targets"][0]
                except (subprocess.TimeoutExpired, OSError, ValueError):
                    bb = None
            for p in (ping, agent):
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
            collector.send_signal(signal.SIGTERM)
            try:
                collector.wait(20)
            except subprocess.TimeoutExpired:
                collector.kill()
            series, events = _agent_data(db)
            ping_samples = _parse_ping((tmp / "ping.log").read_text())
        finally:
            for f in logs.values():
                f.close()
        truth = [
            {
                "name": r.name,
                "kind": "outage" if r.loss >= 1 else "spike",
                "start": r.start_wall_us / 1e6,
                "end": r.end_wall_us / 1e6,
            }
            for r in records
        ]
    return _evaluate(plan, truth, series, events, ping_samples, bb, (t_begin, t_end), load_end, app_ip)


def _evaluate(
    plan: AccuracyPlan,
    truth: list[dict],
    series: dict,
    events: list[dict],
    ping: list,
    bb: dict | None,
    span: tuple[float, float],
    load: tuple[float, float, float],
    app_ip: str,
) -> tuple[list[Figure], dict]:
    def calm(t: float) -> bool:
        return span[0] <= t < span[1] and not any(e["start"] - 2 <= t < e["end"] + 4 for e in truth)

    def during(e: dict, t: float, pad: float = 0.0) -> bool:
        return e["start"] - pad <= t < e["end"] + pad

    agent_app = series.get("app", [])
    truth_steady = {
        "rtt_median_ms": 2 * plan.delay_ms,
        "mean_abs_drtt_ms": round(expected_mean_abs_diff_ms(plan.jitter_ms), 3),
        "loss_pct": round(100 * (1 - (1 - plan.loss) ** 2), 2),
    }
    steady = {"configured": truth_steady, "agent": _steady(agent_app, calm), "ping": _steady(ping, calm)}
    bb_series = [(t, ok, None if rtt is None else rtt * 1000) for t, ok, rtt in (bb or {}).get("series", [])]
    if bb_series:
        steady["blackbox_15s"] = _steady([(t, r if ok else None) for t, ok, r in bb_series], calm)

    beyond = {t for t in series if t not in ("gateway",)}
    rtt_events = [e for e in events if e["kind"] in RTT_EVENTS]
    per_episode = []
    base = steady["agent"]["rtt_median_ms"] or 2 * plan.delay_ms
    for e in truth:
        caught = [
            x
            for x in rtt_events
            if x["target"] in beyond and x["start"] < e["end"] + 3 and (x["end"] is None or x["end"] >= e["start"] - 1)
        ]
        wrong_hop = [x for x in rtt_events if x["target"] == "gateway" and during(e, x["start"], 3)]
        late = [r for t, r in ping if during(e, t) and (r is None or r > base + SPIKE_EXTRA_MS / 2)]
        scrapes = [(t, ok, r) for t, ok, r in bb_series if during(e, t)]
        bb_seen = any(not ok or (r is not None and r > base + SPIKE_EXTRA_MS / 2) for _, ok, r in scrapes)
        per_episode.append(
            {
                "name": e["name"],
                "kind": e["kind"],
                "seconds": round(e["end"] - e["start"], 2),
                "agent_caught": bool(caught),
                "agent_kinds": sorted({x["kind"] for x in caught}),
                "agent_delay_s": round(min(x["start"] for x in caught) - e["start"], 2) if caught else None,
                "agent_events_at_gateway": len(wrong_hop),
                "ping_showed": bool(late),
                "blackbox_scrapes_inside": len(scrapes),
                "blackbox_showed": bb_seen,
            }
        )
    calm_s = sum(1 for t, _ in agent_app if calm(t))  # 1 Hz: calm seconds
    false_agent = [x for x in rtt_events if calm(x["start"]) and span[0] <= x["start"] < span[1]]
    false_bb = [s for s in bb_series if calm(s[0]) and not s[1]]
    n = len(truth) or 1
    recall = {
        "agent": sum(p["agent_caught"] for p in per_episode) / n,
        "ping_visible": sum(p["ping_showed"] for p in per_episode) / n,
        "blackbox_15s": sum(p["blackbox_showed"] for p in per_episode) / n if bb_series else None,
    }
    by_len: dict[str, dict[str, int]] = {}
    for p in per_episode:
        k = f"{p['kind']} {p['seconds']:.0f}s"
        by_len.setdefault(k, {"n": 0, "agent": 0, "blackbox": 0})
        by_len[k]["n"] += 1
        by_len[k]["agent"] += p["agent_caught"]
        by_len[k]["blackbox"] += p["blackbox_showed"]
    details = {
        "plan": plan.__dict__,
        "app": app_ip,
        "steady": steady,
        "episodes": per_episode,
        "recall": recall,
        "recall_by_kind_and_length": by_len,
        "calm_seconds": calm_s,
        "false_alarms": {"agent_events": false_agent, "blackbox_failed_scrapes": len(false_bb)},
        "all_agent_events": events,
        "load_end": load,
    }
    a, pg = steady["agent"], steady["ping"]
    hours = calm_s / 3600 or 1
    figs = [
        Figure(
            "accuracy",
            "median RTT (calm)",
            "ms",
            a["rtt_median_ms"],
            peer="ping",
            peer_value=pg["rtt_median_ms"],
            load=load,
            note=f"configured {truth_steady['rtt_median_ms']} ms + the path's own",
        ),
        Figure(
            "accuracy",
            "mean |dRTT| (calm)",
            "ms",
            a["mean_abs_drtt_ms"],
            peer="ping",
            peer_value=pg["mean_abs_drtt_ms"],
            load=load,
            note=f"configured {truth_steady['mean_abs_drtt_ms']} ms",
        ),
        Figure(
            "accuracy",
            "loss (calm)",
            "%",
            a["loss_pct"],
            peer="ping",
            peer_value=pg["loss_pct"],
            load=load,
            note=f"configured {truth_steady['loss_pct']}% (binomial noise on {a['samples']} samples)",
        ),
        Figure(
            "accuracy",
            "episodes caught",
            "share",
            round(recall["agent"], 3),
            peer="blackbox ICMP /15 s",
            peer_value=round(recall["blackbox_15s"], 3) if recall["blackbox_15s"] is not None else None,
            load=load,
            note=f"{len(truth)} episodes of 1-10 s; ping shows {recall['ping_visible']:.0%} (no alarm); "
            "agent: 3 of 5 samples, 1 Hz plus follow-ups every 0.1 s after a lost or late probe",
        ),
        Figure(
            "accuracy",
            "false alarms per calm hour",
            "/h",
            round(len(false_agent) / hours, 1),
            peer="blackbox failed scrapes",
            peer_value=round(len(false_bb) / hours, 1),
            load=load,
            note=f"over {calm_s} calm seconds",
        ),
    ]
    figs[-1].ratio = None  # a ratio of two alarm rates says nothing
    return figs, details
