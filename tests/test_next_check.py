"""next_check only at moments where some rule can act, never at a due or warning time alone."""

from __future__ import annotations

import pytest

from engine.evaluate import evaluate
from engine.rulefile import load_texts
from engine.ticketjson import parse_ticket
from tests.engine_helpers import at, comment, example

BASE = """\
version: 1
calendars:
  always: {timezone: UTC, hours: 24/7}
policies:
  - id: p
    calendar: always
    targets:
      first_response: {urgent: 1h}
      resolution: {urgent: {within: 8h, warn_after: 6h}}
"""
CREATED = "2026-11-23T10:00:00Z"
FIRST_DUE = at("2026-11-23T11:00:00Z")
RESOLUTION_DUE = at("2026-11-23T18:00:00Z")
RESOLUTION_WARN = at("2026-11-23T16:00:00Z")


def decide(extra: str, now: str, **ticket):
    rules = load_texts([("t.yaml", BASE + extra)])
    data = {"id": "1", "status": "open", "priority": "urgent", "created_at": CREATED}
    data.update(ticket)
    return evaluate(parse_ticket(data, rules.status_aliases), rules, at(now))


def test_running_targets_alone_schedule_nothing():
    decision = decide("", "2026-11-23T10:10:00Z")
    assert {n: r.state for n, r in decision.targets.items()} == {"first_response": "running",
                                                                 "resolution": "running"}
    assert decision.actions == [] and decision.next_check is None


def test_a_breach_escalation_schedules_its_targets_due_only():
    extra = """\
escalations:
  - id: late
    on: {breach: resolution}
    do: {add_tags: [late]}
"""
    decision = decide(extra, "2026-11-23T10:10:00Z")
    # Not first_response's due (nothing acts on it), not the resolution warning.
    assert decision.next_check == RESOLUTION_DUE + 1
    fired = decide(extra, "2026-11-23T18:00:01Z")
    assert [(a.type, a.rule) for a in fired.actions] == [("add_tags", "late"), ("note", "late")]
    assert fired.next_check is None


def test_a_warning_escalation_schedules_the_warning():
    extra = """\
escalations:
  - id: warn
    on: {warning: resolution}
    do: {add_tags: [warned]}
"""
    assert decide(extra, "2026-11-23T10:10:00Z").next_check == RESOLUTION_WARN
    # Once warned (the tag is there) the escalation has nothing left to do.
    assert decide(extra, "2026-11-23T16:30:00Z", tags=["warned"]).next_check is None


def test_a_before_breach_escalation_schedules_its_moment():
    extra = """\
escalations:
  - id: soon
    on: {before_breach: first_response, within: 15m}
    do: {add_tags: [soon]}
"""
    assert decide(extra, "2026-11-23T10:10:00Z").next_check == FIRST_DUE - 15 * 60


def test_an_escalation_that_cannot_apply_schedules_nothing():
    extra = """\
escalations:
  - id: late-high
    when: {priority: [high]}
    on: {breach: resolution}
    do: {add_tags: [late]}
  - id: late-once
    on: {breach: first_response}
    unless_tags: [late]
    do: {add_tags: [late]}
"""
    assert decide(extra, "2026-11-23T10:10:00Z", tags=["late"]).next_check is None
    assert decide(extra, "2026-11-23T10:10:00Z").next_check == FIRST_DUE + 1


def test_sla_fields_schedule_the_state_change_of_the_targets_they_write():
    extra = """\
sla_fields:
  resolution: {due: res_due, state: res_state}
"""
    fields = {"res_due": "2026-11-23T18:00:00Z", "res_state": "running"}
    decision = decide(extra, "2026-11-23T10:10:00Z", fields=fields)
    assert decision.actions == [] and decision.next_check == RESOLUTION_DUE + 1
    breached = decide(extra, "2026-11-23T18:00:01Z", fields=fields)
    assert [a.values for a in breached.actions] == [{"res_state": "breached"}]


def test_an_sla_due_field_alone_never_changes_with_time():
    extra = """\
sla_fields:
  resolution: {due: res_due}
"""
    decision = decide(extra, "2026-11-23T10:10:00Z", fields={"res_due": "2026-11-23T18:00:00Z"})
    assert decision.actions == [] and decision.next_check is None


def test_an_auto_close_schedules_its_moment_not_the_targets():
    extra = """\
auto_close:
  - id: idle
    when: {status: [pending]}
    after: 2h
    calendar: always
    set_status: solved
    reply: Closing for now.
"""
    events = [comment("2026-11-23T10:30:00Z")]
    decision = decide(extra, "2026-11-23T10:40:00Z", status="pending", events=events)
    assert decision.next_check == at("2026-11-23T12:30:00Z")


# Every example policy: an instant before next_check decides what `now` decides, and when nothing is
# scheduled, nothing new happens at any later instant either (the ticket waits for its next event).
CASES = [
    ("advendio", {"priority": "urgent", "created_at": "2026-11-23T08:00:00Z"}),
    ("advendio", {"priority": "normal", "created_at": "2026-11-23T08:00:00Z", "tags": ["escalated_csm"]}),
    ("choozle", {"priority": "normal", "created_at": "2026-11-06T15:00:00Z",
                 "fields": {"severity": "S2"}}),
    ("choozle", {"priority": "normal", "status": "pending", "created_at": "2026-11-02T09:00:00Z",
                 "events": [comment("2026-11-02T10:00:00Z")]}),
    ("cloudtalk", {"priority": "high", "created_at": "2026-11-23T08:00:00Z"}),
    ("liveops", {"priority": "high", "created_at": "2026-11-20T08:00:00Z"}),
    ("owox", {"priority": "normal", "created_at": "2026-11-23T08:00:00Z"}),
]


def _acts(rules, data, now):
    decision = evaluate(parse_ticket(data, rules.status_aliases), rules, now)
    return [(a.type, a.rule) for a in decision.actions], decision


@pytest.mark.parametrize(("policy", "ticket"), CASES)
def test_nothing_acts_before_next_check(policy, ticket):
    rules = example(policy)
    data = {"id": "1", "status": "open", "subject": "", "description": ""} | ticket
    now = at(ticket["created_at"]) + 60
    for _ in range(8):  # follow the schedule: each step must be where something acts
        acts, decision = _acts(rules, data, now)
        horizon = decision.next_check or now + 30 * 86_400
        for t in range(now + 1, horizon, max(1, (horizon - now) // 97)):
            assert _acts(rules, data, t)[0] == acts, (policy, t)
        if decision.next_check is None:
            break
        later, _ = _acts(rules, data, decision.next_check)
        assert later != acts, (policy, decision.next_check)  # the scheduled moment acts
        now = decision.next_check
        # The ticket as the bot leaves it: the tags an escalation added are on it.
        added = [t for a in evaluate(parse_ticket(data, rules.status_aliases), rules, now).actions
                 if a.type == "add_tags" for t in a.values]
        data = data | {"tags": list(data.get("tags", ())) + added}


def test_a_replay_still_finds_each_state_change():
    # No rule acts on the targets, yet a replay counting breaches needs their instants.
    decision = decide("", "2026-11-23T10:10:00Z")
    now = at("2026-11-23T10:10:00Z")
    assert decision.next_check is None and decision.next_state_change(now) == FIRST_DUE + 1
    later = decide("", "2026-11-23T11:00:01Z")
    assert later.next_state_change(FIRST_DUE + 1) == RESOLUTION_WARN
