"""Zendesk reads that resume from the stored snapshot: audits after the newest one seen, tickets by
show_many, no audits at all for a ticket unchanged since its snapshot; and the same engine ticket
(and decision) as a read from the first audit, whatever the split."""

from __future__ import annotations

import base64
import json
import re
import struct
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from connectors.base import NotFoundError, RateLimitedError, RemoteTicket, TransientError
from connectors.zendesk import ZendeskConnector
from engine.evaluate import evaluate
from engine.rulefile import load_rules
from engine.ticket import to_epoch
from jobs.worker import ticket_json

FIXTURES = Path(__file__).parent / "fixtures" / "zendesk_api"
API = "https://acme.zendesk.com/api/v2"
AUDITS_URL = f"{API}/tickets/35436/audits.json"
TICKET_URL = f"{API}/tickets/35436.json"
SHOW_MANY_URL = f"{API}/tickets/show_many.json"
RULES = load_rules(Path(__file__).resolve().parent.parent / "rules" / "deskpilot.yaml")
NOW = to_epoch(datetime(2024, 3, 6, 12, 0, tzinfo=UTC))
RECORDED = ["audits_35436.json", "audits_35436_custom_status.json", "audits_authors.json"]


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def connector(**options) -> ZendeskConnector:
    return ZendeskConnector("acme", "bot@acme.test", "token", sleep=lambda s: None, backoff_base=0, **options)


def cursor(order: str, audit_id: int) -> str:
    """An id-keyed cursor in Zendesk's shape (base64 of {"o": order, "v": ...})."""
    value = base64.b64encode(struct.pack("<q", audit_id)).decode()
    return base64.b64encode(json.dumps({"o": order, "v": value}).encode()).decode()


def cursor_id(text: str) -> int:
    return struct.unpack("<q", base64.b64decode(json.loads(base64.b64decode(text))["v"]))[0]


class Recorded:
    """A recorded ticket and its audits behind `responses`: the first `visible` audits exist so
    far; the list answers page[after] by audit id, pages of `size`, users of each page sideloaded."""

    def __init__(self, rsps, audits_file: str, size: int = 100) -> None:
        recorded = load(audits_file)
        self.audits, self.size = recorded["audits"], size
        self.users = {user["id"]: user for user in recorded["users"]}
        self.visible = len(self.audits)
        self.ticket = load("ticket_35436.json")["ticket"]
        self.pages: list[dict] = []  # the query of every audits call
        rsps.add_callback(responses.GET, AUDITS_URL, callback=self._audits)
        rsps.add_callback(responses.GET, TICKET_URL, callback=self._ticket)

    def updated_at(self) -> str:
        return self.audits[self.visible - 1]["created_at"]

    def _ticket(self, request):
        return 200, {}, json.dumps({"ticket": dict(self.ticket, updated_at=self.updated_at())})

    def _audits(self, request):
        query = {key: values[0] for key, values in parse_qs(urlsplit(request.url).query).items()}
        self.pages.append(query)
        audits = self.audits[:self.visible]
        if query.get("page[after]"):
            newest = cursor_id(query["page[after]"])
            audits = [a for a in audits if a["id"] > newest]
        page = audits[:self.size]
        authors = {a["author_id"] for a in page} | {e.get("author_id") for a in page for e in a["events"]}
        body = {"audits": page, "users": [u for uid, u in self.users.items() if uid in authors],
                "meta": {"has_more": len(audits) > len(page),
                         "after_cursor": cursor("id", page[-1]["id"]) if page else None,
                         "before_cursor": cursor("-id", page[0]["id"]) if page else None}}
        return 200, {}, json.dumps(body)


def snapshot(remote: RemoteTicket) -> dict:
    """What the worker stores of a read (the snapshot ticket a next read resumes from), via JSON."""
    return json.loads(json.dumps(ticket_json(remote.ticket, remote.stamp, (), remote.resume)))


# -- replaying the recorded audits -------------------------------------------------------------

@pytest.mark.parametrize("audits_file", RECORDED)
@pytest.mark.parametrize("size", [100, 1], ids=["one-page", "page-per-audit"])
def test_a_read_resumed_at_every_audit_boundary_gives_the_ticket_of_a_full_read(audits_file, size):
    with responses.RequestsMock() as rsps:
        served = Recorded(rsps, audits_file, size)
        full = connector().fetch_ticket("35436")
        assert served.pages[0].get("page[after]") is None
        for seen in range(1, len(served.audits) + 1):
            served.visible = seen
            stored = snapshot(connector().fetch_ticket("35436"))
            assert stored["resume"]["audit"] == served.audits[seen - 1]["id"]
            served.visible = len(served.audits)
            served.pages.clear()
            resumed = connector().fetch_ticket("35436", known=stored)
            assert resumed.ticket == full.ticket, f"split after audit {seen}"
            assert resumed.stamp == full.stamp
            assert (evaluate(resumed.ticket, RULES, NOW).to_dict()
                    == evaluate(full.ticket, RULES, NOW).to_dict())
            if seen < len(served.audits):  # only what came after the stored audit is read
                assert served.pages[0]["page[after]"] == stored["resume"]["after"]
                assert len(served.pages) == -(-(len(served.audits) - seen) // size)
            else:  # the ticket is as stored: no audits call at all
                assert served.pages == []
            # The resumed read's own marker points at the newest audit, like the full read's.
            assert resumed.resume == full.resume


def test_resumed_reads_chain_audit_by_audit():
    with responses.RequestsMock() as rsps:
        served = Recorded(rsps, "audits_authors.json")
        served.visible = 1
        stored = snapshot(connector().fetch_ticket("35436"))
        for seen in range(2, len(served.audits) + 1):
            served.visible = seen
            served.pages.clear()
            remote = connector().fetch_ticket("35436", known=stored)
            assert [p["page[after]"] for p in served.pages] == [stored["resume"]["after"]]
            stored = snapshot(remote)
        served.pages.clear()
        assert connector().fetch_ticket("35436").ticket == remote.ticket
        assert stored["resume"]["events"] == len(stored["events"])


def test_events_the_bot_added_to_the_snapshot_give_way_to_the_audits_that_recorded_them():
    """The worker stores the ticket after its write, the bot's comment made up at its own
    instant; the next read rebuilds the timeline from the audits after the one it read."""
    with responses.RequestsMock() as rsps:
        served = Recorded(rsps, "audits_35436.json")
        full = connector().fetch_ticket("35436")
        served.visible = 3
        stored = snapshot(connector().fetch_ticket("35436"))
        stored["events"].append([NOW, "comment", "agent", True, None, True])  # not in any audit
        served.visible = 5
        assert connector().fetch_ticket("35436", known=stored).ticket == full.ticket


# -- when the stored marker cannot be used -------------------------------------------------------

def _stored_at(rsps, seen: int, audits_file: str = "audits_35436.json"
               ) -> tuple[Recorded, dict, RemoteTicket]:
    served = Recorded(rsps, audits_file)
    full = connector().fetch_ticket("35436")
    served.visible = seen
    stored = snapshot(connector().fetch_ticket("35436"))
    served.visible = len(served.audits)
    served.pages.clear()
    return served, stored, full


@pytest.mark.parametrize("spoil", [
    lambda s: s.pop("resume"),
    lambda s: s["resume"].update(events=len(s["events"]) + 1),
    lambda s: s["resume"].update(after=""),
    lambda s: s.update(id="99"),
], ids=["no-marker", "more-events-than-stored", "no-cursor", "another-ticket"])
def test_an_unusable_marker_falls_back_to_reading_every_audit(spoil):
    with responses.RequestsMock() as rsps:
        served, stored, full = _stored_at(rsps, 2)
        spoil(stored)
        assert connector().fetch_ticket("35436", known=stored).ticket == full.ticket
        assert [p.get("page[after]") for p in served.pages] == [None]


def test_a_cursor_zendesk_refuses_falls_back_to_reading_every_audit():
    with responses.RequestsMock() as rsps:
        rsps.get(TICKET_URL, json=load("ticket_35436.json"))
        rsps.get(AUDITS_URL, json=load("audits_35436.json"))
        stored = snapshot(connector().fetch_ticket("35436"))
    with responses.RequestsMock() as rsps:
        rsps.get(TICKET_URL, json={"ticket": dict(load("ticket_35436.json")["ticket"],
                                                  updated_at="2024-03-06T08:05:00Z")})
        rsps.get(AUDITS_URL, status=400, json={"error": "InvalidPaginationParameter"},
                 match=[responses.matchers.query_param_matcher(
                     {"include": "users", "page[size]": "100", "page[after]": stored["resume"]["after"]})])
        rsps.get(AUDITS_URL, json=load("audits_35436.json"),
                 match=[responses.matchers.query_param_matcher({"include": "users", "page[size]": "100"})])
        remote = connector().fetch_ticket("35436", known=stored)
        assert len(remote.ticket.events) == 7 and remote.resume["audit"] == 7005


def test_a_comment_made_private_since_the_snapshot_is_read_from_the_first_audit():
    made_private = load("audits_35436_made_private.json")
    with responses.RequestsMock() as rsps:
        rsps.get(TICKET_URL, json=load("ticket_35436.json"))
        rsps.get(AUDITS_URL, json=load("audits_35436.json"))
        stored = snapshot(connector().fetch_ticket("35436"))
    # Comment 8013 (audit 7004) is now private: the full list says so, the stored rows do not.
    everything = load("audits_35436.json")
    everything["audits"][3]["events"][0]["public"] = False
    everything["audits"].extend(made_private["audits"])
    with responses.RequestsMock() as rsps:
        rsps.get(TICKET_URL, json={"ticket": dict(load("ticket_35436.json")["ticket"],
                                                  updated_at="2024-03-06T08:05:00Z")})
        after = responses.matchers.query_param_matcher(
            {"include": "users", "page[size]": "100", "page[after]": stored["resume"]["after"]})
        rsps.get(AUDITS_URL, json=made_private, match=[after])
        rsps.get(AUDITS_URL, json=everything,
                 match=[responses.matchers.query_param_matcher({"include": "users", "page[size]": "100"})])
        remote = connector().fetch_ticket("35436", known=stored)
        assert len(rsps.calls) == 3  # ticket, audits after the marker, then every audit
    comments = [e for e in remote.ticket.events if e.type == "comment"]
    assert [e.public for e in comments] == [True, True, False, False]


def test_audits_that_do_not_follow_the_marker_are_not_trusted():
    with responses.RequestsMock() as rsps:
        served, stored, full = _stored_at(rsps, 3)
        stored["resume"]["audit"] = 7999  # newer than anything Zendesk lists after the cursor
        assert connector().fetch_ticket("35436", known=stored).ticket == full.ticket
        assert [p.get("page[after]") for p in served.pages] == [stored["resume"]["after"], None]


def test_named_custom_statuses_are_always_read_in_full():
    statuses = {"custom_statuses": load("custom_statuses.json")["custom_statuses"]}
    with responses.RequestsMock() as rsps:
        rsps.get(f"{API}/custom_statuses.json", json=statuses)
        served = Recorded(rsps, "audits_35436_custom_status.json")
        served.ticket = dict(served.ticket, custom_status_id=load("audits_35436_custom_status.json")[
            "audits"][-1]["events"][-1]["value"])
        aliased = connector(status_aliases={"Waiting on vendor": "pending"})
        remote = aliased.fetch_ticket("35436")
        assert remote.resume is None  # status labels are not in the stored rows
        served.pages.clear()
        known = snapshot(remote)
        assert aliased.fetch_ticket("35436", known=known).ticket == remote.ticket
        assert [p.get("page[after]") for p in served.pages] == [None]


# -- the stored ticket when nothing changed ------------------------------------------------------

def test_an_unchanged_ticket_is_decided_on_its_stored_timeline_without_an_audits_call():
    with responses.RequestsMock() as rsps:
        rsps.get(TICKET_URL, json=load("ticket_35436.json"))
        rsps.get(AUDITS_URL, json=load("audits_35436.json"))
        first = connector().fetch_ticket("35436")
        stored = snapshot(first)
        calls = len(rsps.calls)
        again = connector().fetch_ticket("35436", known=stored)
        assert [c.request.url for c in rsps.calls[calls:]] == [TICKET_URL]
        # A snapshot without a marker (stored before markers, or with custom status labels) is
        # not taken as it is: its audits are read.
        calls = len(rsps.calls)
        unmarked = connector().fetch_ticket("35436", known={k: v for k, v in stored.items() if k != "resume"})
        assert [urlsplit(c.request.url).path for c in rsps.calls[calls:]] == [
            "/api/v2/tickets/35436.json", "/api/v2/tickets/35436/audits.json"]
    assert again.ticket == first.ticket and again.resume == first.resume == unmarked.resume


def test_an_empty_page_after_the_marker_keeps_its_cursor():
    with responses.RequestsMock() as rsps:
        rsps.get(TICKET_URL, json=load("ticket_35436.json"))
        rsps.get(AUDITS_URL, json=load("audits_35436.json"))
        stored = snapshot(connector().fetch_ticket("35436"))
    with responses.RequestsMock() as rsps:  # touched (updated_at moved) without a new audit listed yet
        rsps.get(TICKET_URL, json={"ticket": dict(load("ticket_35436.json")["ticket"],
                                                  updated_at="2024-03-06T08:05:00Z")})
        rsps.get(AUDITS_URL, json=load("audits_35436_after_empty.json"))
        remote = connector().fetch_ticket("35436", known=stored)
    assert remote.resume == stored["resume"] and len(remote.ticket.events) == 7


def test_the_recorded_page_after_the_marker_adds_the_requesters_reply():
    with responses.RequestsMock() as rsps:
        rsps.get(TICKET_URL, json=load("ticket_35436.json"))
        rsps.get(AUDITS_URL, json=load("audits_35436.json"))
        stored = snapshot(connector().fetch_ticket("35436"))
    after = load("audits_35436_after.json")
    with responses.RequestsMock() as rsps:
        rsps.get(TICKET_URL, json={"ticket": dict(load("ticket_35436.json")["ticket"], status="open",
                                                  updated_at="2024-03-06T08:05:00Z")})
        rsps.get(AUDITS_URL, json=after, match=[responses.matchers.query_param_matcher(
            {"include": "users", "page[size]": "100", "page[after]": load("audits_35436.json")["meta"][
                "after_cursor"]})])
        remote = connector().fetch_ticket("35436", known=stored)
    assert remote.ticket.status == "open"
    new = remote.ticket.events[7:]
    assert [(e.type, e.author, e.public, e.status) for e in new] == [
        ("comment", "customer", True, None), ("status", None, True, "open")]
    assert remote.resume == {"audit": 7007, "at": to_epoch(datetime(2024, 3, 6, 8, 5, tzinfo=UTC)),
                             "after": after["meta"]["after_cursor"], "events": 9}


# -- show_many -----------------------------------------------------------------------------------

def test_fetch_tickets_reads_the_tickets_in_one_show_many_and_audits_only_where_needed():
    many = load("tickets_show_many.json")
    with responses.RequestsMock() as rsps:
        rsps.get(TICKET_URL, json=load("ticket_35436.json"))
        rsps.get(AUDITS_URL, json=load("audits_35436.json"))
        current = snapshot(connector().fetch_ticket("35436"))
    with responses.RequestsMock() as rsps:
        rsps.get(SHOW_MANY_URL, json=many,
                 match=[responses.matchers.query_string_matcher("ids=35436,35437,35438")])
        rsps.get(f"{API}/tickets/35437/audits.json", json=load("audits_authors.json"))
        rsps.get(f"{API}/tickets/35438.json", status=404, json=load("record_not_found.json"))
        got = connector().fetch_tickets(["35436", "35437", "35438"], known={"35436": current})
        paths = [urlsplit(c.request.url).path for c in rsps.calls]
    # 35436 is as stored (same updated_at): no audits call; 35437 has no snapshot: all its
    # audits; 35438 is not in the answer: its own read says it is gone.
    assert paths == ["/api/v2/tickets/show_many.json", "/api/v2/tickets/35437/audits.json",
                     "/api/v2/tickets/35438.json"]
    assert got["35436"].ticket.events == tuple(connector_events(current))
    assert (got["35437"].ticket.subject, got["35437"].stamp) == ("Toner order", "2024-03-05T09:00:00Z")
    assert isinstance(got["35438"], NotFoundError)


def connector_events(stored: dict):
    from engine.ticket import events_from_rows
    return events_from_rows(stored["events"])


def test_fetch_tickets_asks_show_many_for_at_most_100_ids_a_call():
    ids = [str(n) for n in range(1000, 1250)]
    with responses.RequestsMock() as rsps:
        rsps.get(SHOW_MANY_URL, json={"tickets": []})
        rsps.add_callback(responses.GET, re.compile(rf"{API}/tickets/\d+\.json"),
                          callback=lambda request: (404, {}, json.dumps(load("record_not_found.json"))))
        got = connector().fetch_tickets(ids)
        sizes = [len(parse_qs(urlsplit(c.request.url).query)["ids"][0].split(","))
                 for c in rsps.calls if "show_many" in c.request.url]
    assert sizes == [100, 100, 50]
    assert all(isinstance(got[tid], NotFoundError) for tid in ids)


def test_a_rate_limited_show_many_reports_every_ticket_of_the_batch_with_it():
    with responses.RequestsMock() as rsps:
        rsps.get(SHOW_MANY_URL, status=429, headers={"Retry-After": "9"})
        got = connector(max_attempts=1).fetch_tickets(["35436", "35437"])
        assert len(rsps.calls) == 1
    assert isinstance(got["35436"], RateLimitedError) and got["35437"] is got["35436"]
    assert got["35436"].retry_after == 9


def test_a_batch_stops_reading_audits_once_three_tickets_failed_with_5xx():
    many = {"tickets": [dict(load("ticket_35436.json")["ticket"], id=n) for n in range(1, 6)]}
    with responses.RequestsMock() as rsps:
        rsps.get(SHOW_MANY_URL, json=many)
        rsps.add_callback(responses.GET, re.compile(rf"{API}/tickets/\d+/audits\.json"),
                          callback=lambda request: (503, {}, "{}"))
        got = connector(max_attempts=1).fetch_tickets([str(n) for n in range(1, 6)])
        assert len(rsps.calls) == 1 + 3  # show_many, then three tickets' audits
    assert all(isinstance(got[str(n)], TransientError) for n in range(1, 6))
    assert got["4"] is got["5"] is got["3"]
