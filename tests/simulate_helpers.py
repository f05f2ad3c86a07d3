"""Shared by the simulation story tests on both sandboxes: rules, a settable clock, the app and its CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app import create_app
from config import load_settings

MONDAY = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
BASE = """
version: 1
calendars:
  office:
    timezone: UTC
    hours: {mon-fri: ["09:00-17:00"]}
    %HOLIDAYS%
policies:
  - id: standard
    calendar: office
    targets:
      first_response: 4h
"""
AUTO_CLOSE = """
auto_close:
  - id: close-pending
    when: {status: pending}
    after: 16h
    calendar: office
    reply: Closing for now; reply to reopen.
"""
WEEK = ("--from", "2024-03-04", "--to", "2024-03-10")


def base_rules(holidays: str = "") -> str:
    """An office calendar (with `holidays`, a calendar key) and a 4h first response target."""
    return BASE.replace("%HOLIDAYS%", holidays)


class Clock:
    """The app's clock, set by the test; it never goes back."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, when: datetime) -> None:
        assert when >= self.now
        self.now = when


def simulation_app(tmp_path: Path, clock: Clock, rules_text: str, env: dict[str, str]) -> Any:
    """The app on a sandbox helpdesk (`env`: HELPDESK and its API URL) with `rules_text` live."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text)
    settings = load_settings({"HELPDESK_SANDBOX": "1", "RULES_PATH": str(rules),
                              "DATABASE_URL": f"sqlite:///{tmp_path / 'deskpilot.db'}", **env}, env_file=None)
    return create_app({"TESTING": True, "SETTINGS": settings, "CLOCK": clock})


def rules_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def simulate_json(app: Any, *args: str) -> dict[str, Any]:
    """`flask simulate ARGS` over the seeded week, as JSON; the command must succeed."""
    result = app.test_cli_runner().invoke(args=["simulate", *args, *WEEK, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
