"""Deskpilot settings from the environment and `.env`: validated, secrets kept out of repr."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values, load_dotenv
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

HELPDESKS = ("zendesk", "freshdesk")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_DATABASE_URL = "sqlite:///deskpilot.db"
DEFAULT_RULES_PATH = "rules/"
DEFAULT_WORKER_MAX_ATTEMPTS = 8
DEFAULT_WORKER_SETTLE_SECONDS = 1.0

# With no credentials at all for the chosen helpdesk, Deskpilot talks to the
# local fake servers in sandbox/ (ports as in the sandbox briefs) and accepts
# webhooks signed with this well-known secret. None of it is a real secret.
SANDBOX_API_URLS = {"zendesk": "http://127.0.0.1:9100", "freshdesk": "http://127.0.0.1:9200"}
SANDBOX_WEBHOOK_SECRET = "deskpilot-sandbox-secret"  # noqa: S105 - public by design
SANDBOX_CREDENTIALS = {
    "zendesk": {"subdomain": "sandbox", "email": "agent@sandbox.invalid", "token": "sandbox-token"},
    "freshdesk": {"domain": "sandbox.freshdesk.invalid", "api_key": "sandbox-api-key"},
}

# Every variable that makes up one helpdesk's credentials: all or none.
CREDENTIAL_VARS = {
    "zendesk": (
        "ZENDESK_SUBDOMAIN", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "ZENDESK_WEBHOOK_SECRET",
    ),
    "freshdesk": ("FRESHDESK_DOMAIN", "FRESHDESK_API_KEY", "FRESHDESK_WEBHOOK_SECRET"),
}

# Everything load_settings reads (documented in .env.example).
VARIABLES = (
    "HELPDESK",
    *CREDENTIAL_VARS["zendesk"], "ZENDESK_API_URL",
    *CREDENTIAL_VARS["freshdesk"], "FRESHDESK_API_URL",
    "DATABASE_URL", "RULES_PATH", "WORKER_MAX_ATTEMPTS", "WORKER_SETTLE_SECONDS", "LOG_LEVEL",
    # Read by the clock (jobs/clock.py) and the write budget (jobs/budget.py).
    "SWEEP_INTERVAL_SECONDS", "RECONCILE_INTERVAL_SECONDS", "RULES_RELOAD_SECONDS",
    "RECONCILE_LOOKBACK_SECONDS", "SWEEP_LIMIT", "INBOX_RETENTION_DAYS",
    "WRITE_BUDGET_PER_MINUTE", "WRITE_BUDGET_PER_TICKET",
    # Read by `flask simulate` and `flask report sla` (jobs/report.py).
    "HISTORY_API_SHARE", "HISTORY_MAX_AGE",
)

_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_HOSTNAME = re.compile(r"^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class ConfigError(ValueError):
    """A missing or invalid setting; the message names the variable and what it expects."""


@dataclass(frozen=True)
class Settings:
    """Validated settings. Secrets are excluded from repr(); see `__repr__`."""

    helpdesk: str = "zendesk"
    sandbox: bool = True
    zendesk_subdomain: str = ""
    zendesk_email: str = ""
    zendesk_api_token: str = field(default="", repr=False)
    zendesk_webhook_secret: str = field(default="", repr=False)
    zendesk_api_url: str | None = None
    freshdesk_domain: str = ""
    freshdesk_api_key: str = field(default="", repr=False)
    freshdesk_webhook_secret: str = field(default="", repr=False)
    freshdesk_api_url: str | None = None
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    rules_path: Path = Path(DEFAULT_RULES_PATH)
    worker_max_attempts: int = DEFAULT_WORKER_MAX_ATTEMPTS
    # A webhook's ticket waits this long for the rest of its burst (Zendesk sends
    # one event per changed field) so that one read and one decision serve them all.
    worker_settle_seconds: float = DEFAULT_WORKER_SETTLE_SECONDS
    log_level: str = "INFO"

    def webhook_secret(self, source: str) -> str:
        """The shared secret that authenticates webhooks from `source` ("" if unset)."""
        if source == "zendesk":
            return self.zendesk_webhook_secret
        if source == "freshdesk":
            return self.freshdesk_webhook_secret
        raise ValueError(f"unknown helpdesk {source!r}; expected one of {', '.join(HELPDESKS)}")

    @property
    def database_url_redacted(self) -> str:
        """DATABASE_URL with any password replaced by ***, safe to log."""
        return make_url(self.database_url).render_as_string(hide_password=True)

    def __repr__(self) -> str:
        def secret(value: str) -> str:
            return "'<set>'" if value else "'<unset>'"

        parts = [
            f"helpdesk={self.helpdesk!r}",
            f"sandbox={self.sandbox!r}",
            f"zendesk_subdomain={self.zendesk_subdomain!r}",
            f"zendesk_email={self.zendesk_email!r}",
            f"zendesk_api_token={secret(self.zendesk_api_token)}",
            f"zendesk_webhook_secret={secret(self.zendesk_webhook_secret)}",
            f"zendesk_api_url={self.zendesk_api_url!r}",
            f"freshdesk_domain={self.freshdesk_domain!r}",
            f"freshdesk_api_key={secret(self.freshdesk_api_key)}",
            f"freshdesk_webhook_secret={secret(self.freshdesk_webhook_secret)}",
            f"freshdesk_api_url={self.freshdesk_api_url!r}",
            f"database_url={self.database_url_redacted!r}",
            f"rules_path={str(self.rules_path)!r}",
            f"worker_max_attempts={self.worker_max_attempts!r}",
            f"worker_settle_seconds={self.worker_settle_seconds!r}",
            f"log_level={self.log_level!r}",
        ]
        return f"Settings({', '.join(parts)})"


def load_settings(
    environ: Mapping[str, str] = os.environ, env_file: str | Path | None = ".env"
) -> Settings:
    """Build Settings from `environ`, filling gaps from `env_file` (real variables win).

    Args:
        environ: the process environment (or a dict in tests).
        env_file: a dotenv file read with python-dotenv; None or a missing file reads nothing.
    Returns:
        Validated Settings.
    Raises:
        ConfigError: naming the variable that is missing or invalid and what it expects.
    """
    values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        if environ is os.environ:
            # The process's other settings (clock intervals, write budget) are
            # read from the environment later: let .env fill its gaps too.
            load_dotenv(env_file, override=False)
    values.update(environ)
    env = {key: value.strip() for key, value in values.items() if value and value.strip()}

    helpdesk = env.get("HELPDESK", "zendesk").lower()
    if helpdesk not in HELPDESKS:
        raise ConfigError(f"HELPDESK must be 'zendesk' or 'freshdesk', got {env['HELPDESK']!r}")

    zendesk_api_url = _http_url(env, "ZENDESK_API_URL")
    freshdesk_api_url = _http_url(env, "FRESHDESK_API_URL")
    sandbox = _check_credentials(env, helpdesk)
    chosen = {}
    if sandbox:
        # Fill the chosen helpdesk's gaps so the connectors and webhooks work
        # against the local sandbox without any configuration.
        if helpdesk == "zendesk":
            creds = SANDBOX_CREDENTIALS["zendesk"]
            chosen = {
                "zendesk_subdomain": creds["subdomain"],
                "zendesk_email": creds["email"],
                "zendesk_api_token": creds["token"],
                "zendesk_webhook_secret": SANDBOX_WEBHOOK_SECRET,
            }
            zendesk_api_url = zendesk_api_url or SANDBOX_API_URLS["zendesk"]
        else:
            creds = SANDBOX_CREDENTIALS["freshdesk"]
            chosen = {
                "freshdesk_domain": creds["domain"],
                "freshdesk_api_key": creds["api_key"],
                "freshdesk_webhook_secret": SANDBOX_WEBHOOK_SECRET,
            }
            freshdesk_api_url = freshdesk_api_url or SANDBOX_API_URLS["freshdesk"]
    elif helpdesk == "zendesk":
        chosen = {
            "zendesk_subdomain": _zendesk_subdomain(env["ZENDESK_SUBDOMAIN"]),
            "zendesk_email": _email(env["ZENDESK_EMAIL"]),
            "zendesk_api_token": env["ZENDESK_API_TOKEN"],
            "zendesk_webhook_secret": env["ZENDESK_WEBHOOK_SECRET"],
        }
    else:
        chosen = {
            "freshdesk_domain": _freshdesk_domain(env["FRESHDESK_DOMAIN"]),
            "freshdesk_api_key": env["FRESHDESK_API_KEY"],
            "freshdesk_webhook_secret": env["FRESHDESK_WEBHOOK_SECRET"],
        }

    return Settings(
        helpdesk=helpdesk,
        sandbox=sandbox,
        zendesk_api_url=zendesk_api_url,
        freshdesk_api_url=freshdesk_api_url,
        database_url=_database_url(env.get("DATABASE_URL", DEFAULT_DATABASE_URL)),
        rules_path=Path(env.get("RULES_PATH", DEFAULT_RULES_PATH)),
        worker_max_attempts=positive_int(env, "WORKER_MAX_ATTEMPTS", DEFAULT_WORKER_MAX_ATTEMPTS),
        worker_settle_seconds=_seconds(env, "WORKER_SETTLE_SECONDS", DEFAULT_WORKER_SETTLE_SECONDS),
        log_level=_log_level(env.get("LOG_LEVEL", "INFO")),
        **chosen,
    )


def _check_credentials(env: Mapping[str, str], helpdesk: str) -> bool:
    """True (sandbox) when none of the helpdesk's credentials is set; error when only some are."""
    names = CREDENTIAL_VARS[helpdesk]
    present = [name for name in names if name in env]
    if not present:
        return True
    missing = [name for name in names if name not in env]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(
            f"{', '.join(missing)} {verb} not set: with HELPDESK={helpdesk} and {present[0]} set, "
            f"set all of {', '.join(names)} (or none of them to run against the local sandbox)"
        )
    return False


def _http_url(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{name} must be an http(s) URL such as http://127.0.0.1:9100") from None
    userinfo, at, host = parts.netloc.rpartition("@")
    shown = parts._replace(netloc=host).geturl() if at else value  # never echo a password
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL, got {shown!r}")
    if at:
        raise ConfigError(
            f"{name} must not carry credentials (user:password@), got {shown!r}; "
            "the API credentials have their own variables"
        )
    return value.rstrip("/")


def _zendesk_subdomain(value: str) -> str:
    lowered = value.lower()
    if not _SUBDOMAIN.match(lowered):
        raise ConfigError(
            "ZENDESK_SUBDOMAIN must be the subdomain only (e.g. 'acme' for acme.zendesk.com), "
            f"got {value!r}"
        )
    return lowered


def _freshdesk_domain(value: str) -> str:
    lowered = value.lower()
    if not _HOSTNAME.match(lowered):
        raise ConfigError(
            "FRESHDESK_DOMAIN must be the helpdesk's host name without scheme or path "
            f"(e.g. 'acme.freshdesk.com'), got {value!r}"
        )
    return lowered


def _email(value: str) -> str:
    local, at, domain = value.partition("@")
    if not (local and at and "." in domain):
        raise ConfigError(f"ZENDESK_EMAIL must be the API user's email address, got {value!r}")
    return value


def _database_url(value: str) -> str:
    expected = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):  # ValueError: a non-numeric port
        # The raw value may hold a password: do not echo it.
        raise ConfigError(f"DATABASE_URL is not a database URL; expected {expected}") from None
    # Plain postgresql:// (and Heroku-style postgres://) would select psycopg2,
    # which is not installed; psycopg 3 is the pinned driver.
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername not in ("sqlite", "postgresql+psycopg"):
        shown = url.render_as_string(hide_password=True)
        raise ConfigError(f"DATABASE_URL must be {expected}, got {shown!r}")
    return url.render_as_string(hide_password=False)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 300:
        raise ConfigError(f"{name} must be a number of seconds from 0 to 300, got {raw!r}")
    return value


def positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole number >= 1 from `env[name]`, `default` when unset or blank; ConfigError names it."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, got {raw!r}")
    return value


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level
