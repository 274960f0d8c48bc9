"""The collector's central configuration as the agent receives it: checked whole, kept if good.

Why whole: a config is what IT decided as a set (targets with the cadence that suits them, a
threshold with the privacy option that goes with it). Applying the good half of a broken push
would run something nobody decided, so a push with any bad value is refused entirely, the last
good one keeps running, and the refusal travels to the helpdesk as a ``config_rejected`` event.

Why persisted: a desk that restarts while the collector is unreachable must measure what IT asked
for, not fall back to its bootstrap file. The last good push is kept in the state directory
(``central-config.pb``, written atomically, readable by the service account only since it holds
the reflector key).

The bounds here are the agent's own (agent/config.py) so that a central value can never set what
a local file could not; the collector validates against the same table before it stores a version.
"""

from __future__ import annotations

import logging
import os

from cxpulse.v1 import telemetry_pb2 as pb

from .atomicfile import write_atomic

__all__ = ["DETECTOR_BOUNDS", "OVERRIDABLE", "check", "load_saved", "save", "FILE_NAME"]

log = logging.getLogger("cxpulse.agent.central")

FILE_NAME = "central-config.pb"

# Detector thresholds IT may set centrally (agent/detector/detector.py DetectorConfig), with bounds.
DETECTOR_BOUNDS: dict[str, tuple[float, float]] = {
    "spike_abs_us": (1_000, 10_000_000),
    "spike_rel": (0.05, 10.0),
    "spike_mad_k": (1.0, 20.0),
    "jitter_us": (1_000, 10_000_000),
    "cpu_pct": (10.0, 100.0),
    "mem_pct": (10.0, 100.0),
}
# Settings a central config may let the desk's local file keep (``local_overrides``).
OVERRIDABLE = ("targets", "apps", "probe_interval", "batch_interval", "app_interval", "voice_interval",
               "wifi_interval", "hash_wifi_identity", "wifi_weak_rssi_dbm", "detector")

# (field, low, high) in milliseconds, 0 meaning "keep the agent's": the ranges agent/config.py allows.
_INTERVALS_MS = (("probe_interval_ms", 50, 3_600_000), ("batch_interval_ms", 100, 3_600_000),
                 ("app_interval_ms", 5_000, 86_400_000), ("voice_interval_ms", 10_000, 86_400_000),
                 ("wifi_interval_ms", 100, 3_600_000))
MAX_TARGETS = 64
MAX_APPS = 64


def check(c: pb.AgentConfig) -> str | None:
    """Why this pushed config cannot run here, or None."""
    for name, lo, hi in _INTERVALS_MS:
        v = getattr(c, name)
        if v and not lo <= v <= hi:
            return f"{name} {v} is outside {lo}..{hi}"
    if c.wifi_weak_rssi_dbm and not -100 <= c.wifi_weak_rssi_dbm <= -30:
        return f"wifi_weak_rssi_dbm {c.wifi_weak_rssi_dbm} is outside -100..-30"
    if len(c.targets) > MAX_TARGETS or len(c.apps) > MAX_APPS:
        return f"at most {MAX_TARGETS} targets and {MAX_APPS} apps"
    names = set()
    for t in c.targets:
        if not t.name or not t.host or len(t.name) > 64 or len(t.host) > 253:
            return f"target {t.name!r}: needs a name (<= 64) and a host (<= 253)"
        if t.name in names or t.name == "gateway":
            return f"target name {t.name!r} is used twice (\"gateway\" is reserved)"
        if t.port > 65535:
            return f"target {t.name}: port {t.port} is not 1..65535"
        names.add(t.name)
    apps = set()
    for a in c.apps:
        if not a.name or a.name in apps or len(a.name) > 64:
            return f"app name {a.name!r} is empty, too long or used twice"
        if not (a.url.startswith("https://") or a.url.startswith("http://")) or len(a.url) > 2048:
            return f"app {a.name}: url must be http(s)://... (<= 2048 characters), got {a.url[:80]!r}"
        if a.apdex_t_ms > 60_000:
            return f"app {a.name}: apdex_t_ms {a.apdex_t_ms} is over 60000"
        apps.add(a.name)
    for k, v in c.detector.items():
        if k not in DETECTOR_BOUNDS:
            return f"unknown detector threshold {k!r} (known: {', '.join(DETECTOR_BOUNDS)})"
        lo, hi = DETECTOR_BOUNDS[k]
        if not lo <= v <= hi:  # NaN fails this too
            return f"detector threshold {k} = {v} is outside {lo:g}..{hi:g}"
    for k in c.local_overrides:
        if k not in OVERRIDABLE:
            return f"unknown local override {k!r} (known: {', '.join(OVERRIDABLE)})"
    if c.reflector:
        host, _, port = c.reflector.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or not c.reflector_key:
            return f"reflector {c.reflector!r} needs HOST:PORT and a key"
    return None


def save(state_dir: str, c: pb.AgentConfig) -> None:
    """Keep ``c`` as the last good config (without the per-stream committed_seq); errors are logged."""
    kept = pb.AgentConfig()
    kept.CopyFrom(c)
    kept.committed_seq = 0
    path = os.path.join(state_dir, FILE_NAME)
    try:
        write_atomic(path, kept.SerializeToString())  # binary on Windows too (O_BINARY)
    except OSError as exc:  # never crash after start-up: the config still runs, only not kept
        log.warning("cannot keep the collector's config in %s: %s", path, exc)


def load_saved(state_dir: str) -> pb.AgentConfig | None:
    """The last good config kept by ``save``, or None (none, unreadable, or no longer valid here)."""
    path = os.path.join(state_dir, FILE_NAME)
    try:
        with open(path, "rb") as f:
            c = pb.AgentConfig.FromString(f.read())
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged file is not a reason to stop measuring
        log.warning("ignoring the kept collector config %s: %s", path, exc)
        return None
    problem = check(c)
    if problem:
        log.warning("ignoring the kept collector config %s: %s", path, problem)
        return None
    return c
