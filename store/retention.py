"""Retention of the audit trail: bot_actions, snapshots and finished outbox rows older than a cutoff.

Open tickets are never purged: a ticket whose stored snapshot is not solved
or closed keeps its whole history, as does any ticket still in the work
queue (queued, leased or parked), or with an unfinished outbox write. A
purged snapshot takes its event chunks with it (store/snapshots.py); the
status is read from its `ticket` document, which the events are not part of.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from store.engine import write_transaction
from store.models import (
    OUTBOX_PENDING,
    bot_actions,
    outbox_parts,
    outbox_writes,
    ticket_snapshots,
    ticket_work,
)
from store.snapshots import forget as forget_events

FINISHED_STATUSES = ("solved", "closed")


@dataclass(frozen=True)
class Purged:
    actions: int = 0
    snapshots: int = 0
    outbox: int = 0

    def total(self) -> int:
        return self.actions + self.snapshots + self.outbox


def _status(column: sa.Column) -> sa.ColumnElement:
    return column["status"].as_string()


def _kept(source: sa.ColumnElement, ticket_id: sa.ColumnElement) -> sa.ColumnElement:
    """True for a ticket whose history stays: open, queued, or with an unfinished write."""
    s, w, o = ticket_snapshots.alias("kept_s"), ticket_work.alias("kept_w"), outbox_writes.alias("kept_o")
    open_snapshot = sa.exists().where(s.c.source == source, s.c.ticket_id == ticket_id,
                                      sa.or_(_status(s.c.ticket).is_(None),
                                             _status(s.c.ticket).not_in(FINISHED_STATUSES)))
    queued = sa.exists().where(w.c.source == source, w.c.ticket_id == ticket_id)
    owed = sa.exists().where(o.c.source == source, o.c.ticket_id == ticket_id, o.c.state == OUTBOX_PENDING)
    return sa.or_(open_snapshot, queued, owed)


def purge(engine: Engine, before: datetime, batch: int = 5000) -> Purged:
    """Delete audit rows, snapshots and finished outbox writes older than `before`, in batches."""
    a, s, o, p = bot_actions, ticket_snapshots, outbox_writes, outbox_parts
    actions = _batched(engine, lambda conn: [r.id for r in conn.execute(
        sa.select(a.c.id).where(a.c.created_at < before, ~_kept(a.c.source, a.c.ticket_id)).limit(batch))],
        lambda conn, ids: conn.execute(sa.delete(a).where(a.c.id.in_(ids))).rowcount, batch)

    def old_writes(conn) -> list[int]:
        return [r.id for r in conn.execute(
            sa.select(o.c.id).where(o.c.state != OUTBOX_PENDING, o.c.finished_at < before,
                                    ~_kept(o.c.source, o.c.ticket_id)).limit(batch))]

    def drop_writes(conn, ids: list[int]) -> int:
        conn.execute(sa.delete(p).where(p.c.write_id.in_(ids)))
        return conn.execute(sa.delete(o).where(o.c.id.in_(ids))).rowcount

    outbox = _batched(engine, old_writes, drop_writes, batch)

    # Snapshots last: while one exists it is what says whether the ticket is open.
    w = ticket_work
    queued = sa.exists().where(w.c.source == s.c.source, w.c.ticket_id == s.c.ticket_id)
    snapshots = _batched(engine, lambda conn: [tuple(r) for r in conn.execute(
        sa.select(s.c.source, s.c.ticket_id).where(
            s.c.updated_at < before, _status(s.c.ticket).in_(FINISHED_STATUSES), ~queued).limit(batch))],
        _drop_snapshots, batch)
    return Purged(actions, snapshots, outbox)


def _drop_snapshots(conn, keys: list[tuple[str, str]]) -> int:
    """Delete these snapshots and their event chunks."""
    s = ticket_snapshots
    forget_events(conn, keys)
    return conn.execute(sa.delete(s).where(sa.tuple_(s.c.source, s.c.ticket_id).in_(keys))).rowcount


def _batched(engine: Engine, select, delete, batch: int) -> int:
    total = 0
    while True:
        with write_transaction(engine) as conn:
            keys = select(conn)
            if keys:
                for start in range(0, len(keys), 500):
                    total += delete(conn, keys[start:start + 500])
        if len(keys) < batch:
            return total
