"""Story tests: `flask simulate` and `flask report sla` on the Zendesk sandbox with seeded history."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import requests

from sandbox.zendesk import SANDBOX_TOKEN, create_sandbox, serve_in_thread
from sandbox.zendesk_state import CUSTOMER_ID, SANDBOX_EMAIL
from tests.simulate_helpers import (
    AUTO_CLOSE,
    MONDAY,
    Clock,
    base_rules,
    rules_file,
    simulate_json,
    simulation_app,
)

AUTH = (f"{SANDBOX_EMAIL}/token", SANDBOX_TOKEN)


@pytest.fixture
def helpdesk():
    """A sandbox with a week of history: (clock, base url, sandbox app, ticket ids by name)."""
    clock = Clock(MONDAY)
    sandbox = create_sandbox(clock=clock)
    url, stop = serve_in_thread(sandbox)
    ids: dict[str, str] = {}

    def create(name: str, when: datetime) -> None:
        clock.at(when)
        body = {"ticket": {"subject": f"Ticket {name}", "requester_id": CUSTOMER_ID, "status": "open",
                           "comment": {"body": "Help please", "author_id": CUSTOMER_ID}}}
        response = requests.post(f"{url}/api/v2/tickets.json", json=body, auth=AUTH, timeout=5)
        response.raise_for_status()
        ids[name] = str(response.json()["ticket"]["id"])

    def comment(name: str, when: datetime, author: str, status: str | None = None) -> None:
        clock.at(when)
        body = {"author": author, "body": f"{author} writes", **({"status": status} if status else {})}
        requests.post(f"{url}/_sandbox/tickets/{ids[name]}/comments", json=body, timeout=5).raise_for_status()

    h = timedelta(hours=1)
    create("closed", MONDAY)  # the agent asks, the customer never answers: closed, rightly
    create("false", MONDAY + 0.5 * h)  # the customer answers days later: a false close
    create("quick", MONDAY + 1 * h)  # the customer answers within hours: not closed
    comment("closed", MONDAY + 1 * h, "agent", "pending")
    comment("false", MONDAY + 2 * h, "agent", "pending")
    comment("quick", MONDAY + 3 * h, "agent", "pending")
    comment("quick", MONDAY + 6 * h, "customer", "open")
    create("late", MONDAY + 31 * h)  # Tuesday 16:00, never answered: its due crosses Wednesday
    comment("quick", MONDAY + 49 * h, "agent", "solved")  # Wednesday 10:00
    comment("false", MONDAY + 97 * h, "customer", "open")  # Friday 10:00
    clock.at(MONDAY + 7 * 24 * h)  # the next Monday: the simulation runs now
    sandbox.state.requests.clear()  # count only what the simulation asks
    try:
        yield clock, url, sandbox, ids
    finally:
        stop()


def _app(tmp_path, clock, url, rules_text):
    return simulation_app(tmp_path, clock, rules_text, {"HELPDESK": "zendesk", "ZENDESK_API_URL": url})


def test_adding_an_auto_close_reports_the_tickets_it_closes_and_the_false_closes(tmp_path, helpdesk):
    clock, url, sandbox, ids = helpdesk
    app = _app(tmp_path, clock, url, base_rules())
    report = simulate_json(app, "--rules", rules_file(tmp_path, "new.yaml", base_rules() + AUTO_CLOSE))
    assert report["window"] == {"from": "2024-03-04T00:00:00Z", "to": "2024-03-10T23:59:59Z"}
    assert report["tickets"] == 4
    closed = [ids["closed"], ids["false"]]
    assert report["auto_closes"] == {"baseline": {}, "proposed": {"close-pending": closed}}
    false = report["false_closes"]["proposed"]["close-pending"]
    # 16 office hours after the agent's Monday 11:00 reply is Wednesday 11:00.
    assert false == [{"ticket": ids["false"], "closed_at": "2024-03-06T11:00:00Z",
                      "customer_wrote_at": "2024-03-08T10:00:00Z"}]
    assert report["false_closes"]["baseline"] == {}
    closes = [c for c in report["changes"] if c["type"] == "set_status"]
    assert [(c["ticket"], c["at"], c["rule"], c["baseline"], c["proposed"]) for c in closes] == [
        (ids["closed"], "2024-03-06T10:00:00Z", "close-pending", None, "solved"),
        (ids["false"], "2024-03-06T11:00:00Z", "close-pending", None, "solved"),
    ]
    # The false close reopened when the customer wrote; the right one stays solved.
    assert report["differences"]["status"] == [ids["closed"]]
    assert set(report["summary"]) == {"first_response", "resolution", "next_update", "next_reply"}
    assert report["summary"]["first_response"]["breaches_baseline"] == 1  # "late": never answered
    assert report["summary"]["first_response"]["breaches_proposed"] == 1
    assert report["links"][ids["false"]] == f"{url}/agent/tickets/{ids['false']}"


def test_a_holiday_moves_the_dues_it_covers_and_no_others(tmp_path, helpdesk):
    clock, url, sandbox, ids = helpdesk
    app = _app(tmp_path, clock, url, base_rules())
    holiday = base_rules("holidays: {dates: [2024-03-06]}")
    report = simulate_json(app, "--rules", rules_file(tmp_path, "new.yaml", holiday))
    dues = [(c["ticket"], c["baseline"], c["proposed"], c["moved_seconds"])
            for c in report["changes"] if c["type"] == "due"]
    # Tuesday 16:00 + 4 office hours: Wednesday 12:00, with Wednesday off Thursday 12:00.
    assert dues == [(ids["late"], "2024-03-06T12:00:00Z", "2024-03-07T12:00:00Z", 86_400)]
    assert report["due_moves"]["first_response"]["later"] == 1
    assert {c["type"] for c in report["changes"]} <= {"due", "set_fields", "note"}


def test_an_identical_baseline_reports_no_change_and_the_second_run_no_vendor_call(tmp_path, helpdesk):
    clock, url, sandbox, ids = helpdesk
    app = _app(tmp_path, clock, url, base_rules())
    same = rules_file(tmp_path, "same.yaml", base_rules())
    first = simulate_json(app, "--rules", same)
    assert first["changes"] == [] and first["tickets_changed"] == 0
    assert first["history"]["calls"] > 0 and not first["history"]["cached"]
    calls = len(sandbox.state.requests)
    second = simulate_json(app, "--rules", same, "--baseline", same)
    assert len(sandbox.state.requests) == calls  # the sandbox's request log: not one call
    assert second["history"] == {"calls": 0, "read": 0, "cached": True}
    assert second["changes"] == [] and second["tickets"] == first["tickets"] == 4


def test_history_comes_from_the_incremental_exports(tmp_path, helpdesk):
    clock, url, sandbox, ids = helpdesk
    app = _app(tmp_path, clock, url, base_rules())
    simulate_json(app, "--rules", rules_file(tmp_path, "same.yaml", base_rules()))
    paths = [(r["path"], r["query"].get("include")) for r in sandbox.state.requests]
    assert paths == [
        ("/api/v2/incremental/tickets/cursor.json", "users"),
        ("/api/v2/incremental/ticket_events.json", "comment_events"),
        ("/api/v2/custom_statuses.json", None),  # once: the custom statuses' labels
    ]


def test_sla_report_lists_met_and_breached_per_target_priority_and_policy(tmp_path, helpdesk):
    clock, url, sandbox, ids = helpdesk
    app = _app(tmp_path, clock, url, base_rules())
    result = app.test_cli_runner().invoke(args=["report", "sla", "--from", "2024-03-04", "--to", "2024-03-10",
                                                "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == [{
        "target": "first_response", "priority": "none", "policy": "standard", "met": 3, "breached": 1,
        "running": 0, "paused": 0,
        "breached_tickets": [{"ticket": ids["late"], "due": "2024-03-06T12:00:00Z"}],
    }]
    assert report["totals"]["first_response"]["compliance"] == 0.75
    table = app.test_cli_runner().invoke(args=["report", "sla", "--from", "2024-03-04", "--to", "2024-03-10"])
    assert "first_response: 3 met, 1 breached (75.0% met)" in table.stdout


def test_html_report_is_one_self_contained_file(tmp_path, helpdesk):
    clock, url, sandbox, ids = helpdesk
    app = _app(tmp_path, clock, url, base_rules())
    out = tmp_path / "report.html"
    result = app.test_cli_runner().invoke(args=[
        "simulate", "--rules", rules_file(tmp_path, "new.yaml", base_rules() + AUTO_CLOSE), "--since", "8d",
        "--format", "html", "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page and "<link" not in page
    assert f'href="{url}/agent/tickets/{ids["false"]}"' in page
    assert "close-pending" in page and "false closes" in page


def test_a_bad_rule_file_is_a_one_line_error(tmp_path, helpdesk):
    clock, url, sandbox, ids = helpdesk
    app = _app(tmp_path, clock, url, base_rules())
    text = "version: 1\npolicies:\n  - id: x\n    targets: {first_response: soon}\n"
    bad = rules_file(tmp_path, "bad.yaml", text)
    result = app.test_cli_runner().invoke(args=["simulate", "--rules", bad, "--since", "7d"])
    assert result.exit_code != 0 and "bad.yaml" in result.output and "Traceback" not in result.output
    assert sandbox.state.requests == []  # nothing read for rules that cannot run
