"""The console board's index: each snapshot's decision flattened into indexed columns.

`ticket_snapshots` keeps a ticket's decision as JSON; ordering 100k of them by
"time to next breach" from JSON would read every row. Every snapshot write also
writes its `ticket_board` row (one per ticket) and `ticket_board_targets` rows
(one per SLA target), in the same transaction, so the board is a range scan on
(is_open, next_due) and compliance a range scan on the targets' instants.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.engine import insert_many, one_of
from store.models import ticket_board, ticket_board_targets, ticket_snapshots

DONE_STATUSES = frozenset({"solved", "closed"})
STATES = ("breached", "warning", "running", "paused")
CHUNK = 500


def parse_instant(value: Any) -> datetime | None:
    """An ISO 8601 UTC instant from a decision ("2026-11-23T09:30:00Z"), else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def board_rows(source: str, ticket_id: str, ticket: dict, decision: dict, now: datetime):
    """(ticket_board row, [ticket_board_targets rows]) for one snapshot."""
    ticket = ticket if isinstance(ticket, dict) else {}
    decision = decision if isinstance(decision, dict) else {}
    priority = decision.get("priority", ticket.get("priority"))
    targets = []
    next_due = next_target = warn_at = None
    paused = False
    for name, result in sorted((decision.get("targets") or {}).items()):
        if not isinstance(result, dict):
            continue
        due, achieved = parse_instant(result.get("due")), parse_instant(result.get("achieved_at"))
        state = str(result.get("state") or "running")
        targets.append({"source": source, "ticket_id": str(ticket_id), "target": name, "priority": priority,
                        "state": state, "due": due, "achieved_at": achieved})
        if state == "paused":
            paused = True
        if achieved is None and due is not None and state in ("running", "breached"):
            if next_due is None or due < next_due:
                next_due, next_target = due, name
                warn_at = parse_instant(result.get("warn_at"))
    status = ticket.get("status")
    subject = ticket.get("subject")
    row = {
        "source": source,
        "ticket_id": str(ticket_id),
        "is_open": status not in DONE_STATUSES,
        "status": status,
        "priority": priority,
        "policy": decision.get("policy"),
        "group_name": ticket.get("group"),
        "subject": subject[:255] if isinstance(subject, str) else None,
        "next_due": next_due,
        "next_target": next_target,
        "warn_at": warn_at,
        "paused": paused and next_due is None,
        "updated_at": now,
    }
    return row, targets


def index_snapshots(conn: Connection, source: str, snapshots: Iterable[dict], now: datetime) -> None:
    """Write the board rows of saved snapshots (each {"ticket_id", "ticket", "decision"}).

    Counts each target that turned breached since the ticket's previous snapshot
    in the `deskpilot_breaches_total` metric. Per 500 tickets one DELETE of their
    targets (returning the breached ones); then an upsert of all the board rows and
    an insert of their targets (store.engine.insert_many: a few statements for any number).
    """
    boards, targets = [], []
    for item in snapshots:
        row, rows = board_rows(source, item["ticket_id"], item["ticket"], item["decision"], now)
        boards.append(row)
        targets.extend(rows)
    if not boards:
        return
    t = ticket_board_targets
    breached_before: set[tuple[str, str]] = set()
    ids = [row["ticket_id"] for row in boards]
    # Targets that no longer apply (a new policy) go; the breached ones are remembered.
    for start in range(0, len(ids), CHUNK):
        breached_before.update(
            (r.ticket_id, r.target)
            for r in conn.execute(
                sa.delete(t)
                .where(t.c.source == source, one_of(conn, t.c.ticket_id, ids[start : start + CHUNK]))
                .returning(t.c.ticket_id, t.c.target, t.c.state)
            )
            if r.state == "breached"
        )
    keys = ("source", "ticket_id")
    insert_many(conn, ticket_board, boards, conflict=keys,
                update=[c.name for c in ticket_board.columns if c.name not in keys])
    insert_many(conn, t, targets)
    from console import metrics

    for row in targets:
        if row["state"] == "breached" and (row["ticket_id"], row["target"]) not in breached_before:
            metrics.breach(source, row["target"])


def forget(conn: Connection, source: str, ticket_ids: Sequence[str]) -> None:
    """Take tickets off the board (deleted in the helpdesk)."""
    b = ticket_board
    for start in range(0, len(ticket_ids), CHUNK):
        conn.execute(
            sa.update(b)
            .where(b.c.source == source, b.c.ticket_id.in_(list(ticket_ids[start : start + CHUNK])))
            .values(is_open=False)
        )


def rebuild(conn: Connection, batch: int = 2000) -> int:
    """Index every stored snapshot again (the migration that adds the board runs it).

    Reads each snapshot's `ticket` column as it is: board_rows needs no events, which
    later rows keep apart (store/snapshots.py), and migration 0004 runs this before
    those columns exist.
    """
    s = ticket_snapshots
    conn.execute(sa.delete(ticket_board_targets))
    conn.execute(sa.delete(ticket_board))
    done, last = 0, ("", "")
    while True:
        rows = conn.execute(
            sa.select(s.c.source, s.c.ticket_id, s.c.ticket, s.c.decision, s.c.updated_at)
            .where(sa.tuple_(s.c.source, s.c.ticket_id) > sa.tuple_(sa.literal(last[0]), sa.literal(last[1])))
            .order_by(s.c.source, s.c.ticket_id)
            .limit(batch)
        ).all()
        if not rows:
            return done
        by_source: dict[str, list[tuple[dict, datetime]]] = {}
        for row in rows:
            by_source.setdefault(row.source, []).append(
                ({"ticket_id": row.ticket_id, "ticket": row.ticket, "decision": row.decision}, row.updated_at)
            )
        for source, items in by_source.items():
            boards, targets = [], []
            for item, updated_at in items:
                board, rows_ = board_rows(source, item["ticket_id"], item["ticket"], item["decision"],
                                          _aware(updated_at))
                boards.append(board)
                targets.extend(rows_)
            conn.execute(sa.insert(ticket_board), boards)
            if targets:
                conn.execute(sa.insert(ticket_board_targets), targets)
        done += len(rows)
        last = (rows[-1].source, rows[-1].ticket_id)


def _aware(value: Any) -> datetime:
    if isinstance(value, str):  # raw SQLite text inside a migration
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# -- queries --------------------------------------------------------------------------


def state_of(row: Any, now: datetime) -> str:
    """running | warning | paused | breached | none, at `now` (the stored state may be older)."""
    if row.next_due is None:
        return "paused" if row.paused else "none"
    if row.next_due < now:
        return "breached"
    if row.warn_at is not None and row.warn_at <= now:
        return "warning"
    return "running"


def _filtered(query: sa.Select, now: datetime, filters: dict[str, str]) -> sa.Select:
    b = ticket_board
    query = query.where(b.c.is_open == sa.true())
    for key, column in (("priority", b.c.priority), ("policy", b.c.policy), ("group", b.c.group_name),
                        ("source", b.c.source)):
        value = filters.get(key)
        if value:
            query = query.where(column.is_(None) if value == "none" else column == value)
    state = filters.get("state")
    if state == "breached":
        query = query.where(b.c.next_due < now)
    elif state == "warning":
        query = query.where(b.c.next_due >= now, b.c.warn_at <= now)
    elif state == "running":
        query = query.where(b.c.next_due >= now, sa.or_(b.c.warn_at.is_(None), b.c.warn_at > now))
    elif state == "paused":
        query = query.where(b.c.next_due.is_(None), b.c.paused == sa.true())
    return query


def page(conn: Connection, now: datetime, filters: dict[str, str], limit: int = 50, offset: int = 0):
    """Open tickets, the soonest (or longest overdue) next breach first, then those without one."""
    b = ticket_board
    base = _filtered(sa.select(b), now, filters)
    timed = base.where(b.c.next_due.is_not(None)).order_by(b.c.next_due, b.c.source, b.c.ticket_id)
    rows = conn.execute(timed.limit(limit).offset(offset)).all()
    if len(rows) == limit:
        return rows
    # Then those without a running clock (paused, met, no SLA), after all timed ones.
    skipped = max(0, offset - _count(conn, _filtered(sa.select(sa.func.count()).select_from(b), now, filters)
                                     .where(b.c.next_due.is_not(None))))
    untimed = base.where(b.c.next_due.is_(None)).order_by(b.c.source, b.c.ticket_id)
    return rows + conn.execute(untimed.limit(limit - len(rows)).offset(skipped)).all()


def _count(conn: Connection, query: sa.Select) -> int:
    return conn.execute(query).scalar_one()


def count(conn: Connection, now: datetime, filters: dict[str, str]) -> int:
    b = ticket_board
    return conn.execute(_filtered(sa.select(sa.func.count()).select_from(b), now, filters)).scalar_one()


def tiles(conn: Connection, now: datetime) -> dict[str, int]:
    """Open tickets, breached now, and breaching within 1 h and 24 h."""
    b = ticket_board
    open_ = b.c.is_open == sa.true()

    def n(*where: Any) -> int:
        return conn.execute(sa.select(sa.func.count()).select_from(b).where(open_, *where)).scalar_one()

    return {
        "open": n(),
        "breached": n(b.c.next_due < now),
        "within_1h": n(b.c.next_due >= now, b.c.next_due < now + timedelta(hours=1)),
        "within_24h": n(b.c.next_due >= now, b.c.next_due < now + timedelta(hours=24)),
    }


def facets(conn: Connection) -> dict[str, list[str]]:
    """The distinct priorities, policies and groups of open tickets, for the filters."""
    b = ticket_board
    out = {}
    for key, column in (("priority", b.c.priority), ("policy", b.c.policy), ("group", b.c.group_name)):
        values = conn.execute(
            sa.select(column).where(b.c.is_open == sa.true(), column.is_not(None)).distinct().limit(200)
        ).scalars()
        out[key] = sorted(values)
    return out


def compliance(conn: Connection, now: datetime, days: Sequence[int] = (7, 30)) -> list[dict]:
    """Per target and priority: met / all decided (met in time, or due passed unmet), per window.

    A target's outcome instant is when it was met, else its due time; one
    aggregate query over the targets decided within the longest window.
    """
    t = ticket_board_targets
    met = sa.and_(t.c.achieved_at.is_not(None), t.c.achieved_at <= t.c.due)
    outcome_at = sa.case((met, t.c.achieved_at), else_=t.c.due)
    longest = now - timedelta(days=max(days))
    columns = []
    for window in days:
        since = now - timedelta(days=window)
        columns.append(sa.func.sum(sa.case((sa.and_(met, outcome_at >= since), 1), else_=0)))
        columns.append(sa.func.sum(sa.case((outcome_at >= since, 1), else_=0)))
    rows = conn.execute(
        sa.select(t.c.target, t.c.priority, *columns)
        .where(t.c.due <= now, sa.or_(t.c.due >= longest, t.c.achieved_at >= longest),
               sa.or_(met, t.c.due < now))
        .group_by(t.c.target, t.c.priority)
    ).all()
    order = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
    out = []
    for row in sorted(rows, key=lambda r: (r[0], order.get(r[1], 9))):
        windows = {}
        for index, window in enumerate(days):
            m, a = int(row[2 + 2 * index] or 0), int(row[3 + 2 * index] or 0)
            windows[window] = {"met": m, "all": a, "ratio": (m / a if a else None)}
        if any(w["all"] for w in windows.values()):
            out.append({"target": row[0], "priority": row[1], "windows": windows})
    return out


def breaches_per_day(conn: Connection, now: datetime, days: int = 30) -> list[tuple[str, int]]:
    """[(YYYY-MM-DD, targets whose due passed unmet or met late, by the due's UTC day)], oldest first."""
    t = ticket_board_targets
    first = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [first + timedelta(days=i) for i in range(days)]
    late = sa.or_(t.c.achieved_at.is_(None), t.c.achieved_at > t.c.due)
    if conn.dialect.name == "postgresql":
        day = sa.func.to_char(sa.func.timezone("UTC", t.c.due), "YYYY-MM-DD")
    else:  # SQLite keeps instants as naive UTC text, "YYYY-MM-DD HH:MM:SS..."
        day = sa.func.substr(t.c.due, 1, 10)
    counts = dict(conn.execute(
        sa.select(day, sa.func.count()).where(t.c.due >= first, t.c.due < now, late).group_by(day)
    ).all())
    return [(d.strftime("%Y-%m-%d"), int(counts.get(d.strftime("%Y-%m-%d"), 0))) for d in starts]
