"""Micro-disruption detector: turns second-level samples into events with start, end, severity, evidence.
Debounced K of N (3 of 5) to open and M clean (3) to close, so one lost ping is not an alarm.
Design notes: docs/agent-probes.md, "The micro-disruption detector".
"""

from .debounce import Debounce, DebounceConfig
from .detector import Detector, DetectorConfig

__all__ = ["Debounce", "DebounceConfig", "Detector", "DetectorConfig"]
