"""A fresh store on each backend for tests: the ``store_url`` and ``store`` fixtures (shared by conftest).

PostgreSQL needs ``CXPULSE_TEST_POSTGRES`` and gets a fresh schema per test, dropped afterwards;
without the variable it is skipped (a failure under CXPULSE_REQUIRE_ALL=1).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest

from cxpulse.collector.store import open_store
from tests.requirements import require

BACKENDS = ["sqlite", "postgres"]


def postgres_url() -> str:
    """The test server's URL, or skip (fail under CXPULSE_REQUIRE_ALL=1) when none is given."""
    url = os.environ.get("CXPULSE_TEST_POSTGRES", "")
    require(bool(url), "PostgreSQL tests need CXPULSE_TEST_POSTGRES=postgresql://user@127.0.0.1:5432/db")
    return url


@contextmanager
def fresh_schema(url: str) -> Iterator[tuple[str, str]]:
    """A unique schema name and a URL that selects it; the schema is dropped on exit."""
    import psycopg

    schema = f"cxpulse_test_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in url else "?"
    try:
        yield schema, f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path) -> Iterator[str]:
    """Where a fresh, empty store lives: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "c.sqlite")
        return
    with fresh_schema(postgres_url()) as (_, url):
        yield url


@pytest.fixture
def store(store_url):
    st = open_store(store_url)
    yield st
    st.close()
