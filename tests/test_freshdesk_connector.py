"""The Freshdesk connector against stubbed HTTP: exact requests, mapping, retries, paging."""

from __future__ import annotations

import base64
import json
from bisect import bisect_left
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers

import connectors
from connectors.base import (
    ConfigurationError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    RateLimitedError,
    RemoteTicket,
    TicketChanges,
    TransientError,
)
from connectors.freshdesk import FreshdeskConnector
from engine.rules import HelpdeskMapping
from engine.ticket import Event, to_epoch

FIXTURES = Path(__file__).parent / "fixtures" / "freshdesk_api"
API = "https://acme.freshdesk.com/api/v2"


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def at(text: str) -> int:
    return to_epoch(datetime.fromisoformat(text.replace("Z", "+00:00")))


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def fd(sleeps) -> FreshdeskConnector:
    return FreshdeskConnector(
        "acme.freshdesk.com", "secret-key",
        field_names={"plan": "cf_plan", "case_reason": "cf_case_reason"},
        group_ids={"Level 1": 5000123456, "Level 2": 5000654321},
        status_map={7: "on_hold"},
        sleep=sleeps,
    )


@pytest.fixture
def rsps():
    """Stubbed HTTP; the account's agents and ticket fields answer from the fixtures."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{API}/agents", json=fixture("agents.json"))
        mock.get(f"{API}/ticket_fields", json=fixture("ticket_fields.json"))
        yield mock


def ticket_calls(rsps) -> list:
    """The calls but the (cached) account metadata reads."""
    return [c for c in rsps.calls if not c.request.url.split("?")[0].endswith(("/agents", "/ticket_fields"))]


def stub_ticket(rsps, data, conversations=()):
    tid = data["id"]
    rsps.get(f"{API}/tickets/{tid}", json=data,
             match=[matchers.query_param_matcher({"include": "stats"})])
    rsps.get(f"{API}/tickets/{tid}/conversations", json=list(conversations),
             match=[matchers.query_param_matcher({"page": "1", "per_page": "100"})])


def remote(data) -> RemoteTicket:
    return RemoteTicket(ticket=_ticket_stub(data), stamp=data["updated_at"], raw=data)


def _ticket_stub(data):
    from engine.ticket import Ticket

    return Ticket(id=str(data["id"]), status="open", created_at=0, tags=frozenset(data["tags"]))


def query(call) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(call.request.url).query).items()}


def sent(call) -> object:
    return json.loads(call.request.body) if call.request.body else None


# -- reading -------------------------------------------------------------------

def test_fetch_builds_the_engine_ticket(rsps, fd):
    stub_ticket(rsps, fixture("ticket_open_with_stats.json"), fixture("conversations.json"))

    got = fd.fetch_ticket("1001")

    t = got.ticket
    assert (t.id, t.status, t.priority, t.group) == ("1001", "open", "urgent", "Level 1")
    assert t.subject == "Calls failing on production"
    assert t.description == "Every outbound call fails with error 503 since 14:00."
    assert t.tags == frozenset({"vip", "voice"})
    assert t.fields == {"plan": "professional", "case_reason": "bug"}
    assert t.created_at == at("2026-11-20T14:30:00Z")
    assert t.events == (
        Event(at("2026-11-20T14:30:00Z"), "comment", author="customer", public=True),
        Event(at("2026-11-20T15:00:00Z"), "comment", author="agent", public=True),
        Event(at("2026-11-20T15:30:00Z"), "comment", author="agent", public=False),
        Event(at("2026-11-21T09:00:00Z"), "comment", author="customer", public=True),
        Event(at("2026-11-21T09:00:00Z"), "status", status="open"),
    )
    assert got.stamp == "2026-11-21T09:00:00Z"
    assert got.raw["stats"]["first_responded_at"] == "2026-11-20T15:00:00Z"
    assert len(ticket_calls(rsps)) == 2  # and, once, the agent list and the ticket fields
    fd.fetch_ticket("1001")
    assert len(rsps.calls) == 4 + 2  # cached: the next fetch is two calls


def test_requests_use_basic_auth_with_the_key_and_x(rsps, fd):
    stub_ticket(rsps, fixture("ticket_open_with_stats.json"))
    fd.fetch_ticket("1001")
    expected = "Basic " + base64.b64encode(b"secret-key:X").decode()
    assert all(call.request.headers["Authorization"] == expected for call in rsps.calls)


def test_api_url_overrides_the_domain(rsps, sleeps):
    fd = FreshdeskConnector("acme.freshdesk.com", "k", api_url="http://127.0.0.1:9200/", sleep=sleeps)
    rsps.get("http://127.0.0.1:9200/api/v2/jobs/abc", json={"id": "abc"})
    assert fd.job_status("abc") == {"id": "abc"}


def test_conversations_follow_the_link_header(rsps, fd):
    data = fixture("ticket_open_with_stats.json")
    template = fixture("conversations.json")[0]
    first = [dict(template, id=i, created_at="2026-11-20T15:00:00Z") for i in range(100)]
    rsps.get(f"{API}/tickets/1001", json=data)
    rsps.get(f"{API}/tickets/1001/conversations", json=first,
             headers={"Link": f'<{API}/tickets/1001/conversations?page=2&per_page=100>; rel="next"'},
             match=[matchers.query_param_matcher({"page": "1", "per_page": "100"})])
    rsps.get(f"{API}/tickets/1001/conversations", json=fixture("conversations.json"),
             match=[matchers.query_param_matcher({"page": "2", "per_page": "100"})])

    ticket = fd.fetch_ticket("1001").ticket

    comments = [e for e in ticket.events if e.type == "comment"]
    assert len(comments) == 1 + 100 + 3
    assert len(ticket_calls(rsps)) == 3


def test_next_link_to_another_host_never_receives_the_key(rsps, fd):
    rsps.get(f"{API}/tickets/1001", json=fixture("ticket_open_with_stats.json"))
    rsps.get(f"{API}/tickets/1001/conversations", json=[],
             headers={"Link": '<https://evil.example/steal?page=2&per_page=100>; rel="next"'},
             match=[matchers.query_param_matcher({"page": "1", "per_page": "100"})])
    rsps.get(f"{API}/tickets/1001/conversations", json=[],
             match=[matchers.query_param_matcher({"page": "2", "per_page": "100"})])
    fd.fetch_ticket("1001")
    urls = [c.request.url.split("?")[0] for c in ticket_calls(rsps)]
    assert urls[-1] == f"{API}/tickets/1001/conversations"
    assert not any("evil.example" in c.request.url for c in rsps.calls)


@pytest.mark.parametrize("number, name", [(1, "low"), (2, "normal"), (3, "high"), (4, "urgent"),
                                          (None, None)])
def test_priority_mapping(rsps, fd, number, name):
    stub_ticket(rsps, dict(fixture("ticket_open_with_stats.json"), priority=number))
    assert fd.fetch_ticket("1001").ticket.priority == name


@pytest.mark.parametrize("number, name", [(2, "open"), (3, "pending"), (4, "solved"), (5, "closed"),
                                          (7, "on_hold")])
def test_status_mapping(rsps, fd, number, name):
    stub_ticket(rsps, dict(fixture("ticket_open_with_stats.json"), status=number))
    assert fd.fetch_ticket("1001").ticket.status == name


def test_unmapped_custom_status_names_the_id_and_the_setting(rsps, fd):
    stub_ticket(rsps, dict(fixture("ticket_open_with_stats.json"), status=8))
    with pytest.raises(ConfigurationError, match=r"status 8.*helpdesk: freshdesk: statuses:"):
        fd.fetch_ticket("1001")


@pytest.mark.parametrize("number, name", [(6, "pending"), (7, "on_hold")])
def test_default_waiting_statuses_need_no_configuration(rsps, sleeps, number, name):
    # Every Freshdesk account has 6 "Waiting on Customer" and 7 "Waiting on Third Party".
    bare = FreshdeskConnector("acme.freshdesk.com", "secret-key", sleep=sleeps)
    stub_ticket(rsps, dict(fixture("ticket_custom_status_with_stats.json"), status=number))
    assert bare.fetch_ticket("1005").ticket.status == name


def test_on_hold_is_written_as_waiting_on_third_party_without_configuration(rsps, sleeps):
    bare = FreshdeskConnector("acme.freshdesk.com", "secret-key", sleep=sleeps)
    rsps.put(f"{API}/tickets/1001", json=fixture("ticket_updated.json"))
    bare.apply(remote(fixture("ticket_open_with_stats.json")), TicketChanges(status="on_hold"))
    assert [sent(c) for c in rsps.calls] == [{"status": 7}]


def test_custom_status_event_at_status_updated_at(rsps, fd):
    stub_ticket(rsps, fixture("ticket_custom_status_with_stats.json"))
    ticket = fd.fetch_ticket("1005").ticket
    assert ticket.status == "on_hold"
    assert [e for e in ticket.events if e.type == "status"] == [
        Event(at("2026-11-20T16:00:00Z"), "status", status="on_hold")]


@pytest.mark.parametrize("name, expected", [
    ("ticket_pending_with_stats.json", [("2026-11-20T15:01:00Z", "pending")]),
    ("ticket_reopened_with_stats.json", [("2026-11-21T12:00:00Z", "solved"),
                                         ("2026-11-22T10:00:00Z", "open")]),
    ("ticket_closed_with_stats.json", [("2026-11-21T16:00:00Z", "closed")]),
])
def test_status_events_derived_from_stats(rsps, fd, name, expected):
    data = fixture(name)
    stub_ticket(rsps, data)
    events = [e for e in fd.fetch_ticket(str(data["id"])).ticket.events if e.type == "status"]
    assert [(e.at, e.status) for e in events] == [(at(when), status) for when, status in expected]


def test_outbound_email_description_is_the_agents(rsps, fd):
    stub_ticket(rsps, fixture("ticket_outbound_email_with_stats.json"))
    ticket = fd.fetch_ticket("1006").ticket
    assert ticket.events[0] == Event(at("2026-11-20T14:30:00Z"), "comment", author="agent")
    assert (ticket.priority, ticket.group) == (None, None)


def test_bad_ticket_id_is_refused_before_any_call(rsps, fd):
    with pytest.raises(ConnectorError, match="not a Freshdesk ticket id"):
        fd.fetch_ticket("1001/../../agents")
    assert len(rsps.calls) == 0


# -- writing -------------------------------------------------------------------

@pytest.mark.parametrize("changes, body", [
    (TicketChanges(priority="normal"), {"priority": 2}),
    (TicketChanges(status="solved"), {"status": 4}),
    (TicketChanges(status="on_hold"), {"status": 7}),
    (TicketChanges(group="Level 2"), {"group_id": 5000654321}),
    (TicketChanges(add_tags=("escalated_csm", "vip")), {"tags": ["vip", "voice", "escalated_csm"]}),
    (TicketChanges(fields={"plan": "premium"}), {"custom_fields": {"cf_plan": "premium"}}),
    (TicketChanges(priority="urgent", group="Level 2", add_tags=("x",)),
     {"priority": 4, "group_id": 5000654321, "tags": ["vip", "voice", "x"]}),
])
def test_apply_sends_one_put(rsps, fd, changes, body):
    rsps.put(f"{API}/tickets/1001", json=fixture("ticket_updated.json"))
    fd.apply(remote(fixture("ticket_open_with_stats.json")), changes)
    assert [(c.request.method, sent(c)) for c in rsps.calls] == [("PUT", body)]


def test_apply_keeps_the_updated_ticket_for_later_writes(rsps, fd):
    rsps.put(f"{API}/tickets/1001", json=fixture("ticket_updated.json"))
    target = remote(fixture("ticket_open_with_stats.json"))
    fd.apply(target, TicketChanges(priority="normal"))
    assert (target.stamp, target.raw["priority"]) == ("2026-11-21T09:05:00Z", 2)
    assert "stats" in target.raw  # what the PUT does not return is kept


def test_tags_already_present_send_nothing(rsps, fd):
    fd.apply(remote(fixture("ticket_open_with_stats.json")), TicketChanges(add_tags=("vip",)))
    assert len(rsps.calls) == 0


def test_empty_changes_send_nothing(rsps, fd):
    fd.apply(remote(fixture("ticket_open_with_stats.json")), TicketChanges())
    assert len(rsps.calls) == 0


def test_note_alone_is_one_private_note(rsps, fd):
    rsps.post(f"{API}/tickets/1001/notes", json=fixture("note_created.json"), status=201)
    fd.apply(remote(fixture("ticket_open_with_stats.json")),
             TicketChanges(note="Priority lowered <urgent> to normal\nsee rule"))
    assert [(c.request.method, c.request.url, sent(c)) for c in rsps.calls] == [
        ("POST", f"{API}/tickets/1001/notes",
         {"body": "Priority lowered &lt;urgent&gt; to normal<br>see rule<br><br>— Deskpilot",
          "private": True})]


def test_reply_alone_is_one_reply(rsps, fd):
    rsps.post(f"{API}/tickets/1001/reply", json=fixture("reply_created.json"), status=201)
    fd.apply(remote(fixture("ticket_open_with_stats.json")), TicketChanges(reply="We are on it."))
    assert [(c.request.url, sent(c)) for c in rsps.calls] == [
        (f"{API}/tickets/1001/reply", {"body": "We are on it.<br><br>— Deskpilot"})]


def test_everything_goes_put_then_note_then_reply(rsps, fd):
    rsps.put(f"{API}/tickets/1001", json=fixture("ticket_updated.json"))
    rsps.post(f"{API}/tickets/1001/notes", json=fixture("note_created.json"), status=201)
    rsps.post(f"{API}/tickets/1001/reply", json=fixture("reply_created.json"), status=201)
    fd.apply(remote(fixture("ticket_open_with_stats.json")),
             TicketChanges(status="solved", note="n", reply="r"))
    assert [(c.request.method, c.request.url.rsplit("/", 1)[-1]) for c in rsps.calls] == [
        ("PUT", "1001"), ("POST", "notes"), ("POST", "reply")]


@pytest.mark.parametrize("changes, message", [
    (TicketChanges(group="Nowhere"), r"group 'Nowhere'.*helpdesk: freshdesk: groups:"),
    (TicketChanges(fields={"colour": "red"}), r"colour.*helpdesk: freshdesk: fields:"),
    (TicketChanges(status="new"), r"status 'new'.*helpdesk: freshdesk: statuses:"),
    (TicketChanges(priority="P1"), r"unknown priority 'P1'"),
])
def test_unmappable_changes_fail_before_any_call(rsps, fd, changes, message):
    with pytest.raises(ConnectorError, match=message):
        fd.apply(remote(fixture("ticket_open_with_stats.json")), changes)
    assert len(rsps.calls) == 0


# -- errors, retries, rate limits ------------------------------------------------

def test_429_honours_retry_after_then_succeeds(rsps, fd, sleeps):
    rsps.get(f"{API}/jobs/j1", status=429, headers={"Retry-After": "7"},
             json={"message": "You have exceeded the limit of requests per minute."})
    rsps.get(f"{API}/jobs/j1", json={"id": "j1", "status": "completed"})
    assert fd.job_status("j1")["status"] == "completed"
    assert sleeps == [7.0]
    assert len(rsps.calls) == 2


def test_429_every_time_raises_rate_limited(rsps, fd, sleeps):
    rsps.get(f"{API}/jobs/j1", status=429, headers={"Retry-After": "30"})
    with pytest.raises(RateLimitedError) as caught:
        fd.job_status("j1")
    assert caught.value.retry_after == 30.0
    assert len(rsps.calls) == 4
    assert sleeps == [30.0, 30.0, 30.0]


def test_5xx_backs_off_then_succeeds(rsps, fd, sleeps):
    rsps.get(f"{API}/jobs/j1", status=503)
    rsps.get(f"{API}/jobs/j1", status=502)
    rsps.get(f"{API}/jobs/j1", json={"id": "j1"})
    assert fd.job_status("j1") == {"id": "j1"}
    assert sleeps == [1.0, 2.0]


def test_5xx_every_time_is_transient(rsps, fd, sleeps):
    rsps.get(f"{API}/jobs/j1", status=500, json={"description": "Internal error"})
    with pytest.raises(TransientError, match="500.*Internal error"):
        fd.job_status("j1")
    assert len(rsps.calls) == 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_timeout_is_retried_then_wrapped(rsps, fd, sleeps):
    rsps.get(f"{API}/jobs/j1", body=requests.ReadTimeout("slow"))
    with pytest.raises(TransientError) as caught:
        fd.job_status("j1")
    assert isinstance(caught.value.__cause__, requests.ReadTimeout)
    assert len(rsps.calls) == 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_timeout_then_success(rsps, fd, sleeps):
    rsps.get(f"{API}/jobs/j1", body=requests.ConnectionError("reset"))
    rsps.get(f"{API}/jobs/j1", json={"id": "j1"})
    assert fd.job_status("j1") == {"id": "j1"}
    assert sleeps == [1.0]


def test_reply_is_not_retried_after_a_read_timeout(rsps, fd, sleeps):
    rsps.post(f"{API}/tickets/1001/reply", body=requests.ReadTimeout("slow"))
    with pytest.raises(TransientError):
        fd.apply(remote(fixture("ticket_open_with_stats.json")), TicketChanges(reply="hi"))
    assert len(rsps.calls) == 1
    assert sleeps == []


def test_note_is_retried_after_a_connect_timeout(rsps, fd, sleeps):
    rsps.post(f"{API}/tickets/1001/notes", body=requests.ConnectTimeout("no route"))
    rsps.post(f"{API}/tickets/1001/notes", json=fixture("note_created.json"), status=201)
    fd.apply(remote(fixture("ticket_open_with_stats.json")), TicketChanges(note="hi"))
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("status, error", [(404, NotFoundError), (409, ConflictError)])
def test_404_and_409(rsps, fd, status, error):
    rsps.get(f"{API}/tickets/999", status=status)
    with pytest.raises(error):
        fd.fetch_ticket("999")
    assert len(rsps.calls) == 1


def test_other_4xx_carries_freshdesks_description(rsps, fd):
    rsps.put(f"{API}/tickets/1001", status=400, json=fixture("error_validation.json"))
    with pytest.raises(ConnectorError, match=r"\(HTTP 400\): Validation failed; priority: It should be"):
        fd.apply(remote(fixture("ticket_open_with_stats.json")), TicketChanges(priority="low"))
    assert len(rsps.calls) == 1


def test_401_names_the_settings(rsps, fd):
    rsps.get(f"{API}/jobs/j1", status=401, json=fixture("error_invalid_credentials.json"))
    with pytest.raises(ConnectorError, match="FRESHDESK_API_KEY"):
        fd.job_status("j1")


def test_rate_limit_remaining_is_exposed_and_low_budget_slows_down(rsps, sleeps):
    fd = FreshdeskConnector("acme.freshdesk.com", "k", sleep=sleeps, rate_limit_floor=5)
    rsps.get(f"{API}/jobs/j1", json={}, headers={"X-RateLimit-Remaining": "50"})
    rsps.get(f"{API}/jobs/j2", json={}, headers={"X-RateLimit-Remaining": "2"})
    rsps.get(f"{API}/jobs/j3", json={}, headers={"X-RateLimit-Remaining": "1"})
    fd.job_status("j1")
    assert fd.rate_limit_remaining == 50
    fd.job_status("j2")
    assert sleeps == []
    fd.job_status("j3")  # 2 left before this call: spread over the minute
    assert sleeps == [20.0]
    assert fd.rate_limit_remaining == 1


# -- bulk and sweeps -----------------------------------------------------------

def test_bulk_update_posts_one_job(rsps, fd):
    rsps.post(f"{API}/tickets/bulk_update", status=202, json=fixture("bulk_update_accepted.json"))
    rsps.get(f"{API}/jobs/e9134c5a3a8e3c6f2b4d6c0f0b8e3d1d", json=fixture("job_completed.json"))

    job = fd.bulk_update(["1001", "1002"], status="closed", group="Level 2")

    assert job == "e9134c5a3a8e3c6f2b4d6c0f0b8e3d1d"
    assert sent(rsps.calls[0]) == {"bulk_action": {
        "ids": [1001, 1002], "properties": {"status": 5, "group_id": 5000654321}}}
    assert fd.job_status(job)["status"] == "completed"


def test_bulk_update_dry_run_sends_nothing(rsps, fd):
    assert fd.bulk_update(["1001"], priority="low", dry_run=True) is None
    assert len(rsps.calls) == 0


def list_callback(tickets, max_pages=300):
    """GET /tickets as Freshdesk serves it: updated_since, ascending, 100 a page, 300 pages."""
    stamps = [t["updated_at"] for t in tickets]  # already in ascending order

    def callback(request):
        args = {key: values[0] for key, values in parse_qs(urlsplit(request.url).query).items()}
        page, per_page = int(args["page"]), int(args["per_page"])
        if page > max_pages:
            return 400, {}, json.dumps(fixture("error_validation.json"))
        since = args["updated_since"]
        chosen = tickets[bisect_left(stamps, since):]
        chunk = chosen[(page - 1) * per_page: page * per_page]
        headers = {}
        if len(chosen) > page * per_page and page < max_pages:
            headers["Link"] = f'<{API}/tickets?page={page + 1}&per_page={per_page}>; rel="next"'
        return 200, headers, json.dumps(chunk)
    return callback


def make_tickets(count, start=datetime(2026, 1, 1, tzinfo=UTC), per_second=3):
    return [{"id": i + 1, "updated_at": (start + timedelta(seconds=i // per_second))
             .strftime("%Y-%m-%dT%H:%M:%SZ")} for i in range(count)]


def test_changed_since_pages_until_a_short_page(rsps, fd):
    tickets = make_tickets(250)
    rsps.add_callback("GET", f"{API}/tickets", callback=list_callback(tickets))
    ids = fd.changed_since(None, datetime(2026, 1, 1, tzinfo=UTC)).ticket_ids
    assert ids == [str(t["id"]) for t in tickets]
    assert [query(c)["page"] for c in rsps.calls] == ["1", "2", "3"]
    assert query(rsps.calls[0]) == {"updated_since": "2026-01-01T00:00:00Z", "order_by": "updated_at",
                                    "order_type": "asc", "per_page": "100", "page": "1"}


def test_changed_since_trusts_a_missing_link_before_page_300(rsps, fd):
    tickets = make_tickets(100)
    rsps.add_callback("GET", f"{API}/tickets", callback=list_callback(tickets))
    assert len(fd.changed_since(None, datetime(2026, 1, 1, tzinfo=UTC)).ticket_ids) == 100
    assert len(rsps.calls) == 1


def test_changed_since_windows_past_page_300(rsps, fd):
    tickets = make_tickets(30_150)
    rsps.add_callback("GET", f"{API}/tickets", callback=list_callback(tickets))

    ids = fd.changed_since(None, datetime(2026, 1, 1, tzinfo=UTC)).ticket_ids

    assert ids == [str(t["id"]) for t in tickets]  # each once, in order
    pages = [int(query(c)["page"]) for c in rsps.calls]
    assert pages == [*range(1, 301), 1, 2]
    assert query(rsps.calls[300])["updated_since"] == tickets[29_999]["updated_at"]


def test_changed_since_refuses_a_window_it_cannot_advance(rsps, fd):
    tickets = make_tickets(30_001, per_second=40_000)  # all share one updated_at
    rsps.add_callback("GET", f"{API}/tickets", callback=list_callback(tickets))
    with pytest.raises(ConnectorError, match="share updated_at"):
        fd.changed_since(None, datetime(2026, 1, 1, tzinfo=UTC))


def test_changed_since_refuses_naive_datetimes(fd):
    with pytest.raises(ValueError, match="naive"):
        fd.changed_since(None, datetime(2026, 1, 1))


# -- configuration -------------------------------------------------------------

def settings_for(**env):
    from config import load_settings

    base = {"HELPDESK": "freshdesk", "FRESHDESK_DOMAIN": "acme.freshdesk.com", "FRESHDESK_API_KEY": "k",
            "FRESHDESK_WEBHOOK_SECRET": "s"}
    return load_settings({**base, **env}, env_file=None)


def test_the_registry_builds_from_settings_and_the_rules_mapping():
    fd = connectors.build(settings_for(), HelpdeskMapping(
        fields={"plan": "cf_plan"}, groups={"Level 2": 12}, statuses={6: "on_hold"}))
    assert isinstance(fd, FreshdeskConnector) and fd.base_url == API
    assert (fd.field_names, fd.group_ids, fd.status_map) == (
        {"plan": "cf_plan"}, {"Level 2": 12}, {6: "on_hold"})


@pytest.mark.parametrize("kwargs, message", [
    ({"domain": "", "api_key": "k"}, "FRESHDESK_DOMAIN"),
    ({"domain": "acme.freshdesk.com", "api_key": ""}, "FRESHDESK_API_KEY"),
    ({"domain": "https://acme.freshdesk.com", "api_key": "k"}, "host name"),
    ({"domain": "a.freshdesk.com", "api_key": "k", "status_map": {6: "waiting"}}, "'waiting'"),
    ({"domain": "a.freshdesk.com", "api_key": "k", "status_map": {3: "on_hold"}}, "built-in"),
])
def test_configuration_errors_name_what_to_fix(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        FreshdeskConnector(**kwargs)


def test_a_non_numeric_group_id_in_the_rules_names_the_section():
    with pytest.raises(ConfigurationError, match="helpdesk: freshdesk: groups:"):
        connectors.build(settings_for(), HelpdeskMapping(groups={"L2": "twelve"}))
