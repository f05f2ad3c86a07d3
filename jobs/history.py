"""Ticket histories for simulations and SLA reports: read through the helpdesk, cached in the store.

A history document is one ticket, vendor-neutral but with the vendor's ids
(so any rule set's `helpdesk:` mapping reads it):

    {"id": "12", "url": "https://acme.zendesk.com/agent/tickets/12",
     "created_at": 1793700000, "updated_at": 1793790000, "subject": "...", "description": "...",
     "initial": {"status": "new", "priority": "normal", "group": "5", "tags": ["vip"],
                 "fields": {"9001": "professional"}},
     "events": [{"id": "c1", "at": 1793703600, "type": "comment", "author": "agent", "public": true,
                 "bot": false},
                {"id": "s2", "at": 1793703600, "type": "status", "status": "pending", "bot": false,
                 "custom_status": "Waiting on customer reply"},
                ... "priority" (priority), "group" (group), "tags" (added, removed), "field" (field, value)]}

`bot` marks what Deskpilot did (its signed comments and the changes of the
updates that carry one); the replay leaves it out. `custom_status` (on
`initial` and status events, when the helpdesk has one) is the custom status's
agent label, which rules may name.

The store keeps every document read and the span of time read completely
(`history_coverage`): a window inside that span is served without a vendor
call; a window that reaches past it reads only the part after it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

import sqlalchemy as sa

from config import DEFAULT_HISTORY_API_SHARE, JOB_DEFAULTS
from jobs.simulate import in_window
from store.engine import read_transaction, write_transaction
from store.models import history_coverage, history_tickets

log = logging.getLogger(__name__)

DEFAULT_SHARE = DEFAULT_HISTORY_API_SHARE  # of the account's API budget (HISTORY_API_SHARE)
DEFAULT_MAX_AGE = JOB_DEFAULTS["HISTORY_MAX_AGE"]  # seconds a read stays fresh for windows ending now
# Documented per-minute limits to assume before the helpdesk's headers tell.
DEFAULT_LIMITS = {"export": 10, "api": 200}
_BATCH = 500


def _dt(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class ApiShare:
    """Keeps the history read to at most `share` of each per-minute API budget.

    The budget of ordinary calls is learned from the helpdesk's headers
    (Zendesk `X-Rate-Limit`, Freshdesk `X-RateLimit-Total`; a call's cost from
    `X-RateLimit-Used-CurrentRequest`); Zendesk's incremental exports have their
    own documented 10 a minute. When the share of the last minute is spent, the
    next call waits.
    """

    def __init__(self, share: float = DEFAULT_SHARE, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 limits: Mapping[str, int] | None = None) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"the API share must be above 0 and at most 1, got {share!r}")
        self.share, self.clock, self.sleep = share, clock, sleep
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self.calls = 0
        self.waited = 0.0
        self._spent: dict[str, deque[tuple[float, int]]] = {}
        self._pending_cost: dict[str, int] = {}

    def allowed(self, kind: str) -> int:
        return max(1, int(self.limits.get(kind, DEFAULT_LIMITS["api"]) * self.share))

    def before(self, kind: str) -> None:
        spent = self._spent.setdefault(kind, deque())
        while True:
            now = self.clock()
            while spent and spent[0][0] <= now - 60:
                spent.popleft()
            if sum(cost for _, cost in spent) < self.allowed(kind):
                break
            wait = spent[0][0] + 60 - now
            self.waited += wait
            self.sleep(wait)
        self.calls += 1
        spent.append((self.clock(), 1))

    def after(self, kind: str, headers: Mapping[str, str]) -> None:
        limit = headers.get("X-Rate-Limit") or headers.get("X-RateLimit-Total")
        if kind != "export" and limit and str(limit).isdigit():
            self.limits[kind] = int(limit)
        cost = headers.get("X-RateLimit-Used-CurrentRequest")
        spent = self._spent.get(kind)
        if spent and cost and str(cost).isdigit() and int(cost) > 1:
            at, _ = spent.pop()
            spent.append((at, int(cost)))


class Progress:
    """Progress lines on a terminal (stderr): rewritten in place on a tty, else at most every few seconds."""

    def __init__(self, stream: TextIO | None = None, every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every, self.clock = every, clock
        self._last = -1e9
        self._text = ""

    def __call__(self, text: str) -> None:
        self._text = text
        now = self.clock()
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif now - self._last >= self.every:
            self._last = now
            self.stream.write(text + "\n")
            self.stream.flush()

    def done(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()


def _last_event(doc: Mapping[str, Any]) -> int:
    return max([int(doc["created_at"]), *(int(e["at"]) for e in doc.get("events") or ())])


def merge(old: Mapping[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A document read from `partial_from` on, completed with the cached one's earlier timeline."""
    partial = new.pop("partial_from", None)
    new.pop("complete", None)
    if old is None or partial is None:
        return new
    ids = {e.get("id") for e in new["events"]}
    earlier = [e for e in old.get("events") or () if int(e["at"]) < partial and e.get("id") not in ids]
    new["events"] = earlier + new["events"]
    new["initial"] = old.get("initial") or new["initial"]
    return new


class HistoryCache:
    """The store's history tables."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def coverage(self, source: str) -> dict[str, Any] | None:
        with read_transaction(self.engine) as conn:
            row = conn.execute(sa.select(history_coverage).where(history_coverage.c.source == source)).first()
        return None if row is None else dict(row._mapping)

    def documents(self, source: str, start: int, end: int) -> list[dict[str, Any]]:
        """The cached documents replayed for [start, end] (created or with an event in it)."""
        t = history_tickets.c
        query = (sa.select(t.document).where(t.source == source, t.last_event_at >= _dt(start),
                                             t.created_at <= _dt(end)).order_by(t.created_at, t.ticket_id))
        with read_transaction(self.engine) as conn:
            docs = [row[0] for row in conn.execute(query)]
        return [doc for doc in docs if in_window(doc, start, end)]

    def get_many(self, source: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(ids)
        out: dict[str, dict[str, Any]] = {}
        t = history_tickets.c
        with read_transaction(self.engine) as conn:
            for i in range(0, len(ids), _BATCH):
                chunk = ids[i:i + _BATCH]
                for tid, doc in conn.execute(sa.select(t.ticket_id, t.document).where(
                        t.source == source, t.ticket_id.in_(chunk))):
                    out[tid] = doc
        return out

    def known_ids(self, source: str) -> set[str]:
        with read_transaction(self.engine) as conn:
            return set(conn.execute(sa.select(history_tickets.c.ticket_id).where(
                history_tickets.c.source == source)).scalars())

    def save(self, source: str, docs: list[dict[str, Any]], account: str, covered_from: int,
             covered_to: int, now: datetime, state: Mapping[str, Any] | None = None,
             replace: bool = False) -> None:
        """Store `docs` and the span now read completely, in one transaction."""
        t = history_tickets.c
        with write_transaction(self.engine) as conn:
            if replace:
                conn.execute(sa.delete(history_tickets).where(t.source == source))
            for i in range(0, len(docs), _BATCH):
                chunk = docs[i:i + _BATCH]
                conn.execute(sa.delete(history_tickets).where(
                    t.source == source, t.ticket_id.in_([d["id"] for d in chunk])))
                conn.execute(sa.insert(history_tickets), [
                    {"source": source, "ticket_id": d["id"], "document": d,
                     "created_at": _dt(int(d["created_at"])), "updated_at": _dt(int(d["updated_at"])),
                     "last_event_at": _dt(_last_event(d)), "fetched_at": now} for d in chunk])
            conn.execute(sa.delete(history_coverage).where(history_coverage.c.source == source))
            conn.execute(sa.insert(history_coverage).values(
                source=source, account=account, covered_from=_dt(covered_from), covered_to=_dt(covered_to),
                state=dict(state or {}), updated_at=now))


def load_history(
    cache: HistoryCache,
    reader: Any,
    start: int,
    end: int,
    *,
    now: datetime,
    max_age: int = DEFAULT_MAX_AGE,
    progress: Callable[[str], None] = lambda text: None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The history documents for [start, end]: from the cache when it covers the window,
    else read (only the part past what is cached) and stored first.

    Returns (documents, facts: calls made, tickets read, whether the cache answered).
    """
    source = reader.source
    cov = cache.coverage(source)
    usable = cov is not None and cov["account"] == reader.account and cov["covered_from"] <= _dt(start)
    if usable and end <= cov["covered_to"].timestamp() + max_age:
        docs = cache.documents(source, start, end)
        progress(f"{source}: {len(docs)} tickets from the history cache, 0 calls")
        return docs, {"calls": 0, "read": 0, "cached": True}
    calls_before = getattr(reader.pace, "calls", 0)
    if usable:
        read_from = int(cov["covered_to"].timestamp())
        known = cache.known_ids(source)
        docs, _ = reader.read(read_from, known=known.__contains__, progress=progress)
        cached = cache.get_many(source, [d["id"] for d in docs if d.get("partial_from") is not None])
        docs = [merge(cached.get(d["id"]), d) for d in docs]
        covered_from = int(cov["covered_from"].timestamp())
        replace = False
    else:
        docs, _ = reader.read(start, progress=progress)
        docs = [merge(None, d) for d in docs]
        covered_from = start
        replace = cov is not None and cov["account"] != reader.account
    # Zendesk's exports leave out the last minute's changes (`lag`): the span read ends before it.
    covered_to = int(now.timestamp()) - int(getattr(reader, "lag", 0))
    cache.save(source, docs, reader.account, covered_from, covered_to, now, replace=replace)
    calls = getattr(reader.pace, "calls", 0) - calls_before
    progress(f"{source}: {len(docs)} tickets read in {calls} calls")
    return cache.documents(source, start, end), {"calls": calls, "read": len(docs), "cached": False}


def build_reader(settings: Any, *, share: float, pace_clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, status_map: Mapping[int, str] | None = None):
    """The configured helpdesk's history reader, paced to `share` of its API budget."""
    pace = ApiShare(share, clock=pace_clock, sleep=sleep)
    if settings.helpdesk == "zendesk":
        from connectors.zendesk.history import ZendeskHistoryReader

        return ZendeskHistoryReader.from_settings(settings, pace=pace, sleep=sleep)
    from connectors.freshdesk.history import FreshdeskHistoryReader

    return FreshdeskHistoryReader.from_settings(settings, pace=pace, sleep=sleep, status_map=status_map)
