"""Freshdesk API v2 connector: reads tickets for the engine and writes its decisions back."""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from connectors.base import (
    ChangePage,
    ConfigurationError,
    ConnectorError,
    RemoteTicket,
    TicketChanges,
    fetch_each,
    prepared,
    signed,
    unknown_labels,
)
from connectors.fields import FieldType
from connectors.freshdesk.tickets import (
    DEFAULT_WAITING_IDS,
    DEFAULT_WAITING_STATUSES,
    PRIORITY_IDS,
    STATUS_IDS,
    STATUS_NAMES,
    field_types_from_freshdesk,
    instant,
    status_choices,
    ticket_from_freshdesk,
)
from connectors.http import Http, Pace, Vendor
from engine.ticket import STATUSES, to_epoch

log = logging.getLogger(__name__)

# Ids from 6 up are account statuses: 6 and 7 ("Waiting on Customer", "Waiting
# on Third Party") come with every account and map by default; others are admins' own.
FIRST_CUSTOM_STATUS = 6
PER_PAGE = 100  # the largest page the API serves (https://developers.freshdesk.com/api/#pagination)
MAX_LIST_PAGES = 300  # GET /tickets serves pages 1..300 only; past that, narrow updated_since
RATE_WINDOW_SECONDS = 60.0  # limits are per minute (https://developers.freshdesk.com/api/#ratelimit)
_TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"
METADATA_SECONDS = 600.0  # the agent list and ticket_fields are read again after this long
UNKNOWN_USER_REFRESH_SECONDS = 60.0  # an unknown conversation author re-reads agents at most this often
_VENDOR = Vendor(
    "Freshdesk",
    not_found="check FRESHDESK_DOMAIN or FRESHDESK_API_URL and the API key's agent role",
    credentials="check FRESHDESK_API_KEY and FRESHDESK_DOMAIN",
    describe=lambda response: _describe(response),
)
# Job states of GET /jobs/{id} that will not change any more.
_JOB_DONE = frozenset({"completed", "failed", "partially_completed", "cancelled"})


class FreshdeskConnector:
    """One Freshdesk account, spoken to with the `requests` library.

    Args:
        domain: the account's host, e.g. ``acme.freshdesk.com``.
        api_key: an agent's API key (sent as the basic-auth user, password ``X``).
        api_url: a different origin to call instead, e.g. the sandbox's
            ``http://127.0.0.1:9200``; ``/api/v2`` is appended.
        field_names: engine field name -> Freshdesk custom field (``cf_plan``).
        group_ids: engine group name -> Freshdesk group id.
        status_map: custom status id (6 and up) -> engine status, e.g. ``{6: "on_hold"}``.
        timeout: seconds for each HTTP call (connect and read).
        max_attempts: tries per call for 429, 5xx, timeouts and dropped connections.
        backoff_base: first backoff in seconds; it doubles on each retry.
        sleep: injectable for tests.
        rate_limit_floor: when X-RateLimit-Remaining falls to this, space calls out.
        monotonic: a monotonic clock in seconds (injectable for tests).
        metadata_seconds: how long the agent list and ticket_fields are kept
            before they are read again.
        status_aliases: the rules' helpdesk status names -> engine statuses; a
            custom status whose agent label (the status field's choices) is named
            here needs no `statuses:` id.
        pace: keeps a run of calls to a share of the API budget (connectors.http.Pace).
        status_labels: custom status labels the rules name; check() reports those no
            status of the account has.

    `rate_limit_remaining` holds the last X-RateLimit-Remaining seen (None before any).
    """

    # Freshdesk updates are unconditional, and it has no bulk note (one POST per ticket).
    safe_updates = False
    notes_in_bulk = False

    name = "freshdesk"

    def __init__(
        self,
        domain: str,
        api_key: str,
        *,
        api_url: str | None = None,
        field_names: Mapping[str, str] | None = None,
        group_ids: Mapping[str, int] | None = None,
        status_map: Mapping[int, str] | None = None,
        timeout: float = 10,
        max_attempts: int = 4,
        backoff_base: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        rate_limit_floor: int = 10,
        monotonic: Callable[[], float] = time.monotonic,
        metadata_seconds: float = METADATA_SECONDS,
        status_aliases: Mapping[str, str] | None = None,
        pace: Pace | None = None,
        status_labels: Iterable[str] = (),
    ) -> None:
        if not api_key:
            raise ConfigurationError("Freshdesk API key is empty: set FRESHDESK_API_KEY")
        if not api_url and (not domain or "/" in domain):
            raise ConfigurationError(
                f"Freshdesk domain {domain!r} must be a host name like acme.freshdesk.com "
                "(FRESHDESK_DOMAIN); put a full URL in api_url instead"
            )
        if max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        self.base_url = f"{(api_url or f'https://{domain}').rstrip('/')}/api/v2"
        self.field_names = dict(field_names or {})
        self._field_engine_names = {cf: name for name, cf in self.field_names.items()}
        self.group_ids = {name: int(gid) for name, gid in (group_ids or {}).items()}
        self._group_names = {gid: name for name, gid in self.group_ids.items()}
        self.status_map = _checked_status_map(status_map or {})
        session = requests.Session()
        session.auth = (api_key, "X")
        session.headers.update({"Accept": "application/json", "User-Agent": "deskpilot"})
        self.http = Http(_VENDOR, self.base_url, session, timeout=timeout, max_attempts=max_attempts,
                         backoff_base=backoff_base, sleep=sleep, rate_limit_floor=rate_limit_floor,
                         pace=pace)
        self._monotonic = monotonic
        self._status_aliases = dict(status_aliases or {})
        self._status_labels = frozenset(label.casefold() for label in status_labels)
        self._metadata_seconds = metadata_seconds
        self._agents: tuple[float, frozenset[int]] | None = None
        self._fields: tuple[float, list[dict[str, Any]]] | None = None

    @property
    def rate_limit_remaining(self) -> int | None:
        """The last remaining-calls count Freshdesk reported (None before any)."""
        return self.http.rate_limit_remaining

    @classmethod
    def from_settings(cls, settings: Any, mapping: Any = None, **options: Any) -> FreshdeskConnector:
        """The registry's factory: credentials from Settings (FRESHDESK_DOMAIN, FRESHDESK_API_KEY,
        FRESHDESK_API_URL), field names, group ids and custom statuses from the rule files'
        `helpdesk: freshdesk:` section (`mapping`, an engine.rules.HelpdeskMapping)."""
        try:
            group_ids = {str(k): int(v) for k, v in (mapping.groups if mapping else {}).items()}
        except (TypeError, ValueError) as err:
            raise ConfigurationError(
                f"helpdesk: freshdesk: groups: in the rule files must map names to numeric ids: {err}"
            ) from err
        return cls(
            settings.freshdesk_domain or "", settings.freshdesk_api_key or "",
            api_url=settings.freshdesk_api_url,
            field_names={str(k): str(v) for k, v in (mapping.fields if mapping else {}).items()},
            group_ids=group_ids, status_map=dict(mapping.statuses) if mapping else {}, **options,
        )

    def close(self) -> None:
        self.http.close()

    # -- reading ---------------------------------------------------------------

    def check(self) -> list[str]:
        """Configuration problems: the API key's agent (GET /agents/me), every status of
        the account's status field without an engine status, mapped custom fields the
        account lacks. Empty when the connector can work.

        https://developers.freshdesk.com/api/#me , https://developers.freshdesk.com/api/#ticket-fields
        """
        problems: list[str] = []
        try:
            me = self._json("GET", "/agents/me")
            if not isinstance(me, dict) or not isinstance(me.get("id"), int):
                problems.append("Freshdesk GET /agents/me did not name the API key's agent: check "
                                "FRESHDESK_API_KEY belongs to an agent")
            fields = self._ticket_fields(refresh=True)
        except ConnectorError as err:
            return [*problems, str(err)]
        unmapped = {sid: label for sid, label in status_choices(fields).items()
                    if sid not in STATUS_NAMES and sid not in self.status_map
                    and sid not in DEFAULT_WAITING_STATUSES and label not in self._status_aliases}
        if unmapped:
            listed = ", ".join(f"{sid} ({label!r})" for sid, label in sorted(unmapped.items()))
            problems.append(
                f"Freshdesk custom status(es) {listed} have no engine status: map each under "
                "helpdesk: freshdesk: statuses: in the rule files, e.g. "
                f"{min(unmapped)}: on_hold (or name its label under status_aliases:)"
            )
        names = {item.get("name") for item in fields}
        missing = sorted(name for name, cf in self.field_names.items() if cf not in names)
        if missing:
            problems.append(
                f"field(s) {', '.join(missing)} under helpdesk: freshdesk: fields: name custom "
                "fields this Freshdesk account does not have (GET /ticket_fields)"
            )
        problems.extend(unknown_labels(self._status_labels, status_choices(fields).values(), "Freshdesk",
                                       "the status field's choices in GET /ticket_fields"))
        return problems

    def agent_ids(self, refresh: bool = False) -> frozenset[int]:
        """Ids of the account's agents (GET /agents, all pages): a conversation by one of them
        is an agent's. Kept for `metadata_seconds`.

        https://developers.freshdesk.com/api/#list_all_agents
        """
        now = self._monotonic()
        if refresh or self._agents is None or now - self._agents[0] >= self._metadata_seconds:
            ids = frozenset(item["id"] for batch in self.pages("/agents", {}) for item in batch
                            if isinstance(item.get("id"), int))
            self._agents = (now, ids)
        return self._agents[1]

    def field_types(self) -> dict[str, FieldType]:
        """Custom field types by Freshdesk name (cf_plan), from GET /ticket_fields."""
        return field_types_from_freshdesk(self._ticket_fields())

    def _ticket_fields(self, refresh: bool = False) -> list[dict[str, Any]]:
        now = self._monotonic()
        if refresh or self._fields is None or now - self._fields[0] >= self._metadata_seconds:
            data = self._json("GET", "/ticket_fields")
            if not isinstance(data, list):
                raise ConnectorError("Freshdesk GET /ticket_fields did not return a list")
            self._fields = (now, [item for item in data if isinstance(item, dict)])
        return self._fields[1]

    def fetch_ticket(self, ticket_id: str, known: Mapping[str, Any] | None = None) -> RemoteTicket:
        """The ticket with its stats, and every conversation (all pages).

        The agent list (who wrote what) and, with custom fields mapped, the
        ticket fields are read when the cached copies are missing or old.
        `known` (the stored snapshot) is not used: Freshdesk's conversations list
        has no way to start after a given conversation, so every read is a full one.
        """
        number = _ticket_number(ticket_id)
        data = self._json("GET", f"/tickets/{number}", params={"include": "stats"}, ticket=True)
        if not isinstance(data, dict):
            raise ConnectorError(f"Freshdesk GET /tickets/{number} did not return a ticket object")
        conversations = self._conversations(number)
        agents = self.agent_ids()
        authors = {item.get("user_id") for item in conversations} - {None, data.get("requester_id")}
        if (not authors <= agents and self._agents is not None
                and self._monotonic() - self._agents[0] >= UNKNOWN_USER_REFRESH_SECONDS):
            agents = self.agent_ids(refresh=True)  # perhaps an agent added since the list was read
        ticket = ticket_from_freshdesk(
            data, conversations, field_names=self._field_engine_names, group_names=self._group_names,
            status_map={**self._aliased_statuses(data.get("status")), **self.status_map},
            agent_ids=agents,
            field_types=self.field_types() if self.field_names else {},
            status_labels=self._labels_for(data.get("status")),
        )
        return RemoteTicket(ticket=ticket, stamp=data.get("updated_at"), raw=data)

    def _labels_for(self, status: Any) -> dict[int, str]:
        """The status labels, read only for a custom status and when the rules name labels."""
        return self.status_labels() if self._status_labels and status not in STATUS_NAMES else {}

    def status_labels(self) -> dict[int, str]:
        """Status id -> agent label, from the status field's choices (GET /ticket_fields, cached
        for `metadata_seconds`): a custom status's label for conditions and pause_on."""
        return status_choices(self._ticket_fields())

    def _aliased_statuses(self, status: Any) -> dict[int, str]:
        """Custom status id -> its agent label, for the labels the rules' status_aliases name
        (read from the status field's choices only for a status nothing else maps)."""
        if (not self._status_aliases or status in STATUS_NAMES or status in self.status_map
                or status in DEFAULT_WAITING_STATUSES):
            return {}
        return {sid: label for sid, label in self.status_labels().items()
                if label in self._status_aliases and sid not in STATUS_NAMES}

    def fetch_tickets(self, ticket_ids: Iterable[str], known: Mapping[str, Mapping[str, Any]] | None = None
                      ) -> dict[str, RemoteTicket | ConnectorError]:
        """Several tickets, one fetch_ticket each (see connectors.base.Helpdesk.fetch_tickets)."""
        return fetch_each(self, ticket_ids, known)

    def prepare(self, remote: RemoteTicket, changes: TicketChanges) -> TicketChanges:
        """Field values in each field's own format (a date field's day for an instant),
        without those the ticket already holds; tags it has are not added again."""
        types = self.field_types() if changes.fields else {}
        return prepared(remote, changes, lambda name: types.get(self.field_names.get(name, ""), FieldType()))

    def _conversations(self, number: int) -> list[dict[str, Any]]:
        return [item for batch in self.pages(f"/tickets/{number}/conversations", {}, ticket=True)
                for item in batch]

    def pages(self, path: str, params: Mapping[str, Any], last_page: int | None = None, *,
               ticket: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Each page of a list, 100 items at a time, while `Link: <…>; rel="next"` says more.

        Only the page number is taken from the link, so the API key never
        goes to a host named in a response header.
        """
        page = 1
        while True:
            query = {**params, "per_page": PER_PAGE, "page": page}
            response = self.http.call("GET", path, params=query, ticket=ticket)
            batch = self.http.decode(response, f"GET {path}")
            if not isinstance(batch, list):
                raise ConnectorError(f"Freshdesk GET {path} did not return a list")
            yield batch
            next_link = response.links.get("next", {}).get("url")
            if not next_link or page == last_page:
                return
            next_page = _page_of(next_link, default=page + 1)
            if next_page <= page:
                raise ConnectorError(f"Freshdesk's next-page link for {path} goes backwards")
            page = next_page

    def changed_since(self, cursor: str | None, since: datetime) -> ChangePage:
        """Tickets updated at or after `cursor` (an instant this method returned), else `since`.

        One call lists everything (`done`); the next cursor is the latest
        `updated_at` Freshdesk reported, so our clock's skew does not matter.
        The list omits deleted and spam tickets (they need `filter=deleted`).
        https://developers.freshdesk.com/api/#list_all_tickets
        """
        start = since
        if cursor:
            try:
                start = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
            except ValueError:
                log.warning("Freshdesk change cursor %r is not an instant; listing from %s", cursor, since)
        stamps: dict[str, str] = {}
        ids, latest = self._updated_since(start, stamps)
        nxt = max(latest, start) if latest is not None else start
        return ChangePage(ticket_ids=ids, cursor=nxt.astimezone(UTC).strftime(_TIMESTAMP), done=True,
                          updated_at=stamps)

    def _updated_since(self, updated_since: datetime, stamps: dict[str, str] | None = None
                       ) -> tuple[list[str], datetime | None]:
        """Ids of tickets updated at or after `updated_since`, oldest update first, and the
        latest updated_at seen.

        The list endpoint stops at page 300, so a longer scan restarts from the
        last `updated_at` it saw (ids seen twice are reported once). A ticket
        updated while the scan runs moves to the end of the order and can push
        one unseen ticket back onto a page already read; webhooks cover that.
        """
        seen: dict[str, None] = {}
        latest: int | None = None
        for item in self.updated_tickets(updated_since):
            seen[str(item["id"])] = None
            if stamps is not None and item.get("updated_at"):
                stamps[str(item["id"])] = str(item["updated_at"])  # the latest listed
            if item.get("updated_at"):
                moment = instant(item["updated_at"], "updated_at")
                latest = moment if latest is None else max(latest, moment)
        return list(seen), None if latest is None else datetime.fromtimestamp(latest, UTC)

    def updated_tickets(self, updated_since: datetime, *, include: str | None = None
                        ) -> Iterator[dict[str, Any]]:
        """Each ticket updated at or after `updated_since`, oldest update first, as the list
        gives it (`include="stats"` adds the status instants); a ticket on both sides of a
        restart comes twice.

        The list endpoint stops at page 300, so a longer scan restarts from the
        last `updated_at` it saw.
        https://developers.freshdesk.com/api/#list_all_tickets
        """
        to_epoch(updated_since)  # refuses a naive datetime
        since = updated_since.astimezone(UTC).strftime(_TIMESTAMP)
        while True:
            params = {"updated_since": since, "order_by": "updated_at", "order_type": "asc",
                      **({"include": include} if include else {})}
            pages, last_batch, last_updated = 0, [], None
            for last_batch in self.pages("/tickets", params, MAX_LIST_PAGES):
                pages += 1
                for item in last_batch:
                    last_updated = item.get("updated_at") or last_updated
                    yield item
            if pages < MAX_LIST_PAGES or len(last_batch) < PER_PAGE:
                return
            # Page 300 was full: start a new window at the last instant seen.
            if last_updated is None or instant(last_updated, "updated_at") <= instant(
                    since, "updated_since"):
                raise ConnectorError(
                    f"more than {MAX_LIST_PAGES * PER_PAGE} Freshdesk tickets share "
                    f"updated_at {since}; the list API cannot page past them"
                )
            since = last_updated

    # -- writing ---------------------------------------------------------------

    def apply(self, remote: RemoteTicket, changes: TicketChanges) -> None:
        """One PUT for the ticket's properties, then the note, then the public reply.

        Freshdesk has no conditional update (no If-Match, no updated_stamp), so
        a concurrent edit is not detected here; ConflictError comes only from a
        409. Tags are replaced wholesale by a PUT, so the union of the tags as
        read and the added ones is sent.
        """
        number = _ticket_number(remote.ticket.id)
        update = self._properties(changes.priority, changes.status, changes.group, changes.fields)
        tags = remote.raw.get("tags")
        current = [str(tag) for tag in (tags if isinstance(tags, list) else sorted(remote.ticket.tags))]
        new_tags = [tag for tag in dict.fromkeys(changes.add_tags) if tag not in current]
        if new_tags:
            update["tags"] = current + new_tags
        if update:
            data = self._json("PUT", f"/tickets/{number}", body=update, ticket=True)
            if isinstance(data, dict):  # the ticket as updated: later writes start from it
                remote.raw = {**remote.raw, **data}
                remote.stamp = data.get("updated_at", remote.stamp)
        # Notes and replies are not idempotent: a retried POST whose first try
        # reached Freshdesk would post the text twice, so they are not retried
        # after a read timeout, a dropped connection or a 5xx.
        if changes.note:
            note = {"body": _as_html(signed(changes.note)), "private": True}
            self.http.call("POST", f"/tickets/{number}/notes", body=note, replay_safe=False, ticket=True)
        if changes.reply:
            reply = {"body": _as_html(signed(changes.reply))}
            self.http.call("POST", f"/tickets/{number}/reply", body=reply, replay_safe=False, ticket=True)

    def write_parts(self, changes: TicketChanges) -> list[TicketChanges]:
        """`changes` as the calls apply() makes, one each (for the outbox): PUT, note, reply."""
        parts = []
        if changes.priority or changes.status or changes.group or changes.fields or changes.add_tags:
            parts.append(TicketChanges(priority=changes.priority, status=changes.status,
                                       group=changes.group, add_tags=changes.add_tags,
                                       fields=dict(changes.fields)))
        if changes.note:
            parts.append(TicketChanges(note=changes.note))
        if changes.reply:
            parts.append(TicketChanges(reply=changes.reply))
        return parts

    def has_comment(self, ticket_id: str, body: str, *, public: bool, since: int) -> bool:
        """Whether the bot posted `body` (a reply, or a private note) at or after `since`.

        Read from the conversations, so a resumed write can tell whether a POST
        whose answer was lost reached Freshdesk.
        """
        number = _ticket_number(ticket_id)
        # The bot's comments are the signed ones, whoever the API user is.
        wanted = {" ".join(body.split()), " ".join(signed(body).split())}
        for item in self._conversations(number):
            try:
                at = to_epoch(datetime.fromisoformat(str(item.get("created_at")).replace("Z", "+00:00")))
            except ValueError:
                continue
            text = item.get("body_text")
            if text is None:
                text = html.unescape(re.sub(r"<[^>]+>", " ", str(item.get("body") or "")))
            if (at >= since and bool(item.get("private")) != public
                    and " ".join(str(text).split()) in wanted):
                return True
        return False

    def bulk_update(
        self,
        ticket_ids: Iterable[str],
        *,
        status: str | None = None,
        priority: str | None = None,
        group: str | None = None,
        fields: Mapping[str, Any] | None = None,
        reply: str | None = None,
        dry_run: bool = False,
    ) -> str | None:
        """Queue one update for many tickets; returns Freshdesk's job id (None on a dry run).

        `reply` is posted to every ticket as a public reply by the API key's agent.
        https://developers.freshdesk.com/api/#bulk_update_tickets
        """
        ids = [_ticket_number(tid) for tid in ticket_ids]
        if not ids:
            raise ConnectorError("bulk_update needs at least one ticket id")
        properties = self._properties(priority, status, group, fields or {})
        if not properties and not reply:
            raise ConnectorError("bulk_update needs status, priority, group, fields or a reply")
        action: dict[str, Any] = {"ids": ids, "properties": properties}
        if reply:
            action["reply"] = {"body": _as_html(signed(reply))}
        body = {"bulk_action": action}
        if dry_run:
            log.info("dry run: would POST /tickets/bulk_update %s", json.dumps(body))
            return None
        # Not replayed after a timeout: the reply would be posted twice.
        data = self.http.json("POST", "/tickets/bulk_update", body=body, replay_safe=False)
        job_id = data.get("job_id") if isinstance(data, dict) else None
        if not job_id:
            raise ConnectorError("Freshdesk bulk_update answered without a job_id")
        return str(job_id)

    def bulk_writes_per_ticket(self, *, reply: str | None, note: str | None) -> int:
        """Writes close_many makes per ticket (what the write budget counts)."""
        return 2 if note else 1

    def can_close_in_bulk(self, add_tags: Iterable[str] = ()) -> bool:
        """Only without tags: a ticket update replaces the tags, and they differ per ticket."""
        return not tuple(add_tags)

    def close_many(
        self,
        ticket_ids: Iterable[str],
        *,
        status: str,
        add_tags: Iterable[str] = (),
        reply: str | None = None,
        note: str | None = None,
        wait_seconds: float = 60,
    ) -> dict[str, str | None]:
        """Give many tickets the same status and public reply (one bulk job), then each its note.

        Freshdesk has no bulk note, so the internal note is one POST per
        updated ticket; a failed note is logged, not returned. Returns ticket
        id -> None when updated, else the error. Raises TransientError when
        the job is not done after `wait_seconds`.
        """
        if not self.can_close_in_bulk(add_tags):
            raise ConnectorError("Freshdesk bulk updates cannot add tags: apply them per ticket")
        ids = [str(ticket_id) for ticket_id in ticket_ids]
        job_id = self.bulk_update(ids, status=status, reply=reply)
        results = _job_results(ids, self.wait_for_job(str(job_id), wait_seconds))
        for ticket_id, error in results.items():
            if error is None and note:
                try:
                    self.http.call("POST", f"/tickets/{_ticket_number(ticket_id)}/notes",
                                   body={"body": _as_html(signed(note)), "private": True}, replay_safe=False)
                except ConnectorError as err:
                    log.warning("ticket %s: updated, but its internal note failed: %s", ticket_id, err)
        return results

    def note_many(self, ticket_ids: Iterable[str], note: str, *, wait_seconds: float = 60
                  ) -> dict[str, str | None]:
        """The same internal note on each ticket (Freshdesk has no bulk note: one POST each);
        ticket id -> None when added, else the error."""
        out: dict[str, str | None] = {}
        for ticket_id in ticket_ids:
            try:
                self.http.call("POST", f"/tickets/{_ticket_number(ticket_id)}/notes",
                               body={"body": _as_html(signed(note)), "private": True}, replay_safe=False)
            except ConnectorError as err:
                out[str(ticket_id)] = str(err)
            else:
                out[str(ticket_id)] = None
        return out

    def wait_for_job(self, job_id: str, wait_seconds: float = 60) -> dict[str, Any]:
        """Poll the bulk job (1 s, 2 s, 4 s, ... apart) until it finishes."""
        return self.http.poll(lambda: self.job_status(job_id),
                              lambda job: str(job.get("status")).lower() in _JOB_DONE,
                              f"job {job_id}", wait_seconds)

    def job_status(self, job_id: str) -> dict[str, Any]:
        """The bulk job's state as Freshdesk reports it (`status`, `progress`, …)."""
        if not re.fullmatch(r"[A-Za-z0-9_-]+", job_id or ""):
            raise ConnectorError(f"not a Freshdesk job id: {job_id!r}")
        data = self._json("GET", f"/jobs/{job_id}")
        if not isinstance(data, dict):
            raise ConnectorError(f"Freshdesk GET /jobs/{job_id} did not return an object")
        return data

    def _properties(
        self, priority: str | None, status: str | None, group: str | None, fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if priority:
            if priority not in PRIORITY_IDS:
                raise ConnectorError(f"unknown priority {priority!r}: use one of {sorted(PRIORITY_IDS)}")
            out["priority"] = PRIORITY_IDS[priority]
        if status:
            out["status"] = self._status_id(status)
        if group:
            if group not in self.group_ids:
                raise ConfigurationError(
                    f"group {group!r} has no Freshdesk group id: add it under helpdesk: freshdesk: "
                    "groups: in the rule files"
                )
            out["group_id"] = self.group_ids[group]
        if fields:
            unknown = sorted(name for name in fields if name not in self.field_names)
            if unknown:
                raise ConfigurationError(
                    f"field(s) {', '.join(unknown)} have no Freshdesk custom field: add them under "
                    "helpdesk: freshdesk: fields: in the rule files, e.g. plan: cf_plan"
                )
            out["custom_fields"] = {self.field_names[name]: value for name, value in fields.items()}
        return out

    def _status_id(self, status: str) -> int:
        if status in STATUS_IDS:
            return STATUS_IDS[status]
        custom = sorted(sid for sid, name in self.status_map.items() if name == status)
        if custom:
            return custom[0]
        if status in DEFAULT_WAITING_IDS:
            return DEFAULT_WAITING_IDS[status]
        raise ConfigurationError(
            f"status {status!r} has no Freshdesk status: map a custom status id to it under "
            f"helpdesk: freshdesk: statuses: in the rule files, e.g. 8: {status}"
        )

    # -- HTTP ------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.http.json(method, path, **kwargs)


def _job_results(ids: list[str], job: Mapping[str, Any]) -> dict[str, str | None]:
    """Ticket id -> None (updated) or the error, from a finished job's `data`."""
    outcome: dict[str, str | None] = {
        ticket_id: f"no result in Freshdesk job {job.get('id')} ({job.get('status')})" for ticket_id in ids
    }
    for result in job.get("data") or []:
        ticket_id = str(result.get("id"))
        if ticket_id in outcome:
            outcome[ticket_id] = None if result.get("success") else json.dumps(
                result.get("errors") or "failed")
    return outcome


def _checked_status_map(status_map: Mapping[Any, str]) -> dict[int, str]:
    checked: dict[int, str] = {}
    for key, name in status_map.items():
        try:
            sid = int(key)
        except (TypeError, ValueError) as err:
            raise ConfigurationError(
                f"helpdesk: freshdesk: statuses: key {key!r} is not a Freshdesk status id") from err
        if sid < FIRST_CUSTOM_STATUS:
            raise ConfigurationError(
                f"helpdesk: freshdesk: statuses: maps {sid}, a built-in Freshdesk status; only custom "
                "statuses "
                f"({FIRST_CUSTOM_STATUS} and up) can be mapped"
            )
        if name not in STATUSES:
            raise ConfigurationError(
                f"helpdesk: freshdesk: statuses: maps {sid} to {name!r}; use one of {list(STATUSES)}")
        checked[sid] = name
    return checked


def _ticket_number(ticket_id: Any) -> int:
    text = str(ticket_id).strip()
    if not text.isdigit():
        raise ConnectorError(f"not a Freshdesk ticket id: {ticket_id!r}")
    return int(text)


def _page_of(url: str, default: int) -> int:
    values = parse_qs(urlsplit(url).query).get("page")
    try:
        return int(values[0]) if values else default
    except ValueError:
        return default


def _as_html(text: str) -> str:
    # Note and reply bodies are HTML (https://developers.freshdesk.com/api/#add_note_to_a_ticket):
    # escape the engine's plain text and keep its line breaks.
    return html.escape(text).replace("\r\n", "\n").replace("\n", "<br>")


def _describe(response: requests.Response | None) -> str:
    """Freshdesk's own words: `description` and each `errors[]` field/message/code."""
    if response is None:
        return "no response"
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or response.reason or "no details"
    if not isinstance(data, dict):
        return str(data)[:200]
    parts = [str(data.get("description") or data.get("message") or data.get("code") or "")]
    for error in data.get("errors") or []:
        if isinstance(error, dict):
            parts.append(f"{error.get('field') or '-'}: {error.get('message')} [{error.get('code')}]")
    return "; ".join(part for part in parts if part) or "no details"
