"""The contract's JSON ticket (contract.md) validated into an engine Ticket."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.ticket import PRIORITIES, STATUSES, Event, Ticket, TicketError, to_epoch


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp needs an offset or Z, e.g. 2026-11-20T14:30:00Z")
    return value


class EventIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    at: datetime
    type: Literal["comment", "status"]
    author: Literal["customer", "agent"] | None = None
    public: bool = True
    status: str | None = None
    bot: bool = False

    _at = field_validator("at")(_aware)

    @field_validator("author", "status", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return (
            value.strip().lower()
            if isinstance(value, str) and value.strip().lower() in (*STATUSES, "customer", "agent")
            else value
        )


class TicketIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | int
    subject: str | None = ""
    description: str | None = ""
    status: str = "open"
    priority: str | None = None
    tags: list[str] = Field(default_factory=list)
    fields: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    events: list[EventIn] = Field(default_factory=list)
    group: str | None = None

    _created = field_validator("created_at")(_aware)

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if value in ("", "none"):
                return None
            if value not in PRIORITIES:
                raise ValueError(
                    f"unknown priority {value!r}; expected one of {', '.join(PRIORITIES)} or null"
                )
        return value


def _status(value: str, aliases: dict[str, str], field: str) -> str:
    if value in aliases:
        return value
    lowered = value.strip().lower()
    if lowered in STATUSES:
        return lowered
    if lowered == "hold":
        return "on_hold"
    known = ", ".join([*STATUSES, *aliases])
    raise TicketError(field, f"unknown status {value!r}; expected one of {known}")


def parse_ticket(data: Any, aliases: dict[str, str] | None = None) -> Ticket:
    """Validate a contract ticket. Raises TicketError naming the field."""
    aliases = aliases or {}
    if not isinstance(data, dict):
        raise TicketError("", f"expected a JSON object for the ticket, got {type(data).__name__}")
    try:
        raw = TicketIn.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        field = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in first["loc"]).replace(".[", "[")
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            message = "required field is missing"
        raise TicketError(field, message) from None
    events = []
    for index, event in enumerate(raw.events):
        if event.type == "comment" and event.author is None:
            raise TicketError(f"events[{index}].author", "a comment needs an author: customer or agent")
        status = None
        if event.type == "status":
            if not event.status:
                raise TicketError(f"events[{index}].status", "a status event needs the status")
            status = _status(event.status, aliases, f"events[{index}].status")
        events.append(Event(to_epoch(event.at), event.type, event.author, event.public, status, event.bot))
    events.sort(key=lambda e: e.at)  # contract: in time order; tolerate small disorder
    return Ticket(
        id=str(raw.id),
        status=_status(raw.status, aliases, "status"),
        created_at=to_epoch(raw.created_at),
        priority=raw.priority,
        subject=raw.subject or "",
        description=raw.description or "",
        tags=frozenset(raw.tags),
        fields=dict(raw.fields),
        events=tuple(events),
        group=raw.group,
    )
