"""The Zendesk sandbox's in-memory state: tickets, audits, users and jobs, and their validation."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

# The same value config.py falls back to when no Zendesk credentials are set.
SANDBOX_EMAIL = "agent@sandbox.invalid"
AGENT_ID = 1001  # the API user: Deskpilot itself
HUMAN_AGENT_ID = 1002  # the agent who comments through /_sandbox/tickets/<id>/comments
CUSTOMER_ID = 2001  # the default requester
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
# Custom ticket statuses (https://developer.zendesk.com/api-reference/ticketing/tickets/custom_ticket_statuses/):
# each category's default, plus one more "hold" status so two of one category exist.
# A closed ticket keeps its solved-category custom status.
CUSTOM_STATUSES = (
    {"id": 101, "status_category": "new", "agent_label": "New", "end_user_label": "Open", "default": True},
    {"id": 102, "status_category": "open", "agent_label": "Open", "end_user_label": "Open", "default": True},
    {"id": 103, "status_category": "pending", "agent_label": "Pending",
     "end_user_label": "Awaiting your reply", "default": True},
    {"id": 104, "status_category": "hold", "agent_label": "On-hold", "end_user_label": "Open",
     "default": True},
    {"id": 105, "status_category": "solved", "agent_label": "Solved", "end_user_label": "Solved",
     "default": True},
    {"id": 106, "status_category": "hold", "agent_label": "Waiting on vendor", "end_user_label": "Open",
     "default": False},
)
_DEFAULT_CUSTOM = {item["status_category"]: item["id"] for item in CUSTOM_STATUSES if item["default"]}
_DEFAULT_CUSTOM["closed"] = _DEFAULT_CUSTOM["solved"]
_CUSTOM_CATEGORY = {item["id"]: item["status_category"] for item in CUSTOM_STATUSES}
PRIORITIES = ("low", "normal", "high", "urgent")
# https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#protecting-against-ticket-update-collisions
CONFLICT_BODY = {
    "error": "UpdateConflict",
    "description": "Safe Update prevented the update due to outdated ticket data. "
                   "Please fetch the latest ticket data and try again.",
}


class ApiError(Exception):
    """An error answer in Zendesk's shape: {"error", "description", "details"?}."""

    def __init__(self, status: int, error: str, description: str, details: Any = None) -> None:
        super().__init__(description)
        self.status, self.body = status, {"error": error, "description": description}
        if details is not None:
            self.body["details"] = details


def _invalid(field: str, description: str) -> ApiError:
    return ApiError(422, "RecordInvalid", "Record validation errors",
                    {field: [{"description": description, "error": "InvalidValue"}]})


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch_of(value: Any) -> int | None:
    try:
        return int(datetime.fromisoformat(str(value)).timestamp())
    except ValueError:
        return None


class SandboxState:
    """Tickets, audits, users and jobs in memory, guarded by `lock`."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.tickets: dict[int, dict[str, Any]] = {}
            self.updated: dict[int, int] = {}  # ticket id -> updated_at epoch (export order)
            self.audits: dict[int, list[dict[str, Any]]] = {}
            self.users: dict[int, dict[str, Any]] = {
                AGENT_ID: _user(AGENT_ID, "Sandbox Agent", SANDBOX_EMAIL, "admin"),
                HUMAN_AGENT_ID: _user(HUMAN_AGENT_ID, "Alex Agent", "alex@sandbox.invalid", "agent"),
                CUSTOMER_ID: _user(CUSTOMER_ID, "Casey Customer", "casey@example.org", "end-user"),
            }
            self.fields: dict[int, dict[str, Any]] = {field["id"]: field for field in FIELDS}
            self.jobs: dict[str, dict[str, Any]] = {}
            self.requests: list[dict[str, Any]] = []
            self.failures: list[tuple[int, float | None]] = []
            self._ids: Iterator[int] = itertools.count(1)
            self._other_ids: Iterator[int] = itertools.count(10_001)

    def now(self) -> int:
        return int(self.clock().timestamp())

    def ticket(self, tid: int) -> dict[str, Any]:
        if tid not in self.tickets or self.tickets[tid]["status"] == "deleted":
            raise ApiError(404, "RecordNotFound", "Not found")
        return self.tickets[tid]

    def delete(self, tid: int) -> None:
        """DELETE tickets/{id}.json: gone for reads and writes; the incremental export lists it
        with status "deleted" (https://developer.zendesk.com/api-reference/ticketing/
        ticket-management/incremental_exports/#incremental-ticket-export-cursor-based)."""
        ticket = self.ticket(tid)
        at = max(self.now(), self.updated[tid] + 1)
        ticket.update(status="deleted", updated_at=iso(at))
        self.updated[tid] = at

    def requester(self, data: Mapping[str, Any]) -> int:
        if data.get("requester_id") is not None:
            return int(data["requester_id"])
        person = data.get("requester")
        if not isinstance(person, dict) or not person.get("email"):
            return CUSTOMER_ID
        for user in self.users.values():
            if user["email"] == person["email"]:
                return user["id"]
        uid = next(self._other_ids)
        self.users[uid] = _user(uid, person.get("name") or person["email"], person["email"], "end-user")
        return uid

    def create(self, data: Mapping[str, Any], base_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """POST tickets.json: the new ticket and its Create audit."""
        comment = data.get("comment") or {}
        if not comment.get("body"):
            raise _invalid("description", "Description: cannot be blank")
        status, priority = data.get("status") or "new", data.get("priority")
        _check(status, priority)
        tid, at = next(self._ids), self.now()
        requester = self.requester(data)
        author = int(comment.get("author_id") or AGENT_ID)  # Zendesk: the API user by default
        ticket = {
            "url": f"{base_url}api/v2/tickets/{tid}.json", "id": tid, "external_id": None,
            "via": {"channel": "api"}, "created_at": iso(at), "updated_at": iso(at),
            "type": data.get("type"), "subject": data.get("subject") or "",
            "raw_subject": data.get("subject") or "", "description": comment["body"],
            "priority": priority, "status": status, "custom_status_id": _DEFAULT_CUSTOM[status],
            "recipient": None, "requester_id": requester,
            "submitter_id": author, "assignee_id": data.get("assignee_id"), "organization_id": None,
            "group_id": data.get("group_id"), "collaborator_ids": [], "follower_ids": [],
            "email_cc_ids": [], "problem_id": None, "has_incidents": False, "is_public": True,
            "due_at": None, "tags": list(dict.fromkeys(data.get("tags") or [])),
            "custom_fields": [{"id": int(f["id"]), "value": f.get("value")}
                              for f in data.get("custom_fields") or []],
            "satisfaction_rating": None, "sharing_agreement_ids": [], "followup_ids": [],
            "ticket_form_id": None, "brand_id": None, "allow_channelback": False,
            "allow_attachments": True, "from_messaging_channel": False,
        }
        events = [self._comment(author, comment["body"], bool(comment.get("public", True)))]
        for name in ("subject", "status", "custom_status_id", "priority", "group_id", "tags", "requester_id"):
            if ticket[name] not in (None, "", []):
                events.append({"id": next(self._other_ids), "type": "Create", "field_name": name,
                               "value": ticket[name]})
        events += [{"id": next(self._other_ids), "type": "Create", "field_name": str(f["id"]),
                    "value": f["value"]} for f in ticket["custom_fields"]]
        self.tickets[tid], self.updated[tid], self.audits[tid] = ticket, at, []
        return ticket, self._audit(tid, at, author, events, "api")

    def update(self, tid: int, data: Mapping[str, Any], *, author: int = AGENT_ID, safe: bool = True,
               channel: str = "api") -> tuple[dict[str, Any], dict[str, Any] | None, list[tuple]]:
        """PUT tickets/{id}.json: (ticket, audit or None if nothing changed, changes)."""
        ticket = self.ticket(tid)
        if safe and str(data.get("safe_update")).lower() == "true":
            if _epoch_of(data.get("updated_stamp")) != self.updated[tid]:
                raise ApiError(409, **CONFLICT_BODY)
        if ticket["status"] == "closed":
            raise _invalid("status", "Status: closed prevents ticket update")
        if "custom_status_id" in data:  # a custom status sets the status of its category
            custom = _int(data["custom_status_id"])
            if custom not in _CUSTOM_CATEGORY:
                raise _invalid("custom_status_id", f"Custom status: {data['custom_status_id']!r} is invalid")
            data = {**data, "status": _CUSTOM_CATEGORY[custom]}
        elif "status" in data and data["status"] != ticket["status"] and data["status"] in _DEFAULT_CUSTOM:
            data = {**data, "custom_status_id": _DEFAULT_CUSTOM[data["status"]]}
        _check(data.get("status") or ticket["status"], data.get("priority", ticket["priority"]))
        wanted: dict[str, Any] = {k: data[k] for k in ("status", "custom_status_id", "priority", "group_id",
                                                       "subject", "assignee_id") if k in data}
        tags = list(data["tags"]) if "tags" in data else list(ticket["tags"])
        tags += [t for t in data.get("additional_tags") or [] if t not in tags]
        wanted["tags"] = [t for t in tags if t not in set(data.get("remove_tags") or [])]
        changes = [(k, ticket[k], v) for k, v in wanted.items() if ticket[k] != v]
        fields = {f["id"]: f for f in ticket["custom_fields"]}
        for item in data.get("custom_fields") or []:
            old = fields.get(int(item["id"]), {}).get("value")
            if old != item.get("value"):
                changes.append((str(int(item["id"])), old, item.get("value")))
        comment = data.get("comment") or {}
        if not changes and not comment.get("body"):
            return ticket, None, []
        at = max(self.now(), self.updated[tid] + 1)  # stamps must move even with a frozen clock
        events = []
        for name, old, new in changes:
            if name.isdigit():
                fields.setdefault(int(name), {"id": int(name), "value": None})["value"] = new
            else:
                ticket[name] = new
            events.append({"id": next(self._other_ids), "type": "Change", "field_name": name,
                           "value": new, "previous_value": old})
        ticket["custom_fields"] = list(fields.values())
        if comment.get("body"):
            who = int(comment.get("author_id") or author)
            events.insert(0, self._comment(who, comment["body"], bool(comment.get("public", True))))
            changes.append(("comment", None, events[0]))
        ticket["updated_at"], self.updated[tid] = iso(at), at
        return ticket, self._audit(tid, at, author, events, channel), changes

    def _comment(self, author: int, body: str, public: bool) -> dict[str, Any]:
        return {"id": next(self._other_ids), "type": "Comment", "author_id": author, "body": body,
                "html_body": f"<div class=\"zd-comment\"><p>{body}</p></div>", "plain_body": body,
                "public": public, "attachments": []}

    def _audit(self, tid: int, at: int, author: int, events: list[dict[str, Any]],
               channel: str) -> dict[str, Any]:
        audit = {"id": next(self._other_ids), "ticket_id": tid, "created_at": iso(at),
                 "author_id": author, "metadata": {"system": {}, "custom": {}},
                 "via": {"channel": channel, "source": {"from": {}, "to": {}, "rel": None}},
                 "events": events}
        for event in events:
            if event["type"] == "Comment":
                event["audit_id"] = audit["id"]
        self.audits[tid].append(audit)
        return audit


def _field(fid: int, title: str, kind: str, options: Mapping[str, str] | None = None) -> dict[str, Any]:
    field: dict[str, Any] = {
        "url": f"https://sandbox.zendesk.com/api/v2/ticket_fields/{fid}.json", "id": fid, "type": kind,
        "title": title, "raw_title": title, "description": "", "raw_description": "", "position": fid,
        "active": True, "required": False, "collapsed_for_agents": False, "regexp_for_validation": None,
        "title_in_portal": title, "raw_title_in_portal": title, "visible_in_portal": False,
        "editable_in_portal": False, "required_in_portal": False, "tag": None,
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z", "removable": True,
        "key": None, "agent_description": None,
    }
    if options is not None:
        field["custom_field_options"] = [
            {"id": fid * 100 + n, "name": name, "raw_name": name, "value": tag, "default": False}
            for n, (tag, name) in enumerate(options.items())]
    return field


# The custom fields of rules/deskpilot.yaml's `helpdesk: zendesk:` section. The plan
# dropdown's options are stored by their tag, as Zendesk does; its titles differ.
FIELDS = (
    _field(9001, "Plan", "tagger", {"basic": "Basic plan", "professional": "Professional plan",
                                    "advanced": "Advanced plan"}),
    _field(9002, "First response due", "text"),
    _field(9003, "First response state", "text"),
)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _user(uid: int, name: str, email: str, role: str) -> dict[str, Any]:
    return {"id": uid, "name": name, "email": email, "role": role, "active": True,
            "time_zone": "UTC", "locale": "en-US"}


def _check(status: Any, priority: Any) -> None:
    if status not in STATUSES:
        raise _invalid("status", f"Status: {status!r} is not one of {', '.join(STATUSES)}")
    if priority is not None and priority not in PRIORITIES:
        raise _invalid("priority", f"Priority: {priority!r} is not one of {', '.join(PRIORITIES)}")
