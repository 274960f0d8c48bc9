"""The one shape every probe has (blackbox_exporter style: one signature, one registry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Target:
    """Something to measure. ``port`` is used when only TCP connect timing is possible."""

    name: str
    host: str
    port: int = 443
    # Force one method for this target (an app's TCP port, say); empty: the probe's best.
    method: str = ""


@dataclass(frozen=True)
class Measurement:
    """One sample. ``rtt_us`` is None when the probe got no answer in time (lost)."""

    target: str
    address: str
    method: str
    ts_us: int
    rtt_us: int | None


class Probe(Protocol):
    kind: str

    async def start(self) -> None:
        """Open sockets and pick the best method this host allows; never raise for lack of privilege."""

    async def measure(self, target: Target, timeout_s: float) -> Measurement:
        """Measure once. Must return within timeout_s (plus scheduling slack) and never raise."""

    async def close(self) -> None:
        """Release sockets."""
