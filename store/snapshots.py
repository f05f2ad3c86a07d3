"""Snapshot documents whose events grow by appending: ticket_snapshots + ticket_snapshot_events.

A ticket's snapshot (the dict jobs.worker.ticket_json builds) with more than
INLINE_EVENTS events is stored in two parts: the document without its
"events" list in ticket_snapshots.ticket, and the events in
ticket_snapshot_events, in chunks keyed by the position of their first event.
The snapshot row keeps a descriptor of the events stored (how many, a digest
of them in order, how many chunks), so a save knows whether the new events
extend the stored ones without reading them:

- they extend them (the first `events_count` new events have the stored
  digest): one chunk with only the new events is inserted;
- they do not (the history was read again and differs: a redaction, an older
  evaluation saved after a newer one): the ticket's chunks are replaced by one;
- the ticket is stored solved or closed: its chunks are folded into one.

Bytes written over a ticket's life are then linear in its events, instead of
quadratic when the whole document was rewritten at every evaluation. A
shorter history is stored whole (descriptor NULL), as every row written
before the split was: rewriting a few events costs less than the statements
that split them, and such a save reads nothing first. Every reader gets the
whole document back, "events" reassembled in order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from store.engine import insert_many, one_of
from store.models import ticket_snapshot_events, ticket_snapshots

EVENTS = "events"
# A ticket stored with one of these statuses has its chunks folded into one: solved
# tickets rarely get more events (a reply reopens them), closed ones never do.
FOLDED_STATUSES = frozenset({"solved", "closed"})
CHUNK = 500  # keys per IN list
# A document with at most this many events is stored whole (a rewrite of a short history
# costs less than the statements that split it); a longer one has its events in chunks.
INLINE_EVENTS = 32


def _inner(events: Sequence[Any]) -> str:
    """The JSON text of the events between the list's brackets (canonical: no spaces, sorted keys)."""
    return json.dumps(list(events), separators=(",", ":"), sort_keys=True, ensure_ascii=True)[1:-1]


def digests(events: Sequence[Any], prefix: int) -> tuple[str, str]:
    """(digest of events[:prefix], digest of events), in one pass over the events.

    The digest of a list is that of its elements' canonical JSON joined by commas,
    so the digest of a prefix computed at one save equals the one a later save
    computes for the same events.
    """
    head, tail = _inner(events[:prefix]), _inner(events[prefix:])
    hasher = hashlib.blake2b(head.encode(), digest_size=16)
    first = hasher.hexdigest()
    if tail:
        hasher.update(("," + tail if head else tail).encode())
    return first, hasher.hexdigest()


@dataclass(frozen=True)
class Stored:
    """A stored snapshot's events descriptor (all None: the row holds the whole document)."""

    count: int | None
    digest: str | None
    chunks: int | None


@dataclass(frozen=True)
class Planned:
    """How one save writes: the snapshot row's document and descriptor, and its chunk writes."""

    document: Any
    count: int | None
    digest: str | None
    chunks: int | None
    replace: bool  # delete the ticket's chunks first
    chunk: tuple[int, list] | None  # (seq, events) to write


def inline(ticket: Any) -> bool:
    """Whether `ticket` is stored whole: no list of events, or at most INLINE_EVENTS of them."""
    events = ticket.get(EVENTS) if isinstance(ticket, dict) else None
    return not isinstance(events, list | tuple) or len(events) <= INLINE_EVENTS


def plan(ticket: Any, stored: Stored | None) -> Planned:
    """How to store `ticket` over what is stored (None: no snapshot, or one stored whole)."""
    if inline(ticket):
        # Stored whole, as before; chunks a longer history left are no longer read.
        return Planned(ticket, None, None, None, False, None)
    events = list(ticket[EVENTS])
    document = {key: value for key, value in ticket.items() if key != EVENTS}
    count = len(events)
    folded = document.get("status") in FOLDED_STATUSES
    if stored is not None and stored.count is not None and stored.count <= count:
        head, digest = digests(events, stored.count)
        if head == stored.digest:
            chunks = (stored.chunks or 0) + (count > stored.count)
            if not (folded and chunks > 1):
                new = (stored.count, events[stored.count:]) if count > stored.count else None
                return Planned(document, count, digest, chunks, False, new)
            return Planned(document, count, digest, 1, True, (0, events))
    else:
        digest = digests(events, 0)[1]
    # Replaced: whatever chunks the ticket has go, and all its events are one chunk.
    return Planned(document, count, digest, 1, True, (0, events))


def stored_descriptors(conn: Connection, source: str, ticket_ids: Sequence[str]) -> dict[str, Stored]:
    """The stored descriptors of these tickets, their rows locked (PostgreSQL) until the commit.

    Rows are locked in key order, so two saves of overlapping tickets wait for
    each other instead of deadlocking; the later one sees the earlier's events.
    """
    s = ticket_snapshots
    out: dict[str, Stored] = {}
    for start in range(0, len(ticket_ids), CHUNK):
        query = (sa.select(s.c.ticket_id, s.c.events_count, s.c.events_digest, s.c.events_chunks)
                 .where(s.c.source == source, one_of(conn, s.c.ticket_id, ticket_ids[start:start + CHUNK]))
                 .order_by(s.c.ticket_id))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        for row in conn.execute(query):
            out[row.ticket_id] = Stored(row.events_count, row.events_digest, row.events_chunks)
    return out


def _row_values(row: dict, planned: Planned) -> dict:
    return {**row, "ticket": planned.document, "events_count": planned.count,
            "events_digest": planned.digest, "events_chunks": planned.chunks}


def first_rows(rows: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """Full ticket_snapshots rows as a first save stores them: (snapshot rows, chunk rows), for a
    plain bulk INSERT of new tickets (benchmarks, data loads)."""
    snapshots, chunks = [], []
    for row in rows:
        planned = plan(row["ticket"], None)
        snapshots.append(_row_values(row, planned))
        if planned.chunk is not None:
            chunks.append({"source": row["source"], "ticket_id": row["ticket_id"], "seq": planned.chunk[0],
                           "events": planned.chunk[1]})
    return snapshots, chunks


def save(conn: Connection, source: str, rows: list[dict]) -> None:
    """Upsert snapshot rows ({"source", "ticket_id", "ticket", ...} each, ids unique, in key order)
    with their events split off; a few statements for the whole batch, whatever its size."""
    s, e = ticket_snapshots, ticket_snapshot_events
    planned: dict[str, Planned] = {row["ticket_id"]: plan(row["ticket"], None) for row in rows
                                   if inline(row["ticket"])}
    split = [row for row in rows if row["ticket_id"] not in planned]
    stored = stored_descriptors(conn, source, [row["ticket_id"] for row in split])
    missing = [row for row in split if row["ticket_id"] not in stored]
    if missing and conn.dialect.name == "postgresql":
        # Tickets without a snapshot have no row to lock: theirs are inserted first, so a
        # first save of the same ticket racing this one waits for it (SQLite has one writer).
        for row in missing:
            planned[row["ticket_id"]] = plan(row["ticket"], None)
        first = [_row_values(row, planned[row["ticket_id"]]) for row in missing]
        created = {ticket_id for (ticket_id,) in insert_many(conn, s, first, conflict=("source", "ticket_id"),
                                                              returning=("ticket_id",))}
        raced = [row["ticket_id"] for row in missing if row["ticket_id"] not in created]
        for ticket_id in raced:  # another save stored it first: plan against what it stored
            del planned[ticket_id]
        stored.update(stored_descriptors(conn, source, raced))
    else:
        created = set()
    values, replaced, chunks = [], [], []
    for row in rows:
        ticket_id = row["ticket_id"]
        if ticket_id not in planned:
            planned[ticket_id] = plan(row["ticket"], stored.get(ticket_id))
        this = planned[ticket_id]
        if ticket_id not in created:
            values.append(_row_values(row, this))
        if this.replace:
            replaced.append(ticket_id)
        if this.chunk is not None:
            seq, events = this.chunk
            chunks.append({"source": source, "ticket_id": ticket_id, "seq": seq, "events": events})
    for start in range(0, len(replaced), CHUNK):
        conn.execute(sa.delete(e).where(e.c.source == source,
                                        one_of(conn, e.c.ticket_id, replaced[start:start + CHUNK])))
    insert_many(conn, e, chunks)
    insert_many(conn, s, values, conflict=("source", "ticket_id"), update=_UPDATED)


# What a save of an existing snapshot replaces (its key stays).
_UPDATED = ("ticket", "decision", "next_check", "rules_version", "updated_at",
            "events_count", "events_digest", "events_chunks")


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read transaction in which a snapshot row and its chunks are seen at one moment.

    SQLite's deferred transaction reads one state of the database throughout;
    PostgreSQL's default (READ COMMITTED) would let a save commit between the
    two statements, so snapshot reads run REPEATABLE READ (a read-only
    transaction there never fails to serialise).
    """
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def events_of(conn: Connection, source: str, counts: dict[str, int]) -> dict[str, list]:
    """ticket id -> its stored events in order, for tickets stored with `count` events each."""
    e = ticket_snapshot_events
    ids = sorted(ticket_id for ticket_id, count in counts.items() if count)
    out: dict[str, list] = {ticket_id: [] for ticket_id in counts}
    for start in range(0, len(ids), CHUNK):
        rows = conn.execute(
            sa.select(e.c.ticket_id, e.c.seq, e.c.events)
            .where(e.c.source == source, one_of(conn, e.c.ticket_id, ids[start:start + CHUNK]))
            .order_by(e.c.ticket_id, e.c.seq)
        )
        for row in rows:
            events = out[row.ticket_id]
            events.extend(row.events)
    for ticket_id, events in out.items():
        if len(events) != counts[ticket_id]:  # a save keeps the two in step in its transaction
            raise RuntimeError(f"{source} ticket {ticket_id}: {len(events)} events stored in chunks, "
                               f"{counts[ticket_id]} in its snapshot")
    return out


def documents(conn: Connection, rows: Iterable[Any]) -> list[Any]:
    """The whole documents of snapshot rows (each with source, ticket_id, ticket, events_count)."""
    rows = list(rows)
    wanted: dict[str, dict[str, int]] = {}
    for row in rows:
        if row.events_count is not None:
            wanted.setdefault(row.source, {})[row.ticket_id] = row.events_count
    found = {source: events_of(conn, source, counts) for source, counts in wanted.items()}
    out = []
    for row in rows:
        if row.events_count is None:
            out.append(row.ticket)
        else:
            out.append({**(row.ticket or {}), EVENTS: found[row.source][row.ticket_id]})
    return out


def tickets(conn: Connection, source: str, ticket_ids: Iterable[str]) -> dict[str, Any]:
    """ticket id -> the stored snapshot document, for the ids stored."""
    s = ticket_snapshots
    ids = sorted({str(ticket_id) for ticket_id in ticket_ids})
    rows = []
    for start in range(0, len(ids), CHUNK):
        rows.extend(conn.execute(
            sa.select(s.c.source, s.c.ticket_id, s.c.ticket, s.c.events_count)
            .where(s.c.source == source, one_of(conn, s.c.ticket_id, ids[start:start + CHUNK]))
        ))
    return {row.ticket_id: document for row, document in zip(rows, documents(conn, rows), strict=True)}


def forget(conn: Connection, keys: Sequence[tuple[str, str]]) -> None:
    """Delete the chunks of these (source, ticket_id) (their snapshots are being deleted)."""
    e = ticket_snapshot_events
    for start in range(0, len(keys), CHUNK):
        key = sa.tuple_(e.c.source, e.c.ticket_id)
        conn.execute(sa.delete(e).where(key.in_(list(keys[start:start + CHUNK]))))


def inline_all(conn: Connection, batch: int = 2000) -> int:
    """Put every snapshot's events back into its document (the schema downgrade); returns how many."""
    s = ticket_snapshots
    done = 0
    while True:
        rows = conn.execute(
            sa.select(s.c.source, s.c.ticket_id, s.c.ticket, s.c.events_count)
            .where(s.c.events_count.is_not(None))
            .order_by(s.c.source, s.c.ticket_id).limit(batch)
        ).all()
        if not rows:
            return done
        for row, document in zip(rows, documents(conn, rows), strict=True):
            conn.execute(sa.update(s).where(s.c.source == row.source, s.c.ticket_id == row.ticket_id)
                         .values(ticket=document, events_count=None, events_digest=None, events_chunks=None))
        forget(conn, [(row.source, row.ticket_id) for row in rows])
        done += len(rows)
