"""Recovery: short renewed leases, release on failure, rate limits not counted, parked tickets revived."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from connectors.base import RateLimitedError, TransientError
from jobs.worker import Worker
from store.models import ticket_work

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def enqueue(store, ticket_id: str, key: str, at: datetime = NOW) -> None:
    store.enqueue(source="zendesk", dedupe_key=key, ticket_id=ticket_id, event_type="ticket.updated",
                  payload={"event_type": "ticket.updated"}, received_at=at)


def row(store, ticket_id: str):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(ticket_work).where(ticket_work.c.ticket_id == ticket_id)).first()


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FailingHelpdesk:
    """A connector whose every read fails with `error`."""

    name = "zendesk"
    safe_updates = notes_in_bulk = True

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.reads = 0

    def fetch_ticket(self, ticket_id: str, known=None):
        self.reads += 1
        raise self.error


class Rules:
    version = "test"


def worker(store, helpdesk, clock, **kw) -> Worker:
    return Worker(store, helpdesk, lambda: Rules(), clock=clock, worker_id="w1", **kw)


def test_a_killed_workers_tickets_are_claimed_again_within_30_seconds(store):
    for n in range(5):
        enqueue(store, str(n), f"e{n}")
    assert len(store.claim("killed-worker", NOW, limit=10)) == 5  # then the process dies
    assert store.claim("successor", NOW + timedelta(seconds=10), limit=10) == []
    taken = store.claim("successor", NOW + timedelta(seconds=30), limit=10)
    assert sorted(claim.ticket_id for claim in taken) == ["0", "1", "2", "3", "4"]


def test_leases_are_renewed_while_work_runs(store):
    enqueue(store, "7", "e7")
    clock = Clock()
    w = worker(store, FailingHelpdesk(TransientError("x")), clock, lease_seconds=10)
    [claim] = store.claim(w.worker_id, NOW, lease_seconds=10)
    w._held[claim.token] = claim  # as run_once does while it processes the batch
    for step in range(1, 7):  # a minute of slow work, renewed every 10 s
        clock.now = NOW + timedelta(seconds=10 * step - 2)
        assert w.renew_leases() == 1
        assert store.claim("other", clock.now + timedelta(seconds=1)) == []
    w._held.clear()
    assert w.renew_leases() == 0
    assert row(store, "7").lease_until == clock.now + timedelta(seconds=10)


def test_renewal_runs_in_a_thread_during_run_forever(store, monkeypatch):
    renewed = threading.Event()
    w = worker(store, FailingHelpdesk(TransientError("x")), Clock(), lease_seconds=5)
    monkeypatch.setattr(w, "renew_leases", lambda: renewed.set() or 0)
    monkeypatch.setattr(Worker, "_renew_while", lambda self, stop: (renewed.set(), stop.wait()))
    stop = threading.Event()
    thread = threading.Thread(target=w.run_forever, args=(stop, 0.01))
    thread.start()
    assert renewed.wait(5)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_a_database_error_while_finishing_releases_the_ticket(store, monkeypatch):
    enqueue(store, "9", "e9")
    enqueue(store, "10", "e10")
    clock = Clock()
    w = worker(store, FailingHelpdesk(TransientError("vendor 503")), clock)
    failing = sa.exc.OperationalError("UPDATE", {}, Exception("connection lost"))

    def retry(*args, **kwargs):
        raise failing

    monkeypatch.setattr(store, "retry", retry)
    with pytest.raises(sa.exc.OperationalError):
        w.run_once()
    # Both tickets (the failed one and the one not reached) are available at once, not in a lease's time.
    taken = store.claim("successor", NOW, limit=10)
    assert sorted(claim.ticket_id for claim in taken) == ["10", "9"]
    assert all(claim.attempts == 0 for claim in taken)


def test_rate_limits_are_not_attempts(store):
    enqueue(store, "11", "e11")
    clock = Clock()
    helpdesk = FailingHelpdesk(RateLimitedError("429", retry_after=5))
    w = worker(store, helpdesk, clock, max_attempts=3)
    for step in range(20):  # 20 rounds of 429s
        clock.now = NOW + timedelta(seconds=6 * step)
        w.run_once()
    assert helpdesk.reads == 20
    assert row(store, "11").attempts == 0 and not row(store, "11").dead
    helpdesk.error = TransientError("503")
    clock.now += timedelta(seconds=6)
    w.run_once()
    # The first real failure is attempt 1 of 3, with its backoff; not a dead letter.
    assert row(store, "11").attempts == 1 and not row(store, "11").dead
    assert row(store, "11").available_at == clock.now + timedelta(seconds=30)


def park(store, ticket_id: str, at: datetime) -> None:
    enqueue(store, ticket_id, f"park-{ticket_id}", at)
    [claim] = store.claim("w", at + timedelta(seconds=1))
    store.dead_letter(claim, at + timedelta(seconds=2), "poison")
    assert row(store, ticket_id).dead


def test_reconciliation_revives_a_parked_ticket_that_changed_since(store):
    park(store, "20", NOW)
    later = NOW + timedelta(minutes=10)
    # Listed, but parked after the listing's window began: the change may be the one that failed.
    assert store.request_sync("zendesk", ["20"], later, "reconcile",
                              revive_dead_before=NOW) == 0
    assert row(store, "20").dead
    assert store.request_sync("zendesk", ["20"], later, "reconcile",
                              revive_dead_before=NOW + timedelta(minutes=5)) == 1
    revived = row(store, "20")
    assert not revived.dead and revived.attempts == 0 and revived.available_at == later
    [claim] = store.claim("w", later)
    assert claim.ticket_id == "20"


def test_request_sync_without_revival_leaves_parked_tickets_alone(store):
    park(store, "21", NOW)
    assert store.request_sync("zendesk", ["21"], NOW + timedelta(hours=1), "sweep") == 0
    assert row(store, "21").dead


def snapshot(store, ticket_id: str, next_check: datetime) -> None:
    store.save_snapshot("zendesk", ticket_id, ticket={"id": ticket_id}, decision={}, next_check=next_check,
                        rules_version="r1", now=NOW)


def test_the_due_sweep_takes_up_a_parked_ticket_when_its_moment_comes(store):
    park(store, "30", NOW)
    snapshot(store, "30", NOW + timedelta(hours=2))  # auto-close due after it was parked
    park(store, "31", NOW + timedelta(hours=1))
    snapshot(store, "31", NOW + timedelta(minutes=30))  # due before it was parked: stays parked
    assert store.due_tickets(NOW + timedelta(minutes=90)) == []
    due_at = NOW + timedelta(hours=2, minutes=1)
    assert store.due_tickets(due_at) == [("zendesk", "30")]
    [claim] = store.claim_tickets("zendesk", ["30"], "sweeper", due_at, lease_seconds=60)
    assert claim.ticket_id == "30" and claim.attempts == 0
    revived = row(store, "30")
    assert not revived.dead and revived.lease_token == claim.token
    store.complete(claim, due_at)
    assert row(store, "30") is None


def test_a_webhook_still_revives_a_parked_ticket(store):
    park(store, "40", NOW)
    enqueue(store, "40", "new-event", NOW + timedelta(minutes=1))
    assert not row(store, "40").dead


def test_reconciliation_queues_a_parked_ticket_after_a_human_edit(database_url):
    from jobs.reconcile import Reconciler
    from store import Store
    from tests.sweep_helpers import Clock as WorldClock
    from tests.sweep_helpers import zendesk_world

    clock = WorldClock("2026-11-20T14:00:00Z")
    with zendesk_world(clock) as world:
        ticket = world.create(subject="Parked")
        store = Store(database_url)
        store.migrate()
        try:
            clock.advance(120)
            assert Reconciler(store, world.connector(), clock=clock).run().queued == 1
            [claim] = store.claim("w", clock())
            store.dead_letter(claim, clock(), "poison")  # parked after the change it was listed for
            clock.advance(180)
            report = Reconciler(store, world.connector(), clock=clock).run()
            assert report.seen == 0 and row(store, ticket).dead
            clock.advance(180)
            world.comment(ticket, "agent", "Fixed the field by hand")  # a human edit
            clock.advance(180)
            report = Reconciler(store, world.connector(), clock=clock).run()
            assert (report.seen, report.queued) == (1, 1)
            assert not row(store, ticket).dead and row(store, ticket).attempts == 0
        finally:
            store.engine.dispose()


def test_a_database_outage_in_the_worker_loop_logs_one_line(store, monkeypatch, caplog):
    import logging

    def down(*args, **kwargs):
        raise sa.exc.OperationalError("SELECT", {}, Exception("could not connect to server"))

    monkeypatch.setattr(store, "claim", down)
    w = worker(store, FailingHelpdesk(TransientError("x")), Clock())
    monkeypatch.setattr(w, "_rules_ok", lambda: True)
    stop = threading.Event()
    calls = []
    monkeypatch.setattr(w, "run_once", lambda limit=10: calls.append(1) or down())
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    with caplog.at_level(logging.DEBUG, logger="jobs.worker"):
        w.run_forever(stop, idle_seconds=0.01)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING and "loop error" in r.getMessage()]
    assert len(calls) > 10 and len(errors) == 1
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.INFO)
