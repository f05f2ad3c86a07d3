"""The Flask app: verify, normalise, store and acknowledge helpdesk webhooks; report health."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
from flask import Flask, Response, current_app, jsonify, request

from config import Settings, load_settings
from connectors import freshdesk_events, zendesk_events
from connectors.signature import DEFAULT_WINDOW_SECONDS, SignatureError, verify
from connectors.zendesk_events import (
    IgnoredEvent,
    MalformedPayload,
    NormalizedEvent,
    Outcome,
    UnknownEvent,
)

log = logging.getLogger("deskpilot.webhooks")

EXTENSION = "deskpilot"
SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
SECRET_HEADER = "X-Deskpilot-Secret"  # noqa: S105 - a header name, not a secret
# Event bodies carry at most a ticket description and one comment; larger is not a webhook.
MAX_BODY_BYTES = 1024 * 1024


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
    settings: Settings = app.config.get("SETTINGS") or load_settings()
    app.config["SETTINGS"] = settings
    app.extensions[EXTENSION] = {"settings": settings}
    _init_logging(app, settings)

    init_store(app)
    init_rules(app)
    init_webhooks(app)
    init_health(app)
    init_scheduler(app)
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


# -- store -----------------------------------------------------------------------------


def init_store(app: Flask) -> None:
    """Hold a Store (injected, or built from DATABASE_URL and migrated) and add `flask migrate`."""
    settings = _state(app)["settings"]
    store = app.config.get("STORE")
    if store is None:
        from store import Store  # the store package is only needed outside tests

        store = Store(settings.database_url)
        try:
            store.migrate()
        except Exception:
            # Keep serving: /healthz reports the database and Zendesk retries
            # the webhooks we cannot store (503) once it is back.
            log.exception("could not migrate the database at DATABASE_URL=%s",
                          settings.database_url_redacted)
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


def load_rules_state(app: Flask) -> dict[str, Any]:
    """(Re)load the rule files at RULES_PATH; keep the rule set or the last error."""
    holder = _state(app).get("rules_holder")
    if holder is not None:
        holder.reload()
        return rules_status(app)
    path = _state(app)["settings"].rules_path
    state: dict[str, Any] = {"loaded": False, "version": None, "files": [], "error": None}
    try:
        # Imported here: the engine is optional for the receiver, and its absence
        # must show in /healthz rather than stop webhooks from being stored.
        from engine.rulefile import load_rules

        ruleset = load_rules(path)
    except Exception as err:  # RuleFileError's message names file, line and field
        state["error"] = str(err) or type(err).__name__
        log.error("rules at RULES_PATH=%s not loaded: %s", path, state["error"])
    else:
        state.update(loaded=True, version=ruleset.version, files=list(ruleset.files))
        log.info("rules %s loaded from %s (%d files)", ruleset.version, path, len(state["files"]))
    _state(app)["rules"] = state
    return state


def rules_status(app: Flask | None = None) -> dict[str, Any]:
    """{"loaded", "version", "files", "error"}: the shared holder's live status, or ours."""
    holder = _state(app).get("rules_holder")
    if holder is None:
        return dict(_state(app)["rules"])
    status = holder.status
    return {"loaded": bool(status.loaded), "version": status.version,
            "files": list(status.files), "error": status.error}


def init_rules(app: Flask) -> None:
    _state(app)["rules_holder"] = app.config.get("RULES")
    if _state(app)["rules_holder"] is None:
        load_rules_state(app)

    @app.cli.command("check-rules")
    def check_rules_command() -> None:
        """Load the rule files at RULES_PATH and report the first error (exit status 1)."""
        state = load_rules_state(app)
        if not state["loaded"]:
            raise click.ClickException(state["error"]) from None
        click.echo(f"rules {state['version']}: {', '.join(state['files'])}")


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
    log.warning("%s webhook received but HELPDESK=%s; not accepted", source, helpdesk)
    return _json({"error": f"this service is configured for HELPDESK={helpdesk}"}, 404)


def zendesk_webhook() -> Response:
    if (wrong := _wrong_helpdesk("zendesk")) is not None:
        return wrong
    raw = request.get_data(cache=True)
    now = _now()
    try:
        verify(
            _state()["settings"].webhook_secret("zendesk"),
            request.headers.get(TIMESTAMP_HEADER),
            raw,
            request.headers.get(SIGNATURE_HEADER),
            now,
            window_seconds=DEFAULT_WINDOW_SECONDS,
        )
    except SignatureError as err:
        log.warning(
            "Zendesk webhook rejected (%s): check that ZENDESK_WEBHOOK_SECRET matches the "
            "webhook's signing secret and that this server's clock is right", err,
        )
        return _unauthorized()
    return _receive("zendesk", raw, now, lambda body: zendesk_events.normalize(
        body, raw, request.headers))


def freshdesk_webhook() -> Response:
    if (wrong := _wrong_helpdesk("freshdesk")) is not None:
        return wrong
    secret = _state()["settings"].webhook_secret("freshdesk")
    # Freshdesk signs nothing: the rule sends the shared secret in a custom
    # header, or as the basic-auth password ("Requires authentication").
    offered = request.headers.get(SECRET_HEADER)
    if offered is None and request.authorization is not None:
        offered = request.authorization.password
    if not secret or not offered or not hmac.compare_digest(offered.encode(), secret.encode()):
        log.warning(
            "Freshdesk webhook rejected (%s): the rule must send FRESHDESK_WEBHOOK_SECRET in the "
            "%s header or as the basic-auth password",
            "no secret offered" if not offered else "wrong secret", SECRET_HEADER,
        )
        return _unauthorized()
    raw = request.get_data(cache=True)
    now = _now()
    return _receive("freshdesk", raw, now, lambda body: freshdesk_events.normalize(
        body, raw, request.headers, now))


def _receive(source: str, raw: bytes, now: datetime, normalize: Callable[[Any], Outcome]) -> Response:
    """The steps after authentication, the same for every vendor."""
    try:
        body = json.loads(raw)
        outcome = normalize(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        log.warning("%s webhook rejected: the body is not JSON", source)
        return _json({"error": "the body is not valid JSON"}, 400)
    except MalformedPayload as err:
        log.warning("%s webhook rejected: %s", source, err)
        return _json({"error": str(err)}, 400)
    if isinstance(outcome, UnknownEvent):
        log.warning("%s webhook with unknown event type %r acknowledged and dropped; "
                    "add it to EVENT_HANDLERS or IGNORED_EVENTS", source, outcome.vendor_type)
        return _json({"status": "ignored", "reason": "unknown event type"}, 200)
    if isinstance(outcome, IgnoredEvent):
        log.debug("%s webhook %r ignored", source, outcome.vendor_type)
        return _json({"status": "ignored"}, 200)
    return _enqueue(source, outcome, body, now)


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
    except Exception:
        # A 5xx makes the vendor retry the delivery later; nothing is lost.
        log.exception("%s webhook for ticket %s not stored: database unavailable "
                      "(DATABASE_URL)", source, event.ticket_id)
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


def healthz() -> Response:
    """200 when the database answers and the rules are loaded, else 503."""
    state = _state()
    try:
        health = dict(state["store"].health())
    except Exception as err:  # Store.health() promises not to raise; be safe anyway
        health = {"database": f"error: {type(err).__name__}"}
    last = health.get("last_dead_letter")
    if isinstance(last, dict):
        last = {key: _iso(value) for key, value in last.items()}
    rules = rules_status()
    ok = health.get("database") == "ok" and rules["loaded"]
    body = {
        "status": "ok" if ok else "unavailable",
        "helpdesk": state["settings"].helpdesk,
        "sandbox": state["settings"].sandbox,
        "database": health.get("database"),
        "rules": rules,
        "backlog": health.get("backlog"),
        "inbox_pending": health.get("inbox_pending"),
        "dead_letters": health.get("dead_letters"),
        "last_dead_letter": last,
    }
    return _json(body, 200 if ok else 503)


# -- scheduler -------------------------------------------------------------------------


def init_scheduler(app: Flask) -> None:
    """Start the periodic sweeps in this process when RUN_SCHEDULER is set; never under testing.

    Off by default: gunicorn runs several copies of this app and each would
    sweep. The clock runs as its own process, or inside `python -m jobs.run`.
    """
    from jobs import report as report_cli
    from jobs import scheduler as sweep_cli

    sweep_cli.init_app(app)  # `flask sweep [--dry-run]`
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
