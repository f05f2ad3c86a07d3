"""The admin console: its users, login failures, rules versions and the board's index tables.

Revision ID: 0004_console_users
Revises: 0003_outbox
Create Date: 2026-12-02

Written by hand, with types spelled out (see 0001); tests/test_store.py checks
that the migrations and store/models.py agree. Existing snapshots are indexed
for the board on the way up.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_console_users"
down_revision = "0003_outbox"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def instant(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        instant("created_at", nullable=False),
        instant("last_login_at", nullable=True),
        sa.UniqueConstraint("email", name="uq_console_users_email"),
    )
    op.create_table(
        "console_login_failures",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(255), nullable=False),
        instant("at", nullable=False),
    )
    op.create_index("ix_console_login_failures_key_at", "console_login_failures", ["key", "at"])
    op.create_table(
        "rules_versions",
        sa.Column("version", sa.String(128), primary_key=True),
        sa.Column("files", JSON, nullable=False),
        instant("first_seen", nullable=False),
    )
    op.create_table(
        "ticket_board",
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("ticket_id", sa.String(64), primary_key=True),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("priority", sa.String(16), nullable=True),
        sa.Column("policy", sa.String(255), nullable=True),
        sa.Column("group_name", sa.String(255), nullable=True),
        sa.Column("subject", sa.String(255), nullable=True),
        instant("next_due", nullable=True),
        sa.Column("next_target", sa.String(32), nullable=True),
        instant("warn_at", nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        instant("updated_at", nullable=False),
    )
    op.create_index("ix_ticket_board_open_due", "ticket_board", ["is_open", "next_due", "source", "ticket_id"])
    op.create_index("ix_ticket_board_group", "ticket_board", ["is_open", "group_name"])
    op.create_index("ix_ticket_board_policy", "ticket_board", ["is_open", "policy"])
    op.create_index("ix_ticket_board_priority", "ticket_board", ["is_open", "priority"])
    op.create_table(
        "ticket_board_targets",
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("ticket_id", sa.String(64), primary_key=True),
        sa.Column("target", sa.String(32), primary_key=True),
        sa.Column("priority", sa.String(16), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        instant("due", nullable=True),
        instant("achieved_at", nullable=True),
    )
    op.create_index("ix_ticket_board_targets_due", "ticket_board_targets",
                    ["due", "achieved_at", "target", "priority"])
    op.create_index("ix_ticket_board_targets_achieved", "ticket_board_targets",
                    ["achieved_at", "due", "target", "priority"])

    op.create_table(
        "console_vendor_calls",
        sa.Column("source", sa.String(32), nullable=False),
        instant("minute", nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "minute", "status"),
    )

    from store.board import rebuild

    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("console_vendor_calls")
    op.drop_index("ix_ticket_board_targets_achieved", table_name="ticket_board_targets")
    op.drop_index("ix_ticket_board_targets_due", table_name="ticket_board_targets")
    op.drop_table("ticket_board_targets")
    op.drop_index("ix_ticket_board_priority", table_name="ticket_board")
    op.drop_index("ix_ticket_board_policy", table_name="ticket_board")
    op.drop_index("ix_ticket_board_group", table_name="ticket_board")
    op.drop_index("ix_ticket_board_open_due", table_name="ticket_board")
    op.drop_table("ticket_board")
    op.drop_table("rules_versions")
    op.drop_index("ix_console_login_failures_key_at", table_name="console_login_failures")
    op.drop_table("console_login_failures")
    op.drop_table("console_users")
