"""The agent/collector contract for pushed configuration: what a collector may set, within which bounds.
One table both sides check, so a version the collector accepted is never refused by an agent.
Design notes: docs/agent-tasks.md, "proto/cxpulse/v1/contract.py".
"""

from __future__ import annotations

from . import telemetry_pb2 as pb

__all__ = [
    "APDEX_T_MS",
    "DETECTOR_BOUNDS",
    "INTERVALS_MS",
    "MAX_APPS",
    "MAX_TARGETS",
    "OVERRIDABLE",
    "WIFI_WEAK_RSSI_DBM",
    "check",
    "interval_s",
]

# Cadences a collector may push (AgentConfig field -> low, high in ms; 0 in a push keeps the agent's).
# The agent's own file allows the same ranges in seconds (``interval_s``).
INTERVALS_MS: dict[str, tuple[int, int]] = {
    "probe_interval_ms": (50, 3_600_000),
    "batch_interval_ms": (100, 3_600_000),
    "app_interval_ms": (5_000, 86_400_000),
    "voice_interval_ms": (10_000, 86_400_000),
    "wifi_interval_ms": (100, 3_600_000),
}
# Detector thresholds IT may set centrally (agent/detector/detector.py DetectorConfig fields), with bounds.
DETECTOR_BOUNDS: dict[str, tuple[float, float]] = {
    "spike_abs_us": (1_000, 10_000_000),
    "spike_rel": (0.05, 10.0),
    "spike_mad_k": (1.0, 20.0),
    "jitter_us": (1_000, 10_000_000),
    "cpu_pct": (10.0, 100.0),
    "mem_pct": (10.0, 100.0),
}
# Settings a central config may let the desk's local file keep (``local_overrides``).
OVERRIDABLE = (
    "targets",
    "apps",
    "probe_interval",
    "batch_interval",
    "app_interval",
    "voice_interval",
    "wifi_interval",
    "hash_wifi_identity",
    "wifi_weak_rssi_dbm",
    "detector",
)
WIFI_WEAK_RSSI_DBM = (-100, -30)
APDEX_T_MS = (1, 60_000)
MAX_TARGETS = 64
MAX_APPS = 64
MAX_NAME = 64
MAX_HOST = 253
MAX_URL = 2048


def interval_s(field: str) -> tuple[float, float]:
    """The range of a cadence in seconds, by its AgentConfig field (``probe_interval_ms``)."""
    lo, hi = INTERVALS_MS[field]
    return lo / 1000, hi / 1000


def check(c: pb.AgentConfig) -> str | None:
    """Why this pushed config cannot run on an agent, or None."""
    for name, (lo, hi) in INTERVALS_MS.items():
        v = getattr(c, name)
        if v and not lo <= v <= hi:
            return f"{name} {v} is outside {lo}..{hi}"
    lo, hi = WIFI_WEAK_RSSI_DBM
    if c.wifi_weak_rssi_dbm and not lo <= c.wifi_weak_rssi_dbm <= hi:
        return f"wifi_weak_rssi_dbm {c.wifi_weak_rssi_dbm} is outside {lo}..{hi}"
    if len(c.targets) > MAX_TARGETS or len(c.apps) > MAX_APPS:
        return f"at most {MAX_TARGETS} targets and {MAX_APPS} apps"
    names = set()
    for t in c.targets:
        if not t.name or not t.host or len(t.name) > MAX_NAME or len(t.host) > MAX_HOST:
            return f"target {t.name!r}: needs a name (<= {MAX_NAME}) and a host (<= {MAX_HOST})"
        if t.name in names or t.name == "gateway":
            return f'target name {t.name!r} is used twice ("gateway" is reserved)'
        if t.port > 65535:
            return f"target {t.name}: port {t.port} is not 1..65535"
        names.add(t.name)
    apps = set()
    for a in c.apps:
        if not a.name or a.name in apps or len(a.name) > MAX_NAME:
            return f"app name {a.name!r} is empty, too long or used twice"
        if not (a.url.startswith("https://") or a.url.startswith("http://")) or len(a.url) > MAX_URL:
            return f"app {a.name}: url must be http(s)://... (<= {MAX_URL} characters), got {a.url[:80]!r}"
        if a.apdex_t_ms > APDEX_T_MS[1]:
            return f"app {a.name}: apdex_t_ms {a.apdex_t_ms} is over {APDEX_T_MS[1]}"
        apps.add(a.name)
    for k, v in c.detector.items():
        if k not in DETECTOR_BOUNDS:
            return f"unknown detector threshold {k!r} (known: {', '.join(DETECTOR_BOUNDS)})"
        lo_f, hi_f = DETECTOR_BOUNDS[k]
        if not lo_f <= v <= hi_f:  # NaN fails this too
            return f"detector threshold {k} = {v} is outside {lo_f:g}..{hi_f:g}"
    for k in c.local_overrides:
        if k not in OVERRIDABLE:
            return f"unknown local override {k!r} (known: {', '.join(OVERRIDABLE)})"
    if c.reflector:
        host, _, port = c.reflector.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or not c.reflector_key:
            return f"reflector {c.reflector!r} needs HOST:PORT and a key"
    return None
