"""Write budget log and job leases, for sweeps, reconciliation and the shared write budget.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-15

Written by hand, with types spelled out (see 0001); tests/test_store.py checks
that the migrations and store/models.py agree.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def instant(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "write_log",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("ticket_id", sa.String(64), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        instant("at", nullable=False),
    )
    op.create_index("ix_write_log_source_at", "write_log", ["source", "at"])
    op.create_index("ix_write_log_ticket", "write_log", ["source", "ticket_id", "at"])

    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        instant("expires_at", nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
    op.drop_index("ix_write_log_ticket", table_name="write_log")
    op.drop_index("ix_write_log_source_at", table_name="write_log")
    op.drop_table("write_log")
