"""POST /webhooks/freshdesk over every fixture: shared-secret auth, outcomes, dedupe, parsing."""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from connectors.freshdesk.events import (
    EVENT_HANDLERS,
    IGNORED_EVENTS,
    MalformedPayload,
    normalize,
    parse_triggered_event,
)
from tests.test_app import FRESHDESK_SECRET, NOW, SQLITE_ONLY, install_rules, make_app, queued, settings_for

FIXTURES = Path(__file__).parent / "fixtures" / "freshdesk"
MALFORMED = {"malformed.json", "status_changed_missing_key.json", "unrendered_placeholder.json"}
UNKNOWN = {"unknown_event.json": "unknown_event"}


def fixture_type(name: str) -> str:
    body = json.loads((FIXTURES / name).read_text())
    return parse_triggered_event(body["freshdesk_webhook"]["triggered_event"])[0]


def fixtures_where(predicate) -> list[str]:
    names = sorted(p.name for p in FIXTURES.glob("*.json"))
    return [n for n in names if n not in MALFORMED and n not in UNKNOWN and predicate(n)]


QUEUED = fixtures_where(lambda name: fixture_type(name) in EVENT_HANDLERS)
IGNORED = fixtures_where(lambda name: fixture_type(name) in IGNORED_EVENTS)
SECRET_HEADER = {"X-Deskpilot-Secret": FRESHDESK_SECRET, "Content-Type": "application/json"}


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


@pytest.fixture
def now():
    return [NOW]


@pytest.fixture
def client(store, now, monkeypatch):
    install_rules(monkeypatch)
    return make_app(store, settings_for("freshdesk"), clock=lambda: now[0]).test_client()


def post(client, body: bytes, headers=SECRET_HEADER):
    return client.post("/webhooks/freshdesk", data=body, headers=headers)


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# -- the dispatch table covers every fixture --------------------------------------------


@pytest.mark.parametrize("name", fixtures_where(lambda name: True))
def test_fixture_type_is_handled_or_ignored(name):
    assert fixture_type(name) in EVENT_HANDLERS or fixture_type(name) in IGNORED_EVENTS


def test_tables_do_not_overlap():
    assert not set(EVENT_HANDLERS) & IGNORED_EVENTS


# -- outcomes -----------------------------------------------------------------------------


@SQLITE_ONLY
@pytest.mark.parametrize("name", QUEUED)
def test_valid_delivery_is_queued_once_and_redelivery_is_a_duplicate(client, store, name):
    response = post(client, raw(name))
    assert (response.status_code, response.get_json()) == (202, {"status": "queued"})
    redelivered = post(client, raw(name))
    assert (redelivered.status_code, redelivered.get_json()) == (202, {"status": "duplicate"})
    assert store.health()["inbox_pending"] == 1


@SQLITE_ONLY
@pytest.mark.parametrize("name", IGNORED)
def test_known_but_ignored_type_is_200_and_not_stored(client, store, name):
    response = post(client, raw(name))
    assert (response.status_code, response.get_json()) == (200, {"status": "ignored"})
    assert store.health()["inbox_pending"] == 0


@SQLITE_ONLY
@pytest.mark.parametrize("name", sorted(UNKNOWN))
def test_unknown_type_is_200_with_a_warning_naming_it(client, store, name, caplog):
    response = post(client, raw(name))
    assert (response.status_code, response.get_json()["status"]) == (200, "ignored")
    assert store.health()["inbox_pending"] == 0
    assert any(r.levelno == logging.WARNING and repr(UNKNOWN[name]) in r.getMessage()
               for r in caplog.records)


@SQLITE_ONLY
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_payload_is_400(client, store, name):
    assert post(client, raw(name)).status_code == 400
    assert store.health()["inbox_pending"] == 0


@SQLITE_ONLY
@pytest.mark.parametrize("body", [
    b'"just a string"',
    b'{"freshdesk_webhook": ["ticket_id", 11]}',
    b'{"freshdesk_webhook": {"ticket_id": "11"}}',
    b'{"freshdesk_webhook": {"ticket_id": "11", "triggered_event": "status changed"}}',
    b'{"freshdesk_webhook": {"ticket_id": "11", "triggered_event": "{status:{2,3}}"}}',
    b'{"freshdesk_webhook": {"ticket_id": "011", "triggered_event": "{status:{from:2,to:3}}"}}',
    b'{"freshdesk_webhook": {"ticket_id": "11", "triggered_event": "{note_type:secret}"}}',
    '{"freshdesk_webhook": {"ticket_id": "\u0661\u0662", "triggered_event": "{status:{from:2,to:3}}"}}'
    .encode(),
    b'{"freshdesk_webhook": {"ticket_id": true, "triggered_event": "{status:{from:2,to:3}}"}}',
], ids=["not-object", "wrapper-not-object", "no-triggered-event", "not-braced", "bad-change",
        "leading-zero-id", "bad-note-type", "non-ascii-digits", "boolean-id"])
def test_malformed_body_variants_are_400(client, store, body):
    response = post(client, body)
    assert response.status_code == 400
    assert "error" in response.get_json()


# -- authentication: the shared secret ----------------------------------------------------


@SQLITE_ONLY
@pytest.mark.parametrize("headers", [
    pytest.param(SECRET_HEADER, id="header"),
    pytest.param(basic("deskpilot", FRESHDESK_SECRET), id="basic-auth"),
])
def test_shared_secret_is_accepted(client, store, headers):
    assert post(client, raw("status_changed.json"), headers).status_code == 202


@SQLITE_ONLY
@pytest.mark.parametrize("headers", [
    pytest.param({"X-Deskpilot-Secret": "guess"}, id="wrong-header"),
    pytest.param({"X-Deskpilot-Secret": ""}, id="empty-header"),
    pytest.param(basic("deskpilot", "guess"), id="wrong-password"),
    pytest.param(basic(FRESHDESK_SECRET, "X"), id="secret-as-user"),
    pytest.param({"Authorization": f"Bearer {FRESHDESK_SECRET}"}, id="bearer"),
    pytest.param({}, id="nothing"),
])
def test_wrong_or_missing_secret_is_401(client, store, headers, caplog):
    response = post(client, raw("status_changed.json"), headers)
    assert (response.status_code, response.get_json()) == (401, {"error": "unauthorized"})
    assert store.health()["inbox_pending"] == 0
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "FRESHDESK_WEBHOOK_SECRET" in logged
    assert FRESHDESK_SECRET not in logged


@SQLITE_ONLY
def test_secret_is_checked_before_the_body_is_parsed(client):
    assert post(client, b"{not json", {"X-Deskpilot-Secret": "guess"}).status_code == 401


# -- dedupe: ticket id + triggered event + updated_at ---------------------------------------


def test_same_change_at_another_instant_is_a_new_event(client, store):
    first = raw("status_changed.json")
    again = first.replace(b"15:01:00Z", b"16:45:00Z")
    assert post(client, first).get_json() == {"status": "queued"}
    assert post(client, again).get_json() == {"status": "queued"}
    assert store.health()["inbox_pending"] == 2


def test_without_updated_at_redeliveries_in_the_same_second_dedupe_and_later_ones_do_not(
    client, store, now, caplog
):
    body = raw("status_changed_simple_content.json")
    assert post(client, body).get_json() == {"status": "queued"}
    assert post(client, body).get_json() == {"status": "duplicate"}
    now[0] = NOW + timedelta(seconds=1)
    assert post(client, body).get_json() == {"status": "queued"}
    assert any("ticket_updated_at" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


def test_stored_row(client, store):
    post(client, raw("priority_changed.json"))
    (claim,) = queued(store)
    assert (claim.source, claim.ticket_id) == ("freshdesk", "11")
    (payload,) = claim.payloads
    assert (payload["event_type"], payload["vendor_type"]) == ("priority_changed", "priority")
    assert payload["changes"] == {"from": "1", "to": "4", "status": "open", "priority": "urgent"}
    assert payload["occurred_at"] == "2026-11-20T15:02:00+00:00"
    assert payload["body"] == json.loads(raw("priority_changed.json"))


def test_dedupe_key_hashes_ticket_event_and_updated_at():
    body = json.loads(raw("status_changed.json"))
    key = normalize(body, b"", {}, NOW).dedupe_key
    assert key.startswith("sha256:")
    assert normalize(body, b"", {}, NOW + timedelta(days=1)).dedupe_key == key
    body["freshdesk_webhook"]["ticket_id"] = "12"
    assert normalize(body, b"", {}, NOW).dedupe_key != key


@pytest.mark.parametrize(("name", "event_type", "changes"), [
    ("ticket_created.json", "created", {"action": "created", "status": "open", "priority": "medium"}),
    ("note_added_public.json", "note_added", {"public": True, "status": "open", "priority": "medium"}),
    ("note_added_private.json", "note_added", {"public": False, "status": "open", "priority": "medium"}),
    ("agent_changed.json", "agent_assignment_changed",
     {"from": "150006383528", "to": "150014937111", "status": "open", "priority": "medium"}),
    ("status_changed_simple_content.json", "status_changed",
     {"from": "2", "to": "6", "status": "waiting on customer", "priority": "high"}),
])
def test_normalised_event(name, event_type, changes):
    event = normalize(json.loads(raw(name)), raw(name), {}, NOW)
    assert (event.event_type, event.changes) == (event_type, changes)


def test_unwrapped_body_is_accepted_too():
    inner = json.loads(raw("status_changed.json"))["freshdesk_webhook"]
    assert normalize(inner, b"", {}, NOW).ticket_id == "11"


# -- the {{triggered_event}} grammar ---------------------------------------------------------


@pytest.mark.parametrize(("text", "parsed"), [
    ("{ticket_action:created}", ("ticket_action", "created", None, None)),
    ("{note_type:private}", ("note_type", "private", None, None)),
    ("{status:{from:4,to:6}}", ("status", None, "4", "6")),
    (" {Priority:{from:1,to:4}} ", ("priority", None, "1", "4")),
    ("{ticket_type:{from:Question, billing,to:Incident}}", ("ticket_type", None, "Question, billing",
                                                            "Incident")),
])
def test_parse_triggered_event(text, parsed):
    assert parse_triggered_event(text) == parsed


@pytest.mark.parametrize("text", ["{{triggered_event}}", "", "status", "{status}", "{:x}",
                                  "{status:{to:3}}"])
def test_parse_triggered_event_rejects(text):
    with pytest.raises(MalformedPayload, match="triggered_event"):
        parse_triggered_event(text)
