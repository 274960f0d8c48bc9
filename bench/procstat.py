"""CPU and memory of one process and its children, as the kernel accounts them.

The agent's budget is for everything it causes: its path-trace child runs scapy for a fraction of
a second every 15 minutes, and that CPU is charged to the agent. The kernel adds a child's CPU to
the parent's ``children_user/system`` once the child is reaped; a child still running is read
directly. Peak RSS comes from ``VmHWM`` (the kernel's own high-water mark), so a short spike
between two samples is not missed.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

import psutil


@dataclass
class CpuMark:
    """CPU seconds of a process tree at one moment: own, reaped children, live children."""

    own: float
    reaped_children: float
    live_children: float

    @property
    def total(self) -> float:
        return self.own + self.reaped_children + self.live_children


def cpu_mark(proc: psutil.Process) -> CpuMark:
    t = proc.cpu_times()
    live = 0.0
    for child in proc.children(recursive=True):
        try:
            ct = child.cpu_times()
            live += ct.user + ct.system
        except psutil.NoSuchProcess:  # reaped between the listing and the read: in reaped_children next time
            pass
    return CpuMark(t.user + t.system, t.children_user + t.children_system, live)


def peak_rss_bytes(pid: int) -> int:
    """``VmHWM`` of /proc/PID/status: the highest RSS the process ever had."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def smaps_rollup_kb(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup in kB: how much of the RSS is anonymous (heap, arenas, thread stacks:
    ours to cut) and how much is mapped files (shared libraries: the price of importing them)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return out


def thread_names(pid: int) -> dict[str, int]:
    """Threads by name (grpc's pollers, asyncio's resolver pool, ...): each holds a stack and may
    hold a malloc arena."""
    out: dict[str, int] = {}
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                name = f.read().strip()
            out[name] = out.get(name, 0) + 1
    except OSError:
        pass
    return out


@dataclass
class Tracker:
    """Samples one process tree's RSS; marks CPU at the start and end of the measured window."""

    name: str
    pids: list[int]
    rss: list[int] = field(default_factory=list)
    start: float | None = None
    end: float | None = None
    peak_rss: int = 0
    gone: bool = False
    switches_start: int = 0
    switches_end: int = 0
    smaps: dict[str, int] = field(default_factory=dict)
    threads: dict[str, int] = field(default_factory=dict)

    def _procs(self) -> list[psutil.Process]:
        return [psutil.Process(p) for p in self.pids]

    def sample(self) -> None:
        try:
            procs = self._procs()
            self.rss.append(sum(p.memory_info().rss for p in procs))
            self.peak_rss = max(self.peak_rss, sum(peak_rss_bytes(p.pid) for p in procs))
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            self.gone = True

    def cpu_now(self) -> float:
        return sum(cpu_mark(p).total for p in self._procs())

    def _switches(self) -> int:
        """Voluntary context switches of the main thread (/proc/PID/status): one per sleep, so wake-ups."""
        return sum(p.num_ctx_switches().voluntary for p in self._procs())

    def mark_start(self) -> None:
        self.start = self.cpu_now()
        self.switches_start = self._switches()
        self.rss.clear()

    def mark_end(self) -> None:
        if len(self.pids) == 1:
            self.smaps = smaps_rollup_kb(self.pids[0])
            self.threads = thread_names(self.pids[0])
        try:
            self.end = self.cpu_now()
            self.switches_end = self._switches()
        except psutil.NoSuchProcess:
            self.gone = True

    def summary(self, window_s: float) -> dict[str, float | int | bool | None]:
        cpu = (self.end - self.start) if self.start is not None and self.end is not None else None
        return {
            "rss_median_mb": round(statistics.median(self.rss) / 2**20, 2) if self.rss else None,
            "rss_max_mb": round(max(self.rss) / 2**20, 2) if self.rss else None,
            "peak_rss_mb": round(self.peak_rss / 2**20, 2),
            "cpu_s_window": round(cpu, 3) if cpu is not None else None,
            "cpu_s_per_hour": round(cpu / window_s * 3600, 2) if cpu is not None else None,
            "cpu_pct_of_core": round(cpu / window_s * 100, 4) if cpu is not None else None,
            "main_thread_wakeups_per_s": (
                round((self.switches_end - self.switches_start) / window_s, 1) if self.end is not None else None
            ),
            "rss_samples": len(self.rss),
            "rss_at_end_kb": {
                k: self.smaps[k]
                for k in ("Rss", "Anonymous", "Pss_File", "Shared_Clean", "Private_Dirty")
                if k in self.smaps
            }
            or None,
            "threads_at_end": self.threads or None,
            "exited_early": self.gone,
        }
