"""The replay (jobs/simulate.py) on hand-made history documents: the bot's own actions feed back."""

from __future__ import annotations

from datetime import UTC, datetime

from engine import load_texts
from jobs.report import simulation_report
from jobs.simulate import Mapping_, Pair, compare, in_window, prepare, replay, simulate


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


CALENDAR = """
version: 1
calendars:
  office: {timezone: UTC, hours: {mon-fri: ["09:00-17:00"]}}
  always: {timezone: UTC, hours: 24/7}
"""
POLICY = """
policies:
  - id: support
    calendar: office
    when: {fields: {plan: pro}}
    targets:
      first_response: {urgent: 1h, normal: 8h}
escalations:
  - id: late-first-reply
    on: {breach: first_response}
    do: {assign_group: tier2, add_tags: [escalated]}
"""
RECLASSIFY = """
reclassify:
  - id: outage-is-urgent
    when: {text_any: [outage]}
    set: urgent
"""
CLOSE = """
auto_close:
  - id: close-pending
    when: {status: pending}
    after: 8h
    calendar: office
    reply: Closing.
"""
WINDOW = (at("2024-03-04T00:00:00"), at("2024-03-10T23:59:59"))
NO_IDS = Mapping_({}, {})


def rules(*parts: str):
    return load_texts([("rules.yaml", CALENDAR + "".join(parts))])


def ticket(events, **initial):
    doc_initial = {"status": "open", "priority": "normal", "tags": [], "fields": {"9001": "pro"}}
    doc_initial.update(initial)
    return {"id": "7", "url": "https://acme.zendesk.com/agent/tickets/7",
            "created_at": at("2024-03-04T09:00:00"),
            "updated_at": at("2024-03-08T00:00:00"), "subject": "Outage in production", "description": "",
            "initial": doc_initial, "events": events}


def comment(when: str, author: str, bot: bool = False):
    return {"at": at(when), "type": "comment", "author": author, "public": True, "bot": bot}


def status(when: str, value: str, bot: bool = False):
    return {"at": at(when), "type": "status", "status": value, "bot": bot}


def test_a_reclassified_priority_changes_the_targets_and_escalations_that_follow():
    doc = ticket([comment("2024-03-04T11:00:00", "agent")])
    base, new = rules(POLICY), rules(POLICY, RECLASSIFY)
    # The rule files map no ids: name the plan field directly for this test.
    prep = prepare(doc, Mapping_({"9001": "plan"}, {}))
    old_run, new_run = replay(prep, base, *WINDOW), replay(prep, new, *WINDOW)
    assert old_run.targets["first_response"].state == "met"  # normal: due 17:00, answered 11:00
    assert new_run.priority == "urgent" and new_run.targets["first_response"].state == "breached"
    assert new_run.group == "tier2"
    escalation = [(f.at, f.type, f.value) for f in new_run.firings if f.rule == "late-first-reply"]
    # Due at 10:00, the breach is seen one second later, as the sweep would.
    assert escalation[:2] == [(at("2024-03-04T10:00:01"), "add_tags", ["escalated"]),
                              (at("2024-03-04T10:00:01"), "assign_group", "tier2")]
    changes = compare(old_run, new_run)
    kinds = [(c.type, c.rule, c.baseline, c.proposed) for c in changes if c.type != "note"]
    assert ("set_priority", "outage-is-urgent", None, "urgent") in kinds
    assert ("assign_group", "late-first-reply", None, "tier2") in kinds
    due = next(c for c in changes if c.type == "due")
    assert (due.baseline, due.proposed, due.extra["moved_seconds"]) == (
        "2024-03-04T17:00:00Z", "2024-03-04T10:00:00Z", -7 * 3600)
    report = simulation_report([Pair(old_run, new_run, changes)], *WINDOW, source="zendesk",
                               baseline=base, proposed=new)
    first = report["summary"]["first_response"]
    assert (first["breaches_baseline"], first["breaches_proposed"], first["gained"]) == (0, 1, 1)
    assert first["by_priority"]["urgent"]["tickets_gained"] == ["7"]
    assert report["differences"]["priority"] == ["7"] and report["differences"]["group"] == ["7"]
    assert report["escalations"]["proposed"] == {"late-first-reply": ["7"]}


def test_identical_rule_sets_report_no_change():
    doc = ticket([comment("2024-03-04T11:00:00", "agent"), status("2024-03-04T11:00:00", "pending")])
    same = rules(POLICY, CLOSE)
    pairs, evaluations = simulate([doc], same, rules(POLICY, CLOSE), *WINDOW, "zendesk")
    assert pairs[0].changes == [] and evaluations > 2


def test_the_bots_own_actions_in_the_history_are_decided_afresh():
    doc = ticket([comment("2024-03-04T11:00:00", "agent"), status("2024-03-04T11:00:00", "pending"),
                  comment("2024-03-04T12:00:00", "agent", bot=True),
                  status("2024-03-04T12:00:00", "solved", bot=True)])
    run = replay(prepare(doc, NO_IDS), rules(POLICY), *WINDOW)
    assert run.status == "pending" and run.firings == []


def test_an_auto_close_closes_and_a_later_customer_reply_reopens_it_as_a_false_close():
    doc = ticket([comment("2024-03-04T11:00:00", "agent"), status("2024-03-04T11:00:00", "pending"),
                  comment("2024-03-07T10:00:00", "customer")])
    run = replay(prepare(doc, NO_IDS), rules(CLOSE), *WINDOW)
    close = run.closes[0]
    assert (close.at, close.value) == (at("2024-03-05T11:00:00"), "solved")
    assert [(c.at, wrote) for c, wrote in run.false_closes] == [(close.at, at("2024-03-07T10:00:00"))]
    assert run.status == "open"  # the requester's reply reopened it


def test_a_customer_reply_before_the_moment_cancels_the_close():
    doc = ticket([comment("2024-03-04T11:00:00", "agent"), status("2024-03-04T11:00:00", "pending"),
                  comment("2024-03-04T15:00:00", "customer")])
    run = replay(prepare(doc, NO_IDS), rules(CLOSE), *WINDOW)
    assert run.closes == [] and run.false_closes == []


def test_actions_before_the_window_shape_the_ticket_but_are_not_reported():
    doc = ticket([comment("2024-03-04T11:00:00", "agent"), status("2024-03-04T11:00:00", "pending"),
                  comment("2024-03-07T10:00:00", "customer")])
    run = replay(prepare(doc, NO_IDS), rules(CLOSE), at("2024-03-06T00:00:00"), WINDOW[1])
    assert run.closes == [] and run.status == "open"  # closed Tuesday, reopened Thursday


def test_the_window_holds_tickets_created_or_touched_in_it():
    doc = ticket([comment("2024-03-06T11:00:00", "agent")])
    assert in_window(doc, at("2024-03-05T00:00:00"), at("2024-03-07T00:00:00"))
    assert in_window(doc, at("2024-03-06T00:00:00"), at("2024-03-06T12:00:00"))
    assert not in_window(doc, at("2024-03-04T10:00:00"), at("2024-03-05T00:00:00"))
    assert not in_window(doc, at("2024-03-01T00:00:00"), at("2024-03-03T00:00:00"))


def test_vendor_ids_are_read_with_each_rule_sets_mapping():
    doc = ticket([{"at": at("2024-03-04T10:00:00"), "type": "group", "group": "55", "bot": False},
                  {"at": at("2024-03-04T10:00:00"), "type": "tags", "added": ["vip"], "removed": [],
                   "bot": False}], group="44")
    prep = prepare(doc, Mapping_({"9001": "plan"}, {"44": "tier1", "55": "tier2"}))
    assert (prep.group, prep.fields) == ("tier1", {"plan": "pro"})
    run = replay(prep, rules(POLICY), *WINDOW)
    assert run.group == "tier2"


def test_an_internal_note_needs_no_new_decision():
    events = [comment("2024-03-04T11:00:00", "agent"), status("2024-03-04T11:00:00", "pending")]
    note = {"at": at("2024-03-04T12:00:00"), "type": "comment", "author": "agent", "public": False,
            "bot": False}
    plain = replay(prepare(ticket(events), NO_IDS), rules(CLOSE), *WINDOW)
    noted = replay(prepare(ticket(events + [note]), NO_IDS), rules(CLOSE), *WINDOW)
    assert noted.firings == plain.firings and noted.evaluations == plain.evaluations


def test_windows_from_since_or_dates():
    import click
    import pytest

    from jobs.report import parse_window

    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    end = int(now.timestamp())
    assert parse_window("30d", None, None, now) == (end - 30 * 86_400, end)
    assert parse_window("12h", None, None, now) == (end - 12 * 3600, end)
    assert parse_window(None, "2026-11-01", "2026-11-30", now) == (
        at("2026-11-01T00:00:00"), at("2026-11-30T23:59:59"))
    assert parse_window(None, "2026-11-01T09:00:00+01:00", None, now)[0] == at("2026-11-01T08:00:00")
    for bad in (("soon", None, None), ("30d", "2026-11-01", None), (None, "2026-11-01T09:00", None),
                (None, "2026-12-05", "2026-12-04")):
        with pytest.raises(click.BadParameter):
            parse_window(*bad, now)


def test_the_table_says_when_nothing_changes():
    from jobs.report import format_simulation_table

    doc = ticket([comment("2024-03-04T11:00:00", "agent")])
    same = rules(POLICY)
    pairs, _ = simulate([doc], same, same, *WINDOW, "zendesk")
    report = simulation_report(pairs, *WINDOW, source="zendesk", baseline=same, proposed=same)
    text = format_simulation_table(report)
    assert "1 tickets replayed, 0 would change" in text
    assert "no change: the proposed rules decide every ticket as the baseline does" in text


def test_an_auto_close_on_a_custom_status_label_replays_only_that_custom_status():
    vendor_close = CLOSE.replace("when: {status: pending}", "when: {status: waiting on customer reply}")
    waiting = {"at": at("2024-03-04T11:00:00"), "type": "status", "status": "pending", "bot": False,
               "custom_status": "Waiting on customer reply"}
    doc = ticket([comment("2024-03-04T11:00:00", "agent"), waiting])
    run = replay(prepare(doc, NO_IDS), rules(vendor_close), *WINDOW)
    assert [c.at for c in run.closes] == [at("2024-03-05T11:00:00")]
    other = ticket([comment("2024-03-04T11:00:00", "agent"), {**waiting, "custom_status": "Pending"}])
    assert replay(prepare(other, NO_IDS), rules(vendor_close), *WINDOW).closes == []


def test_an_internal_note_after_a_decision_that_acted_is_decided_again():
    chain = """
reclassify:
  - id: default-priority
    when: {priority: none}
    set: normal
  - id: outage-is-urgent
    when: {priority: normal, text_any: [outage]}
    set: urgent
"""
    note = {"at": at("2024-03-04T09:30:00"), "type": "comment", "author": "agent", "public": False,
            "bot": False}
    doc = ticket([note, comment("2024-03-04T11:00:00", "agent")], priority=None)
    run = replay(prepare(doc, NO_IDS), rules(chain), *WINDOW)
    fired = [(f.rule, f.at) for f in run.firings if f.type == "set_priority"]
    # The ticket as the first rule left it is decided at the note, as the bot would on its echo.
    assert fired == [("default-priority", at("2024-03-04T09:00:00")),
                     ("outage-is-urgent", at("2024-03-04T09:30:00"))]
    assert run.priority == "urgent"
