"""The outbox under fault injection: a failure or crash at every call boundary, on both vendors.

The decided write is an auto-close (status, public reply, internal note):
Zendesk sends it in two calls (status + reply, then the note), Freshdesk in
three (status, note, reply). At each boundary the call fails before reaching
the vendor, reaches it but its answer is lost, or reaches it and the process
dies before the outbox marks it done; the outbox itself and the queue are
also crashed around the write's completion. A retry by another worker must
leave the ticket closed with exactly one reply, one note and one set of
audit rows. Runs on SQLite and on PostgreSQL (TEST_DATABASE_URL).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from connectors.base import TransientError
from jobs.worker import Worker
from sandbox.freshdesk import AGENT_ID as FD_AGENT_ID
from sandbox.zendesk_state import AGENT_ID as ZD_AGENT_ID
from store.models import OUTBOX_DONE
from tests.sweep_helpers import Clock, choozle, freshdesk_world, zendesk_world

CLOSE_AT = "2026-11-09T18:00:00Z"  # three business days after the agent's proposal
CALLS = {"zendesk": 2, "freshdesk": 3}


class Crash(BaseException):
    """The process dies here: nothing after this line of the worker runs."""


class Faulty:
    """The real connector, except that write call number `at` fails in the way `mode` says.

    before: the call never reaches the helpdesk (a connect error).
    lost:   the helpdesk applies it, but its answer is lost (a read timeout).
    crash:  the helpdesk applies and confirms it, and the process dies.
    """

    def __init__(self, real, at: int, mode: str) -> None:
        self.real, self.at, self.mode, self.calls = real, at, mode, 0
        self.name = real.name

    def apply(self, remote, changes):
        self.calls += 1
        if self.calls == self.at and self.mode == "before":
            raise TransientError("injected: connect error before the call")
        self.real.apply(remote, changes)
        if self.calls == self.at and self.mode == "lost":
            raise TransientError("injected: the answer was lost")
        if self.calls == self.at and self.mode == "crash":
            raise Crash()

    def __getattr__(self, name):
        return getattr(self.real, name)


def _ready(vendor: str, world, clock) -> str:
    if vendor == "zendesk":
        tid = world.create(priority="low")
        clock.set("2026-11-04T18:00:00Z")
        world.propose_resolution(tid)
    else:
        tid = world.create(priority=1)
        clock.set("2026-11-04T18:00:00Z")
        world.converse(tid, "agent", "Should be fixed now; please confirm.")
        world.update(tid, status=3, tags=["resolution_proposed"])
    clock.set(CLOSE_AT)
    return tid


def _bot_comments(vendor: str, world, tid: str) -> list[tuple[bool, str]]:
    """(public, first words) of each comment the bot posted."""
    if vendor == "zendesk":
        return [(public, body.split(":")[0][:20]) for author, public, body in world.comments(tid)
                if author == ZD_AGENT_ID]
    return [(not c["private"], c["body_text"].split(":")[0][:20]) for c in world.conversations(tid)
            if c["user_id"] == FD_AGENT_ID]


def _assert_whole(vendor: str, world, store, tid: str) -> None:
    ticket = world.ticket(tid)
    assert ticket["status"] == ("solved" if vendor == "zendesk" else 4)
    comments = _bot_comments(vendor, world, tid)
    assert sorted(public for public, _ in comments) == [False, True], comments  # one note, one reply
    assert sorted(a["type"] for a in store.actions_for(vendor, tid)) == ["note", "reply", "set_status"]
    writes = store.outbox.writes_for(vendor, tid)
    assert [w.state for w in writes if w.state != "cancelled"] == [OUTBOX_DONE]
    assert all(part.state == OUTBOX_DONE for w in writes if w.state == OUTBOX_DONE for part in w.parts)


def _world(vendor: str, clock):
    return zendesk_world(clock) if vendor == "zendesk" else freshdesk_world(clock)


BOUNDARIES = [(vendor, at, mode) for vendor, calls in CALLS.items() for at in range(1, calls + 1)
              for mode in ("before", "lost", "crash")]


@pytest.mark.parametrize(("vendor", "at", "mode"), BOUNDARIES,
                         ids=[f"{v}-call{a}-{m}" for v, a, m in BOUNDARIES])
def test_a_fault_at_any_call_leaves_the_write_whole_after_a_retry(store, vendor, at, mode):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with _world(vendor, clock) as world:
        tid = _ready(vendor, world, clock)
        store.request_sync(vendor, [tid], clock(), "test")
        faulty = Faulty(world.connector(), at, mode)
        first = Worker(store, faulty, lambda: rules, clock=clock, worker_id="first")
        if mode == "crash":
            with pytest.raises(Crash):
                first.run_once()
            clock.advance(400)  # the dead worker's lease runs out
        else:
            [outcome] = first.run_once()
            assert outcome.error and "injected" in outcome.error
            clock.advance(120)  # the retry's backoff
        assert faulty.calls == at
        # Another worker (a restart) finishes the write: exactly the parts not done.
        second = Worker(store, world.connector(), lambda: rules, clock=clock, worker_id="second")
        [outcome] = second.run_once()
        assert outcome.error is None
        _assert_whole(vendor, world, store, tid)
        # And it converges: a later look writes nothing more.
        store.request_sync(vendor, [tid], clock(), "test")
        before = len([r for r in world.requests() if r["method"] in ("PUT", "POST")])
        Worker(store, world.connector(), lambda: rules, clock=clock, worker_id="third").run_once()
        assert len([r for r in world.requests() if r["method"] in ("PUT", "POST")]) == before
        _assert_whole(vendor, world, store, tid)


@pytest.mark.parametrize("vendor", sorted(CALLS))
@pytest.mark.parametrize("where", ["before-finish", "after-finish"])
def test_a_crash_around_the_audit_row_neither_loses_nor_doubles_it(store, vendor, where, monkeypatch):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with _world(vendor, clock) as world:
        tid = _ready(vendor, world, clock)
        store.request_sync(vendor, [tid], clock(), "test")
        target, name = (store.outbox, "finish") if where == "before-finish" else (store, "complete")
        real = getattr(target, name)
        crashed = []

        def crash_once(*args, **kwargs):
            if not crashed:
                crashed.append(True)
                raise Crash()
            return real(*args, **kwargs)

        monkeypatch.setattr(target, name, crash_once)
        with pytest.raises(Crash):
            Worker(store, world.connector(), lambda: rules, clock=clock, worker_id="first").run_once()
        # Before finish: every part landed, no audit row yet. After: the audit row is there.
        assert len(store.actions_for(vendor, tid)) == (0 if where == "before-finish" else 3)
        clock.advance(400)
        [outcome] = Worker(store, world.connector(), lambda: rules, clock=clock,
                           worker_id="second").run_once()
        assert outcome.error is None
        _assert_whole(vendor, world, store, tid)


def test_a_conflict_on_the_first_call_decides_again_and_cancels_the_stale_write(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        tid = _ready("zendesk", world, clock)
        store.request_sync("zendesk", [tid], clock(), "test")
        real = world.connector()

        class Racing(Faulty):
            def apply(self, remote, changes):
                self.calls += 1
                if self.calls == 1:  # an agent's internal comment lands between our read and write
                    world.comment(tid, "agent", "Checking with the customer", public=False)
                self.real.apply(remote, changes)

        [outcome] = Worker(store, Racing(real, 0, ""), lambda: rules, clock=clock).run_once()
        assert outcome.error is None and outcome.wrote
        writes = store.outbox.writes_for("zendesk", tid)
        assert [w.state for w in writes] == ["cancelled", OUTBOX_DONE]
        assert "decided again" in writes[0].reason
        _assert_whole("zendesk", world, store, tid)


def test_a_write_parked_as_a_dead_letter_completes_when_replayed(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with freshdesk_world(clock) as world:
        tid = _ready("freshdesk", world, clock)
        store.request_sync("freshdesk", [tid], clock(), "test")
        faulty = Faulty(world.connector(), 2, "before")
        worker = Worker(store, faulty, lambda: rules, clock=clock, max_attempts=1)
        [outcome] = worker.run_once()
        assert outcome.error and [d["ticket_id"] for d in store.dead_letters()] == [tid]
        assert world.ticket(tid)["status"] == 4  # the first part landed; note and reply are owed
        assert store.replay_dead_letters(clock(), source="freshdesk") == 1
        [outcome] = Worker(store, world.connector(), lambda: rules, clock=clock).run_once()
        assert outcome.error is None
        _assert_whole("freshdesk", world, store, tid)
        assert clock() - store.outbox.writes_for("freshdesk", tid)[0].created_at < timedelta(minutes=5)


def test_a_write_owed_to_a_deleted_ticket_is_cancelled_with_the_reason(store):
    from connectors.base import NotFoundError

    class Gone:
        name = "zendesk"

        def fetch_ticket(self, ticket_id, known=None):
            raise NotFoundError(f"GET tickets/{ticket_id}.json: 404 RecordNotFound")

        def apply(self, remote, changes):  # pragma: no cover - never reached
            raise AssertionError("no write to a deleted ticket")

    clock, rules = Clock("2026-11-09T18:00:00Z"), choozle()
    store.outbox.record("zendesk", "5", rules_version=rules.version, actions=[],
                        parts=[("note", {"note": "Why"})], now=clock())
    store.request_sync("zendesk", ["5"], clock(), "test")
    [outcome] = Worker(store, Gone(), lambda: rules, clock=clock).run_once()
    assert "404" in outcome.error
    [write] = store.outbox.writes_for("zendesk", "5")
    assert write.state == "cancelled" and "not found" in write.reason


def test_the_clock_hands_an_orphaned_write_back_to_the_worker(store):
    from jobs.clock import resume_owed_writes

    clock = Clock("2026-11-09T18:00:00Z")
    store.outbox.record("zendesk", "8", rules_version="r1", actions=[], parts=[("note", {"note": "x"})],
                        now=clock())
    resume = resume_owed_writes(store, clock, after_seconds=600)
    assert resume() == 0  # too recent: its worker may still be on it
    clock.advance(601)
    assert resume() == 1
    assert [c.ticket_id for c in store.claim("w", clock())] == ["8"]
    assert resume() == 0  # queued now: not handed back twice
