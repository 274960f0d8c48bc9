"""Probe registry: one line per probe kind.

A probe kind measures one kind of thing about a target and reports a
Measurement. Adding a kind means one new module in this folder and one line in
REGISTRY; the runner, batcher and payload need no change beyond the series
columns the kind writes.
"""

from __future__ import annotations

from .base import Measurement, Probe, Target
from .rtt import RttProbe

REGISTRY: dict[str, type[Probe]] = {
    "rtt": RttProbe,
}

__all__ = ["REGISTRY", "Measurement", "Probe", "Target"]
