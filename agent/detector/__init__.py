"""Micro-disruption detector: turns second-level samples into events with start, end, severity, evidence.

Debounced the way voice SDKs do it: a condition opens an event when it is
breached in K of the last N samples (default 3 of 5), so one lost ping is not
an alarm; it closes after M clean samples in a row (default 3). The event
covers the samples that breached, so its start and end are the disruption's,
not the debounce's.
"""

from .debounce import Debounce, DebounceConfig
from .detector import Detector, DetectorConfig

__all__ = ["Debounce", "DebounceConfig", "Detector", "DetectorConfig"]
