"""How the agent measures: the RTT probe (per OS and privilege), the HTTP check and the voice stream.
Each is run by one collection task (agent/tasks), which owns its columns (docs/agent-tasks.md).
Design notes: docs/agent-probes.md, "Probes".
"""

from __future__ import annotations

from .base import Measurement, Probe, Target

__all__ = ["Measurement", "Probe", "Target"]
