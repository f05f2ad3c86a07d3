"""The durable work queue: inbox events coalesced into one leased unit of work per ticket."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from store.driver import DriverStatement
from store.engine import insert_many, one_of
from store.models import DEAD, DONE, PENDING, inbox_events, ticket_work

log = logging.getLogger(__name__)

# Keeps one multi-row statement well under SQLite's 32766 bound-parameter limit
# (https://www.sqlite.org/limits.html#max_variable_number).
_CHUNK = 500
# Errors are stored for operators, not as a log archive.
MAX_ERROR_CHARS = 4000

work = ticket_work
inbox = inbox_events


@dataclass
class Claim:
    """One ticket's worth of work, claimed by one worker until `complete`/`retry`/`dead_letter`."""

    source: str
    ticket_id: str
    event_ids: list[int]
    payloads: list[dict]
    attempts: int
    token: str


def dialect_insert(conn: Connection) -> Any:
    """The dialect's INSERT, which has ON CONFLICT on both PostgreSQL and SQLite."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _clip(error: str) -> str:
    # PostgreSQL text cannot hold NUL (https://www.postgresql.org/docs/current/datatype-character.html).
    error = error.replace("\x00", "\ufffd")
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"


def _work_upsert(conn: Connection, rows: list[dict] | Any | None, *, revive: bool) -> Any:
    return _work_upsert_for(dialect_insert(conn)(work), rows, revive=revive)


def _work_upsert_for(stmt: Any, rows: list[dict] | Any | None, *, revive: bool) -> Any:
    """INSERT ticket_work rows; on conflict bump `generation` (the race detector).

    revive=True (a new event): a dead ticket starts fresh; a queued ticket keeps
    its earlier place in the queue (so a burst settles into one claim); a ticket
    leased right now becomes available at the new event's time, so the events
    of a burst arriving while it is processed are taken together afterwards.
    revive=False (request_sync): dead tickets are left alone and a retry delay
    is kept, so sweeps neither resurrect poison work nor defeat back-off.
    With rows=None the statement takes the row as execution parameters; a
    SELECT instead of rows inserts what it selects.
    """
    if isinstance(rows, list):
        stmt = stmt.values(rows)
    elif rows is None:
        stmt = stmt.values({column: sa.bindparam(column) for column in _WORK_COLUMNS})
    else:
        stmt = stmt.from_select(_WORK_COLUMNS, rows)
    new = stmt.excluded
    dead = work.c.dead
    if revive:
        leased = sa.and_(work.c.lease_until.is_not(None), work.c.lease_until > new.queued_at)
        changes: dict[str, Any] = {
            "generation": work.c.generation + 1,
            "reason": new.reason,
            "available_at": sa.case(
                (dead, new.available_at),
                (leased, new.available_at),
                (new.available_at < work.c.available_at, new.available_at),
                else_=work.c.available_at,
            ),
            "queued_at": sa.case((dead, new.queued_at), else_=work.c.queued_at),
            "attempts": sa.case((dead, 0), else_=work.c.attempts),
            "last_error": sa.case((dead, sa.null()), else_=work.c.last_error),
            "dead": sa.false(),
            "dead_at": sa.null(),
        }
        where = None
    else:
        changes = {"generation": work.c.generation + 1, "reason": new.reason}
        where = dead == sa.false()
    return stmt.on_conflict_do_update(
        index_elements=[work.c.source, work.c.ticket_id], set_=changes, where=where
    ).returning(work.c.ticket_id, work.c.generation)


_WORK_COLUMNS = (
    "source",
    "ticket_id",
    "queued_at",
    "available_at",
    "attempts",
    "generation",
    "reason",
    "dead",
)
_EVENT_COLUMNS = ("source", "dedupe_key", "ticket_id", "event_type", "payload", "received_at", "status")

# The webhook path runs these statements for every event. Built once, they
# are compiled once too (a statement carrying its values is not).
_STATEMENTS: dict[str, Any] = {}


def _store_event(insert: Any) -> Any:
    return (
        insert(inbox)
        .values({column: sa.bindparam(column) for column in _EVENT_COLUMNS})
        .on_conflict_do_nothing(index_elements=[inbox.c.source, inbox.c.dedupe_key])
    )


def _statements(name: str) -> Any:
    if name not in _STATEMENTS:
        if name == "postgresql":
            # One statement stores the event and queues its ticket (a
            # data-modifying WITH): one round trip per webhook instead of two.
            stored = _store_event(postgresql.insert).returning(inbox.c.source, inbox.c.ticket_id)
            stored = stored.cte("stored")
            picked = sa.select(
                stored.c.source,
                stored.c.ticket_id,
                sa.bindparam("queued_at", type_=work.c.queued_at.type),
                sa.bindparam("available_at", type_=work.c.available_at.type),
                sa.literal(0),
                sa.literal(1),
                sa.bindparam("reason", type_=work.c.reason.type),
                sa.false(),
            )
            _STATEMENTS[name] = _work_upsert_for(postgresql.insert(work), picked, revive=True)
        else:
            _STATEMENTS[name] = (
                _store_event(sqlite.insert).returning(inbox.c.id),
                _work_upsert_for(sqlite.insert(work), None, revive=True),
            )
    return _STATEMENTS[name]


def _event_and_ticket(
    *,
    source: str,
    dedupe_key: str,
    ticket_id: str,
    event_type: str,
    payload: dict,
    received_at: datetime,
    settle_seconds: float = 0.0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    event = {
        "source": source,
        "dedupe_key": dedupe_key,
        "ticket_id": ticket_id,
        "event_type": event_type,
        "payload": payload,
        "received_at": received_at,
        "status": PENDING,
    }
    ticket = _work_row(
        source, ticket_id, received_at, received_at + timedelta(seconds=settle_seconds), f"event:{event_type}"
    )
    return event, ticket


def _work_row(source: str, ticket_id: str, queued_at: datetime, available_at: datetime, reason: str) -> dict:
    """A new ticket_work row (the upserts decide what an existing row keeps)."""
    return {
        "source": source,
        "ticket_id": ticket_id,
        "queued_at": queued_at,
        "available_at": available_at,
        "attempts": 0,
        "generation": 1,
        "reason": reason[:128],
        "dead": False,
    }


def enqueue(conn: Connection, **fields: Any) -> bool:
    """Store an event (False: a redelivery, stored before) and queue its ticket."""
    event, ticket = _event_and_ticket(**fields)
    if conn.dialect.name == "postgresql":  # no row back = a redelivery
        return conn.execute(_statements("postgresql"), {**event, **ticket}).first() is not None
    store_event, queue_ticket = _statements(conn.dialect.name)
    if conn.execute(store_event, event).first() is None:
        return False
    conn.execute(queue_ticket, ticket)
    return True


def enqueue_driver(raw: Any, dialect: Any, **fields: Any) -> bool:
    """`enqueue` on the DBAPI connection: the same statements, run through
    DriverStatement, since the webhook path otherwise spends most of its time
    in SQLAlchemy's execution machinery. SQLite connections are in autocommit
    mode (the store's engine sets it) and take the write lock up front;
    psycopg's open a transaction with the statement.
    """
    if dialect.name != "postgresql":
        return _enqueue_sqlite(raw, dialect, [fields])[0]
    key = "postgresql-driver"
    if key not in _STATEMENTS:
        _STATEMENTS[key] = DriverStatement(_statements("postgresql"), dialect)
    event, ticket = _event_and_ticket(**fields)
    try:
        with raw.cursor() as cursor:
            stored = bool(_STATEMENTS[key].execute(cursor, {**event, **ticket}))
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    return stored


def enqueue_many_driver(raw: Any, dialect: Any, items: Sequence[dict[str, Any]]) -> list[bool]:
    """`enqueue_driver` for several events (each a dict of its fields) in one transaction.

    On PostgreSQL the events are stored first, in key order, then their tickets queued, in
    ticket order: two batches running at once lock what they share in the same order, so
    neither waits for the other while holding what that one waits for (a redelivery racing
    its original, two events of one ticket). SQLite has one writer.
    """
    if dialect.name != "postgresql":
        return _enqueue_sqlite(raw, dialect, items)
    if len(items) == 1:  # one statement stores the event and queues its ticket
        return [enqueue_driver(raw, dialect, **items[0])]
    key = "postgresql-driver-many"
    if key not in _STATEMENTS:
        _STATEMENTS[key] = (
            DriverStatement(_store_event(postgresql.insert).returning(inbox.c.id), dialect),
            DriverStatement(_work_upsert_for(postgresql.insert(work), None, revive=True), dialect))
    store_event, queue_ticket = _STATEMENTS[key]
    rows = [_event_and_ticket(**fields) for fields in items]
    stored = [False] * len(rows)
    try:
        with raw.cursor() as cursor:
            for n in sorted(range(len(rows)), key=lambda n: (rows[n][0]["source"], rows[n][0]["dedupe_key"])):
                stored[n] = bool(store_event.execute(cursor, rows[n][0]))
            for n in sorted((n for n in range(len(rows)) if stored[n]),
                            key=lambda n: (rows[n][1]["source"], rows[n][1]["ticket_id"])):
                cursor.execute(queue_ticket.sql, queue_ticket.parameters(rows[n][1]))  # no rows back
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    return stored


def _enqueue_sqlite(raw: Any, dialect: Any, items: Sequence[dict[str, Any]]) -> list[bool]:
    """Store the events and queue their tickets in one BEGIN IMMEDIATE transaction (SQLite)."""
    key = "sqlite-driver"
    if key not in _STATEMENTS:
        store_event, queue_ticket = _statements("sqlite")
        _STATEMENTS[key] = (DriverStatement(store_event, dialect), DriverStatement(queue_ticket, dialect))
    store_event, queue_ticket = _STATEMENTS[key]
    stored = [False] * len(items)
    cursor = raw.cursor()
    try:
        cursor.execute("BEGIN IMMEDIATE")
        try:
            for n, fields in enumerate(items):
                event, ticket = _event_and_ticket(**fields)
                if store_event.execute(cursor, event):
                    stored[n] = True
                    queue_ticket.execute(cursor, ticket)
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
    finally:
        cursor.close()
    return stored


def _revived(now: datetime, reason: str) -> dict[str, Any]:
    """The columns of a parked ticket that starts afresh (its events stay dead, as evidence)."""
    return {
        "dead": False,
        "dead_at": None,
        "attempts": 0,
        "last_error": None,
        "queued_at": now,
        "available_at": now,
        "reason": reason[:128],
        "generation": work.c.generation + 1,
    }


def request_sync(
    conn: Connection,
    source: str,
    ticket_ids: Iterable[str],
    now: datetime,
    reason: str,
    revive_dead_before: datetime | None = None,
) -> int:
    # Sorted and de-duplicated: concurrent callers lock rows in the same order
    # (no deadlock), and PostgreSQL refuses to upsert one key twice per statement.
    ids = sorted({str(ticket_id) for ticket_id in ticket_ids})
    newly_queued = 0
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        if revive_dead_before is not None:
            revived = conn.execute(
                sa.update(work)
                .where(
                    work.c.source == source,
                    work.c.ticket_id.in_(chunk),
                    work.c.dead == sa.true(),
                    work.c.dead_at < revive_dead_before,
                )
                .values(**_revived(now, reason))
            ).rowcount
            if revived:
                log.info("%s: %d parked ticket(s) changed since; queued again", source, revived)
            newly_queued += revived
        rows = [_work_row(source, ticket_id, now, now, reason) for ticket_id in chunk]
        result = conn.execute(_work_upsert(conn, rows, revive=False))
        # Rows only ever leave generation 1 by being bumped, so 1 means "just inserted".
        newly_queued += sum(1 for _ticket, generation in result if generation == 1)
    return newly_queued


def claim(conn: Connection, worker_id: str, now: datetime, limit: int, lease_seconds: int) -> list[Claim]:
    if limit <= 0:
        return []
    lease_until = now + timedelta(seconds=lease_seconds)
    # PostgreSQL: SKIP LOCKED lets concurrent workers take disjoint tickets without
    # waiting (https://www.postgresql.org/docs/current/sql-select.html#SQL-FOR-UPDATE-SHARE).
    # SQLite ignores FOR UPDATE; the caller's BEGIN IMMEDIATE makes it the only writer.
    candidates = conn.execute(
        sa.select(
            work.c.source,
            work.c.ticket_id,
            work.c.generation,
            work.c.attempts,
            work.c.lease_token,
            work.c.leased_by,
        )
        .where(
            work.c.dead == sa.false(),
            work.c.available_at <= now,
            sa.or_(work.c.lease_until.is_(None), work.c.lease_until < now),
        )
        .order_by(work.c.available_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not candidates:
        return []

    claims: dict[tuple[str, str], Claim] = {}
    reclaimed: list[Any] = []
    for row in candidates:
        attempts = row.attempts
        changes: dict[str, Any] = {}
        if row.lease_token is not None:
            # The previous holder neither completed nor retried before its lease ran
            # out (killed, hung): count it as a failed attempt, so a ticket that
            # crashes every worker still reaches the dead-letter limit.
            attempts += 1
            changes["last_error"] = f"lease held by {row.leased_by} expired"
            reclaimed.append(row)
        token = uuid.uuid4().hex
        conn.execute(
            sa.update(work)
            .where(work.c.source == row.source, work.c.ticket_id == row.ticket_id)
            .values(
                lease_token=token,
                leased_by=worker_id[:255],
                lease_until=lease_until,
                lease_generation=row.generation,
                attempts=attempts,
                **changes,
            )
        )
        claims[(row.source, row.ticket_id)] = Claim(
            source=row.source,
            ticket_id=row.ticket_id,
            event_ids=[],
            payloads=[],
            attempts=attempts,
            token=token,
        )

    if reclaimed:
        # One line per claim, not per ticket: a killed worker leaves many.
        holders = sorted({str(row.leased_by) for row in reclaimed})
        shown = ", ".join(f"{row.source} {row.ticket_id}" for row in reclaimed[:5])
        log.warning("Reclaiming %d ticket(s) whose lease expired (held by %s): %s%s", len(reclaimed),
                    ", ".join(holders[:3]), shown, ", ..." if len(reclaimed) > 5 else "")
    events = conn.execute(
        sa.select(inbox.c.id, inbox.c.source, inbox.c.ticket_id, inbox.c.payload)
        .where(
            inbox.c.status == PENDING,
            sa.tuple_(inbox.c.source, inbox.c.ticket_id).in_(list(claims)),
        )
        .order_by(inbox.c.received_at, inbox.c.id)
    )
    for event in events:
        held = claims[(event.source, event.ticket_id)]
        held.event_ids.append(event.id)
        held.payloads.append(event.payload)
    return list(claims.values())


def claim_tickets(
    conn: Connection,
    source: str,
    ticket_ids: Iterable[str],
    worker_id: str,
    now: datetime,
    lease_seconds: int,
    reason: str,
) -> list[Claim]:
    """Queue and lease, in one step, those of `ticket_ids` that are not in the queue yet.

    A ticket already queued (by a webhook, a sync request, another sweep) or
    parked is skipped: whoever holds it will evaluate it, so each ticket has
    one handler at a time. On PostgreSQL, concurrent callers asking for the
    same ticket are serialised by its primary key: one inserts, the other
    skips it.
    """
    asked = list(dict.fromkeys(str(ticket_id) for ticket_id in ticket_ids))
    ids = sorted(asked)  # one lock order for every caller (no deadlocks)
    lease_until = now + timedelta(seconds=lease_seconds)
    claims = []
    for start in range(0, len(ids), _CHUNK):
        rows = [
            {
                **_work_row(source, ticket_id, now, now, reason),
                "lease_token": uuid.uuid4().hex,
                "leased_by": worker_id[:255],
                "lease_until": lease_until,
                "lease_generation": 1,
            }
            for ticket_id in ids[start : start + _CHUNK]
        ]
        # Multi-row INSERTs compiled once; a ticket already queued (or parked) is not returned.
        taken = dict(insert_many(conn, work, rows, conflict=("source", "ticket_id"),
                                 returning=("ticket_id", "lease_token")))
        claims.extend(
            Claim(source=source, ticket_id=ticket_id, event_ids=[], payloads=[], attempts=0, token=token)
            for ticket_id, token in taken.items()
        )
        others = [ticket_id for ticket_id in ids[start : start + _CHUNK] if ticket_id not in taken]
        if others:
            claims.extend(_revive_parked(conn, source, others, worker_id, now, lease_until, reason))
    order = {ticket_id: index for index, ticket_id in enumerate(asked)}
    return sorted(claims, key=lambda held: order[held.ticket_id])


def _revive_parked(
    conn: Connection,
    source: str,
    ticket_ids: list[str],
    worker_id: str,
    now: datetime,
    lease_until: datetime,
    reason: str,
) -> list[Claim]:
    """Lease those of `ticket_ids` that are parked, starting them afresh."""
    parked = conn.execute(
        sa.select(work.c.ticket_id)
        .where(work.c.source == source, work.c.ticket_id.in_(ticket_ids), work.c.dead == sa.true())
        .order_by(work.c.ticket_id)
        .with_for_update()
    ).scalars().all()
    claims = []
    for ticket_id in parked:
        token = uuid.uuid4().hex
        conn.execute(
            sa.update(work)
            .where(work.c.source == source, work.c.ticket_id == ticket_id, work.c.dead == sa.true())
            .values(
                **_revived(now, reason),
                lease_token=token,
                leased_by=worker_id[:255],
                lease_until=lease_until,
                # SET reads the old row: both become the old generation + 1.
                lease_generation=work.c.generation + 1,
            )
        )
        log.info("%s ticket %s: parked, and now due; taken up again", source, ticket_id)
        claims.append(Claim(source=source, ticket_id=ticket_id, event_ids=[], payloads=[], attempts=0,
                            token=token))
    return claims


def renew(conn: Connection, tokens: list[str], now: datetime, lease_seconds: float) -> int:
    """Extend the leases still held under `tokens`; returns how many were."""
    renewed = 0
    until = now + timedelta(seconds=lease_seconds)
    for start in range(0, len(tokens), _CHUNK):
        renewed += conn.execute(
            sa.update(work)
            .where(work.c.lease_token.in_(tokens[start : start + _CHUNK]), work.c.lease_until.is_not(None))
            .values(lease_until=until)
        ).rowcount
    return renewed


def release(conn: Connection, held: Claim, now: datetime) -> None:
    """Give the ticket back, available now, its attempts unchanged."""
    row = _held(conn, held, "release")
    if row is None:
        return
    conn.execute(sa.update(work).where(_this_ticket(held)).values(available_at=now, **_RELEASE))


def _held(conn: Connection, held: Claim, action: str) -> Any:
    """The locked work row if `held` still owns its lease, else None (with a warning)."""
    row = conn.execute(
        sa.select(work.c.generation, work.c.lease_generation, work.c.attempts)
        .where(
            work.c.source == held.source,
            work.c.ticket_id == held.ticket_id,
            work.c.lease_token == held.token,
        )
        .with_for_update()
    ).first()
    if row is None:
        # Its lease expired and another worker claimed the ticket (or it already
        # finished): that worker's outcome stands, this one is dropped.
        log.warning(
            "Ignoring %s for %s ticket %s: the lease is no longer held by this claim",
            action,
            held.source,
            held.ticket_id,
        )
    return row


def _settle_events(conn: Connection, held: Claim, status: str, now: datetime, error: str | None) -> None:
    if not held.event_ids:
        return
    conn.execute(
        sa.update(inbox)
        .where(
            inbox.c.id.in_(held.event_ids),
            inbox.c.source == held.source,
            inbox.c.ticket_id == held.ticket_id,
            inbox.c.status == PENDING,
        )
        .values(status=status, processed_at=now, error=error)
    )


_RELEASE = {"lease_token": None, "leased_by": None, "lease_until": None, "lease_generation": None}


def _this_ticket(held: Claim) -> Any:
    return sa.and_(work.c.source == held.source, work.c.ticket_id == held.ticket_id)


def complete(conn: Connection, held: Claim, now: datetime) -> None:
    row = _held(conn, held, "complete")
    if row is None:
        return
    _settle_events(conn, held, DONE, now, None)
    if row.generation == row.lease_generation:
        conn.execute(sa.delete(work).where(_this_ticket(held)))
        return
    # Something was queued for this ticket while it was being processed: keep the
    # row (already available) so the newer events or sync request get their turn.
    conn.execute(sa.update(work).where(_this_ticket(held)).values(attempts=0, last_error=None, **_RELEASE))


def complete_many(conn: Connection, claims: Iterable[Claim], now: datetime) -> None:
    """`complete` for many claims with two set-based statements per 500 (sweeps finish hundreds).

    The claims' rows are read by their key (the token has no index) and locked in key
    order, as request_sync locks them; those still holding the claim's lease go, unless
    new work was queued meanwhile (the generation moved), then they are released.
    """
    claims = list(claims)
    for held in claims:
        if held.event_ids:  # webhook work: settled one by one, exactly as complete() does
            complete(conn, held, now)
    by_source: dict[str, list[Claim]] = {}
    for held in claims:
        if not held.event_ids:
            by_source.setdefault(held.source, []).append(held)
    for source in sorted(by_source):
        plain = sorted(by_source[source], key=lambda held: held.ticket_id)
        for start in range(0, len(plain), _CHUNK):
            chunk = plain[start : start + _CHUNK]
            tokens = {held.ticket_id: held.token for held in chunk}
            rows = conn.execute(
                sa.select(work.c.ticket_id, work.c.lease_token, work.c.generation, work.c.lease_generation)
                .where(work.c.source == source, one_of(conn, work.c.ticket_id, list(tokens)))
                .order_by(work.c.ticket_id)
                .with_for_update()
            ).all()
            held_rows = [r for r in rows if r.lease_token == tokens[r.ticket_id]]
            if len(held_rows) < len(chunk):
                log.warning(
                    "Ignoring complete for %d claim(s): their leases are no longer held",
                    len(chunk) - len(held_rows),
                )
            finished = [r.ticket_id for r in held_rows if r.generation == r.lease_generation]
            requeued = [r.ticket_id for r in held_rows if r.generation != r.lease_generation]
            if finished:
                conn.execute(sa.delete(work).where(work.c.source == source,
                                                   one_of(conn, work.c.ticket_id, finished)))
            if requeued:
                # New work arrived meanwhile (see complete): kept, available, released.
                conn.execute(
                    sa.update(work)
                    .where(work.c.source == source, one_of(conn, work.c.ticket_id, requeued))
                    .values(attempts=0, last_error=None, **_RELEASE)
                )


def retry(
    conn: Connection,
    held: Claim,
    now: datetime,
    error: str,
    delay_seconds: float,
    count_attempt: bool = True,
) -> None:
    row = _held(conn, held, "retry")
    if row is None:
        return
    conn.execute(
        sa.update(work)
        .where(_this_ticket(held))
        .values(
            attempts=row.attempts + (1 if count_attempt else 0),
            available_at=now + timedelta(seconds=max(0.0, delay_seconds)),
            last_error=_clip(error),
            **_RELEASE,
        )
    )


def dead_letter(conn: Connection, held: Claim, now: datetime, error: str) -> None:
    row = _held(conn, held, "dead_letter")
    if row is None:
        return
    error = _clip(error)
    _settle_events(conn, held, DEAD, now, error)
    if row.generation != row.lease_generation:
        # New work arrived while this attempt failed; parking the ticket would strand
        # it, so (as for an enqueue after the fact) it starts fresh instead.
        log.warning(
            "Dead-lettered %s ticket %s, but newer work is queued; it starts afresh",
            held.source,
            held.ticket_id,
        )
        conn.execute(
            sa.update(work)
            .where(_this_ticket(held))
            .values(attempts=0, available_at=now, last_error=error, **_RELEASE)
        )
        return
    conn.execute(
        sa.update(work)
        .where(_this_ticket(held))
        .values(
            dead=True,
            dead_at=now,
            attempts=row.attempts + 1,
            last_error=error,
            **_RELEASE,
        )
    )


def _dead_where(source: str | None, ticket_ids: list[str] | None) -> Any:
    where = [work.c.dead == sa.true()]
    if source is not None:
        where.append(work.c.source == source)
    if ticket_ids is not None:
        where.append(work.c.ticket_id.in_(ticket_ids))
    return sa.and_(*where)


def replay_dead(conn: Connection, now: datetime, source: str | None, ticket_ids: list[str] | None) -> int:
    if ticket_ids is not None and not ticket_ids:
        return 0
    parked = conn.execute(
        sa.select(work.c.source, work.c.ticket_id).where(_dead_where(source, ticket_ids))
    ).all()
    for chunk_start in range(0, len(parked), _CHUNK):
        chunk = parked[chunk_start : chunk_start + _CHUNK]
        keys = sa.tuple_(work.c.source, work.c.ticket_id).in_([tuple(row) for row in chunk])
        conn.execute(
            sa.update(work)
            .where(keys)
            .values(
                dead=False,
                dead_at=None,
                attempts=0,
                available_at=now,
                queued_at=now,
                reason="replay",
                generation=work.c.generation + 1,
                **_RELEASE,
            )
        )
        event_keys = sa.tuple_(inbox.c.source, inbox.c.ticket_id).in_([tuple(row) for row in chunk])
        conn.execute(
            sa.update(inbox)
            .where(event_keys, inbox.c.status == DEAD)
            .values(status=PENDING, processed_at=None)
        )
    return len(parked)


_DROPPED = "dropped by an operator"


def drop_dead(conn: Connection, source: str, ticket_id: str, now: datetime) -> bool:
    dropped = conn.execute(sa.delete(work).where(_dead_where(source, [ticket_id]))).rowcount
    if dropped:
        conn.execute(
            sa.update(inbox)
            .where(inbox.c.source == source, inbox.c.ticket_id == ticket_id, inbox.c.status == DEAD)
            .values(
                status=DONE,
                processed_at=now,
                error=sa.func.coalesce(_DROPPED + ": " + inbox.c.error, _DROPPED),
            )
        )
    return bool(dropped)
