"""The kept "is it just me?" rows in the store's database: per minute, one row of what it was computed from,
and one per group (site, ISP name, ISP hop address, platform, ...) holding its desks' keys; migrations of its own.
Design notes: docs/collector-internals.md, "collector/lookup/others.py".
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable, Sequence

from .db import Db

__all__ = ["GroupRow", "KeptGroupsTable", "table_for"]

log = logging.getLogger("cxpulse.collector.store")

_MIGRATE_LOCK_CLASS = 0x63787067  # "cxpg": advisory lock namespace for these tables
_MIGRATIONS = (
    """CREATE TABLE IF NOT EXISTS kept_group_minutes (
        minute_us {bigint} PRIMARY KEY,
        base {blob} NOT NULL,
        digest {blob} NOT NULL,
        written_us {bigint} NOT NULL
    );
    CREATE TABLE IF NOT EXISTS kept_groups (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        minute_us {bigint} NOT NULL,
        keys {blob} NOT NULL,
        PRIMARY KEY (kind, name, minute_us)
    );
    CREATE INDEX IF NOT EXISTS kept_groups_minute ON kept_groups (minute_us)""",
)
_INSERT_ROWS = 200  # group rows per INSERT statement

# (minute, base digest, inputs digest, {(kind, name): packed keys})
GroupRow = tuple[int, bytes, bytes, dict[tuple[str, str], bytes]]


class KeptGroupsTable:
    """``url``: the store's (a SQLite path, ``sqlite:///path`` or ``postgresql://``)."""

    def __init__(self, url: str):
        self._db = Db(url, role="kept-groups")
        blob = "BYTEA" if self._db.pg else "BLOB"
        self._db.migrate(
            "kept_groups_migrations",
            [m.replace("{blob}", blob) for m in _MIGRATIONS],
            _MIGRATE_LOCK_CLASS,
            "kept groups",
        )

    def close(self) -> None:
        self._db.close()

    def read(
        self, since_us: int, until_us: int, base: bytes, groups: Iterable[tuple[str, str]]
    ) -> tuple[set[int], dict[tuple[str, str], dict[int, bytes]]]:
        """(minutes kept with ``base``, group -> minute -> packed keys) in [since, until): one query."""
        parts = [
            "SELECT minute_us, '' AS kind, '' AS name, base FROM kept_group_minutes"
            " WHERE minute_us >= ? AND minute_us < ?"
        ]
        args: list = [since_us, until_us]
        for kind, name in dict.fromkeys(groups):
            parts.append(
                "SELECT minute_us, kind, name, keys FROM kept_groups"
                " WHERE kind = ? AND name = ? AND minute_us >= ? AND minute_us < ?"
            )
            args += [kind, name, since_us, until_us]
        present: set[int] = set()
        out: dict[tuple[str, str], dict[int, bytes]] = {}
        rows = self._db.query(" UNION ALL ".join(parts), args)
        for minute, kind, name, data in rows:
            if not kind:
                if bytes(data) == base:
                    present.add(minute)
                continue
            out.setdefault((kind, name), {})[minute] = bytes(data)
        for got in out.values():
            for m in [m for m in got if m not in present]:
                del got[m]
        return present, out

    def digests(self, since_us: int, until_us: int) -> dict[int, tuple[bytes, bytes]]:
        """minute -> (base, inputs digest) of the kept minutes in [since, until)."""
        rows = self._db.query(
            "SELECT minute_us, base, digest FROM kept_group_minutes WHERE minute_us >= ? AND minute_us < ?",
            (since_us, until_us),
        )
        return {m: (bytes(b), bytes(d)) for m, b, d in rows}

    def write(self, rows: Sequence[GroupRow]) -> int:
        """Replace the kept minutes of ``rows`` with them, in one transaction; how many."""
        if not rows:
            return 0
        now = time.time_ns() // 1000
        with self._db.transaction():
            for minute, base, digest, groups in rows:
                self._db.execute("DELETE FROM kept_groups WHERE minute_us = ?", (minute,))
                self._db.execute("DELETE FROM kept_group_minutes WHERE minute_us = ?", (minute,))
                self._db.execute(
                    "INSERT INTO kept_group_minutes (minute_us, base, digest, written_us) VALUES (?, ?, ?, ?)",
                    (minute, base, digest, now),
                )
                items = [(kind, name, minute, keys) for (kind, name), keys in groups.items()]
                for i in range(0, len(items), _INSERT_ROWS):
                    chunk = items[i : i + _INSERT_ROWS]
                    self._db.execute(
                        "INSERT INTO kept_groups (kind, name, minute_us, keys) VALUES "
                        + ", ".join(["(?, ?, ?, ?)"] * len(chunk))
                        + " ON CONFLICT (kind, name, minute_us) DO UPDATE SET keys = excluded.keys",
                        [v for row in chunk for v in row],
                    )
        return len(rows)

    def delete_before(self, cutoff_us: int, minutes: int = 60) -> int:
        """Delete the oldest kept minutes (at most ``minutes``) before ``cutoff_us``; how many went."""
        got = self._db.query(
            "SELECT minute_us FROM kept_group_minutes WHERE minute_us < ? ORDER BY minute_us LIMIT ?",
            (cutoff_us, int(minutes)),
        )
        if not got:
            return 0
        last = got[-1][0]
        with self._db.transaction():
            self._db.execute("DELETE FROM kept_groups WHERE minute_us <= ?", (last,))
            self._db.execute("DELETE FROM kept_group_minutes WHERE minute_us <= ?", (last,))
        return len(got)


_tables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_tables_lock = threading.Lock()


def table_for(store) -> KeptGroupsTable | None:
    """The kept-groups table of ``store``'s database, opened once per store object (closed when
    it goes); None when it cannot be opened (a read-only store): callers compute instead."""
    with _tables_lock:
        if store in _tables:
            return _tables[store]
        url = getattr(store, "url", None) or getattr(store, "path", None)
        table = None
        if isinstance(url, str):
            try:
                table = KeptGroupsTable(url)
            except Exception as exc:  # never the view's failure: it computes what it reads
                log.warning("kept groups unavailable, computing them per view: %s", exc)
        if table is not None:
            weakref.finalize(store, table.close)
        _tables[store] = table
        return table
