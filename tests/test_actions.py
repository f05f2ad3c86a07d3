"""One action vocabulary: every table that turns an action into something handles every type."""

from __future__ import annotations

import pytest

from connectors.base import TicketChanges
from connectors.freshdesk import FreshdeskConnector
from connectors.zendesk import ZendeskConnector
from engine import actions as vocabulary
from engine.actions import ActionType, UnknownAction, apply_actions, exhaustive
from engine.decision import ACTION_TYPES, Action, Decision
from engine.ticket import Ticket
from jobs import sweeps, worker
from jobs.outbox import changes_from_dict, changes_to_dict, split_parts

SAMPLES = {
    ActionType.SET_PRIORITY: Action("set_priority", "r", value="high"),
    ActionType.SET_STATUS: Action("set_status", "r", value="solved"),
    ActionType.ASSIGN_GROUP: Action("assign_group", "r", value="Level 2"),
    ActionType.ADD_TAGS: Action("add_tags", "r", values=("vip",)),
    ActionType.SET_FIELDS: Action("set_fields", "r", values={"plan": "basic"}),
    ActionType.NOTE: Action("note", "r", body="Why"),
    ActionType.REPLY: Action("reply", "r", body="Hello"),
}
TICKET = Ticket(id="1", status="open", created_at=0, priority="low", tags=frozenset({"a"}),
                fields={"plan": "pro"}, group="Level 1")

# Every place that dispatches on the action type, by name.
TABLES = {
    "engine.actions.PAYLOAD": vocabulary.PAYLOAD,
    "engine.actions.APPLY": vocabulary.APPLY,
    "jobs.worker.FOLD": worker.FOLD,
    "jobs.worker.BEFORE": worker.BEFORE,
    "jobs.sweeps.DESCRIBE": sweeps.DESCRIBE,
}


def test_samples_cover_the_vocabulary():
    exhaustive(SAMPLES, "the samples of this test")
    assert set(ACTION_TYPES) == {t.value for t in ActionType}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_dispatch_table_handles_every_action_type(name):
    assert set(TABLES[name]) == set(ActionType), name


def test_a_table_missing_a_type_fails_loudly():
    partial = {t: None for t in ActionType if t is not ActionType.REPLY}
    with pytest.raises(TypeError, match=r"missing \['reply'\]"):
        exhaustive(partial, "somewhere")
    with pytest.raises(TypeError, match="unknown"):
        exhaustive({**SAMPLES, "escalate_to_moon": None}, "somewhere")


def test_an_unknown_action_type_is_refused_not_dropped():
    with pytest.raises(UnknownAction, match="escalate_to_moon"):
        Action("escalate_to_moon", "r")


@pytest.mark.parametrize("kind", list(ActionType), ids=[t.value for t in ActionType])
def test_each_action_goes_through_the_whole_write_path(kind):
    action = SAMPLES[kind]
    decision = Decision(ticket="1", priority=None, priority_rule=None, policy=None, targets={},
                        actions=[action])
    changes = worker.changes_from(decision)
    assert not changes.is_empty()
    assert changes_from_dict(changes_to_dict(changes)) == changes
    for connector in (ZendeskConnector("x", "bot@x.example", "t", field_ids={"plan": 1}),
                      FreshdeskConnector("x.freshdesk.com", "k", field_names={"plan": "cf_plan"})):
        parts = split_parts(connector, changes)
        assert parts and all(not part.is_empty() for part in parts)
        merged = TicketChanges()
        for part in parts:  # nothing is lost between the parts
            for name in ("priority", "status", "group", "note", "reply"):
                setattr(merged, name, getattr(merged, name) or getattr(part, name))
            merged.add_tags += part.add_tags
            merged.fields.update(part.fields)
        assert merged == changes, type(connector).__name__
    after = apply_actions(TICKET, [action], 50)
    assert after != TICKET
    [row] = worker._action_log(decision, type("R", (), {"ticket": TICKET})())
    assert row["type"] == kind.value and row["rule"] == "r"
    assert sweeps._describe(action).startswith(kind.value)
