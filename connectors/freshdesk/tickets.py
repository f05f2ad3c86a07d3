"""Freshdesk ticket JSON (with stats and conversations) mapped to the engine's Ticket."""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from connectors.base import ConfigurationError, ConnectorError, is_signed
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

# Priority and status ids: https://developers.freshdesk.com/api/#tickets
# Freshdesk's "Medium" is the engine's "normal"; its "Resolved" is "solved".
PRIORITY_NAMES = {1: "low", 2: "normal", 3: "high", 4: "urgent"}
PRIORITY_IDS = {name: pid for pid, name in PRIORITY_NAMES.items()}
STATUS_NAMES = {2: "open", 3: "pending", 4: "solved", 5: "closed"}
STATUS_IDS = {name: sid for sid, name in STATUS_NAMES.items()}
# Statuses every Freshdesk account has beside the four above (Admin > Ticket
# Fields > Status): 6 "Waiting on Customer" and 7 "Waiting on Third Party".
# Both stop the SLA clock in Freshdesk's own SLA policies; an account's
# `statuses:` mapping (status_map) overrides them.
DEFAULT_WAITING_STATUSES = {6: "pending", 7: "on_hold"}
# Written only for an engine status the four above cannot say (`on_hold` -> 7).
DEFAULT_WAITING_IDS = {name: sid for sid, name in DEFAULT_WAITING_STATUSES.items() if name not in STATUS_IDS}
OUTBOUND_EMAIL_SOURCE = 10  # ticket `source` of an agent-initiated outbound email


def ticket_from_freshdesk(
    data: Mapping[str, Any],
    conversations: Iterable[Mapping[str, Any]],
    *,
    field_names: Mapping[str, str],
    group_names: Mapping[int, str],
    status_map: Mapping[int, str],
    agent_ids: Collection[int] = (),
    field_types: Mapping[str, FieldType] | None = None,
    status_labels: Mapping[int, str] | None = None,
) -> Ticket:
    """The engine's Ticket from a Freshdesk ticket (with `include=stats`) and its conversations.

    `field_names` maps Freshdesk custom fields (cf_plan) to engine names,
    `group_names` group ids to engine names, `status_map` custom status ids
    to engine statuses, `field_types` types custom fields by their Freshdesk name.

    A conversation's author is an agent when its `user_id` is one of
    `agent_ids` (GET /agents), else the customer (the requester or another
    contact, e.g. a CC); without a user_id it is "unknown". `incoming` is not
    used: it says the conversation came from outside the portal (an email, or
    an API call that set it), not who wrote it. An agent's reply or note that
    carries the bot's signature is marked `bot`.

    `status_labels` (status id -> agent label, the status field's choices) gives a
    custom status (6 and up) its label (`custom_status`, on the ticket and on the
    status event at status_updated_at), which conditions and `pause_on` may name.
    """
    types = field_types or {}
    tid = data.get("id")
    created = instant(data.get("created_at"), f"ticket {tid} created_at")
    status = _engine_status(data.get("status"), tid, status_map)
    priority = data.get("priority")
    if priority is not None and priority not in PRIORITY_NAMES:
        raise ConnectorError(f"Freshdesk ticket {tid} has unknown priority {priority!r}")
    # Mapped custom fields appear under their engine name, the rest under Freshdesk's own.
    fields = {
        field_names.get(key, key): types.get(key, FieldType()).read(value)
        for key, value in (data.get("custom_fields") or {}).items()
    }
    # The description is the requester's first message, except on an
    # outbound email, which an agent writes (source 10 in the docs' table).
    opener = "agent" if data.get("source") == OUTBOUND_EMAIL_SOURCE else "customer"
    events = [Event(at=created, type="comment", author=opener, public=True)]
    agents = frozenset(agent_ids)
    for item in conversations:
        user = item.get("user_id")
        author = "unknown" if user is None else "agent" if user in agents else "customer"
        events.append(Event(
            at=instant(item.get("created_at"), f"ticket {tid} conversation {item.get('id')}"),
            type="comment",
            author=author,
            public=not item.get("private", False),
            bot=author == "agent" and is_signed(item.get("body_text") or _text(item.get("body"))),
        ))
    raw_status = data.get("status")
    label = (status_labels or {}).get(raw_status) if raw_status not in STATUS_NAMES else None
    events.extend(_status_events(data.get("stats") or {}, status, tid, label))
    events.sort(key=lambda event: (event.at, event.type != "comment"))
    return Ticket(
        id=str(tid),
        status=status,
        created_at=created,
        priority=PRIORITY_NAMES.get(priority) if priority is not None else None,
        subject=data.get("subject") or "",
        description=data.get("description_text") or "",
        tags=frozenset(data.get("tags") or ()),
        fields=fields,
        events=tuple(events),
        group=group_names.get(data.get("group_id")),
        custom_status=label,
    )


def _engine_status(status: Any, tid: Any, status_map: Mapping[int, str]) -> str:
    if status in STATUS_NAMES:
        return STATUS_NAMES[status]
    if status in status_map:
        return status_map[status]
    if status in DEFAULT_WAITING_STATUSES:
        return DEFAULT_WAITING_STATUSES[status]
    raise ConfigurationError(
        f"Freshdesk ticket {tid} has status {status!r}, which is not mapped: add it under "
        f"helpdesk: freshdesk: statuses: in the rule files, e.g. {status}: on_hold"
    )


def _status_events(stats: Mapping[str, Any], status: str, tid: Any, label: str | None = None
                   ) -> list[Event]:
    """The status changes that Freshdesk's ticket stats still show.

    Freshdesk's API keeps no status history (the activity log is not in API
    v2), only the last instant of a few transitions (`include=stats`:
    https://developers.freshdesk.com/api/#view_a_ticket). So the timeline is
    rebuilt from: resolved_at, closed_at, reopened_at (after one of them),
    pending_since (while pending), and the current status at
    status_updated_at. Earlier pauses that were left are lost, so pause time
    before the latest transition counts as open time.
    """
    at = {
        key: instant(value, f"ticket {tid} stats.{key}")
        for key, value in stats.items()
        if key in ("status_updated_at", "resolved_at", "closed_at", "reopened_at", "pending_since")
        and value
    }
    current_at = at.get("status_updated_at")
    candidates = [(at[key], name) for key, name in (("resolved_at", "solved"), ("closed_at", "closed"))
                  if key in at]
    reopened = at.get("reopened_at")
    if reopened is not None and any(moment < reopened for moment, _ in candidates):
        candidates.append((reopened, "open"))
    if status == "pending" and "pending_since" in at:
        candidates.append((at["pending_since"], "pending"))
    if current_at is not None:
        candidates = [c for c in candidates if c[0] < current_at]
    order = {"open": 0, "pending": 1, "solved": 2, "closed": 3}
    candidates.sort(key=lambda c: (c[0], order.get(c[1], 1)))
    if current_at is not None:
        candidates.append((current_at, status))
    events: list[Event] = []
    for moment, name in candidates:
        if not events or events[-1].status != name:
            events.append(Event(at=moment, type="status", status=name))
    if label and current_at is not None and events and events[-1].status == status:
        # The current status, entered at status_updated_at, is the custom one.
        last = events[-1]
        events[-1] = Event(at=last.at, type="status", status=last.status, custom_status=label)
    return events


def instant(value: Any, what: str) -> int:
    try:
        return to_epoch(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError as err:
        raise ConnectorError(f"Freshdesk {what} {value!r} is not an ISO-8601 instant") from err


def _text(body: Any) -> str:
    """Plain text of an HTML conversation body (line breaks kept), for the signature test."""
    if not isinstance(body, str):
        return ""
    return html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<br\s*/?>|</p>|</div>", "\n", body)))


# Ticket field types: https://developers.freshdesk.com/api/#ticket-fields
_FIELD_KINDS = {
    "custom_dropdown": DROPDOWN, "custom_checkbox": CHECKBOX, "custom_date": DATE,
    "custom_number": INTEGER, "custom_decimal": DECIMAL,
    "custom_multi_select_dropdown": MULTISELECT,
}


def field_types_from_freshdesk(fields: Iterable[Mapping[str, Any]]) -> dict[str, FieldType]:
    """Custom field name (cf_plan) -> FieldType from GET /api/v2/ticket_fields.

    A Freshdesk dropdown stores the option's label itself, so value and title are one.
    """
    out: dict[str, FieldType] = {}
    for item in fields:
        name = item.get("name")
        if not isinstance(name, str) or item.get("default"):
            continue
        choices = item.get("choices")
        options = {str(c): str(c) for c in choices} if isinstance(choices, list) else {}
        out[name] = FieldType(_FIELD_KINDS.get(str(item.get("type")), TEXT), options)
    return out


def status_choices(fields: Iterable[Mapping[str, Any]]) -> dict[int, str]:
    """Status id -> agent label from the `status` field's choices ({"6": ["Waiting on
    Customer", "Awaiting your Reply"]}: agent label, then customer label)."""
    for item in fields:
        if item.get("name") == "status" and isinstance(item.get("choices"), dict):
            out: dict[int, str] = {}
            for key, labels in item["choices"].items():
                try:
                    sid = int(key)
                except ValueError:
                    continue
                out[sid] = str(labels[0]) if isinstance(labels, list) and labels else str(labels)
            return out
    return {}
