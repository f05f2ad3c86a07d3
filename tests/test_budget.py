"""The shared write budget: sliding windows in the store, deferral (never loss) in workers and sweeps."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from config import ConfigError
from connectors.base import RemoteTicket, TicketChanges
from engine.rulefile import load_texts
from engine.ticket import Ticket
from jobs.budget import BudgetLimits, WriteBudget
from jobs.sweeps import Sweeper
from jobs.worker import Worker
from store import Store
from store.models import ticket_work, write_log
from tests.sweep_helpers import Clock, at, choozle, zendesk_world
from tests.test_sweeps import due_closes

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
T0 = at("2026-11-20T15:00:00Z")


def take(store, wants, seconds=0.0, per_minute=5, per_ticket=3):
    return store.take_write_budget("zendesk", wants, T0 + timedelta(seconds=seconds),
                                   per_minute=per_minute, per_ticket=per_ticket)


# -- the windows -------------------------------------------------------------------------


def test_the_account_window_grants_in_order_and_says_when_room_returns(store):
    first = take(store, [("1", 2), ("2", 2)])
    assert (first.granted, first.denied, first.retry_after) == (("1", "2"), (), 0.0)
    later = take(store, [("3", 2), ("4", 1)], seconds=20)
    # 4 of 5 used: ticket 3 (2 units) waits until the first writes leave the minute
    # (and its one-second guard), 41 s from now; ticket 4 (1 unit) still fits.
    assert (later.granted, later.denied, later.retry_after) == (("4",), ("3",), 41.0)
    assert take(store, [("3", 2)], seconds=59).denied == ("3",)
    # Granted exactly a minute later, both writes would sit in one closed 60 s window.
    assert take(store, [("3", 2)], seconds=60).denied == ("3",)
    assert take(store, [("3", 2)], seconds=61).granted == ("3",)


def test_the_per_ticket_window_is_ten_minutes(store):
    assert take(store, [("7", 3)], per_minute=100).granted == ("7",)
    refused = take(store, [("7", 1), ("8", 1)], seconds=300, per_minute=100)
    assert (refused.granted, refused.denied, refused.retry_after) == (("8",), ("7",), 301.0)
    assert take(store, [("7", 1)], seconds=600, per_minute=100).denied == ("7",)
    assert take(store, [("7", 1)], seconds=601, per_minute=100).granted == ("7",)


def test_old_rows_are_pruned(store):
    take(store, [("1", 1), ("2", 1)])
    take(store, [("3", 1)], seconds=602)
    with store.engine.connect() as conn:
        assert [r.ticket_id for r in conn.execute(sa.select(write_log.c.ticket_id))] == ["3"]


def test_concurrent_processes_never_overspend(database_url):
    """Eight 'processes' (own Store, own connections) race for a budget of 10 a minute."""
    stores = [Store(database_url) for _ in range(8)]
    stores[0].migrate()
    granted: list[str] = []
    lock, start = threading.Lock(), threading.Barrier(8)

    def spend(index: int) -> None:
        start.wait()
        for n in range(5):
            grant = stores[index].take_write_budget(
                "zendesk", [(f"{index}-{n}", 1)], T0, per_minute=10, per_ticket=20)
            with lock:
                granted.extend(grant.granted)

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(granted) == 10 and len(set(granted)) == 10
    finally:
        for instance in stores:
            instance.engine.dispose()


# -- workers: deferred, not lost, across processes ---------------------------------------


RULES = load_texts([("r.yaml", """
version: 1
reclassify:
  - id: default-priority
    when: {priority: none}
    set: normal
""")])


class FakeDesk:
    """An in-memory helpdesk shared by both 'processes'; records every apply."""

    name = "zendesk"

    def __init__(self, count: int) -> None:
        self.tickets = {str(n): Ticket(id=str(n), status="open", created_at=int(T0.timestamp()))
                        for n in range(1, count + 1)}
        self.applied: list[str] = []
        self.lock = threading.Lock()

    def fetch_ticket(self, ticket_id: str, known=None) -> RemoteTicket:
        with self.lock:
            return RemoteTicket(ticket=self.tickets[ticket_id], stamp="s")

    def apply(self, remote: RemoteTicket, changes: TicketChanges) -> None:
        with self.lock:
            self.applied.append(remote.ticket.id)
            self.tickets[remote.ticket.id] = dataclasses.replace(remote.ticket, priority=changes.priority)

    def write_parts(self, changes: TicketChanges) -> list[TicketChanges]:
        return [changes]  # one update carries everything

    def prepare(self, remote: RemoteTicket, changes: TicketChanges) -> TicketChanges:
        return changes


def attempts(store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(ticket_work.c.ticket_id, ticket_work.c.attempts)).all())


def test_over_budget_writes_wait_for_the_next_minute_across_two_processes(database_url):
    clock, desk = Clock(T0), FakeDesk(5)
    stores = [Store(database_url) for _ in range(2)]
    stores[0].migrate()
    try:
        workers = [Worker(s, desk, lambda: RULES, clock=clock, worker_id=f"p{i}",
                          budget=WriteBudget(s, BudgetLimits(per_minute=3)))
                   for i, s in enumerate(stores)]
        stores[0].request_sync("zendesk", list(desk.tickets), clock(), "test")

        first = workers[0].run_once(limit=2) + workers[1].run_once(limit=10)

        assert len(desk.applied) == 3
        deferred = sorted(o.ticket_id for o in first if not o.wrote)
        assert len(deferred) == 2 and all("write budget" in o.error for o in first if not o.wrote)
        assert attempts(stores[0]) == {ticket_id: 0 for ticket_id in deferred}  # not failures
        assert workers[0].run_once() == [] and workers[1].run_once() == []  # waiting, not dropped

        clock.advance(61)
        later = workers[1].run_once(limit=10)

        assert sorted(o.ticket_id for o in later if o.wrote) == deferred
        assert sorted(desk.applied) == sorted(desk.tickets)  # each ticket written exactly once
        assert attempts(stores[0]) == {} and stores[0].health()["dead_letters"] == 0
    finally:
        for instance in stores:
            instance.engine.dispose()


# -- sweeps: what does not fit stays due ----------------------------------------------------


@SQLITE_ONLY
def test_a_sweep_leaves_what_does_not_fit_due_for_its_next_run(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        ids = due_closes(store, world, clock, 5)
        clock.set("2026-11-09T18:00:00Z")
        # A bulk close of up to 100 tickets is two update calls (status + reply, then the note),
        # charged once for the chunk; 5 of the minute's 6 are already taken.
        budget = WriteBudget(store, BudgetLimits(per_minute=6))
        budget.spend("zendesk", "elsewhere", 5, clock())
        sweeper = Sweeper(store, world.connector(), lambda: rules, clock=clock, min_bulk=1, budget=budget)

        report = sweeper.sweep()

        assert (len(report.closed), sorted(report.deferred)) == (0, sorted(ids))
        assert sorted(t for _, t in store.due_tickets(clock())) == sorted(ids)
        clock.advance(30)
        assert sorted(sweeper.sweep().deferred) == sorted(ids)  # the minute is not over
        clock.advance(31)
        assert sorted(sweeper.sweep().closed) == sorted(ids)
        assert all(world.ticket(t)["status"] == "solved" for t in ids)
        with store.engine.connect() as conn:
            charged = conn.execute(sa.select(sa.func.sum(write_log.c.units))
                                   .where(write_log.c.ticket_id != "elsewhere")).scalar()
        assert charged == 2  # two bulk calls for five tickets


def granted_instants(store, requests_at: list[float], per_minute: int) -> list[float]:
    """Ask for one write at each offset (seconds after T0); the offsets that were granted."""
    granted = []
    for n, offset in enumerate(requests_at):
        grant = store.take_write_budget("zendesk", [(f"t{n}", 1)], T0 + timedelta(seconds=offset),
                                        per_minute=per_minute, per_ticket=1000)
        if grant.granted:
            granted.append(offset)
    return granted


def most_in_any_window(instants: list[float], window: float = 60.0) -> int:
    """The most instants in any closed window [t, t + window] (the worst window starts at one)."""
    ordered = sorted(instants)
    return max((sum(1 for x in ordered if start <= x <= start + window) for start in ordered), default=0)


@SQLITE_ONLY
def test_the_budget_holds_for_every_sliding_window_at_exact_instants(store):
    # 80 at once, then a retry at exactly +60 s (when the first ones leave the minute),
    # then a steady drip every quarter second for five minutes.
    asked = [0.0] * 80 + [60.0, 60.0, 60.5, 61.0] + [61.0 + 0.25 * n for n in range(1200)]
    granted = granted_instants(store, asked, per_minute=80)
    assert most_in_any_window(granted) <= 80
    # Writes land after their reservation, some sooner than others (up to the guard).
    landed = [at + (0.99 if n % 2 else 0.0) for n, at in enumerate(granted)]
    assert most_in_any_window(landed) <= 80
    assert len(granted) >= 80 * 5  # and the budget is used, not starved


@SQLITE_ONLY
def test_the_retry_after_a_denial_is_granted(store):
    assert len(granted_instants(store, [0.0] * 3, per_minute=3)) == 3
    denied = store.take_write_budget("zendesk", [("late", 1)], T0 + timedelta(seconds=10),
                                     per_minute=3, per_ticket=10)
    retry = T0 + timedelta(seconds=10 + denied.retry_after)
    assert store.take_write_budget("zendesk", [("late", 1)], retry, per_minute=3, per_ticket=10).granted


def test_limits_come_from_the_environment():
    assert BudgetLimits.from_env({}) == BudgetLimits(80, 20, 600)
    assert BudgetLimits.from_env({"WRITE_BUDGET_PER_MINUTE": "40", "WRITE_BUDGET_PER_TICKET": "5"}) == \
        BudgetLimits(40, 5, 600)
    with pytest.raises(ConfigError, match="WRITE_BUDGET_PER_MINUTE"):
        BudgetLimits.from_env({"WRITE_BUDGET_PER_MINUTE": "lots"})
