"""Storage behind one interface: SQLite by default, PostgreSQL when one machine is outgrown.
Ingest writes only through ``Store``, lookups only read; a batch's seq mark commits with its samples (exactly-once).
Design notes: docs/storage.md, "Exactly-once".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from cxpulse.v1.payload import Event, PathSnapshot

from .db import parse_url
from .late_writes import LateWrite
from .types import (
    KEPT_TABLES,
    MAX_SEARCH_WORDS,
    RAW_TABLES,
    AgentInfo,
    AgentRecord,
    IncidentRecord,
    KeptTables,
    PendingBatch,
    Row,
    RttRow,
    StoreStats,
    UserChange,
    fold,
    search_words,
    user_key,
)

__all__ = [
    "KEPT_TABLES",
    "MAX_SEARCH_WORDS",
    "RAW_TABLES",
    "AgentInfo",
    "AgentRecord",
    "IncidentRecord",
    "KeptTables",
    "LateWrite",
    "PendingBatch",
    "Row",
    "RttRow",
    "Store",
    "StoreStats",
    "UserChange",
    "fold",
    "open_store",
    "search_words",
    "user_key",
]

if TYPE_CHECKING:
    from .raw import CompactStep, RawProgress
    from .rollup import Rollup


class Store(Protocol):
    def upsert_agent(self, info: AgentInfo, now_us: int) -> int:
        """Create or refresh an agent; returns its key."""

    def committed_seq(self, agent_key: int, epoch: int) -> int:
        """Highest seq held for this agent and epoch, 0 if none."""

    def commit_batches(self, batches: list[PendingBatch], now_us: int | None = None) -> None:
        """Write all batches in one durable transaction, skipping seqs already held.

        Sets ``stored`` (True written, False duplicate) and ``committed_seq`` on each. With ``now_us``
        (the ingest writer's clock), every sender's ``last_seen_us`` moves up to it in the same
        transaction: one update per commit, not per batch.
        """

    def find_agents(self, query: str, limit: int = 50) -> list[AgentRecord]:
        """Agents whose user, host, agent id or site contains query (case-insensitive), or whose
        user's login and display name, now or in a recorded change, hold every word of the query
        (case- and accent-insensitive: ``search_words``)."""

    def user_changes(self, agent_key: int, since_us: int, until_us: int) -> list[UserChange]:
        """The desk's users from the one in force at ``since_us`` to the last change before ``until_us``."""

    def agent(self, agent_id: str) -> AgentRecord | None:
        """The agent with exactly this id (the lookup's agent pages; an index read, not a search)."""

    def rtt_rows(self, agent_key: int, since_us: int, until_us: int) -> list[RttRow]:
        """RTT samples of one agent in [since, until), ordered by target and time."""

    def rows(self, agent_key: int, kind: str, since_us: int, until_us: int) -> list[Row]:
        """Samples of one kind, ordered by target and time."""

    def events(self, agent_key: int, since_us: int, until_us: int) -> list[Event]:
        """Events overlapping the window, open ones included, by start time."""

    def events_of(self, agent_keys: list[int], since_us: int, until_us: int) -> dict[int, list[Event]]:
        """``events`` of many agents in one statement (the fleet), by agent key; none: left out."""

    def paths(self, agent_key: int, since_us: int, until_us: int) -> list[PathSnapshot]:
        """Traced paths in the window, by time."""

    def sample_count(self, agent_key: int | None = None) -> int: ...

    # -- rollups, incidents, retention (issue 4) --
    # ``commit_batches`` also merges the per-minute rollups of what it writes, in the same
    # transaction (cxpulse.collector.store.rollup says what a rollup holds and how it merges).

    def all_agents(self) -> list[AgentRecord]:
        """Every agent, for scoring across agents (sites, incidents)."""

    def rollups(
        self, since_us: int, until_us: int, agent_key: int | None = None, kinds: Sequence[str] | None = None
    ) -> list[Rollup]:
        """Rollups of [since, until), one agent or all, ordered by agent, start, kind, target, at the
        finest resolution kept: minutes from the minutes' floor on, 15-minute rollups (``span_us``
        ``BLOCK_US``, those overlapping the window) before it."""

    def kept_scores(
        self, since_us: int, until_us: int, agent_key: int | None = None
    ) -> dict[tuple[int, int], tuple[bytes, bytes]]:
        """(agent, minute) -> (digest, data) of the kept minute scores in [since, until) (score/kept.py)."""

    def keep_scores(self, rows: list[tuple[int, int, bytes, bytes]]) -> None:
        """Write (agent, minute, digest, data) minute scores, replacing those kept for the same minutes."""

    def late_writes(self, since_us: int, until_us: int, agent_key: int | None = None) -> list[LateWrite]:
        """The marks of minutes written late (store/late_writes.py) that overlap [since, until), by id."""

    def late_write_seq(self) -> int:
        """The highest late-write mark id ever handed out (0: none), taken or not yet committed."""

    def keep_trusted_scores(self, plain: list[tuple], trusted: list[tuple], seq: int) -> bool:
        """As ``keep_scores``: ``trusted`` if no mark id was handed out since ``seq`` (checked in the
        write's own transaction), else ``plain``; True when ``trusted`` was written (score/kept.py)."""

    def forget_late_writes(self, ids: Sequence[int], trim: Sequence[int] = (), from_us: int = 0) -> None:
        """Delete the marks ``ids`` and move the first minute of the marks ``trim`` up to ``from_us``:
        a reader that saw them before it read the rollups has kept their minutes (up to ``from_us``)."""

    def kept_merges(
        self, since_us: int, until_us: int, agent_key: int | None = None
    ) -> dict[tuple[int, int], tuple[bytes, bytes]]:
        """(agent, block start) -> (digest, data) of the kept 15-minute block merges (score/kept.py)."""

    def keep_merges(self, rows: list[tuple[int, int, bytes, bytes]]) -> None:
        """Write (agent, block start, digest, data) block merges, replacing those kept for the same blocks."""

    def kept_hour_merges(
        self, since_us: int, until_us: int, agent_key: int | None = None
    ) -> dict[tuple[int, int], tuple[bytes, bytes]]:
        """(agent, hour start) -> (digest, data) of the kept hour merges (score/kept.py)."""

    def keep_hour_merges(self, rows: list[tuple[int, int, bytes, bytes]]) -> None:
        """Write (agent, hour start, digest, data) hour merges, replacing those kept for the same hours."""

    def incidents(self, since_us: int, until_us: int, agent_key: int | None = None) -> list[IncidentRecord]:
        """Incidents overlapping the window (open ones included), with their agents; one agent's only if given."""

    def update_incidents(self, change: Callable[[list[IncidentRecord]], list[IncidentRecord]]) -> list[IncidentRecord]:
        """Run ``change`` on the open incidents inside one exclusive write transaction and store
        what it returns (``id`` None: a new incident). Collectors sharing a database take turns,
        so two never open the same incident twice. Returns the written records, ids filled."""

    def delete_raw_before(self, cutoff_us: int, limit: int) -> int:
        """Delete up to ``limit`` raw rows (samples, events, paths) older than the cutoff in one
        short transaction; returns how many went (0: nothing left to delete)."""

    def delete_kind_before(self, kind: str, cutoff_us: int, limit: int) -> int:
        """As ``delete_raw_before`` for one raw kind of ``RAW_TABLES`` (retention's per-kind horizons)."""

    def delete_rollups_before(self, cutoff_us: int, limit: int) -> int:
        """Delete up to ``limit`` minute rollups (then kept minute scores) older than the cutoff; as
        above. Once none is left, up to ``limit`` late-write marks an hour older go too, uncounted."""

    def delete_blocks_before(self, cutoff_us: int, limit: int) -> int:
        """Delete up to ``limit`` 15-minute rollups (and closed incidents) older than the cutoff; as above."""

    # -- rollup tiers (issue 19; store/tiers.py): ``rollups`` reads 15-minute rollups below the
    # minutes' floor. The settle job (jobs/rollup_tiers.py) writes them, retention raises the floor.

    def rollup_mark(self, name: str) -> int:
        """The mark ``tiers.BLOCKS_SETTLED`` or ``tiers.MINUTES_FLOOR`` (0: never set)."""

    def next_rollup_minute(self, since_us: int) -> int | None:
        """The first minute at or after ``since_us`` that has a minute rollup (None: none)."""

    def write_blocks(self, blocks: list[Rollup]) -> None:
        """Write 15-minute rollups in one transaction, replacing those of the same keys (settling
        again writes the same rows); the job raises ``tiers.BLOCKS_SETTLED`` once a block is whole."""

    def raise_mark(self, name: str, at_us: int) -> int:
        """Raise a mark of ``tiers`` to ``at_us`` (never lowers it); returns the mark now."""

    def series_methods(self, agent_key: int, kind: str) -> dict[str, set[str]]:
        """Target -> the measuring methods of the agent's series of this kind."""

    # -- the raw tier (issue 19; store/raw.py): ``commit_batches`` lands each batch as one row of its
    # payload; reads merge legacy sample rows, hour chunks and landing rows.

    def compact_raw(self, now_us: int, max_rows: int = 20_000) -> CompactStep:
        """One short transaction folding ~``max_rows`` settled samples into one chunk per series and
        UTC hour: legacy sample rows first (resumable walk), then settled landing batches, oldest
        first. Bounded, resumable, idempotent; ``done`` when nothing settled is left to fold now."""

    def raw_progress(self) -> RawProgress:
        """Legacy rows left (an estimate that costs no count), landing rows and chunks held."""

    def close(self) -> None: ...


def open_store(url: str) -> Store:
    """Open a store from ``sqlite:///abs/path``, a bare path, or ``postgresql://`` / ``postgres://``.

    psycopg is imported only for PostgreSQL URLs, so SQLite users never need it.
    """
    target = parse_url(url)  # a PostgreSQL URL without psycopg: MissingExtra names the extra in one line
    if target.postgres:
        from .postgres import PostgresStore

        return PostgresStore(url, target.schema)
    from .sqlite import SqliteStore

    return SqliteStore(target.path)
