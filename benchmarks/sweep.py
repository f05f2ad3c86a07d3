"""Due-time sweep cost: 100k stored open tickets, 1% and 10% (10,000) due, bulk closes against
per-ticket updates and against the same bulk closes with one commit per store call (the sweep's
transactions before a chunk's writes were merged); and the re-plan of those 100k tickets from
their snapshots after a rules change (no vendor calls)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from connectors.base import ChangePage, ConnectorError, RemoteTicket, TicketChanges, fetch_each, prepared
from connectors.fields import FieldType
from engine.evaluate import evaluate
from engine.rulefile import load_rules
from engine.ticket import Event, Ticket, to_epoch
from jobs.budget import BudgetLimits, WriteBudget
from jobs.replan import Replanner
from jobs.sweeps import Sweeper
from jobs.worker import ticket_json
from store import Store, board, snapshots
from store.engine import normalize_url
from store.models import ticket_snapshot_events, ticket_snapshots

RULES = Path(__file__).resolve().parent.parent / "rules" / "examples" / "choozle.yaml"
SOURCE = "zendesk"
PROPOSED = datetime(2026, 11, 4, 18, 0, tzinfo=UTC)  # Wed 11:00 Denver: the agent proposes a fix
DUE = datetime(2026, 11, 9, 18, 0, tzinfo=UTC)  # 72 business hours later
GOAL_SECONDS = 2.0  # up to 1,000 due
GOAL_SECONDS_MANY = 3.0  # 10,000 due (a busy account)
GOAL_WRITES = 0.02
GOAL_REPLAN_SECONDS = 10.0


class FakeZendesk:
    """An in-process helpdesk (the whole connectors.base.Helpdesk Protocol) that keeps
    Zendesk's call pattern: a read is the ticket and its audits (2 GETs); apply is 1 PUT
    per part (the reply rides with the fields, a note beside a reply is a second PUT,
    write_parts as ZendeskConnector splits them); a bulk close is update_many + job poll
    for status and reply (close_many), and again for the note (note_many, one bulk job per
    100 tickets, as ZendeskConnector notes in bulk). Its fields are plain values."""

    safe_updates = True  # as ZendeskConnector: every update is conditional on its stamp
    notes_in_bulk = True

    name = SOURCE

    def __init__(self, tickets: Iterable[Ticket]) -> None:
        self.tickets = {ticket.id: ticket for ticket in tickets}
        self.calls: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def check(self) -> list[str]:
        return []

    def fetch_ticket(self, ticket_id: str, known=None) -> RemoteTicket:
        with self._lock:
            self.calls["read"] += 2
            return RemoteTicket(ticket=self.tickets[ticket_id], stamp="stamp")

    def fetch_tickets(self, ticket_ids: Iterable[str], known=None
                      ) -> dict[str, RemoteTicket | ConnectorError]:
        return fetch_each(self, ticket_ids, known)

    def prepare(self, remote: RemoteTicket, changes: TicketChanges) -> TicketChanges:
        return prepared(remote, changes, lambda _name: FieldType())

    def write_parts(self, changes: TicketChanges) -> list[TicketChanges]:
        if changes.is_empty():
            return []
        first = dataclasses.replace(changes, note=None if changes.reply else changes.note)
        return [first] + ([TicketChanges(note=changes.note)] if changes.reply and changes.note else [])

    def writes_for(self, changes: TicketChanges) -> int:
        return len(self.write_parts(changes))

    def apply(self, remote: RemoteTicket, changes: TicketChanges) -> None:
        if changes.is_empty():
            return
        with self._lock:
            self.calls["write"] += self.writes_for(changes)
            if changes.status:
                self._close(remote.ticket.id, changes.status)

    def bulk_writes_per_ticket(self, *, reply: str | None, note: str | None) -> int:
        return 2 if reply and note else 1

    def can_close_in_bulk(self, add_tags: Iterable[str] = ()) -> bool:
        return True

    def close_many(self, ticket_ids, *, status, add_tags=(), reply=None, note=None, wait_seconds=60):
        ids = list(ticket_ids)
        assert len(ids) <= 100, "Zendesk's update_many takes 100 ids"
        with self._lock:
            self.calls["write"] += 2 if note else 1  # update_many calls
            self.calls["read"] += 2 if note else 1  # job_status polls (done at the first poll)
            for ticket_id in ids:
                self._close(ticket_id, status)
        return {ticket_id: None for ticket_id in ids}

    def note_many(self, ticket_ids, note, *, wait_seconds=60):
        ids = list(ticket_ids)
        assert len(ids) <= 100, "Zendesk's update_many takes 100 ids"
        with self._lock:
            self.calls["write"] += 1  # one update_many with the note as its comment
            self.calls["read"] += 1  # its job_status poll
        return {ticket_id: None for ticket_id in ids}

    def changed_since(self, cursor: str | None, since: datetime) -> ChangePage:
        return ChangePage(ticket_ids=[], cursor=cursor, done=True)  # the sweep never asks

    def close(self) -> None:
        pass

    def _close(self, ticket_id: str, status: str) -> None:
        self.closed[ticket_id] += 1
        ticket = self.tickets[ticket_id]
        self.tickets[ticket_id] = dataclasses.replace(ticket, status=status)


class OneCommitPerCall(Store):
    """The store as the bulk sweep used it before its writes were merged: every call in a
    `transaction()` block commits on its own (the block is the store itself): budget, outbox
    record, parts done, notes sent, writes finished, snapshots and claims each commit, where
    the sweep commits four times a group of up to ten bulk jobs (jobs.sweeps.GROUP_CHUNKS)."""

    @contextmanager
    def transaction(self) -> Iterator[Store]:  # type: ignore[override]
        yield self


def due_ticket(number: int) -> Ticket:
    created = to_epoch(PROPOSED - timedelta(hours=2))
    proposed = to_epoch(PROPOSED)
    return Ticket(
        id=str(number), status="pending", created_at=created, priority="low", subject="Report is empty",
        tags=frozenset({"resolution_proposed"}),
        events=(Event(created, "comment", author="customer"), Event(created, "status", status="new"),
                Event(proposed, "comment", author="agent"), Event(proposed, "status", status="pending")),
    )


def seed(store: Store, total: int, due: list[str], version: str) -> float:
    """Snapshots for `total` open tickets; `due` ones due at DUE, the rest later or never; and
    their board rows (each with its SLA targets), as the store's saves leave them.

    On PostgreSQL the tables are analyzed afterwards: a live store of that size has had its
    statistics taken by autovacuum long before (a plan made on never-analyzed tables is not
    what a busy account's sweep meets)."""
    rng = random.Random(20261109)
    rules = load_rules(RULES)
    targets = evaluate(due_ticket(1), rules, to_epoch(PROPOSED)).to_dict()  # SLA clocks for the board
    due_set = set(due)
    start = time.perf_counter()
    rows = []
    for number in range(1, total + 1):
        ticket_id = str(number)
        if ticket_id in due_set:
            next_check = DUE
        elif rng.random() < 0.2:
            next_check = None
        else:
            next_check = DUE + timedelta(seconds=rng.randint(1, 30 * 86_400))
        rows.append({"source": SOURCE, "ticket_id": ticket_id, "ticket": {"id": ticket_id, "status": "open"},
                     "decision": {"actions": []}, "next_check": next_check, "rules_version": version,
                     "updated_at": PROPOSED})
    with store.engine.begin() as conn:  # one plain bulk INSERT; the store's upsert is not under test
        conn.execute(sa.insert(ticket_snapshots), rows)
        board.index_snapshots(conn, SOURCE, ({"ticket_id": row["ticket_id"], "ticket": row["ticket"],
                                              "decision": targets} for row in rows), PROPOSED)
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - start


def reset_due(store: Store, due: list[str], version: str) -> None:
    store.save_snapshots(SOURCE, [{"ticket_id": t, "ticket": {"id": t}, "decision": {"actions": []},
                                   "next_check": DUE, "rules_version": version} for t in due], PROPOSED)


def sweep_once(store: Store, due: list[str], *, bulk: bool, now: datetime = DUE) -> tuple[float, FakeZendesk]:
    """Re-arm `due` and sweep them once at `now`: seconds, and the fake helpdesk (its call counts)."""
    rules = load_rules(RULES)
    reset_due(store, due, rules.version)
    desk = FakeZendesk(due_ticket(int(t)) for t in due)
    budget = WriteBudget(store, BudgetLimits(per_minute=1_000_000, per_ticket=1_000))
    sweeper = Sweeper(store, desk, lambda: rules, clock=lambda: now, budget=budget,
                      limit=len(due), min_bulk=3 if bulk else 1_000_000)
    start = time.perf_counter()
    report = sweeper.sweep()
    seconds = time.perf_counter() - start
    done = report.closed if bulk else report.applied
    assert sorted(done, key=int) == due, report.summary()
    assert set(desk.closed.values()) == {1}, "a ticket was closed twice"
    return seconds, desk


def run(stores: list[Store], due: list[str], *, bulk: bool, repeat: int, start: datetime = DUE) -> list[dict]:
    """Sweep `due` `repeat` times on each store, in turn (re-armed in between, the stores
    sharing one database): per store, median seconds and calls per closed ticket.

    Each sweep runs a minute after the previous one, as the clock's do: the write budget's
    window then holds that sweep's own reservations, not every earlier sweep's too.
    """
    times: list[list[float]] = [[] for _ in stores]
    desks: list[FakeZendesk] = []
    for turn in range(repeat):
        desks = []
        for index, store in enumerate(stores):
            now = start + timedelta(seconds=61 * (turn * len(stores) + index))
            seconds, desk = sweep_once(store, due, bulk=bulk, now=now)
            times[index].append(seconds)
            desks.append(desk)
    closed = len(due)
    return [{"seconds": statistics.median(spent), "reads": desk.calls["read"] / closed,
             "writes": desk.calls["write"] / closed} for spent, desk in zip(times, desks, strict=True)]


def fresh_postgres(admin_url: str):
    admin = sa.create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"deskpilot_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return normalize_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def bench(label: str, url: str, total: int, due_share: float, repeat: int, baseline_sample: int) -> bool:
    store = Store(url)
    store.migrate()
    rules = load_rules(RULES)
    due = [str(n) for n in range(1, total + 1, round(1 / due_share))]
    try:
        seeded = seed(store, total, due, rules.version)
        # The same bulk sweep on the same database, each store call committing on its own,
        # taking turns with the merged one (both see the same budget window and tables).
        per_call_store = OneCommitPerCall(url)
        try:
            bulk, per_call = run([store, per_call_store], due, bulk=True, repeat=repeat)
        finally:
            per_call_store.engine.dispose()
        # The baseline is linear in tickets (about four commits each): a sample keeps
        # the run short, and its time is scaled to the whole due set.
        sample = due[:baseline_sample]
        [single] = run([store], sample, bulk=False, repeat=1, start=DUE + timedelta(seconds=61 * 2 * repeat))
        single["seconds"] *= len(due) / len(sample)
    finally:
        store.engine.dispose()
    print(f"{label}: {total:,} open tickets stored ({seeded:.1f}s to seed), {len(due):,} due")
    print(f"  bulk sweep:           {bulk['seconds']:6.2f} s per sweep | per closed ticket: "
          f"{bulk['reads']:.2f} reads, {bulk['writes']:.3f} writes")
    print(f"  bulk, a commit per store call: {per_call['seconds']:6.2f} s per sweep | "
          f"ratio per call / merged: {per_call['seconds'] / bulk['seconds']:.2f}x time")
    print(f"  baseline per-ticket:  {single['seconds']:6.2f} s per sweep | per closed ticket: "
          f"{single['reads']:.2f} reads, {single['writes']:.3f} writes "
          f"(timed on {len(sample)} tickets, scaled to {len(due):,})")
    print(f"  ratio baseline / bulk: {single['seconds'] / bulk['seconds']:.1f}x time, "
          f"{single['writes'] / bulk['writes']:.0f}x writes")
    goal = GOAL_SECONDS if len(due) <= 1_000 else GOAL_SECONDS_MANY
    ok_time, ok_writes = bulk["seconds"] < goal, bulk["writes"] <= GOAL_WRITES
    print(f"  goal < {goal:g} s per sweep: {'met' if ok_time else 'NOT met'}; "
          f"goal <= {GOAL_WRITES} writes per closed ticket: {'met' if ok_writes else 'NOT met'}")
    return ok_time and ok_writes


def seed_for_replan(store: Store, total: int, version: str) -> float:
    """`total` stored tickets as the worker leaves them: a third waiting on the customer after an
    agent's proposal, the rest open with a customer's question (different ages)."""
    rng = random.Random(20261203)
    start = time.perf_counter()
    rows = []
    for number in range(1, total + 1):
        ticket = due_ticket(number)
        if number % 3:
            asked = to_epoch(PROPOSED) - rng.randint(0, 5 * 86_400)
            ticket = dataclasses.replace(ticket, status="open", tags=frozenset(), created_at=asked,
                                         events=(Event(asked, "comment", author="customer"),
                                                 Event(asked, "status", status="open")))
        rows.append({"source": SOURCE, "ticket_id": ticket.id, "ticket": ticket_json(ticket),
                     "decision": {"actions": []}, "next_check": None, "rules_version": version,
                     "updated_at": PROPOSED})
        if len(rows) == 10_000:
            insert_first_saves(store, rows)
            rows = []
    if rows:
        insert_first_saves(store, rows)
    return time.perf_counter() - start


def insert_first_saves(store: Store, rows: list[dict]) -> None:
    """Plain bulk INSERTs of the rows as the store's first save splits them (events in chunks)."""
    documents, chunks = snapshots.first_rows(rows)
    with store.engine.begin() as conn:
        conn.execute(sa.insert(ticket_snapshots), documents)
        if chunks:
            conn.execute(sa.insert(ticket_snapshot_events), chunks)


def replan_one_by_one(store: Store, rules, ids: list[str], now: datetime) -> float:
    """The baseline: each ticket's snapshot read, decided and saved on its own (one commit each)."""
    from engine.evaluate import evaluate
    from jobs.replan import ticket_from_snapshot

    start = time.perf_counter()
    for ticket_id in ids:
        snapshot = store.get_snapshot(SOURCE, ticket_id)
        ticket, holds = ticket_from_snapshot(snapshot["ticket"])
        decision = evaluate(ticket, rules, to_epoch(now), holds)
        next_check = None if decision.next_check is None else datetime.fromtimestamp(decision.next_check, UTC)
        store.save_snapshot(SOURCE, ticket_id, ticket=snapshot["ticket"], decision=snapshot["decision"],
                            next_check=next_check, rules_version=rules.version, now=now)
    return time.perf_counter() - start


def bench_replan(label: str, url: str, total: int, baseline_sample: int) -> bool:
    store = Store(url)
    store.migrate()
    rules = load_rules(RULES)
    now = DUE - timedelta(days=1)
    try:
        seeded = seed_for_replan(store, total, "rules-before-the-edit")
        report = Replanner(store, lambda: rules, clock=lambda: now).replan(rules)
        assert report.tickets == total and report.unreadable == 0, report.summary()
        # The baseline re-plans a sample again (back under the old version first), one by one.
        sample = [str(n) for n in range(1, baseline_sample + 1)]
        with store.engine.begin() as conn:
            conn.execute(sa.update(ticket_snapshots).where(ticket_snapshots.c.ticket_id.in_(sample))
                         .values(rules_version="rules-before-the-edit"))
        single = replan_one_by_one(store, rules, sample, now) * total / len(sample)
    finally:
        store.engine.dispose()
    print(f"{label}: re-plan of {total:,} stored tickets after a rules change ({seeded:.1f}s to seed)")
    print(f"  batched re-plan:     {report.seconds:6.2f} s | {report.moved:,} next checks moved, "
          f"{report.queued:,} queued now | helpdesk calls: 0 (the re-planner has no connector)")
    print(f"  baseline one-by-one: {single:6.2f} s (timed on {len(sample)} tickets, scaled to {total:,})")
    print(f"  ratio baseline / batched: {single / report.seconds:.1f}x")
    ok = report.seconds < GOAL_REPLAN_SECONDS
    print(f"  goal < {GOAL_REPLAN_SECONDS:g} s: {'met' if ok else 'NOT met'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__)
    parser.add_argument("--tickets", type=int, default=100_000, help="stored open tickets (default 100,000)")
    parser.add_argument("--due", type=float, nargs="+", default=[0.01, 0.1],
                        help="share(s) of them due now, one sweep benchmark each (default 0.01 0.1)")
    parser.add_argument("--repeat", type=int, default=3, help="bulk sweeps timed (median; default 3)")
    parser.add_argument("--baseline-sample", type=int, default=200,
                        help="due tickets the per-ticket baseline is timed on (default 200)")
    parser.add_argument("--only", choices=("sweep", "replan"), help="run one of the two benchmarks")
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()} on {platform.machine()}; choozle auto-close; "
          "in-process fake Zendesk (Zendesk's call pattern)")
    ok = True
    benches = []
    if args.only in (None, "sweep"):
        for share in args.due:
            benches.append(lambda label, url, share=share: bench(label, url, args.tickets, share, args.repeat,
                                                                 args.baseline_sample))
    if args.only in (None, "replan"):
        benches.append(lambda label, url: bench_replan(label, url, args.tickets, args.baseline_sample))
    for run_one in benches:
        with tempfile.TemporaryDirectory() as folder:
            ok &= run_one("SQLite", f"sqlite:///{folder}/bench.db")
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if admin_url:
        for run_one in benches:
            url, drop = fresh_postgres(admin_url)
            try:
                ok &= run_one("PostgreSQL", url)
            finally:
                drop()
    else:
        print("PostgreSQL: skipped (set TEST_DATABASE_URL to include it)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
