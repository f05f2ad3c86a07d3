"""The bulk sweep's store writes, merged into a few transactions per chunk: each commits whole or
not at all, a fault inside one leaves what the worker resumes from, and the set-based store
operations they use (claims completed, budget carried, outbox recorded, board indexed) keep the
per-call semantics."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from jobs.budget import BudgetLimits, WriteBudget
from jobs.sweeps import Sweeper
from jobs.worker import Worker
from store import board
from store.models import bot_actions, outbox_parts, ticket_board_targets, ticket_work, write_log
from store.outbox import NewWrite
from tests.sweep_helpers import Clock, at, choozle, freshdesk_world, zendesk_world
from tests.test_outbox_bulk import _bot_notes, _bot_replies, _due, _status

T0 = at("2026-11-09T18:00:00Z")
CLOSE_TYPES = ["note", "reply", "set_status"]


def _count(store, table, *where) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()


def _closed_once(vendor, world, store, ids) -> None:
    for tid in ids:
        assert _status(vendor, world, tid) == "solved"
        assert len(_bot_notes(vendor, world, tid)) == 1
        assert len(_bot_replies(vendor, world, tid)) == 1
        assert sorted(a["type"] for a in store.actions_for(vendor, tid)) == CLOSE_TYPES
        assert not store.outbox.pending(vendor, tid)


# -- one transaction: all of it or nothing ----------------------------------------------------


def test_a_store_transaction_commits_every_write_together_or_none(store):
    [claim] = store.claim_tickets("zendesk", ["7"], "sweep", T0)
    snapshot = {"ticket_id": "7", "ticket": {"id": "7", "status": "solved"}, "decision": {"actions": []},
                "next_check": None, "rules_version": "v1"}
    action = {"rule": "r", "type": "set_status", "before": "pending", "after": {"value": "solved"}}
    close = [NewWrite("7", [action], [("bulk", {"status": "solved"})])]
    with pytest.raises(RuntimeError), store.transaction() as tx:
        [write] = tx.outbox.record_many("zendesk", close, rules_version="v1", now=T0, first_sent=True)
        assert tx.outbox.pending("zendesk", "7")  # its own writes are visible inside
        tx.outbox.done([write.parts[0].id], T0)
        tx.outbox.finish_many([write], T0)
        tx.save_snapshots("zendesk", [snapshot], T0)
        tx.complete_many([claim], T0)
        raise RuntimeError("the process fails before the commit")
    assert store.outbox.writes_for("zendesk", "7") == []
    assert store.actions_for("zendesk", "7") == []
    assert store.get_snapshot("zendesk", "7") is None
    assert _count(store, ticket_work, ticket_work.c.lease_token == claim.token) == 1  # still leased

    with store.transaction() as tx:
        [write] = tx.outbox.record_many("zendesk", close, rules_version="v1", now=T0, first_sent=True)
        tx.outbox.done([write.parts[0].id], T0)
        tx.outbox.finish_many([write], T0)
        tx.save_snapshots("zendesk", [snapshot], T0)
        tx.complete_many([claim], T0)
    [stored] = store.outbox.writes_for("zendesk", "7")
    assert stored.state == "done" and [p.state for p in stored.parts] == ["done"]
    assert [a["type"] for a in store.actions_for("zendesk", "7")] == ["set_status"]
    assert store.get_snapshot("zendesk", "7")["ticket"]["status"] == "solved"
    assert _count(store, ticket_work) == 0


# -- faults inside the merged transactions of a bulk close -----------------------------------


class Crash(BaseException):
    pass


class CrashAtPostCloseCheck:
    """The connector, except that the process dies at the first read after the bulk close."""

    def __init__(self, real) -> None:
        self.real, self.name, self.closed = real, real.name, False

    def close_many(self, *args, **kwargs):
        self.closed = True
        return self.real.close_many(*args, **kwargs)

    def fetch_ticket(self, ticket_id):
        if self.closed:
            raise Crash("killed during the post-close check")
        return self.real.fetch_ticket(ticket_id)

    def fetch_tickets(self, ticket_ids, *args, **kwargs):
        if self.closed:
            raise Crash("killed during the post-close check")
        return self.real.fetch_tickets(ticket_ids, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.mark.parametrize("vendor", ["zendesk", "freshdesk"])
def test_a_crash_after_the_finishing_commit_keeps_the_close_whole_and_the_claims_leased(store, vendor):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    world_of = zendesk_world if vendor == "zendesk" else freshdesk_world
    with world_of(clock) as world:
        ids = _due(vendor, store, world, clock, rules, 3)
        sweeper = Sweeper(store, CrashAtPostCloseCheck(world.connector()), lambda: rules, clock=clock,
                          lease_seconds=300, fetch_threads=1)
        with pytest.raises(Crash):
            sweeper.sweep()
        # Written together before the check: parts done, writes finished, audit rows, snapshots.
        for tid in ids:
            assert sorted(a["type"] for a in store.actions_for(vendor, tid)) == CLOSE_TYPES
            assert not store.outbox.pending(vendor, tid)
            assert store.get_snapshot(vendor, tid)["ticket"]["status"] == "solved"
        # The claims are completed only after the check: still leased to the dead sweep.
        assert _count(store, ticket_work, ticket_work.c.lease_token.is_not(None)) == 3
        clock.advance(400)
        outcomes = Worker(store, world.connector(), lambda: rules, clock=clock).run_once(limit=10)
        assert sorted(o.ticket_id for o in outcomes) == sorted(ids)
        assert [o.wrote for o in outcomes] == [False] * 3  # nothing left to send
        _closed_once(vendor, world, store, ids)


@pytest.mark.parametrize("vendor", ["zendesk", "freshdesk"])
def test_a_failure_inside_the_finishing_transaction_rolls_all_of_it_back(store, vendor, monkeypatch):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    world_of = zendesk_world if vendor == "zendesk" else freshdesk_world
    real_index = board.index_snapshots

    def failing(conn, source, snapshots, now):
        real_index(conn, source, snapshots, now)  # written, then lost with the transaction
        raise Crash("the database went away while saving the snapshots")

    with world_of(clock) as world:
        ids = _due(vendor, store, world, clock, rules, 3)
        due_at = {tid: store.get_snapshot(vendor, tid)["next_check"] for tid in ids}
        monkeypatch.setattr(board, "index_snapshots", failing)
        sweeper = Sweeper(store, world.connector(), lambda: rules, clock=clock, lease_seconds=300)
        with pytest.raises(Crash):
            sweeper.sweep()
        monkeypatch.setattr(board, "index_snapshots", real_index)
        for tid in ids:
            assert _status(vendor, world, tid) == "solved"  # the helpdesk has the close
            assert store.actions_for(vendor, tid) == []  # no audit row without its finished write
            [write] = store.outbox.pending(vendor, tid)
            # The close's part was done before the note job; the note was sent, not marked done.
            assert [(p.kind, p.state, p.attempts) for p in write.parts] == [
                ("bulk", "done", 1), ("note", "pending", 1)]
            assert store.get_snapshot(vendor, tid)["next_check"] == due_at[tid]
        clock.advance(400)
        outcomes = Worker(store, world.connector(), lambda: rules, clock=clock).run_once(limit=10)
        assert sorted(o.ticket_id for o in outcomes) == sorted(ids)
        assert all(o.error is None for o in outcomes)
        _closed_once(vendor, world, store, ids)


class RecordFails:
    """The outbox record of the bulk close fails (after the budget was reserved in its transaction)."""

    def __init__(self, real) -> None:
        self.real, self.name, self.calls = real, real.name, 0

    def close_many(self, *args, **kwargs):
        self.calls += 1
        return self.real.close_many(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_budget_of_a_bulk_close_is_not_spent_when_its_outbox_rows_are_not_recorded(store, monkeypatch):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        ids = _due("zendesk", store, world, clock, rules, 3)
        before = _count(store, write_log)
        desk = RecordFails(world.connector())
        budget = WriteBudget(store, BudgetLimits(per_minute=80, per_ticket=20))
        outbox_type = type(store.outbox)
        real_record = outbox_type.record_many

        def failing(self, *args, **kwargs):
            raise Crash("disk full")

        monkeypatch.setattr(outbox_type, "record_many", failing)
        with pytest.raises(Crash):
            Sweeper(store, desk, lambda: rules, clock=clock, budget=budget, lease_seconds=300).sweep()
        monkeypatch.setattr(outbox_type, "record_many", real_record)
        assert desk.calls == 0  # no vendor call without its outbox rows
        assert _count(store, write_log) == before  # the reservation went with them
        assert all(_status("zendesk", world, tid) == "pending" for tid in ids)


def _sweep_counting_writes(store, desk, rules, clock, writes: list[str]):
    """A sweep (budget 80/min) that adds to `writes` at each write transaction's BEGIN IMMEDIATE."""

    def watch(conn, cursor, statement, parameters, context, executemany):
        if statement == "BEGIN IMMEDIATE":
            writes.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", watch)
    try:
        budget = WriteBudget(store, BudgetLimits(per_minute=80, per_ticket=20))
        return Sweeper(store, desk, lambda: rules, clock=clock, budget=budget).sweep()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", watch)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bulk_close_writes_in_four_transactions_its_outbox_rows_committed_before_the_call(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    writes: list[str] = []  # every write transaction begins with BEGIN IMMEDIATE on SQLite
    with zendesk_world(clock) as world:
        ids = _due("zendesk", store, world, clock, rules, 4)
        seen: dict[str, object] = {}
        real = world.connector()

        class Watching:
            name = real.name

            def close_many(self, ticket_ids, **kwargs):
                seen["writes"] = len(writes)
                seen["pending"] = {tid: store.outbox.pending("zendesk", tid) for tid in ticket_ids}
                return real.close_many(ticket_ids, **kwargs)

            def __getattr__(self, name):
                return getattr(real, name)

        report = _sweep_counting_writes(store, Watching(), rules, clock, writes)
        assert sorted(report.closed) == sorted(ids)
        # Committed before the bulk job (read here on other connections): each write with its
        # bulk part marked sent, the note part not yet.
        for [write] in seen["pending"].values():  # type: ignore[union-attr]
            assert [(p.kind, p.attempts, p.sent_at is not None) for p in write.parts] == [
                ("bulk", 1, True), ("note", 0, False)]
        # The sweep's lock and its claims, then (budget + outbox) before the bulk job; after it
        # (parts done + notes sent), (notes done + writes finished + snapshots), (claims
        # completed); and the lock freed.
        assert seen["writes"] == 3
        assert len(writes) == 7
        assert _count(store, bot_actions) == 3 * len(ids)
        assert _count(store, outbox_parts, outbox_parts.c.state != "done") == 0
        assert _count(store, ticket_work) == 0


# -- the set-based store operations ---------------------------------------------------------


def test_complete_many_removes_finished_claims_keeps_requeued_ones_and_ignores_lost_leases(store):
    zd = store.claim_tickets("zendesk", ["1", "2", "3"], "sweep", T0, lease_seconds=600)
    fd = store.claim_tickets("freshdesk", ["1"], "sweep", T0, lease_seconds=600)
    fd += store.claim_tickets("freshdesk", ["9"], "sweep", T0, lease_seconds=1)
    store.request_sync("zendesk", ["2"], T0, "webhook meanwhile")  # new work while leased
    later = T0 + timedelta(seconds=2)
    [taken] = store.claim("worker", later, limit=10)  # the lapsed lease, taken over
    assert (taken.source, taken.ticket_id) == ("freshdesk", "9")
    store.complete_many(zd + fd, later)
    with store.engine.connect() as conn:
        w = ticket_work
        rows = conn.execute(sa.select(w.c.source, w.c.ticket_id, w.c.lease_token, w.c.attempts)).all()
    left = {(r.source, r.ticket_id): r for r in rows}
    assert set(left) == {("zendesk", "2"), ("freshdesk", "9")}
    assert left[("zendesk", "2")].lease_token is None  # released, available for its new work
    assert left[("freshdesk", "9")].lease_token == taken.token  # the other holder keeps its lease
    assert [c.ticket_id for c in store.claim("worker", later, limit=10)] == ["2"]


def test_a_carried_budget_denies_the_riders_with_their_carrier(store):
    limits = {"per_minute": 3, "per_ticket": 10}
    assert store.take_write_budget("zendesk", [("a", 2)], T0, **limits).granted == ("a",)
    wants = [("bulk", 2), ("r1", 1), ("r2", 0)]
    grant = store.take_write_budget("zendesk", wants, T0, carried=True, **limits)
    assert grant.granted == () and grant.denied == ("bulk", "r1", "r2") and grant.retry_after > 0
    assert _count(store, write_log) == 1
    # Uncarried, a rider that fits is granted on its own.
    grant = store.take_write_budget("zendesk", [("bulk", 2), ("r1", 1)], T0, **limits)
    assert grant.granted == ("r1",) and grant.denied == ("bulk",)
    # Granted, the carrier and its riders count as if reserved one after the other.
    later = T0 + timedelta(seconds=62)
    grant = store.take_write_budget("zendesk", [("bulk", 1), ("r1", 1), ("r2", 1), ("r3", 1)], later,
                                    carried=True, **limits)
    assert grant.granted == ("bulk", "r1", "r2") and grant.denied == ("r3",)


def test_several_bulk_jobs_reserve_in_one_call_each_carried_by_its_first_ticket(store):
    budget = WriteBudget(store, BudgetLimits(per_minute=5, per_ticket=10))
    jobs = [[("a1", 2), ("a2", 0), ("a3", 0)],  # fits: 2 of 5
            [("b1", 4), ("b2", 0)],  # does not fit (6 of 5): its rider goes with it
            [("c1", 2), ("c2", 2), ("c3", 0)],  # its carrier fits (4 of 5), a share does not: the rest waits
            [("d1", 1)]]  # a later job still gets what is left (5 of 5)
    grant = budget.reserve_jobs("zendesk", jobs, T0)
    assert grant.granted == ("a1", "a2", "a3", "c1", "d1")
    assert grant.denied == ("b1", "b2", "c2", "c3") and grant.retry_after > 0
    assert _count(store, write_log) == 3
    # One job alone is reserve(carried=True).
    later = T0 + timedelta(seconds=120)
    alone = [("e1", 4), ("e2", 2), ("e3", 0)]
    grant = budget.reserve_jobs("zendesk", [alone], later)
    assert grant.granted == ("e1",) and grant.denied == ("e2", "e3")
    again = budget.reserve("zendesk", alone, later + timedelta(seconds=120), carried=True)
    assert (again.granted, again.denied) == (grant.granted, grant.denied)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bulk_jobs_of_a_group_share_their_transactions_and_each_stays_within_the_vendor_size(
        store, monkeypatch):
    from jobs import sweeps

    monkeypatch.setattr(sweeps, "BULK_SIZE", 2)  # 5 tickets: jobs of 2, 2 and 1, one group
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    writes: list[str] = []
    with zendesk_world(clock) as world:
        ids = _due("zendesk", store, world, clock, rules, 5)
        real = world.connector()
        jobs: list[tuple[str, int, list[str]]] = []

        class Watching:
            name = real.name

            def close_many(self, ticket_ids, **kwargs):
                jobs.append(("close", len(writes), list(ticket_ids)))
                return real.close_many(ticket_ids, **kwargs)

            def note_many(self, ticket_ids, note, **kwargs):
                jobs.append(("note", len(writes), list(ticket_ids)))
                return real.note_many(ticket_ids, note, **kwargs)

            def __getattr__(self, name):
                return getattr(real, name)

        report = _sweep_counting_writes(store, Watching(), rules, clock, writes)
        assert sorted(report.closed) == sorted(ids)
        # Every job after the one transaction that recorded them all; the notes after the one
        # that marked every close done; then the finishing and the releasing transactions.
        assert [(kind, seen, len(batch)) for kind, seen, batch in jobs] == [
            ("close", 3, 2), ("close", 3, 2), ("close", 3, 1), ("note", 4, 2), ("note", 4, 2), ("note", 4, 1)]
        assert sorted(t for kind, _seen, batch in jobs if kind == "close" for t in batch) == sorted(ids)
        assert len(writes) == 7
        # One bulk call and one note call per job, as the vendor counts them.
        assert _count(store, write_log) == 3
        assert sum(units for (units,) in _rows(store, sa.select(write_log.c.units))) == 6
        _closed_once("zendesk", world, store, ids)


def _rows(store, query) -> list[tuple]:
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def test_a_reservation_of_nothing_is_granted_without_recording_anything(store):
    budget = WriteBudget(store, BudgetLimits(per_minute=1, per_ticket=1))
    budget.spend("zendesk", "busy", 1, T0)
    grant = budget.reserve("zendesk", [("a", 0), ("b", 0)], T0, carried=True)
    assert grant.granted == ("a", "b") and grant.denied == ()
    assert _count(store, write_log) == 1


def test_record_many_matches_ids_across_batches_and_for_a_ticket_written_twice(store):
    action = [{"rule": "r", "type": "note", "before": None, "after": {"body": "x"}}]
    writes = [NewWrite(str(n), action, [("bulk", {"status": "solved", "n": n}), ("note", {"note": str(n)})])
              for n in range(250)]
    recorded = store.outbox.record_many("zendesk", writes, rules_version="v1", now=T0, first_sent=True)
    for new, write in zip(writes, recorded, strict=True):
        [stored] = store.outbox.writes_for("zendesk", new.ticket_id)
        assert (stored.id, [p.id for p in stored.parts]) == (write.id, [p.id for p in write.parts])
        assert [p.changes for p in stored.parts] == [c for _kind, c in new.parts]
        assert [(p.attempts, p.sent_at) for p in stored.parts] == [(1, T0), (0, None)]
    twice = [NewWrite("x", action, [("update", {"status": "open"})]),
             NewWrite("x", action, [("update", {"status": "solved"})])]
    first, second = store.outbox.record_many("zendesk", twice, rules_version="v1", now=T0)
    stored = {w.id: w.parts[0].changes for w in store.outbox.writes_for("zendesk", "x")}
    assert stored == {first.id: {"status": "open"}, second.id: {"status": "solved"}}
    assert first.parts[0].attempts == 0 and first.parts[0].sent_at is None


def _decision(state: str) -> dict:
    return {"policy": "p", "targets": {"first_response": {"due": "2026-11-09T19:00:00Z", "state": state},
                                       "resolution": {"due": "2026-11-12T19:00:00Z", "state": "running"}}}


def test_the_board_index_replaces_targets_and_counts_only_new_breaches(store, monkeypatch):
    from console import metrics

    breaches: list[tuple[str, str]] = []
    monkeypatch.setattr(metrics, "breach", lambda source, target: breaches.append((source, target)))

    def save(states: dict[str, str], decision=_decision) -> None:
        rows = [{"ticket_id": tid, "ticket": {"status": "open"}, "decision": decision(state),
                 "next_check": None, "rules_version": "v"} for tid, state in states.items()]
        store.save_snapshots("zendesk", rows, T0)

    save({"1": "running", "2": "breached"})
    assert breaches == [("zendesk", "first_response")]
    save({"1": "breached", "2": "breached"})  # 2 was breached already
    assert breaches == [("zendesk", "first_response")] * 2
    save({"1": "met"}, decision=lambda state: {"policy": "q", "targets": {"next_reply": {
        "due": "2026-11-10T19:00:00Z", "state": "running"}}})
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(ticket_board_targets.c.ticket_id, ticket_board_targets.c.target,
                                      ticket_board_targets.c.state)
                            .order_by(ticket_board_targets.c.ticket_id, ticket_board_targets.c.target)).all()
    assert [tuple(r) for r in rows] == [("1", "next_reply", "running"), ("2", "first_response", "breached"),
                                        ("2", "resolution", "running")]


# -- the finishing of bulk groups (a thread of its own on PostgreSQL) -------------------------


def test_the_finisher_runs_groups_in_order_and_reports_each_once_it_is_done():
    from jobs.sweeps import SweepReport, _Finisher

    for threaded in (False, True):
        report, ran = SweepReport(source="zendesk", dry_run=False), []
        finisher = _Finisher(threads=1 if threaded else 0)

        def group(name: str, wait: threading.Event | None = None, ran: list = ran):
            def work():
                if wait is not None:
                    assert wait.wait(5)
                ran.append(name)
                return lambda told: told.closed.append(name)
            return work

        first_may_end = threading.Event()
        finisher.submit(group("g1", first_may_end if threaded else None), report)
        if threaded:
            assert report.closed == [] and ran == []  # still finishing: the sweep goes on meanwhile
        else:
            assert report.closed == ["g1"]  # in line: finished before submit returns
        first_may_end.set()
        finisher.submit(group("g2"), report)  # waits for g1 first
        assert report.closed == (["g1"] if threaded else ["g1", "g2"])
        finisher.wait(report)
        finisher.shutdown()
        assert ran == ["g1", "g2"] and report.closed == ["g1", "g2"]


def test_groups_finished_at_once_are_reported_in_their_order():
    from jobs.sweeps import SweepReport, _Finisher

    report = SweepReport(source="zendesk", dry_run=False)
    finisher = _Finisher(threads=2)
    second_done, first_may_end, ran = threading.Event(), threading.Event(), []

    def first():
        assert first_may_end.wait(5)
        ran.append("g1")
        return lambda told: told.closed.append("g1")

    def second():
        ran.append("g2")
        second_done.set()
        return lambda told: told.closed.append("g2")

    finisher.submit(first, report)
    finisher.submit(second, report)  # two at once: neither waits
    assert second_done.wait(5) and ran == ["g2"] and report.closed == []
    first_may_end.set()
    finisher.submit(lambda: (lambda told: told.closed.append("g3")), report)  # a third waits for the first
    assert report.closed == ["g1"]
    finisher.wait(report)
    finisher.shutdown()
    assert report.closed == ["g1", "g2", "g3"]


def test_a_failed_finishing_is_raised_by_the_sweep_after_it_waited_for_it():
    from jobs.sweeps import SweepReport, _Finisher

    report = SweepReport(source="zendesk", dry_run=False)
    finisher = _Finisher(threads=2)

    def failing():
        raise Crash("the database went away")

    finisher.submit(failing, report)
    finisher.submit(lambda: (lambda told: told.closed.append("g2")), report)
    with pytest.raises(Crash):
        finisher.wait(report)
    finisher.shutdown()
    assert report.closed == []  # nothing reported past the failed group


def test_groups_finish_while_the_next_is_sent_and_a_failed_one_leaves_the_worker_to_complete(
        store, monkeypatch):
    from jobs import sweeps

    monkeypatch.setattr(sweeps, "BULK_SIZE", 2)
    monkeypatch.setattr(sweeps, "GROUP_CHUNKS", 1)  # 5 tickets: three groups of one job each
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    real_index = board.index_snapshots
    calls = {"index": 0}

    def index_failing_once(conn, source, snapshots, now):
        calls["index"] += 1
        if calls["index"] == 1:
            raise Crash("the database went away while saving the first group's snapshots")
        real_index(conn, source, snapshots, now)

    with zendesk_world(clock) as world:
        ids = _due("zendesk", store, world, clock, rules, 5)
        monkeypatch.setattr(board, "index_snapshots", index_failing_once)
        with pytest.raises(Crash):
            Sweeper(store, world.connector(), lambda: rules, clock=clock, lease_seconds=300).sweep()
        monkeypatch.setattr(board, "index_snapshots", real_index)
        closed = [tid for tid in ids if _status("zendesk", world, tid) == "solved"]
        # In line (SQLite) the sweep stops at the failed group; on PostgreSQL the next group
        # may have been sent meanwhile. Either way every close sent is in the outbox or audited.
        assert closed[:2] == ids[:2]
        for tid in ids:
            if tid in closed and not store.actions_for("zendesk", tid):
                assert store.outbox.pending("zendesk", tid)
        clock.advance(400)
        # The leases lapse: the worker completes the closes sent and decides the others itself
        # (on PostgreSQL a group finished beside the failed one has released its tickets).
        outcomes = Worker(store, world.connector(), lambda: rules, clock=clock).run_once(limit=10)
        assert {o.ticket_id for o in outcomes} >= set(ids[:2])
        assert all(o.error is None for o in outcomes)
        _closed_once("zendesk", world, store, ids)
