"""Zendesk tickets, audits and sideloaded users mapped to the engine's Ticket."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from engine.ticket import Event, Ticket, to_epoch

# Zendesk calls the engine's on_hold "hold"; every other status has the same name.
_FROM_ZENDESK_STATUS = {"hold": "on_hold"}


def ticket_from_zendesk(
    ticket: Mapping[str, Any],
    audits: Iterable[Mapping[str, Any]],
    users: Mapping[int, Mapping[str, Any]],
    *,
    field_names: Mapping[int, str],
    group_names: Mapping[int, str],
    bot_user_id: int | None = None,
) -> Ticket:
    """The engine's Ticket from a Zendesk ticket, its audits and their sideloaded users.

    A comment is the customer's when its author is the requester or an
    end-user, an agent's otherwise (agents, admins, triggers, unknown users).
    An agent comment by `bot_user_id` (the API user) is marked `bot`.
    """
    requester = ticket.get("requester_id")

    def author(user_id: Any) -> str:
        if user_id is not None and user_id == requester:
            return "customer"
        role = (users.get(user_id) or {}).get("role")
        return "customer" if role == "end-user" else "agent"

    timeline = sorted(((_epoch(audit["created_at"]), audit) for audit in audits), key=lambda p: p[0])
    events: list[Event] = []
    for at, audit in timeline:
        for event in audit.get("events") or []:
            kind = event.get("type")
            if kind == "Comment":
                author_id = event.get("author_id", audit.get("author_id"))
                who = author(author_id)
                public = bool(event.get("public", True))
                bot = who == "agent" and bot_user_id is not None and author_id == bot_user_id
                events.append(Event(at=at, type="comment", author=who, public=public, bot=bot))
            elif kind in ("Create", "Change") and event.get("field_name") == "status":
                events.append(Event(at=at, type="status", status=_engine_status(event.get("value"))))
    fields = {
        field_names[item["id"]]: item.get("value")
        for item in ticket.get("custom_fields") or []
        if item.get("id") in field_names
    }
    return Ticket(
        id=str(ticket["id"]),
        status=_engine_status(ticket["status"]),
        created_at=_epoch(ticket["created_at"]),
        priority=ticket.get("priority"),
        subject=ticket.get("subject") or "",
        description=ticket.get("description") or "",
        tags=frozenset(ticket.get("tags") or ()),
        fields=fields,
        events=tuple(events),
        group=group_names.get(ticket.get("group_id")),
    )


def _engine_status(value: Any) -> str:
    return _FROM_ZENDESK_STATUS.get(str(value), str(value))


def _epoch(value: str) -> int:
    """UTC epoch seconds of a Zendesk timestamp ("2024-03-01T09:30:00Z")."""
    return to_epoch(datetime.fromisoformat(value))
