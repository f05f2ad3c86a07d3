"""The JSON API: bearer token (401 without), ticket decisions and the at-risk list."""

from __future__ import annotations

import pytest

from tests.console_support import API_TOKEN, NOW, console_app, https_client, login, seed

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def client(store):
    seed(store, 40)
    return console_app(store).test_client()


@SQLITE_ONLY
@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer"}, {"Authorization": "Bearer wrong"},
    {"Authorization": f"Basic {API_TOKEN}"}, {"Authorization": f"Bearer {API_TOKEN}x"},
])
def test_every_api_route_is_401_without_the_token(client, headers):
    rules = [r for r in client.application.url_map.iter_rules() if r.endpoint.startswith("api.")]
    assert len(rules) >= 2
    for rule in rules:
        path = rule.build({arg: "1" for arg in rule.arguments})[1]
        response = client.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.get_json() == {"error": "unauthorized"}
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@SQLITE_ONLY
def test_a_console_session_is_not_an_api_credential(store):
    seed(store, 5)
    client = https_client(console_app(store))
    login(client)
    assert client.get("/api/v1/at-risk").status_code == 401


@SQLITE_ONLY
def test_api_is_closed_when_no_token_is_configured(store):
    from app import create_app
    from tests.console_support import console_settings

    app = create_app({"TESTING": True, "SETTINGS": console_settings(API_TOKEN=""), "STORE": store})
    assert app.test_client().get("/api/v1/at-risk", headers={"Authorization": "Bearer "}).status_code == 401


def test_ticket_decision(client):
    body = client.get("/api/v1/tickets/3", headers=AUTH).get_json()
    assert body["priority"] == "normal" and body["policy"] == "advanced"
    clock = body["targets"]["first_response"]
    assert clock == {"state": "running", "warning": False, "due": "2026-11-24T14:00:00Z",
                     "due_local": "Tue 24 Nov 15:00 CET", "calendar": "office",
                     "business_seconds_left": 4 * 3600, "budget": "6 hours"}
    assert body["explanation"]["reclassified"]["rule"] == "default-priority"
    assert body["explanation"]["policy_name"] == "Advanced plan"
    assert [a["type"] for a in body["actions"]] == ["set_priority", "note", "set_fields"]
    assert all(a["rules_version"] == body["rules_version"] for a in body["actions"])


def test_unknown_ticket_is_404(client):
    response = client.get("/api/v1/tickets/424242", headers=AUTH)
    assert response.status_code == 404 and "424242" in response.get_json()["error"]


def test_at_risk_is_ordered_by_next_breach(client):
    body = client.get("/api/v1/at-risk?limit=500", headers=AUTH).get_json()
    assert body["as_of"] == NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    dues = [t["due"] for t in body["tickets"] if t["due"]]
    assert dues == sorted(dues) and len(dues) > 5
    first = body["tickets"][0]
    assert first["state"] == "breached" and first["business_time_left"].startswith("0 (overdue")
    assert set(first) >= {"ticket_id", "helpdesk", "priority", "policy", "target", "due", "due_local",
                          "group"}
    breached = client.get("/api/v1/at-risk?state=breached&limit=500", headers=AUTH).get_json()["tickets"]
    assert breached and {t["state"] for t in breached} == {"breached"}
    assert client.get("/api/v1/at-risk?limit=abc", headers=AUTH).status_code == 400
