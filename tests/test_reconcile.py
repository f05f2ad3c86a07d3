"""Reconciliation: tickets whose webhooks never came are queued, cursors persist, exports are paced."""

from __future__ import annotations

import pytest

from connectors.base import ChangePage
from engine.ticket import to_epoch
from jobs.reconcile import CURSOR, Reconciler
from jobs.worker import Worker
from store import Store
from tests.sweep_helpers import Clock, choozle, freshdesk_world, zendesk_world

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def queued(store, now) -> list[str]:
    """Ticket ids in the work queue (released again at once)."""
    claims = store.claim("test", now, limit=100)
    for claim in claims:
        store.retry(claim, now, "peek", 0, count_attempt=False)
    return sorted(claim.ticket_id for claim in claims)


def test_a_dropped_zendesk_webhook_is_picked_up_and_the_cursor_persists(database_url):
    clock = Clock("2026-11-20T12:00:00Z")
    with zendesk_world(clock) as world:  # no webhook_url: every webhook is "dropped"
        stale = world.create(subject="Old, untouched for two hours")
        clock.set("2026-11-20T14:00:00Z")
        fresh = world.create(subject="New")
        clock.advance(300)
        world.comment(fresh, "customer", "Hello? Anyone?")
        clock.advance(120)

        store = Store(database_url)
        store.migrate()
        try:
            report = Reconciler(store, world.connector(), clock=clock).run()
            # The first run reaches one hour back: the stale ticket is not listed.
            assert (report.requests, report.seen, report.queued, report.caught_up) == (1, 1, 1, True)
            assert queued(store, clock()) == [fresh]
            Worker(store, world.connector(), choozle, clock=clock).run_once()
            assert store.get_snapshot("zendesk", fresh) is not None  # no longer unmanaged
            cursor = store.get_cursor("zendesk", CURSOR)
            assert cursor
        finally:
            store.engine.dispose()

        # A new process: same database, fresh objects. It carries on from the cursor.
        clock.advance(180)
        world.comment(stale, "customer", "Still there?")
        again = Store(database_url)
        try:
            report = Reconciler(again, world.connector(), clock=clock).run()
            assert (report.seen, report.queued) == (1, 1)
            assert queued(again, clock()) == [stale]
            assert again.get_cursor("zendesk", CURSOR) != cursor
            clock.advance(180)
            assert Reconciler(again, world.connector(), clock=clock).run().seen == 0
        finally:
            again.engine.dispose()


class EndlessExport:
    """A Zendesk connector stand-in whose export always has another page."""

    name = "zendesk"

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, int]] = []

    def fetch_ticket(self, ticket_id):  # pragma: no cover - not used by reconciliation
        raise AssertionError("not expected")

    def changed_since(self, cursor, since):
        self.calls.append((cursor, to_epoch(since)))
        page = len(self.calls)
        return ChangePage([str(page)], f"cursor-{page}", False)


@SQLITE_ONLY
def test_zendesk_exports_never_exceed_ten_requests_a_minute_across_runs(store):
    clock, export = Clock("2026-11-20T14:00:00Z"), EndlessExport()
    first = Reconciler(store, export, clock=clock).run()
    assert (first.requests, first.caught_up) == (10, False)
    assert export.calls[0] == (None, to_epoch(clock()) - 3600)  # the configured look-back
    assert [cursor for cursor, _ in export.calls[1:3]] == ["cursor-1", "cursor-2"]

    clock.advance(30)
    assert Reconciler(store, export, clock=clock).run().requests == 0  # same minute, new process
    clock.advance(30)
    third = Reconciler(store, export, clock=clock).run()
    assert third.requests == 10 and export.calls[10][0] == "cursor-10"
    assert store.get_cursor("zendesk", CURSOR) == "cursor-20"
    assert third.queued == 10  # one new ticket per page


@SQLITE_ONLY
def test_freshdesk_reconciliation_scans_from_the_stored_instant(store):
    clock = Clock("2026-11-20T14:00:00Z")
    with freshdesk_world(clock) as world:
        first = world.create()
        clock.advance(600)
        fd = world.connector()
        report = Reconciler(store, fd, clock=clock).run()
        assert (report.seen, report.queued) == (1, 1) and queued(store, clock()) == [first]
        # The next scan starts at the latest updated_at Freshdesk listed (its clock, not ours).
        assert store.get_cursor("freshdesk", CURSOR) == "2026-11-20T14:00:00Z"

        clock.advance(600)
        second = world.create()
        world.forget_requests()
        report = Reconciler(store, fd, clock=clock).run()
        # updated_since is inclusive: the ticket at the cursor instant is listed again.
        assert report.seen == 2 and queued(store, clock()) == sorted([first, second])
        [listing] = [r for r in world.requests() if r["path"] == "/api/v2/tickets"]
        assert listing["query"]["updated_since"] == "2026-11-20T14:00:00Z"


@SQLITE_ONLY
def test_one_reconciliation_at_a_time(store):
    clock, export = Clock("2026-11-20T14:00:00Z"), EndlessExport()
    with store.exclusive("reconcile:zendesk") as held:
        assert held
        report = Reconciler(store, export, clock=clock).run()
    assert report.skipped and export.calls == []
