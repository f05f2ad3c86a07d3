"""Zendesk connector: ticket and audit reads, safe updates, bulk jobs, over connectors.http.

zenpy is not used (nor a dependency): its public API returns objects without the
audits' user sideload, the cursors and the raw `updated_at` a safe update needs,
and it runs its own 429 sleep loop and urllib3 retries, a second retry policy
beside the work queue's. Every call goes through the shared HTTP layer instead
(docs/webhooks.md, "Zendesk client").
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from connectors.base import (
    ChangePage,
    ConfigurationError,
    ConnectorError,
    NotFoundError,
    RateLimitedError,
    RemoteTicket,
    TicketChanges,
    TransientError,
    prepared,
    signed,
    unknown_labels,
)
from connectors.fields import FieldType
from connectors.http import Http, Pace, Vendor
from connectors.zendesk.tickets import (
    audit_events,
    field_types_from_zendesk,
    ticket_from_zendesk,
)
from connectors.zendesk.timeline import extend_ticket
from engine.ticket import Event, events_from_rows, to_epoch

log = logging.getLogger(__name__)

# https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#update-many-tickets
MAX_BULK_IDS = 100
# https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#show-multiple-tickets
MAX_SHOW_MANY = 100
MAX_BATCH_TRANSIENT = 3  # tickets of a batched read failing with timeouts/5xx before it stops
# Audit events that change what earlier audits say: a comment made private, a comment redacted
# (https://developer.zendesk.com/documentation/ticketing/reference-guides/ticket-audit-events-reference/).
# The stored timeline cannot be extended over them: the ticket is read from its first audit.
_RETROACTIVE = frozenset({"CommentPrivacyChange", "CommentRedactionEvent"})
# Zendesk calls the engine's on_hold "hold"; every other status has the same name.
_TO_ZENDESK_STATUS = {"on_hold": "hold"}
# https://developer.zendesk.com/api-reference/ticketing/ticket-management/job_statuses/
_JOB_DONE = frozenset({"completed", "failed", "killed"})
_JOB_ID = re.compile(r"[A-Za-z0-9_-]+")
FIELD_METADATA_SECONDS = 600.0  # ticket_fields are read again after this long
_VENDOR = Vendor(
    "Zendesk",
    not_found="check ZENDESK_SUBDOMAIN or ZENDESK_API_URL and that the API user is an agent with access",
    credentials="check ZENDESK_EMAIL, ZENDESK_API_TOKEN and that the user is an agent",
    describe=lambda response: _describe(response),
)


class ZendeskConnector:
    """The Helpdesk protocol over the Zendesk Ticketing API."""

    name = "zendesk"

    def __init__(
        self,
        subdomain: str,
        email: str,
        api_token: str,
        *,
        api_url: str | None = None,
        field_ids: Mapping[str, int] | None = None,
        group_ids: Mapping[str, int] | None = None,
        timeout: float = 10,
        max_attempts: int = 4,
        backoff_base: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        field_metadata_seconds: float = FIELD_METADATA_SECONDS,
        status_aliases: Mapping[str, str] | None = None,
        pace: Pace | None = None,
        status_labels: Iterable[str] = (),
    ) -> None:
        """Args:
            subdomain: the `acme` of acme.zendesk.com (ZENDESK_SUBDOMAIN).
            email, api_token: an agent's email and API token (ZENDESK_EMAIL, ZENDESK_API_TOKEN).
            api_url: another API root, e.g. the local sandbox "http://127.0.0.1:9100".
            field_ids, group_ids: engine names -> Zendesk custom field ids / group ids.
            timeout: seconds per HTTP request.
            max_attempts: tries per call across 429s, 5xx and network errors.
            backoff_base: first wait of the exponential backoff, in seconds.
            sleep: how to wait (injected by tests).
            monotonic: a monotonic clock in seconds (injected by tests).
            field_metadata_seconds: how long the account's ticket_fields and
                custom_statuses are kept before they are read again.
            status_aliases: the rules' helpdesk status names -> engine statuses; a
                custom status whose agent label is named here keeps its label.
            pace: keeps a run of calls to a share of the API budget (connectors.http.Pace).
            status_labels: custom status labels the rules name; check() reports those no
                custom status of the account has.
        """
        if not subdomain and not api_url:
            raise ConfigurationError(
                "Zendesk subdomain is empty: set ZENDESK_SUBDOMAIN (acme for acme.zendesk.com)")
        if not email or not api_token:
            raise ConfigurationError("Zendesk credentials missing: set ZENDESK_EMAIL and ZENDESK_API_TOKEN")
        root = urlsplit(api_url or f"https://{subdomain}.zendesk.com")
        if root.scheme not in ("http", "https") or not root.netloc:
            raise ConfigurationError(f"ZENDESK_API_URL must look like https://host[:port], got {api_url!r}")
        if root.scheme == "http" and root.hostname not in ("127.0.0.1", "localhost", "::1"):
            log.warning("Zendesk API root %s is plain http: credentials travel unencrypted", api_url)
        session = requests.Session()
        session.auth = (f"{email}/token", api_token)
        session.headers.update({"Accept": "application/json", "User-Agent": "deskpilot"})
        self.http = Http(_VENDOR, f"{root.scheme}://{root.netloc}/api/v2", session, timeout=timeout,
                         max_attempts=max_attempts, backoff_base=backoff_base, sleep=sleep, pace=pace)
        self._field_ids = {name: int(number) for name, number in (field_ids or {}).items()}
        self._group_ids = {name: int(number) for name, number in (group_ids or {}).items()}
        self._field_names = {number: name for name, number in self._field_ids.items()}
        self._group_names = {number: name for name, number in self._group_ids.items()}
        self._monotonic = monotonic
        self._field_metadata_seconds = field_metadata_seconds
        self._field_types: dict[int, FieldType] | None = None
        self._field_types_at = 0.0
        self._status_aliases = dict(status_aliases or {})
        self._custom_statuses: tuple[float, dict[int, dict[str, Any]]] | None = None
        self._status_labels = frozenset(label.casefold() for label in status_labels)

    @classmethod
    def from_settings(cls, settings: Any, mapping: Any = None, **options: Any) -> ZendeskConnector:
        """The registry's factory: credentials from Settings (ZENDESK_SUBDOMAIN, ZENDESK_EMAIL,
        ZENDESK_API_TOKEN, ZENDESK_API_URL), field and group ids from the rule files'
        `helpdesk: zendesk:` section (`mapping`, an engine.rules.HelpdeskMapping)."""
        fields = dict(mapping.fields) if mapping is not None else {}
        groups = dict(mapping.groups) if mapping is not None else {}
        try:
            field_ids = {str(k): int(v) for k, v in fields.items()}
            group_ids = {str(k): int(v) for k, v in groups.items()}
        except (TypeError, ValueError) as err:
            raise ConfigurationError(
                f"helpdesk: zendesk: fields/groups in the rule files must map names to numeric ids: {err}"
            ) from err
        return cls(
            settings.zendesk_subdomain, settings.zendesk_email, settings.zendesk_api_token,
            api_url=settings.zendesk_api_url, field_ids=field_ids, group_ids=group_ids, **options,
        )

    def close(self) -> None:
        """Release pooled HTTP connections."""
        self.http.close()

    # -- Helpdesk protocol -------------------------------------------------

    def check(self) -> list[str]:
        """Configuration problems: the API user (GET users/me.json) and the mapped custom
        fields against the account's ticket_fields. Empty when the connector can work.

        https://developer.zendesk.com/api-reference/ticketing/users/users/#show-the-currently-authenticated-user
        """
        problems: list[str] = []
        try:
            user = self._call("GET", "users/me.json").get("user") or {}
            # Unauthenticated calls get an anonymous user whose id is null.
            if not isinstance(user.get("id"), int):
                problems.append(
                    "GET users/me.json: Zendesk did not identify the API user; check ZENDESK_EMAIL "
                    "and ZENDESK_API_TOKEN"
                )
            elif user.get("role") not in ("agent", "admin"):
                problems.append(f"the API user {user.get('email')!r} is not an agent (role "
                                f"{user.get('role')!r}): it cannot read or update tickets")
            types = self.field_types(refresh=True) if self._field_ids else {}
        except ConnectorError as err:
            return [*problems, str(err)]
        missing = sorted(name for name, number in self._field_ids.items() if number not in types)
        if missing:
            problems.append(
                f"custom field(s) {', '.join(missing)} under helpdesk: zendesk: fields: have ids this "
                "Zendesk account does not have (GET ticket_fields.json)"
            )
        if self._status_labels:
            try:
                known = {str(item.get("agent_label") or "").casefold()
                         for item in self.custom_statuses(refresh=True).values()}
            except ConnectorError as err:
                return [*problems, str(err)]
            problems.extend(unknown_labels(self._status_labels, known, "Zendesk", "GET custom_statuses.json"))
        return problems

    def custom_statuses(self, refresh: bool = False) -> dict[int, dict[str, Any]]:
        """The account's custom ticket statuses by id (GET custom_statuses.json), kept for
        `field_metadata_seconds`; read only when the rules name custom status labels, once
        a ticket carries a custom_status_id.

        https://developer.zendesk.com/api-reference/ticketing/tickets/custom_ticket_statuses/
        """
        now = self._monotonic()
        cached = self._custom_statuses
        if refresh or cached is None or now - cached[0] >= self._field_metadata_seconds:
            page = self._call("GET", "custom_statuses.json")
            cached = (now, {item["id"]: item for item in page.get("custom_statuses") or []
                            if isinstance(item.get("id"), int)})
            self._custom_statuses = cached
        return cached[1]

    def field_types(self, refresh: bool = False) -> dict[int, FieldType]:
        """The account's custom field types by id (GET ticket_fields.json), kept for
        `field_metadata_seconds` and read again after.

        https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_fields/#list-ticket-fields
        """
        now = self._monotonic()
        if refresh or self._field_types is None or now - self._field_types_at >= self._field_metadata_seconds:
            fields: list[dict[str, Any]] = []
            after: str | None = None
            while True:
                params: dict[str, Any] = {"page[size]": 100}
                if after:
                    params["page[after]"] = after
                page = self._call("GET", "ticket_fields.json", params=params)
                fields.extend(page.get("ticket_fields") or [])
                meta = page.get("meta") or {}
                after = meta.get("after_cursor")
                if not meta.get("has_more") or not after:
                    break
            self._field_types, self._field_types_at = field_types_from_zendesk(fields), now
        return self._field_types

    def fetch_ticket(self, ticket_id: str, known: Mapping[str, Any] | None = None) -> RemoteTicket:
        """One ticket read and its audits: all of them (more calls only if they span pages), or
        with `known`, the ticket's stored snapshot, only those after the newest one it holds.

        The stored timeline is taken as it is, without an audits call, when the ticket's
        `updated_at` is still the snapshot's stamp. Whatever the path, the Ticket is the one
        a read from the first audit gives (tests/test_zendesk_incremental_reads.py replays it).
        With custom fields mapped, the account's ticket_fields are read too when the
        cached copy is missing or old (field_types).
        """
        number = _ticket_number(ticket_id)
        ticket = self._call("GET", f"tickets/{number}.json", ticket=True).get("ticket")
        if not isinstance(ticket, dict):
            raise ConnectorError(f"GET tickets/{number}.json: response has no 'ticket' object")
        return self._remote(number, ticket, known)

    def fetch_tickets(self, ticket_ids: Iterable[str], known: Mapping[str, Mapping[str, Any]] | None = None
                      ) -> dict[str, RemoteTicket | ConnectorError]:
        """Several tickets: one GET tickets/show_many.json per 100, then each ticket's audits
        where its stored snapshot (`known`) is not current (as fetch_ticket does).

        A ticket show_many leaves out (deleted, or out of the API user's reach) is read on
        its own, so that its 404 says it is gone. RateLimitedError stops the batch, and so do
        MAX_BATCH_TRANSIENT tickets failing with timeouts or 5xx (each after its retries): the
        tickets not read yet are reported with that error.
        https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#show-multiple-tickets
        """
        known = known or {}
        out: dict[str, RemoteTicket | ConnectorError] = {}
        numbers: dict[str, int] = {}
        for ticket_id in dict.fromkeys(str(tid) for tid in ticket_ids):
            try:
                numbers[ticket_id] = _ticket_number(ticket_id)
            except ValueError as err:
                out[ticket_id] = ConnectorError(str(err))
        limited: RateLimitedError | TransientError | None = None
        transient = 0
        ids = list(numbers)
        for first in range(0, len(ids), MAX_SHOW_MANY):
            chunk = ids[first:first + MAX_SHOW_MANY]
            found: dict[str, dict[str, Any]] = {}
            if limited is None:
                try:
                    page = self._call("GET", "tickets/show_many.json",
                                      params="ids=" + ",".join(str(numbers[tid]) for tid in chunk))
                except RateLimitedError as err:
                    limited = err
                except ConnectorError as err:
                    out.update((tid, err) for tid in chunk)
                    continue
                else:
                    found = {str(item.get("id")): item for item in page.get("tickets") or []
                             if isinstance(item, dict)}
            for ticket_id in chunk:
                if limited is not None:
                    out[ticket_id] = limited
                    continue
                try:
                    if ticket_id in found:
                        out[ticket_id] = self._remote(numbers[ticket_id], found[ticket_id],
                                                      known.get(ticket_id))
                    else:
                        out[ticket_id] = self.fetch_ticket(ticket_id, known.get(ticket_id))
                except RateLimitedError as err:
                    limited = err
                    out[ticket_id] = err
                except TransientError as err:
                    out[ticket_id] = err
                    transient += 1
                    if transient >= MAX_BATCH_TRANSIENT:
                        limited = err  # taken to be down: the rest are not tried
                except ConnectorError as err:
                    out[ticket_id] = err
        return out

    def _remote(self, number: int, ticket: dict[str, Any], known: Mapping[str, Any] | None) -> RemoteTicket:
        """The RemoteTicket of a ticket read (its JSON), its timeline read as far as needed."""
        if not isinstance(ticket.get("updated_at"), str):
            raise ConnectorError(f"Zendesk ticket {number}: the ticket has no updated_at")
        # The ticket's `status` is its custom status's category already; the custom
        # statuses (one cached read) give its label, read only when the rules name labels
        # (status_aliases, status conditions, pause_on).
        wanted = (self._status_aliases or self._status_labels) and ticket.get("custom_status_id") is not None
        try:
            events, resume = self._timeline(number, ticket, known, bool(wanted))
            types = self.field_types() if self._field_ids else {}
            statuses = self.custom_statuses() if wanted else {}
            engine_ticket = ticket_from_zendesk(
                ticket, (), {}, field_names=self._field_names, group_names=self._group_names,
                field_types=types, custom_statuses=statuses, status_aliases=self._status_aliases,
                prior_events=events,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConnectorError(f"Zendesk ticket {number}: unexpected payload ({err!r})") from err
        read_only = None
        if ticket.get("status") == "closed":
            # https://support.zendesk.com/hc/en-us/articles/4408887617050 : a closed
            # ticket accepts no update (422 "Status: closed prevents ticket update").
            read_only = "closed in Zendesk, which refuses every update of a closed ticket"
        return RemoteTicket(ticket=engine_ticket, stamp=ticket.get("updated_at"), raw=ticket,
                            read_only=read_only, resume=resume)

    def _timeline(self, number: int, ticket: Mapping[str, Any], known: Mapping[str, Any] | None,
                  custom: bool) -> tuple[list[Event], dict[str, Any] | None]:
        """The ticket's events and where the next read may resume.

        From the stored snapshot when its stamp is the ticket's updated_at (no call); from its
        events up to the newest audit it holds plus the audits after it (the cursor after that
        audit); else from every audit. Custom statuses the rules name put labels on status
        events that the stored rows do not keep: such tickets are always read in full.
        """
        statuses = self.custom_statuses() if custom else {}
        base = None if custom else _stored_base(ticket, known)
        if base is not None and base[1] is not None:
            # Only a snapshot with a marker: its timeline was read without custom status labels.
            rows, marker = base
            if _same_instant(ticket.get("updated_at"), known.get("stamp")):  # type: ignore[union-attr]
                return events_from_rows(rows), marker  # nothing happened since the snapshot
            extended = self._after(number, rows, marker)  # type: ignore[arg-type]
            if extended is not None:
                return extended
        audits, users, cursor = self.audits_page(number)
        events = audit_events(audits, users, custom_statuses=statuses, status_aliases=self._status_aliases)
        return events, (None if custom else _marker(audits, cursor, len(events), None))

    def _after(self, number: int, rows: list[Any], marker: Mapping[str, Any]
               ) -> tuple[list[Event], dict[str, Any] | None] | None:
        """The stored events up to the marker's audit plus those of the audits after it, or None
        when they cannot be trusted to give what a full read gives (then the caller reads all)."""
        try:
            audits, users, cursor = self.audits_page(number, after=str(marker["after"]))
        except (NotFoundError, RateLimitedError, TransientError, ConfigurationError):
            raise
        except ConnectorError as err:  # e.g. 400 for a cursor Zendesk no longer accepts
            log.info("Zendesk ticket %s: audits after the stored one not read (%s); reading all", number, err)
            return None
        newest, since = int(marker["audit"]), int(marker["at"])
        for audit in audits:
            if not isinstance(audit.get("id"), int) or audit["id"] <= newest or _audit_epoch(audit) < since:
                log.info("Zendesk ticket %s: audits after %s do not follow it; reading all", number, newest)
                return None
            if any(event.get("type") in _RETROACTIVE for event in audit.get("events") or ()):
                return None  # a comment made private or redacted: earlier events changed
        prior = events_from_rows(rows[:int(marker["events"])])
        events = prior + audit_events(audits, users, status_aliases=self._status_aliases)
        return events, _marker(audits, cursor, len(events), marker)

    def extend(self, snapshot: Mapping[str, Any], payloads: Iterable[Mapping[str, Any]]
               ) -> RemoteTicket | None:
        """The stored ticket extended by its queued webhooks, without a read; None when they do not
        suffice (connectors/zendesk/timeline.py says when) and the ticket must be read."""
        if self._status_aliases or self._status_labels:
            # A custom status label the rules name is not in the webhook (nor in the snapshot).
            return None
        types = self.field_types() if self._field_ids else {}
        extended = extend_ticket(snapshot, payloads, field_names=self._field_names,
                                 group_names=self._group_names, field_types=types)
        if extended is None:
            return None
        ticket, stamp = extended
        read_only = None
        if ticket.status == "closed":
            read_only = "closed in Zendesk, which refuses every update of a closed ticket"
        # The webhooks' events follow the stored ones: the stored marker still says where the
        # audits the snapshot holds end.
        resume = snapshot.get("resume")
        return RemoteTicket(ticket=ticket, stamp=stamp, raw={}, read_only=read_only,
                            resume=dict(resume) if isinstance(resume, Mapping) else None)

    def prepare(self, remote: RemoteTicket, changes: TicketChanges) -> TicketChanges:
        """Field values in each field's own format (a dropdown's tag for its title, a date
        field's day for an instant), without those the ticket already holds; tags it has
        are not added again."""
        types = self.field_types() if changes.fields else {}

        def kind_of(name: str) -> FieldType:
            number = self._field_ids.get(name)
            return types.get(number, FieldType()) if number is not None else FieldType()

        return prepared(remote, changes, kind_of)

    def apply(self, remote: RemoteTicket, changes: TicketChanges) -> None:
        """Write `changes` as a safe update; on success `remote.stamp`/`raw` hold the new state.

        Raises ConflictError if the ticket changed since `remote` was read.
        """
        if changes.is_empty():
            return
        if not remote.stamp:
            raise ConnectorError(
                f"ticket {remote.ticket.id}: no updated_at stamp to make a safe update; "
                "read it with fetch_ticket() first"
            )
        number = _ticket_number(remote.ticket.id)
        first = self._ticket_fields(changes)  # validates names before anything is written
        # A Zendesk update carries one `comment` object, not a list, so when both
        # are present the public reply rides with the field changes and the
        # internal note follows in a second safe update stamped with the first
        # update's updated_at. If someone edits the ticket in between, the note
        # fails with ConflictError and the re-read shows the reply already there.
        # https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#update-ticket
        comments = []
        if changes.reply:
            comments.append({"body": signed(changes.reply), "public": True})
        if changes.note:
            comments.append({"body": signed(changes.note), "public": False})
        if comments:
            first["comment"] = comments[0]
        updates = [first] + [{"comment": comment} for comment in comments[1:]]
        for body in updates:
            # https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#protecting-against-ticket-update-collisions
            # A replayed PUT (after a timeout that hid a success) carries a stale
            # stamp, so Zendesk answers 409 instead of posting the comment twice.
            body.update(safe_update=True, updated_stamp=remote.stamp)
            answer = self._call("PUT", f"tickets/{number}.json", {"ticket": body}, ticket=True)
            ticket = answer.get("ticket")
            if not isinstance(ticket, dict) or not ticket.get("updated_at"):
                raise ConnectorError(f"PUT tickets/{number}.json: response has no ticket.updated_at")
            remote.stamp, remote.raw = ticket["updated_at"], ticket

    def write_parts(self, changes: TicketChanges) -> list[TicketChanges]:
        """`changes` as the ticket updates apply() makes, one vendor call each (for the outbox).

        A Zendesk update carries one comment: the public reply (else the note)
        rides with the field changes, and the note follows on its own.
        """
        if changes.is_empty():
            return []
        first = TicketChanges(priority=changes.priority, status=changes.status, group=changes.group,
                              add_tags=changes.add_tags, fields=dict(changes.fields),
                              reply=changes.reply, note=None if changes.reply else changes.note)
        return [first] + ([TicketChanges(note=changes.note)] if changes.reply and changes.note else [])

    def has_comment(self, ticket_id: str, body: str, *, public: bool, since: int) -> bool:
        """Whether the bot posted `body` (public or internal) at or after `since` (epoch seconds).

        Read from the ticket's audits, so a resumed write can tell whether a
        call whose answer was lost reached Zendesk.
        """
        number = _ticket_number(ticket_id)
        audits, _users = self.audits(number)
        # The bot's comments are the signed ones, whoever the API user is.
        wanted = {" ".join(body.split()), " ".join(signed(body).split())}
        for audit in audits:
            if _audit_epoch(audit) < since:
                continue
            for event in audit.get("events") or ():
                if (event.get("type") == "Comment" and bool(event.get("public")) == public
                        and " ".join(str(event.get("body") or "").split()) in wanted):
                    return True
        return False

    # -- Bulk and incremental calls ----------------------------------------

    def update_many(
        self,
        ticket_ids: Iterable[str],
        *,
        status: str | None = None,
        add_tags: Iterable[str] = (),
        comment: str | None = None,
        public: bool = True,
    ) -> str:
        """Queue one bulk update of up to 100 tickets; returns the Zendesk job id.

        No safe update exists for bulk jobs, so a lost answer is not replayed
        (see _call's replay_safe): poll job_status() instead.
        """
        numbers = [_ticket_number(ticket_id) for ticket_id in ticket_ids]
        if not numbers:
            raise ValueError("update_many needs at least one ticket id")
        if len(numbers) > MAX_BULK_IDS:
            raise ValueError(
                f"update_many takes at most {MAX_BULK_IDS} ticket ids per call, got {len(numbers)}: "
                "split the list"
            )
        body: dict[str, Any] = {}
        if status:
            body["status"] = _TO_ZENDESK_STATUS.get(status, status)
        tags = list(dict.fromkeys(add_tags))
        if tags:
            body["additional_tags"] = tags
        if comment:
            body["comment"] = {"body": signed(comment), "public": public}
        if not body:
            raise ValueError("update_many needs a status, tags to add or a comment")
        # The ids go in the query as Zendesk documents them: ids=1,2,3 (commas as is).
        answer = self._call("PUT", "tickets/update_many.json", {"ticket": body},
                            params="ids=" + ",".join(map(str, numbers)), replay_safe=False)
        job = answer.get("job_status")
        if not isinstance(job, dict) or not job.get("id"):
            raise ConnectorError("PUT tickets/update_many.json: response has no job_status.id")
        return str(job["id"])

    def bulk_writes_per_ticket(self, *, reply: str | None, note: str | None) -> int:
        """Ticket updates close_many makes per ticket (what the write budget counts)."""
        return 2 if reply and note else 1

    def can_close_in_bulk(self, add_tags: Iterable[str] = ()) -> bool:
        """Zendesk's bulk update adds tags (additional_tags) without replacing: always."""
        return True

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
        """Give up to 100 tickets the same status, tags, public reply and internal note.

        One update_many for status, tags and reply, then, for the tickets it
        updated, one for the note (a ticket update holds one comment). Returns
        ticket id -> None when updated, else Zendesk's error. The note is the
        bot's explanation: a failure to add it is logged, not returned.
        Raises TransientError when the first job is not done after `wait_seconds`.
        """
        ids = [str(ticket_id) for ticket_id in ticket_ids]
        job = self.update_many(ids, status=status, add_tags=add_tags, comment=reply, public=True)
        results = _job_results(ids, self.wait_for_job(job, wait_seconds))
        done = [ticket_id for ticket_id, error in results.items() if error is None]
        if note and done:
            try:
                noted = _job_results(
                    done, self.wait_for_job(self.update_many(done, comment=note, public=False),
                                            wait_seconds)
                )
            except ConnectorError as err:
                log.warning("internal notes on %d closed tickets not confirmed: %s", len(done), err)
            else:
                for ticket_id, error in noted.items():
                    if error is not None:
                        log.warning("ticket %s: closed, but its internal note failed: %s", ticket_id, error)
        return results

    # Every update is a safe update (updated_stamp): a change made meanwhile is refused with 409.
    safe_updates = True
    notes_in_bulk = True  # note_many is one bulk job per 100 tickets (what the write budget counts)

    def note_many(self, ticket_ids: Iterable[str], note: str, *, wait_seconds: float = 60
                  ) -> dict[str, str | None]:
        """One internal note on up to 100 tickets (one bulk job); ticket id -> None when added, else the
        error. Raises TransientError when the job is not done after `wait_seconds`."""
        ids = [str(ticket_id) for ticket_id in ticket_ids]
        job = self.update_many(ids, comment=note, public=False)
        return _job_results(ids, self.wait_for_job(job, wait_seconds))

    def wait_for_job(self, job_id: str, wait_seconds: float = 60) -> dict[str, Any]:
        """Poll job_status (1 s, 2 s, 4 s, ... apart) until it is completed, failed or killed."""
        return self.http.poll(lambda: self.job_status(job_id), lambda job: job.get("status") in _JOB_DONE,
                              f"job {job_id}", wait_seconds)

    def job_status(self, job_id: str) -> dict[str, Any]:
        """The Zendesk job status object (status, progress, total, results)."""
        if not _JOB_ID.fullmatch(job_id or ""):
            raise ValueError(f"not a Zendesk job id: {job_id!r}")
        job = self._call("GET", f"job_statuses/{job_id}.json").get("job_status")
        if not isinstance(job, dict):
            raise ConnectorError(f"GET job_statuses/{job_id}.json: response has no 'job_status'")
        return job

    def changed_since(self, cursor: str | None, since: datetime) -> ChangePage:
        """One page of the cursor-based incremental ticket export (from `cursor`, else from `since`).

        Deleted tickets are listed by the export with status "deleted": they
        come back in `deleted_ids`, never to be fetched. Zendesk allows 10 export
        requests a minute and refuses a start time within the last minute.
        https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/#incremental-ticket-export-cursor-based
        """
        params = {"cursor": cursor} if cursor else {"start_time": to_epoch(since)}
        page = self._call("GET", "incremental/tickets/cursor.json", params=params)
        live: dict[str, None] = {}
        deleted: dict[str, None] = {}
        stamps: dict[str, str] = {}
        for ticket in page.get("tickets") or []:
            (deleted if ticket.get("status") == "deleted" else live)[str(ticket["id"])] = None
            if ticket.get("updated_at"):
                stamps[str(ticket["id"])] = str(ticket["updated_at"])
        ids = [tid for tid in live if tid not in deleted]
        return ChangePage(
            ticket_ids=ids, deleted_ids=list(deleted),
            cursor=page.get("after_cursor") or cursor, done=bool(page.get("end_of_stream")),
            updated_at={tid: stamps[tid] for tid in ids if tid in stamps},
        )

    # -- HTTP ----------------------------------------------------------------

    def audits(self, number: int) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
        """All audits of a ticket (cursor pages of 100) and the sideloaded users by id."""
        audits, users, _cursor = self.audits_page(number)
        return audits, users

    def audits_page(self, number: int, after: str | None = None
                    ) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]], str | None]:
        """The audits of a ticket from the start, or after the cursor `after`, oldest first
        (cursor pages of 100), the sideloaded users by id, and the last page's after_cursor:
        the point after the newest audit, where a later read resumes (None when Zendesk gave none).

        https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_audits/#list-audits-for-a-ticket
        https://developer.zendesk.com/api-reference/introduction/pagination/
        """
        audits: list[dict[str, Any]] = []
        users: dict[int, dict[str, Any]] = {}
        seen: set[str] = set()
        cursor = after
        while True:
            # Audits sideload their users (role tells customers from agents):
            # https://developer.zendesk.com/documentation/ticketing/using-the-zendesk-api/side_loading/
            # The next page is built from meta.after_cursor rather than
            # links.next, so credentials only ever go to the configured host.
            params: dict[str, Any] = {"include": "users", "page[size]": 100}
            if after:
                params["page[after]"] = after
            page = self._call("GET", f"tickets/{number}/audits.json", params=params, ticket=True)
            found = page.get("audits") or []
            audits.extend(found)
            users.update({user["id"]: user for user in page.get("users") or [] if "id" in user})
            meta = page.get("meta") or {}
            after = meta.get("after_cursor")
            if found or after:
                # An empty page (nothing after the cursor) may come without cursors: the old one holds.
                cursor = after if isinstance(after, str) and after else None
            if not meta.get("has_more") or not after:
                return audits, users, cursor
            if after in seen:
                raise ConnectorError(f"GET tickets/{number}/audits.json: cursor {after!r} repeats")
            seen.add(after)

    def users(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Users by id, 100 a call (GET users/show_many.json); deleted ones are absent.

        https://developer.zendesk.com/api-reference/ticketing/users/users/#show-many-users
        """
        wanted = sorted({int(uid) for uid in ids})
        found: dict[int, dict[str, Any]] = {}
        for first in range(0, len(wanted), 100):
            chunk = ",".join(str(uid) for uid in wanted[first:first + 100])
            page = self._call("GET", "users/show_many.json", params={"ids": chunk})
            found.update({user["id"]: user for user in page.get("users") or [] if "id" in user})
        return found

    def _call(
        self, method: str, path: str, payload: dict[str, Any] | None = None, *,
        params: Mapping[str, Any] | str | None = None, replay_safe: bool = True, ticket: bool = False,
        kind: str = "api",
    ) -> dict[str, Any]:
        """One API call through the shared HTTP layer; the decoded JSON object.

        `replay_safe=False` keeps requests that may have reached Zendesk from being
        sent twice; `ticket` marks the ticket's own endpoints (a 404 there means gone).
        """
        answer = self.http.json(method, path, params=params, body=payload, replay_safe=replay_safe,
                                ticket=ticket, kind=kind)
        if not isinstance(answer, dict):
            raise ConnectorError(f"Zendesk {method} {path}: the answer is not a JSON object")
        return answer

    def _ticket_fields(self, changes: TicketChanges) -> dict[str, Any]:
        """The non-comment part of a ticket update, with names mapped to Zendesk ids."""
        body: dict[str, Any] = {}
        if changes.priority:
            body["priority"] = changes.priority
        if changes.status:
            body["status"] = _TO_ZENDESK_STATUS.get(changes.status, changes.status)
        if changes.group:
            if changes.group not in self._group_ids:
                raise ConfigurationError(
                    f"unknown Zendesk group {changes.group!r}: add its id under helpdesk: zendesk: "
                    "groups: in the rule files"
                )
            body["group_id"] = self._group_ids[changes.group]
        if changes.add_tags:
            # additional_tags adds to the current tags instead of replacing them,
            # so a concurrent tag edit is not clobbered.
            # https://developer.zendesk.com/documentation/ticketing/managing-tickets/adding-tags-to-tickets-without-overwriting-existing-tags/
            body["additional_tags"] = list(dict.fromkeys(changes.add_tags))
        if changes.fields:
            unknown = sorted(set(changes.fields) - set(self._field_ids))
            if unknown:
                raise ConfigurationError(
                    f"unknown Zendesk custom field {', '.join(map(repr, unknown))}: add its id under "
                    "helpdesk: zendesk: fields: in the rule files"
                )
            body["custom_fields"] = [
                {"id": self._field_ids[name], "value": value} for name, value in changes.fields.items()
            ]
        return body


def _job_results(ids: list[str], job: Mapping[str, Any]) -> dict[str, str | None]:
    """Ticket id -> None (updated) or the error, from a finished job's `results`."""
    outcome: dict[str, str | None] = {
        ticket_id: f"no result in Zendesk job {job.get('id')} ({job.get('status')})" for ticket_id in ids
    }
    for result in job.get("results") or []:
        ticket_id = str(result.get("id"))
        if ticket_id not in outcome:
            continue
        if result.get("success", result.get("status") in ("Updated", "Unchanged")):
            outcome[ticket_id] = None
        else:
            outcome[ticket_id] = " - ".join(
                str(result[key]) for key in ("error", "details") if result.get(key)
            ) or "failed"
    return outcome


def _audit_epoch(audit: Mapping[str, Any]) -> int:
    try:
        return int(datetime.fromisoformat(str(audit.get("created_at")).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def _ticket_number(ticket_id: str | int) -> int:
    text = str(ticket_id).strip()
    if not text.isdigit():
        raise ValueError(f"Zendesk ticket ids are numbers, got {ticket_id!r}")
    return int(text)


def _describe(response: requests.Response | None) -> str:
    """Zendesk's `error`/`description`/`details` from an error body, shortened."""
    if response is None:
        return "no response"
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if not isinstance(body, dict):
        return str(body)[:200]
    parts = [str(body[key]) for key in ("error", "description") if body.get(key)]
    if body.get("details"):
        parts.append(json.dumps(body["details"])[:200])
    return " - ".join(parts) or str(body)[:200]


def _stored_base(ticket: Mapping[str, Any], known: Mapping[str, Any] | None
                 ) -> tuple[list[Any], dict[str, Any] | None] | None:
    """The stored snapshot's event rows and its resume marker (None when unusable), or None
    when the snapshot is not this ticket's or has no timeline."""
    if not isinstance(known, Mapping) or str(known.get("id")) != str(ticket.get("id")):
        return None
    rows = known.get("events")
    if not isinstance(rows, list) or "created_at" not in known:
        return None
    marker = known.get("resume")
    usable = isinstance(marker, Mapping) and all(
        isinstance(marker.get(key), int) and not isinstance(marker.get(key), bool)
        for key in ("audit", "at", "events")) and isinstance(marker.get("after"), str) and marker["after"]
    if not usable or not 0 <= marker["events"] <= len(rows):  # type: ignore[index]
        marker = None
    return rows, (dict(marker) if marker is not None else None)  # type: ignore[arg-type]


def _marker(audits: list[dict[str, Any]], cursor: str | None, events: int,
            previous: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Where the next read resumes: the newest audit read (id, created_at), the cursor after it,
    and how many of the timeline's events its audits make; `previous` when no audit is new."""
    if not audits:
        if previous is None:
            return None
        return {**previous, "after": cursor or previous["after"], "events": events}
    newest = audits[-1]
    if cursor is None or not isinstance(newest.get("id"), int):
        return None
    return {"audit": newest["id"], "at": _audit_epoch(newest), "after": cursor, "events": events}


def _same_instant(a: Any, b: Any) -> bool:
    """Two Zendesk timestamps name the same instant (both present)."""
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    try:
        return datetime.fromisoformat(a.replace("Z", "+00:00")) == datetime.fromisoformat(
            b.replace("Z", "+00:00"))
    except ValueError:
        return False
