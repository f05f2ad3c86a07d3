"""Alembic, driven from code: `upgrade(engine)` brings the schema to head, safely and repeatably."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

from store.engine import write_transaction

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")

# alembic.context and alembic.op are module-level proxies installed per command, so
# two commands running in one process at once would trample each other's.
_ONE_COMMAND_AT_A_TIME = threading.Lock()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config for store/migrations that runs on `connection` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to `revision` in one transaction, serialised across processes.

    Every process (and thread) may call this at start: migrations/env.py takes a
    PostgreSQL advisory lock (SQLite: this BEGIN IMMEDIATE) so concurrent callers
    wait for the first, which leaves them nothing to do. DDL is transactional on both,
    so a failed upgrade leaves the schema as it was.
    """
    with _ONE_COMMAND_AT_A_TIME, write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            # The store's statement and lock timeouts bound the webhook path; a
            # migration (or waiting for another process's) may take longer.
            conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
            conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the schema to `revision` (e.g. "base"); for development and tests."""
    with _ONE_COMMAND_AT_A_TIME, write_transaction(engine) as conn:
        command.downgrade(alembic_config(conn), revision)
