"""The one interface every helpdesk connector implements, and the errors it raises."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connectors.fields import FieldType
from engine.ticket import Ticket


class ConnectorError(Exception):
    """A helpdesk call failed; vendor exceptions are wrapped into this at the boundary."""


class NotFoundError(ConnectorError):
    """The ticket itself does not exist (or was deleted) in the helpdesk.

    Raised only for the ticket's own endpoints; a 404 anywhere else (users/me,
    agents/me, ticket_fields) is a ConfigurationError.
    """


class ConfigurationError(ConnectorError):
    """The connector cannot work as configured: a wrong API URL, an agent without the
    rights an endpoint needs, a helpdesk value no mapping covers. Not the ticket's
    fault: its work is kept and tried again, and /healthz shows the message."""


class ValidationError(ConnectorError):
    """The helpdesk refused the change as invalid (Zendesk 422, Freshdesk 400).

    Sending the same update again fails the same way: not retried. The message
    carries the vendor's own words.
    """


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
    # Why the helpdesk would refuse any update of this ticket (a closed Zendesk
    # ticket), else None: the worker records its decision and writes nothing.
    read_only: str | None = None
    # Where the next read may resume: what the connector needs to read only the history
    # after this one (Zendesk: the newest audit and its cursor), None when it cannot. Kept
    # in the stored snapshot (`resume`) and handed back as `known` to the next read.
    resume: dict[str, Any] | None = None


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


@dataclass(slots=True)
class ChangePage:
    """One page of tickets changed since a cursor (the reconciliation's incremental read).

    `ticket_ids` are worth a sync; `deleted_ids` are gone in the helpdesk and
    need no fetch; `cursor` resumes after this page; `done` says the helpdesk
    has nothing newer for now.
    """

    ticket_ids: list[str]
    cursor: str | None
    done: bool
    deleted_ids: list[str] = field(default_factory=list)
    # The `updated_at` the helpdesk listed for each ticket id, where it said: a ticket whose
    # stored snapshot already holds that state needs no sync.
    updated_at: dict[str, str] = field(default_factory=dict)


# The last line of every note and reply Deskpilot writes. A comment is the bot's
# own when it ends with it, whoever the API user is: the same account is often
# used by a person too.
BOT_SIGNATURE = "— Deskpilot"


def signed(text: str) -> str:
    """`text` with the bot's signature as its last line."""
    return f"{text.rstrip()}\n\n{BOT_SIGNATURE}"


def prepared(remote: RemoteTicket, changes: TicketChanges,
             kind_of: Callable[[str], FieldType]) -> TicketChanges:
    """`changes` with each field value in its field's own format (`kind_of(engine name)`),
    without the values and tags the ticket already holds (Helpdesk.prepare)."""
    fields: dict[str, Any] = {}
    for name, value in changes.fields.items():
        kind = kind_of(name)
        written = kind.write(value)
        if not kind.same(remote.ticket.fields.get(name), written):
            fields[name] = written
    tags = tuple(tag for tag in changes.add_tags if tag not in remote.ticket.tags)
    return dataclasses.replace(changes, fields=fields, add_tags=tags)


def unknown_labels(named: Iterable[str], known: Iterable[str], vendor: str, source: str) -> list[str]:
    """One problem naming the custom status labels the rules name (casefolded) that no status
    of the account has (`known`), so a rule that can never match is said at start-up."""
    missing = sorted(set(named) - {label.casefold() for label in known})
    if not missing:
        return []
    return [f"status label(s) {', '.join(repr(m) for m in missing)} in the rule files' status: conditions "
            f"or pause_on are neither engine statuses nor custom statuses of this {vendor} account "
            f"({source}); fix the spelling or add the status"]


def is_signed(text: str | None) -> bool:
    """True when a comment's plain text ends with the bot's signature."""
    return bool(text) and text.rstrip().endswith(BOT_SIGNATURE)  # type: ignore[union-attr]


class Helpdesk(Protocol):
    """Everything jobs/ needs from a helpdesk; jobs/ never asks which vendor it is.

    Connectors are built only through the registry (connectors.build).
    """

    name: str
    # Every update is conditional on the ticket's update stamp (a change made meanwhile is
    # refused with 409), so a write can never land over an edit it did not see.
    safe_updates: bool
    # Notes on many tickets are one bulk job per up to 100 tickets, not one call each.
    notes_in_bulk: bool

    def check(self) -> list[str]:
        """Configuration problems found by reading the account's metadata (users/me,
        ticket fields, statuses); empty when the connector can work. Called at start-up."""
        ...

    def fetch_ticket(self, ticket_id: str, known: Mapping[str, Any] | None = None) -> RemoteTicket:
        """One ticket read and at most one comments/audits read.

        `known` is the ticket's stored snapshot (jobs.worker.ticket_json, with the `resume`
        of the read it came from): a connector may read only the history after it, and
        build the same ticket a read from the start gives, or ignore it.
        """
        ...

    def fetch_tickets(self, ticket_ids: Iterable[str], known: Mapping[str, Mapping[str, Any]] | None = None
                      ) -> dict[str, RemoteTicket | ConnectorError]:
        """Several tickets: id -> its RemoteTicket, or the ConnectorError its read raised.
        `known` maps ids to their stored snapshots (see fetch_ticket). A connector may
        batch these reads; RateLimitedError stops the batch (the rest are reported with it)."""
        ...

    def prepare(self, remote: RemoteTicket, changes: TicketChanges) -> TicketChanges:
        """`changes` in the helpdesk's own value formats, without the field values the
        ticket already holds (a date field read back as "2026-11-23" equals the due
        "2026-11-23T10:00:00Z" written to it)."""
        ...

    def apply(self, remote: RemoteTicket, changes: TicketChanges) -> None:
        """Write `changes` in one ticket update; raise ConflictError if it changed meanwhile."""
        ...

    def write_parts(self, changes: TicketChanges) -> list[TicketChanges]:
        """`changes` as the vendor calls apply() makes, one part each: the outbox's units of
        completion, and what the write budget counts."""
        ...

    def can_close_in_bulk(self, add_tags: Iterable[str] = ()) -> bool:
        """Whether close_many can give tickets these tags without replacing others."""
        ...

    def bulk_writes_per_ticket(self, *, reply: str | None, note: str | None) -> int:
        """Write calls close_many makes per ticket."""
        ...

    def close_many(
        self, ticket_ids: Iterable[str], *, status: str, add_tags: Iterable[str] = (),
        reply: str | None = None, note: str | None = None, wait_seconds: float = 60,
    ) -> dict[str, str | None]:
        """One bulk job: ticket id -> None when updated, else the helpdesk's error."""
        ...

    def changed_since(self, cursor: str | None, since: datetime) -> ChangePage:
        """Tickets changed since `cursor` (or, without one, since `since`), one page per call."""
        ...

    def close(self) -> None:
        """Release pooled connections."""
        ...


def fetch_each(helpdesk: Helpdesk, ticket_ids: Iterable[str],
               known: Mapping[str, Mapping[str, Any]] | None = None
               ) -> dict[str, RemoteTicket | ConnectorError]:
    """fetch_tickets as one fetch_ticket per id (Freshdesk's way: its API reads tickets one by one)."""
    known = known or {}
    out: dict[str, RemoteTicket | ConnectorError] = {}
    limited: RateLimitedError | None = None
    for ticket_id in ticket_ids:
        if limited is not None:
            out[str(ticket_id)] = limited
            continue
        try:
            out[str(ticket_id)] = helpdesk.fetch_ticket(str(ticket_id), known.get(str(ticket_id)))
        except RateLimitedError as err:
            limited = err
            out[str(ticket_id)] = err
        except ConnectorError as err:
            out[str(ticket_id)] = err
    return out
