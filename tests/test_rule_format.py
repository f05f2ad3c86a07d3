"""The rule format's newer constructs, instant by instant: region calendars, business days,
calendar exceptions, next reply, next update from creation, and the pause boundary."""

from __future__ import annotations

import pytest

from engine.evaluate import evaluate
from engine.rulefile import RuleFileError, load_texts
from engine.ticketjson import parse_ticket
from tests.engine_helpers import at, comment, status

RULES = """\
version: 1
calendars:
  amer: {timezone: America/Los_Angeles, hours: {mon-fri: ["05:00-17:00"]}}
  emea: {timezone: Europe/Amsterdam, hours: {mon-fri: ["08:00-18:00"]}}
  apac: {timezone: Australia/Brisbane, hours: {mon-fri: ["09:00-21:00"]}}
  office:
    timezone: Europe/Berlin
    hours: {mon-fri: ["09:00-17:00"]}
    holidays:
      yearly: ["12-24", "12-31"]
      ranges: ["2026-12-24..2027-01-01"]
      openings:
        - {date: 2026-12-24, hours: ["09:00-12:00"]}
        - {date: 2026-11-28, hours: ["10:00-14:00"]}
  yearend:
    timezone: Europe/Berlin
    hours: {mon-fri: ["09:00-17:00"]}
    holidays: {yearly: ["12-24..01-01"]}
  berlin-always: {timezone: Europe/Berlin, hours: 24/7}
  always: {timezone: UTC, hours: 24/7}

policies:
  - id: regional
    when: {fields: {plan: enterprise}}
    calendar: {field: region, map: {AMER: amer, EMEA: emea, APAC: apac}, default: amer}
    targets:
      first_response: {urgent: 1h, high: 4h}
      next_reply: {high: 4h}
      next_update:
        urgent: {within: 4h, from: created, calendar: always}
        high: {within: 4h, calendar: always}
  - id: days
    when: {fields: {plan: days}}
    calendar: {field: site, map: {office: office, yearend: yearend, berlin: berlin-always, utc: always}}
    targets:
      first_response: {urgent: 1h, high: 2h, normal: 1 business day, low: 2 business days}
  - id: chat
    when: {fields: {plan: chat}}
    calendar: always
    targets:
      next_reply: {within: 2h, pause_on: [on_hold]}
      resolution: 4h
"""


@pytest.fixture(scope="module")
def rules():
    return load_texts([("format.yaml", RULES)])


def decide(rules, now: str, **ticket):
    data = {"id": "1", "status": "open", "priority": "normal", "created_at": now}
    data.update(ticket)
    changes = [e["status"] for e in data.get("events", ()) if e["type"] == "status"]
    if changes and "status" not in ticket:
        data["status"] = changes[-1]  # the ticket as of its last status event
    return evaluate(parse_ticket(data, rules.status_aliases), rules, at(now)).to_dict()


def target(result, name: str):
    value = result["targets"][name]
    return None if value is None else (value["due"], value["state"])


# -- calendars chosen by a ticket field ---------------------------------------------------


@pytest.mark.parametrize(
    ("region", "due", "calendar"),
    [
        ("AMER", "2026-11-23T17:30:00Z", "amer"),  # 08:30 PST, open: 09:30 PST
        ("EMEA", "2026-11-24T07:30:00Z", "emea"),  # 17:30 CET: 30 min, then Tue 08:00-08:30
        ("APAC", "2026-11-24T00:00:00Z", "apac"),  # Tue 02:30 AEST: opens 09:00, due 10:00
        ("emea", "2026-11-24T07:30:00Z", "emea"),  # values compare case-insensitively
        (["APAC"], "2026-11-24T00:00:00Z", "apac"),  # a multi-select field
        ("LATAM", "2026-11-23T17:30:00Z", "amer"),  # unmapped: the default
        (None, "2026-11-23T17:30:00Z", "amer"),  # no value: the default
    ],
)
def test_region_calendar(rules, region, due, calendar):
    fields = {"plan": "enterprise"} if region is None else {"plan": "enterprise", "region": region}
    result = decide(rules, "2026-11-23T16:30:00Z", priority="urgent", fields=fields)
    assert target(result, "first_response") == (due, "running")
    assert result["targets"]["first_response"]["calendar"] == calendar
    # The target's own calendar wins over the policy's choice.
    assert result["targets"]["next_update"]["calendar"] == "always"


def test_no_default_and_no_match_means_no_target(rules):
    result = decide(rules, "2026-11-23T10:00:00Z", priority="urgent", fields={"plan": "days", "site": "mars"})
    assert result["policy"] == "days"
    assert result["targets"]["first_response"] is None


def test_region_calendar_in_the_priority_note():
    text = RULES + """\
reclassify:
  - {id: up, when: {tags_any: [outage]}, set: urgent}
"""
    rules = load_texts([("note.yaml", text)])
    result = decide(rules, "2026-11-23T16:30:00Z", priority="high", tags=["outage"],
                    fields={"plan": "enterprise", "region": "APAC"})
    note = next(a for a in result["actions"] if a["type"] == "note")
    assert "First response due Tue 24 Nov 10:00 AEST" in note["body"]


# -- business days ----------------------------------------------------------------------

DAYS = {"plan": "days"}


@pytest.mark.parametrize(
    ("case", "site", "created", "priority", "due"),
    [
        ("Fri 15:30 + 1bd: Mon 15:30", "office", "2026-11-20T14:30:00Z", "normal", "2026-11-23T14:30:00Z"),
        ("Fri 15:30 + 2bd: Tue 15:30", "office", "2026-11-20T14:30:00Z", "low", "2026-11-24T14:30:00Z"),
        ("Sun: counts from Mon 09:00", "office", "2026-11-22T10:00:00Z", "low", "2026-11-25T08:00:00Z"),
        ("at closing: counts from Mon 09:00", "office", "2026-11-20T16:00:00Z", "normal",
         "2026-11-24T08:00:00Z"),
        ("before opening", "office", "2026-11-23T07:00:00Z", "low", "2026-11-25T08:00:00Z"),
        ("an opened Saturday is a day; clamped to its close", "office", "2026-11-27T15:00:00Z", "normal",
         "2026-11-28T13:00:00Z"),
        ("over the year-end range", "office", "2026-12-23T09:00:00Z", "low", "2027-01-04T09:00:00Z"),
        ("the short Dec 24 opening clamps 14:00 to 12:00", "office", "2026-12-23T13:00:00Z", "normal",
         "2026-12-24T11:00:00Z"),
        ("yearly closure across the year end, 2026", "yearend", "2026-12-23T09:00:00Z", "low",
         "2027-01-05T09:00:00Z"),
        ("yearly closure across the year end, 2027", "yearend", "2027-12-22T09:00:00Z", "low",
         "2028-01-03T09:00:00Z"),
        ("over the spring DST change", "office", "2026-03-27T14:30:00Z", "normal", "2026-03-30T13:30:00Z"),
        ("24/7 UTC: 48 hours", "utc", "2026-11-21T10:00:00Z", "low", "2026-11-23T10:00:00Z"),
        ("24/7 Berlin over DST: same wall time, 23 hours", "berlin", "2026-03-28T11:00:00Z", "normal",
         "2026-03-29T10:00:00Z"),
    ],
)
def test_business_days(rules, case, site, created, priority, due):
    result = decide(rules, created, priority=priority, fields={**DAYS, "site": site})
    assert target(result, "first_response") == (due, "running"), case


@pytest.mark.parametrize(
    ("case", "site", "created", "priority", "due"),
    [
        ("extra Saturday opening", "office", "2026-11-27T15:30:00Z", "urgent", "2026-11-28T09:30:00Z"),
        ("Dec 24 opening beats the yearly and range closures", "office", "2026-12-23T15:30:00Z", "high",
         "2026-12-24T09:30:00Z"),
        ("after the Dec 24 opening: closed until Jan 4", "office", "2026-12-24T10:30:00Z", "high",
         "2027-01-04T09:30:00Z"),
        ("yearly range across the year end, hours", "yearend", "2026-12-23T15:00:00Z", "high",
         "2027-01-04T09:00:00Z"),
    ],
)
def test_calendar_exceptions_in_hours(rules, case, site, created, priority, due):
    result = decide(rules, created, priority=priority, fields={**DAYS, "site": site})
    assert target(result, "first_response") == (due, "running"), case


def test_business_days_met_and_breached(rules):
    fields = {**DAYS, "site": "office"}
    created = "2026-11-20T14:30:00Z"  # Fri 15:30 CET; 1 business day: Mon 15:30 CET
    met = decide(rules, "2026-11-23T14:30:00Z", created_at=created, fields=fields,
                 events=[comment("2026-11-23T14:30:00Z")])
    assert target(met, "first_response") == ("2026-11-23T14:30:00Z", "met")
    assert met["targets"]["first_response"]["business_seconds"] == 8 * 3600
    late = decide(rules, "2026-11-23T14:31:00Z", created_at=created, fields=fields)
    assert target(late, "first_response") == ("2026-11-23T14:30:00Z", "breached")


def test_business_days_with_a_pause():
    text = """\
version: 1
calendars:
  office: {timezone: Europe/Berlin, hours: {mon-fri: ["09:00-17:00"]}}
policies:
  - id: p
    calendar: office
    targets:
      resolution: 2 business days
"""
    rules = load_texts([("p.yaml", text)])
    # Mon 09:00 CET; pending Mon 10:00-12:00 (2 open hours): due Wed 09:00 + 2h = Wed 11:00 CET.
    events = [status("2026-11-23T09:00:00Z", "pending"), status("2026-11-23T11:00:00Z", "open")]
    result = decide(rules, "2026-11-23T12:00:00Z", created_at="2026-11-23T08:00:00Z", events=events)
    assert target(result, "resolution") == ("2026-11-25T10:00:00Z", "running")
    # A pause outside open hours moves nothing.
    events = [status("2026-11-23T17:00:00Z", "pending"), status("2026-11-24T07:00:00Z", "open")]
    result = decide(rules, "2026-11-24T08:00:00Z", created_at="2026-11-23T08:00:00Z", events=events)
    assert target(result, "resolution") == ("2026-11-25T08:00:00Z", "running")


# -- next reply -------------------------------------------------------------------------

EMEA_HIGH = {"priority": "high", "fields": {"plan": "enterprise", "region": "EMEA"},
             "created_at": "2026-11-23T08:00:00Z"}  # Mon 09:00 CET; emea 08:00-18:00, 4h


@pytest.mark.parametrize(
    ("case", "events", "now", "expected"),
    [
        ("opening message belongs to first_response", [], "2026-11-23T09:00:00Z", None),
        ("answered, customer silent", [comment("2026-11-23T08:30:00Z")], "2026-11-23T12:00:00Z", None),
        (
            "customer writes: due 4 business hours later",
            [comment("2026-11-23T08:30:00Z"), comment("2026-11-23T10:00:00Z", "customer")],
            "2026-11-23T12:00:00Z",
            ("2026-11-23T14:00:00Z", "running"),
        ),
        (
            "a second customer message keeps the oldest unanswered one",
            [comment("2026-11-23T08:30:00Z"), comment("2026-11-23T10:00:00Z", "customer"),
             comment("2026-11-23T11:00:00Z", "customer")],
            "2026-11-23T12:00:00Z",
            ("2026-11-23T14:00:00Z", "running"),
        ),
        (
            "a private agent note does not answer",
            [comment("2026-11-23T08:30:00Z"), comment("2026-11-23T10:00:00Z", "customer"),
             comment("2026-11-23T11:00:00Z", public=False)],
            "2026-11-23T12:00:00Z",
            ("2026-11-23T14:00:00Z", "running"),
        ),
        (
            "answered in time",
            [comment("2026-11-23T08:30:00Z"), comment("2026-11-23T10:00:00Z", "customer"),
             comment("2026-11-23T13:00:00Z")],
            "2026-11-23T15:00:00Z",
            ("2026-11-23T14:00:00Z", "met"),
        ),
        (
            "a new cycle after closing time, unanswered",
            [comment("2026-11-23T08:30:00Z"), comment("2026-11-23T10:00:00Z", "customer"),
             comment("2026-11-23T13:00:00Z"), comment("2026-11-23T16:00:00Z", "customer")],
            "2026-11-24T11:00:00Z",
            ("2026-11-24T10:00:00Z", "breached"),  # 1h Mon 17-18 CET, 3h Tue 08-11 CET
        ),
        (
            "an earlier breach does not stick to the new cycle",
            [comment("2026-11-23T08:30:00Z"), comment("2026-11-23T09:00:00Z", "customer"),
             comment("2026-11-23T15:00:00Z"), comment("2026-11-23T16:00:00Z", "customer")],
            "2026-11-23T17:00:00Z",
            ("2026-11-24T10:00:00Z", "running"),
        ),
        (
            "answered late",
            [comment("2026-11-23T08:30:00Z"), comment("2026-11-23T09:00:00Z", "customer"),
             comment("2026-11-23T15:00:00Z")],
            "2026-11-23T16:00:00Z",
            ("2026-11-23T13:00:00Z", "breached"),
        ),
        (
            "solving answers the open cycle",
            [comment("2026-11-23T08:30:00Z"), comment("2026-11-23T09:00:00Z", "customer"),
             status("2026-11-23T10:00:00Z", "solved")],
            "2026-11-23T16:00:00Z",
            ("2026-11-23T13:00:00Z", "met"),
        ),
        (
            "the customer writes after the solve: a new cycle",
            [comment("2026-11-23T08:30:00Z"), comment("2026-11-23T09:00:00Z", "customer"),
             status("2026-11-23T10:00:00Z", "solved"), comment("2026-11-23T11:00:00Z", "customer"),
             status("2026-11-23T11:00:00Z", "open")],
            "2026-11-23T12:00:00Z",
            ("2026-11-23T15:00:00Z", "running"),
        ),
    ],
)
def test_next_reply_cycles(rules, case, events, now, expected):
    result = decide(rules, now, events=events, **EMEA_HIGH)
    assert target(result, "next_reply") == expected, case


CHAT = {"fields": {"plan": "chat"}, "created_at": "2026-11-23T10:00:00Z"}  # 24/7, 2h, pauses on on_hold


@pytest.mark.parametrize(
    ("case", "events", "now", "expected"),
    [
        ("no first_response target: the opening message starts a cycle", [], "2026-11-23T11:00:00Z",
         ("2026-11-23T12:00:00Z", "running")),
        ("answered", [comment("2026-11-23T10:30:00Z")], "2026-11-23T11:00:00Z",
         ("2026-11-23T12:00:00Z", "met")),
        ("paused on hold", [comment("2026-11-23T10:30:00Z"), comment("2026-11-23T11:00:00Z", "customer"),
                            status("2026-11-23T11:30:00Z", "on_hold")], "2026-11-23T13:00:00Z",
         (None, "paused")),
        ("resumed: the pause moves the due",
         [comment("2026-11-23T10:30:00Z"), comment("2026-11-23T11:00:00Z", "customer"),
          status("2026-11-23T11:30:00Z", "on_hold"), status("2026-11-23T14:00:00Z", "open")],
         "2026-11-23T14:10:00Z", ("2026-11-23T15:30:00Z", "running")),
        ("answered after the pause", [
            comment("2026-11-23T10:30:00Z"), comment("2026-11-23T11:00:00Z", "customer"),
            status("2026-11-23T11:30:00Z", "on_hold"), status("2026-11-23T14:00:00Z", "open"),
            comment("2026-11-23T15:00:00Z")], "2026-11-23T16:00:00Z", ("2026-11-23T15:30:00Z", "met")),
        ("third cycle after two answered ones", [
            comment("2026-11-23T10:30:00Z"), comment("2026-11-23T11:00:00Z", "customer"),
            comment("2026-11-23T11:10:00Z"), comment("2026-11-23T20:00:00Z", "customer")],
         "2026-11-23T21:00:00Z", ("2026-11-23T22:00:00Z", "running")),
        ("a pause before the customer writes", [
            comment("2026-11-23T10:30:00Z"), status("2026-11-23T10:31:00Z", "on_hold"),
            comment("2026-11-23T11:00:00Z", "customer"), status("2026-11-23T12:00:00Z", "open")],
         "2026-11-23T12:30:00Z", ("2026-11-23T14:00:00Z", "running")),
    ],
)
def test_next_reply_pauses(rules, case, events, now, expected):
    result = decide(rules, now, events=events, **CHAT)
    assert target(result, "next_reply") == expected, case


def test_next_reply_in_escalations_and_sla_fields():
    text = RULES + """\
escalations:
  - id: reply-late
    on: {breach: next_reply}
    do: {add_tags: [reply_late]}
  - id: reply-soon
    on: {before_breach: next_reply, within: 30m}
    do: {add_tags: [reply_soon]}
sla_fields:
  next_reply: {due: nr_due, state: nr_state}
"""
    rules = load_texts([("esc.yaml", text)])
    events = [comment("2026-11-23T10:30:00Z"), comment("2026-11-23T11:00:00Z", "customer")]
    soon = decide(rules, "2026-11-23T12:40:00Z", events=events, **CHAT)
    assert [a["values"] for a in soon["actions"] if a["type"] == "add_tags"] == [["reply_soon"]]
    assert {"type": "set_fields", "values": {"nr_due": "2026-11-23T13:00:00Z", "nr_state": "running"},
            "rule": "sla-fields"} in soon["actions"]
    late = decide(rules, "2026-11-23T13:00:01Z", events=events, **CHAT)
    tags = [a["values"] for a in late["actions"] if a["type"] == "add_tags"]
    assert tags == [["reply_late"], ["reply_soon"]]
    note = next(a["body"] for a in late["actions"] if a["rule"] == "reply-late" and a["type"] == "note")
    assert "next reply breached (due 2026-11-23T13:00:00Z)" in note
    assert soon["next_check"] is not None


# -- next update from creation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "events", "expected"),
    [
        ("urgent", [], ("2026-11-23T12:00:00Z", "running")),  # from: created
        ("urgent", [comment("2026-11-23T09:00:00Z")], ("2026-11-23T13:00:00Z", "running")),
        ("high", [], None),  # default: from the agent's last public comment
        ("high", [comment("2026-11-23T09:00:00Z")], ("2026-11-23T13:00:00Z", "running")),
    ],
)
def test_next_update_from_created(rules, priority, events, expected):
    result = decide(rules, "2026-11-23T10:00:00Z", priority=priority, events=events,
                    created_at="2026-11-23T08:00:00Z", fields={"plan": "enterprise"})
    assert target(result, "next_update") == expected


# -- the pause boundary ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "events", "now", "expected"),
    [
        ("pending the instant the budget runs out: paused, 0 left",
         [status("2026-11-23T14:00:00Z", "pending")], "2026-11-23T14:30:00Z", (None, "paused")),
        ("then solved while pending: met",
         [status("2026-11-23T14:00:00Z", "pending"), status("2026-11-23T15:00:00Z", "solved")],
         "2026-11-23T16:00:00Z", ("2026-11-23T14:00:00Z", "met")),
        ("one second later: breached",
         [status("2026-11-23T14:00:01Z", "pending")], "2026-11-23T14:30:00Z",
         ("2026-11-23T14:00:00Z", "breached")),
        ("and solved later: still breached",
         [status("2026-11-23T14:00:01Z", "pending"), status("2026-11-23T15:00:00Z", "solved")],
         "2026-11-23T16:00:00Z", ("2026-11-23T14:00:00Z", "breached")),
        ("resumed with 0 left: breached as it resumes",
         [status("2026-11-23T14:00:00Z", "pending"), status("2026-11-23T15:00:00Z", "open")],
         "2026-11-23T15:00:01Z", ("2026-11-23T14:00:00Z", "breached")),
        ("solved at the due itself: met",
         [status("2026-11-23T14:00:00Z", "solved")], "2026-11-23T16:00:00Z",
         ("2026-11-23T14:00:00Z", "met")),
    ],
)
def test_pause_boundary(rules, case, events, now, expected):
    result = decide(rules, now, events=events, **CHAT)  # resolution: 4h 24/7 from 10:00Z
    assert target(result, "resolution") == expected, case


# -- errors for the new keys name file, line and field ------------------------------------


@pytest.mark.parametrize(
    ("snippet", "line", "field", "message"),
    [
        ("    calendar: {map: {EMEA: emea}}\n", 7, "policies[0].calendar", "required key 'field' is missing"),
        ("    calendar: {field: region, map: {EMEA: emeaa}}\n", 7, "policies[0].calendar.map.EMEA",
         "unknown calendar 'emeaa'; defined calendars: always, emea"),
        ("    calendar: {field: region, map: {EMEA: emea}, default: amer}\n", 7,
         "policies[0].calendar.default", "unknown calendar 'amer'"),
        ("    calendar: {field: region, map: {EMEA: emea}, fallback: amer}\n", 7,
         "policies[0].calendar.fallback", "unknown key 'fallback'"),
        ("    calendar: {field: region, map: [emea]}\n", 7, "policies[0].calendar.map",
         "Input should be a valid dictionary"),
        ("    calendar: always\n    targets:\n      first_response: 2 days\n", 9,
         "policies[0].targets.first_response", "'2 days' is ambiguous"),
        ("    calendar: always\n    targets:\n      first_response: {within: 1h, from: created}\n", 9,
         "policies[0].targets.first_response.from", "only next_update has `from`"),
        ("    calendar: always\n    targets:\n      next_update: {within: 1h, from: creation}\n", 9,
         "policies[0].targets.next_update.from", "Input should be 'created' or 'agent_update'"),
    ],
)
def test_errors_for_new_keys(snippet, line, field, message):
    text = (
        "version: 1\ncalendars:\n  emea: {timezone: Europe/Amsterdam, hours: {mon-fri: ['08:00-18:00']}}\n"
        "  always: {timezone: UTC, hours: 24/7}\npolicies:\n  - id: p\n" + snippet
    )
    with pytest.raises(RuleFileError) as caught:
        load_texts([("new.yaml", text)])
    err = caught.value
    assert (err.file, err.line, err.field) == ("new.yaml", line, field), str(err)
    assert message in err.message, str(err)


@pytest.mark.parametrize(
    ("holidays", "field", "message"),
    [
        ("{yearly: ['13-01']}", "calendars.c.holidays.yearly[0]", "expected a month-day like '12-24'"),
        ("{yearly: ['12-24..1-1']}", "calendars.c.holidays.yearly[0]", "expected a month-day"),
        ("{ranges: ['2027-01-01..2026-12-24']}", "calendars.c.holidays.ranges[0]", "ends before it starts"),
        ("{ranges: ['2026-12-24...2027-01-01']}", "calendars.c.holidays.ranges[0]", "expected dates like"),
        ("{openings: [{date: 2026-12-24}]}", "calendars.c.holidays.openings[0]",
         "required key 'hours' is missing"),
        ("{openings: [{date: 2026-12-24, hours: ['9-12']}]}", "calendars.c.holidays.openings[0].hours[0]",
         "expected a time like '09:00'"),
    ],
)
def test_errors_for_calendar_exceptions(holidays, field, message):
    text = f"version: 1\ncalendars:\n  c:\n    timezone: UTC\n    hours: 24/7\n    holidays: {holidays}\n"
    with pytest.raises(RuleFileError) as caught:
        load_texts([("cal.yaml", text)])
    err = caught.value
    assert (err.line, err.field) == (6, field), str(err)
    assert message in err.message, str(err)


# -- the docs' examples are true -----------------------------------------------------------


def _docs() -> str:
    from tests.engine_helpers import ROOT

    return (ROOT / "docs" / "rules.md").read_text()


def _snippet(marker: str) -> str:
    import re

    for match in re.finditer(r"^```yaml\n(.*?)^```", _docs(), re.S | re.M):
        if marker in match.group(1):
            return match.group(1)
    raise AssertionError(f"no docs snippet with {marker!r}")


def test_docs_business_days_table():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    text = _snippet("a short Christmas Eve")
    text += "policies:\n  - id: p\n    calendar: office\n    targets:\n"
    text += "      first_response: {low: 1 business day, normal: 2 business days}\n"
    rules = load_texts([("docs.yaml", text)])
    berlin = ZoneInfo("Europe/Berlin")

    def instant(words: str) -> str:
        words = words.replace(" CEST", "").replace(" CET", "")
        local = datetime.strptime(f"{words} 2026", "%a %d %b %H:%M %Y")
        if local.month == 1:
            local = local.replace(year=2027)
        return local.replace(tzinfo=berlin).astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")

    table = _docs().split("| created (Berlin) | budget | due (Berlin) | why |")[1].split("\n\n")[0]
    rows = [line.split("|")[1:4] for line in table.strip().splitlines()[1:]]
    assert len(rows) >= 8
    for created, budget, due in rows:
        priority = {"1 business day": "low", "2 business days": "normal"}[budget.strip()]
        result = decide(rules, instant(created.strip()), priority=priority)
        assert target(result, "first_response") == (instant(due.strip()), "running"), (created, budget)


def test_docs_next_reply_example():
    rules = load_texts([("docs.yaml", _snippet("reply-overdue"))])
    created = "2026-11-23T08:00:00Z"  # Mon 09:00 Amsterdam
    events = [comment("2026-11-23T08:30:00Z")]
    result = decide(rules, "2026-11-23T09:00:00Z", created_at=created, events=events)
    assert target(result, "next_reply") is None
    events += [comment("2026-11-23T10:00:00Z", "customer"), comment("2026-11-23T11:00:00Z", "customer")]
    result = decide(rules, "2026-11-23T12:00:00Z", created_at=created, events=events)
    assert target(result, "next_reply") == ("2026-11-23T14:00:00Z", "running")
    events += [comment("2026-11-23T13:00:00Z")]
    result = decide(rules, "2026-11-23T15:00:00Z", created_at=created, events=events)
    assert target(result, "next_reply") == ("2026-11-23T14:00:00Z", "met")
    events += [comment("2026-11-23T16:00:00Z", "customer")]
    result = decide(rules, "2026-11-23T17:00:00Z", created_at=created, events=events)
    assert target(result, "next_reply") == ("2026-11-24T10:00:00Z", "running")


AUTO_CLOSE = """\
version: 1
calendars:
  office: {timezone: Europe/Berlin, hours: {mon-fri: ["09:00-17:00"]}}
auto_close:
  - id: close-after-3-business-days
    when: {status: pending}
    after: 3 business days
    calendar: office
    reply: "Closing: no reply for 3 business days."
    remind_before: 8h
    reminder: "We will close this tomorrow."
"""


def test_auto_close_after_business_days():
    rules = load_texts([("close.yaml", AUTO_CLOSE)])
    base = {"created_at": "2026-11-19T08:00:00Z", "status": "pending"}
    agent = comment("2026-11-20T14:00:00Z")  # Fri 15:00 CET: closes Wed 15:00, reminds Tue 15:00
    early = decide(rules, "2026-11-24T13:59:59Z", events=[agent], **base)
    assert early["actions"] == [] and early["next_check"] == "2026-11-24T14:00:00Z"
    remind = decide(rules, "2026-11-24T14:00:00Z", events=[agent], **base)
    assert [a["type"] for a in remind["actions"]] == ["reply", "note"]
    assert remind["next_check"] == "2026-11-25T14:00:00Z"
    bot = {**comment("2026-11-24T14:00:00Z"), "bot": True}
    waiting = decide(rules, "2026-11-25T13:59:59Z", events=[agent, bot], **base)
    assert waiting["actions"] == [] and waiting["next_check"] == "2026-11-25T14:00:00Z"
    close = decide(rules, "2026-11-25T14:00:00Z", events=[agent, bot], **base)
    assert [a["type"] for a in close["actions"]] == ["set_status", "reply", "note"]
    assert "no customer reply for 3 business days" in close["actions"][-1]["body"]


def test_str_only_calendars_say_so():
    text = AUTO_CLOSE.replace("    calendar: office\n", "    calendar: {field: region, map: {x: office}}\n")
    with pytest.raises(RuleFileError) as caught:
        load_texts([("close.yaml", text)])
    assert caught.value.line == 8 and caught.value.field == "auto_close[0].calendar"
    assert "a calendar chosen by a ticket field is for policies and targets" in caught.value.message


def test_target_level_calendar_choice():
    text = """\
version: 1
calendars:
  emea: {timezone: Europe/Amsterdam, hours: {mon-fri: ["08:00-18:00"]}}
  apac: {timezone: Australia/Brisbane, hours: {mon-fri: ["09:00-21:00"]}}
  always: {timezone: UTC, hours: 24/7}
policies:
  - id: p
    calendar: always
    targets:
      first_response:
        urgent: {within: 1h, calendar: {field: region, map: {EMEA: emea, APAC: apac}, default: emea}}
        high: 1h
"""
    rules = load_texts([("t.yaml", text)])
    apac = decide(rules, "2026-11-23T16:30:00Z", priority="urgent", fields={"region": "APAC"})
    assert target(apac, "first_response") == ("2026-11-24T00:00:00Z", "running")
    other = decide(rules, "2026-11-23T16:30:00Z", priority="urgent", fields={"region": "?"})
    assert target(other, "first_response") == ("2026-11-24T07:30:00Z", "running")
    high = decide(rules, "2026-11-23T16:30:00Z", priority="high", fields={"region": "APAC"})
    assert target(high, "first_response") == ("2026-11-23T17:30:00Z", "running")
    bad = text.replace("APAC: apac}", "APAC: apak}")
    with pytest.raises(RuleFileError) as caught:
        load_texts([("t.yaml", bad)])
    assert (caught.value.line, caught.value.field) == (
        11, "policies[0].targets.first_response.urgent.calendar.map.APAC"
    )


def test_calendar_named_by_the_field_value_itself():
    text = """\
version: 1
calendars:
  emea: {timezone: Europe/Amsterdam, hours: {mon-fri: ["08:00-18:00"]}}
  apac: {timezone: Australia/Brisbane, hours: {mon-fri: ["09:00-21:00"]}}
policies:
  - id: p
    calendar: {field: region, default: emea}
    targets: {first_response: 1h}
"""
    rules = load_texts([("t.yaml", text)])
    for region, due in [("APAC", "2026-11-24T00:00:00Z"), ("apac", "2026-11-24T00:00:00Z"),
                        ("emea", "2026-11-24T07:30:00Z"), ("mars", "2026-11-24T07:30:00Z")]:
        result = decide(rules, "2026-11-23T16:30:00Z", fields={"region": region})
        assert target(result, "first_response") == (due, "running"), region


def test_escalation_after_created_in_business_days():
    text = """\
version: 1
calendars:
  office: {timezone: Europe/Berlin, hours: {mon-fri: ["09:00-17:00"]}}
escalations:
  - id: stale
    on: {after_created: 2 business days, calendar: office}
    do: {add_tags: [stale]}
"""
    rules = load_texts([("e.yaml", text)])
    created = "2026-11-20T14:30:00Z"  # Fri 15:30 CET: Tue 15:30 CET
    before = decide(rules, "2026-11-24T14:29:59Z", created_at=created)
    assert before["actions"] == [] and before["next_check"] == "2026-11-24T14:30:00Z"
    fired = decide(rules, "2026-11-24T14:30:00Z", created_at=created)
    assert fired["actions"][0] == {"type": "add_tags", "values": ["stale"], "rule": "stale"}
    assert "2 business days have passed since the ticket was created" in fired["actions"][1]["body"]
