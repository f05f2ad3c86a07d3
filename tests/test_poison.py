"""Hostile webhook bodies and headers: a 4xx with a one-line reason, never a 5xx unless storage is down."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.signature import sign
from store.models import inbox_events
from tests.test_app import (
    FRESHDESK_SECRET,
    NOW,
    SQLITE_ONLY,
    ZENDESK_SECRET,
    down_store,
    install_rules,
    make_app,
    settings_for,
)

FIXTURES = Path(__file__).parent / "fixtures"
COMMENT = json.loads((FIXTURES / "zendesk" / "ticket_comment_added.json").read_text())
FRESHDESK_BODY = json.loads((FIXTURES / "freshdesk" / "agent_changed.json").read_text())
INVOCATION = "X-Zendesk-Webhook-Invocation-Id"


def signed(body: bytes, at=NOW) -> dict[str, str]:
    timestamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"X-Zendesk-Webhook-Signature-Timestamp": timestamp,
            "X-Zendesk-Webhook-Signature": sign(ZENDESK_SECRET, timestamp, body),
            "Content-Type": "application/json", INVOCATION: "01HZXPOISON"}


FRESHDESK_HEADERS = {"X-Deskpilot-Secret": FRESHDESK_SECRET, "Content-Type": "application/json"}


@pytest.fixture
def apps(store, monkeypatch):
    install_rules(monkeypatch)
    return {"zendesk": make_app(store).test_client(),
            "freshdesk": make_app(store, settings_for("freshdesk")).test_client()}


def post(apps, source: str, body: bytes, headers: dict | None = None):
    if source == "zendesk":
        return apps[source].post("/webhooks/zendesk", data=body, headers=headers or signed(body))
    return apps[source].post("/webhooks/freshdesk", data=body, headers=headers or FRESHDESK_HEADERS)


def stored(store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(inbox_events))]


def assert_one_line_4xx(response, status: int = 400) -> str:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.is_json
    reason = response.get_json()["error"]
    assert reason and "\n" not in reason and len(reason) <= 200
    return reason


def zendesk_with(**changes) -> dict:
    body = json.loads(json.dumps(COMMENT))
    body.update(changes)
    return body


def nested(depth: int) -> dict:
    inner: object = "deep"
    for _ in range(depth):
        inner = {"x": inner}
    return inner  # type: ignore[return-value]


def _with_deep(source: str, depth: int) -> bytes:
    if source == "zendesk":
        body = zendesk_with()
        body["event"]["comment"]["author"]["extra"] = "__DEEP__"
    else:
        body = json.loads(json.dumps(FRESHDESK_BODY))
        body["freshdesk_webhook"]["extra"] = "__DEEP__"
    text = json.dumps(body)
    return text.replace('"__DEEP__"', '{"x":' * depth + '"deep"' + "}" * depth).encode()


SOURCES = ["zendesk", "freshdesk"]


@SQLITE_ONLY
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("body", [b"[" * 100_000, b"{" * 50_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                                  b"[" * 100_000 + b"]" * 100_000],
                         ids=["brackets", "braces", "deep-object", "deep-array"])
def test_deeply_nested_json_is_a_400(apps, store, source, body, caplog):
    reason = assert_one_line_4xx(post(apps, source, body))
    assert "JSON" in reason
    assert stored(store) == []
    assert not any(record.exc_info for record in caplog.records)


@SQLITE_ONLY
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("depth", [70, 900, 5000])
def test_deep_nesting_inside_the_event_is_a_400(apps, store, source, depth):
    reason = assert_one_line_4xx(post(apps, source, _with_deep(source, depth)))
    assert "nested deeper" in reason
    assert stored(store) == []


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_nan_and_infinity_are_a_400_not_an_outage(apps, store, source, constant):
    if source == "zendesk":
        text = json.dumps(zendesk_with(extra="__C__"))
    else:
        text = json.dumps({"freshdesk_webhook": {**FRESHDESK_BODY["freshdesk_webhook"], "extra": "__C__"}})
    body = text.replace('"__C__"', constant).encode()
    reason = assert_one_line_4xx(post(apps, source, body))
    assert "not valid JSON" in reason
    assert stored(store) == []


@pytest.mark.parametrize("source", SOURCES)
def test_a_lone_surrogate_is_stored_as_the_replacement_character(apps, store, source):
    if source == "zendesk":
        body = zendesk_with()
        body["event"]["comment"]["body"] = "broken \ud83d text"
        text = json.dumps(body)  # ensure_ascii writes the lone surrogate as \\ud83d
    else:
        inner = {**FRESHDESK_BODY["freshdesk_webhook"], "ticket_subject": "broken \udc00 text"}
        text = json.dumps({"freshdesk_webhook": inner})
    response = post(apps, source, text.encode())
    assert response.status_code == 202, response.get_data(as_text=True)
    [row] = stored(store)
    assert "broken \ufffd text" in json.dumps(row["payload"], ensure_ascii=False)


def test_an_event_id_of_300_characters_is_stored_under_a_hash_and_deduplicated(apps, store):
    body = json.dumps(zendesk_with(id="e" * 300)).encode()
    assert post(apps, "zendesk", body).status_code == 202
    assert post(apps, "zendesk", body).get_json() == {"status": "duplicate"}
    [row] = stored(store)
    assert row["dedupe_key"].startswith("sha256:") and len(row["dedupe_key"]) < 255


def test_a_ticket_id_too_long_to_store_is_a_400(apps, store, caplog):
    body = zendesk_with(id="evt-long-ticket")
    body["detail"]["id"] = "9" * 100
    response = post(apps, "zendesk", json.dumps(body).encode())
    assert "ticket id" in assert_one_line_4xx(response)
    assert stored(store) == []
    assert "01HZXPOISON" in caplog.text  # the log line names the delivery


@SQLITE_ONLY
@pytest.mark.parametrize("timestamp", ["２０２６-11-20T15:30:00Z", "٢٠٢٦-١١-٢٠T15:30:00Z",
                                       "2026-11-20T15:30:00Z\x00", "9999-99-99T99:99:99Z", "1" * 5000])
def test_odd_timestamp_headers_are_401(apps, store, timestamp):
    body = json.dumps(zendesk_with()).encode()
    # A WSGI server hands header bytes over as latin-1 text.
    header = timestamp.encode("utf-8").decode("latin-1")
    headers = {**signed(body), "X-Zendesk-Webhook-Signature-Timestamp": header,
               "X-Zendesk-Webhook-Signature": sign(ZENDESK_SECRET, header, body)}
    response = post(apps, "zendesk", body, headers)
    assert (response.status_code, response.get_json()) == (401, {"error": "unauthorized"})
    assert stored(store) == []


@SQLITE_ONLY
def test_an_unsigned_request_is_refused_before_its_body_is_read(apps, store):
    class Exploding:
        def read(self, *args):
            raise AssertionError("the body of an unsigned request was read")

    response = apps["zendesk"].post("/webhooks/zendesk", headers={"Transfer-Encoding": "chunked"},
                                    environ_overrides={"wsgi.input": Exploding(),
                                                       "wsgi.input_terminated": True})
    assert response.status_code == 401


@SQLITE_ONLY
def test_a_body_that_cannot_be_read_is_a_400(apps, store):
    class Broken:
        def read(self, *args):
            raise OSError("Invalid chunk size")

    body = json.dumps(zendesk_with()).encode()
    response = apps["zendesk"].post(
        "/webhooks/zendesk", headers={**signed(body), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": Broken(), "wsgi.input_terminated": True})
    assert "could not be read" in assert_one_line_4xx(response)


@SQLITE_ONLY
@pytest.mark.parametrize("source", SOURCES)
def test_a_chunked_body_over_a_mebibyte_is_413_like_content_length(apps, store, source):
    import io

    body = json.dumps(zendesk_with(padding="x" * (1024 * 1024))).encode()
    headers = {**(signed(body) if source == "zendesk" else FRESHDESK_HEADERS), "Transfer-Encoding": "chunked"}
    response = apps[source].post(f"/webhooks/{source}", headers=headers,
                                 environ_overrides={"wsgi.input": io.BytesIO(body),
                                                    "wsgi.input_terminated": True})
    assert_one_line_4xx(response, 413)
    with_length = post(apps, source, body, headers={k: v for k, v in headers.items()
                                                    if k != "Transfer-Encoding"})
    assert with_length.status_code == 413


@SQLITE_ONLY
@pytest.mark.parametrize("error", [
    sqlite3.IntegrityError("CHECK constraint failed"),
    sa.exc.DataError("INSERT", {}, Exception("value too long for type character varying(64)")),
    UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
    RecursionError("maximum recursion depth exceeded"),
])
def test_a_signed_body_the_database_refuses_is_a_400(apps, store, monkeypatch, error, caplog):
    def refuse(**kwargs):
        raise error

    monkeypatch.setattr(store, "enqueue", refuse)
    response = post(apps, "zendesk", json.dumps(zendesk_with()).encode())
    assert "cannot be stored" in assert_one_line_4xx(response)
    assert "01HZXPOISON" in caplog.text
    assert not any(record.exc_info for record in caplog.records)


@SQLITE_ONLY
@pytest.mark.parametrize("error", [
    sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked")),
    sqlite3.OperationalError("disk I/O error"),
    sa.exc.TimeoutError("QueuePool limit reached, connection timed out"),
])
def test_a_real_storage_outage_is_a_503(apps, store, monkeypatch, error):
    def outage(**kwargs):
        raise error

    monkeypatch.setattr(store, "enqueue", outage)
    response = post(apps, "zendesk", json.dumps(zendesk_with()).encode())
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"


def test_a_database_outage_logs_one_line_per_interval_with_a_count(monkeypatch, caplog):
    install_rules(monkeypatch)
    client = make_app(down_store()).test_client()
    caplog.set_level(logging.INFO)
    for n in range(30):
        body = json.dumps(zendesk_with(id=f"outage-{n}")).encode()
        assert client.post("/webhooks/zendesk", data=body, headers=signed(body)).status_code == 503
    for _ in range(10):
        assert client.get("/healthz").status_code == 503
    lines = [r for r in caplog.records if r.name == "deskpilot.webhooks" and "not stored" in r.getMessage()]
    assert len(lines) == 1
    assert len([r for r in caplog.records if "health check failed" in r.getMessage()]) == 1
    assert not any(record.exc_info for record in caplog.records)


def test_the_rate_limited_log_counts_what_it_held_back(caplog):
    from jobs.quietlog import RateLimitedLog

    now = [0.0]
    quiet = RateLimitedLog(logging.getLogger("deskpilot.test"), interval_seconds=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="deskpilot.test"):
        assert quiet.warning("db", "database down: %s", "OperationalError")
        for _ in range(443):
            now[0] += 0.01
            assert not quiet.warning("db", "database down: %s", "OperationalError")
        assert quiet.warning("other", "a different failure")
        now[0] = 12.0
        assert quiet.warning("db", "database down: %s", "OperationalError")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["database down: OperationalError", "a different failure",
                        "database down: OperationalError (443 more like this in the last 12s)"]


def test_a_replayed_window_edge_is_still_checked_after_the_body(apps, store):
    body = json.dumps(zendesk_with()).encode()
    stale = signed(body, at=NOW - timedelta(minutes=6))
    assert post(apps, "zendesk", body, stale).status_code == 401
    assert stored(store) == []


@SQLITE_ONLY
def test_an_unexpected_error_is_one_line_of_json_and_one_log_line(store, monkeypatch, caplog):
    install_rules(monkeypatch)

    def broken_clock():
        raise RuntimeError("clock\nbroken")

    client = make_app(store, clock=broken_clock, PROPAGATE_EXCEPTIONS=False).test_client()
    body = json.dumps(zendesk_with()).encode()
    for _ in range(5):
        response = client.post("/webhooks/zendesk", data=body, headers=signed(body))
        assert (response.status_code, response.get_json()) == (500, {"error": "internal error"})
    assert client.get("/webhooks/nowhere").get_json() == {"error": "The requested URL was not found on the "
                                                          "server. If you entered the URL manually please "
                                                          "check your spelling and try again."}
    lines = [r for r in caplog.records if "failed: RuntimeError" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)
