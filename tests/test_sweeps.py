"""Due-time sweeps against the Zendesk and Freshdesk sandboxes: exact instants, bulk closes, races."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import sqlalchemy as sa

from connectors.base import TicketChanges
from engine.rulefile import load_rules
from jobs import sweeps
from jobs.sweeps import Sweeper
from jobs.worker import Worker
from sandbox.freshdesk import AGENT_ID as FD_AGENT_ID
from sandbox.zendesk_state import AGENT_ID, HUMAN_AGENT_ID
from store import Store
from store.models import ticket_work
from tests.sweep_helpers import Clock, at, choozle, freshdesk_world, zendesk_world

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
ZD = "zendesk"
CLOSE_RULE = "resolve-after-3-business-days"


def first_look(store, world, clock, rules, *ids) -> None:
    """What the worker does when the agent's update arrives: evaluate, store the next check."""
    store.request_sync(ZD, ids, clock(), "test")
    worker = Worker(store, world.connector(), lambda: rules, clock=clock)
    assert [o.error for o in worker.run_once(limit=len(ids))] == [None] * len(ids)


def status_writes(world) -> list[tuple[str, str]]:
    """(ticket id, status) of every status change the sandbox accepted, bulk or single."""
    out = []
    for r in world.requests():
        body = (r["body"] or {}).get("ticket") or {}
        if r["method"] != "PUT" or "status" not in body:
            continue
        if r["path"].endswith("update_many.json"):
            out += [(tid, body["status"]) for tid in r["query"]["ids"].split(",")]
        else:
            out.append((r["path"].split("/")[-1].removesuffix(".json"), body["status"]))
    return out


# -- the auto-close story, travelling in time ------------------------------------------------


@SQLITE_ONLY
def test_auto_close_fires_at_the_exact_instant_and_not_before(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()  # Wednesday 09:00 Denver
    with zendesk_world(clock) as world:
        tid = world.create(priority="low")
        clock.set("2026-11-04T18:00:00Z")  # Wed 11:00 MST: agent proposes the resolution
        world.propose_resolution(tid)
        first_look(store, world, clock, rules, tid)
        # Wed 13 h + Thu 24 h + Fri 24 h = 61 business hours; Mon 11 h more.
        assert store.get_snapshot(ZD, tid)["next_check"] == at("2026-11-09T18:00:00Z")

        sweeper = Sweeper(store, world.connector(), lambda: rules, clock=clock, fetch_threads=1)
        before = len(world.writes())
        for moment in ("2026-11-05T18:00:00Z", "2026-11-07T12:00:00Z", "2026-11-09T17:59:59Z"):
            clock.set(moment)
            report = sweeper.sweep()
            assert (report.due, report.skipped) == (0, None), moment
        assert len(world.writes()) == before  # nothing written before the moment

        clock.set("2026-11-09T18:00:00Z")
        report = sweeper.sweep()
        assert (report.due, report.applied, report.failed) == (1, [tid], {})
        assert [(row.rule, row.action) for row in report.plan] == [
            (CLOSE_RULE, "set_status solved"), (CLOSE_RULE, "reply"), (CLOSE_RULE, "note")]
        assert world.ticket(tid)["status"] == "solved"
        bot_comments = [c for c in world.comments(tid) if c[0] == AGENT_ID]
        assert [(public, body.startswith(text)) for _, public, body in bot_comments for text in [
            "We have not heard back" if public else "Status set to solved"]] == [(True, True), (False, True)]
        assert [a["type"] for a in store.actions_for(ZD, tid)] == ["set_status", "reply", "note"]
        snapshot = store.get_snapshot(ZD, tid)
        # The snapshot holds the ticket as the bot's write left it.
        assert snapshot["next_check"] is None and snapshot["ticket"]["status"] == "solved"

        clock.advance(60)
        assert sweeper.sweep().due == 0  # closed once; never again


@SQLITE_ONLY
def test_thanksgiving_moves_the_close_to_tuesday(store):
    clock, rules = Clock("2026-11-25T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        tid = world.create(priority="low")
        clock.set("2026-11-25T18:00:00Z")  # Wed 25 Nov 11:00 MST; Thu 26 is Thanksgiving
        world.propose_resolution(tid)
        first_look(store, world, clock, rules, tid)
        # Wed 13 h, Thanksgiving closed, Fri 24 h, Mon 24 h, Tue 11 h -> Tue 1 Dec 11:00 MST.
        assert store.get_snapshot(ZD, tid)["next_check"] == at("2026-12-01T18:00:00Z")
        sweeper = Sweeper(store, world.connector(), lambda: rules, clock=clock, fetch_threads=1)
        for moment in ("2026-11-30T18:00:00Z", "2026-11-30T23:00:00Z", "2026-12-01T17:59:59Z"):
            clock.set(moment)
            assert sweeper.sweep().due == 0, moment
        clock.set("2026-12-01T18:00:00Z")
        assert sweeper.sweep().applied == [tid]
        assert world.ticket(tid)["status"] == "solved"


@SQLITE_ONLY
def test_a_customer_reply_before_the_moment_cancels_the_close(store):
    """The customer's reply webhook was lost: the sweep's re-read sees it and writes nothing."""
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        tid = world.create(priority="low")
        clock.set("2026-11-04T18:00:00Z")
        world.propose_resolution(tid)
        first_look(store, world, clock, rules, tid)
        clock.set("2026-11-06T15:00:00Z")
        world.comment(tid, "customer", "Still broken for me.", status="open")
        writes = len(world.writes())

        clock.set("2026-11-09T18:00:00Z")
        report = Sweeper(store, world.connector(), lambda: rules, clock=clock).sweep()

        assert (report.due, report.unchanged, report.applied, report.closed) == (1, [tid], [], [])
        assert report.plan[0].action == "nothing"
        assert len(world.writes()) == writes
        assert world.ticket(tid)["status"] == "open"
        snapshot = store.get_snapshot(ZD, tid)
        assert snapshot["next_check"] is None or snapshot["next_check"] > clock()


REMINDER_RULES = Path(__file__).parent / "fixtures" / "rules" / "reminder.yaml"


@SQLITE_ONLY
def test_the_bots_own_reminder_does_not_restart_the_wait(store):
    """Connectors mark Deskpilot's comments (the API user's) as bot: the close stays on time."""
    clock, rules = Clock("2026-11-04T16:00:00Z"), load_rules(REMINDER_RULES)
    with zendesk_world(clock) as world:
        tid = world.create()
        clock.set("2026-11-04T18:00:00Z")
        world.propose_resolution(tid)
        first_look(store, world, clock, rules, tid)
        sweeper = Sweeper(store, world.connector(), lambda: rules, clock=clock)
        assert store.get_snapshot(ZD, tid)["next_check"] == at("2026-11-06T18:00:00Z")
        clock.set("2026-11-06T18:00:00Z")  # 48 business hours: the reminder
        assert sweeper.sweep().applied == [tid]
        assert [(who, public) for who, public, _ in world.comments(tid)] == [
            (HUMAN_AGENT_ID, True), (AGENT_ID, True), (AGENT_ID, False)]
        assert store.get_snapshot(ZD, tid)["next_check"] == at("2026-11-09T18:00:00Z")
        clock.set("2026-11-09T17:59:59Z")
        assert sweeper.sweep().due == 0
        clock.set("2026-11-09T18:00:00Z")  # 72 h after the agent, not after the reminder
        assert sweeper.sweep().applied == [tid]
        assert world.ticket(tid)["status"] == "solved"


def test_connectors_read_the_account_metadata_once_and_know_their_own_comments():
    clock = Clock("2026-11-04T16:00:00Z")
    with zendesk_world(clock) as world:
        tid = world.create()
        zd = world.connector()
        calls = len(world.requests())
        zd.fetch_ticket(tid)
        assert [r["path"] for r in world.requests()[calls:]] == [  # no field mapped, no alias: no metadata
            f"/api/v2/tickets/{tid}.json", f"/api/v2/tickets/{tid}/audits.json"]
        typed = world.connector(field_ids={"plan": 9001})
        typed.fetch_ticket(tid)
        calls = len(world.requests())
        typed.fetch_ticket(tid)
        assert len(world.requests()) - calls == 2  # metadata is cached: still two requests
    with freshdesk_world(clock) as world:
        tid = world.create()
        world.converse(tid, "agent", "Looking into it")
        fd = world.connector()
        fd.apply(fd.fetch_ticket(tid), TicketChanges(reply="Done."))
        world.forget_requests()
        events = fd.fetch_ticket(tid).ticket.events
        # The human agent's reply is not the bot's; the signed one is.
        assert [(e.author, e.bot) for e in events if e.type == "comment"] == [
            ("customer", False), ("agent", False), ("agent", True)]
        assert len(world.requests()) == 2


# -- bulk closes ---------------------------------------------------------------------------


def due_closes(store, world, clock, count: int, *, via_worker: bool = True) -> list[str]:
    """`count` tickets whose close falls due on Mon 9 Nov 18:00Z, with stored snapshots saying so.

    via_worker=False stores the snapshots directly (quicker for many tickets): the
    sweep re-reads every ticket anyway, so only next_check matters.
    """
    rules = choozle()
    clock.set("2026-11-04T16:00:00Z")
    ids = [world.create(priority="low") for _ in range(count)]
    clock.set("2026-11-04T18:00:00Z")
    for tid in ids:
        world.propose_resolution(tid)
    if via_worker:
        first_look(store, world, clock, rules, *ids)
    else:
        store.save_snapshots(ZD, [
            {"ticket_id": tid, "ticket": {"id": tid}, "decision": {}, "rules_version": rules.version,
             "next_check": at("2026-11-09T18:00:00Z")} for tid in ids], clock())
    return ids


@SQLITE_ONLY
def test_250_due_closes_take_three_bulk_calls_and_three_note_calls(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        ids = due_closes(store, world, clock, 250, via_worker=False)
        setup = len(world.requests())
        clock.set("2026-11-09T18:00:00Z")

        report = Sweeper(store, world.connector(), lambda: rules, clock=clock).sweep()

        assert (report.due, sorted(report.closed), report.failed) == (250, sorted(ids), {})
        calls = world.requests()[setup:]
        bulk = [r for r in calls if r["path"].endswith("update_many.json")]
        sizes = [len(parse_qs(f"ids={r['query']['ids']}")["ids"][0].split(",")) for r in bulk]
        statuses = [r for r in bulk if r["body"]["ticket"].get("status") == "solved"]
        notes = [r for r in bulk if r["body"]["ticket"].get("comment", {}).get("public") is False]
        assert (len(statuses), len(notes), max(sizes)) == (3, 3, 100)
        assert sorted(sizes) == [50, 50, 100, 100, 100, 100]
        assert [r for r in calls if r["method"] in ("PUT", "POST") and r not in bulk] == []
        for tid in (ids[0], ids[149], ids[-1]):
            assert world.ticket(tid)["status"] == "solved"
            assert [(who, public) for who, public, _ in world.comments(tid)] == [
                (HUMAN_AGENT_ID, True), (AGENT_ID, True), (AGENT_ID, False)]
        assert [a["type"] for a in store.actions_for(ZD, ids[7])] == ["set_status", "reply", "note"]
        assert store.due_tickets(clock() + timedelta(days=30)) == []
        with store.engine.connect() as conn:  # every claim was released
            assert conn.execute(sa.select(sa.func.count()).select_from(ticket_work)).scalar() == 0


@SQLITE_ONLY
def test_dry_run_plans_and_changes_nothing(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        ids = due_closes(store, world, clock, 3)
        clock.set("2026-11-09T18:00:00Z")
        before = (len(world.writes()), [store.get_snapshot(ZD, t) for t in ids])

        report = Sweeper(store, world.connector(), lambda: rules, clock=clock).sweep(dry_run=True)

        assert report.dry_run and report.due == 3
        assert {(row.ticket_id, row.action, row.path) for row in report.plan} == {
            (tid, action, "bulk") for tid in ids for action in ("set_status solved", "reply", "note")}
        assert all(row.due == at("2026-11-09T18:00:00Z") for row in report.plan)
        assert "no customer reply for 72 business hours" in report.plan[0].why
        assert (len(world.writes()), [store.get_snapshot(ZD, t) for t in ids]) == before
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(ticket_work)).scalar() == 0


@SQLITE_ONLY
def test_freshdesk_closes_in_one_bulk_job_and_a_note_per_ticket(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with freshdesk_world(clock) as world:
        ids = [world.create(priority=1) for _ in range(4)]
        clock.set("2026-11-04T18:00:00Z")
        for tid in ids:
            world.converse(tid, "agent", "Should be fixed now; please confirm.")
            world.update(tid, status=3, tags=["resolution_proposed"])
        fd = world.connector()
        store.request_sync("freshdesk", ids, clock(), "test")
        Worker(store, fd, lambda: rules, clock=clock).run_once(limit=10)
        assert store.get_snapshot("freshdesk", ids[0])["next_check"] == at("2026-11-09T18:00:00Z")
        world.forget_requests()
        clock.set("2026-11-09T18:00:00Z")

        report = Sweeper(store, fd, lambda: rules, clock=clock).sweep()

        assert sorted(report.closed) == sorted(ids)
        writes = [(r["method"], r["path"]) for r in world.requests() if r["method"] != "GET"]
        assert writes == [("POST", "/api/v2/tickets/bulk_update")] + [
            ("POST", f"/api/v2/tickets/{tid}/notes") for tid in ids]
        for tid in ids:
            assert world.ticket(tid)["status"] == 4
            assert [(c["user_id"], c["private"]) for c in world.conversations(tid)][1:] == [
                (FD_AGENT_ID, False), (FD_AGENT_ID, True)]


# -- exactly once, across processes ----------------------------------------------------------


@pytest.mark.parametrize("shared_lock", [True, False], ids=["one-lock", "claims-only"])
def test_two_clocks_sweeping_at_once_close_each_ticket_once(database_url, shared_lock):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    stores = [Store(database_url) for _ in range(2)]
    stores[0].migrate()
    try:
        with zendesk_world(clock) as world:
            ids = due_closes(stores[0], world, clock, 24)
            clock.set("2026-11-09T18:00:00Z")
            start, selected = threading.Barrier(2), threading.Barrier(2, timeout=5)
            turned_away = threading.Event()
            reports = []

            def sweep(index: int) -> None:
                # With one lock name, the holder selects only once the other was turned
                # away. Without it, both run and both select every due ticket before
                # either claims one: the per-ticket claims alone keep them apart.
                store = stores[index]
                select = store.due_tickets

                def due_tickets(*args, **kwargs):
                    if shared_lock:
                        assert turned_away.wait(5)
                        return select(*args, **kwargs)
                    due = select(*args, **kwargs)
                    selected.wait()
                    return due

                store.due_tickets = due_tickets
                sweeper = Sweeper(store, world.connector(), lambda: rules, clock=clock,
                                  lock_name=None if shared_lock else f"sweep-{index}")
                start.wait()
                report = sweeper.sweep()
                if report.skipped:
                    turned_away.set()
                reports.append(report)

            threads = [threading.Thread(target=sweep, args=(i,)) for i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

            closes = status_writes(world)
            assert sorted(tid for tid, status in closes if status == "solved") == sorted(ids)
            for tid in ids:
                replies = [c for c in world.comments(tid) if c[0] == AGENT_ID and c[1]]
                assert len(replies) == 1, tid
            assert sum(len(r.closed) + len(r.applied) for r in reports) == 24
            if not shared_lock:
                assert [r.due for r in reports] == [24, 24]  # both saw every ticket due
            else:
                assert sorted(r.skipped is None for r in reports) == [False, True]
    finally:
        for instance in stores:
            instance.engine.dispose()


class Crash(Exception):
    pass


class CrashAfterBulk:
    """The connector, except that the process 'dies' right after (or before) the bulk close."""

    def __init__(self, helpdesk, *, write_first: bool) -> None:
        self._helpdesk, self.write_first = helpdesk, write_first
        self.name = helpdesk.name

    def close_many(self, *args, **kwargs):
        if self.write_first:
            self._helpdesk.close_many(*args, **kwargs)
        raise Crash("killed mid-sweep")

    def __getattr__(self, name):
        return getattr(self._helpdesk, name)


@SQLITE_ONLY
@pytest.mark.parametrize("write_first", [True, False], ids=["after-write", "before-write"])
def test_a_crash_mid_sweep_is_finished_by_the_next_run(store, write_first):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        ids = due_closes(store, world, clock, 5)
        clock.set("2026-11-09T18:00:00Z")
        crashing = Sweeper(store, CrashAfterBulk(world.connector(), write_first=write_first),
                           lambda: rules, clock=clock, lease_seconds=300)
        with pytest.raises(Crash):
            crashing.sweep()
        # The tickets stay leased to the dead sweep: nobody touches them meanwhile.
        assert Sweeper(store, world.connector(), lambda: rules, clock=clock).sweep().due == 0
        clock.advance(301)
        outcomes = Worker(store, world.connector(), lambda: rules, clock=clock).run_once(limit=10)
        assert sorted(o.ticket_id for o in outcomes) == sorted(ids)
        # Either way the worker finishes the outbox write: after the bulk job only the note
        # is still owed, before it the whole close.
        assert [o.wrote for o in outcomes] == [True] * 5
        for tid in ids:
            assert world.ticket(tid)["status"] == "solved"
            assert len([c for c in world.comments(tid) if c[0] == AGENT_ID and c[1]]) == 1
            assert len([c for c in world.comments(tid) if c[0] == AGENT_ID and not c[1]]) == 1
            assert sorted(a["type"] for a in store.actions_for(ZD, tid)) == ["note", "reply", "set_status"]
        assert Sweeper(store, world.connector(), lambda: rules, clock=clock).sweep().due == 0


@SQLITE_ONLY
def test_when_the_helpdesk_is_down_a_sweep_stops_reading_and_loses_nothing(store, monkeypatch):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    monkeypatch.setattr(sweeps, "BULK_SIZE", 2)  # two tickets a batched read
    with zendesk_world(clock) as world:
        ids = due_closes(store, world, clock, 8)
        clock.set("2026-11-09T18:00:00Z")
        world.api.post("/_sandbox/failures", json={"status": 503, "count": 1000})
        calls = len(world.requests())

        report = Sweeper(store, world.connector(), lambda: rules, clock=clock, fetch_threads=1).sweep()

        # Three batched reads (show_many) failed after the connector's 4 tries each, failing
        # their six tickets; the last two tickets were not read.
        failed, unread = sorted(report.failed), sorted(report.deferred)
        assert (len(failed), len(unread), sorted(failed + unread)) == (6, 2, sorted(ids))
        made = world.requests()[calls:]
        assert [r["path"] for r in made] == ["/api/v2/tickets/show_many.json"] * 3 * 4
        assert sorted(t for _, t in store.due_tickets(clock())) == unread  # still due
        # The failed reads wait in the work queue as failed attempts, for the worker.
        claims = store.claim("test", clock() + timedelta(seconds=60), limit=10)
        assert sorted((c.ticket_id, c.attempts) for c in claims) == [(t, 1) for t in failed]


@SQLITE_ONLY
def test_a_deleted_ticket_stops_being_swept(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        [tid] = due_closes(store, world, clock, 1)
        with world.app.state.lock:
            del world.app.state.tickets[int(tid)]
        clock.set("2026-11-09T18:00:00Z")
        report = Sweeper(store, world.connector(), lambda: rules, clock=clock).sweep()
        assert list(report.failed) == [tid] and "not found" in report.failed[tid]
        assert store.due_tickets(clock() + timedelta(days=365)) == []


def test_the_collector_is_held_while_any_sweep_runs_and_restored_after():
    import gc
    import threading

    from jobs.runtime import collector_held

    assert gc.isenabled()
    entered, leave = threading.Event(), threading.Event()

    def other_sweep():
        with collector_held():
            entered.set()
            leave.wait(5)

    thread = threading.Thread(target=other_sweep)
    with collector_held():
        assert not gc.isenabled()
        thread.start()
        assert entered.wait(5)
    assert not gc.isenabled()  # the other sweep still holds it
    leave.set()
    thread.join(5)
    assert gc.isenabled()
    gc.disable()  # held by someone else (a test, a profiler): left as it was
    try:
        with collector_held():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
