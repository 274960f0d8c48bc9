"""Collection-task registry: one line per kind of measurement the agent runs.
The runner builds every enabled task from this table and schedules it by its pace.
Adding a kind: docs/agent-tasks.md.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import AgentStats, CollectionTask, Output, Pace, Shared
from .desk_user import DeskUserTask
from .device import DeviceTask
from .http import HttpTask
from .path import PathTask
from .rtt import RttTask
from .voice import VoiceTask
from .wifi import WifiTask

# Built and started in this order. The one task with pace "tick" (rtt) keeps the runner's clock:
# it runs in the foreground and the agent stops when its loop ends.
REGISTRY: dict[str, Callable[[Shared], CollectionTask]] = {
    "rtt": RttTask,
    "http": HttpTask,
    "voice": VoiceTask,
    "device": DeviceTask,
    "wifi": WifiTask,
    "desk_user": DeskUserTask,
    "path": PathTask,
}

__all__ = ["REGISTRY", "AgentStats", "CollectionTask", "Output", "Pace", "Shared"]
