"""Freshdesk ticket histories: the ticket list by `updated_since` (with stats), and conversations.

Freshdesk has no bulk event export: List All Tickets with `updated_since`
(100 a page, `include=stats` for the status instants) finds the tickets, and
each ticket's conversations (100 a page) give its replies, notes and customer
messages with their authors. https://developers.freshdesk.com/api/#list_all_tickets,
https://developers.freshdesk.com/api/#list_all_conversations_of_a_ticket

API v2 keeps no status history, only the stats' last transitions (see
connectors/freshdesk/tickets.py), and no priority, group or tag history: a
ticket's current values stand for its whole life. Documents follow
jobs/history.py's format with Freshdesk's own names (cf_ fields, group ids).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.freshdesk.client import FreshdeskConnector
from connectors.freshdesk.tickets import STATUS_NAMES, ticket_from_freshdesk
from connectors.history import HistoryReader, NoPace
from connectors.history import epoch as _epoch

SOURCE = "freshdesk"


class FreshdeskHistoryReader(HistoryReader):
    """Reads ticket histories through Freshdesk's API v2, over the Freshdesk connector.

    Args:
        domain, api_key: as the connector (FRESHDESK_DOMAIN, FRESHDESK_API_KEY).
        api_url: another root, e.g. the sandbox's http://127.0.0.1:9200.
        pace: paces calls (`before(kind)`, `after(kind, headers)`); jobs.history.ApiShare.
        status_map: custom status ids -> engine statuses (the rules' `helpdesk: freshdesk: statuses`).
        timeout, max_attempts, sleep: the HTTP layer's (connectors/http.py).
    """

    source = SOURCE

    def __init__(self, domain: str, api_key: str, *, api_url: str | None = None, pace: Any = None,
                 status_map: Mapping[int, str] | None = None, timeout: float = 30, max_attempts: int = 5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        pace = pace or NoPace()
        connector = FreshdeskConnector(domain, api_key, api_url=api_url, status_map=status_map,
                                       timeout=timeout, max_attempts=max_attempts, sleep=sleep, pace=pace)
        super().__init__(connector, api_url or f"https://{domain}", pace)

    @classmethod
    def from_settings(cls, settings: Any, **options: Any) -> FreshdeskHistoryReader:
        return cls(settings.freshdesk_domain or "", settings.freshdesk_api_key or "",
                   api_url=settings.freshdesk_api_url, **options)

    def ticket_url(self, ticket_id: str) -> str:
        """The ticket in Freshdesk's agent interface."""
        return f"{self.root}/a/tickets/{ticket_id}"

    def read(self, start: int, known: Callable[[str], bool] = lambda tid: False,
             progress: Callable[[str], None] = lambda text: None) -> tuple[list[dict[str, Any]], int]:
        """Every ticket updated at or after `start`, each with its whole timeline."""
        # A conversation is an agent's when its user is one of the account's agents; the
        # bot's own are the signed ones (connectors/base.py), whoever wrote them.
        agents = self.connector.agent_ids(refresh=True)
        tickets: dict[str, dict[str, Any]] = {}
        until = start
        for item in self.connector.updated_tickets(datetime.fromtimestamp(start, UTC), include="stats"):
            tickets[str(item["id"])] = item
            until = max(until, _epoch(item["updated_at"]))
            if len(tickets) % 100 == 0:
                progress(f"freshdesk: {len(tickets)} tickets listed")
        progress(f"freshdesk: {len(tickets)} tickets listed")
        docs = []
        for count, (tid, data) in enumerate(tickets.items(), start=1):
            conversations = [item for batch in self.connector.pages(f"/tickets/{tid}/conversations", {})
                             for item in batch]
            docs.append(self._document(data, conversations, agents))
            progress(f"freshdesk: conversations of {count}/{len(tickets)} tickets")
        return docs, until

    def _document(self, data: Mapping[str, Any], conversations: list[dict[str, Any]],
                  agents: frozenset[int]) -> dict[str, Any]:
        # A custom status's label (the status field's choices, read once) rides on its status event.
        labels = self.connector.status_labels() if data.get("status") not in STATUS_NAMES else {}
        ticket = ticket_from_freshdesk(data, conversations, field_names={}, group_names={},
                                       status_map=self.connector.status_map, agent_ids=agents,
                                       status_labels=labels)
        events = []
        for event in ticket.events:
            if event.type == "comment":
                events.append({"at": event.at, "type": "comment", "author": event.author,
                               "public": event.public, "bot": event.bot})
            else:
                events.append({"at": event.at, "type": "status", "status": event.status, "bot": False,
                               **({"custom_status": event.custom_status} if event.custom_status else {})})
        # The stats keep the start of the latest pending run after the ticket left it;
        # the run ends at the next transition they show.
        stats = data.get("stats") or {}
        pending = stats.get("pending_since")
        if pending and ticket.status != "pending" and not any(
                e["type"] == "status" and e["status"] == "pending" for e in events):
            moment = _epoch(pending)
            later = [e["at"] for e in events if e["type"] == "status" and e["at"] > moment]
            if later:
                events.append({"at": moment, "type": "status", "status": "pending", "bot": False})
                events.sort(key=lambda e: (e["at"], e["type"] != "comment"))
        group = data.get("group_id")
        return {
            "id": ticket.id, "url": self.ticket_url(ticket.id), "created_at": ticket.created_at,
            "updated_at": _epoch(data.get("updated_at") or data["created_at"]), "subject": ticket.subject,
            "description": ticket.description,
            # No history of these in API v2: the current values stand for the ticket's life.
            "initial": {"status": "open", "priority": ticket.priority,
                        "group": None if group is None else str(group), "tags": sorted(ticket.tags),
                        "fields": {k: v for k, v in ticket.fields.items() if v is not None}},
            "events": events, "partial_from": None, "complete": True,
        }
