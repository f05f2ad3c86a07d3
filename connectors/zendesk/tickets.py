"""Zendesk tickets, audits and sideloaded users mapped to the engine's Ticket."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from connectors.base import is_signed
from connectors.fields import (
    CHECKBOX,
    DATE,
    DECIMAL,
    DROPDOWN,
    INTEGER,
    MULTISELECT,
    TEXT,
    FieldType,
)
from engine.ticket import Event, Ticket, to_epoch

# Zendesk calls the engine's on_hold "hold"; every other status has the same name.
_FROM_ZENDESK_STATUS = {"hold": "on_hold"}
# Audits of triggers, automations and other system changes name author -1.
# https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_audits/
SYSTEM_USER_ID = -1
# User roles: https://developer.zendesk.com/api-reference/ticketing/users/users/#json-format
_ROLE_AUTHORS = {"end-user": "customer", "agent": "agent", "admin": "agent"}
# Ticket field types: https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_fields/
_FIELD_KINDS = {
    "tagger": DROPDOWN, "multiselect": MULTISELECT, "checkbox": CHECKBOX, "date": DATE,
    "integer": INTEGER, "decimal": DECIMAL,
}


def field_types_from_zendesk(fields: Iterable[Mapping[str, Any]]) -> dict[int, FieldType]:
    """Field id -> FieldType from GET /api/v2/ticket_fields: a dropdown's options map each
    option's tag (`value`) to its title (`name`)."""
    out: dict[int, FieldType] = {}
    for item in fields:
        if not isinstance(item.get("id"), int):
            continue
        options = {
            str(option["value"]): str(option.get("name") or option.get("raw_name") or option["value"])
            for option in item.get("custom_field_options") or [] if option.get("value") is not None
        }
        out[item["id"]] = FieldType(_FIELD_KINDS.get(str(item.get("type")), TEXT), options)
    return out


def ticket_from_zendesk(
    ticket: Mapping[str, Any],
    audits: Iterable[Mapping[str, Any]],
    users: Mapping[int, Mapping[str, Any]],
    *,
    field_names: Mapping[int, str],
    group_names: Mapping[int, str],
    field_types: Mapping[int, FieldType] | None = None,
    custom_statuses: Mapping[int, Mapping[str, Any]] | None = None,
    status_aliases: Mapping[str, str] | None = None,
    prior_events: Iterable[Event] = (),
) -> Ticket:
    """The engine's Ticket from a Zendesk ticket, its audits and their sideloaded users.

    `prior_events` are the timeline of the audits before `audits` (an incremental read:
    the stored events up to the newest audit seen), which then hold only the audits after.

    A comment's author is what its user's role says: `end-user` is the
    customer, `agent` and `admin` (any agent role) an agent. The system user
    (author -1, triggers and automations) is "system"; a deleted user
    (`active: false`) or one missing from the sideload is "unknown". An agent
    comment that carries the bot's signature is marked `bot`.
    `field_types` (by field id, from ticket_fields) types the custom field values.

    With custom statuses (`custom_statuses` by id, from GET custom_statuses), a
    ticket's status is its custom status's agent label when `status_aliases`
    names that label (the engine maps it), else the engine status of its
    category (`hold` -> on_hold), so two custom statuses of one category can be
    told apart by an alias and every other one still works. The ticket and its
    status events carry the custom status's agent label too (`custom_status`),
    which `status:` conditions and `pause_on` may name.
    """
    types = field_types or {}
    statuses = custom_statuses or {}
    aliases = status_aliases or {}

    events = [*prior_events, *audit_events(audits, users, custom_statuses=statuses,
                                           status_aliases=aliases)]
    fields = {
        field_names[item["id"]]: types.get(item["id"], FieldType()).read(item.get("value"))
        for item in ticket.get("custom_fields") or []
        if item.get("id") in field_names
    }
    return Ticket(
        id=str(ticket["id"]),
        status=_status_of(ticket["status"], ticket.get("custom_status_id"), statuses, aliases),
        created_at=_epoch(ticket["created_at"]),
        priority=ticket.get("priority"),
        subject=ticket.get("subject") or "",
        description=ticket.get("description") or "",
        tags=frozenset(ticket.get("tags") or ()),
        fields=fields,
        events=tuple(events),
        group=group_names.get(ticket.get("group_id")),
        custom_status=_label_of(ticket.get("custom_status_id"), statuses),
    )


def audit_events(
    audits: Iterable[Mapping[str, Any]],
    users: Mapping[int, Mapping[str, Any]],
    *,
    custom_statuses: Mapping[int, Mapping[str, Any]] | None = None,
    status_aliases: Mapping[str, str] | None = None,
) -> list[Event]:
    """The timeline of `audits` (in the order of their created_at, ties in the API's order):
    comments with their author and visibility, and status changes."""
    statuses = custom_statuses or {}
    aliases = status_aliases or {}
    timeline = sorted(((_epoch(audit["created_at"]), audit) for audit in audits), key=lambda p: p[0])
    events: list[Event] = []
    for at, audit in timeline:
        changes = audit.get("events") or []
        # Accounts with custom statuses record a custom_status_id change beside the status one.
        custom_changes = [e for e in changes if e.get("type") in ("Create", "Change")
                          and e.get("field_name") == "custom_status_id" and _int(e.get("value")) in statuses]
        for event in changes:
            kind = event.get("type")
            if kind == "Comment":
                who = comment_author(event.get("author_id", audit.get("author_id")), users)
                public = bool(event.get("public", True))
                bot = is_bot_comment(event, who)
                events.append(Event(at=at, type="comment", author=who, public=public, bot=bot))
            elif kind in ("Create", "Change") and event.get("field_name") == "status" and not custom_changes:
                events.append(Event(at=at, type="status", status=engine_status(event.get("value"))))
            elif event in custom_changes:
                custom_id = _int(event.get("value"))
                status = _status_of(None, custom_id, statuses, aliases)
                events.append(Event(at=at, type="status", status=status,
                                    custom_status=_label_of(custom_id, statuses)))
    return events


def _status_of(category: Any, custom_id: Any, statuses: Mapping[int, Mapping[str, Any]],
               aliases: Mapping[str, str]) -> str:
    """A custom status's agent label when an alias names it, else the engine status of its category."""
    custom = statuses.get(custom_id) if custom_id is not None else None
    if custom is not None:
        label = custom.get("agent_label")
        if label in aliases:
            return str(label)
        category = custom.get("status_category") or category
    return engine_status(category)


def _label_of(custom_id: Any, statuses: Mapping[int, Mapping[str, Any]]) -> str | None:
    custom = statuses.get(custom_id) if custom_id is not None else None
    label = custom.get("agent_label") if custom is not None else None
    return str(label) if label else None


def comment_author(user_id: Any, users: Mapping[int, Mapping[str, Any]]) -> str:
    """Who wrote a comment, from its user's role: `end-user` the customer, `agent`/`admin`
    an agent, the system user (-1, triggers and automations) "system", a deleted user or
    one missing from `users` "unknown"."""
    if user_id is None or user_id == SYSTEM_USER_ID:
        return "system"
    user = users.get(user_id)
    if user is None or user.get("active") is False:
        return "unknown"
    return _ROLE_AUTHORS.get(str(user.get("role")), "unknown")


def is_bot_comment(event: Mapping[str, Any], author: str) -> bool:
    """An agent's comment that carries the bot's signature (whoever's account wrote it)."""
    return author == "agent" and is_signed(event.get("plain_body") or event.get("body"))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def engine_status(value: Any) -> str:
    """The engine's name of a Zendesk status (category): `hold` is on_hold."""
    return _FROM_ZENDESK_STATUS.get(str(value), str(value))


def _epoch(value: str) -> int:
    """UTC epoch seconds of a Zendesk timestamp ("2024-03-01T09:30:00Z")."""
    return to_epoch(datetime.fromisoformat(value))
