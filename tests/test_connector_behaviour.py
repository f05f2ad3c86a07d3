"""The same behaviour asked of both connectors, on recorded vendor payloads (tests/fixtures/*_api).

Each vendor is one `Vendor` subclass that knows its endpoints and fixtures;
the tests in `Behaviour` run over every vendor (as python-holidays runs its
common tests over every country). Vendor-only behaviour follows below them.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import responses

from connectors.base import (
    ConfigurationError,
    NotFoundError,
    RemoteTicket,
    TicketChanges,
)
from connectors.freshdesk import FreshdeskConnector
from connectors.zendesk import ZendeskConnector
from engine.conditions import Matcher
from engine.evaluate import evaluate
from engine.rulefile import load_rules
from engine.rules import Condition
from engine.ticket import Event, Ticket
from jobs.runtime import config_error
from jobs.worker import CONFIG_RETRY_SECONDS, Worker

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

RULES_YAML = """\
version: 1
reclassify:
  - id: high-is-urgent
    when: {priority: high}
    set: urgent
    explain: high counts as urgent here
  - id: urgent-is-high
    when: {priority: urgent}
    set: high
    explain: urgent is kept for outages
"""


def load(folder: str, name: str) -> Any:
    return json.loads((FIXTURES / folder / name).read_text())


class Vendor:
    """How one helpdesk's recorded API answers are served to its connector."""

    name: str
    api: str
    ticket_id: str

    def connector(self) -> Any:
        raise NotImplementedError

    def serve_ticket(self, rsps: responses.RequestsMock) -> None:
        raise NotImplementedError

    def serve_metadata(self, rsps: responses.RequestsMock, status: int = 200) -> None:
        raise NotImplementedError

    def serve_refused_update(self, rsps: responses.RequestsMock) -> str:
        """Register the vendor's validation error for a ticket update; returns its words."""
        raise NotImplementedError

    def ticket_url(self) -> str:
        raise NotImplementedError


class Zendesk(Vendor):
    name, api, ticket_id = "zendesk", "https://acme.zendesk.com/api/v2", "35436"

    def connector(self) -> ZendeskConnector:
        return ZendeskConnector("acme", "bot@acme.test", "token", field_ids={"seats": 27642},
                                group_ids={"support": 98738}, sleep=lambda s: None)

    def ticket_url(self) -> str:
        return f"{self.api}/tickets/35436.json"

    def serve_ticket(self, rsps, ticket: str = "ticket_35436.json") -> None:
        rsps.get(self.ticket_url(), json=load("zendesk_api", ticket))
        rsps.get(f"{self.api}/tickets/35436/audits.json", json=load("zendesk_api", "audits_35436.json"))

    def serve_metadata(self, rsps, status: int = 200) -> None:
        body = load("zendesk_api", "ticket_fields.json" if status == 200 else "record_not_found.json")
        rsps.get(f"{self.api}/ticket_fields.json", json=body, status=status)
        rsps.get(f"{self.api}/custom_statuses.json", json=load("zendesk_api", "custom_statuses.json"))

    def serve_refused_update(self, rsps) -> str:
        rsps.put(self.ticket_url(), json=load("zendesk_api", "record_invalid.json"), status=422)
        return "Status: closed prevents ticket update"


class Freshdesk(Vendor):
    name, api, ticket_id = "freshdesk", "https://acme.freshdesk.com/api/v2", "1001"

    def connector(self) -> FreshdeskConnector:
        return FreshdeskConnector("acme.freshdesk.com", "key", field_names={"seats": "cf_seats"},
                                  group_ids={"Level 1": 5000123456}, sleep=lambda s: None)

    def ticket_url(self) -> str:
        return f"{self.api}/tickets/1001"

    def serve_ticket(self, rsps, ticket: str = "ticket_open_with_stats.json") -> None:
        rsps.get(self.ticket_url(), json=load("freshdesk_api", ticket))
        rsps.get(f"{self.api}/tickets/1001/conversations", json=load("freshdesk_api", "conversations.json"))

    def serve_metadata(self, rsps, status: int = 200) -> None:
        if status == 200:
            rsps.get(f"{self.api}/agents", json=load("freshdesk_api", "agents.json"))
            rsps.get(f"{self.api}/ticket_fields", json=load("freshdesk_api", "ticket_fields.json"))
        else:
            rsps.get(f"{self.api}/agents", json={"code": "invalid_url", "message": "not found"},
                     status=status)

    def serve_refused_update(self, rsps) -> str:
        rsps.put(self.ticket_url(), json=load("freshdesk_api", "error_validation.json"), status=400)
        return "priority: It should be one of these values"


VENDORS = [Zendesk(), Freshdesk()]


@pytest.fixture(params=VENDORS, ids=lambda vendor: vendor.name)
def vendor(request) -> Vendor:
    return request.param


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def rules(tmp_path):
    (tmp_path / "rules.yaml").write_text(RULES_YAML)
    return load_rules(tmp_path)


def enqueue(store, vendor: Vendor) -> None:
    store.enqueue(source=vendor.name, dedupe_key="e1", ticket_id=vendor.ticket_id,
                  event_type="ticket.updated", payload={}, received_at=NOW)


def writes(rsps) -> list:
    return [call for call in rsps.calls if call.request.method in ("PUT", "POST")]


class TestBehaviour:
    """Run against every connector."""

    def test_a_missing_ticket_is_not_found(self, vendor, rsps):
        rsps.get(vendor.ticket_url(), json={"error": "RecordNotFound", "description": "Not found"},
                 status=404)
        with pytest.raises(NotFoundError):
            vendor.connector().fetch_ticket(vendor.ticket_id)

    def test_a_404_on_the_account_metadata_is_a_configuration_error(self, vendor, rsps):
        vendor.serve_ticket(rsps)
        vendor.serve_metadata(rsps, status=404)
        with pytest.raises(ConfigurationError) as caught:
            vendor.connector().fetch_ticket(vendor.ticket_id)
        assert not isinstance(caught.value, NotFoundError)
        assert ("ZENDESK_SUBDOMAIN" if vendor.name == "zendesk" else "FRESHDESK_DOMAIN") in str(caught.value)

    def test_the_worker_keeps_the_ticket_and_healthz_shows_a_configuration_error(
            self, vendor, rsps, store, rules, caplog):
        vendor.serve_ticket(rsps)
        vendor.serve_metadata(rsps, status=404)
        enqueue(store, vendor)
        worker = Worker(store, vendor.connector(), lambda: rules, clock=lambda: NOW, max_attempts=1)
        with caplog.at_level(logging.ERROR, logger="jobs.worker"):
            [outcome] = worker.run_once()
        assert "404" in outcome.error
        assert store.dead_letters() == []  # never dropped, never dead-lettered
        assert "configuration error" in caplog.text
        assert "404" in config_error(store, vendor.name)["error"]
        later = datetime.fromtimestamp(NOW.timestamp() + CONFIG_RETRY_SECONDS, UTC)
        assert [claim.attempts for claim in store.claim("w", later)] == [0]  # the attempt did not count

    def test_a_refused_update_is_dead_lettered_once_with_the_vendors_words(self, vendor, rsps, store, rules):
        vendor.serve_ticket(rsps)
        vendor.serve_metadata(rsps)
        words = vendor.serve_refused_update(rsps)
        enqueue(store, vendor)
        worker = Worker(store, vendor.connector(), lambda: rules, clock=lambda: NOW, max_attempts=8)
        [outcome] = worker.run_once()
        assert words in outcome.error
        [dead] = store.dead_letters()
        assert words in dead["error"] and dead["attempts"] <= 1
        assert len([c for c in rsps.calls if c.request.method == "PUT"]) == 1  # not retried

    def test_prepare_drops_what_the_ticket_already_holds(self, vendor, rsps):
        vendor.serve_metadata(rsps)
        connector = vendor.connector()
        ticket = Ticket(id=vendor.ticket_id, status="open", created_at=0, tags=frozenset({"vip"}),
                        fields={"seats": 25})
        remote = RemoteTicket(ticket=ticket, stamp="2024-03-05T14:20:00Z", raw={"tags": ["vip"]})
        prepared = connector.prepare(remote, TicketChanges(add_tags=("vip",), fields={"seats": "25"}))
        assert prepared.is_empty()
        prepared = connector.prepare(remote, TicketChanges(add_tags=("vip", "new"), fields={"seats": "26"}))
        assert prepared.add_tags == ("new",) and prepared.fields == {"seats": 26}


# -- Zendesk only ----------------------------------------------------------------------------


def test_a_closed_zendesk_ticket_is_never_written_and_the_decision_is_recorded(rsps, store, rules, caplog):
    zendesk = Zendesk()
    zendesk.serve_ticket(rsps, "ticket_35436_closed.json")
    zendesk.serve_metadata(rsps)
    enqueue(store, zendesk)
    worker = Worker(store, zendesk.connector(), lambda: rules, clock=lambda: NOW)
    with caplog.at_level(logging.INFO, logger="jobs.worker"):
        [outcome] = worker.run_once()
    assert writes(rsps) == []
    assert outcome.error is None and not outcome.wrote and "closed" in outcome.read_only
    assert {a.rule for a in outcome.decision.actions} == {"high-is-urgent"}
    snapshot = store.get_snapshot("zendesk", "35436")
    assert snapshot["decision"]["actions"] and snapshot["next_check"] is None
    assert "not written, the ticket is closed in Zendesk" in caplog.text


def test_zendesk_authors_come_from_the_users_roles_and_the_bot_from_its_signature(rsps):
    zendesk = Zendesk()
    rsps.get(zendesk.ticket_url(), json=load("zendesk_api", "ticket_35436.json"))
    rsps.get(f"{zendesk.api}/tickets/35436/audits.json", json=load("zendesk_api", "audits_authors.json"))
    zendesk.serve_metadata(rsps)
    events = zendesk.connector().fetch_ticket("35436").ticket.events
    assert [(e.author, e.bot) for e in events if e.type == "comment"] == [
        ("customer", False),  # end-user
        ("system", False),    # a trigger's comment, author -1
        ("agent", False),     # an admin
        ("unknown", False),   # a deleted user (active: false)
        ("unknown", False),   # a user missing from the sideload
        ("agent", False),     # the API user's account, used by a person
        ("agent", True),      # the same account, signed: the bot
    ]


def test_a_system_comment_is_no_first_response():
    from engine.clocks import History

    ticket = Ticket(id="1", status="open", created_at=0, events=(
        Event(at=0, type="comment", author="customer"),
        Event(at=5, type="comment", author="system"),
        Event(at=9, type="comment", author="unknown"),
    ))
    history = History(ticket, 100, "open", {})
    assert history.first_agent is None and history.last_public_author == "customer"


def test_zendesk_fields_are_typed_by_the_accounts_ticket_fields(rsps):
    zendesk = Zendesk()
    zendesk.serve_ticket(rsps, "ticket_35436_typed_fields.json")
    zendesk.serve_metadata(rsps)
    connector = ZendeskConnector("acme", "bot@acme.test", "token", sleep=lambda s: None, field_ids={
        "seats": 27642, "customer": 27648, "due": 27650, "plan": 27652, "products": 27654,
        "escalated": 27656, "value": 27658})
    remote = connector.fetch_ticket("35436")
    fields = remote.ticket.fields
    assert fields["seats"] == 25 and fields["escalated"] is True and fields["value"] == 1250.5
    assert fields["due"] == "2026-11-23" and fields["plan"] == "plan_professional"

    def matches(condition: dict) -> bool:
        return Matcher(Condition(fields=condition)).test(remote.ticket, None, "open") is not None

    # A dropdown matches its title or its tag, in any case; a multi-select any option.
    assert matches({"plan": ["professional"]}) and matches({"plan": ["PLAN_PROFESSIONAL"]})
    assert matches({"customer": ["VIP customer"]}) and not matches({"plan": ["starter"]})
    assert matches({"products": ["scanners"]}) and matches({"seats": [25]})
    assert matches({"escalated": [True]}) and not matches({"escalated": [False]})

    # Written in each field's own format; a value the field already holds is not written.
    prepared = connector.prepare(remote, TicketChanges(fields={
        "due": "2026-11-23T10:00:00Z", "plan": "Starter", "seats": "25", "value": "1250.50",
        "escalated": True}))
    assert prepared.fields == {"plan": "plan_starter"}
    prepared = connector.prepare(remote, TicketChanges(fields={"due": "2026-11-24T10:00:00Z"}))
    assert prepared.fields == {"due": "2026-11-24"}


def test_zendesk_reconciliation_skips_deleted_tickets(rsps):
    zendesk = Zendesk()
    page = load("zendesk_api", "incremental_tickets_with_deleted.json")
    rsps.get(f"{zendesk.api}/incremental/tickets/cursor.json", json=page)
    got = zendesk.connector().changed_since(None, NOW)
    deleted = [str(t["id"]) for t in page["tickets"] if t["status"] == "deleted"]
    assert deleted and set(got.deleted_ids) == set(deleted)
    assert not set(got.ticket_ids) & set(deleted)


def test_zendesk_check_names_a_wrong_account_url(rsps):
    zendesk = Zendesk()
    rsps.get(f"{zendesk.api}/users/me.json", json=load("zendesk_api", "record_not_found.json"), status=404)
    [problem] = zendesk.connector().check()
    assert "users/me.json" in problem and "ZENDESK_SUBDOMAIN" in problem


# -- Freshdesk only --------------------------------------------------------------------------


def test_freshdesk_authors_ignore_incoming_and_the_bot_is_the_signed_one(rsps):
    freshdesk = Freshdesk()
    rsps.get(freshdesk.ticket_url(), json=load("freshdesk_api", "ticket_open_with_stats.json"))
    rsps.get(f"{freshdesk.api}/tickets/1001/conversations",
             json=load("freshdesk_api", "conversations_authors.json"))
    freshdesk.serve_metadata(rsps)
    events = freshdesk.connector().fetch_ticket("1001").ticket.events
    assert [(e.author, e.public, e.bot) for e in events if e.type == "comment"] == [
        ("customer", True, False),   # the description
        ("agent", True, False),
        ("agent", False, False),
        ("customer", True, False),   # the requester
        ("agent", False, False),     # an API note with incoming: true is still the agent's
        ("agent", True, True),       # signed: the bot
        ("agent", True, False),      # the same agent account, unsigned: a person
        ("customer", True, False),   # a CC'd contact
    ]


def test_freshdesk_check_reports_each_unmapped_custom_status_once(rsps):
    freshdesk = Freshdesk()
    rsps.get(f"{freshdesk.api}/agents/me", json=load("freshdesk_api", "agents.json")[1])
    freshdesk.serve_metadata(rsps)
    [problem] = freshdesk.connector().check()
    assert "8 ('Awaiting Engineering')" in problem and "helpdesk: freshdesk: statuses:" in problem
    mapped = FreshdeskConnector("acme.freshdesk.com", "key", status_map={8: "on_hold"})
    assert mapped.check() == []
    assert "FRESHDESK_STATUS_MAP" not in problem


def test_freshdesk_fields_are_typed_by_the_accounts_ticket_fields(rsps):
    freshdesk = Freshdesk()
    data = dict(load("freshdesk_api", "ticket_open_with_stats.json"))
    data["custom_fields"] = {"cf_plan": "Professional", "cf_resolution_due": "2026-11-23", "cf_seats": 25,
                             "cf_escalated": True, "cf_contract_value": 1250.5, "cf_case_reason": "Bug"}
    rsps.get(freshdesk.ticket_url(), json=data)
    rsps.get(f"{freshdesk.api}/tickets/1001/conversations", json=[])
    freshdesk.serve_metadata(rsps)
    connector = FreshdeskConnector("acme.freshdesk.com", "key", sleep=lambda s: None, field_names={
        "plan": "cf_plan", "due": "cf_resolution_due", "seats": "cf_seats", "escalated": "cf_escalated"})
    remote = connector.fetch_ticket("1001")
    assert Matcher(Condition(fields={"plan": ["professional"]})).test(remote.ticket, None, "open") is not None
    prepared = connector.prepare(remote, TicketChanges(fields={
        "due": "2026-11-23T10:00:00Z", "plan": "advanced", "seats": 25, "escalated": True}))
    assert prepared.fields == {"plan": "Advanced"}



# -- custom statuses ---------------------------------------------------------------------------


def test_a_zendesk_custom_status_maps_to_its_category_unless_an_alias_names_its_label(rsps):
    zendesk = Zendesk()
    rsps.get(zendesk.ticket_url(), json=load("zendesk_api", "ticket_35436.json"))
    rsps.get(f"{zendesk.api}/tickets/35436/audits.json",
             json=load("zendesk_api", "audits_35436_custom_status.json"))
    zendesk.serve_metadata(rsps)
    plain = zendesk.connector().fetch_ticket("35436").ticket
    assert plain.status == "on_hold"  # "Waiting on vendor" is a hold-category status
    assert [e.status for e in plain.events if e.type == "status"] == ["new", "open", "on_hold"]

    aliased = ZendeskConnector("acme", "bot@acme.test", "token", sleep=lambda s: None,
                               status_aliases={"Waiting on vendor": "pending"})
    ticket = aliased.fetch_ticket("35436").ticket
    assert ticket.status == "Waiting on vendor"  # the engine maps the label through status_aliases
    assert [e.status for e in ticket.events if e.type == "status"] == ["new", "open", "Waiting on vendor"]


def test_a_freshdesk_custom_status_label_named_by_status_aliases_needs_no_id(rsps):
    freshdesk = Freshdesk()
    data = dict(load("freshdesk_api", "ticket_custom_status_with_stats.json"), status=8)
    rsps.get(f"{freshdesk.api}/tickets/{data['id']}", json=data)
    rsps.get(f"{freshdesk.api}/tickets/{data['id']}/conversations", json=[])
    freshdesk.serve_metadata(rsps)
    connector = FreshdeskConnector("acme.freshdesk.com", "key", sleep=lambda s: None,
                                   status_aliases={"Awaiting Engineering": "on_hold"})
    assert connector.fetch_ticket(str(data["id"])).ticket.status == "Awaiting Engineering"
    rsps.get(f"{freshdesk.api}/agents/me", json=load("freshdesk_api", "agents.json")[1])
    assert connector.check() == []
    with pytest.raises(ConfigurationError, match="status 8"):
        FreshdeskConnector("acme.freshdesk.com", "key", sleep=lambda s: None).fetch_ticket(str(data["id"]))


LABEL_RULES = """
version: 1
calendars: {c: {timezone: UTC, hours: 24/7}}
policies:
  - id: waiting-on-others
    when: {status: [%LOWER%]}
    calendar: c
    targets:
      resolution: {within: 30h, pause_on: ["%UPPER%"]}
  - id: rest
    calendar: c
    targets:
      resolution: {within: 30h, pause_on: [pending]}
"""


def _zendesk_in_custom_status(rsps, custom_status_id: int, labels: frozenset[str]) -> Ticket:
    zendesk = Zendesk()
    ticket = load("zendesk_api", "ticket_35436.json")
    ticket["ticket"]["custom_status_id"] = custom_status_id
    rsps.get(zendesk.ticket_url(), json=ticket)
    rsps.get(f"{zendesk.api}/tickets/35436/audits.json",
             json=load("zendesk_api", "audits_35436_custom_status.json"))
    zendesk.serve_metadata(rsps)
    connector = ZendeskConnector("acme", "bot@acme.test", "token", status_labels=labels, sleep=lambda s: None)
    return connector.fetch_ticket("35436").ticket


def _freshdesk_in_status(rsps, status: int, labels: frozenset[str]) -> Ticket:
    freshdesk = Freshdesk()
    data = dict(load("freshdesk_api", "ticket_custom_status_with_stats.json"), status=status)
    rsps.get(f"{freshdesk.api}/tickets/{data['id']}", json=data)
    rsps.get(f"{freshdesk.api}/tickets/{data['id']}/conversations", json=[])
    freshdesk.serve_metadata(rsps)
    connector = FreshdeskConnector("acme.freshdesk.com", "key", status_map={8: "on_hold"},
                                   status_labels=labels, sleep=lambda s: None)
    return connector.fetch_ticket(str(data["id"])).ticket


# (read the ticket in its custom status, the status's id, its label, another status of one category)
CUSTOM_STATUS_CASES = {
    "zendesk": (_zendesk_in_custom_status, 1900000001, "Waiting on vendor", 1900000006),
    "freshdesk": (_freshdesk_in_status, 7, "Waiting on Third Party", 8),
}


@pytest.mark.parametrize("name", CUSTOM_STATUS_CASES)
def test_conditions_and_pause_on_name_a_custom_status_by_its_label(name, rsps, tmp_path):
    read, status_id, label, sibling = CUSTOM_STATUS_CASES[name]
    text = LABEL_RULES.replace("%LOWER%", label.lower()).replace("%UPPER%", label.upper())
    (tmp_path / "rules.yaml").write_text(text)
    rules = load_rules(tmp_path)
    now = int(NOW.timestamp())

    # As jobs/runtime.py builds it: the labels the rules name make the connector read them.
    ticket = read(rsps, status_id, rules.status_labels())
    assert (ticket.status, ticket.custom_status) == ("on_hold", label)
    decision = evaluate(ticket, rules, now)
    assert decision.policy == "waiting-on-others"
    assert decision.targets["resolution"].state == "paused"

    # Another custom status of the same category is told apart: its label is not named.
    rsps.reset()
    other = read(rsps, sibling, rules.status_labels())
    assert other.status == "on_hold" and other.custom_status not in (None, label)
    decision = evaluate(other, rules, now)
    assert decision.policy == "rest"
    assert decision.targets["resolution"].state == "breached"  # on_hold does not pause `rest`

    # Rules that name no label cost no metadata read for them.
    rsps.reset()
    assert read(rsps, status_id, frozenset()).custom_status is None
    metadata = ("custom_statuses", "ticket_fields")
    assert not [c for c in rsps.calls if any(path in c.request.url for path in metadata)]


def test_the_start_up_check_names_rule_labels_no_custom_status_has(rsps):
    zendesk, freshdesk = Zendesk(), Freshdesk()
    admin = next(u for u in load("zendesk_api", "audits_authors.json")["users"] if u["role"] == "admin")
    rsps.get(f"{zendesk.api}/users/me.json", json={"user": admin})
    zendesk.serve_metadata(rsps)
    rsps.get(f"{freshdesk.api}/agents/me", json=load("freshdesk_api", "agents.json")[1])
    freshdesk.serve_metadata(rsps)
    named = {"waiting on vendor", "waiting on third party", "awaiting legal"}
    [zd_problem] = ZendeskConnector("acme", "bot@acme.test", "token", status_labels=named,
                                    sleep=lambda s: None).check()
    [fd_problem] = FreshdeskConnector("acme.freshdesk.com", "key", status_map={8: "on_hold"},
                                      status_labels=named, sleep=lambda s: None).check()
    assert "'awaiting legal', 'waiting on third party'" in zd_problem and "custom_statuses" in zd_problem
    assert "'awaiting legal'" in fd_problem and "third party" not in fd_problem
    assert FreshdeskConnector("acme.freshdesk.com", "key", status_map={8: "on_hold"},
                              status_labels={"Waiting on Third Party"}, sleep=lambda s: None).check() == []


# -- batched reads, start-up check, /healthz -------------------------------------------------


def test_fetch_tickets_reports_each_ticket_and_stops_at_a_rate_limit(vendor, rsps):
    vendor.serve_ticket(rsps)
    vendor.serve_metadata(rsps)
    missing = vendor.ticket_url().replace(vendor.ticket_id, "4242")
    rsps.get(missing, json={"error": "RecordNotFound"}, status=404)
    limited = vendor.ticket_url().replace(vendor.ticket_id, "4343")
    rsps.get(limited, status=429, headers={"Retry-After": "7"})
    if vendor.name == "zendesk":  # one show_many for all four; those it leaves out are read one by one
        rsps.get(f"{vendor.api}/tickets/show_many.json",
                 json={"tickets": [load("zendesk_api", "ticket_35436.json")["ticket"]]})
    got = vendor.connector().fetch_tickets([vendor.ticket_id, "4242", "4343", "4444"])
    assert got[vendor.ticket_id].ticket.id == vendor.ticket_id
    assert isinstance(got["4242"], NotFoundError)
    assert got["4343"].retry_after == 7 and got["4444"] is got["4343"]  # not even tried


def test_the_start_up_check_records_a_configuration_error_that_healthz_shows(rsps, store):
    from app import create_app
    from config import load_settings
    from jobs.runtime import check_connector

    zendesk = Zendesk()
    rsps.get(f"{zendesk.api}/users/me.json", json=load("zendesk_api", "record_not_found.json"), status=404)
    [problem] = check_connector(zendesk.connector(), store, NOW)
    settings = load_settings({"HELPDESK": "zendesk", "ZENDESK_SUBDOMAIN": "acme",
                              "ZENDESK_EMAIL": "a@b.example", "ZENDESK_API_TOKEN": "t",
                              "ZENDESK_WEBHOOK_SECRET": "s"}, env_file=None)
    app = create_app({"TESTING": True, "SETTINGS": settings, "STORE": store, "CLOCK": lambda: NOW})
    body = app.test_client().get("/healthz").get_json()
    assert body["configuration_error"] is True and body["status"] == "degraded"
    assert "users/me.json" not in str(body)  # the public answer carries no error text
    with app.app_context():
        from app import health_details

        assert health_details()["configuration_error"]["error"] == problem and "users/me.json" in problem

    rsps.replace(responses.GET, f"{zendesk.api}/users/me.json",
                 json={"user": {"id": 1, "role": "admin", "email": "a@b.example"}})
    zendesk.serve_metadata(rsps)
    assert check_connector(zendesk.connector(), store, NOW) == []
    assert app.test_client().get("/healthz").get_json()["configuration_error"] is False


def test_field_types_compare_values_as_their_types():
    from connectors.fields import DATE, DECIMAL, MULTISELECT, TEXT, FieldType

    assert FieldType(DATE).same("2026-11-23", FieldType(DATE).write("2026-11-23T10:00:00Z"))
    assert not FieldType(DATE).same("2026-11-22", FieldType(DATE).write("2026-11-23T10:00:00Z"))
    assert FieldType(DECIMAL).same("1250.50", FieldType(DECIMAL).write(1250.5))
    assert FieldType(TEXT).same("2026-11-23T10:00:00+00:00", "2026-11-23T10:00:00Z")
    assert not FieldType(TEXT).same("2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z")
    options = {"product_printers": "Printers", "product_scanners": "Scanners"}
    multi = FieldType(MULTISELECT, options)
    assert multi.write(["Scanners", "printers"]) == ["product_scanners", "product_printers"]
    assert multi.same(["product_printers", "product_scanners"], ["product_scanners", "product_printers"])
