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
    ConflictError,
    ConnectorError,
    NotFoundError,
    RateLimitedError,
    RemoteTicket,
    TicketChanges,
    TransientError,
)
from connectors.freshdesk_tickets import (
    DEFAULT_WAITING_IDS,
    PRIORITY_IDS,
    STATUS_IDS,
    instant,
    ticket_from_freshdesk,
)
from console import metrics
from engine.ticket import STATUSES, to_epoch

log = logging.getLogger(__name__)

# Ids from 6 up are account statuses: 6 and 7 ("Waiting on Customer", "Waiting
# on Third Party") come with every account and map by default; others are admins' own.
FIRST_CUSTOM_STATUS = 6
PER_PAGE = 100  # the largest page the API serves (https://developers.freshdesk.com/api/#pagination)
MAX_LIST_PAGES = 300  # GET /tickets serves pages 1..300 only; past that, narrow updated_since
RATE_WINDOW_SECONDS = 60.0  # limits are per minute (https://developers.freshdesk.com/api/#ratelimit)
_TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"
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
        bot_agent_id: the API key's agent, whose replies and notes are
            Deskpilot's own (`Event.bot`); None looks it up once (GET /agents/me).

    `rate_limit_remaining` holds the last X-RateLimit-Remaining seen (None before any).
    """

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
        bot_agent_id: int | None = None,
    ) -> None:
        if not api_key:
            raise ConnectorError("Freshdesk API key is empty: set FRESHDESK_API_KEY")
        if not api_url and (not domain or "/" in domain):
            raise ConnectorError(
                f"Freshdesk domain {domain!r} must be a host name like acme.freshdesk.com "
                "(FRESHDESK_DOMAIN); put a full URL in api_url instead"
            )
        if max_attempts < 1:
            raise ConnectorError("max_attempts must be at least 1")
        self.base_url = f"{(api_url or f'https://{domain}').rstrip('/')}/api/v2"
        self.field_names = dict(field_names or {})
        self._field_engine_names = {cf: name for name, cf in self.field_names.items()}
        self.group_ids = {name: int(gid) for name, gid in (group_ids or {}).items()}
        self._group_names = {gid: name for name, gid in self.group_ids.items()}
        self.status_map = _checked_status_map(status_map or {})
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.sleep = sleep
        self.rate_limit_floor = rate_limit_floor
        self.rate_limit_remaining: int | None = None
        self._bot_agent_id = bot_agent_id
        self.session = requests.Session()
        self.session.auth = (api_key, "X")
        self.session.headers.update({"Accept": "application/json", "User-Agent": "deskpilot"})

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> FreshdeskConnector:
        """Build from environment-style settings (os.environ or the app config).

        Reads FRESHDESK_DOMAIN, FRESHDESK_API_KEY and the optional
        FRESHDESK_API_URL, FRESHDESK_FIELD_NAMES ({"plan": "cf_plan"}),
        FRESHDESK_GROUP_IDS ({"Level 2": 5}) and FRESHDESK_STATUS_MAP
        ({"6": "on_hold"}), each a JSON object.
        """
        domain = settings.get("FRESHDESK_DOMAIN", "").strip()
        api_url = settings.get("FRESHDESK_API_URL", "").strip() or None
        if not domain and not api_url:
            raise ConnectorError("set FRESHDESK_DOMAIN to the account's host, e.g. acme.freshdesk.com")
        return cls(
            domain,
            settings.get("FRESHDESK_API_KEY", "").strip(),
            api_url=api_url,
            field_names=_env_map(settings, "FRESHDESK_FIELD_NAMES", str),
            group_ids=_env_map(settings, "FRESHDESK_GROUP_IDS", int),
            status_map=_env_map(settings, "FRESHDESK_STATUS_MAP", str),
        )

    def close(self) -> None:
        self.session.close()

    # -- reading ---------------------------------------------------------------

    def bot_agent_id(self) -> int:
        """The API key's agent id (its conversations are Deskpilot's); asked once, then cached.

        https://developers.freshdesk.com/api/#me
        """
        if self._bot_agent_id is None:
            data = self._json("GET", "/agents/me")
            if not isinstance(data, dict) or not isinstance(data.get("id"), int):
                raise ConnectorError(
                    "Freshdesk GET /agents/me did not name the API key's agent: check "
                    "FRESHDESK_API_KEY belongs to an agent"
                )
            self._bot_agent_id = data["id"]
        return self._bot_agent_id

    def fetch_ticket(self, ticket_id: str) -> RemoteTicket:
        """The ticket with its stats, and every conversation (all pages).

        The very first fetch also asks whose API key this is (bot_agent_id).
        """
        number = _ticket_number(ticket_id)
        data = self._json("GET", f"/tickets/{number}", params={"include": "stats"})
        if not isinstance(data, dict):
            raise ConnectorError(f"Freshdesk GET /tickets/{number} did not return a ticket object")
        conversations = self._conversations(number)
        ticket = ticket_from_freshdesk(
            data, conversations, field_names=self._field_engine_names, group_names=self._group_names,
            status_map=self.status_map, bot_agent_id=self.bot_agent_id(),
        )
        return RemoteTicket(ticket=ticket, stamp=data.get("updated_at"), raw=data)

    def _conversations(self, number: int) -> list[dict[str, Any]]:
        return [item for batch in self._pages(f"/tickets/{number}/conversations", {})
                for item in batch]

    def _pages(self, path: str, params: Mapping[str, Any], last_page: int | None = None
               ) -> Iterator[list[dict[str, Any]]]:
        """Each page of a list, 100 items at a time, while `Link: <…>; rel="next"` says more.

        Only the page number is taken from the link, so the API key never
        goes to a host named in a response header.
        """
        page = 1
        while True:
            query = {**params, "per_page": PER_PAGE, "page": page}
            response = self._request("GET", path, params=query)
            batch = _decode(response, f"GET {path}")
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

    def changed_since(self, updated_since: datetime) -> list[str]:
        """Ids of tickets updated at or after `updated_since`, oldest update first.

        The list endpoint stops at page 300, so a longer scan restarts from the
        last `updated_at` it saw (ids seen twice are reported once). A ticket
        updated while the scan runs moves to the end of the order and can push
        one unseen ticket back onto a page already read; webhooks cover that.
        """
        to_epoch(updated_since)  # refuses a naive datetime
        since = updated_since.astimezone(UTC).strftime(_TIMESTAMP)
        seen: dict[str, None] = {}
        while True:
            params = {"updated_since": since, "order_by": "updated_at", "order_type": "asc"}
            pages, last_batch, last_updated = 0, [], None
            for last_batch in self._pages("/tickets", params, MAX_LIST_PAGES):
                pages += 1
                for item in last_batch:
                    seen[str(item["id"])] = None
                    last_updated = item.get("updated_at") or last_updated
            if pages < MAX_LIST_PAGES or len(last_batch) < PER_PAGE:
                return list(seen)
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
            data = self._json("PUT", f"/tickets/{number}", body=update)
            if isinstance(data, dict):  # the ticket as updated: later writes start from it
                remote.raw = {**remote.raw, **data}
                remote.stamp = data.get("updated_at", remote.stamp)
        # Notes and replies are not idempotent: a retried POST whose first try
        # reached Freshdesk would post the text twice, so they are not retried
        # after a read timeout, a dropped connection or a 5xx.
        if changes.note:
            note = {"body": _as_html(changes.note), "private": True}
            self._request("POST", f"/tickets/{number}/notes", body=note, idempotent=False)
        if changes.reply:
            reply = {"body": _as_html(changes.reply)}
            self._request("POST", f"/tickets/{number}/reply", body=reply, idempotent=False)

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
            action["reply"] = {"body": _as_html(reply)}
        body = {"bulk_action": action}
        if dry_run:
            log.info("dry run: would POST /tickets/bulk_update %s", json.dumps(body))
            return None
        # Not replayed after a timeout: the reply would be posted twice.
        data = _decode(self._request("POST", "/tickets/bulk_update", body=body, idempotent=False),
                       "POST /tickets/bulk_update")
        job_id = data.get("job_id") if isinstance(data, dict) else None
        if not job_id:
            raise ConnectorError("Freshdesk bulk_update answered without a job_id")
        return str(job_id)

    def writes_for(self, changes: TicketChanges) -> int:
        """Calls apply() makes for `changes` (what the write budget counts): PUT, note, reply."""
        update = bool(changes.priority or changes.status or changes.group or changes.fields
                      or changes.add_tags)
        return int(update) + int(bool(changes.note)) + int(bool(changes.reply))

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
                    self._request("POST", f"/tickets/{_ticket_number(ticket_id)}/notes",
                                  body={"body": _as_html(note), "private": True}, idempotent=False)
                except ConnectorError as err:
                    log.warning("ticket %s: updated, but its internal note failed: %s", ticket_id, err)
        return results

    def wait_for_job(self, job_id: str, wait_seconds: float = 60) -> dict[str, Any]:
        """Poll the bulk job (1 s, 2 s, 4 s, ... apart) until it finishes."""
        waited, pause = 0.0, 1.0
        while True:
            job = self.job_status(job_id)
            if str(job.get("status")).lower() in _JOB_DONE:
                return job
            if waited >= wait_seconds:
                raise TransientError(
                    f"Freshdesk job {job_id} still {job.get('status')!r} after {waited:g}s; "
                    "its tickets are checked again later"
                )
            self.sleep(pause)
            waited += pause
            pause = min(pause * 2, 10.0)

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
                raise ConnectorError(
                    f"group {group!r} has no Freshdesk group id: add it to group_ids "
                    "(FRESHDESK_GROUP_IDS)"
                )
            out["group_id"] = self.group_ids[group]
        if fields:
            unknown = sorted(name for name in fields if name not in self.field_names)
            if unknown:
                raise ConnectorError(
                    f"field(s) {', '.join(unknown)} have no Freshdesk custom field: add them to "
                    "field_names (FRESHDESK_FIELD_NAMES), e.g. {\"plan\": \"cf_plan\"}"
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
        raise ConnectorError(
            f"status {status!r} has no Freshdesk status: map a custom status id to it in "
            f"status_map (FRESHDESK_STATUS_MAP), e.g. {{\"6\": \"{status}\"}}"
        )

    # -- HTTP ------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return _decode(self._request(method, path, **kwargs), f"{method} {path}")

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool = True,
    ) -> requests.Response:
        what = f"Freshdesk {method} {path}"
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.max_attempts
            self._pace()
            try:
                response = self.session.request(
                    method, self.base_url + path, params=params, json=body, timeout=self.timeout
                )
            except requests.ConnectTimeout as err:  # nothing was sent: always safe to retry
                if last:
                    raise TransientError(f"{what}: connect timed out ({attempt} tries)") from err
            except (requests.Timeout, requests.ConnectionError) as err:
                if last or not idempotent:
                    raise TransientError(f"{what}: {type(err).__name__} ({attempt} tries)") from err
            except requests.RequestException as err:
                raise ConnectorError(f"{what} failed: {type(err).__name__}: {err}") from err
            else:
                self._note_rate_limit(response)
                code = response.status_code
                metrics.vendor_request("freshdesk", method, code)
                log.debug("%s -> %s (try %s)", what, code, attempt)
                if code < 400:
                    return response
                if code == 429:
                    wait = _retry_after(response, self._backoff(attempt))
                    if last:
                        raise RateLimitedError(
                            f"{what}: rate limited {attempt} times; retry after {wait:g}s", wait)
                    log.warning("%s: rate limited, waiting %gs", what, wait)
                    metrics.rate_limit_wait("freshdesk", wait)
                    self.sleep(wait)
                    self.rate_limit_remaining = None  # the window has turned over
                    continue
                if code < 500:
                    raise _client_error(what, response)
                if last or not idempotent:
                    raise TransientError(f"{what} returned {code} ({attempt} tries): "
                                         f"{_describe(response)}")
            self.sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        return self.backoff_base * 2 ** (attempt - 1)

    def _note_rate_limit(self, response: requests.Response) -> None:
        value = response.headers.get("X-RateLimit-Remaining")
        try:
            self.rate_limit_remaining = int(value) if value is not None else None
        except ValueError:
            self.rate_limit_remaining = None

    def _pace(self) -> None:
        # Spread what is left of the per-minute budget over the rest of the
        # minute instead of running into a 429.
        remaining = self.rate_limit_remaining
        if remaining is not None and remaining <= self.rate_limit_floor:
            pause = RATE_WINDOW_SECONDS / (max(remaining, 0) + 1)
            log.info("Freshdesk rate limit low (%s left): pausing %.1fs", remaining, pause)
            self.sleep(pause)


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
            raise ConnectorError(f"status_map key {key!r} is not a Freshdesk status id") from err
        if sid < FIRST_CUSTOM_STATUS:
            raise ConnectorError(
                f"status_map maps {sid}, a built-in Freshdesk status; only custom statuses "
                f"({FIRST_CUSTOM_STATUS} and up) can be mapped"
            )
        if name not in STATUSES:
            raise ConnectorError(f"status_map maps {sid} to {name!r}; use one of {list(STATUSES)}")
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


def _decode(response: requests.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as err:
        raise ConnectorError(f"Freshdesk {what} returned a body that is not JSON") from err


def _retry_after(response: requests.Response, default: float) -> float:
    try:
        return max(float(response.headers["Retry-After"]), 0.0)
    except (KeyError, ValueError):
        return default


def _describe(response: requests.Response) -> str:
    """Freshdesk's own words: `description` and each `errors[]` field/message/code."""
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


def _client_error(what: str, response: requests.Response) -> ConnectorError:
    code = response.status_code
    if code == 404:
        return NotFoundError(f"{what}: not found (deleted, merged or never existed)")
    if code == 409:
        return ConflictError(f"{what}: conflict: {_describe(response)}")
    if code == 401:
        return ConnectorError(
            f"{what}: the API key was refused: check FRESHDESK_API_KEY and FRESHDESK_DOMAIN"
        )
    if code == 403:
        return ConnectorError(f"{what}: the API key's agent may not do this: {_describe(response)}")
    return ConnectorError(f"{what} returned {code}: {_describe(response)}")


def _env_map(settings: Mapping[str, str], name: str, kind: type) -> dict[str, Any]:
    text = settings.get(name, "").strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return {str(key): kind(value) for key, value in data.items()}
    except (ValueError, TypeError) as err:
        raise ConnectorError(f"{name} must be a JSON object of {kind.__name__} values: {err}") from err
