"""Zendesk webhook bodies (event subscriptions and Deskpilot trigger bodies) to inbox events."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.signature import parse_timestamp

SOURCE = "zendesk"
INVOCATION_HEADER = "X-Zendesk-Webhook-Invocation-Id"
EVENT_PREFIX = "zen:event-type:ticket."
TRIGGER_BODY_VERSION = 1


class MalformedPayload(ValueError):
    """The body is not what the vendor (or docs/webhooks.md) says it should be; answer 400."""


@dataclass(frozen=True, slots=True)
class NormalizedEvent:
    """One vendor delivery reduced to what the inbox needs.

    `changes` holds vendor-neutral hints (lower-case statuses and priorities,
    ids as strings); the worker re-reads the ticket, so they are never the
    source of truth.
    """

    dedupe_key: str
    ticket_id: str
    event_type: str
    vendor_type: str = ""
    occurred_at: datetime | None = None
    changes: dict[str, Any] = field(default_factory=dict)

    def payload(self, body: Any) -> dict[str, Any]:
        """The JSON stored with the inbox row: the hints plus the body as received."""
        return {
            "event_type": self.event_type,
            "vendor_type": self.vendor_type,
            "occurred_at": None if self.occurred_at is None else self.occurred_at.isoformat(),
            "changes": self.changes,
            "body": body,
        }


@dataclass(frozen=True, slots=True)
class IgnoredEvent:
    """A known event type we acknowledge but do not queue (log at debug)."""

    vendor_type: str


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event type we do not know: acknowledge so the vendor keeps the hook, and warn."""

    vendor_type: str


Outcome = NormalizedEvent | IgnoredEvent | UnknownEvent
Handler = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]


# -- value normalisation ---------------------------------------------------------------

# Event payloads spell enums in upper case ("OPEN", "HOLD"), trigger placeholders
# in title case ("Open"); the engine's vocabulary is lower case and says on_hold.
# https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/
_STATUS_ALIASES = {"hold": "on_hold", "on-hold": "on_hold", "on hold": "on_hold"}


def status_name(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    return _STATUS_ALIASES.get(text, text)


def enum_name(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value).strip().lower()


def id_string(value: Any) -> str | None:
    """Zendesk sends ids as strings in events and as numbers elsewhere; keep strings."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    return str(value).strip()


_TICKET_ID = re.compile(r"^[1-9][0-9]{0,19}$")


def ticket_id(value: Any, where: str) -> str:
    text = id_string(value)
    if text is None or not _TICKET_ID.match(text):
        raise MalformedPayload(f"{where} must be a Zendesk ticket id (digits), got {value!r}")
    return text


def instant(value: Any) -> datetime | None:
    """An ISO-8601 instant, or None when absent or unreadable (it is only a hint)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


# -- handlers: one per event type we act on ---------------------------------------------


def _object(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = body.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedPayload(f"{key} must be a JSON object, got {type(value).__name__}")
    return value


def _change(name: str, convert: Callable[[Any], Any]) -> Handler:
    def handler(event: Mapping[str, Any], detail: Mapping[str, Any]) -> dict[str, Any]:
        return {name: convert(event.get("current")), f"previous_{name}": convert(event.get("previous"))}

    return handler


def _created(event: Mapping[str, Any], detail: Mapping[str, Any]) -> dict[str, Any]:
    return {"status": status_name(detail.get("status")), "priority": enum_name(detail.get("priority"))}


def _comment(event: Mapping[str, Any], detail: Mapping[str, Any]) -> dict[str, Any]:
    comment = _object(event, "comment")
    author = _object(comment, "author")
    changes: dict[str, Any] = {"comment_id": id_string(comment.get("id"))}
    if isinstance(comment.get("is_public"), bool):
        changes["public"] = comment["is_public"]
    if isinstance(author.get("is_staff"), bool):
        changes["author"] = "agent" if author["is_staff"] else "customer"
    return changes


def _comment_made_private(event: Mapping[str, Any], detail: Mapping[str, Any]) -> dict[str, Any]:
    return {"comment_id": id_string(_object(event, "comment").get("id")), "public": False}


def _custom_field(event: Mapping[str, Any], detail: Mapping[str, Any]) -> dict[str, Any]:
    # Only the field id: values can be long free text and the worker re-reads them.
    return {"field_id": id_string(_object(event, "custom_field").get("id"))}


def _tags(event: Mapping[str, Any], detail: Mapping[str, Any]) -> dict[str, Any]:
    def tag_list(key: str) -> list[str]:
        value = event.get(key) or []
        if not isinstance(value, list):
            raise MalformedPayload(f"event.{key} must be a list of tags")
        return [str(tag) for tag in value]

    return {"tags_added": tag_list("tags_added"), "tags_removed": tag_list("tags_removed")}


def _merged(event: Mapping[str, Any], detail: Mapping[str, Any]) -> dict[str, Any]:
    return {"target_ticket_id": id_string(event.get("target_ticket_id"))}


def _nothing(event: Mapping[str, Any], detail: Mapping[str, Any]) -> dict[str, Any]:
    return {}


# The ticket event types Zendesk documents, split into those that can change
# an SLA decision (queued for the worker) and those that cannot (acknowledged).
# https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/
EVENT_HANDLERS: dict[str, Handler] = {
    f"{EVENT_PREFIX}created": _created,
    f"{EVENT_PREFIX}status_changed": _change("status", status_name),
    f"{EVENT_PREFIX}custom_status_changed": _change("custom_status_id", id_string),
    f"{EVENT_PREFIX}priority_changed": _change("priority", enum_name),
    f"{EVENT_PREFIX}comment_added": _comment,
    # A public agent reply made private no longer counts as a response.
    f"{EVENT_PREFIX}comment_made_private": _comment_made_private,
    f"{EVENT_PREFIX}custom_field_changed": _custom_field,
    f"{EVENT_PREFIX}tags_changed": _tags,
    f"{EVENT_PREFIX}group_assignment_changed": _change("group_id", id_string),
    f"{EVENT_PREFIX}agent_assignment_changed": _change("assignee_id", id_string),
    f"{EVENT_PREFIX}subject_changed": _nothing,
    f"{EVENT_PREFIX}description_changed": _nothing,
    # The requester decides which comments are the customer's.
    f"{EVENT_PREFIX}requester_changed": _change("requester_id", id_string),
    f"{EVENT_PREFIX}merged": _merged,
    # Deleted, spam and restored tickets: the worker's next read finds them gone
    # (or back) and drops (or resumes) their scheduled checks.
    f"{EVENT_PREFIX}soft_deleted": _nothing,
    f"{EVENT_PREFIX}permanently_deleted": _nothing,
    f"{EVENT_PREFIX}marked_as_spam": _nothing,
    f"{EVENT_PREFIX}undeleted": _nothing,
    # Deskpilot trigger/automation bodies (docs/webhooks.md): "event" is the type.
    "trigger": _nothing,
    "automation": _nothing,
}

IGNORED_EVENTS: frozenset[str] = frozenset(
    EVENT_PREFIX + name
    for name in (
        "attachment_linked_to_comment",
        "attachment_redacted_from_comment",
        "brand_changed",
        "comment_redacted",
        "csat_received",
        "csat_requested",
        "email_ccs_changed",
        "external_id_changed",
        "followers_changed",
        "form_changed",  # field values that change come as custom_field_changed
        "next_sla_breach_changed",  # Zendesk's own SLAs, not ours
        "ola_policy_changed",
        "organization_changed",
        "problem_link_changed",
        "schedule_changed",
        "sla_policy_changed",
        "submitter_changed",
        "task_due_at_changed",
        "type_changed",
    )
)


# -- entry point ---------------------------------------------------------------------------


def normalize(body: Any, raw_body: bytes, headers: Mapping[str, str]) -> Outcome:
    """Turn a verified Zendesk webhook body into an inbox event.

    Args:
        body: the parsed JSON body.
        raw_body: the bytes as received (hashed when a trigger body has no invocation id).
        headers: the request headers (case-insensitive mapping, as Flask gives).
    Returns:
        NormalizedEvent to queue, IgnoredEvent (known, not queued) or UnknownEvent.
    Raises:
        MalformedPayload: naming the missing or invalid field.
    """
    if not isinstance(body, Mapping):
        raise MalformedPayload("the body must be a JSON object")
    if "deskpilot" in body:
        return _trigger_body(body, raw_body, headers)
    vendor_type = body.get("type")
    if not isinstance(vendor_type, str) or not vendor_type:
        raise MalformedPayload(
            "the body has neither 'type' (an event subscription) nor 'deskpilot' "
            "(a trigger body as in docs/webhooks.md)"
        )
    if vendor_type in IGNORED_EVENTS:
        return IgnoredEvent(vendor_type)
    handler = EVENT_HANDLERS.get(vendor_type)
    if handler is None or not vendor_type.startswith(EVENT_PREFIX):
        return UnknownEvent(vendor_type)

    event_id = id_string(body.get("id"))
    if event_id is None:
        raise MalformedPayload("id (the event id) is missing")
    detail = _object(body, "detail")
    if detail.get("id") not in (None, ""):
        tid = ticket_id(detail.get("id"), "detail.id")
    else:
        # `subject` names the ticket too: "zen:ticket:123".
        subject = body.get("subject")
        if not isinstance(subject, str) or not subject.startswith("zen:ticket:"):
            raise MalformedPayload("detail.id (the ticket id) is missing")
        tid = ticket_id(subject.removeprefix("zen:ticket:"), "subject")
    return NormalizedEvent(
        dedupe_key=event_id,
        ticket_id=tid,
        event_type=vendor_type.removeprefix(EVENT_PREFIX),
        vendor_type=vendor_type,
        occurred_at=instant(body.get("time")),
        changes=handler(_object(body, "event"), detail),
    )


def _trigger_body(body: Mapping[str, Any], raw_body: bytes, headers: Mapping[str, str]) -> Outcome:
    if body.get("deskpilot") != TRIGGER_BODY_VERSION:
        raise MalformedPayload(
            f"deskpilot must be {TRIGGER_BODY_VERSION} (the trigger body version in "
            f"docs/webhooks.md), got {body.get('deskpilot')!r}"
        )
    kind = body.get("event", "trigger")
    if not isinstance(kind, str) or not kind:
        raise MalformedPayload(f"event must be 'trigger' or 'automation', got {kind!r}")
    if kind not in EVENT_HANDLERS or kind.startswith(EVENT_PREFIX):
        return UnknownEvent(kind)
    tid = ticket_id(body.get("ticket_id"), "ticket_id")
    # Zendesk sends the same invocation id on every retry of one trigger firing.
    # Without it (a proxy dropped it, or a hand-made request) the body hash
    # stands in: the body carries updated_at, so a new change is a new body.
    invocation = (headers.get(INVOCATION_HEADER) or "").strip()
    dedupe_key = invocation or "sha256:" + hashlib.sha256(raw_body).hexdigest()
    changes = {
        key: convert(body[key])
        for key, convert in (("status", status_name), ("priority", enum_name))
        if key in body
    }
    return NormalizedEvent(
        dedupe_key=dedupe_key,
        ticket_id=tid,
        event_type=kind,
        vendor_type=kind,
        occurred_at=instant(body.get("updated_at")),
        changes=changes,
    )
