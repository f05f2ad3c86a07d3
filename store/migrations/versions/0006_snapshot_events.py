"""Snapshot events in append-only chunks: ticket_snapshot_events, and the snapshot's descriptor.

Revision ID: 0006_snapshot_events
Revises: 0005_history_cache
Create Date: 2026-12-02

Written by hand, with types spelled out (see 0001); tests/test_store.py checks
that the migrations and store/models.py agree.

Rows written before keep their events inside `ticket` (the descriptor columns
NULL) and read back as they are; the next save of such a ticket moves its
events into a chunk. Nothing is rewritten here, so the upgrade is quick on a
large table. The downgrade puts the events back into the documents.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006_snapshot_events"
down_revision = "0005_history_cache"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    # Nullable columns without a default: a catalogue change on both databases, no table rewrite.
    op.add_column("ticket_snapshots", sa.Column("events_count", sa.Integer(), nullable=True))
    op.add_column("ticket_snapshots", sa.Column("events_digest", sa.String(32), nullable=True))
    op.add_column("ticket_snapshots", sa.Column("events_chunks", sa.Integer(), nullable=True))
    op.create_table(
        "ticket_snapshot_events",
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("ticket_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("events", JSON, nullable=False),
    )


def downgrade() -> None:
    from store.snapshots import inline_all

    inline_all(op.get_bind())
    op.drop_table("ticket_snapshot_events")
    with op.batch_alter_table("ticket_snapshots") as batch:
        batch.drop_column("events_chunks")
        batch.drop_column("events_digest")
        batch.drop_column("events_count")
