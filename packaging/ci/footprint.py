#!/usr/bin/env python3
"""The installed agent service's footprint on a desk: RSS and CPU over a window, at defaults.

Run by the installers workflow on Windows and macOS: docs/installers.md, "packaging/ci/footprint.py".
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

__all__ = ["find_agent", "linux_record", "main", "measure"]

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "docs" / "benchmarks.md"
MIB = 1 << 20


def find_agent(names=("cxpulse", "cxpulse.exe"), args_any=("agent service", "agent run"), pid: int | None = None):
    """The agent service's process: the given pid, else the largest process named ``cxpulse`` whose
    command line runs the agent (a service started by the SCM or launchd)."""
    import psutil

    if pid:
        return psutil.Process(pid)
    found = []
    for p in psutil.process_iter(["name", "cmdline", "memory_info"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            exe_name = Path((p.info["cmdline"] or [""])[0]).name
            if (p.info["name"] in names or exe_name in names) and any(a in cmd for a in args_any):
                found.append(p)
        except (psutil.Error, TypeError):
            continue
    if not found:
        raise LookupError(f"no running agent process named {names} running {args_any}")
    return max(found, key=lambda p: p.info["memory_info"].rss if p.info["memory_info"] else 0)


def _cpu_s(proc) -> float:
    """CPU seconds of the process, the children it reaped (POSIX), and its live children."""
    import psutil

    t = proc.cpu_times()
    total = t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
    for c in proc.children(recursive=True):
        try:
            ct = c.cpu_times()
            total += ct.user + ct.system
        except psutil.Error:
            continue
    return total


def measure(proc, seconds: float, every: float = 5.0, sleep=time.sleep, clock=time.monotonic) -> dict:
    """Sample ``proc`` for ``seconds``; bounded: at most seconds / every + 1 samples."""
    import psutil

    rss, started = [], clock()
    cpu0 = _cpu_s(proc)
    for _ in range(int(seconds // every) + 1):
        try:
            rss.append(proc.memory_info().rss)
        except psutil.NoSuchProcess:
            raise RuntimeError(f"the agent process {proc.pid} ended during the measurement") from None
        left = seconds - (clock() - started)
        if left <= 0:
            break
        sleep(min(every, left))
    wall = clock() - started
    cpu = _cpu_s(proc) - cpu0
    return {
        "pid": proc.pid,
        "seconds": round(wall, 1),
        "samples": len(rss),
        "rss_mib": round(statistics.median(rss) / MIB, 2),
        "rss_max_mib": round(max(rss) / MIB, 2),
        "cpu_s": round(cpu, 3),
        "cpu_pct": round(100.0 * cpu / wall, 3) if wall > 0 else None,
    }


def linux_record(text: str | None = None) -> dict:
    """The Linux agent figures of the record run in docs/benchmarks.md ("(the record)" section)."""
    text = BENCHMARKS.read_text(encoding="utf-8") if text is None else text
    at = text.find("(the record)")
    section = text[at:] if at >= 0 else text
    rss = re.search(r"^\| agent: steady-state RSS \| ([\d.,]+) \| MiB", section, re.M)
    cpu = re.search(r"^\| agent: CPU, % of one core[^|]*\| ([\d.,]+) \| %", section, re.M)
    title = re.search(r"^### (.*\(the record\))", text, re.M)
    return {
        "rss_mib": float(rss.group(1).replace(",", "")) if rss else None,
        "cpu_pct": float(cpu.group(1).replace(",", "")) if cpu else None,
        "source": f"docs/benchmarks.md, {title.group(1)}" if title else "docs/benchmarks.md",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--os", required=True, help="label for the line: windows, macos, linux")
    ap.add_argument("--seconds", type=float, default=300.0, help="window (default 300 s = 5 minutes)")
    ap.add_argument("--every", type=float, default=5.0, help="RSS sample interval (default 5 s)")
    ap.add_argument("--pid", type=int, default=0, help="the agent's pid (default: found by name)")
    ap.add_argument("--out", help="write the figures as JSON here (the workflow's artifact)")
    args = ap.parse_args(argv)
    try:
        proc = find_agent(pid=args.pid or None)
        fig = measure(proc, args.seconds, args.every)
    except (LookupError, RuntimeError) as exc:
        print(f"footprint: {exc}", file=sys.stderr)
        return 1
    linux = linux_record()
    fig.update({"os": args.os, "cmdline": " ".join(proc.cmdline()), "linux": linux})
    if args.out:
        Path(args.out).write_text(json.dumps(fig, indent=2) + "\n")
    print(
        f"footprint {args.os} rss_mib={fig['rss_mib']} cpu_pct={fig['cpu_pct']} "
        f"({fig['seconds']:.0f} s, {fig['samples']} samples) | linux ({linux['source']}) "
        f"rss_mib={linux['rss_mib']} cpu_pct={linux['cpu_pct']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
