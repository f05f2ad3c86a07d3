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
    # A long history's "events" live in ticket_snapshot_events, appended as they come; `ticket`
    # is then the document without them. events_count is how many are stored, events_digest a
    # digest of them in order (store/snapshots.py) so a save tells an extension from a rewrite
    # without reading them, events_chunks how many rows hold them. All three NULL: `ticket` is
    # the whole document (a short history, or a row written before these columns).
    sa.Column("events_count", sa.Integer(), nullable=True),
    sa.Column("events_digest", sa.String(32), nullable=True),
    sa.Column("events_chunks", sa.Integer(), nullable=True),
    sa.Index("ix_ticket_snapshots_next_check", "next_check"),
)

# A snapshot's events in append-only chunks: `seq` is the position of the chunk's first
# event in the ticket's list, `events` the [at, type, author, public, status, bot] arrays
# it adds. A solved or closed ticket's chunks are folded into one.
ticket_snapshot_events = sa.Table(
    "ticket_snapshot_events",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("ticket_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer(), primary_key=True),
    sa.Column("events", JSONType, nullable=False),
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

# The outbox: every decided write is recorded here before the first vendor call,
# one row per ticket write and one per vendor call ("part"), each marked done when
# the vendor confirms it. A retry, a restart or another worker completes exactly
# the parts not done; the audit rows are written with the write's completion.
OUTBOX_PENDING, OUTBOX_DONE, OUTBOX_CANCELLED = "pending", "done", "cancelled"

outbox_writes = sa.Table(
    "outbox_writes",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("ticket_id", sa.String(64), nullable=False),
    sa.Column("rules_version", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default=OUTBOX_PENDING),
    # The audit rows ({"rule", "type", "before", "after"}) this write records when done.
    sa.Column("actions", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),  # why it was cancelled
    sa.CheckConstraint("state IN ('pending', 'done', 'cancelled')", name="ck_outbox_writes_state"),
    sa.Index("ix_outbox_writes_ticket", "source", "ticket_id", "state"),
    sa.Index("ix_outbox_writes_state", "state", "finished_at"),
)

outbox_parts = sa.Table(
    "outbox_parts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("write_id", BigId, nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),  # update, note, reply, update+reply, bulk, ...
    sa.Column("changes", JSONType, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default=OUTBOX_PENDING),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("job_id", sa.String(128), nullable=True),
    sa.Column("sent_at", UTCDateTime(), nullable=True),
    sa.Column("done_at", UTCDateTime(), nullable=True),
    sa.CheckConstraint("state IN ('pending', 'done', 'cancelled')", name="ck_outbox_parts_state"),
    sa.UniqueConstraint("write_id", "seq", name="uq_outbox_parts_write_seq"),
)


# -- the admin console ------------------------------------------------------------------

# Console administrators; the password is a werkzeug.security hash, never the password.
console_users = sa.Table(
    "console_users",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(255), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_login_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("email", name="uq_console_users_email"),
)

# Failed console logins, shared by every web process, for the login rate limit.
console_login_failures = sa.Table(
    "console_login_failures",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(255), nullable=False),  # "email:<address>" or "ip:<address>"
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_console_login_failures_key_at", "key", "at"),
)

# The text of each rules version that was in force, for the console's diff.
rules_versions = sa.Table(
    "rules_versions",
    metadata,
    sa.Column("version", sa.String(128), primary_key=True),
    sa.Column("files", JSONType, nullable=False),  # [[name, text], ...] in load order
    sa.Column("first_seen", UTCDateTime(), nullable=False),
)

# One row per snapshot, the board's columns extracted from its decision so that
# "open tickets by next breach" is an index range scan (kept by store/board.py).
ticket_board = sa.Table(
    "ticket_board",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("ticket_id", sa.String(64), primary_key=True),
    sa.Column("is_open", sa.Boolean(), nullable=False),
    sa.Column("status", sa.String(32), nullable=True),
    sa.Column("priority", sa.String(16), nullable=True),
    sa.Column("policy", sa.String(255), nullable=True),
    sa.Column("group_name", sa.String(255), nullable=True),
    sa.Column("subject", sa.String(255), nullable=True),
    # The earliest due instant of a running (or breached, not yet met) target.
    sa.Column("next_due", UTCDateTime(), nullable=True),
    sa.Column("next_target", sa.String(32), nullable=True),
    sa.Column("warn_at", UTCDateTime(), nullable=True),
    sa.Column("paused", sa.Boolean(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # Covers "open tickets by next breach" with its tie-break, and each filter's values.
    sa.Index("ix_ticket_board_open_due", "is_open", "next_due", "source", "ticket_id"),
    sa.Index("ix_ticket_board_group", "is_open", "group_name"),
    sa.Index("ix_ticket_board_policy", "is_open", "policy"),
    sa.Index("ix_ticket_board_priority", "is_open", "priority"),
)

# Each SLA target's outcome, for compliance and breaches per day.
ticket_board_targets = sa.Table(
    "ticket_board_targets",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("ticket_id", sa.String(64), primary_key=True),
    sa.Column("target", sa.String(32), primary_key=True),
    sa.Column("priority", sa.String(16), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("due", UTCDateTime(), nullable=True),
    sa.Column("achieved_at", UTCDateTime(), nullable=True),
    # Cover compliance and breaches per day (index-only scans).
    sa.Index("ix_ticket_board_targets_due", "due", "achieved_at", "target", "priority"),
    sa.Index("ix_ticket_board_targets_achieved", "achieved_at", "due", "target", "priority"),
)

# Helpdesk API responses per minute, flushed by the processes that call the API,
# for the console's "vendor calls and 429s in the last hour".
console_vendor_calls = sa.Table(
    "console_vendor_calls",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("minute", UTCDateTime(), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True),  # 2xx, 3xx, 4xx, 429, 5xx, error
    sa.Column("count", sa.Integer(), nullable=False),
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
