"""The one interface every helpdesk connector implements, and the errors it raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.ticket import Ticket


class ConnectorError(Exception):
    """A helpdesk call failed; vendor exceptions are wrapped into this at the boundary."""


class NotFoundError(ConnectorError):
    """The ticket does not exist (or was deleted) in the helpdesk."""


class ConflictError(ConnectorError):
    """The ticket changed since it was read (safe update refused): re-read and retry."""


class RateLimitedError(ConnectorError):
    """The helpdesk asked us to slow down; `retry_after` is in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(ConnectorError):
    """A 5xx, a timeout or a dropped connection: worth retrying later."""


@dataclass(slots=True)
class RemoteTicket:
    """A ticket as read from the helpdesk: the engine's view plus what a safe write needs.

    `stamp` is the vendor's concurrency token (Zendesk `updated_at` for
    `updated_stamp`); `raw` keeps the vendor's ticket for diffing and logs.
    """

    ticket: Ticket
    stamp: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TicketChanges:
    """The difference to write in one ticket update, in the engine's vocabulary.

    Names (priority, status, group name, field names) are mapped to vendor
    values and ids by the connector from its configuration.
    """

    priority: str | None = None
    status: str | None = None
    group: str | None = None
    add_tags: tuple[str, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)
    note: str | None = None  # internal (private) comment
    reply: str | None = None  # public comment

    def is_empty(self) -> bool:
        return not (
            self.priority or self.status or self.group or self.add_tags or self.fields
            or self.note or self.reply
        )


class Helpdesk(Protocol):
    """What the worker and the sweeps need from a helpdesk."""

    name: str

    def fetch_ticket(self, ticket_id: str) -> RemoteTicket:
        """One ticket read and at most one comments/audits read."""
        ...

    def apply(self, remote: RemoteTicket, changes: TicketChanges) -> None:
        """Write `changes` in one ticket update; raise ConflictError if it changed meanwhile."""
        ...
