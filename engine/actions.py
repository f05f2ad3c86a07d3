"""The bot's one vocabulary of actions, shared by the engine, the worker, the sweeps and the connectors.

Every place that turns an action into something (a ticket update, an audit
row, a sweep plan line, a vendor call) keeps a table keyed by `ActionType`
and checks it with `exhaustive()` when its module loads: an action type
added here but not handled there fails at import (and in tests), never
silently at run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from engine.ticket import Event, Ticket


class ActionType(StrEnum):
    """What the bot can do to a ticket. The values are the names stored in audit rows and plans."""

    SET_PRIORITY = "set_priority"
    SET_STATUS = "set_status"
    ASSIGN_GROUP = "assign_group"
    ADD_TAGS = "add_tags"
    SET_FIELDS = "set_fields"
    NOTE = "note"  # internal (private) comment
    REPLY = "reply"  # public comment


# Actions that change the ticket; NOTE and REPLY only explain or announce.
CHANGE_TYPES = frozenset({ActionType.SET_PRIORITY, ActionType.SET_STATUS, ActionType.ASSIGN_GROUP,
                          ActionType.ADD_TAGS, ActionType.SET_FIELDS})
COMMENT_TYPES = frozenset({ActionType.NOTE, ActionType.REPLY})
# Which payload attribute of engine.decision.Action each type carries.
PAYLOAD = {
    ActionType.SET_PRIORITY: "value",
    ActionType.SET_STATUS: "value",
    ActionType.ASSIGN_GROUP: "value",
    ActionType.ADD_TAGS: "values",
    ActionType.SET_FIELDS: "values",
    ActionType.NOTE: "body",
    ActionType.REPLY: "body",
}


class UnknownAction(ValueError):
    """An action type outside the vocabulary: refused where it appears, never dropped."""


def action_type(value: Any) -> ActionType:
    """`value` as an ActionType; UnknownAction names the valid ones."""
    try:
        return ActionType(value)
    except ValueError:
        raise UnknownAction(
            f"unknown action type {value!r}: one of {', '.join(t.value for t in ActionType)}"
        ) from None


def exhaustive(table: Mapping[Any, Any] | Iterable[Any], where: str) -> None:
    """Raise TypeError unless `table` handles exactly every ActionType (keys of a mapping, or items)."""
    keys = set(table.keys() if isinstance(table, Mapping) else table)
    missing = [t.value for t in ActionType if t not in keys]
    extra = sorted(str(k) for k in keys if k not in set(ActionType))
    if missing or extra:
        raise TypeError(
            f"{where} does not handle the action vocabulary: missing {missing or 'none'}, "
            f"unknown {extra or 'none'}"
        )


exhaustive(PAYLOAD, "engine.actions.PAYLOAD")


def _set(name: str):
    def apply(state: dict, action: Any, at: int) -> None:
        state[name] = action.value
        if name == "status":
            state["events"].append(Event(at=at, type="status", status=action.value))

    return apply


def _tags(state: dict, action: Any, at: int) -> None:
    state["tags"] = frozenset(state["tags"]) | frozenset(action.values)


def _fields(state: dict, action: Any, at: int) -> None:
    state["fields"] = {**state["fields"], **dict(action.values)}


def _comment(public: bool):
    def apply(state: dict, action: Any, at: int) -> None:
        state["events"].append(Event(at=at, type="comment", author="agent", public=public, bot=True))

    return apply


# How each action leaves the ticket, for the state the bot's write produces.
APPLY = {
    ActionType.SET_PRIORITY: _set("priority"),
    ActionType.SET_STATUS: _set("status"),
    ActionType.ASSIGN_GROUP: _set("group"),
    ActionType.ADD_TAGS: _tags,
    ActionType.SET_FIELDS: _fields,
    ActionType.NOTE: _comment(False),
    ActionType.REPLY: _comment(True),
}
exhaustive(APPLY, "engine.actions.APPLY")


def apply_actions(ticket: Ticket, actions: Iterable[Any], at: int) -> Ticket:
    """The ticket as the bot's write of `actions` at `at` leaves it (pure; no vendor read)."""
    actions = list(actions)
    if not actions:
        return ticket
    state: dict[str, Any] = {"priority": ticket.priority, "status": ticket.status, "group": ticket.group,
                             "tags": ticket.tags, "fields": ticket.fields, "events": list(ticket.events)}
    for action in actions:
        APPLY[action_type(action.type)](state, action, at)
    state["events"] = tuple(state["events"])
    return dataclasses.replace(ticket, **state)
