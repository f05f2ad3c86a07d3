"""The engine's vendor-neutral ticket: what connectors build and the CLI parses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The engine's vocabulary (policies.md). Priorities are listed lowest first so
# that their index orders them.
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
PRIORITY_RANK = {name: rank for rank, name in enumerate(PRIORITIES)}
STATUSES: tuple[str, ...] = ("new", "open", "pending", "on_hold", "solved", "closed")
DONE_STATUSES = frozenset({"solved", "closed"})
AUTHORS = ("customer", "agent")
# Comment authors that are neither: helpdesk automations (Zendesk's user -1) and
# users the helpdesk no longer knows (deleted, missing from the sideload). Their
# comments satisfy no response target and do not make the last public author.
OTHER_AUTHORS = ("system", "unknown")
EVENT_TYPES = ("comment", "status")


class TicketError(ValueError):
    """A ticket that cannot be evaluated; `field` is the dotted path of the bad value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(slots=True, frozen=True)
class Event:
    """One entry of the ticket's timeline. `at` is UTC epoch seconds.

    A `comment` has an `author` (`customer`, `agent`, or one of OTHER_AUTHORS) and `public`; `bot`
    marks an agent comment Deskpilot itself posted (an auto-close reminder).
    A `status` event has the `status` the ticket entered at that instant and, for a
    helpdesk's custom status, its agent label (`custom_status`, e.g. "Awaiting vendor").
    """

    at: int
    type: str
    author: str | None = None
    public: bool = True
    status: str | None = None
    bot: bool = False
    custom_status: str | None = None


@dataclass(slots=True)
class Ticket:
    """A ticket as of its latest sync. Instants are UTC epoch seconds.

    `status` is the engine's status; `custom_status` the agent label of the helpdesk's
    custom status the ticket is in (Zendesk custom statuses, Freshdesk statuses from 6
    on), which `status:` conditions and `pause_on` may name instead (case-insensitive).
    """

    id: str
    status: str
    created_at: int
    priority: str | None = None
    subject: str = ""
    description: str = ""
    tags: frozenset[str] = frozenset()
    fields: dict[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    group: str | None = None
    custom_status: str | None = None


class Choice(str):
    """A dropdown option as the helpdesk stores it (Zendesk: its tag, `plan_professional`)
    that conditions also match by its title (`label`, "Professional")."""

    label: str

    def __new__(cls, value: str, label: str | None = None) -> Choice:
        choice = super().__new__(cls, value)
        choice.label = value if label is None else label
        return choice

    def __reduce__(self) -> tuple:
        return (Choice, (str(self), self.label))


def events_from_rows(rows: Iterable[Any]) -> list[Event]:
    """Events from their stored rows, [at, type, author, public, status, bot] each (the
    snapshot's "events", jobs.worker.ticket_json; rows stored before `bot` have five)."""
    events = []
    for row in rows:
        at, kind, author, public, status = row[:5]
        bot = bool(row[5]) if len(row) > 5 else False
        events.append(Event(at=int(at), type=kind, author=author, public=bool(public), status=status,
                            bot=bot))
    return events


def to_epoch(value: datetime) -> int:
    """Whole UTC epoch seconds of an aware datetime."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: every instant must carry a time zone")
    return int(value.timestamp() // 1)
