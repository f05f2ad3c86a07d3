"""History cache for simulations and SLA reports: ticket timelines and the spans read.

Revision ID: 0005_history_cache
Revises: 0004_console_users
Create Date: 2026-12-02

Written by hand, with types spelled out (see 0001); tests/test_store.py checks
that the migrations and store/models.py agree.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005_history_cache"
down_revision = "0004_console_users"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def instant(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "history_tickets",
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("ticket_id", sa.String(64), primary_key=True),
        sa.Column("document", JSON, nullable=False),
        instant("created_at", nullable=False),
        instant("updated_at", nullable=False),
        instant("last_event_at", nullable=False),
        instant("fetched_at", nullable=False),
    )
    op.create_index("ix_history_tickets_window", "history_tickets", ["source", "last_event_at"])
    op.create_table(
        "history_coverage",
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("account", sa.String(255), nullable=False),
        instant("covered_from", nullable=False),
        instant("covered_to", nullable=False),
        sa.Column("state", JSON, nullable=False),
        instant("updated_at", nullable=False),
    )


def downgrade() -> None:
    op.drop_table("history_coverage")
    op.drop_index("ix_history_tickets_window", table_name="history_tickets")
    op.drop_table("history_tickets")
