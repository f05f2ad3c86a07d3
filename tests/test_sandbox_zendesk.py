"""The Zendesk sandbox on its own, and the real connector running against it over HTTP."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask, request

from connectors.base import ConflictError, NotFoundError, TicketChanges, ValidationError
from connectors.signature import verify
from connectors.zendesk import ZendeskConnector
from engine.ticket import Event
from sandbox.zendesk import SANDBOX_TOKEN, create_sandbox, serve_in_thread
from sandbox.zendesk_state import AGENT_ID, CUSTOMER_ID, SANDBOX_EMAIL

SECRET = "webhook-secret"
START = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
AUTH = (f"{SANDBOX_EMAIL}/token", SANDBOX_TOKEN)
FIELD_IDS = {"tier": 27642}
GROUP_IDS = {"support": 98738, "billing": 98739}
EXPORT = "/api/v2/incremental/tickets/cursor.json"


class Clock:
    """A settable clock shared by the sandbox and the webhook receiver."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: int) -> int:
        self.now += timedelta(seconds=seconds)
        return int(self.now.timestamp())


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def receiver():
    """A local webhook endpoint recording (headers, raw body) of each delivery."""
    received: list[tuple[dict, bytes]] = []
    lock = threading.Lock()
    app = Flask("receiver")

    @app.post("/hooks/zendesk")
    def hook():
        with lock:
            received.append((dict(request.headers), request.get_data()))
        return "", 204

    url, stop = serve_in_thread(app)
    yield f"{url}/hooks/zendesk", received
    stop()


@pytest.fixture
def sandbox(clock, receiver):
    app = create_sandbox(webhook_url=receiver[0], webhook_secret=SECRET, clock=clock)
    url, stop = serve_in_thread(app)
    app.config["BASE_URL"] = url
    yield app
    stop()


@pytest.fixture
def api(sandbox):
    client = sandbox.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = _basic(*AUTH)
    return client


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def zd(sandbox, sleeps) -> ZendeskConnector:
    return ZendeskConnector("sandbox", SANDBOX_EMAIL, SANDBOX_TOKEN, api_url=sandbox.config["BASE_URL"],
                            field_ids=FIELD_IDS, group_ids=GROUP_IDS, sleep=sleeps.append)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def create(api, **ticket) -> dict:
    body = {"subject": "Printer on fire", "requester_id": CUSTOMER_ID,
            "comment": {"body": "It is on fire.", "author_id": CUSTOMER_ID}, **ticket}
    response = api.post("/api/v2/tickets.json", json={"ticket": body})
    assert response.status_code == 201, response.json
    return response.json["ticket"]


def comment(api, tid: int, author: str, body: str = "hello", **extra) -> dict:
    response = api.post(f"/_sandbox/tickets/{tid}/comments", json={"author": author, "body": body, **extra})
    assert response.status_code == 201, response.json
    return response.json["ticket"]


def api_calls(api) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in api.get("/_sandbox/requests").json]


def webhooks(sandbox, receiver) -> list[dict]:
    assert sandbox.wait_idle(5)
    return [json.loads(body) for _, body in receiver[1]]


# -- the sandbox on its own ---------------------------------------------------------------

@pytest.mark.parametrize("auth", [
    None, _basic(f"{SANDBOX_EMAIL}/token", "wrong"), _basic(SANDBOX_EMAIL, SANDBOX_TOKEN),
], ids=["none", "wrong token", "no /token suffix"])
def test_api_requires_email_token_basic_auth(sandbox, auth):
    headers = {"Authorization": auth} if auth else {}
    response = sandbox.test_client().get("/api/v2/users/1001.json", headers=headers)
    assert response.status_code == 401
    assert response.json == {"error": "Couldn't authenticate you"}


def test_create_records_a_create_audit_and_the_users(api):
    ticket = create(api, priority="high", tags=["printer"], custom_fields=[{"id": 27642, "value": "745"}])
    audits = api.get(f"/api/v2/tickets/{ticket['id']}/audits.json?include=users").json
    (audit,) = audits["audits"]
    kinds = [(e["type"], e.get("field_name")) for e in audit["events"]]
    assert kinds[0] == ("Comment", None)
    assert ("Create", "status") in kinds and ("Create", "27642") in kinds
    assert {u["id"]: u["role"] for u in audits["users"]} == {CUSTOMER_ID: "end-user"}
    assert api.get(f"/api/v2/users/{AGENT_ID}.json").json["user"]["role"] == "admin"
    comments = api.get(f"/api/v2/tickets/{ticket['id']}/comments.json").json
    assert [c["body"] for c in comments["comments"]] == ["It is on fire."]


def test_safe_update_with_an_old_stamp_is_refused_even_within_one_second(api):
    ticket = create(api)
    stale = ticket["updated_at"]
    comment(api, ticket["id"], "customer")  # the clock is frozen: the stamp must still move
    response = api.put(f"/api/v2/tickets/{ticket['id']}.json",
                       json={"ticket": {"priority": "low", "safe_update": True, "updated_stamp": stale}})
    assert response.status_code == 409
    assert response.json["error"] == "UpdateConflict"
    assert api.get(f"/api/v2/tickets/{ticket['id']}.json").json["ticket"]["priority"] is None


def test_closed_tickets_cannot_be_updated(api):
    ticket = create(api, status="closed")
    response = api.put(f"/api/v2/tickets/{ticket['id']}.json", json={"ticket": {"status": "open"}})
    assert response.status_code == 422
    assert "closed prevents ticket update" in json.dumps(response.json)


def test_update_many_refuses_more_than_100_ids(api):
    ids = ",".join(str(n) for n in range(1, 102))
    response = api.put(f"/api/v2/tickets/update_many.json?ids={ids}", json={"ticket": {"status": "open"}})
    assert response.status_code == 400 and response.json["error"] == "TooManyValues"


def test_incremental_export_pages_in_update_order(api, clock):
    first = create(api)
    clock.advance(60)
    second = create(api)
    clock.advance(60)
    comment(api, first["id"], "agent")  # `first` is now the most recently updated
    start = int(START.timestamp())
    page = api.get(f"{EXPORT}?start_time={start}&per_page=1").json
    assert [t["id"] for t in page["tickets"]] == [second["id"]] and not page["end_of_stream"]
    page = api.get(EXPORT, query_string={"cursor": page["after_cursor"]}).json
    assert [t["id"] for t in page["tickets"]] == [first["id"]] and page["end_of_stream"]
    later = api.get(EXPORT, query_string={"cursor": page["after_cursor"]})
    assert later.json["tickets"] == [] and later.json["end_of_stream"]


def test_reset_and_the_request_log(api):
    create(api)
    api.get("/api/v2/tickets/1.json")
    assert api_calls(api) == [("POST", "/api/v2/tickets.json"), ("GET", "/api/v2/tickets/1.json")]
    assert api.post("/_sandbox/reset").status_code == 204
    assert api_calls(api) == []
    assert api.get("/api/v2/tickets/1.json").status_code == 404


def test_changes_post_signed_event_webhooks(sandbox, api, receiver, clock):
    ticket = create(api, priority="normal")
    api.put(f"/api/v2/tickets/{ticket['id']}.json",
            json={"ticket": {"status": "hold", "priority": "urgent", "additional_tags": ["vip"]}})
    comment(api, ticket["id"], "customer", "Any news?")
    assert sandbox.wait_idle(5)
    kinds = [json.loads(body)["type"].rsplit(".", 1)[1] for _, body in receiver[1]]
    assert kinds == ["created", "status_changed", "priority_changed", "tags_changed", "comment_added"]
    for headers, body in receiver[1]:
        verify(SECRET, headers["X-Zendesk-Webhook-Signature-Timestamp"], body,
               headers["X-Zendesk-Webhook-Signature"], now=clock())
    status = json.loads(receiver[1][1][1])
    assert status["subject"] == f"zen:ticket:{ticket['id']}"
    assert (status["event"]["current"], status["event"]["previous"]) == ("HOLD", "NEW")
    assert status["detail"]["id"] == str(ticket["id"]) and status["detail"]["status"] == "HOLD"
    added = json.loads(receiver[1][4][1])["event"]["comment"]
    assert added["is_public"] and not added["author"]["is_staff"] and added["body"] == "Any news?"


def test_webhook_url_needs_a_secret():
    with pytest.raises(ValueError, match="webhook_secret"):
        create_sandbox(webhook_url="http://127.0.0.1:1/hook")


# -- the connector over real HTTP -----------------------------------------------------------

def test_fetch_builds_the_engine_ticket_with_two_requests_and_the_fields_once(zd, api, clock):
    ticket = create(api, group_id=98738, custom_fields=[{"id": 27642, "value": "gold"}], tags=["vip"])
    opened = clock.advance(600)
    comment(api, ticket["id"], "agent", "Looking into it", status="open")
    noted = clock.advance(60)
    comment(api, ticket["id"], "agent", "Internal", public=False)
    replied = clock.advance(3600)
    comment(api, ticket["id"], "customer", "Thanks", status="hold")
    before = len(api_calls(api))

    got = zd.fetch_ticket(str(ticket["id"]))

    assert api_calls(api)[before:] == [("GET", f"/api/v2/tickets/{ticket['id']}.json"),
                                       ("GET", f"/api/v2/tickets/{ticket['id']}/audits.json"),
                                       ("GET", "/api/v2/ticket_fields.json")]  # then cached
    created = int(START.timestamp())
    assert got.ticket.events == (
        Event(at=created, type="comment", author="customer"),
        Event(at=created, type="status", status="new"),
        Event(at=opened, type="comment", author="agent"),
        Event(at=opened, type="status", status="open"),
        Event(at=noted, type="comment", author="agent", public=False),
        Event(at=replied, type="comment", author="customer"),
        Event(at=replied, type="status", status="on_hold"),
    )
    assert (got.ticket.status, got.ticket.group) == ("on_hold", "support")
    assert got.ticket.fields == {"tier": "gold"}
    assert got.ticket.tags == frozenset({"vip"}) and got.ticket.created_at == created
    assert got.stamp == got.raw["updated_at"]


def test_fetch_follows_audit_pages(zd, api):
    ticket = create(api)
    for n in range(100):
        comment(api, ticket["id"], "agent" if n % 2 else "customer", f"c{n}")
    before = len(api_calls(api))
    got = zd.fetch_ticket(str(ticket["id"]))
    assert len(api_calls(api)) - before == 4  # ticket + two pages of 100 audits + ticket fields
    assert sum(event.type == "comment" for event in got.ticket.events) == 101


def test_apply_writes_every_kind_of_change(zd, api, clock):
    ticket = create(api, tags=["printer"])
    remote = zd.fetch_ticket(str(ticket["id"]))
    clock.advance(30)

    zd.apply(remote, TicketChanges(priority="urgent", status="pending", group="billing",
                                   add_tags=("sla_breach",), fields={"tier": "platinum"},
                                   reply="On it.", note="Breached first response."))

    stored = api.get(f"/api/v2/tickets/{ticket['id']}.json").json["ticket"]
    assert (stored["priority"], stored["status"], stored["group_id"]) == ("urgent", "pending", 98739)
    assert stored["tags"] == ["printer", "sla_breach"]
    assert stored["custom_fields"] == [{"id": 27642, "value": "platinum"}]
    assert remote.stamp == stored["updated_at"]
    comments = api.get(f"/api/v2/tickets/{ticket['id']}/comments.json").json["comments"]
    assert [(c["body"], c["public"], c["author_id"]) for c in comments[1:]] == [
        ("On it.\n\n— Deskpilot", True, AGENT_ID),
        ("Breached first response.\n\n— Deskpilot", False, AGENT_ID)]
    again = zd.fetch_ticket(str(ticket["id"]))
    assert (again.ticket.priority, again.ticket.group) == ("urgent", "billing")
    assert again.ticket.status == "pending"


def test_a_stale_stamp_is_a_conflict(zd, api):
    ticket = create(api)
    remote = zd.fetch_ticket(str(ticket["id"]))
    comment(api, ticket["id"], "customer", "One more thing")
    with pytest.raises(ConflictError):
        zd.apply(remote, TicketChanges(priority="high", note="escalating"))
    assert api.get(f"/api/v2/tickets/{ticket['id']}.json").json["ticket"]["priority"] is None


def test_missing_and_closed_tickets_raise_connector_errors(zd, api):
    with pytest.raises(NotFoundError):
        zd.fetch_ticket("4242")
    ticket = create(api, status="closed")
    remote = zd.fetch_ticket(str(ticket["id"]))
    assert remote.read_only and "closed" in remote.read_only  # the worker does not even try
    with pytest.raises(ValidationError, match="closed prevents ticket update"):
        zd.apply(remote, TicketChanges(status="open"))


def test_rate_limits_are_honoured_over_http(zd, api, sleeps):
    ticket = create(api)
    failures = {"status": 429, "count": 2, "retry_after": 3}
    assert api.post("/_sandbox/failures", json=failures).status_code == 204
    assert zd.fetch_ticket(str(ticket["id"])).ticket.id == str(ticket["id"])
    assert sleeps == [3.0, 3.0]


def test_update_many_and_job_status_over_http(zd, api):
    ids = [str(create(api)["id"]) for _ in range(3)]
    job_id = zd.update_many(ids, status="solved", add_tags=["outage"], comment="Fixed.", public=True)
    job = zd.job_status(job_id)
    assert job["status"] == "completed" and [r["id"] for r in job["results"]] == [int(i) for i in ids]
    for tid in ids:
        stored = api.get(f"/api/v2/tickets/{tid}.json").json["ticket"]
        assert stored["status"] == "solved" and "outage" in stored["tags"]


def test_changed_since_over_http(zd, api, clock):
    first, second = create(api), create(api)
    page = zd.changed_since(None, START)
    assert (page.ticket_ids, page.done) == ([str(first["id"]), str(second["id"])], True)
    assert zd.changed_since(page.cursor, START).ticket_ids == []
    clock.advance(5)
    comment(api, first["id"], "customer")
    page = zd.changed_since(page.cursor, START)
    assert (page.ticket_ids, page.done) == ([str(first["id"])], True)


def test_custom_statuses_ride_on_tickets_and_audits(sandbox, api, clock):
    ticket = create(api)
    assert ticket["custom_status_id"] == 101  # the "new" category's default
    clock.advance(60)
    api.put(f"/api/v2/tickets/{ticket['id']}.json", json={"ticket": {"custom_status_id": 106}})
    stored = api.get(f"/api/v2/tickets/{ticket['id']}.json").json["ticket"]
    assert (stored["status"], stored["custom_status_id"]) == ("hold", 106)  # its category follows
    [audit] = api.get(f"/api/v2/tickets/{ticket['id']}/audits.json").json["audits"][-1:]
    assert {e["field_name"] for e in audit["events"]} >= {"status", "custom_status_id"}
    base = sandbox.config["BASE_URL"]
    plain = ZendeskConnector("sandbox", SANDBOX_EMAIL, SANDBOX_TOKEN, api_url=base, sleep=lambda s: None)
    assert plain.fetch_ticket(str(ticket["id"])).ticket.status == "on_hold"
    aliased = ZendeskConnector("sandbox", SANDBOX_EMAIL, SANDBOX_TOKEN, api_url=base, sleep=lambda s: None,
                               status_aliases={"Waiting on vendor": "pending"})
    assert aliased.fetch_ticket(str(ticket["id"])).ticket.status == "Waiting on vendor"
    bad = api.put(f"/api/v2/tickets/{ticket['id']}.json", json={"ticket": {"custom_status_id": 999}})
    assert bad.status_code == 422


def test_deleted_tickets_are_gone_but_listed_by_the_export(zd, api, clock):
    kept, gone = create(api), create(api)
    clock.advance(60)
    assert api.delete(f"/api/v2/tickets/{gone['id']}.json").status_code == 204
    with pytest.raises(NotFoundError):
        zd.fetch_ticket(str(gone["id"]))
    page = zd.changed_since(None, START)
    assert (page.ticket_ids, page.deleted_ids) == ([str(kept["id"])], [str(gone["id"])])
