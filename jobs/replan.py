"""Re-planning: when the rules version changes, every open ticket is decided again from its snapshot.

No helpdesk call is made. Each stored snapshot holds the ticket as the
bot's last look (or write) left it, so deciding it again under the new rules
gives its new `next_check` (a widened escalation, a new time-based rule) and
whether anything is due now; those tickets are queued for the worker, which
reads them from the helpdesk before writing. Solved and closed tickets keep
no next check unless a rule still applies to them. The rules version
re-planned last is kept in the database, so a restart, a reload in another
process, or several clocks do it once.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from engine import ownership
from engine.evaluate import evaluate
from engine.rulefile import RuleFileError
from engine.ruleset import RuleSet
from engine.ticket import Event, Ticket, to_epoch
from store import Store
from store.engine import read_transaction, write_transaction
from store.models import UTCDateTime, ticket_snapshots

log = logging.getLogger(__name__)

CURSOR_SOURCE, CURSOR_NAME = "*", "replanned_rules_version"
BATCH = 5000


@dataclass
class ReplanReport:
    rules_version: str | None = None
    skipped: str | None = None
    tickets: int = 0
    moved: int = 0  # next_check changed
    queued: int = 0  # something to do now: handed to the worker
    unreadable: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        if self.skipped:
            return f"re-plan skipped: {self.skipped}"
        return (f"re-planned {self.tickets} ticket(s) for rules {self.rules_version} in {self.seconds:.2f}s: "
                f"{self.moved} next check(s) moved, {self.queued} queued now, "
                f"{self.unreadable} snapshot(s) unreadable")


def ticket_from_snapshot(data: dict[str, Any]) -> tuple[Ticket, tuple[ownership.Hold, ...]]:
    """The engine's ticket (and the agents' holds) from a stored snapshot (jobs.worker.ticket_json)."""
    events = []
    for item in data.get("events") or ():
        at, kind, author, public, status = item[:5]
        bot = bool(item[5]) if len(item) > 5 else False
        events.append(Event(at=int(at), type=kind, author=author, public=bool(public), status=status,
                            bot=bot))
    ticket = Ticket(
        id=str(data["id"]), status=data["status"], created_at=int(data["created_at"]),
        priority=data.get("priority"), subject=data.get("subject") or "",
        description=data.get("description") or "", tags=frozenset(data.get("tags") or ()),
        fields=dict(data.get("fields") or {}), events=tuple(events), group=data.get("group"),
    )
    holds = tuple(ownership.Hold.from_dict(h) for h in data.get("holds") or ())
    return ticket, holds


class Replanner:
    """Decides every stored ticket again when the rules version differs from the one planned last."""

    def __init__(self, store: Store, rules: Callable[[], RuleSet], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), batch: int = BATCH) -> None:
        self.store, self.rules, self.clock, self.batch = store, rules, clock, batch

    def run(self, *, force: bool = False) -> ReplanReport:
        try:
            rules = self.rules()
        except RuleFileError as err:
            return ReplanReport(skipped=f"no rules loaded ({err})")
        if not force and self.store.get_cursor(CURSOR_SOURCE, CURSOR_NAME) == rules.version:
            return ReplanReport(rules.version, skipped="rules unchanged since the last re-plan")
        with self.store.exclusive("replan") as held:
            if not held:
                return ReplanReport(rules.version, skipped="another re-plan is running (lock held)")
            report = self.replan(rules)
        self.store.set_cursor(CURSOR_SOURCE, CURSOR_NAME, rules.version, self.clock())
        log.info("%s", report.summary())
        return report

    def replan(self, rules: RuleSet) -> ReplanReport:
        """Re-decide every snapshot not yet planned under `rules` (no helpdesk calls)."""
        started = time.perf_counter()
        now = self.clock()
        epoch = to_epoch(now)
        report = ReplanReport(rules.version)
        for rows in self._batches(rules.version):
            updates: list[dict[str, Any]] = []
            due: dict[str, list[str]] = defaultdict(list)
            for row in rows:
                report.tickets += 1
                try:
                    ticket, holds = ticket_from_snapshot(row.ticket)
                    decision = evaluate(ticket, rules, epoch, holds)
                except (KeyError, TypeError, ValueError) as err:
                    report.unreadable += 1
                    log.warning("%s ticket %s: snapshot not re-planned (%s); queued for a fresh read",
                                row.source, row.ticket_id, err)
                    due[row.source].append(row.ticket_id)
                    continue
                next_check = (None if decision.next_check is None
                              else datetime.fromtimestamp(decision.next_check, UTC))
                if decision.actions:
                    due[row.source].append(row.ticket_id)
                if next_check != row.next_check:
                    report.moved += 1
                    updates.append({"k_source": row.source, "k_ticket": row.ticket_id,
                                    "next_check": next_check})
            self._save(updates, rules.version, rows[0], rows[-1])
            for source, ids in due.items():
                report.queued += len(ids)
                self.store.request_sync(source, ids, now, f"rules {rules.version[:12]}: due now")
        report.seconds = time.perf_counter() - started
        return report

    def _batches(self, version: str) -> Iterator[list[Any]]:
        s = ticket_snapshots
        after: tuple[str, str] | None = None
        while True:
            query = (sa.select(s.c.source, s.c.ticket_id, s.c.ticket, s.c.next_check)
                     .where(s.c.rules_version != version)
                     .order_by(s.c.source, s.c.ticket_id).limit(self.batch))
            if after is not None:
                query = query.where(sa.tuple_(s.c.source, s.c.ticket_id) > sa.tuple_(*after))
            with read_transaction(self.store.engine) as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            yield rows
            after = (rows[-1].source, rows[-1].ticket_id)

    def _save(self, updates: list[dict[str, Any]], version: str, first: Any, last: Any) -> None:
        """New next checks where they moved, then the batch's key range marked planned under `version`.

        A snapshot a worker saved meanwhile under the new rules is newer than
        this plan: it is left as the worker wrote it.
        """
        s = ticket_snapshots
        stale = s.c.rules_version != version
        with write_transaction(self.store.engine) as conn:
            if updates and conn.dialect.name == "postgresql":
                # One UPDATE ... FROM (VALUES ...) per chunk: far fewer round trips than executemany.
                for start in range(0, len(updates), 5000):
                    chunk = updates[start:start + 5000]
                    moved = sa.values(sa.column("k_source", sa.String), sa.column("k_ticket", sa.String),
                                      sa.column("next_check", UTCDateTime()), name="moved").data(
                        [(u["k_source"], u["k_ticket"], u["next_check"]) for u in chunk])
                    conn.execute(sa.update(s).where(s.c.source == moved.c.k_source,
                                                    s.c.ticket_id == moved.c.k_ticket, stale)
                                 .values(next_check=sa.cast(moved.c.next_check, UTCDateTime())))
            elif updates:
                conn.execute(sa.update(s).where(s.c.source == sa.bindparam("k_source"),
                                                s.c.ticket_id == sa.bindparam("k_ticket"), stale)
                             .values(next_check=sa.bindparam("next_check")), updates)
            key = sa.tuple_(s.c.source, s.c.ticket_id)
            low = sa.tuple_(sa.literal(first.source), sa.literal(first.ticket_id))
            high = sa.tuple_(sa.literal(last.source), sa.literal(last.ticket_id))
            conn.execute(sa.update(s).where(key >= low, key <= high, stale).values(rules_version=version))
