"""Shared by the console, API, metrics and browser tests: an app with seeded tickets, and sign-in."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from app import create_app
from config import load_settings
from console import sample
from engine.rulefile import load_rules

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a Tuesday, office hours in Bratislava
RULES = Path(__file__).resolve().parent.parent / "rules"
ADMIN = "lead@example.com"
PASSWORD = "correct horse battery"  # noqa: S105 - a test password
API_TOKEN = "api-token-0123456789abcdef"  # noqa: S105 - a test token
SECRET_KEY = "session-signing-key-for-tests-only"  # noqa: S105


def console_settings(**extra: str):
    env = {"HELPDESK_SANDBOX": "1", "RULES_PATH": str(RULES), "ADMIN_EMAIL": ADMIN,
           "ADMIN_PASSWORD": PASSWORD, "API_TOKEN": API_TOKEN, "SECRET_KEY": SECRET_KEY, **extra}
    return load_settings(env, env_file=None)


def console_app(store, clock=lambda: NOW, **config):
    return create_app({"TESTING": True, "SETTINGS": console_settings(), "STORE": store, "CLOCK": clock,
                       **config})


def seed(store, count: int = 40, seed: int = 7) -> int:
    return sample.seed(store, load_rules(RULES), NOW, count, seed=seed)


def https_client(app):
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"  # the session cookie is Secure
    return client


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html)
    if match is None:
        match = re.search(r'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match is not None, "no CSRF token in the page"
    return match.group(1)


def login(client, email: str = ADMIN, password: str = PASSWORD):
    page = client.get("/console/login")
    return client.post("/console/login", data={"email": email, "password": password,
                                                "csrf_token": csrf_token(page.get_data(as_text=True))})
