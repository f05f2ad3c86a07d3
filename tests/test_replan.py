"""Re-planning on a rules change: every stored ticket decided again from its snapshot, no vendor calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.rulefile import load_rules
from engine.ticket import Event, Ticket, to_epoch
from jobs.replan import Replanner, ticket_from_snapshot
from jobs.worker import ticket_json

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
ZD = "zendesk"

RULES = """
version: 1
calendars:
  always: {timezone: UTC, hours: 24/7}
policies:
  - id: sla
    when: {tags_all: [sla]}
    calendar: always
    targets:
      first_response: 8h
escalations:
  - id: at-risk
    when: {status: [new, open]}
    on: {before_breach: first_response, within: WITHIN}
    do:
      add_tags: [at_risk]
EXTRA
"""

STALE = """
  - id: stale
    when: {status: [new, open], tags_none: [sla]}
    on: {after_created: 24h, calendar: always}
    do:
      add_tags: [stale]
"""


def rules(tmp_path, name: str, within: str, extra: str = ""):
    path = tmp_path / name
    path.mkdir()
    (path / "rules.yaml").write_text(RULES.replace("WITHIN", within).replace("EXTRA", extra))
    return load_rules(path)


def ticket(tid: str, tags: tuple[str, ...]) -> Ticket:
    at = to_epoch(T0)
    return Ticket(id=tid, status="open", created_at=at, priority="normal", subject="Help",
                  tags=frozenset(tags), events=(Event(at=at, type="comment", author="customer"),))


def stored(store, rules_set, *tickets: Ticket, next_check=None) -> None:
    store.save_snapshots(ZD, [{"ticket_id": t.id, "ticket": ticket_json(t), "decision": {},
                               "next_check": next_check, "rules_version": rules_set.version}
                              for t in tickets], T0)


def test_a_widened_escalation_and_a_new_rule_are_applied_to_stored_tickets(store, tmp_path):
    old = rules(tmp_path, "old", "1h")
    new = rules(tmp_path, "new", "4h", STALE)
    stored(store, old, ticket("1", ("sla",)), next_check=T0 + timedelta(hours=7))
    stored(store, old, ticket("2", ()))  # no target: nothing was ever due for it
    now = T0 + timedelta(hours=5)  # 3 h left on the first response: inside the widened 4 h
    # The replanner has no helpdesk at all: it cannot call one.
    report = Replanner(store, lambda: new, clock=lambda: now).run()
    assert (report.tickets, report.queued, report.moved, report.unreadable) == (2, 1, 2, 0)
    assert store.get_snapshot(ZD, "1")["rules_version"] == new.version
    # Due now: queued for the worker (which reads it before writing).
    assert [c.ticket_id for c in store.claim("w", now)] == ["1"]
    # The ticket without a target is looked at again when the new rule could fire.
    assert store.get_snapshot(ZD, "2")["next_check"] == T0 + timedelta(hours=24)
    assert store.due_tickets(T0 + timedelta(hours=24)) == [(ZD, "2")]
    # Once per version: a second run (another clock, a restart) only reads the cursor.
    again = Replanner(store, lambda: new, clock=lambda: now).run()
    assert again.skipped == "rules unchanged since the last re-plan"


def test_unchanged_rules_leave_the_plan_alone_and_nothing_is_queued(store, tmp_path):
    same = rules(tmp_path, "same", "1h")
    stored(store, same, ticket("1", ("sla",)), next_check=T0 + timedelta(hours=7))
    report = Replanner(store, lambda: same, clock=lambda: T0 + timedelta(hours=1)).replan(same)
    assert report.tickets == 0  # every snapshot is already planned under this version
    assert store.claim("w", T0 + timedelta(hours=1)) == []


def test_the_snapshot_round_trips_to_the_same_ticket():
    original = Ticket(id="9", status="pending", created_at=100, priority="high", subject="S",
                      description="D", tags=frozenset({"a"}), fields={"plan": "basic"},
                      events=(Event(at=100, type="comment", author="agent", public=True, bot=True),
                              Event(at=120, type="status", status="pending")), group="Level 2")
    again, holds = ticket_from_snapshot(ticket_json(original))
    assert again == original and holds == ()


def test_a_rule_removed_clears_the_next_check_it_had_set(store, tmp_path):
    old = rules(tmp_path, "old", "1h", STALE)
    new = rules(tmp_path, "new", "1h")
    stored(store, old, ticket("3", ()), next_check=T0 + timedelta(hours=24))
    report = Replanner(store, lambda: new, clock=lambda: T0 + timedelta(hours=1)).run()
    assert (report.tickets, report.moved, report.queued) == (1, 1, 0)
    assert store.get_snapshot(ZD, "3")["next_check"] is None
