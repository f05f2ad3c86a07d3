"""Alembic environment: runs on the connection store.migrate passes in, or on DATABASE_URL (CLI)."""

from __future__ import annotations

import os
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

from store.engine import create_store_engine, write_transaction
from store.models import metadata

config = context.config
target_metadata = metadata

if config.config_file_name and config.attributes.get("connection") is None:
    # CLI run: show Alembic's progress as store/alembic.ini configures it.
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Any constant works; it only has to be the same in every process that migrates.
_PG_MIGRATION_LOCK = 0x6465736B70696C6F  # "deskpilo"


def _cli_url() -> str:
    url = os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "no database to migrate: set the DATABASE_URL environment variable "
            "(or sqlalchemy.url in store/alembic.ini)"
        )
    return url


def _migrate(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Concurrent starters queue here; the first upgrades, the rest find nothing to do
        # (https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS).
        # SQLite needs nothing: the transaction began with BEGIN IMMEDIATE.
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Emit SQL to stdout (`alembic upgrade head --sql`) instead of running it."""
    context.configure(
        url=_cli_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # store.migrate: already inside its write transaction, committed by the caller.
        _migrate(connection)
        return
    engine = create_store_engine(_cli_url())
    try:
        with write_transaction(engine) as conn:
            _migrate(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
