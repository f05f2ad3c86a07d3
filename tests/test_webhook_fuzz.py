"""Fuzzing both webhook endpoints (hypothesis): JSON structure, encodings, headers and sizes.

Whatever arrives: never a 5xx while the database is up, never a traceback in
the log, and nothing stored from a request that did not authenticate.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.signature import sign
from tests.test_app import FRESHDESK_SECRET, NOW, ZENDESK_SECRET, install_rules, make_app, settings_for

FIXTURES = Path(__file__).parent / "fixtures"
ZENDESK_BODIES = [json.loads(p.read_text()) for p in sorted((FIXTURES / "zendesk").glob("*.json"))
                  if p.name != "malformed.json"]
FRESHDESK_BODIES = [json.loads(p.read_text()) for p in sorted((FIXTURES / "freshdesk").glob("*.json"))
                    if p.name != "malformed.json"]
TIMESTAMP = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["", "5158", "zen:ticket:12", "9" * 70, "e" * 300, "{{ticket.id}}", "OPEN", "\x00"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=12), children, max_size=4)),
    max_leaves=20,
)


def _paths(value, prefix=()):
    """Every (path) into a JSON value, objects and arrays alike."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


@st.composite
def mutated(draw, bodies):
    """A real vendor body with a few of its values replaced by arbitrary JSON."""
    body = draw(st.sampled_from(bodies))
    for _ in range(draw(st.integers(0, 3))):
        paths = list(_paths(body))
        body = _replace(body, draw(st.sampled_from(paths)), draw(json_values))
    return body


NASTY_TEXT = [b'"\\ud800"', b"NaN", b"-Infinity", b"1e999", b"[" * 3000, b'{"a":' * 2000,
              b'"' + b"x" * 5000 + b'"', b"9" * 5000]


@st.composite
def encoded(draw, bodies):
    """Bytes on the wire: JSON of a mutated body, odd encodings, splices of poison, or noise."""
    kind = draw(st.sampled_from(["json", "json", "json", "utf16", "latin1", "splice", "noise", "padded"]))
    if kind == "noise":
        return draw(st.binary(max_size=300))
    body = draw(mutated(bodies))
    text = json.dumps(body, ensure_ascii=draw(st.booleans()))
    if kind == "utf16":
        return text.encode("utf-16")
    if kind == "latin1":
        return text.encode("latin-1", "replace")
    if kind == "splice":
        # Put a poison token where a JSON value stood.
        raw = text.encode()
        marker = draw(st.sampled_from([b"null", b"true", b"false", b'""', b"0"]))
        poison = draw(st.sampled_from(NASTY_TEXT))
        return raw.replace(marker, poison, 1) if marker in raw else raw + poison
    if kind == "padded":
        size = draw(st.sampled_from([10_000, 1024 * 1024 - 200, 1024 * 1024 + 10]))
        return json.dumps({**body, "padding": "p" * size} if isinstance(body, dict) else body).encode()
    return text.encode()


# A header value cannot hold a line break (the server would end the header there).
header_text = st.characters(exclude_categories=["Cs"], exclude_characters="\r\n")
header_values = st.one_of(st.none(), st.text(header_text, max_size=60),
                          st.sampled_from(["", "２０２６-11-20T15:30:00Z", "9999-99-99T99:99:99Z", "x" * 300,
                                           TIMESTAMP, "2026-11-20T15:30:00+25:00", "0" * 40]))


def _latin1(value: str) -> str:
    # A WSGI server hands header bytes over as latin-1 text; the test client wants the same.
    return value.encode("utf-8").decode("latin-1")


@pytest.fixture
def clients(store, monkeypatch):
    install_rules(monkeypatch)
    return {"zendesk": make_app(store).test_client(),
            "freshdesk": make_app(store, settings_for("freshdesk")).test_client()}


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def check(response, caplog, store, before: int, authenticated: bool) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    assert response.is_json
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "Traceback" not in caplog.text
    if not authenticated:
        assert response.status_code in (401, 413)
        assert store.health()["inbox_pending"] == before, "stored from an unauthenticated request"
    caplog.clear()


@FUZZ
@given(body=encoded(ZENDESK_BODIES), authenticated=st.booleans(), timestamp=header_values,
       signature=header_values, invocation=header_values,
       content_type=st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1"]))
def test_fuzz_zendesk_endpoint(clients, store, caplog, body, authenticated, timestamp, signature,
                               invocation, content_type):
    caplog.set_level(logging.INFO)
    before = store.health()["inbox_pending"]
    headers = {"Content-Type": content_type}
    if invocation is not None:
        headers["X-Zendesk-Webhook-Invocation-Id"] = _latin1(invocation)
    if authenticated:
        headers["X-Zendesk-Webhook-Signature-Timestamp"] = TIMESTAMP
        headers["X-Zendesk-Webhook-Signature"] = sign(ZENDESK_SECRET, TIMESTAMP, body)
    else:
        if timestamp is not None:
            headers["X-Zendesk-Webhook-Signature-Timestamp"] = _latin1(timestamp)
        if signature is not None:
            headers["X-Zendesk-Webhook-Signature"] = _latin1(signature)
    response = clients["zendesk"].post("/webhooks/zendesk", data=body, headers=headers)
    check(response, caplog, store, before, authenticated)


@FUZZ
@given(body=encoded(FRESHDESK_BODIES), authenticated=st.booleans(), secret=header_values,
       how=st.sampled_from(["header", "basic", "bearer"]))
def test_fuzz_freshdesk_endpoint(clients, store, caplog, body, authenticated, secret, how):
    import base64

    caplog.set_level(logging.INFO)
    before = store.health()["inbox_pending"]
    offered = FRESHDESK_SECRET if authenticated else _latin1(secret or "")
    if not authenticated and offered == FRESHDESK_SECRET:
        offered += "x"
    headers = {"Content-Type": "application/json"}
    if how == "header":
        headers["X-Deskpilot-Secret"] = offered
    elif how == "basic":
        token = base64.b64encode(f"freshdesk:{offered}".encode("latin-1", "replace")).decode()
        headers["Authorization"] = f"Basic {token}"
    else:
        headers["Authorization"] = f"Bearer {offered}"
        authenticated = False
    response = clients["freshdesk"].post("/webhooks/freshdesk", data=body, headers=headers)
    check(response, caplog, store, before, authenticated)
