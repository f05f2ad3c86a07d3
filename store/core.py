"""`Store`: the bot's one door to its database (inbox, work queue, snapshots, actions, cursors)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jobs.quietlog import RateLimitedLog
from store import board, coordination, queue, retention
from store import migrate as migrations
from store import snapshots as snapshots_store
from store.coordination import BudgetGrant
from store.engine import (
    DEFAULT_TIMEOUT_SECONDS,
    create_store_engine,
    one_of,
    read_transaction,
    retry_on_disconnect,
    write_transaction,
)
from store.groupcommit import GroupCommit
from store.models import (
    DONE,
    PENDING,
    bot_actions,
    inbox_events,
    sync_cursors,
    ticket_snapshots,
    ticket_work,
)
from store.outbox import Outbox
from store.queue import Claim

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite:///deskpilot.db"
# A claim's lease: the worker renews it while it works, so a killed worker's
# tickets are claimed again after at most this long.
DEFAULT_LEASE_SECONDS = 20
# Tickets claimed at once from which the queue's statistics are renewed (PostgreSQL).
ANALYZE_QUEUE_AFTER = 1000


def _aware(value: datetime | None, name: str) -> None:
    """Reject naive instants at the door, naming the argument to fix."""
    if value is None:
        return
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}={value.isoformat()} is naive: pass an aware datetime (UTC)")


def due_tickets_query(now: datetime, limit: int) -> sa.Select:
    """Range scan on ix_ticket_snapshots_next_check, anti-joined to ticket_work by its key.

    A parked (dead-lettered) ticket counts as not queued once its due moment is
    later than its parking: the moment has come since, so it gets another go.
    """
    s, w = ticket_snapshots, ticket_work
    queued = sa.exists().where(
        w.c.source == s.c.source,
        w.c.ticket_id == s.c.ticket_id,
        sa.or_(w.c.dead == sa.false(), w.c.dead_at.is_(None), w.c.dead_at >= s.c.next_check),
    )
    return (
        sa.select(s.c.source, s.c.ticket_id)
        .where(s.c.next_check <= now, ~queued)
        .order_by(s.c.next_check)
        .limit(limit)
    )


def snapshot_rows(source: str, snapshots: Sequence[dict], now: datetime) -> list[dict]:
    """The ticket_snapshots rows of `Store.save_snapshots` items (instants checked; the last
    item of a ticket wins), in key order (rows are locked in key order)."""
    _aware(now, "now")
    by_id: dict[str, dict] = {}
    for item in snapshots:
        _aware(item["next_check"], "next_check")
        ticket_id = str(item["ticket_id"])
        by_id[ticket_id] = {
            "source": source,
            "ticket_id": ticket_id,
            "ticket": item["ticket"],
            "decision": item["decision"],
            "next_check": item["next_check"],
            "rules_version": item["rules_version"],
            "updated_at": now,
        }
    return [by_id[ticket_id] for ticket_id in sorted(by_id)]


def write_snapshot_rows(conn: sa.Connection, source: str, rows: list[dict], now: datetime) -> None:
    """Save snapshot rows (store/snapshots.py) and their board index inside the caller's transaction."""
    snapshots_store.save(conn, source, rows)
    board.index_snapshots(conn, source, rows, now)  # the console board's indexed columns


class StoreTransaction:
    """Store writes that commit together (`Store.transaction`): the bulk paths use it to finish
    many tickets' claims, outbox rows, budget and snapshots with one commit instead of one each.

    Its methods are the Store's of the same name and arguments, run on one connection; nothing
    is committed until the `with` block ends, and an exception rolls everything back. Never call
    the helpdesk inside the block: the outbox rows a vendor call needs must be committed first.
    """

    def __init__(self, conn: sa.Connection, outbox: Outbox) -> None:
        self.conn = conn
        self.outbox = outbox.bound(conn)

    def take_write_budget(self, source: str, wants: Sequence[tuple[str, int]], now: datetime, *,
                          per_minute: int, per_ticket: int, ticket_window_seconds: int = 600,
                          carried: bool = False, carriers: Sequence[int] = ()) -> BudgetGrant:
        _aware(now, "now")
        return coordination.take_write_budget(
            self.conn, source, wants, now, per_minute=per_minute, per_ticket=per_ticket,
            ticket_window_seconds=ticket_window_seconds, carried=carried, carriers=carriers)

    def complete_many(self, claims: Iterable[Claim], now: datetime) -> None:
        _aware(now, "now")
        queue.complete_many(self.conn, claims, now)

    def retry(self, claim: Claim, now: datetime, error: str, delay_seconds: float, *,
              count_attempt: bool = True) -> None:
        _aware(now, "now")
        queue.retry(self.conn, claim, now, error, delay_seconds, count_attempt)

    def request_sync(self, source: str, ticket_ids: Iterable[str], now: datetime, reason: str) -> int:
        _aware(now, "now")
        return queue.request_sync(self.conn, source, ticket_ids, now, reason)

    def save_snapshots(self, source: str, snapshots: Sequence[dict], now: datetime) -> None:
        rows = snapshot_rows(source, snapshots, now)
        if rows:
            write_snapshot_rows(self.conn, source, rows, now)


class Store:
    """Durable state for webhooks, the worker and the scheduler; safe to share between threads.

    Args:
        url: a SQLAlchemy URL, "sqlite:///path.db" or "postgresql+psycopg://..."
            (postgres:// and postgresql:// are taken to mean psycopg 3);
            None means DEFAULT_DATABASE_URL.
    """

    def __init__(self, url: str | None = None, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.engine: sa.Engine = create_store_engine(url or DEFAULT_DATABASE_URL, timeout_seconds)
        # /healthz is probed every few seconds: one line per minute while the database is down.
        self._health_log = RateLimitedLog(log, interval_seconds=60)
        # Decided writes and their parts (store/outbox.py).
        self.outbox = Outbox(self.engine)
        # Webhook events of concurrent requests, stored a batch to a transaction.
        self._intake: GroupCommit[dict[str, Any], bool] = GroupCommit(self._enqueue_batch)

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        """`with store.transaction() as tx:` - tx's writes (StoreTransaction) commit together."""
        with write_transaction(self.engine) as conn:
            yield StoreTransaction(conn, self.outbox)

    def migrate(self) -> None:
        """Upgrade the schema to the newest migration; idempotent, safe at every start."""
        migrations.upgrade(self.engine)

    # -- inbox and work queue (the logic lives in store/queue.py) --------------------

    def enqueue(
        self,
        *,
        source: str,
        dedupe_key: str,
        ticket_id: str,
        event_type: str,
        payload: dict,
        received_at: datetime,
        settle_seconds: float = 0.0,
    ) -> bool:
        """Store a webhook event and queue its ticket, in one transaction.

        Args:
            settle_seconds: how long a newly queued ticket waits for more events
                of the same burst before a worker may claim it.
        Returns:
            True if stored; False if (source, dedupe_key) was seen before (nothing changes).
        """
        _aware(received_at, "received_at")

        fields = {
            "source": source,
            "dedupe_key": dedupe_key,
            "ticket_id": str(ticket_id),
            "event_type": event_type,
            "payload": payload,
            "received_at": received_at,
            "settle_seconds": settle_seconds,
        }
        return self._intake.submit(fields)

    def _enqueue_batch(self, items: list[dict[str, Any]]) -> list[bool | BaseException]:
        """Store the events of concurrent enqueue calls in one transaction (store/groupcommit.py).

        When the database refuses the batch for what one event holds, each is stored on its
        own, so that the others are kept; an outage fails them all (the vendor retries each).
        """
        dbapi = self.engine.dialect.loaded_dbapi

        def store(batch: list[dict[str, Any]]) -> list[bool]:
            def run() -> list[bool]:
                raw = self.engine.raw_connection()
                try:
                    return queue.enqueue_many_driver(raw.driver_connection, self.engine.dialect, batch)
                except dbapi.OperationalError as err:
                    # Raised by the driver itself, so SQLAlchemy cannot tell a dropped
                    # connection: drop it from the pool, and let retry_on_disconnect
                    # try once more on a fresh one.
                    raw.invalidate(err)
                    raise sa.exc.DBAPIError(None, None, err, connection_invalidated=True) from err
                finally:
                    raw.close()

            return retry_on_disconnect(run)

        try:
            return list(store(items))
        except Exception as err:
            refused = isinstance(err, dbapi.IntegrityError | dbapi.DataError | ValueError | TypeError
                                 | OverflowError | RecursionError)
            if len(items) == 1 or not refused:
                return [err] * len(items)
        out: list[bool | BaseException] = []
        for item in items:
            try:
                out.extend(store([item]))
            except Exception as err:
                out.append(err)
        return out

    def request_sync(
        self,
        source: str,
        ticket_ids: Iterable[str],
        now: datetime,
        reason: str,
        *,
        revive_dead_before: datetime | None = None,
    ) -> int:
        """Queue tickets for a re-check without an event (sweeps, reconciliation).

        Tickets already queued are flagged to run once more after any claim in
        progress. Dead-lettered tickets stay parked, unless they were parked
        before `revive_dead_before` (the caller knows the ticket changed since):
        those start afresh.

        Returns:
            How many tickets were not queued before (or parked) and now are.
        """
        _aware(now, "now")
        _aware(revive_dead_before, "revive_dead_before")
        with write_transaction(self.engine) as conn:
            return queue.request_sync(conn, source, ticket_ids, now, reason, revive_dead_before)

    def claim(
        self, worker_id: str, now: datetime, limit: int = 10, lease_seconds: int = DEFAULT_LEASE_SECONDS
    ) -> list[Claim]:
        """Lease up to `limit` available tickets, oldest first, one Claim per ticket.

        A lease that ran out without complete/retry/dead_letter is claimable
        again, and counts as a failed attempt.
        """
        _aware(now, "now")

        def lease() -> list[Claim]:
            with write_transaction(self.engine) as conn:
                return queue.claim(conn, worker_id, now, limit, lease_seconds)

        return retry_on_disconnect(lease)

    def renew(
        self, claims: Iterable[Claim], now: datetime, lease_seconds: int = DEFAULT_LEASE_SECONDS
    ) -> int:
        """Extend the leases these claims still hold to `now + lease_seconds`; returns how many."""
        _aware(now, "now")
        tokens = [claim.token for claim in claims]
        if not tokens:
            return 0

        def extend() -> int:
            with write_transaction(self.engine) as conn:
                return queue.renew(conn, tokens, now, lease_seconds)

        return retry_on_disconnect(extend)

    def release(self, claim: Claim, now: datetime) -> None:
        """Give the ticket back untouched and available now (no attempt counted)."""
        _aware(now, "now")
        with write_transaction(self.engine) as conn:
            queue.release(conn, claim, now)

    def complete(self, claim: Claim, now: datetime) -> None:
        """Mark the claim's events done and release the ticket (no-op if the lease was lost)."""
        _aware(now, "now")
        with write_transaction(self.engine) as conn:
            queue.complete(conn, claim, now)

    def retry(
        self,
        claim: Claim,
        now: datetime,
        error: str,
        delay_seconds: float,
        *,
        count_attempt: bool = True,
    ) -> None:
        """Make the ticket available again after `delay_seconds`.

        A failed attempt counts towards the dead-letter limit; with
        count_attempt=False (a deferral such as "write budget") it does not.
        """
        _aware(now, "now")
        with write_transaction(self.engine) as conn:
            queue.retry(conn, claim, now, error, delay_seconds, count_attempt)

    def claim_tickets(
        self,
        source: str,
        ticket_ids: Iterable[str],
        worker_id: str,
        now: datetime,
        *,
        lease_seconds: int = 300,
        reason: str = "sweep",
    ) -> list[Claim]:
        """Queue and lease the given tickets in one step, skipping any already queued.

        A parked ticket among them starts afresh (due_tickets offers one only
        when its due moment came after it was parked).

        Sweeps use it so that a ticket is never handled by a sweep and a worker
        (or two sweeps) at once. Returns Claims in the order asked; finish each
        with complete/retry/dead_letter like any claim.
        """
        _aware(now, "now")
        with write_transaction(self.engine) as conn:
            claims = queue.claim_tickets(conn, source, ticket_ids, worker_id, now, lease_seconds, reason)
        if len(claims) >= ANALYZE_QUEUE_AFTER and self.engine.dialect.name == "postgresql":
            # The queue is mostly near-empty and just grew by a sweep's worth: its statistics
            # (autovacuum's, up to a minute late) and the plans cached on them would scan it
            # whole for each chunk the sweep completes (measured: 35 ms a chunk against 1 ms).
            try:
                with write_transaction(self.engine) as conn:
                    conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")  # autovacuum yields after 1 s
                    conn.exec_driver_sql(f"ANALYZE {ticket_work.name}")
            except sa.exc.DBAPIError as err:  # the claims stand; autovacuum's statistics come later
                log.info("work queue statistics not renewed after %d claims (%s)", len(claims),
                         type(err.orig).__name__)
        return claims

    def complete_many(self, claims: Iterable[Claim], now: datetime) -> None:
        """`complete` for many claims in one transaction."""
        _aware(now, "now")
        with write_transaction(self.engine) as conn:
            queue.complete_many(conn, claims, now)

    def dead_letter(self, claim: Claim, now: datetime, error: str) -> None:
        """Park the ticket and its events with `error`, until a new event for it arrives."""
        _aware(now, "now")
        with write_transaction(self.engine) as conn:
            queue.dead_letter(conn, claim, now, error)

    def purge(self, before: datetime, batch: int = 5000) -> int:
        """Delete processed inbox events older than `before`; returns how many.

        Pending and dead-lettered events stay (they are work, or evidence), as
        do snapshots and the bot's action log. Deletes in batches so a large
        backlog never holds the write lock for long.
        """
        _aware(before, "before")
        deleted = 0
        while True:
            with write_transaction(self.engine) as conn:
                ids = sa.select(inbox_events.c.id).where(
                    inbox_events.c.status == DONE, inbox_events.c.processed_at < before
                ).limit(batch)
                count = conn.execute(sa.delete(inbox_events).where(inbox_events.c.id.in_(ids))).rowcount
            deleted += count
            if count < batch:
                return deleted

    def purge_audit(self, before: datetime, batch: int = 5000) -> retention.Purged:
        """Delete the bot's action log, snapshots and finished outbox rows older than `before`.

        Open tickets (not solved or closed), queued or parked tickets and
        tickets with an unfinished write keep everything (store/retention.py).
        """
        _aware(before, "before")
        return retention.purge(self.engine, before, batch)

    def dead_letters(self, limit: int = 50) -> list[dict]:
        """Parked tickets, newest first: source, ticket_id, error, at, attempts, queued_at, reason."""
        w = ticket_work
        with read_transaction(self.engine) as conn:
            rows = conn.execute(
                sa.select(
                    w.c.source,
                    w.c.ticket_id,
                    w.c.last_error,
                    w.c.dead_at,
                    w.c.attempts,
                    w.c.queued_at,
                    w.c.reason,
                )
                .where(w.c.dead == sa.true())
                .order_by(w.c.dead_at.desc(), w.c.source, w.c.ticket_id)
                .limit(limit)
            ).all()
        return [
            {
                "source": row.source,
                "ticket_id": row.ticket_id,
                "error": row.last_error,
                "at": row.dead_at,
                "attempts": row.attempts,
                "queued_at": row.queued_at,
                "reason": row.reason,
            }
            for row in rows
        ]

    def replay_dead_letters(
        self, now: datetime, source: str | None = None, ticket_ids: Iterable[str] | None = None
    ) -> int:
        """Re-queue parked tickets (all, one source's, or the listed ones), fresh, with their events.

        The parked events go back to pending so the next claim carries them;
        attempts restart from zero. Returns how many tickets were re-queued.
        """
        _aware(now, "now")
        with write_transaction(self.engine) as conn:
            return queue.replay_dead(conn, now, source, None if ticket_ids is None else list(ticket_ids))

    def drop_dead_letter(self, source: str, ticket_id: str, now: datetime) -> bool:
        """Discard a parked ticket's work; its events are settled, their error kept as evidence."""
        _aware(now, "now")
        with write_transaction(self.engine) as conn:
            dropped = queue.drop_dead(conn, source, ticket_id, now)
            if dropped:
                # Its unfinished writes go too: nobody would ever complete them.
                self.outbox.cancel_ticket(conn, source, ticket_id, now, "dead letter dropped by an operator")
            return dropped

    # -- snapshots, due tickets, audit trail, cursors ---------------------------------

    def save_snapshot(
        self,
        source: str,
        ticket_id: str,
        *,
        ticket: dict,
        decision: dict,
        next_check: datetime | None,
        rules_version: str,
        now: datetime,
    ) -> None:
        """Replace the ticket's last evaluated state and when it next needs a look."""
        self.save_snapshots(
            source,
            [
                {
                    "ticket_id": ticket_id,
                    "ticket": ticket,
                    "decision": decision,
                    "next_check": next_check,
                    "rules_version": rules_version,
                }
            ],
            now,
        )

    def save_snapshots(self, source: str, snapshots: Sequence[dict], now: datetime) -> None:
        """`save_snapshot` for many tickets in one transaction (the last item of a ticket wins).

        Each item: {"ticket_id", "ticket", "decision", "next_check", "rules_version"}.
        The ticket's "events" are appended to those stored when they extend them,
        and replace them otherwise (store/snapshots.py).
        """
        rows = snapshot_rows(source, snapshots, now)
        if not rows:
            return
        with write_transaction(self.engine) as conn:
            write_snapshot_rows(conn, source, rows, now)

    def clear_next_check(self, source: str, ticket_ids: Iterable[str]) -> None:
        """Stop sweeping these tickets (deleted in the helpdesk) until they are evaluated again."""
        ids = sorted({str(ticket_id) for ticket_id in ticket_ids})
        s = ticket_snapshots
        with write_transaction(self.engine) as conn:
            for start in range(0, len(ids), 500):
                conn.execute(
                    sa.update(s)
                    .where(s.c.source == source, one_of(conn, s.c.ticket_id, ids[start : start + 500]))
                    .values(next_check=None)
                )
            board.forget(conn, source, ids)

    def get_snapshot(self, source: str, ticket_id: str) -> dict | None:
        """{"ticket", "decision", "next_check", "rules_version", "updated_at"}, or None."""
        s = ticket_snapshots
        with snapshots_store.read_transaction(self.engine) as conn:
            row = conn.execute(
                sa.select(s.c.source, s.c.ticket_id, s.c.ticket, s.c.events_count, s.c.decision,
                          s.c.next_check, s.c.rules_version, s.c.updated_at).where(
                    s.c.source == source, s.c.ticket_id == str(ticket_id)
                )
            ).first()
            if row is None:
                return None
            (ticket,) = snapshots_store.documents(conn, [row])
        return {"ticket": ticket, "decision": row.decision, "next_check": row.next_check,
                "rules_version": row.rules_version, "updated_at": row.updated_at}

    def get_snapshot_tickets(self, source: str, ticket_ids: Iterable[str]) -> dict[str, dict]:
        """ticket id -> its stored snapshot's ticket (with its events), for the ids stored; a few
        queries for any number of ids."""
        with snapshots_store.read_transaction(self.engine) as conn:
            return snapshots_store.tickets(conn, source, ticket_ids)

    def snapshot_stamps(self, source: str, ticket_ids: Iterable[str]) -> dict[str, str | None]:
        """ticket id -> the vendor stamp (updated_at) of its stored snapshot, for the ids stored."""
        ids = sorted({str(ticket_id) for ticket_id in ticket_ids})
        s = ticket_snapshots
        out: dict[str, str | None] = {}
        with read_transaction(self.engine) as conn:
            for start in range(0, len(ids), 500):
                # The document without its events (store/snapshots.py) holds the stamp.
                rows = conn.execute(
                    sa.select(s.c.ticket_id, s.c.ticket)
                    .where(s.c.source == source, one_of(conn, s.c.ticket_id, ids[start : start + 500]))
                )
                for row in rows:
                    out[row.ticket_id] = (row.ticket or {}).get("stamp")
        return out

    def fell_due(self, after: datetime, now: datetime) -> bool:
        """Whether some ticket's next_check lies in (after, now]: one range probe on its index."""
        _aware(after, "after")
        _aware(now, "now")
        s = ticket_snapshots
        with read_transaction(self.engine) as conn:
            row = conn.execute(
                sa.select(s.c.ticket_id).where(s.c.next_check > after, s.c.next_check <= now).limit(1)
            ).first()
        return row is not None

    def due_tickets(self, now: datetime, limit: int = 1000) -> list[tuple[str, str]]:
        """(source, ticket_id) whose next_check <= now, most overdue first.

        Tickets already in the work queue (queued or leased) are left out: they
        will be evaluated anyway and would otherwise crowd the limit on every
        sweep. A dead-lettered ticket is left out until its due moment comes
        after it was parked.
        """
        _aware(now, "now")
        with read_transaction(self.engine) as conn:
            rows = conn.execute(due_tickets_query(now, limit)).all()
        return [(row.source, row.ticket_id) for row in rows]

    def record_actions(
        self,
        source: str,
        ticket_id: str,
        *,
        rules_version: str,
        actions: list[dict],
        now: datetime,
    ) -> None:
        """Append what the bot changed: each {"rule", "type", "before", "after"}."""
        self.record_actions_many(source, [(ticket_id, actions)], rules_version=rules_version, now=now)

    def record_actions_many(
        self,
        source: str,
        entries: Sequence[tuple[str, list[dict]]],
        *,
        rules_version: str,
        now: datetime,
    ) -> None:
        """`record_actions` for many tickets, (ticket_id, actions) each, in one transaction."""
        _aware(now, "now")
        rows = []
        for ticket_id, actions in entries:
            for index, action in enumerate(actions):
                missing = [key for key in ("rule", "type") if not action.get(key)]
                if missing:
                    raise ValueError(f"ticket {ticket_id} actions[{index}] has no {' or '.join(missing)}")
                rows.append(
                    {
                        "source": source,
                        "ticket_id": str(ticket_id),
                        "rule": action["rule"],
                        "rules_version": rules_version,
                        "type": action["type"],
                        "before": action.get("before"),
                        "after": action.get("after"),
                        "created_at": now,
                    }
                )
        if not rows:
            return
        with write_transaction(self.engine) as conn:
            conn.execute(sa.insert(bot_actions), rows)

    def actions_for(self, source: str, ticket_id: str) -> list[dict]:
        """The ticket's recorded actions, oldest first, each with rules_version and created_at."""
        a = bot_actions
        with read_transaction(self.engine) as conn:
            rows = conn.execute(
                sa.select(a.c.rule, a.c.type, a.c.before, a.c.after, a.c.rules_version, a.c.created_at)
                .where(a.c.source == source, a.c.ticket_id == str(ticket_id))
                .order_by(a.c.id)
            ).all()
        return [dict(row._mapping) for row in rows]

    def get_cursor(self, source: str, name: str) -> str | None:
        c = sync_cursors
        with read_transaction(self.engine) as conn:
            return conn.execute(
                sa.select(c.c.value).where(c.c.source == source, c.c.name == name)
            ).scalar_one_or_none()

    def set_cursor(self, source: str, name: str, value: str, now: datetime) -> None:
        _aware(now, "now")
        c = sync_cursors
        with write_transaction(self.engine) as conn:
            stmt = queue.dialect_insert(conn)(c).values(source=source, name=name, value=value, updated_at=now)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[c.c.source, c.c.name],
                    set_={"value": value, "updated_at": now},
                )
            )

    # -- coordination between processes ------------------------------------------------

    @contextmanager
    def exclusive(self, name: str, ttl_seconds: float = 600) -> Iterator[bool]:
        """`with store.exclusive("sweep:zendesk") as held:` - held is True in one process only.

        PostgreSQL: pg_try_advisory_lock, released when the block ends or the
        process dies. SQLite: a lease row that a dead holder keeps for at most
        `ttl_seconds`. Never waits: a busy name yields False at once.
        """
        with coordination.exclusive(self.engine, name, ttl_seconds) as held:
            yield held

    def take_write_budget(
        self,
        source: str,
        wants: Sequence[tuple[str, int]],
        now: datetime,
        *,
        per_minute: int,
        per_ticket: int,
        ticket_window_seconds: int = 600,
        carried: bool = False,
        carriers: Sequence[int] = (),
    ) -> BudgetGrant:
        """Reserve helpdesk writes, (ticket_id, updates) in order, within the shared budget.

        At most `per_minute` ticket updates per rolling minute for `source` and
        `per_ticket` per ticket per `ticket_window_seconds`, counted over every
        process that shares this database. Granted updates are recorded at once
        (so count even if the write then fails); denied ones are not. With
        `carried`, the first ticket's updates carry the others' (a bulk job): if it
        is denied, all are; `carriers` names where each of several such jobs starts.
        """
        _aware(now, "now")
        with write_transaction(self.engine) as conn:
            return coordination.take_write_budget(
                conn,
                source,
                wants,
                now,
                per_minute=per_minute,
                per_ticket=per_ticket,
                ticket_window_seconds=ticket_window_seconds,
                carried=carried,
                carriers=carriers,
            )

    def refund_write_budget(self, source: str, ticket_id: str, at: datetime, units: int) -> int:
        """Give back a reservation made at `at` and not spent on a vendor call; rows removed."""
        _aware(at, "at")
        with write_transaction(self.engine) as conn:
            return coordination.refund_write_budget(conn, source, str(ticket_id), at, units)

    # -- monitoring -------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """JSON-ready status for /health; never raises.

        Returns:
            {"database": "ok" | "error: <ExceptionClass>", "backlog": tickets queued,
            "inbox_pending": events not yet processed, "dead_letters": parked tickets,
            "last_dead_letter": {"ticket_id", "error", "at" (ISO 8601)} or None};
            the counts are None when the database is unreachable.
        """
        w, i = ticket_work, inbox_events
        try:
            with read_transaction(self.engine) as conn:
                backlog = conn.execute(
                    sa.select(sa.func.count()).select_from(w).where(w.c.dead == sa.false())
                ).scalar_one()
                dead = conn.execute(
                    sa.select(sa.func.count()).select_from(w).where(w.c.dead == sa.true())
                ).scalar_one()
                pending = conn.execute(
                    sa.select(sa.func.count()).select_from(i).where(i.c.status == PENDING)
                ).scalar_one()
                last = conn.execute(
                    sa.select(w.c.ticket_id, w.c.last_error, w.c.dead_at)
                    .where(w.c.dead == sa.true())
                    .order_by(w.c.dead_at.desc())
                    .limit(1)
                ).first()
        except Exception as err:  # health must answer even when the database does not
            self._health_log.warning(type(err).__name__, "Database health check failed: %s",
                                     type(err).__name__)
            return {
                "database": f"error: {type(err).__name__}",
                "backlog": None,
                "inbox_pending": None,
                "dead_letters": None,
                "last_dead_letter": None,
            }
        return {
            "database": "ok",
            "backlog": backlog,
            "inbox_pending": pending,
            "dead_letters": dead,
            "last_dead_letter": None
            if last is None
            else {"ticket_id": last.ticket_id, "error": last.last_error, "at": last.dead_at.isoformat()},
        }
