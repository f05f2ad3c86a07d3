"""Shared fixtures: `database_url` and a migrated `store`, each on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from store import Store
from store.engine import normalize_url

# A live server to create throwaway databases on, e.g.
# postgresql+psycopg://postgres@127.0.0.1:5432/test; PostgreSQL tests skip without it.
POSTGRES_ENV = "TEST_DATABASE_URL"


def _fresh_postgres_database(admin_url: str) -> Iterator[str]:
    """Create a uniquely named database (others test on the same server), drop it after."""
    admin = sa.create_engine(
        normalize_url(admin_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    name = f"deskpilot_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            # template0 accepts no connections, so it is never "being accessed by other users".
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        try:
            yield normalize_url(admin_url).set(database=name).render_as_string(
                hide_password=False
            )
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty, unmigrated database URL: a tmp_path SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'deskpilot.db'}"
        return
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    yield from _fresh_postgres_database(admin_url)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated Store on `database_url`, disposed after the test."""
    instance = Store(database_url)
    instance.migrate()
    try:
        yield instance
    finally:
        instance.engine.dispose()
