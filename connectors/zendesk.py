"""Zendesk connector: zenpy transport, ticket and audit reads, safe updates, bulk jobs."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from zenpy import Zenpy
from zenpy.lib.api import Api
from zenpy.lib.endpoint import EndpointFactory, Url
from zenpy.lib.exception import APIException, ZenpyException

from connectors.base import (
    ConflictError,
    ConnectorError,
    NotFoundError,
    RateLimitedError,
    RemoteTicket,
    TicketChanges,
    TransientError,
)
from connectors.zendesk_tickets import ticket_from_zendesk
from console import metrics

log = logging.getLogger(__name__)

# https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#update-many-tickets
MAX_BULK_IDS = 100
# Zendesk calls the engine's on_hold "hold"; every other status has the same name.
_TO_ZENDESK_STATUS = {"on_hold": "hold"}
_TICKETS = EndpointFactory("tickets")
_USERS = EndpointFactory("users")
_JOB_STATUSES = EndpointFactory("job_statuses")
# https://developer.zendesk.com/api-reference/ticketing/ticket-management/job_statuses/
_JOB_DONE = frozenset({"completed", "failed", "killed"})
_JOB_ID = re.compile(r"[A-Za-z0-9_-]+")
_API_CONFIG_KEYS = (
    "domain", "subdomain", "session", "timeout", "ratelimit", "ratelimit_budget",
    "ratelimit_request_interval", "cache",
)


class _Throttled(Exception):
    """A 429 taken out of zenpy's hands (see _ThrottleSession)."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__("HTTP 429")
        self.response = response


class _ThrottleSession(requests.Session):
    """A session that raises on 429 before zenpy sees the response.

    zenpy's BaseApi._call_api answers a 429 by calling time.sleep(1) once per
    Retry-After second and retrying for as long as Zendesk keeps refusing;
    raising here keeps the wait injectable and the attempts bounded. Passing
    our own session also keeps zenpy from mounting its urllib3 Retry adapter
    (3 hidden retries on 413/503), so the connector's policy is the only one.
    """

    def request(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().request(method, url, *args, **kwargs)
        metrics.vendor_request("zendesk", method, response.status_code)
        if response.status_code == 429:
            raise _Throttled(response)
        return response


class _RootedApi(Api):
    """zenpy's generic Api aimed at one API root (https://acme.zendesk.com or the sandbox).

    BaseApi._build_url takes the scheme from `protocol` and the host from the
    `base_url` property (normally "{subdomain}.zendesk.com"); overriding those
    two lets the same zenpy code path talk to http://127.0.0.1:9100.
    """

    def __init__(self, client: Zenpy, scheme: str, netloc: str) -> None:
        config = {key: getattr(client.tickets, key) for key in _API_CONFIG_KEYS}
        super().__init__(config, object_type="ticket")
        self.protocol = scheme
        self._netloc = netloc

    @property
    def base_url(self) -> str:
        return self._netloc


class ZendeskConnector:
    """The Helpdesk protocol over the Zendesk Ticketing API, through zenpy."""

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
        bot_user_id: int | None = None,
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
            bot_user_id: the API user's id, whose comments are Deskpilot's own
                (`Event.bot`); None looks it up once with GET users/me.json.
        """
        if not subdomain and not api_url:
            raise ValueError("Zendesk subdomain is empty: set ZENDESK_SUBDOMAIN (acme for acme.zendesk.com)")
        if not email or not api_token:
            raise ValueError("Zendesk credentials missing: set ZENDESK_EMAIL and ZENDESK_API_TOKEN")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        root = urlsplit(api_url or f"https://{subdomain}.zendesk.com")
        if root.scheme not in ("http", "https") or not root.netloc:
            raise ValueError(f"ZENDESK_API_URL must look like https://host[:port], got {api_url!r}")
        if root.scheme == "http" and root.hostname not in ("127.0.0.1", "localhost", "::1"):
            log.warning("Zendesk API root %s is plain http: credentials travel unencrypted", api_url)
        client = Zenpy(
            subdomain=subdomain or root.hostname, email=email, token=api_token,
            session=_ThrottleSession(), timeout=timeout, disable_cache=True,
        )
        self._api = _RootedApi(client, root.scheme, root.netloc)
        self._field_ids = {name: int(number) for name, number in (field_ids or {}).items()}
        self._group_ids = {name: int(number) for name, number in (group_ids or {}).items()}
        self._field_names = {number: name for name, number in self._field_ids.items()}
        self._group_names = {number: name for name, number in self._group_ids.items()}
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._sleep = sleep
        self._bot_user_id = bot_user_id

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> ZendeskConnector:
        """Build from environment-style settings (os.environ or the app config).

        Reads ZENDESK_SUBDOMAIN, ZENDESK_EMAIL, ZENDESK_API_TOKEN and the optional
        ZENDESK_API_URL, ZENDESK_FIELD_IDS and ZENDESK_GROUP_IDS (JSON objects
        mapping engine names to Zendesk ids, e.g. {"tier": 360001234567}).
        """
        return cls(
            settings.get("ZENDESK_SUBDOMAIN", ""),
            settings.get("ZENDESK_EMAIL", ""),
            settings.get("ZENDESK_API_TOKEN", ""),
            api_url=settings.get("ZENDESK_API_URL") or None,
            field_ids=_id_map(settings, "ZENDESK_FIELD_IDS"),
            group_ids=_id_map(settings, "ZENDESK_GROUP_IDS"),
        )

    def close(self) -> None:
        """Release pooled HTTP connections."""
        self._api.session.close()

    # -- Helpdesk protocol -------------------------------------------------

    def bot_user_id(self) -> int:
        """The API user's id (comments by it are Deskpilot's); asked once, then cached.

        https://developer.zendesk.com/api-reference/ticketing/users/users/#show-the-currently-authenticated-user
        """
        if self._bot_user_id is None:
            user = self._call("get", _USERS.me()).get("user") or {}
            # Unauthenticated calls get an anonymous user whose id is null.
            if not isinstance(user.get("id"), int):
                raise ConnectorError(
                    "GET users/me.json: Zendesk did not identify the API user; check ZENDESK_EMAIL "
                    "and ZENDESK_API_TOKEN"
                )
            self._bot_user_id = user["id"]
        return self._bot_user_id

    def fetch_ticket(self, ticket_id: str) -> RemoteTicket:
        """One ticket read and one audits read (more only if the audits span pages).

        The very first fetch also asks who the API user is (bot_user_id).
        """
        number = _ticket_number(ticket_id)
        ticket = self._call("get", _TICKETS(id=number)).get("ticket")
        if not isinstance(ticket, dict):
            raise ConnectorError(f"GET tickets/{number}.json: response has no 'ticket' object")
        audits, users = self._audits(number)
        bot = self.bot_user_id()
        try:
            engine_ticket = ticket_from_zendesk(
                ticket, audits, users, field_names=self._field_names, group_names=self._group_names,
                bot_user_id=bot,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConnectorError(f"Zendesk ticket {number}: unexpected payload ({err!r})") from err
        return RemoteTicket(ticket=engine_ticket, stamp=ticket.get("updated_at"), raw=ticket)

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
            comments.append({"body": changes.reply, "public": True})
        if changes.note:
            comments.append({"body": changes.note, "public": False})
        if comments:
            first["comment"] = comments[0]
        updates = [first] + [{"comment": comment} for comment in comments[1:]]
        for body in updates:
            # https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#protecting-against-ticket-update-collisions
            # A replayed PUT (after a timeout that hid a success) carries a stale
            # stamp, so Zendesk answers 409 instead of posting the comment twice.
            body.update(safe_update=True, updated_stamp=remote.stamp)
            answer = self._call("put", _TICKETS(id=number), {"ticket": body})
            ticket = answer.get("ticket")
            if not isinstance(ticket, dict) or not ticket.get("updated_at"):
                raise ConnectorError(f"PUT tickets/{number}.json: response has no ticket.updated_at")
            remote.stamp, remote.raw = ticket["updated_at"], ticket

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
            body["comment"] = {"body": comment, "public": public}
        if not body:
            raise ValueError("update_many needs a status, tags to add or a comment")
        # zenpy's PrimaryEndpoint turns `ids` into /show_many.json, so the
        # update_many?ids= form is spelled with zenpy's Url directly.
        url = Url("tickets/update_many.json", params={"ids": ",".join(map(str, numbers))})
        answer = self._call("put", url, {"ticket": body}, replay_safe=False)
        job = answer.get("job_status")
        if not isinstance(job, dict) or not job.get("id"):
            raise ConnectorError("PUT tickets/update_many.json: response has no job_status.id")
        return str(job["id"])

    def writes_for(self, changes: TicketChanges) -> int:
        """Ticket updates apply() makes for `changes` (what the write budget counts)."""
        if changes.is_empty():
            return 0
        return 2 if changes.reply and changes.note else 1

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

    def wait_for_job(self, job_id: str, wait_seconds: float = 60) -> dict[str, Any]:
        """Poll job_status (1 s, 2 s, 4 s, ... apart) until it is completed, failed or killed."""
        waited, pause = 0.0, 1.0
        while True:
            job = self.job_status(job_id)
            if job.get("status") in _JOB_DONE:
                return job
            if waited >= wait_seconds:
                raise TransientError(
                    f"Zendesk job {job_id} still {job.get('status')!r} after {waited:g}s; "
                    "its tickets are checked again later"
                )
            self._sleep(pause)
            waited += pause
            pause = min(pause * 2, 10.0)

    def job_status(self, job_id: str) -> dict[str, Any]:
        """The Zendesk job status object (status, progress, total, results)."""
        if not _JOB_ID.fullmatch(job_id or ""):
            raise ValueError(f"not a Zendesk job id: {job_id!r}")
        job = self._call("get", _JOB_STATUSES(id=job_id)).get("job_status")
        if not isinstance(job, dict):
            raise ConnectorError(f"GET job_statuses/{job_id}.json: response has no 'job_status'")
        return job

    def changed_since(self, cursor: str | None, start_time: int) -> tuple[list[str], str | None, bool]:
        """One page of the cursor-based incremental ticket export.

        Returns (ticket ids, cursor for the next call, end_of_stream). Deleted
        tickets are listed too (fetching them raises NotFoundError). Zendesk
        allows 10 export requests a minute: call again after end_of_stream
        with the returned cursor, not in a tight loop.
        https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/#incremental-ticket-export-cursor-based
        """
        if cursor:
            endpoint = _TICKETS.incremental.cursor(cursor=quote(cursor, safe=""))
        else:
            endpoint = _TICKETS.incremental.cursor_start(start_time=int(start_time))
        page = self._call("get", endpoint)
        ids = [str(ticket["id"]) for ticket in page.get("tickets") or []]
        return list(dict.fromkeys(ids)), page.get("after_cursor") or cursor, bool(page.get("end_of_stream"))

    # -- HTTP ----------------------------------------------------------------

    def _audits(self, number: int) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
        """All audits of a ticket (cursor pages of 100) and the sideloaded users by id."""
        audits: list[dict[str, Any]] = []
        users: dict[int, dict[str, Any]] = {}
        seen: set[str] = set()
        after: str | None = None
        while True:
            # Audits sideload their users (role tells customers from agents):
            # https://developer.zendesk.com/documentation/ticketing/using-the-zendesk-api/side_loading/
            # The next page is built from meta.after_cursor rather than
            # links.next, so credentials only ever go to the configured host.
            params = {"include": "users", "cursor_pagination": True}
            if after:
                params["page[after]"] = quote(after, safe="")
            page = self._call("get", _TICKETS.audits(number, **params))
            audits.extend(page.get("audits") or [])
            users.update({user["id"]: user for user in page.get("users") or [] if "id" in user})
            meta = page.get("meta") or {}
            after = meta.get("after_cursor")
            if not meta.get("has_more") or not after:
                return audits, users
            if after in seen:
                raise ConnectorError(f"GET tickets/{number}/audits.json: cursor {after!r} repeats")
            seen.add(after)

    def _call(
        self, method: str, endpoint: Url, payload: dict[str, Any] | None = None, *, replay_safe: bool = True
    ) -> dict[str, Any]:
        """One API call through zenpy with the connector's retry policy; the decoded JSON.

        zenpy's BaseApi._call_api is its single path to the wire ("All
        communication with Zendesk should go through this method"); its
        response objects are skipped because the connector needs the raw JSON
        (sideloads, cursors, updated_at). `replay_safe=False` keeps requests
        that may have reached Zendesk from being sent twice.
        """
        url = self._api._build_url(endpoint)
        what = f"{method.upper()} {urlsplit(url).path}"
        kwargs: dict[str, Any] = {"timeout": self._api.timeout}
        if payload is not None:
            kwargs["json"] = payload
        http_method = getattr(self._api.session, method)
        for attempt in range(self._max_attempts):
            last = attempt == self._max_attempts - 1
            try:
                response = self._api._call_api(http_method, url, **kwargs)
            except _Throttled as err:
                wait = _retry_after(err.response, self._backoff(attempt))
                if last:
                    raise RateLimitedError(
                        f"{what}: Zendesk rate limit after {self._max_attempts} attempts; "
                        f"retry after {wait:g}s", retry_after=wait,
                    ) from err
                log.warning("%s: rate limited, waiting %gs (attempt %d)", what, wait, attempt + 1)
                metrics.rate_limit_wait("zendesk", wait)
                self._sleep(wait)
                continue
            except (APIException, requests.HTTPError) as err:
                status = err.response.status_code if err.response is not None else None
                if status is not None and status >= 500 and not last:
                    self._wait_before_retry(what, f"HTTP {status}", attempt)
                    continue
                raise _http_error(what, status, err.response, self._max_attempts) from err
            except (requests.Timeout, requests.ConnectionError) as err:
                # A connect timeout never reached Zendesk; anything else may have.
                if last or not (replay_safe or isinstance(err, requests.ConnectTimeout)):
                    raise TransientError(f"{what}: {type(err).__name__} talking to Zendesk") from err
                self._wait_before_retry(what, type(err).__name__, attempt)
                continue
            except (ZenpyException, requests.RequestException) as err:
                raise ConnectorError(f"{what}: {type(err).__name__}: {err}") from err
            try:
                return response.json()
            except ValueError as err:
                raise ConnectorError(f"{what}: Zendesk answered {response.status_code} without JSON") from err
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        return self._backoff_base * 2**attempt

    def _wait_before_retry(self, what: str, reason: str, attempt: int) -> None:
        wait = self._backoff(attempt)
        log.warning("%s: %s, retrying in %gs (attempt %d)", what, reason, wait, attempt + 1)
        self._sleep(wait)

    def _ticket_fields(self, changes: TicketChanges) -> dict[str, Any]:
        """The non-comment part of a ticket update, with names mapped to Zendesk ids."""
        body: dict[str, Any] = {}
        if changes.priority:
            body["priority"] = changes.priority
        if changes.status:
            body["status"] = _TO_ZENDESK_STATUS.get(changes.status, changes.status)
        if changes.group:
            if changes.group not in self._group_ids:
                raise ConnectorError(
                    f"unknown Zendesk group {changes.group!r}: add it to the group ids in the "
                    "configuration (ZENDESK_GROUP_IDS)"
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
                raise ConnectorError(
                    f"unknown Zendesk custom field {', '.join(map(repr, unknown))}: add it to the "
                    "field ids in the configuration (ZENDESK_FIELD_IDS)"
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


def _ticket_number(ticket_id: str | int) -> int:
    text = str(ticket_id).strip()
    if not text.isdigit():
        raise ValueError(f"Zendesk ticket ids are numbers, got {ticket_id!r}")
    return int(text)


def _retry_after(response: requests.Response, default: float) -> float:
    """Seconds from Retry-After (Zendesk sends whole seconds), else `default`.

    https://developer.zendesk.com/api-reference/introduction/rate-limits/
    """
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return default
    return seconds if seconds >= 0 else default


def _http_error(
    what: str, status: int | None, response: requests.Response | None, attempts: int
) -> ConnectorError:
    if status == 404:
        return NotFoundError(f"{what}: not found in Zendesk (deleted, merged or never existed)")
    if status == 409:
        return ConflictError(
            f"{what}: the ticket changed since it was read (safe update refused); re-read it"
        )
    if status in (401, 403):
        return ConnectorError(
            f"{what}: Zendesk refused the credentials (HTTP {status}); check ZENDESK_EMAIL, "
            "ZENDESK_API_TOKEN and that the user is an agent"
        )
    if status is not None and status >= 500:
        return TransientError(f"{what}: Zendesk answered HTTP {status} on all {attempts} attempts")
    return ConnectorError(f"{what}: Zendesk answered HTTP {status}: {_describe(response)}")


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


def _id_map(settings: Mapping[str, str], key: str) -> dict[str, int]:
    """A JSON object of name -> integer id from `settings[key]`, empty when unset."""
    raw = settings.get(key) or ""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("not an object")
        return {str(name): int(number) for name, number in value.items()}
    except (ValueError, TypeError) as err:
        raise ValueError(
            f'{key} must be a JSON object of names to ids, like {{"tier": 360001}}: {err}'
        ) from err
