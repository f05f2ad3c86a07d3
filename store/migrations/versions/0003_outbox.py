"""The outbox: decided ticket writes and their parts, recorded before any vendor call.

Revision ID: 0003_outbox
Revises: 0002
Create Date: 2026-12-02

Written by hand, with types spelled out (see 0001); tests/test_store.py checks
that the migrations and store/models.py agree.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003_outbox"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def instant(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "outbox_writes",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("ticket_id", sa.String(64), nullable=False),
        sa.Column("rules_version", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("actions", JSON, nullable=False),
        instant("created_at", nullable=False),
        instant("finished_at", nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'done', 'cancelled')", name="ck_outbox_writes_state"),
    )
    op.create_index("ix_outbox_writes_ticket", "outbox_writes", ["source", "ticket_id", "state"])
    op.create_index("ix_outbox_writes_state", "outbox_writes", ["state", "finished_at"])
    op.create_table(
        "outbox_parts",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("write_id", BIG_ID, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("changes", JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("job_id", sa.String(128), nullable=True),
        instant("sent_at", nullable=True),
        instant("done_at", nullable=True),
        sa.CheckConstraint("state IN ('pending', 'done', 'cancelled')", name="ck_outbox_parts_state"),
        sa.UniqueConstraint("write_id", "seq", name="uq_outbox_parts_write_seq"),
    )


def downgrade() -> None:
    op.drop_table("outbox_parts")
    op.drop_index("ix_outbox_writes_state", table_name="outbox_writes")
    op.drop_index("ix_outbox_writes_ticket", table_name="outbox_writes")
    op.drop_table("outbox_writes")
