"""Versions of the central configuration, kept in the collector's own database.
Collectors sharing one PostgreSQL follow the newest row; storing the newest text again is a no-op.
Design notes: docs/collector-internals.md, "collector/config/versions.py".
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from ..store.db import Db

__all__ = ["ConfigVersion", "VersionStore"]

_DDL = """CREATE TABLE IF NOT EXISTS central_config (
    version {bigint} PRIMARY KEY,
    sha256 TEXT NOT NULL,
    toml TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_us {bigint} NOT NULL
)"""


@dataclass(frozen=True)
class ConfigVersion:
    version: int
    toml: str
    actor: str
    created_us: int
    sha256: str


class VersionStore:
    """``url``: a SQLite path, ``sqlite:///path`` or ``postgresql://`` (the store's URL forms)."""

    def __init__(self, url: str):
        self._db = Db(url, role="config")
        self.url = url
        self.pg = self._db.pg
        self._db.ensure_schema()
        self._db.execute(_DDL.format(bigint=self._db.bigint))

    def close(self) -> None:
        self._db.close()

    def latest(self) -> ConfigVersion | None:
        rows = self._db.query(
            "SELECT version, toml, actor, created_us, sha256 FROM central_config ORDER BY version DESC LIMIT 1"
        )
        return ConfigVersion(*rows[0]) if rows else None

    def history(self, limit: int = 50) -> list[ConfigVersion]:
        q = "SELECT version, toml, actor, created_us, sha256 FROM central_config ORDER BY version DESC LIMIT " + str(
            int(limit)
        )
        return [ConfigVersion(*r) for r in self._db.query(q)]

    def add(self, toml_text: str, actor: str) -> tuple[int, bool]:
        """Store ``toml_text`` as the next version unless it equals the newest: (version, created)."""
        sha = hashlib.sha256(toml_text.encode()).hexdigest()
        for _ in range(20):  # two collectors adding at once: the loser of the primary key tries again
            latest = self.latest()
            if latest is not None and latest.sha256 == sha:
                return latest.version, False
            version = (latest.version if latest else 0) + 1
            sql = "INSERT INTO central_config (version, sha256, toml, actor, created_us) VALUES (?, ?, ?, ?, ?)"
            try:
                self._db.execute(sql, (version, sha, toml_text, actor[:200], time.time_ns() // 1000))
                return version, True
            except Exception as exc:
                if "unique" not in str(exc).lower() and "duplicate" not in str(exc).lower():
                    raise
        raise RuntimeError("could not store a config version: the table is changing too fast")
