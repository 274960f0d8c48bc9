"""Agent footprint at the default configuration, beside blackbox_exporter and ping, on one path.

Why a namespace path and not loopback: the default configuration measures the gateway and the
hops a path trace finds, and only a routed path (desk -> gw -> isp -> app, ``tests/paths.py``)
gives the agent real hops to trace and probe, so the trace child and the hop probes cost what
they cost on a desk. Everything runs at once on the same path for the same minutes:

* app host: the collector (gRPC on an address of its own, so its traffic can be counted apart;
  voice reflector on the app address; five apps pushed with ``--app``) and five local apps
  (four HTTPS with a throw-away CA, one plain HTTP);
* desk: the agent (default TOML plus one target, the app host; Wi-Fi replayed from recorded
  ``iw`` outputs every 5 s, since there is no radio), blackbox_exporter with a driver asking
  for the same probes at the same cadence, and three iputils ``ping -i 1``;
* nftables counters in the desk namespace count the bytes to the collector's address and port.

RTT at 1 Hz goes to the gateway, the ISP hop (found by the trace) and the app host: "gateway and
2 hops". The first public hop the agent would also probe does not exist here: every address is
private, and no test traffic may leave the namespaces.
"""

from __future__ import annotations

import functools
import json
import operator
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import blackbox
from .netcount import CollectorCounter, per_hour
from .procstat import Tracker
from .report import Figure, load_now

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
WIFI_FIXTURE = REPO / "tests" / "agent" / "wifi" / "fixtures" / "iw" / "link-he-5220-coworking.txt"
COLLECTOR_PORT = 50051
RSS_BUDGET_MIB = 40.0
CPU_BUDGET_PCT = 0.15
UPLOAD_BUDGET_KBIT_S = 0.5
TRACE_INTERVAL_S = 900.0  # the default trace_interval_s: traces per hour = 3600 / this


@dataclass(frozen=True)
class FootprintPlan:
    warmup_s: float
    window_s: float
    sample_every_s: float = 5.0
    peers: bool = True
    tls: bool = True  # the agent's stream as deployed: TLS 1.3 + enrollment (False: --insecure, for comparison)


PLANS = {
    "full": FootprintPlan(warmup_s=60, window_s=600),
    "quick": FootprintPlan(warmup_s=15, window_s=75),
    "smoke": FootprintPlan(warmup_s=8, window_s=26, sample_every_s=2),  # the window holds the first 30 s batch
}


def _wifi_replay(path: Path, readings: int) -> None:
    """A steady link with the signal wandering a few dB: readings a desk on a good AP gives."""
    text = WIFI_FIXTURE.read_text()
    with open(path, "w") as f:
        for i in range(readings):
            sig = -39 - (i * 7) % 6
            f.write(json.dumps({"text": text.replace("signal: -39 dBm", f"signal: {sig} dBm")}) + "\n")


def _agent_toml(path: Path, collector: str, state: Path, app_ip: str, ca_file: Path, security: str = "") -> None:
    """The default configuration (every cadence left at its default), pointed at this path."""
    path.write_text(
        security + f'collector = "{collector}"\n'
        f'state_dir = "{state}"\n'
        'site = "bench"\n'
        'user = "bench.user"\n'
        f'app_ca_file = "{ca_file}"\n'
        "[[targets]]\n"
        'name = "ccaas-edge"\n'
        f'host = "{app_ip}"\n'
        "port = 443\n"
    )


def _collector_security(tmp: Path, db: Path, collector_ip: str, tls: bool) -> tuple[str, list[str]]:
    """(agent TOML lines, collector flags): a CA and server certificate for the collector's address
    and an enrollment token, as an installed desk has them; or plain text for comparison."""
    if not tls:
        return "insecure = true\n", ["--insecure"]
    from cxpulse.collector.security.registry import Registry
    from cxpulse.collector.security.tls import init_dir

    init_dir(tmp / "tls", ["collector.bench.test"], [collector_ip])
    reg = Registry.open(str(db))
    try:
        token = reg.create_token(uses=10, note="bench")[0]
    finally:
        reg.close()
    return (f'ca_file = "{tmp / "tls" / "ca.pem"}"\nenroll_token = "{token}"\n', ["--tls-dir", str(tmp / "tls")])


def _wait_file(path: Path, timeout: float, proc: subprocess.Popen | None = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode} before it was ready")
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout}s waiting for {path}")


def _stored(db: Path, window: tuple[float, float]) -> dict[str, Any]:
    """What reached the collector: samples per kind and target, and when the traces ran."""
    from tests import stored

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        out: dict[str, Any] = {"series": {}}
        for kind in ("rtt", "http", "voice", "device", "wifi"):
            for (target, *_), _ts, _row in stored.in_store_order(db, kind):
                out["series"][f"{kind}:{target}"] = out["series"].get(f"{kind}:{target}", 0) + 1
        ts = [r[0] / 1e6 for r in con.execute("SELECT ts_us FROM paths ORDER BY ts_us")]
        out["traces_before_window"] = sum(1 for t in ts if t < window[0])
        out["traces_in_window"] = sum(1 for t in ts if window[0] <= t < window[1])
        out["events"] = con.execute("SELECT count(*) FROM events").fetchone()[0]
        return out
    finally:
        con.close()


def require_ping() -> None:
    """iputils ping is a peer in the table: without it the run would print its CPU as 0, not missing."""
    if shutil.which("ping") is None:
        raise RuntimeError("the ping peer needs iputils ping (apt-get install iputils-ping)")


def run(
    plan: FootprintPlan, log: Any = print, on_window: Callable[[int, float], subprocess.Popen | None] | None = None
) -> tuple[list[Figure], dict[str, Any]]:
    """Build the path, start everything, warm up, measure ``plan.window_s``; ``on_window`` may
    attach a profiler to the agent's pid for the window (see ``bench.profile``)."""
    from tests.agent.https_lab import make_pki
    from tests.netns import netns_available
    from tests.paths import NetPath

    ok, why = netns_available()
    if not ok:
        raise RuntimeError(f"agent footprint needs network namespaces: {why}")
    bb_binary = blackbox.find_binary() if plan.peers else None
    if plan.peers:
        require_ping()
    with tempfile.TemporaryDirectory(prefix="cxpulse-bench-fp-") as tmp_s, NetPath(tmp_s, prefix=24) as path:
        tmp = Path(tmp_s)
        app_ip = path.hops.app
        isp_app = path.links["isp-app"]
        collector_ip = str(isp_app.network.network_address + 3)
        path.app.ip("addr", "add", f"{collector_ip}/24", "dev", isp_app.b_if)
        desk_if = path.links["desk-gw"].a_if
        pki = make_pki(tmp / "pki", ["app.bench.test"], [app_ip])
        logs = {n: open(tmp / f"{n}.log", "wb") for n in ("apps", "collector", "agent", "blackbox", "driver", "ping")}
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            ready = tmp / "apps.ready"
            apps_proc = path.app.spawn(
                PY,
                "-m",
                "bench.appserver",
                "--host",
                app_ip,
                "--https-port",
                "443",
                "--https-port",
                "8444",
                "--https-port",
                "8445",
                "--https-port",
                "8446",
                "--http-port",
                "8080",
                "--cert",
                str(pki.cert),
                "--key",
                str(pki.key),
                "--ready",
                str(ready),
                cwd=REPO,
                env=env,
                stdout=logs["apps"],
                stderr=subprocess.STDOUT,
            )
            _wait_file(ready, 20, apps_proc)
            apps = [
                ("crm", f"https://{app_ip}/"),
                ("ccaas", f"https://{app_ip}:8444/sleep/20"),
                ("idp", f"https://{app_ip}:8445/sleep/40"),
                ("wfm", f"https://{app_ip}:8446/"),
                ("kb", f"http://{app_ip}:8080/"),
            ]
            db = tmp / "collector.sqlite"
            c_ready = tmp / "collector.ready"
            security, tls_args = _collector_security(tmp, db, collector_ip, plan.tls)
            argv = [
                PY,
                "-m",
                "cxpulse",
                "collector",
                "serve",
                "--listen",
                f"{collector_ip}:{COLLECTOR_PORT}",
                "--db",
                str(db),
                "--reflector",
                f"{app_ip}:50052",
                "--ready-file",
                str(c_ready),
                *tls_args,
            ]
            for name, url in apps:
                argv += ["--app", f"{name}={url}"]
            collector = path.app.spawn(*argv, cwd=REPO, env=env, stdout=logs["collector"], stderr=subprocess.STDOUT)
            _wait_file(c_ready, 30, collector)
            counter = CollectorCounter(path.desk, collector_ip, COLLECTOR_PORT, desk_if)

            replay = tmp / "wifi.jsonl"
            _wifi_replay(replay, int((plan.warmup_s + plan.window_s) / 5) + 60)
            toml = tmp / "agent.toml"
            _agent_toml(toml, f"{collector_ip}:{COLLECTOR_PORT}", tmp / "agent-state", app_ip, pki.ca_cert, security)
            agent = path.desk.spawn(
                PY,
                "-m",
                "cxpulse",
                "agent",
                "run",
                "--config",
                str(toml),
                cwd=REPO,
                env=dict(env, CXPULSE_WIFI_REPLAY=str(replay)),
                stdout=logs["agent"],
                stderr=subprocess.STDOUT,
            )
            trackers = {"agent": Tracker("agent", [agent.pid])}
            hops = [path.hops.gateway, path.hops.isp, app_ip]
            driver = None
            if bb_binary:
                cfg = blackbox.write_config(tmp / "blackbox.yml", str(pki.ca_cert))
                bb = path.desk.spawn(
                    bb_binary,
                    f"--config.file={cfg}",
                    f"--web.listen-address={blackbox.LISTEN}",
                    "--log.level=warn",
                    stdout=logs["blackbox"],
                    stderr=subprocess.STDOUT,
                )
                trackers["blackbox_exporter"] = Tracker("blackbox_exporter", [bb.pid])
                probes = [f"icmp,{h},1" for h in hops] + [f"http_2xx,{u},30" for _, u in apps]
                driver_out = tmp / "driver.json"
                time.sleep(1.0)  # the exporter listens within milliseconds; the driver retries anyway
                driver = path.desk.spawn(
                    PY,
                    "-m",
                    "bench.blackbox",
                    "drive",
                    *functools.reduce(operator.iadd, (["--probe", p] for p in probes), []),
                    "--duration",
                    str(plan.warmup_s + plan.window_s + 30),
                    "--out",
                    str(driver_out),
                    cwd=REPO,
                    env=env,
                    stdout=logs["driver"],
                    stderr=subprocess.STDOUT,
                )
            if plan.peers:
                pings = [
                    path.desk.spawn(
                        "ping", "-n", "-q", "-i", "1", "-W", "1", h, stdout=logs["ping"], stderr=subprocess.STDOUT
                    )
                    for h in hops
                ]
                trackers["ping x3"] = Tracker("ping x3", [p.pid for p in pings])

            log(f"  footprint: warm-up {plan.warmup_s:.0f} s (agent start, first trace, first app checks)")
            time.sleep(plan.warmup_s)
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited during warm-up:\n{(tmp / 'agent.log').read_text()[-2000:]}")
            own_at_start, reaped_at_start = _agent_cpu_split(agent.pid)
            for t in trackers.values():
                t.mark_start()
            c0, t0, load0 = counter.read(), time.time(), load_now()
            loads = [load0]
            log(f"  footprint: measuring {plan.window_s:.0f} s (load {load0[0]:.2f})")
            profiler = on_window(agent.pid, plan.window_s) if on_window is not None else None
            end = time.monotonic() + plan.window_s
            while (left := end - time.monotonic()) > 0:
                for t in trackers.values():
                    t.sample()
                loads.append(load_now())
                time.sleep(min(plan.sample_every_s, left))
            for t in trackers.values():
                t.sample()
                t.mark_end()
            c1, t1 = counter.read(), time.time()
            if profiler is not None:
                profiler.wait(60)
            window = t1 - t0
            loads.append(load_now())
            stats = {name: t.summary(window) for name, t in trackers.items()}
            stats["agent"]["cpu_s_own_before_window"] = round(own_at_start, 3)  # start-up imports + warm-up
            bb_result = None
            if driver is not None:
                driver.send_signal(signal.SIGTERM)
                try:
                    driver.wait(20)
                    bb_result = json.loads(driver_out.read_text())
                except (subprocess.TimeoutExpired, OSError, ValueError):
                    bb_result = None
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(20)
            except subprocess.TimeoutExpired:
                agent.kill()
            last_run = _read_json(tmp / "agent-state" / "last_run.json")
            collector.send_signal(signal.SIGTERM)
            try:
                collector.wait(20)
            except subprocess.TimeoutExpired:
                collector.kill()
            stored = _stored(db, (t0, t1))
        finally:
            for f in logs.values():
                f.close()

        up = per_hour(c1.minus(c0), window)
        traces_before = max(1, stored["traces_before_window"])
        trace_cpu = reaped_at_start / traces_before
        a = stats["agent"]
        amortized = 0.0 if stored["traces_in_window"] else trace_cpu * 3600 / TRACE_INTERVAL_S
        cpu_h_total = (a["cpu_s_per_hour"] or 0.0) + amortized
        details: dict[str, Any] = {
            "plan": plan.__dict__,
            "window_s": round(window, 1),
            "load_during": _load_summary(loads),
            "processes": stats,
            "upload": up,
            "tls": plan.tls,
            "upload_counting": "nftables counters in the desk "
            "namespace on ip daddr <collector address> tcp dport 50051 (IP packet bytes; Ethernet adds 18 B/frame; "
            "the TLS estimate, for plain-text runs only, adds 22 B per data packet)",
            "trace_cpu_s_each": round(trace_cpu, 3),
            "trace_cpu_amortized_s_per_hour": round(amortized, 2),
            "agent_cpu_s_per_hour_incl_traces": round(cpu_h_total, 2),
            "stored": stored,
            "agent_run_summary": last_run,
            "blackbox_driver": bb_result,
            "addresses": {"gateway": path.hops.gateway, "isp": path.hops.isp, "app": app_ip, "collector": collector_ip},
        }
    figures = _figures(details, loads)
    return figures, details


def _agent_cpu_split(pid: int) -> tuple[float, float]:
    """(own CPU so far, CPU of reaped children so far): before the window, the children are traces."""
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system, t.children_user + t.children_system


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _load_summary(loads: list[tuple[float, float, float]]) -> dict[str, float]:
    one = [x[0] for x in loads]
    return {"load1_min": min(one), "load1_mean": round(sum(one) / len(one), 2), "load1_max": max(one)}


def _figures(d: dict[str, Any], loads: list[tuple[float, float, float]]) -> list[Figure]:
    p = d["processes"]
    a, bb, pg = p["agent"], p.get("blackbox_exporter"), p.get("ping x3")
    load = (round(sum(x[0] for x in loads) / len(loads), 2), loads[-1][1], loads[-1][2])
    cpu_pct = d["agent_cpu_s_per_hour_incl_traces"] / 36
    bb_kbit = None
    if d.get("blackbox_driver"):
        total = sum(t["bytes"] for t in d["blackbox_driver"]["targets"])
        bb_kbit = total * 8 / d["blackbox_driver"]["elapsed_s"] / 1000
    up = d["upload"]
    tls = d.get("tls", False)
    figs = [
        Figure(
            "agent",
            f"upload, IP bytes ({'TLS' if tls else 'plain'} gRPC)",
            "kbit/s",
            up["up_kbit_s_ip"],
            UPLOAD_BUDGET_KBIT_S,
            "<=",
            "blackbox scrape bytes",
            round(bb_kbit, 4) if bb_kbit is not None else None,
            load,
            "nftables counter on the collector's address and port",
        ),
    ]
    if tls:
        figs.append(
            Figure(
                "agent",
                "upload, Ethernet frames (TLS gRPC)",
                "kbit/s",
                up["up_kbit_s_ethernet"],
                UPLOAD_BUDGET_KBIT_S,
                "<=",
                "",
                None,
                load,
                "+18 B/frame",
            )
        )
    else:
        figs.append(
            Figure(
                "agent",
                "upload, Ethernet + TLS 1.3 estimate",
                "kbit/s",
                round(up["up_kbit_s_ethernet"] + up["up_kbit_s_tls_estimate"] - up["up_kbit_s_ip"], 4),
                UPLOAD_BUDGET_KBIT_S,
                "<=",
                "",
                None,
                load,
                "+18 B/frame, +22 B/data packet",
            )
        )
    return [
        Figure(
            "agent",
            "steady-state RSS",
            "MiB",
            a["rss_median_mb"],
            RSS_BUDGET_MIB,
            "<=",
            "blackbox_exporter",
            bb["rss_median_mb"] if bb else None,
            load,
            "median of samples after warm-up",
        ),
        Figure(
            "agent",
            "CPU, % of one core (incl. trace child)",
            "%",
            round(cpu_pct, 4),
            CPU_BUDGET_PCT,
            "<=",
            "blackbox_exporter",
            bb["cpu_pct_of_core"] if bb else None,
            load,
            f"{d['agent_cpu_s_per_hour_incl_traces']} CPU-s/h; peer excludes its driver",
        ),
        Figure(
            "agent",
            "CPU vs iputils ping x3",
            "%",
            round(cpu_pct, 4),
            None,
            "<=",
            "ping x3 (1 Hz)",
            pg["cpu_pct_of_core"] if pg else None,
            load,
            "ping probes RTT only",
        ),
        *figs,
    ]
