"""Agents win: table tests of the engine's stand-back, and the worker against the Zendesk sandbox."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from engine import ownership
from engine.evaluate import evaluate
from engine.ticket import Ticket
from jobs.worker import ticket_json
from tests.engine_helpers import ROOT, at, example

NOW = at("2026-11-23T08:00Z")


def _deskpilot():
    from engine.rulefile import load_rules

    return load_rules(ROOT / "rules" / "deskpilot.yaml")


HOW_TO = Ticket(id="1", status="open", created_at=NOW - 3600, priority="urgent",
                subject="How do I record calls?", description="Where is the button?",
                fields={"plan": "basic"})


def _decide(rules, ticket, previous):
    """(priority/group actions, stand-back notes, holds) for `ticket` given the stored `previous`."""
    holds = ownership.observe(previous, ticket, rules, NOW)
    decision = evaluate(ticket, rules, NOW, holds)
    kinds = ("set_priority", "assign_group")
    changes = [(a.type.value, a.value) for a in decision.actions if a.type in kinds]
    stood = [a.body for a in decision.actions if a.type == "note" and ownership.is_stand_back(a.body)]
    return changes, stood, holds


def _stored(ticket, holds=()):
    return ticket_json(ticket, None, holds)


BOT_SET_NORMAL = replace(HOW_TO, priority="normal")  # the ticket as the bot's write left it

PRIORITY_TABLE = [
    # (name, stored snapshot, ticket now, announced before, expected changes, expect a note)
    ("a new ticket is reclassified at creation", None, HOW_TO, False, [("set_priority", "normal")], False),
    ("an agent set it back by hand: the rule stands back and says so once",
     BOT_SET_NORMAL, HOW_TO, None, [], True),
    ("the stand-back was announced: nothing more", "held", HOW_TO, True, [], False),
    ("the subject changed: the rule applies again", "held",
     replace(HOW_TO, subject="How do I export recordings?"), True, [("set_priority", "normal")], False),
    ("the description changed: the rule applies again", "held",
     replace(HOW_TO, description="How to export"), True, [("set_priority", "normal")], False),
    ("a field the rule does not test changed: it still stands back", "held",
     replace(HOW_TO, fields={"plan": "professional"}), True, [], False),
    ("nobody touched the priority: no hold", BOT_SET_NORMAL, BOT_SET_NORMAL, None, [], False),
]


@pytest.mark.parametrize(("name", "stored", "now_ticket", "announced", "changes", "note"), PRIORITY_TABLE,
                         ids=[row[0] for row in PRIORITY_TABLE])
def test_reclassification_and_hand_set_priority(name, stored, now_ticket, announced, changes, note):
    rules = _deskpilot()
    if stored == "held":
        hold = ownership.Hold("priority", "urgent", ownership.inputs_digest(HOW_TO, rules, "priority"),
                              NOW - 60, announced=announced)
        previous = _stored(HOW_TO, [hold])
    else:
        previous = None if stored is None else _stored(stored)
    got_changes, stood, holds = _decide(rules, now_ticket, previous)
    assert got_changes == changes
    assert bool(stood) == note
    if note:
        assert "`downgrade-how-to` stood back" in stood[0] and "urgent" in stood[0]
        # Once written, the hold is announced and the next decision is silent.
        after = ownership.announce(holds, stood)
        assert _decide(rules, now_ticket, _stored(now_ticket, after))[:2] == ([], [])


LEVEL_2 = Ticket(id="7", status="open", created_at=NOW - 600, priority="urgent", subject="Down",
                 group="Level 2")

GROUP_TABLE = [
    ("an urgent ticket is assigned to Level 2", None, replace(LEVEL_2, group=None),
     [("assign_group", "Level 2")], False),
    ("an agent moved it to Level 1: the escalation stands back", LEVEL_2,
     replace(LEVEL_2, group="Level 1"), [], True),
    ("still in Level 2: nothing to do", LEVEL_2, LEVEL_2, [], False),
]


@pytest.mark.parametrize(("name", "stored", "now_ticket", "changes", "note"), GROUP_TABLE,
                         ids=[row[0] for row in GROUP_TABLE])
def test_escalation_group_and_hand_set_group(name, stored, now_ticket, changes, note):
    rules = example("liveops")
    got_changes, stood, holds = _decide(rules, now_ticket, None if stored is None else _stored(stored))
    assert got_changes == changes
    assert bool(stood) == note
    if note:
        assert "`p1-elevate-to-level-2` stood back" in stood[0] and "Level 1" in stood[0]
        after = ownership.announce(holds, stood)
        assert _decide(rules, now_ticket, _stored(now_ticket, after))[:2] == ([], [])


def test_the_worker_never_fights_an_agent_over_the_priority(store):
    from sandbox import serve_in_thread
    from sandbox.zendesk import create_sandbox
    from tests.test_worker import create, enqueue, make_worker, writes

    app = create_sandbox(clock=lambda: datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    base, stop = serve_in_thread(app)
    try:
        tid = create(app)  # urgent "How do I record calls?": the rule lowers it to normal
        enqueue(store, tid, "e1")
        make_worker(store, base).run_once()
        assert app.state.tickets[int(tid)]["priority"] == "normal"
        # The agent deliberately sets it back to urgent.
        client = app.test_client()
        auth = app.credentials
        assert client.put(f"/api/v2/tickets/{tid}.json", json={"ticket": {"priority": "urgent"}},
                          auth=auth).status_code == 200
        for key in ("e2", "e3"):  # the agent's change comes back as webhooks, twice
            enqueue(store, tid, key)
            [outcome] = make_worker(store, base).run_once()
            assert outcome.error is None
        assert app.state.tickets[int(tid)]["priority"] == "urgent"
        puts = writes(app, tid)
        assert len(puts) == 3  # the bot's write, the agent's, and one stand-back note
        note = puts[-1]["body"]["ticket"]["comment"]
        assert note["public"] is False and "stood back" in note["body"]
        assert "priority" not in puts[-1]["body"]["ticket"]
        # The subject changes: the rule's input changed, so it applies again.
        assert client.put(f"/api/v2/tickets/{tid}.json",
                          json={"ticket": {"subject": "How do I export recordings?"}},
                          auth=auth).status_code == 200
        enqueue(store, tid, "e4")
        make_worker(store, base).run_once()
        assert app.state.tickets[int(tid)]["priority"] == "normal"
    finally:
        stop()


def test_a_sweep_keeps_the_agents_priority_too(store):
    import sqlalchemy as sa

    from jobs.sweeps import Sweeper
    from sandbox import serve_in_thread
    from sandbox.zendesk import create_sandbox
    from store.models import ticket_snapshots
    from tests.test_worker import RULES, connector, create, enqueue, make_worker, writes

    now = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    app = create_sandbox(clock=lambda: now)
    base, stop = serve_in_thread(app)
    try:
        tid = create(app)
        enqueue(store, tid, "e1")
        make_worker(store, base).run_once()
        client = app.test_client()
        client.put(f"/api/v2/tickets/{tid}.json", json={"ticket": {"priority": "urgent"}},
                   auth=app.credentials)
        enqueue(store, tid, "e2")
        make_worker(store, base).run_once()  # the one stand-back note
        before = len(writes(app, tid))
        with store.engine.begin() as conn:  # make it due now, as a time-based rule would
            conn.execute(sa.update(ticket_snapshots).values(next_check=now))
        report = Sweeper(store, connector(base), lambda: RULES, clock=lambda: now).sweep()
        assert report.due == 1 and report.unchanged == [tid]
        assert len(writes(app, tid)) == before
        assert app.state.tickets[int(tid)]["priority"] == "urgent"
    finally:
        stop()
