"""The peer: Prometheus' blackbox_exporter probing what the agent probes, at the agent's cadence.

blackbox_exporter probes only when asked (``GET /probe?module=M&target=T``), as Prometheus would
on its scrape interval. ``python -m bench.blackbox drive ...`` is that asker: a small driver run
as its own process in the desk namespace, so its own CPU is not charged to the exporter. It also
counts the bytes of every answer: what a Prometheus server would pull over the network, the
exporter's counterpart of the agent's upload.

blackbox_exporter has nothing like the agent's Wi-Fi, device and voice-cadence readings; the
comparison covers the RTT and HTTP probes only, and the report says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

BINARY_NAMES = ("prometheus-blackbox-exporter", "blackbox_exporter")
LISTEN = "127.0.0.1:9115"


def find_binary() -> str | None:
    for name in BINARY_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def write_config(path: Path, ca_file: str) -> Path:
    """ICMP with a 1 s timeout (the agent's probe timeout) and HTTP trusting the apps' test CA."""
    path.write_text(
        "modules:\n"
        "  icmp:\n"
        "    prober: icmp\n"
        "    timeout: 1s\n"
        "    icmp:\n"
        "      preferred_ip_protocol: ip4\n"
        "  http_2xx:\n"
        "    prober: http\n"
        "    timeout: 10s\n"
        "    http:\n"
        "      preferred_ip_protocol: ip4\n"
        "      tls_config:\n"
        f"        ca_file: {ca_file}\n"
    )
    return path


def _probe_loop(url: str, interval_s: float, stop: threading.Event, out: dict) -> None:
    """One target on its cadence; skips a tick rather than bursting when a probe ran long."""
    next_t = time.monotonic()
    while not stop.is_set():
        started = time.time()
        try:
            with urllib.request.urlopen(url, timeout=15) as r:
                body = r.read()
                # Status line and headers as they crossed the wire, roughly: what a scrape pulls.
                head = sum(len(k) + len(v) + 4 for k, v in r.getheaders()) + 17
            out["probes"] += 1
            out["bytes"] += len(body) + head
            ok, rtt = 0, None
            for line in body.decode(errors="replace").splitlines():
                if line.startswith("probe_success "):
                    ok = int(float(line.split()[1]))
                elif line.startswith("probe_duration_seconds "):
                    out["duration_s_sum"] += float(line.split()[1])
                elif line.startswith('probe_icmp_duration_seconds{phase="rtt"}'):
                    rtt = float(line.split()[1])
            out["success"] += ok
            if "series" in out:  # what a Prometheus server would have stored: time, success, RTT
                out["series"].append((round(started, 3), ok, rtt))
        except OSError:
            out["errors"] += 1
        next_t += interval_s
        if next_t < time.monotonic():
            next_t = time.monotonic() + interval_s
        stop.wait(max(0.0, next_t - time.monotonic()))


def drive(spec: list[tuple[str, str, float]], duration_s: float, out_path: Path, series: bool = False) -> None:
    """Ask for each (module, target, interval) until duration_s or SIGTERM; write counts as JSON.

    With ``series`` every answer is kept as (unix time asked, probe_success, ICMP RTT seconds)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    results: dict[str, dict] = {}
    threads = []
    for module, target, interval in spec:
        key = f"{module}:{target}"
        results[key] = {
            "module": module,
            "target": target,
            "interval_s": interval,
            "probes": 0,
            "success": 0,
            "errors": 0,
            "bytes": 0,
            "duration_s_sum": 0.0,
        }
        if series:
            results[key]["series"] = []
        q = urllib.parse.urlencode({"module": module, "target": target})
        t = threading.Thread(
            target=_probe_loop, args=(f"http://{LISTEN}/probe?{q}", interval, stop, results[key]), daemon=True
        )
        threads.append(t)
    started = time.monotonic()
    for t in threads:
        t.start()
    stop.wait(duration_s)
    stop.set()
    for t in threads:
        t.join(16)
    out_path.write_text(json.dumps({"elapsed_s": time.monotonic() - started, "targets": list(results.values())}))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="drive blackbox_exporter's /probe at a fixed cadence")
    ap.add_argument("command", choices=["drive"])
    ap.add_argument("--probe", action="append", default=[], metavar="MODULE,TARGET,INTERVAL_S")
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--series", action="store_true", help="keep every answer, not only counts")
    args = ap.parse_args(argv)
    spec = []
    for p in args.probe:
        module, target, interval = p.split(",", 2)
        spec.append((module, target, float(interval)))
    drive(spec, min(args.duration, 3600.0), args.out, args.series)


if __name__ == "__main__":
    main()
