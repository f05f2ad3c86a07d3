"""The one HTTP layer of every connector: timeouts, retries with backoff, Retry-After,
rate-limit pacing, job polling, and vendor answers wrapped into connectors.base errors.

The retry loop is our own rather than urllib3's Retry or a retry library: a call
is retried only within its bounded attempts and only when replaying it cannot
post a comment twice (`replay_safe`), every wait goes through the injected
`sleep`, and anything longer than a few seconds is left to the work queue's own
backoff (RateLimitedError.retry_after, TransientError).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from connectors.base import (
    ConfigurationError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    RateLimitedError,
    TransientError,
    ValidationError,
)
from console import metrics

log = logging.getLogger(__name__)

# Remaining-calls headers: Freshdesk (https://developers.freshdesk.com/api/#ratelimit) and
# Zendesk (https://developer.zendesk.com/api-reference/introduction/rate-limits/).
RATE_LIMIT_HEADERS = ("X-RateLimit-Remaining", "X-Rate-Limit-Remaining", "ratelimit-remaining")
RATE_WINDOW_SECONDS = 60.0  # both vendors count calls per minute


class Pace(Protocol):
    """Keeps a run of calls to its budget (see Http's `pace`)."""

    def before(self, kind: str) -> None: ...

    def after(self, kind: str, headers: Mapping[str, str]) -> None: ...


@dataclass(frozen=True)
class Vendor:
    """What the HTTP layer says about one helpdesk in its errors.

    `not_found`: what to check when an endpoint every account has answers 404;
    `credentials`: what to check on 401; `describe`: the vendor's own words from
    an error body.
    """

    name: str
    not_found: str
    credentials: str
    describe: Callable[[requests.Response | None], str] = field(default=lambda r: _describe_generic(r))


class Http:
    """Calls one helpdesk API root with the connector's retry policy.

    Args:
        vendor: how errors name the helpdesk and what to fix.
        base_url: the API root every path is appended to (".../api/v2").
        session: a requests.Session carrying the credentials.
        timeout: seconds per request (connect and read).
        max_attempts: tries per call across 429s, 5xx and network errors.
        backoff_base: first backoff in seconds; it doubles on each retry.
        sleep: how to wait (injected by tests).
        rate_limit_floor: when the remaining-calls header falls to this, calls
            are spread over the rest of the minute instead of running into a 429.
        pace: an optional budget keeper told of every request: `before(kind)` may
            wait, `after(kind, headers)` learns from the answer's headers (the
            history read's share of the API budget, jobs.history.ApiShare).
    """

    def __init__(
        self,
        vendor: Vendor,
        base_url: str,
        session: requests.Session,
        *,
        timeout: float = 10,
        max_attempts: int = 4,
        backoff_base: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        rate_limit_floor: int = 10,
        pace: Pace | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, got {max_attempts}")
        self.vendor = vendor
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.sleep = sleep
        self.rate_limit_floor = rate_limit_floor
        self.rate_limit_remaining: int | None = None
        self.pace = pace

    def close(self) -> None:
        self.session.close()

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON answer of `call`."""
        return self.decode(self.call(method, path, **kwargs), f"{method} {path}")

    def decode(self, response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError as err:
            raise ConnectorError(
                f"{self.vendor.name} {what} answered {response.status_code} with a body that is not JSON"
            ) from err

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | str | None = None,
        body: Any = None,
        replay_safe: bool = True,
        ticket: bool = False,
        kind: str = "api",
    ) -> requests.Response:
        """One API call, retried on 429, 5xx and network errors.

        `replay_safe=False`: the request may have reached the helpdesk and is not
        idempotent (a note, a reply, a bulk job), so it is not sent again after a
        read timeout, a dropped connection or a 5xx. `ticket`: the path is the
        ticket's own, so a 404 means the ticket is gone (NotFoundError); anywhere
        else a 404 is a ConfigurationError. `kind`: which of the vendor's budgets the
        call spends (`api`, or Zendesk's incremental `export`), for `pace`.
        """
        what = f"{self.vendor.name} {method.upper()} {path}"
        url = f"{self.base_url}/{path.lstrip('/')}"
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.max_attempts
            self._pace()
            if self.pace is not None:
                self.pace.before(kind)
            try:
                response = self.session.request(method, url, params=params, json=body, timeout=self.timeout)
            except requests.ConnectTimeout as err:  # nothing was sent: always safe to retry
                if last:
                    raise TransientError(f"{what}: ConnectTimeout ({attempt} tries)") from err
                self._backoff(what, "ConnectTimeout", attempt)
                continue
            except (requests.Timeout, requests.ConnectionError) as err:
                if last or not replay_safe:
                    raise TransientError(f"{what}: {type(err).__name__} ({attempt} tries)") from err
                self._backoff(what, type(err).__name__, attempt)
                continue
            except requests.RequestException as err:
                raise ConnectorError(f"{what} failed: {type(err).__name__}: {err}") from err
            self._note_rate_limit(response)
            if self.pace is not None:
                self.pace.after(kind, response.headers)
            code = response.status_code
            metrics.vendor_request(self.vendor.name.lower(), method.upper(), code)
            log.debug("%s -> %s (try %s)", what, code, attempt)
            if code < 400:
                return response
            if code == 429:
                wait = retry_after(response, self.backoff_base * 2 ** (attempt - 1))
                if last:
                    raise RateLimitedError(
                        f"{what}: rate limited on all {attempt} tries; retry after {wait:g}s", wait)
                log.warning("%s: rate limited, waiting %gs (try %d)", what, wait, attempt)
                metrics.rate_limit_wait(self.vendor.name.lower(), wait)
                self.sleep(wait)
                self.rate_limit_remaining = None  # the window has turned over
                continue
            if code >= 500:
                if last or not replay_safe:
                    raise TransientError(
                        f"{what}: {self.vendor.name} answered HTTP {code} on {attempt} tries: "
                        f"{self.vendor.describe(response)}")
                self._backoff(what, f"HTTP {code}", attempt)
                continue
            raise self.error(what, response, ticket)

    def error(self, what: str, response: requests.Response, ticket: bool = False) -> ConnectorError:
        """Our exception for a 4xx answer (429 aside)."""
        code = response.status_code
        words = self.vendor.describe(response)
        if code == 404 and ticket:
            return NotFoundError(
                f"{what}: not found in {self.vendor.name} (deleted, merged or never existed)")
        if code == 404:
            return ConfigurationError(
                f"{what}: {self.vendor.name} answered 404 for an endpoint every account has; "
                f"{self.vendor.not_found}")
        if code == 409:
            return ConflictError(f"{what}: the ticket changed since it was read; re-read it ({words})")
        if code in (400, 422):
            return ValidationError(f"{what} was refused (HTTP {code}): {words}")
        if code == 401:
            return ConfigurationError(
                f"{what}: {self.vendor.name} refused the credentials (HTTP 401); {self.vendor.credentials}")
        if code == 403:
            return ConfigurationError(
                f"{what}: the API user may not do this (HTTP 403): {words}; {self.vendor.credentials}")
        return ConnectorError(f"{what} answered HTTP {code}: {words}")

    def poll(self, fetch: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool],
             what: str, wait_seconds: float = 60) -> dict[str, Any]:
        """Call `fetch` (1 s, 2 s, 4 s, ... up to 10 s apart) until `done`; TransientError after
        `wait_seconds`, so the work queue checks the tickets again later."""
        waited, pause = 0.0, 1.0
        while True:
            job = fetch()
            if done(job):
                return job
            if waited >= wait_seconds:
                raise TransientError(
                    f"{self.vendor.name} {what} still {job.get('status')!r} after {waited:g}s; "
                    "its tickets are checked again later")
            self.sleep(pause)
            waited += pause
            pause = min(pause * 2, 10.0)

    def _backoff(self, what: str, reason: str, attempt: int) -> None:
        wait = self.backoff_base * 2 ** (attempt - 1)
        log.warning("%s: %s, retrying in %gs (try %d)", what, reason, wait, attempt)
        self.sleep(wait)

    def _note_rate_limit(self, response: requests.Response) -> None:
        for header in RATE_LIMIT_HEADERS:
            value = response.headers.get(header)
            if value is not None:
                try:
                    self.rate_limit_remaining = int(value)
                except ValueError:
                    self.rate_limit_remaining = None
                return
        self.rate_limit_remaining = None

    def _pace(self) -> None:
        remaining = self.rate_limit_remaining
        if remaining is not None and remaining <= self.rate_limit_floor:
            pause = RATE_WINDOW_SECONDS / (max(remaining, 0) + 1)
            log.info("%s rate limit low (%s left): pausing %.1fs", self.vendor.name, remaining, pause)
            self.sleep(pause)


def retry_after(response: requests.Response, default: float) -> float:
    """Seconds from Retry-After (both vendors send whole seconds), else `default`."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return default
    return seconds if seconds >= 0 else default


def _describe_generic(response: requests.Response | None) -> str:
    if response is None:
        return "no response"
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason or "no details"
    return json.dumps(body)[:200]
