"""Deskpilot's one settings object (pydantic-settings), from the environment and `.env`.

Read once at a process's start, validated, frozen and passed down; every error
names its variable and never echoes the value; secrets stay out of repr.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values, load_dotenv
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

HELPDESKS = ("zendesk", "freshdesk")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_DATABASE_URL = "sqlite:///deskpilot.db"
DEFAULT_RULES_PATH = "rules/"
DEFAULT_WORKER_MAX_ATTEMPTS = 8
DEFAULT_WORKER_SETTLE_SECONDS = 1.0
# A claimed ticket's lease: renewed while a worker processes it, so a killed
# worker's tickets are claimed again within about this long.
DEFAULT_WORKER_LEASE_SECONDS = 20
# How long a webhook or /healthz waits for the database before answering 503.
DEFAULT_DATABASE_TIMEOUT_SECONDS = 5.0
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

# Only when asked (HELPDESK_SANDBOX=1, or `python -m jobs.run --demo`), Deskpilot
# talks to the local fake servers in sandbox/ and accepts webhooks signed with
# this well-known secret. None of it is a real secret, which is why a missing
# credential is an error rather than a quiet switch to the sandbox.
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

# Every variable Deskpilot reads (each documented in .env.example).
VARIABLES = (
    "HELPDESK", "HELPDESK_SANDBOX",
    *CREDENTIAL_VARS["zendesk"], "ZENDESK_API_URL",
    *CREDENTIAL_VARS["freshdesk"], "FRESHDESK_API_URL",
    "DATABASE_URL", "RULES_PATH", "WORKER_MAX_ATTEMPTS", "WORKER_SETTLE_SECONDS",
    "WORKER_LEASE_SECONDS", "DATABASE_TIMEOUT_SECONDS", "LOG_LEVEL",
    # Read by the clock (jobs/clock.py) and the write budget (jobs/budget.py).
    "SWEEP_INTERVAL_SECONDS", "RECONCILE_INTERVAL_SECONDS", "RULES_RELOAD_SECONDS",
    "RECONCILE_LOOKBACK_SECONDS", "SWEEP_LIMIT", "INBOX_RETENTION_DAYS",
    "AUDIT_RETENTION_DAYS",
    "WRITE_BUDGET_PER_MINUTE", "WRITE_BUDGET_PER_TICKET",
    # Read by gunicorn.conf.py and webserver.py (the web process under gunicorn).
    "HOST", "PORT", "WEB_CONCURRENCY", "WEB_THREADS", "WEB_READ_TIMEOUT_SECONDS",
    # The admin console and its API (console/).
    "ADMIN_EMAIL", "ADMIN_PASSWORD", "API_TOKEN", "SECRET_KEY",
    # Read by `flask simulate` and `flask report sla` (jobs/report.py).
    "HISTORY_API_SHARE", "HISTORY_MAX_AGE",
)
# The web server's variables, which gunicorn reads before the app (and Settings) exist.
WEB_VARIABLES = ("HOST", "PORT", "WEB_CONCURRENCY", "WEB_THREADS", "WEB_READ_TIMEOUT_SECONDS")

_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_HOSTNAME = re.compile(r"^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class ConfigError(ValueError):
    """A missing or invalid setting; the message names the variable and what it expects."""


# The clock's and the write budget's settings: (variable, default), whole numbers >= 1.
JOB_DEFAULTS = {
    "SWEEP_INTERVAL_SECONDS": 30,
    "RECONCILE_INTERVAL_SECONDS": 180,
    "RULES_RELOAD_SECONDS": 10,
    "RECONCILE_LOOKBACK_SECONDS": 3600,
    "SWEEP_LIMIT": 500,
    "INBOX_RETENTION_DAYS": 14,
    "WRITE_BUDGET_PER_MINUTE": 80,
    "WRITE_BUDGET_PER_TICKET": 20,
    "AUDIT_RETENTION_DAYS": 180,
    # Seconds a history read stays fresh for simulation windows ending now.
    "HISTORY_MAX_AGE": 3600,
}
# Most of the helpdesk's API budget a history read may use (HISTORY_API_SHARE).
DEFAULT_HISTORY_API_SHARE = 0.30


class Settings(BaseSettings):
    """Every setting of every process, validated once at start and passed down (frozen).

    Each field is the environment variable of the same name in upper case
    (`helpdesk_sandbox` is HELPDESK_SANDBOX). Build it with `load_settings()`,
    which reads `.env` too and turns any error into one ConfigError naming the
    variable. Secrets are kept out of repr() and str(); see `__repr__`.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_ignore_empty=True,
                                      case_sensitive=False, hide_input_in_errors=True,
                                      env_file=".env", env_file_encoding="utf-8")

    helpdesk: str = "zendesk"
    # True only when asked for (HELPDESK_SANDBOX=1 or --demo) and no credentials are set.
    helpdesk_sandbox: bool = False
    zendesk_subdomain: str = ""
    zendesk_email: str = ""
    zendesk_api_token: str = Field(default="", repr=False)
    zendesk_webhook_secret: str = Field(default="", repr=False)
    zendesk_api_url: str | None = None
    freshdesk_domain: str = ""
    freshdesk_api_key: str = Field(default="", repr=False)
    freshdesk_webhook_secret: str = Field(default="", repr=False)
    freshdesk_api_url: str | None = None
    database_url: str = Field(default=DEFAULT_DATABASE_URL, repr=False)
    rules_path: Path = Path(DEFAULT_RULES_PATH)
    worker_max_attempts: int = DEFAULT_WORKER_MAX_ATTEMPTS
    # A webhook's ticket waits this long for the rest of its burst (Zendesk sends
    # one event per changed field) so that one read and one decision serve them all.
    worker_settle_seconds: float = DEFAULT_WORKER_SETTLE_SECONDS
    worker_lease_seconds: int = DEFAULT_WORKER_LEASE_SECONDS
    database_timeout_seconds: float = DEFAULT_DATABASE_TIMEOUT_SECONDS
    log_level: str = "INFO"
    sweep_interval_seconds: int = JOB_DEFAULTS["SWEEP_INTERVAL_SECONDS"]
    reconcile_interval_seconds: int = JOB_DEFAULTS["RECONCILE_INTERVAL_SECONDS"]
    rules_reload_seconds: int = JOB_DEFAULTS["RULES_RELOAD_SECONDS"]
    reconcile_lookback_seconds: int = JOB_DEFAULTS["RECONCILE_LOOKBACK_SECONDS"]
    sweep_limit: int = JOB_DEFAULTS["SWEEP_LIMIT"]
    inbox_retention_days: int = JOB_DEFAULTS["INBOX_RETENTION_DAYS"]
    write_budget_per_minute: int = JOB_DEFAULTS["WRITE_BUDGET_PER_MINUTE"]
    write_budget_per_ticket: int = JOB_DEFAULTS["WRITE_BUDGET_PER_TICKET"]
    audit_retention_days: int = JOB_DEFAULTS["AUDIT_RETENTION_DAYS"]
    history_max_age: int = JOB_DEFAULTS["HISTORY_MAX_AGE"]
    history_api_share: float = DEFAULT_HISTORY_API_SHARE

    # The console's first admin, its JSON API's bearer token and the session signing key.
    admin_email: str = ""
    admin_password: str = Field(default="", repr=False)
    api_token: str = Field(default="", repr=False)
    secret_key: str = Field(default="", repr=False)

    @model_validator(mode="before")
    @classmethod
    def _from_variables(cls, data: Any) -> dict[str, Any]:
        """Parse the variables (as named in the environment) into field values, in one place."""
        if not isinstance(data, Mapping):
            raise ConfigError("settings must be a mapping of variable names to values")
        env = {str(key).upper(): str(value).strip() for key, value in data.items()
               if value is not None and str(value).strip()}
        return _parse(env)

    @property
    def sandbox(self) -> bool:
        """Running against the local sandbox helpdesk (HELPDESK_SANDBOX=1 or --demo)."""
        return self.helpdesk_sandbox

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Settings are read once and frozen; cannot set {name}")

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
            f"worker_lease_seconds={self.worker_lease_seconds!r}",
            f"database_timeout_seconds={self.database_timeout_seconds!r}",
            f"log_level={self.log_level!r}",
        ]
        return f"Settings({', '.join(parts)})"

    __str__ = __repr__


def load_settings(
    environ: Mapping[str, str] = os.environ,
    env_file: str | Path | None = ".env",
    *,
    sandbox: bool = False,
) -> Settings:
    """Build Settings from `environ`, filling gaps from `env_file` (real variables win).

    Args:
        environ: the process environment (or a dict in tests).
        env_file: a dotenv file read with python-dotenv; None or a missing file reads nothing.
        sandbox: run against the local sandbox (`--demo`), as HELPDESK_SANDBOX=1 does.
    Returns:
        Validated, frozen Settings: read once at start and passed to what needs them.
    Raises:
        ConfigError: naming the variable that is missing or invalid and what it expects
            (never the value, which may be a secret in the wrong place).
    """
    values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        if environ is os.environ:
            # Tools that read the environment themselves (gunicorn.conf.py,
            # `flask sweep`) see .env too.
            load_dotenv(env_file, override=False)
    values.update(environ)
    names = {name.upper() for name in VARIABLES if name not in WEB_VARIABLES}
    wanted = {key: value for key, value in values.items() if key.upper() in names}
    if sandbox:
        wanted["HELPDESK_SANDBOX"] = "1"
    try:
        return Settings.model_validate(wanted)
    except ValidationError as err:
        raise ConfigError(_first_error(err)) from None


def _first_error(err: ValidationError) -> str:
    """Our own message (it names the variable), or one naming the field's variable."""
    for detail in err.errors(include_input=False):
        cause = (detail.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):
            return str(cause)
        where = ".".join(str(part) for part in detail.get("loc", ())).upper() or "a setting"
        return f"{where} is invalid: {detail.get('msg', 'not accepted')}"
    return "the settings are invalid"


def _parse(env: Mapping[str, str]) -> dict[str, Any]:
    """Field values from the variables; ConfigError names the first bad one."""
    helpdesk = env.get("HELPDESK", "zendesk").lower()
    if helpdesk not in HELPDESKS:
        raise ConfigError("HELPDESK must be 'zendesk' or 'freshdesk'")

    zendesk_api_url = _http_url(env, "ZENDESK_API_URL")
    freshdesk_api_url = _http_url(env, "FRESHDESK_API_URL")
    sandbox = _check_credentials(env, helpdesk, _flag(env, "HELPDESK_SANDBOX"))
    chosen: dict[str, Any] = {}
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
    jobs = {name.lower(): positive_int(env, name, default) for name, default in JOB_DEFAULTS.items()}
    return {
        "helpdesk": helpdesk,
        "helpdesk_sandbox": sandbox,
        "zendesk_api_url": zendesk_api_url,
        "freshdesk_api_url": freshdesk_api_url,
        "database_url": _database_url(env.get("DATABASE_URL", DEFAULT_DATABASE_URL)),
        "rules_path": Path(env.get("RULES_PATH", DEFAULT_RULES_PATH)),
        "worker_max_attempts": positive_int(env, "WORKER_MAX_ATTEMPTS", DEFAULT_WORKER_MAX_ATTEMPTS),
        "worker_settle_seconds": _seconds(env, "WORKER_SETTLE_SECONDS", DEFAULT_WORKER_SETTLE_SECONDS),
        "worker_lease_seconds": _lease_seconds(env),
        "database_timeout_seconds": _database_timeout(env),
        "log_level": _log_level(env.get("LOG_LEVEL", "INFO")),
        "history_api_share": _share(env, "HISTORY_API_SHARE", DEFAULT_HISTORY_API_SHARE),
        **jobs,
        **{name.lower(): env.get(name, "") for name in ("ADMIN_EMAIL", "ADMIN_PASSWORD", "API_TOKEN",
                                                        "SECRET_KEY")},
        **chosen,
    }


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").lower()
    if not raw or raw in FALSE_WORDS:
        return False
    if raw in TRUE_WORDS:
        return True
    raise ConfigError(f"{name} must be 1 or 0 (true/false, yes/no, on/off)")


def _check_credentials(env: Mapping[str, str], helpdesk: str, sandbox: bool) -> bool:
    """True for the sandbox (asked for, and no credentials set); error naming what is missing."""
    names = CREDENTIAL_VARS[helpdesk]
    present = [name for name in names if name in env]
    if sandbox:
        if present:
            raise ConfigError(
                f"HELPDESK_SANDBOX (or --demo) runs against the local sandbox, but {', '.join(present)} "
                f"{'is' if len(present) == 1 else 'are'} set: unset them, or HELPDESK_SANDBOX"
            )
        return True
    missing = [name for name in names if name not in env]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(
            f"{', '.join(missing)} {verb} not set: HELPDESK={helpdesk} needs all of {', '.join(names)} "
            "(or HELPDESK_SANDBOX=1 to run against the local sandbox)"
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
    # The value is never echoed: a token pasted into the wrong variable must not
    # reach the log. What is wrong with it is said instead.
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{name} must be an http(s) URL such as http://127.0.0.1:9100 "
                          "(it does not start with http:// or https://)")
    if not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL such as http://127.0.0.1:9100 (it has no host)")
    if "@" in parts.netloc:
        raise ConfigError(
            f"{name} must not carry credentials (user:password@); "
            "the API credentials have their own variables"
        )
    return value.rstrip("/")


def _zendesk_subdomain(value: str) -> str:
    lowered = value.lower()
    if not _SUBDOMAIN.match(lowered):
        raise ConfigError(
            "ZENDESK_SUBDOMAIN must be the subdomain only (e.g. 'acme' for acme.zendesk.com): "
            "letters, digits and hyphens, at most 63 characters"
        )
    return lowered


def _freshdesk_domain(value: str) -> str:
    lowered = value.lower()
    if not _HOSTNAME.match(lowered):
        raise ConfigError(
            "FRESHDESK_DOMAIN must be the helpdesk's host name without scheme or path "
            "(e.g. 'acme.freshdesk.com')"
        )
    return lowered


def _email(value: str) -> str:
    local, at, domain = value.partition("@")
    if not (local and at and "." in domain):
        raise ConfigError("ZENDESK_EMAIL must be the API user's email address (name@domain)")
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
        raise ConfigError(f"DATABASE_URL must be {expected} (the scheme is neither)")
    return url.render_as_string(hide_password=False)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 300:  # also false for NaN
        raise ConfigError(f"{name} must be a number of seconds from 0 to 300")
    return value


def _lease_seconds(env: Mapping[str, str]) -> int:
    value = positive_int(env, "WORKER_LEASE_SECONDS", DEFAULT_WORKER_LEASE_SECONDS)
    if not 5 <= value <= 3600:
        raise ConfigError("WORKER_LEASE_SECONDS must be a whole number of seconds from 5 to 3600")
    return value


def _database_timeout(env: Mapping[str, str]) -> float:
    value = _seconds(env, "DATABASE_TIMEOUT_SECONDS", DEFAULT_DATABASE_TIMEOUT_SECONDS)
    if value < 1:
        raise ConfigError("DATABASE_TIMEOUT_SECONDS must be a number of seconds from 1 to 300")
    return value


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    """A share above 0 and at most 1, written 0.3 or 30%; ConfigError names the variable."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        share = float(raw.rstrip("%")) / (100 if raw.endswith("%") else 1)
    except ValueError:
        raise ConfigError(f"{name} must be a share like 0.3 or 30%") from None
    if not 0 < share <= 1:
        raise ConfigError(f"{name} must be above 0 and at most 1 (100%)")
    return share


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
        raise ConfigError(f"{name} must be a whole number >= 1")
    return value


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    return level
