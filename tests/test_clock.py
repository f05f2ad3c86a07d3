"""The clock: its jobs and their settings, a clean SIGTERM, and `flask sweep [--dry-run]`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from app import create_app
from config import ConfigError, load_settings
from jobs import scheduler as sweep_cli
from jobs.clock import ClockConfig, build_scheduler
from jobs.runtime import RulesHolder
from tests.sweep_helpers import CHOOZLE, ROOT, Clock, choozle, zendesk_world
from tests.test_sweeps import due_closes

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def sandbox_settings(base_url: str, database_url: str, rules=CHOOZLE):
    return load_settings({"HELPDESK": "zendesk", "ZENDESK_API_URL": base_url,
                          "DATABASE_URL": database_url, "RULES_PATH": str(rules)}, env_file=None,
                         sandbox=True)


@SQLITE_ONLY
def test_build_scheduler_makes_four_unstarted_jobs(store, database_url):
    settings = sandbox_settings("http://127.0.0.1:9", database_url)
    env = {"SWEEP_INTERVAL_SECONDS": "20", "RECONCILE_INTERVAL_SECONDS": "240"}
    scheduler = build_scheduler(settings, store, RulesHolder(CHOOZLE), environ=env)
    assert isinstance(scheduler, BackgroundScheduler) and not scheduler.running
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert {name: job.trigger.interval.total_seconds() for name, job in jobs.items()} == {
        "sweep": 20, "reconcile": 240, "rules-reload": 10, "purge": 3600, "replan": 10,
        "audit-retention": 21600, "outbox-resume": 300, "timer": 1}
    assert all((job.max_instances, job.coalesce) == (1, True) for job in jobs.values())
    assert jobs["rules-reload"].kwargs == {"force": False}


def test_clock_settings_name_the_variable_to_fix():
    assert ClockConfig.from_env({}) == ClockConfig(30, 180, 10, 3600, 500, 14, 180)
    with pytest.raises(ConfigError, match="SWEEP_INTERVAL_SECONDS must be a whole number >= 1"):
        ClockConfig.from_env({"SWEEP_INTERVAL_SECONDS": "0"})


@SQLITE_ONLY
def test_the_reload_job_keeps_the_last_good_rules(store, database_url, tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(CHOOZLE.read_text())
    holder = RulesHolder(rules_file)
    scheduler = build_scheduler(sandbox_settings("http://127.0.0.1:9", database_url, rules_file),
                                store, holder, environ={})
    reload = scheduler.get_job("rules-reload")
    good = holder.rules.version
    rules_file.write_text("version: 1\npolicies: [\n")
    reload.func(*reload.args, **reload.kwargs)
    assert holder.rules.version == good and "rules.yaml" in holder.status.error


def test_the_clock_process_stops_cleanly_on_sigterm(tmp_path):
    clock = Clock("2026-11-20T14:00:00Z")
    with zendesk_world(clock) as world:
        env = {**os.environ, "HELPDESK": "zendesk", "ZENDESK_API_URL": world.base_url,
               "DATABASE_URL": f"sqlite:///{tmp_path / 'clock.db'}", "RULES_PATH": str(CHOOZLE),
               "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO", "HELPDESK_SANDBOX": "1"}
        for name in ("ZENDESK_SUBDOMAIN", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "ZENDESK_WEBHOOK_SECRET"):
            env.pop(name, None)
        process = subprocess.Popen([sys.executable, "-m", "jobs.clock"], cwd=tmp_path, env=env,
                                   stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
                r["path"].startswith("/api/v2/incremental") for r in world.requests()):
            time.sleep(0.05)  # until the first reconciliation reached the sandbox
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        log = process.stderr.read()
    assert "clock started" in log and "zendesk reconciliation: 1 request(s)" in log
    assert "Traceback" not in log


# -- flask sweep -------------------------------------------------------------------------


def cli_app(store, settings, clock):
    app = create_app({"TESTING": True, "SETTINGS": settings, "STORE": store, "CLOCK": clock})
    if "sweep" not in app.cli.commands:  # until app.py calls jobs.scheduler.init_app itself
        sweep_cli.init_app(app)
    return app


@SQLITE_ONLY
def test_flask_sweep_dry_run_prints_the_plan_and_changes_nothing(store, database_url):
    clock = Clock("2026-11-04T16:00:00Z")
    with zendesk_world(clock) as world:
        ids = due_closes(store, world, clock, 3)
        clock.set("2026-11-09T18:00:00Z")
        writes = len(world.writes())
        app = cli_app(store, sandbox_settings(world.base_url, database_url), clock)

        result = app.test_cli_runner().invoke(args=["sweep", "--dry-run"])

        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0].split() == ["TICKET", "RULE", "ACTION", "PATH", "DUE", "/", "WHY"]
        rows = [line for line in lines[1:-1]]
        assert len(rows) == 9  # three tickets x (status, reply, note)
        first = rows[0].split(maxsplit=5)
        assert first[:5] == [ids[0], "resolve-after-3-business-days", "set_status", "solved", "bulk"]
        assert first[5].startswith("due 2026-11-09T18:00:00Z: Status set to solved by rule")
        assert lines[-1] == ("zendesk sweep (dry run, nothing changed): 3 due ticket(s), "
                             "9 action(s) would be taken")
        assert len(world.writes()) == writes
        assert all(world.ticket(t)["status"] == "pending" for t in ids)
        assert len(store.due_tickets(clock())) == 3


@SQLITE_ONLY
def test_flask_sweep_without_dry_run_sweeps_once(store, database_url):
    clock = Clock("2026-11-04T16:00:00Z")
    with zendesk_world(clock) as world:
        ids = due_closes(store, world, clock, 3)
        clock.set("2026-11-09T18:00:00Z")
        app = cli_app(store, sandbox_settings(world.base_url, database_url), clock)
        result = app.test_cli_runner().invoke(args=["sweep"])
        assert result.exit_code == 0, result.output
        assert "zendesk sweep: 3 due, 3 closed in bulk" in result.output
        assert all(world.ticket(t)["status"] == "solved" for t in ids)
        again = app.test_cli_runner().invoke(args=["sweep", "--dry-run"])
        assert again.output.splitlines()[0] == "no tickets are due"


@SQLITE_ONLY
def test_flask_sweep_without_rules_says_why(store, database_url, tmp_path):
    settings = sandbox_settings("http://127.0.0.1:9", database_url, tmp_path / "missing.yaml")
    result = cli_app(store, settings, Clock("2026-11-09T18:00:00Z")).test_cli_runner().invoke(
        args=["sweep", "--dry-run"])
    assert result.exit_code == 1 and "no rules loaded" in result.output
    assert "missing.yaml" in result.output
    assert choozle().version  # the real rules load; only the path was wrong
