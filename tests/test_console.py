"""The console: access control, CSRF, the login rate limit, secrets never shown, and each page's data."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest

from console import data
from store.models import ticket_board
from tests.console_support import (
    ADMIN,
    API_TOKEN,
    NOW,
    PASSWORD,
    SECRET_KEY,
    console_app,
    csrf_token,
    https_client,
    login,
    seed,
)

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def app(store):
    seed(store, 40)
    return console_app(store)


@pytest.fixture
def client(app):
    client = https_client(app)
    assert login(client).status_code == 302
    return client


def _console_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("console.") and rule.endpoint not in ("console.login", "console.static"):
            yield rule


def _url(rule) -> str:
    values = {arg: {"source": "zendesk", "ticket_id": "1", "filename": "console.css"}.get(arg, "x")
              for arg in rule.arguments}
    return rule.build(values)[1]


@SQLITE_ONLY
def test_no_console_page_answers_without_signing_in(app):
    client = https_client(app)
    rules = list(_console_rules(app))
    assert len(rules) >= 10
    for rule in rules:
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(_url(rule), method=method)
            if method == "GET":
                assert response.status_code == 302, rule
                assert response.headers["Location"].startswith("/console/login"), rule
            else:
                # Refused before the view runs: no CSRF token (400), and no session either.
                assert response.status_code in (400, 302), (rule, response.status_code)
            assert b"Ticket" not in response.data or b"Sign in" in response.data


@SQLITE_ONLY
def test_state_changing_requests_without_csrf_are_400_even_when_signed_in(client, store):
    store.request_sync("zendesk", ["5"], NOW, "test")  # something to act on
    for path, form in (("/console/logout", {}), ("/console/dead-letters/replay", {}),
                       ("/console/dead-letters/drop", {"source": "zendesk", "ticket_id": "5"}),
                       ("/console/tickets/zendesk/5/reevaluate", {})):
        response = client.post(path, data=form)
        assert response.status_code == 400, path
        response = client.post(path, data={**form, "csrf_token": "forged"})
        assert response.status_code == 400, path
    assert client.get("/console/").status_code == 200  # still signed in: logout was refused


@SQLITE_ONLY
def test_login_without_csrf_is_400(app):
    client = https_client(app)
    response = client.post("/console/login", data={"email": ADMIN, "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/console/").status_code == 302


@SQLITE_ONLY
def test_ten_wrong_passwords_throttle_the_address_even_with_the_right_one(app):
    client = https_client(app)
    for _ in range(10):
        assert login(client, password="wrong password").status_code == 401
    response = login(client)
    assert response.status_code == 429
    assert b"Too many failed sign-ins" in response.data
    assert client.get("/console/").status_code == 302


@SQLITE_ONLY
def test_throttle_ends_after_the_window(store):
    clock = {"now": NOW}
    app = console_app(store, clock=lambda: clock["now"])
    client = https_client(app)
    for _ in range(10):
        login(client, password="nope nope nope")
    assert login(client).status_code == 429
    clock["now"] = NOW + timedelta(minutes=16)
    assert login(client).status_code == 302


@SQLITE_ONLY
def test_wrong_and_unknown_logins_say_the_same(app):
    client = https_client(app)
    wrong = login(client, password="not the password")
    unknown = login(client, email="nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert b"Wrong email or password." in wrong.data and b"Wrong email or password." in unknown.data


@SQLITE_ONLY
def test_session_cookie_is_secure_http_only_and_lax(app):
    client = https_client(app)
    response = login(client)
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_the_password_is_stored_hashed(store):
    console_app(store)
    import sqlalchemy as sa

    from store.models import console_users

    with store.engine.connect() as conn:
        row = conn.execute(sa.select(console_users)).one()
    assert row.email == ADMIN
    assert PASSWORD not in row.password_hash
    assert row.password_hash.startswith(("scrypt:", "pbkdf2:"))


@SQLITE_ONLY
def test_no_secret_in_any_page(client, app, store):
    secrets = [PASSWORD, API_TOKEN, SECRET_KEY, "zd-api-token", "sandbox-token"]
    store.request_sync("zendesk", ["7"], NOW, "test")
    pages = [_url(rule) for rule in _console_rules(app) if "GET" in rule.methods]
    pages += ["/console/?state=breached", "/console/tickets/zendesk/3", "/console/activity.csv"]
    for path in pages:
        response = client.get(path)
        assert response.status_code in (200, 404), path
        body = response.get_data(as_text=True)
        for secret in secrets:
            assert secret not in body, (path, secret)


@SQLITE_ONLY
def test_logout_ends_the_session(client):
    page = client.get("/console/").get_data(as_text=True)
    response = client.post("/console/logout", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    assert client.get("/console/").status_code == 302


@SQLITE_ONLY
def test_next_parameter_cannot_redirect_off_site(app):
    client = https_client(app)
    page = client.get("/console/login").get_data(as_text=True)
    response = client.post("/console/login?next=https://evil.example/", data={
        "email": ADMIN, "password": PASSWORD, "csrf_token": csrf_token(page)})
    assert response.headers["Location"] == "/console/"


def _board_ids(html: str) -> list[str]:
    return re.findall(r'data-ticket="([^"]+)"', html)


def test_board_orders_open_tickets_by_next_breach(client, store):
    html = client.get("/console/").get_data(as_text=True)
    ids = _board_ids(html)
    with store.engine.connect() as conn:
        import sqlalchemy as sa

        rows = conn.execute(
            sa.select(ticket_board.c.ticket_id, ticket_board.c.next_due)
            .where(ticket_board.c.is_open == sa.true(), ticket_board.c.next_due.is_not(None))
            .order_by(ticket_board.c.next_due, ticket_board.c.ticket_id)
        ).all()
    assert rows, "the sample has tickets with a running or breached target"
    assert ids[: len(rows)] == [r.ticket_id for r in rows][: len(ids)]
    dues = re.findall(r'class="due">([^<]*)<', html)
    assert dues[0] == rows[0].next_due.strftime("%Y-%m-%d %H:%M UTC")


def test_board_filters_narrow_it(client):
    everything = _board_ids(client.get("/console/").get_data(as_text=True))
    breached = client.get("/console/?state=breached").get_data(as_text=True)
    urgent = _board_ids(client.get("/console/?priority=urgent").get_data(as_text=True))
    assert 0 < len(_board_ids(breached)) < len(everything)
    assert set(re.findall(r'class="badge (\w+)"', breached)) == {"breached"}
    assert 0 < len(urgent) < len(everything)
    assert client.get("/console/?state=bogus").status_code == 400


def test_board_tiles_compliance_and_chart(client, store):
    html = client.get("/console/").get_data(as_text=True)
    summary = data.board_summary(store, NOW, {})
    assert f'id="tile-open">{summary["tiles"]["open"]}<' in html
    assert f'id="tile-breached">{summary["tiles"]["breached"]}<' in html
    assert summary["tiles"]["breached"] > 0 and summary["compliance"]
    cell = summary["compliance"][0]["windows"][30]
    assert cell["all"] >= cell["met"] and cell["all"] > 0
    assert sum(n for _, n in summary["breaches"]) > 0
    assert 'aria-label="Breaches per day"' in html
    assert 'data-refresh="30"' in html


def test_ticket_page_explains_priority_policy_and_calendar(client):
    html = client.get("/console/tickets/zendesk/3").get_data(as_text=True)
    assert "default-priority" in html and "no priority was chosen" in html
    assert "Advanced plan" in html and "field plan is advanced" in html
    assert "uses the office calendar" in html and "Europe/Bratislava" in html
    assert "Re-evaluate now" in html
    assert "/api/v2/tickets/3.json" in html  # the sandbox helpdesk's ticket
    version = app_rules_version(client)
    # The action and the rules version it was made under.
    assert "<td>set_priority</td>" in html and f"<td>{version}</td>" in html
    assert "public comment by the customer" in html


def app_rules_version(client) -> str:
    return client.application.extensions["deskpilot"]["rules"]["version"]


def test_pause_spans_are_shaded_on_the_timeline(client, store):
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        paused = conn.execute(sa.select(ticket_board.c.ticket_id).where(ticket_board.c.status == "pending")
                              ).scalars().first()
    html = client.get(f"/console/tickets/zendesk/{paused}").get_data(as_text=True)
    assert '<rect class="pause"' in html and "status changed to pending" in html


def test_reevaluate_queues_a_sync(client, store):
    page = client.get("/console/tickets/zendesk/3").get_data(as_text=True)
    response = client.post("/console/tickets/zendesk/3/reevaluate", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    claims = store.claim("test", NOW + timedelta(seconds=5))
    assert [(c.source, c.ticket_id) for c in claims] == [("zendesk", "3")]


def test_unknown_ticket_is_404(client):
    assert client.get("/console/tickets/zendesk/999999").status_code == 404


def test_activity_filters_and_csv(client, store):
    html = client.get("/console/activity").get_data(as_text=True)
    assert "default-priority" in html
    filtered = client.get("/console/activity?type=set_priority").get_data(as_text=True)
    assert "<td>set_fields</td>" not in filtered and "<td>set_priority</td>" in filtered
    response = client.get("/console/activity.csv?rule=default-priority")
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:4] == ["created_at", "helpdesk", "ticket_id", "rule"]
    assert len(rows) > 1 and {r[3] for r in rows[1:]} == {"default-priority"}
    assert client.get("/console/activity?day=yesterday").status_code == 400
    assert "No bot actions" in client.get("/console/activity?day=2020-01-01").get_data(as_text=True)


def _park(store, ticket_id: str) -> None:
    store.enqueue(source="zendesk", dedupe_key=f"e-{ticket_id}", ticket_id=ticket_id,
                  event_type="ticket.updated", payload={}, received_at=NOW)
    (claim,) = [c for c in store.claim("test", NOW + timedelta(seconds=5)) if c.ticket_id == ticket_id]
    store.dead_letter(claim, NOW, "ConnectorError: GET /api/v2/tickets/8.json: Zendesk answered 500")


def test_dead_letters_replay_and_drop(client, store):
    _park(store, "8")
    _park(store, "9")
    html = client.get("/console/dead-letters").get_data(as_text=True)
    assert "Zendesk answered 500" in html and 'data-ticket="8"' in html
    token = csrf_token(html)
    form = {"csrf_token": token, "source": "zendesk"}
    client.post("/console/dead-letters/replay", data={**form, "ticket_id": "8"})
    client.post("/console/dead-letters/drop", data={**form, "ticket_id": "9"})
    assert store.dead_letters() == []
    claims = store.claim("test2", NOW + timedelta(minutes=1))
    assert [c.ticket_id for c in claims] == ["8"]


def test_rules_page_shows_version_files_and_diff(client, store, app, tmp_path):
    html = client.get("/console/rules").get_data(as_text=True)
    status = app.extensions["deskpilot"]["rules"]
    assert status["version"] in html and "deskpilot.yaml" in html
    assert "No earlier version is recorded." in html
    # An earlier version recorded in the store: the page shows the change to the one in force.
    import sqlalchemy as sa

    from store.models import rules_versions

    with store.engine.begin() as conn:
        conn.execute(sa.insert(rules_versions).values(
            version="000000000000", files=[["deskpilot.yaml", "version: 1\n"]],
            first_seen=NOW - timedelta(days=1)))
        conn.execute(sa.update(rules_versions).where(rules_versions.c.version == status["version"])
                     .values(first_seen=NOW))
    html = client.get("/console/rules").get_data(as_text=True)
    assert 'id="diff"' in html and "+++ " + status["version"] + "/deskpilot.yaml" in html


def test_rules_page_shows_the_last_reload_error(client, app):
    app.extensions["deskpilot"]["rules"] = {**app.extensions["deskpilot"]["rules"],
                                            "error": "rules/deskpilot.yaml:12: policies[0].when: bad"}
    html = client.get("/console/rules").get_data(as_text=True)
    assert 'id="rules-error"' in html and "policies[0].when: bad" in html


def test_health_page(client, store):
    store.request_sync("zendesk", ["1", "2"], NOW - timedelta(minutes=5), "test")
    html = client.get("/console/health").get_data(as_text=True)
    assert 'id="queue-depth">2<' in html
    assert "Oldest queued" in html and "300 s" in html
    from console import metrics

    metrics.sweep_duration("zendesk", 0.25)
    html = client.get("/console/health").get_data(as_text=True)
    metrics.vendor_request("zendesk", "GET", 200)
    metrics.vendor_request("zendesk", "PUT", 429)
    html = client.get("/console/health").get_data(as_text=True)
    assert re.search(r'id="vendor-calls">zendesk: \d+ calls, \d+ answered 429', html)
    calls = data.vendor_calls(store, NOW - timedelta(hours=1))["zendesk"]
    assert calls["2xx"] >= 1 and calls["429"] >= 1
    assert re.search(r'id="sweeps">\d+ run, [0-9.]+ s on average, last ended 20\d\d-', html)


def test_users_create_command(store):
    app = console_app(store)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "second@example.com", "--password-stdin"],
                           input="another long password\n")
    assert result.exit_code == 0, result.output
    assert "created" in result.output
    assert data.check_login(store, "second@example.com", "another long password", NOW) is not None
    result = runner.invoke(args=["users", "create", "second@example.com", "--password-stdin"],
                           input="x" * 9 + "\n")
    assert result.exit_code != 0 and "exists already" in result.output
    result = runner.invoke(args=["users", "create", "third@example.com", "--password-stdin"], input="short\n")
    assert result.exit_code != 0 and "at least 8" in result.output
    result = runner.invoke(args=["users", "create", "fourth@example.com"],
                           input="long enough pw\nlong enough pw\n")
    assert result.exit_code == 0, result.output


def test_console_disabled_without_secret_key_outside_the_sandbox(store):
    from app import create_app
    from tests.test_app import settings_for

    app = create_app({"SETTINGS": settings_for(API_TOKEN=API_TOKEN), "STORE": store})
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert not any(e.startswith("console.") for e in endpoints)
    assert "metrics" in endpoints and "api.at_risk" in endpoints


def _snapshot(store, ticket_id: str, priority: str, targets: dict, status: str = "open") -> None:
    ticket = {"id": ticket_id, "status": status, "priority": priority}
    store.save_snapshot("zendesk", ticket_id, ticket=ticket,
                        decision={"priority": priority, "policy": "p", "targets": targets},
                        next_check=None, rules_version="v1", now=NOW)


def test_compliance_breaches_and_tiles_count_exactly(store):
    from store import board

    def t(state, due, achieved=None):
        out = {"state": state, "due": due, "business_seconds": 3600, "calendar": "office"}
        if achieved:
            out["achieved_at"] = achieved
        return out

    _snapshot(store, "1", "high", {"first_response": t("met", "2026-11-23T10:00:00Z",
                                                       "2026-11-23T09:00:00Z")})
    _snapshot(store, "2", "high", {"first_response": t("breached", "2026-11-22T10:00:00Z",
                                                       "2026-11-22T12:00:00Z")})  # met late
    _snapshot(store, "3", "high", {"first_response": t("breached", "2026-11-10T10:00:00Z")})  # 14 days ago
    # Stale: stored as running, its due has passed.
    _snapshot(store, "4", "high", {"first_response": t("running", "2026-11-24T09:30:00Z")})
    _snapshot(store, "5", "low", {"first_response": t("running", "2026-11-24T10:30:00Z")})  # within 1 h
    _snapshot(store, "6", "low", {"first_response": t("running", "2026-11-25T09:00:00Z")}, status="solved")
    with store.engine.connect() as conn:
        cells = {(c["target"], c["priority"]): c["windows"] for c in board.compliance(conn, NOW)}
        per_day = dict(board.breaches_per_day(conn, NOW))
        tiles = board.tiles(conn, NOW)
    high = cells[("first_response", "high")]
    assert (high[7]["met"], high[7]["all"]) == (1, 3)  # 1 in time; 2 late and 4 overdue
    assert (high[30]["met"], high[30]["all"]) == (1, 4)
    assert ("first_response", "low") not in cells  # nothing decided yet
    assert per_day["2026-11-22"] == 1 and per_day["2026-11-10"] == 1 and per_day["2026-11-24"] == 1
    assert sum(per_day.values()) == 3 and len(per_day) == 30
    assert tiles == {"open": 5, "breached": 2, "within_1h": 1, "within_24h": 1}


def test_board_pages_continue_across_tickets_without_a_clock(store):
    from store import board

    seed(store, 60)
    with store.engine.connect() as conn:
        whole = [r.ticket_id for r in board.page(conn, NOW, {}, 60)]
        pieces = [r.ticket_id for offset in range(0, 60, 7) for r in board.page(conn, NOW, {}, 7, offset)]
        total = board.count(conn, NOW, {})
    assert pieces == whole and len(whole) == total


def test_unknown_helpdesk_is_404_and_queues_nothing(client, store):
    page = client.get("/console/").get_data(as_text=True)
    assert client.get("/console/tickets/jira/3").status_code == 404
    assert client.post("/console/tickets/jira/3/reevaluate", data={"csrf_token": csrf_token(page)}
                       ).status_code == 404
    assert store.health()["backlog"] == 0
