"""Coordination between processes: one-at-a-time jobs (advisory locks, leases) and the write budget."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from store.engine import one_of, write_transaction
from store.models import job_leases, write_log
from store.queue import dialect_insert

log = logging.getLogger(__name__)

ACCOUNT_WINDOW_SECONDS = 60
# A reservation counts for its window plus this long. Two writes granted exactly
# one window apart would both fall in a closed window (the vendor's limit counts
# those), and a write lands a little after its reservation, sooner for some than
# for others: the guard keeps the budget for every sliding window of the writes
# themselves, not just of the reservations.
GUARD_SECONDS = 1.0


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (advisory lock keys are bigint)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def exclusive(engine: Engine, name: str, ttl_seconds: float) -> Iterator[bool]:
    """Yield True to the one holder of `name` across processes, False to everyone else.

    PostgreSQL: a session advisory lock on a connection kept for the duration;
    it ends with the session, so a killed process frees it at once
    (https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS).
    SQLite: a lease row that expires after `ttl_seconds` (wall clock), so a
    killed process blocks the job for at most that long.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            # Autocommit: holding the lock must not hold a transaction open.
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            key = lock_key(name)
            held = bool(conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar())
            try:
                yield held
            finally:
                if held:
                    try:
                        conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
                    except Exception:  # the session is gone, and the lock with it
                        log.warning("could not release advisory lock %r; its session ended", name)
        return
    holder = uuid.uuid4().hex
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        current = conn.execute(sa.select(job_leases.c.expires_at).where(job_leases.c.name == name)).first()
        held = current is None or current.expires_at <= now
        if held:
            values = {"holder": holder, "expires_at": now + timedelta(seconds=ttl_seconds)}
            conn.execute(
                dialect_insert(conn)(job_leases)
                .values(name=name, **values)
                .on_conflict_do_update(index_elements=[job_leases.c.name], set_=values)
            )
    try:
        yield held
    finally:
        if held:
            with write_transaction(engine) as conn:
                conn.execute(
                    sa.delete(job_leases).where(job_leases.c.name == name, job_leases.c.holder == holder)
                )


@dataclass(frozen=True)
class BudgetGrant:
    """What `take_write_budget` allowed: tickets granted in the order asked, tickets denied,
    and the seconds until the first denied one could fit (0 when none was denied)."""

    granted: tuple[str, ...]
    denied: tuple[str, ...]
    retry_after: float


def take_write_budget(
    conn: Connection,
    source: str,
    wants: Sequence[tuple[str, int]],
    now: datetime,
    *,
    per_minute: int,
    per_ticket: int,
    ticket_window_seconds: int,
    carried: bool = False,
    carriers: Sequence[int] = (),
) -> BudgetGrant:
    """Grant (ticket, units) requests in order while both sliding windows have room.

    With `carried`, the first request carries the others (a bulk job's call): when it is
    denied, every other request is denied with it, as if they had never been asked.
    `carriers` does that for several bulk jobs in one reservation: each position it names
    starts a job whose requests, up to the next such position, are carried by its first.

    Counting and recording happen in one transaction that no other budget
    transaction for `source` can interleave with: a transaction advisory lock
    on PostgreSQL, the caller's BEGIN IMMEDIATE on SQLite.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(f"write-budget:{source}"))))
    w = write_log
    account_span = ACCOUNT_WINDOW_SECONDS + GUARD_SECONDS
    ticket_span = ticket_window_seconds + GUARD_SECONDS
    longest = max(account_span, ticket_span)
    conn.execute(sa.delete(w).where(w.c.source == source, w.c.at <= now - timedelta(seconds=longest)))
    minute_start = now - timedelta(seconds=account_span)
    ticket_start = now - timedelta(seconds=ticket_span)
    # Sums, not rows: a reservation costs two aggregate reads on the indexed window, however
    # many writes it holds. The rows are read only to say how long a denied ticket waits.
    used = int(conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(w.c.units), 0))
        .where(w.c.source == source, w.c.at > minute_start)
    ).scalar() or 0)
    ids = sorted({ticket_id for ticket_id, asked in wants if asked > 0})
    ticket_used: dict[str, int] = {}
    for start in range(0, len(ids), 500):
        rows = conn.execute(
            sa.select(w.c.ticket_id, sa.func.sum(w.c.units))
            .where(w.c.source == source, one_of(conn, w.c.ticket_id, ids[start : start + 500]),
                   w.c.at > ticket_start)
            .group_by(w.c.ticket_id)
        )
        for ticket_id, units in rows:
            ticket_used[ticket_id] = int(units or 0)
    added: list[tuple[datetime, int]] = []  # granted in this call, account-wide
    added_for: dict[str, list[tuple[datetime, int]]] = {}

    def rows_since(since: datetime, ticket_id: str | None) -> list[tuple[datetime, int]]:
        query = sa.select(w.c.at, w.c.units).where(w.c.source == source, w.c.at > since)
        if ticket_id is not None:
            query = query.where(w.c.ticket_id == ticket_id)
        stored = [(row.at, row.units) for row in conn.execute(query.order_by(w.c.at))]
        return stored + (added if ticket_id is None else added_for.get(ticket_id, []))

    granted: list[str] = []
    denied: list[str] = []
    waits: list[float] = []
    inserts = []
    starts = {0} if carried else set(carriers)
    in_job = job_denied = False
    for index, (ticket_id, asked) in enumerate(wants):
        if index in starts:
            in_job, job_denied = True, False
        if job_denied:  # a denial in a bulk job (its carrier's, or a share's): nothing more rides on it
            denied.append(ticket_id)
            continue
        # A single write larger than a whole window would never fit; it waits for an empty one.
        # A ticket riding on another's call (a bulk job's share) asks for 0 and is granted free.
        units = max(1, min(asked, per_minute, per_ticket)) if asked > 0 else 0
        mine = ticket_used.get(ticket_id, 0)
        if units and mine + units > per_ticket:
            denied.append(ticket_id)
            history = rows_since(ticket_start, ticket_id)
            waits.append(_wait(history, mine + units - per_ticket, ticket_span, now))
            job_denied = in_job
            continue
        if units and used + units > per_minute:
            denied.append(ticket_id)
            waits.append(_wait(rows_since(minute_start, None), used + units - per_minute, account_span, now))
            job_denied = in_job
            continue
        granted.append(ticket_id)
        if units:
            used += units
            ticket_used[ticket_id] = mine + units
            added.append((now, units))
            added_for.setdefault(ticket_id, []).append((now, units))
            inserts.append({"source": source, "ticket_id": ticket_id, "units": units, "at": now})
    if inserts:
        conn.execute(sa.insert(w), inserts)
    return BudgetGrant(tuple(granted), tuple(denied), min(waits) if waits else 0.0)


def refund_write_budget(conn: Connection, source: str, ticket_id: str, at: datetime, units: int) -> int:
    """Remove one reservation of `units` for `ticket_id` recorded at `at` (the newest such row)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(f"write-budget:{source}"))))
    w = write_log
    newest = (
        sa.select(sa.func.max(w.c.id))
        .where(w.c.source == source, w.c.ticket_id == ticket_id, w.c.at == at, w.c.units == units)
        .scalar_subquery()
    )
    return conn.execute(sa.delete(w).where(w.c.id == newest)).rowcount or 0


def _wait(rows: list[tuple[datetime, int]], excess: int, window: float, now: datetime) -> float:
    """Seconds until the oldest rows free `excess` units by leaving the window."""
    freed = 0
    for at, units in rows:
        freed += units
        if freed >= excess:
            return max((at + timedelta(seconds=window) - now).total_seconds(), 1.0)
    return float(window)
