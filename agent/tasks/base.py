"""The one shape every collection task has: a pace and an interval, start, collect into an Output, close.
A task owns the columns it writes; the runner only schedules, batches and uploads.
Design notes: docs/agent-tasks.md, "The shape".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from ..config import AgentConfig, Running
from ..identity import DeskUser
from ..probes.base import Target

if TYPE_CHECKING:
    from cxpulse.v1.payload import Event, PathSnapshot

    from ..detector import Detector

# How the runner schedules a task's passes (agent/runner.py):
#   tick:   a pass every interval on the clock; a pass that falls behind is skipped, never bunched
#   every:  a pass every interval or when woken; one still running when the next starts is cancelled
#   after:  a pass, then the interval (or a wake) before the next
#   before: the interval (or a wake) first, then a pass
Pace = Literal["tick", "every", "after", "before"]


@dataclass
class AgentStats:
    samples: int = 0
    lost: int = 0
    batches_spooled: int = 0
    events: int = 0
    app_checks: int = 0
    voice_runs: int = 0
    traces: int = 0
    wifi_readings: int = 0
    method: str = ""
    gateway: str = ""


@dataclass
class Shared:
    """What tasks share: the running config, the detector, and what one task learns for others."""

    running: Running
    agent_id: str
    detector: Detector
    stats: AgentStats
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # the run's, set by the runner
    # Who sits at the desk (the Hello's user): read by the runner at start, then by the desk_user task.
    desk: DeskUser = field(default_factory=lambda: DeskUser("", ""))
    # The default gateway, refreshed by the RTT task; the device and path tasks read it.
    gateway: Target | None = None
    gateway_iface: str = ""
    # Hops found by the last path trace, measured like targets by the RTT task: role -> (target, ttl).
    hop_targets: dict[str, tuple[Target, int]] = field(default_factory=dict)

    @property
    def cfg(self) -> AgentConfig:
        return self.running.cfg


class Output(Protocol):
    """Where a task's results go: the open batch (an event flushes it at once) and the Hello."""

    def row(
        self, target: str, address: str, kind: str, method: str, ts_us: int, values: dict, hop: int | None = None
    ) -> None: ...

    def path(self, snapshot: PathSnapshot) -> None: ...

    def events(self, events: list[Event]) -> None: ...

    def desk_user(self, desk: DeskUser) -> None: ...


class CollectionTask(Protocol):
    """One kind of measurement. ``collect`` never raises for a failed reading (it logs and goes on)."""

    kind: str
    pace: Pace
    enabled: bool  # from the local file at construction (a disabled task is never started)
    wake: asyncio.Event  # set to run a pass now (a pushed config that changes what it measures)

    def interval_s(self) -> float:
        """Read before every wait: a pushed cadence applies at the next pass."""
        ...

    async def start(self) -> None:
        """Open what the task needs (sockets, readers); never raise for lack of privilege."""
        ...

    async def collect(self, out: Output) -> None:
        """One pass: rows, paths and events go to ``out`` as they come."""
        ...

    def reconfigured(self, old: Running, new: Running) -> None:
        """A push was applied: wake at once if what this task runs changed."""
        ...

    async def close(self) -> None:
        """Finish what is in flight (bounded) and release what ``start`` opened."""
        ...
