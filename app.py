"""The Flask app: verify, normalise, store and acknowledge helpdesk webhooks; report health."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import console
from config import ConfigError, Settings, load_settings
from connectors.freshdesk import events as freshdesk_events
from connectors.signature import DEFAULT_WINDOW_SECONDS, SignatureError, parse_timestamp, verify
from connectors.zendesk import events as zendesk_events
from connectors.zendesk.events import (
    IgnoredEvent,
    MalformedPayload,
    NormalizedEvent,
    Outcome,
    UnknownEvent,
)
from console import metrics
from jobs.quietlog import RateLimitedLog

log = logging.getLogger("deskpilot.webhooks")
# One line per kind of rejection or failure per interval, with a count: a flood
# of bad requests or a database outage must not bury everything else in the log.
LOG_INTERVAL_SECONDS = 60.0

EXTENSION = "deskpilot"
SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
SECRET_HEADER = "X-Deskpilot-Secret"  # noqa: S105 - a header name, not a secret
INVOCATION_HEADER = zendesk_events.INVOCATION_HEADER
# Event bodies carry at most a ticket description and one comment; larger is not a webhook.
MAX_BODY_BYTES = 1024 * 1024
# Vendor bodies nest a few levels; anything deeper is not a webhook (and would
# exhaust the recursion of the JSON encoder on the way to the database).
MAX_JSON_DEPTH = 64
# The inbox's column sizes (store/models.py): a longer value is hashed or refused.
MAX_DEDUPE_KEY = 255
MAX_TICKET_ID = 64
MAX_EVENT_TYPE = 128
MAX_REASON_CHARS = 200
# Zendesk's signature timestamp: ISO 8601 in ASCII digits, e.g. 2026-11-20T14:30:00Z.
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
                        r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/]{20,200}={0,2}", re.ASCII)
_SURROGATES = re.compile("[\ud800-\udfff]")
# UTF-8 cannot carry a surrogate: only a JSON escape (\\ud800) can.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
# How often the web process looks at the rule files again for /healthz.
RULES_CHECK_SECONDS = 1.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. gunicorn: `gunicorn "app:create_app()"`.

    Args:
        config: Flask config overrides. Tests pass TESTING, SETTINGS (a Settings),
            STORE (an object with the store.Store API) and CLOCK (returns an aware now).
            RULES may hold a shared rules holder (jobs.runtime.RulesHolder: `.status`,
            `.reload()`) whose live status /healthz then reports; RUN_SCHEDULER=True
            starts the sweeps in this process (off by default: run them as their own
            process, or with `python -m jobs.run`).
    Returns:
        The configured Flask app; its state lives in `app.extensions["deskpilot"]`.
    """
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, CLOCK=utc_now, RUN_SCHEDULER=False)
    app.config.update(config or {})
    settings: Settings | None = app.config.get("SETTINGS")
    if settings is None:
        try:
            settings = load_settings()
        except ConfigError as err:
            # One line naming the variable, not a traceback (gunicorn shows stderr).
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
    app.config["SETTINGS"] = settings
    app.extensions[EXTENSION] = {
        "settings": settings,
        "quiet": RateLimitedLog(log, app.config.get("LOG_INTERVAL_SECONDS", LOG_INTERVAL_SECONDS)),
    }
    _init_logging(app, settings)

    init_store(app)
    init_rules(app)
    init_errors(app)
    init_webhooks(app)
    init_health(app)
    init_scheduler(app)
    console.init_app(app)  # /console/, /api/v1/, /metrics, `flask users create`
    log.info("Deskpilot ready for %s%s with %r", settings.helpdesk,
             " (sandbox)" if settings.sandbox else "", _state(app)["store"])
    return app


def _init_logging(app: Flask, settings: Settings) -> None:
    logging.getLogger("deskpilot").setLevel(settings.log_level)
    root = logging.getLogger()
    if not app.testing and not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _state(app: Flask | None = None) -> dict[str, Any]:
    return (app or current_app).extensions[EXTENSION]


def _quiet() -> RateLimitedLog:
    return _state()["quiet"]


# -- store -----------------------------------------------------------------------------


def init_store(app: Flask) -> None:
    """Hold a Store (injected, or built from DATABASE_URL and migrated) and add `flask migrate`."""
    settings = _state(app)["settings"]
    store = app.config.get("STORE")
    if store is None:
        from store import Store  # the store package is only needed outside tests

        store = Store(settings.database_url, timeout_seconds=settings.database_timeout_seconds)
        try:
            store.migrate()
        except Exception as err:
            # Keep serving: /healthz reports the database and Zendesk retries
            # the webhooks we cannot store (503) once it is back.
            log.error("could not migrate the database at DATABASE_URL=%s: %s: %s",
                      settings.database_url_redacted, type(err).__name__, _one_line(err))
        # `gunicorn --preload` builds the app once and then forks its workers:
        # a pooled connection left open here would be shared by all of them
        # (psycopg then fails with DuplicatePreparedStatement). Close it; each
        # worker opens its own on first use.
        # https://docs.sqlalchemy.org/en/20/core/pooling.html#using-connection-pools-with-multiprocessing-or-os-fork
        store.engine.dispose()
    _state(app)["store"] = store

    @app.cli.command("migrate")
    def migrate_command() -> None:
        """Create or upgrade the database tables (idempotent)."""
        _state(app)["store"].migrate()
        click.echo(f"database at {settings.database_url_redacted} is up to date")


# -- rules -----------------------------------------------------------------------------


def _rules_stamp(path: Path) -> tuple:
    """What the rule files look like on disk (names, sizes, mtimes): a change means reload."""
    try:
        root = Path(path)
        files = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.is_file())
        return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    except OSError as err:
        return (type(err).__name__,)


def load_rules_state(app: Flask) -> dict[str, Any]:
    """(Re)load the rule files at RULES_PATH: keep the last good rules and the newest error."""
    holder = _state(app).get("rules_holder")
    if holder is not None:
        holder.reload()
        return rules_status(app)
    path = _state(app)["settings"].rules_path
    previous = _state(app).get("rules") or {"loaded": False, "version": None, "files": [], "error": None}
    state = dict(previous)
    stamp = _rules_stamp(path)
    try:
        # Imported here: the engine is optional for the receiver, and its absence
        # must show in /healthz rather than stop webhooks from being stored.
        from engine.rulefile import load_rules

        ruleset = load_rules(path)
    except Exception as err:  # RuleFileError's message names file, line and field
        state["error"] = _one_line(err) or type(err).__name__
        kept = f"keeping rules {previous['version']}" if previous["loaded"] else "no rules loaded"
        metrics.rules_reload(ok=False)
        log.error("rules at RULES_PATH=%s not loaded (%s): %s", path, kept, state["error"])
    else:
        changed = ruleset.version != previous["version"] or previous["error"] is not None
        state.update(loaded=True, version=ruleset.version, files=list(ruleset.files), error=None)
        if changed:
            metrics.rules_reload(ok=True)
            log.info("rules %s loaded from %s (%d files)", ruleset.version, path, len(state["files"]))
    _state(app).update(rules=state, rules_stamp=stamp, rules_checked=time.monotonic())
    return dict(state)


def _refresh_rules(app: Flask) -> None:
    """Load the rule files again when they changed on disk (checked at most once a second).

    Under gunicorn the worker and the clock reload the same RULES_PATH; so does
    the web process here, so that /healthz reports what they use now, and a web
    started with a broken file recovers once it is fixed.
    """
    state = _state(app)
    if time.monotonic() - state.get("rules_checked", 0.0) < RULES_CHECK_SECONDS:
        return
    with state["rules_lock"]:
        if time.monotonic() - state.get("rules_checked", 0.0) < RULES_CHECK_SECONDS:
            return
        if _rules_stamp(state["settings"].rules_path) == state.get("rules_stamp"):
            state["rules_checked"] = time.monotonic()
            return
        load_rules_state(app)


def rules_status(app: Flask | None = None) -> dict[str, Any]:
    """{"loaded", "version", "files", "error"}: the shared holder's live status, or ours.

    loaded: some rules are in use (after a bad edit, the last good ones, with
    the edit's error beside them).
    """
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    holder = _state(app).get("rules_holder")
    if holder is None:
        _refresh_rules(app)
        return dict(_state(app)["rules"])
    status = holder.status
    return {"loaded": bool(status.loaded), "version": status.version,
            "files": list(status.files), "error": status.error}


def init_rules(app: Flask) -> None:
    _state(app)["rules_holder"] = app.config.get("RULES")
    _state(app)["rules_lock"] = threading.Lock()
    if _state(app)["rules_holder"] is None:
        load_rules_state(app)

    @app.cli.command("check-rules")
    def check_rules_command() -> None:
        """Load the rule files at RULES_PATH and report the first error (exit status 1)."""
        state = load_rules_state(app)
        if not state["loaded"] or state["error"]:
            raise click.ClickException(state["error"]) from None
        click.echo(f"rules {state['version']}: {', '.join(state['files'])}")


# -- errors ------------------------------------------------------------------------------


def _one_line(err: BaseException | str, limit: int = MAX_REASON_CHARS) -> str:
    """The first line of an error, clipped: safe for a JSON reason and one log line."""
    text = str(err).strip()
    text = text.splitlines()[0] if text else ""
    text = _SURROGATES.sub("\ufffd", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# The intake's own paths: their errors answer one line of JSON. Other pages
# (a console, say) keep Flask's handling and their own handlers.
OWN_PATHS = ("/webhooks/", "/healthz")


def init_errors(app: Flask) -> None:
    """Errors on the intake's paths answer one line of JSON; an unexpected one is logged once a
    minute per kind, without a traceback."""

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Any:
        if not request.path.startswith(OWN_PATHS):
            return err
        return _json({"error": _one_line(err.description or err.name)}, err.code or 500)

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> Response:
        if isinstance(err, HTTPException):  # pragma: no cover - handled above
            return http_error(err)
        if not request.path.startswith(OWN_PATHS):
            raise err
        if app.testing and app.config.get("PROPAGATE_EXCEPTIONS") is not False:
            raise err  # tests see the exception itself
        _quiet().error(f"unexpected:{type(err).__name__}", "%s %s failed: %s: %s", request.method,
                       request.path, type(err).__name__, _one_line(err))
        return _json({"error": "internal error"}, 500)


class Rejected(Exception):
    """A request refused with `status` and a one-line `reason` (the JSON answer)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, _one_line(reason)


# -- webhooks --------------------------------------------------------------------------


def init_webhooks(app: Flask) -> None:
    app.add_url_rule("/webhooks/zendesk", "zendesk_webhook", zendesk_webhook, methods=["POST"])
    app.add_url_rule("/webhooks/freshdesk", "freshdesk_webhook", freshdesk_webhook, methods=["POST"])


def _now() -> datetime:
    now = current_app.config["CLOCK"]()
    if now.tzinfo is None or now.utcoffset() is None:
        raise RuntimeError("CLOCK returned a naive datetime; it must return an aware instant")
    return now


def _json(body: dict[str, Any], status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def _unauthorized() -> Response:
    # Generic on purpose: the caller learns nothing about which check failed.
    return _json({"error": "unauthorized"}, 401)


def _wrong_helpdesk(source: str) -> Response | None:
    helpdesk = _state()["settings"].helpdesk
    if helpdesk == source:
        return None
    _quiet().warning(f"wrong-helpdesk:{source}", "%s webhook received but HELPDESK=%s; not accepted",
                  source, helpdesk)
    return _json({"error": f"this service is configured for HELPDESK={helpdesk}"}, 404)


def _header(name: str) -> str | None:
    """A header's value if it is printable ASCII (anything else is not what a vendor sends)."""
    value = request.headers.get(name)
    if value is None:
        return None
    value = value.strip()
    return value if value.isascii() and value.isprintable() else ""


def _delivery_id(source: str, body: Any = None) -> str:
    """What an operator can look the delivery up by: the vendor's invocation or event id."""
    candidates = [_header(INVOCATION_HEADER)] if source == "zendesk" else []
    if isinstance(body, dict):
        inner = body.get(freshdesk_events.WRAPPER, body) if source == "freshdesk" else body
        if isinstance(inner, dict):
            candidates += [inner.get("id"), inner.get("ticket_id")]
    for value in candidates:
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            text = str(value).strip()
            return repr(text[:80] + ("…" if len(text) > 80 else ""))
    return "(no id)"


def _read_body() -> bytes:
    """The raw body, at most MAX_BODY_BYTES, however it is framed (Content-Length or chunked)."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise Rejected(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        stream = request.stream
        while True:
            chunk = stream.read(64 * 1024)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise Rejected(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
    except RequestEntityTooLarge:
        raise Rejected(413, f"the body is larger than {MAX_BODY_BYTES} bytes") from None
    except Rejected:
        raise
    except Exception as err:  # a malformed chunk, a client that went away: the client's fault
        raise Rejected(400, f"the request body could not be read ({type(err).__name__})") from None
    return b"".join(chunks)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _clean(value: Any, depth: int = 0) -> Any:
    """The parsed body with lone surrogates made U+FFFD; Rejected if nested too deep."""
    if depth > MAX_JSON_DEPTH:
        raise Rejected(400, f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value) if _SURROGATES.search(value) else value
    if isinstance(value, list):
        return [_clean(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {_clean(key, depth): _clean(item, depth + 1) for key, item in value.items()}
    return value


def _parse(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity or out-of-range numbers, at most MAX_JSON_DEPTH deep."""
    try:
        text = raw.decode("utf-8")
        body = json.loads(text, parse_constant=_constant, parse_float=_finite)
        # The walk costs a copy of the body: only when it could find something.
        if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH or _ESCAPED_SURROGATE.search(raw):
            body = _clean(body)
        return body
    except Rejected:
        raise
    except RecursionError:
        raise Rejected(400, f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise Rejected(400, "the body is not UTF-8 text") from None
    except ValueError as err:  # JSONDecodeError, NaN, digits beyond int's limit
        raise Rejected(400, f"the body is not valid JSON: {_one_line(err, 80)}") from None


def _precheck_signature(now: datetime) -> tuple[str, str]:
    """The signature headers, refused (before the body is read) unless well-formed and fresh."""
    timestamp = _header(TIMESTAMP_HEADER)
    signature = _header(SIGNATURE_HEADER)
    if not timestamp or not signature:
        raise SignatureError("missing or unreadable signature or timestamp header")
    if not _TIMESTAMP.fullmatch(timestamp) or not _BASE64.fullmatch(signature):
        raise SignatureError("malformed signature or timestamp header")
    try:
        sent_at = parse_timestamp(timestamp)
        fresh = abs((now - sent_at).total_seconds()) <= DEFAULT_WINDOW_SECONDS
    except (ValueError, OverflowError):
        raise SignatureError("unreadable signature timestamp") from None
    if not fresh:
        raise SignatureError("timestamp outside the replay window")
    return timestamp, signature


def zendesk_webhook() -> Response:
    if (wrong := _wrong_helpdesk("zendesk")) is not None:
        return wrong
    now = _now()
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:  # said up front: refused unread
        return _rejected("zendesk", Rejected(413, f"the body is larger than {MAX_BODY_BYTES} bytes"))
    try:
        timestamp, signature = _precheck_signature(now)
        raw = _read_body()
        verify(_state()["settings"].webhook_secret("zendesk"), timestamp, raw, signature, now,
               window_seconds=DEFAULT_WINDOW_SECONDS)
    except SignatureError as err:
        _quiet().warning(
            f"zendesk-signature:{err}",
            "Zendesk webhook rejected (%s): check that ZENDESK_WEBHOOK_SECRET matches the "
            "webhook's signing secret and that this server's clock is right", err,
        )
        return _unauthorized()
    except Rejected as err:
        return _rejected("zendesk", err)

    def normalize(body: Any) -> Outcome:
        outcome = zendesk_events.normalize(body, raw, request.headers)
        if isinstance(outcome, NormalizedEvent) and isinstance(body, dict) and "deskpilot" in body:
            # A trigger body has no id of its own, and the invocation id header is
            # not signed: a replay with a new one must not count as a new event.
            # What is signed is the timestamp and the body.
            digest = hashlib.sha256(timestamp.encode() + b"\n" + raw).hexdigest()
            outcome = dataclasses.replace(outcome, dedupe_key=f"sha256:{digest}")
        return outcome

    return _receive("zendesk", raw, now, normalize)


def freshdesk_webhook() -> Response:
    if (wrong := _wrong_helpdesk("freshdesk")) is not None:
        return wrong
    secret = _state()["settings"].webhook_secret("freshdesk")
    # Freshdesk signs nothing: the rule sends the shared secret in a custom
    # header, or as the basic-auth password ("Requires authentication").
    offered = _header(SECRET_HEADER)
    if offered is None:
        try:
            auth = request.authorization
        except Exception:  # an Authorization header that is not one
            auth = None
        offered = auth.password if auth is not None else None
    if not secret or not offered or not hmac.compare_digest(offered.encode(), secret.encode()):
        _quiet().warning(
            f"freshdesk-secret:{bool(offered)}",
            "Freshdesk webhook rejected (%s): the rule must send FRESHDESK_WEBHOOK_SECRET in the "
            "%s header or as the basic-auth password",
            "no secret offered" if not offered else "wrong secret", SECRET_HEADER,
        )
        return _unauthorized()
    now = _now()
    try:
        raw = _read_body()
    except Rejected as err:
        return _rejected("freshdesk", err)
    return _receive("freshdesk", raw, now, lambda body: freshdesk_events.normalize(
        body, raw, request.headers, now))


def _rejected(source: str, err: Rejected, body: Any = None) -> Response:
    _quiet().warning(f"{source}-rejected:{err.status}:{err.reason[:40]}",
                  "%s webhook delivery %s rejected (%d): %s", source, _delivery_id(source, body),
                  err.status, err.reason)
    return _json({"error": err.reason}, err.status)


def _receive(source: str, raw: bytes, now: datetime, normalize: Callable[[Any], Outcome]) -> Response:
    """The steps after authentication, the same for every vendor."""
    body: Any = None
    try:
        body = _parse(raw)
        outcome = normalize(body)
        if isinstance(outcome, NormalizedEvent):
            outcome = _fit(outcome)
    except Rejected as err:
        return _rejected(source, err, body)
    except MalformedPayload as err:
        return _rejected(source, Rejected(400, str(err)), body)
    except Exception as err:  # a shape the normaliser did not foresee: still the sender's body
        return _rejected(source, Rejected(
            400, f"the body is not a {source} webhook this service reads ({type(err).__name__})"), body)
    if isinstance(outcome, UnknownEvent):
        _quiet().warning(f"{source}-unknown:{outcome.vendor_type[:40]}",
                      "%s webhook with unknown event type %r acknowledged and dropped; "
                      "add it to EVENT_HANDLERS or IGNORED_EVENTS", source, outcome.vendor_type[:80])
        return _json({"status": "ignored", "reason": "unknown event type"}, 200)
    if isinstance(outcome, IgnoredEvent):
        log.debug("%s webhook %r ignored", source, outcome.vendor_type)
        return _json({"status": "ignored"}, 200)
    return _enqueue(source, outcome, body, now)


def _fit(event: NormalizedEvent) -> NormalizedEvent:
    """The event within the inbox's column sizes: a long dedupe key is hashed, the rest refused."""
    if len(event.ticket_id) > MAX_TICKET_ID:
        raise Rejected(400, f"the ticket id is longer than {MAX_TICKET_ID} characters")
    if len(event.event_type) > MAX_EVENT_TYPE:
        raise Rejected(400, f"the event type is longer than {MAX_EVENT_TYPE} characters")
    key = event.dedupe_key
    if len(key) > MAX_DEDUPE_KEY or not key.isprintable() or _SURROGATES.search(key):
        key = "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        event = dataclasses.replace(event, dedupe_key=key)
    return event


# PEP 249 exception classes that mean "the database is not answering", whichever
# driver raised them; anything else from storing a signed body is that body's fault.
_OUTAGE_ERRORS = ("OperationalError", "InterfaceError", "InternalError", "ProgrammingError",
                  "DisconnectionError", "TimeoutError")
_BAD_DATA_ERRORS = ("DataError", "IntegrityError", "NotSupportedError")


def storage_outage(err: BaseException) -> bool:
    """True when `err` (from Store.enqueue) means the database is unavailable, not the data bad."""
    import sqlalchemy as sa

    if isinstance(err, sa.exc.DBAPIError) and err.connection_invalidated:
        return True
    names = {cls.__name__ for cls in type(err).__mro__}
    orig = getattr(err, "orig", None)
    if orig is not None:
        names |= {cls.__name__ for cls in type(orig).__mro__}
    if names & set(_BAD_DATA_ERRORS):
        return False
    if names & set(_OUTAGE_ERRORS) or isinstance(err, OSError | ConnectionError):
        return True
    # ValueError, TypeError, UnicodeError, RecursionError, OverflowError: the
    # payload could not be written as given. Anything else: assume an outage,
    # so the vendor retries rather than the event being lost.
    return not isinstance(err, ValueError | TypeError | RecursionError | OverflowError)


def _enqueue(source: str, event: NormalizedEvent, body: Any, now: datetime) -> Response:
    try:
        stored = _state()["store"].enqueue(
            source=source,
            dedupe_key=event.dedupe_key,
            ticket_id=event.ticket_id,
            event_type=event.event_type,
            payload=event.payload(body),
            received_at=now,
            settle_seconds=_state()["settings"].worker_settle_seconds,
        )
    except Exception as err:
        if not storage_outage(err):
            # The database answered and refused this body: a retry cannot succeed.
            return _rejected(source, Rejected(
                400, f"the event cannot be stored as sent ({type(err).__name__})"), body)
        # A 5xx makes the vendor retry the delivery later; nothing is lost.
        _quiet().error(f"storage:{type(err).__name__}",
                    "%s webhook for ticket %s not stored: database unavailable (DATABASE_URL): %s: %s",
                    source, event.ticket_id, type(err).__name__, _one_line(getattr(err, "orig", err), 120))
        response = _json({"error": "storage unavailable, retry later"}, 503)
        response.headers["Retry-After"] = "30"
        return response
    log.info("%s %s for ticket %s %s", source, event.event_type, event.ticket_id,
             "queued" if stored else "was a redelivery")
    return _json({"status": "queued" if stored else "duplicate"}, 202)


# -- health ----------------------------------------------------------------------------


def init_health(app: Flask) -> None:
    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])


def _iso(value: Any) -> Any:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(value, datetime) else value


def _overall(database_ok: bool, rules: dict[str, Any]) -> str:
    """ok; degraded (the last good rules run, a newer edit is broken); unavailable."""
    if not database_ok or not rules["loaded"]:
        return "unavailable"
    return "degraded" if rules["error"] else "ok"


def health_details(app: Flask | None = None) -> dict[str, Any]:
    """Everything /healthz knows, for authenticated pages only: rule files, errors, dead letters.

    {"status": "ok" | "degraded" | "unavailable", "helpdesk", "sandbox",
    "database": "ok" | "error: <class>", "rules": {"loaded", "version", "files", "error"},
    "backlog", "inbox_pending", "dead_letters", "last_dead_letter", "configuration_error"}.
    """
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    state = _state(app)
    try:
        health = dict(state["store"].health())
    except Exception as err:  # Store.health() promises not to raise; be safe anyway
        health = {"database": f"error: {type(err).__name__}"}
    last = health.get("last_dead_letter")
    if isinstance(last, dict):
        last = {key: _iso(value) for key, value in last.items()}
    rules = rules_status(app)
    configuration = _config_error(state)
    status = _overall(health.get("database") == "ok", rules)
    return {
        # A configuration error keeps every ticket waiting: the service is up but not doing its job.
        "status": "degraded" if status == "ok" and configuration else status,
        "helpdesk": state["settings"].helpdesk,
        "sandbox": state["settings"].sandbox,
        "database": health.get("database"),
        "rules": rules,
        "backlog": health.get("backlog"),
        "inbox_pending": health.get("inbox_pending"),
        "dead_letters": health.get("dead_letters"),
        "last_dead_letter": last,
        # A connector's configuration error (wrong API URL, missing rights): webhooks are still
        # stored, but no ticket gets through until it is fixed.
        "configuration_error": configuration,
    }


def public_health(details: dict[str, Any]) -> dict[str, Any]:
    """What anyone may see: the status and counts, no paths, no error texts."""
    rules = details["rules"]
    return {
        "status": details["status"],
        "database": "ok" if details["database"] == "ok" else "unavailable",
        "rules": {"loaded": rules["loaded"], "version": rules["version"], "valid": not rules["error"]},
        "backlog": details["backlog"],
        "inbox_pending": details["inbox_pending"],
        "dead_letters": details["dead_letters"],
        # Whether a connector reported a configuration error (its text: health_details()).
        "configuration_error": details["configuration_error"] is not None,
    }


def healthz() -> Response:
    """200 while the database answers and rules are in use ("degraded" when a newer edit is
    broken and the last good rules run), else 503. Details: health_details()."""
    details = health_details()
    return _json(public_health(details), 503 if details["status"] == "unavailable" else 200)


def _config_error(state: dict[str, Any]) -> dict[str, str] | None:
    from jobs.runtime import config_error

    return config_error(state["store"], state["settings"].helpdesk) if state.get("store") else None


# -- scheduler -------------------------------------------------------------------------


def init_scheduler(app: Flask) -> None:
    """Start the periodic sweeps in this process when RUN_SCHEDULER is set; never under testing.

    Off by default: gunicorn runs several copies of this app and each would
    sweep. The clock runs as its own process, or inside `python -m jobs.run`.
    """
    from jobs import operator as operator_cli
    from jobs import report as report_cli
    from jobs import scheduler as sweep_cli

    sweep_cli.init_app(app)  # `flask sweep [--dry-run]`
    operator_cli.init_app(app)  # `flask dead-letters`, `flask audit TICKET`
    report_cli.init_app(app)  # `flask simulate`, `flask report sla`
    if app.testing or not app.config["RUN_SCHEDULER"]:
        return
    state = _state(app)
    if state["rules_holder"] is None:
        raise RuntimeError("RUN_SCHEDULER needs RULES (a jobs.runtime.RulesHolder) in the app config")
    from jobs.clock import build_scheduler

    scheduler = build_scheduler(state["settings"], state["store"], state["rules_holder"])
    scheduler.start()
    state["scheduler"] = scheduler
