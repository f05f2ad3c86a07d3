"""A stored ticket extended by Zendesk event-subscription webhooks, without reading the ticket.

Each ticket event webhook carries the ticket's state after the update
(`detail`: status, priority, tags, group, subject, updated_at) and what the
update did (`event`: the comment with its author's staff flag and
visibility, the field and its new value, the status entered):
https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/

`extend_ticket` applies the webhooks newer than the stored snapshot's stamp
and returns None whenever they do not suffice, so the caller reads the ticket
in full: an update whose webhooks did not all arrive (its `meta.sequence`
has gaps), an event whose effect on the timeline the payload does not say
(a comment made private, a merge, a new requester, a deletion), a ticket
with custom statuses the rules name, a snapshot without a stamp, or a webhook
no newer than the stored stamp (one that came late) whose comment, status or
field change the stored ticket does not show.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from connectors.base import is_signed
from connectors.fields import FieldType
from connectors.zendesk.events import EVENT_PREFIX, enum_name, status_name
from engine.ticket import Event, Ticket, events_from_rows, to_epoch

# Events whose payload says all they change (or that change nothing the engine reads).
_SUFFICIENT = frozenset({
    "status_changed", "priority_changed", "comment_added", "custom_field_changed", "tags_changed",
    "group_assignment_changed", "agent_assignment_changed", "subject_changed", "description_changed",
    "custom_status_changed",
})
_ENGINE_STATUS = {"hold": "on_hold"}


def instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def extend_ticket(
    snapshot: Mapping[str, Any],
    payloads: Iterable[Mapping[str, Any]],
    *,
    field_names: Mapping[int, str],
    group_names: Mapping[int, str],
    field_types: Mapping[int, FieldType],
    custom_statuses_named: bool = False,
) -> tuple[Ticket, str] | None:
    """The snapshot's ticket with the webhooks applied and the newest updated_at, or None.

    Args:
        snapshot: the stored ticket (jobs.worker.ticket_json), with its vendor `stamp`.
        payloads: the inbox payloads ({"body": the webhook as received, ...}).
        field_names, group_names: the connector's id -> name mappings.
        field_types: field id -> FieldType (reads a dropdown's tag as its Choice).
        custom_statuses_named: the rules name custom status labels (status_aliases): the
            webhook's status category would not do.
    """
    stamp = instant(snapshot.get("stamp"))
    if stamp is None or "created_at" not in snapshot:
        return None
    updates: dict[str, list[tuple[int, Mapping[str, Any], Mapping[str, Any], str]]] = {}
    totals: dict[str, int] = {}
    newest: tuple[datetime, Mapping[str, Any]] | None = None
    for payload in payloads:
        body = payload.get("body") if isinstance(payload, Mapping) else None
        if not isinstance(body, Mapping):
            return None
        kind = str(body.get("type") or "")
        detail, event = body.get("detail"), body.get("event") or {}
        if not (kind.startswith(EVENT_PREFIX) and isinstance(detail, Mapping) and isinstance(event, Mapping)):
            return None
        at = instant(detail.get("updated_at"))
        if at is None:
            return None
        name = kind.removeprefix(EVENT_PREFIX)
        if at <= stamp:
            # Already in the stored timeline (the bot's own write among them), or a webhook
            # that came late: one the stored ticket does not show is read, never dropped.
            if not _stored(snapshot, name, event, at, field_names, field_types):
                return None
            continue
        if name not in _SUFFICIENT:
            return None
        if name == "custom_status_changed" and custom_statuses_named:
            return None
        sequence = (event.get("meta") or {}).get("sequence") or {}
        key = str(sequence.get("id") or detail.get("updated_at"))
        position, total = sequence.get("position"), sequence.get("total")
        if not isinstance(position, int) or not isinstance(total, int):
            return None
        totals[key] = total
        updates.setdefault(key, []).append((position, event, detail, name))
        if newest is None or at > newest[0]:
            newest = (at, detail)
    if newest is None:
        return None  # nothing newer than the snapshot: not the timeline's business
    for key, items in updates.items():
        if sorted(p for p, *_ in items) != list(range(1, totals[key] + 1)):
            return None  # an update whose webhooks did not all arrive: read the ticket
    events = events_from_rows(snapshot.get("events") or ())
    fields = {}
    ids = {name: number for number, name in field_names.items()}
    for name, value in (snapshot.get("fields") or {}).items():
        fields[name] = field_types.get(ids.get(name, -1), FieldType()).read(value)
    ordered = sorted((to_epoch(instant(items[0][2]["updated_at"])), key) for key, items in updates.items())
    for at, key in ordered:
        # One update's audit lists its comment before its field changes: the timeline keeps that order.
        for _position, event, _detail, name in sorted(
                updates[key], key=lambda item: (item[3] != "comment_added", item[0])):
            if name == "comment_added":
                comment = event.get("comment") or {}
                author = comment.get("author") or {}
                staff, public = author.get("is_staff"), comment.get("is_public")
                if not isinstance(staff, bool) or not isinstance(public, bool):
                    return None
                who = "agent" if staff else "customer"
                if str(author.get("id")) == "-1":
                    who = "system"
                events.append(Event(at=at, type="comment", author=who, public=public,
                                    bot=who == "agent" and is_signed(comment.get("body"))))
            elif name == "status_changed":
                status = status_name(event.get("current"))
                if status is None:
                    return None
                events.append(Event(at=at, type="status", status=_ENGINE_STATUS.get(status, status)))
            elif name == "custom_field_changed":
                field_id = (event.get("custom_field") or {}).get("id")
                try:
                    number = int(field_id)
                except (TypeError, ValueError):
                    return None
                if number in field_names:
                    current = event.get("current")
                    value = current.get("value") if isinstance(current, Mapping) else current
                    fields[field_names[number]] = field_types.get(number, FieldType()).read(value)
    detail = newest[1]
    status = status_name(detail.get("status"))
    if status is None:
        return None
    group = detail.get("group_id")
    try:
        group_name = group_names.get(int(group)) if group not in (None, "") else None
    except (TypeError, ValueError):
        return None
    ticket = Ticket(
        id=str(snapshot["id"]), status=_ENGINE_STATUS.get(status, status),
        created_at=int(snapshot["created_at"]), priority=enum_name(detail.get("priority")),
        subject=_text(detail, snapshot, "subject"), description=_text(detail, snapshot, "description"),
        tags=frozenset(str(tag) for tag in detail.get("tags") or ()),
        fields=fields, events=tuple(events), group=group_name,
    )
    return ticket, str(detail["updated_at"])


def _stored(snapshot: Mapping[str, Any], name: str, event: Mapping[str, Any], at: datetime,
            field_names: Mapping[int, str], field_types: Mapping[int, FieldType]) -> bool:
    """Whether the stored ticket already shows an event no newer than its stamp.

    Inside the stamps of the bot's last write (`wrote`: after the stamp it read, at
    most the stamp the write returned) it is that write's echo: a safe update refuses
    any other change in between. Else a comment or status change must be in the stored
    timeline at its instant and a field change in the stored fields; the ticket's own
    attributes (priority, tags, group, subject) come from the newest webhook's detail.
    """
    wrote = snapshot.get("wrote")
    if isinstance(wrote, list | tuple) and len(wrote) == 2:
        before, after = instant(wrote[0]), instant(wrote[1])
        if after is not None and at <= after and (before is None or at > before):
            return True
    epoch = to_epoch(at)
    if name == "comment_added":
        comment = event.get("comment") or {}
        staff, public = (comment.get("author") or {}).get("is_staff"), comment.get("is_public")
        who = "system" if str((comment.get("author") or {}).get("id")) == "-1" else \
            "agent" if staff else "customer"
        return any(e.at == epoch and e.type == "comment" and e.author == who and e.public == bool(public)
                   for e in events_from_rows(snapshot.get("events") or ()))
    if name == "status_changed":
        status = status_name(event.get("current"))
        return any(e.at == epoch and e.type == "status" and e.status == _ENGINE_STATUS.get(status, status)
                   for e in events_from_rows(snapshot.get("events") or ()))
    if name == "custom_field_changed":
        try:
            number = int((event.get("custom_field") or {}).get("id"))
        except (TypeError, ValueError):
            return False
        if number not in field_names:
            return True
        current = event.get("current")
        value = current.get("value") if isinstance(current, Mapping) else current
        kind = field_types.get(number, FieldType())
        return kind.read((snapshot.get("fields") or {}).get(field_names[number])) == kind.read(value)
    return name in _SUFFICIENT


def _text(detail: Mapping[str, Any], snapshot: Mapping[str, Any], key: str) -> str:
    value = detail.get(key)
    return str(value) if value is not None else str(snapshot.get(key) or "")
