"""POST /webhooks/zendesk over every fixture: signatures, outcomes, dedupe, normalisation."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from connectors.signature import sign
from connectors.zendesk.events import (
    EVENT_HANDLERS,
    IGNORED_EVENTS,
    INVOCATION_HEADER,
    NormalizedEvent,
    normalize,
)
from tests.test_app import (
    NOW,
    SQLITE_ONLY,
    ZENDESK_SECRET,
    down_store,
    install_rules,
    make_app,
    queued,
    settings_for,
)

FIXTURES = Path(__file__).parent / "fixtures" / "zendesk"
MALFORMED = {
    "malformed.json",
    "ticket_status_changed_missing_key.json",
    "ticket_comment_added_missing_key.json",
    "trigger_body_unrendered.json",
}
UNKNOWN = {"unknown_event.json": "zen:event-type:ticket.escalation_deadline_changed",
           "user_active_changed.json": "zen:event-type:user.active_changed"}


def fixture_type(name: str) -> str:
    body = json.loads((FIXTURES / name).read_text())
    return body["event"] if "deskpilot" in body else body["type"]


def fixtures_where(predicate) -> list[str]:
    names = sorted(p.name for p in FIXTURES.glob("*.json"))
    return [n for n in names if n not in MALFORMED and n not in UNKNOWN and predicate(n)]


QUEUED = fixtures_where(lambda name: fixture_type(name) in EVENT_HANDLERS)
IGNORED = fixtures_where(lambda name: fixture_type(name) in IGNORED_EVENTS)


@pytest.fixture
def client(store, monkeypatch):
    install_rules(monkeypatch)
    return make_app(store).test_client()


def signed(body: bytes, at=NOW, secret=ZENDESK_SECRET) -> dict[str, str]:
    timestamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"X-Zendesk-Webhook-Signature-Timestamp": timestamp,
            "X-Zendesk-Webhook-Signature": sign(secret, timestamp, body),
            "Content-Type": "application/json"}


def post(client, body: bytes, headers=None):
    return client.post("/webhooks/zendesk", data=body, headers=signed(body) if headers is None else headers)


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# -- the dispatch table covers every fixture --------------------------------------------


@pytest.mark.parametrize("name", fixtures_where(lambda name: True))
def test_fixture_type_is_handled_or_ignored(name):
    assert fixture_type(name) in EVENT_HANDLERS or fixture_type(name) in IGNORED_EVENTS


def test_tables_do_not_overlap_and_every_documented_type_has_a_fixture():
    assert not set(EVENT_HANDLERS) & IGNORED_EVENTS
    with_fixture = {fixture_type(name) for name in QUEUED + IGNORED}
    # Types Zendesk lists without an example payload we could mirror.
    no_example = {"zen:event-type:ticket." + n for n in
                  ("csat_received", "csat_requested", "next_sla_breach_changed")}
    assert set(EVENT_HANDLERS) | IGNORED_EVENTS == with_fixture | no_example | {"automation"}


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
def test_known_but_ignored_type_is_200_and_not_stored(client, store, name, caplog):
    caplog.set_level(logging.DEBUG, logger="deskpilot")
    response = post(client, raw(name))
    assert (response.status_code, response.get_json()) == (200, {"status": "ignored"})
    assert store.health()["inbox_pending"] == 0
    assert any(r.levelno == logging.DEBUG and fixture_type(name) in r.getMessage()
               for r in caplog.records)


@SQLITE_ONLY
@pytest.mark.parametrize("name", sorted(UNKNOWN))
def test_unknown_type_is_200_with_a_warning_naming_it(client, store, name, caplog):
    response = post(client, raw(name))
    assert response.status_code == 200
    assert response.get_json()["status"] == "ignored"
    assert store.health()["inbox_pending"] == 0
    assert any(r.levelno == logging.WARNING and UNKNOWN[name] in r.getMessage()
               for r in caplog.records)


@SQLITE_ONLY
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_payload_is_400(client, store, name):
    assert post(client, raw(name)).status_code == 400
    assert store.health()["inbox_pending"] == 0


@SQLITE_ONLY
@pytest.mark.parametrize("body", [
    b"[]",
    b"\xff\xfe not utf-8",
    b'{"type": "zen:event-type:ticket.status_changed", "id": "e1", "detail": "5158"}',
    b'{"type": "zen:event-type:ticket.status_changed", "id": "e1", "detail": {"id": "51a8"}}',
    b'{"type": "zen:event-type:ticket.tags_changed", "id": "e1", "detail": {"id": "1"},'
    b' "event": {"tags_added": "vip"}}',
    b'{"deskpilot": 2, "ticket_id": "5158"}',
    b'{"detail": {"id": "5158"}}',
], ids=["array", "not-utf8", "detail-not-object", "ticket-id-not-digits", "tags-not-list",
        "trigger-version", "no-type"])
def test_malformed_body_variants_are_400(client, store, body):
    response = post(client, body)
    assert response.status_code == 400
    assert "error" in response.get_json()


def test_database_down_is_503_so_zendesk_retries(monkeypatch):
    install_rules(monkeypatch)
    client = make_app(down_store()).test_client()
    response = post(client, raw("ticket_status_changed.json"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"


# -- authentication: verify before parsing -----------------------------------------------


def _tampered(body):
    other = signed(b"other body")["X-Zendesk-Webhook-Signature"]
    return {**signed(body), "X-Zendesk-Webhook-Signature": other}


@SQLITE_ONLY
@pytest.mark.parametrize("headers", [
    pytest.param(lambda body: signed(body, secret="not-the-secret"), id="wrong-secret"),
    pytest.param(_tampered, id="signature-of-another-body"),
    pytest.param(lambda body: {**signed(body), "X-Zendesk-Webhook-Signature": "bm9wZQ=="}, id="garbage"),
    pytest.param(lambda body: {"X-Zendesk-Webhook-Signature-Timestamp": signed(body)[
        "X-Zendesk-Webhook-Signature-Timestamp"]}, id="no-signature-header"),
    pytest.param(lambda body: {"X-Zendesk-Webhook-Signature": signed(body)[
        "X-Zendesk-Webhook-Signature"]}, id="no-timestamp-header"),
    pytest.param(lambda body: {}, id="no-headers"),
    pytest.param(lambda body: signed(body, at=NOW - timedelta(seconds=301)), id="stale-past"),
    pytest.param(lambda body: signed(body, at=NOW + timedelta(seconds=301)), id="stale-future"),
    pytest.param(lambda body: {**signed(body), "X-Zendesk-Webhook-Signature-Timestamp": "yesterday"},
                 id="unreadable-timestamp"),
])
def test_unauthenticated_request_is_401_and_not_stored(client, store, headers, caplog):
    body = raw("ticket_status_changed.json")
    response = post(client, body, headers(body))
    assert (response.status_code, response.get_json()) == (401, {"error": "unauthorized"})
    assert store.health()["inbox_pending"] == 0
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "ZENDESK_WEBHOOK_SECRET" in logged
    assert ZENDESK_SECRET not in logged
    assert signed(body)["X-Zendesk-Webhook-Signature"] not in logged


@SQLITE_ONLY
def test_signature_window_edges_are_accepted(client, store):
    for offset in (-300, 300):
        body = raw("ticket_status_changed.json").replace(b"dbf4a8b2", f"{offset:+d}".encode())
        assert post(client, body, signed(body, at=NOW + timedelta(seconds=offset))).status_code == 202


@SQLITE_ONLY
def test_replay_of_a_captured_request_after_the_window_is_401(store, monkeypatch):
    install_rules(monkeypatch)
    now = [NOW]
    client = make_app(store, clock=lambda: now[0]).test_client()
    body = raw("ticket_comment_added.json")
    captured = signed(body)
    assert post(client, body, captured).status_code == 202
    now[0] = NOW + timedelta(minutes=6)
    assert post(client, body, captured).status_code == 401
    assert store.health()["inbox_pending"] == 1


@SQLITE_ONLY
def test_bad_signature_is_checked_before_the_body_is_parsed(client):
    response = post(client, b"{not json", {**signed(b"{not json", secret="wrong")})
    assert response.status_code == 401


@SQLITE_ONLY
def test_missing_secret_rejects_everything(store, monkeypatch):
    install_rules(monkeypatch)
    settings = settings_for().model_copy(update={"zendesk_webhook_secret": ""})
    client = make_app(store, settings).test_client()
    body = raw("ticket_status_changed.json")
    assert post(client, body, signed(body, secret="")).status_code == 401


# -- what is stored ----------------------------------------------------------------------


def test_stored_row_carries_ticket_event_and_normalised_hints(client, store):
    post(client, raw("ticket_status_changed.json"))
    (claim,) = queued(store)
    assert (claim.source, claim.ticket_id) == ("zendesk", "5158")
    (payload,) = claim.payloads
    assert payload["event_type"] == "status_changed"
    assert payload["vendor_type"] == "zen:event-type:ticket.status_changed"
    assert payload["changes"] == {"status": "pending", "previous_status": "open"}
    assert payload["occurred_at"] == "2026-11-20T15:27:07.672717+00:00"
    assert payload["body"] == json.loads(raw("ticket_status_changed.json"))


def test_events_of_one_ticket_coalesce_into_one_claim(client, store):
    for name in ("ticket_created.json", "ticket_comment_added.json", "ticket_status_changed.json"):
        post(client, raw(name))
    (claim,) = queued(store)
    assert [p["event_type"] for p in claim.payloads] == ["created", "comment_added", "status_changed"]


def test_any_text_the_vendor_sends_is_stored(client, store):
    body = json.loads(raw("ticket_comment_added.json"))
    body["event"]["comment"]["body"] = "NUL \u0000, emoji \U0001f600, Cyrillic сбой, Hebrew \u05e9\u05dc"
    encoded = json.dumps(body).encode()
    assert post(client, encoded).get_json() == {"status": "queued"}
    (claim,) = queued(store)
    assert claim.payloads[0]["body"]["event"]["comment"]["body"].startswith("NUL ")


def test_the_event_id_is_the_dedupe_key():
    event = normalize(json.loads(raw("ticket_status_changed.json")), b"", {})
    assert event.dedupe_key == "dbf4a8b2-b0c4-412d-a020-3626f3fe39c0"


@pytest.mark.parametrize(("name", "changes"), [
    ("ticket_created.json", {"status": "new", "priority": "urgent"}),
    ("ticket_created_subject_only.json", {"status": "new", "priority": "low"}),
    ("ticket_priority_changed.json", {"priority": "high", "previous_priority": "urgent"}),
    ("ticket_comment_added.json", {"comment_id": "8447390002222", "public": True, "author": "agent"}),
    ("ticket_comment_made_private.json", {"comment_id": "8447390002222", "public": False}),
    ("ticket_tags_changed.json", {"tags_added": ["eta_provided"], "tags_removed": ["voice"]}),
    ("ticket_custom_field_changed.json", {"field_id": "360012345678"}),
    ("ticket_group_assignment_changed.json",
     {"group_id": "8447320466431", "previous_group_id": "8447320466430"}),
    ("ticket_merged.json", {"target_ticket_id": "5160"}),
    ("trigger_body.json", {"status": "pending", "priority": "urgent"}),
])
def test_changes_are_normalised(name, changes):
    event = normalize(json.loads(raw(name)), raw(name), {})
    assert isinstance(event, NormalizedEvent)
    assert event.changes == changes


@pytest.mark.parametrize(("current", "expected"), [
    ("OPEN", "open"), ("open", "open"), ("Open", "open"), ("HOLD", "on_hold"), ("hold", "on_hold"),
    ("SOLVED", "solved"), ("", None), (None, None),
])
def test_status_casing(current, expected):
    body = {"type": "zen:event-type:ticket.status_changed", "id": "e1", "detail": {"id": 42},
            "event": {"current": current, "previous": "NEW"}}
    event = normalize(body, b"", {})
    assert event.changes["status"] == expected
    assert event.ticket_id == "42"  # numeric ids become strings


def test_created_ticket_without_detail_id_uses_the_subject():
    event = normalize(json.loads(raw("ticket_created_subject_only.json")), b"", {})
    assert (event.ticket_id, event.event_type) == ("5161", "created")


def test_customer_comment_is_marked_customer():
    body = json.loads(raw("ticket_comment_added.json"))
    body["event"]["comment"]["author"]["is_staff"] = False
    assert normalize(body, b"", {}).changes["author"] == "customer"


# -- trigger bodies: dedupe by invocation id, else by body hash ----------------------------


def test_trigger_body_dedupes_on_what_is_signed_not_the_invocation_id(client, store):
    body = raw("trigger_body.json")
    first = {**signed(body), INVOCATION_HEADER: "01HZX4K2W9INVOCATION"}
    assert post(client, body, first).get_json() == {"status": "queued"}
    assert post(client, body, first).get_json() == {"status": "duplicate"}
    # A replay within the window with a new (unsigned) invocation id is the same delivery.
    for n in range(20):
        replay = {**signed(body), INVOCATION_HEADER: f"01HZX4K2W9REPLAY{n}"}
        assert post(client, body, replay).get_json() == {"status": "duplicate"}
    # A new firing is signed anew.
    second = {**signed(body, at=NOW + timedelta(seconds=5)), INVOCATION_HEADER: "01HZX4K2W9OTHER"}
    assert post(client, body, second).get_json() == {"status": "queued"}
    (claim,) = queued(store)
    assert [p["event_type"] for p in claim.payloads] == ["trigger", "trigger"]
    assert normalize(json.loads(body), body, {INVOCATION_HEADER: "01HZX4K2W9OTHER"}).dedupe_key == (
        "01HZX4K2W9OTHER")


def test_trigger_body_without_invocation_id_dedupes_on_the_body(client, store):
    body = raw("trigger_body.json")
    assert post(client, body).get_json() == {"status": "queued"}
    assert post(client, body).get_json() == {"status": "duplicate"}
    later = body.replace(b"15:04Z", b"15:09Z")
    assert post(client, later).get_json() == {"status": "queued"}
    assert store.health()["inbox_pending"] == 2
    assert normalize(json.loads(body), body, {}).dedupe_key.startswith("sha256:")


@SQLITE_ONLY
def test_unknown_trigger_event_name_is_ignored_with_a_warning(client, store, caplog):
    body = b'{"deskpilot": 1, "ticket_id": "5158", "event": "macro"}'
    assert post(client, body).status_code == 200
    assert store.health()["inbox_pending"] == 0
    assert any("'macro'" in r.getMessage() for r in caplog.records)
