"""ZendeskConnector against stubbed HTTP (responses): exact requests, mapping, retries, errors."""

from __future__ import annotations

import base64
import importlib
import inspect
import json
import pkgutil
from datetime import UTC, datetime
from pathlib import Path

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
    ValidationError,
)
from connectors.zendesk import ZendeskConnector
from connectors.zendesk.tickets import ticket_from_zendesk
from engine.ticket import Event

FIXTURES = Path(__file__).parent / "fixtures" / "zendesk_api"
API = "https://acme.zendesk.com/api/v2"
TICKET_URL = f"{API}/tickets/35436.json"
AUDITS_URL = f"{API}/tickets/35436/audits.json"
STAMP = "2024-03-05T14:20:00Z"
FIELD_IDS = {"tier": 27642, "vip": 27648, "sla_note": 27650}
GROUP_IDS = {"support": 98738, "billing": 98739}
TOKEN = "s3cret-api-token"


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def zd(sleeps: list[float]) -> ZendeskConnector:
    return ZendeskConnector(
        "acme", "bot@acme.test", TOKEN, field_ids=FIELD_IDS, group_ids=GROUP_IDS,
        backoff_base=0.5, sleep=sleeps.append,
    )


FIELDS_URL = f"{API}/ticket_fields.json"


@pytest.fixture
def mocked():
    """Stubbed HTTP; the account's ticket_fields answer like the API reference's example."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(FIELDS_URL, json=load("ticket_fields"))
        rsps.get(f"{API}/custom_statuses.json", json=load("custom_statuses"))
        yield rsps


def api_calls(mocked) -> list:
    """The calls but the (cached) ticket_fields and custom_statuses reads."""
    metadata = ("/ticket_fields.json", "/custom_statuses.json")
    return [call for call in mocked.calls if not any(path in call.request.url for path in metadata)]


def remote() -> RemoteTicket:
    ticket = ticket_from_zendesk(load("ticket_35436")["ticket"], [], {}, field_names={}, group_names={})
    return RemoteTicket(ticket=ticket, stamp=STAMP, raw={})


AUDIT_QUERY = {"include": "users", "page[size]": "100"}

EXPECTED_EVENTS = (
    Event(at=at("2024-03-04T09:00:00"), type="comment", author="customer", public=True),
    Event(at=at("2024-03-04T09:00:00"), type="status", status="new"),
    Event(at=at("2024-03-04T10:15:00"), type="comment", author="agent", public=True),
    Event(at=at("2024-03-04T10:15:00"), type="status", status="open"),
    Event(at=at("2024-03-04T11:00:00"), type="comment", author="agent", public=False),
    # A CC'd end-user who is not the requester still counts as the customer side.
    Event(at=at("2024-03-04T16:45:00"), type="comment", author="customer", public=True),
    Event(at=at("2024-03-05T14:20:00"), type="status", status="on_hold"),
)


# -- fetch_ticket -------------------------------------------------------------------------

def test_fetch_builds_the_engine_ticket_in_exactly_two_requests(zd, mocked):
    mocked.get(TICKET_URL, json=load("ticket_35436"), match=[matchers.query_param_matcher({})])
    mocked.get(AUDITS_URL, json=load("audits_35436"), match=[matchers.query_param_matcher(AUDIT_QUERY)])

    got = zd.fetch_ticket("35436")

    assert len(mocked.calls) == 3  # the first fetch also reads the account's ticket_fields ...
    zd.fetch_ticket("35436")
    assert len(mocked.calls) == 5  # ... then they are cached: a fetch is two requests
    expected_auth = "Basic " + base64.b64encode(f"bot@acme.test/token:{TOKEN}".encode()).decode()
    assert all(call.request.headers["Authorization"] == expected_auth for call in mocked.calls)
    ticket = got.ticket
    assert (ticket.id, ticket.status, ticket.priority) == ("35436", "on_hold", "high")
    assert ticket.group == "support"
    assert ticket.subject == "Help, my printer is on fire!"
    assert ticket.description == "The fire is very colorful."
    assert ticket.created_at == at("2024-03-04T09:00:00")
    assert ticket.tags == frozenset({"enterprise", "printer"})
    assert ticket.fields == {"tier": 745, "vip": "yes", "sla_note": None}  # typed by ticket_fields
    assert ticket.events == EXPECTED_EVENTS
    assert got.stamp == STAMP
    assert got.raw == load("ticket_35436")["ticket"]


def test_fetch_follows_audit_pages_by_cursor(zd, mocked):
    page1 = load("audits_35436_page1")
    cursor = page1["meta"]["after_cursor"]
    assert cursor.endswith("=")  # must survive the query string intact
    mocked.get(TICKET_URL, json=load("ticket_35436"))
    mocked.get(AUDITS_URL, json=page1, match=[matchers.query_param_matcher(AUDIT_QUERY)])
    mocked.get(AUDITS_URL, json=load("audits_35436_page2"),
               match=[matchers.query_param_matcher(dict(AUDIT_QUERY, **{"page[after]": cursor}))])

    got = zd.fetch_ticket("35436")

    assert len(api_calls(mocked)) == 3
    assert got.ticket.events == EXPECTED_EVENTS


def test_audits_are_put_in_time_order_and_unknown_ids_map_to_none():
    data = load("audits_35436")
    ticket = dict(load("ticket_35436")["ticket"], group_id=1, custom_fields=[{"id": 1, "value": "x"}])
    users = {user["id"]: user for user in data["users"]}
    built = ticket_from_zendesk(ticket, list(reversed(data["audits"])), users,
                                field_names={v: k for k, v in FIELD_IDS.items()},
                                group_names={v: k for k, v in GROUP_IDS.items()})
    assert [event.at for event in built.events] == sorted(event.at for event in built.events)
    assert built.group is None and built.fields == {}


def test_a_comment_author_missing_from_the_sideload_is_unknown_not_an_agent():
    audit = {"created_at": "2024-03-04T09:00:00Z", "author_id": 77,
             "events": [{"type": "Comment", "author_id": 77, "public": True}]}
    built = ticket_from_zendesk(load("ticket_35436")["ticket"], [audit], {}, field_names={}, group_names={})
    assert built.events == (Event(at=at("2024-03-04T09:00:00"), type="comment", author="unknown"),)


def test_fetch_of_a_missing_ticket_raises_not_found(zd, mocked):
    mocked.get(f"{API}/tickets/999.json", json=load("record_not_found"), status=404)
    with pytest.raises(NotFoundError) as caught:
        zd.fetch_ticket("999")
    assert "tickets/999.json" in str(caught.value)
    assert len(mocked.calls) == 1


@pytest.mark.parametrize("bad", ["abc", "12/../users", "", "-1"])
def test_ticket_ids_must_be_numbers(zd, mocked, bad):
    with pytest.raises(ValueError, match="ticket ids are numbers"):
        zd.fetch_ticket(bad)
    assert not mocked.calls


# -- apply --------------------------------------------------------------------------------

SAFE = {"safe_update": True, "updated_stamp": STAMP}

APPLY_CASES = {
    "priority only": (TicketChanges(priority="urgent"), {"priority": "urgent"}),
    "tags and note": (
        TicketChanges(add_tags=("sla_breach", "vip", "sla_breach"), note="Breached at 10:00."),
        {"additional_tags": ["sla_breach", "vip"],
         "comment": {"body": "Breached at 10:00.\n\n— Deskpilot", "public": False}},
    ),
    "group": (TicketChanges(group="billing"), {"group_id": 98739}),
    "fields": (
        TicketChanges(fields={"tier": "900", "sla_note": None}),
        {"custom_fields": [{"id": 27642, "value": "900"}, {"id": 27650, "value": None}]},
    ),
    "reply": (TicketChanges(reply="We are on it."),
              {"comment": {"body": "We are on it.\n\n— Deskpilot", "public": True}}),
    "status on hold": (TicketChanges(status="on_hold"), {"status": "hold"}),
    "status solved": (TicketChanges(status="solved"), {"status": "solved"}),
}


@pytest.mark.parametrize("changes, expected", APPLY_CASES.values(), ids=APPLY_CASES.keys())
def test_apply_sends_one_safe_update_with_only_the_changes(zd, mocked, changes, expected):
    mocked.put(TICKET_URL, json=load("ticket_35436_updated"),
               match=[matchers.json_params_matcher({"ticket": dict(expected, **SAFE)}, strict_match=True)])
    target = remote()

    zd.apply(target, changes)

    assert len(mocked.calls) == 1
    assert target.stamp == "2024-03-05T15:00:00Z"
    assert target.raw == load("ticket_35436_updated")["ticket"]


def test_apply_with_nothing_to_change_sends_nothing(zd, mocked):
    zd.apply(remote(), TicketChanges())
    assert not mocked.calls


def test_reply_and_note_go_in_two_updates_chained_by_stamp(zd, mocked):
    first = {"priority": "urgent", "comment": {"body": "Technician today.\n\n— Deskpilot", "public": True},
             **SAFE}
    second = {"comment": {"body": "Breach risk.\n\n— Deskpilot", "public": False}, "safe_update": True,
              "updated_stamp": "2024-03-05T15:00:00Z"}
    mocked.put(TICKET_URL, json=load("ticket_35436_updated"),
               match=[matchers.json_params_matcher({"ticket": first}, strict_match=True)])
    mocked.put(TICKET_URL, json=load("ticket_35436_updated_again"),
               match=[matchers.json_params_matcher({"ticket": second}, strict_match=True)])
    target = remote()

    zd.apply(target, TicketChanges(priority="urgent", reply="Technician today.", note="Breach risk."))

    assert len(mocked.calls) == 2
    assert target.stamp == "2024-03-05T15:00:01Z"


@pytest.mark.parametrize("changes, named", [
    (TicketChanges(group="escalations", priority="high"), "'escalations'"),
    (TicketChanges(fields={"tier": "1", "region": "eu"}), "'region'"),
])
def test_unknown_names_are_refused_before_any_write(zd, mocked, changes, named):
    with pytest.raises(ConfigurationError, match="rule files") as caught:
        zd.apply(remote(), changes)
    assert named in str(caught.value)
    assert not mocked.calls


def test_apply_needs_a_stamp(zd, mocked):
    with pytest.raises(ConnectorError, match="fetch_ticket"):
        zd.apply(RemoteTicket(ticket=remote().ticket, stamp=None), TicketChanges(priority="low"))
    assert not mocked.calls


def test_a_stale_stamp_is_a_conflict_and_not_retried(zd, mocked, sleeps):
    mocked.put(TICKET_URL, json=load("update_conflict"), status=409)
    target = remote()
    with pytest.raises(ConflictError) as caught:
        zd.apply(target, TicketChanges(priority="low"))
    assert "Safe Update prevented the update" in str(caught.value)  # Zendesk's own words
    assert len(mocked.calls) == 1 and sleeps == []
    assert target.stamp == STAMP


def test_apply_to_a_deleted_ticket_is_not_found(zd, mocked):
    mocked.put(TICKET_URL, json=load("record_not_found"), status=404)
    with pytest.raises(NotFoundError):
        zd.apply(remote(), TicketChanges(priority="low"))


def test_a_validation_error_names_zendesks_reason(zd, mocked):
    mocked.put(TICKET_URL, json=load("record_invalid"), status=422)
    with pytest.raises(ValidationError, match="closed prevents ticket update"):
        zd.apply(remote(), TicketChanges(status="open"))


def test_bad_credentials_name_the_settings_and_hide_the_token(zd, mocked):
    mocked.get(TICKET_URL, json={"error": "Couldn't authenticate you"}, status=401)
    with pytest.raises(ConnectorError, match="ZENDESK_API_TOKEN") as caught:
        zd.fetch_ticket("35436")
    assert TOKEN not in str(caught.value)


# -- retries ------------------------------------------------------------------------------

def test_429_waits_for_retry_after_then_succeeds(zd, mocked, sleeps):
    mocked.put(TICKET_URL, status=429, headers={"Retry-After": "7"})
    mocked.put(TICKET_URL, json=load("ticket_35436_updated"))
    zd.apply(remote(), TicketChanges(priority="urgent"))
    assert sleeps == [7.0]
    assert len(mocked.calls) == 2


def test_429_until_max_attempts_raises_rate_limited(zd, mocked, sleeps):
    mocked.get(TICKET_URL, status=429, headers={"Retry-After": "30"})
    with pytest.raises(RateLimitedError) as caught:
        zd.fetch_ticket("35436")
    assert caught.value.retry_after == 30.0
    assert sleeps == [30.0, 30.0, 30.0]
    assert len(mocked.calls) == 4


def test_429_without_retry_after_backs_off(zd, mocked, sleeps):
    mocked.get(TICKET_URL, status=429)
    mocked.get(TICKET_URL, json=load("ticket_35436"))
    mocked.get(AUDITS_URL, json=load("audits_35436"))
    zd.fetch_ticket("35436")
    assert sleeps == [0.5]


def test_5xx_is_retried_with_exponential_backoff(zd, mocked, sleeps):
    mocked.get(TICKET_URL, status=503, body="Service Unavailable")
    mocked.get(TICKET_URL, status=500, json={"error": "InternalError"})
    mocked.get(TICKET_URL, json=load("ticket_35436"))
    mocked.get(AUDITS_URL, json=load("audits_35436"))
    assert zd.fetch_ticket("35436").ticket.id == "35436"
    assert sleeps == [0.5, 1.0]


def test_5xx_every_time_is_transient(zd, mocked, sleeps):
    mocked.put(TICKET_URL, status=502, body="Bad Gateway")
    with pytest.raises(TransientError, match="502"):
        zd.apply(remote(), TicketChanges(priority="low"))
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(mocked.calls) == 4


def test_timeouts_are_retried_then_transient(zd, mocked, sleeps):
    mocked.get(TICKET_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    mocked.get(TICKET_URL, body=requests.exceptions.ConnectionError("connection reset"))
    mocked.get(TICKET_URL, json=load("ticket_35436"))
    mocked.get(AUDITS_URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    with pytest.raises(TransientError, match="ConnectTimeout") as caught:
        zd.fetch_ticket("35436")
    assert isinstance(caught.value.__cause__, requests.exceptions.ConnectTimeout)
    assert sleeps == [0.5, 1.0, 0.5, 1.0, 2.0]


# -- update_many and job_status -----------------------------------------------------------

MANY_URL = f"{API}/tickets/update_many.json"


def test_update_many_refuses_more_than_100_ids(zd, mocked):
    with pytest.raises(ValueError, match="at most 100"):
        zd.update_many([str(n) for n in range(1, 102)], status="solved")
    assert not mocked.calls


def test_update_many_sends_100_ids_in_one_request(zd, mocked):
    ids = [str(n) for n in range(1, 101)]
    body = {"ticket": {"status": "hold", "additional_tags": ["bulk"],
                       "comment": {"body": "Paused for the outage.\n\n— Deskpilot", "public": False}}}
    mocked.put(MANY_URL, json=load("job_status_queued"), match=[
        matchers.query_param_matcher({"ids": ",".join(ids)}),
        matchers.json_params_matcher(body, strict_match=True),
    ])
    job = zd.update_many(ids, status="on_hold", add_tags=["bulk"], comment="Paused for the outage.",
                         public=False)
    assert job == "8b726e606741012ffc2d782bcb7848fe"
    assert len(mocked.calls) == 1


def test_update_many_with_nothing_to_do_is_refused(zd, mocked):
    with pytest.raises(ValueError, match="status, tags"):
        zd.update_many(["1"])
    with pytest.raises(ValueError, match="at least one"):
        zd.update_many([], status="open")
    assert not mocked.calls


def test_update_many_does_not_replay_after_a_read_timeout(zd, mocked, sleeps):
    # The job may already be queued: a blind retry could post the comment twice.
    mocked.put(MANY_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(TransientError):
        zd.update_many(["1", "2"], comment="Heads up")
    assert len(mocked.calls) == 1 and sleeps == []


def test_update_many_retries_a_connect_timeout(zd, mocked, sleeps):
    mocked.put(MANY_URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    mocked.put(MANY_URL, json=load("job_status_queued"))
    assert zd.update_many(["1"], status="solved") == "8b726e606741012ffc2d782bcb7848fe"
    assert sleeps == [0.5]


def test_job_status_returns_the_job_object(zd, mocked):
    job_id = "8b726e606741012ffc2d782bcb7848fe"
    mocked.get(f"{API}/job_statuses/{job_id}.json", json=load("job_status_completed"))
    job = zd.job_status(job_id)
    assert job["status"] == "completed" and job["progress"] == 3
    with pytest.raises(ValueError):
        zd.job_status("../tickets/1")


# -- changed_since ------------------------------------------------------------------------

EXPORT_URL = f"{API}/incremental/tickets/cursor.json"


def test_incremental_export_pages_by_cursor(zd, mocked):
    page1, page2 = load("incremental_tickets_page1"), load("incremental_tickets_page2")
    mocked.get(EXPORT_URL, json=page1, match=[matchers.query_param_matcher({"start_time": "1709640000"})])
    mocked.get(EXPORT_URL, json=page2,
               match=[matchers.query_param_matcher({"cursor": page1["after_cursor"]})])

    since = datetime.fromtimestamp(1709640000, UTC)
    page = zd.changed_since(None, since)
    assert (page.ticket_ids, page.cursor, page.done) == (["35436", "35437"], page1["after_cursor"], False)

    page = zd.changed_since(page.cursor, since)
    # 35438 was deleted: listed apart, never to be fetched.
    assert (page.ticket_ids, page.deleted_ids, page.cursor, page.done) == (
        [], ["35438"], page2["after_cursor"], True)
    assert len(mocked.calls) == 2


# -- construction and registry ------------------------------------------------------------

def test_api_url_points_the_calls_elsewhere(mocked):
    zd = ZendeskConnector("", "bot@acme.test", TOKEN, api_url="http://127.0.0.1:9100")
    mocked.get("http://127.0.0.1:9100/api/v2/job_statuses/abc.json", json=load("job_status_completed"))
    assert zd.job_status("abc")["status"] == "completed"


def settings_for(**env):
    from config import load_settings

    base = {"HELPDESK": "zendesk", "ZENDESK_SUBDOMAIN": "acme", "ZENDESK_EMAIL": "a@b.example",
            "ZENDESK_API_TOKEN": "t", "ZENDESK_WEBHOOK_SECRET": "s"}
    return load_settings({**base, **env}, env_file=None)


@pytest.mark.parametrize("kwargs, named", [
    ({"subdomain": "", "email": "a@b.c", "api_token": "t"}, "ZENDESK_SUBDOMAIN"),
    ({"subdomain": "acme", "email": "a@b.c", "api_token": ""}, "ZENDESK_API_TOKEN"),
    ({"subdomain": "acme", "email": "a@b.c", "api_token": "t", "api_url": "ftp://x"}, "ZENDESK_API_URL"),
])
def test_settings_errors_name_the_variable(kwargs, named):
    with pytest.raises(ConfigurationError, match=named):
        ZendeskConnector(**kwargs)


def test_the_registry_builds_from_settings_and_the_rules_mapping(mocked):
    from engine.rules import HelpdeskMapping

    zd = connectors.build(settings_for(), HelpdeskMapping(groups={"billing": 98739}, fields={"tier": 27642}))
    assert isinstance(zd, ZendeskConnector)
    mocked.put(TICKET_URL, json=load("ticket_35436_updated"), match=[matchers.json_params_matcher(
        {"ticket": {"group_id": 98739, "custom_fields": [{"id": 27642, "value": "1"}], **SAFE}})])
    zd.apply(remote(), TicketChanges(group="billing", fields={"tier": "1"}))


def test_a_non_numeric_zendesk_id_in_the_rules_names_the_section():
    from engine.rules import HelpdeskMapping

    with pytest.raises(ConfigurationError, match="helpdesk: zendesk:"):
        connectors.build(settings_for(), HelpdeskMapping(groups={"support": "x"}))


def _connector_classes(module) -> list[type]:
    return [
        cls for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__ and isinstance(getattr(cls, "name", None), str)
        and callable(getattr(cls, "fetch_ticket", None)) and callable(getattr(cls, "apply", None))
    ]


def test_every_connector_module_is_registered():
    found = []
    for info in pkgutil.walk_packages(connectors.__path__, prefix="connectors."):
        module = importlib.import_module(info.name)
        for cls in _connector_classes(module):
            found.append(cls.name)
            factory = connectors.CONNECTORS.get(cls.name)
            assert factory is not None, f"{info.name} defines {cls.__name__} " \
                                        f"but CONNECTORS in connectors/__init__.py has no {cls.name!r}"
            assert factory.__module__ == module.__name__, f"CONNECTORS[{cls.name!r}] is not from {info.name}"
    assert "zendesk" in found
