"""Writing decided changes through the outbox, so every change lands whole and exactly once.

Before the first vendor call the write is stored (store/outbox.py): its rules
version, the audit rows it will record, and its parts, one per vendor call
(field update, internal note, public reply, or a share of a bulk job). Each
part is counted as sent just before its call and marked done when the vendor
confirms it; the write's audit rows are inserted in the same transaction
that finishes it. A retry, a restart or another worker finds the unfinished
write for the ticket and completes exactly the parts not done: a part that
may have reached the vendor (sent, no confirmation) is first looked up on
the ticket (the bot's comment, or the field values) and only sent again
when it is not there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from connectors.base import ConflictError, Helpdesk, RemoteTicket, TicketChanges
from engine.ticket import to_epoch
from jobs.budget import WriteBudget
from store import Store
from store.outbox import OutboxWrite

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 3
# A comment found on the ticket counts as this write's when posted at most this long before
# the write was recorded (the helpdesk's clock and ours may differ a little).
CLOCK_SKEW_SECONDS = 120

_FIELDS = ("priority", "status", "group")


def changes_to_dict(changes: TicketChanges) -> dict[str, Any]:
    """TicketChanges as JSON for the outbox; only what is set."""
    out: dict[str, Any] = {name: getattr(changes, name) for name in (*_FIELDS, "note", "reply")
                           if getattr(changes, name)}
    if changes.add_tags:
        out["add_tags"] = list(changes.add_tags)
    if changes.fields:
        out["fields"] = dict(changes.fields)
    return out


def changes_from_dict(data: dict[str, Any]) -> TicketChanges:
    return TicketChanges(
        priority=data.get("priority"), status=data.get("status"), group=data.get("group"),
        add_tags=tuple(data.get("add_tags") or ()), fields=dict(data.get("fields") or {}),
        note=data.get("note"), reply=data.get("reply"),
    )


def _has_update(changes: TicketChanges) -> bool:
    return bool(changes.priority or changes.status or changes.group or changes.add_tags or changes.fields)


def part_kind(changes: TicketChanges) -> str:
    """`update`, `note`, `reply`, or a combination (`update+reply`) for one vendor call."""
    kinds = [name for name, present in (("update", _has_update(changes)), ("note", bool(changes.note)),
                                        ("reply", bool(changes.reply))) if present]
    return "+".join(kinds) or "empty"


def split_parts(helpdesk: Helpdesk, changes: TicketChanges) -> list[TicketChanges]:
    """The vendor calls that write `changes`, as the connector splits them (`write_parts`)."""
    if changes.is_empty():
        return []
    return [part for part in helpdesk.write_parts(changes) if not part.is_empty()]


def landed(helpdesk: Helpdesk, remote: RemoteTicket, changes: TicketChanges, since: datetime) -> bool | None:
    """Whether a part already shows on the ticket as read in `remote`.

    A part with a comment landed when the bot's comment is there (a field update
    sent in the same call landed with it). A field update landed when the
    ticket already has every value. None when the connector cannot tell
    whether a comment was posted.
    """
    comment = changes.reply or changes.note
    if comment:
        check = getattr(helpdesk, "has_comment", None)
        if check is None:
            return None
        return bool(check(remote.ticket.id, comment, public=bool(changes.reply),
                          since=to_epoch(since) - CLOCK_SKEW_SECONDS))
    ticket = remote.ticket
    return (
        (not changes.priority or ticket.priority == changes.priority)
        and (not changes.status or ticket.status == changes.status)
        and (not changes.group or ticket.group == changes.group)
        and set(changes.add_tags) <= set(ticket.tags)
        and all(ticket.fields.get(name) == value for name, value in changes.fields.items())
    )


class OutboxWriter:
    """Records decided writes and completes them, part by part, on one store."""

    def __init__(self, store: Store, clock: Callable[[], datetime],
                 budget: WriteBudget | None = None) -> None:
        self.store = store
        self.clock = clock
        self.budget = budget

    def record(self, source: str, ticket_id: str, *, rules_version: str, audit: list[dict],
               helpdesk: Helpdesk, changes: TicketChanges) -> OutboxWrite:
        parts = [(part_kind(part), changes_to_dict(part)) for part in split_parts(helpdesk, changes)]
        return self.store.outbox.record(source, ticket_id, rules_version=rules_version, actions=audit,
                                        parts=parts, now=self.clock())

    def complete(self, helpdesk: Helpdesk, write: OutboxWrite, remote: RemoteTicket, *,
                 fresh: bool = False) -> int:
        """Send the parts of `write` not done yet, mark each done, then finish it with its audit rows.

        With `fresh` (the write was decided on `remote` just now), a conflict on
        the first call propagates untouched so the caller can decide again; any
        later conflict re-reads the ticket and sends the part again (a refused
        safe update wrote nothing). Returns the vendor write calls made.
        """
        source, ticket_id = write.source, write.ticket_id
        remaining = write.remaining()
        if self.budget is not None and remaining:
            self.budget.spend(source, ticket_id, len(remaining), self.clock())
        calls, wrote = 0, any(part.done for part in write.parts)
        for part in remaining:
            changes = changes_from_dict(part.changes)
            if part.attempts or part.job_id:
                found = landed(helpdesk, remote, changes, write.created_at)
                if found:
                    log.info("%s ticket %s: %s of write %d had reached the helpdesk; not sent again",
                             source, ticket_id, part.kind, write.id)
                    self.store.outbox.done([part.id], self.clock())
                    wrote = True
                    continue
                if found is None:
                    log.warning("%s ticket %s: cannot tell whether %s of write %d reached the helpdesk; "
                                "sending it again", source, ticket_id, part.kind, write.id)
            for attempt in range(1, CONFLICT_RETRIES + 1):
                self.store.outbox.sent([part.id], self.clock())
                calls += 1
                try:
                    helpdesk.apply(remote, changes)
                except ConflictError:
                    if (fresh and not wrote) or attempt == CONFLICT_RETRIES:
                        raise
                    log.info("%s ticket %s: changed while writing %s; reading it again",
                             source, ticket_id, part.kind)
                    remote = _refresh(helpdesk, remote)
                    continue
                break
            self.store.outbox.done([part.id], self.clock())
            wrote = True
        if self.store.outbox.finish(write, self.clock()):
            log.info("%s ticket %s: write %d complete (%d part(s), rules %s)", source, ticket_id,
                     write.id, len(write.parts), write.rules_version)
        return calls


def _refresh(helpdesk: Helpdesk, remote: RemoteTicket) -> RemoteTicket:
    fresh = helpdesk.fetch_ticket(remote.ticket.id)
    remote.ticket, remote.stamp, remote.raw = fresh.ticket, fresh.stamp, fresh.raw
    return remote
