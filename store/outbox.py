"""The outbox tables' operations: record a decided write, mark its parts, finish it with its audit rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from store.engine import insert_many, one_of, read_transaction, write_transaction
from store.models import (
    OUTBOX_CANCELLED,
    OUTBOX_DONE,
    OUTBOX_PENDING,
    bot_actions,
    outbox_parts,
    outbox_writes,
    ticket_work,
)

_CHUNK = 500


@dataclass
class OutboxPart:
    """One vendor call of a write: `changes` is what it sends (TicketChanges as a dict)."""

    id: int
    seq: int
    kind: str
    changes: dict[str, Any]
    state: str
    attempts: int
    job_id: str | None = None
    sent_at: datetime | None = None
    done_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.state == OUTBOX_DONE


@dataclass
class OutboxWrite:
    """A decided write: its rules version, the audit rows it records, and its parts in order."""

    id: int
    source: str
    ticket_id: str
    rules_version: str
    state: str
    actions: list[dict[str, Any]]
    created_at: datetime
    finished_at: datetime | None = None
    reason: str | None = None
    parts: list[OutboxPart] = field(default_factory=list)

    def remaining(self) -> list[OutboxPart]:
        return [part for part in self.parts if part.state == OUTBOX_PENDING]


@dataclass(frozen=True)
class NewWrite:
    """What `Outbox.record_many` stores for one ticket: audit rows and (kind, changes) per part."""

    ticket_id: str
    actions: list[dict[str, Any]]
    parts: list[tuple[str, dict[str, Any]]]


class Outbox:
    """The outbox on a store's engine (`Store.outbox`). Every method is one transaction,
    except on an outbox bound to a connection (`bound`), whose methods run in its transaction."""

    def __init__(self, engine: Engine, conn: Connection | None = None) -> None:
        self.engine = engine
        self._conn = conn

    def bound(self, conn: Connection) -> Outbox:
        """This outbox, its methods running inside `conn`'s transaction (committed by its owner)."""
        return Outbox(self.engine, conn)

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        if self._conn is not None:
            yield self._conn
            return
        with write_transaction(self.engine) as conn:
            yield conn

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        if self._conn is not None:
            yield self._conn
            return
        with read_transaction(self.engine) as conn:
            yield conn

    def record(self, source: str, ticket_id: str, *, rules_version: str, actions: list[dict],
               parts: Sequence[tuple[str, dict]], now: datetime) -> OutboxWrite:
        """Store a decided write before its first vendor call; returns it with its part ids."""
        [write] = self.record_many(source, [NewWrite(str(ticket_id), actions, list(parts))],
                                   rules_version=rules_version, now=now)
        return write

    def record_many(self, source: str, writes: Sequence[NewWrite], *, rules_version: str,
                    now: datetime, first_sent: bool = False) -> list[OutboxWrite]:
        """`record` for many tickets (a bulk close) in one transaction (two batched INSERTs).

        With first_sent, each write's first part is stored as `sent` already (one attempt,
        sent now): the caller calls the vendor for it right after this commits.
        """
        for new in writes:
            if not new.parts:
                raise ValueError(f"ticket {new.ticket_id}: a write needs at least one part")
        if not writes:
            return []
        w, p = outbox_writes, outbox_parts
        write_rows = [{"source": source, "ticket_id": str(new.ticket_id), "rules_version": rules_version,
                       "state": OUTBOX_PENDING, "actions": new.actions, "created_at": now} for new in writes]
        tickets = [row["ticket_id"] for row in write_rows]
        sent_at = now if first_sent else None
        with self._writing() as conn:
            # Each batch is one multi-row INSERT ... RETURNING, its ids matched to the rows by
            # their keys. Asking for RETURNING in parameter order instead makes SQLite insert
            # row by row (it cannot order a multi-row RETURNING).
            if len(set(tickets)) == len(tickets):
                by_ticket = {ticket_id: write_id for write_id, ticket_id in insert_many(
                    conn, w, write_rows, returning=("id", "ticket_id"))}
                write_ids = [by_ticket[ticket_id] for ticket_id in tickets]
            else:  # the same ticket twice: only the order tells its writes apart
                write_ids = [row.id for row in conn.execute(
                    sa.insert(w).returning(w.c.id, sort_by_parameter_order=True), write_rows)]
            part_rows = [{"write_id": write_id, "seq": seq, "kind": kind, "changes": changes,
                          "state": OUTBOX_PENDING, "attempts": 1 if sent_at and not seq else 0,
                          "sent_at": None if seq else sent_at}
                         for write_id, new in zip(write_ids, writes, strict=True)
                         for seq, (kind, changes) in enumerate(new.parts)]
            part_id = {(write_id, seq): part for part, write_id, seq in insert_many(
                conn, p, part_rows, returning=("id", "write_id", "seq"))}
        out = []
        for write_id, new in zip(write_ids, writes, strict=True):
            parts = [OutboxPart(part_id[(write_id, seq)], seq, kind, changes, OUTBOX_PENDING,
                                1 if sent_at and not seq else 0, sent_at=None if seq else sent_at)
                     for seq, (kind, changes) in enumerate(new.parts)]
            out.append(OutboxWrite(write_id, source, str(new.ticket_id), rules_version, OUTBOX_PENDING,
                                   new.actions, now, parts=parts))
        return out

    def pending(self, source: str, ticket_id: str) -> list[OutboxWrite]:
        """The ticket's unfinished writes, oldest first, with their parts."""
        w = outbox_writes
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(w).where(w.c.source == source, w.c.ticket_id == str(ticket_id),
                                   w.c.state == OUTBOX_PENDING).order_by(w.c.id)
            ).all()
            return _with_parts(conn, rows)

    def writes_for(self, source: str, ticket_id: str) -> list[OutboxWrite]:
        """Every stored write of the ticket (pending, done, cancelled), oldest first."""
        w = outbox_writes
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(w).where(w.c.source == source, w.c.ticket_id == str(ticket_id)).order_by(w.c.id)
            ).all()
            return _with_parts(conn, rows)

    def pending_tickets(self, limit: int = 1000) -> list[tuple[str, str]]:
        """(source, ticket_id) with an unfinished write, for the clock to hand back to the worker."""
        w = outbox_writes
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(w.c.source, w.c.ticket_id).where(w.c.state == OUTBOX_PENDING)
                .group_by(w.c.source, w.c.ticket_id).limit(limit)
            ).all()
        return [(row.source, row.ticket_id) for row in rows]

    def orphans(self, before: datetime, limit: int = 1000) -> list[tuple[str, str]]:
        """(source, ticket_id) with a write unfinished since before `before` and no work queued for
        it: nobody would complete it, so the clock hands it back to the worker."""
        w, q = outbox_writes, ticket_work
        queued = sa.exists().where(q.c.source == w.c.source, q.c.ticket_id == w.c.ticket_id)
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(w.c.source, w.c.ticket_id).where(w.c.state == OUTBOX_PENDING,
                                                           w.c.created_at < before, ~queued)
                .group_by(w.c.source, w.c.ticket_id).limit(limit)
            ).all()
        return [(row.source, row.ticket_id) for row in rows]

    def sent(self, part_ids: Iterable[int], now: datetime, job_id: str | None = None) -> None:
        """About to call the vendor (or, with job_id, a bulk job accepted): counted, so a resume checks
        whether the call landed before sending it again."""
        values: dict[str, Any] = {"attempts": outbox_parts.c.attempts + 1, "sent_at": now}
        if job_id is not None:
            values = {"job_id": job_id, "sent_at": now}
        self._update_parts(part_ids, values, pending_only=True)

    def done(self, part_ids: Iterable[int], now: datetime) -> None:
        """The vendor confirmed these parts."""
        self._update_parts(part_ids, {"state": OUTBOX_DONE, "done_at": now}, pending_only=True)

    def finish(self, write: OutboxWrite, now: datetime) -> bool:
        """Mark the write done and insert its audit rows, together; False if it was finished already."""
        return bool(self.finish_many([write], now))

    def finish_many(self, writes: Sequence[OutboxWrite], now: datetime) -> list[int]:
        """`finish` for many writes in one transaction; returns the ids finished by this call."""
        w = outbox_writes
        by_id = {write.id: write for write in writes}
        finished: list[int] = []
        with self._writing() as conn:
            ids = list(by_id)
            for start in range(0, len(ids), _CHUNK):
                finished += [row.id for row in conn.execute(
                    sa.update(w)
                    .where(one_of(conn, w.c.id, ids[start:start + _CHUNK]), w.c.state == OUTBOX_PENDING)
                    .values(state=OUTBOX_DONE, finished_at=now).returning(w.c.id))]
            rows = [{"source": by_id[i].source, "ticket_id": by_id[i].ticket_id, "rule": a["rule"],
                     "rules_version": by_id[i].rules_version, "type": a["type"], "before": a.get("before"),
                     "after": a.get("after"), "created_at": now}
                    for i in finished for a in by_id[i].actions]
            insert_many(conn, bot_actions, rows)
        return finished

    def cancel(self, write_id: int, now: datetime, reason: str) -> bool:
        """Give up a write (ticket gone, decided again before anything landed); keeps why."""
        w, p = outbox_writes, outbox_parts
        with self._writing() as conn:
            count = conn.execute(
                sa.update(w).where(w.c.id == write_id, w.c.state == OUTBOX_PENDING)
                .values(state=OUTBOX_CANCELLED, finished_at=now, reason=reason[:4000])
            ).rowcount
            conn.execute(sa.update(p).where(p.c.write_id == write_id, p.c.state == OUTBOX_PENDING)
                         .values(state=OUTBOX_CANCELLED))
        return bool(count)

    def cancel_all(self, source: str, ticket_id: str, now: datetime, reason: str) -> int:
        """`cancel_ticket` in its own transaction."""
        with self._writing() as conn:
            return self.cancel_ticket(conn, source, ticket_id, now, reason)

    def cancel_ticket(self, conn: Connection, source: str, ticket_id: str, now: datetime,
                      reason: str) -> int:
        """Cancel the ticket's pending writes inside the caller's transaction; returns how many."""
        w, p = outbox_writes, outbox_parts
        ids = [row.id for row in conn.execute(
            sa.select(w.c.id).where(w.c.source == source, w.c.ticket_id == str(ticket_id),
                                    w.c.state == OUTBOX_PENDING))]
        if not ids:
            return 0
        conn.execute(sa.update(w).where(w.c.id.in_(ids))
                     .values(state=OUTBOX_CANCELLED, finished_at=now, reason=reason[:4000]))
        conn.execute(sa.update(p).where(p.c.write_id.in_(ids), p.c.state == OUTBOX_PENDING)
                     .values(state=OUTBOX_CANCELLED))
        return len(ids)

    def purge(self, before: datetime, keep: set[tuple[str, str]] | None = None, batch: int = 5000) -> int:
        """Delete finished writes (and their parts) finished before `before`, except tickets in `keep`."""
        w, p = outbox_writes, outbox_parts
        deleted = 0
        while True:
            with write_transaction(self.engine) as conn:
                rows = conn.execute(
                    sa.select(w.c.id, w.c.source, w.c.ticket_id)
                    .where(w.c.state != OUTBOX_PENDING, w.c.finished_at < before)
                    .order_by(w.c.id).limit(batch)
                ).all()
                ids = [row.id for row in rows if not keep or (row.source, row.ticket_id) not in keep]
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start:start + _CHUNK]
                    conn.execute(sa.delete(p).where(p.c.write_id.in_(chunk)))
                    conn.execute(sa.delete(w).where(w.c.id.in_(chunk)))
            deleted += len(ids)
            if len(rows) < batch or not ids:
                return deleted

    def _update_parts(self, part_ids: Iterable[int], values: dict[str, Any], *, pending_only: bool) -> None:
        ids = list(part_ids)
        p = outbox_parts
        if not ids:
            return
        with self._writing() as conn:
            for start in range(0, len(ids), _CHUNK):
                where = one_of(conn, p.c.id, ids[start:start + _CHUNK])
                if pending_only:
                    where = sa.and_(where, p.c.state == OUTBOX_PENDING)
                conn.execute(sa.update(p).where(where).values(**values))


def _with_parts(conn: Connection, rows: Sequence[Any]) -> list[OutboxWrite]:
    if not rows:
        return []
    p = outbox_parts
    parts: dict[int, list[OutboxPart]] = {}
    for part in conn.execute(sa.select(p).where(p.c.write_id.in_([r.id for r in rows]))
                             .order_by(p.c.write_id, p.c.seq)):
        parts.setdefault(part.write_id, []).append(OutboxPart(
            part.id, part.seq, part.kind, part.changes, part.state, part.attempts, part.job_id,
            part.sent_at, part.done_at))
    return [OutboxWrite(r.id, r.source, r.ticket_id, r.rules_version, r.state, r.actions, r.created_at,
                        r.finished_at, r.reason, parts.get(r.id, [])) for r in rows]
