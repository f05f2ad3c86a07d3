"""Story tests on the Freshdesk sandbox: history by updated_since with conversations, cached."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from sandbox.freshdesk import SANDBOX_API_KEY, create_sandbox, serve_in_thread
from tests.simulate_helpers import (
    AUTO_CLOSE,
    MONDAY,
    Clock,
    base_rules,
    rules_file,
    simulate_json,
    simulation_app,
)

AUTH = (SANDBOX_API_KEY, "X")


@pytest.fixture
def helpdesk():
    clock = Clock(MONDAY)
    sandbox = create_sandbox(clock=clock)
    url, stop = serve_in_thread(sandbox)
    ids: dict[str, str] = {}
    h = timedelta(hours=1)

    def create(name: str, hours: float) -> None:
        clock.at(MONDAY + hours * h)
        response = requests.post(f"{url}/api/v2/tickets", auth=AUTH, timeout=5, json={
            "subject": f"Ticket {name}", "description": "Help please", "email": "casey@example.org"})
        response.raise_for_status()
        ids[name] = str(response.json()["id"])

    def reply(name: str, hours: float, author: str, status: int | None = None) -> None:
        clock.at(MONDAY + hours * h)
        requests.post(f"{url}/_sandbox/tickets/{ids[name]}/conversations", timeout=5,
                      json={"author": author, "body": f"{author} writes"}).raise_for_status()
        if status:
            requests.put(f"{url}/api/v2/tickets/{ids[name]}", auth=AUTH, timeout=5,
                         json={"status": status}).raise_for_status()

    create("closed", 0)
    create("false", 0.5)
    reply("closed", 1, "agent", 3)
    reply("false", 2, "agent", 3)
    reply("false", 97, "customer")  # Friday 10:00: reopens the pending ticket
    clock.at(MONDAY + 7 * 24 * h)
    sandbox.state.requests.clear()
    try:
        yield clock, url, sandbox, ids
    finally:
        stop()


def _app(tmp_path, clock, url):
    return simulation_app(tmp_path, clock, base_rules(), {"HELPDESK": "freshdesk", "FRESHDESK_API_URL": url})


def test_auto_close_story_on_freshdesk_and_a_cached_second_run(tmp_path, helpdesk):
    clock, url, sandbox, ids = helpdesk
    app = _app(tmp_path, clock, url)
    proposed = rules_file(tmp_path, "new.yaml", base_rules() + AUTO_CLOSE)
    report = simulate_json(app, "--rules", proposed)
    assert report["tickets"] == 2
    assert report["auto_closes"]["proposed"] == {"close-pending": [ids["closed"], ids["false"]]}
    assert [f["ticket"] for f in report["false_closes"]["proposed"]["close-pending"]] == [ids["false"]]
    assert report["links"][ids["closed"]] == f"{url}/a/tickets/{ids['closed']}"
    paths = [(r["path"], r["query"].get("updated_since"), r["query"].get("include"))
             for r in sandbox.state.requests]
    assert paths == [
        ("/api/v2/agents", None, None),
        ("/api/v2/tickets", "2024-03-04T00:00:00Z", "stats"),
        (f"/api/v2/tickets/{ids['closed']}/conversations", None, None),
        (f"/api/v2/tickets/{ids['false']}/conversations", None, None),
    ]
    calls = len(sandbox.state.requests)
    again = simulate_json(app, "--rules", proposed)
    assert len(sandbox.state.requests) == calls
    assert again["history"]["cached"] is True
