"""Freshdesk automation-rule webhook bodies (docs/webhooks.md) to inbox events."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

# The outcome types are shared by both vendors; they live with the Zendesk
# normaliser, which came first.
from connectors.zendesk.events import (
    IgnoredEvent,
    MalformedPayload,
    NormalizedEvent,
    Outcome,
    UnknownEvent,
    enum_name,
    instant,
    status_name,
)

SOURCE = "freshdesk"
WRAPPER = "freshdesk_webhook"
_TICKET_ID = re.compile(r"^[1-9][0-9]{0,19}$")  # ASCII only: str.isdigit() takes any script

log = logging.getLogger(__name__)

TriggeredEvent = tuple[str, str | None, str | None, str | None]  # key, value, from, to
Handler = Callable[[TriggeredEvent], tuple[str, dict[str, Any]]]


# How a Freshdesk placeholder renders a time (`{{ticket.modified_on}}`): the Rails default,
# "2026-11-20 15:01:00 UTC" in an account on UTC, "2026-11-20 20:31:00 +0530" elsewhere.
_RENDERED_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.\d+)? ?(UTC|Z|[+-]\d{2}:?\d{2})$")


def rendered_instant(value: Any) -> datetime | None:
    """The instant a rendered time placeholder names (the Rails rendering above, or ISO-8601),
    None when it is empty, unrendered or has no offset."""
    if not isinstance(value, str):
        return None
    match = _RENDERED_TIME.match(value.strip())
    if match is None:
        return instant(value)
    day, clock, zone = match.groups()
    zone = "+00:00" if zone in ("UTC", "Z") else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    try:
        return datetime.fromisoformat(f"{day}T{clock}{zone}")
    except ValueError:
        return None


def parse_triggered_event(text: str) -> TriggeredEvent:
    """Read Freshdesk's `{{triggered_event}}`: `{ticket_action:created}` or `{status:{from:2,to:3}}`.

    The placeholder renders as unquoted pseudo-JSON (Zulip's Freshdesk
    integration parses the same strings:
    https://github.com/zulip/zulip/blob/main/zerver/webhooks/freshdesk/view.py).

    Returns:
        (key, value, from, to): value for a simple event, from/to for a property change.
    Raises:
        MalformedPayload: for anything else (the placeholder was not rendered, say).
    """
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")) or stripped.startswith("{{"):
        raise MalformedPayload(
            "triggered_event must be Freshdesk's {{triggered_event}} placeholder, rendered like "
            f"'{{status:{{from:2,to:3}}}}'; got {text!r}"
        )
    key, colon, rest = stripped[1:-1].partition(":")
    key = key.strip().lower()
    if not key or not colon:
        raise MalformedPayload(f"triggered_event has no 'name:value' inside, got {text!r}")
    rest = rest.strip()
    if rest.startswith("{") and rest.endswith("}"):
        # Values may contain commas (names, custom fields), so split at the last ",to:".
        before, sep, after = rest[1:-1].rpartition(",to:")
        if not sep or not before.startswith("from:"):
            raise MalformedPayload(f"triggered_event change must read {{from:X,to:Y}}, got {text!r}")
        return key, None, before.removeprefix("from:").strip(), after.strip()
    return key, rest, None, None


def _simple(name: str) -> Handler:
    def handler(event: TriggeredEvent) -> tuple[str, dict[str, Any]]:
        key, value, before, after = event
        return name, {"from": before, "to": after}

    return handler


def _ticket_action(event: TriggeredEvent) -> tuple[str, dict[str, Any]]:
    action = (event[1] or "").lower()
    return ("created" if action == "created" else f"ticket_{action}"), {"action": action}


def _note(event: TriggeredEvent) -> tuple[str, dict[str, Any]]:
    kind = (event[1] or "").lower()
    if kind not in ("public", "private"):
        raise MalformedPayload(f"note_type must be public or private, got {event[1]!r}")
    return "note_added", {"public": kind == "public"}


# Keyed by the name before the first colon of triggered_event. Freshdesk names
# property changes after the ticket attribute (status, priority, responder_id,
# group_id) and simple events after the action (ticket_action, note_type).
# https://support.freshdesk.com/support/solutions/articles/132589-using-webhooks-in-automation-rules
EVENT_HANDLERS: dict[str, Handler] = {
    "ticket_action": _ticket_action,  # created (also deleted / spam: the worker finds them gone)
    "status": _simple("status_changed"),
    "priority": _simple("priority_changed"),
    "group_id": _simple("group_assignment_changed"),
    "responder_id": _simple("agent_assignment_changed"),
    "note_type": _note,
}

IGNORED_EVENTS: frozenset[str] = frozenset(
    {
        "ticket_type",  # the engine does not read the ticket type
        "due_by",  # Freshdesk's own SLA due date, not ours
        "time_sheet_action",
        "customer_feedback",
        "mail_del_failed_requester",
        "mail_del_failed_others",
    }
)


def vendor_type(triggered_event: TriggeredEvent) -> str:
    """The dispatch key: the name of the event (`status`, `ticket_action`, ...)."""
    return triggered_event[0]


def normalize(body: Any, raw_body: bytes, headers: Mapping[str, str], now: datetime) -> Outcome:
    """Turn an authenticated Freshdesk webhook body into an inbox event.

    Args:
        body: the parsed JSON, `{"freshdesk_webhook": {...}}` (or the inner object alone).
        raw_body: the bytes as received (unused: the dedupe key is built from fields).
        headers: the request headers (unused; Freshdesk sends no delivery id).
        now: the receiving instant, used in the dedupe key only when updated_at is missing.
    Returns:
        NormalizedEvent to queue, IgnoredEvent (known, not queued) or UnknownEvent.
    Raises:
        MalformedPayload: naming the missing or invalid field.
    """
    if not isinstance(body, Mapping):
        raise MalformedPayload("the body must be a JSON object")
    data = body.get(WRAPPER, body)
    if not isinstance(data, Mapping):
        raise MalformedPayload(f"{WRAPPER} must be a JSON object")
    raw_event = data.get("triggered_event")
    if not isinstance(raw_event, str) or not raw_event.strip():
        raise MalformedPayload(
            "triggered_event is missing: put \"triggered_event\": \"{{triggered_event}}\" in the "
            "rule's webhook body (docs/webhooks.md)"
        )
    event = parse_triggered_event(raw_event)
    key = vendor_type(event)
    if key in IGNORED_EVENTS:
        return IgnoredEvent(key)
    handler = EVENT_HANDLERS.get(key)
    if handler is None:
        return UnknownEvent(key)

    ticket = str(data.get("ticket_id", "")).strip()
    if not _TICKET_ID.match(ticket):
        raise MalformedPayload(
            f"ticket_id must be a Freshdesk ticket id (digits), got {data.get('ticket_id')!r}"
        )
    event_type, changes = handler(event)
    for name, convert in (("ticket_status", status_name), ("ticket_priority", enum_name)):
        if isinstance(data.get(name), str) and data[name].strip():
            changes[name.removeprefix("ticket_")] = convert(data[name])

    updated_at = data.get("ticket_updated_at")
    stamp = str(updated_at).strip() if updated_at is not None else ""
    if not stamp or "{{" in stamp:
        # Without the update instant two identical changes (open -> pending twice)
        # would share a key and the second would be dropped. Losing an event is
        # worse than processing a retry twice, so fall back to the arrival second.
        log.warning(
            "Freshdesk webhook for ticket %s has no rendered ticket_updated_at (got %r); "
            "retries of this delivery will not be deduplicated: add "
            "\"ticket_updated_at\": \"{{ticket.modified_on}}\" to the rule's body",
            ticket, updated_at,
        )
        stamp = "received:" + now.strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hashlib.sha256("\n".join((ticket, raw_event.strip(), stamp)).encode()).hexdigest()
    return NormalizedEvent(
        dedupe_key="sha256:" + digest,
        ticket_id=ticket,
        event_type=event_type,
        vendor_type=key,
        occurred_at=rendered_instant(updated_at),
        changes=changes,
    )
