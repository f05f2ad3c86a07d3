"""Table definitions (SQLAlchemy Core) and the column types that keep instants UTC-aware."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

# Inbox row states; dead rows keep the error that parked them.
PENDING, DONE, DEAD = "pending", "done", "dead"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that refuses naive datetimes and always reads back as aware UTC.

    PostgreSQL stores `timestamptz`; SQLite has no time zone type and returns
    naive values, so instants are stored there as naive UTC text (which also
    sorts correctly) and get `tzinfo=UTC` back on read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected an aware datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass an aware one (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact); plain JSON text elsewhere.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY (https://www.sqlite.org/autoinc.html).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

inbox_events = sa.Table(
    "inbox_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("dedupe_key", sa.String(255), nullable=False),
    sa.Column("ticket_id", sa.String(64), nullable=False),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("payload", JSONType, nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=PENDING),
    sa.Column("processed_at", UTCDateTime(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.UniqueConstraint("source", "dedupe_key", name="uq_inbox_events_source_dedupe_key"),
    sa.CheckConstraint("status IN ('pending', 'done', 'dead')", name="ck_inbox_events_status"),
    sa.Index("ix_inbox_events_ticket", "source", "ticket_id", "status"),
    sa.Index("ix_inbox_events_status", "status"),
)

ticket_work = sa.Table(
    "ticket_work",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("ticket_id", sa.String(64), primary_key=True),
    sa.Column("queued_at", UTCDateTime(), nullable=False),
    sa.Column("available_at", UTCDateTime(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    # Bumped by every enqueue/request_sync; compared with lease_generation on complete.
    sa.Column("generation", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("reason", sa.String(128), nullable=True),
    sa.Column("lease_token", sa.String(64), nullable=True),
    sa.Column("leased_by", sa.String(255), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("lease_generation", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("dead", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("dead_at", UTCDateTime(), nullable=True),
    sa.Index("ix_ticket_work_available", "dead", "available_at"),
    sa.Index("ix_ticket_work_dead_at", "dead_at"),
)

ticket_snapshots = sa.Table(
    "ticket_snapshots",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("ticket_id", sa.String(64), primary_key=True),
    sa.Column("ticket", JSONType, nullable=False),
    sa.Column("decision", JSONType, nullable=False),
    sa.Column("next_check", UTCDateTime(), nullable=True),
    sa.Column("rules_version", sa.String(128), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_ticket_snapshots_next_check", "next_check"),
)

bot_actions = sa.Table(
    "bot_actions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("ticket_id", sa.String(64), nullable=False),
    sa.Column("rule", sa.String(255), nullable=False),
    sa.Column("rules_version", sa.String(128), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("before", JSONType, nullable=True),
    sa.Column("after", JSONType, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_bot_actions_ticket", "source", "ticket_id"),
)

sync_cursors = sa.Table(
    "sync_cursors",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# Every ticket update the bot makes (or is about to make), for the shared write
# budget: rows older than the longest window are pruned as new ones arrive.
write_log = sa.Table(
    "write_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("ticket_id", sa.String(64), nullable=False),
    sa.Column("units", sa.Integer(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_write_log_source_at", "source", "at"),
    sa.Index("ix_write_log_ticket", "source", "ticket_id", "at"),
)

# Named leases that keep one sweep or reconciliation running at a time on
# SQLite (PostgreSQL uses advisory locks instead, which end with the session).
job_leases = sa.Table(
    "job_leases",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
)

# Ticket histories read from the helpdesk for simulations and SLA reports
# (jobs/history.py): one vendor-neutral timeline document per ticket, and the
# spans of time whose tickets were read completely, so a second run over the
# same window makes no vendor calls.
history_tickets = sa.Table(
    "history_tickets",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("ticket_id", sa.String(64), primary_key=True),
    sa.Column("document", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("last_event_at", UTCDateTime(), nullable=False),
    sa.Column("fetched_at", UTCDateTime(), nullable=False),
    sa.Index("ix_history_tickets_window", "source", "last_event_at"),
)

history_coverage = sa.Table(
    "history_coverage",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    # The account the rows were read from (API root), so another helpdesk is never served them.
    sa.Column("account", sa.String(255), nullable=False),
    sa.Column("covered_from", UTCDateTime(), nullable=False),
    sa.Column("covered_to", UTCDateTime(), nullable=False),
    sa.Column("state", JSONType, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)
