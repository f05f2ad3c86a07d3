"""What the console and its API read and write in the store, beyond the Store API."""

from __future__ import annotations

import difflib
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from store import board
from store.engine import read_transaction, write_transaction
from store.models import (
    PENDING,
    bot_actions,
    console_login_failures,
    console_users,
    console_vendor_calls,
    inbox_events,
    job_leases,
    rules_versions,
    sync_cursors,
    ticket_board,
    ticket_work,
    write_log,
)

# -- users ------------------------------------------------------------------------------


class UserError(ValueError):
    """A user that cannot be created; the message says why."""


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    local, at, domain = email.partition("@")
    if not (local and at and "." in domain) or len(email) > 255:
        raise UserError(f"not an email address: {email!r}")
    return email


def create_user(store: Any, email: str, password: str, now: datetime, *, replace: bool = False) -> bool:
    """Create (or with replace=True, reset the password of) an admin. Returns True if created."""
    email = normalize_email(email)
    if len(password or "") < 8:
        raise UserError("the password must have at least 8 characters")
    hashed = generate_password_hash(password)
    u = console_users
    with write_transaction(store.engine) as conn:
        existing = conn.execute(sa.select(u.c.id).where(u.c.email == email)).scalar_one_or_none()
        if existing is not None:
            if not replace:
                return False
            conn.execute(sa.update(u).where(u.c.id == existing).values(password_hash=hashed))
            return False
        conn.execute(sa.insert(u).values(email=email, password_hash=hashed, created_at=now))
        return True


def get_user(store: Any, user_id: int) -> dict | None:
    u = console_users
    with read_transaction(store.engine) as conn:
        row = conn.execute(sa.select(u.c.id, u.c.email).where(u.c.id == user_id)).first()
    return None if row is None else dict(row._mapping)


def check_login(store: Any, email: str, password: str, now: datetime) -> dict | None:
    """The user when email and password match, else None (same work either way)."""
    u = console_users
    try:
        email = normalize_email(email)
    except UserError:
        email = ""
    with read_transaction(store.engine) as conn:
        row = conn.execute(sa.select(u.c.id, u.c.email, u.c.password_hash).where(u.c.email == email)).first()
    # Hash even for an unknown address, so timing does not tell which addresses exist.
    hashed = row.password_hash if row is not None else _DUMMY_HASH
    ok = check_password_hash(hashed, password or "")
    if row is None or not ok:
        return None
    with write_transaction(store.engine) as conn:
        conn.execute(sa.update(u).where(u.c.id == row.id).values(last_login_at=now))
    return {"id": row.id, "email": row.email}


_DUMMY_HASH = generate_password_hash("not-a-password-of-anyone")


def record_failure(store: Any, keys: list[str], now: datetime) -> None:
    f = console_login_failures
    with write_transaction(store.engine) as conn:
        conn.execute(sa.insert(f), [{"key": key[:255], "at": now} for key in keys])
        conn.execute(sa.delete(f).where(f.c.at < now - timedelta(days=1)))


def failures(store: Any, keys: list[str], since: datetime) -> int:
    """The most failures recorded for any of `keys` since `since`."""
    f = console_login_failures
    with read_transaction(store.engine) as conn:
        rows = conn.execute(
            sa.select(f.c.key, sa.func.count()).where(f.c.key.in_(keys), f.c.at >= since).group_by(f.c.key)
        ).all()
    return max((n for _, n in rows), default=0)


def clear_failures(store: Any, keys: list[str]) -> None:
    f = console_login_failures
    with write_transaction(store.engine) as conn:
        conn.execute(sa.delete(f).where(f.c.key.in_(keys)))


# -- queue and health -------------------------------------------------------------------


def queue_stats(store: Any, now: datetime) -> dict[str, Any]:
    w, i = ticket_work, inbox_events
    with read_transaction(store.engine) as conn:
        depth, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(w.c.queued_at)).where(w.c.dead == sa.false())
        ).one()
        dead = conn.execute(
            sa.select(sa.func.count()).select_from(w).where(w.c.dead == sa.true())
        ).scalar_one()
        pending, oldest_event = conn.execute(
            sa.select(sa.func.count(), sa.func.min(i.c.received_at)).where(i.c.status == PENDING)
        ).one()
    oldest = _aware(oldest)
    oldest_event = _aware(oldest_event)
    return {
        "depth": depth,
        "oldest_age": None if oldest is None else max(0.0, (now - oldest).total_seconds()),
        "dead": dead,
        "inbox_pending": pending,
        "inbox_oldest_age": None if oldest_event is None else max(0.0, (now - oldest_event).total_seconds()),
    }


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def write_budget_used(store: Any, now: datetime) -> dict[str, int]:
    """Ticket updates per helpdesk in the last rolling minute (the shared write budget's window)."""
    wl = write_log
    with read_transaction(store.engine) as conn:
        rows = conn.execute(
            sa.select(wl.c.source, sa.func.coalesce(sa.func.sum(wl.c.units), 0))
            .where(wl.c.at > now - timedelta(minutes=1))
            .group_by(wl.c.source)
        ).all()
    return {source: int(n) for source, n in rows}


def cursors(store: Any) -> list[dict]:
    """Sync cursors (e.g. the reconciliation's high-water mark) with when they moved."""
    c = sync_cursors
    with read_transaction(store.engine) as conn:
        rows = conn.execute(
            sa.select(c.c.source, c.c.name, c.c.value, c.c.updated_at).order_by(c.c.source)
        ).all()
    return [dict(r._mapping) for r in rows]


def leases(store: Any) -> list[dict]:
    j = job_leases
    with read_transaction(store.engine) as conn:
        rows = conn.execute(sa.select(j.c.name, j.c.holder, j.c.expires_at)).all()
    return [dict(r._mapping) for r in rows]


def add_vendor_calls(store: Any, counts: dict[tuple[str, int, str], int]) -> None:
    """Add per-minute vendor call counts {(helpdesk, minute epoch, status class): n}; prune > 2 days."""
    from store.queue import dialect_insert

    v = console_vendor_calls
    rows = [{"source": s, "minute": datetime.fromtimestamp(m, UTC), "status": k, "count": n}
            for (s, m, k), n in counts.items()]
    if not rows:
        return
    with write_transaction(store.engine) as conn:
        stmt = dialect_insert(conn)(v)
        conn.execute(stmt.on_conflict_do_update(index_elements=[v.c.source, v.c.minute, v.c.status],
                                                set_={"count": v.c.count + stmt.excluded.count}), rows)
        conn.execute(sa.delete(v).where(v.c.minute < rows[0]["minute"] - timedelta(days=2)))


def vendor_calls(store: Any, since: datetime) -> dict[str, dict[str, int]]:
    """{helpdesk: {status class: calls}} since `since` (minute resolution)."""
    v = console_vendor_calls
    with read_transaction(store.engine) as conn:
        rows = conn.execute(
            sa.select(v.c.source, v.c.status, sa.func.sum(v.c.count))
            .where(v.c.minute >= since.replace(second=0, microsecond=0)).group_by(v.c.source, v.c.status)
        ).all()
    out: dict[str, dict[str, int]] = {}
    for source, status, n in rows:
        out.setdefault(source, {})[status] = int(n)
    return out


# -- activity ---------------------------------------------------------------------------


def activity(store: Any, *, rule: str = "", kind: str = "", day: str = "", limit: int = 200,
             offset: int = 0) -> list[dict]:
    """Bot actions newest first, filtered by rule, action type and UTC day (YYYY-MM-DD)."""
    a = bot_actions
    query = sa.select(a.c.id, a.c.source, a.c.ticket_id, a.c.rule, a.c.rules_version, a.c.type, a.c.before,
                      a.c.after, a.c.created_at)
    if rule:
        query = query.where(a.c.rule == rule)
    if kind:
        query = query.where(a.c.type == kind)
    if day:
        start = parse_day(day)
        query = query.where(a.c.created_at >= start, a.c.created_at < start + timedelta(days=1))
    query = query.order_by(a.c.id.desc()).limit(limit).offset(offset)
    with read_transaction(store.engine) as conn:
        return [dict(r._mapping) for r in conn.execute(query).all()]


def parse_day(day: str) -> datetime:
    try:
        return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"day must be YYYY-MM-DD, got {day!r}") from None


def activity_facets(store: Any) -> dict[str, list[str]]:
    a = bot_actions
    with read_transaction(store.engine) as conn:
        rules = conn.execute(sa.select(a.c.rule).distinct().order_by(a.c.rule).limit(500)).scalars().all()
        kinds = conn.execute(sa.select(a.c.type).distinct().order_by(a.c.type)).scalars().all()
    return {"rule": list(rules), "type": list(kinds)}


# -- board ------------------------------------------------------------------------------


def board_page(store: Any, now: datetime, filters: dict[str, str], limit: int = 50, offset: int = 0):
    with read_transaction(store.engine) as conn:
        return board.page(conn, now, filters, limit, offset)


def board_summary(store: Any, now: datetime, filters: dict[str, str]) -> dict[str, Any]:
    with read_transaction(store.engine) as conn:
        return {
            "count": board.count(conn, now, filters),
            "tiles": board.tiles(conn, now),
            "facets": board.facets(conn),
            "compliance": board.compliance(conn, now),
            "breaches": board.breaches_per_day(conn, now),
        }


def board_row(store: Any, source: str, ticket_id: str):
    b = ticket_board
    with read_transaction(store.engine) as conn:
        return conn.execute(sa.select(b).where(b.c.source == source, b.c.ticket_id == str(ticket_id))).first()


# -- rules versions ----------------------------------------------------------------------


def rule_texts(path: str | Path) -> list[tuple[str, str]]:
    """The rule files at `path` as (name, text), in load order."""
    from engine.rulefile import rule_paths

    return [(str(p), p.read_text(encoding="utf-8")) for p in rule_paths(path)]


def version_of(files: list[tuple[str, str]]) -> str:
    """The rules version load_texts gives these files (engine/rulefile.py)."""
    digest = hashlib.sha256()
    for name, text in files:
        digest.update(json.dumps([Path(name).name, text]).encode())
    return digest.hexdigest()[:12]


def remember_rules(store: Any, version: str | None, path: str | Path, now: datetime) -> bool:
    """Keep the text of the version in force, if the files on disk are that version. True if new."""
    if not version:
        return False
    try:
        files = rule_texts(path)
    except Exception:
        return False
    if version_of(files) != version:
        return False
    r = rules_versions
    with write_transaction(store.engine) as conn:
        if conn.execute(sa.select(r.c.version).where(r.c.version == version)).first() is not None:
            return False
        conn.execute(sa.insert(r).values(version=version, files=[[n, t] for n, t in files], first_seen=now))
    return True


def rules_history(store: Any, limit: int = 20) -> list[dict]:
    r = rules_versions
    with read_transaction(store.engine) as conn:
        rows = conn.execute(
            sa.select(r.c.version, r.c.files, r.c.first_seen).order_by(r.c.first_seen.desc()).limit(limit)
        ).all()
    return [{"version": v, "files": [tuple(f) for f in files], "first_seen": _aware(at)}
            for v, files, at in rows]


def diff(old: list[tuple[str, str]], new: list[tuple[str, str]], old_label: str, new_label: str) -> str:
    """A unified diff of two rule sets, file by file (by file name)."""
    before = {Path(n).name: t for n, t in old}
    after = {Path(n).name: t for n, t in new}
    out: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        out.extend(difflib.unified_diff(
            before.get(name, "").splitlines(keepends=True), after.get(name, "").splitlines(keepends=True),
            fromfile=f"{old_label}/{name}", tofile=f"{new_label}/{name}",
        ))
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)
