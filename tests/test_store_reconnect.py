"""A database that dropped the pooled connections costs no webhook and no claim."""

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def drop_connections(store) -> None:
    """What a PostgreSQL restart does to the pool: every backend of the database goes."""
    killer = sa.create_engine(store.engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with killer.connect() as conn:
        dropped = conn.execute(
            sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"),
            {"db": store.engine.url.database},
        ).scalar()
    killer.dispose()
    assert dropped >= 1


def test_enqueue_and_claim_survive_dropped_connections(store):
    if store.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL drops connections on restart; SQLite has none to drop")
    assert store.enqueue(source="zendesk", dedupe_key="a", ticket_id="1", event_type="x", payload={},
                         received_at=NOW)
    drop_connections(store)
    assert store.enqueue(source="zendesk", dedupe_key="b", ticket_id="2", event_type="x", payload={},
                         received_at=NOW)
    drop_connections(store)
    assert {c.ticket_id for c in store.claim("w", NOW)} == {"1", "2"}
