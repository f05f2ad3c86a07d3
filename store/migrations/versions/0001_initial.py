"""Initial schema: inbox, per-ticket work queue, snapshots, bot actions, sync cursors.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written by hand. Types are spelled out here rather than imported from
store.models, so later model changes cannot rewrite history;
tests/test_store.py checks that the two agree.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def instant(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "inbox_events",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("ticket_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        instant("received_at", nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        instant("processed_at", nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.UniqueConstraint("source", "dedupe_key", name="uq_inbox_events_source_dedupe_key"),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'dead')", name="ck_inbox_events_status"
        ),
    )
    op.create_index("ix_inbox_events_ticket", "inbox_events", ["source", "ticket_id", "status"])
    op.create_index("ix_inbox_events_status", "inbox_events", ["status"])

    op.create_table(
        "ticket_work",
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("ticket_id", sa.String(64), primary_key=True),
        instant("queued_at", nullable=False),
        instant("available_at", nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("generation", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("reason", sa.String(128), nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("leased_by", sa.String(255), nullable=True),
        instant("lease_until", nullable=True),
        sa.Column("lease_generation", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("dead", sa.Boolean(), nullable=False, server_default=sa.false()),
        instant("dead_at", nullable=True),
    )
    op.create_index("ix_ticket_work_available", "ticket_work", ["dead", "available_at"])
    op.create_index("ix_ticket_work_dead_at", "ticket_work", ["dead_at"])

    op.create_table(
        "ticket_snapshots",
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("ticket_id", sa.String(64), primary_key=True),
        sa.Column("ticket", JSON, nullable=False),
        sa.Column("decision", JSON, nullable=False),
        instant("next_check", nullable=True),
        sa.Column("rules_version", sa.String(128), nullable=False),
        instant("updated_at", nullable=False),
    )
    op.create_index("ix_ticket_snapshots_next_check", "ticket_snapshots", ["next_check"])

    op.create_table(
        "bot_actions",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("ticket_id", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(255), nullable=False),
        sa.Column("rules_version", sa.String(128), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("before", JSON, nullable=True),
        sa.Column("after", JSON, nullable=True),
        instant("created_at", nullable=False),
    )
    op.create_index("ix_bot_actions_ticket", "bot_actions", ["source", "ticket_id"])

    op.create_table(
        "sync_cursors",
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        instant("updated_at", nullable=False),
    )


def downgrade() -> None:
    for table in ("sync_cursors", "bot_actions", "ticket_snapshots", "ticket_work", "inbox_events"):
        op.drop_table(table)
