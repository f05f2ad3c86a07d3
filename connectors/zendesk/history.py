"""Zendesk ticket histories at the export rate: incremental tickets (cursor) and ticket events.

Two bulk streams carry a whole account's history in a few calls: the
cursor-based incremental ticket export (1000 tickets a page, with their
users sideloaded) and the incremental ticket event export with
`include=comment_events` (1000 audits a page, each with its child events:
field changes and comments with author and visibility).
https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/

Tickets created before the event stream starts get their audits one ticket
at a time (GET tickets/{id}/audits.json), the one per-ticket read.

Authors follow the connector's ticket mapping (connectors/zendesk/tickets.py):
the user's role from the sideload (users missing from it are read with
users/show_many), -1 the system, deleted or unknown users neither customer
nor agent; the bot's comments are the signed ones, and an audit carrying one
is the bot's update, its changes the bot's too.

Each ticket becomes a history document (jobs/history.py describes the
format): its initial state and its timeline, with vendor ids kept as they
are, so the same document serves any rule set's field and group mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.base import ConnectorError
from connectors.history import HistoryReader, NoPace
from connectors.history import epoch as _epoch
from connectors.zendesk.client import ZendeskConnector
from connectors.zendesk.tickets import SYSTEM_USER_ID, comment_author, engine_status, is_bot_comment

SOURCE = "zendesk"
EXPORT = "export"  # the incremental exports' own limit: 10 requests a minute
API = "api"
EXPORT_LIMIT_PER_MINUTE = 10


class ZendeskHistoryReader(HistoryReader):
    """Reads ticket histories through Zendesk's incremental exports, over the Zendesk connector.

    Args:
        subdomain, email, api_token: as the connector (ZENDESK_SUBDOMAIN, ...).
        api_url: another API root, e.g. the sandbox's http://127.0.0.1:9100.
        pace: paces calls (`before(kind)`, `after(kind, headers)`); jobs.history.ApiShare.
        timeout, max_attempts: the HTTP layer's (connectors/http.py); other options
            (api_url, sleep, ...) go to the connector.
        lookback: how far before the window the event stream may start to
            cover older tickets' beginnings (seconds); older ones are read by audits.
    """

    source = SOURCE
    # "Items created or changed within the minute prior to your request are excluded"
    # (https://developer.zendesk.com/documentation/ticketing/managing-tickets/using-the-incremental-export-api)
    lag = 60

    def __init__(self, subdomain: str, email: str, api_token: str, *, pace: Any = None, timeout: float = 30,
                 max_attempts: int = 5, lookback: int = 30 * 86_400, **options: Any) -> None:
        pace = pace or NoPace()
        connector = ZendeskConnector(subdomain, email, api_token, timeout=timeout, max_attempts=max_attempts,
                                     pace=pace, **options)
        super().__init__(connector, options.get("api_url") or f"https://{subdomain}.zendesk.com", pace)
        self.lookback = lookback

    @classmethod
    def from_settings(cls, settings: Any, **options: Any) -> ZendeskHistoryReader:
        """From config.Settings (the connector's own variables)."""
        return cls(settings.zendesk_subdomain, settings.zendesk_email, settings.zendesk_api_token,
                   api_url=settings.zendesk_api_url, **options)

    def ticket_url(self, ticket_id: str) -> str:
        """The ticket in Zendesk's agent interface."""
        return f"{self.root}/agent/tickets/{ticket_id}"

    # -- reading -------------------------------------------------------------------

    def read(
        self,
        start: int,
        known: Callable[[str], bool] = lambda tid: False,
        progress: Callable[[str], None] = lambda text: None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Every ticket updated at or after `start`, with its timeline.

        `known(id)` says the cache already holds the ticket's earlier timeline:
        its document here then carries only the events from `start` on
        (`partial_from`), to merge. Returns (documents, the instant read up to).
        """
        tickets: dict[int, dict[str, Any]] = {}
        users: dict[int, dict[str, Any]] = {}
        cursor: str | None = None
        pages = 0
        until = start
        while True:
            params: dict[str, Any] = {"include": "users"}
            if cursor:
                params["cursor"] = cursor
            else:
                params["start_time"] = int(start)
            page = self._get("incremental/tickets/cursor.json", params, EXPORT)
            pages += 1
            for ticket in page.get("tickets") or []:
                until = max(until, _epoch(ticket.get("updated_at") or ticket["created_at"]))
                if ticket.get("status") == "deleted":  # the export lists deleted tickets too
                    tickets.pop(int(ticket["id"]), None)
                    continue
                tickets[int(ticket["id"])] = ticket
            users.update({u["id"]: u for u in page.get("users") or [] if "id" in u})
            progress(f"zendesk: {len(tickets)} tickets ({pages} export pages)")
            cursor = page.get("after_cursor") or cursor
            if page.get("end_of_stream") or not cursor:
                break
        unknown_created = [_epoch(t["created_at"]) for tid, t in tickets.items() if not known(str(tid))]
        events_from = start
        if unknown_created:
            events_from = max(min(min(unknown_created), start), start - self.lookback)
        audits: dict[int, list[dict[str, Any]]] = {tid: [] for tid in tickets}
        if tickets:
            self._events(events_from, audits, users, progress)
        partial = {tid: start for tid, t in tickets.items()
                   if known(str(tid)) and _epoch(t["created_at"]) < start}
        for tid, ticket in tickets.items():
            if tid not in partial and _epoch(ticket["created_at"]) < events_from:
                audits[tid] = self._ticket_audits(tid, users)
        self._add_missing_authors(audits.values(), users)
        docs = [self._document(ticket, audits[tid], users, partial.get(tid))
                for tid, ticket in tickets.items()]
        return docs, until

    def _events(self, start: int, audits: dict[int, list[dict[str, Any]]],
                users: dict[int, dict[str, Any]], progress: Callable[[str], None]) -> None:
        """The ticket event export from `start` to its end, audits grouped by ticket."""
        moment, pages, count = int(start), 0, 0
        seen: set[Any] = set()
        while True:
            page = self._get("incremental/ticket_events.json",
                             {"start_time": moment, "include": "comment_events"}, EXPORT)
            pages += 1
            for item in page.get("ticket_events") or []:
                if item.get("id") in seen:
                    continue  # pages overlap at the instant they meet
                seen.add(item.get("id"))
                tid = item.get("ticket_id")
                if tid in audits:
                    audits[tid].append(item)
                    count += 1
            users.update({u["id"]: u for u in page.get("users") or [] if "id" in u})
            progress(f"zendesk: {count} ticket events ({pages} event pages)")
            if page.get("end_of_stream"):
                return
            following = _start_time(page.get("next_page")) or page.get("end_time")
            if following is None:
                return
            if int(following) <= moment:
                raise ConnectorError(
                    f"Zendesk's ticket event export does not move past {moment}: more events share"
                    " one second than a page holds"
                )
            moment = int(following)

    def _ticket_audits(self, tid: int, users: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        """All audits of one ticket (the connector's read), as ticket events (the export's shape)."""
        audits, sideloaded = self.connector.audits(tid)
        users.update(sideloaded)
        out: list[dict[str, Any]] = []
        for audit in audits:
            children = []
            for event in audit.get("events") or []:
                kind = event.get("type")
                if kind == "Comment":
                    children.append({**event, "event_type": "Comment"})
                elif kind in ("Create", "Change") and event.get("field_name"):
                    name = str(event["field_name"])
                    key = {"custom_ticket_fields": {name: event.get("value")}} if name.isdigit() else {
                        name: event.get("value")}
                    children.append({"id": event.get("id"), "event_type": kind, **key})
            out.append({"id": audit.get("id"), "ticket_id": tid, "created_at": audit["created_at"],
                        "timestamp": _epoch(audit["created_at"]), "updater_id": audit.get("author_id"),
                        "event_type": "Audit", "child_events": children})
        return out

    def _add_missing_authors(self, audits: Iterable[list[dict[str, Any]]],
                             users: dict[int, dict[str, Any]]) -> None:
        """Comment authors the sideloads left out, read with users/show_many (deleted ones stay
        missing, so "unknown")."""
        missing = {child.get("author_id", audit.get("updater_id")) for items in audits for audit in items
                   for child in audit.get("child_events") or [] if child.get("event_type") == "Comment"}
        missing = {uid for uid in missing if isinstance(uid, int) and uid != SYSTEM_USER_ID
                   and uid not in users}
        if missing:
            users.update(self.connector.users(missing))

    def _get(self, path: str, params: Mapping[str, Any], kind: str) -> dict[str, Any]:
        return self.connector._call("GET", path, params=params, kind=kind)

    # -- mapping ---------------------------------------------------------------------

    def _document(self, ticket: Mapping[str, Any], audits: Iterable[Mapping[str, Any]],
                  users: Mapping[int, Mapping[str, Any]], partial_from: int | None) -> dict[str, Any]:
        created = _epoch(ticket["created_at"])
        initial: dict[str, Any] = {"status": None, "priority": None, "group": None, "tags": [],
                                   "fields": {}}
        events: list[dict[str, Any]] = []
        saw_create = False
        ordered = sorted(audits, key=lambda a: (int(a.get("timestamp") or _epoch(a["created_at"])),
                                                str(a.get("id"))))
        for audit in ordered:
            at = int(audit.get("timestamp") or _epoch(audit["created_at"]))
            updater = audit.get("updater_id")
            children = audit.get("child_events") or []
            authors = {id(child): comment_author(child.get("author_id", updater), users)
                       for child in children if child.get("event_type") == "Comment"}
            # The bot signs the comment of each of its updates: the audit's changes are its own.
            is_bot = any(is_bot_comment(child, authors[id(child)]) for child in children
                         if id(child) in authors)
            # Accounts with custom statuses record a custom_status_id change beside the status one.
            custom = next((child for child in children if child.get("custom_status_id") is not None
                           and child.get("event_type") in ("Create", "Change")), None)
            first = len(events)
            for child in children:
                kind = child.get("event_type")
                if kind == "Comment":
                    who = authors[id(child)]
                    public = child.get("public", child.get("comment_public", True))
                    events.append({"id": f"c{child.get('id')}", "at": at, "type": "comment", "author": who,
                                   "public": bool(public), "bot": is_bot_comment(child, who)})
                elif kind == "Create":
                    saw_create = True
                    _initial(initial, child)
                elif kind == "Change":
                    events.extend(_changes(child, at, is_bot))
            if custom is not None:
                category, label = self._custom_status(custom["custom_status_id"])
                if custom.get("event_type") == "Create":
                    initial["custom_status"] = label
                    initial["status"] = category or initial["status"]
                    continue
                status_events = [e for e in events[first:] if e["type"] == "status"]
                if status_events:
                    status_events[-1]["custom_status"] = label
                elif category:
                    events.append({"id": f"s{custom.get('id')}", "at": at, "type": "status",
                                   "status": engine_status(category), "custom_status": label, "bot": is_bot})
        if not saw_create:
            # No creation audit in what was read: the ticket as it is now stands in
            # for its start (a merge with the cached document replaces it).
            initial = {"status": ticket.get("status"), "priority": ticket.get("priority"),
                       "group": _raw(ticket.get("group_id")), "tags": list(ticket.get("tags") or ()),
                       "fields": {str(f["id"]): f.get("value") for f in ticket.get("custom_fields") or []
                                  if f.get("value") is not None}}
            if ticket.get("custom_status_id") is not None:
                initial["custom_status"] = self._custom_status(ticket["custom_status_id"])[1]
        if initial["status"]:
            initial["status"] = engine_status(initial["status"])
        return {
            "id": str(ticket["id"]), "url": self.ticket_url(str(ticket["id"])), "created_at": created,
            "updated_at": _epoch(ticket.get("updated_at") or ticket["created_at"]),
            "subject": ticket.get("subject") or "", "description": ticket.get("description") or "",
            "initial": initial, "events": events, "partial_from": partial_from,
            "complete": saw_create or partial_from is None,
        }

    def _custom_status(self, custom_id: Any) -> tuple[str | None, str | None]:
        """(status category, agent label) of a custom status (GET custom_statuses.json, read once
        and cached by the connector); (None, None) for one the account does not have."""
        try:
            number = int(custom_id)
        except (TypeError, ValueError):
            return None, None
        custom = self.connector.custom_statuses().get(number)
        if custom is None:
            return None, None
        label = custom.get("agent_label")
        return custom.get("status_category"), (str(label) if label else None)


def _raw(value: Any) -> str | None:
    return None if value is None else str(value)


def _initial(initial: dict[str, Any], child: Mapping[str, Any]) -> None:
    if "status" in child:
        initial["status"] = child["status"]
    if "priority" in child:
        initial["priority"] = child["priority"] or None
    if "group_id" in child:
        initial["group"] = _raw(child["group_id"])
    if "tags" in child:
        initial["tags"] = list(child["tags"] or ())
    for key, value in (child.get("custom_ticket_fields") or {}).items():
        if value is not None:
            initial["fields"][str(key)] = value


def _changes(child: Mapping[str, Any], at: int, bot: bool) -> list[dict[str, Any]]:
    base = {"at": at, "bot": bot}
    cid = child.get("id")
    out: list[dict[str, Any]] = []
    if "status" in child:
        out.append({**base, "id": f"s{cid}", "type": "status", "status": engine_status(child["status"])})
    if "priority" in child:
        out.append({**base, "id": f"p{cid}", "type": "priority", "priority": child["priority"] or None})
    if "group_id" in child:
        out.append({**base, "id": f"g{cid}", "type": "group", "group": _raw(child["group_id"])})
    if "tags" in child or "added_tags" in child or "removed_tags" in child:
        added = child.get("added_tags")
        removed = child.get("removed_tags")
        if added is None and removed is None:
            before = set(child.get("previous_value") or ())
            now = list(child.get("tags") or ())
            added, removed = [t for t in now if t not in before], [t for t in before if t not in now]
        out.append({**base, "id": f"t{cid}", "type": "tags", "added": list(added or ()),
                    "removed": list(removed or ())})
    for key, value in (child.get("custom_ticket_fields") or {}).items():
        out.append({**base, "id": f"f{cid}.{key}", "type": "field", "field": str(key), "value": value})
    return out


def _start_time(url: Any) -> int | None:
    """The start_time of a next_page URL (the host is never followed: only the instant is read)."""
    if not isinstance(url, str):
        return None
    values = parse_qs(urlsplit(url).query).get("start_time")
    return int(values[0]) if values and values[0].isdigit() else None
