"""Device context: is the PC itself the reason the call sounds bad (CPU, memory, NIC errors, VPN, own traffic)?
Cheap psutil reads every few seconds, a process scan only past a threshold; the caller keeps the counters.
Design notes: docs/agent-internals.md, "agent/device.py".
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import psutil

from cxpulse.agent import netinfo
from cxpulse.agent.netinfo import KINDS
from cxpulse.atomicfile import write_atomic

__all__ = [
    "BEST_HALF_LIFE_S",
    "KINDS",
    "DeviceCounters",
    "DeviceSnapshot",
    "load_best",
    "own_traffic_columns",
    "read_device",
    "save_best",
]

# The best rate a link carried fades by half in a day: a line that got slower (or a best from
# before the agent's link key changed without it noticing) stops counting as "its best" within
# days, while yesterday's big upload still tells what today's line can do.
BEST_HALF_LIFE_S = 24 * 3600.0
SPEED_REREAD_S = 300.0  # link speed renegotiates rarely (1000 -> 100 Mbit/s on a bad cable)


@dataclass(frozen=True)
class DeviceSnapshot:
    """What the PC looked like over the interval since the previous call."""

    ts_us: int
    cpu_pct: float  # whole machine, 0..100
    mem_pct: float  # 0..100
    top_procs: list[tuple[str, float]]  # (name, share of the whole machine's CPU in %); only when hot
    nic_errors: int  # errors + drops, in + out, on iface (all non-loopback NICs if iface unknown)
    iface: str  # the interface carrying the default route; "" when there is none
    iface_kind: str  # one of KINDS
    vpn: list[str]  # VPN/tunnel interfaces that are up
    proxy: str | None  # the HTTPS proxy the user's apps are told to use, credentials removed
    # The desk's own traffic on iface (all non-loopback NICs when iface is unknown), kbit/s since the
    # previous call (None on the first call or a new link); the decaying best of each; link speed.
    up_kbps: float | None = None
    dn_kbps: float | None = None
    up_best_kbps: float | None = None
    dn_best_kbps: float | None = None
    link_mbps: int | None = None  # None: the OS does not say (often so for Wi-Fi on Linux)
    traffic: dict[str, tuple[float, float]] = field(default_factory=dict)  # per NIC: (up, down) kbit/s


@dataclass(frozen=True)
class DeviceCounters:
    """The previous call's raw counters; opaque to callers, who only pass it back."""

    ts_mono: float
    ts_wall: float
    cpu_busy_s: float
    cpu_total_s: float
    nic: dict[str, int]  # per NIC: errin + errout + dropin + dropout since boot
    procs: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid -> (create_time, cpu s)
    kinds: dict[str, str] = field(default_factory=dict)  # NIC -> kind, re-read when the NIC set changes
    nic_bytes: dict[str, tuple[int, int]] = field(default_factory=dict)  # per NIC: (bytes sent, received)
    best: tuple[float, float] = (0.0, 0.0)  # decaying best sustained (up, down) kbit/s of ``link``
    rate: tuple[float, float] | None = None  # this call's (up, down) kbit/s on ``link``: the next one's "before"
    link: tuple[str, str] = ("", "")  # (interface, gateway) the best belongs to
    speeds: dict[str, int] = field(default_factory=dict)  # NIC -> link Mbit/s (0: unknown)
    speeds_at: float = 0.0  # monotonic time they were read


def read_device(
    prev: DeviceCounters | None,
    iface: str | None = None,
    *,
    gateway: str = "",
    remembered: Mapping | None = None,
    cpu_threshold_pct: float = 80.0,
    mem_threshold_pct: float = 90.0,
    top_n: int = 3,
) -> tuple[DeviceSnapshot, DeviceCounters]:
    """One look at the device; pass the returned counters to the next call.

    ``iface`` is the interface carrying the default route (``netinfo.default_gateway().interface``);
    None looks it up here. ``gateway`` (its address) names the link with it: when either changes,
    the best rate starts again. ``remembered`` (``load_best``: what ``save_best`` kept before a
    restart) seeds the best on the first call when it is of the same link, faded by its age: a
    freshly started agent would otherwise call any modest transfer "the most its link carried".
    The process scan runs only when ``cpu_pct > cpu_threshold_pct`` or ``mem_pct >
    mem_threshold_pct``; tests set them to 0 to force it.
    """
    now_mono, now_wall = time.monotonic(), time.time()
    busy_s, total_s = _cpu_seconds()
    if prev is not None and total_s > prev.cpu_total_s:
        cpu_pct = 100.0 * max(0.0, busy_s - prev.cpu_busy_s) / (total_s - prev.cpu_total_s)
    else:
        cpu_pct = 100.0 * busy_s / total_s if total_s > 0 else 0.0
    cpu_pct = round(min(100.0, cpu_pct), 1)
    mem_pct = round(float(psutil.virtual_memory().percent), 1)

    if iface is None:
        iface = _default_interface()
    nic, nic_bytes = _nic_counts()
    # Kinds cost a few sysfs reads per NIC (one GetAdaptersAddresses on Windows); they only change
    # when NICs come and go.
    if prev is not None and prev.kinds and prev.nic.keys() == nic.keys():
        kinds = prev.kinds
    else:
        kinds = netinfo.interface_kinds()
    nic_errors = 0
    if prev is not None:
        names = [iface] if iface in nic else [n for n in nic if kinds.get(n) != "loopback"]
        nic_errors = sum(_delta(nic[n], prev.nic.get(n)) for n in names)

    if prev is not None and prev.nic.keys() == nic.keys() and now_mono - prev.speeds_at < SPEED_REREAD_S:
        speeds, speeds_at = prev.speeds, prev.speeds_at
    else:
        speeds, speeds_at = _link_speeds(), now_mono
    traffic: dict[str, tuple[float, float]] = {}
    if prev is not None and now_mono > prev.ts_mono:
        secs = now_mono - prev.ts_mono
        for n, (sent, recv) in nic_bytes.items():
            before = prev.nic_bytes.get(n)
            if before is not None and kinds.get(n) != "loopback":
                traffic[n] = (
                    round(_delta(sent, before[0]) * 8 / 1000 / secs, 1),
                    round(_delta(recv, before[1]) * 8 / 1000 / secs, 1),
                )
    up = dn = None
    link = (iface, gateway)
    if iface in traffic:
        up, dn = traffic[iface]
    elif not iface and traffic:
        up, dn = (round(sum(t[i] for t in traffic.values()), 1) for i in (0, 1))
    best = (0.0, 0.0)
    if prev is not None and prev.link == link:
        fade = 0.5 ** ((now_mono - prev.ts_mono) / BEST_HALF_LIFE_S)
        best = (prev.best[0] * fade, prev.best[1] * fade)
    elif prev is None and remembered is not None:
        best = _remembered_best(remembered, link, now_wall)
    last = prev.rate if prev is not None and prev.link == link else None
    if up is not None and dn is not None and last is not None:
        best = (max(best[0], min(up, last[0])), max(best[1], min(dn, last[1])))  # held for two readings

    top_procs: list[tuple[str, float]] = []
    procs: dict[int, tuple[float, float]] = {}
    if cpu_pct > cpu_threshold_pct or mem_pct > mem_threshold_pct:
        top_procs, procs = _top_processes(prev, now_mono, now_wall, top_n)

    snapshot = DeviceSnapshot(
        ts_us=int(now_wall * 1e6),
        cpu_pct=cpu_pct,
        mem_pct=mem_pct,
        top_procs=top_procs,
        nic_errors=nic_errors,
        iface=iface,
        iface_kind=kinds.get(iface, "other") if iface else "other",
        vpn=netinfo.vpn_interfaces(),
        proxy=netinfo.system_proxy(),
        up_kbps=up,
        dn_kbps=dn,
        up_best_kbps=round(best[0], 1) if up is not None else None,
        dn_best_kbps=round(best[1], 1) if dn is not None else None,
        link_mbps=speeds.get(iface) or None,
        traffic=traffic,
    )
    return snapshot, DeviceCounters(
        now_mono,
        now_wall,
        busy_s,
        total_s,
        nic,
        procs,
        kinds,
        nic_bytes,
        best,
        None if up is None or dn is None else (up, dn),
        link,
        speeds,
        speeds_at,
    )


def own_traffic_columns(snap: DeviceSnapshot) -> dict[str, int | None]:
    """The device sample's own-traffic columns (cxpulse.v1.kinds): whole kbit/s and Mbit/s.

    Only the active interface travels: per-NIC rates would cost bytes in every batch (the upload
    budget, DESIGN decision 5) for NICs that carry no call."""

    def kbps(v: float | None) -> int | None:
        return None if v is None else min(100_000_000, round(v))

    return {
        "up": kbps(snap.up_kbps),
        "dn": kbps(snap.dn_kbps),
        "upb": kbps(snap.up_best_kbps),
        "dnb": kbps(snap.dn_best_kbps),
        "spd": min(1_000_000, snap.link_mbps) if snap.link_mbps else None,
    }


def save_best(path: str, counters: DeviceCounters) -> None:
    """Keep the link's best rates across a restart (a few bytes; the caller decides how often)."""
    doc = {
        "link": list(counters.link),
        "up": round(counters.best[0], 1),
        "dn": round(counters.best[1], 1),
        "at": round(counters.ts_wall, 1),
    }
    write_atomic(path, json.dumps(doc).encode(), mode=0o644)


def load_best(path: str) -> dict | None:
    """What ``save_best`` kept, or None (no file, or one this version cannot read)."""
    try:
        with open(path) as f:
            got = json.load(f)
    except (OSError, ValueError):
        return None
    return got if isinstance(got, dict) else None


def _remembered_best(remembered: Mapping, link: tuple[str, str], now_wall: float) -> tuple[float, float]:
    try:
        if tuple(remembered["link"]) != link:
            return 0.0, 0.0
        fade = 0.5 ** (max(0.0, now_wall - float(remembered["at"])) / BEST_HALF_LIFE_S)
        up, dn = float(remembered["up"]), float(remembered["dn"])
    except (KeyError, TypeError, ValueError):
        return 0.0, 0.0
    if not (0.0 <= up <= 1e8 and 0.0 <= dn <= 1e8):  # a damaged file must not make every rate look small
        return 0.0, 0.0
    return up * fade, dn * fade


def _cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds since boot, all cores.

    Idle and I/O wait are not busy. On Linux ``user`` already contains ``guest`` time, so guest
    fields are left out of the total (psutil's ``cpu_percent`` does the same).
    """
    t = psutil.cpu_times()
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


def _nic_counts() -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Per NIC: errors + drops, and (bytes sent, bytes received), from one read of the counters."""
    try:
        counters = psutil.net_io_counters(pernic=True)
    except (OSError, RuntimeError):  # no /proc/net/dev (odd containers): no NIC facts, not a crash
        return {}, {}
    return (
        {name: c.errin + c.errout + c.dropin + c.dropout for name, c in counters.items()},
        {name: (c.bytes_sent, c.bytes_recv) for name, c in counters.items()},
    )


def _link_speeds() -> dict[str, int]:
    """NIC -> negotiated link speed in Mbit/s (0 when the OS does not know: virtual NICs, most Wi-Fi on Linux)."""
    try:
        return {name: int(st.speed or 0) for name, st in psutil.net_if_stats().items()}
    except (OSError, RuntimeError):
        return {}


def _delta(now: int, before: int | None) -> int:
    """Growth of a counter; a counter that went down was reset (NIC re-created), so count from 0."""
    if before is None:
        return 0  # a NIC that just appeared: its history is not "since the last call"
    return now - before if now >= before else now


def _default_interface() -> str:
    gateway = netinfo.default_gateway()
    return gateway.interface if gateway else ""


def _top_processes(
    prev: DeviceCounters | None, now_mono: float, now_wall: float, top_n: int
) -> tuple[list[tuple[str, float]], dict[int, tuple[float, float]]]:
    """The ``top_n`` processes by CPU since the last call, as a share of the whole machine.

    A process in the previous scan (same pid and start time): its CPU since then. A process that
    started after the previous call: all of its CPU, over the interval. Otherwise there is no
    baseline (the previous call did not scan), and its lifetime average is the best cheap answer.
    """
    ncpu = psutil.cpu_count() or 1
    elapsed = now_mono - prev.ts_mono if prev is not None else 0.0
    shares: list[tuple[float, str]] = []
    procs: dict[int, tuple[float, float]] = {}
    for proc in psutil.process_iter(["name", "cpu_times", "create_time"]):
        info = proc.info
        times, created = info.get("cpu_times"), info.get("create_time")
        if proc.pid == 0 or times is None or created is None:  # pid 0: Windows' "System Idle Process"
            continue
        cpu_s = times.user + times.system
        procs[proc.pid] = (created, cpu_s)
        before = prev.procs.get(proc.pid) if prev is not None else None
        if before is not None and before[0] == created and elapsed > 0:
            used, over = cpu_s - before[1], elapsed
        elif prev is not None and created >= prev.ts_wall and elapsed > 0:
            used, over = cpu_s, elapsed
        else:
            used, over = cpu_s, now_wall - created
        if over > 0 and used > 0:
            shares.append((min(100.0, 100.0 * used / over / ncpu), info.get("name") or f"pid {proc.pid}"))
    shares.sort(reverse=True)
    return [(name, round(share, 1)) for share, name in shares[:top_n]], procs
