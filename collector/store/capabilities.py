"""What a store may offer beyond the ``Store`` protocol, each as a small runtime-checkable Protocol.
Readers ask ``isinstance(store, Buckets)`` and take a slower general path when a store lacks it,
instead of probing attribute names with ``getattr``; a type checker then sees the same contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from . import AgentRecord, IncidentRecord

__all__ = ["AllAgents", "Buckets", "FileBacked", "Incidents", "UrlNamed"]


@runtime_checkable
class Buckets(Protocol):
    """Per-bucket RTT and Wi-Fi sums for the lookup's chart, without a Row object per sample."""

    def buckets(
        self, agent_key: int, since_us: int, until_us: int, start_us: int, step_us: int
    ) -> tuple[list[tuple], list[tuple]]: ...


@runtime_checkable
class AllAgents(Protocol):
    """Every agent at once (the fleet, incidents), without a search's limit."""

    def all_agents(self) -> list[AgentRecord]: ...


@runtime_checkable
class Incidents(Protocol):
    """Incidents across agents (platform and site) overlapping a window."""

    def incidents(self, since_us: int, until_us: int, agent_key: int | None = None) -> list[IncidentRecord]: ...


@runtime_checkable
class UrlNamed(Protocol):
    """A store opened from a database URL (PostgreSQL): other tables open beside it from ``url``."""

    url: str


@runtime_checkable
class FileBacked(Protocol):
    """A store in one file (SQLite): other tables open beside it from ``path``."""

    path: str
