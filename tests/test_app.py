"""The app factory's wiring: settings, store, rules, /healthz, CLI, scheduler."""

from __future__ import annotations

import os
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import jobs.scheduler  # noqa: F401 - imported before install_rules fakes engine.rulefile
from app import create_app, health_details
from config import load_settings
from store import Claim, Store

NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
ZENDESK_SECRET = "zd-signing-secret-123"  # noqa: S105
FRESHDESK_SECRET = "fd-shared-secret-456"  # noqa: S105


# Receiver tests that store nothing, or nothing database-specific, run on SQLite
# only; tests of what gets stored use conftest's `store` on SQLite and PostgreSQL.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# Nothing listens on port 1: every connection is refused at once.
UNREACHABLE_DATABASE = "postgresql+psycopg://deskpilot@127.0.0.1:1/deskpilot"


def down_store() -> Store:
    """A real Store whose database is down: health() reports it, enqueue() raises."""
    return Store(UNREACHABLE_DATABASE)


def queued(store: Store) -> list[Claim]:
    """Everything the receiver queued, one Claim per ticket (claimed by a test worker)."""
    return store.claim("test-worker", NOW + timedelta(hours=1), limit=100)


def settings_for(helpdesk: str = "zendesk", **extra: str):
    env = {
        "HELPDESK": helpdesk,
        "ZENDESK_SUBDOMAIN": "acme", "ZENDESK_EMAIL": "bot@acme.example",
        "ZENDESK_API_TOKEN": "zd-api-token", "ZENDESK_WEBHOOK_SECRET": ZENDESK_SECRET,
        "FRESHDESK_DOMAIN": "acme.freshdesk.com", "FRESHDESK_API_KEY": "fd-api-key",
        "FRESHDESK_WEBHOOK_SECRET": FRESHDESK_SECRET,
        **extra,
    }
    return load_settings(env, env_file=None)


def install_rules(monkeypatch, error: str | None = None) -> None:
    """Stand in for engine.rulefile (built by someone else) with a loader that works or fails."""
    module = types.ModuleType("engine.rulefile")

    class RuleFileError(Exception):
        pass

    def load_rules(path):
        if error:
            raise RuleFileError(error)
        return types.SimpleNamespace(version="r-2026-11-20", files=[f"{path}/cloudtalk.yaml"])

    module.RuleFileError = RuleFileError
    module.load_rules = load_rules
    monkeypatch.setitem(sys.modules, "engine.rulefile", module)


def make_app(store, settings=None, clock=lambda: NOW, **config):
    return create_app({"TESTING": True, "SETTINGS": settings or settings_for(), "STORE": store,
                       "CLOCK": clock, **config})


@pytest.fixture(autouse=True)
def rules(monkeypatch):
    install_rules(monkeypatch)


def test_healthz_ok(store):
    response = make_app(store).test_client().get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body == {"status": "ok", "database": "ok",
                    "rules": {"loaded": True, "version": "r-2026-11-20", "valid": True},
                    "backlog": 0, "inbox_pending": 0, "dead_letters": 0, "configuration_error": False}
    details = details_of(store)
    assert details["rules"] == {"loaded": True, "version": "r-2026-11-20",
                                "files": ["rules/cloudtalk.yaml"], "error": None}
    assert details["last_dead_letter"] is None


def details_of(store, **config):
    app = make_app(store, **config)
    with app.app_context():
        return health_details()


@SQLITE_ONLY
def test_healthz_rules_error_is_503_with_the_message(store, monkeypatch):
    install_rules(monkeypatch, error="rules/cloudtalk.yaml:12: targets.first_response: not a duration")
    response = make_app(store).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["rules"] == {"loaded": False, "version": None, "valid": False}
    assert "cloudtalk.yaml" not in response.get_data(as_text=True)  # no paths or errors in public
    rules = details_of(store)["rules"]
    assert rules["loaded"] is False
    assert rules["error"] == "rules/cloudtalk.yaml:12: targets.first_response: not a duration"


@SQLITE_ONLY
def test_healthz_without_engine_rulefile_is_503(store, monkeypatch):
    monkeypatch.setitem(sys.modules, "engine.rulefile", None)  # import fails
    response = make_app(store).test_client().get("/healthz")
    assert response.status_code == 503
    assert "engine.rulefile" in details_of(store)["rules"]["error"]


def test_healthz_database_down_is_503():
    response = make_app(down_store()).test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["database"] == "unavailable" and body["status"] == "unavailable"
    assert (body["backlog"], body["inbox_pending"], body["dead_letters"]) == (None, None, None)
    assert details_of(down_store())["database"] == "error: OperationalError"


def test_healthz_counts_the_inbox(store):
    client = make_app(store).test_client()
    for key, ticket in (("e1", "101"), ("e2", "101"), ("e3", "102")):
        store.enqueue(source="zendesk", dedupe_key=key, ticket_id=ticket,
                      event_type="status_changed", payload={}, received_at=NOW)
    body = client.get("/healthz").get_json()
    assert (body["backlog"], body["inbox_pending"], body["dead_letters"]) == (2, 3, 0)


@SQLITE_ONLY
def test_healthz_survives_a_store_whose_health_raises(store, monkeypatch):
    monkeypatch.setattr(store, "health", lambda: 1 / 0)
    response = make_app(store).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unavailable"
    assert details_of(store)["database"] == "error: ZeroDivisionError"


def test_healthz_reports_a_dead_letter(store):
    store.enqueue(source="zendesk", dedupe_key="e1", ticket_id="5158", event_type="created",
                  payload={}, received_at=NOW)
    (claim,) = queued(store)
    store.dead_letter(claim, NOW + timedelta(hours=1), "NotFoundError: ticket 5158 is gone")
    response = make_app(store).test_client().get("/healthz")
    assert response.status_code == 200  # dead letters are reported, not an outage
    assert response.get_json()["dead_letters"] == 1
    assert "gone" not in response.get_data(as_text=True)  # the error text is not public
    body = details_of(store)
    assert body["last_dead_letter"]["ticket_id"] == "5158"
    assert body["last_dead_letter"]["error"] == "NotFoundError: ticket 5158 is gone"
    assert body["last_dead_letter"]["at"].startswith("2026-11-20T16:30:00")


@SQLITE_ONLY
def test_healthz_writes_datetime_instants_as_iso(store, monkeypatch):
    at = datetime(2026, 11, 20, 16, 0, 5, tzinfo=UTC)
    health = {"database": "ok", "backlog": 2, "inbox_pending": 3, "dead_letters": 1,
              "last_dead_letter": {"ticket_id": "5158", "error": "NotFoundError", "at": at}}
    monkeypatch.setattr(store, "health", lambda: health)
    assert make_app(store).test_client().get("/healthz").get_json()["dead_letters"] == 1
    body = details_of(store)
    assert body["last_dead_letter"] == {"ticket_id": "5158", "error": "NotFoundError",
                                        "at": "2026-11-20T16:00:05Z"}


@SQLITE_ONLY
def test_settings_come_from_the_environment_when_not_given(store, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("HELPDESK", "freshdesk")
    monkeypatch.setenv("HELPDESK_SANDBOX", "1")
    for name in ("FRESHDESK_DOMAIN", "FRESHDESK_API_KEY", "FRESHDESK_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    app = create_app({"TESTING": True, "STORE": store})
    settings = app.extensions["deskpilot"]["settings"]
    assert (settings.helpdesk, settings.sandbox) == ("freshdesk", True)
    with app.app_context():
        assert health_details()["helpdesk"] == "freshdesk"


@SQLITE_ONLY
def test_webhook_for_the_other_helpdesk_is_404(store):
    client = make_app(store, settings_for("freshdesk")).test_client()
    response = client.post("/webhooks/zendesk", data=b"{}")
    assert response.status_code == 404
    assert "HELPDESK=freshdesk" in response.get_json()["error"]
    assert queued(store) == []


@SQLITE_ONLY
def test_webhooks_accept_only_post(store):
    assert make_app(store).test_client().get("/webhooks/zendesk").status_code == 405


@SQLITE_ONLY
def test_oversized_body_is_413(store):
    response = make_app(store).test_client().post("/webhooks/zendesk", data=b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413


@SQLITE_ONLY
def test_naive_clock_is_refused(store):
    client = make_app(store, clock=lambda: datetime(2026, 11, 20, 15, 30)).test_client()  # noqa: DTZ001
    with pytest.raises(RuntimeError, match="naive"):
        client.post("/webhooks/zendesk", data=b"{}")


class Holder:
    """Stands in for jobs.runtime.RulesHolder: a live `.status` and `.reload()`."""

    def __init__(self, error: str | None = None) -> None:
        self.error, self.reloads = error, 0
        self.status_override = None

    @property
    def status(self):
        if self.status_override is not None:
            return self.status_override
        return types.SimpleNamespace(loaded=self.error is None, version=None if self.error else "r-7",
                                     files=() if self.error else ("rules/deskpilot.yaml",),
                                     error=self.error)

    def reload(self, force: bool = True) -> bool:
        self.reloads += 1
        return True


@SQLITE_ONLY
def test_shared_rules_holder_status_is_reported_live(store):
    holder = Holder()
    client = make_app(store, RULES=holder).test_client()
    assert client.get("/healthz").get_json()["rules"] == {"loaded": True, "version": "r-7", "valid": True}
    assert details_of(store, RULES=holder)["rules"] == {
        "loaded": True, "version": "r-7", "files": ["rules/deskpilot.yaml"], "error": None}
    holder.error = "rules/deskpilot.yaml:4: calendars.office.timezone: unknown time zone 'CET+1'"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert details_of(store, RULES=holder)["rules"]["error"].startswith("rules/deskpilot.yaml:4:")


@pytest.fixture
def fake_clock_module(monkeypatch):
    """Stands in for jobs.clock: records build_scheduler calls and started schedulers."""
    import jobs

    calls = []

    class Scheduler:
        def start(self):
            calls.append("start")

    def build_scheduler(settings, store, rules):
        calls.append(("build", settings, store, rules))
        return Scheduler()

    module = types.ModuleType("jobs.clock")
    module.build_scheduler = build_scheduler
    monkeypatch.setitem(sys.modules, "jobs.clock", module)
    monkeypatch.setattr(jobs, "clock", module, raising=False)
    return calls


@SQLITE_ONLY
def test_scheduler_starts_only_when_asked_and_never_under_testing(store, fake_clock_module):
    holder, settings = Holder(), settings_for()
    make_app(store, settings, RULES=holder, RUN_SCHEDULER=True)  # TESTING
    create_app({"SETTINGS": settings, "STORE": store, "RULES": holder})  # RUN_SCHEDULER off
    assert fake_clock_module == []
    app = create_app({"SETTINGS": settings, "STORE": store, "RULES": holder, "RUN_SCHEDULER": True})
    assert fake_clock_module == [("build", settings, store, holder), "start"]
    assert app.extensions["deskpilot"]["scheduler"] is not None


@SQLITE_ONLY
def test_scheduler_needs_the_shared_rules_holder(store, fake_clock_module):
    with pytest.raises(RuntimeError, match="RUN_SCHEDULER needs RULES"):
        create_app({"SETTINGS": settings_for(), "STORE": store, "RUN_SCHEDULER": True})


@SQLITE_ONLY
def test_check_rules_command(store, monkeypatch):
    app = make_app(store)
    result = app.test_cli_runner().invoke(args=["check-rules"])
    assert result.exit_code == 0
    assert "r-2026-11-20" in result.output
    install_rules(monkeypatch, error="rules/x.yaml:3: priority: unknown value 'asap'")
    result = app.test_cli_runner().invoke(args=["check-rules"])
    assert result.exit_code != 0
    assert "rules/x.yaml:3: priority: unknown value 'asap'" in result.output


@SQLITE_ONLY
def test_check_rules_command_reloads_the_shared_holder(store):
    holder = Holder()
    result = make_app(store, RULES=holder).test_cli_runner().invoke(args=["check-rules"])
    assert (result.exit_code, holder.reloads) == (0, 1)
    assert "rules r-7: rules/deskpilot.yaml" in result.output


@SQLITE_ONLY
def test_migrate_command_calls_the_store(store, monkeypatch):
    calls = []
    monkeypatch.setattr(store, "migrate", lambda: calls.append("migrate"))
    result = make_app(store).test_cli_runner().invoke(args=["migrate"])
    assert result.exit_code == 0, result.output
    assert calls == ["migrate"]


@SQLITE_ONLY
@pytest.mark.parametrize(("rules_path", "files"), [
    ("rules/", ["rules/deskpilot.yaml"]),  # the default RULES_PATH
    ("rules/examples/cloudtalk.yaml", ["rules/examples/cloudtalk.yaml"]),
])
def test_real_rule_files_are_loaded(store, monkeypatch, rules_path, files):
    monkeypatch.delitem(sys.modules, "engine.rulefile")  # the real loader, not the stand-in
    settings = settings_for(RULES_PATH=rules_path)
    response = make_app(store, settings).test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json()["rules"]["valid"] is True
    rules = details_of(store, SETTINGS=settings)["rules"]
    assert (rules["loaded"], rules["error"]) == (True, None)
    assert rules["version"]
    assert rules["files"] == files


@SQLITE_ONLY
def test_real_rule_file_error_names_the_file(store, monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "engine.rulefile")
    (tmp_path / "broken.yaml").write_text("version: 1\nrules: [\n")
    settings = settings_for(RULES_PATH=str(tmp_path))
    response = make_app(store, settings).test_client().get("/healthz")
    assert response.status_code == 503
    assert "broken.yaml" not in response.get_data(as_text=True)
    assert "broken.yaml" in details_of(store, SETTINGS=settings)["rules"]["error"]


GOOD_RULES = (Path(__file__).resolve().parent.parent / "rules" / "deskpilot.yaml").read_text()


def edit(path: Path, text: str) -> None:
    """Write a rule file so that its size or mtime differs from before (as an admin's edit does)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


@SQLITE_ONLY
def test_healthz_follows_rule_edits_in_the_web_process(store, monkeypatch, tmp_path):
    """Under gunicorn the web process does not share the worker's rules: it must reload too."""
    monkeypatch.delitem(sys.modules, "engine.rulefile")
    monkeypatch.setattr("app.RULES_CHECK_SECONDS", 0.0)
    rule_file = tmp_path / "deskpilot.yaml"
    edit(rule_file, GOOD_RULES)
    client = make_app(store, settings_for(RULES_PATH=str(tmp_path))).test_client()
    first = client.get("/healthz")
    assert (first.status_code, first.get_json()["status"]) == (200, "ok")
    version = first.get_json()["rules"]["version"]

    edit(rule_file, GOOD_RULES + "\n  - this is not: [valid\n")  # a bad edit
    broken = client.get("/healthz")
    # The last good rules still run: degraded, not down; the version is the one in use.
    assert (broken.status_code, broken.get_json()["status"]) == (200, "degraded")
    assert broken.get_json()["rules"] == {"loaded": True, "version": version, "valid": False}

    edit(rule_file, GOOD_RULES.replace("version:", "# edited\nversion:", 1))  # fixed, and changed
    fixed = client.get("/healthz").get_json()
    assert fixed["status"] == "ok" and fixed["rules"]["valid"] is True
    assert fixed["rules"]["version"] != version


@SQLITE_ONLY
def test_a_web_started_with_broken_rules_recovers_when_they_are_fixed(store, monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "engine.rulefile")
    monkeypatch.setattr("app.RULES_CHECK_SECONDS", 0.0)
    rule_file = tmp_path / "deskpilot.yaml"
    edit(rule_file, "version: 1\nrules: [\n")
    client = make_app(store, settings_for(RULES_PATH=str(tmp_path))).test_client()
    assert client.get("/healthz").status_code == 503
    edit(rule_file, GOOD_RULES)
    response = client.get("/healthz")
    assert (response.status_code, response.get_json()["status"]) == (200, "ok")


@SQLITE_ONLY
def test_a_broken_edit_of_a_shared_holder_is_degraded(store):
    holder = Holder()
    client = make_app(store, RULES=holder).test_client()
    holder.status_override = types.SimpleNamespace(loaded=True, version="r-7", files=("rules/x.yaml",),
                                                   error="rules/x.yaml:3: bad")
    response = client.get("/healthz")
    assert (response.status_code, response.get_json()["status"]) == (200, "degraded")


def test_built_store_is_migrated_and_leaves_no_connection_open_for_forked_workers(database_url):
    app = create_app({"TESTING": True, "SETTINGS": settings_for(DATABASE_URL=database_url)})
    store = app.extensions["deskpilot"]["store"]
    try:
        # gunicorn --preload forks after create_app: an idle pooled connection
        # here would be shared by every worker process.
        assert store.engine.pool.checkedin() == 0
        assert app.test_client().get("/healthz").get_json()["database"] == "ok"  # tables exist
    finally:
        store.engine.dispose()
