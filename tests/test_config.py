"""Settings: defaults, sandbox detection, .env precedence, messages that name the variable."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from config import (
    SANDBOX_API_URLS,
    SANDBOX_WEBHOOK_SECRET,
    VARIABLES,
    ConfigError,
    load_settings,
)

ENV_EXAMPLE = Path(__file__).parent.parent / ".env.example"

ZENDESK = {
    "ZENDESK_SUBDOMAIN": "acme",
    "ZENDESK_EMAIL": "bot@acme.example",
    "ZENDESK_API_TOKEN": "tok-0123456789abcdef",
    "ZENDESK_WEBHOOK_SECRET": "whsec-zendesk-987",
}
FRESHDESK = {
    "HELPDESK": "freshdesk",
    "FRESHDESK_DOMAIN": "acme.freshdesk.com",
    "FRESHDESK_API_KEY": "fdkey-abcdef0123",
    "FRESHDESK_WEBHOOK_SECRET": "whsec-freshdesk-654",
}


def load(env: dict[str, str]):
    return load_settings(env, env_file=None)


def test_no_credentials_is_an_error_naming_every_missing_variable():
    with pytest.raises(ConfigError) as raised:
        load({"HELPDESK": "zendesk", "ZENDESK_SUBDOMIAN": "acme"})  # a typo is not the sandbox
    message = str(raised.value)
    assert message.startswith(
        "ZENDESK_SUBDOMAIN, ZENDESK_EMAIL, ZENDESK_API_TOKEN, ZENDESK_WEBHOOK_SECRET are not set")
    assert "HELPDESK_SANDBOX=1" in message and "\n" not in message
    with pytest.raises(ConfigError, match="^FRESHDESK_DOMAIN, FRESHDESK_API_KEY, FRESHDESK_WEBHOOK_SECRET"):
        load({"HELPDESK": "freshdesk"})


def test_the_sandbox_runs_only_when_asked():
    assert load({"HELPDESK_SANDBOX": "1"}).sandbox is True
    assert load_settings({}, env_file=None, sandbox=True).sandbox is True
    for off in ("0", "false", ""):
        with pytest.raises(ConfigError, match="are not set"):
            load({"HELPDESK_SANDBOX": off})
    with pytest.raises(ConfigError, match="^HELPDESK_SANDBOX must be 1 or 0"):
        load({"HELPDESK_SANDBOX": "maybe"})
    with pytest.raises(ConfigError) as raised:
        load({**ZENDESK, "HELPDESK_SANDBOX": "1"})
    assert "ZENDESK_SUBDOMAIN" in str(raised.value) and "tok-0123456789abcdef" not in str(raised.value)


def test_sandbox_defaults_are_a_zendesk_sandbox():
    settings = load({"HELPDESK_SANDBOX": "yes"})
    assert settings.helpdesk == "zendesk"
    assert settings.sandbox is True
    assert settings.zendesk_api_url == SANDBOX_API_URLS["zendesk"]
    assert settings.webhook_secret("zendesk") == SANDBOX_WEBHOOK_SECRET
    assert settings.database_url == "sqlite:///deskpilot.db"
    assert settings.rules_path == Path("rules")
    assert settings.worker_max_attempts == 8
    assert settings.log_level == "INFO"


def test_full_zendesk_credentials():
    settings = load({**ZENDESK, "ZENDESK_API_URL": "http://127.0.0.1:9100/", "LOG_LEVEL": "debug"})
    assert settings.sandbox is False
    assert (settings.zendesk_subdomain, settings.zendesk_email) == ("acme", "bot@acme.example")
    assert settings.zendesk_api_token == "tok-0123456789abcdef"
    assert settings.webhook_secret("zendesk") == "whsec-zendesk-987"
    assert settings.zendesk_api_url == "http://127.0.0.1:9100"
    assert settings.log_level == "DEBUG"


def test_full_freshdesk_credentials_ignore_zendesk_variables():
    settings = load({**FRESHDESK, "ZENDESK_SUBDOMAIN": "not used"})
    assert (settings.helpdesk, settings.sandbox) == ("freshdesk", False)
    assert settings.freshdesk_domain == "acme.freshdesk.com"
    assert settings.webhook_secret("freshdesk") == "whsec-freshdesk-654"
    assert settings.freshdesk_api_url is None


def test_freshdesk_sandbox_uses_the_local_server():
    settings = load({"HELPDESK": "Freshdesk", "HELPDESK_SANDBOX": "1"})
    assert (settings.helpdesk, settings.sandbox) == ("freshdesk", True)
    assert settings.freshdesk_api_url == SANDBOX_API_URLS["freshdesk"]
    assert settings.webhook_secret("freshdesk") == SANDBOX_WEBHOOK_SECRET


@pytest.mark.parametrize(("env", "message"), [
    ({"ZENDESK_SUBDOMAIN": "acme"},
     "ZENDESK_EMAIL, ZENDESK_API_TOKEN, ZENDESK_WEBHOOK_SECRET are not set"),
    ({"ZENDESK_SUBDOMAIN": "acme", "HELPDESK_SANDBOX": "0"},
     "ZENDESK_EMAIL, ZENDESK_API_TOKEN, ZENDESK_WEBHOOK_SECRET are not set"),
    ({**ZENDESK, "ZENDESK_API_TOKEN": ""}, "ZENDESK_API_TOKEN is not set"),
    ({**ZENDESK, "ZENDESK_WEBHOOK_SECRET": "  "}, "ZENDESK_WEBHOOK_SECRET is not set"),
    ({**FRESHDESK, "FRESHDESK_API_KEY": ""}, "FRESHDESK_API_KEY is not set"),
    ({"HELPDESK": "freshdesk", "FRESHDESK_WEBHOOK_SECRET": "s"},
     "FRESHDESK_DOMAIN, FRESHDESK_API_KEY are not set"),
])
def test_partial_credentials_name_what_is_missing(env, message):
    with pytest.raises(ConfigError) as raised:
        load(env)
    assert str(raised.value).startswith(message)
    assert "sandbox" in str(raised.value)


@pytest.mark.parametrize(("env", "message"), [
    ({"ZENDESK_API_URL": "ftp://x"}, "ZENDESK_API_URL must be an http(s) URL"),
    ({"FRESHDESK_API_URL": "127.0.0.1:9200"}, "FRESHDESK_API_URL must be an http(s) URL"),
    ({"ZENDESK_API_URL": "http://[::1"}, "ZENDESK_API_URL must be an http(s) URL"),
    ({"ZENDESK_API_URL": "http://host:99999"}, "ZENDESK_API_URL must be an http(s) URL"),
    ({"HELPDESK": "jira"}, "HELPDESK must be 'zendesk' or 'freshdesk'"),
    ({"WORKER_MAX_ATTEMPTS": "0"}, "WORKER_MAX_ATTEMPTS must be a whole number >= 1"),
    ({"WORKER_MAX_ATTEMPTS": "eight"}, "WORKER_MAX_ATTEMPTS must be a whole number >= 1"),
    ({"WORKER_LEASE_SECONDS": "2"}, "WORKER_LEASE_SECONDS must be a whole number of seconds from 5"),
    ({"DATABASE_TIMEOUT_SECONDS": "0.5"}, "DATABASE_TIMEOUT_SECONDS must be a number of seconds"),
    ({"DATABASE_TIMEOUT_SECONDS": "nan"}, "DATABASE_TIMEOUT_SECONDS must be a number of seconds"),
    ({"HISTORY_API_SHARE": "most"}, "HISTORY_API_SHARE must be a share like 0.3 or 30%"),
    ({"HISTORY_API_SHARE": "150%"}, "HISTORY_API_SHARE must be above 0 and at most 1 (100%)"),
    ({"HISTORY_API_SHARE": "0"}, "HISTORY_API_SHARE must be above 0 and at most 1 (100%)"),
    ({"HISTORY_MAX_AGE": "-5"}, "HISTORY_MAX_AGE must be a whole number >= 1"),
    ({"AUDIT_RETENTION_DAYS": "a year"}, "AUDIT_RETENTION_DAYS must be a whole number >= 1"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL must be sqlite:///PATH or postgresql+psycopg://"),
    ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a database URL"),
    ({**ZENDESK, "ZENDESK_SUBDOMAIN": "acme.zendesk.com"},
     "ZENDESK_SUBDOMAIN must be the subdomain only (e.g. 'acme' for acme.zendesk.com)"),
    ({**ZENDESK, "ZENDESK_EMAIL": "bot"}, "ZENDESK_EMAIL must be the API user's email address"),
    ({**FRESHDESK, "FRESHDESK_DOMAIN": "https://acme.freshdesk.com"},
     "FRESHDESK_DOMAIN must be the helpdesk's host name"),
])
def test_bad_values_name_the_variable_and_the_expectation(env, message):
    with pytest.raises(ConfigError) as raised:
        credentials = any(k.startswith(("ZENDESK_", "FRESHDESK_")) and "URL" not in k for k in env)
        load(env if credentials else {"HELPDESK_SANDBOX": "1", **env})
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("name", ["ZENDESK_API_URL", "ZENDESK_SUBDOMAIN", "ZENDESK_EMAIL",
                                  "FRESHDESK_API_URL", "LOG_LEVEL", "WORKER_MAX_ATTEMPTS",
                                  "WORKER_SETTLE_SECONDS", "HELPDESK", "DATABASE_URL"])
@pytest.mark.parametrize("value", ["tok_9f8e7d6c5b4a3210secret", "https://ex.invalid/tok_9f8e7d6c5b4a3210secret",
                                   "ftp://tok_9f8e7d6c5b4a3210secret", "a/tok_9f8e7d6c5b4a3210secret"])
def test_errors_name_the_variable_and_never_echo_its_value(name, value):
    """A token pasted into the wrong variable must not land in the log."""
    try:
        load({**ZENDESK, name: value})
    except ConfigError as err:
        assert name in str(err)
        assert "tok_9f8e7d6c5b4a3210secret" not in str(err)
    else:
        assert name in ("DATABASE_URL",) or value.startswith("https://")


@pytest.mark.parametrize(("name", "value"), [
    ("DATABASE_URL", "mysql://admin:hunter2secret@db/deskpilot"),
    ("DATABASE_URL", "postgresql+psycopg://admin:hunter2secret@db:notaport/x"),
    ("ZENDESK_API_URL", "https://admin:hunter2secret@acme.zendesk.com"),
    ("ZENDESK_API_URL", "ftp://admin:hunter2secret@acme.zendesk.com"),
])
def test_errors_never_echo_a_password(name, value):
    with pytest.raises(ConfigError) as raised:
        load({"HELPDESK_SANDBOX": "1", name: value})
    assert name in str(raised.value)
    assert "hunter2secret" not in str(raised.value)


@pytest.mark.parametrize(("value", "expected"), [
    ("sqlite:////var/lib/deskpilot/deskpilot.db", "sqlite:////var/lib/deskpilot/deskpilot.db"),
    ("postgresql+psycopg://bot:pw@db:5432/deskpilot", "postgresql+psycopg://bot:pw@db:5432/deskpilot"),
    # Plain postgresql:// would pick psycopg2, which is not installed.
    ("postgresql://bot:pw@db/deskpilot", "postgresql+psycopg://bot:pw@db/deskpilot"),
    ("postgres://bot:pw@db/deskpilot", "postgresql+psycopg://bot:pw@db/deskpilot"),
])
def test_database_urls(value, expected):
    assert load({**ZENDESK, "DATABASE_URL": value}).database_url == expected


def test_secrets_stay_out_of_repr_and_logs(caplog):
    settings = load({**ZENDESK, "DATABASE_URL": "postgresql+psycopg://bot:dbpass-42@db/deskpilot"})
    logging.getLogger("deskpilot.test").warning("settings: %s / %r", settings, settings)
    for text in (repr(settings), str(settings), caplog.text):
        for secret in ("tok-0123456789abcdef", "whsec-zendesk-987", "dbpass-42"):
            assert secret not in text
    assert "zendesk_api_token='<set>'" in repr(settings)
    assert "freshdesk_api_key='<unset>'" in repr(settings)
    assert "postgresql+psycopg://bot:***@db/deskpilot" in repr(settings)


def test_env_file_fills_gaps_but_real_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "HELPDESK=freshdesk\n"
        "FRESHDESK_DOMAIN=fromfile.freshdesk.com\n"
        "FRESHDESK_API_KEY=file-key\n"
        "FRESHDESK_WEBHOOK_SECRET=file-secret\n"
        "LOG_LEVEL=WARNING\n"
        "WORKER_MAX_ATTEMPTS=3\n"
    )
    settings = load_settings({"FRESHDESK_DOMAIN": "real.freshdesk.com", "LOG_LEVEL": "ERROR"},
                             env_file=env_file)
    assert settings.helpdesk == "freshdesk"
    assert settings.freshdesk_domain == "real.freshdesk.com"
    assert settings.freshdesk_api_key == "file-key"
    assert (settings.log_level, settings.worker_max_attempts) == ("ERROR", 3)


def test_missing_env_file_is_fine(tmp_path):
    assert load_settings(ZENDESK, env_file=tmp_path / "absent.env").sandbox is False


def test_env_file_errors_name_the_variable_too(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("RULES_PATH=rules/examples\nZENDESK_API_URL=gopher://old\n")
    with pytest.raises(ConfigError, match="ZENDESK_API_URL must be an http"):
        load_settings(ZENDESK, env_file=env_file)


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        load(ZENDESK).helpdesk = "freshdesk"


def test_webhook_secret_rejects_unknown_sources():
    with pytest.raises(ValueError, match="unknown helpdesk 'jira'"):
        load(ZENDESK).webhook_secret("jira")


def test_env_example_documents_every_variable_and_loads_as_a_sandbox():
    names = [line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines()
             if line and not line.startswith("#")]
    assert sorted(names) == sorted(VARIABLES)
    settings = load_settings({}, env_file=ENV_EXAMPLE)
    assert (settings.helpdesk, settings.sandbox, settings.rules_path) == ("zendesk", True, Path("rules"))


def test_settle_seconds():
    from config import load_settings as load

    assert load(ZENDESK, env_file=None).worker_settle_seconds == 1.0
    assert load({**ZENDESK, "WORKER_SETTLE_SECONDS": "0"}, env_file=None).worker_settle_seconds == 0.0
    for bad in ("-1", "soon", "301", "nan"):
        with pytest.raises(ConfigError, match="WORKER_SETTLE_SECONDS must be a number of seconds"):
            load({**ZENDESK, "WORKER_SETTLE_SECONDS": bad}, env_file=None)


def test_lease_and_database_timeouts():
    settings = load(ZENDESK)
    assert (settings.worker_lease_seconds, settings.database_timeout_seconds) == (20, 5.0)
    settings = load({**ZENDESK, "WORKER_LEASE_SECONDS": "12", "DATABASE_TIMEOUT_SECONDS": "2.5"})
    assert (settings.worker_lease_seconds, settings.database_timeout_seconds) == (12, 2.5)


def test_dotenv_fills_the_process_environment(tmp_path, monkeypatch):
    """Settings read later from os.environ (clock, write budget) see .env too; real variables win."""
    import os

    from config import load_settings as load

    env_file = tmp_path / ".env"
    env_file.write_text("SWEEP_INTERVAL_SECONDS=45\nWRITE_BUDGET_PER_MINUTE=50\n")
    monkeypatch.setenv("WRITE_BUDGET_PER_MINUTE", "70")
    monkeypatch.delenv("SWEEP_INTERVAL_SECONDS", raising=False)
    for name, value in ZENDESK.items():
        monkeypatch.setenv(name, value)
    load(os.environ, env_file=env_file)
    assert os.environ["SWEEP_INTERVAL_SECONDS"] == "45"
    assert os.environ["WRITE_BUDGET_PER_MINUTE"] == "70"
    monkeypatch.delenv("SWEEP_INTERVAL_SECONDS")


def test_one_settings_object_carries_every_process_setting():
    from pydantic_settings import BaseSettings

    from jobs.budget import BudgetLimits
    from jobs.clock import ClockConfig

    settings = load({**ZENDESK, "SWEEP_INTERVAL_SECONDS": "20", "RECONCILE_INTERVAL_SECONDS": "240",
                     "WRITE_BUDGET_PER_MINUTE": "40", "WRITE_BUDGET_PER_TICKET": "5", "SWEEP_LIMIT": "50"})
    assert isinstance(settings, BaseSettings)
    assert ClockConfig.from_settings(settings) == ClockConfig(20, 240, 10, 3600, 50, 14)
    assert BudgetLimits.from_settings(settings) == BudgetLimits(40, 5, 600)
    with pytest.raises(ConfigError) as raised:
        load({**ZENDESK, "WRITE_BUDGET_PER_MINUTE": "tok_secret_value"})
    assert str(raised.value) == "WRITE_BUDGET_PER_MINUTE must be a whole number >= 1"


def test_history_and_retention_settings_are_fields_passed_down():
    from jobs.clock import ClockConfig

    settings = load({**ZENDESK, "HISTORY_API_SHARE": "20%", "HISTORY_MAX_AGE": "600",
                     "AUDIT_RETENTION_DAYS": "30"})
    assert (settings.history_api_share, settings.history_max_age) == (0.2, 600)
    assert ClockConfig.from_settings(settings).audit_retention_days == 30
    defaults = load(ZENDESK)
    assert (defaults.history_api_share, defaults.history_max_age, defaults.audit_retention_days) == (
        0.3, 3600, 180)


def test_settings_read_the_process_environment_natively(monkeypatch, tmp_path):
    from config import Settings

    monkeypatch.chdir(tmp_path)
    for name, value in {**ZENDESK, "SWEEP_LIMIT": "9"}.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.zendesk_subdomain, settings.sweep_limit, settings.sandbox) == ("acme", 9, False)
    assert settings.model_copy(update={"zendesk_api_url": "http://x"}).zendesk_api_url == "http://x"
