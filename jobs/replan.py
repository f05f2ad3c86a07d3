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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from engine import ownership
from engine.evaluate import evaluate
from engine.rulefile import RuleFileError
from engine.ruleset import RuleSet
from engine.ticket import Ticket, events_from_rows, to_epoch
from store import Store, snapshots
from store.engine import write_transaction
from store.models import ticket_snapshots

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
    events = events_from_rows(data.get("events") or ())
    ticket = Ticket(
        id=str(data["id"]), status=data["status"], created_at=int(data["created_at"]),
        priority=data.get("priority"), subject=data.get("subject") or "",
        description=data.get("description") or "", tags=frozenset(data.get("tags") or ()),
        fields=dict(data.get("fields") or {}), events=tuple(events), group=data.get("group"),
    )
    holds = tuple(ownership.Hold.from_dict(h) for h in data.get("holds") or ())
    return ticket, holds


class _Stored(NamedTuple):
    source: str
    ticket_id: str
    ticket: Any
    next_check: datetime | None


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
        """Re-decide every snapshot not yet planned under `rules` (no helpdesk calls).

        The next batch is read, and the last one saved, on a helper thread
        while this one is decided: the database's time overlaps the engine's.
        """
        started = time.perf_counter()
        now = self.clock()
        report = ReplanReport(rules.version)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="replan-io") as io:
            reading = io.submit(self._fetch, rules.version, None)
            saving = None
            while True:
                rows = reading.result()
                if not rows:
                    break
                reading = io.submit(self._fetch, rules.version, (rows[-1].source, rows[-1].ticket_id))
                updates, due = self._decide(rows, rules, now, report)
                if saving is not None:
                    saving.result()  # errors surface here, in order
                saving = io.submit(self._save, updates, rules.version, rows[0], rows[-1], due, now)
            if saving is not None:
                saving.result()
        report.seconds = time.perf_counter() - started
        return report

    def _decide(self, rows: list[Any], rules: RuleSet, now: datetime, report: ReplanReport
                ) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
        epoch = to_epoch(now)
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
            moved = next_check != row.next_check
            report.moved += moved
            updates.append({"k_source": row.source, "k_ticket": row.ticket_id, "next_check": next_check,
                            "moved": moved})
        report.queued += sum(len(ids) for ids in due.values())
        return updates, due

    def _fetch(self, version: str, after: tuple[str, str] | None) -> list[Any]:
        """The next batch of snapshots to re-plan, each (source, ticket_id, ticket, next_check),
        the ticket with its events (store/snapshots.py: one more query per 500 tickets)."""
        s = ticket_snapshots
        query = (sa.select(s.c.source, s.c.ticket_id, s.c.ticket, s.c.events_count, s.c.next_check)
                 .where(s.c.rules_version != version)
                 .order_by(s.c.source, s.c.ticket_id).limit(self.batch))
        if after is not None:
            query = query.where(sa.tuple_(s.c.source, s.c.ticket_id) > sa.tuple_(*after))
        with snapshots.read_transaction(self.store.engine) as conn:
            rows = conn.execute(query).all()
            tickets = snapshots.documents(conn, rows)
        return [_Stored(row.source, row.ticket_id, ticket, row.next_check)
                for row, ticket in zip(rows, tickets, strict=True)]

    def _save(self, planned: list[dict[str, Any]], version: str, first: Any, last: Any,
              due: dict[str, list[str]], now: datetime) -> None:
        """The batch's next checks and `version`. PostgreSQL rewrites a row per UPDATE, so both
        columns change in one (pipelined) statement per row; SQLite updates the moved rows, then
        marks the key range.

        A snapshot a worker saved meanwhile under the new rules is newer than
        this plan: it is left as the worker wrote it.
        """
        s = ticket_snapshots
        stale = s.c.rules_version != version
        with write_transaction(self.store.engine) as conn:
            if conn.dialect.name == "postgresql":
                # psycopg sends the parameter sets pipelined; both columns in one UPDATE per row.
                conn.execute(sa.update(s).where(s.c.source == sa.bindparam("k_source"),
                                                s.c.ticket_id == sa.bindparam("k_ticket"), stale)
                             .values(next_check=sa.bindparam("next_check"), rules_version=version), planned)
            else:
                moved = [u for u in planned if u["moved"]]
                if moved:
                    conn.execute(sa.update(s).where(s.c.source == sa.bindparam("k_source"),
                                                    s.c.ticket_id == sa.bindparam("k_ticket"), stale)
                                 .values(next_check=sa.bindparam("next_check")), moved)
                key = sa.tuple_(s.c.source, s.c.ticket_id)
                low = sa.tuple_(sa.literal(first.source), sa.literal(first.ticket_id))
                high = sa.tuple_(sa.literal(last.source), sa.literal(last.ticket_id))
                conn.execute(sa.update(s).where(key >= low, key <= high, stale).values(rules_version=version))
        for source, ids in due.items():
            self.store.request_sync(source, ids, now, f"rules {version[:12]}: due now")
