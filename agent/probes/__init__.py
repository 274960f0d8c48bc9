"""How the agent measures: the RTT probe (per OS and privilege), the HTTP check and the voice stream.

Each is used by one collection task (agent/tasks), which schedules it and owns the columns it
writes; the registry of kinds is agent/tasks/__init__.py (docs/agent-tasks.md).
"""

from __future__ import annotations

from .base import Measurement, Probe, Target

__all__ = ["Measurement", "Probe", "Target"]
