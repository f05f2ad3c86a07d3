"""The admin console (/console/), its JSON API (/api/v1/) and /metrics, mounted on the Flask app.

`init_app(app)` adds everything; app.py calls it. Settings used: ADMIN_EMAIL and
ADMIN_PASSWORD (the first admin, created at start when absent), API_TOKEN (the
API's bearer token; unset: the API answers 401 to everyone), SECRET_KEY (signs
the session cookie; required outside tests and the sandbox, where a random one
is made per process start, which logs everyone out at restart).
"""

from __future__ import annotations

import logging
import secrets
import sys
from datetime import UTC, datetime
from typing import Any

import click
from flask import Flask, Response, current_app

log = logging.getLogger("deskpilot.console")

EXTENSION = "deskpilot"


def state(app: Flask | None = None) -> dict[str, Any]:
    return (app or current_app).extensions[EXTENSION]


def now() -> datetime:
    value = current_app.config["CLOCK"]()
    return value.astimezone(UTC)


def store() -> Any:
    return state()["store"]


def settings() -> Any:
    return state()["settings"]


def rules_status() -> dict[str, Any]:
    from app import rules_status as status

    return status()


def current_rules() -> Any:
    """The RuleSet in force (the shared holder's, or loaded once per version), None if none loads."""
    holder = state().get("rules_holder")
    if holder is not None:
        try:
            return holder.rules
        except Exception:
            return None
    status = rules_status()
    if not status["loaded"]:
        return None
    cache = state().setdefault("console_rules", {})
    if cache.get("version") != status["version"]:
        from engine.rulefile import load_rules

        try:
            cache.update(version=status["version"], rules=load_rules(settings().rules_path))
        except Exception:
            return cache.get("rules")
    return cache.get("rules")


def init_app(app: Flask) -> None:
    """Mount the console, the API and /metrics; add `flask users create`; bootstrap the first admin."""
    from console import api, auth, views

    cfg = state(app)["settings"]
    secret = cfg.secret_key
    if not secret:
        if not (app.testing or cfg.sandbox):
            log.error("SECRET_KEY is not set: the console at /console/ is disabled (the API and "
                      "/metrics still answer). Set SECRET_KEY to a long random string.")
            _add_metrics(app)
            app.register_blueprint(api.blueprint)
            _add_cli(app)
            return
        secret = secrets.token_hex(32)
        if not app.testing:
            log.warning("SECRET_KEY is not set: using a random key for this process (sandbox only); "
                        "console sessions end when it restarts")
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secret
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    # Secure (HTTPS-only) cookies; only the local sandbox, served on plain
    # http://127.0.0.1, may turn them off (CONSOLE_INSECURE_COOKIES).
    secure = not app.config.get("CONSOLE_INSECURE_COOKIES", False)
    app.config.update(SESSION_COOKIE_SECURE=secure, REMEMBER_COOKIE_SECURE=secure)
    auth.init_app(app)
    app.register_blueprint(views.blueprint)
    app.register_blueprint(api.blueprint)
    _add_metrics(app)
    _add_cli(app)
    _bootstrap_admin(app)
    _remember_rules(app)
    state(app)["console"] = True


WEBHOOK_ENDPOINTS = {"zendesk_webhook": "zendesk", "freshdesk_webhook": "freshdesk"}
WEBHOOK_OUTCOMES = {400: "invalid", 401: "rejected", 404: "wrong_helpdesk", 413: "too_large",
                    503: "unavailable"}


def _webhook_outcome(response: Response) -> str:
    """queued, duplicate, ignored, or why it was refused, from the webhook's answer."""
    if response.status_code in (200, 202):
        body = response.get_json(silent=True) or {}
        return str(body.get("status") or "accepted")
    return WEBHOOK_OUTCOMES.get(response.status_code, str(response.status_code))


def _add_metrics(app: Flask) -> None:
    from flask import request

    from console import metrics

    @app.after_request
    def _count_webhooks(response: Response) -> Response:
        helpdesk = WEBHOOK_ENDPOINTS.get(request.endpoint or "")
        if helpdesk is None and request.path.startswith("/webhooks/"):
            helpdesk = request.path.rsplit("/", 1)[-1][:32]  # e.g. a body too large to route
        if helpdesk is not None:
            metrics.webhook(helpdesk, _webhook_outcome(response))
        return response

    def metrics_view() -> Response:
        body, content_type = metrics.exposition(state()["store"], now)
        return Response(body, content_type=content_type)

    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])


def _bootstrap_admin(app: Flask) -> None:
    from console import data

    cfg = state(app)["settings"]
    if not (cfg.admin_email and cfg.admin_password):
        if not app.testing:
            log.info("ADMIN_EMAIL/ADMIN_PASSWORD not set; create admins with `flask users create EMAIL`")
        return
    try:
        created = data.create_user(state(app)["store"], cfg.admin_email, cfg.admin_password,
                                   app.config["CLOCK"]())
    except data.UserError as err:
        log.error("ADMIN_EMAIL/ADMIN_PASSWORD: %s; no admin created", err)
    except Exception as err:  # the database may be down: webhooks must still start
        log.error("could not create the admin from ADMIN_EMAIL: %s", type(err).__name__)
    else:
        if created:
            log.info("console admin %s created from ADMIN_EMAIL", cfg.admin_email)


def _remember_rules(app: Flask) -> None:
    """Keep the text of the rules in force at start, for the rules page's diff."""
    from app import rules_status as status
    from console import data

    with app.app_context():
        try:
            data.remember_rules(state(app)["store"], status(app)["version"],
                                state(app)["settings"].rules_path, app.config["CLOCK"]())
        except Exception as err:  # the database may be down at start
            log.warning("rules text not recorded for the console: %s", type(err).__name__)


def _add_cli(app: Flask) -> None:
    from console import data

    users = click.Group("users", help="Console administrators.")

    @users.command("create")
    @click.argument("email")
    @click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
    @click.option("--reset", is_flag=True, help="Set a new password if the admin exists.")
    def create(email: str, password_stdin: bool, reset: bool) -> None:
        """Create a console admin EMAIL (prompts for the password)."""
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        try:
            created = data.create_user(state(app)["store"], email, password, datetime.now(UTC), replace=reset)
        except data.UserError as err:
            raise click.ClickException(str(err)) from None
        if created:
            click.echo(f"admin {data.normalize_email(email)} created")
        elif reset:
            click.echo(f"password of {data.normalize_email(email)} changed")
        else:
            raise click.ClickException(f"{data.normalize_email(email)} exists already (use --reset)")

    app.cli.add_command(users)
