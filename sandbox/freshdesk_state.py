"""The Freshdesk sandbox's in-memory state: tickets, stats, conversations, jobs and status changes."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

STATUS_LABELS = {2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"}
DONE = (4, 5)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def text_of(body: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<br\s*/?>", "\n", body)))


class SandboxState:
    """Tickets, conversations, jobs and the request log, behind one lock."""

    def __init__(self, api_key: str, clock: Callable[[], datetime], rate_limit: int,
                 custom_statuses: Mapping[int, str]) -> None:
        self.api_key, self.clock, self.rate_limit = api_key, clock, rate_limit
        self.status_labels = {**STATUS_LABELS, **custom_statuses}
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.tickets: dict[int, dict[str, Any]] = {}
            self.stats: dict[int, dict[str, str | None]] = {}
            self.conversations: dict[int, list[dict[str, Any]]] = {}
            self.jobs: dict[str, dict[str, Any]] = {}
            self.requests: list[dict[str, Any]] = []
            self.failures: list[tuple[int, float | None]] = []
            self.window: tuple[datetime, int] | None = None
            self.next_ticket, self.next_conversation = 1, 1

    def now(self) -> str:
        return iso(self.clock())

    def take_call(self) -> tuple[int, int]:
        """Count one API call in the current minute: (calls used, seconds to the next minute)."""
        now = self.clock().astimezone(UTC)
        minute = now.replace(second=0, microsecond=0)
        used = self.window[1] + 1 if self.window and self.window[0] == minute else 1
        self.window = (minute, used)
        return used, 60 - now.second

    def ticket_json(self, tid: int, include_stats: bool = False) -> dict[str, Any]:
        data = dict(self.tickets[tid])
        if include_stats:
            data["stats"] = dict(self.stats[tid])
        return data


def apply_update(state: SandboxState, tid: int, data: Mapping[str, Any]) -> str:
    """Apply checked properties; returns the webhook's triggered_event."""
    ticket, stats, now = state.tickets[tid], state.stats[tid], state.now()
    # {{triggered_event}} names the property that changed, with ids: {status:{from:2,to:3}}.
    # Changes Freshdesk has no such event for (tags, fields) read {ticket_action:updated}.
    event = "{ticket_action:updated}"
    for key in ("group_id", "priority", "status"):  # the last change listed wins
        if key in data and data[key] != ticket[key]:
            before, after = ("" if v is None else v for v in (ticket[key], data[key]))
            event = f"{{{key}:{{from:{before},to:{after}}}}}"
    if "status" in data:
        set_status(ticket, stats, data["status"], now)
    for key in ("subject", "priority", "group_id", "responder_id", "type"):
        if key in data:
            ticket[key] = data[key]
    if "description" in data:
        ticket["description"] = data["description"]
        ticket["description_text"] = text_of(data["description"])
    if "tags" in data:
        ticket["tags"] = list(dict.fromkeys(data["tags"]))  # a PUT replaces the tags
    if "custom_fields" in data:
        ticket["custom_fields"] = {**ticket["custom_fields"], **data["custom_fields"]}
    ticket["updated_at"] = now
    return event


def set_status(ticket: dict[str, Any], stats: dict[str, Any], status: int, now: str) -> None:
    old = ticket["status"]
    if status == old:
        return
    ticket["status"] = status
    stats["status_updated_at"] = now
    if status == 3:
        stats["pending_since"] = now
    if status == 4 or (status == 5 and old != 4):
        stats["resolved_at"] = now
    if status == 5:
        stats["closed_at"] = now
    if old in DONE and status not in DONE:
        stats["reopened_at"] = now
