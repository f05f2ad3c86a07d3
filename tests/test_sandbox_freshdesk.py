"""The local Freshdesk sandbox, and the connector talking to it over real HTTP."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask, request

from connectors.base import NotFoundError, RateLimitedError, TicketChanges
from connectors.freshdesk import FreshdeskConnector
from connectors.freshdesk import events as freshdesk_events
from engine.ticket import Event, to_epoch
from sandbox.freshdesk import SANDBOX_API_KEY, create_sandbox, serve_in_thread

AUTH = (SANDBOX_API_KEY, "X")
START = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def epoch(value: datetime) -> int:
    return to_epoch(value)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock):
    return create_sandbox(clock=clock)


@pytest.fixture
def client(app):
    test_client = app.test_client()

    def call(method, path, **kwargs):
        kwargs.setdefault("auth", AUTH)
        return test_client.open(path, method=method, **kwargs)

    return call


def new_ticket(client, **fields):
    body = {"subject": "Calls failing", "description": "<div>Every call fails</div>",
            "email": "c@example.com", "priority": 4, **fields}
    response = client("POST", "/api/v2/tickets", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


# -- the API subset ------------------------------------------------------------

def test_api_calls_need_the_api_key(client):
    assert client("GET", "/api/v2/tickets/1", auth=("wrong", "X")).status_code == 401
    assert client("GET", "/api/v2/tickets/1", auth=None).status_code == 401


def test_create_show_and_stats(client, clock):
    ticket = new_ticket(client, tags=["vip"], custom_fields={"cf_plan": "premium"})
    shown = client("GET", f"/api/v2/tickets/{ticket['id']}?include=stats").get_json()
    assert shown["subject"] == "Calls failing"
    assert shown["description_text"] == "Every call fails"
    assert (shown["status"], shown["priority"], shown["tags"]) == (2, 4, ["vip"])
    assert shown["custom_fields"] == {"cf_plan": "premium"}
    assert shown["created_at"] == "2026-11-20T14:30:00Z"
    assert shown["stats"]["status_updated_at"] == "2026-11-20T14:30:00Z"
    assert "stats" not in client("GET", f"/api/v2/tickets/{ticket['id']}").get_json()
    assert client("GET", "/api/v2/tickets/99").status_code == 404


def test_put_replaces_tags_merges_fields_and_tracks_status_stats(client, clock):
    tid = new_ticket(client, tags=["a"], custom_fields={"cf_plan": "basic", "cf_x": 1})["id"]
    clock.advance(60)
    client("PUT", f"/api/v2/tickets/{tid}", json={"status": 3, "tags": ["b"],
                                                   "custom_fields": {"cf_plan": "premium"}})
    clock.advance(60)
    client("PUT", f"/api/v2/tickets/{tid}", json={"status": 4})
    clock.advance(60)
    shown = client("PUT", f"/api/v2/tickets/{tid}", json={"status": 2}).get_json()
    stats = client("GET", f"/api/v2/tickets/{tid}?include=stats").get_json()["stats"]
    assert shown["tags"] == ["b"]
    assert shown["custom_fields"] == {"cf_plan": "premium", "cf_x": 1}
    assert stats["pending_since"] == "2026-11-20T14:31:00Z"
    assert stats["resolved_at"] == "2026-11-20T14:32:00Z"
    assert stats["reopened_at"] == stats["status_updated_at"] == "2026-11-20T14:33:00Z"


@pytest.mark.parametrize("body, field", [
    ({"priority": 9}, "priority"), ({"status": 1}, "status"), ({"colour": "red"}, "colour"),
    ({"tags": "vip"}, "tags"),
])
def test_put_validation_errors_look_like_freshdesks(client, body, field):
    tid = new_ticket(client)["id"]
    response = client("PUT", f"/api/v2/tickets/{tid}", json=body)
    assert response.status_code == 400
    assert response.get_json()["description"] == "Validation failed"
    assert response.get_json()["errors"][0]["field"] == field


def test_conversations_are_paginated_with_link_headers(client):
    tid = new_ticket(client)["id"]
    for n in range(5):
        client("POST", f"/api/v2/tickets/{tid}/notes", json={"body": f"note {n}"})
    first = client("GET", f"/api/v2/tickets/{tid}/conversations?per_page=2")
    assert [c["body"] for c in first.get_json()] == ["note 0", "note 1"]
    link = first.headers["Link"]
    assert link.endswith('/api/v2/tickets/1/conversations?per_page=2&page=2>; rel="next"')
    last = client("GET", f"/api/v2/tickets/{tid}/conversations?per_page=2&page=3")
    assert [c["body"] for c in last.get_json()] == ["note 4"]
    assert "Link" not in last.headers
    too_big = client("GET", f"/api/v2/tickets/{tid}/conversations?per_page=101")
    assert too_big.status_code == 400


def test_note_and_reply(client):
    tid = new_ticket(client)["id"]
    note = client("POST", f"/api/v2/tickets/{tid}/notes", json={"body": "<b>x</b>", "private": True})
    reply = client("POST", f"/api/v2/tickets/{tid}/reply", json={"body": "hello"})
    assert note.status_code == reply.status_code == 201
    assert (note.get_json()["private"], note.get_json()["incoming"]) == (True, False)
    assert (reply.get_json()["private"], reply.get_json()["incoming"]) == (False, False)
    stats = client("GET", f"/api/v2/tickets/{tid}?include=stats").get_json()["stats"]
    assert stats["first_responded_at"] == "2026-11-20T14:30:00Z"
    assert client("POST", f"/api/v2/tickets/{tid}/reply", json={"body": " "}).status_code == 400


def test_bulk_update_and_job(client):
    a, b = new_ticket(client)["id"], new_ticket(client)["id"]
    accepted = client("POST", "/api/v2/tickets/bulk_update",
                      json={"bulk_action": {"ids": [a, b, 77], "properties": {"status": 5}}})
    assert accepted.status_code == 202
    job = client("GET", f"/api/v2/jobs/{accepted.get_json()['job_id']}").get_json()
    assert job["status"] == "completed"
    assert [(r["id"], r["success"]) for r in job["data"]] == [(a, True), (b, True), (77, False)]
    assert client("GET", f"/api/v2/tickets/{b}").get_json()["status"] == 5


def test_list_updated_since_ascending_and_page_limit(client, clock):
    ids = []
    for _ in range(3):
        ids.append(new_ticket(client)["id"])
        clock.advance(60)
    client("PUT", f"/api/v2/tickets/{ids[0]}", json={"priority": 1})  # now the latest update
    query = "updated_since=2026-11-20T14:31:00Z&order_by=updated_at&order_type=asc&per_page=100"
    listed = client("GET", f"/api/v2/tickets?{query}").get_json()
    assert [t["id"] for t in listed] == [ids[1], ids[2], ids[0]]
    assert client("GET", f"/api/v2/tickets?{query}&page=301").status_code == 400


def test_rate_limit_headers_and_429(clock):
    app = create_sandbox(clock=clock, rate_limit=2)
    client = app.test_client()
    first = client.get("/api/v2/tickets", auth=AUTH)
    assert (first.headers["X-RateLimit-Total"], first.headers["X-RateLimit-Remaining"]) == ("2", "1")
    client.get("/api/v2/tickets", auth=AUTH)
    limited = client.get("/api/v2/tickets", auth=AUTH)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "60"
    clock.advance(60)
    assert client.get("/api/v2/tickets", auth=AUTH).status_code == 200


def test_request_log_and_reset(client, app):
    tid = new_ticket(client)["id"]
    client("GET", f"/api/v2/tickets/{tid}?include=stats")
    log = app.test_client().get("/_sandbox/requests").get_json()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("POST", "/api/v2/tickets", 201), ("GET", f"/api/v2/tickets/{tid}", 200)]
    assert log[1]["query"] == {"include": "stats"}
    assert app.test_client().post("/_sandbox/reset").status_code == 204
    assert app.test_client().get("/_sandbox/requests").get_json() == []
    assert client("GET", f"/api/v2/tickets/{tid}").status_code == 404


def test_customer_message_reopens_a_pending_ticket(client, app):
    tid = new_ticket(client, status=3)["id"]
    added = app.test_client().post(f"/_sandbox/tickets/{tid}/conversations",
                                   json={"author": "customer", "body": "any news?"})
    assert added.get_json()["incoming"] is True
    assert client("GET", f"/api/v2/tickets/{tid}").get_json()["status"] == 2


# -- webhooks over real HTTP ---------------------------------------------------

@pytest.fixture
def receiver():
    """A local server that records the webhooks it is sent."""
    got, lock = [], threading.Lock()
    hooks = Flask("receiver")

    @hooks.post("/hooks/freshdesk")
    def receive():
        with lock:
            got.append((request.headers.get("X-Deskpilot-Secret"), request.get_json()))
        return "", 204

    base_url, stop = serve_in_thread(hooks)
    yield f"{base_url}/hooks/freshdesk", got
    stop()


def test_every_change_posts_a_webhook_the_app_can_read(receiver, clock):
    url, got = receiver
    app = create_sandbox(webhook_url=url, webhook_secret="s3cret", clock=clock)
    client = app.test_client()
    tid = client.post("/api/v2/tickets", auth=AUTH, json={"subject": "x"}).get_json()["id"]
    client.put(f"/api/v2/tickets/{tid}", auth=AUTH, json={"status": 3})
    client.post(f"/api/v2/tickets/{tid}/notes", auth=AUTH, json={"body": "n"})
    app.test_client().post(f"/_sandbox/tickets/{tid}/conversations",
                           json={"author": "customer", "body": "any news?"})
    assert app.wait_idle(timeout=5)
    assert [secret for secret, _ in got] == ["s3cret"] * 4
    assert [body["freshdesk_webhook"]["triggered_event"] for _, body in got] == [
        "{ticket_action:created}", "{status:{from:2,to:3}}", "{note_type:private}",
        "{status:{from:3,to:2}}"]
    assert got[1][1] == {"freshdesk_webhook": {
        "ticket_id": tid, "ticket_status": "Pending", "ticket_priority": "Low",
        "triggered_event": "{status:{from:2,to:3}}", "ticket_updated_at": "2026-11-20 14:30:00 UTC"}}
    assert [d["status"] for d in app.webhooks.deliveries] == [204] * 4
    # What the sandbox sends, the app's Freshdesk normaliser accepts.
    kinds = [freshdesk_events.normalize(body, b"", {}, START).event_type for _, body in got]
    assert kinds == ["created", "status_changed", "note_added", "status_changed"]


def test_a_webhook_url_needs_a_secret():
    with pytest.raises(ValueError, match="FRESHDESK_WEBHOOK_SECRET"):
        create_sandbox(webhook_url="http://127.0.0.1:1/hooks")


# -- the connector against the sandbox -----------------------------------------

@pytest.fixture
def served(app):
    base_url, stop = serve_in_thread(app)
    yield base_url
    stop()


def connector(base_url, sleep=lambda _: None, **kwargs):
    return FreshdeskConnector(
        "sandbox", SANDBOX_API_KEY, api_url=base_url, sleep=sleep, timeout=5,
        field_names={"plan": "cf_plan"}, group_ids={"Level 2": 12}, status_map={7: "on_hold"},
        **kwargs)


def test_connector_reads_and_writes_the_sandbox(app, client, clock, served):
    tid = new_ticket(client, tags=["vip"], custom_fields={"cf_plan": "premium"})["id"]
    admin = app.test_client()
    clock.advance(1800)
    admin.post(f"/_sandbox/tickets/{tid}/conversations", json={"author": "agent", "body": "Looking into it"})
    clock.advance(60)
    client("PUT", f"/api/v2/tickets/{tid}", json={"status": 7})
    clock.advance(3600)
    admin.post(f"/_sandbox/tickets/{tid}/conversations", json={"author": "customer", "body": "?"})
    admin.delete("/_sandbox/requests")  # forget the seeding calls
    fd = connector(served)

    remote = fd.fetch_ticket(str(tid))

    t = remote.ticket
    assert (t.status, t.priority, t.tags, t.fields) == ("on_hold", "urgent", frozenset({"vip"}),
                                                         {"plan": "premium"})
    start = epoch(START)
    assert t.events == (
        Event(start, "comment", author="customer"),
        Event(start + 1800, "comment", author="agent"),
        Event(start + 1860, "status", status="on_hold"),
        Event(start + 5460, "comment", author="customer"),
    )

    clock.advance(60)
    fd.apply(remote, TicketChanges(priority="normal", group="Level 2", add_tags=("escalated",),
                                   note="Lowered: how-to question", reply="We are on it"))

    log = admin.get("/_sandbox/requests").get_json()
    assert [(e["method"], e["path"], e["query"], e["body"]) for e in log] == [
        ("GET", f"/api/v2/tickets/{tid}", {"include": "stats"}, None),
        ("GET", f"/api/v2/tickets/{tid}/conversations", {"page": "1", "per_page": "100"}, None),
        ("GET", "/api/v2/agents", {"page": "1", "per_page": "100"}, None),  # once: who is an agent
        ("GET", "/api/v2/ticket_fields", {}, None),  # once: the custom fields' types
        ("PUT", f"/api/v2/tickets/{tid}", {},
         {"priority": 2, "group_id": 12, "tags": ["vip", "escalated"]}),
        ("POST", f"/api/v2/tickets/{tid}/notes", {},
         {"body": "Lowered: how-to question<br><br>— Deskpilot", "private": True}),
        ("POST", f"/api/v2/tickets/{tid}/reply", {}, {"body": "We are on it<br><br>— Deskpilot"}),
    ]
    after = fd.fetch_ticket(str(tid)).ticket
    assert (after.priority, after.group, after.tags) == ("normal", "Level 2",
                                                          frozenset({"vip", "escalated"}))
    # The connector's own note and reply are marked as the bot's: they carry its signature.
    assert after.events[-2:] == (Event(start + 5520, "comment", author="agent", public=False, bot=True),
                                 Event(start + 5520, "comment", author="agent", public=True, bot=True))
    assert fd.rate_limit_remaining == 1000 - 5  # this minute: PUT, note, reply, 2 GETs


def test_connector_pages_conversations_from_the_sandbox(client, served):
    tid = new_ticket(client)["id"]
    for n in range(205):
        client("POST", f"/api/v2/tickets/{tid}/notes", json={"body": f"n{n}"})
    ticket = connector(served).fetch_ticket(str(tid)).ticket
    assert sum(1 for e in ticket.events if e.type == "comment") == 206


def test_connector_retries_injected_failures(app, client, served):
    tid = new_ticket(client)["id"]
    app.test_client().post("/_sandbox/failures", json={"status": 503, "count": 2})
    sleeps = []
    assert connector(served, sleep=sleeps.append).fetch_ticket(str(tid)).ticket.id == str(tid)
    assert sleeps == [1.0, 2.0]


def test_connector_waits_out_the_rate_limit(clock, served, app, client):
    tid = new_ticket(client)["id"]
    app.state.rate_limit = 1  # the create above used this minute's only call
    fd = connector(served, sleep=clock.advance, rate_limit_floor=0)
    assert fd.fetch_ticket(str(tid)).ticket.id == str(tid)
    statuses = [e["status"] for e in app.test_client().get("/_sandbox/requests").get_json()]
    # Retry-After waits out the minute; then, with 0 calls left, the connector
    # paces itself into the next minute instead of taking a second 429.
    assert statuses[1:] == [429, 200, 200, 200, 200]  # ticket, conversations, agents, ticket fields
    assert clock.now == START + timedelta(seconds=240)  # one call a minute: four paced calls


def test_connector_gives_up_when_still_limited(clock, served, app, client):
    tid = new_ticket(client)["id"]
    app.state.rate_limit = 1
    with pytest.raises(RateLimitedError) as caught:
        connector(served, rate_limit_floor=0).fetch_ticket(str(tid))  # frozen clock: never resets
    assert caught.value.retry_after == 60.0


def test_connector_maps_sandbox_404(served):
    with pytest.raises(NotFoundError):
        connector(served).fetch_ticket("4242")


def test_an_api_note_marked_incoming_is_still_the_agents(client, served):
    tid = new_ticket(client)["id"]
    client("POST", f"/api/v2/tickets/{tid}/notes", json={"body": "Forwarded by the billing system",
                                                         "private": True, "incoming": True})
    client("PUT", f"/api/v2/tickets/{tid}", json={"status": 6})
    ticket = connector(served).fetch_ticket(str(tid)).ticket
    assert ticket.status == "pending"  # "Waiting on Customer", with no configuration
    [note] = [e for e in ticket.events if e.type == "comment" and not e.public]
    assert (note.author, note.bot) == ("agent", False)
    fields = client("GET", "/api/v2/ticket_fields").get_json()
    [status] = [f for f in fields if f["name"] == "status"]
    assert status["choices"]["6"][0] == "Waiting on Customer" and "7" in status["choices"]
