"""What the stores hold and return: agents, batches waiting to commit, rows, incidents.

Shared by both backends and by everything that reads a store; no database code here.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from cxpulse.v1.kinds import KINDS
from cxpulse.v1.payload import SampleBatch


@dataclass(frozen=True)
class AgentInfo:
    agent_id: str
    host: str = ""
    os_user: str = ""
    os: str = ""
    agent_version: str = ""
    site: str = ""
    # The user's full name as the desk's directory gives it ("Maria Silva"); personal like os_user.
    display_name: str = ""


@dataclass(frozen=True)
class UserChange:
    """From ``since_us`` (when the collector got the Hello saying so) this user was at the desk;
    an empty ``os_user`` means nobody was logged on. Kept per agent, one row per change."""

    since_us: int
    os_user: str
    display_name: str


MAX_SEARCH_WORDS = 8  # words of a query matched against user names: bounds the SQL


def fold(text: str) -> str:
    """Text as the search compares it: accents dropped, case folded, anything not a letter or digit a
    space ("João Conceição" -> "joao conceicao", "CORP\\msilva" -> "corp msilva")."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join("".join(c if c.isalnum() else " " for c in plain.casefold()).split())


def user_key(os_user: str, display_name: str) -> str:
    """The stored search key of a desk user: login and display name folded, space-delimited."""
    return f" {fold(os_user)} {fold(display_name)} "


def search_words(query: str) -> list[str]:
    """LIKE patterns for the folded words of a query: an agent matches when every one is in its user
    key (a name in either order, "silva" alone, "Conceicao" for "Conceição"). Folded words hold
    letters and digits only, so no LIKE wildcard can come from the query."""
    return [f"%{w}%" for w in fold(query).split()[:MAX_SEARCH_WORDS]]


@dataclass(frozen=True)
class AgentRecord:
    key: int
    info: AgentInfo
    first_seen_us: int
    last_seen_us: int


@dataclass
class PendingBatch:
    """A validated batch waiting for its commit; ``stored`` is filled by the store."""

    agent_key: int
    epoch: int
    seq: int
    batch: SampleBatch
    # Which ingest stream sent it: once a commit of a stream fails, its later batches must not
    # commit either, or the committed seq would jump over the failed one and it would be lost.
    stream: int = 0
    stored: bool | None = None
    committed_seq: int = 0
    # The payload bytes as received, stored as the batch's landing row (store/raw.py); None: the
    # store encodes the batch itself (tests, scenario loaders).
    payload: bytes | None = None


@dataclass(frozen=True)
class RttRow:
    target: str
    address: str
    method: str
    ts_us: int
    rtt_us: int | None
    hop: int | None = None


@dataclass(frozen=True)
class Row:
    """One sample of any kind; ``values`` holds the kind's columns (cxpulse.v1.kinds)."""

    target: str
    address: str
    method: str
    hop: int | None
    ts_us: int
    values: dict


# score/kept.py's caches: (agent, minute, block or hour start) -> (digest, data), in both stores.
KEPT_TABLES = ("minute_scores", "block_merges", "hour_merges")


class KeptTables:
    """The kept scores and merges of a store, over its ``_kept(table, ...)`` and ``_keep(table, rows)``."""

    def kept_scores(
        self, since_us: int, until_us: int, agent_key: int | None = None
    ) -> dict[tuple[int, int], tuple[bytes, bytes]]:
        return self._kept("minute_scores", since_us, until_us, agent_key)

    def keep_scores(self, rows: list[tuple[int, int, bytes, bytes]]) -> None:
        self._keep("minute_scores", rows)

    def kept_merges(
        self, since_us: int, until_us: int, agent_key: int | None = None
    ) -> dict[tuple[int, int], tuple[bytes, bytes]]:
        return self._kept("block_merges", since_us, until_us, agent_key)

    def keep_merges(self, rows: list[tuple[int, int, bytes, bytes]]) -> None:
        self._keep("block_merges", rows)

    def kept_hour_merges(
        self, since_us: int, until_us: int, agent_key: int | None = None
    ) -> dict[tuple[int, int], tuple[bytes, bytes]]:
        return self._kept("hour_merges", since_us, until_us, agent_key)

    def keep_hour_merges(self, rows: list[tuple[int, int, bytes, bytes]]) -> None:
        self._keep("hour_merges", rows)

    def _kept(
        self, table: str, since_us: int, until_us: int, agent_key: int | None
    ) -> dict[tuple[int, int], tuple[bytes, bytes]]:
        raise NotImplementedError  # each backend's own read

    def _keep(self, table: str, rows: list[tuple[int, int, bytes, bytes]]) -> None:
        raise NotImplementedError  # each backend's own write


@dataclass
class StoreStats:
    agents: int = 0
    samples: int = 0
    batches: dict[str, int] = field(default_factory=dict)


@dataclass
class IncidentRecord:
    """An incident across agents (issue 4): a platform (an app, ``scope`` its name) or a site.

    ``start_us`` .. ``last_us`` spans the degraded minutes seen so far; ``end_us`` is None while
    the incident is open and set to ``last_us`` when it closes; ``detected_us`` is when it was
    opened. ``agents`` maps each affected agent's key to its first and last degraded minute.
    """

    id: int | None
    kind: str
    scope: str
    start_us: int
    last_us: int
    end_us: int | None
    detected_us: int
    evidence: str = ""
    agents: dict[int, tuple[int, int]] = field(default_factory=dict)


# Raw data kinds a store keeps (and retention deletes by): the payload's sample kinds, then events
# and path snapshots; the (table, time column) of each, the same in both stores' schemas.
RAW_TABLES: dict[str, tuple[str, str]] = {
    **{k: (f"samples_{k}", "ts_us") for k in KINDS},
    "events": ("events", "coalesce(end_us, start_us)"),
    "paths": ("paths", "ts_us"),
}
