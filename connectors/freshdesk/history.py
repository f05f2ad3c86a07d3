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

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from connectors.base import ConnectorError, RateLimitedError, TransientError
from connectors.freshdesk.tickets import ticket_from_freshdesk

log = logging.getLogger(__name__)

SOURCE = "freshdesk"
PER_PAGE = 100
MAX_LIST_PAGES = 300  # the list serves pages 1..300; past that, restart from the last updated_at


class _NoPace:
    calls = 0

    def before(self, kind: str) -> None:
        self.calls += 1

    def after(self, kind: str, headers: Mapping[str, str]) -> None:
        pass


def _epoch(value: Any) -> int:
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())


def _stamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FreshdeskHistoryReader:
    """Reads ticket histories through Freshdesk's API v2.

    Args:
        domain, api_key: as the connector (FRESHDESK_DOMAIN, FRESHDESK_API_KEY).
        api_url: another root, e.g. the sandbox's http://127.0.0.1:9200.
        pace: paces calls (`before(kind)`, `after(kind, headers)`); jobs.history.ApiShare.
        status_map: custom status ids -> engine statuses (the rules' `helpdesk: freshdesk: statuses`).
    """

    source = SOURCE

    def __init__(self, domain: str, api_key: str, *, api_url: str | None = None, pace: Any = None,
                 status_map: Mapping[int, str] | None = None, timeout: float = 30, max_attempts: int = 5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not api_key:
            raise ConnectorError("Freshdesk API key is empty: set FRESHDESK_API_KEY")
        root = (api_url or f"https://{domain}").rstrip("/")
        parts = urlsplit(root)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConnectorError(f"Freshdesk root must look like https://host[:port], got {root!r}")
        self.root = root
        self.account = root
        self.session = requests.Session()
        self.session.auth = (api_key, "X")
        self.session.headers.update({"Accept": "application/json", "User-Agent": "deskpilot-history"})
        self.pace = pace or _NoPace()
        self.status_map = {int(k): v for k, v in (status_map or {}).items()}
        self.timeout, self.max_attempts, self.sleep = timeout, max_attempts, sleep

    @classmethod
    def from_settings(cls, settings: Any, **options: Any) -> FreshdeskHistoryReader:
        return cls(settings.freshdesk_domain, settings.freshdesk_api_key,
                   api_url=settings.freshdesk_api_url, **options)

    def ticket_url(self, ticket_id: str) -> str:
        """The ticket in Freshdesk's agent interface."""
        return f"{self.root}/a/tickets/{ticket_id}"

    def close(self) -> None:
        self.session.close()

    def read(self, start: int, known: Callable[[str], bool] = lambda tid: False,
             progress: Callable[[str], None] = lambda text: None) -> tuple[list[dict[str, Any]], int]:
        """Every ticket updated at or after `start`, each with its whole timeline."""
        # A conversation is an agent's when its user is one of the account's agents; the
        # bot's own are the signed ones (connectors/base.py), whoever wrote them.
        agents = frozenset(item["id"] for batch in self._pages("/api/v2/agents", {}) for item in batch
                           if isinstance(item, dict) and "id" in item)
        tickets: dict[str, dict[str, Any]] = {}
        since = start
        until = start
        while True:
            pages, full = 0, False
            last = since
            for batch in self._pages("/api/v2/tickets", {
                    "updated_since": _stamp(since), "order_by": "updated_at", "order_type": "asc",
                    "include": "stats"}, MAX_LIST_PAGES):
                pages += 1
                full = len(batch) == PER_PAGE
                for item in batch:
                    tickets[str(item["id"])] = item
                    last = max(last, _epoch(item["updated_at"]))
                progress(f"freshdesk: {len(tickets)} tickets listed")
            until = max(until, last)
            if pages < MAX_LIST_PAGES or not full:
                break
            if last <= since:
                raise ConnectorError(f"more than {MAX_LIST_PAGES * PER_PAGE} Freshdesk tickets share"
                                     f" updated_at {_stamp(since)}; the list cannot page past them")
            since = last
        docs = []
        for count, (tid, data) in enumerate(tickets.items(), start=1):
            conversations = [item for batch in self._pages(f"/api/v2/tickets/{tid}/conversations", {})
                             for item in batch]
            docs.append(self._document(data, conversations, agents))
            progress(f"freshdesk: conversations of {count}/{len(tickets)} tickets")
        return docs, until

    def _document(self, data: Mapping[str, Any], conversations: list[dict[str, Any]],
                  agents: frozenset[int]) -> dict[str, Any]:
        ticket = ticket_from_freshdesk(data, conversations, field_names={}, group_names={},
                                       status_map=self.status_map, agent_ids=agents)
        events = []
        for event in ticket.events:
            if event.type == "comment":
                events.append({"at": event.at, "type": "comment", "author": event.author,
                               "public": event.public, "bot": event.bot})
            else:
                events.append({"at": event.at, "type": "status", "status": event.status, "bot": False})
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

    # -- HTTP ------------------------------------------------------------------------

    def _pages(self, path: str, params: Mapping[str, Any], last_page: int | None = None
               ) -> Iterator[list[dict[str, Any]]]:
        page = 1
        while True:
            batch, response = self._get(path, {**params, "per_page": PER_PAGE, "page": page})
            if not isinstance(batch, list):
                raise ConnectorError(f"Freshdesk GET {path} did not return a list")
            yield batch
            link = response.links.get("next", {}).get("url")
            if not link or page == last_page:
                return
            number = parse_qs(urlsplit(link).query).get("page", [""])[0]
            following = int(number) if number.isdigit() else page + 1
            if following <= page:
                raise ConnectorError(f"Freshdesk's next-page link for {path} goes backwards")
            page = following

    def _get(self, path: str, params: Mapping[str, Any]) -> tuple[Any, requests.Response]:
        what = f"Freshdesk GET {path}"
        for attempt in range(1, self.max_attempts + 1):
            self.pace.before("api")
            try:
                response = self.session.get(self.root + path, params=params, timeout=self.timeout)
            except (requests.Timeout, requests.ConnectionError) as err:
                if attempt == self.max_attempts:
                    raise TransientError(f"{what}: {type(err).__name__}") from err
                self.sleep(2 ** (attempt - 1))
                continue
            self.pace.after("api", response.headers)
            if response.status_code == 429:
                try:
                    wait = max(float(response.headers.get("Retry-After", 60)), 0.0)
                except ValueError:
                    wait = 60.0
                if attempt == self.max_attempts:
                    raise RateLimitedError(f"{what}: rate limited; retry after {wait:g}s", wait)
                log.warning("%s: rate limited, waiting %gs", what, wait)
                self.sleep(wait)
                continue
            if response.status_code >= 500 and attempt < self.max_attempts:
                self.sleep(2 ** (attempt - 1))
                continue
            if response.status_code >= 400:
                raise ConnectorError(f"{what} answered {response.status_code}: {response.text[:200]}")
            try:
                return response.json(), response
            except ValueError as err:
                raise ConnectorError(f"{what} answered without JSON") from err
        raise AssertionError("unreachable")  # pragma: no cover
